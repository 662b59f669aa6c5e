//! The connection's side of its timers: what each kind does when it fires, and the
//! retransmission timeout (RFC 6298) with its give-up rules.
//!
//! Kinds handed over together run in [`TimerKind::ALL`] order (see [`Timers`]); a kind whose
//! deadline is not due any more is skipped. The RTO, when due with the tail loss probe, lets the
//! probe go first and stays armed and due: the probe's transmission re-arms it, and if no probe
//! can be sent it fires on the next call. A series of RTOs gives up after `syn_retries` in the
//! handshake, else after `max_retries` or `retrans_timeout` since the first of the series; any
//! acknowledgment (or answered window probe) starts a new series. Once a probe went into a shut
//! window, the persist timer alone watches it (no RTO, no tail loss probe), its interval doubled
//! per probe up to `rto_max` as Linux's; a probe still unanswered when it fires counts as a
//! timeout of the series. A connection the application closed stops probing a shut window after
//! `orphan_retries` probes.

use super::space::AckState;
use super::Connection;
use crate::tcp::state::State;
use crate::tcp::timers::{TimerKind, TimerSet, Timers};
use crate::time::Instant;
use crate::wire::TcpFlags;

impl Connection {
    /// The deadline of every timer.
    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    /// The kinds whose deadline changed (armed, moved earlier or cleared) since the last call,
    /// and those handed to [`Connection::handle_timers`] since: after each visit, mirror just
    /// these into a timer wheel. A kind whose deadline only moved later is left out: the wheel
    /// keeps its earlier entry, which fires early and is handed back (see [`Timers`]).
    #[inline]
    pub fn take_timer_changes(&mut self) -> TimerSet {
        self.timers.take_changed()
    }

    /// The next instant at which [`Connection::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Runs every timer due at `now`, in [`TimerKind::ALL`] order.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.handle_timers(now, self.timers.due(now));
    }

    /// Runs the timers of `fired` (the kinds a timer wheel found expired), in
    /// [`TimerKind::ALL`] order. A kind whose deadline is not due at `now` (moved later, or
    /// cleared by a kind handled before it) is skipped. The fired kinds count as changed for
    /// [`Connection::take_timer_changes`], as the wheel no longer holds them.
    pub fn handle_timers(&mut self, now: Instant, fired: TimerSet) {
        self.timers.mark_changed(fired);
        for kind in fired.iter() {
            if self.timers.is_due(kind, now) {
                self.on_timer(now, kind);
            }
        }
    }

    fn on_timer(&mut self, now: Instant, kind: TimerKind) {
        match kind {
            TimerKind::TimeWait => {
                self.timers.clear(kind);
                self.enter_closed();
            }
            TimerKind::DelayedAck => {
                self.timers.clear(kind);
                // the reply that was to carry the ACK did not come: no longer interactive
                // (Linux's delayed-ACK timer leaves ping-pong mode)
                self.rcv.pingpong = false;
                self.rcv.ack = AckState::Now;
            }
            TimerKind::TailLossProbe => {
                self.timers.clear(kind);
                self.recovery.on_probe_timer(&self.sb);
            }
            TimerKind::Rto => {
                // the probe goes first: it is scheduled no later than the RTO (RFC 8985 7.2), and
                // when both are due it takes the RTO's place until the next poll_transmit sends
                // it (which re-arms the RTO); if no probe can be sent, the RTO, still due, fires
                // on the next call
                if self.timers.is_due(TimerKind::TailLossProbe, now) {
                    self.on_timer(now, TimerKind::TailLossProbe);
                }
                if !self.recovery.probe_due() {
                    self.timers.clear(kind);
                    self.on_rto(now);
                }
            }
            TimerKind::Reorder => {
                self.timers.clear(kind);
                let (rec, mut cx) = self.loss(now);
                rec.detect_losses(&mut cx);
            }
            TimerKind::Persist => {
                self.timers.clear(kind);
                if self.snd.wnd == 0 {
                    if self.orphan_done_probing() {
                        let e = self.timeout_error();
                        self.fail(e);
                        return;
                    }
                    if !self.sb.is_empty() {
                        // the last probe is still out: a timeout of the series as the RTO's
                        // would be (answers start it again), and the probe goes once more
                        if self.count_timeout(now, false) {
                            let e = self.timeout_error();
                            self.fail(e);
                            return;
                        }
                        self.sb.mark_beyond(self.snd.right_edge());
                    }
                }
                self.force_probe = true;
            }
            TimerKind::KeepAlive => {
                self.timers.clear(kind);
                // data queued or in flight: the retransmission timer watches the peer instead
                let busy = !self.sb.is_empty() || !self.snd.buf.is_empty();
                if self
                    .keepalive
                    .on_timer(now, self.state, busy, &mut self.timers)
                {
                    // the peer may be alive behind a path that lost only its answers: tell it,
                    // as Linux's keep-alive timer does (tcp_send_active_reset, then
                    // tcp_write_err)
                    self.push_active_reset(now);
                    let e = self.timeout_error();
                    self.fail(e);
                }
            }
            TimerKind::Cork => {
                self.timers.clear(kind);
                self.corked = false;
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        if self.snd.una == self.snd.max && !handshake {
            return;
        }
        if self.count_timeout(now, handshake) {
            let e = self.timeout_error();
            self.fail(e);
            return;
        }
        self.stats.rare().rto_events += 1;
        self.rtt.on_timeout();
        self.rtt_probe = None;
        if handshake {
            self.snd.nxt = self.snd.iss;
        } else {
            // a receiver may renege on SACKed data: after repeated timeouts, resend it too
            let forget_sacks = self.retries > 1;
            let first = self.retrans_since.unwrap_or(now);
            self.probe_black_hole(now, first);
            let (rec, mut cx) = self.loss(now);
            rec.on_rto(&mut cx, forget_sacks);
            if self.snd.wnd == 0 {
                if self.orphan_done_probing() {
                    let e = self.timeout_error();
                    self.fail(e);
                    return;
                }
                // the window is still shut: the retransmission goes out as a window probe
                self.force_probe = true;
            }
        }
        self.restart_rto(now);
    }

    /// Counts one more timeout in the current series (retransmission, or of an unanswered
    /// zero-window probe); true when the connection must give up: after `syn_retries` in the
    /// handshake, else after `max_retries` or `retrans_timeout` since the first of the series.
    fn count_timeout(&mut self, now: Instant, handshake: bool) -> bool {
        self.retries += 1;
        let first = *self.retrans_since.get_or_insert(now);
        if handshake {
            self.retries > self.cfg.syn_retries
        } else {
            self.retries > self.cfg.max_retries || now - first >= self.cfg.retrans_timeout
        }
    }

    /// A closed connection has had `orphan_retries` probes of a shut window answered with the
    /// window still shut: answered probes reset the RTO series, so they would keep it alive for
    /// ever, with nobody waiting for its data. Unanswered ones end it as any retransmission
    /// timeouts do.
    fn orphan_done_probing(&self) -> bool {
        self.orphaned && self.probes_answered >= self.cfg.orphan_retries
    }

    /// Queues the RST Linux's `tcp_send_active_reset` sends when it gives a live connection up:
    /// RST and ACK, at a sequence number the peer accepts (as a pure ACK's), with our
    /// timestamp if they are on.
    fn push_active_reset(&mut self, now: Instant) {
        let mut rst = self.bare(self.snd.acceptable_seq(), TcpFlags::RST | TcpFlags::ACK);
        rst.ack = self.rcv.nxt();
        rst.window =
            (self.rcv.buf.window() >> self.opts.rcv_wscale).min(usize::from(u16::MAX)) as u16;
        if self.opts.timestamps {
            rst.options.timestamp = Some((self.ts.val(now), self.ts.recent()));
        }
        self.push_rst(self.remote, rst);
    }

    /// The peer answered: the series of timeouts, and its give-up clock, start again.
    pub(super) fn reset_retries(&mut self) {
        self.retries = 0;
        self.retrans_since = None;
    }

    pub(super) fn restart_rto(&mut self, now: Instant) {
        self.timers.set(TimerKind::Rto, now + self.rtt.rto());
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{established, ms};
    use super::*;
    use crate::tcp::config::Config;
    use crate::tcp::event::Error;
    use crate::time::Duration;
    use crate::wire::SeqNumber;

    /// An established connection with SACK, its RTT sampled as 100 ms, and `segments` full
    /// segments sent at 100 ms and unacknowledged.
    fn sending(segments: usize) -> Connection {
        let mut c = established(Config::default(), true);
        assert!(c.sack_enabled());
        c.send(&vec![7; segments * c.mss()]).unwrap();
        let mut sent = 0;
        while c.poll_transmit(ms(100)).is_some() {
            sent += 1;
        }
        assert_eq!(sent, segments);
        c
    }

    #[test]
    fn the_tail_probe_goes_before_an_rto_handed_over_alone() {
        let mut c = sending(1);
        let rto = c.timers().get(TimerKind::Rto).unwrap();
        // one segment in flight: the probe (2 SRTT + 200 ms) is capped at the RTO
        assert_eq!(c.timers().get(TimerKind::TailLossProbe), Some(rto));
        c.handle_timers(rto, TimerKind::Rto.into());
        assert_eq!(c.stats().rto_events, 0, "the probe took the RTO's place");
        assert_eq!(c.timers().get(TimerKind::Rto), Some(rto), "still due");
        let probe = c.poll_transmit(rto).expect("the probe");
        assert_eq!(probe.repr.seq, SeqNumber(1));
        assert_eq!(c.stats().tlp_probes, 1);
        assert!(
            c.timers().get(TimerKind::Rto).unwrap() > rto,
            "re-armed by the probe"
        );
    }

    #[test]
    fn a_kind_whose_deadline_moved_later_is_ignored() {
        let mut c = sending(2);
        let rto = c.timers().get(TimerKind::Rto).unwrap();
        let early = rto.checked_sub(Duration::from_millis(1)).unwrap();
        c.handle_timers(early, TimerKind::Rto.into());
        assert_eq!(c.stats().rto_events, 0);
        assert_eq!(c.timers().get(TimerKind::Rto), Some(rto));
        // a kind that is not armed at all does nothing either
        c.handle_timers(rto, TimerKind::Persist.into());
        assert_eq!(c.timers().get(TimerKind::Persist), None);
    }

    #[test]
    fn time_wait_ending_leaves_nothing_else_to_run() {
        let mut c = sending(1);
        c.timers.set(TimerKind::TimeWait, ms(200));
        c.timers.set(TimerKind::DelayedAck, ms(200));
        let mut fired = TimerSet::of(TimerKind::DelayedAck);
        fired.insert(TimerKind::TimeWait);
        c.handle_timers(ms(200), fired);
        assert_eq!(c.state(), State::Closed);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.poll_transmit(ms(200)).is_none(), "no ACK after the end");
    }

    #[test]
    fn rto_backs_off_and_gives_up_after_max_retries() {
        let mut c = sending(1);
        std::sync::Arc::make_mut(&mut c.cfg).max_retries = 2;
        c.timers.clear(TimerKind::TailLossProbe);
        let mut now = c.poll_timeout().unwrap();
        let first = c.rto();
        c.handle_timeout(now);
        assert_eq!(c.stats().rto_events, 1);
        assert_eq!(c.rto(), first.saturating_mul(2));
        while c.poll_transmit(now).is_some() {}
        c.timers.clear(TimerKind::TailLossProbe);
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        assert_eq!(c.stats().rto_events, 2);
        while c.poll_transmit(now).is_some() {}
        c.timers.clear(TimerKind::TailLossProbe);
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        assert_eq!(c.state(), State::Closed);
        assert_eq!(c.error(), Some(Error::TimedOut));
    }
}
