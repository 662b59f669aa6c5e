//! The ACK step of segment arrival (RFC 9293 3.10.7.4): the acknowledgement checked (RFC 5961
//! 5.2), the send buffer, scoreboard, RTT estimate, loss recovery and congestion control told
//! what it delivered, and the peer's window taken. Two shortcuts serve the usual cases (nothing
//! in flight; everything in flight acknowledged), each held against the general path by
//! `ack_shortcut_tests`.

use super::Connection;
use crate::tcp::event::Event;
use crate::tcp::scoreboard::Delivered;
use crate::tcp::timers::TimerKind;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpRepr};

#[cfg(test)]
thread_local! {
    /// Turns `process_ack`'s shortcuts off, so a test can hold them against the general path.
    pub(super) static GENERAL_ACK_PATH_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// How often the shortcut for an acknowledgement with nothing in flight was taken.
    pub(super) static SHORTCUTS_TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// How often the shortcut for an acknowledgement of everything in flight was taken.
    pub(super) static WHOLE_FLIGHT_SHORTCUTS_TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[inline(always)]
fn general_ack_path_only() -> bool {
    #[cfg(test)]
    return GENERAL_ACK_PATH_ONLY.with(std::cell::Cell::get);
    #[cfg(not(test))]
    false
}

impl Connection {
    /// Handles the acknowledgment fields; `wnd` is the peer's window, scaled. Returns false if
    /// the segment must be dropped.
    pub(super) fn process_ack(&mut self, now: Instant, seg: &TcpRepr, wnd: usize) -> bool {
        let ack = seg.ack;
        // anything beyond what we sent or older than a window behind is dropped with a
        // challenge ACK: a blind attacker must then guess the acknowledgement within a window
        // too before its data is taken
        if !self.snd.ack_acceptable(ack) {
            self.challenge_ack(now);
            return false;
        }
        if ack.diff(self.snd.una) < 0 {
            // an old duplicate: nothing to learn, not even the window (RFC 9293 3.10.7.4)
            return true;
        }
        let take_window = self.snd.updates_window(seg.seq, ack, wnd);
        if ack == self.snd.max
            && self.rtt_probe.is_none()
            && self.recovery.is_idle()
            && seg.options.sack().is_empty()
            && !general_ack_path_only()
            && self.snd.una == self.snd.max
            && self.sb.is_empty()
        {
            // Nothing of ours in flight, none acknowledged, no episode or probe to end
            // (every segment a receiver of a one-way transfer gets): the path below would
            // find no delivery, duplicate, RTT sample, loss or congestion signal, and only
            // clear the reordering timer. Just the window.
            #[cfg(test)]
            SHORTCUTS_TAKEN.with(|n| n.set(n.get() + 1));
            self.timers.clear(TimerKind::Reorder);
            if take_window {
                self.take_window(wnd, seg.seq);
            }
            return true;
        }
        // (header prediction asks the same before calling `ack_whole_flight` itself)
        if self.acks_whole_flight(seg) {
            self.ack_whole_flight(now, seg, wnd, take_window);
            return true;
        }
        let mut delivered = Delivered::default();
        let newly_acked = ack - self.snd.una;
        let syn_acked = self.snd.una == self.snd.iss && newly_acked > 0;
        if newly_acked > 0 {
            self.sb.ack_to(ack, &mut delivered);
            self.on_new_ack(now, ack);
        } else if seg.payload.is_empty()
            && !seg.flags.fin()
            && self.snd.una != self.snd.max
            && wnd == self.snd.wnd
        {
            self.stats.rare().dupacks_in += 1;
            self.recovery.on_dupack();
        }
        // (no blocks, nothing to do: the recovery context is not built for nothing)
        if self.opts.sack && !seg.options.sack().is_empty() {
            let (rec, mut cx) = self.loss(now);
            rec.on_sack_blocks(&mut cx, seg.options.sack(), ack, &mut delivered);
        }
        self.sample_rtt(now, seg, &delivered, newly_acked > 0);
        let delivered_bytes = newly_acked - syn_acked as usize + delivered.sacked_bytes;
        // the echo matters only to an episode's Eifel test
        let ecr = match seg.options.timestamp {
            Some((_, ecr)) if self.opts.timestamps && self.recovery.in_recovery() => Some(ecr),
            _ => None,
        };
        let (rec, mut cx) = self.loss(now);
        rec.on_ack(&mut cx, &delivered, delivered_bytes, newly_acked > 0, ecr);

        if take_window {
            self.take_window(wnd, seg.seq);
        }
        if newly_acked > 0 {
            self.schedule_tail_probe(now);
        }
        true
    }

    /// Whether `process_ack` would take `seg` by [`Connection::ack_whole_flight`] (its checks
    /// then pass: the ACK is acceptable and new, so it takes the window too). Header prediction
    /// asks first and calls that directly, without `process_ack`'s call.
    #[inline(always)]
    pub(super) fn acks_whole_flight(&self, seg: &TcpRepr) -> bool {
        seg.ack == self.snd.max
            && self.snd.una != self.snd.max
            && self.snd.una != self.snd.iss
            && self.snd.ack_acceptable(seg.ack)
            && self.opts.sack
            && self.rtt_probe.is_none()
            && self.recovery.is_idle()
            && seg.options.sack().is_empty()
            && !general_ack_path_only()
    }

    /// [`Connection::process_ack`] for an ACK of everything in flight, not of our SYN, without
    /// a SACK block, SACK on, and no episode, tail probe or timed segment outstanding (every
    /// ACK a request/response exchange gets): what the general path does in that case, in its
    /// order, without the parts that find nothing to do. Nothing stays in flight, so there is
    /// no duplicate to count, no SACK block to apply, no episode or probe to end, no loss to
    /// detect and no probe to schedule; `on_new_ack` clears the reordering and probe timers
    /// (the general path's loss detection and probe scheduling would clear them again).
    #[inline]
    pub(super) fn ack_whole_flight(
        &mut self,
        now: Instant,
        seg: &TcpRepr,
        wnd: usize,
        take_window: bool,
    ) {
        #[cfg(test)]
        WHOLE_FLIGHT_SHORTCUTS_TAKEN.with(|n| n.set(n.get() + 1));
        let ack = seg.ack;
        let newly_acked = ack - self.snd.una;
        let mut delivered = Delivered::default();
        self.sb.ack_to(ack, &mut delivered);
        self.on_new_ack(now, ack);
        self.sample_rtt(now, seg, &delivered, true);
        self.recovery.on_whole_flight_acked(
            now,
            &delivered,
            newly_acked,
            &mut self.cc,
            self.rtt.srtt(),
            &mut self.stats,
        );
        // the scoreboard holds only what lies below SND.MAX, all of it acknowledged now: no loss
        // to detect, no probe to schedule
        debug_assert!(self.sb.is_empty());
        if take_window {
            self.take_window(wnd, seg.seq);
        }
    }

    /// Takes the peer's window `wnd` (scaled) from the segment at `seq`, after its ACK moved
    /// `una`. A window that shrank below what we sent (RFC 9293 3.8.6: the peer SHOULD NOT,
    /// but we MUST cope) leaves the segments past the new right edge out of the network: the
    /// peer drops them, so they are marked for retransmission and no longer count in flight;
    /// they go again, trimmed to the window, once it opens (see `emit_retransmission`).
    fn take_window(&mut self, wnd: usize, seq: SeqNumber) {
        let was_zero = self.snd.wnd == 0;
        self.snd.set_window(wnd, seq);
        if wnd > 0 {
            self.timers.clear(TimerKind::Persist);
            self.persist_backoff = 0;
            self.probes_answered = 0;
            if was_zero && self.snd.max != self.snd.una {
                // what we sent into the shut window (the probes) was dropped: forget it and
                // send those bytes again as part of full segments
                self.sb.clear();
                self.snd.nxt = self.snd.una;
                self.snd.max = self.snd.una;
                self.timers.clear(TimerKind::Rto);
                return;
            }
        } else {
            // the peer answers our probes: it may keep its window shut as long as it likes
            // (RFC 9293 3.8.6.1), but for a connection the application closed (see
            // `orphan_done_probing`)
            self.reset_retries();
            if self.probes_answered < self.persist_backoff {
                self.probes_answered += 1;
            }
        }
        let edge = self.snd.right_edge();
        if edge.diff(self.snd.max) < 0 {
            self.window_shrunk(edge);
        }
    }

    #[cold]
    fn window_shrunk(&mut self, edge: SeqNumber) {
        self.stats.rare().window_shrunk += 1;
        self.sb.mark_beyond(edge);
    }

    #[inline(always)]
    fn on_new_ack(&mut self, now: Instant, ack: SeqNumber) {
        let data_acked = self.snd.ack_to(ack);
        self.stats.bytes_acked += data_acked as u64;
        if data_acked > 0 {
            self.sample_delivery_rate(now);
        }
        // the RTO's backoff stays until an RTT sample ends it (Karn), see `sample_rtt`
        self.reset_retries();
        self.recovery.on_cumulative_ack();
        self.force_probe = false;
        if self.snd.una == self.snd.max {
            self.timers.clear(TimerKind::Rto);
            self.timers.clear(TimerKind::TailLossProbe);
            self.timers.clear(TimerKind::Reorder);
        } else {
            self.restart_rto(now);
        }
        if data_acked > 0 && self.events.writable_due() && self.send_space() > 0 {
            self.push_event(Event::Writable);
        }
    }

    /// At most one RTT sample per acknowledgement, from the first source that has one:
    /// - our SYN, if this ACK covers it and it was sent only once;
    /// - the newest segment this ACK delivered, timed exactly, unless it was retransmitted
    ///   (Karn) and the echoed timestamp does not show the ACK answers that retransmission, or it
    ///   had been marked lost (its original arrived after all: its send time is not what the
    ///   echo measures);
    /// - for an ACK of new data, the echoed timestamp itself (RFC 7323 4.1), which names the
    ///   transmission the peer answers whichever it was (with timestamps, an ACK of a
    ///   retransmission is timed too, and ends the backoff).
    #[inline(always)]
    fn sample_rtt(&mut self, now: Instant, seg: &TcpRepr, delivered: &Delivered, new_ack: bool) {
        if let Some((end, sent)) = self.rtt_probe {
            if seg.ack.diff(end) >= 0 {
                self.rtt_probe = None;
                self.rtt.sample(now - sent);
                return;
            }
        }
        if let Some(d) = delivered.newest {
            let unambiguous = !d.retransmitted
                || (self.opts.timestamps
                    && seg
                        .options
                        .timestamp
                        .is_some_and(|(_, ecr)| (ecr.wrapping_sub(d.ts_val) as i32) >= 0));
            if unambiguous && !d.was_lost {
                self.rtt.sample(now - d.sent_at);
                return;
            }
        }
        if new_ack {
            self.sample_from_echo(now, seg);
        }
    }

    /// An RTT sample from the timestamp `seg` echoes, if timestamps are on and the echo is one
    /// of ours (RFC 7323 4.1). Only for segments that acknowledge new data.
    pub(super) fn sample_from_echo(&mut self, now: Instant, seg: &TcpRepr) {
        if !self.opts.timestamps {
            return;
        }
        let Some((_, ecr)) = seg.options.timestamp else {
            return;
        };
        if let Some(r) = self.ts.rtt(ecr, now, self.cfg.rto_max) {
            self.rtt.sample(r);
        }
    }

    /// Closes the delivery-rate interval once it spans a smoothed round trip (1 ms at least):
    /// one comparison per acknowledgement, a division once per round trip.
    fn sample_delivery_rate(&mut self, now: Instant) {
        let acked = self.stats.bytes_acked;
        let Some((t0, b0)) = self.rate_mark else {
            self.rate_mark = Some((now, acked));
            return;
        };
        let span = now.saturating_since(t0);
        let min = self
            .rtt
            .srtt()
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_millis(1));
        if span >= min {
            self.delivery_rate = bytes_per_second(acked - b0, span.as_nanos());
            self.rate_mark = Some((now, acked));
        }
    }
}

/// `bytes` over `nanos` nanoseconds (at least 1) in bytes per second, saturating. In 64-bit
/// arithmetic whenever `bytes * 10^9` fits (any interval's delivery below 18 GB), which is one
/// division instruction instead of a call to the 128-bit division routine (~40 instructions,
/// and under many connections an interval closes on nearly every acknowledgement).
#[inline]
fn bytes_per_second(bytes: u64, nanos: u64) -> u64 {
    let nanos = nanos.max(1);
    match bytes.checked_mul(1_000_000_000) {
        Some(scaled) => scaled / nanos,
        None => {
            u64::try_from(u128::from(bytes) * 1_000_000_000 / u128::from(nanos)).unwrap_or(u64::MAX)
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::bytes_per_second;

    /// The 64-bit path and the 128-bit fallback agree with exact 128-bit arithmetic, across
    /// the boundary where `bytes * 10^9` stops fitting in 64 bits.
    #[test]
    fn bytes_per_second_is_exact_and_saturates() {
        let exact = |b: u64, n: u64| {
            u64::try_from(u128::from(b) * 1_000_000_000 / u128::from(n.max(1))).unwrap_or(u64::MAX)
        };
        let edge = u64::MAX / 1_000_000_000;
        for b in [
            0,
            1,
            1448,
            65_535,
            1 << 30,
            edge - 1,
            edge,
            edge + 1,
            u64::MAX / 2,
            u64::MAX,
        ] {
            for n in [0, 1, 999, 1_000_000, 123_456_789, 1 << 40, u64::MAX] {
                assert_eq!(bytes_per_second(b, n), exact(b, n), "{b} bytes in {n} ns");
            }
        }
        assert_eq!(bytes_per_second(u64::MAX, 1), u64::MAX);
    }
}
