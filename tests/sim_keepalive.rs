//! Keep-alive on the simulator with small parameters (idle 10 s, interval 2 s, 3 probes) on the
//! client only: how a dead peer, a live peer, a peer that forgot the connection and an ICMP
//! error each end (or do not end) the connection, and the error the application sees.

mod common;

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::rc::Rc;

use common::sim_pair::{Pair, CLIENT};
use xdp_tcp::host::{ConnId, HostConfig};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp::{ConnStats, Error, Event, KeepAlive, State};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::icmpv4::DstUnreachable;
use xdp_tcp::wire::{
    ChecksumCaps, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket,
};

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const KA: KeepAlive = KeepAlive {
    idle: Duration::from_secs(10),
    interval: Duration::from_secs(2),
    count: 3,
};
/// 5 ms each way, no serialization delay: times below are exact.
const RTT: Duration = Duration::from_millis(10);

struct Rig {
    net: Network,
    c: usize,
    s: usize,
    client: ConnId,
    server: ConnId,
    /// Drop everything, both ways.
    cut: Rc<Cell<bool>>,
    /// Drop RSTs from the server.
    drop_rst: Rc<Cell<bool>>,
    /// Drop everything to the client (the server's answers), not what the client sends.
    deaf: Rc<Cell<bool>>,
    /// RSTs that reached the server.
    rst_to_server: Rc<Cell<u32>>,
    /// When the client last received a segment.
    last_rx: Instant,
    /// Times at which the client sent each keep-alive probe.
    probes: Vec<Instant>,
    stats: ConnStats,
    /// The first error event of the client's connection, with its time.
    error: Option<(Instant, Error)>,
}

impl Rig {
    fn new() -> Rig {
        let cut = Rc::new(Cell::new(false));
        let drop_rst = Rc::new(Cell::new(false));
        let deaf = Rc::new(Cell::new(false));
        let rst_to_server = Rc::new(Cell::new(0));
        let (k, rsts) = (cut.clone(), rst_to_server.clone());
        let (k2, r, d) = (cut.clone(), drop_rst.clone(), deaf.clone());
        let mut pair = Pair::builder(Default::default())
            .server(|h| h.tcp.secret = h.tcp.secret.derive(b"77"))
            .link(LinkConfig::ideal(RTT_HALF))
            .seed(3)
            .filter_to_server(move |f: &[u8]| {
                if k.get() {
                    Verdict::Drop
                } else {
                    if is_rst(f) {
                        rsts.set(rsts.get() + 1);
                    }
                    Verdict::Pass
                }
            })
            .filter_to_client(move |f: &[u8]| {
                if k2.get() || d.get() || (is_rst(f) && r.get()) {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                }
            })
            .build();
        let (client, server) = pair.connect();
        let Pair { mut net, c, s, .. } = pair;
        let now = net.now();
        net.host(c)
            .with_conn(client, |conn| conn.set_keepalive(now, Some(KA)));
        let mut r = Rig {
            net,
            c,
            s,
            client,
            server,
            cut,
            drop_rst,
            deaf,
            rst_to_server,
            last_rx: now,
            probes: Vec::new(),
            stats: ConnStats::default(),
            error: None,
        };
        // some traffic both ways, then quiet
        r.net.host(c).send(client, b"ping").unwrap();
        r.run(Duration::from_millis(100));
        let mut buf = [0u8; 16];
        assert_eq!(r.net.host(s).recv(r.server, &mut buf), Ok(4));
        r.net.host(s).send(r.server, b"pong").unwrap();
        r.run(Duration::from_millis(200));
        assert_eq!(r.net.host(c).recv(client, &mut buf), Ok(4));
        r
    }

    fn conn_stats(&self) -> Option<ConnStats> {
        self.net
            .host_ref(self.c)
            .conn(self.client)
            .map(|c| c.stats())
    }

    fn state(&self) -> State {
        self.net.host_ref(self.c).conn(self.client).unwrap().state()
    }

    fn observe(&mut self) {
        let now = self.net.now();
        if let Some(st) = self.conn_stats() {
            if st.segs_in != self.stats.segs_in {
                self.last_rx = now;
            }
            for _ in self.stats.keepalive_probes..st.keepalive_probes {
                self.probes.push(now);
            }
            self.stats = st;
        }
        while let Some((id, ev)) = self.net.host(self.c).poll_event() {
            if let (true, Event::Error(e), None) = (id == self.client, ev, self.error) {
                self.error = Some((now, e));
            }
        }
    }

    /// Steps for `d` of simulated time, or until the client's connection reports an error.
    fn run(&mut self, d: Duration) {
        let end = self.net.now() + d;
        loop {
            self.observe();
            if self.error.is_some() || self.net.now() >= end {
                return;
            }
            let next = self.net.next_event().map_or(end, |t| t.min(end));
            self.net.flush();
            self.net.advance_to(next);
        }
    }

    fn take_error(&mut self) -> Option<Error> {
        self.net
            .host(self.c)
            .with_conn(self.client, |c| c.take_error())
            .flatten()
    }
}

/// Whether the IPv4 frame `f` carries a TCP RST.
fn is_rst(f: &[u8]) -> bool {
    Ipv4Packet::new_checked(f)
        .ok()
        .and_then(|ip| TcpPacket::new_checked(ip.payload()).ok())
        .is_some_and(|t| t.flags().rst())
}

const RTT_HALF: Duration = Duration::from_millis(5);

fn tick() -> Duration {
    HostConfig::new(CLIENT).timer_tick
}

#[track_caller]
fn assert_near(got: Instant, want: Instant, what: &str) {
    assert!(
        got >= want && got - want <= tick(),
        "{what}: at {got:?}, want {want:?} (within one tick)"
    );
}

#[test]
fn silent_dead_peer_times_out_after_idle_plus_count_intervals() {
    let mut r = Rig::new();
    r.cut.set(true);
    let last = r.last_rx;
    r.run(Duration::from_secs(60));
    let (at, e) = r.error.expect("the dead peer was detected");
    assert_eq!(e, Error::TimedOut);
    // idle + interval * count after the last segment heard from the peer
    assert_near(
        at,
        last + KA.idle + KA.interval.saturating_mul(3),
        "timeout",
    );
    assert_eq!(r.probes.len(), 3);
    for (i, p) in r.probes.iter().enumerate() {
        let want = last + KA.idle + KA.interval.saturating_mul(i as u64);
        assert_near(*p, want, &format!("probe {i}"));
    }
    assert_eq!(r.stats.keepalive_probes, 3);
    assert_eq!(r.state(), State::Closed);
    // reads and writes fail with it until the application takes it (SO_ERROR)
    let mut buf = [0u8; 4];
    assert_eq!(
        r.net.host(r.c).send(r.client, b"late"),
        Err(Error::TimedOut)
    );
    assert_eq!(
        r.net.host(r.c).recv(r.client, &mut buf),
        Err(Error::TimedOut)
    );
    assert_eq!(r.take_error(), Some(Error::TimedOut));
}

#[test]
fn live_peer_answers_probes_through_ten_idle_periods() {
    let mut r = Rig::new();
    let start = r.last_rx;
    let segs_before = r.stats.segs_in;
    r.run(Duration::from_secs(10 * 10 + 5));
    assert_eq!(r.error, None);
    assert_eq!(r.state(), State::Established);
    assert_eq!(r.probes.len(), 10);
    assert_eq!(r.stats.keepalive_probes, 10);
    // each probe's answer restarts the idle period: probe k goes out k idle periods and k - 1
    // round trips after the start
    for (k, p) in r.probes.iter().enumerate() {
        let want = start + KA.idle.saturating_mul(k as u64 + 1) + RTT.saturating_mul(k as u64);
        assert_near(*p, want, &format!("probe {k}"));
    }
    assert_eq!(
        r.stats.segs_in - segs_before,
        10,
        "every probe was answered"
    );
    assert_eq!(r.take_error(), None);
    // and the connection still carries data
    r.net.host(r.c).send(r.client, b"still here").unwrap();
    r.run(Duration::from_millis(100));
    let mut buf = [0u8; 16];
    assert_eq!(r.net.host(r.s).recv(r.server, &mut buf), Ok(10));
}

#[test]
fn rst_answer_to_a_probe_resets_at_once() {
    let mut r = Rig::new();
    // the server forgets the connection; its RST is lost, so only our probe can find out
    r.drop_rst.set(true);
    r.net.host(r.s).abort(r.server);
    r.run(Duration::from_millis(50));
    assert_eq!(r.net.host_ref(r.s).conn_count(), 0);
    r.drop_rst.set(false);
    r.run(Duration::from_secs(60));
    let (at, e) = r.error.expect("the reset was reported");
    assert_eq!(e, Error::Reset);
    assert_eq!(r.probes.len(), 1, "the first probe's answer ends it");
    // the server host answers the unknown 4-tuple at once: one round trip after the probe
    assert_eq!(at, r.probes[0] + RTT);
    assert_eq!(r.state(), State::Closed);
    assert_eq!(r.take_error(), Some(Error::Reset));
}

/// An ICMP host-unreachable from a router, quoting a segment of ours with sequence number
/// `seq`.
fn icmp_unreachable(r: &Rig, seq: u32) -> Vec<u8> {
    let conn = r.net.host_ref(r.c).conn(r.client).unwrap();
    let (local, remote) = (conn.local(), conn.remote());
    let mut quoted = [0u8; 8];
    quoted[0..2].copy_from_slice(&local.port().to_be_bytes());
    quoted[2..4].copy_from_slice(&remote.port().to_be_bytes());
    quoted[4..8].copy_from_slice(&seq.to_be_bytes());
    let icmp = Icmpv4Repr::DstUnreachable {
        reason: DstUnreachable::HostUnreachable,
        next_hop_mtu: 0,
        header: Ipv4Repr::new(*local.ip(), *remote.ip(), IpProtocol::Tcp, 32),
        data: &quoted,
    };
    let caps = ChecksumCaps::default();
    let ip = Ipv4Repr::new(ROUTER, CLIENT, IpProtocol::Icmp, icmp.buffer_len());
    let mut frame = vec![0u8; ip.buffer_len()];
    let (head, body) = frame.split_at_mut(20);
    ip.emit(&mut Ipv4Packet::new_unchecked(head), &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(body), &caps);
    frame
}

#[test]
fn icmp_unreachable_while_probing_is_the_error_when_keepalive_gives_up() {
    // RFC 1122 4.2.3.9 and RFC 5461: a soft error does not end the connection even while we
    // doubt the peer; it is what the connection reports when the probes finally time out (as
    // Linux's tcp_write_err reports sk_err_soft instead of ETIMEDOUT)
    let mut r = Rig::new();
    r.cut.set(true);
    let last = r.last_rx;
    // up to the first probe
    r.run(KA.idle + Duration::from_millis(1));
    assert_eq!(r.probes.len(), 1);
    assert_eq!(r.error, None);
    let probe_seq = r.net.host_ref(r.c).conn(r.client).unwrap().snd_una() - 1;
    let frame = icmp_unreachable(&r, probe_seq.0);
    let now = r.net.now();
    r.net.host(r.c).handle_ipv4(now, &frame);
    r.observe();
    assert_eq!(r.error, None, "not fatal");
    assert_eq!(r.state(), State::Established);
    assert_eq!(r.stats.icmp_errors, 1);
    assert_eq!(r.net.host_ref(r.c).stats().icmp_errors, 1);
    r.run(Duration::from_secs(60));
    let (at, e) = r.error.expect("the dead peer was detected");
    assert_eq!(e, Error::HostUnreachable, "the ICMP error, not TimedOut");
    assert_near(
        at,
        last + KA.idle + KA.interval.saturating_mul(3),
        "timeout",
    );
    assert_eq!(r.probes.len(), 3);
    assert_eq!(r.state(), State::Closed);
    assert_eq!(r.take_error(), Some(Error::HostUnreachable));
    assert_eq!(r.take_error(), None);
}

#[test]
fn icmp_unreachable_on_a_healthy_connection_is_a_soft_error() {
    // RFC 1122 4.2.3.9: a transient routing failure must not kill a connection the peer still
    // answers; the error is kept for the application and the connection stays up
    let mut r = Rig::new();
    let una = r.net.host_ref(r.c).conn(r.client).unwrap().snd_una();
    let frame = icmp_unreachable(&r, una.0);
    let now = r.net.now();
    r.net.host(r.c).handle_ipv4(now, &frame);
    r.observe();
    assert_eq!(r.error, None);
    assert_eq!(r.state(), State::Established);
    assert_eq!(r.take_error(), Some(Error::HostUnreachable));
    assert_eq!(r.take_error(), None);
    // a quote of a sequence number we never sent is not believed (RFC 5927)
    let frame = icmp_unreachable(&r, una.0.wrapping_add(1_000_000));
    r.net.host(r.c).handle_ipv4(now, &frame);
    assert_eq!(r.take_error(), None);
    assert_eq!(r.conn_stats().unwrap().icmp_errors, 1);
}

#[test]
fn timeout_behind_a_path_that_loses_the_answers_resets_the_peer() {
    // the server is alive and answers every probe, but its answers are lost on the way back:
    // the client gives up as Linux does, with an RST the server does receive
    // (tcp_keepalive_timer: tcp_send_active_reset, then tcp_write_err)
    let mut r = Rig::new();
    r.deaf.set(true);
    let last = r.last_rx;
    r.run(Duration::from_secs(60));
    let (at, e) = r.error.expect("the client gave up");
    assert_eq!(e, Error::TimedOut);
    assert_near(
        at,
        last + KA.idle + KA.interval.saturating_mul(3),
        "timeout",
    );
    assert_eq!(r.probes.len(), 3);
    assert_eq!(r.stats.rst_out, 1, "one RST from the client");
    // let the RST cross
    r.net.flush();
    let end = r.net.now() + Duration::from_millis(50);
    while let Some(t) = r.net.next_event().filter(|&t| t <= end) {
        r.net.advance_to(t);
        r.net.flush();
    }
    assert_eq!(r.rst_to_server.get(), 1);
    let mut server_events = Vec::new();
    while let Some((id, ev)) = r.net.host(r.s).poll_event() {
        if id == r.server {
            server_events.push(ev);
        }
    }
    assert!(
        server_events.contains(&Event::Error(Error::Reset)),
        "the server learnt of the reset: {server_events:?}"
    );
    let server = r.net.host_ref(r.s).conn(r.server).unwrap();
    assert_eq!(server.state(), State::Closed);
    assert_eq!(server.stats().rst_in, 1);
}
