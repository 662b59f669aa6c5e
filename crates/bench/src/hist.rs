//! Round-trip latencies in an HDR histogram (nanoseconds, 3 significant digits, growing as
//! needed), summarised in microseconds.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Percentiles of one run, microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

pub struct Latency {
    h: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 1 ns .. 60 s fits without resizing; auto-resize covers anything longer.
        let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
        h.auto(true);
        Latency { h }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        // Cannot fail with auto-resize; saturate rather than panic if it ever did.
        let _ = self.h.record(ns.max(1));
    }

    pub fn len(&self) -> u64 {
        self.h.len()
    }

    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.h.add(&other.h);
    }

    pub fn summary(&self) -> Option<Summary> {
        if self.h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |p: f64| us(self.h.value_at_quantile(p));
        Some(Summary {
            count: self.h.len(),
            min: us(self.h.min()),
            mean: self.h.mean() / 1000.0,
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p999: q(0.999),
            p9999: q(0.9999),
            max: us(self.h.max()),
        })
    }

    /// Points (percentile, µs) spaced evenly on a log scale of 1/(1-q), as latency percentile
    /// plots are usually drawn: dense near the tail.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.h.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut k = 0.0f64;
        loop {
            let q = 1.0 - 10f64.powf(-k / 10.0);
            if q > 0.99999 {
                break;
            }
            out.push((q * 100.0, self.h.value_at_quantile(q) as f64 / 1000.0));
            k += 1.0;
        }
        out.push((100.0, self.h.max() as f64 / 1000.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latency::new();
        for ns in 1..=10_000u64 {
            l.record(ns * 1000);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 10_000);
        assert!((s.p50 - 5000.0).abs() / 5000.0 < 0.002, "{s:?}");
        assert!((s.p99 - 9900.0).abs() / 9900.0 < 0.002, "{s:?}");
        assert!((s.max - 10_000.0).abs() / 10_000.0 < 0.002, "{s:?}");
        let c = l.curve();
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        assert_eq!(c.last().unwrap().0, 100.0);
    }
}
