//! Loss recovery on the simulator: each test drops exact frames and asserts which mechanism
//! repaired the loss (a counter, not just completion), and when.
//!
//! Two hosts joined by 5 ms links each way (10 ms RTT) at 100 Mbit/s, so the segments of a
//! flight are spaced by their serialization time and every ACK arrives in a step of its own.
//! The client sends; a filter on the client-to-server link logs every data segment by its offset
//! in the stream and drops the (offset, transmission) pairs a test names. After every step the
//! client's counters are recorded with the time, so tests can tell when each retransmission
//! happened.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::sim_pair::{Pair, CLIENT};
use xdp_tcp::host::{ConnId, HostConfig};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp::{self, ConnStats, TcpInfo};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{IpProtocol, Ipv4Packet, SeqNumber, TcpPacket};

const RTT: Duration = Duration::from_millis(10);

/// One data segment the client put on the link.
#[derive(Debug, Clone, Copy)]
struct Tx {
    /// Offset of its first byte in the stream.
    offset: u32,
    len: usize,
    /// 0 for the first transmission of this offset, 1 for the first retransmission, ...
    nth: u32,
    dropped: bool,
}

#[derive(Default)]
struct Wire {
    /// The client's ISS, from its SYN.
    iss: Option<SeqNumber>,
    log: Vec<Tx>,
    /// (offset, nth) pairs to drop.
    drop: Vec<(u32, u32)>,
    /// (offset, nth) pairs to deliver late, and by how much.
    delay: Vec<(u32, u32, Duration)>,
    /// Drop everything the client sends.
    cut: bool,
}

fn judge(w: &mut Wire, frame: &[u8]) -> Verdict {
    if w.cut {
        return Verdict::Drop;
    }
    let Ok(ip) = Ipv4Packet::new_checked(frame) else {
        return Verdict::Pass;
    };
    if ip.protocol() != IpProtocol::Tcp {
        return Verdict::Pass;
    }
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return Verdict::Pass;
    };
    if tcp.flags().syn() {
        w.iss = Some(tcp.seq_number());
        return Verdict::Pass;
    }
    let len = tcp.payload().len();
    let Some(iss) = w.iss else {
        return Verdict::Pass;
    };
    if len == 0 {
        return Verdict::Pass;
    }
    let offset = (tcp.seq_number() - (iss + 1)) as u32;
    let nth = w.log.iter().filter(|t| t.offset == offset).count() as u32;
    let dropped = w.drop.contains(&(offset, nth));
    w.log.push(Tx {
        offset,
        len,
        nth,
        dropped,
    });
    if dropped {
        return Verdict::Drop;
    }
    match w.delay.iter().find(|d| (d.0, d.1) == (offset, nth)) {
        Some(&(_, _, by)) => Verdict::Delay(by),
        None => Verdict::Pass,
    }
}

/// The client's counters each time they changed, with the time.
type Timeline = Vec<(Instant, ConnStats)>;

struct Rig {
    net: Network,
    c: usize,
    s: usize,
    client: ConnId,
    server: ConnId,
    wire: Rc<RefCell<Wire>>,
    timeline: Timeline,
    sent: Vec<u8>,
    received: Vec<u8>,
}

fn pattern(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + salt) % 251) as u8).collect()
}

impl Rig {
    fn new(tcp_cfg: tcp::Config) -> Rig {
        let wire = Rc::new(RefCell::new(Wire::default()));
        let w = wire.clone();
        let mut pair = Pair::builder(tcp_cfg)
            .server(|h| h.tcp.secret = h.tcp.secret.derive(b"abcd"))
            .link(LinkConfig::ideal(Duration::from_millis(5)).with_bandwidth(100_000_000))
            .filter_to_server(move |f: &[u8]| judge(&mut w.borrow_mut(), f))
            .build();
        let (client, server) = pair.connect();
        let Pair { net, c, s, .. } = pair;
        Rig {
            net,
            c,
            s,
            client,
            server,
            wire,
            timeline: Vec::new(),
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    fn sack(sack: bool) -> Rig {
        Rig::new(tcp::Config {
            sack,
            ..tcp::Config::default()
        })
    }

    fn now(&self) -> Instant {
        self.net.now()
    }

    fn info(&self) -> TcpInfo {
        self.net.host_ref(self.c).conn(self.client).unwrap().info()
    }

    fn stats(&self) -> ConnStats {
        self.net.host_ref(self.c).conn(self.client).unwrap().stats()
    }

    fn mss(&self) -> u32 {
        self.net.host_ref(self.c).conn(self.client).unwrap().mss() as u32
    }

    /// Offset of segment `i` of the stream from here on (full-sized segments).
    fn seg(&self, i: u32) -> u32 {
        self.sent.len() as u32 + i * self.mss()
    }

    fn drop_tx(&self, offset: u32, nth: u32) {
        self.wire.borrow_mut().drop.push((offset, nth));
    }

    fn delay_tx(&self, offset: u32, nth: u32, by: Duration) {
        self.wire.borrow_mut().delay.push((offset, nth, by));
    }

    /// Queues `n` bytes on the client (all must fit the send buffer).
    fn write(&mut self, n: usize) {
        let data = pattern(n, self.sent.len());
        let took = self.net.host(self.c).send(self.client, &data).unwrap();
        assert_eq!(took, n, "send buffer too small for the test");
        self.sent.extend_from_slice(&data);
    }

    /// Steps until `done` or until `limit` of simulated time has passed, reading on the server
    /// and recording the client's counters after each step. Returns whether `done` held.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&mut Rig) -> bool) -> bool {
        let end = self.now() + limit;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Ok(n) = self.net.host(self.s).recv(self.server, &mut buf) {
                if n == 0 {
                    break;
                }
                self.received.extend_from_slice(&buf[..n]);
            }
            if let Some(conn) = self.net.host_ref(self.c).conn(self.client) {
                let st = conn.stats();
                if self.timeline.last().is_none_or(|(_, last)| *last != st) {
                    self.timeline.push((self.now(), st));
                }
            }
            if done(self) {
                return true;
            }
            if self.now() >= end || !self.net.step() {
                return done(self);
            }
        }
    }

    /// Runs until everything written was delivered and acknowledged.
    #[track_caller]
    fn deliver_all(&mut self, limit: Duration) {
        let ok = self.run(limit, |r| {
            r.received.len() == r.sent.len() && r.info().bytes_in_flight == 0
        });
        assert!(
            ok,
            "stalled at {:?}: received {} of {}, info {:?}",
            self.now(),
            self.received.len(),
            self.sent.len(),
            self.info()
        );
        assert!(self.received == self.sent, "the stream arrived altered");
    }

    /// Times at which a counter picked by `f` increased, once per unit of increase.
    fn times_of(&self, f: impl Fn(&ConnStats) -> u64) -> Vec<Instant> {
        let mut out = Vec::new();
        let mut prev = self.timeline.first().map_or(0, |(_, s)| f(s));
        for (t, s) in &self.timeline {
            for _ in prev..f(s) {
                out.push(*t);
            }
            prev = f(s);
        }
        out
    }

    /// Transmissions of the segment at `offset`, in order.
    fn txs(&self, offset: u32) -> Vec<Tx> {
        let w = self.wire.borrow();
        w.log
            .iter()
            .filter(|t| t.offset == offset)
            .copied()
            .collect()
    }

    /// A bulk transfer to warm up: the RTT estimate settles and the window opens.
    fn warm_up(&mut self) {
        self.write(64 * 1024);
        self.deliver_all(Duration::from_secs(5));
        assert_eq!(self.stats().retrans_segs, 0);
        self.timeline.clear();
    }
}

fn delta(a: &ConnStats, b: &ConnStats) -> ConnStats {
    ConnStats {
        retrans_rto: b.retrans_rto - a.retrans_rto,
        retrans_fast: b.retrans_fast - a.retrans_fast,
        retrans_tlp: b.retrans_tlp - a.retrans_tlp,
        rto_events: b.rto_events - a.rto_events,
        fast_recoveries: b.fast_recoveries - a.fast_recoveries,
        tlp_probes: b.tlp_probes - a.tlp_probes,
        retrans_segs: b.retrans_segs - a.retrans_segs,
        dupacks_in: b.dupacks_in - a.dupacks_in,
        undo_rto: b.undo_rto - a.undo_rto,
        undo_fast: b.undo_fast - a.undo_fast,
        dsack_in: b.dsack_in - a.dsack_in,
        bytes_out: b.bytes_out - a.bytes_out,
        ..ConnStats::default()
    }
}

/// Counters of a recovery: which trigger repaired the loss.
#[derive(Debug, PartialEq, Eq)]
struct Repair {
    fast: u64,
    tlp: u64,
    rto: u64,
    rto_events: u64,
    fast_recoveries: u64,
}

fn repair(d: &ConnStats) -> Repair {
    Repair {
        fast: d.retrans_fast,
        tlp: d.retrans_tlp,
        rto: d.retrans_rto,
        rto_events: d.rto_events,
        fast_recoveries: d.fast_recoveries,
    }
}

#[test]
fn single_loss_is_repaired_by_fast_retransmit() {
    let mut r = Rig::sack(true);
    let before = r.stats();
    let lost = r.seg(3);
    r.drop_tx(lost, 0);
    r.write(20 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(2));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 1,
            tlp: 0,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 1
        }
    );
    assert_eq!(d.retrans_segs, 1, "only the lost segment is resent");
    let txs = r.txs(lost);
    assert_eq!(txs.len(), 2);
    assert!(
        r.stats().sack_blocks_in > 0,
        "the loss was seen through SACK"
    );
    // repaired about one RTT after the loss, long before any timer
    let [t] = r.times_of(|s| s.retrans_fast)[..] else {
        panic!("one fast retransmission")
    };
    assert!(t - Instant::ZERO < Duration::from_millis(200), "at {t:?}");
}

#[test]
fn two_holes_are_repaired_by_sack_recovery_in_one_round_trip() {
    let mut r = Rig::sack(true);
    r.warm_up();
    let before = r.stats();
    let (a, b) = (r.seg(4), r.seg(11));
    r.drop_tx(a, 0);
    r.drop_tx(b, 0);
    let start = r.now();
    r.write(40 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(2));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 2,
            tlp: 0,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 1
        }
    );
    assert_eq!(d.retrans_segs, 2);
    assert_eq!((r.txs(a).len(), r.txs(b).len()), (2, 2));
    let times = r.times_of(|s| s.retrans_fast);
    assert_eq!(times.len(), 2);
    // both holes are resent within one round trip of each other, the first within about one
    // RTT of the loss (NewReno would need a round trip per hole)
    assert!(
        times[1] - times[0] < RTT,
        "retransmissions at {:?} and {:?}",
        times[0],
        times[1]
    );
    assert!(times[0] - start < RTT.saturating_mul(3), "{:?}", times[0]);
}

#[test]
fn lost_tail_is_repaired_by_the_tail_loss_probe() {
    let mut r = Rig::sack(true);
    r.warm_up();
    let before = r.stats();
    let last = r.seg(9);
    r.drop_tx(last, 0);
    r.write(10 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(2));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 0,
            tlp: 1,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 0
        }
    );
    assert_eq!(d.tlp_probes, 1);
    assert_eq!(r.txs(last).len(), 2);
}

#[test]
fn lost_lone_segment_is_repaired_by_the_tail_loss_probe() {
    // one segment in flight: the probe waits for a delayed ACK too (2 SRTT + 200 ms), which is
    // later than the RTO; RFC 8985 7.2 then sends the probe at the RTO's time instead
    let mut r = Rig::sack(true);
    r.warm_up();
    let before = r.stats();
    let only = r.seg(0);
    r.drop_tx(only, 0);
    r.write(100);
    r.deliver_all(Duration::from_secs(2));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 0,
            tlp: 1,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 0
        }
    );
    assert_eq!(r.txs(only).len(), 2);
}

#[test]
fn lost_retransmission_is_detected_by_rack() {
    let mut r = Rig::sack(true);
    r.warm_up();
    let before = r.stats();
    let lost = r.seg(5);
    r.drop_tx(lost, 0);
    r.drop_tx(lost, 1);
    r.write(60 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(3));
    let d = delta(&before, &r.stats());
    // segments sent after the first retransmission are SACKed while it is not: RACK marks the
    // retransmission lost and sends it again, still in the same recovery episode
    assert_eq!(
        repair(&d),
        Repair {
            fast: 2,
            tlp: 0,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 1
        }
    );
    let txs = r.txs(lost);
    assert_eq!(txs.len(), 3);
    assert!(txs[0].dropped && txs[1].dropped && !txs[2].dropped);
    assert!(txs
        .iter()
        .enumerate()
        .all(|(i, t)| t.nth == i as u32 && t.len == r.mss() as usize));
    let times = r.times_of(|s| s.retrans_fast);
    // the second retransmission follows the first by about one RTT (plus the reordering window)
    let gap = times[1] - times[0];
    assert!(gap >= RTT && gap < RTT.saturating_mul(2), "gap {gap:?}");
}

#[test]
fn lost_retransmission_without_later_data_is_repaired_by_the_rto() {
    // nothing is sent after the retransmission, so RACK has no later delivery to compare with
    // and the tail loss probe does not act during recovery: the RTO repairs it
    let mut r = Rig::sack(true);
    r.warm_up();
    let before = r.stats();
    let lost = r.seg(2);
    r.drop_tx(lost, 0);
    r.drop_tx(lost, 1);
    r.write(6 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(3));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 1,
            tlp: 0,
            rto: 1,
            rto_events: 1,
            fast_recoveries: 1
        }
    );
    assert_eq!(r.txs(lost).len(), 3);
}

#[test]
fn rto_doubles_on_each_timeout_up_to_the_maximum_and_resets_on_new_ack() {
    let rto_max = Duration::from_millis(1500);
    let mut r = Rig::new(tcp::Config {
        rto_max,
        ..tcp::Config::default()
    });
    r.warm_up();
    let base = r.info().rto;
    assert_eq!(r.info().backoff, 0);
    assert_eq!(base, Duration::from_millis(200), "RTO floor at 10 ms RTT");
    let before = r.stats();
    r.wire.borrow_mut().cut = true;
    r.write(1000);
    // each timeout doubles the RTO, capped at rto_max: 400, 800, 1500, 1500, 1500 ms
    let mut seen = Vec::new();
    for k in 1..=5u32 {
        assert!(r.run(Duration::from_secs(10), |r| r.stats().rto_events
            - before.rto_events
            == u64::from(k)));
        let i = r.info();
        assert_eq!(i.backoff, k);
        let want = base.saturating_mul(1 << k).min(rto_max);
        assert_eq!(i.rto, want, "after timeout {k}");
        seen.push(r.now());
    }
    // the timeouts themselves came that far apart (the wheel fires within one tick)
    let tick = HostConfig::new(CLIENT).timer_tick;
    for k in 1..seen.len() {
        let gap = seen[k] - seen[k - 1];
        let want = base.saturating_mul(1 << k).min(rto_max);
        assert!(
            gap >= want && gap <= want + tick,
            "gap {k}: {gap:?}, want {want:?}"
        );
    }
    // the link heals: the next retransmission is acknowledged and the backoff is gone
    r.wire.borrow_mut().cut = false;
    r.deliver_all(Duration::from_secs(5));
    let i = r.info();
    assert_eq!(i.backoff, 0);
    assert_eq!(i.rto, base);
    assert_eq!(r.stats().rto_events - before.rto_events, 6);
}

#[test]
fn newreno_single_loss_fast_retransmit_after_three_dupacks_with_limited_transmit() {
    let mut r = Rig::sack(false);
    r.warm_up();
    assert!(!r.net.host_ref(r.c).conn(r.client).unwrap().sack_enabled());
    let before = r.stats();
    let lost = r.seg(20);
    r.drop_tx(lost, 0);
    r.write(100 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(3));
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 1,
            tlp: 0,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 1
        }
    );
    assert_eq!(d.retrans_segs, 1);
    assert_eq!(d.tlp_probes, 0, "no tail loss probe without SACK");
    // walk the timeline from the first duplicate ACK: each of the first two sends one new
    // segment (limited transmit), the third triggers the fast retransmission
    let tl: Vec<(Instant, ConnStats)> = r
        .timeline
        .iter()
        .map(|(t, s)| (*t, delta(&before, s)))
        .collect();
    let first = tl.iter().position(|(_, s)| s.dupacks_in > 0).unwrap();
    let mss = u64::from(r.mss());
    let (_, s0) = tl[first - 1];
    let (_, s1) = tl[first];
    let (_, s2) = tl[first + 1];
    let (_, s3) = tl[first + 2];
    assert_eq!(
        (s1.dupacks_in, s2.dupacks_in, s3.dupacks_in),
        (1, 2, 3),
        "one duplicate ACK per step"
    );
    assert_eq!(
        s1.bytes_out - s0.bytes_out,
        mss,
        "limited transmit on dupack 1"
    );
    assert_eq!(
        s2.bytes_out - s1.bytes_out,
        mss,
        "limited transmit on dupack 2"
    );
    assert_eq!(s2.retrans_fast, 0);
    assert_eq!(s3.retrans_fast, 1, "fast retransmit on dupack 3");
    assert_eq!(s3.fast_recoveries, 1);
}

#[test]
fn retransmission_gives_up_like_linux_tcp_retries2() {
    // defaults: rto_max 60 s, give up 924.6 s after the first timeout (tcp_retries2 = 15)
    let mut r = Rig::new(tcp::Config::default());
    r.warm_up();
    let before = r.stats();
    r.wire.borrow_mut().cut = true;
    r.write(1000);
    assert!(r.run(Duration::from_secs(10), |r| r.stats().rto_events
        > before.rto_events));
    let first_timeout = r.now();
    let cfg = tcp::Config::default();
    let limit = cfg.retrans_timeout + cfg.rto_max + Duration::from_secs(1);
    let client = r.client;
    let died = r.run(limit, |r| {
        r.net
            .host_ref(r.c)
            .conn(client)
            .is_none_or(|c| c.error() == Some(tcp::Error::TimedOut))
    });
    assert!(
        died,
        "still retransmitting {limit:?} after the first timeout"
    );
    let elapsed = r.now() - first_timeout;
    // checked at each timeout, so it ends at the first one at or past the bound
    assert!(
        elapsed >= cfg.retrans_timeout && elapsed <= cfg.retrans_timeout + cfg.rto_max,
        "gave up {elapsed:?} after the first timeout"
    );
    // the schedule: RTO 200 ms backing off to the 60 s cap; every timeout before the bound
    // retransmits, the one at or past it gives up
    let (mut t, mut rto, mut timeouts) = (Duration::ZERO, Duration::from_millis(400), 1u64);
    while t + rto < cfg.retrans_timeout {
        t = t + rto;
        rto = rto.saturating_mul(2).min(cfg.rto_max);
        timeouts += 1;
    }
    assert_eq!(r.stats().rto_events - before.rto_events, timeouts);
}

#[test]
fn spurious_timeout_after_a_delay_spike_is_undone_by_timestamps() {
    // no SACK, so no tail loss probe: a flight delayed past the RTO meets the timer
    let mut r = Rig::sack(false);
    r.warm_up();
    let before = r.stats();
    let (cwnd, ssthresh) = (r.info().cwnd, r.info().ssthresh);
    let n = 10;
    assert!(cwnd >= n * r.mss() as usize, "one flight: {cwnd}");
    // every original 300 ms late, the timeout's retransmission of the first 200 ms late: the
    // originals arrive first, and their ACKs echo timestamps older than the retransmission's
    for i in 0..n as u32 {
        r.delay_tx(r.seg(i), 0, Duration::from_millis(300));
    }
    r.delay_tx(r.seg(0), 1, Duration::from_millis(200));
    r.write(n * r.mss() as usize);
    assert!(r.run(Duration::from_secs(2), |r| r.stats().rto_events
        > before.rto_events));
    assert_eq!(r.info().cwnd, r.mss() as usize);
    assert!(r.run(Duration::from_secs(2), |r| r.stats().undo_rto
        > before.undo_rto));
    // taken back on the first ACK of the originals: the window as before, not slow start
    let i = r.info();
    assert_eq!((i.cwnd, i.ssthresh), (cwnd, ssthresh));
    r.deliver_all(Duration::from_secs(2));
    let d = delta(&before, &r.stats());
    assert_eq!((d.rto_events, d.undo_rto, d.undo_fast), (1, 1, 0));
    assert_eq!(d.retrans_segs, 1, "only the timeout's retransmission");
    assert_eq!(r.info().ssthresh, ssthresh);
}

/// Segment 5 of 20 arrives 8 ms late, after the next ones: RACK (with SACK) marks it lost and
/// resends it before the original arrives. Returns the counters of the transfer and the
/// ssthresh before it.
fn reordered(timestamps: bool) -> (Rig, ConnStats, usize) {
    let mut r = Rig::new(tcp::Config {
        timestamps,
        ..tcp::Config::default()
    });
    r.warm_up();
    let before = r.stats();
    let ssthresh = r.info().ssthresh;
    r.delay_tx(r.seg(5), 0, Duration::from_millis(8));
    r.write(20 * r.mss() as usize);
    r.deliver_all(Duration::from_secs(2));
    // the retransmission arrives after the ACK of everything; so does the answer to it
    r.run(RTT.saturating_mul(2), |_| false);
    let d = delta(&before, &r.stats());
    assert_eq!(
        repair(&d),
        Repair {
            fast: 1,
            tlp: 0,
            rto: 0,
            rto_events: 0,
            fast_recoveries: 1
        }
    );
    (r, d, ssthresh)
}

#[test]
fn spurious_fast_retransmit_after_reordering_is_undone_by_dsack() {
    let (r, d, ssthresh) = reordered(false);
    // the retransmission arrived as a duplicate, reported by D-SACK: the only retransmission
    // of the episode was not needed
    assert_eq!((d.dsack_in, d.undo_fast, d.undo_rto), (1, 1, 0));
    assert_eq!(r.info().ssthresh, ssthresh);
}

#[test]
fn spurious_fast_retransmit_after_reordering_is_undone_by_timestamps() {
    // the ACK of the late original echoes its TSval, older than the retransmission's: undone
    // at once (the D-SACK that follows finds nothing left to undo)
    let (r, d, ssthresh) = reordered(true);
    assert_eq!((d.undo_fast, d.undo_rto), (1, 0));
    assert_eq!(r.info().ssthresh, ssthresh);
}
