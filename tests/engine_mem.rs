//! Two engines joined by an in-memory Ethernet link, no root needed: the client knows no MAC at
//! start and resolves the server over ARP (the stack owns ARP on both ends), then bulk data is
//! echoed and checked byte by byte. Real clock, so bounded by wall time.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use common::apps::{BulkClient, EchoServer, Pattern, StreamOutcome};
use xdp_tcp::engine::{Engine, EngineConfig};
use xdp_tcp::host::{Host, HostConfig};
use xdp_tcp::io::mem;
use xdp_tcp::neigh::{ArpOwner, NeighCache, NeighConfig};
use xdp_tcp::tcp::State;
use xdp_tcp::wire::EthernetAddress;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const CLIENT_MAC: EthernetAddress = EthernetAddress([2, 9, 0, 0, 0, 1]);
const SERVER_MAC: EthernetAddress = EthernetAddress([2, 9, 0, 0, 0, 2]);
const PORT: u16 = 7;

fn neigh(addr: Ipv4Addr, mac: EthernetAddress) -> NeighCache {
    let mut cfg = NeighConfig::new(addr, 24, mac);
    cfg.arp_owner = ArpOwner::Stack;
    cfg.learn_from_ipv4 = false;
    NeighCache::new(cfg)
}

#[test]
fn bulk_echo_between_two_engines_resolving_over_arp() {
    bulk_echo(EngineConfig::default());
}

/// The same with every receive batch looked at twice before it is handled (the prefetching
/// passes a host with many connections gets): what is delivered and answered is the same.
#[test]
fn bulk_echo_with_look_ahead_receive_batches() {
    bulk_echo(EngineConfig {
        prefetch_above: 0,
        ..EngineConfig::default()
    });
}

fn bulk_echo(cfg: EngineConfig) {
    const CONNS: usize = 8;
    const LEN: usize = 512 * 1024;
    // The in-memory link of the API tests: lossless, bounded, 1792-byte frames.
    let (client_io, server_io, _link) = mem::pair(1792);
    let mut server_host = Host::new(HostConfig::new(SERVER));
    server_host.listen(PORT, 64);
    let echo = EchoServer::new(PORT);
    let echo_counters = echo.counters();
    let mut server = Engine::new(server_io, server_host, neigh(SERVER, SERVER_MAC), echo, cfg);
    let client_app = BulkClient::new(SocketAddrV4::new(SERVER, PORT), CONNS, LEN, 42);
    let counters = client_app.counters();
    let mut client = Engine::new(
        client_io,
        Host::new(HostConfig::new(CLIENT)),
        neigh(CLIENT, CLIENT_MAC),
        client_app,
        cfg,
    );

    let started = Instant::now();
    while !client.app().done() && started.elapsed() < Duration::from_secs(20) {
        client.poll();
        server.poll();
    }
    // Let the last ACKs of the close cross.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_millis(50) {
        client.poll();
        server.poll();
    }
    let elapsed = started.elapsed();
    let outcomes = client.app().outcomes();
    assert!(
        outcomes.iter().all(|(_, o)| *o == Some(StreamOutcome::Ok)),
        "{outcomes:?}"
    );
    assert_eq!(counters.get(&counters.bytes_verified), (CONNS * LEN) as u64);
    assert_eq!(echo_counters.get(&echo_counters.finished), CONNS as u64);
    assert_eq!(echo_counters.get(&echo_counters.errors), 0);
    // The client closed second: its connections wait in TIME-WAIT; the server's are gone.
    for (id, _) in &outcomes {
        let state = client.host().conn(*id).map(|c| c.state());
        assert!(
            matches!(state, None | Some(State::TimeWait)),
            "client connection in {state:?}"
        );
    }
    assert_eq!(server.host().conn_count(), 0);
    // One ARP exchange: the client asked, the server answered and learned the client from it.
    let (cn, sn) = (client.neigh().stats(), server.neigh().stats());
    assert_eq!(
        (cn.arp_requests_sent, sn.arp_replies_sent),
        (1, 1),
        "{cn:?} {sn:?}"
    );
    assert_eq!(cn.resolved, 1);
    assert!(cn.held >= 1 && cn.released == cn.held, "{cn:?}");
    assert_eq!(client.neigh().peek(SERVER), Some(SERVER_MAC));
    assert_eq!(server.neigh().peek(CLIENT), Some(CLIENT_MAC));
    for e in [client.stats(), server.stats()] {
        assert_eq!(e.rx_dropped(), 0, "{e:?}");
        assert_eq!(e.drop_no_route, 0);
    }
    assert_eq!(server.host().stats().dropped_total(), 0);
    assert_eq!(client.host().stats().dropped_total(), 0);
    eprintln!(
        "{CONNS} x {LEN} B echoed in {elapsed:?}; client {:?}; server {:?}",
        client.stats(),
        server.stats()
    );
}

#[test]
fn pattern_is_the_same_however_it_is_split() {
    let mut a = Pattern::new(7);
    let mut whole = vec![0u8; 1000];
    a.fill(&mut whole);
    let mut b = Pattern::new(7);
    let mut parts = vec![0u8; 1000];
    let (x, rest) = parts.split_at_mut(3);
    b.fill(x);
    let (y, z) = rest.split_at_mut(500);
    b.fill(y);
    b.fill(z);
    assert_eq!(whole, parts);
    let mut c = Pattern::new(8);
    let mut other = vec![0u8; 1000];
    c.fill(&mut other);
    assert_ne!(whole, other);
}

#[test]
fn the_host_takes_the_interface_mtu_bounded_by_the_frame() {
    use xdp_tcp::engine::endpoint::EngineIo;
    use xdp_tcp::time::Instant as SimInstant;
    use xdp_tcp::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

    // an interface MTU of 1400 (as read over rtnetlink): the SYN advertises 1400 - 40
    let (io, _peer, _link) = mem::pair(1792);
    let device = EngineIo {
        io,
        neigh: neigh(CLIENT, CLIENT_MAC),
        kernel: None,
        mtu: Some(1400),
    };
    let mut engine = device.into_engine(
        Host::new(HostConfig::new(CLIENT)),
        (),
        EngineConfig::default(),
    );
    assert_eq!(engine.host().config().mtu(), 1400);
    let host = engine.host_mut();
    host.connect(SimInstant::ZERO, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    let mut buf = vec![0u8; 1500];
    let tx = host.poll_transmit(SimInstant::ZERO, &mut buf).unwrap();
    let ip = Ipv4Packet::new_checked(&buf[..tx.len]).unwrap();
    let caps = ChecksumCaps::default();
    let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let syn = TcpRepr::parse(&tcp, ipr.src_addr, ipr.dst_addr, &caps).unwrap();
    assert!(syn.flags.syn());
    assert_eq!(syn.options.mss, Some(1360));

    // a jumbo interface on 1792-byte frames: no packet may outgrow the frame
    let (io, _peer, _link) = mem::pair(1792);
    let device = EngineIo {
        io,
        neigh: neigh(CLIENT, CLIENT_MAC),
        kernel: None,
        mtu: Some(9000),
    };
    let engine = device.into_engine(
        Host::new(HostConfig::new(CLIENT)),
        (),
        EngineConfig::default(),
    );
    assert_eq!(usize::from(engine.host().config().mtu()), 1792 - 14);
}

/// A capture whose writer never drains: the engine fills the bounded queue, then drops and
/// counts every further frame, and the traffic does not notice. Stopped, it copies nothing.
#[test]
fn a_capture_nobody_drains_drops_and_counts_without_touching_the_traffic() {
    use xdp_tcp::engine::capture::CaptureRing;
    const CONNS: usize = 2;
    const LEN: usize = 64 * 1024;
    const QUEUE: usize = 8;
    let (client_io, server_io, _link) = mem::pair(1792);
    let mut server_host = Host::new(HostConfig::new(SERVER));
    server_host.listen(PORT, 64);
    let ring = CaptureRing::new(QUEUE);
    let mut server = Engine::new(
        server_io,
        server_host,
        neigh(SERVER, SERVER_MAC),
        EchoServer::new(PORT),
        EngineConfig::default(),
    )
    .with_capture(std::sync::Arc::clone(&ring));
    let client_app = BulkClient::new(SocketAddrV4::new(SERVER, PORT), CONNS, LEN, 7);
    let counters = client_app.counters();
    let mut client = Engine::new(
        client_io,
        Host::new(HostConfig::new(CLIENT)),
        neigh(CLIENT, CLIENT_MAC),
        client_app,
        EngineConfig::default(),
    );
    let session = ring.start(96);
    let started = Instant::now();
    while !client.app().done() && started.elapsed() < Duration::from_secs(20) {
        client.poll();
        server.poll();
    }
    assert_eq!(counters.get(&counters.bytes_verified), (CONNS * LEN) as u64);
    let s = server.stats().clone();
    assert_eq!(s.capture_queued, QUEUE as u64, "the queue filled");
    assert_eq!(
        s.capture_queued + s.capture_dropped,
        s.rx_frames + s.tx_frames,
        "every frame queued or counted as dropped"
    );
    // the first frames, in order, cut at the snap length: the client's ARP request first
    // (padded to the 60-byte Ethernet minimum)
    let first = ring.pop().expect("a record");
    assert_eq!((first.session, first.data.len()), (session, 60));
    assert_eq!(first.data[12..14], [0x08, 0x06], "ARP");
    let mut n = 1;
    while let Some(r) = ring.pop() {
        assert!(r.data.len() <= 96 && r.orig_len as usize >= r.data.len());
        n += 1;
    }
    assert_eq!(n, QUEUE);

    ring.stop(session);
    let before = server.stats().clone();
    let client_app = BulkClient::new(SocketAddrV4::new(SERVER, PORT), 1, 4096, 8);
    let more = client_app.counters();
    *client.app_mut() = client_app;
    let started = Instant::now();
    while !client.app().done() && started.elapsed() < Duration::from_secs(20) {
        client.poll();
        server.poll();
    }
    assert_eq!(more.get(&more.bytes_verified), 4096);
    let after = server.stats();
    assert!(after.rx_frames > before.rx_frames, "traffic after the stop");
    assert_eq!(
        (after.capture_queued, after.capture_dropped),
        (before.capture_queued, before.capture_dropped),
        "nothing copied once stopped"
    );
    assert!(ring.pop().is_none());
}
