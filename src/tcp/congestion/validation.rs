//! Congestion window validation: cwnd grows only while the network, not the application (or the
//! peer's window), limits the sender (RFC 7661's concern, as Linux's `tcp_is_cwnd_limited` and
//! the rate-limited increase rule of RFC 5681's update); and after an idle period longer than an
//! RTO the window restarts from min(IW, cwnd) (RFC 5681 4.1).
//!
//! [`Usage`] watches each window of data, from one send until everything sent by then is
//! acknowledged: whether the flight filled cwnd (to within one segment) at any time in it, and
//! the largest flight. cwnd may grow while the last such window was cwnd-limited, or in slow
//! start while cwnd is below twice the largest flight (so it can double once more, as slow start
//! would, but not run away from what is actually sent). Feed it after every transmission
//! ([`Usage::on_send`]); ask [`Usage::may_grow`] for each ACK, and [`Usage::idle_restart_due`]
//! before sending new data with nothing in flight.

use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// The flight filled cwnd in the current window.
    cwnd_limited: bool,
    /// Largest flight (bytes) seen in the current window.
    max_flight: usize,
    /// snd_max when the current window began: it ends once snd_una reaches this.
    window_end: Option<SeqNumber>,
    /// When data last went out.
    last_sent: Option<Instant>,
}

impl Usage {
    /// Something was sent at `now`: `flight` bytes are in the network, and `limited` if that
    /// fills cwnd to within a segment.
    #[inline]
    pub fn on_send(
        &mut self,
        now: Instant,
        flight: usize,
        limited: bool,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    ) {
        self.last_sent = Some(now);
        let new_window = self.window_end.is_none_or(|e| snd_una.diff(e) >= 0);
        if new_window || limited || (!self.cwnd_limited && flight > self.max_flight) {
            self.cwnd_limited = limited;
            self.max_flight = flight;
            self.window_end = Some(snd_max);
        }
    }

    /// Whether an ACK may grow cwnd: the sender used it. `window` gives (cwnd, ssthresh).
    #[inline]
    pub fn may_grow(&self, window: impl FnOnce() -> (usize, usize)) -> bool {
        self.cwnd_limited || {
            let (cwnd, ssthresh) = window();
            cwnd < ssthresh && cwnd < 2 * self.max_flight
        }
    }

    /// Whether data about to go out with nothing in flight follows an idle period longer than
    /// `rto` (which is never below `rto_min`, so a shorter pause needs no RTO computed) (RFC
    /// 5681 4.1). Clears the record, so the restart happens once.
    #[inline]
    pub fn idle_restart_due(
        &mut self,
        now: Instant,
        rto_min: Duration,
        rto: impl FnOnce() -> Duration,
    ) -> bool {
        match self.last_sent {
            Some(t) if now - t > rto_min && now - t > rto() => {
                self.last_sent = None;
                self.cwnd_limited = false;
                self.max_flight = 0;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn lim(flight: usize, cwnd: usize) -> bool {
        flight + MSS > cwnd
    }

    #[test]
    fn growth_needs_a_full_window_in_the_last_round() {
        let mut u = Usage::default();
        let t = Instant::ZERO;
        // 2 segments in flight of a 10-segment window, past slow start: application-limited
        u.on_send(t, 2 * MSS, lim(2 * MSS, 10 * MSS), s(0), s(2000));
        assert!(!u.may_grow(|| (10 * MSS, 5 * MSS)));
        // in slow start, growth up to twice what was in flight
        assert!(!u.may_grow(|| (10 * MSS, usize::MAX)));
        u.on_send(t, 6 * MSS, lim(6 * MSS, 10 * MSS), s(0), s(6000));
        assert!(u.may_grow(|| (10 * MSS, usize::MAX)));
        assert!(!u.may_grow(|| (12 * MSS, usize::MAX)));
        // the flight fills cwnd: limited for the rest of this window, whatever follows in it
        u.on_send(t, 10 * MSS, lim(10 * MSS, 10 * MSS), s(0), s(10_000));
        u.on_send(t, 4 * MSS, lim(4 * MSS, 10 * MSS), s(7000), s(11_000));
        assert!(u.may_grow(|| (10 * MSS, 5 * MSS)));
        // the next window starts with the first send once all of it is acknowledged
        u.on_send(t, MSS, lim(MSS, 10 * MSS), s(11_000), s(12_000));
        assert!(!u.may_grow(|| (10 * MSS, 5 * MSS)));
    }

    #[test]
    fn restart_after_an_idle_rto_once() {
        let mut u = Usage::default();
        let rto = Duration::from_millis(200);
        assert!(
            !u.idle_restart_due(Instant::from_secs(10), rto, || rto),
            "never sent"
        );
        u.on_send(
            Instant::from_millis(100),
            MSS,
            lim(MSS, 10 * MSS),
            s(0),
            s(1000),
        );
        assert!(!u.idle_restart_due(Instant::from_millis(300), rto, || rto));
        assert!(u.idle_restart_due(Instant::from_millis(301), rto, || rto));
        assert!(!u.idle_restart_due(Instant::from_millis(302), rto, || rto));
    }
}
