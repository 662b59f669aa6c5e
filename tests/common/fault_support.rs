//! Testbed plumbing for tests/fault_bpf.rs: the veth testbed guard, running code inside a
//! network namespace, bounded commands, /proc/net/snmp counters, and a minimal
//! Ethernet/IPv4/TCP builder/parser for hand-made segments. Kept apart from tests/common/mod.rs
//! (the simulation helpers) so suites that do not need root do not compile it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/testbed.sh");

/// Root and the tools are required: a skipped datapath test looks green while proving nothing.
pub fn require_environment(tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these veth tests need root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW): run `sudo cargo test`");
    }
    for tool in ["ip", "ethtool", "python3", "timeout"].iter().chain(tools) {
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

/// The testbed; `down` on drop, also when the test panics.
pub struct Testbed {
    pub name: String,
    kv: HashMap<String, String>,
}

impl Testbed {
    /// Named after `tag` and the pid, so concurrent runs do not collide.
    pub fn up(tag: &str) -> Testbed {
        let name = format!("xf{tag}{}", std::process::id() % 100_000);
        let out = Command::new(SCRIPT)
            .args(["up", &name])
            .output()
            .expect("run deploy/testbed.sh");
        let mut tb = Testbed {
            name,
            kv: HashMap::new(),
        };
        assert!(
            out.status.success(),
            "testbed.sh up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tb.kv = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tb
    }

    pub fn get(&self, key: &str) -> &str {
        self.kv
            .get(key)
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

    pub fn netns_path(&self, ns_key: &str) -> String {
        format!("/run/netns/{}", self.get(ns_key))
    }

    /// `timeout SECS ip netns exec <ns> <args>`: every command in a namespace is bounded.
    pub fn in_ns(&self, ns_key: &str, secs: u32, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.arg(secs.to_string())
            .args(["ip", "netns", "exec", self.get(ns_key)])
            .args(args);
        c
    }

    /// The `Tcp:` counters of /proc/net/snmp in a namespace, by name.
    pub fn tcp_snmp(&self, ns_key: &str) -> HashMap<String, u64> {
        let text = ok(
            self.in_ns(ns_key, 5, &["cat", "/proc/net/snmp"])
                .output()
                .unwrap(),
            "read /proc/net/snmp",
        );
        let mut lines = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .map(|(k, v)| (k.to_string(), v.parse().unwrap_or(0)))
            .collect()
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).args(["down", &self.name]).status();
    }
}

/// Runs `f` on a new thread that has entered network namespace `ns`. AF_XDP binds and BPF
/// attaches resolve interfaces in the calling thread's namespace.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid netns fd changes only this thread's network namespace.
        let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(ret, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

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

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub struct Tcp {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Writes the segment (with an MSS option when SYN is set) into `buf`; returns its length.
pub fn build_tcp(t: &Tcp, buf: &mut [u8]) -> usize {
    let opts: &[u8] = if t.flags & SYN != 0 {
        &[2, 4, 0x05, 0xb4]
    } else {
        &[]
    };
    let tcp_len = 20 + opts.len();
    let ip_len = 20 + tcp_len;
    let frame = &mut buf[..14 + ip_len];
    frame[0..6].copy_from_slice(&t.dst_mac);
    frame[6..12].copy_from_slice(&t.src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&t.src.octets());
    ip[16..20].copy_from_slice(&t.dst.octets());
    let c = csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut frame[34..34 + tcp_len];
    tcp[0..2].copy_from_slice(&t.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&t.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&t.ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = t.flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[16..20].fill(0);
    tcp[20..].copy_from_slice(opts);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&t.src.octets());
    pseudo[4..8].copy_from_slice(&t.dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    let c = csum_fold(csum_add(csum_add(0, &pseudo), tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    14 + ip_len
}

/// Parses an Ethernet/IPv4/TCP frame; `None` for anything else. Checksums are not verified here:
/// the pcap test leaves that to tshark.
pub fn parse_tcp(f: &[u8]) -> Option<Tcp> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    if ihl < 20 || f.len() < 14 + ihl + 20 {
        return None;
    }
    let tcp = &f[14 + ihl..];
    let u32_at = |i: usize| u32::from_be_bytes([tcp[i], tcp[i + 1], tcp[i + 2], tcp[i + 3]]);
    Some(Tcp {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        dst: Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32_at(4),
        ack: u32_at(8),
        flags: tcp[13],
    })
}
