//! One engine's host holding N established connections (issue 13, acceptance 5), synthetic, no
//! peer: N = 1,000 and 1,000,000, each with its keep-alive timer armed in the wheel (so the
//! 4-tuple table and the timer wheel both hold N entries).
//!
//! - `established/rx_64B_segment_to_ack/N`: a 64-byte data segment for a random connection
//!   parsed, demultiplexed (one look-up among N), delivered, consumed in place and answered by
//!   an ACK, with the connection's keep-alive rescheduled; the client host that builds the
//!   segments is outside the timed part. Acceptance: the 1M figure within 1.5x of the 1k one.
//! - `established/rx_64B_1k_active/1000000`: the same with the segments spread over 1,000
//!   random connections of the 1M (the others idle, their timers armed): what a server with a
//!   million mostly idle connections pays per segment.
//! - `established/rx_64B_batch32_segment_to_ack/N`: the same workload (segments for random
//!   connections of the N) handled as an engine handles a receive batch: 32 segments for 32
//!   distinct random connections, each prefetched twice ([`Host::prefetch_ipv4`], then
//!   [`Host::prefetch_ipv4_conn`]) before any is handled, then delivered, consumed, and their
//!   32 ACKs written. Reported per segment (the batch's time / 32). The engine does the same
//!   with each receive batch from `prefetch_above` connections on
//!   ([`xdp_tcp::io::PacketIo::recv_batch_ahead`]), on top of the Ethernet header.
//! - `established/rx_64B_batch32_no_lookahead/N`: the same batches handled without the
//!   look-ahead passes (what an engine below [`xdp_tcp::engine::EngineConfig::prefetch_above`]
//!   does): the ratio of the two at 1M, from one run, is what the passes buy.
//! - memory per connection: the heap the server host's own calls allocated while the N
//!   connections were set up (a counting allocator that only counts while a thread-local flag
//!   is on, so the client's allocations are not included), divided by N; printed once per N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Instant as StdInstant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xdp_tcp::host::{ConnId, Host, HostConfig};
use xdp_tcp::tcp::KeepAlive;
use xdp_tcp::time::{Duration, Instant};

struct Counting;

static NET: AtomicIsize = AtomicIsize::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            NET.fetch_add(l.size() as isize, Relaxed);
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if counting() {
            NET.fetch_sub(l.size() as isize, Relaxed);
        }
        // SAFETY: `p` came from `System.alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if counting() {
            NET.fetch_add(new as isize - l.size() as isize, Relaxed);
        }
        // SAFETY: as `dealloc` and `alloc`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f` with the server's allocations counted.
fn server<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;
/// Connections that carry traffic in the `rx_64B_1k_active` runs.
const ACTIVE: usize = 1_000;
/// Segments per receive batch in the `rx_64B_batch32` runs.
const BATCH: usize = 32;
/// Remote ports per client address.
const PER_ADDR: usize = 50_000;

fn config(addr: Ipv4Addr) -> HostConfig {
    let mut cfg = HostConfig::new(addr);
    cfg.tcp.delayed_ack = None;
    cfg.tcp.nodelay = true;
    cfg.tcp.keepalive = Some(KeepAlive {
        idle: Duration::from_secs(7200),
        interval: Duration::from_secs(75),
        count: 9,
    });
    cfg.ephemeral_ports = (10_000, 10_000 + PER_ADDR as u16 - 1);
    // The table at a million connections is what this measures: past the default bounds (a
    // 1 GiB budget holds about 240k connections as the host accounts them, and 2^20 at most).
    cfg.limits.max_conns = 4 << 20;
    cfg.limits.mem_budget = 64 << 30;
    cfg
}

/// N client hosts' worth of connections to one server: clients are hosts on addresses
/// 11.0.0.0 + k, each opening up to `PER_ADDR` connections. Returns the clients, the server,
/// and for each connection (client index, client id, server id).
#[allow(clippy::type_complexity)]
fn establish(n: usize) -> (Vec<Host>, Host, Vec<(usize, ConnId, ConnId)>, isize) {
    let mut b = server(|| {
        let mut b = Host::new(config(B));
        b.listen(PORT, n + 1);
        b
    });
    let before = NET.load(Relaxed);
    let mut clients: Vec<Host> = Vec::new();
    let mut conns = Vec::with_capacity(n);
    let mut buf = vec![0u8; 2048];
    let now = Instant::ZERO;
    for i in 0..n {
        let k = i / PER_ADDR;
        if k == clients.len() {
            clients.push(Host::new(config(Ipv4Addr::from(0x0b00_0000 + k as u32))));
        }
        let a = &mut clients[k];
        let ca = a.connect(now, SocketAddrV4::new(B, PORT)).expect("a port");
        // SYN, SYN-ACK, ACK
        for _ in 0..2 {
            while let Some(tx) = a.poll_transmit(now, &mut buf) {
                server(|| b.handle_ipv4(now, &buf[..tx.len]));
            }
            while let Some(tx) = server(|| b.poll_transmit(now, &mut buf)) {
                a.handle_ipv4(now, &buf[..tx.len]);
            }
        }
        let cb = server(|| b.accept(PORT)).expect("established");
        while a.poll_event().is_some() {}
        server(|| while b.poll_event().is_some() {});
        conns.push((k, ca, cb));
    }
    let bytes = NET.load(Relaxed) - before;
    (clients, b, conns, bytes)
}

fn established(c: &mut Criterion) {
    let mut group = c.benchmark_group("established");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(std::time::Duration::from_secs(4));
    let mut t = 1_000u64;
    for n in [ACTIVE, 1_000_000] {
        let setup = StdInstant::now();
        let (mut clients, mut b, conns, bytes) = establish(n);
        assert_eq!(b.conn_count(), n);
        assert!(b.armed_timers() >= n, "a keep-alive timer per connection");
        eprintln!(
            "established/{n}: {n} connections in {:?}, server heap {} bytes per connection, {} timers armed",
            setup.elapsed(),
            bytes / n as isize,
            b.armed_timers()
        );
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
        // the active set: every connection, or 1,000 of them (the rest idle)
        let all: Vec<usize> = (0..n).collect();
        let mut few: Vec<usize> = (0..ACTIVE.min(n)).map(|_| rng.gen_range(0..n)).collect();
        few.sort_unstable();
        few.dedup();
        let mut segs = vec![vec![0u8; 2048]; BATCH];
        let mut lens = [0usize; BATCH];
        let mut picked: Vec<usize> = Vec::with_capacity(BATCH);
        let mut ack = vec![0u8; 2048];
        // one spare: a batch that wrongly wrote more ACKs fails the assertion, not an index
        let mut acks_out = vec![vec![0u8; 2048]; BATCH + 1];
        let mut ack_to = [(Ipv4Addr::UNSPECIFIED, 0usize); BATCH + 1];
        let payload = [7u8; 64];
        // with the engine's look-ahead passes, and without (the same batch handled in order)
        for (batch_name, ahead) in [
            ("rx_64B_batch32_segment_to_ack", true),
            ("rx_64B_batch32_no_lookahead", false),
        ] {
            group.bench_function(BenchmarkId::new(batch_name, n), |bch| {
                bch.iter_custom(|iters| {
                    let mut total = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        t += 1_000;
                        let now = Instant::from_nanos(t);
                        picked.clear();
                        while picked.len() < BATCH {
                            let c = rng.gen_range(0..n);
                            if !picked.contains(&c) {
                                picked.push(c);
                            }
                        }
                        for (j, &c) in picked.iter().enumerate() {
                            let (k, ca, _) = conns[c];
                            let a = &mut clients[k];
                            a.send(ca, &payload).unwrap();
                            lens[j] = a.poll_transmit(now, &mut segs[j]).expect("a segment").len;
                        }
                        let start = StdInstant::now();
                        if ahead {
                            for (s, &l) in segs.iter().zip(&lens) {
                                b.prefetch_ipv4(&s[..l]);
                            }
                            for (s, &l) in segs.iter().zip(&lens) {
                                b.prefetch_ipv4_conn(&s[..l]);
                            }
                        }
                        for (s, &l) in segs.iter().zip(&lens) {
                            b.handle_ipv4(now, &s[..l]);
                        }
                        for &c in &picked {
                            b.with_conn(conns[c].2, |c| c.consume(64));
                        }
                        let mut acks = 0;
                        while let Some(tx) = b.poll_transmit(now, &mut acks_out[acks.min(BATCH)]) {
                            ack_to[acks.min(BATCH)] = (tx.dst, tx.len);
                            acks += 1;
                        }
                        total += start.elapsed();
                        assert_eq!(acks, BATCH, "an ACK per segment");
                        while b.poll_event().is_some() {}
                        for (buf, &(dst, len)) in acks_out.iter().zip(&ack_to).take(BATCH) {
                            let a = &mut clients[(u32::from(dst) - 0x0b00_0000) as usize];
                            a.handle_ipv4(now, &buf[..len]);
                            while a.poll_transmit(now, &mut ack).is_some() {}
                            while a.poll_event().is_some() {}
                        }
                    }
                    total / BATCH as u32
                });
            });
        }
        for (name, active) in [("rx_64B_segment_to_ack", &all), ("rx_64B_1k_active", &few)] {
            if name == "rx_64B_1k_active" && n == ACTIVE {
                continue; // the same as the first at n = 1k
            }
            let mut seg = vec![0u8; 2048];
            let mut ack = vec![0u8; 2048];
            let payload = [7u8; 64];
            group.bench_function(BenchmarkId::new(name, n), |bch| {
                bch.iter_custom(|iters| {
                    let mut total = std::time::Duration::ZERO;
                    for _ in 0..iters {
                        t += 1_000;
                        let now = Instant::from_nanos(t);
                        let (k, ca, cb) = conns[active[rng.gen_range(0..active.len())]];
                        let a = &mut clients[k];
                        a.send(ca, &payload).unwrap();
                        let len = a.poll_transmit(now, &mut seg).expect("a data segment").len;
                        let start = StdInstant::now();
                        b.handle_ipv4(now, &seg[..len]);
                        b.with_conn(cb, |c| c.consume(64));
                        let m = b.poll_transmit(now, &mut ack).expect("an ACK").len;
                        total += start.elapsed();
                        black_box(m);
                        while b.poll_event().is_some() {}
                        a.handle_ipv4(now, &ack[..m]);
                        while a.poll_transmit(now, &mut seg).is_some() {}
                        while a.poll_event().is_some() {}
                    }
                    total
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, established);
criterion_main!(benches);
