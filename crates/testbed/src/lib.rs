//! The veth testbed of `deploy/testbed.sh` as a guard, shared by the benchmark (`xdp-tcp bench`)
//! and the veth tests of both crates.
//!
//! [`Testbed::up`] runs `testbed.sh up NAME` and keeps the `key=value` lines it prints
//! (`ns_stack`, `ns_peer`, `if_stack`, `if_peer`, `ip_stack`, ...); dropping the guard runs
//! `testbed.sh down NAME`, also when a test panics, so a testbed never outlives its user.
//! Needs root (network namespaces, veth). No dependencies beyond `std`, so the library can take
//! it as a dev-dependency without the harness's.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `deploy/testbed.sh` of this workspace, for code that may run from any directory (tests).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/testbed.sh");

/// The veth testbed, removed on drop.
pub struct Testbed {
    script: PathBuf,
    name: String,
    kv: HashMap<String, String>,
}

impl Testbed {
    /// Brings up testbed `name` with `script` (`testbed.sh`); the error carries its stderr.
    pub fn up(script: &Path, name: &str) -> io::Result<Testbed> {
        let out = Command::new(script).args(["up", name]).output()?;
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

    /// Runs a command inside namespace `ns_key` (`ns_stack` or `ns_peer`).
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
    fn script_is_the_workspace_testbed() {
        assert!(Path::new(SCRIPT).is_file(), "{SCRIPT}");
    }
}
