//! Keep-alive probing (RFC 9293 3.8.4, RFC 1122 4.2.3.6): an idle connection is probed after
//! `idle`, then every `interval`; after `count` unanswered probes the peer has timed out.
//!
//! Invariants: the keep-alive timer ([`TimerKind::KeepAlive`]) is armed only while probing is on
//! and the connection is synchronized; it acts only in the states where the peer must still
//! answer (ESTABLISHED, CLOSE-WAIT, FIN-WAIT-1, FIN-WAIT-2). `probes_out` counts the probes sent
//! since the peer was last heard from. While data is queued or in flight the retransmission
//! timer watches the peer instead, and the keep-alive timer only waits another idle period.
//!
//! The connection calls [`KeepAliveState::set`] when the application changes the setting,
//! [`KeepAliveState::peer_alive`] for every segment from the peer once synchronized,
//! [`KeepAliveState::on_timer`] when the timer fires, and [`KeepAliveState::take_probe`] from its
//! output path, which sends the probe.

use super::config::KeepAlive;
use super::state::State;
use super::timers::{TimerKind, Timers};
use crate::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct KeepAliveState {
    params: Option<KeepAlive>,
    probes_out: u32,
    /// A probe is due on the next transmission opportunity.
    probe_due: bool,
}

/// States in which an idle peer is probed.
fn probing(state: State) -> bool {
    matches!(
        state,
        State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
    )
}

impl KeepAliveState {
    pub fn new(params: Option<KeepAlive>) -> Self {
        KeepAliveState {
            params,
            probes_out: 0,
            probe_due: false,
        }
    }

    pub fn params(&self) -> Option<KeepAlive> {
        self.params
    }

    /// Probes sent since the peer was last heard from.
    #[cfg(test)]
    pub fn probes_out(&self) -> u32 {
        self.probes_out
    }

    /// Turns probing on with `params` (the idle period starts now) or off with `None`.
    pub fn set(
        &mut self,
        now: Instant,
        params: Option<KeepAlive>,
        state: State,
        timers: &mut Timers,
    ) {
        self.params = params;
        self.probes_out = 0;
        let at = match params {
            Some(k) if state.is_synchronized() => Some(now + k.idle),
            _ => None,
        };
        timers.set_or_clear(TimerKind::KeepAlive, at);
    }

    /// Any segment from the peer proves it alive: the idle period starts again.
    #[inline]
    pub fn peer_alive(&mut self, now: Instant, state: State, timers: &mut Timers) {
        self.probes_out = 0;
        if let Some(k) = self.params {
            if probing(state) {
                timers.set(TimerKind::KeepAlive, now + k.idle);
            }
        }
    }

    /// The keep-alive timer fired (and was cleared). `busy`: data is queued or in flight.
    /// Returns true when the peer has left `count` probes unanswered: the connection timed out.
    pub fn on_timer(
        &mut self,
        now: Instant,
        state: State,
        busy: bool,
        timers: &mut Timers,
    ) -> bool {
        let Some(k) = self.params else { return false };
        if !probing(state) {
            return false;
        }
        if busy {
            timers.set(TimerKind::KeepAlive, now + k.idle);
            return false;
        }
        if self.probes_out >= k.count {
            return true;
        }
        self.probes_out += 1;
        self.probe_due = true;
        timers.set(TimerKind::KeepAlive, now + k.interval);
        false
    }

    /// A probe is due (without taking it).
    #[inline]
    pub fn probe_due(&self) -> bool {
        self.probe_due
    }

    /// Whether a probe should go out now; a true answer is given once per probe.
    #[inline]
    pub fn take_probe(&mut self) -> bool {
        std::mem::take(&mut self.probe_due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    const KA: KeepAlive = KeepAlive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    };

    fn s(n: u64) -> Instant {
        Instant::from_secs(n)
    }

    /// Fires the keep-alive timer at its deadline, which must be `at` seconds.
    fn fire(k: &mut KeepAliveState, t: &mut Timers, at: u64, busy: bool) -> bool {
        assert_eq!(t.get(TimerKind::KeepAlive), Some(s(at)));
        t.clear(TimerKind::KeepAlive);
        k.on_timer(s(at), State::Established, busy, t)
    }

    #[test]
    fn probes_after_idle_then_every_interval_then_times_out() {
        let mut k = KeepAliveState::new(None);
        let mut t = Timers::default();
        k.set(s(0), Some(KA), State::Established, &mut t);
        for (i, at) in [10, 12, 14].into_iter().enumerate() {
            assert!(!fire(&mut k, &mut t, at, false));
            assert!(k.take_probe(), "probe {i}");
            assert!(!k.take_probe(), "one probe per expiry");
            assert_eq!(k.probes_out(), i as u32 + 1);
        }
        assert!(fire(&mut k, &mut t, 16, false), "three unanswered probes");
        assert!(!k.take_probe());
    }

    #[test]
    fn the_peer_answering_starts_the_idle_period_again() {
        let mut k = KeepAliveState::new(Some(KA));
        let mut t = Timers::default();
        k.peer_alive(s(1), State::Established, &mut t);
        assert!(!fire(&mut k, &mut t, 11, false));
        assert!(k.take_probe());
        k.peer_alive(s(12), State::Established, &mut t);
        assert_eq!(k.probes_out(), 0);
        assert_eq!(t.get(TimerKind::KeepAlive), Some(s(22)));
    }

    #[test]
    fn data_outstanding_only_waits_another_idle_period() {
        let mut k = KeepAliveState::new(None);
        let mut t = Timers::default();
        k.set(s(0), Some(KA), State::CloseWait, &mut t);
        assert!(!fire(&mut k, &mut t, 10, true));
        assert!(!k.take_probe());
        assert_eq!(k.probes_out(), 0);
        assert_eq!(t.get(TimerKind::KeepAlive), Some(s(20)));
    }

    #[test]
    fn off_or_outside_the_probing_states_nothing_is_armed() {
        let mut k = KeepAliveState::new(None);
        let mut t = Timers::default();
        k.peer_alive(s(0), State::Established, &mut t);
        assert_eq!(t.next_deadline(), None);
        k.set(s(0), Some(KA), State::SynSent, &mut t);
        assert_eq!(t.next_deadline(), None, "not synchronized yet");
        k.peer_alive(s(1), State::LastAck, &mut t);
        assert_eq!(t.next_deadline(), None);
        k.set(s(2), Some(KA), State::Established, &mut t);
        assert_eq!(t.get(TimerKind::KeepAlive), Some(s(12)));
        k.set(s(3), None, State::Established, &mut t);
        assert_eq!(t.next_deadline(), None, "turning it off disarms the timer");
        assert!(!k.on_timer(s(12), State::Established, false, &mut t));
        assert!(!k.take_probe());
    }
}
