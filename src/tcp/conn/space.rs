//! A connection's two sequence spaces and the options its handshake negotiated.
//!
//! Sending side ([`SendSpace`]): `iss` (our SYN), then the data bytes the send buffer holds from
//! `una` on, then our FIN at `buf.end()` once the application closed (`fin_queued`).
//! Invariants: `una <= nxt <= max <= high`, and `nxt == max` once synchronized: `nxt` rewinds
//! only to resend a SYN, and both go back to `una` together when a shut window opens and what was
//! sent into it is forgotten. Retransmissions are chosen from the scoreboard (which spans `una` to
//! `max`), never by rewinding `nxt`. `high` is the highest sequence number ever sent and never
//! goes back: the peer may have taken the forgotten bytes after all, and its ACK for them must
//! stay acceptable.
//! `wnd` is the peer's window (scaled) and `una + wnd` its right edge, as the newest segment the
//! peer sent says: RFC 9293 3.10.7.4's SND.WL1 rule, and any segment whose ACK advances `una`
//! (Linux's `tcp_may_update_window`; see [`SendSpace::updates_window`]). `max_wnd` is the largest
//! seen.
//!
//! Receiving side ([`RecvSpace`]): [`RecvSpace::nxt`] is the receive buffer's next expected byte,
//! plus one once the peer's FIN has been consumed in order. `promise` is the right edge promised
//! to the peer, unrounded: it never moves left (RFC 9293 3.8.6.2.2) and never passes the
//! buffer's end; each window sent is rounded from it to the scale's steps, so the edge shown may
//! pass the buffer's end by less than a step. `adv` is the furthest edge ever shown, up to which
//! the buffer takes bytes ([`RecvSpace::advertise`]).
//!
//! [`Negotiated`]: what both ends agreed on in the SYNs. Before the peer's SYN it holds what we
//! offer; [`Negotiated::agree`] settles it once.

use crate::tcp::config::Config;
use crate::tcp::recv::RecvBuffer;
use crate::tcp::rtt::RttEstimator;
use crate::tcp::send::SendBuffer;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpOptions, TcpRepr};

/// MSS assumed when the peer sends none (RFC 9293 3.7.1).
const DEFAULT_PEER_MSS: u16 = 536;
/// The least MSS we send with, whatever the peer or the path say (Linux's `tcp_min_snd_mss`):
/// a peer announcing a tiny MSS cannot make us send a flood of tiny segments.
pub(super) const MIN_SND_MSS: usize = 48;
/// Bytes the timestamp option adds to every segment (10, padded to 12).
const TIMESTAMP_OPTION_LEN: usize = 12;
const MAX_WINDOW_SHIFT: u8 = 14;
/// The largest window the largest shift can advertise (RFC 7323: 2^30 bytes, nearly).
const MAX_WINDOW: usize = (u16::MAX as usize) << MAX_WINDOW_SHIFT;

#[derive(Debug)]
pub(super) struct SendSpace {
    pub iss: SeqNumber,
    pub una: SeqNumber,
    pub nxt: SeqNumber,
    pub max: SeqNumber,
    /// The highest sequence number ever sent (see the module docs).
    pub high: SeqNumber,
    pub wnd: usize,
    pub max_wnd: usize,
    /// Sequence number of the segment the window was last taken from (SND.WL1).
    pub wl1: SeqNumber,
    pub buf: SendBuffer,
    /// The application shut down writing: a FIN follows the buffered data.
    pub fin_queued: bool,
}

impl SendSpace {
    pub fn new(iss: SeqNumber, capacity: usize) -> Self {
        SendSpace {
            iss,
            una: iss,
            nxt: iss,
            max: iss,
            high: iss,
            wnd: 0,
            max_wnd: 0,
            wl1: SeqNumber(0),
            buf: SendBuffer::new(capacity, iss + 1),
            fin_queued: false,
        }
    }

    /// Sequence space sent and not yet acknowledged (SYN and FIN count one each).
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.max - self.una
    }

    /// Our FIN is queued and not sent yet.
    #[inline]
    pub fn fin_pending(&self) -> bool {
        self.fin_queued && self.max.diff(self.buf.end()) <= 0
    }

    /// Our FIN was sent and acknowledged.
    #[inline]
    pub fn fin_acked(&self) -> bool {
        self.fin_queued && self.una.diff(self.buf.end()) > 0
    }

    /// Buffered bytes not sent yet.
    #[inline]
    pub fn unsent(&self) -> usize {
        let end = self.buf.end();
        if self.nxt.diff(end) < 0 {
            end - self.nxt
        } else {
            0
        }
    }

    /// RFC 5961 5.2: an ACK is acceptable from `una - max_wnd` to the highest sequence number
    /// sent (not just `nxt`, so ACKs of a retransmitted tail, or of bytes sent into a shut window
    /// and forgotten, count).
    #[inline]
    pub fn ack_acceptable(&self, ack: SeqNumber) -> bool {
        ack.diff(self.high) <= 0
            && ack.diff(self.una) >= -(self.max_wnd.min(i32::MAX as usize) as i32)
    }

    /// `ack` acknowledges new data: the buffer drops it and `una` moves up. Returns the data
    /// bytes freed.
    #[inline]
    pub fn ack_to(&mut self, ack: SeqNumber) -> usize {
        let freed = self.buf.ack_to(ack);
        self.una = ack;
        // the peer took bytes we had forgotten (sent into a window it had shut)
        if self.nxt.diff(ack) < 0 {
            self.nxt = ack;
        }
        if self.max.diff(ack) < 0 {
            self.max = ack;
        }
        freed
    }

    /// Whether a segment at `seq` acknowledging `ack` with window `wnd` (scaled) is newer than
    /// the one the window was taken from, so its window replaces it; ask before `una` moves.
    ///
    /// RFC 9293 3.10.7.4 takes the window from a segment with SEG.SEQ after SND.WL1, or equal to
    /// it with SEG.ACK at or after SND.WL2. That rule alone misses a retransmission: its
    /// sequence number is old but it carries the peer's newest ACK and window, and moving SND.UNA
    /// to that ACK while keeping the window of an older ACK point moves the right edge past the
    /// one the peer advertised. So, as Linux's `tcp_may_update_window`: a segment whose ACK
    /// advances `una` always brings its window (the peer's ACKs only grow, so it was sent after
    /// every segment that acknowledged less); otherwise one with `seq` after SND.WL1 does; one
    /// with `seq` equal to SND.WL1 and the same ACK (SND.WL2 equals `una` then) does only if its
    /// window grew or closed, as RFC 1122 4.2.2.16 allows a reordered older update to be taken
    /// for the newer one otherwise; one that acknowledges less than `una` never does.
    #[inline]
    pub fn updates_window(&self, seq: SeqNumber, ack: SeqNumber, wnd: usize) -> bool {
        match ack.diff(self.una) {
            d if d > 0 => true,
            0 => self.wl1.diff(seq) < 0 || (self.wl1 == seq && (wnd > self.wnd || wnd == 0)),
            // an ACK below `una` is older still: nothing to learn (RFC 9293 3.10.7.4)
            _ => false,
        }
    }

    /// Takes the window `wnd` (scaled) from the segment at `seq`.
    #[inline]
    pub fn set_window(&mut self, wnd: usize, seq: SeqNumber) {
        self.wnd = wnd;
        self.max_wnd = self.max_wnd.max(wnd);
        self.wl1 = seq;
    }

    /// The right edge of the peer's window: nothing at or beyond it may be sent (but a window
    /// probe).
    #[inline]
    pub fn right_edge(&self) -> SeqNumber {
        self.una + self.wnd
    }

    /// The sequence number for a segment without data (Linux's `tcp_acceptable_seq`): the
    /// highest sequence number sent while it lies within the peer's window, else the window's
    /// right edge. A peer finds a segment beyond its window unacceptable and drops it, ACK and
    /// all.
    #[inline]
    pub fn acceptable_seq(&self) -> SeqNumber {
        self.high.min(self.right_edge())
    }
}

/// Whether our next ACK goes out now, after the delayed-ACK timer, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum AckState {
    None,
    Delayed,
    Now,
}

#[derive(Debug)]
pub(super) struct RecvSpace {
    pub irs: SeqNumber,
    /// The furthest right edge ever advertised: what the peer may have sent up to, and what we
    /// accept.
    pub adv: SeqNumber,
    /// The right edge promised, before rounding to the window scale's steps: it never moves
    /// left, nor past the buffer's end (but to RCV.NXT); the window sent is rounded from it
    /// ([`RecvSpace::advertise`]).
    pub promise: SeqNumber,
    pub buf: RecvBuffer,
    /// Sequence number of the peer's FIN once seen, in order or not.
    pub peer_fin: Option<SeqNumber>,
    pub fin_consumed: bool,
    /// The application shut down reading: data is acknowledged and discarded.
    pub read_shut: bool,
    pub last_ack_sent: SeqNumber,
    /// A duplicate range to report first in the next SACK option (RFC 2883).
    pub dsack: Option<(SeqNumber, SeqNumber)>,
    pub ack: AckState,
    /// Full-sized segments received since our last ACK.
    pub unacked_full: u32,
    /// The receive MSS (Linux's `rcv_mss`): the largest payload received, at most the MSS we
    /// advertised; a segment this long is full-sized for the delayed ACK.
    pub mss: usize,
    /// ACKs still to send at once in quick-ACK mode.
    pub quick: u8,
    /// Interactive (Linux's ping-pong mode): the application answered data within the
    /// delayed-ACK time, so its reply is likely to carry the next ACK; quick ACKs wait.
    pub pingpong: bool,
    /// When in-order data last arrived.
    pub last_data: Option<Instant>,
    /// Receive-buffer auto-tuning ([`Config::recv_buffer_max`]): its state, boxed on the first
    /// in-order data (an idle connection pays a pointer, no heap).
    pub auto: Option<Box<AutoTune>>,
    /// Auto-tuning is off for this connection: its buffer size was set by hand.
    pub auto_off: bool,
    /// Auto-tuning waits while memory pressure clamps the buffer.
    pub auto_paused: bool,
}

/// Receive-buffer auto-tuning's state ([`RecvSpace::autotune`]).
#[derive(Debug)]
pub(super) struct AutoTune {
    /// The ceiling.
    max: usize,
    /// The current round trip: when it began, RCV.NXT and the readable bytes then.
    epoch: (Instant, SeqNumber, usize),
}

impl RecvSpace {
    pub fn new(cfg: &Config) -> Self {
        RecvSpace {
            irs: SeqNumber(0),
            adv: SeqNumber(0),
            promise: SeqNumber(0),
            buf: RecvBuffer::new(cfg.recv_buffer, SeqNumber(0), cfg.max_ooo_ranges),
            peer_fin: None,
            fin_consumed: false,
            read_shut: false,
            last_ack_sent: SeqNumber(0),
            dsack: None,
            ack: AckState::None,
            unacked_full: 0,
            mss: usize::from(cfg.mss).min(DEFAULT_PEER_MSS.into()),
            quick: 0,
            pingpong: false,
            last_data: None,
            auto: None,
            auto_off: cfg.recv_buffer_max.is_none(),
            auto_paused: false,
        }
    }

    /// Heap bytes of the auto-tuning state (its box, when on).
    pub fn auto_tune_heap_bytes(&self) -> usize {
        self.auto
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<AutoTune>())
    }

    /// Receive-buffer auto-tuning, after in-order data at `now`: once per round trip (`rtt`, the
    /// smoothed RTT; nothing before a first sample), the bytes the application took from the
    /// buffer during it are measured (bytes that arrived in order, less the growth of what is
    /// readable); if that is more than half the buffer, the buffer grows to twice it, up to the
    /// ceiling. A window-limited sender delivers about one buffer per round trip, so the buffer
    /// doubles each round trip until the sender (or the reader) is the limit. Says whether it
    /// grew.
    #[inline]
    pub fn autotune(&mut self, now: Instant, rtt: Option<Duration>, cfg: &Config) -> bool {
        if self.auto_off || self.auto_paused || self.read_shut {
            return false;
        }
        let Some(rtt) = rtt else { return false };
        let (nxt, len) = (self.buf.rcv_nxt(), self.buf.len());
        let Some(auto) = self.auto.as_deref_mut() else {
            let max = cfg.recv_buffer_max.unwrap_or(0);
            self.auto = Some(Box::new(AutoTune {
                max: max.max(cfg.recv_buffer).min(MAX_WINDOW),
                epoch: (now, nxt, len),
            }));
            return false;
        };
        let (start, nxt0, len0) = auto.epoch;
        if now.saturating_since(start) < rtt {
            return false;
        }
        auto.epoch = (now, nxt, len);
        let read = (nxt.diff(nxt0).max(0) as usize + len0).saturating_sub(len);
        let cap = self.buf.capacity();
        let target = (2 * read).min(auto.max);
        if target <= cap {
            return false;
        }
        self.buf.set_capacity(target);
        true
    }

    /// Takes the peer's initial sequence number from its SYN.
    pub fn take_syn(&mut self, syn: &TcpRepr) {
        self.irs = syn.seq;
        self.buf.reset_start(syn.seq + 1);
        self.adv = syn.seq + 1;
        self.promise = self.adv;
    }

    /// Notes `len` bytes of in-order data at `now` (`cfg` for the MSS we advertised and quick
    /// ACKs, `rtt` for the current retransmission timeout) and says whether the segment is
    /// full-sized. The first data, and data after more than an RTO without any, enters quick-ACK
    /// mode (Linux's `tcp_event_data_recv`).
    #[inline]
    pub fn on_data(&mut self, now: Instant, len: usize, cfg: &Config, rtt: &RttEstimator) -> bool {
        if len > self.mss {
            self.mss = len.min(cfg.mss.into());
        }
        // the RTO is never below its floor: most gaps are told apart without computing it
        let idle = self.last_data.is_none_or(|t| {
            let gap = now.saturating_since(t);
            gap > cfg.rto_min && gap > rtt.rto()
        });
        self.last_data = Some(now);
        if idle && cfg.quick_ack {
            let n = (self.buf.window() / (2 * self.mss.max(1))).clamp(2, 16) as u8;
            self.quick = self.quick.max(n);
        }
        len >= self.mss
    }

    /// We sent data at `now`: an answer within the delayed-ACK time `ato` of the last data
    /// received makes the connection interactive (Linux's `tcp_event_data_sent`).
    #[inline]
    pub fn on_data_sent(&mut self, now: Instant, ato: Option<Duration>) {
        if let (Some(t), Some(ato)) = (self.last_data, ato) {
            if now.saturating_since(t) < ato {
                self.pingpong = true;
            }
        }
    }

    /// Whether the next in-order data is acknowledged at once by quick-ACK mode: quick ACKs
    /// remain and the connection is not interactive (Linux's `tcp_in_quickack_mode`).
    #[inline]
    pub fn quick_ack_due(&self) -> bool {
        self.quick > 0 && !self.pingpong
    }

    /// RCV.NXT: the next byte expected, and one more once the peer's FIN was consumed.
    #[inline]
    pub fn nxt(&self) -> SeqNumber {
        self.buf.rcv_nxt() + self.fin_consumed as usize
    }

    /// Reports the part of `seq .. seq + len` below the data received as a duplicate, first in
    /// the next SACK option (D-SACK, RFC 2883); nothing if no part of it is.
    pub fn note_duplicate(&mut self, seq: SeqNumber, len: usize) {
        let end = (seq + len).min(self.buf.rcv_nxt());
        if end.diff(seq) > 0 {
            self.dsack = Some((seq, end));
        }
    }

    /// RCV.WND for the acceptability test: what we advertised, or more if the buffer allows.
    #[inline]
    pub fn acceptance_window(&self) -> usize {
        let advertised = self.adv.diff(self.nxt()).max(0) as usize;
        advertised.max(self.buf.window())
    }

    /// RFC 9293 3.10.7.4's acceptability test for a segment at `seq` of `len` (SYN and FIN
    /// counted).
    #[inline]
    pub fn acceptable(&self, seq: SeqNumber, len: usize) -> bool {
        let nxt = self.nxt();
        let wnd = self.acceptance_window();
        let in_win = |s: SeqNumber| s.diff(nxt) >= 0 && (s.diff(nxt) as usize) < wnd;
        match (len, wnd) {
            (0, 0) => seq == nxt,
            (0, _) => in_win(seq),
            (_, 0) => false,
            (_, _) => in_win(seq) || in_win(seq + (len - 1)),
        }
    }

    /// A pure ACK at `seq`, unacceptable to [`RecvSpace::acceptable`], is taken all the same if
    /// it lies before RCV.NXT but not before the ACK we last sent (Linux's `tcp_sequence`, from
    /// `rcv_wup`): a peer that sent into a window whose edge then moved left (it may, by less
    /// than a step, past our buffer's end: [`RecvSpace::advertise`]) keeps its ACKs inside the
    /// edge it knows, below the bytes we took; or the ACK was reordered behind data. Its
    /// acknowledgement is still news.
    #[inline]
    pub fn late_ack(&self, seq: SeqNumber) -> bool {
        seq.in_range(self.last_ack_sent, self.nxt())
    }

    /// The window field to send, shifted right by `shift`: receiver-side silly window avoidance
    /// (the right edge moves only by `min(buffer / 2, mss)` or to a fully free buffer) and never
    /// moving the promised right edge left, not even by the rounding to `2^shift`-byte units.
    ///
    /// A window that opens rounds down, and the rounded edge becomes the promise. A window
    /// that, rounded down, would end before the promise rounds up instead (Linux's
    /// `tcp_select_window`, RFC 7323 appendix F): the peer may then send up to `2^shift - 1`
    /// bytes past the promise, which the buffer takes ([`RecvBuffer::insert_before`]). Rounding up
    /// raises the promise only as far as the buffer's end: the next window is rounded from the
    /// promise again, not from an edge rounded past the buffer, so while a reader is stalled the
    /// edge the peer sees stays within one step of the buffer's end instead of creeping right by
    /// up to a step on every ACK. The peer may see the edge move left only from past the
    /// buffer's end, by less than a step, never to before it.
    #[inline]
    pub fn advertise(&mut self, mss: usize, shift: u8) -> u16 {
        let cap = self.buf.capacity();
        if !self.fin_consumed && self.buf.window() == cap {
            // All free (request/response: every ACK): the edge is the buffer's end, and when
            // its rounding `down` is no earlier than the promise and the furthest edge
            // advertised, `advertise_general` gives `wnd` and `down` for both (~45 instructions
            // less)
            let wnd = (cap >> shift).min(u16::MAX as usize);
            let down = self.buf.rcv_nxt() + (wnd << shift);
            if self.promise.diff(down) <= 0 && self.adv.diff(down) <= 0 {
                self.promise = down;
                self.adv = down;
                return wnd as u16;
            }
        }
        self.advertise_general(mss, shift)
    }

    /// [`RecvSpace::advertise`] for every state: what the fast path must match wherever it
    /// applies (the tests compare them on random states).
    #[inline]
    fn advertise_general(&mut self, mss: usize, shift: u8) -> u16 {
        let nxt = self.nxt();
        let free = if self.fin_consumed {
            0
        } else {
            self.buf.window()
        };
        let right = self.buf.rcv_nxt() + free;
        let threshold = (self.buf.capacity() / 2).min(mss).max(1);
        // an edge shown within the buffer is as good as promised
        let old = self.promise.max(self.adv.min(right)).max(nxt);
        let edge = if right.diff(old) >= threshold as i32 || free == self.buf.capacity() {
            right.max(old)
        } else {
            old
        };
        let mut wnd = ((edge - nxt) >> shift).min(u16::MAX as usize);
        let down = nxt + (wnd << shift);
        if down.diff(old) < 0 && wnd < u16::MAX as usize {
            // rounded down, the window would end before the edge promised: the peer would see
            // it shrink while we still take what it sent up to there, so its ACKs (sent at its
            // right edge) would fall below our RCV.NXT; round up instead
            let mask = (1usize << shift) - 1;
            wnd = ((old - nxt + mask) >> shift).min(u16::MAX as usize);
        }
        self.promise = down.max(old);
        let adv = nxt + (wnd << shift);
        if adv.diff(self.adv) > 0 {
            self.adv = adv;
        }
        wnd as u16
    }

    /// After the application freed receive space: whether the window opened enough to be worth
    /// announcing at once (receiver-side silly window avoidance, RFC 9293 3.8.6.2.2).
    pub fn window_opened(&self, mss: usize) -> bool {
        let advertised = self.adv.diff(self.nxt()).max(0) as usize;
        let possible = self.buf.window();
        let threshold = (self.buf.capacity() / 2).min(mss);
        possible >= advertised + threshold && advertised < possible / 2
    }
}

/// What the handshake settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Negotiated {
    /// Payload bytes per segment we may send with only the options every segment carries
    /// (Linux's `mss_cache`): the least of the peer's MSS, ours and the path's, at least
    /// [`MIN_SND_MSS`], less the timestamp option. SACK blocks take theirs from each segment.
    pub mss: usize,
    /// The peer's MSS clamped by the one we advertised (Linux's `mss_clamp`).
    pub mss_clamp: usize,
    pub sack: bool,
    pub timestamps: bool,
    /// The peer's window shift, applied to the windows it sends.
    pub snd_wscale: u8,
    /// Our window shift, applied to the windows we send.
    pub rcv_wscale: u8,
}

fn window_shift_for(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (buffer >> shift) > u16::MAX as usize {
        shift += 1;
    }
    shift
}

impl Negotiated {
    /// What we offer in our SYN, before the peer's is known.
    pub fn offer(cfg: &Config) -> Self {
        let mss = cfg.advertised_mss() as usize;
        Negotiated {
            mss,
            mss_clamp: mss,
            sack: false,
            timestamps: false,
            snd_wscale: 0,
            rcv_wscale: if cfg.window_scale {
                cfg.window_shift.map_or_else(
                    || window_shift_for(cfg.recv_buffer.max(cfg.recv_buffer_max.unwrap_or(0))),
                    |s| s.min(MAX_WINDOW_SHIFT),
                )
            } else {
                0
            },
        }
    }

    /// Settles the options from the peer's SYN options `o`: window scaling only if both offer
    /// it, SACK and timestamps only if both ends want them, the MSS as [`Negotiated::sync_mss`]
    /// says for a path carrying `path_mss` payload bytes.
    pub fn agree(&mut self, cfg: &Config, o: &TcpOptions, path_mss: usize) {
        let peer_mss = o.mss.unwrap_or(DEFAULT_PEER_MSS);
        self.mss_clamp = peer_mss.min(cfg.advertised_mss()) as usize;
        match (cfg.window_scale, o.window_scale) {
            (true, Some(shift)) => self.snd_wscale = shift.min(MAX_WINDOW_SHIFT),
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.sack = cfg.sack && o.sack_permitted;
        self.timestamps = cfg.timestamps && o.timestamp.is_some();
        self.sync_mss(path_mss);
    }

    /// Option bytes every synchronized segment carries: the timestamp option, or none.
    #[inline]
    pub fn options_len(&self) -> usize {
        if self.timestamps {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        }
    }

    /// Sets `mss` for a path (or black-hole search) allowing `path_mss` payload bytes without
    /// options (Linux's `tcp_sync_mss`): clamped by `mss_clamp`, floored at [`MIN_SND_MSS`],
    /// less the timestamp option.
    pub fn sync_mss(&mut self, path_mss: usize) {
        let mss = path_mss.min(self.mss_clamp).max(MIN_SND_MSS);
        self.mss = mss - self.options_len();
    }
}

#[cfg(test)]
#[path = "space_tests.rs"]
mod tests;
