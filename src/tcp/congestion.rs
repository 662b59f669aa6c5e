//! Congestion control behind a small trait so algorithms can be swapped per connection.
//!
//! The connection reports acknowledged bytes and loss signals; the algorithm owns `cwnd` and
//! `ssthresh`. [`NewReno`] implements RFC 5681 slow start and congestion avoidance with the
//! initial window of RFC 6928.

use crate::time::Instant;

pub trait CongestionControl: core::fmt::Debug {
    fn cwnd(&self) -> usize;
    fn ssthresh(&self) -> usize;
    /// `acked` bytes were newly acknowledged cumulatively.
    fn on_ack(&mut self, now: Instant, acked: usize, mss: usize);
    /// The retransmission timer expired with `in_flight` bytes outstanding.
    fn on_rto(&mut self, now: Instant, in_flight: usize, mss: usize);
}

#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    ca_acc: usize,
}

impl NewReno {
    pub fn new(mss: usize, initial_segments: usize) -> Self {
        NewReno {
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

    fn on_ack(&mut self, _now: Instant, acked: usize, mss: usize) {
        if self.cwnd < self.ssthresh {
            // RFC 5681 3.1 with appropriate byte counting limited to one SMSS per ACK (RFC 3465 L=1)
            self.cwnd += acked.min(mss);
        } else {
            self.ca_acc += acked;
            if self.ca_acc >= self.cwnd {
                self.ca_acc -= self.cwnd;
                self.cwnd += mss;
            }
        }
    }

    fn on_rto(&mut self, _now: Instant, in_flight: usize, mss: usize) {
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.ca_acc = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance_then_rto() {
        let mss = 1000;
        let mut c = NewReno::new(mss, 10);
        assert_eq!(c.cwnd(), 10_000);
        c.on_ack(Instant::ZERO, 5000, mss);
        assert_eq!(c.cwnd(), 11_000);
        c.on_rto(Instant::ZERO, 20_000, mss);
        assert_eq!((c.cwnd(), c.ssthresh()), (1000, 10_000));
        for _ in 0..9 {
            c.on_ack(Instant::ZERO, 1000, mss);
        }
        assert_eq!(c.cwnd(), 10_000);
        // in avoidance: one MSS per cwnd of acknowledged bytes
        for _ in 0..10 {
            c.on_ack(Instant::ZERO, 1000, mss);
        }
        assert_eq!(c.cwnd(), 11_000);
    }
}
