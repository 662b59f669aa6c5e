//! AF_XDP against the Linux kernel across a veth pair (deploy/testbed.sh).
//!
//! These run as root in the normal suite. Without root or a required tool they fail with the fix
//! rather than skip: a skipped datapath test looks green while proving nothing.
//!
//! Each test brings up its own testbed (named after the test and the pid, so concurrent runs do
//! not collide) inside a guard whose Drop tears it down, and runs the AF_XDP side on a thread
//! that has entered the stack's network namespace (`tests/common/testbed.rs`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::rawtcp::{self, build_tcp, parse_tcp, Tcp, ACK, RST, SYN};
use common::testbed::{self, in_netns, ok, Testbed};

use xdp_tcp::io::xdp::{
    ifindex, AttachMode, SteerConfig, SteerProgram, UmemConfig, XdpMode, XdpSocket, XdpSocketConfig,
};
use xdp_tcp::io::PacketIo;

const STACK_PORT: u16 = 8080;
const KERNEL_PORT: u16 = 9000;

/// Root and the tools these tests call.
fn require_environment() {
    testbed::require_environment(&["python3", "ping"]);
}

#[test]
fn checksum_helpers_agree_with_a_known_header() {
    // RFC 1071 style check on a textbook IPv4 header whose checksum is 0xb861.
    let hdr = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(rawtcp::csum_fold(rawtcp::csum_add(0, &hdr)), 0xb861);
}

// ---- the tests ----

fn small_socket_config() -> XdpSocketConfig {
    XdpSocketConfig {
        umem: UmemConfig {
            frame_count: 512,
            fill_ring: 256,
            comp_ring: 256,
            ..Default::default()
        },
        rx_ring: 256,
        tx_ring: 256,
        ..Default::default()
    }
}

fn python_client(tb: &Testbed, port: u16) -> Child {
    // SO_LINGER 0: close() sends RST, so no FIN lingers in the peer after the test.
    let script = "import socket,struct,sys\n\
        s=socket.socket(); s.settimeout(3)\n\
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0))\n\
        s.connect((sys.argv[1], int(sys.argv[2])))\n\
        print('connected', s.getsockname()[1], flush=True)\n\
        s.close()\n";
    tb.in_ns(
        "ns_peer",
        &[
            "python3",
            "-c",
            script,
            tb.get("ip_stack"),
            &port.to_string(),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn python3 client")
}

/// The whole AF_XDP round trip against the kernel in one attach mode.
fn handshake_with_kernel(tag: &str, mode: AttachMode, expect: XdpMode) {
    require_environment();
    let tb = Testbed::up(tag);
    let ns = tb.get("ns_stack").to_string();
    let if_stack = tb.get("if_stack").to_string();
    let (ip_stack, ip_peer) = (tb.ip("ip_stack"), tb.ip("ip_peer"));

    let (prog, mut sock) = in_netns(&ns, move || {
        let mut prog = SteerProgram::load().expect("load xdp_steer (needs CAP_BPF)");
        prog.set_config(&SteerConfig {
            addr: ip_stack,
            ..Default::default()
        })
        .unwrap();
        prog.add_listen_port(STACK_PORT).unwrap();
        let got = prog
            .attach(ifindex(&if_stack).unwrap(), mode)
            .expect("attach XDP");
        assert_eq!(got, expect);
        let sock =
            XdpSocket::open(&if_stack, 0, &small_socket_config()).expect("open AF_XDP socket");
        prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
            .unwrap();
        (prog, sock)
    });
    eprintln!(
        "{tag}: mode {expect:?}, zero-copy {}, bind {:?} ({} EBUSY retries)",
        sock.is_zero_copy(),
        sock.bind_time(),
        sock.stats().bind_busy_retries
    );

    // (a) A SYN from the kernel reaches us; our SYN-ACK is accepted; the kernel ACKs.
    let client = python_client(&tb, STACK_PORT);
    const ISN: u32 = 0x1000_0000;
    let mut syn_seen = 0;
    let mut acked = false;
    // the client's RST (SO_LINGER 0) can come in the same rx batch as its ACK
    let mut rst = false;
    let mut client_port = None;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !acked {
        sock.wait_rx(Duration::from_millis(20));
        let mut replies = Vec::new();
        sock.recv_batch(64, |f| {
            let Some(t) = parse_tcp(f) else {
                panic!("non-TCP frame steered to us: {f:02x?}")
            };
            assert_eq!((t.dst, t.dport, t.src), (ip_stack, STACK_PORT, ip_peer));
            rst |= t.flags & RST != 0;
            if t.flags & SYN != 0 {
                syn_seen += 1;
                client_port = Some(t.sport);
                replies.push(Tcp::syn_ack(&t, ISN));
            } else if t.flags & ACK != 0 && t.ack == ISN.wrapping_add(1) {
                acked = true;
            }
        });
        for r in &replies {
            let mut it = std::iter::once(r);
            let sent = sock.send_batch(1, |buf| it.next().map(|r| build_tcp(r, buf)));
            assert_eq!(sent, 1);
        }
    }
    let out = client.wait_with_output().unwrap();
    let stdout = ok(out, "python connect to the AF_XDP side");
    assert!(syn_seen >= 1, "no SYN arrived through the AF_XDP socket");
    assert!(acked, "the kernel never ACKed our SYN-ACK");
    assert_eq!(
        stdout
            .split_whitespace()
            .nth(1)
            .map(|p| p.parse::<u16>().unwrap()),
        client_port
    );

    // The RST from the client's close (SO_LINGER 0) arrives too; collect until quiet.
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet_until {
        sock.wait_rx(Duration::from_millis(20));
        sock.recv_batch(64, |f| {
            rst |= parse_tcp(f).is_some_and(|t| t.flags & RST != 0)
        });
    }
    assert!(rst, "the client's RST did not arrive");

    // (b) Ping and a TCP port the stack does not own still reach the kernel (XDP_PASS).
    let before = prog.stats().unwrap();
    let rx_before = sock.stats().rx_frames;
    ok(
        tb.in_ns(
            "ns_peer",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                tb.get("ip_stack"),
            ],
        )
        .output()
        .unwrap(),
        "ping the kernel through the XDP program",
    );
    let server_script = "import socket,sys\n\
        l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); l.settimeout(5)\n\
        print('ready', flush=True)\n\
        c,_=l.accept(); c.sendall(b'kernel'); c.close()\n";
    let mut server = tb
        .in_ns(
            "ns_stack",
            &[
                "python3",
                "-c",
                server_script,
                tb.get("ip_stack"),
                &KERNEL_PORT.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let client_script = "import socket,sys\n\
        s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)\n\
        print(s.recv(16).decode())\n";
    let got = ok(
        tb.in_ns(
            "ns_peer",
            &[
                "python3",
                "-c",
                client_script,
                tb.get("ip_stack"),
                &KERNEL_PORT.to_string(),
            ],
        )
        .output()
        .unwrap(),
        "TCP to a kernel port",
    );
    assert_eq!(got.trim(), "kernel");
    assert!(server.wait().unwrap().success());
    sock.recv_batch(64, |f| {
        panic!("a frame for the kernel reached the socket: {f:02x?}")
    });
    assert_eq!(sock.stats().rx_frames, rx_before);
    let after = prog.stats().unwrap();
    assert_eq!(
        after.redirected(),
        before.redirected(),
        "kernel traffic was redirected"
    );
    assert!(
        after.pass_port > before.pass_port,
        "TCP to the kernel port was not counted pass_port"
    );
    assert!(
        after.pass_not_ours >= before.pass_not_ours + 3,
        "pings/ARP not counted pass_not_ours"
    );

    // (c) The books balance and every redirected frame reached the socket.
    let acc = sock.check_accounting().expect("frame accounting");
    assert_eq!(acc.app, 0);
    let stats = prog.stats().unwrap();
    assert_eq!(stats.redirect_failed, 0);
    assert_eq!(
        stats.redirected(),
        sock.stats().rx_frames,
        "redirected {stats:?}, socket {:?}",
        sock.stats()
    );
    let k = sock.kernel_stats().unwrap();
    assert_eq!(
        (
            k.rx_dropped(),
            k.rx_ring_full(),
            k.rx_invalid_descs(),
            k.tx_invalid_descs()
        ),
        (0, 0, 0, 0)
    );
    eprintln!(
        "{tag}: steer {stats:?}\n{tag}: socket {:?}\n{tag}: frames {acc:?}",
        sock.stats()
    );

    // Dropping the program detaches it (and only it) from the interface.
    drop(sock);
    drop(prog);
    let link = ok(
        tb.in_ns("ns_stack", &["ip", "link", "show", tb.get("if_stack")])
            .output()
            .unwrap(),
        "ip link show",
    );
    assert!(
        !link.contains("prog/xdp"),
        "XDP program still attached after drop: {link}"
    );
}

#[test]
fn veth_native_handshake_with_kernel() {
    handshake_with_kernel("nat", AttachMode::Auto, XdpMode::Native);
}

#[test]
fn veth_generic_handshake_with_kernel() {
    handshake_with_kernel("gen", AttachMode::Generic, XdpMode::Generic);
}

/// Sets up program + socket on queue 0 in the stack namespace.
fn open_stack(tb: &Testbed, cfg: SteerConfig, mode: AttachMode) -> (SteerProgram, XdpSocket) {
    let ns = tb.get("ns_stack").to_string();
    let if_stack = tb.get("if_stack").to_string();
    in_netns(&ns, move || {
        let mut prog = SteerProgram::load().expect("load xdp_steer (needs CAP_BPF)");
        prog.set_config(&cfg).unwrap();
        prog.add_listen_port(STACK_PORT).unwrap();
        prog.attach(ifindex(&if_stack).unwrap(), mode)
            .expect("attach XDP");
        let sock =
            XdpSocket::open(&if_stack, 0, &small_socket_config()).expect("open AF_XDP socket");
        prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
            .unwrap();
        (prog, sock)
    })
}

/// Receives until `done` says so or `limit` passes; returns the frames seen.
fn collect(
    sock: &mut XdpSocket,
    limit: Duration,
    mut done: impl FnMut(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !done(&frames) {
        sock.wait_rx(Duration::from_millis(10));
        sock.recv_batch(64, |f| frames.push(f.to_vec()));
    }
    frames
}

fn peer_rx_packets(tb: &Testbed) -> u64 {
    let path = format!("/sys/class/net/{}/statistics/rx_packets", tb.get("if_peer"));
    ok(
        tb.in_ns("ns_peer", &["cat", &path]).output().unwrap(),
        "read peer rx_packets",
    )
    .trim()
    .parse()
    .unwrap()
}

/// More frames than one copy-mode `sendto` moves (32), from ephemeral ports to a closed peer
/// port: every SYN must leave and every RST the kernel answers with must be steered back.
#[test]
fn veth_burst_through_ephemeral_ports() {
    require_environment();
    let tb = Testbed::up("bur");
    let cfg = SteerConfig {
        addr: tb.ip("ip_stack"),
        ..Default::default()
    };
    let eph = cfg.ephemeral_ports.clone();
    let (prog, mut sock) = open_stack(&tb, cfg, AttachMode::Auto);
    const N: u16 = 500;
    let base = Tcp {
        src_mac: tb.mac("mac_stack"),
        dst_mac: tb.mac("mac_peer"),
        src: tb.ip("ip_stack"),
        dst: tb.ip("ip_peer"),
        sport: 0,
        dport: 7,
        seq: 1,
        ack: 0,
        flags: SYN,
    };
    let peer_before = peer_rx_packets(&tb);
    let started = Instant::now();
    let mut queued = 0u16;
    let mut frames = Vec::new();
    while queued < N && started.elapsed() < Duration::from_secs(5) {
        let mut offered = queued;
        let sent = sock.send_batch(64, |buf| {
            (offered < N).then(|| {
                let t = Tcp {
                    sport: eph.start() + offered,
                    ..base
                };
                offered += 1;
                build_tcp(&t, buf)
            })
        });
        queued += sent as u16;
        sock.recv_batch(64, |f| frames.push(f.to_vec()));
    }
    assert_eq!(queued, N, "could not queue {N} frames in 5 s");
    let have = frames.len();
    let more = collect(&mut sock, Duration::from_secs(3), |f| {
        have + f.len() >= N as usize
    });
    frames.extend(more);
    let elapsed = started.elapsed();
    let rsts = frames
        .iter()
        .filter_map(|f| parse_tcp(f))
        .filter(|t| t.flags & RST != 0 && eph.contains(&t.dport) && t.sport == 7)
        .count();
    assert_eq!(
        rsts, N as usize,
        "expected one RST per SYN back through the socket"
    );
    assert!(
        peer_rx_packets(&tb) - peer_before >= u64::from(N),
        "the peer did not receive every frame"
    );
    // Let the last completions land, then the books must balance with nothing lent for tx.
    let deadline = Instant::now() + Duration::from_secs(1);
    while sock.accounting().tx > 0 && Instant::now() < deadline {
        sock.reclaim_completions();
        std::thread::sleep(Duration::from_millis(1));
    }
    let acc = sock.check_accounting().expect("frame accounting");
    assert_eq!((acc.app, acc.tx), (0, 0), "{acc:?}");
    let stats = prog.stats().unwrap();
    assert_eq!(stats.redirected(), sock.stats().rx_frames);
    assert_eq!(stats.redirect_tcp, N as u64);
    eprintln!(
        "burst: {N} SYN out, {rsts} RST back in {elapsed:?}; socket {:?}",
        sock.stats()
    );
}

const ICMP_SCRIPT: &str = r#"
import socket, struct, sys
stack, peer = sys.argv[1], sys.argv[2]
def cs(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s & 0xffff) + (s >> 16)
    s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for sport in map(int, sys.argv[3:]):
    inner = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0, 64, 6, 0,
                        socket.inet_aton(stack), socket.inet_aton(peer))
    inner += struct.pack('!HHI', sport, 80, 1)
    m = struct.pack('!BBHI', 3, 3, 0, 0) + inner
    m = m[:2] + struct.pack('!H', cs(m)) + m[4:]
    s.sendto(m, (stack, 0))
"#;

const ARP_SCRIPT: &str = r#"
import socket, struct, sys
ifname, mac, ip, target = sys.argv[1:5]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
m = bytes.fromhex(mac.replace(':', ''))
s.send(b'\xff' * 6 + m + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1)
       + m + socket.inet_aton(ip) + b'\0' * 6 + socket.inet_aton(target))
"#;

/// ICMP errors quoting our TCP and (when asked) ARP for our address are steered; the same with
/// a port we do not own, or ARP with the flag off, reach the kernel.
#[test]
fn veth_icmp_and_arp_steering() {
    require_environment();
    let tb = Testbed::up("icm");
    let cfg = SteerConfig {
        addr: tb.ip("ip_stack"),
        // Off while the peer resolves us for the ICMP part: with it on nobody answers ARP.
        steer_arp: false,
        ..Default::default()
    };
    let (prog, mut sock) = open_stack(&tb, cfg.clone(), AttachMode::Auto);
    let (ip_stack, ip_peer) = (
        tb.get("ip_stack").to_string(),
        tb.get("ip_peer").to_string(),
    );

    let icmp = |ports: &[u16]| {
        let mut args = vec!["python3", "-c", ICMP_SCRIPT, &ip_stack, &ip_peer];
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        args.extend(ports.iter().map(String::as_str));
        ok(
            tb.in_ns("ns_peer", &args).output().unwrap(),
            "send ICMP from the peer",
        );
    };
    icmp(&[STACK_PORT, KERNEL_PORT]);
    let frames = collect(&mut sock, Duration::from_secs(2), |f| !f.is_empty());
    assert_eq!(
        frames.len(),
        1,
        "exactly the ICMP quoting our port is steered"
    );
    let f = &frames[0];
    assert_eq!(
        (&f[12..14], f[23], f[34]),
        (&[0x08, 0x00][..], 1, 3),
        "an ICMP dest-unreachable"
    );
    let s = prog.stats().unwrap();
    assert_eq!((s.redirect_icmp, s.pass_port), (1, 1), "{s:?}");

    let arp = || {
        let args = [
            "python3",
            "-c",
            ARP_SCRIPT,
            tb.get("if_peer"),
            tb.get("mac_peer"),
            &ip_peer,
            &ip_stack,
        ];
        ok(
            tb.in_ns("ns_peer", &args).output().unwrap(),
            "send ARP from the peer",
        );
    };
    prog.set_config(&SteerConfig {
        steer_arp: true,
        ..cfg.clone()
    })
    .unwrap();
    arp();
    let frames = collect(&mut sock, Duration::from_secs(2), |f| !f.is_empty());
    // The peer's own neighbour probes may add ARP frames, but only ARP may arrive.
    assert!(!frames.is_empty(), "the ARP request was not steered");
    assert!(
        frames.iter().all(|f| f[12..14] == [0x08, 0x06]),
        "only ARP frames"
    );
    let arp_steered = prog.stats().unwrap().redirect_arp;
    assert!(arp_steered >= 1);

    prog.set_config(&cfg).unwrap();
    let passed_before = prog.stats().unwrap().pass_not_ours;
    arp();
    let frames = collect(&mut sock, Duration::from_millis(300), |f| !f.is_empty());
    assert!(
        frames.is_empty(),
        "ARP reached the socket with steer_arp off"
    );
    let s = prog.stats().unwrap();
    assert_eq!(s.redirect_arp, arp_steered);
    assert!(s.pass_not_ours > passed_before);
    assert_eq!(s.redirected(), sock.stats().rx_frames);
    sock.check_accounting().expect("frame accounting");
}

/// Re-binding a queue right after its socket closed: the bounded EBUSY retry must absorb it.
#[test]
fn veth_rebind_after_close() {
    require_environment();
    let tb = Testbed::up("reb");
    let ns = tb.get("ns_stack").to_string();
    let if_stack = tb.get("if_stack").to_string();
    let cfg = SteerConfig {
        addr: tb.ip("ip_stack"),
        ..Default::default()
    };
    let report = in_netns(&ns, move || {
        let mut prog = SteerProgram::load().unwrap();
        prog.set_config(&cfg).unwrap();
        prog.attach(ifindex(&if_stack).unwrap(), AttachMode::Auto)
            .unwrap();
        let mut report = Vec::new();
        for _ in 0..5 {
            let sock = XdpSocket::open(&if_stack, 0, &small_socket_config())
                .expect("bind within the EBUSY retry bound");
            prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
                .unwrap();
            report.push((sock.bind_time(), sock.stats().bind_busy_retries));
            drop(sock);
        }
        report
    });
    eprintln!("rebind: (bind time, EBUSY retries) {report:?}");
}
