//! RACK (RFC 8985 section 6): time-based loss detection on the scoreboard.
//!
//! [`Rack`] remembers the most recently sent segment known delivered and the RTT measured on
//! it. A segment in flight that was sent before that one is lost once it is older than that RTT
//! plus a reordering window. Invariants: `newest` only moves forward in transmit order (time,
//! then sequence); `min_rtt` only falls; the reordering window multiplier stays in 1..=16.
//!
//! Call [`Rack::update`] with what every ACK delivered, then [`Rack::detect`] to mark losses;
//! [`Rack::reo_wnd`] gives the window for it.

use crate::tcp::scoreboard::{Delivered, DeliveredSegment, LossCause, Scoreboard};
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// RACK state (RFC 8985 6.1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rack {
    /// (sent_at, end) of the most recently sent delivered segment.
    pub newest: Option<(Instant, SeqNumber)>,
    pub rtt: Duration,
    pub min_rtt: Option<Duration>,
    pub reordering_seen: bool,
    /// Multiplier of the reordering window, raised on D-SACK (RFC 8985 6.2 step 4).
    pub reo_wnd_mult: u32,
    pub reo_wnd_persist: u32,
}

impl Default for Rack {
    fn default() -> Self {
        Rack {
            newest: None,
            rtt: Duration::ZERO,
            min_rtt: None,
            reordering_seen: false,
            reo_wnd_mult: 1,
            reo_wnd_persist: 0,
        }
    }
}

impl Rack {
    /// Step 2 of RFC 8985 6.2: takes the newest delivered segment's transmit time and RTT. A
    /// retransmitted segment acknowledged faster than the minimum RTT was acknowledged for its
    /// original transmission and gives no sample.
    pub fn update(&mut self, now: Instant, delivered: &Delivered) {
        let Some(DeliveredSegment {
            sent_at,
            end,
            retransmitted,
            ..
        }) = delivered.newest
        else {
            return;
        };
        let rtt = now - sent_at;
        if retransmitted && self.min_rtt.is_some_and(|m| rtt < m) {
            return;
        }
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        let newer = match self.newest {
            None => true,
            Some((t, e)) => sent_at > t || (sent_at == t && end.diff(e) > 0),
        };
        if newer {
            self.newest = Some((sent_at, end));
            self.rtt = rtt;
        }
        if delivered.reordered {
            self.reordering_seen = true;
        }
    }

    /// A D-SACK reported a spurious retransmission: the network reorders, so the window grows
    /// (and stays grown for 16 recoveries).
    pub fn on_dsack(&mut self) {
        self.reordering_seen = true;
        self.reo_wnd_mult = (self.reo_wnd_mult + 1).min(16);
        self.reo_wnd_persist = 16;
    }

    /// The reordering window (RFC 8985 6.2 step 4): zero while no reordering has been seen and
    /// the duplicate threshold is met, else a quarter of the minimum RTT times the multiplier,
    /// capped at SRTT.
    pub fn reo_wnd(
        &self,
        in_recovery: bool,
        sacked_segments_ge_dupthresh: bool,
        srtt: Duration,
    ) -> Duration {
        if !self.reordering_seen && (in_recovery || sacked_segments_ge_dupthresh) {
            return Duration::ZERO;
        }
        let base = self.min_rtt.unwrap_or(Duration::ZERO);
        let w = Duration::from_nanos(base.as_nanos() / 4)
            .saturating_mul(u64::from(self.reo_wnd_mult.max(1)));
        w.min(srtt)
    }

    /// RACK loss detection (RFC 8985 6.2): every segment in flight sent before the most recently
    /// delivered one, and older than it by more than `rtt + reo_wnd`, is marked lost. Returns
    /// how many were marked and, if some are not yet old enough, when to look again.
    pub fn detect(
        &self,
        now: Instant,
        sb: &mut Scoreboard,
        reo_wnd: Duration,
    ) -> (usize, Option<Instant>) {
        let Some((xmit, end)) = self.newest else {
            return (0, None);
        };
        let mut marked = 0;
        let mut recheck: Option<Instant> = None;
        for i in 0..sb.len() {
            let s = sb.get(i);
            if !s.is_in_flight() {
                continue;
            }
            let before = s.sent_at < xmit || (s.sent_at == xmit && s.end.diff(end) < 0);
            if !before {
                continue;
            }
            let deadline = s.sent_at + self.rtt + reo_wnd;
            if deadline <= now {
                if sb.mark_lost(i, LossCause::Fast) {
                    marked += 1;
                }
            } else {
                recheck = Some(recheck.map_or(deadline, |r| r.min(deadline)));
            }
        }
        (marked, recheck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    /// Five 100-byte segments sent at 0, 1, 2, 3 and 4 ms.
    fn board() -> Scoreboard {
        let mut b = Scoreboard::new();
        for i in 0..5u32 {
            b.push(
                s(i * 100),
                s(i * 100 + 100),
                false,
                Instant::from_millis(i as u64),
                0,
            );
        }
        b
    }

    #[test]
    fn rack_marks_older_segments_after_reordering_window() {
        let mut b = board();
        let mut d = Delivered::default();
        b.sack(s(400), s(500), &mut d);
        let mut rack = Rack::default();
        let now = Instant::from_millis(14);
        rack.update(now, &d);
        assert_eq!(rack.rtt, Duration::from_millis(10));
        // segments sent at 0..3 ms are older than the delivered one (4 ms); each is lost once
        // sent_at + rtt + reo_wnd (12 ms) has passed: 0, 1 and 2 ms now, 3 ms at 15 ms
        let (n, recheck) = rack.detect(now, &mut b, Duration::from_millis(2));
        assert_eq!(n, 3);
        assert_eq!(recheck, Some(Instant::from_millis(15)));
        let (n2, recheck2) =
            rack.detect(Instant::from_millis(15), &mut b, Duration::from_millis(2));
        assert_eq!((n2, recheck2), (1, None));
        assert_eq!(b.lost_bytes(), 400);
    }

    #[test]
    fn reordering_window_grows_with_dsacks_up_to_srtt() {
        let mut rack = Rack {
            min_rtt: Some(Duration::from_millis(40)),
            ..Rack::default()
        };
        let srtt = Duration::from_millis(50);
        // no reordering seen and the duplicate threshold met: no window at all
        assert_eq!(rack.reo_wnd(false, true, srtt), Duration::ZERO);
        assert_eq!(rack.reo_wnd(false, false, srtt), Duration::from_millis(10));
        rack.on_dsack();
        assert!(rack.reordering_seen);
        assert_eq!(rack.reo_wnd(true, true, srtt), Duration::from_millis(20));
        for _ in 0..20 {
            rack.on_dsack();
        }
        assert_eq!(rack.reo_wnd_mult, 16);
        assert_eq!(rack.reo_wnd(false, false, srtt), srtt, "capped at SRTT");
    }

    #[test]
    fn a_retransmission_acked_faster_than_min_rtt_gives_no_sample() {
        let mut b = board();
        b.mark_all_lost(false);
        let mut rack = Rack {
            min_rtt: Some(Duration::from_millis(10)),
            ..Rack::default()
        };
        b.on_retransmit(0, Instant::from_millis(20), 0);
        let mut d = Delivered::default();
        b.ack_to(s(100), &mut d);
        rack.update(Instant::from_millis(22), &d);
        assert_eq!(
            rack.newest, None,
            "2 ms is below the 10 ms minimum: the original was acked"
        );
        let mut d = Delivered::default();
        b.ack_to(s(200), &mut d);
        rack.update(Instant::from_millis(30), &d);
        assert_eq!(rack.newest, Some((Instant::from_millis(1), s(200))));
    }
}
