//! Bulk transfer of 16 MiB in each direction at once between two simulated hosts, byte-exact,
//! over 50 seeds per link model, on 1500-byte MTU links: no link may drop a frame for its size.
//! Every run must finish within a simulated-time bound. The same models run again on a path
//! through a router whose next-hop MTU falls to 1280 mid-transfer (RFC 1191 path MTU
//! discovery, both directions at once).

mod common;

use std::cell::Cell;
use std::rc::Rc;

use common::sim_pair::{Pair, Transfer};
use xdp_tcp::sim::link::{Filter, LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp;
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{Ipv4Addr, Ipv4Packet, TcpPacket};

const LEN: usize = 16 << 20;
const SEEDS: u64 = 50;
const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// The router's next-hop MTU once it falls.
const NARROW: usize = 1280;
/// Packets the router forwards before its next-hop MTU falls: about a quarter of the transfer.
const DROP_AFTER: u64 = 8000;

fn base() -> LinkConfig {
    let mut l = LinkConfig::ideal(Duration::from_millis(5));
    l.bandwidth_bps = Some(1_000_000_000);
    l
}

#[derive(Default)]
struct Totals {
    rtos: u64,
    corrupted: u64,
    malformed_drops: u64,
    /// Packets the router dropped as too big for the narrowed next hop.
    too_big: u64,
    /// Times black-hole detection lowered an MSS (RFC 4821).
    black_hole: u64,
}

impl Totals {
    fn add(&mut self, r: &Transfer, net: &Network) {
        self.rtos += r.client_rto + r.server_rto;
        self.corrupted += r.corrupted;
        self.malformed_drops += r.malformed_drops;
        for h in [0, 1] {
            self.black_hole += net.host_ref(h).stats().closed_conns.black_hole_fallbacks;
        }
    }
}

fn run(name: &str, link: LinkConfig, limit: Duration) -> Totals {
    let mut worst = Duration::ZERO;
    let mut t = Totals::default();
    for seed in 0..SEEDS {
        let mut pair = Pair::seeded(tcp::Config::default(), seed)
            .link(link.clone())
            .build();
        let r = pair.transfer(LEN, limit);
        r.assert_exact(&format!("seed {seed}"));
        assert_eq!(r.oversize, 0, "seed {seed}: a frame over the MTU");
        worst = worst.max(r.sim_time);
        t.add(&r, &pair.net);
    }
    eprintln!(
        "{name}: {SEEDS} seeds, slowest {worst:?} simulated, {} RTOs, {} black-hole fallbacks, \
         {} frames corrupted, {} dropped as malformed",
        t.rtos, t.black_hole, t.corrupted, t.malformed_drops
    );
    t
}

/// What one host sent toward the router, seen on its link (before the link's faults).
#[derive(Default)]
struct Sent {
    /// The host has learned the narrower path (its path MTU cache holds it).
    learned: Cell<bool>,
    /// Frames longer than [`NARROW`] sent before it learned, and after.
    oversize_before: Cell<u64>,
    oversize_after: Cell<u64>,
    /// The largest TCP payload sent after it learned.
    max_payload_after: Cell<usize>,
}

/// Counts what passes into `sent`.
fn watch(sent: &Rc<Sent>) -> Filter {
    let sent = sent.clone();
    Box::new(move |f: &[u8]| {
        let learned = sent.learned.get();
        if f.len() > NARROW {
            let n = if learned {
                &sent.oversize_after
            } else {
                &sent.oversize_before
            };
            n.set(n.get() + 1);
        }
        if learned {
            let payload = Ipv4Packet::new_checked(f)
                .ok()
                .and_then(|ip| {
                    let t = TcpPacket::new_checked(ip.payload()).ok()?;
                    Some(ip.payload().len() - usize::from(t.header_len()))
                })
                .unwrap_or(0);
            sent.max_payload_after
                .set(sent.max_payload_after.get().max(payload));
        }
        Verdict::Pass
    })
}

/// The suite's model through a router: client - router on `link` (2.5 ms), router - server
/// clean (2.5 ms, same bandwidth). After [`DROP_AFTER`] forwarded packets, the router's
/// next-hop MTU falls to 1280 both ways. Checks, per seed: no link ever drops a frame for its
/// size (the hosts never exceed their 1500-byte interfaces, the router checks before
/// forwarding); each host learns the path MTU exactly once and, once it has, sends nothing
/// over 1280 and full segments of exactly 1280 - 40 - 12 bytes; the router's too-big drops
/// are only frames the hosts sent before they learned.
fn run_mtu_drop(name: &str, link: LinkConfig, limit: Duration) -> Totals {
    let mut worst = Duration::ZERO;
    let mut t = Totals::default();
    let mut hop1 = link;
    hop1.latency = Duration::from_micros(2500);
    let mut hop2 = base();
    hop2.latency = hop1.latency;
    for seed in 0..SEEDS {
        let (c_sent, s_sent) = (Rc::new(Sent::default()), Rc::new(Sent::default()));
        let (cw, sw) = (c_sent.clone(), s_sent.clone());
        let (h1, h2) = (hop1.clone(), hop2.clone());
        let router = Rc::new(Cell::new(0));
        let r_at = router.clone();
        let dropped_at: Rc<Cell<Option<Instant>>> = Rc::default();
        let d_at = dropped_at.clone();
        let wire = move |net: &mut Network, c: usize, s: usize| {
            let r = net.add_router(ROUTER);
            r_at.set(r);
            net.connect(c, r, h1, seed);
            net.connect(r, s, h2, seed.wrapping_add(1000));
            net.set_gateway(c, r);
            net.set_gateway(s, r);
            net.link(c, r).unwrap().set_filter(Some(watch(&cw)));
            net.link(s, r).unwrap().set_filter(Some(watch(&sw)));
        };
        let (cl, sl, r_idx) = (c_sent.clone(), s_sent.clone(), router.clone());
        let during = move |net: &mut Network| {
            let r = r_idx.get();
            if d_at.get().is_none() && net.router(r).stats().forwarded >= DROP_AFTER {
                d_at.set(Some(net.now()));
                net.link(r, 1).unwrap().set_mtu(NARROW);
                net.link(r, 0).unwrap().set_mtu(NARROW);
            }
            for (host, sent) in [(0, &cl), (1, &sl)] {
                if net.host_ref(host).stats().pmtu_reductions > 0 {
                    sent.learned.set(true);
                }
            }
        };
        let mut pair = Pair::seeded(tcp::Config::default(), seed)
            .wire(wire)
            .build();
        let r = pair.transfer_with(LEN, limit, during);
        r.assert_exact(&format!("seed {seed}"));
        let drop_time = dropped_at.get().expect("the MTU fell mid-transfer");
        assert_eq!(r.oversize, 0, "seed {seed}: a frame over a link's MTU");
        let rs = *pair.net.router(router.get()).stats();
        for (host, sent) in [(0, &c_sent), (1, &s_sent)] {
            let h = pair.net.host_ref(host).stats();
            assert_eq!(
                h.pmtu_reductions, 1,
                "seed {seed}: host {host} learned once"
            );
            assert_eq!(
                sent.oversize_after.get(),
                0,
                "seed {seed}: host {host} sent over 1280 once it knew"
            );
            assert_eq!(
                sent.max_payload_after.get(),
                NARROW - 40 - 12,
                "seed {seed}: host {host}'s full segments"
            );
            let c = h.closed_conns;
            assert!(
                c.pmtu_reductions == 1 && c.retrans_mtu > 0,
                "seed {seed}: {c:?}"
            );
        }
        assert!(
            rs.too_big > 0,
            "seed {seed}: the drop hit packets in flight"
        );
        assert!(
            rs.too_big <= c_sent.oversize_before.get() + s_sent.oversize_before.get(),
            "seed {seed}: the router dropped {} too-big packets, more than the hosts sent \
             before they learned ({} + {})",
            rs.too_big,
            c_sent.oversize_before.get(),
            s_sent.oversize_before.get()
        );
        assert_eq!(rs.icmp_sent, rs.too_big, "seed {seed}: each drop answered");
        assert!(
            r.sim_time < (drop_time - Instant::ZERO) + tcp::Config::default().pmtu_expires,
            "seed {seed}: finished before the path MTU expired"
        );
        worst = worst.max(r.sim_time);
        t.add(&r, &pair.net);
        t.too_big += rs.too_big;
    }
    eprintln!(
        "{name} through a router, MTU 1500 -> 1280: {SEEDS} seeds, slowest {worst:?} simulated, \
         {} RTOs, {} black-hole fallbacks, {} packets dropped as too big",
        t.rtos, t.black_hole, t.too_big
    );
    t
}

#[test]
fn clean_link() {
    let t = run("clean", base(), Duration::from_secs(30));
    assert_eq!(t.rtos, 0, "a clean link needs no retransmission timeout");
    assert_eq!(t.malformed_drops, 0);
}

#[test]
fn clean_link_mtu_drop() {
    let t = run_mtu_drop("clean", base(), Duration::from_secs(30));
    assert_eq!(
        t.rtos, 0,
        "path MTU discovery needs no retransmission timeout"
    );
    assert_eq!(t.malformed_drops, 0);
}

#[test]
fn one_percent_loss() {
    let mut l = base();
    l.loss = 0.01;
    run("1% loss", l, Duration::from_secs(600));
}

#[test]
fn one_percent_loss_mtu_drop() {
    let mut l = base();
    l.loss = 0.01;
    run_mtu_drop("1% loss", l, Duration::from_secs(600));
}

fn loss_reorder_dup() -> LinkConfig {
    let mut l = base();
    l.loss = 0.05;
    l.reorder = 0.02;
    l.reorder_delay = Duration::from_millis(3);
    l.duplicate = 0.01;
    l
}

#[test]
fn loss_reorder_duplication() {
    run(
        "5% loss + 2% reorder + 1% dup",
        loss_reorder_dup(),
        Duration::from_secs(1800),
    );
}

#[test]
fn loss_reorder_duplication_mtu_drop() {
    run_mtu_drop(
        "5% loss + 2% reorder + 1% dup",
        loss_reorder_dup(),
        Duration::from_secs(1800),
    );
}

#[test]
fn ten_percent_loss() {
    let mut l = base();
    l.loss = 0.10;
    run("10% loss", l, Duration::from_secs(3600));
}

#[test]
fn ten_percent_loss_mtu_drop() {
    let mut l = base();
    l.loss = 0.10;
    run_mtu_drop("10% loss", l, Duration::from_secs(3600));
}

#[test]
fn one_percent_corruption() {
    let mut l = base();
    l.corrupt = 0.01;
    let t = run("1% corruption", l, Duration::from_secs(600));
    // every corrupted frame that reached a host was caught by a checksum or a header check
    assert!(
        t.corrupted > 1000,
        "the link corrupted too little to test anything: {}",
        t.corrupted
    );
    assert_eq!(
        t.malformed_drops, t.corrupted,
        "corrupted frames must all be dropped, and nothing else"
    );
}
