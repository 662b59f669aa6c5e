//! Children spawned by other threads while stacks start, run and stop hold none of the stacks'
//! descriptors, and every stack starts at once after the previous one is dropped (root, veth).
//!
//! The window this closes: libxdp opened the UMEM's AF_XDP socket without `SOCK_CLOEXEC` and
//! the stack set `FD_CLOEXEC` only after the bind (tens of milliseconds on veth), so a child
//! forked meanwhile kept the socket, and with it the queue: the next stack met EBUSY until the
//! child exited. The socket is now opened close-on-exec (vendor/xsk-rs); the eventfds, the
//! control socket, netlink and the BPF objects are close-on-exec from their creation, and libbpf
//! no longer opens /sys/fs/bpf (without `O_CLOEXEC`) to look for a BPF token on each load
//! (src/io/bpf.rs; about 1 run in 14 caught a child holding it). A child
//! still holds every descriptor between its fork and its exec, so an XDP link or socket closed
//! meanwhile lingers that long: the XDP attach retries EBUSY for a while as the bind does (20
//! starts beside 4 spawning threads met it within 2 rounds without the retry).
//!
//! Its own test binary: no other test of the process starts a stack or spawns a child meanwhile.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::testbed::{descriptors, require_environment, Testbed};
use xdp_tcp::api::{Stack, TcpListener};

/// Start/stop cycles of the stack while the spawners run.
const ROUNDS: usize = 20;
/// Threads spawning children as fast as they can.
const SPAWNERS: usize = 4;

#[test]
fn children_spawned_while_stacks_start_hold_none_of_their_descriptors() {
    require_environment(&["ip", "ethtool", "sleep"]);
    let tb = Testbed::up("cx");
    let ctl = std::env::temp_dir().join(format!("xdp-tcp-cloexec-{}.sock", std::process::id()));
    // What the process holds before any stack: whatever of it a child inherits (descriptors the
    // test harness was given) is not the stack's.
    let baseline = descriptors("self");

    let stop = Arc::new(AtomicBool::new(false));
    let spawned = Arc::new(AtomicU64::new(0));
    // (round the parent was in, child fd, what it refers to)
    let leaks: Arc<Mutex<Vec<(u64, i32, String)>>> = Arc::default();
    let round = Arc::new(AtomicU64::new(0));
    let spawners: Vec<_> = (0..SPAWNERS)
        .map(|_| {
            let (stop, spawned, leaks, round, baseline) = (
                Arc::clone(&stop),
                Arc::clone(&spawned),
                Arc::clone(&leaks),
                Arc::clone(&round),
                baseline.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = round.load(Ordering::Relaxed);
                    let mut child = Command::new("sleep")
                        .arg("30")
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .expect("spawn sleep");
                    // After exec: what the child inherited it holds until it exits. Two looks
                    // 20 ms apart, keeping what both saw: right after exec the dynamic loader
                    // of `sleep` has files of its own open for a moment (libc, locales).
                    let pid = child.id().to_string();
                    let first = descriptors(&pid);
                    std::thread::sleep(Duration::from_millis(20));
                    let held: BTreeMap<i32, String> = descriptors(&pid)
                        .into_iter()
                        .filter(|(fd, t)| first.get(fd) == Some(t))
                        .collect();
                    let _ = child.kill();
                    let _ = child.wait();
                    spawned.fetch_add(1, Ordering::Relaxed);
                    let mut l = leaks.lock().unwrap();
                    for (fd, target) in held {
                        if fd > 2 && baseline.get(&fd) != Some(&target) {
                            l.push((r, fd, target));
                        }
                    }
                }
            })
        })
        .collect();

    let start = || {
        Stack::builder()
            .interface(tb.get("if_stack"))
            .netns(tb.netns_path("ns_stack"))
            .control_socket(&ctl)
            .start()
    };
    let mut slowest = Duration::ZERO;
    let mut failed = None;
    for r in 0..ROUNDS {
        round.store(r as u64, Ordering::Relaxed);
        let t = Instant::now();
        let stack = match start() {
            Ok(s) => s,
            Err(e) => {
                failed = Some(format!("round {r}: start after {:?}: {e}", t.elapsed()));
                break;
            }
        };
        slowest = slowest.max(t.elapsed());
        let l = TcpListener::bind(&stack, 7200).unwrap();
        l.readiness_fd().unwrap();
        // running: children spawned now must not hold it either
        std::thread::sleep(Duration::from_millis(100));
        drop(l);
        drop(stack);
    }
    stop.store(true, Ordering::Relaxed);
    for s in spawners {
        s.join().unwrap();
    }
    let spawned = spawned.load(Ordering::Relaxed);
    let leaks = leaks.lock().unwrap();
    eprintln!(
        "{spawned} children spawned over {ROUNDS} stack starts; slowest start {slowest:?}; \
         {} inherited descriptors",
        leaks.len()
    );
    assert!(
        leaks.is_empty(),
        "children inherited stack descriptors (round, fd, target): {:?}",
        &leaks[..leaks.len().min(20)]
    );
    assert!(failed.is_none(), "{}", failed.unwrap());
    // Enough children to cover the starts: at least a few per round.
    assert!(spawned >= 3 * ROUNDS as u64, "only {spawned} children");
    assert!(slowest < Duration::from_secs(5), "a start took {slowest:?}");
}
