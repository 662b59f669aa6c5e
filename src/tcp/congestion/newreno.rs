//! RFC 5681 slow start and congestion avoidance with appropriate byte counting (RFC 3465, L = 1
//! SMSS per ACK), halving on loss.

use super::CongestionControl;
use crate::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct NewReno {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    ca_acc: usize,
}

impl NewReno {
    pub fn new(mss: usize, initial_segments: usize) -> Self {
        NewReno {
            mss,
            cwnd: mss * initial_segments,
            ssthresh: usize::MAX,
            ca_acc: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, acked: usize, _rtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            self.cwnd += acked.min(self.mss);
        } else {
            self.ca_acc += acked;
            if self.ca_acc >= self.cwnd {
                self.ca_acc -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, in_flight: usize) {
        self.ssthresh = (in_flight / 2).max(2 * self.mss);
        self.cwnd = self.ssthresh;
        self.ca_acc = 0;
    }

    fn on_rto(&mut self, _now: Instant, in_flight: usize, reduce: bool) {
        if reduce {
            self.ssthresh = (in_flight / 2).max(2 * self.mss);
        }
        self.cwnd = self.mss;
        self.ca_acc = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant) {
        self.cwnd = self.ssthresh.max(2 * self.mss);
    }

    fn set_mss(&mut self, mss: usize) {
        self.cwnd = super::rescale(self.cwnd, self.mss, mss).max(mss);
        self.ssthresh = super::rescale(self.ssthresh, self.mss, mss);
        self.ca_acc = super::rescale(self.ca_acc, self.mss, mss);
        self.mss = mss;
    }

    fn on_idle_restart(&mut self, initial: usize) {
        self.ssthresh = self.ssthresh.max(self.cwnd / 4 * 3);
        self.cwnd = self.cwnd.min(initial);
        self.ca_acc = 0;
    }
}

impl NewReno {
    /// After an undo: cwnd at least `cwnd`.
    pub fn raise_cwnd(&mut self, cwnd: usize) {
        self.cwnd = self.cwnd.max(cwnd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_avoidance_loss_and_rto() {
        let t = Instant::ZERO;
        let mut c = NewReno::new(1000, 10);
        assert_eq!(c.cwnd(), 10_000);
        c.on_ack(t, 5000, None);
        assert_eq!(c.cwnd(), 11_000);
        c.on_congestion_event(t, 20_000);
        assert_eq!((c.cwnd(), c.ssthresh()), (10_000, 10_000));
        for _ in 0..10 {
            c.on_ack(t, 1000, None);
        }
        assert_eq!(c.cwnd(), 11_000);
        c.on_rto(t, 11_000, true);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 5500));
        // a repeated timeout of the same episode keeps ssthresh
        c.on_rto(t, 1000, false);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 5500));
    }

    #[test]
    fn idle_restart_from_the_initial_window() {
        let t = Instant::ZERO;
        let mut c = NewReno::new(1000, 10);
        c.on_congestion_event(t, 60_000);
        c.cwnd = 40_000;
        c.on_idle_restart(10_000);
        assert_eq!((c.cwnd(), c.ssthresh()), (10_000, 30_000));
        // a window already below the initial one stays
        c.cwnd = 4000;
        c.on_idle_restart(10_000);
        assert_eq!((c.cwnd(), c.ssthresh()), (4000, 30_000));
    }
}
