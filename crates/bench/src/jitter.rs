//! The machine's own noise: how much of its time a thread that only spins loses to gaps it did
//! not cause (host preemption of the vCPU, interrupts, kernel threads). A spinning server and
//! client cannot have fewer or shorter stalls than this, and an open-loop p99 (which counts a
//! stall against every request due during it) cannot be lower than the gaps that cover 1% of
//! the time, so the benchmark measures it beside its figures.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Gaps seen by a thread spinning on one core.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Jitter {
    pub core: usize,
    pub seconds: f64,
    /// Fraction of the time lost in gaps longer than 5 µs, and longer than 100 µs.
    pub lost_over_5us: f64,
    pub lost_over_100us: f64,
    pub gaps_over_5us: u64,
    pub gaps_over_100us: u64,
    pub longest_us: f64,
}

impl Jitter {
    /// Adds one gap of `ns` nanoseconds.
    fn gap(&mut self, ns: u64) {
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
    fn a_short_spin_reports_its_duration() {
        let j = spin(0, Duration::from_millis(20));
        assert!(j.seconds >= 0.02 && j.seconds < 1.0, "{}", j.seconds);
        assert!(j.lost_over_5us <= 1.0);
    }
}
