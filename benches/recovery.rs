//! Loss recovery with and without SACK on the simulator: a one-way bulk transfer over a 10 ms
//! RTT, 100 Mbit/s path losing 2% of frames (both ways) in bursts of 1 to 4, with a bottleneck
//! queue of one bandwidth-delay product. Prints goodput in simulated time and the sender's RTO
//! count per seed, for SACK (RACK-TLP, RFC 6675) and for NewReno (SACK disabled on both ends),
//! and the ratios.
//!
//! `cargo bench --bench recovery` runs the full version (32 MiB x 8 seeds); run without
//! `--bench` (as `cargo test --benches` does) it moves 1 MiB once per mode, to stay fast.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::HostConfig;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp;
use xdp_tcp::time::{Duration, Instant};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const BANDWIDTH: u64 = 100_000_000;
const ONE_WAY: Duration = Duration::from_millis(5);
/// Bandwidth x RTT: 125 kB.
const BDP: usize = (BANDWIDTH / 8 / 100) as usize;

struct Run {
    goodput_mbps: f64,
    rtos: u64,
    fast: u64,
    tlp: u64,
}

fn transfer(sack: bool, seed: u64, len: usize) -> Run {
    let link = LinkConfig::ideal(ONE_WAY)
        .with_bandwidth(BANDWIDTH)
        .with_queue_limit(BDP)
        .with_loss_bursts(0.02, 4);
    let tcp_cfg = tcp::Config {
        sack,
        ..tcp::Config::default()
    };
    let mut net = Network::new();
    let mut ccfg = HostConfig::new(CLIENT);
    ccfg.tcp = tcp_cfg;
    ccfg.tcp.secret = xdp_tcp::tcp::Secret::from_seed(seed);
    let mut scfg = HostConfig::new(SERVER);
    scfg.tcp = tcp_cfg;
    scfg.tcp.secret = xdp_tcp::tcp::Secret::from_seed(!seed);
    let c = net.add_host(ccfg);
    let s = net.add_host(scfg);
    net.connect(c, s, link, seed);
    net.host(s).listen(80, 4);
    let id = net
        .host(c)
        .connect(Instant::ZERO, SocketAddrV4::new(SERVER, 80))
        .unwrap();
    let data: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut sent, mut got) = (0usize, 0usize);
    let mut server = None;
    let mut buf = vec![0u8; 64 * 1024];
    let done = net.run_until(Instant::from_secs(3600), |net| {
        while sent < len {
            let chunk = &data[sent % data.len()..];
            let chunk = &chunk[..chunk.len().min(len - sent)];
            match net.host(c).send(id, chunk) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        server = server.or_else(|| net.host(s).accept(80));
        if let Some(sid) = server {
            while let Ok(n) = net.host(s).recv(sid, &mut buf) {
                if n == 0 {
                    break;
                }
                assert!(
                    buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(i, b)| *b == ((got + i) % data.len() % 251) as u8),
                    "seed {seed}: stream corrupted"
                );
                got += n;
            }
        }
        got == len
    });
    assert!(done, "seed {seed} sack {sack}: transfer stalled");
    let secs = (net.now() - Instant::ZERO).as_secs_f64();
    let st = net.host_ref(c).conn(id).unwrap().stats();
    Run {
        goodput_mbps: len as f64 * 8.0 / secs / 1e6,
        rtos: st.rto_events,
        fast: st.retrans_fast,
        tlp: st.retrans_tlp,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (len, seeds) = if full { (32 << 20, 8u64) } else { (1 << 20, 1) };
    println!(
        "recovery: {} MiB one way, 10 ms RTT, 100 Mbit/s, 2% loss in bursts of 1-4, queue {} kB",
        len as f64 / (1 << 20) as f64,
        BDP / 1000
    );
    println!(
        "{:>4} | {:>10} {:>5} {:>6} {:>5} | {:>10} {:>5} {:>6} {:>5}",
        "seed", "SACK Mb/s", "RTOs", "fast", "TLP", "NR Mb/s", "RTOs", "fast", "TLP"
    );
    let (mut gs, mut gn, mut rs, mut rn) = (0.0, 0.0, 0, 0);
    for seed in 0..seeds {
        let a = transfer(true, seed, len);
        let b = transfer(false, seed, len);
        println!(
            "{seed:>4} | {:>10.2} {:>5} {:>6} {:>5} | {:>10.2} {:>5} {:>6} {:>5}",
            a.goodput_mbps, a.rtos, a.fast, a.tlp, b.goodput_mbps, b.rtos, b.fast, b.tlp
        );
        gs += a.goodput_mbps;
        gn += b.goodput_mbps;
        rs += a.rtos;
        rn += b.rtos;
    }
    let n = seeds as f64;
    println!(
        "mean | {:>10.2} {:>5.1} {:>12} | {:>10.2} {:>5.1}",
        gs / n,
        rs as f64 / n,
        "",
        gn / n,
        rn as f64 / n
    );
    println!(
        "SACK / NewReno goodput: {:.2}x; RTOs: {} with SACK, {} without",
        gs / gn,
        rs,
        rn
    );
}
