//! The fuzz corpora and crash inputs, replayed on the stable toolchain.
//!
//! `fuzz/` (cargo-fuzz, nightly, its own workspace; see FUZZING.md) keeps a minimized corpus per
//! target in `fuzz/corpus/<target>/`, and every input that ever crashed a target in
//! `fuzz/regressions/<target>/`. This test runs each through the same target code the fuzzer
//! runs (`fuzz/src/lib.rs`, included here as a module), so the invariants the fuzzer checked hold
//! in the default suite, and a fixed crash stays fixed. A target without a corpus fails: the
//! corpus is part of the repository.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use std::path::Path;

/// Runs `target` on every file of its corpus and regressions; returns how many ran.
fn replay(name: &str, target: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut ran = 0;
    for dir in ["corpus", "regressions"] {
        let dir = root.join(dir).join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{name}: {} panicked (see above)", f.display());
            ran += 1;
        }
    }
    assert!(
        ran >= 5,
        "{name}: only {ran} inputs in fuzz/corpus/{name}/ (FUZZING.md)"
    );
    ran
}

#[test]
fn ethernet() {
    replay("ethernet", targets::ethernet);
}

#[test]
fn arp() {
    replay("arp", targets::arp);
}

#[test]
fn ipv4() {
    replay("ipv4", targets::ipv4);
}

#[test]
fn icmpv4() {
    replay("icmpv4", targets::icmpv4);
}

#[test]
fn tcp() {
    replay("tcp", targets::tcp);
}

#[test]
fn tcp_options() {
    replay("tcp_options", targets::tcp_options);
}

#[test]
fn host() {
    replay("host", targets::host);
}

/// The host corpus again with zero-copy receive on (`targets::host_lending`).
#[test]
fn host_lending() {
    replay("host", targets::host_lending);
}

#[test]
fn pair() {
    replay("pair", targets::pair);
}
