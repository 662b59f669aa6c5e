//! Congestion control behind a trait, so the algorithm is chosen per connection.
//!
//! The connection reports acknowledged bytes, congestion events (entering fast recovery),
//! retransmission timeouts and the end of recovery; the algorithm owns `cwnd` and `ssthresh`
//! (bytes). Both algorithms start from the initial window of RFC 6928 and share slow start.
//!
//! [`Controller`] wraps the algorithm with what is common to both: congestion window validation
//! ([`validation`]: no growth while the application or the peer's window is the limit, and the
//! restart window after idle), and the snapshots that let loss recovery take back a reduction
//! that proved spurious ([`Controller::snapshot`], [`Controller::undo`]).

mod cubic;
mod newreno;
mod validation;

pub use cubic::Cubic;
pub use newreno::NewReno;
pub use validation::Usage;

use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

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
    /// Sending resumes after an idle period longer than the RTO (RFC 5681 4.1): cwnd restarts
    /// from min(`initial`, cwnd), ssthresh keeps at least 3/4 of the old cwnd so slow start
    /// brings most of it back (as Linux), and nothing of the idle time counts as growth.
    fn on_idle_restart(&mut self, initial: usize);
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

/// The algorithm's whole state, saved before a reduction so it can be restored.
#[derive(Debug, Clone)]
pub struct Snapshot(Alg);

/// The algorithm: an enum rather than a box, so there is no allocation and the calls inline.
#[derive(Debug, Clone)]
enum Alg {
    NewReno(NewReno),
    Cubic(Cubic),
}

/// Evaluates `$e` with `$c` bound to the algorithm: static dispatch, so the calls inline.
macro_rules! on_alg {
    ($self:expr, $c:ident => $e:expr) => {
        match $self {
            Alg::NewReno($c) => $e,
            Alg::Cubic($c) => $e,
        }
    };
}

/// A connection's congestion controller: the algorithm, and the validation of its window.
#[derive(Debug, Clone)]
pub struct Controller {
    alg: Alg,
    usage: Usage,
    /// The initial window in bytes (RFC 6928), where a restart after idle begins.
    initial: usize,
}

impl Controller {
    pub fn new(alg: Algorithm, mss: usize, initial_segments: usize) -> Self {
        let alg = match alg {
            Algorithm::NewReno => Alg::NewReno(NewReno::new(mss, initial_segments)),
            Algorithm::Cubic => Alg::Cubic(Cubic::new(mss, initial_segments)),
        };
        Controller {
            alg,
            usage: Usage::default(),
            initial: mss * initial_segments,
        }
    }

    /// Something was sent: `flight` bytes are now in the network (see [`Usage::on_send`]).
    #[inline]
    pub fn on_send(
        &mut self,
        now: Instant,
        flight: usize,
        mss: usize,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) {
        let limited = flight + mss > self.cwnd();
        self.usage.on_send(now, flight, limited, snd_una, snd_max);
    }

    /// New data is about to go out with nothing in flight: after an idle period longer than the
    /// RTO (`rto`, never less than `rto_min`), cwnd restarts (RFC 5681 4.1).
    #[inline]
    pub fn before_send_from_idle(
        &mut self,
        now: Instant,
        rto_min: Duration,
        rto: impl FnOnce() -> Duration,
    ) {
        if self.usage.idle_restart_due(now, rto_min, rto) {
            let initial = self.initial;
            self.on_idle_restart(initial);
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
        on_alg!(&mut self.alg, c => c.raise_cwnd(cwnd))
    }
}

impl CongestionControl for Controller {
    #[inline]
    fn cwnd(&self) -> usize {
        on_alg!(&self.alg, c => c.cwnd())
    }
    #[inline]
    fn ssthresh(&self) -> usize {
        on_alg!(&self.alg, c => c.ssthresh())
    }
    /// Grows cwnd only while the sender used it ([`Usage::may_grow`]).
    #[inline]
    fn on_ack(&mut self, now: Instant, acked: usize, rtt: Option<Duration>) {
        if self.usage.may_grow(|| (self.cwnd(), self.ssthresh())) {
            on_alg!(&mut self.alg, c => c.on_ack(now, acked, rtt))
        }
    }
    fn on_congestion_event(&mut self, now: Instant, in_flight: usize) {
        on_alg!(&mut self.alg, c => c.on_congestion_event(now, in_flight))
    }
    fn on_rto(&mut self, now: Instant, in_flight: usize, reduce: bool) {
        on_alg!(&mut self.alg, c => c.on_rto(now, in_flight, reduce))
    }
    fn on_recovery_end(&mut self, now: Instant) {
        on_alg!(&mut self.alg, c => c.on_recovery_end(now))
    }
    fn on_idle_restart(&mut self, initial: usize) {
        on_alg!(&mut self.alg, c => c.on_idle_restart(initial))
    }
    fn set_mss(&mut self, mss: usize) {
        on_alg!(&mut self.alg, c => c.set_mss(mss))
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
            c.on_rto(Instant::ZERO, 0, true);
            assert_eq!(c.cwnd(), 1228, "{alg:?}: one segment of the new size");
        }
        let mut c = Controller::new(Algorithm::Cubic, 1448, 10);
        c.set_mss(1228);
        assert_eq!((c.cwnd(), c.ssthresh()), (12280, usize::MAX));
    }
}
