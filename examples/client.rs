//! A client on the std-like API: connects through the stack, sends `COUNT` (default 1000)
//! 64-byte pings to an echo server, checks each reply and prints round-trip times. Run as
//! root: `client IFACE SERVER_IP:PORT [COUNT]`.

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use xdp_tcp::api::{Stack, TcpStream};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: client IFACE SERVER_IP:PORT [COUNT]";
    let iface = args.next().expect(usage);
    let server: SocketAddrV4 = args.next().expect(usage).parse().expect("SERVER_IP:PORT");
    let count: usize = args.next().map_or(1000, |c| c.parse().expect("COUNT"));

    let stack = Stack::builder().interface(&iface).start()?;
    let mut s = TcpStream::connect_timeout(&stack, server, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    println!("connected {} -> {}", s.local_addr()?, s.peer_addr()?);

    let mut rtts = Vec::with_capacity(count);
    let (mut ping, mut pong) = ([0u8; 64], [0u8; 64]);
    for i in 0..count {
        ping.iter_mut()
            .enumerate()
            .for_each(|(k, b)| *b = (i + k) as u8);
        let t = Instant::now();
        s.write_all(&ping)?;
        s.read_exact(&mut pong)?;
        rtts.push(t.elapsed());
        assert_eq!(ping, pong, "reply {i} differs");
    }
    s.shutdown(std::net::Shutdown::Write)?;
    assert_eq!(s.read(&mut pong)?, 0, "bytes after the last reply");

    rtts.sort();
    let pct = |p: usize| rtts[(rtts.len() - 1) * p / 100];
    println!(
        "{count} round trips: p50 {:?} p99 {:?} max {:?}",
        pct(50),
        pct(99),
        pct(100)
    );
    Ok(())
}
