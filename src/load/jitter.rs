//! The machine's own noise: how much of its time a thread that only spins loses to gaps it did
//! not cause (host preemption of the vCPU, interrupts, kernel threads). A spinning server and
//! client cannot have fewer or shorter stalls than this, and an open-loop p99 (which counts a
//! stall against every request due during it) cannot be lower than the gaps that cover 1% of
//! the time, so the benchmark measures it beside its figures.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Gaps seen by a thread spinning on one core.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Jitter {
    pub core: usize,
    pub seconds: f64,
    /// Fraction of the time lost in gaps longer than 5 µs, and longer than 100 µs.
    pub lost_over_5us: f64,
    pub lost_over_100us: f64,
    pub gaps_over_5us: u64,
    pub gaps_over_100us: u64,
    pub longest_us: f64,
    /// Every gap longer than [`RECORDED_NS`], in nanoseconds (at most [`MAX_RECORDED`]).
    #[serde(skip)]
    pub gaps: Vec<u64>,
}

/// Gaps shorter than this are the loop's own timing noise, not an interruption.
pub const RECORDED_NS: u64 = 2_000;
const MAX_RECORDED: usize = 1 << 20;

impl Jitter {
    /// Adds one gap of `ns` nanoseconds.
    fn gap(&mut self, ns: u64) {
        if ns > RECORDED_NS && self.gaps.len() < MAX_RECORDED {
            self.gaps.push(ns);
        }
        if ns > 5_000 {
            self.gaps_over_5us += 1;
            self.lost_over_5us += ns as f64;
        }
        if ns > 100_000 {
            self.gaps_over_100us += 1;
            self.lost_over_100us += ns as f64;
        }
        self.longest_us = self.longest_us.max(ns as f64 / 1e3);
    }

    fn finish(mut self, total: Duration) -> Self {
        let t = total.as_nanos().max(1) as f64;
        self.seconds = total.as_secs_f64();
        self.lost_over_5us /= t;
        self.lost_over_100us /= t;
        self
    }
}

/// The delay the machine's gaps alone add at quantile `q` (e.g. 0.99) to a request that arrives
/// at a random instant and needs every core of `cores` to be running (server and client, each
/// spinning): for one core, P(delay > d) is the share of its time that lies more than `d` before
/// the end of a gap; cores are taken as independent. In microseconds.
pub fn delay_quantile(cores: &[Jitter], q: f64) -> f64 {
    let tail = |d: f64| -> f64 {
        let mut none = 1.0;
        for j in cores {
            let t = j.seconds * 1e9;
            if t <= 0.0 {
                continue;
            }
            let over: f64 = j.gaps.iter().map(|&g| (g as f64 - d).max(0.0)).sum();
            none *= 1.0 - (over / t).min(1.0);
        }
        1.0 - none
    };
    let want = 1.0 - q;
    if tail(0.0) <= want {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0f64, 1e9f64);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) > want {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi / 1e3
}

/// Spins for `dur` on the calling thread and returns the gaps it saw.
pub fn spin(core: usize, dur: Duration) -> Jitter {
    let mut j = Jitter {
        core,
        ..Jitter::default()
    };
    let start = Instant::now();
    let mut last = start;
    loop {
        let now = Instant::now();
        j.gap(now.duration_since(last).as_nanos() as u64);
        last = now;
        if now.duration_since(start) >= dur {
            return j.finish(now.duration_since(start));
        }
    }
}

/// Spins on every core of `cores` at once (one pinned thread each) for `dur`.
pub fn measure(cores: &[usize], dur: Duration) -> std::io::Result<Vec<Jitter>> {
    std::thread::scope(|s| {
        let hs: Vec<_> = cores
            .iter()
            .map(|&c| {
                s.spawn(move || -> std::io::Result<Jitter> {
                    super::sys::place_thread(Some(c), None)?;
                    Ok(spin(c, dur))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("jitter thread panicked")))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_classified_and_normalised() {
        let mut j = Jitter::default();
        for ns in [100, 4_000, 6_000, 150_000, 2_000_000] {
            j.gap(ns);
        }
        let j = j.finish(Duration::from_millis(100));
        assert_eq!((j.gaps_over_5us, j.gaps_over_100us), (3, 2));
        assert!((j.lost_over_5us - 2_156_000.0 / 1e8).abs() < 1e-12);
        assert!((j.lost_over_100us - 2_150_000.0 / 1e8).abs() < 1e-12);
        assert_eq!(j.longest_us, 2000.0);
    }

    #[test]
    fn delay_quantile_solves_the_gap_tail() {
        // One core, 1 s, ten 1 ms gaps: 1% of the time is inside a gap, so the 99th percentile
        // of the added delay is 0, and at the 99.5th a random instant is at least half a gap
        // from its end with probability 0.5%: 500 µs.
        let mut j = Jitter::default();
        for _ in 0..10 {
            j.gap(1_000_000);
        }
        let j = j.finish(Duration::from_secs(1));
        assert_eq!(delay_quantile(std::slice::from_ref(&j), 0.99), 0.0);
        assert!((delay_quantile(std::slice::from_ref(&j), 0.995) - 500.0).abs() < 0.01);
        // Two such cores: P(delay > d) = 1 - (1 - p)^2 with p = 10 (1 ms - d) / 1 s.
        let two = [j.clone(), j];
        let d = delay_quantile(&two, 0.99);
        let p: f64 = 10.0 * (1e6 - d * 1e3) / 1e9;
        assert!((1.0 - (1.0 - p).powi(2) - 0.01).abs() < 1e-9, "{d}");
        // (1 - p)^2 = 0.99: p = 0.5013%, d = 1 ms - 501.3 µs.
        assert!((d - 498.744).abs() < 0.01, "{d}");
    }

    #[test]
    fn a_short_spin_reports_its_duration() {
        let j = spin(0, Duration::from_millis(20));
        assert!(j.seconds >= 0.02 && j.seconds < 1.0, "{}", j.seconds);
        assert!(j.lost_over_5us <= 1.0);
    }
}
