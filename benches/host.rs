//! Hot paths through a [`Host`]: a 64-byte data segment parsed, demultiplexed, delivered and
//! acknowledged, and the 4-tuple flow-table look-up with 1k / 100k / 1M connections.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as StdInstant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xdp_tcp::host::{ConnId, Host, HostConfig};
use xdp_tcp::time::Instant;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;

fn host(addr: Ipv4Addr) -> Host {
    let mut cfg = HostConfig::new(addr);
    // Acknowledge every segment at once, so each data segment makes exactly one ACK.
    cfg.tcp.delayed_ack = None;
    cfg.tcp.nodelay = true;
    Host::new(cfg)
}

/// Moves every pending packet from `from` to `to`; returns how many.
fn deliver(now: Instant, from: &mut Host, to: &mut Host, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while let Some(tx) = from.poll_transmit(now, buf) {
        to.handle_ipv4(now, &buf[..tx.len]);
        n += 1;
    }
    n
}

/// Two hosts with one established connection: (client, server, client id, server id).
fn pair() -> (Host, Host, ConnId, ConnId) {
    let mut a = host(A);
    let mut b = host(B);
    b.listen(PORT, 16);
    let now = Instant::ZERO;
    let ca = a.connect(now, SocketAddrV4::new(B, PORT)).unwrap();
    let mut buf = vec![0u8; 2048];
    for _ in 0..4 {
        deliver(now, &mut a, &mut b, &mut buf);
        deliver(now, &mut b, &mut a, &mut buf);
    }
    let cb = b.accept(PORT).expect("handshake completed");
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    (a, b, ca, cb)
}

fn segment(c: &mut Criterion) {
    let mut group = c.benchmark_group("host");
    group.throughput(Throughput::Elements(1));
    // The receiving side alone: parse (both checksums), 4-tuple demux, in-order delivery into
    // the receive buffer, the application consuming it in place, and the ACK built into a frame.
    // The client producing each segment is outside the timed part.
    group.bench_function("rx_64B_segment_to_ack", |bch| {
        let (mut a, mut b, ca, cb) = pair();
        let mut seg = vec![0u8; 2048];
        let mut ack = vec![0u8; 2048];
        let payload = [7u8; 64];
        let mut t = 1_000u64;
        bch.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for _ in 0..iters {
                t += 1_000;
                let now = Instant::from_nanos(t);
                a.send(ca, &payload).unwrap();
                let len = a.poll_transmit(now, &mut seg).expect("a data segment").len;
                let start = StdInstant::now();
                b.handle_ipv4(now, &seg[..len]);
                b.with_conn(cb, |c| c.consume(64));
                let n = b.poll_transmit(now, &mut ack).expect("an ACK").len;
                total += start.elapsed();
                black_box(n);
                while b.poll_event().is_some() {}
                a.handle_ipv4(now, &ack[..n]);
                while a.poll_transmit(now, &mut seg).is_some() {}
                while a.poll_event().is_some() {}
            }
            total
        });
    });
    // Both sides: the client's send and segment build too, and its processing of the ACK.
    group.bench_function("round_64B_segment_and_ack", |bch| {
        let (mut a, mut b, ca, cb) = pair();
        let mut buf = vec![0u8; 2048];
        let payload = [7u8; 64];
        let mut t = 1_000u64;
        bch.iter(|| {
            t += 1_000;
            let now = Instant::from_nanos(t);
            a.send(ca, &payload).unwrap();
            deliver(now, &mut a, &mut b, &mut buf);
            b.with_conn(cb, |c| c.consume(64));
            deliver(now, &mut b, &mut a, &mut buf);
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
        });
    });
    // A whole short connection: handshake, 64 B request, 64 B response, the server closing
    // first, the client closing, the last ACK; TIME-WAIT (2 x 1 ms here) expiring on the way.
    group.bench_function("churn_connect_64B_close", |bch| {
        let mut cfg_a = HostConfig::new(A);
        cfg_a.tcp.delayed_ack = None;
        cfg_a.tcp.nodelay = true;
        let mut cfg_b = HostConfig::new(B);
        cfg_b.tcp = cfg_a.tcp;
        cfg_b.tcp.msl = xdp_tcp::time::Duration::from_micros(500);
        let mut a = Host::new(cfg_a);
        let mut b = Host::new(cfg_b);
        b.listen(PORT, 1024);
        let mut buf = vec![0u8; 2048];
        let mut io = [0u8; 64];
        let mut t = 1_000u64;
        bch.iter(|| {
            t += 10_000;
            let now = Instant::from_nanos(t);
            b.handle_timeout(now);
            let ca = a.connect(now, SocketAddrV4::new(B, PORT)).unwrap();
            deliver(now, &mut a, &mut b, &mut buf);
            deliver(now, &mut b, &mut a, &mut buf);
            a.send(ca, &io).unwrap();
            deliver(now, &mut a, &mut b, &mut buf);
            let cb = b.accept(PORT).expect("established");
            let n = b.recv(cb, &mut io).unwrap();
            b.send(cb, &io[..n]).unwrap();
            b.close(cb);
            deliver(now, &mut b, &mut a, &mut buf);
            black_box(a.recv(ca, &mut io).unwrap());
            a.close(ca);
            deliver(now, &mut a, &mut b, &mut buf);
            deliver(now, &mut b, &mut a, &mut buf);
            while a.poll_event().is_some() {}
            while b.poll_event().is_some() {}
        });
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_lookup");
    group.throughput(Throughput::Elements(1));
    for n in [1_000usize, 100_000, 1_000_000] {
        // Active opens from a host to n remotes (up to 50,000 ports per remote address): cheap
        // to create, and they sit in the same table as every other connection.
        let mut cfg = HostConfig::new(A);
        cfg.ephemeral_ports = (10_000, 59_999);
        let mut h = Host::new(cfg);
        let mut keys = Vec::with_capacity(n);
        for i in 0..n {
            let remote = SocketAddrV4::new(Ipv4Addr::from(0x0b00_0000 + (i / 50_000) as u32), 443);
            let id = h.connect(Instant::ZERO, remote).expect("port available");
            keys.push((remote, h.conn(id).unwrap().local().port()));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        let probes: Vec<(SocketAddrV4, u16)> =
            (0..1 << 16).map(|_| keys[rng.gen_range(0..n)]).collect();
        group.bench_function(BenchmarkId::new("hit", n), |bch| {
            let mut k = 0usize;
            bch.iter(|| {
                let (r, p) = probes[k & 0xffff];
                k += 1;
                black_box(h.lookup(r, p))
            });
        });
        group.bench_function(BenchmarkId::new("miss", n), |bch| {
            let mut k = 0usize;
            bch.iter(|| {
                let (r, p) = probes[k & 0xffff];
                k += 1;
                black_box(h.lookup(SocketAddrV4::new(*r.ip(), 444), p))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, segment, lookup);
criterion_main!(benches);
