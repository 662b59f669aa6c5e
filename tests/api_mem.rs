//! The threaded, std::net-like API between two whole stacks (one engine thread each) joined by
//! the in-memory link (`io::mem::pair`): every operation and error with the exact `ErrorKind` and
//! errno. No root. Real time, so timeouts are small and every wait is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use xdp_tcp::api::{
    Cx, Device, Handler, KeepAlive, RecvFlags, SendFlags, Stack, StackBuilder, TcpListener,
    TcpStream,
};
use xdp_tcp::engine::{EngineConfig, IdleBackoff};
use xdp_tcp::host::ConnId;
use xdp_tcp::io::mem::{self, Cable, ChanIo};
use xdp_tcp::wire::EthernetAddress;

const C: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 1);
const S: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 2);

fn builder(addr: Ipv4Addr) -> StackBuilder {
    let tcp = xdp_tcp::tcp::Config {
        rto_initial: xdp_tcp::Duration::from_millis(200),
        ..Default::default()
    };
    Stack::builder()
        .addr(addr, 24)
        .tcp_config(tcp)
        .shutdown_grace(Duration::from_millis(200))
        .engine_config(EngineConfig {
            idle: Some(IdleBackoff {
                after: 64,
                max_sleep: Duration::from_millis(5),
            }),
            ..Default::default()
        })
}

fn start(b: StackBuilder, io: ChanIo, last: u8) -> Stack {
    b.start_on(vec![Device {
        waker: Some(io.waker()),
        io,
        mac: EthernetAddress([2, 7, 0, 0, 0, last]),
    }])
    .expect("start stack")
}

/// Client and server stacks on one link.
fn stacks_with(client: StackBuilder, server: StackBuilder) -> (Stack, Stack, Cable) {
    let (a, b, link) = mem::pair(2048);
    (start(client, a, 1), start(server, b, 2), link)
}

fn stacks() -> (Stack, Stack, Cable) {
    stacks_with(builder(C), builder(S))
}

/// A connected pair: (client stream, server stream).
fn connected(c: &Stack, l: &TcpListener) -> (TcpStream, TcpStream) {
    let SocketAddr::V4(addr) = l.local_addr().unwrap() else {
        unreachable!()
    };
    let client = TcpStream::connect_timeout(c, addr, Duration::from_secs(5)).expect("connect");
    let (server, peer) = l.accept().expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

fn errno(e: &std::io::Error) -> (ErrorKind, Option<i32>) {
    (e.kind(), e.raw_os_error())
}

fn timeout(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn echo_addresses_and_peer_fin_reads_zero() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    assert_eq!(
        l.local_addr().unwrap(),
        SocketAddr::V4(SocketAddrV4::new(S, 7))
    );
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    timeout(&mut b);
    assert_eq!(
        a.peer_addr().unwrap(),
        SocketAddr::V4(SocketAddrV4::new(S, 7))
    );
    assert_eq!(b.local_addr().unwrap(), a.peer_addr().unwrap());
    assert_eq!(b.peer_addr().unwrap(), a.local_addr().unwrap());
    let SocketAddr::V4(local) = a.local_addr().unwrap() else {
        unreachable!()
    };
    assert_eq!(*local.ip(), C);
    assert!((61000..=65535).contains(&local.port()));
    // 300 KB each way through a server thread that echoes.
    let echo = std::thread::spawn(move || {
        let mut buf = vec![0; 8192];
        loop {
            match b.read(&mut buf) {
                Ok(0) => return b,
                Ok(n) => b.write_all(&buf[..n]).unwrap(),
                Err(e) => panic!("server read: {e}"),
            }
        }
    });
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut w = Vec::new();
        w.extend_from_slice(&data);
        w
    };
    let mut got = vec![0; data.len()];
    let mut sent = 0;
    let mut read = 0;
    // Interleave so neither side's buffers fill up.
    while read < data.len() {
        if sent < data.len() {
            let n = a
                .write(&writer[sent..(sent + 16384).min(data.len())])
                .unwrap();
            sent += n;
        }
        let n = a.read(&mut got[read..]).unwrap();
        assert!(n > 0);
        read += n;
    }
    assert!(got == data, "echoed bytes differ");
    a.shutdown(Shutdown::Write).unwrap();
    let b = echo.join().unwrap();
    drop(b); // FIN back
    assert_eq!(a.read(&mut [0; 16]).unwrap(), 0);
    assert_eq!(a.read(&mut [0; 16]).unwrap(), 0);
}

#[test]
fn reset_is_econnreset_once_then_eof_and_epipe() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    timeout(&mut b);
    a.write_all(b"never read").unwrap();
    let mut one = [0u8; 1];
    assert_eq!(b.peek(&mut one).unwrap(), 1);
    drop(b); // unread bytes: RST, as close(2) in Linux
    let e = a.read(&mut [0; 8]).unwrap_err();
    assert_eq!(
        errno(&e),
        (ErrorKind::ConnectionReset, Some(libc::ECONNRESET))
    );
    assert_eq!(a.read(&mut [0; 8]).unwrap(), 0);
    let e = a.write(b"x").unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::BrokenPipe, Some(libc::EPIPE)));
    assert!(a.take_error().unwrap().is_none());
}

/// `TCP_INFO`: the engine's snapshot of the connection, its counters moving with the bytes
/// written; after a reset, as in Linux, the state is CLOSED until the socket is dropped.
#[test]
fn tcp_info_snapshots_the_connection_until_it_is_gone() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    timeout(&mut b);
    let info = a.tcp_info().unwrap();
    assert_eq!(info.state, xdp_tcp::tcp::State::Established);
    assert_eq!(info.stats.bytes_out, 0);
    assert!(info.mss > 0 && info.cwnd > 0, "{info:?}");
    a.write_all(&[7; 3000]).unwrap();
    let mut got = [0u8; 3000];
    b.read_exact(&mut got).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let info = loop {
        let info = a.tcp_info().unwrap();
        if info.stats.bytes_acked == 3000 {
            break info;
        }
        assert!(Instant::now() < deadline, "never acknowledged: {info:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(info.stats.bytes_out, 3000);
    assert_eq!(info.bytes_in_flight, 0);
    assert_eq!(b.tcp_info().unwrap().stats.bytes_in, 3000);
    // unread bytes at close: RST
    a.write_all(b"x").unwrap();
    b.peek(&mut [0]).unwrap();
    drop(b);
    let e = a.read(&mut [0; 4]).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
    let info = a.tcp_info().unwrap();
    assert_eq!(
        (info.state, info.stats.rst_in),
        (xdp_tcp::tcp::State::Closed, 1)
    );
}

#[test]
fn take_error_reports_the_reset_once() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut b);
    a.write_all(b"x").unwrap();
    b.peek(&mut [0]).unwrap();
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(5);
    let e = loop {
        if let Some(e) = a.take_error().unwrap() {
            break e;
        }
        assert!(Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(
        errno(&e),
        (ErrorKind::ConnectionReset, Some(libc::ECONNRESET))
    );
    assert!(a.take_error().unwrap().is_none());
    assert_eq!(a.read(&mut [0; 4]).unwrap(), 0);
}

#[test]
fn write_after_peer_closed_is_epipe_never_a_signal() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, b) = connected(&c, &l);
    timeout(&mut a);
    drop(b); // FIN; the peer's socket is gone
    assert_eq!(a.read(&mut [0; 4]).unwrap(), 0);
    // CLOSE-WAIT: the first write is accepted; the peer answers it with RST; a later write
    // fails with EPIPE (Linux turns that RST into EPIPE too).
    let deadline = Instant::now() + Duration::from_secs(5);
    let e = loop {
        match a.send_with(
            b"ping",
            SendFlags {
                no_signal: true,
                ..Default::default()
            },
        ) {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert!(Instant::now() < deadline, "writes kept succeeding");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(errno(&e), (ErrorKind::BrokenPipe, Some(libc::EPIPE)));
}

#[test]
fn shutdown_write_read_and_both() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    timeout(&mut b);
    // Write: FIN after the bytes; our later writes EPIPE; the peer reads the bytes then 0.
    a.write_all(b"last").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    let e = a.write(b"more").unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::BrokenPipe, Some(libc::EPIPE)));
    let mut buf = [0u8; 8];
    b.read_exact(&mut buf[..4]).unwrap();
    assert_eq!(&buf[..4], b"last");
    assert_eq!(b.read(&mut buf).unwrap(), 0);
    // The other direction still works.
    b.write_all(b"reply").unwrap();
    let mut r = [0u8; 5];
    a.read_exact(&mut r).unwrap();
    assert_eq!(&r, b"reply");
    // Read: reads return 0 at once, even with bytes arriving.
    b.write_all(b"dropped").unwrap();
    a.shutdown(Shutdown::Read).unwrap();
    assert_eq!(a.read(&mut buf).unwrap(), 0);
    // Both, on a fresh pair.
    let (mut x, _y) = connected(&c, &l);
    x.shutdown(Shutdown::Both).unwrap();
    assert_eq!(x.read(&mut buf).unwrap(), 0);
    let e = x.write(b"z").unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::BrokenPipe, Some(libc::EPIPE)));
}

#[test]
fn refused_is_econnrefused() {
    let (c, _s, _link) = stacks();
    let e = TcpStream::connect_timeout(&c, SocketAddrV4::new(S, 9), Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(
        errno(&e),
        (ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED))
    );
}

#[test]
fn timeouts_and_nonblocking_would_block() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let e = TcpListener::bind(&s, 7).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::AddrInUse, Some(libc::EADDRINUSE)));
    let (mut a, _b) = connected(&c, &l);
    // Read timeout: EAGAIN (WouldBlock), as std on Linux, after the timeout.
    a.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(Duration::from_millis(100)));
    let t = Instant::now();
    let e = a.read(&mut [0; 4]).unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    let e = a.set_read_timeout(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::InvalidInput, Some(libc::EINVAL)));
    // Non-blocking: at once.
    a.set_read_timeout(None).unwrap();
    a.set_nonblocking(true).unwrap();
    let t = Instant::now();
    let e = a.read(&mut [0; 4]).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    assert!(t.elapsed() < Duration::from_millis(50));
    a.set_nonblocking(false).unwrap();
    let flags = RecvFlags {
        dont_wait: true,
        ..Default::default()
    };
    let e = a.recv_with(&mut [0; 4], flags).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    l.set_nonblocking(true).unwrap();
    let e = l.accept().unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
}

#[test]
fn peek_does_not_consume_and_wait_all_fills_the_buffer() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    b.set_nodelay(true).unwrap();
    assert!(b.nodelay().unwrap());
    b.write_all(b"hello").unwrap();
    let mut p = [0u8; 5];
    assert_eq!(a.peek(&mut p).unwrap(), 5);
    assert_eq!(a.peek(&mut p).unwrap(), 5);
    assert_eq!(&p, b"hello");
    let writer = std::thread::spawn(move || {
        for part in [&b" wor"[..], b"ld", b"!"] {
            std::thread::sleep(Duration::from_millis(30));
            b.write_all(part).unwrap();
        }
        b
    });
    let mut all = [0u8; 12];
    let flags = RecvFlags {
        wait_all: true,
        ..Default::default()
    };
    assert_eq!(a.recv_with(&mut all, flags).unwrap(), 12);
    assert_eq!(&all, b"hello world!");
    drop(writer.join().unwrap());
    // wait_all returns short at end of stream.
    assert_eq!(a.recv_with(&mut all, flags).unwrap(), 0);
}

#[test]
fn buffer_sizes_and_flow_control_bound_a_slow_reader() {
    let size = 32 * 1024;
    let (c, s, _link) = stacks_with(
        builder(C).send_buffer(size).recv_buffer(size),
        builder(S).send_buffer(size).recv_buffer(size),
    );
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    assert_eq!(a.send_buffer_size().unwrap(), size);
    assert_eq!(b.recv_buffer_size().unwrap(), size);
    a.set_send_buffer_size(2 * size).unwrap();
    assert_eq!(a.send_buffer_size().unwrap(), 2 * size);
    a.set_send_buffer_size(size).unwrap();
    b.set_recv_buffer_size(size).unwrap();
    assert_eq!(b.recv_buffer_size().unwrap(), size);
    // Nobody reads: the writer stalls after a bounded amount.
    a.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![0x5a; 8192];
    let mut written = 0usize;
    let e = loop {
        match a.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(
            written < 64 * size,
            "no back-pressure after {written} bytes"
        );
    };
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    // Credit + send buffer + receive buffer + the reader's share, about 4 x 32 KiB.
    assert!(written <= 6 * size, "{written}");
    assert!(written >= 2 * size, "{written}");
    // The reader drains everything; the writer then goes on.
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = vec![0; written];
    b.read_exact(&mut got).unwrap();
    assert!(got.iter().all(|&x| x == 0x5a));
    a.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    a.write_all(&chunk).unwrap();
    b.read_exact(&mut got[..chunk.len()]).unwrap();
}

#[test]
fn keepalive_death_is_etimedout() {
    let (c, s, link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, _b) = connected(&c, &l);
    let ka = KeepAlive {
        idle: xdp_tcp::Duration::from_millis(200),
        interval: xdp_tcp::Duration::from_millis(100),
        count: 3,
    };
    a.set_keepalive(Some(ka)).unwrap();
    assert_eq!(a.keepalive().unwrap(), Some(ka));
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    link.set_up(false);
    let t = Instant::now();
    let e = a.read(&mut [0; 4]).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::TimedOut, Some(libc::ETIMEDOUT)));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(link.dropped() >= 3);
}

#[test]
fn more_holds_a_partial_segment_until_a_plain_send() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (a, mut b) = connected(&c, &l);
    a.set_nodelay(true).unwrap();
    let more = SendFlags {
        more: true,
        ..Default::default()
    };
    assert_eq!(a.send_with(b"GET / ", more).unwrap(), 6);
    b.set_read_timeout(Some(Duration::from_millis(60))).unwrap();
    let e = b.read(&mut [0; 16]).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    a.send_with(b"HTTP/1.1", SendFlags::default()).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 14];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"GET / HTTP/1.1");
    // Held bytes go out by themselves after the cork limit (200 ms).
    a.send_with(b"tail", more).unwrap();
    let t = Instant::now();
    b.read_exact(&mut buf[..4]).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn stack_shutdown_closes_connections() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    s.shutdown().unwrap();
    assert!(s.shutdown_requested());
    assert_eq!(a.read(&mut [0; 4]).unwrap(), 0); // FIN from the server stack
    let e = b.read(&mut [0; 4]).unwrap_err();
    assert_eq!(
        errno(&e),
        (ErrorKind::ConnectionAborted, Some(libc::ECONNABORTED))
    );
    let e = l.accept().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    let e = TcpListener::bind(&s, 8).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
}

/// Echoes, and panics on "panic".
struct Echo;

impl Handler for Echo {
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let mut buf = [0u8; 2048];
        let room = cx.send_space(conn).min(buf.len());
        match cx.recv(conn, &mut buf[..room]) {
            Ok(0) if room > 0 => cx.close(conn),
            Ok(n) => {
                assert!(&buf[..n] != b"panic", "asked to panic");
                cx.write(conn, &buf[..n]).unwrap();
            }
            Err(_) => {}
        }
    }
}

#[test]
fn builder_handlers_serve_threaded_clients_and_a_panic_shuts_down() {
    let (c, s, _link) = stacks_with(builder(C), builder(S).handler(7, || Echo));
    let addr = SocketAddrV4::new(S, 7);
    let mut a = TcpStream::connect_timeout(&c, addr, Duration::from_secs(5)).unwrap();
    timeout(&mut a);
    a.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    // A handler port is taken for threaded listeners.
    let e = TcpListener::bind(&s, 7).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
    a.write_all(b"panic").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.shutdown_requested() {
        assert!(Instant::now() < deadline, "no shutdown after the panic");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(s.handler_panicked());
    s.wait(); // returns at once: shutdown was requested
    drop(s); // the clean shutdown
             // The handler had read "panic" before it panicked: the shutdown closes with FIN.
    assert_eq!(a.read(&mut buf).unwrap(), 0);
}

/// A server stack with two engines, each on its own link with its own client stack: one
/// listener takes connections from both engines, and each connection is served by the engine
/// its packets arrive on.
#[test]
fn a_listener_accepts_on_every_engine() {
    const C2: Ipv4Addr = Ipv4Addr::new(10, 7, 0, 3);
    let (c1_io, s0, _l0) = mem::pair(2048);
    let (c2_io, s1, _l1) = mem::pair(2048);
    let server = builder(S)
        .start_on(vec![
            Device {
                waker: Some(s0.waker()),
                io: s0,
                mac: EthernetAddress([2, 7, 0, 0, 0, 2]),
            },
            Device {
                waker: Some(s1.waker()),
                io: s1,
                mac: EthernetAddress([2, 7, 0, 0, 1, 2]),
            },
        ])
        .expect("start the two-engine server");
    let c1 = start(builder(C), c1_io, 1);
    let c2 = start(builder(C2), c2_io, 3);
    let l = TcpListener::bind(&server, 7300).unwrap();
    let target = SocketAddrV4::new(S, 7300);
    let mut clients = Vec::new();
    for c in [&c1, &c2] {
        for _ in 0..3 {
            let mut s = TcpStream::connect_timeout(c, target, Duration::from_secs(5)).unwrap();
            timeout(&mut s);
            clients.push(s);
        }
    }
    let mut peers = Vec::new();
    let mut served = Vec::new();
    for _ in 0..clients.len() {
        let (mut s, peer) = l.accept().unwrap();
        timeout(&mut s);
        peers.push(peer.ip());
        served.push(s);
    }
    peers.sort();
    assert_eq!(peers, [C, C, C, C2, C2, C2].map(std::net::IpAddr::V4));
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("hello {i}").as_bytes()).unwrap();
    }
    for s in &mut served {
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).unwrap();
        s.write_all(&buf[..n]).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let want = format!("hello {i}");
        let mut buf = vec![0u8; want.len()];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(buf, want.as_bytes());
    }
    drop(served);
    for c in &mut clients {
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).unwrap(), 0, "the server's FIN");
    }
}

/// Acceptance of the one-copy write path: every byte written through `TcpStream::write`, with
/// and without `MSG_MORE`, in sizes from 1 byte to more than one message holds, is copied once
/// on its way into the send buffer (into the message to the engine, whose buffer the send buffer
/// keeps); every byte read is copied three times (frame to receive buffer, receive buffer to a
/// message, message to the caller), no more.
#[test]
fn a_written_byte_is_copied_once_and_a_read_byte_three_times() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let (mut a, mut b) = connected(&c, &l);
    timeout(&mut a);
    timeout(&mut b);
    assert_eq!(a.copies(), Default::default());
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let total = data.len() as u64;
    let writer = std::thread::spawn(move || {
        let sizes = [1, 100, 1448, 5000, 70_000, 3, 200_000];
        let mut off = 0;
        for (i, size) in sizes.iter().cycle().enumerate() {
            if off == data.len() {
                break;
            }
            let end = (off + size).min(data.len());
            let flags = SendFlags {
                more: i % 2 == 0,
                ..Default::default()
            };
            while off < end {
                off += a.send_with(&data[off..end], flags).unwrap();
            }
        }
        a.shutdown(Shutdown::Write).unwrap();
        (a, data)
    });
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    let (a, data) = writer.join().unwrap();
    assert!(got == data, "{} bytes read of {}", got.len(), data.len());
    let w = a.copies();
    assert_eq!(
        (w.write_to_message, w.into_send_buffer),
        (total, 0),
        "write path: one copy per byte"
    );
    let r = b.copies();
    // Each byte read is copied into the reader's slice once, and into its message once: from
    // the frame itself when it was lent (zero-copy receive: nothing unread before it and
    // receive credit left), else through the receive buffer (two copies).
    assert_eq!(
        r.message_to_caller, total,
        "read path: into the caller's slices"
    );
    assert_eq!(
        r.frame_to_message + r.recv_to_message,
        total,
        "read path: into messages once, {r:?}"
    );
    assert_eq!(
        r.into_recv_buffer, r.recv_to_message,
        "read path: what entered the receive buffer left it once, {r:?}"
    );
    assert!(
        r.frame_to_message > total / 2,
        "most bytes went from the frame to the reader: {r:?}"
    );
    // Nothing flowed the other way.
    assert_eq!((r.write_to_message, r.into_send_buffer), (0, 0));
    assert_eq!(
        (
            w.into_recv_buffer,
            w.recv_to_message,
            w.frame_to_message,
            w.message_to_caller
        ),
        (0, 0, 0, 0)
    );
}

/// Connections the engines accepted for a listener that goes away before taking them are
/// closed, not left open without an owner.
#[test]
fn dropping_a_listener_closes_what_it_did_not_accept() {
    let (c, s, _link) = stacks();
    let l = TcpListener::bind(&s, 7).unwrap();
    let mut a = TcpStream::connect_timeout(&c, SocketAddrV4::new(S, 7), Duration::from_secs(5))
        .expect("connect");
    timeout(&mut a);
    // Time for our last handshake ACK to reach the server, which then hands the connection
    // to the listener's queue (a connection still in the backlog would be reset instead).
    std::thread::sleep(Duration::from_millis(100));
    drop(l);
    // Closed: FIN, or RST had it still been in the backlog. Left open, the read times out.
    match a.read(&mut [0; 4]) {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert_eq!(
            errno(&e),
            (ErrorKind::ConnectionReset, Some(libc::ECONNRESET))
        ),
    }
}
