//! The path on the simulator: the size of every frame on a 1500-byte link, path MTU discovery
//! behind a router (RFC 1191), the per-destination cache and its expiry, black-hole detection
//! (RFC 4821), and ICMP soft and hard errors (RFC 1122 4.2.3.9, RFC 5461), each with what the
//! application sees.

mod common;

use std::cell::RefCell;
use std::net::SocketAddrV4;
use std::rc::Rc;

use common::sim_pair::{End, Pair, Source, CLIENT, PORT, SERVER};
use xdp_tcp::host::{ConnId, HostConfig};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::sim::router::RouterFault;
use xdp_tcp::tcp::{self, Error, Event, State};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::icmpv4::DstUnreachable;
use xdp_tcp::wire::{Ipv4Addr, Ipv4Packet, TcpPacket, TcpRepr};

const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);

/// What a frame on the wire was: its IPv4 length, TCP payload and SACK blocks.
#[derive(Debug, Clone, Copy)]
struct Seen {
    ip_len: usize,
    payload: usize,
    sack_blocks: usize,
}

fn seen(f: &[u8]) -> Option<Seen> {
    let ip = Ipv4Packet::new_checked(f).ok()?;
    let t = TcpPacket::new_checked(ip.payload()).ok()?;
    let caps = xdp_tcp::wire::ChecksumCaps::default();
    let seg = TcpRepr::parse(&t, ip.src_addr(), ip.dst_addr(), &caps).ok()?;
    Some(Seen {
        ip_len: f.len(),
        payload: seg.payload.len(),
        sack_blocks: seg.options.sack().len(),
    })
}

type Log = Rc<RefCell<Vec<Seen>>>;

/// A filter that records every TCP frame into `log` and passes it.
fn record(log: &Log) -> xdp_tcp::sim::link::Filter {
    let log = log.clone();
    Box::new(move |f: &[u8]| {
        if let Some(s) = seen(f) {
            log.borrow_mut().push(s);
        }
        Verdict::Pass
    })
}

#[test]
fn data_segments_with_sack_blocks_fill_the_mtu_exactly() {
    // both ways at once with loss: each end's data segments carry SACK blocks for the holes in
    // what it receives; every one must still fit 1500 bytes, and full ones fill it exactly:
    // 1500 - 20 - 20 - 12 (timestamps) - (4 + 8n) (NOP NOP SACK, n blocks)
    let log: Log = Rc::default();
    let l = log.clone();
    let mut link = LinkConfig::ideal(Duration::from_millis(5)).with_loss(0.02);
    link.bandwidth_bps = Some(1_000_000_000);
    let wire = move |net: &mut Network, c: usize, s: usize| {
        net.connect(c, s, link, 3);
        net.link(c, s).unwrap().set_filter(Some(record(&l)));
        net.link(s, c).unwrap().set_filter(Some(record(&l)));
    };
    let r = Pair::seeded(tcp::Config::default(), 3)
        .wire(wire)
        .build()
        .transfer(4 << 20, Duration::from_secs(120));
    r.assert_exact("2% loss both ways");
    assert_eq!(r.oversize, 0);
    let log = log.borrow();
    let over: Vec<&Seen> = log.iter().filter(|s| s.ip_len > 1500).collect();
    assert!(
        over.is_empty(),
        "{} frames over 1500: {:?}",
        over.len(),
        &over[..over.len().min(5)]
    );
    let full = 1500 - 20 - 20 - 12;
    let largest = |n: usize| {
        log.iter()
            .filter(|s| s.sack_blocks == n)
            .map(|s| s.payload)
            .max()
    };
    assert_eq!(largest(0), Some(full));
    for n in 1..=3 {
        assert_eq!(largest(n), Some(full - (4 + 8 * n)), "{n} SACK blocks");
    }
    assert_eq!(largest(4), None, "with timestamps at most 3 blocks fit");
}

/// Client and server through a router, a 2.5 ms clean hop on each side.
struct Routed {
    net: Network,
    c: usize,
    r: usize,
    s: usize,
}

impl Routed {
    fn new() -> Routed {
        let mut net = Network::new();
        let c = net.add_host(HostConfig::new(CLIENT));
        let mut scfg = HostConfig::new(SERVER);
        scfg.tcp.secret = xdp_tcp::tcp::Secret::from_seed(0x51);
        let s = net.add_host(scfg);
        let r = net.add_router(ROUTER);
        let mut hop = LinkConfig::ideal(Duration::from_micros(2500));
        hop.bandwidth_bps = Some(1_000_000_000);
        net.connect(c, r, hop.clone(), 1);
        net.connect(r, s, hop, 2);
        net.set_gateway(c, r);
        net.set_gateway(s, r);
        net.host(s).listen(PORT, 16);
        Routed { net, c, r, s }
    }

    /// A connection from the client, accepted by the server.
    fn open(&mut self) -> (ConnId, ConnId) {
        let (c, s) = (self.c, self.s);
        let now = self.net.now();
        let client = self
            .net
            .host(c)
            .connect(now, SocketAddrV4::new(SERVER, PORT))
            .unwrap();
        let mut server = None;
        let limit = now + Duration::from_secs(10);
        assert!(self.net.run_until(limit, |net| {
            server = server.or_else(|| net.host(s).accept(PORT));
            server.is_some() && net.host_ref(c).conn(client).unwrap().is_established()
        }));
        (client, server.unwrap())
    }

    /// Sends `len` bytes from the client to the server over `(client, server)`, checked by
    /// hash, within `limit` of simulated time; both ends stay open.
    fn send(&mut self, conn: (ConnId, ConnId), len: usize, seed: u64, limit: Duration) {
        let (c, s) = (self.c, self.s);
        let mut src = Source::new(seed, len);
        let mut sink = xxhash_rust::xxh3::Xxh3::new();
        let mut received = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let deadline = self.net.now() + limit;
        let arrived = self.net.run_until(deadline, |net| {
            while !src.done() {
                match net.host(c).send(conn.0, src.pending()) {
                    Ok(n) if n > 0 => src.advance(n),
                    Ok(_) | Err(Error::WouldBlock) => break,
                    Err(e) => panic!("send: {e}"),
                }
            }
            loop {
                match net.host(s).recv(conn.1, &mut buf) {
                    Ok(n) if n > 0 => {
                        sink.update(&buf[..n]);
                        received += n;
                    }
                    Ok(_) => panic!("end of stream"),
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("recv: {e}"),
                }
            }
            received == len
        });
        assert!(arrived, "{received} of {len} bytes arrived");
        assert_eq!(sink.digest(), src.digest());
    }

    fn conn(&self, host: usize, id: ConnId) -> &tcp::Connection {
        self.net.host_ref(host).conn(id).unwrap()
    }

    /// Runs the network idle for `d`.
    fn idle(&mut self, d: Duration) {
        let until = self.net.now() + d;
        self.net.run_until(until, |net| net.now() >= until);
        // an idle network has no next event: time still passes
        self.net.advance_to(until);
    }
}

#[test]
fn fragmentation_needed_sets_the_mss_and_the_cache_until_it_expires() {
    let mut t = Routed::new();
    let conn = t.open();
    let (r, s) = (t.r, t.s);
    let log: Log = Rc::default();
    t.net.link(r, s).unwrap().set_filter(Some(record(&log)));
    t.net.link(r, s).unwrap().set_mtu(1280);
    t.send(conn, 1 << 20, 1, Duration::from_secs(10));
    let c = t.conn(t.c, conn.0);
    // RFC 1191: the next-hop MTU from the router; timestamps take 12 more bytes
    assert_eq!((c.path_mtu(), c.mss()), (1280, 1280 - 40 - 12));
    let st = c.stats();
    // the whole first flight (the initial window, 10 segments) was dropped and answered
    assert_eq!(t.net.router_ref(r).stats().too_big, 10);
    assert_eq!((st.icmp_errors, st.pmtu_reductions), (10, 1));
    assert!(st.retrans_mtu >= 10, "{st:?}");
    assert_eq!(st.rto_events, 0, "resent at once, no timeout");
    assert_eq!((c.state(), c.error()), (State::Established, None));
    assert_eq!(t.net.host_ref(t.c).stats().pmtu_reductions, 1);
    let largest = log.borrow().iter().map(|s| s.payload).max();
    assert_eq!(largest, Some(1228));
    assert!(log.borrow().iter().all(|s| s.ip_len <= 1280));

    // the host cached it: a new connection to the server starts at 1280, and nothing of it
    // is dropped
    let second = t.open();
    assert_eq!(t.conn(t.c, second.0).path_mtu(), 1280);
    t.send(second, 256 << 10, 2, Duration::from_secs(10));
    assert_eq!(t.net.router_ref(r).stats().too_big, 10);
    assert_eq!(t.conn(t.c, second.0).stats().pmtu_reductions, 1);

    // ten minutes later (Linux's mtu_expires) the cache has forgotten, and so has the first
    // connection: it tries 1500 again, is told again, and goes on at 1280 (RFC 1191 6.3)
    t.idle(Duration::from_secs(600));
    let third = t.open();
    assert_eq!(t.conn(t.c, third.0).path_mtu(), 1500);
    t.send(conn, 256 << 10, 3, Duration::from_secs(10));
    let c = t.conn(t.c, conn.0);
    assert_eq!((c.path_mtu(), c.stats().pmtu_reductions), (1280, 2));
    assert!(t.net.router_ref(r).stats().too_big > 10);
    assert_eq!(c.stats().rto_events, 0);
}

#[test]
fn a_black_hole_is_crossed_by_falling_back_to_the_base_mss() {
    // the router drops what does not fit and says nothing (ICMP filtered, RFC 2923): after
    // timeouts as long as Linux's tcp_retries1, the MSS falls to 1024 (tcp_base_mss)
    let mut t = Routed::new();
    let conn = t.open();
    let (r, s) = (t.r, t.s);
    t.net.router(r).set_frag_needed(false);
    t.net.link(r, s).unwrap().set_mtu(1280);
    let start = t.net.now();
    t.send(conn, 256 << 10, 4, Duration::from_secs(60));
    let took = t.net.now() - start;
    let c = t.conn(t.c, conn.0);
    let st = c.stats();
    assert_eq!(st.black_hole_fallbacks, 1, "{st:?}");
    assert_eq!(c.mss(), 1024 - 12);
    assert_eq!(c.path_mtu(), 1500, "nothing told us the path MTU");
    assert_eq!((st.icmp_errors, st.pmtu_reductions), (0, 0));
    assert!(st.rto_events >= 4, "{st:?}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(t.net.router_ref(r).stats().icmp_sent, 0);
}

#[test]
fn soft_errors_mid_transfer_never_abort_and_are_reported() {
    let mut t = Routed::new();
    let (client, server) = t.open();
    let (c, r, s) = (t.c, t.r, t.s);
    let len = 4 << 20;
    let mut a = End::new(c, 11, len);
    a.id = Some(client);
    let mut b = End::new(s, 12, len);
    b.id = Some(server);
    let mut buf = vec![0u8; 64 * 1024];
    let mut pump = |t: &mut Routed, for_: Duration| {
        let until = t.net.now() + for_;
        t.net.run_until(until, |net| {
            a.pump(net, &mut buf);
            b.pump(net, &mut buf);
            assert_eq!((a.error, b.error), (None, None), "aborted");
            a.released && b.released
        })
    };
    let take = |t: &mut Routed, host: usize, id: ConnId| {
        t.net.host(host).with_conn(id, |c| c.take_error()).flatten()
    };
    assert!(!pump(&mut t, Duration::from_millis(150)));
    assert_eq!(take(&mut t, c, client), None);
    // a routing loop for 2 s: every packet comes back as time exceeded, and the connections
    // retransmit into it
    t.net.router(r).set_fault(Some(RouterFault::Loop));
    assert!(!pump(&mut t, Duration::from_secs(2)));
    for (host, id) in [(c, client), (s, server)] {
        let conn = t.conn(host, id);
        assert_eq!(conn.state(), State::Established);
        assert!(conn.stats().rto_events > 0 && conn.stats().icmp_errors > 0);
        assert_eq!(take(&mut t, host, id), Some(Error::HostUnreachable));
        assert_eq!(take(&mut t, host, id), None, "read once");
    }
    // then the route is withdrawn for 2 s: network unreachable, the last error is the one kept
    t.net.router(r).set_fault(Some(RouterFault::Unreachable(
        DstUnreachable::NetUnreachable,
    )));
    assert!(!pump(&mut t, Duration::from_secs(2)));
    assert_eq!(take(&mut t, c, client), Some(Error::NetUnreachable));
    t.net.router(r).set_fault(None);
    assert!(pump(&mut t, Duration::from_secs(120)));
    assert_eq!(a.sink.digest(), b.src.digest());
    assert_eq!(b.sink.digest(), a.src.digest());
    // no error event ever reached either host's application
    for host in [c, s] {
        while let Some((_, ev)) = t.net.host(host).poll_event() {
            assert!(!matches!(ev, Event::Error(_)), "{ev:?}");
        }
    }
}

#[test]
fn connecting_a_hard_error_aborts_at_once_a_soft_one_is_retried() {
    // administratively prohibited is fatal to a connect (Linux's icmp_err_convert)
    let mut t = Routed::new();
    let (c, r) = (t.c, t.r);
    t.net.router(r).set_fault(Some(RouterFault::Unreachable(
        DstUnreachable::CommProhibited,
    )));
    let id = t
        .net
        .host(c)
        .connect(Instant::ZERO, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    let mut events = Vec::new();
    t.net.run_until(Instant::from_millis(100), |net| {
        while let Some(e) = net.host(c).poll_event() {
            events.push(e);
        }
        false
    });
    assert_eq!(
        events,
        [
            (id, Event::Error(Error::HostUnreachable)),
            (id, Event::Closed)
        ]
    );

    // host unreachable is soft: the SYN is retried, the connect succeeds once the route is
    // back, and the error is still there to read
    let mut t = Routed::new();
    let (c, r) = (t.c, t.r);
    t.net.router(r).set_fault(Some(RouterFault::Unreachable(
        DstUnreachable::HostUnreachable,
    )));
    let id = t
        .net
        .host(c)
        .connect(Instant::ZERO, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    t.idle(Duration::from_millis(2500));
    let conn = t.conn(c, id);
    assert_eq!(conn.state(), State::SynSent);
    assert_eq!(conn.stats().icmp_errors, 2, "the SYN and its first retry");
    t.net.router(r).set_fault(None);
    t.idle(Duration::from_secs(1));
    assert_eq!(
        t.conn(c, id).state(),
        State::Established,
        "the retry at 3 s"
    );
    let mut events = Vec::new();
    while let Some((_, e)) = t.net.host(c).poll_event() {
        events.push(e);
    }
    assert_eq!(events, [Event::Connected]);
    let soft = t.net.host(c).with_conn(id, |c| c.take_error()).flatten();
    assert_eq!(soft, Some(Error::HostUnreachable));
}
