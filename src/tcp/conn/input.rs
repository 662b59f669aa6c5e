//! Segment arrival (RFC 9293 3.10.7): SYN-SENT's checks, then in synchronized states the
//! sequence (with PAWS), RST (RFC 5961 3.2; none ends TIME-WAIT early, RFC 1337), SYN
//! (RFC 5961 4.2), ACK, text and FIN steps in that order.
//!
//! Invariants kept here: nothing outside the acceptable window changes any state but the ACK to
//! send (and the D-SACK report of a wholly old segment); answers to invalid segments (out of
//! window, challenge ACKs) are limited to one per [`OOW_ACK_INTERVAL`]; the peer's window is
//! taken only from segments newer than the one that last set it; an ACK acknowledges only what
//! was sent (RFC 5961 5.2), anything else is challenged.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::space::AckState;
use super::{reset_for, Connection, PayloadSink};
use crate::tcp::congestion::Controller;
use crate::tcp::event::{Error, Event};
use crate::tcp::state::State;
use crate::tcp::timers::TimerKind;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

/// Least spacing of ACKs sent in answer to out-of-window segments without data (as Linux's
/// tcp_invalid_ratelimit).
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

impl Connection {
    /// Processes one received segment, already matched to this connection by 4-tuple. `src` is
    /// the sender's IPv4 address: a connection in CLOSED answers it with RST.
    pub fn handle_segment(&mut self, now: Instant, src: Ipv4Addr, seg: &TcpRepr) {
        self.handle_segment_lending(now, src, seg, None::<&mut PayloadSink<'_>>);
    }

    /// [`Connection::handle_segment`] that lends in-order payload to `sink` in place, before
    /// any copy (zero-copy receive). Only a segment of the established fast path (header
    /// prediction) whose bytes would be the only ones readable is lent, and only once every
    /// other step of the segment is done: `sink` gets the connection (to answer with
    /// [`Connection::send`] at once) and the payload, and returns how many bytes it consumed.
    /// The bytes it leaves are stored in the receive buffer as if it had never seen them, with
    /// a [`Event::Readable`]; bytes it consumed raise no event. Every other segment's payload
    /// is copied into the receive buffer as by `handle_segment`.
    ///
    /// `sink` is generic (a [`PayloadSink`] trait object works too) so that a concrete
    /// application's code is inlined into the receive path.
    pub fn handle_segment_lending<F>(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        seg: &TcpRepr,
        sink: Option<&mut F>,
    ) where
        F: FnMut(&mut Connection, &[u8]) -> usize + ?Sized,
    {
        self.stats.segs_in += 1;
        if seg.flags.rst() {
            self.stats.rare().rst_in += 1;
        }
        match self.state {
            State::Closed => {
                if let Some(rst) = reset_for(seg) {
                    self.push_rst(SocketAddrV4::new(src, seg.src_port), rst);
                }
            }
            State::SynSent => self.on_syn_sent(now, seg),
            _ => {
                self.on_synchronized(now, seg, sink);
                self.peer_alive(now);
            }
        }
    }

    /// Records the peer's initial sequence number (and timestamp) and negotiates options from
    /// its SYN.
    pub(super) fn take_peer_syn(&mut self, now: Instant, syn: &TcpRepr) {
        self.rcv.take_syn(syn);
        if let Some((tsval, _)) = syn.options.timestamp {
            self.ts.on_syn(tsval, now);
        }
        self.opts.agree(&self.cfg, &syn.options, self.path.mss());
        self.cc = Controller::new(self.cfg.congestion, self.opts.mss, self.cfg.initial_window);
    }

    fn on_syn_sent(&mut self, now: Instant, seg: &TcpRepr) {
        let f = seg.flags;
        if f.ack() && (seg.ack.diff(self.snd.iss) <= 0 || seg.ack.diff(self.snd.max) > 0) {
            if !f.rst() {
                if let Some(rst) = reset_for(seg) {
                    self.push_rst(self.remote, rst);
                }
            }
            return;
        }
        if f.rst() {
            if f.ack() {
                self.fail(Error::Refused);
            }
            return;
        }
        if !f.syn() {
            return;
        }
        self.take_peer_syn(now, seg);
        if f.ack() {
            self.snd.una = seg.ack;
            // the window field of a SYN is never scaled (RFC 7323 2.2)
            self.snd.wnd = seg.window as usize;
            self.snd.max_wnd = self.snd.wnd;
            self.snd.wl1 = seg.seq;
            match self.rtt_probe.take() {
                Some((_, sent)) => self.rtt.sample(now - sent),
                None => self.sample_from_echo(now, seg),
            }
            self.rtt.on_handshake_done();
            self.timers.clear(TimerKind::Rto);
            self.reset_retries();
            self.state = State::Established;
            self.rcv.ack = AckState::Now;
            self.push_event(Event::Connected);
            self.peer_alive(now);
            if self.snd.fin_queued {
                self.state = State::FinWait1;
            }
            if !seg.payload.is_empty() {
                self.accept_payload(now, seg.seq + 1, seg.payload);
            }
            // other controls are processed as in a synchronized state (RFC 9293 3.10.7.3)
            if f.fin() {
                self.rcv.peer_fin = Some(seg.seq + 1 + seg.payload.len());
                self.try_consume_fin(now);
            }
        } else {
            // simultaneous open: answer with SYN-ACK from our original ISS
            self.state = State::SynReceived;
            self.snd.wnd = seg.window as usize;
            self.snd.wl1 = seg.seq;
            self.snd.nxt = self.snd.iss;
        }
    }

    /// Answers an unacceptable segment with an ACK. Without payload it may be the other half of
    /// an ACK loop (two ends each finding the other's ACKs out of window), so such answers are
    /// limited to one per [`OOW_ACK_INTERVAL`]; data always gets its duplicate ACK.
    fn ack_out_of_window(&mut self, now: Instant, pure: bool) {
        if pure {
            if self
                .last_oow_ack
                .is_some_and(|t| now - t < OOW_ACK_INTERVAL)
            {
                return;
            }
            self.last_oow_ack = Some(now);
        }
        self.rcv.ack = AckState::Now;
    }

    /// RFC 5961's challenge ACK (for an in-window RST, a SYN in a synchronized state, an ACK
    /// outside the acceptable range), under the same per-connection limit as other answers to
    /// invalid segments (section 7; Linux's `tcp_invalid_ratelimit`): a flood of forged
    /// segments gets one ACK per [`OOW_ACK_INTERVAL`], not one each.
    pub(super) fn challenge_ack(&mut self, now: Instant) {
        if self
            .last_oow_ack
            .is_some_and(|t| now - t < OOW_ACK_INTERVAL)
        {
            self.stats.rare().challenge_acks_limited += 1;
            return;
        }
        self.last_oow_ack = Some(now);
        self.stats.rare().challenge_acks += 1;
        self.rcv.ack = AckState::Now;
    }

    /// Header prediction (Van Jacobson's, as Linux's `tcp_rcv_established` fast path): in
    /// ESTABLISHED, a segment with only ACK (and PSH) set, exactly at RCV.NXT, whose payload the
    /// window takes whole and whose timestamp passes PAWS, is acceptable and passes the RST, SYN
    /// and handshake steps by construction; only the ACK, timestamp and text steps remain,
    /// taken in the order of the full path below and with the same functions. Returns false,
    /// having changed nothing, for any other segment.
    #[inline]
    fn on_predicted<F>(&mut self, now: Instant, seg: &TcpRepr, sink: Option<&mut F>) -> bool
    where
        F: FnMut(&mut Connection, &[u8]) -> usize + ?Sized,
    {
        if self.state != State::Established
            || !seg.flags.only_ack()
            || seg.seq != self.rcv.nxt()
            || seg.payload.len() > self.rcv.acceptance_window()
        {
            return false;
        }
        let tsval = match seg.options.timestamp {
            Some((v, _)) if self.opts.timestamps => {
                if self.ts.paws_rejects(v, now) {
                    return false;
                }
                Some(v)
            }
            _ => None,
        };
        let wnd = (seg.window as usize) << self.opts.snd_wscale;
        if self.acks_whole_flight(seg) {
            self.ack_whole_flight(now, seg, wnd, true);
        } else if !self.process_ack(now, seg, wnd) {
            return true;
        }
        if let Some(v) = tsval {
            self.ts.on_accepted(v, seg.seq, self.rcv.last_ack_sent, now);
        }
        if !seg.payload.is_empty() {
            match sink {
                Some(sink) if !self.rcv.read_shut && self.rcv.buf.can_lend(seg.payload.len()) => {
                    self.accept_lent(now, seg.payload, sink);
                }
                _ => self.accept_payload(now, seg.seq, seg.payload),
            }
        }
        self.try_consume_fin(now);
        true
    }

    fn on_synchronized<F>(&mut self, now: Instant, seg: &TcpRepr, sink: Option<&mut F>)
    where
        F: FnMut(&mut Connection, &[u8]) -> usize + ?Sized,
    {
        if self.on_predicted(now, seg, sink) {
            return;
        }
        let mut seg = *seg;
        // a retransmitted SYN (or SYN-ACK) from the peer: its SYN was processed already
        let old_syn = seg.flags.syn() && seg.seq == self.rcv.irs;
        // the window field of a SYN is never scaled (RFC 7323 2.2), even once we strip the SYN
        let wnd = (seg.window as usize) << if old_syn { 0 } else { self.opts.snd_wscale };
        if old_syn {
            seg.flags = TcpFlags(seg.flags.0 & !TcpFlags::SYN.0);
            seg.seq += 1;
            if self.state == State::SynReceived && !seg.flags.ack() {
                // our SYN-ACK may have been lost: send it again
                self.snd.nxt = self.snd.iss;
                return;
            }
            if self.state != State::SynReceived {
                self.rcv.ack = AckState::Now;
            }
        }

        // first: sequence number (with the PAWS check of RFC 7323 when timestamps are on)
        if self.opts.timestamps && !seg.flags.rst() {
            if let Some((tsval, _)) = seg.options.timestamp {
                if self.ts.paws_rejects(tsval, now) {
                    self.stats.rare().dup_segs_in += 1;
                    self.stats.rare().paws_drops += 1;
                    // a delayed duplicate of data we hold is D-SACKed, as Linux's
                    // tcp_send_dupack does for a PAWS drop
                    self.rcv.note_duplicate(seg.seq, seg.payload.len());
                    self.ack_out_of_window(now, seg.payload.is_empty());
                    return;
                }
            }
        }
        let len = seg.seg_len();
        let late_ack = |s: &Self| len == 0 && seg.flags.only_ack() && s.rcv.late_ack(seg.seq);
        if !self.rcv.acceptable(seg.seq, len) && !late_ack(self) {
            // zero window: an in-sequence segment still carries a valid ACK (RFC 9293 3.10.7.4)
            let zero_window_ack =
                len > 0 && seg.seq == self.rcv.nxt() && self.rcv.acceptance_window() == 0;
            if !zero_window_ack {
                if !seg.flags.rst() {
                    self.stats.rare().dup_segs_in += 1;
                    if !seg.payload.is_empty()
                        && (seg.seq + seg.payload.len()).diff(self.rcv.nxt()) <= 0
                    {
                        // wholly old data: a spurious retransmission, reported by D-SACK
                        self.rcv.dsack = Some((seg.seq, seg.seq + seg.payload.len()));
                    }
                    self.ack_out_of_window(now, seg.payload.is_empty());
                    if self.state == State::TimeWait && seg.flags.fin() {
                        self.timers
                            .set(TimerKind::TimeWait, now + self.cfg.msl.saturating_mul(2));
                    }
                }
                return;
            }
            seg.payload = &[];
            seg.flags = TcpFlags(seg.flags.0 & !TcpFlags::FIN.0);
            self.rcv.ack = AckState::Now;
        }

        // second: RST (RFC 5961 3.2: only an exact match resets; in-window gets a challenge)
        if seg.flags.rst() {
            if seg.seq != self.rcv.nxt() {
                self.challenge_ack(now);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => self.enter_closed(),
                State::SynReceived => self.fail(Error::Refused),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(Error::Reset)
                }
                // TIME-WAIT lasts its 2 MSL: an RST does not end it (RFC 1337)
                State::TimeWait if self.cfg.rfc1337 => {}
                _ => self.enter_closed(),
            }
            return;
        }

        // fourth: SYN in a synchronized state (RFC 5961 4.2)
        if seg.flags.syn() {
            self.challenge_ack(now);
            return;
        }

        // fifth: ACK
        if !seg.flags.ack() {
            return;
        }
        let handshake_done = self.state == State::SynReceived;
        if handshake_done {
            if seg.ack.diff(self.snd.una) > 0 && seg.ack.diff(self.snd.max) <= 0 {
                self.state = State::Established;
                self.snd.wnd = wnd;
                self.snd.max_wnd = wnd;
                self.snd.wl1 = seg.seq;
                self.reset_retries();
                self.push_event(Event::Connected);
                if self.snd.fin_queued {
                    self.state = State::FinWait1;
                }
            } else {
                if let Some(rst) = reset_for(&seg) {
                    self.push_rst(self.remote, rst);
                }
                return;
            }
        }
        if !self.process_ack(now, &seg, wnd) {
            return;
        }
        if handshake_done {
            // after the ACK's RTT sample, if any
            self.rtt.on_handshake_done();
        }
        // only now, past the RST, SYN and ACK checks, may the segment's timestamp be recorded
        // (RFC 7323 4.3): a blind in-window segment must not move TS.Recent
        if self.opts.timestamps {
            if let Some((tsval, _)) = seg.options.timestamp {
                self.ts
                    .on_accepted(tsval, seg.seq, self.rcv.last_ack_sent, now);
            }
        }
        match self.state {
            State::FinWait1 if self.snd.fin_acked() => self.state = State::FinWait2,
            State::Closing if self.snd.fin_acked() => self.enter_time_wait(now),
            State::LastAck if self.snd.fin_acked() => {
                self.enter_closed();
                return;
            }
            _ => {}
        }

        // seventh: segment text
        if self.unreadable_data(&seg) {
            self.abort_on_data(&seg);
            return;
        }
        if !seg.payload.is_empty() {
            if self.state.can_receive() {
                self.accept_payload(now, seg.seq, seg.payload);
            } else {
                // data after the peer's FIN is a protocol error we simply ignore
                self.rcv.ack = AckState::Now;
            }
        }

        // eighth: FIN
        if seg.flags.fin() {
            let fin_seq = seg.seq + seg.payload.len();
            if fin_seq.diff(self.rcv.buf.rcv_nxt() + self.rcv.buf.window()) <= 0 {
                self.rcv.peer_fin = Some(fin_seq);
            }
            self.rcv.ack = AckState::Now;
        }
        self.try_consume_fin(now);
    }

    /// New data for a connection whose application will read no more: closed (orphaned) or
    /// shut down for reading, once our FIN is queued (FIN-WAIT-1 or FIN-WAIT-2). It cannot be
    /// delivered, and acknowledging it would tell the peer it was (RFC 1122 4.2.2.13: such a
    /// close MUST send RST; Linux's `tcp_rcv_state_process` on `RCV_SHUTDOWN`).
    fn unreadable_data(&self, seg: &TcpRepr) -> bool {
        matches!(self.state, State::FinWait1 | State::FinWait2)
            && (self.orphaned || self.rcv.read_shut)
            && !seg.payload.is_empty()
            && (seg.seq + seg.payload.len()).diff(self.rcv.nxt()) > 0
    }

    /// Aborts on data nobody will read (see `unreadable_data`): the RST answers the segment
    /// (at its acknowledgment number, as Linux's `tcp_v4_send_reset`) and the connection ends
    /// with `Reset`, counted as Linux's `TCPAbortOnData`.
    #[cold]
    fn abort_on_data(&mut self, seg: &TcpRepr) {
        self.stats.rare().abort_on_data += 1;
        if let Some(rst) = reset_for(seg) {
            self.push_rst(self.remote, rst);
        }
        self.fail(Error::Reset);
    }

    fn accept_payload(&mut self, now: Instant, seq: SeqNumber, payload: &[u8]) {
        self.stats.bytes_in += payload.len() as u64;
        // out of order and held already (in part): reported by D-SACK, the duplicate first and
        // then the block holding it (RFC 2883 4, second case)
        let dup = if seq.diff(self.rcv.buf.rcv_nxt()) > 0 {
            self.rcv
                .buf
                .out_of_order()
                .overlap(seq, seq + payload.len())
        } else {
            None
        };
        let r = self.rcv.buf.insert_before(seq, payload, self.rcv.adv);
        self.stats.bytes_received += r.advanced as u64;
        self.stats.recv_buf_copied += r.stored as u64;
        if r.out_of_order {
            self.stats.rare().ooo_segs_in += 1;
            if dup.is_some() {
                self.stats.rare().dup_segs_in += 1;
                self.rcv.dsack = dup;
            }
            self.rcv.ack = AckState::Now;
            return;
        }
        if r.advanced == 0 {
            self.stats.rare().dup_segs_in += 1;
            self.rcv.note_duplicate(seq, payload.len());
            self.rcv.ack = AckState::Now;
            return;
        }
        let hole = r.advanced > payload.len() || self.rcv.buf.has_out_of_order();
        self.in_order_arrived(now, payload.len(), hole);
        if self.rcv.read_shut {
            let n = self.rcv.buf.len();
            self.rcv.buf.consume(n);
        } else {
            self.push_event(Event::Readable);
        }
    }

    /// [`Connection::accept_payload`] for `payload` at RCV.NXT, which
    /// [`RecvBuffer::can_lend`] allows, lent to `sink` first: the bytes count as received and
    /// read, `sink` answers on the connection, and only what it leaves is stored. Everything
    /// else is done after it, as for a copied segment, so a sink that takes nothing leaves the
    /// connection exactly as `accept_payload` would (the same ACK, window and events).
    ///
    /// [`RecvBuffer::can_lend`]: crate::tcp::recv::RecvBuffer::can_lend
    #[inline(always)]
    fn accept_lent<F>(&mut self, now: Instant, payload: &[u8], sink: &mut F)
    where
        F: FnMut(&mut Connection, &[u8]) -> usize + ?Sized,
    {
        let len = payload.len();
        self.stats.bytes_in += len as u64;
        self.stats.bytes_received += len as u64;
        self.rcv.buf.lend(len);
        let taken = sink(self, payload).min(len);
        // (a sink that shut reading down leaves nothing to keep)
        let left = if self.rcv.read_shut {
            &[][..]
        } else {
            &payload[taken..]
        };
        if !left.is_empty() {
            self.rcv.buf.unread(left);
            self.stats.recv_buf_copied += left.len() as u64;
        }
        self.in_order_arrived(now, len, false);
        if !left.is_empty() {
            self.push_event(Event::Readable);
        }
    }

    /// The ACK that `len` new in-order bytes call for (`hole`: they joined bytes held out of
    /// order), and the receive window's bookkeeping.
    #[inline]
    fn in_order_arrived(&mut self, now: Instant, len: usize, hole: bool) {
        let full = self.rcv.on_data(now, len, &self.cfg, &self.rtt);
        if self.rcv.autotune(now, self.rtt.srtt(), &self.cfg) {
            self.stats.rare().recv_buffer_grown += 1;
        }
        if hole {
            // filled (part of) a hole: acknowledge at once (RFC 5681 4.2)
            self.rcv.ack = AckState::Now;
            return;
        }
        if full {
            self.rcv.unacked_full += 1;
        }
        match self.cfg.delayed_ack {
            Some(d) if self.rcv.unacked_full < 2 && !self.rcv.quick_ack_due() => {
                if self.rcv.ack < AckState::Delayed {
                    self.rcv.ack = AckState::Delayed;
                    self.timers.set(TimerKind::DelayedAck, now + d);
                }
            }
            Some(_) if self.rcv.unacked_full < 2 && self.rcv.ack < AckState::Now => {
                self.stats.quick_acks += 1;
                self.rcv.ack = AckState::Now;
            }
            _ => self.rcv.ack = AckState::Now,
        }
    }

    /// Takes the peer's FIN once every byte before it is in. Nearly every segment finds none
    /// (or one consumed already): that check is inlined.
    #[inline(always)]
    fn try_consume_fin(&mut self, now: Instant) {
        if let Some(fin) = self.rcv.peer_fin {
            if !self.rcv.fin_consumed && fin == self.rcv.buf.rcv_nxt() {
                self.consume_fin(now);
            }
        }
    }

    #[inline(never)]
    fn consume_fin(&mut self, now: Instant) {
        self.rcv.fin_consumed = true;
        self.rcv.ack = AckState::Now;
        self.push_event(Event::PeerClosed);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.snd.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}
