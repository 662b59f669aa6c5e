//! `deploy/conformance` end to end, with packetdrill itself (built from the packetdrill source
//! beside the repository, as the script does): a deliberately wrong script fails and the harness
//! says which and why, a script leaving sockets open tears down cleanly, and the known-failures
//! list turns an expected failure into XFAIL and an unexpected pass into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Run {
    ok: bool,
    stdout: String,
}

/// Runs the harness on `args` from the repository's root.
fn conformance(args: &[&str]) -> Run {
    let out = Command::new(repo().join("deploy/conformance"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("deploy/conformance runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    Run {
        ok: out.status.success(),
        stdout,
    }
}

/// The line the harness printed for `script`.
fn line_for<'a>(r: &'a Run, script: &str) -> &'a str {
    r.stdout
        .lines()
        .find(|l| l.contains(script))
        .unwrap_or_else(|| panic!("no line for {script}"))
}

#[test]
fn wrong_scripts_fail_and_the_harness_says_where() {
    let good = "tests/packetdrill/handshake/passive-open-timestamps.pkt";
    let r = conformance(&["crates/packetdrill/tests/scripts/wrong", good]);
    assert!(!r.ok, "a failing script fails the run");
    assert!(line_for(&r, good).starts_with("PASS"));
    assert!(line_for(&r, "wrong-ack-number.pkt").starts_with("FAIL"));
    assert!(line_for(&r, "wrong-timing.pkt").starts_with("FAIL"));
    // the reasons packetdrill gave are shown under each failure
    assert!(r
        .stdout
        .contains("wrong-ack-number.pkt:14: error handling packet: live packet field tcp_ack_seq"));
    assert!(r
        .stdout
        .contains("wrong-timing.pkt:17: error handling packet: timing error"));
    assert_eq!(r.stdout.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn sockets_left_open_tear_down_cleanly() {
    let r = conformance(&["crates/packetdrill/tests/scripts/teardown"]);
    assert!(r.ok);
    assert!(line_for(&r, "leftover-sockets.pkt").starts_with("PASS"));
    assert_eq!(r.stdout.lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn known_failures_run_as_xfail_and_an_unexpected_pass_fails_the_run() {
    let dir = std::env::temp_dir().join(format!("xdp-tcp-known-failures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrong = repo().join("crates/packetdrill/tests/scripts/wrong/wrong-timing.pkt");
    let good = repo().join("tests/packetdrill/handshake/passive-open-timestamps.pkt");
    let wrong_ack = repo().join("crates/packetdrill/tests/scripts/wrong/wrong-ack-number.pkt");
    std::fs::copy(&wrong, dir.join("expected-to-fail.pkt")).unwrap();
    std::fs::copy(&wrong, dir.join("expected-at-its-line.pkt")).unwrap();
    std::fs::copy(&wrong_ack, dir.join("fails-elsewhere.pkt")).unwrap();
    std::fs::copy(&good, dir.join("listed-but-passes.pkt")).unwrap();
    std::fs::write(
        dir.join("known-failures.txt"),
        "# comment\nexpected-to-fail.pkt   a known bug\n\
         expected-at-its-line.pkt:17 a known timing bug\n\
         fails-elsewhere.pkt:5  listed at a line it does not fail at\n\
         listed-but-passes.pkt  fixed since\n",
    )
    .unwrap();
    let r = conformance(&[dir.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!r.ok, "an XPASS fails the run");
    assert!(line_for(&r, "expected-to-fail.pkt").starts_with("XFAIL"));
    assert!(line_for(&r, "expected-to-fail.pkt").ends_with("a known bug"));
    assert!(line_for(&r, "expected-at-its-line.pkt").starts_with("XFAIL"));
    assert!(line_for(&r, "fails-elsewhere.pkt").starts_with("FAIL"));
    assert!(line_for(&r, "listed-but-passes.pkt").starts_with("XPASS"));
    assert_eq!(
        r.stdout.lines().last(),
        Some("0 passed, 2 failed (2 known failures)")
    );
}
