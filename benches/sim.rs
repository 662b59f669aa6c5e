//! A 1 MiB transfer (client to server) through the simulator on a clean 1 Gbit/s, 10 ms RTT
//! link: the cost of the whole sans-IO stack per byte, wire formats and checksums included.

use std::net::SocketAddrV4;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdp_tcp::host::HostConfig;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::sim::network::Network;
use xdp_tcp::time::{Duration, Instant};

const LEN: usize = 1 << 20;

fn transfer() -> usize {
    let client_addr = "10.0.0.1".parse().unwrap();
    let server_addr = "10.0.0.2".parse().unwrap();
    let mut net = Network::new();
    let c = net.add_host(HostConfig::new(client_addr));
    let s = net.add_host(HostConfig::new(server_addr));
    let mut link = LinkConfig::ideal(Duration::from_millis(5));
    link.bandwidth_bps = Some(1_000_000_000);
    net.connect(c, s, link, 1);
    net.host(s).listen(80, 4);
    let id = net
        .host(c)
        .connect(Instant::ZERO, SocketAddrV4::new(server_addr, 80))
        .unwrap();
    let data = vec![0x5au8; LEN];
    let mut sent = 0;
    let mut got = 0;
    let mut server = None;
    let mut buf = vec![0u8; 64 * 1024];
    let done = net.run_until(Instant::from_secs(60), |net| {
        if sent < LEN {
            if let Ok(n) = net.host(c).send(id, &data[sent..]) {
                sent += n;
            }
        }
        if server.is_none() {
            server = net.host(s).accept(80);
        }
        if let Some(sid) = server {
            while let Ok(n) = net.host(s).recv(sid, &mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
        }
        got == LEN
    });
    assert!(done);
    got
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    g.bench_function("transfer_1MiB", |b| b.iter(transfer));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
