//! The inspector against a running example on the veth testbed (root): the echo server example
//! started with a control socket serves kernel clients from the peer namespace through a
//! tc-BPF program that silently drops 2% of the TCP frames each way; `xdp-tcp stat PATH` then
//! lists every connection with its state and queues, `--json` parses and holds the same, and
//! `--prometheus` gives one sample per counter. The stack's counters equal what crossed the
//! wire, exactly: segments in as the fault program let through from the peer, segments out as
//! it saw from us, opens as the clients made, XDP redirects as segments in.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::testbed::{in_netns, require_environment, Testbed};
use serde_json::Value;
use xdp_tcp::io::fault_bpf::{Direction, TcFaultProgram, TcFaultRates};

const PORT: u16 = 7;
const CONNS: usize = 16;
const BYTES: usize = 20_000;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The echo example, built now if needed (cargo's debug profile, as tests/api_veth.rs does).
fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--example", name])
        .current_dir(workspace())
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build --example {name}");
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/this-test -> target/debug/examples/NAME
    let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    target.join("debug/examples").join(name)
}

/// The example in the stack's namespace; SIGINT on `stop`, SIGKILL on drop if still there.
struct Server(Child);

impl Server {
    fn stop(mut self) {
        // SAFETY: kill(2) with the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        while self.0.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(5), "ignored SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on the process group of a child we spawned and have not reaped.
            unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

fn stat(path: &Path, flags: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xdp-tcp"))
        .arg("stat")
        .arg(path)
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xdp-tcp stat {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn counters(v: &Value) -> HashMap<String, u64> {
    v["counters"]
        .as_object()
        .expect("counters")
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

/// The counters that move only with traffic (not the loop's iterations and sleeps).
fn traffic(v: &Value) -> Vec<(String, u64)> {
    let mut t: Vec<_> = counters(v)
        .into_iter()
        .filter(|(k, _)| k.starts_with("Tcp") || k.starts_with("xdp.") || k.ends_with("_frames"))
        .collect();
    t.sort();
    t
}

#[test]
fn stat_lists_every_connection_of_a_running_example_and_counts_what_crossed_the_wire() {
    require_environment(&["ip", "ethtool", "timeout"]);
    let exe = example("echo_server");
    let tb = Testbed::up("sta");
    let sock = std::env::temp_dir().join(format!("xdp-tcp-stat-{}.sock", std::process::id()));
    let mut fault = TcFaultProgram::load().expect("load fault.o");
    for dir in [Direction::Ingress, Direction::Egress] {
        let rates = TcFaultRates {
            drop: 0.02,
            duplicate: 0.0,
        };
        fault.set_rates(dir, rates).unwrap();
    }
    fault
        .attach_in_netns(&tb.netns_path("ns_peer"), tb.get("if_peer"))
        .expect("attach the fault program on the peer's veth");

    let mut child = tb
        .in_ns_for(
            120,
            "ns_stack",
            &[
                exe.to_str().unwrap(),
                tb.get("if_stack"),
                &PORT.to_string(),
                sock.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    assert!(
        line.contains(&format!(":{PORT}")),
        "did not start: {line:?}"
    );
    let peer_before = tb.tcp_snmp("ns_peer");

    // kernel clients in the peer's namespace: each echoes BYTES and stays open
    let target = SocketAddrV4::new(tb.ip("ip_stack"), PORT);
    let clients: Vec<TcpStream> = in_netns(tb.get("ns_peer"), move || {
        (0..CONNS)
            .map(|i| {
                let mut s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(5))
                    .expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let msg: Vec<u8> = (0..BYTES).map(|j| (i * 31 + j) as u8).collect();
                s.write_all(&msg).unwrap();
                let mut back = vec![0u8; BYTES];
                s.read_exact(&mut back).unwrap();
                assert_eq!(back, msg, "echoed byte-exact");
                s
            })
            .collect()
    });

    // until nothing more crosses: the counters and the fault program's stay still
    let snapshot = || {
        let v: Value = serde_json::from_str(&stat(&sock, &["--json"])).expect("--json parses");
        let f = (
            fault.stats(Direction::Ingress).unwrap(),
            fault.stats(Direction::Egress).unwrap(),
        );
        (v, f)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (v, (to_peer, from_peer)) = loop {
        let a = snapshot();
        std::thread::sleep(Duration::from_millis(700));
        let b = snapshot();
        if traffic(&a.0) == traffic(&b.0) && a.1 == b.1 {
            break b;
        }
        assert!(Instant::now() < deadline, "traffic never settled");
    };
    let peer_after = tb.tcp_snmp("ns_peer");
    let c = counters(&v);
    let peer = |k: &str| peer_after[k] - peer_before[k];

    // every connection, by the peer's address, with its state and queues
    let conns = v["engines"][0]["conns"].as_array().expect("conns");
    assert_eq!(conns.len(), CONNS, "{v}");
    let text = stat(&sock, &[]);
    for s in &clients {
        let addr = s.local_addr().unwrap().to_string();
        let row = conns
            .iter()
            .find(|c| c["remote"] == addr.as_str())
            .unwrap_or_else(|| panic!("{addr} not in {v}"));
        assert_eq!(row["state"], "ESTAB");
        assert_eq!(
            (row["recv_q"].as_u64(), row["send_q"].as_u64()),
            (Some(0), Some(0))
        );
        assert_eq!(row["bytes_received"].as_u64(), Some(BYTES as u64), "{row}");
        assert_eq!(row["bytes_acked"].as_u64(), Some(BYTES as u64), "{row}");
        let line = text
            .lines()
            .find(|l| l.contains(&addr))
            .unwrap_or_else(|| panic!("{addr} not in:\n{text}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[..3], ["ESTAB", "0", "0"], "{line}");
    }
    eprintln!("{text}");

    // the counters against the wire
    assert!(
        from_peer.dropped > 0 && to_peer.dropped > 0,
        "the loss was real"
    );
    assert_eq!(c["TcpPassiveOpens"], CONNS as u64);
    assert_eq!(peer("ActiveOpens"), CONNS as u64);
    assert_eq!(c["TcpCurrEstab"], CONNS as u64);
    assert_eq!(
        c["TcpInSegs"], from_peer.passed,
        "what the fault program let through"
    );
    // OutSegs leaves retransmissions to RetransSegs, in Linux and here
    let sent = c["TcpOutSegs"] + c["TcpRetransSegs"];
    assert_eq!(sent, to_peer.tcp_frames(), "what it saw from us");
    assert_eq!(
        peer("OutSegs") + peer("RetransSegs"),
        from_peer.tcp_frames()
    );
    assert_eq!(peer("InSegs"), to_peer.passed);
    assert!(
        c["TcpRetransSegs"] >= to_peer.dropped_seq,
        "each lost segment resent"
    );
    assert_eq!(
        c["xdp.redirect_tcp"], c["TcpInSegs"],
        "every segment steered to us"
    );
    assert_eq!(c["engine.rx_ipv4"], c["TcpInSegs"]);
    assert_eq!(c["xsk.rx_frames"], c["engine.rx_frames"]);
    for k in ["xsk.rx_dropped", "xsk.rx_ring_full", "xsk.rx_invalid_descs"] {
        assert_eq!(c[k], 0, "{k}");
    }
    assert_eq!(
        (c["TcpInErrs"], c["TcpEstabResets"], c["TcpOutRsts"]),
        (0, 0, 0)
    );

    let prom = stat(&sock, &["--prometheus"]);
    assert!(prom.contains(&format!(
        "xdp_tcp_TcpPassiveOpens{{engine=\"0\"}} {CONNS}\n"
    )));
    let watched = stat(&sock, &["--watch", "--count", "2", "--interval", "0.2"]);
    assert_eq!(watched.matches("Local Address:Port").count(), 2);

    drop(clients);
    server.stop();
    assert!(!sock.exists(), "the control socket is removed on shutdown");
    drop(fault);
}

fn pcap(path: &Path, flags: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_xdp-tcp"))
        .arg("pcap")
        .arg(path)
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "xdp-tcp pcap {flags:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One kernel connection from the peer: `msg` echoed, then the client's FIN, the server's FIN
/// after it, and the close. Returns the client's port.
fn echo_once(tb: &Testbed, msg: Vec<u8>) -> u16 {
    let target = SocketAddrV4::new(tb.ip("ip_stack"), PORT);
    in_netns(tb.get("ns_peer"), move || {
        let mut s =
            TcpStream::connect_timeout(&target.into(), Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg, "echoed byte-exact");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0, "the server's FIN");
        s.local_addr().unwrap().port()
    })
}

/// Waits (bounded) until the stack holds no connection: every FIN acknowledged.
fn until_no_connections(sock: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = serde_json::from_str(&stat(sock, &["--json"])).unwrap();
        if v["engines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["conns"].as_array().unwrap().is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "connections stay: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One TCP segment of a captured Ethernet frame: (source port, destination port, flags, seq,
/// payload).
fn tcp_of(frame: &[u8]) -> Option<(u16, u16, u8, u32, &[u8])> {
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    if frame.len() < 14 + 20 || be16(frame, 12) != 0x0800 {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ip[9] != 6 || total > ip.len() {
        return None;
    }
    let tcp = &ip[ihl..total];
    let off = usize::from(tcp[12] >> 4) * 4;
    let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
    Some((be16(tcp, 0), be16(tcp, 2), tcp[13], seq, &tcp[off..]))
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// What one direction of a connection looked like in the capture.
#[derive(Default, Debug)]
struct Half {
    syn: usize,
    fin: usize,
    rst: usize,
    isn: Option<u32>,
    /// The payload reassembled by sequence number (a retransmission lands on itself).
    data: Vec<u8>,
}

impl Half {
    fn add(&mut self, flags: u8, seq: u32, payload: &[u8]) {
        if flags & SYN != 0 {
            self.syn += 1;
            self.isn = Some(seq);
        }
        self.fin += usize::from(flags & FIN != 0);
        self.rst += usize::from(flags & RST != 0);
        if payload.is_empty() {
            return;
        }
        let at = seq
            .wrapping_sub(self.isn.expect("data before the SYN"))
            .wrapping_sub(1) as usize;
        if self.data.len() < at + payload.len() {
            self.data.resize(at + payload.len(), 0);
        }
        self.data[at..at + payload.len()].copy_from_slice(payload);
    }
}

#[test]
fn pcap_switched_on_and_off_through_the_control_socket_holds_exactly_the_connections_between() {
    require_environment(&["ip", "ethtool", "timeout"]);
    let exe = example("echo_server");
    let tb = Testbed::up("pca");
    let dir = std::env::temp_dir();
    let id = std::process::id();
    let sock = dir.join(format!("xdp-tcp-pcap-{id}.sock"));
    let file = dir.join(format!("xdp-tcp-pcap-{id}.pcap"));
    let bounded = dir.join(format!("xdp-tcp-pcap-{id}-bounded.pcap"));
    let mut child = tb
        .in_ns_for(
            120,
            "ns_stack",
            &[
                exe.to_str().unwrap(),
                tb.get("if_stack"),
                &PORT.to_string(),
                sock.to_str().unwrap(),
            ],
        )
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server(child);
    assert!(
        line.contains(&format!(":{PORT}")),
        "did not start: {line:?}"
    );

    // one connection before the capture, three during, one after
    let msg = |i: usize| -> Vec<u8> { (0..BYTES).map(|j| (i * 37 + j * 7) as u8).collect() };
    let before = echo_once(&tb, msg(0));
    until_no_connections(&sock);
    let wall = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    };
    let t0 = wall(std::time::SystemTime::now());
    let started = pcap(&sock, &["--start", file.to_str().unwrap()]);
    assert!(started.starts_with("running "), "{started}");
    let c0: HashMap<String, u64> =
        counters(&serde_json::from_str(&stat(&sock, &["--json"])).unwrap());
    let ports: Vec<u16> = (1..=3).map(|i| echo_once(&tb, msg(i))).collect();
    until_no_connections(&sock);
    let stopped = pcap(&sock, &["--stop"]);
    let t1 = wall(std::time::SystemTime::now());
    let c1 = counters(&serde_json::from_str(&stat(&sock, &["--json"])).unwrap());
    let after = echo_once(&tb, msg(4));
    until_no_connections(&sock);
    let c2 = counters(&serde_json::from_str(&stat(&sock, &["--json"])).unwrap());
    eprintln!("{started}\n{stopped}");

    let bytes = std::fs::read(&file).expect("the capture file");
    // tshark (deploy/install-deps.sh) reads it as we do
    let tshark = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark (deploy/install-deps.sh)");
    let _ = std::fs::remove_file(&file);
    assert!(
        tshark.status.success(),
        "{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let (hdr, recs) = xdp_tcp::io::pcap::parse(&bytes).expect("a classic pcap file");
    assert_eq!(
        String::from_utf8_lossy(&tshark.stdout).lines().count(),
        recs.len()
    );
    assert_eq!(hdr.linktype, xdp_tcp::io::pcap::LINKTYPE_ETHERNET);
    assert!(
        stopped.starts_with(&format!(
            "stopped {}: {} packets, {} bytes",
            file.display(),
            recs.len(),
            bytes.len()
        )),
        "{stopped}"
    );
    // every frame queued was written, none dropped, none queued after the stop
    let queued = c1["engine.capture_queued"] - c0["engine.capture_queued"];
    assert_eq!(queued, recs.len() as u64);
    assert_eq!(
        c2["engine.capture_queued"], c1["engine.capture_queued"],
        "nothing after --stop"
    );
    assert_eq!(c2["engine.capture_dropped"], 0);
    // and they are every frame the engine received and sent meanwhile
    let moved = |k: &str| c1[k] - c0[k];
    assert_eq!(
        queued,
        moved("engine.rx_frames") + moved("engine.tx_frames")
    );

    let mut conns: HashMap<u16, (Half, Half)> = HashMap::new();
    for r in &recs {
        assert!(
            (t0..=t1).contains(&r.ts_unix_nanos),
            "timestamp {} outside the capture [{t0}, {t1}]",
            r.ts_unix_nanos
        );
        assert_eq!(r.orig_len as usize, r.data.len(), "whole frames by default");
        let Some((sport, dport, flags, seq, payload)) = tcp_of(r.data) else {
            continue;
        };
        if dport == PORT {
            conns.entry(sport).or_default().0.add(flags, seq, payload);
        } else {
            assert_eq!(sport, PORT, "only the echo port's segments");
            conns.entry(dport).or_default().1.add(flags, seq, payload);
        }
    }
    let mut seen: Vec<u16> = conns.keys().copied().collect();
    seen.sort();
    let mut want = ports.clone();
    want.sort();
    assert_eq!(
        seen, want,
        "exactly the connections made during the capture"
    );
    assert!(!conns.contains_key(&before) && !conns.contains_key(&after));
    for (i, p) in ports.iter().enumerate() {
        let (from, to) = &conns[p];
        assert_eq!(
            (from.syn, from.fin, from.rst),
            (1, 1, 0),
            "client {p}: {from:?}"
        );
        assert_eq!((to.syn, to.fin, to.rst), (1, 1, 0), "server {p}");
        assert!(from.data == msg(i + 1), "client {p}: payload as sent");
        assert!(to.data == msg(i + 1), "server {p}: payload echoed");
    }
    let syns = recs
        .iter()
        .filter_map(|r| tcp_of(r.data))
        .filter(|s| s.2 & (SYN | ACK) == SYN)
        .count();
    assert_eq!(syns, 3, "one SYN per connection");

    // a capture that ends by itself at its bound: the first frames of one connection, cut
    // after their headers (a SYN with options is 74 bytes)
    let out = pcap(
        &sock,
        &[
            "--start",
            bounded.to_str().unwrap(),
            "--max-packets",
            "5",
            "--snaplen",
            "80",
        ],
    );
    assert!(out.starts_with("running "), "{out}");
    let port = echo_once(&tb, msg(5));
    until_no_connections(&sock);
    let status = pcap(&sock, &["--status"]);
    let bytes = std::fs::read(&bounded).expect("the bounded file");
    let _ = std::fs::remove_file(&bounded);
    assert!(
        status.starts_with(&format!(
            "limit {}: 5 packets, {} bytes",
            bounded.display(),
            bytes.len()
        )),
        "{status}"
    );
    let recs = xdp_tcp::io::pcap::parse(&bytes).unwrap().1;
    assert_eq!(recs.len(), 5);
    assert!(
        recs.iter().all(|r| r.data.len() <= 80),
        "cut at the snap length"
    );
    let first = tcp_of(recs[0].data).expect("a TCP segment first");
    assert_eq!(
        (first.0, first.2 & (SYN | ACK)),
        (port, SYN),
        "the client's SYN first"
    );
    assert!(
        recs.iter().any(|r| r.orig_len as usize > r.data.len()),
        "the data segments were cut"
    );

    server.stop();
    assert!(!sock.exists());
}
