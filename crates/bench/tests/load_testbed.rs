//! `xdp-tcp serve` and `xdp-tcp load` as processes on the veth testbed, on both back-ends: each
//! run completes with requests done and a JSON result. Nothing about performance is asserted.
//!
//! Needs root like the other veth tests; fails with the fix rather than skipping.

use std::process::{Child, Command, Stdio};

mod common;

use common::testbed::{require_environment, Testbed};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_xdp-tcp");

/// A server process, stopped with SIGTERM (it detaches its XDP program and exits) on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(tb: &Testbed, backend: &str, port: u16) -> Server {
    let mut c = Command::new(BIN);
    c.args(["serve", "--backend", backend, "--port", &port.to_string()])
        .args(["--netns", tb.get("ns_stack"), "--duration", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if backend == "xdp" {
        c.args(["--iface", tb.get("if_stack")]);
    }
    let mut child = c.spawn().expect("spawn xdp-tcp serve");
    // Wait for "serving on port".
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let server = Server(child);
    // a multi-engine server first says how many engines it runs
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("server never said it was serving");
        if line.contains("serving on port") {
            break;
        }
        assert!(line.contains("engines on"), "server: {line}");
    }
    server
}

fn load(tb: &Testbed, backend: &str, port: u16, workload: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!(
        "xdp-tcp-test-{}-{backend}-{port}.json",
        std::process::id()
    ));
    let target = format!("{}:{port}", tb.get("ip_stack"));
    let mut c = Command::new(BIN);
    c.args(["load", "--backend", backend, "--target", &target])
        .args(workload)
        .args([
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--netns",
            tb.get("ns_peer"),
        ])
        .arg("--json")
        .arg(&json);
    if backend == "xdp" {
        c.args(["--iface", tb.get("if_peer")]);
    }
    let out = c.output().expect("run xdp-tcp load");
    assert!(
        out.status.success(),
        "load {backend} {workload:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("JSON result written");
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn load_runs_against_kernel_and_xdp_servers_on_both_backends() {
    require_environment(&[]);
    let tb = Testbed::up("ld");
    let _k = serve(&tb, "kernel", 7101);
    let _x = serve(&tb, "xdp", 7100);
    for server_port in [7101u16, 7100] {
        for backend in ["kernel", "xdp"] {
            let r = load(&tb, backend, server_port, &["--workload", "pingpong"]);
            let completed = r["completed"].as_u64().unwrap();
            assert!(completed > 0, "{backend} -> {server_port}: {r}");
            assert!(r["latency"]["p50"].as_f64().unwrap() > 0.0, "{r}");
            assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
        }
    }
    // The other workloads, once each against the xdp-tcp echo server.
    let r = load(
        &tb,
        "xdp",
        7100,
        &["--workload", "openloop", "--conns", "4", "--rate", "2000"],
    );
    assert!(r["completed"].as_u64().unwrap() > 0, "{r}");
    let r = load(
        &tb,
        "kernel",
        7100,
        &["--workload", "pingpong", "--conns", "8", "--depth", "4"],
    );
    assert!(r["completed"].as_u64().unwrap() > 0, "{r}");
}

/// On a device with two receive queues, `serve --backend xdp` without `--queues` runs an engine
/// on each: the connections the device puts on queue 1 are served too, not refused by the
/// kernel (with one engine on queue 0, as before, most of 16 connections were refused).
#[test]
fn an_xdp_server_covers_every_queue_of_its_device_by_default() {
    require_environment(&[]);
    let tb = Testbed::up_queues("lq", 2);
    let _x = serve(&tb, "xdp", 7102);
    let r = load(
        &tb,
        "kernel",
        7102,
        &["--workload", "pingpong", "--conns", "16"],
    );
    assert!(r["completed"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["errors"].as_u64(), Some(0), "{r}");
    assert_eq!(r["connections"].as_u64(), Some(16), "{r}");
}
