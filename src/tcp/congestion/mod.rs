//! Congestion control behind a trait, so the algorithm is chosen per connection.
//!
//! The connection reports acknowledged bytes, congestion events (entering fast recovery),
//! retransmission timeouts and the end of recovery; the algorithm owns `cwnd` and `ssthresh`
//! (bytes). Both algorithms start from the initial window of RFC 6928 and share slow start.

mod cubic;
mod newreno;

pub use cubic::Cubic;
pub use newreno::NewReno;

use crate::time::{Duration, Instant};

/// Which algorithm a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    NewReno,
    #[default]
    Cubic,
}

pub trait CongestionControl: core::fmt::Debug {
    fn cwnd(&self) -> usize;
    fn ssthresh(&self) -> usize;
    /// `acked` bytes were newly acknowledged (cumulatively or by SACK) outside recovery.
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>);
    /// Loss detected by fast retransmit, RACK or a TLP: multiplicative decrease.
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize);
    /// The retransmission timer expired.
    fn on_rto(&mut self, now: Instant, in_flight: usize);
    /// Fast recovery ended: cwnd settles at ssthresh.
    fn on_recovery_end(&mut self, now: Instant);
    /// The MSS changed (the path MTU fell): the windows keep their size in segments, as
    /// Linux's windows, counted in packets, do. Not a congestion signal.
    fn set_mss(&mut self, mss: usize);
}

/// `bytes` of segments of `old` bytes, as as many segments of `new` bytes (`usize::MAX`, an
/// unset ssthresh, stays).
fn rescale(bytes: usize, old: usize, new: usize) -> usize {
    if bytes == usize::MAX || old == 0 {
        return bytes;
    }
    (bytes as u128 * new as u128 / old as u128) as usize
}

/// A connection's controller: an enum rather than a box, so there is no allocation and the
/// calls inline.
#[derive(Debug, Clone)]
pub enum Controller {
    NewReno(NewReno),
    Cubic(Cubic),
}

impl Controller {
    pub fn new(alg: Algorithm, mss: usize, initial_segments: usize) -> Self {
        match alg {
            Algorithm::NewReno => Controller::NewReno(NewReno::new(mss, initial_segments)),
            Algorithm::Cubic => Controller::Cubic(Cubic::new(mss, initial_segments)),
        }
    }

    fn inner(&self) -> &dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::NewReno(c) => c,
            Controller::Cubic(c) => c,
        }
    }
}

impl CongestionControl for Controller {
    fn cwnd(&self) -> usize {
        self.inner().cwnd()
    }
    fn ssthresh(&self) -> usize {
        self.inner().ssthresh()
    }
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>) {
        self.inner_mut().on_ack(now, acked, rtt)
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        self.inner_mut().on_congestion_event(now, in_flight)
    }
    fn on_rto(&mut self, now: Instant, in_flight: usize) {
        self.inner_mut().on_rto(now, in_flight)
    }
    fn on_recovery_end(&mut self, now: Instant) {
        self.inner_mut().on_recovery_end(now)
    }
    fn set_mss(&mut self, mss: usize) {
        self.inner_mut().set_mss(mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_mss_keeps_the_windows_in_segments() {
        for alg in [Algorithm::NewReno, Algorithm::Cubic] {
            let mut c = Controller::new(alg, 1448, 10);
            c.on_congestion_event(Instant::ZERO, 20 * 1448);
            let (cwnd, ssthresh) = (c.cwnd() / 1448, c.ssthresh() / 1448);
            c.set_mss(1228);
            assert_eq!(
                (c.cwnd(), c.ssthresh()),
                (cwnd * 1228, ssthresh * 1228),
                "{alg:?}"
            );
            c.on_rto(Instant::ZERO, 0);
            assert_eq!(c.cwnd(), 1228, "{alg:?}: one segment of the new size");
        }
        let mut c = Controller::new(Algorithm::Cubic, 1448, 10);
        c.set_mss(1228);
        assert_eq!((c.cwnd(), c.ssthresh()), (12280, usize::MAX));
    }
}
