//! The host's explicit results: the verdict of each received packet and what `poll_transmit`
//! says about the packet it wrote.

use super::*;
use crate::wire::{self, Ipv4Packet};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const C: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
const PORT: u16 = 80;

fn t0() -> Instant {
    Instant::ZERO
}

/// The next packet `h` sends, checked against what `poll_transmit` said about it.
fn next_packet(h: &mut Host) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 2048];
    let tx = h.poll_transmit(t0(), &mut buf)?;
    let ip = Ipv4Packet::new_checked(&buf[..tx.len]).expect("a whole IPv4 packet");
    assert_eq!(usize::from(ip.total_len()), tx.len);
    assert_eq!(ip.dst_addr(), tx.dst);
    assert_eq!(ip.src_addr(), h.addr());
    Some(buf[..tx.len].to_vec())
}

#[test]
fn segments_are_delivered_or_refused_naming_their_source() {
    let mut a = Host::new(HostConfig::new(A));
    // without SYN cookies: a full backlog refuses (tests/syncookies.rs has them on)
    let mut bc = HostConfig::new(B);
    bc.tcp.syncookies = false;
    let mut b = Host::new(bc);
    b.listen(PORT, 1);
    a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let syn = next_packet(&mut a).expect("a SYN");
    let v = b.handle_ipv4(t0(), &syn);
    assert_eq!(v, RxVerdict::Delivered { src: A });
    assert_eq!(v.verified_source(), Some(A));

    // the backlog of 1 is taken by the embryo: a second SYN is refused, not answered
    let mut c = Host::new(HostConfig::new(C));
    c.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let other = next_packet(&mut c).expect("a SYN");
    let v = b.handle_ipv4(t0(), &other);
    assert_eq!(
        v,
        RxVerdict::Refused {
            src: C,
            reason: DropReason::BacklogFull
        }
    );
    assert_eq!(
        v.verified_source(),
        Some(C),
        "a verified sender all the same"
    );

    // a segment for no connection is refused and answered by RST, addressed to its source
    a.connect(t0(), SocketAddrV4::new(B, PORT + 1)).unwrap();
    let stray = next_packet(&mut a).expect("a SYN");
    let v = b.handle_ipv4(t0(), &stray);
    assert_eq!(
        v,
        RxVerdict::Refused {
            src: A,
            reason: DropReason::NoConnection
        }
    );
    let rst = next_packet(&mut b).expect("the RST, before any connection's segment");
    assert_eq!(Ipv4Packet::new_checked(&rst[..]).unwrap().dst_addr(), A);
    next_packet(&mut b).expect("the SYN-ACK");
    assert!(next_packet(&mut b).is_none(), "nothing for the refused SYN");
    assert_eq!(b.stats().dropped(DropReason::BacklogFull), 1);
    assert_eq!(b.stats().dropped(DropReason::NoConnection), 1);
}

#[test]
fn packets_that_do_not_verify_are_dropped_with_their_reason() {
    let mut a = Host::new(HostConfig::new(A));
    let mut b = Host::new(HostConfig::new(B));
    a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let syn = next_packet(&mut a).expect("a SYN");
    let mut verdicts = Vec::new();

    let mut bad_sum = syn.clone();
    *bad_sum.last_mut().unwrap() ^= 1;
    verdicts.push(b.handle_ipv4(t0(), &bad_sum));
    verdicts.push(b.handle_ipv4(t0(), &syn[..10]));
    let mut c = Host::new(HostConfig::new(C));
    verdicts.push(c.handle_ipv4(t0(), &syn));
    assert_eq!(
        verdicts,
        [
            RxVerdict::Dropped(DropReason::Tcp(wire::Error::BadChecksum)),
            RxVerdict::Dropped(DropReason::Ipv4(wire::Error::Truncated)),
            RxVerdict::Dropped(DropReason::NotOurAddress),
        ]
    );
    assert!(verdicts.iter().all(|v| v.verified_source().is_none()));
    assert_eq!(b.stats().rx_packets, 2);
    assert_eq!(b.stats().dropped_total(), 2);
    assert_eq!(b.stats().rx_segments, 0, "no segment got past its checksum");
    assert!(
        next_packet(&mut b).is_none(),
        "nothing answers a bad packet"
    );
}

#[test]
fn martian_sources_and_non_unicast_destinations_are_dropped_unanswered() {
    let mut b = Host::new(HostConfig::new(B));
    b.listen(PORT, 8);
    let martians = [
        Ipv4Addr::new(0, 0, 0, 0),
        Ipv4Addr::new(0, 1, 2, 3),
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 1, 2, 3),
        Ipv4Addr::BROADCAST,
        B,
    ];
    for src in martians {
        let mut m = Host::new(HostConfig::new(src));
        m.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
        let syn = next_packet(&mut m).expect("a SYN");
        assert_eq!(
            b.handle_ipv4(t0(), &syn),
            RxVerdict::Dropped(DropReason::BadSource),
            "from {src}"
        );
    }
    // a SYN to a broadcast or multicast address, from a good source
    for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 251)] {
        let mut a = Host::new(HostConfig::new(A));
        a.connect(t0(), SocketAddrV4::new(dst, PORT)).unwrap();
        let syn = next_packet(&mut a).expect("a SYN");
        assert_eq!(
            b.handle_ipv4(t0(), &syn),
            RxVerdict::Dropped(DropReason::BadDestination),
            "to {dst}"
        );
    }
    assert_eq!(b.stats().dropped(DropReason::BadSource), 7);
    assert_eq!(b.stats().dropped(DropReason::BadDestination), 2);
    assert_eq!((b.stats().rx_segments, b.conn_count()), (0, 0));
    assert!(next_packet(&mut b).is_none(), "nothing answers them");
    // every reason has its own counter
    let mut seen: Vec<usize> = DropReason::all().map(DropReason::index).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), DropReason::COUNT);
    assert_eq!(seen.last(), Some(&(DropReason::COUNT - 1)));
}

/// The TCP header of an IPv4 packet a host wrote.
fn tcp_of(pkt: &[u8]) -> TcpRepr<'_> {
    let ip = Ipv4Packet::new_checked(pkt).unwrap();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let tcp = TcpPacket::new_checked(&pkt[20..]).unwrap();
    TcpRepr::parse(&tcp, src, dst, &ChecksumCaps::default()).unwrap()
}

#[test]
fn a_bound_port_opens_once_per_four_tuple_and_never_over_a_listener() {
    let mut a = Host::new(HostConfig::new(A));
    let b_port = SocketAddrV4::new(B, PORT);
    let id = a
        .connect_from_port(t0(), 5000, b_port)
        .expect("a free port");
    assert_eq!(a.conn(id).unwrap().local(), SocketAddrV4::new(A, 5000));
    assert_eq!(
        tcp_of(&next_packet(&mut a).expect("its SYN")).src_port,
        5000
    );
    assert!(
        a.connect_from_port(t0(), 5000, b_port).is_none(),
        "the same 4-tuple twice"
    );
    assert!(a
        .connect_from_port(t0(), 5000, SocketAddrV4::new(C, PORT))
        .is_some());
    a.listen(6000, 1);
    assert!(a.connect_from_port(t0(), 6000, b_port).is_none());
}

#[test]
fn a_new_tcp_config_applies_to_connections_opened_after_it() {
    let mut a = Host::new(HostConfig::new(A));
    let first = a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    a.set_tcp_config(tcp::Config {
        mss: 1000,
        ..tcp::Config::default()
    });
    let second = a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let mss = |a: &mut Host| tcp_of(&next_packet(a).unwrap()).options.mss;
    assert_eq!(mss(&mut a), Some(1460));
    assert_eq!(mss(&mut a), Some(1000));
    assert_eq!(a.conn(first).unwrap().config().mss, 1460);
    assert_eq!(a.conn(second).unwrap().config().mss, 1000);

    // a listener's connections too: the SYN-ACK offers the new MSS
    let mut b = Host::new(HostConfig::new(B));
    b.listen(PORT, 4);
    b.set_tcp_config(tcp::Config {
        mss: 900,
        ..tcp::Config::default()
    });
    let mut c = Host::new(HostConfig::new(C));
    c.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    b.handle_ipv4(t0(), &next_packet(&mut c).unwrap());
    assert_eq!(mss(&mut b), Some(900));
}

#[test]
fn the_accept_queue_counts_established_connections_only() {
    let mut a = Host::new(HostConfig::new(A));
    let mut b = Host::new(HostConfig::new(B));
    b.listen(PORT, 4);
    assert_eq!(b.accept_queue_len(PORT), 0);
    assert_eq!(b.accept_queue_len(PORT + 1), 0, "not listening");
    a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    b.handle_ipv4(t0(), &next_packet(&mut a).unwrap());
    assert_eq!(b.accept_queue_len(PORT), 0, "an embryo is not acceptable");
    a.handle_ipv4(t0(), &next_packet(&mut b).unwrap());
    b.handle_ipv4(t0(), &next_packet(&mut a).unwrap());
    assert_eq!(b.accept_queue_len(PORT), 1);
    b.accept(PORT).expect("established");
    assert_eq!(b.accept_queue_len(PORT), 0);
}

/// With steering, a segment for no connection whose flow another engine owns is handed back as
/// `Foreign` (no RST, no handshake, even a SYN to a listening port); one this engine owns gets
/// the usual answers. Active opens pick ports this engine owns.
#[test]
fn foreign_flows_are_handed_back_unanswered() {
    use crate::rss::FlowSteer;
    let steer = std::sync::Arc::new(FlowSteer::software(B, 2));
    let mut hosts: Vec<Host> = (0..2)
        .map(|e| {
            let mut h = Host::new(HostConfig::new(B));
            h.set_steering(std::sync::Arc::clone(&steer), e);
            h.listen(PORT, 64);
            h
        })
        .collect();
    let mut seen = [false; 2];
    for port in 40000..40040u16 {
        let mut a = Host::new(HostConfig::new(A));
        a.connect_from_port(t0(), port, SocketAddrV4::new(B, PORT))
            .unwrap();
        let syn = next_packet(&mut a).expect("a SYN");
        let owner = steer.owner(A, port, PORT) as usize;
        seen[owner] = true;
        let other = 1 - owner;
        assert_eq!(
            hosts[other].handle_ipv4(t0(), &syn),
            RxVerdict::Foreign {
                owner: owner as u32
            }
        );
        assert!(next_packet(&mut hosts[other]).is_none(), "no answer");
        assert_eq!(
            hosts[owner].handle_ipv4(t0(), &syn),
            RxVerdict::Delivered { src: A }
        );
        assert!(next_packet(&mut hosts[owner]).is_some(), "a SYN-ACK");
    }
    assert_eq!(seen, [true, true]);
    assert_eq!(
        hosts[0].stats().rst_sent_no_conn + hosts[1].stats().rst_sent_no_conn,
        0
    );
    // active opens land on their own engine
    for (e, h) in hosts.iter_mut().enumerate() {
        for _ in 0..20 {
            let id = h.connect(t0(), SocketAddrV4::new(C, 7)).unwrap();
            let local = h.conn(id).unwrap().local().port();
            assert_eq!(steer.owner(C, 7, local), e as u32);
        }
    }
}

/// The wheel is not touched when a segment moves a timer later (the keep-alive, on every
/// segment): its entry fires at the old deadline, which must do nothing but place the timer
/// again at the new one.
#[test]
fn a_timer_moved_later_fires_at_its_new_deadline_only() {
    let ka = crate::tcp::KeepAlive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        count: 3,
    };
    let cfg = |addr| {
        let mut c = HostConfig::new(addr);
        c.tcp.delayed_ack = None;
        c.tcp.keepalive = Some(ka);
        c
    };
    let (mut a, mut b) = (Host::new(cfg(A)), Host::new(cfg(B)));
    b.listen(PORT, 4);
    let ca = a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut pump = |from: &mut Host, to: &mut Host, now: Instant| -> usize {
        let mut n = 0;
        while let Some(tx) = from.poll_transmit(now, &mut buf) {
            to.handle_ipv4(now, &buf[..tx.len]);
            n += 1;
        }
        n
    };
    for _ in 0..2 {
        pump(&mut a, &mut b, t0());
        pump(&mut b, &mut a, t0());
    }
    let cb = b.accept(PORT).expect("established");
    let secs = |s: u64| Instant::ZERO + Duration::from_secs(s);
    let first = b.next_timer().expect("keep-alive armed");
    assert!(first <= secs(10) + b.config().timer_tick);

    // data at 5 s: the keep-alive moves to 15 s
    a.send(ca, b"ping").unwrap();
    pump(&mut a, &mut b, secs(5));
    b.with_conn(cb, |c| c.consume(4));
    assert_eq!(pump(&mut b, &mut a, secs(5)), 1, "the ACK");
    let ka_at = |h: &Host| {
        h.conn(cb)
            .and_then(|c| c.timers().get(TimerKind::KeepAlive))
    };
    assert_eq!(ka_at(&b), Some(secs(15)));

    // whatever the wheel reports, the old deadline passes with nothing sent
    let tick = b.config().timer_tick;
    b.handle_timeout(secs(10) + tick);
    assert_eq!(pump(&mut b, &mut a, secs(10) + tick), 0, "no probe at 10 s");
    assert_eq!(b.armed_timers(), 1, "placed again");
    let next = b.next_timer().unwrap();
    assert!(
        next > secs(10) + tick && next <= secs(15) + tick,
        "{next:?}"
    );
    b.handle_timeout(secs(15) + tick);
    assert_eq!(
        pump(&mut b, &mut a, secs(15) + tick),
        1,
        "the probe at 15 s"
    );
}

/// The prefetch hints read the same 4-tuple the look-up uses, and nothing from packets that are
/// not TCP to us.
#[test]
fn the_prefetch_key_is_the_flow_tables() {
    let mut a = Host::new(HostConfig::new(A));
    let mut b = Host::new(HostConfig::new(B));
    b.listen(PORT, 4);
    let ca = a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    let syn = next_packet(&mut a).expect("a SYN");
    let local = a.conn(ca).unwrap().local();
    let want = slots::flow_key(SocketAddrV4::new(A, local.port()), PORT);
    assert_eq!(slots::flow_key_of(&syn, B), Some(want));
    assert_eq!(slots::flow_key_of(&syn, C), None, "not to us");
    assert_eq!(slots::flow_key_of(&syn[..20], B), None, "no TCP header");
    let mut udp = syn.clone();
    udp[9] = 17;
    assert_eq!(slots::flow_key_of(&udp, B), None);
    // hints change nothing: the SYN is still taken whole
    b.prefetch_ipv4(&syn);
    b.prefetch_ipv4_conn(&syn);
    b.prefetch_ipv4(&[0x45]);
    assert_eq!(b.handle_ipv4(t0(), &syn), RxVerdict::Delivered { src: A });
}

/// A client host (A) and a server host (B, listening on [`PORT`]) with one connection
/// established and accepted on B.
fn established_pair() -> (Host, Host, ConnId) {
    let mut a = Host::new(HostConfig::new(A));
    let mut b = Host::new(HostConfig::new(B));
    b.listen(PORT, 4);
    a.connect(t0(), SocketAddrV4::new(B, PORT)).unwrap();
    b.handle_ipv4(t0(), &next_packet(&mut a).unwrap());
    a.handle_ipv4(t0(), &next_packet(&mut b).unwrap());
    b.handle_ipv4(t0(), &next_packet(&mut a).unwrap());
    let id = b.accept(PORT).expect("established");
    (a, b, id)
}

/// A connection's output goes out before the replies to segments of no connection queued
/// beside it (under a SYN flood: an echo before the batch's cookie SYN-ACKs), and both go out.
#[test]
fn connection_output_goes_before_replies_to_strays() {
    let (_a, mut b, id) = established_pair();
    assert!(next_packet(&mut b).is_none(), "nothing owed");

    // first a segment for no connection (answered by RST), then data for the connection
    let mut c = Host::new(HostConfig::new(C));
    c.connect(t0(), SocketAddrV4::new(B, PORT + 1)).unwrap();
    let stray = next_packet(&mut c).expect("a SYN");
    assert!(matches!(
        b.handle_ipv4(t0(), &stray),
        RxVerdict::Refused { src: C, .. }
    ));
    let sent = b.with_conn(id, |conn| conn.send(b"echo")).unwrap().unwrap();
    assert_eq!(sent, 4);

    let first = next_packet(&mut b).expect("the connection's data");
    let ip = Ipv4Packet::new_checked(&first[..]).unwrap();
    assert_eq!(ip.dst_addr(), A);
    assert_eq!(tcp_of(&first).payload, b"echo");
    let second = next_packet(&mut b).expect("the RST");
    let ip = Ipv4Packet::new_checked(&second[..]).unwrap();
    assert_eq!(ip.dst_addr(), C);
    assert!(tcp_of(&second).flags.rst());
    assert!(next_packet(&mut b).is_none());
}

/// Connection output does not starve the strays: a waiting RST goes out after at most
/// [`STRAY_AFTER`] segments of a connection with a window of data to send.
#[test]
fn a_stray_waits_for_a_bounded_run_of_connection_output() {
    let (_a, mut b, id) = established_pair();

    let mut c = Host::new(HostConfig::new(C));
    c.connect(t0(), SocketAddrV4::new(B, PORT + 1)).unwrap();
    let stray = next_packet(&mut c).expect("a SYN");
    assert!(matches!(
        b.handle_ipv4(t0(), &stray),
        RxVerdict::Refused { .. }
    ));
    let data = vec![7u8; 64 * 1024];
    let sent = b.with_conn(id, |conn| conn.send(&data)).unwrap().unwrap();
    assert!(sent > 20_000, "{sent} bytes queued");

    let mut order = Vec::new();
    while let Some(p) = next_packet(&mut b) {
        order.push(tcp_of(&p).flags.rst());
    }
    let rst = order.iter().position(|&r| r).expect("the RST goes out");
    assert_eq!(rst, strays::STRAY_AFTER as usize, "{order:?}");
    assert!(order.len() > rst + 1, "more data after the RST: {order:?}");
}
