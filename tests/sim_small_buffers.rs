//! Bulk transfers through 4 KiB send and receive buffers: 256 KiB each way at once, byte-exact,
//! 300 seeds per link model, with and without window scaling (shift 7, as Linux offers).
//!
//! Windows this small are below three segments, so the paths that large buffers never reach run
//! all the time here: windows smaller than the MSS that silly-window avoidance holds data for,
//! retransmissions that do not fit the window, window updates lost or reordered behind older
//! segments, zero windows probed while the peer's application is slow to read. Every transfer
//! must finish within the simulated-time bound.
//!
//! Seeds run on as many threads as the machine has cores; each seed is independent and a
//! failure reports every failing seed, not just the first.

mod common;

use std::panic;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::sim_pair::Pair;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::tcp;
use xdp_tcp::time::Duration;

const LEN: usize = 256 << 10;
const SEEDS: u64 = 300;
const BUFFER: usize = 4 << 10;
/// Far more than any transfer needs (the slowest takes seconds): a stall hits it.
const LIMIT: Duration = Duration::from_secs(1800);

/// 5 ms each way at 10 Mbit/s: a 4 KiB window is well below the path's 12 KB
/// bandwidth-delay product, so the window, not the network, limits every transfer.
fn link() -> LinkConfig {
    LinkConfig::ideal(Duration::from_millis(5)).with_bandwidth(10_000_000)
}

/// With window scaling, both ends offer shift 7 as Linux does whatever the buffer (it sizes the
/// shift for `tcp_rmem[2]`): a 4 KiB buffer alone would need shift 0, the same windows as no
/// scaling at all. Shift 7 advertises windows in 128-byte steps, so rounding a window that is
/// not a multiple of 128 (down, never shrinking the right edge) runs on every segment.
fn config(window_scale: bool) -> tcp::Config {
    tcp::Config {
        send_buffer: BUFFER,
        recv_buffer: BUFFER,
        window_scale,
        window_shift: window_scale.then_some(7),
        ..tcp::Config::default()
    }
}

/// Runs every seed of one link model; panics naming each seed that failed, and why.
fn run(name: &str, link: LinkConfig, window_scale: bool) {
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let slowest = Mutex::new(Duration::ZERO);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    // the seeds' panics are collected below; printing each would bury the summary
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= SEEDS {
                    break;
                }
                let cfg = config(window_scale);
                let l = link.clone();
                match panic::catch_unwind(|| {
                    let r = Pair::seeded(cfg, seed).link(l).build().transfer(LEN, LIMIT);
                    r.assert_exact(&format!("seed {seed}"));
                    assert_eq!(r.oversize, 0, "seed {seed}: a frame over the MTU");
                    r
                }) {
                    Ok(r) => {
                        let mut w = slowest.lock().unwrap();
                        *w = (*w).max(r.sim_time);
                    }
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.lock().unwrap().push((seed, msg));
                    }
                }
            });
        }
    });
    panic::set_hook(hook);
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    eprintln!(
        "{name}: {SEEDS} seeds, {} failed, slowest {:?} simulated",
        failures.len(),
        slowest.into_inner().unwrap()
    );
    assert!(
        failures.is_empty(),
        "{name}: {} of {SEEDS} seeds failed:\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(s, m)| format!("  seed {s}: {m}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn one_percent_loss() {
    run("1% loss", link().with_loss(0.01), true);
}

#[test]
fn one_percent_loss_without_window_scaling() {
    run("1% loss, no window scaling", link().with_loss(0.01), false);
}

#[test]
fn three_percent_loss() {
    run("3% loss", link().with_loss(0.03), true);
}

#[test]
fn three_percent_loss_without_window_scaling() {
    run("3% loss, no window scaling", link().with_loss(0.03), false);
}

#[test]
fn ten_percent_bursty_loss() {
    run("10% loss in bursts", link().with_loss_bursts(0.10, 3), true);
}

#[test]
fn ten_percent_bursty_loss_without_window_scaling() {
    run(
        "10% loss in bursts, no window scaling",
        link().with_loss_bursts(0.10, 3),
        false,
    );
}

/// Up to 5 ms of jitter on frames 1.2 ms apart: segments and window updates overtake each
/// other, so old windows arrive after newer ones.
#[test]
fn three_percent_loss_with_reordering() {
    let l = link().with_loss(0.03).with_jitter(Duration::from_millis(5));
    run("3% loss, reordering", l, true);
}

#[test]
fn three_percent_loss_with_reordering_without_window_scaling() {
    let l = link().with_loss(0.03).with_jitter(Duration::from_millis(5));
    run("3% loss, reordering, no window scaling", l, false);
}
