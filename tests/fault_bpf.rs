//! The tc-BPF fault injector (`bpf/fault.c`, `io::fault_bpf`) on the veth testbed, proved on
//! kernel-to-kernel TCP without our stack; and the pcap tap on a real AF_XDP socket, checked by
//! tshark.
//!
//! Root, normal suite: without root or a tool these fail with the fix instead of skipping. Each
//! test brings up its own testbed inside a guard whose Drop tears it down (the namespaces take
//! the veth, and with it the tcx links, with them); every external command is under `timeout`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::rawtcp::{build_tcp, parse_tcp, Tcp, ACK, RST, SYN};
use common::testbed::{in_netns, ok, require_environment, tshark_check, Testbed};
use xdp_tcp::io::fault_bpf::{Direction, TcFaultProgram, TcFaultRates, TcFaultStats};
use xdp_tcp::io::pcap::{self, PcapConfig, PcapTap};
use xdp_tcp::io::xdp::XdpSocketConfig;
use xdp_tcp::io::xdp::{ifindex, AttachMode, SteerConfig, SteerProgram, UmemConfig, XdpSocket};
use xdp_tcp::io::PacketIo;

const ECHO_PORT: u16 = 9100;

/// A kernel echo server in the peer namespace: echoes everything, then prints
/// `<bytes> <sha256>` of what it received.
fn echo_server(tb: &Testbed) -> Child {
    let script = "import socket,sys,hashlib\n\
        l=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
        l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); l.settimeout(60)\n\
        print('ready', flush=True)\n\
        c,_=l.accept(); c.settimeout(60)\n\
        h=hashlib.sha256(); n=0\n\
        while True:\n\
        \x20   b=c.recv(65536)\n\
        \x20   if not b: break\n\
        \x20   h.update(b); n+=len(b); c.sendall(b)\n\
        c.close()\n\
        print(n, h.hexdigest(), flush=True)\n";
    let mut child = tb
        .in_ns_for(
            90,
            "ns_peer",
            &[
                "python3",
                "-c",
                script,
                tb.get("ip_peer"),
                &ECHO_PORT.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3 echo server");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "echo server did not start");
    child
}

/// Sends `len` seeded random bytes from the stack namespace's kernel to the echo server and reads
/// the echo back; checks both directions byte-exact by SHA-256. Returns the elapsed time.
fn echo_transfer(tb: &Testbed, len: usize) -> Duration {
    let server = echo_server(tb);
    let client = "import socket,sys,hashlib,random,threading\n\
        n=int(sys.argv[3]); data=random.Random(7).randbytes(n)\n\
        s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 20); s.settimeout(60)\n\
        def tx():\n\
        \x20   s.sendall(data); s.shutdown(socket.SHUT_WR)\n\
        t=threading.Thread(target=tx); t.start()\n\
        h=hashlib.sha256(); got=0\n\
        while True:\n\
        \x20   b=s.recv(65536)\n\
        \x20   if not b: break\n\
        \x20   h.update(b); got+=len(b)\n\
        t.join(); s.close()\n\
        print(got, h.hexdigest(), hashlib.sha256(data).hexdigest(), flush=True)\n";
    let start = Instant::now();
    let out = tb
        .in_ns_for(
            90,
            "ns_stack",
            &[
                "python3",
                "-c",
                client,
                tb.get("ip_peer"),
                &ECHO_PORT.to_string(),
                &len.to_string(),
            ],
        )
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let client_out = ok(out, "kernel echo client");
    let server_out = ok(server.wait_with_output().unwrap(), "kernel echo server");
    let c: Vec<&str> = client_out.split_whitespace().collect();
    let s: Vec<&str> = server_out.split_whitespace().collect();
    assert_eq!(c.len(), 3, "client printed {client_out:?}");
    assert_eq!(s.len(), 2, "server printed {server_out:?}");
    assert_eq!(s[0], len.to_string(), "server received a different length");
    assert_eq!(s[1], c[2], "server received different bytes");
    assert_eq!(c[0], len.to_string(), "client got a different length back");
    assert_eq!(c[1], c[2], "echo differs from what was sent");
    elapsed
}

/// `count` events out of `n` trials at probability `p`: within 5 standard deviations (plus 2 for
/// small n). Sound for any n, and false alarms are about one run in 1.7 million.
fn assert_rate(what: &str, count: u64, n: u64, p: f64) {
    let mean = p * n as f64;
    let sd = (n as f64 * p * (1.0 - p)).sqrt();
    let dev = (count as f64 - mean).abs();
    assert!(
        dev <= 5.0 * sd + 2.0,
        "{what}: {count} of {n} at rate {p} (expected {mean:.0} +- {:.0})",
        5.0 * sd + 2.0
    );
}

fn load_on_peer(tb: &Testbed) -> TcFaultProgram {
    let mut prog = TcFaultProgram::load().expect("load fault.o (needs CAP_BPF)");
    prog.attach_in_netns(&tb.netns_path("ns_peer"), tb.get("if_peer"))
        .expect("attach tcx ingress/egress on the peer veth (kernel >= 6.6)");
    prog
}

/// `TcpRetransSegs` of the stack's and the peer's namespace.
fn retrans(tb: &Testbed) -> [u64; 2] {
    ["ns_stack", "ns_peer"].map(|ns| tb.tcp_snmp(ns)["RetransSegs"])
}

#[test]
fn tc_fault_drops_kernel_tcp_at_the_configured_rate() {
    require_environment(&[]);
    let tb = Testbed::up("drp");
    let prog = load_on_peer(&tb);
    // 10%: at 20% each way one kernel-to-kernel run in about 25 took over 60 s here (a SYN, FIN
    // or retransmission lost again and again behind exponential backoff; the kernel's tail, not
    // the program's); the rate check is the same 5-sigma test at any rate.
    const P: f64 = 0.1;
    for dir in [Direction::Ingress, Direction::Egress] {
        prog.set_rates(
            dir,
            TcFaultRates {
                drop: P,
                duplicate: 0.0,
            },
        )
        .unwrap();
    }
    let retrans_before = retrans(&tb);
    let elapsed = echo_transfer(&tb, 256 * 1024);
    let retrans_after = retrans(&tb);
    let [stack_retrans, peer_retrans] = [0, 1].map(|i| retrans_after[i] - retrans_before[i]);
    let ing = prog.stats(Direction::Ingress).unwrap();
    let eg = prog.stats(Direction::Egress).unwrap();
    eprintln!(
        "drop {P}: transfer {elapsed:?}; ingress {ing:?} ({:.3}); egress {eg:?} ({:.3}); \
         retransmitted segments: stack namespace {stack_retrans}, peer {peer_retrans}",
        ing.dropped as f64 / ing.tcp_frames() as f64,
        eg.dropped as f64 / eg.tcp_frames() as f64,
    );
    for (name, st) in [("ingress", ing), ("egress", eg)] {
        assert!(
            st.tcp_frames() >= 150,
            "{name}: too few frames to judge: {st:?}"
        );
        assert_eq!(st.super_frames, 0, "{name}: faults hit GSO bursts: {st:?}");
        assert_rate(name, st.dropped, st.tcp_frames(), P);
        assert_eq!((st.duplicated, st.clones_seen, st.clone_failed), (0, 0, 0));
    }
    // Silent loss (issue 11, acceptance 0): each kernel retransmitted what it lost, the peer
    // its egress drops as much as the stack namespace its ingress ones. A drop reported to the
    // sender (TC_ACT_SHOT at egress) is re-sent as new data and leaves the peer's count flat.
    // 90%: Linux may merge two small lost segments into one retransmission.
    for (who, retrans, lost) in [
        ("stack namespace", stack_retrans, ing.dropped_seq),
        ("peer", peer_retrans, eg.dropped_seq),
    ] {
        assert!(lost > 0, "{who}: no segment lost");
        assert!(
            retrans * 10 >= lost * 9,
            "{who}: {retrans} retransmissions for {lost} lost segments"
        );
    }
}

#[test]
fn tc_fault_spares_non_tcp_and_detaches_on_drop() {
    require_environment(&["ping"]);
    let tb = Testbed::up("arp");
    let prog = load_on_peer(&tb);
    for dir in [Direction::Ingress, Direction::Egress] {
        prog.set_rates(
            dir,
            TcFaultRates {
                drop: 1.0,
                duplicate: 0.0,
            },
        )
        .unwrap();
    }
    // ARP and ICMP pass.
    ok(
        tb.in_ns_for(
            10,
            "ns_stack",
            &["ping", "-c", "3", "-i", "0.2", "-W", "1", tb.get("ip_peer")],
        )
        .output()
        .unwrap(),
        "ping through the fault program at drop 1.0",
    );
    // Every TCP frame is dropped: a SYN to a closed port gets no RST back.
    let probe = "import socket,sys\n\
        s=socket.socket(); s.settimeout(float(sys.argv[3]))\n\
        try:\n\
        \x20   s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n\
        except ConnectionRefusedError: print('refused')\n\
        except socket.timeout: print('timeout')\n";
    let connect = |wait: &str| {
        ok(
            tb.in_ns_for(
                10,
                "ns_stack",
                &["python3", "-c", probe, tb.get("ip_peer"), "9", wait],
            )
            .output()
            .unwrap(),
            "TCP probe",
        )
        .trim()
        .to_string()
    };
    assert_eq!(connect("1"), "timeout");
    let ing = prog.stats(Direction::Ingress).unwrap();
    let eg = prog.stats(Direction::Egress).unwrap();
    eprintln!("drop 1.0: ingress {ing:?}; egress {eg:?}");
    assert!(ing.dropped >= 1 && ing.passed == 0, "{ing:?}");
    assert_eq!(
        eg.tcp_frames(),
        0,
        "the peer answered a SYN it never got: {eg:?}"
    );
    // ping requests, ARP in; replies, ARP out
    assert!(ing.other >= 3 && eg.other >= 3, "{ing:?} {eg:?}");

    drop(prog);
    assert_eq!(
        connect("3"),
        "refused",
        "TCP still dropped after the program was dropped"
    );
}

#[test]
fn tc_fault_duplicates_kernel_tcp() {
    require_environment(&[]);
    let tb = Testbed::up("dup");
    let prog = load_on_peer(&tb);
    const P: f64 = 0.25;
    for dir in [Direction::Ingress, Direction::Egress] {
        prog.set_rates(
            dir,
            TcFaultRates {
                drop: 0.0,
                duplicate: P,
            },
        )
        .unwrap();
    }
    let elapsed = echo_transfer(&tb, 256 * 1024);
    let ing = prog.stats(Direction::Ingress).unwrap();
    let eg = prog.stats(Direction::Egress).unwrap();
    eprintln!("duplicate {P}: transfer {elapsed:?}; ingress {ing:?}; egress {eg:?}");
    for (name, st) in [("ingress", ing), ("egress", eg)] {
        let st: TcFaultStats = st;
        assert!(
            st.tcp_frames() >= 150,
            "{name}: too few frames to judge: {st:?}"
        );
        assert_eq!(st.dropped, 0);
        assert_eq!(st.super_frames, 0, "{name}: faults hit GSO bursts: {st:?}");
        assert_eq!(st.clone_failed, 0, "{name}: {st:?}");
        assert_rate(name, st.duplicated, st.tcp_frames(), P);
        // every clone came back through the same hook once and was let through untouched
        assert_eq!(st.clones_seen, st.duplicated, "{name}: {st:?}");
    }
}

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

/// A handshake between the kernel and hand-made segments on an AF_XDP socket behind a PcapTap;
/// tshark, with checksum validation on, must find every frame and no bad or malformed one.
#[test]
fn pcap_tap_on_af_xdp_passes_tshark_checksum_validation() {
    require_environment(&["tshark"]);
    const STACK_PORT: u16 = 8080;
    let tb = Testbed::up("pcp");
    let ns = tb.get("ns_stack").to_string();
    let if_stack = tb.get("if_stack").to_string();
    let ip_stack = tb.ip("ip_stack");
    let (prog, sock) = in_netns(&ns, move || {
        let mut prog = SteerProgram::load().expect("load xdp_steer (needs CAP_BPF)");
        prog.set_config(&SteerConfig {
            addr: ip_stack,
            ..Default::default()
        })
        .unwrap();
        prog.add_listen_port(STACK_PORT).unwrap();
        prog.attach(ifindex(&if_stack).unwrap(), AttachMode::Auto)
            .expect("attach XDP");
        let sock =
            XdpSocket::open(&if_stack, 0, &small_socket_config()).expect("open AF_XDP socket");
        prog.register_socket(0, std::os::fd::AsRawFd::as_raw_fd(&sock))
            .unwrap();
        (prog, sock)
    });
    let path = std::env::temp_dir().join(format!("xdp-tcp-{}-tap.pcap", tb.name()));
    struct RemoveOnDrop<'a>(&'a Path);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = RemoveOnDrop(&path);
    // The test is the engine here: it reads the clock and stamps the tap.
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let cfg = PcapConfig {
        epoch_unix_nanos: epoch.as_nanos() as u64,
        ..Default::default()
    };
    let mut tap = PcapTap::create(sock, &path, cfg).expect("create pcap file");
    let started = Instant::now();

    let script = "import socket,struct,sys\n\
        s=socket.socket(); s.settimeout(3)\n\
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii',1,0))\n\
        s.connect((sys.argv[1], int(sys.argv[2])))\n\
        s.close()\n";
    let client = tb
        .in_ns_for(
            10,
            "ns_peer",
            &[
                "python3",
                "-c",
                script,
                tb.get("ip_stack"),
                &STACK_PORT.to_string(),
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    const ISN: u32 = 0x2000_0000;
    let (mut acked, mut rst) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !(acked && rst) {
        tap.wait_rx(Duration::from_millis(20));
        tap.set_time(xdp_tcp::Instant::from_nanos(
            started.elapsed().as_nanos() as u64
        ));
        let mut replies = Vec::new();
        tap.recv_batch(64, |f| {
            let t = parse_tcp(f).expect("only TCP is steered to us");
            rst |= t.flags & RST != 0;
            if t.flags & SYN != 0 {
                replies.push(Tcp::syn_ack(&t, ISN));
            } else if t.flags & ACK != 0 && t.ack == ISN.wrapping_add(1) {
                acked = true;
            }
        });
        let mut it = replies.iter();
        tap.send_batch(replies.len(), |buf| it.next().map(|r| build_tcp(r, buf)));
    }
    ok(
        client.wait_with_output().unwrap(),
        "python connect to the AF_XDP side",
    );
    assert!(
        acked && rst,
        "handshake incomplete: acked {acked}, rst {rst}"
    );
    let st = tap.stats();
    let (sock, _file) = tap.finish().expect("flush the pcap file");
    let frames = st.rx_frames + st.tx_frames;
    assert_eq!(
        st.rx_frames,
        sock.stats().rx_frames,
        "tap missed received frames"
    );
    assert!(frames >= 4, "{st:?}");
    drop(sock);
    drop(prog);

    let bytes = std::fs::read(&path).unwrap();
    let (hdr, records) = pcap::parse(&bytes).expect("our parser reads the file");
    assert_eq!(hdr.linktype, pcap::LINKTYPE_ETHERNET);
    assert_eq!(records.len() as u64, frames);
    let (seen, bad) = tshark_check(&path, ip_stack, STACK_PORT);
    assert_eq!(seen, frames, "tshark frame count");
    assert_eq!(bad, "", "tshark found bad or malformed frames");
    eprintln!("pcap: {frames} frames ({st:?}), tshark clean");
}
