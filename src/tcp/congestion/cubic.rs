//! CUBIC (RFC 9438): after a loss the window follows W(t) = C (t - K)^3 + W_max, concave up to
//! the window where the loss happened and convex beyond it, with beta = 0.7, C = 0.4, fast
//! convergence, and the Reno-friendly region (W_est) so CUBIC is never slower than Reno.

use super::CongestionControl;
use crate::time::{Duration, Instant};

const C: f64 = 0.4;
const BETA: f64 = 0.7;

#[derive(Debug, Clone)]
pub struct Cubic {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Window (in segments) before the last reduction.
    w_max: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch: Option<Instant>,
    k: f64,
    /// Reno-friendly estimate, in segments.
    w_est: f64,
    /// Bytes acknowledged since cwnd last grew by a whole segment.
    acc: usize,
    srtt: Duration,
}

impl Cubic {
    pub fn new(mss: usize, initial_segments: usize) -> Self {
        Cubic {
            mss,
            cwnd: mss * initial_segments,
            ssthresh: usize::MAX,
            w_max: 0.0,
            epoch: None,
            k: 0.0,
            w_est: 0.0,
            acc: 0,
            srtt: Duration::from_millis(100),
        }
    }

    fn segments(&self) -> f64 {
        self.cwnd as f64 / self.mss as f64
    }

    /// W_cubic(t) in segments.
    pub fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.w_max
    }

    fn reduce(&mut self) {
        let w = self.segments();
        // fast convergence: release bandwidth to newer flows when the window keeps shrinking
        self.w_max = if w < self.w_max {
            w * (1.0 + BETA) / 2.0
        } else {
            w
        };
        self.ssthresh = ((w * BETA) as usize * self.mss).max(2 * self.mss);
        self.epoch = None;
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>) {
        if let Some(r) = rtt {
            self.srtt = r;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd += acked.min(self.mss);
            return;
        }
        let cwnd_seg = self.segments();
        let epoch = *self.epoch.get_or_insert_with(|| {
            self.k = if self.w_max > cwnd_seg {
                ((self.w_max - cwnd_seg) / C).cbrt()
            } else {
                0.0
            };
            self.w_est = cwnd_seg;
            now
        });
        let t = (now - epoch).as_secs_f64();
        let target = self
            .w_cubic(t + self.srtt.as_secs_f64())
            .clamp(cwnd_seg, 1.5 * cwnd_seg);
        // Reno-friendly: W_est grows by alpha per window of acknowledged segments
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        self.w_est += alpha * (acked as f64 / self.mss as f64) / cwnd_seg;
        let goal = if self.w_est > target {
            self.w_est
        } else {
            target
        };
        // grow by (goal - cwnd) / cwnd segments per acknowledged segment
        let per_byte = ((goal - cwnd_seg) / cwnd_seg).max(0.0);
        self.acc += (per_byte * acked as f64 * self.mss as f64 / self.mss as f64) as usize;
        if self.acc >= self.mss {
            let grow = self.acc / self.mss * self.mss;
            self.cwnd += grow;
            self.acc -= grow;
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, _in_flight: usize) {
        self.reduce();
        self.cwnd = self.ssthresh;
        self.acc = 0;
    }

    fn on_rto(&mut self, _now: Instant, _in_flight: usize, reduce: bool) {
        if reduce {
            self.reduce();
        }
        self.cwnd = self.mss;
        self.acc = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh.max(2 * self.mss);
    }

    fn set_mss(&mut self, mss: usize) {
        self.cwnd = super::rescale(self.cwnd, self.mss, mss).max(mss);
        self.ssthresh = super::rescale(self.ssthresh, self.mss, mss);
        self.acc = super::rescale(self.acc, self.mss, mss);
        self.mss = mss;
    }

    fn on_idle_restart(&mut self, initial: usize) {
        self.ssthresh = self.ssthresh.max(self.cwnd / 4 * 3);
        self.cwnd = self.cwnd.min(initial);
        self.acc = 0;
        // the cubic curve must not count the idle time as time spent growing (RFC 9438 5.8)
        self.epoch = None;
    }
}

impl Cubic {
    /// After an undo: cwnd at least `cwnd`.
    pub fn raise_cwnd(&mut self, cwnd: usize) {
        self.cwnd = self.cwnd.max(cwnd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_and_regrowth_toward_w_max() {
        let mss = 1000;
        let mut c = Cubic::new(mss, 10);
        let t0 = Instant::ZERO;
        c.on_ack(t0, 1000, None);
        assert_eq!(c.cwnd(), 11_000, "slow start");
        // grow to 100 segments, then a loss
        c.cwnd = 100 * mss;
        c.on_congestion_event(t0, 100 * mss);
        assert_eq!(c.cwnd(), 70 * mss);
        assert_eq!(c.ssthresh(), 70 * mss);
        // K = cbrt(30 / 0.4) ~ 4.22 s: the window is back near W_max then, and above it later.
        // A 100 ms RTT keeps the Reno-friendly estimate (+0.53 segment per RTT) below the curve.
        let rtt = Some(Duration::from_millis(100));
        let mut now = t0;
        while now < Instant::from_millis(4200) {
            now += Duration::from_millis(100);
            for _ in 0..(c.cwnd() / mss) {
                c.on_ack(now, mss, rtt);
            }
        }
        let w = c.cwnd() / mss;
        assert!((95..=101).contains(&w), "cwnd {w} segments at K");
        while now < Instant::from_millis(6000) {
            now += Duration::from_millis(100);
            for _ in 0..(c.cwnd() / mss) {
                c.on_ack(now, mss, rtt);
            }
        }
        assert!(
            c.cwnd() / mss > 101,
            "convex growth past W_max: {}",
            c.cwnd() / mss
        );
        // a second loss below W_max triggers fast convergence
        let before = c.segments();
        c.w_max = before + 10.0;
        c.on_congestion_event(now, c.cwnd());
        assert!((c.w_max - before * 0.85).abs() < 1e-9);
    }

    #[test]
    fn repeated_timeouts_keep_ssthresh_and_w_max() {
        let mss = 1000;
        let mut c = Cubic::new(mss, 10);
        c.cwnd = 100 * mss;
        c.on_rto(Instant::ZERO, 100 * mss, true);
        assert_eq!((c.cwnd(), c.ssthresh()), (mss, 70 * mss));
        assert_eq!(c.w_max, 100.0);
        for _ in 0..2 {
            c.on_rto(Instant::ZERO, mss, false);
            assert_eq!((c.cwnd(), c.ssthresh()), (mss, 70 * mss));
            assert_eq!(c.w_max, 100.0);
        }
    }

    #[test]
    fn reno_friendly_region_at_short_rtt() {
        let mss = 1000;
        let mut c = Cubic::new(mss, 10);
        c.cwnd = 100 * mss;
        c.on_congestion_event(Instant::ZERO, 100 * mss);
        // 10 ms RTT: after 2 s (200 RTTs) the cubic curve is still below W_max, but W_est has
        // grown by about 0.53 segment per RTT
        let rtt = Some(Duration::from_millis(10));
        let mut now = Instant::ZERO;
        for _ in 0..200 {
            now += Duration::from_millis(10);
            for _ in 0..(c.cwnd() / mss) {
                c.on_ack(now, mss, rtt);
            }
        }
        let w = c.cwnd() / mss;
        assert!((160..=185).contains(&w), "cwnd {w}: 70 + 200 * 0.53 ~ 176");
    }
}
