//! The veth testbed shared by the AF_XDP tests: bring-up through `deploy/testbed.sh` inside a
//! guard that tears it down on drop (also when a test panics), running code in the stack's
//! network namespace, and bounded commands in either namespace.
//!
//! These tests run as root in the normal suite. Without root or a required tool they fail with
//! the fix rather than skip: a skipped datapath test looks green while proving nothing.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};

use xdp_tcp::engine::cores::enter_netns;

/// `deploy/testbed.sh`, found from whichever crate of the workspace includes this file.
pub use xdp_tcp_testbed::{Topology, SCRIPT};

/// Fails (never skips) unless we are root and every tool in `tools` is on the PATH.
pub fn require_environment(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("the AF_XDP veth tests need root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW): run `sudo cargo test`");
    }
    for tool in ["ip", "ethtool", "timeout"].iter().chain(tools) {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "`{tool}` is missing: run `sudo deploy/install-deps.sh`"
        );
    }
}

/// The testbed (the benchmark's, [`xdp_tcp_testbed::Testbed`]); `down` on drop, also when the
/// test panics.
pub struct Testbed(xdp_tcp_testbed::Testbed);

impl Testbed {
    /// `tag` (a few letters) plus the pid names it, so concurrent runs do not collide.
    pub fn up(tag: &str) -> Testbed {
        Self::up_with(tag, Topology::Direct)
    }

    /// A router namespace (`ns_router`, forwarding) between the stack's end and the peer, whose
    /// link has MTU `path_mtu`: `ip_peer` is one hop away, through `ip_router`.
    pub fn up_routed(tag: &str, path_mtu: u32) -> Testbed {
        Self::up_with(tag, Topology::Routed { path_mtu })
    }

    /// `queues` receive and transmit queues on both ends of the veth (`--queues N`).
    pub fn up_queues(tag: &str, queues: u32) -> Testbed {
        let name = format!("xt{tag}{}", std::process::id() % 100_000);
        Testbed(
            xdp_tcp_testbed::Testbed::up_queues(std::path::Path::new(SCRIPT), &name, queues)
                .unwrap_or_else(|e| panic!("testbed.sh up failed: {e}")),
        )
    }

    fn up_with(tag: &str, topology: Topology) -> Testbed {
        let name = format!("xt{tag}{}", std::process::id() % 100_000);
        Testbed(
            xdp_tcp_testbed::Testbed::up_with(std::path::Path::new(SCRIPT), &name, topology)
                .unwrap_or_else(|e| panic!("testbed.sh up failed: {e}")),
        )
    }

    pub fn get(&self, key: &str) -> &str {
        self.0
            .value(key)
            .unwrap_or_else(|| panic!("testbed.sh printed no {key}"))
    }

    pub fn ip(&self, key: &str) -> Ipv4Addr {
        self.get(key).parse().unwrap()
    }

    pub fn mac(&self, key: &str) -> [u8; 6] {
        let mut m = [0u8; 6];
        for (b, s) in m.iter_mut().zip(self.get(key).split(':')) {
            *b = u8::from_str_radix(s, 16).unwrap();
        }
        m
    }

    /// `/run/netns/<ns>` for `ns_key` ("ns_stack", "ns_peer", "ns_router").
    pub fn netns_path(&self, ns_key: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.get(ns_key)))
    }

    /// `timeout 10 ip netns exec <ns> <args>`: every peer-side command is bounded.
    pub fn in_ns(&self, ns_key: &str, args: &[&str]) -> Command {
        self.in_ns_for(10, ns_key, args)
    }

    /// The namespace's TCP counters from /proc/net/snmp (RetransSegs, EstabResets, ...).
    pub fn tcp_snmp(&self, ns_key: &str) -> std::collections::HashMap<String, u64> {
        self.snmp(ns_key, "Tcp")
    }

    /// One group of the namespace's /proc/net/snmp counters: `Ip`, `Icmp`, `IcmpMsg`, `Tcp`...
    /// (a counter the kernel has not printed yet, like `IcmpMsg`'s `OutType3`, is absent).
    pub fn snmp(&self, ns_key: &str, group: &str) -> std::collections::HashMap<String, u64> {
        self.proc_counters(ns_key, "/proc/net/snmp", group)
    }

    /// Linux's extended TCP counters (`TcpExt` of /proc/net/netstat): `BeyondWindow`,
    /// `TCPSackRecovery`, ...
    pub fn tcp_ext(&self, ns_key: &str) -> std::collections::HashMap<String, u64> {
        self.proc_counters(ns_key, "/proc/net/netstat", "TcpExt")
    }

    fn proc_counters(
        &self,
        ns_key: &str,
        file: &str,
        group: &str,
    ) -> std::collections::HashMap<String, u64> {
        let text = ok(
            self.in_ns_for(5, ns_key, &["cat", file]).output().unwrap(),
            "read the kernel's counters",
        );
        let prefix = format!("{group}:");
        let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return Default::default();
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            .collect()
    }

    /// A counter of the interface `if_key` names, in namespace `ns_key`
    /// (`/sys/class/net/IF/statistics/NAME`: `tx_dropped`, `rx_packets`, ...).
    pub fn link_stat(&self, ns_key: &str, if_key: &str, name: &str) -> u64 {
        let path = format!("/sys/class/net/{}/statistics/{name}", self.get(if_key));
        ok(
            self.in_ns_for(5, ns_key, &["cat", &path]).output().unwrap(),
            "read an interface counter",
        )
        .trim()
        .parse()
        .unwrap()
    }

    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// `python3 -c script args...` in `ns_key`, bounded by `secs` seconds.
    pub fn python(&self, secs: u32, ns_key: &str, script: &str, args: &[&str]) -> Command {
        let mut argv = vec!["python3", "-c", script];
        argv.extend_from_slice(args);
        self.in_ns_for(secs, ns_key, &argv)
    }

    /// Like [`Testbed::in_ns`] with a bound of `secs` seconds.
    pub fn in_ns_for(&self, secs: u32, ns_key: &str, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args([&secs.to_string(), "ip", "netns", "exec", self.get(ns_key)])
            .args(args);
        c
    }
}

/// Runs `f` on a new thread that has entered network namespace `ns`. AF_XDP binds and XDP
/// attaches resolve interfaces in the calling thread's namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from(format!("/run/netns/{ns}"));
    std::thread::spawn(move || {
        enter_netns(&path).unwrap_or_else(|e| panic!("{e}"));
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Reads a capture with tshark, IP and TCP checksum validation on: returns (frames, the lines
/// tshark prints for frames `sender` sent with a bad checksum, or for any malformed packet).
///
/// `port`'s payload is decoded as plain data: test ports may be registered to other protocols
/// (7000 is Gryphon's) whose dissectors would call random payload malformed. Checksums are
/// judged on `sender`'s frames only: the kernel peer may legally send 0xFFFF for a zero sum,
/// which tshark flags (RFC 1624), and its checksums are not ours to vouch for.
pub fn tshark_check(path: &std::path::Path, sender: Ipv4Addr, port: u16) -> (u64, String) {
    let decode = format!("tcp.port=={port},data");
    let tshark = |extra: &[&str]| {
        let out = Command::new("timeout")
            .args(["120", "tshark", "-n", "-r"])
            .arg(path)
            .args([
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
            ])
            .args(["-d", &decode])
            .args(extra)
            .output()
            .expect("run tshark");
        ok(out, "tshark")
    };
    let frames = tshark(&["-T", "fields", "-e", "frame.number"])
        .lines()
        .count() as u64;
    let filter = format!(
        "(ip.src == {sender} && (tcp.checksum.status == \"Bad\" || ip.checksum.status == \"Bad\")) || _ws.malformed"
    );
    let bad = tshark(&["-Y", &filter]);
    (frames, bad.trim().to_string())
}

/// Deletes a file when dropped, also on panic.
pub struct RemoveOnDrop(pub std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The command's stdout, after asserting it succeeded.
pub fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every descriptor of process `pid` by number, with what it refers to (empty once the process
/// is gone).
pub fn descriptors(pid: &str) -> std::collections::BTreeMap<i32, String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return std::collections::BTreeMap::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        Some((fd, target.to_string_lossy().into_owned()))
    })
    .collect()
}
