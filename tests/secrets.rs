//! The secrets behind ISNs and timestamps (RFC 6528, RFC 7323 5.4): drawn from the OS for every
//! config built without one, never the same twice, and such that the ISN and TSval one
//! connection shows (captured from its SYN on the wire) do not predict another's.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::{Host, HostConfig};
use xdp_tcp::tcp::{self, Secret};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// (ISN, TSval) of the SYN `h` sends next, parsed from the packet it wrote.
fn capture_syn(h: &mut Host, now: Instant) -> (u32, u32) {
    let mut buf = [0u8; 2048];
    let tx = h.poll_transmit(now, &mut buf).expect("a SYN");
    let caps = ChecksumCaps::default();
    let ip = Ipv4Packet::new_checked(&buf[..tx.len]).unwrap();
    let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    let r = TcpRepr::parse(&t, ipr.src_addr, ipr.dst_addr, &caps).unwrap();
    assert!(r.flags.syn());
    (r.seq.0, r.options.timestamp.expect("timestamps on").0)
}

/// Opens `n` connections from one host, each to another peer port, `gap` apart, capturing
/// each SYN: (when, ISN, TSval).
fn open_many(h: &mut Host, n: u16, gap: Duration) -> Vec<(Instant, u32, u32)> {
    let mut now = Instant::from_secs(10);
    (0..n)
        .map(|i| {
            let peer = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2 + (i % 3) as u8), 5000 + i);
            h.connect(now, peer).unwrap();
            let (isn, ts) = capture_syn(h, now);
            let r = (now, isn, ts);
            now += gap;
            r
        })
        .collect()
}

#[test]
fn configs_and_hosts_never_share_a_secret() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let s = HostConfig::new(US).tcp.secret;
        assert!(seen.insert(s.words()), "a secret came twice");
        assert_ne!(s.words(), [0, 0]);
    }
    // two hosts started the same way, asked for the same 4-tuple at the same instant, give
    // different ISNs and timestamp clocks
    let peer = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
    let now = Instant::from_secs(1);
    let mut a = Host::new(HostConfig::new(US));
    let mut b = Host::new(HostConfig::new(US));
    a.connect_from_port(now, 40000, peer).unwrap();
    b.connect_from_port(now, 40000, peer).unwrap();
    let (ia, ta) = capture_syn(&mut a, now);
    let (ib, tb) = capture_syn(&mut b, now);
    assert_ne!(ia, ib);
    assert_ne!(ta, tb);
    // a host keeps its own secret when given a socket's config with another one
    let mut c = Host::new(HostConfig::new(US));
    let kept = c.config().tcp.secret;
    c.set_tcp_config(tcp::Config::default());
    assert_eq!(c.config().tcp.secret, kept);
}

/// How far `actual` is from `predicted`, in sequence space.
fn miss(actual: u32, predicted: u32) -> u32 {
    let d = actual.wrapping_sub(predicted);
    d.min(d.wrapping_neg())
}

fn check_unpredictable(h: &mut Host, threshold: u32) {
    for gap in [
        Duration::ZERO,
        Duration::from_micros(40),
        Duration::from_millis(7),
    ] {
        let caps = open_many(h, 300, gap);
        for w in caps.windows(2) {
            let ((t0, isn0, ts0), (t1, isn1, ts1)) = (w[0], w[1]);
            let dt = t1 - t0;
            // if ISNs were a clock, the next one would be this one plus 4 µs ticks; if TSvals
            // were one clock, plus milliseconds
            let isn_pred = isn0.wrapping_add((dt.as_micros() / 4) as u32);
            let ts_pred = ts0.wrapping_add(dt.as_millis() as u32);
            assert!(
                miss(isn1, isn_pred) > threshold,
                "ISN predicted: {isn0} -> {isn1}"
            );
            assert!(
                miss(ts1, ts_pred) > threshold,
                "TSval predicted: {ts0} -> {ts1}"
            );
            // nor does one's ISN give its TSval, nor one connection's relation another's
            assert!(miss(ts1.wrapping_sub(isn1), ts0.wrapping_sub(isn0)) > threshold);
        }
        // the hash terms spread: each of the 32 bits is set in 35-65% of the ISNs (less the
        // clock's share: all opened within one instant when the gap is zero)
        if gap == Duration::ZERO {
            for bit in 0..32 {
                let ones = caps.iter().filter(|c| c.1 >> bit & 1 == 1).count();
                assert!((105..=195).contains(&ones), "ISN bit {bit}: {ones} of 300");
                let ones = caps.iter().filter(|c| c.2 >> bit & 1 == 1).count();
                assert!(
                    (105..=195).contains(&ones),
                    "TSval bit {bit}: {ones} of 300"
                );
            }
        }
    }
}

#[test]
fn one_connections_isn_and_tsval_do_not_predict_anothers() {
    // fixed secrets: the same verdict on every run
    for seed in 1..=8 {
        let mut cfg = HostConfig::new(US);
        cfg.tcp.secret = Secret::from_seed(seed);
        check_unpredictable(&mut Host::new(cfg), 1 << 8);
    }
    // and the OS's: 2700 guesses each land within 2^8 of a uniform value once in 2^12 runs
    check_unpredictable(&mut Host::new(HostConfig::new(US)), 1 << 8);
}

#[test]
fn rekeying_changes_new_isns_and_spares_live_connections() {
    let mut cfg = HostConfig::new(US);
    cfg.tcp.secret = Secret::from_seed(77);
    cfg.tcp.secret_rekey = Duration::from_secs(60);
    let mut h = Host::new(cfg);
    let peer = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
    let t0 = Instant::from_secs(30);
    let live = h.connect_from_port(t0, 40001, peer).unwrap();
    let (isn_live, _) = capture_syn(&mut h, t0);
    // within one key period the clock term alone moves a tuple's ISN
    let id = h.connect_from_port(t0, 40002, peer).unwrap();
    let (a, _) = capture_syn(&mut h, t0);
    h.abort(id);
    while h.poll_transmit(t0, &mut [0u8; 2048]).is_some() {}
    let t1 = t0 + Duration::from_secs(10);
    h.connect_from_port(t1, 40002, peer).unwrap();
    let (b, _) = capture_syn(&mut h, t1);
    assert_eq!(b.wrapping_sub(a), 2_500_000);
    // after the key changed, it moves anywhere
    let id = h.lookup(peer, 40002).unwrap();
    h.abort(id);
    while h.poll_transmit(t1, &mut [0u8; 2048]).is_some() {}
    let t2 = t0 + Duration::from_secs(40);
    h.connect_from_port(t2, 40002, peer).unwrap();
    let (c, _) = capture_syn(&mut h, t2);
    assert!(miss(c, a.wrapping_add(10_000_000)) > 1 << 16);
    // the connection opened before the change kept its ISN
    assert_eq!(h.conn(live).unwrap().iss().0, isn_live);
}
