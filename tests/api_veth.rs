//! The examples on the veth testbed against independent kernel-side clients (root): the HTTP
//! server serves `wrk` (100 keep-alive connections, 10 s, no socket error, no non-2xx) and
//! `curl` (the exact body); the echo server serves a Python ping-pong client for 10 s, and a
//! bulk client through an interface whose MTU is 1400 (the MSS it advertises follows). Each
//! server is stopped with SIGINT, which must shut it down cleanly (exit status 0).
//!
//! The examples are built with `cargo build --examples` first (a no-op when fresh), then run
//! inside the stack's namespace with `ip netns exec`. The testbed is removed on drop, also
//! when a test fails.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

mod common;

use common::testbed::{descriptors, require_environment, Testbed};
use std::time::{Duration, Instant};

/// The example binary, built now if needed.
/// Held by every test of this file for its whole run, so the tests here do not overlap. It was
/// introduced when libxdp's AF_XDP socket was not close-on-exec and a child another test
/// spawned while a stack started here could inherit it (fixed in vendor/xsk-rs; concurrent
/// spawns and starts are tested by tests/api_cloexec.rs); the tests stay apart so each one's
/// figures and descriptor snapshots are its own.
static STACK_STARTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    STACK_STARTS.lock().unwrap_or_else(|p| p.into_inner())
}

fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        // All features, as deploy/run-tests builds: the hyper example needs `tokio`.
        .args(["build", "--quiet", "--all-features", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo build --example {name}");
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/this-test -> target/debug/examples/NAME (cargo build's profile)
    let target = exe.parent().unwrap().parent().unwrap().parent().unwrap();
    target.join("debug/examples").join(name)
}

/// A server example in the stack's namespace; SIGINT and a clean exit on `stop`, SIGKILL on
/// drop if it is still there.
struct Server(Child);

impl Server {
    fn start(tb: &Testbed, name: &str, port: u16) -> Server {
        Server::start_with(tb, name, port, &[])
    }

    fn start_with(tb: &Testbed, name: &str, port: u16, extra: &[&str]) -> Server {
        let exe = example(name);
        let port_arg = port.to_string();
        let mut args = vec![exe.to_str().unwrap(), tb.get("if_stack"), &port_arg];
        args.extend_from_slice(extra);
        let mut child = tb
            .in_ns_for(60, "ns_stack", &args)
            .stdout(Stdio::piped())
            // its own process group, so Drop can kill `timeout` and the server under it alike
            .process_group(0)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.contains(&format!(":{port}")),
            "{name} did not start: {line:?}"
        );
        Server(child)
    }

    /// SIGINT (through `timeout`, which forwards it); the server must exit 0 within 5 s.
    fn stop(mut self) {
        // SAFETY: kill with a valid pid of our child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let t = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                assert!(st.success(), "server exited with {st}");
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "server ignored SIGINT"
            );
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

#[test]
fn http_example_serves_wrk_ab_and_curl() {
    let _serial = serial();
    require_environment(&["ip", "ethtool", "timeout", "wrk", "ab", "curl"]);
    let tb = Testbed::up("h");
    let server = Server::start(&tb, "http_server", 8080);
    let url = format!("http://{}:8080/", tb.get("ip_stack"));
    let out = tb
        .in_ns_for(10, "ns_peer", &["curl", "-sS", "--max-time", "5", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"Hello from xdp-tcp!\n");
    wrk_clean(&tb, &url);
    // ApacheBench as a second, independent client: 100 keep-alive connections, 20k requests
    let out = tb
        .in_ns_for(
            30,
            "ns_peer",
            &[
                "ab", "-q", "-k", "-c", "100", "-n", "20000", "-s", "5", &url,
            ],
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "ab: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> Option<u64> {
        report.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            rest.split_whitespace().next()?.parse().ok()
        })
    };
    assert_eq!(field("Complete requests:"), Some(20_000), "{report}");
    assert_eq!(field("Failed requests:"), Some(0), "{report}");
    assert_eq!(field("Keep-Alive requests:"), Some(20_000), "{report}");
    assert!(
        !report.contains("Non-2xx responses"),
        "non-2xx responses:\n{report}"
    );
    server.stop();
}

/// Ping-pong for 10 s with payloads of 1 to 4000 bytes; every echo checked.
const PING_PONG: &str = r#"
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
n, end = 0, time.time() + 10
while time.time() < end:
    msg = os.urandom(1 + n * 7919 % 4000)
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        part = s.recv(65536)
        assert part, "server closed early"
        got += part
    assert got == msg, "echo differs"
    n += 1
s.shutdown(socket.SHUT_WR)
assert s.recv(1) == b"", "bytes after the last echo"
print(n)
"#;

#[test]
fn echo_example_serves_a_ping_pong_client() {
    let _serial = serial();
    require_environment(&["ip", "ethtool", "timeout", "python3"]);
    let tb = Testbed::up("e");
    let server = Server::start(&tb, "echo_server", 7);
    let out = tb
        .in_ns_for(
            30,
            "ns_peer",
            &["python3", "-c", PING_PONG, tb.get("ip_stack"), "7"],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    eprintln!("{rounds} echoes in 10 s");
    assert!(rounds > 1000, "{rounds} round trips");
    server.stop();
}

/// 1 MiB each way at once, checked; prints the connection's TCP_MAXSEG, then 1 if the echo
/// matched.
const BULK_ECHO: &str = r#"
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
mss = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
data = os.urandom(1 << 20)
got = bytearray()
def read():
    while len(got) < len(data):
        part = s.recv(65536)
        if not part:
            break
        got.extend(part)
t = threading.Thread(target=read)
t.start()
s.sendall(data)
t.join()
print(mss, int(bytes(got) == data))
"#;

/// The stack's interface has a smaller MTU (1400) than the kernel peer's (1500): the echo
/// example reads it at start-up and advertises MSS 1360, so the kernel sends segments of
/// 1400 - 40 - 12 (timestamps) = 1348 bytes, which the stack's interface can take. With a
/// fixed 1460 the kernel's 1500-byte packets would be dropped by the 1400-byte veth.
#[test]
fn echo_example_advertises_its_interface_mtu() {
    let _serial = serial();
    require_environment(&["ip", "ethtool", "timeout", "python3"]);
    let tb = Testbed::up("mt");
    let st = tb
        .in_ns(
            "ns_stack",
            &["ip", "link", "set", tb.get("if_stack"), "mtu", "1400"],
        )
        .status()
        .unwrap();
    assert!(st.success());
    let server = Server::start(&tb, "echo_server", 7);
    let out = tb
        .in_ns_for(
            30,
            "ns_peer",
            &["python3", "-c", BULK_ECHO, tb.get("ip_stack"), "7"],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(report.trim(), "1348 1", "TCP_MAXSEG and echo check");
    server.stop();
}

/// An engine that has gone to sleep in poll(2) (nothing to do, no timer armed, longest sleep
/// 30 s here) must be woken by a write from an application thread at once, not when its sleep
/// ends: five writes, each after the engine has slept for 300 ms, each answered by a kernel
/// peer within 100 ms (a round trip on this testbed is some tens of microseconds).

#[test]
fn application_writes_wake_a_sleeping_engine() {
    let _serial = serial();
    use std::io::{Read, Write};
    use std::net::{SocketAddrV4, TcpListener};
    use xdp_tcp::api::{Stack, TcpStream};
    use xdp_tcp::engine::{EngineConfig, IdleBackoff};

    require_environment(&["ip", "ethtool"]);
    let tb = Testbed::up("wk");
    let peer = SocketAddrV4::new(tb.ip("ip_peer"), 9100);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = tb.get("ns_peer").to_string();
    let echo = std::thread::spawn(move || {
        common::testbed::in_netns(&ns, move || {
            let l = TcpListener::bind(peer).unwrap();
            ready_tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 4];
            let mut n = 0;
            while s.read_exact(&mut buf).is_ok() {
                s.write_all(&buf).unwrap();
                n += 1;
            }
            n
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let stack = Stack::builder()
        .interface(tb.get("if_stack"))
        .netns(tb.netns_path("ns_stack"))
        .engine_config(EngineConfig {
            idle: Some(IdleBackoff {
                after: 64,
                max_sleep: std::time::Duration::from_secs(30),
            }),
            ..EngineConfig::default()
        })
        .start()
        .unwrap();
    let mut s = TcpStream::connect(&stack, peer).unwrap();
    let mut buf = [0u8; 4];
    for round in 0..5u8 {
        std::thread::sleep(Duration::from_millis(300));
        let t0 = Instant::now();
        s.write_all(&[round; 4]).unwrap();
        s.read_exact(&mut buf).unwrap();
        let took = t0.elapsed();
        assert_eq!(buf, [round; 4]);
        assert!(
            took < Duration::from_millis(100),
            "round {round}: {took:?} (the engine slept through the write)"
        );
    }
    drop(s);
    stack.shutdown().unwrap();
    assert_eq!(echo.join().unwrap(), 5);
}

/// A child started while a stack runs inherits none of its descriptors (the AF_XDP socket
/// libxdp opens, the engine's eventfd, the streams' and listeners' readiness eventfds, BPF
/// objects, netlink), so a new stack can take the queue as soon as the old one is dropped,
/// child or no child (an inherited AF_XDP socket keeps the queue bound: EBUSY).
#[test]
fn a_child_holds_no_stack_descriptor_and_a_new_stack_starts_at_once() {
    let _serial = serial();
    use xdp_tcp::api::{Stack, TcpListener};

    require_environment(&["ip", "ethtool"]);
    let tb = Testbed::up("fd");
    let start = || {
        Stack::builder()
            .interface(tb.get("if_stack"))
            .netns(tb.netns_path("ns_stack"))
            .start()
    };
    let before = descriptors("self");
    let stack = start().unwrap();
    let l = TcpListener::bind(&stack, 7100).unwrap();
    l.readiness_fd().unwrap();
    let opened: Vec<(i32, String)> = descriptors("self")
        .into_iter()
        .filter(|(fd, t)| before.get(fd) != Some(t))
        .collect();
    let kinds = |k: &str| opened.iter().filter(|(_, t)| t.contains(k)).count();
    assert!(
        kinds("socket:") >= 1 && kinds("eventfd") >= 2,
        "the stack's descriptors: {opened:?}"
    );
    let mut child = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let held = descriptors(&child.id().to_string());
    let inherited: Vec<_> = opened
        .iter()
        .filter(|(fd, t)| held.get(fd) == Some(t))
        .collect();
    drop(l);
    drop(stack);
    let t = Instant::now();
    let again = start();
    let took = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    assert!(inherited.is_empty(), "the child holds {inherited:?}");
    let again = again.unwrap_or_else(|e| panic!("a new stack after {took:?}: {e}"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(again);
}

/// `redis-cli` against a RESP server on the testbed: each command's exact reply, errors included.
fn resp_replies(tb: &Testbed) {
    let ip = tb.get("ip_stack").to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["redis-cli", "-h", &ip, "-p", "6379"];
        all.extend_from_slice(args);
        let out = tb.in_ns_for(10, "ns_peer", &all).output().unwrap();
        assert!(out.status.success(), "redis-cli {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "k", "v1", "EX", "100"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "v1");
    assert_eq!(cli(&["INCR", "n"]), "1");
    assert_eq!(cli(&["INCR", "n"]), "2");
    assert_eq!(cli(&["MSET", "a", "x", "b", "y"]), "OK");
    assert_eq!(cli(&["MGET", "a", "zz", "b"]), "x\n\ny");
    assert_eq!(cli(&["EXISTS", "a", "b", "zz"]), "2");
    assert_eq!(cli(&["DEL", "a", "k"]), "2");
    assert_eq!(cli(&["SET", "p", "v", "PX", "100"]), "OK");
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(cli(&["EXISTS", "p"]), "0");
    assert_eq!(cli(&["FLUSHALL"]), "ERR unknown command 'FLUSHALL'");
}

/// The RESP example serves `redis-cli` (each command's exact reply, errors included) and
/// `redis-benchmark` from the peer's namespace: PING, SET and GET, 20k requests each, 50
/// connections, with and without pipelining, every request answered (redis-benchmark stops
/// at the first error reply or dropped connection and exits non-zero).
#[test]
fn resp_example_serves_redis_cli_and_redis_benchmark() {
    let _serial = serial();
    require_environment(&["ip", "ethtool", "timeout", "redis-cli", "redis-benchmark"]);
    let tb = Testbed::up("rs");
    // The same store and request loop on the kernel's sockets (`--kernel`, the bench's
    // reference) answers the same replies.
    let kernel = Server::start_with(&tb, "resp_server", 6379, &["--kernel"]);
    resp_replies(&tb);
    kernel.stop();
    let server = Server::start(&tb, "resp_server", 6379);
    resp_replies(&tb);
    let ip = tb.get("ip_stack").to_string();
    for pipeline in ["1", "16"] {
        let out = tb
            .in_ns_for(
                60,
                "ns_peer",
                &[
                    "redis-benchmark",
                    "-h",
                    &ip,
                    "-p",
                    "6379",
                    "-t",
                    "ping,set,get",
                    "-n",
                    "20000",
                    "-c",
                    "50",
                    "-P",
                    pipeline,
                    "-q",
                ],
            )
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        // Progress lines end in \r; the result line is the last of each test.
        let results: Vec<&str> = report
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|l| l.contains("requests per second"))
            .collect();
        eprintln!("-P {pipeline}: {results:?}");
        assert!(
            out.status.success(),
            "redis-benchmark -P {pipeline}: {}\n{report}",
            String::from_utf8_lossy(&out.stderr)
        );
        for t in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
            assert!(
                results.iter().any(|l| l.starts_with(&format!("{t}: "))),
                "no result for {t}:\n{report}"
            );
        }
        assert!(!report.to_lowercase().contains("error"), "{report}");
    }
    server.stop();
}

/// wrk against `srv` at `url`: 100 connections, 10 s; the report, asserting no socket error,
/// no non-2xx response and some thousands of requests.
fn wrk_clean(tb: &Testbed, url: &str) -> String {
    let out = tb
        .in_ns_for(
            30,
            "ns_peer",
            &[
                "wrk",
                "-t2",
                "-c100",
                "-d10s",
                "--timeout",
                "2s",
                "--latency",
                url,
            ],
        )
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{report}");
    assert!(
        out.status.success(),
        "wrk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !report.contains("Socket errors"),
        "socket errors:\n{report}"
    );
    assert!(!report.contains("Non-2xx"), "non-2xx responses:\n{report}");
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.parse().unwrap())
        })
        .expect("wrk printed no request count");
    assert!(requests > 1000, "{requests} requests");
    report
}

/// The hyper example over the tokio integration serves curl (the exact body) and wrk (100
/// connections, 10 s, no error); the same binary with `--kernel` serves curl on tokio's
/// kernel sockets.
#[test]
fn hyper_example_serves_wrk_on_the_stack_and_curl_on_both() {
    let _serial = serial();
    require_environment(&["ip", "ethtool", "timeout", "wrk", "curl"]);
    let tb = Testbed::up("hy");
    let url = format!("http://{}:8081/", tb.get("ip_stack"));
    let curl = |tb: &Testbed| {
        let out = tb
            .in_ns_for(10, "ns_peer", &["curl", "-sS", "--max-time", "5", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"Hello from xdp-tcp!\n");
    };
    let server = Server::start(&tb, "hyper_server", 8081);
    curl(&tb);
    wrk_clean(&tb, &url);
    server.stop();
    let kernel = Server::start_with(&tb, "hyper_server", 8081, &["--kernel"]);
    curl(&tb);
    kernel.stop();
}
