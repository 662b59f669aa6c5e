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
