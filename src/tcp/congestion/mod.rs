//! Congestion control behind a trait, so the algorithm is chosen per connection.
//!
//! The connection reports acknowledged bytes, congestion events (entering fast recovery),
//! retransmission timeouts and the end of recovery; the algorithm owns `cwnd` and `ssthresh`
//! (bytes). Both algorithms start from the initial window of RFC 6928 and share slow start.
//!
//! [`Controller`] wraps the algorithm with the snapshots that let loss recovery take back a
//! reduction that proved spurious ([`Controller::snapshot`], [`Controller::undo`]).

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
    /// The retransmission timer expired: cwnd falls to one segment. Only the first timeout of a
    /// loss episode (`reduce`) sets ssthresh (and CUBIC's W_max) from the window before it; a
    /// repeated one keeps them (RFC 5681 3.1), as the window it would measure is the one the
    /// first timeout already cut.
    fn on_rto(&mut self, now: Instant, in_flight: usize, reduce: bool);
    /// Fast recovery ended: cwnd settles at ssthresh.
    fn on_recovery_end(&mut self, now: Instant);
}

/// The algorithm's whole state, saved before a reduction so it can be restored.
#[derive(Debug, Clone)]
pub struct Snapshot(Alg);

/// The algorithm: an enum rather than a box, so there is no allocation and the calls inline.
#[derive(Debug, Clone)]
enum Alg {
    NewReno(NewReno),
    Cubic(Cubic),
}

/// A connection's congestion controller.
#[derive(Debug, Clone)]
pub struct Controller {
    alg: Alg,
}

impl Controller {
    pub fn new(alg: Algorithm, mss: usize, initial_segments: usize) -> Self {
        let alg = match alg {
            Algorithm::NewReno => Alg::NewReno(NewReno::new(mss, initial_segments)),
            Algorithm::Cubic => Alg::Cubic(Cubic::new(mss, initial_segments)),
        };
        Controller { alg }
    }

    #[inline]
    fn inner(&self) -> &dyn CongestionControl {
        match &self.alg {
            Alg::NewReno(c) => c,
            Alg::Cubic(c) => c,
        }
    }

    #[inline]
    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match &mut self.alg {
            Alg::NewReno(c) => c,
            Alg::Cubic(c) => c,
        }
    }

    /// The state to restore should the reduction about to be made prove spurious.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.alg.clone())
    }

    /// Takes back a spurious reduction: the algorithm's state from `s`, with cwnd no smaller
    /// than it is now (as Linux's `tcp_undo_cwnd_reduction`).
    pub fn undo(&mut self, s: Snapshot) {
        let cwnd = self.cwnd();
        self.alg = s.0;
        match &mut self.alg {
            Alg::NewReno(c) => c.raise_cwnd(cwnd),
            Alg::Cubic(c) => c.raise_cwnd(cwnd),
        }
    }
}

impl CongestionControl for Controller {
    #[inline]
    fn cwnd(&self) -> usize {
        self.inner().cwnd()
    }
    #[inline]
    fn ssthresh(&self) -> usize {
        self.inner().ssthresh()
    }
    #[inline]
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>) {
        self.inner_mut().on_ack(now, acked, rtt)
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        self.inner_mut().on_congestion_event(now, in_flight)
    }
    fn on_rto(&mut self, now: Instant, in_flight: usize, reduce: bool) {
        self.inner_mut().on_rto(now, in_flight, reduce)
    }
    fn on_recovery_end(&mut self, now: Instant) {
        self.inner_mut().on_recovery_end(now)
    }
}
