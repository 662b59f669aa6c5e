//! Detection of spurious loss recovery, so its congestion window reduction can be taken back
//! (as Linux's undo): a retransmission timeout or fast retransmit whose retransmissions turn out
//! to have been unnecessary, because the originals were only delayed or reordered.
//!
//! Two detectors, for both kinds of episode:
//! - Eifel detection with timestamps (RFC 3522): the first retransmission's TSval is recorded;
//!   an ACK of new data that echoes an older value answers an original transmission, so the
//!   original got through (the receiver echoes the segment at its left edge, RFC 7323 4.3).
//! - D-SACK (RFC 2883, RFC 3708): once every retransmission of the episode has been reported as
//!   a duplicate, none of them was needed (Linux's `undo_retrans`). A D-SACK block counts when
//!   it lies within the span of sequence space the episode retransmitted, so a duplicate the
//!   network made of some other segment is not taken for one.
//!
//! The response (RFC 4015's intent, Linux's `tcp_undo_cwnd_reduction`) restores the controller's
//! state from before the reduction, with cwnd no smaller than it is now, and the episode ends.
//! [`Undo`] keeps what the detectors need; it lives from the start of an episode until it is
//! taken back or another reduction replaces it (D-SACKs may come after the episode ended).

use crate::tcp::congestion::Snapshot;
use crate::wire::SeqNumber;

#[derive(Debug, Clone)]
pub(crate) struct Undo {
    /// Congestion control before the episode's reduction.
    pub prior: Snapshot,
    /// The span of sequence space the episode retransmitted, once it has.
    span: Option<(SeqNumber, SeqNumber)>,
    /// Retransmissions of the episode not yet reported as duplicates.
    retrans: u32,
    /// Our TSval on the episode's first retransmission.
    first_retrans_ts: Option<u32>,
    /// The episode saw a retransmission timeout (for the counters).
    pub rto: bool,
}

impl Undo {
    pub fn new(prior: Snapshot, rto: bool) -> Self {
        Undo {
            prior,
            span: None,
            retrans: 0,
            first_retrans_ts: None,
            rto,
        }
    }

    /// A retransmission of the episode, `[start, end)`, went out carrying `ts_val`.
    #[inline]
    pub fn on_retransmit(&mut self, start: SeqNumber, end: SeqNumber, ts_val: u32) {
        self.retrans += 1;
        self.first_retrans_ts.get_or_insert(ts_val);
        self.span = Some(match self.span {
            None => (start, end),
            Some((lo, hi)) => (lo.min(start), hi.max(end)),
        });
    }

    /// A D-SACK reported `[left, right)` received twice. Returns true when that accounts for
    /// the last retransmission not yet reported: all of them were spurious.
    #[inline]
    pub fn on_dsack(&mut self, left: SeqNumber, right: SeqNumber) -> bool {
        let Some((lo, hi)) = self.span else {
            return false;
        };
        if self.retrans == 0 || left.diff(lo) < 0 || right.diff(hi) > 0 {
            return false;
        }
        self.retrans -= 1;
        self.retrans == 0
    }

    /// Eifel: an ACK of new data echoing `ecr` answers a transmission sent before the first
    /// retransmission.
    #[inline]
    pub fn echo_predates_retransmission(&self, ecr: u32) -> bool {
        self.first_retrans_ts
            .is_some_and(|first| ecr != 0 && (ecr.wrapping_sub(first) as i32) < 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::congestion::{Algorithm, Controller};

    fn undo() -> Undo {
        let cc = Controller::new(Algorithm::Cubic, 1000, 10);
        Undo::new(cc.snapshot(), false)
    }

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn dsacks_for_every_retransmission_make_it_spurious() {
        let mut u = undo();
        assert!(!u.on_dsack(s(5000), s(6000)), "nothing retransmitted yet");
        u.on_retransmit(s(5000), s(6000), 100);
        u.on_retransmit(s(7000), s(8000), 101);
        // a duplicate of data the episode did not resend tells nothing of it
        assert!(!u.on_dsack(s(4000), s(5000)));
        assert!(!u.on_dsack(s(8000), s(9000)));
        assert!(!u.on_dsack(s(5000), s(6000)));
        assert!(u.on_dsack(s(7000), s(8000)));
        assert!(!u.on_dsack(s(7000), s(8000)), "once only");
    }

    #[test]
    fn an_echo_older_than_the_first_retransmission_answers_an_original() {
        let mut u = undo();
        assert!(!u.echo_predates_retransmission(50), "no retransmission yet");
        u.on_retransmit(s(0), s(1), 100);
        u.on_retransmit(s(1), s(2), 140);
        assert!(u.echo_predates_retransmission(99));
        assert!(!u.echo_predates_retransmission(100));
        assert!(!u.echo_predates_retransmission(120));
        assert!(!u.echo_predates_retransmission(0), "no echo");
        // across the wrap of our clock
        let mut w = undo();
        w.on_retransmit(s(0), s(1), 3);
        assert!(w.echo_predates_retransmission(u32::MAX - 2));
    }
}
