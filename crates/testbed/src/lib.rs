//! The veth testbed of `deploy/testbed.sh` as a guard, shared by the benchmark (`xdp-tcp bench`)
//! and the veth tests of both crates.
//!
//! [`Testbed::up`] runs `testbed.sh up NAME` and keeps the `key=value` lines it prints
//! (`ns_stack`, `ns_peer`, `if_stack`, `if_peer`, `ip_stack`, ...); dropping the guard runs
//! `testbed.sh down NAME`, also when a test panics, so a testbed never outlives its user.
//! [`Testbed::up_with`] chooses the [`Topology`]: a router namespace between the two ends
//! (`--router MTU`) adds `ns_router`, `ip_router`, `path_mtu` and the router's other keys.
//! Needs root (network namespaces, veth). No dependencies beyond `std`, so the library can take
//! it as a dev-dependency without the harness's.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `deploy/testbed.sh` of this workspace, for code that may run from any directory (tests).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/testbed.sh");

/// How `testbed.sh up` lays the testbed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Topology {
    /// One veth pair: the stack's end and the kernel peer on one subnet.
    #[default]
    Direct,
    /// A forwarding router namespace between them; the peer's link has MTU `path_mtu` while the
    /// stack's stays at 1500, so the router answers bigger packets with ICMP Fragmentation Needed.
    Routed { path_mtu: u32 },
}

impl Topology {
    /// The options of `testbed.sh up NAME` for this layout.
    fn args(self) -> Vec<String> {
        match self {
            Topology::Direct => Vec::new(),
            Topology::Routed { path_mtu } => vec!["--router".into(), path_mtu.to_string()],
        }
    }
}

/// The veth testbed, removed on drop.
pub struct Testbed {
    script: PathBuf,
    name: String,
    kv: HashMap<String, String>,
}

impl Testbed {
    /// Brings up testbed `name` with `script` (`testbed.sh`); the error carries its stderr.
    pub fn up(script: &Path, name: &str) -> io::Result<Testbed> {
        Self::up_with(script, name, Topology::Direct)
    }

    /// [`Testbed::up`] in the given layout. `down` removes whatever layout `name` has.
    pub fn up_with(script: &Path, name: &str, topology: Topology) -> io::Result<Testbed> {
        Self::run_up(script, name, topology.args())
    }

    /// [`Testbed::up`] with `queues` receive and transmit queues on both ends of the veth
    /// (`--queues N`; the key `queues` says how many).
    pub fn up_queues(script: &Path, name: &str, queues: u32) -> io::Result<Testbed> {
        Self::run_up(script, name, queue_args(queues))
    }

    fn run_up(script: &Path, name: &str, args: Vec<String>) -> io::Result<Testbed> {
        let out = Command::new(script)
            .args(["up", name])
            .args(args)
            .output()?;
        let mut tb = Testbed {
            script: script.to_path_buf(),
            name: name.to_string(),
            kv: HashMap::new(),
        };
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{} up {name}: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        tb.kv = parse_facts(&String::from_utf8_lossy(&out.stdout));
        Ok(tb)
    }

    /// One of the `key=value` lines `testbed.sh up` printed, or an error naming the key.
    pub fn get(&self, k: &str) -> io::Result<String> {
        self.value(k)
            .map(str::to_string)
            .ok_or_else(|| io::Error::other(format!("testbed.sh printed no {k}")))
    }

    /// One of the `key=value` lines `testbed.sh up` printed.
    pub fn value(&self, k: &str) -> Option<&str> {
        self.kv.get(k).map(String::as_str)
    }

    /// The NAME it was brought up as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside namespace `ns_key` (`ns_stack`, `ns_peer`, `ns_router`).
    pub fn exec(&self, ns_key: &str, args: &[&str]) -> io::Result<()> {
        let ns = self.get(ns_key)?;
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{args:?} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .args(["down", &self.name])
            .output();
    }
}

/// The options of `testbed.sh up NAME` for `queues` queues.
fn queue_args(queues: u32) -> Vec<String> {
    vec!["--queues".into(), queues.to_string()]
}

/// The `key=value` lines of `testbed.sh up`'s output; other lines are ignored.
fn parse_facts(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_the_key_value_lines() {
        let kv = parse_facts("creating\nns_stack=xt1-stack\nip_stack=10.1.0.1\n\nmac=a=b\n");
        assert_eq!(kv.len(), 3);
        assert_eq!(kv["ns_stack"], "xt1-stack");
        assert_eq!(kv["ip_stack"], "10.1.0.1");
        assert_eq!(kv["mac"], "a=b");
    }

    #[test]
    fn routed_layout_passes_the_path_mtu() {
        assert!(Topology::Direct.args().is_empty());
        assert_eq!(
            Topology::Routed { path_mtu: 1400 }.args(),
            ["--router", "1400"]
        );
    }

    #[test]
    fn queue_count_is_passed_as_an_option() {
        assert_eq!(queue_args(2), ["--queues", "2"]);
    }

    #[test]
    fn script_is_the_workspace_testbed() {
        assert!(Path::new(SCRIPT).is_file(), "{SCRIPT}");
    }
}
