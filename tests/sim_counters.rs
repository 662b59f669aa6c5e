//! The TCP counters under Linux's names (`host::TcpCounters`, what `Stack::stats` and
//! `xdp-tcp stat` report) against what each test caused, exactly: a tap on each link of the
//! simulator counts the frames each host put on the wire (SYNs, RSTs, data segments by
//! sequence, repeats of a sequence), scripted filters drop or duplicate chosen segments, and
//! the counters must equal the tap's figures.

mod common;

use std::cell::RefCell;
use std::net::SocketAddrV4;
use std::rc::Rc;

use common::sim_pair::{Pair, CLIENT, PORT, SERVER};
use xdp_tcp::host::{ConnId, Host, TcpCounters};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::tcp::{self, State};
use xdp_tcp::time::Duration;
use xdp_tcp::wire::{IpProtocol, Ipv4Packet, TcpFlags, TcpPacket, TcpRepr};

/// What one host put on its link, as the link's filter saw it (before any drop).
#[derive(Default)]
struct Tap {
    frames: u64,
    syns: u64,
    rsts: u64,
    /// Every data segment: (sequence number, length, dropped).
    data: Vec<(u32, usize, bool)>,
    /// Data segments (by index into `data`) to drop on their first transmission, and to
    /// duplicate.
    drop_nth: Vec<usize>,
    dup_nth: Vec<usize>,
    /// How many transmissions of a `drop_nth` segment are dropped (1 unless set).
    drop_times: usize,
    /// The latest frame, for replay.
    last: Vec<u8>,
}

impl Tap {
    fn see(&mut self, frame: &[u8]) -> Verdict {
        self.frames += 1;
        self.last = frame.to_vec();
        let ip = Ipv4Packet::new_checked(frame).expect("the hosts send IPv4");
        assert_eq!(ip.protocol(), IpProtocol::Tcp);
        let t = TcpPacket::new_checked(ip.payload()).expect("and TCP");
        self.syns += u64::from(t.flags().syn());
        self.rsts += u64::from(t.flags().rst());
        let len = t.payload().len();
        if len == 0 {
            return Verdict::Pass;
        }
        let seq = t.seq_number().0;
        let first = self.data.iter().position(|d| d.0 == seq);
        let nth = first.unwrap_or(self.data.len());
        let sent = self.data.iter().filter(|d| d.0 == seq).count();
        let drop = self.drop_nth.contains(&nth) && sent < self.drop_times.max(1);
        let first = first.is_none();
        self.data.push((seq, len, drop));
        if drop {
            Verdict::Drop
        } else if first && self.dup_nth.contains(&nth) {
            Verdict::Duplicate
        } else {
            Verdict::Pass
        }
    }

    fn dropped(&self) -> u64 {
        self.data.iter().filter(|d| d.2).count() as u64
    }

    /// Transmissions of a sequence number already sent.
    fn repeats(&self) -> u64 {
        let mut seen = std::collections::HashSet::new();
        self.data.iter().filter(|d| !seen.insert(d.0)).count() as u64
    }
}

struct Rig {
    pair: Pair,
    to_server: Rc<RefCell<Tap>>,
    to_client: Rc<RefCell<Tap>>,
}

impl Rig {
    fn new(cfg: tcp::Config, setup: impl FnOnce(&mut Tap, &mut Tap)) -> Rig {
        let (mut a, mut b) = (Tap::default(), Tap::default());
        setup(&mut a, &mut b);
        let to_server = Rc::new(RefCell::new(a));
        let to_client = Rc::new(RefCell::new(b));
        let (ts, tc) = (to_server.clone(), to_client.clone());
        let pair = Pair::builder(cfg)
            .server(|h| h.tcp.secret = tcp::Secret::from_seed(0x5eed))
            .link(LinkConfig::ideal(Duration::from_millis(5)).with_bandwidth(100_000_000))
            .filter_to_server(move |f: &[u8]| ts.borrow_mut().see(f))
            .filter_to_client(move |f: &[u8]| tc.borrow_mut().see(f))
            .build();
        Rig {
            pair,
            to_server,
            to_client,
        }
    }

    fn counters(&mut self, host: usize) -> TcpCounters {
        TcpCounters::of(self.pair.net.host(host))
    }

    /// The client sends `data` on `c`; the server reads it all from `s`.
    fn send_all(&mut self, c: ConnId, s: ConnId, data: &[u8]) {
        let (ci, si) = (self.pair.c, self.pair.s);
        let (mut sent, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 65536];
        let done = self.pair.run_until(Duration::from_secs(30), |net| {
            if sent < data.len() {
                sent += net.host(ci).send(c, &data[sent..]).unwrap_or(0);
            }
            while let Ok(n) = net.host(si).recv(s, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            got.len() == data.len()
                && net
                    .host_ref(ci)
                    .conn(c)
                    .is_some_and(|x| x.send_queue() == 0)
        });
        assert!(done, "the transfer finished");
        assert_eq!(got, data);
    }

    /// Runs until both hosts freed every connection and the links are idle.
    fn settle(&mut self) {
        let (c, s) = (self.pair.c, self.pair.s);
        assert!(self.pair.run_until(Duration::from_secs(600), |net| {
            net.host_ref(c).conn_count() == 0 && net.host_ref(s).conn_count() == 0
        }));
        assert!((0..1_000_000).any(|_| !self.pair.net.step()), "links idle");
    }

    /// Each host's segment counters against the taps: what it sent is what its link saw, and
    /// what it received is what the other link delivered (seen less dropped plus duplicated).
    fn assert_segments_match_taps(&mut self) {
        let (c, s) = (self.pair.c, self.pair.s);
        let cc = self.counters(c);
        let sc = self.counters(s);
        let (up, down) = (self.to_server.borrow(), self.to_client.borrow());
        let dup_up = up.dup_nth.len() as u64;
        let dup_down = down.dup_nth.len() as u64;
        // Linux's OutSegs leaves retransmissions to RetransSegs
        assert_eq!(cc.out_segs, up.frames - up.repeats(), "client TcpOutSegs");
        assert_eq!(
            sc.out_segs,
            down.frames - down.repeats(),
            "server TcpOutSegs"
        );
        assert_eq!(
            sc.in_segs,
            up.frames - up.dropped() + dup_up,
            "server TcpInSegs"
        );
        assert_eq!(
            cc.in_segs,
            down.frames - down.dropped() + dup_down,
            "client TcpInSegs"
        );
        assert_eq!(cc.retrans_segs, up.repeats(), "client TcpRetransSegs");
        assert_eq!(sc.retrans_segs, down.repeats(), "server TcpRetransSegs");
        assert_eq!(cc.out_rsts, up.rsts, "client TcpOutRsts");
        assert_eq!(sc.out_rsts, down.rsts, "server TcpOutRsts");
        assert_eq!((cc.in_errs, sc.in_errs), (0, 0), "TcpInErrs");
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 251) as u8).collect()
}

/// Payload of a full segment: the 1460-byte MSS less the timestamps option.
const MSS: usize = 1448;

/// One data segment of twenty lost on the way to the server, with SACK: one fast retransmit in
/// one SACK recovery, the segments after the hole queued out of order, no timeout; then a clean
/// close. Every segment counter equals what the taps saw.
#[test]
fn one_loss_with_sack_counts_one_fast_retransmit_and_the_out_of_order_segments() {
    const HOLE: usize = 3;
    let mut rig = Rig::new(tcp::Config::default(), |up, _| up.drop_nth = vec![HOLE]);
    let (c, s) = rig.pair.connect();
    let data = pattern(20 * MSS);
    rig.send_all(c, s, &data);

    let (ci, si) = (rig.pair.c, rig.pair.s);
    let cc = rig.counters(ci);
    let sc = rig.counters(si);
    let up = rig.to_server.borrow();
    let hole_seq = up.data[HOLE].0;
    let retrans_at = up
        .data
        .iter()
        .rposition(|d| d.0 == hole_seq)
        .expect("retransmitted");
    // delivered after the hole and before its retransmission: queued out of order
    let ooo = up.data[HOLE + 1..retrans_at]
        .iter()
        .filter(|d| !d.2)
        .count() as u64;
    assert!(
        ooo >= 3,
        "enough segments behind the hole for SACK recovery: {ooo}"
    );
    assert_eq!(up.repeats(), 1);
    drop(up);
    assert_eq!((cc.active_opens, cc.passive_opens), (1, 0));
    assert_eq!((sc.active_opens, sc.passive_opens), (0, 1));
    assert_eq!((cc.curr_estab, sc.curr_estab), (1, 1));
    assert_eq!(cc.retrans_segs, 1, "client TcpRetransSegs");
    assert_eq!(cc.fast_retrans, 1, "TcpExtTCPFastRetrans");
    assert_eq!(cc.sack_recovery, 1, "TcpExtTCPSackRecovery");
    assert_eq!(cc.reno_recovery, 0, "TcpExtTCPRenoRecovery");
    assert_eq!((cc.timeouts, cc.loss_probes), (0, 0), "no RTO, no TLP");
    assert_eq!(sc.ofo_queue, ooo, "server TcpExtTCPOFOQueue");
    assert_eq!((cc.dsack_recv, sc.dsack_sent), (0, 0));
    let info = rig.pair.net.host_ref(ci).conn(c).unwrap().info();
    assert_eq!(info.bytes_acked, data.len() as u64);
    let hole_len = rig.to_server.borrow().data[HOLE].1;
    assert_eq!(
        info.bytes_sent,
        (data.len() + hole_len) as u64,
        "one segment sent twice"
    );
    assert_eq!(info.total_retrans, 1);
    assert!(info.delivery_rate > 0);

    rig.pair.net.host(ci).close(c);
    rig.pair.net.host(si).close(s);
    rig.settle();
    rig.assert_segments_match_taps();
    let (cc, sc) = (rig.counters(ci), rig.counters(si));
    assert_eq!((cc.curr_estab, sc.curr_estab), (0, 0));
    assert_eq!((cc.estab_resets, sc.estab_resets), (0, 0));
    assert_eq!((cc.attempt_fails, sc.attempt_fails), (0, 0));
    assert_eq!((cc.out_rsts, sc.out_rsts), (0, 0));
}

/// The same loss without SACK: NewReno's fast retransmit, counted as a Reno recovery.
#[test]
fn one_loss_without_sack_counts_a_reno_recovery() {
    let cfg = tcp::Config {
        sack: false,
        ..tcp::Config::default()
    };
    let mut rig = Rig::new(cfg, |up, _| up.drop_nth = vec![2]);
    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(20 * MSS));
    let cc = rig.counters(rig.pair.c);
    assert_eq!(cc.retrans_segs, 1);
    assert_eq!((cc.reno_recovery, cc.sack_recovery), (1, 0));
    assert_eq!(cc.fast_retrans, 1);
    assert_eq!(cc.timeouts, 0);
    rig.assert_segments_match_taps();
}

/// The last segment of a flight lost: no later segment can raise duplicate ACKs, so the tail
/// loss probe repairs it (TcpExtTCPLossProbes), without a timeout.
#[test]
fn a_lost_tail_counts_one_loss_probe() {
    let mut rig = Rig::new(tcp::Config::default(), |up, _| up.drop_nth = vec![4]);
    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(5 * MSS));
    let cc = rig.counters(rig.pair.c);
    assert_eq!(cc.loss_probes, 1, "TcpExtTCPLossProbes");
    assert_eq!(cc.retrans_segs, 1);
    assert_eq!(cc.timeouts, 0);
    rig.assert_segments_match_taps();
}

/// The lost tail's probe lost too: the retransmission timeout repairs it
/// (TcpExtTCPTimeouts), after one loss probe; two retransmissions of one segment.
#[test]
fn a_lost_tail_and_probe_count_one_timeout() {
    let mut rig = Rig::new(tcp::Config::default(), |up, _| {
        up.drop_nth = vec![4];
        up.drop_times = 2;
    });
    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(5 * MSS));
    let cc = rig.counters(rig.pair.c);
    assert_eq!(cc.loss_probes, 1, "TcpExtTCPLossProbes");
    assert_eq!(cc.timeouts, 1, "TcpExtTCPTimeouts");
    assert_eq!(cc.retrans_segs, 2);
    assert_eq!(cc.fast_retrans, 0);
    rig.assert_segments_match_taps();
}

/// A data segment the link delivers twice: the receiver reports it with one D-SACK, which the
/// sender counts (TcpExtTCPDSACKRecv); nothing is retransmitted.
#[test]
fn a_duplicated_segment_counts_one_dsack_each_side() {
    let mut rig = Rig::new(tcp::Config::default(), |up, _| up.dup_nth = vec![1]);
    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(3 * MSS));
    let cc = rig.counters(rig.pair.c);
    let sc = rig.counters(rig.pair.s);
    assert_eq!(sc.dsack_sent, 1, "one D-SACK for the one duplicate");
    assert_eq!(cc.dsack_recv, 1, "TcpExtTCPDSACKRecv");
    assert_eq!(cc.retrans_segs, 0);
    rig.assert_segments_match_taps();
}

/// A connect to a port nobody listens on: the server answers with one RST (TcpOutRsts), the
/// client's attempt fails (TcpAttemptFails); an established connection the client aborts
/// resets both ends (TcpEstabResets on each, one more RST from the client).
#[test]
fn refused_connect_and_abort_count_resets_and_failed_attempts() {
    let mut rig = Rig::new(tcp::Config::default(), |_, _| {});
    let (ci, si) = (rig.pair.c, rig.pair.s);
    let now = rig.pair.net.now();
    let refused = rig
        .pair
        .net
        .host(ci)
        .connect(now, SocketAddrV4::new(SERVER, PORT + 1))
        .unwrap();
    rig.pair.run_until(Duration::from_secs(1), |net| {
        net.host_ref(ci)
            .conn(refused)
            .is_none_or(|x| x.state() == State::Closed)
    });
    let (cc, sc) = (rig.counters(ci), rig.counters(si));
    assert_eq!((cc.active_opens, cc.attempt_fails), (1, 1));
    assert_eq!((sc.out_rsts, cc.in_rsts), (1, 1));
    assert_eq!(sc.passive_opens, 0);
    rig.pair.net.host(ci).close(refused);

    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(2 * MSS));
    rig.pair.net.host(ci).abort(c);
    // the RST must find the server ESTABLISHED (in FIN-WAIT-1 Linux counts no reset either)
    assert!(rig.pair.run_until(Duration::from_secs(1), |net| {
        net.host_ref(si)
            .conn(s)
            .is_some_and(|x| x.state() == State::Closed)
    }));
    rig.pair.net.host(si).close(s);
    rig.settle();
    rig.assert_segments_match_taps();
    let (cc, sc) = (rig.counters(ci), rig.counters(si));
    assert_eq!((cc.estab_resets, sc.estab_resets), (1, 1), "TcpEstabResets");
    assert_eq!((cc.out_rsts, sc.out_rsts), (1, 1), "TcpOutRsts");
    assert_eq!((cc.in_rsts, sc.in_rsts), (1, 1), "XdpTcpInRsts");
    assert_eq!((cc.attempt_fails, sc.attempt_fails), (1, 0));
    assert_eq!((cc.active_opens, sc.passive_opens), (2, 1));
}

/// A listener with a backlog of one that nobody accepts from: the first SYN starts a
/// connection (TcpPassiveOpens 1), every later SYN (retransmissions included) is a listen
/// drop, and a listen overflow once the accept queue holds the first, exactly as many as
/// reached the server. SYN cookies off: with them, later SYNs get
/// a cookie instead (counted in `tests/syncookies.rs`).
#[test]
fn syns_past_a_full_backlog_count_as_listen_overflows() {
    let cfg = tcp::Config {
        syncookies: false,
        ..tcp::Config::default()
    };
    let mut rig = Rig::new(cfg, |_, _| {});
    let (ci, si) = (rig.pair.c, rig.pair.s);
    rig.pair.net.host(si).listen(PORT, 1);
    let now = rig.pair.net.now();
    for _ in 0..3 {
        rig.pair
            .net
            .host(ci)
            .connect(now, SocketAddrV4::new(SERVER, PORT))
            .unwrap();
    }
    rig.pair.run_until(Duration::from_secs(5), |_| false);
    let sc = rig.counters(si);
    let syns = rig.to_server.borrow().syns;
    assert_eq!(sc.passive_opens, 1);
    // as Linux: the two SYNs that came with the first find its SYN queue full (ListenDrops
    // only, Linux's TCPReqQFullDrop); every later one finds the accept queue full (both)
    assert_eq!(sc.listen_drops, syns - 1, "every SYN after the first");
    assert_eq!(
        sc.listen_overflows,
        syns - 3,
        "every SYN after the handshake"
    );
    assert!(syns > 3, "SYNs were retransmitted: {syns}");
}

/// Segments replayed into an established connection by the test: an old duplicate (its
/// timestamp older than the latest) is a PAWS drop; two SYNs inside the window get one
/// challenge ACK, the second held back by the rate limit.
#[test]
fn replayed_old_segment_and_in_window_syns_count_paws_and_challenge_acks() {
    let mut rig = Rig::new(tcp::Config::default(), |_, _| {});
    let (ci, si) = (rig.pair.c, rig.pair.s);
    let (c, s) = rig.pair.connect();
    rig.send_all(c, s, &pattern(MSS));
    let old = rig.to_server.borrow().last.clone();
    // time passes and the timestamps move on
    rig.pair.run_until(Duration::from_millis(200), |_| false);
    rig.send_all(c, s, &pattern(MSS));
    let now = rig.pair.net.now();
    let before = rig.counters(si);
    let server: &mut Host = rig.pair.net.host(si);
    server.handle_ipv4(now, &old);
    let after = rig.counters(si);
    assert_eq!(after.paws_estab - before.paws_estab, 1, "TcpExtPAWSEstab");
    assert_eq!(
        after.in_segs - before.in_segs,
        1,
        "TcpInSegs counts the replay"
    );
    // past the rate limit of answers to invalid segments, which the PAWS drop used
    rig.pair.run_until(Duration::from_secs(1), |_| false);
    let now = rig.pair.net.now();
    let before = rig.counters(si);

    let latest = rig.to_server.borrow().last.clone();
    let ip = Ipv4Packet::new_checked(&latest[..]).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    let mut syn = TcpRepr::parse(&t, CLIENT, SERVER, &Default::default()).unwrap();
    // at the next sequence number the server expects: inside its window
    syn.seq += syn.payload.len();
    syn.flags = TcpFlags::SYN;
    syn.payload = &[];
    let server: &mut Host = rig.pair.net.host(si);
    server.handle_segment(now, CLIENT, &syn);
    server.handle_segment(now, CLIENT, &syn);
    let after = rig.counters(si);
    assert_eq!(
        after.challenge_ack - before.challenge_ack,
        1,
        "TcpExtTCPChallengeACK"
    );
    assert_eq!(
        after.ack_skipped_challenge - before.ack_skipped_challenge,
        1,
        "TcpExtTCPACKSkippedChallenge"
    );
    assert_eq!(
        after.in_segs - before.in_segs,
        2,
        "TcpInSegs counts both SYNs"
    );
    assert_eq!(
        after.passive_opens, before.passive_opens,
        "no new connection"
    );
    let _ = ci;
}
