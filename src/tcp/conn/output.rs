//! Segment output: which segment goes next and its header, chosen in this order: RSTs owed,
//! then by state the SYN (or SYN-ACK), a due tail loss probe, the first retransmission, new data
//! and our FIN, a due ACK, a keep-alive probe.
//!
//! New data goes out as the peer's window, congestion control (with NewReno's inflation and
//! limited transmit), Nagle's algorithm, the cork and sender-side silly window avoidance allow. Every
//! segment sent while synchronized carries the ACK, window, timestamps and SACK blocks
//! ([`Connection::fill_ack`]), which also settles any pending ACK. Call
//! [`Connection::poll_transmit`] until it returns `None`; it arms the persist timer when data
//! waits on a zero window with nothing else to wake the connection.

use std::net::SocketAddrV4;

use super::space::AckState;
use super::Connection;
use crate::tcp::scoreboard::{LossCause, Segment};
use crate::tcp::state::State;
use crate::tcp::timers::TimerKind;
use crate::time::{Duration, Instant};
use crate::wire::tcp::MAX_SACK_BLOCKS;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr};

/// Least interval of the persist (zero-window probe) timer, as Linux's `TCP_RTO_MIN`; the
/// longest is the configured maximum RTO (`TCP_RTO_MAX`).
const PERSIST_MIN: Duration = Duration::from_millis(200);
/// Longest wait before data that silly-window avoidance holds back from a small non-zero window
/// goes anyway (RFC 9293 3.8.6.2.1's override timeout, 0.1 to 1 s).
const OVERRIDE_MAX: Duration = Duration::from_secs(1);

/// How much of a segment to resend the peer's window takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Whole,
    /// Its payload up to the right edge, here.
    Head(SeqNumber),
    /// Nothing: it starts at or beyond the right edge.
    Nothing,
}

/// A segment to send: the header (its payload left empty) and how many payload bytes follow.
/// Write it into the outgoing frame with [`Transmit::write_segment`], which copies the payload
/// straight from the connection's send buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub repr: TcpRepr<'static>,
    pub payload_len: usize,
}

impl Transmit {
    /// Bytes of the whole TCP segment: header (with options) and payload.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.repr.header_len() + self.payload_len
    }

    /// Writes the whole TCP segment into `buf`, which must be exactly [`Transmit::segment_len`]
    /// bytes: the header, the payload copied from `conn` (the connection whose
    /// [`Connection::poll_transmit`] gave this segment, with nothing polled from it since), and
    /// the checksum over the IPv4 pseudo-header if `checksum` (else the field is left zero).
    /// A segment without payload, like an RST answering a stray segment, needs no connection.
    #[inline]
    pub fn write_segment(&self, conn: Option<&Connection>, buf: &mut [u8], checksum: bool) {
        debug_assert_eq!(buf.len(), self.segment_len());
        let mut seg = TcpPacket::new_unchecked(buf);
        self.repr.emit_header(&mut seg);
        if self.payload_len > 0 {
            debug_assert!(conn.is_some(), "a payload needs its connection");
            if let Some(c) = conn {
                c.snd.buf.copy_out(self.repr.seq, seg.payload_mut());
            }
        }
        if checksum {
            // reading the header back costs fewer instructions than summing its fields as they
            // are written (emit_header_with_sum: +38 a segment, callgrind, ping-pong)
            seg.fill_checksum(*self.src.ip(), *self.dst.ip());
        }
    }
}

impl Connection {
    #[inline]
    fn ts_val(&self, now: Instant) -> u32 {
        self.ts.val(now)
    }

    pub(super) fn bare(&self, seq: SeqNumber, flags: TcpFlags) -> TcpRepr<'static> {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: SeqNumber(0),
            flags,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        }
    }

    fn transmit(&self, repr: TcpRepr<'static>, payload_len: usize) -> Transmit {
        debug_assert!(
            20 + repr.header_len() + payload_len <= usize::from(self.path.pmtu),
            "a packet over the path MTU"
        );
        Transmit {
            src: self.local,
            dst: self.remote,
            repr,
            payload_len,
        }
    }

    fn syn_options(&self, now: Instant, reply_to_peer: bool) -> TcpOptions {
        let mut o = TcpOptions {
            mss: Some(self.cfg.advertised_mss()),
            ..TcpOptions::default()
        };
        let offer_ws = self.cfg.window_scale
            && (!reply_to_peer || self.opts.snd_wscale > 0 || self.opts.rcv_wscale > 0);
        if offer_ws {
            o.window_scale = Some(self.opts.rcv_wscale);
        }
        o.sack_permitted = if reply_to_peer {
            self.opts.sack
        } else {
            self.cfg.sack
        };
        let ts = if reply_to_peer {
            self.opts.timestamps
        } else {
            self.cfg.timestamps
        };
        if ts {
            o.timestamp = Some((
                self.ts_val(now),
                if reply_to_peer { self.ts.recent() } else { 0 },
            ));
        }
        o
    }

    /// The next segment to send, if any. Call until it returns `None`; every call may change
    /// [`Connection::poll_timeout`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        self.expire_path(now);
        // Every state change is followed by a poll here (the host polls touched connections),
        // so this is where an orphaned FIN-WAIT-2 gets its limit, whichever came first.
        if self.orphaned
            && self.state == State::FinWait2
            && !self.timers.is_armed(TimerKind::TimeWait)
        {
            if let Some(t) = self.cfg.fin_timeout {
                self.timers.set(TimerKind::TimeWait, now + t);
            }
        }
        if let Some((dst, repr)) = self.replies.pop_front() {
            return Some(Transmit {
                src: self.local,
                dst,
                repr,
                payload_len: 0,
            });
        }
        let t = match self.state {
            State::Closed => None,
            State::SynSent | State::SynReceived if self.snd.nxt == self.snd.iss => {
                Some(self.emit_syn(now))
            }
            State::SynSent => None,
            State::SynReceived => self.emit_ack_if_due(now),
            State::TimeWait => self.emit_ack_if_due(now),
            _ => {
                // returned at once, not moved through the chain below
                if let Some(t) = self.next_data(now) {
                    return Some(t);
                }
                self.emit_ack_if_due(now)
                    .or_else(|| self.emit_keepalive(now))
            }
        };
        if t.is_none() {
            self.arm_persist(now);
        }
        t
    }

    /// Whether [`Connection::poll_transmit`] at `now` would certainly return `None` and change
    /// nothing: a conservative test (false when unsure) that costs a fraction of that call, so
    /// a caller that just took a segment can tell the connection is drained without polling it
    /// once more. Covers ESTABLISHED and CLOSE-WAIT with no RST queued, no path MTU expiring, no
    /// tail loss probe or keep-alive due, nothing marked lost, nothing sendable and no ACK
    /// owed; then no persist timer is armed either (it waits for sendable data).
    #[inline]
    pub fn output_drained(&self, now: Instant) -> bool {
        matches!(self.state, State::Established | State::CloseWait)
            && self.rcv.ack != AckState::Now
            // (all sent, the usual case, needs no count of what is unsent)
            && (self.snd.nxt == self.snd.buf.end() || self.sendable() == 0)
            && !self.snd.fin_pending()
            && self.sb.lost_bytes() == 0
            && !self.recovery.probe_due()
            && !self.keepalive.probe_due()
            && self.replies.is_empty()
            && self.path.expires.is_none_or(|t| now < t)
    }

    fn emit_syn(&mut self, now: Instant) -> Transmit {
        let passive = self.state == State::SynReceived;
        let mut repr = self.bare(self.snd.iss, TcpFlags::SYN);
        repr.options = self.syn_options(now, passive);
        repr.window = self.rcv.buf.window().min(u16::MAX as usize) as u16;
        if passive {
            repr.flags |= TcpFlags::ACK;
            repr.ack = self.rcv.nxt();
            self.rcv.adv = self.rcv.nxt() + repr.window as usize;
            self.rcv.promise = self.rcv.adv;
            self.rcv.last_ack_sent = repr.ack;
            self.rcv.ack = AckState::None;
        }
        let first = self.snd.max == self.snd.iss;
        self.snd.nxt = self.snd.iss + 1;
        self.snd.max = self.snd.max.max(self.snd.nxt);
        self.snd.high = self.snd.high.max(self.snd.max);
        if first {
            self.rtt_probe = Some((self.snd.nxt, now));
        } else {
            self.stats.rare().retrans_segs += 1;
        }
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        self.stats.segs_out += 1;
        self.transmit(repr, 0)
    }

    /// Header fields every synchronized segment carries: ACK, window, timestamps, SACK blocks.
    /// Whatever ACK was pending goes with it.
    /// `ts_val` is our TSval at the moment of sending (`ts_val(now)`, computed once by callers
    /// that also record it on the scoreboard).
    #[inline(always)]
    fn fill_ack(&mut self, ts_val: u32, repr: &mut TcpRepr<'static>) {
        repr.flags |= TcpFlags::ACK;
        repr.ack = self.rcv.nxt();
        repr.window = self
            .rcv
            .advertise(self.cfg.mss as usize, self.opts.rcv_wscale);
        if self.opts.timestamps {
            repr.options.timestamp = Some((ts_val, self.ts.recent()));
        }
        // (`bare` leaves no blocks: the call only when there is one to report)
        if self.opts.sack && (self.rcv.dsack.is_some() || self.rcv.buf.has_out_of_order()) {
            self.fill_sack(&mut repr.options);
        }
        self.rcv.last_ack_sent = repr.ack;
        if self.rcv.ack != AckState::None {
            // an ACK of new data: one fewer to send at once
            self.rcv.quick = self.rcv.quick.saturating_sub(1);
        }
        self.rcv.ack = AckState::None;
        self.timers.clear(TimerKind::DelayedAck);
        self.rcv.unacked_full = 0;
        self.stats.segs_out += 1;
    }

    /// A data segment (new or resent) goes out: congestion window validation learns whether the
    /// flight fills cwnd (as Linux's `tcp_cwnd_validate`, nothing is learnt from an opportunity
    /// that sent nothing: the transmission before it already saw the flight that blocks it).
    /// Called as the segment's [`Transmit`] is made, so it is returned without being held.
    #[inline]
    fn data_sent(&mut self, now: Instant) {
        self.cc.on_send(
            now,
            self.sb.pipe(),
            self.opts.mss,
            self.snd.una,
            self.snd.max,
        );
    }

    /// A due tail loss probe, else the first retransmission, else new data.
    #[inline]
    fn next_data(&mut self, now: Instant) -> Option<Transmit> {
        if self.recovery.take_probe_due() {
            if let Some(t) = self.emit_tail_probe(now) {
                return Some(t);
            }
        }
        if let Some(t) = self.emit_retransmission(now) {
            return Some(t);
        }
        self.emit_new_data::<false>(now)
    }

    /// Resends the first segment marked lost, if congestion control and the peer's window
    /// allow it. A segment larger than the MSS of the moment (the path MTU fell) is split
    /// first; one the window ends inside is trimmed to it (as Linux does), so a window smaller
    /// than the segment still gets the retransmission going; one that starts at or beyond the
    /// right edge waits, unless the window is shut and the timer asked for a probe.
    fn emit_retransmission(&mut self, now: Instant) -> Option<Transmit> {
        let (i, mut seg) = self.sb.next_lost()?;
        let mss = self.current_mss();
        if seg.payload_len() > mss {
            self.sb.split(i, seg.start + mss);
            seg = self.sb.get(i);
        }
        let probe = self.force_probe && self.snd.wnd == 0 && self.sb.pipe() == 0;
        let fit = if probe { Fit::Whole } else { self.fit(&seg) };
        let len = match fit {
            Fit::Whole => seg.len(),
            Fit::Head(at) => at - seg.start,
            Fit::Nothing => return None,
        };
        let room =
            self.recovery
                .may_retransmit(len, &self.cc, &self.sb, self.opts.mss, self.opts.sack);
        if !room {
            return None;
        }
        let end = match fit {
            Fit::Head(at) => {
                self.sb.split(i, at);
                at
            }
            _ => seg.end,
        };
        let ts_val = self.ts_val(now);
        self.recovery.on_retransmit(seg.start, end, ts_val);
        if probe {
            self.force_probe = false;
            self.count_window_probe();
        }
        match seg.lost {
            Some(LossCause::Rto) => self.stats.rare().retrans_rto += 1,
            Some(LossCause::Fast) => self.stats.rare().retrans_fast += 1,
            Some(LossCause::PathMtu) => self.stats.rare().retrans_mtu += 1,
            Some(LossCause::Window) | None => {}
        }
        let t = self.resend(now, i);
        if probe {
            self.after_window_probe(now);
        }
        Some(t)
    }

    /// How much of `seg` the peer's window takes. Its FIN needs no room, as for new data.
    fn fit(&self, seg: &Segment) -> Fit {
        let edge = self.snd.right_edge();
        if (seg.start + seg.payload_len()).diff(edge) <= 0 {
            Fit::Whole
        } else if seg.start.diff(edge) < 0 {
            Fit::Head(edge)
        } else {
            Fit::Nothing
        }
    }

    /// A zero-window probe went out.
    fn count_window_probe(&mut self) {
        self.stats.rare().zero_window_probes += 1;
        self.persist_backoff = self.persist_backoff.saturating_add(1);
    }

    /// After a zero-window probe, the persist timer alone watches the shut window, as Linux's
    /// probe timer (`tcp_send_probe0`): the next probe after the backed-off interval, neither
    /// the RTO (a probe the peer drops is no congestion loss) nor a tail loss probe (which
    /// would resend the probe byte at every RTO instead of backing off).
    fn after_window_probe(&mut self, now: Instant) {
        self.timers.clear(TimerKind::Rto);
        self.timers.clear(TimerKind::TailLossProbe);
        let d = self.persist_interval();
        self.timers.set(TimerKind::Persist, now + d);
    }

    /// The persist timer's interval facing a shut window: the RTO (at least [`PERSIST_MIN`])
    /// doubled for each probe sent since the window last opened, at most the maximum RTO
    /// (Linux's `tcp_probe0_when`).
    fn persist_interval(&self) -> Duration {
        let base = self.rtt.base_rto().max(PERSIST_MIN);
        base.saturating_mul(1 << self.persist_backoff.min(16))
            .min(self.cfg.rto_max.max(PERSIST_MIN))
    }

    /// Sends segment `i` of the scoreboard again.
    fn resend(&mut self, now: Instant, i: usize) -> Transmit {
        let seg = self.sb.get(i);
        let payload_len = seg.payload_len();
        let mut repr = self.bare(seg.start, TcpFlags::NONE);
        if seg.fin {
            repr.flags |= TcpFlags::FIN;
        }
        if payload_len > 0 && seg.end == self.snd.max {
            repr.flags |= TcpFlags::PSH;
        }
        let ts_val = self.ts_val(now);
        self.fill_ack(ts_val, &mut repr);
        self.sb.on_retransmit(i, now, ts_val);
        self.stats.rare().retrans_segs += 1;
        self.stats.rare().bytes_retrans += payload_len as u64;
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        self.data_sent(now);
        self.transmit(repr, payload_len)
    }

    /// The tail loss probe (RFC 8985 7.3): one new segment if the window allows, else the last
    /// segment again.
    fn emit_tail_probe(&mut self, now: Instant) -> Option<Transmit> {
        if self.sb.is_empty() || self.recovery.in_recovery() {
            return None;
        }
        self.stats.rare().tlp_probes += 1;
        if let Some(t) = self.emit_new_data::<true>(now) {
            self.recovery.on_probe_sent(self.snd.max, false);
            self.restart_rto(now);
            return Some(t);
        }
        let mut i = self.sb.last_index()?;
        let last = self.sb.get(i);
        if last.sacked {
            return None;
        }
        let mss = self.current_mss();
        if last.payload_len() > mss {
            // the probe repeats the last MSS of data (and the FIN), as Linux's does
            self.sb.split(i, last.start + (last.payload_len() - mss));
            i += 1;
        }
        let last = self.sb.get(i);
        match self.fit(&last) {
            Fit::Whole => {}
            Fit::Head(at) => self.sb.split(i, at),
            Fit::Nothing => return None,
        }
        self.stats.rare().retrans_tlp += 1;
        let t = self.resend(now, i);
        self.recovery.on_probe_sent(self.snd.max, true);
        self.restart_rto(now);
        Some(t)
    }

    /// Unsent bytes that may go now: none of a partial segment while corked (never the case once
    /// our FIN is queued).
    #[inline]
    fn sendable(&self) -> usize {
        let unsent = self.snd.unsent();
        if self.corked && unsent < self.opts.mss {
            0
        } else {
            unsent
        }
    }

    /// Sends new data (and our FIN) as the windows, Nagle and sender-side silly window avoidance
    /// allow. A tail loss probe (`TAIL_PROBE`) may exceed cwnd by one segment. (A constant
    /// parameter: the usual call, for no probe, is compiled without the probe's branches.)
    fn emit_new_data<const TAIL_PROBE: bool>(&mut self, now: Instant) -> Option<Transmit> {
        let tail_probe = TAIL_PROBE;
        let fin_pending = self.snd.fin_pending();
        let avail = self.sendable();
        if avail == 0 && !fin_pending {
            return None;
        }
        let mss = self.current_mss();
        let data_end = self.snd.buf.end();
        if avail > 0 && self.sb.is_empty() {
            // the restart window after idle (RFC 5681 4.1)
            let rtt = &self.rtt;
            self.cc
                .before_send_from_idle(now, self.cfg.rto_min, || rtt.rto());
        }
        let outstanding = self.snd.nxt - self.snd.una;
        let wnd_room = self.snd.wnd.saturating_sub(outstanding);
        let mut usable = wnd_room.min(self.recovery.cwnd_room(
            &self.cc,
            &self.sb,
            self.opts.mss,
            self.opts.sack,
        ));
        if tail_probe {
            usable = wnd_room.min(mss);
        }
        // the persist timer fired with nothing in flight: into a shut window one byte goes (a
        // zero-window probe), into a small one as much as it takes, whatever silly-window
        // avoidance says (its override timeout, RFC 9293 3.8.6.2.1)
        let probing = self.force_probe && self.sb.is_empty() && avail > 0;
        if probing && self.snd.wnd == 0 {
            usable = 1;
        }
        let len = avail.min(mss).min(usable);
        let send_data = len > 0
            && (len == mss
                || probing
                || tail_probe
                || (len == avail && (self.cfg.nodelay || outstanding == 0 || fin_pending))
                || (self.snd.max_wnd > 0 && len >= self.snd.max_wnd / 2));
        let len = if send_data { len } else { 0 };
        let fin =
            fin_pending && !tail_probe && self.snd.nxt + len == data_end && (len > 0 || avail == 0);
        if len == 0 && !fin {
            return None;
        }
        let start = self.snd.nxt;
        let mut repr = self.bare(start, TcpFlags::NONE);
        if len > 0 && (len == avail || probing) {
            repr.flags |= TcpFlags::PSH;
        }
        if fin {
            repr.flags |= TcpFlags::FIN;
        }
        let ts_val = self.ts_val(now);
        self.fill_ack(ts_val, &mut repr);
        self.snd.nxt += len + fin as usize;
        self.snd.max = self.snd.nxt;
        self.snd.high = self.snd.high.max(self.snd.max);
        self.sb.push(start, self.snd.nxt, fin, now, ts_val);
        if probing && len > 0 {
            self.force_probe = false;
            if self.snd.wnd == 0 {
                self.count_window_probe();
            } else {
                self.stats.rare().small_window_sends += 1;
            }
        }
        self.stats.bytes_out += len as u64;
        if len > 0 {
            self.rcv.on_data_sent(now, self.cfg.delayed_ack);
        }
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        if !tail_probe {
            self.schedule_tail_probe(now);
        }
        if probing && len > 0 && self.snd.wnd == 0 {
            self.after_window_probe(now);
        }
        self.data_sent(now);
        Some(self.transmit(repr, len))
    }

    /// A keep-alive probe: an ACK carrying `snd_una - 1`, which the peer must answer with an ACK
    /// (RFC 9293 3.8.4).
    fn emit_keepalive(&mut self, now: Instant) -> Option<Transmit> {
        if !self.keepalive.take_probe() {
            return None;
        }
        let mut repr = self.bare(self.snd.una - 1, TcpFlags::NONE);
        self.fill_ack(self.ts_val(now), &mut repr);
        self.stats.rare().keepalive_probes += 1;
        Some(self.transmit(repr, 0))
    }

    fn emit_ack_if_due(&mut self, now: Instant) -> Option<Transmit> {
        if self.rcv.ack != AckState::Now {
            return None;
        }
        // the highest sequence number sent, as the peer may already hold everything up to it
        // (and would find a segment starting below its RCV.NXT unacceptable), but never beyond
        // its window's right edge, which it would find unacceptable too
        let mut repr = self.bare(self.snd.acceptable_seq(), TcpFlags::NONE);
        self.fill_ack(self.ts_val(now), &mut repr);
        self.stats.acks_out += 1;
        Some(self.transmit(repr, 0))
    }

    /// SACK blocks for an outgoing ACK (RFC 2018 4): a pending D-SACK first (RFC 2883), then
    /// the block holding the most recent out-of-order segment, then the others by recency;
    /// three fit beside the timestamp option, four without it.
    fn fill_sack(&mut self, o: &mut TcpOptions) {
        let room = if self.opts.timestamps {
            3
        } else {
            MAX_SACK_BLOCKS
        };
        let mut n = 0;
        if let Some(d) = self.rcv.dsack.take() {
            o.sack_blocks[0] = d;
            n = 1;
            self.stats.rare().dsack_out += 1;
        }
        if self.rcv.buf.has_out_of_order() {
            for r in self.rcv.buf.out_of_order().recent_ranges() {
                if n == room {
                    break;
                }
                o.sack_blocks[n] = r;
                n += 1;
            }
        }
        o.sack_len = n as u8;
        if n > 0 {
            self.stats.rare().sack_blocks_out += n as u64;
        }
    }

    /// Starts the persist timer when data waits on the peer's window with nothing in flight, so
    /// no ACK will come to wake us: the window is shut (a zero-window probe follows, backing
    /// off), or smaller than silly-window avoidance sends into (the override timeout sends
    /// what fits, after at most [`OVERRIDE_MAX`]). One lost window update must not hang the
    /// connection.
    fn arm_persist(&mut self, now: Instant) {
        let waiting = self.state.is_synchronized() && self.sendable() > 0 && self.sb.is_empty();
        if waiting
            && !self.timers.is_armed(TimerKind::Persist)
            && !self.timers.is_armed(TimerKind::Rto)
            && !self.force_probe
        {
            let d = if self.snd.wnd == 0 {
                self.persist_interval()
            } else {
                self.rtt.base_rto().max(PERSIST_MIN).min(OVERRIDE_MAX)
            };
            self.timers.set(TimerKind::Persist, now + d);
        }
    }

    /// Copies the payload of `t` (from [`Connection::poll_transmit`]) into `dst`, which must be
    /// exactly `t.payload_len` bytes. [`Transmit::write_segment`] does this as part of writing
    /// the whole segment.
    #[inline]
    pub fn write_payload(&self, t: &Transmit, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), t.payload_len);
        if t.payload_len > 0 {
            self.snd.buf.copy_out(t.repr.seq, dst);
        }
    }

    /// SACK blocks we would report (receiver side): the block holding the most recently
    /// received out-of-order segment, then the others by recency (RFC 2018 4).
    pub fn sack_blocks(&self) -> ([(SeqNumber, SeqNumber); MAX_SACK_BLOCKS], usize) {
        let mut out = [(SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS];
        let mut n = 0;
        for r in self
            .rcv
            .buf
            .out_of_order()
            .recent_ranges()
            .take(MAX_SACK_BLOCKS)
        {
            out[n] = r;
            n += 1;
        }
        (out, n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{established, from_peer, ms, IRS, ISS, PEER, US};
    use super::*;
    use crate::tcp::config::Config;
    use crate::wire::ChecksumCaps;

    /// Writes `t` as a whole segment and parses it back, checksum verified.
    fn written(c: &Connection, t: &Transmit) -> (TcpRepr<'static>, Vec<u8>) {
        let mut buf = vec![0u8; t.segment_len()];
        t.write_segment(Some(c), &mut buf, true);
        let p = TcpPacket::new_checked(&buf[..]).expect("valid segment");
        let r = TcpRepr::parse(&p, *t.src.ip(), *t.dst.ip(), &ChecksumCaps::default())
            .expect("checksum and options");
        (TcpRepr { payload: &[], ..r }, r.payload.to_vec())
    }

    #[test]
    fn write_segment_writes_header_payload_and_checksum() {
        let cfg = Config {
            nodelay: true,
            ..Config::default()
        };
        let mut c = established(cfg, true);
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        c.send(&data).unwrap();
        let mut got = Vec::new();
        while let Some(t) = c.poll_transmit(ms(100)) {
            let (repr, payload) = written(&c, &t);
            assert_eq!(repr, t.repr);
            assert_eq!(payload.len(), t.payload_len);
            got.extend(payload);
        }
        assert!(got == data, "{} bytes sent of {}", got.len(), data.len());
        // without payload no connection is needed; without checksum the field stays zero
        let t = Transmit {
            src: US,
            dst: PEER,
            repr: crate::tcp::reset_for(&from_peer(IRS, ISS, TcpFlags::ACK)).unwrap(),
            payload_len: 0,
        };
        let mut buf = vec![0xffu8; t.segment_len()];
        t.write_segment(None, &mut buf, false);
        assert_eq!(TcpPacket::new_checked(&buf[..]).unwrap().checksum(), 0);
        t.write_segment(None, &mut buf, true);
        assert!(TcpPacket::new_checked(&buf[..])
            .unwrap()
            .verify_checksum(*US.ip(), *PEER.ip()));
    }
}

#[cfg(test)]
#[path = "output_cork_tests.rs"]
mod cork_tests;
