//! The stack one router away from the kernel peer, on a path whose MTU is smaller than its own
//! link's (issue 11, acceptance 4): `deploy/testbed.sh up NAME --router 1400` puts a forwarding
//! router namespace between the stack's veth (MTU 1500) and the peer's link (MTU 1400), and the
//! peer advertises MSS 1460. The stack's full-size segments (1500-byte packets) reach the router,
//! whose kernel drops them and answers ICMP Fragmentation Needed (next-hop MTU 1400): the stack
//! must lower its segment size for that destination (path MTU discovery) and resend what was
//! lost at the new size, never abort. The fault program on the peer's veth loses 2% of TCP frames
//! each way, silently.
//!
//! Both directions, 64 connections x 4 MiB echoed byte-exact each:
//! - kernel clients in the peer's namespace -> the stack's echo server;
//! - the stack's bulk client -> a kernel echo server in the peer's namespace.
//!
//! No connection may fail, and the stack may send no frame over 1514 bytes (what its link
//! carries). That is checked on a capture of everything the stack sent, taken inside the engine
//! (a pcap tap around its AF_XDP socket, headers only: 64 bytes a frame, the frame's length
//! kept), read by our pcap reader and by tcpdump; a tcpdump on the stack's veth would not do:
//! frames sent through an AF_XDP socket in copy mode skip the kernel's packet taps. The veth's
//! own `tx_dropped`, which counts the frames too big for the router's end, must stay at zero as
//! well. Frames bigger than the path (over 1414 bytes) are allowed only before the first
//! Fragmentation Needed of each connection's flight: at most an initial window's worth per
//! connection.

mod common;

use std::net::SocketAddrV4;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::apps::{BulkClient, EchoServer, StreamOutcome};
use common::testbed::{ok, require_environment, RemoveOnDrop, Testbed};
use common::veth::{
    assert_loss_seen_and_repaired, start_with, stop, terminate, wait_for, wait_ready, XdpBacked,
    ECHO_CLIENT, ECHO_SERVER,
};
use xdp_tcp::engine::{App, Engine};
use xdp_tcp::host::ConnId;
use xdp_tcp::io::fault_bpf::{Direction, TcFaultProgram};
use xdp_tcp::io::pcap::{self, PcapConfig, PcapTap};
use xdp_tcp::io::xdp::XdpSocket;
use xdp_tcp::neigh::ArpOwner;

const PATH_MTU: u32 = 1400;
const CONNS: usize = 64;
const SIZE: usize = 4 << 20;
const ECHO_PORT: u16 = 7000;
const KERNEL_PORT: u16 = 9000;
const ETH_HLEN: u32 = 14;
/// The largest frame the stack's link carries: Ethernet header + 1500.
const LINK_FRAME: u32 = ETH_HLEN + 1500;
/// Full-size segments each connection may send before the first Fragmentation Needed answers
/// them (Linux's initial window is 10; one more for the retransmission that may be in flight).
const OVERSIZE_PER_CONN: u64 = 11;
const LOSS: f64 = 0.02;
/// Headers only: the check needs each frame's length, which the record keeps whole.
const SNAPLEN: u32 = 64;

/// Counters outside the stack that the path moves.
#[derive(Debug, Clone, Copy)]
struct PathCounters {
    /// The stack's veth: frames too big for the router's end are dropped and counted here.
    stack_tx_dropped: u64,
    /// ICMP destination unreachables the router sent (Fragmentation Needed here).
    router_unreachables: u64,
    /// Packets the router could not forward for their size (DF set).
    router_frag_fails: u64,
    peer_retrans: u64,
}

impl PathCounters {
    fn read(tb: &Testbed) -> PathCounters {
        PathCounters {
            stack_tx_dropped: tb.link_stat("ns_stack", "if_stack", "tx_dropped"),
            router_unreachables: tb.snmp("ns_router", "Icmp")["OutDestUnreachs"],
            router_frag_fails: tb.snmp("ns_router", "Ip")["FragFails"],
            peer_retrans: tb.tcp_snmp("ns_peer")["RetransSegs"],
        }
    }

    fn since(self, before: PathCounters) -> PathCounters {
        PathCounters {
            stack_tx_dropped: self.stack_tx_dropped - before.stack_tx_dropped,
            router_unreachables: self.router_unreachables - before.router_unreachables,
            router_frag_fails: self.router_frag_fails - before.router_frag_fails,
            peer_retrans: self.peer_retrans - before.peer_retrans,
        }
    }
}

/// The sizes of the frames the stack sent, from its capture.
#[derive(Debug, Default)]
struct SentSizes {
    frames: u64,
    /// Over 1514 bytes: more than the stack's own link carries.
    over_link: u64,
    /// Over 14 + the path MTU: dropped by the router with Fragmentation Needed.
    over_path: u64,
    largest: u32,
}

/// Reads the capture with our pcap reader, and asks tcpdump the one question independently
/// (tshark takes 18 s over the half million frames of a run; tcpdump's filter under a second).
fn sent_sizes(path: &Path, mac_stack: &str) -> SentSizes {
    let bytes = std::fs::read(path).expect("read the capture");
    let (hdr, records) = pcap::parse(&bytes).expect("parse the capture");
    assert_eq!(hdr.linktype, pcap::LINKTYPE_ETHERNET);
    let mac: Vec<u8> = mac_stack
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    let mut s = SentSizes::default();
    for r in records
        .iter()
        .filter(|r| r.data.len() >= 12 && r.data[6..12] == mac[..])
    {
        s.frames += 1;
        s.over_link += u64::from(r.orig_len > LINK_FRAME);
        s.over_path += u64::from(r.orig_len > ETH_HLEN + PATH_MTU);
        s.largest = s.largest.max(r.orig_len);
    }
    // `greater N` is the frame's length on the wire (the record's original length), N included.
    let filter = format!("ether src {mac_stack} and greater {}", LINK_FRAME + 1);
    let out = std::process::Command::new("timeout")
        .args(["60", "tcpdump", "-n", "-q", "-r"])
        .arg(path)
        .arg(&filter)
        .stderr(Stdio::null())
        .output()
        .expect("run tcpdump");
    let tcpdump_over = ok(out, "tcpdump").lines().count() as u64;
    assert_eq!(
        tcpdump_over, s.over_link,
        "tcpdump and our reader disagree on the frames over {LINK_FRAME} bytes"
    );
    s
}

/// Starts the engine with `app` behind a pcap tap writing to `path`.
fn start_captured<A: App + Send + 'static>(
    tb: &Testbed,
    listen: &[u16],
    app: A,
    path: &Path,
) -> common::veth::Running<PcapTap<XdpSocket>, A> {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let path = path.to_path_buf();
    start_with(tb, ArpOwner::Kernel, listen, app, move |sock| {
        let cfg = PcapConfig {
            snaplen: SNAPLEN,
            epoch_unix_nanos: epoch,
            ..Default::default()
        };
        PcapTap::create(sock, &path, cfg).expect("create the pcap file")
    })
}

/// The stack's side of connections that did not finish, for the failure message.
fn describe<P: XdpBacked, A: App>(engine: &Engine<P, A>, ids: &[ConnId]) -> String {
    let mut out = String::new();
    for &id in ids {
        if let Some(c) = engine.host().conn(id) {
            out += &format!(
                "\n  {:?} -> {:?}: {:?} timeout {:?} now {:?}\n    {:?}",
                c.local(),
                c.remote(),
                c.state(),
                c.poll_timeout(),
                engine.now(),
                c.info()
            );
        }
    }
    out
}

/// The checks both directions share, after the engine stopped: routing through the router, no
/// frame over the link's size, the path MTU learned, the loss real and repaired.
fn check_path<A: App>(
    tb: &Testbed,
    engine: &mut Engine<PcapTap<XdpSocket>, A>,
    pcap_path: &Path,
    path: PathCounters,
    fault: &TcFaultProgram,
    live: &[ConnId],
) {
    let ip_peer = tb.ip("ip_peer");
    let ip_router = tb.ip("ip_router");
    assert_eq!(
        engine.neigh().next_hop(ip_peer),
        Some(ip_router),
        "the stack must send to the peer through the router (routes {:?})",
        engine.neigh().routes()
    );
    assert_eq!(
        engine.neigh().peek(ip_router).map(|m| m.0),
        Some(tb.mac("mac_router")),
        "the router's MAC"
    );
    let tap = engine.io().stats();
    engine.io_mut().flush().expect("flush the pcap file");
    assert_eq!(tap.lost, 0, "{tap:?}");
    let sizes = sent_sizes(pcap_path, tb.get("mac_stack"));
    let ingress = fault.stats(Direction::Ingress).unwrap();
    let egress = fault.stats(Direction::Egress).unwrap();
    // Connections freed, and those still in TIME-WAIT (the stack's clients close first).
    let mut totals = engine.host().stats().closed_conns;
    for id in live {
        if let Some(c) = engine.host().conn(*id) {
            totals.add(&c.stats());
        }
    }
    eprintln!(
        "sent {sizes:?}; path {path:?}; tap {tap:?}; host icmp errors {}; stack {totals:?}",
        engine.host().stats().icmp_errors
    );
    assert_eq!(
        sizes.frames, tap.tx_frames,
        "every frame sent is in the capture"
    );
    assert_eq!(
        sizes.over_link, 0,
        "the stack sent {} frames over {LINK_FRAME} bytes (largest {}): its segments leave no \
         room for their options",
        sizes.over_link, sizes.largest
    );
    assert_eq!(
        path.stack_tx_dropped, 0,
        "the stack's veth dropped frames too big for the link"
    );
    assert!(
        path.router_unreachables >= 1 && path.router_frag_fails >= 1,
        "the router never had to say Fragmentation Needed: {path:?}"
    );
    assert!(
        sizes.over_path <= OVERSIZE_PER_CONN * CONNS as u64,
        "the stack sent {} packets over the path MTU of {PATH_MTU} after the router said so \
         ({} Fragmentation Needed)",
        sizes.over_path,
        path.router_unreachables
    );
    assert_loss_seen_and_repaired(path.peer_retrans, &ingress, &egress, &totals);
}

#[test]
fn kernel_clients_through_a_router_to_stack_echo_server() {
    require_environment(&["python3", "tcpdump"]);
    let tb = Testbed::up_routed("rte", PATH_MTU);
    let fault = common::veth::lossy_peer_link(&tb, LOSS);
    let pcap_path = std::env::temp_dir().join(format!("xdp-tcp-{}.pcap", tb.name()));
    let _remove = RemoveOnDrop(pcap_path.clone());
    let echo = EchoServer::new(ECHO_PORT);
    let counters = echo.counters();
    let run = start_captured(&tb, &[ECHO_PORT], echo, &pcap_path);
    let before = PathCounters::read(&tb);
    let started = Instant::now();
    let out = tb
        .python(
            240,
            "ns_peer",
            ECHO_CLIENT,
            &[
                tb.get("ip_stack"),
                &ECHO_PORT.to_string(),
                &CONNS.to_string(),
                &SIZE.to_string(),
            ],
        )
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    if !out.status.success() {
        let engine = run.threads.stop().pop().unwrap().expect("the engine");
        let open = describe(&engine, &engine.app().open_ids());
        panic!(
            "{CONNS} x {SIZE} echoed through the router at {LOSS} loss failed after \
             {elapsed:?}: {}\nthe stack's open connections:{open}\nhost {:?}\necho errors {}",
            String::from_utf8_lossy(&out.stderr).trim(),
            engine.host().stats(),
            counters.get(&counters.errors)
        );
    }
    eprintln!(
        "python: {} ({elapsed:?})",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    wait_for(
        "the echo server to close every connection",
        Duration::from_secs(20),
        || counters.get(&counters.finished) == CONNS as u64,
    );
    // The last FINs and ACKs; on this lossy link one may need a retransmission.
    std::thread::sleep(Duration::from_millis(1500));
    let path = PathCounters::read(&tb).since(before);
    let mut engine = stop(&tb, run);
    check_path(&tb, &mut engine, &pcap_path, path, &fault, &[]);
    assert_eq!(counters.get(&counters.errors), 0, "connections failed");
    assert_eq!(counters.get(&counters.accepted), CONNS as u64);
    let hs = engine.host().stats();
    assert_eq!(engine.host().conn_count(), 0, "connections left: {hs:?}");
    assert_eq!(hs.conns_freed, hs.conns_accepted);
    eprintln!("kernel clients through the router: {elapsed:?}");
}

#[test]
fn stack_clients_through_a_router_to_kernel_echo_server() {
    require_environment(&["python3", "tcpdump"]);
    let tb = Testbed::up_routed("rtc", PATH_MTU);
    let fault = common::veth::lossy_peer_link(&tb, LOSS);
    let pcap_path = std::env::temp_dir().join(format!("xdp-tcp-{}.pcap", tb.name()));
    let _remove = RemoveOnDrop(pcap_path.clone());
    let mut server = tb
        .python(
            240,
            "ns_peer",
            ECHO_SERVER,
            &[
                tb.get("ip_peer"),
                &KERNEL_PORT.to_string(),
                &CONNS.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut server);
    let before = PathCounters::read(&tb);
    let remote = SocketAddrV4::new(tb.ip("ip_peer"), KERNEL_PORT);
    let client = BulkClient::new(remote, CONNS, SIZE, 0x0dd5eed);
    let counters = client.counters();
    let started = Instant::now();
    let run = start_captured(&tb, &[], client, &pcap_path);
    let deadline = started + Duration::from_secs(240);
    while counters.get(&counters.finished) < CONNS as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    if counters.get(&counters.finished) < CONNS as u64 || counters.get(&counters.failed) > 0 {
        terminate(&mut server);
        let engine = run.threads.stop().pop().unwrap().expect("the engine");
        let outcomes = engine.app().outcomes();
        let bad: Vec<_> = outcomes
            .iter()
            .filter(|(_, o)| *o != Some(StreamOutcome::Ok))
            .collect();
        let ids: Vec<ConnId> = bad.iter().map(|(id, _)| *id).collect();
        panic!(
            "{} of {CONNS} connections through the router at {LOSS} loss did not finish \
             byte-exact within {elapsed:?}: {bad:?}\nthe stack's side:{}\nhost {:?}",
            bad.len(),
            describe(&engine, &ids),
            engine.host().stats()
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let path = PathCounters::read(&tb).since(before);
    let mut engine = stop(&tb, run);
    let served = ok(server.wait_with_output().unwrap(), "the kernel echo server");
    let ids: Vec<ConnId> = engine.app().outcomes().iter().map(|(id, _)| *id).collect();
    check_path(&tb, &mut engine, &pcap_path, path, &fault, &ids);
    assert_eq!(
        counters.get(&counters.bytes_verified),
        (CONNS * SIZE) as u64
    );
    eprintln!(
        "stack clients through the router: {CONNS} x {SIZE} in {elapsed:?}; peer: {}",
        served.trim()
    );
}
