//! One TCP connection as a sans-IO state machine (RFC 9293 section 3.10).
//!
//! Sequence space on the sending side: `iss` (the SYN), then the data bytes held by the send
//! buffer from `snd_una` on, then our FIN at `send_buf.end()` once the application closed.
//! Invariants: `snd_una <= snd_nxt == snd_max` once synchronized (`snd_nxt` only rewinds to
//! resend a SYN). Every segment sent is recorded in a [`Scoreboard`] with its transmit time;
//! retransmissions are chosen from it, never by rewinding `snd_nxt`.
//!
//! Loss detection and recovery, in the order they act:
//! - RACK (RFC 8985): a segment sent before one that has since been delivered (cumulatively or by
//!   SACK) is lost once it is older than that RTT plus a reordering window; the reordering timer
//!   looks again when the window runs out. With SACK this is the primary detector, backed by the
//!   duplicate threshold of RFC 6675.
//! - Without SACK, three duplicate ACKs trigger fast retransmit and NewReno recovery (RFC 6582),
//!   with limited transmit (RFC 3042) on the first two.
//! - The tail loss probe (RFC 8985 section 7) resends the last segment (or sends new data) two
//!   SRTTs after the last transmission, so a lost tail is repaired without waiting for the RTO.
//! - The RTO (RFC 6298) marks everything unacknowledged lost and restarts from one segment.
//!
//! Fast recovery sends retransmissions first, then new data, while RFC 6675's `pipe` is below
//! `cwnd`; congestion control reduces once per recovery episode.
//!
//! On the receiving side `rcv_nxt` is the receive buffer's next expected byte, plus one once the
//! peer's FIN has been consumed in order.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::config::{Config, KeepAlive};
use super::congestion::{CongestionControl, Controller};
use super::event::{Error, Event};
use super::recv::RecvBuffer;
use super::rtt::RttEstimator;
use super::scoreboard::{Delivered, LossCause, Rack, Scoreboard};
use super::send::SendBuffer;
use super::state::State;
use super::stats::{ConnStats, TcpInfo};
use super::timers::{TimerKind, TimerSet, Timers};
use crate::time::{Duration, Instant};
use crate::wire::tcp::MAX_SACK_BLOCKS;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// MSS assumed when the peer sends none (RFC 9293 3.7.1).
const DEFAULT_PEER_MSS: u16 = 536;
/// Bytes the timestamp option adds to every segment (10, padded to 12).
const TIMESTAMP_OPTION_LEN: usize = 12;
const MAX_WINDOW_SHIFT: u8 = 14;
/// Persist (zero-window probe) timer bounds.
const PERSIST_MIN: Duration = Duration::from_millis(200);
const PERSIST_MAX: Duration = Duration::from_secs(60);
/// Least spacing of ACKs sent in answer to out-of-window segments without data (as Linux's
/// tcp_invalid_ratelimit).
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);
/// Added to the tail loss probe timeout when a single segment is in flight: the peer may hold
/// its ACK that long (RFC 8985 WCDelAckT).
const TLP_DELACK_ALLOWANCE: Duration = Duration::from_millis(200);
/// Floor of the tail loss probe timeout (as Linux).
const TLP_MIN: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recovery {
    /// snd_max when it began: it ends once snd_una passes this.
    point: SeqNumber,
    /// Fast recovery (cwnd frozen) rather than after an RTO (slow start).
    fast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TailProbe {
    /// snd_max after the probe: the episode ends when this is acknowledged.
    end: SeqNumber,
    retransmission: bool,
    dsacked: bool,
}

/// A segment to send: the header (its payload left empty) and how many payload bytes follow.
/// Copy the payload with [`Connection::write_payload`] straight into the outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub repr: TcpRepr<'static>,
    pub payload_len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AckState {
    None,
    Delayed,
    Now,
}

#[derive(Debug)]
pub struct Connection {
    cfg: Config,
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Opened from LISTEN: an RST in SYN-RECEIVED just drops the embryo instead of an error.
    passive: bool,

    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_max: SeqNumber,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    snd_wscale: u8,
    send_buf: SendBuffer,
    fin_queued: bool,

    irs: SeqNumber,
    rcv_wscale: u8,
    /// Right edge of the window last advertised; it never moves left.
    rcv_adv: SeqNumber,
    recv_buf: RecvBuffer,
    /// Sequence number of the peer's FIN once seen, in order or not.
    peer_fin: Option<SeqNumber>,
    fin_consumed: bool,
    read_shut: bool,

    /// Payload bytes per segment we may send (peer's MSS, less options we always carry).
    mss: usize,
    sack_ok: bool,
    ts_ok: bool,
    ts_recent: u32,
    last_ack_sent: SeqNumber,

    ack: AckState,
    /// Full-sized segments received since our last ACK.
    unacked_full: u32,

    persist_backoff: u32,
    /// The application has given the connection up (closed, not just shut down for writing):
    /// nobody will read, and FIN-WAIT-2 is bounded by `cfg.fin_timeout`.
    orphaned: bool,
    timers: Timers,
    force_probe: bool,
    last_oow_ack: Option<Instant>,

    rtt: RttEstimator,
    /// The SYN's transmission time, for the handshake's RTT sample.
    rtt_probe: Option<(SeqNumber, Instant)>,
    retries: u32,
    /// When the current series of retransmission timeouts began.
    retrans_since: Option<Instant>,
    dupacks: u32,
    cc: Controller,
    sb: Scoreboard,
    rack: Rack,
    recovery: Option<Recovery>,
    /// NewReno's `recover` (RFC 6582): no new fast retransmit until snd_una passes it.
    recover: SeqNumber,
    /// Retransmit the first lost segment at once, whatever cwnd says (RFC 6675 4.2).
    rexmit_head: bool,
    tlp_fire: bool,
    tlp: Option<TailProbe>,
    /// A duplicate range to report first in the next SACK option (RFC 2883).
    dsack: Option<(SeqNumber, SeqNumber)>,
    keepalive: Option<KeepAlive>,
    keepalive_probes_out: u32,
    keepalive_send: bool,

    /// RSTs to send, each with its destination: in CLOSED that is the sender of the segment
    /// answered, not `remote`.
    replies: VecDeque<(SocketAddrV4, TcpRepr<'static>)>,
    events: VecDeque<Event>,
    readable_queued: bool,
    writable_queued: bool,
    error: Option<Error>,
    /// An error worth reporting that did not end the connection (an ICMP report).
    soft_error: Option<Error>,
    stats: ConnStats,
}

/// The RST answering `seg` when no connection wants it (RFC 9293 3.10.7.1), or `None` if `seg`
/// is itself an RST.
pub fn reset_for(seg: &TcpRepr) -> Option<TcpRepr<'static>> {
    if seg.flags.rst() {
        return None;
    }
    let (seq, ack, flags) = if seg.flags.ack() {
        (seg.ack, SeqNumber(0), TcpFlags::RST)
    } else {
        (
            SeqNumber(0),
            seg.seq + seg.seg_len(),
            TcpFlags::RST | TcpFlags::ACK,
        )
    };
    Some(TcpRepr {
        src_port: seg.dst_port,
        dst_port: seg.src_port,
        seq,
        ack,
        flags,
        window: 0,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    })
}

fn window_shift_for(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (buffer >> shift) > u16::MAX as usize {
        shift += 1;
    }
    shift
}

impl Connection {
    fn new(
        cfg: Config,
        state: State,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
    ) -> Self {
        let mss = cfg.mss as usize;
        Connection {
            cfg,
            state,
            local,
            remote,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: iss,
            snd_wscale: 0,
            send_buf: SendBuffer::new(cfg.send_buffer, iss + 1),
            fin_queued: false,
            irs: SeqNumber(0),
            rcv_wscale: if cfg.window_scale {
                window_shift_for(cfg.recv_buffer)
            } else {
                0
            },
            rcv_adv: SeqNumber(0),
            recv_buf: RecvBuffer::new(cfg.recv_buffer, SeqNumber(0), cfg.max_ooo_ranges),
            peer_fin: None,
            fin_consumed: false,
            read_shut: false,
            mss,
            sack_ok: false,
            ts_ok: false,
            ts_recent: 0,
            last_ack_sent: SeqNumber(0),
            ack: AckState::None,
            unacked_full: 0,
            persist_backoff: 0,
            orphaned: false,
            timers: Timers::default(),
            force_probe: false,
            last_oow_ack: None,
            rtt: RttEstimator::new(
                cfg.rto_initial,
                cfg.rto_min,
                cfg.rto_max,
                Duration::from_millis(1),
            ),
            rtt_probe: None,
            retries: 0,
            retrans_since: None,
            dupacks: 0,
            cc: Controller::new(cfg.congestion, mss, cfg.initial_window),
            sb: Scoreboard::new(),
            rack: Rack {
                reo_wnd_mult: 1,
                ..Rack::default()
            },
            recovery: None,
            recover: iss,
            rexmit_head: false,
            tlp_fire: false,
            tlp: None,
            dsack: None,
            keepalive: cfg.keepalive,
            keepalive_probes_out: 0,
            keepalive_send: false,
            replies: VecDeque::new(),
            events: VecDeque::new(),
            readable_queued: false,
            writable_queued: false,
            error: None,
            soft_error: None,
            stats: ConnStats::default(),
        }
    }

    /// Active open: the connection starts in SYN-SENT and its SYN is ready to transmit.
    pub fn connect(cfg: Config, local: SocketAddrV4, remote: SocketAddrV4, iss: SeqNumber) -> Self {
        Connection::new(cfg, State::SynSent, local, remote, iss)
    }

    /// Passive open from a SYN that a listener accepted: the result is in SYN-RECEIVED with its
    /// SYN-ACK ready to transmit. Listening itself (answering other segments to the port, the
    /// backlog) is the host's.
    pub fn accept(
        cfg: Config,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        _now: Instant,
        syn: &TcpRepr,
    ) -> Self {
        let mut c = Connection::new(cfg, State::SynReceived, local, remote, iss);
        c.passive = true;
        c.take_peer_syn(syn);
        // the SYN-ACK's window field is never scaled; the peer's SYN window neither
        c.snd_wnd = syn.window as usize;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        c
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local(&self) -> SocketAddrV4 {
        self.local
    }

    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn iss(&self) -> SeqNumber {
        self.iss
    }

    pub fn irs(&self) -> SeqNumber {
        self.irs
    }

    pub fn snd_una(&self) -> SeqNumber {
        self.snd_una
    }

    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd_nxt
    }

    /// The peer's window in bytes, scaled.
    pub fn snd_wnd(&self) -> usize {
        self.snd_wnd
    }

    pub fn rcv_nxt(&self) -> SeqNumber {
        self.recv_buf.rcv_nxt() + self.fin_consumed as usize
    }

    /// The window we can offer now, in bytes.
    pub fn rcv_wnd(&self) -> usize {
        self.recv_buf.window()
    }

    /// Payload bytes per segment we send.
    pub fn mss(&self) -> usize {
        self.mss
    }

    pub fn window_shifts(&self) -> (u8, u8) {
        (self.snd_wscale, self.rcv_wscale)
    }

    pub fn sack_enabled(&self) -> bool {
        self.sack_ok
    }

    pub fn timestamps_enabled(&self) -> bool {
        self.ts_ok
    }

    pub fn cwnd(&self) -> usize {
        self.cc.cwnd()
    }

    pub fn ssthresh(&self) -> usize {
        self.cc.ssthresh()
    }

    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Bytes sent and not yet acknowledged (SYN and FIN count one each).
    pub fn bytes_in_flight(&self) -> usize {
        self.snd_max - self.snd_una
    }

    /// Bytes queued in the send buffer, sent or not.
    pub fn send_queue(&self) -> usize {
        self.send_buf.len()
    }

    pub fn send_capacity(&self) -> usize {
        self.send_buf.capacity()
    }

    pub fn recv_capacity(&self) -> usize {
        self.recv_buf.capacity()
    }

    /// Changes the send-buffer size; never below what is queued.
    pub fn set_send_capacity(&mut self, bytes: usize) {
        self.send_buf.set_capacity(bytes);
    }

    /// Changes the receive-buffer size. The window scale was fixed at the handshake, so a larger
    /// buffer helps only up to 65535 << shift.
    pub fn set_recv_capacity(&mut self, bytes: usize) {
        self.recv_buf.set_capacity(bytes);
    }

    pub fn set_nodelay(&mut self, nodelay: bool) {
        self.cfg.nodelay = nodelay;
    }

    pub fn nodelay(&self) -> bool {
        self.cfg.nodelay
    }

    /// True once the handshake has completed (even if closing since).
    pub fn is_established(&self) -> bool {
        self.state.is_synchronized()
    }

    /// True when the connection holds no more state worth keeping.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && self.replies.is_empty()
    }

    /// The pending error, cleared by reading it (SO_ERROR): a fatal one, else a soft one.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take().or_else(|| self.soft_error.take())
    }

    pub fn error(&self) -> Option<Error> {
        self.error
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        match ev {
            Event::Readable => self.readable_queued = false,
            Event::Writable => self.writable_queued = false,
            _ => {}
        }
        Some(ev)
    }

    fn push_event(&mut self, ev: Event) {
        match ev {
            Event::Readable if self.readable_queued => return,
            Event::Writable if self.writable_queued => return,
            Event::Readable => self.readable_queued = true,
            Event::Writable => self.writable_queued = true,
            _ => {}
        }
        self.events.push_back(ev);
    }

    // ---------------------------------------------------------------- application calls

    /// Queues bytes for sending; returns how many fit (0 when the buffer is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.fin_queued {
            return Err(Error::BrokenPipe);
        }
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed => return Err(Error::NotConnected),
            _ => return Err(Error::BrokenPipe),
        }
        let n = self.send_buf.write(data);
        if n == 0 && !data.is_empty() {
            return Err(Error::WouldBlock);
        }
        Ok(n)
    }

    /// Bytes that can be queued now.
    pub fn send_space(&self) -> usize {
        if self.state.can_send() && !self.fin_queued {
            self.send_buf.free()
        } else {
            0
        }
    }

    /// Readable bytes.
    pub fn recv_queue(&self) -> usize {
        self.recv_buf.len()
    }

    /// Reads and consumes bytes. `Ok(0)` means end of stream (the peer's FIN, or our shutdown of
    /// reading); `Err(WouldBlock)` means nothing yet.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.recv_with(buf, false)
    }

    /// Like [`Connection::recv`] without consuming.
    pub fn peek(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.recv_with(buf, true)
    }

    fn recv_with(&mut self, buf: &mut [u8], peek: bool) -> Result<usize, Error> {
        if self.recv_buf.is_empty() || buf.is_empty() {
            return self.recv_empty_result(buf.is_empty());
        }
        let n = if peek {
            self.recv_buf.peek(buf)
        } else {
            self.recv_buf.read(buf)
        };
        if !peek {
            self.after_read();
        }
        Ok(n)
    }

    /// The readable bytes as up to two slices, without copying; follow with [`Connection::consume`].
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.recv_buf.readable()
    }

    /// Marks `n` readable bytes consumed (after [`Connection::readable`]).
    pub fn consume(&mut self, n: usize) -> usize {
        let n = self.recv_buf.consume(n);
        self.after_read();
        n
    }

    fn recv_empty_result(&self, zero_len_buf: bool) -> Result<usize, Error> {
        if !self.recv_buf.is_empty() && zero_len_buf {
            return Ok(0);
        }
        if self.fin_consumed || self.read_shut {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::Closed => Err(Error::NotConnected),
            _ => Err(Error::WouldBlock),
        }
    }

    /// True when a read would return end of stream.
    pub fn at_eof(&self) -> bool {
        self.recv_buf.is_empty() && (self.fin_consumed || self.read_shut)
    }

    /// After the application freed receive space: announce a window that opened enough to matter
    /// (receiver-side silly window avoidance, RFC 9293 3.8.6.2.2).
    fn after_read(&mut self) {
        if !self.state.can_receive() {
            return;
        }
        let advertised = self.rcv_adv.diff(self.rcv_nxt()).max(0) as usize;
        let possible = self.recv_buf.window();
        let threshold = (self.recv_buf.capacity() / 2).min(self.cfg.mss as usize);
        if possible >= advertised + threshold && advertised < possible / 2 {
            self.ack = AckState::Now;
        }
    }

    /// Shuts down writing: queues a FIN after the buffered data.
    pub fn close(&mut self) {
        match self.state {
            State::SynSent => self.enter_closed(),
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                if self.state == State::Established {
                    self.state = State::FinWait1;
                }
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.state = State::LastAck;
            }
            _ => {}
        }
    }

    /// The application gives the connection up (close(2) rather than shutdown(2)): from now on
    /// FIN-WAIT-2 lasts at most [`Config::fin_timeout`], as Linux's `tcp_fin_timeout` bounds
    /// orphaned sockets, so a peer that never sends its FIN cannot hold the connection forever.
    /// A connection only shut down for writing stays in FIN-WAIT-2 as long as the peer likes.
    pub fn orphan(&mut self) {
        self.orphaned = true;
    }

    /// Shuts down reading: reads return end of stream; data still arriving is acknowledged and
    /// discarded.
    pub fn shutdown_read(&mut self) {
        self.read_shut = true;
        let n = self.recv_buf.len();
        self.recv_buf.consume(n);
    }

    pub fn is_write_shut(&self) -> bool {
        self.fin_queued
    }

    /// Whether `seg`, a SYN for this connection's 4-tuple while it is in TIME-WAIT, may start a
    /// new incarnation: its timestamp is newer than the last one seen (RFC 6191), or, without
    /// timestamps, its sequence number lies beyond everything received (RFC 1122 4.2.2.13).
    pub fn accepts_new_syn(&self, seg: &TcpRepr) -> bool {
        if self.state != State::TimeWait || !seg.flags.syn() || seg.flags.ack() || seg.flags.rst() {
            return false;
        }
        match (self.ts_ok, seg.options.timestamp) {
            (true, Some((tsval, _))) => (tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => seg.seq.diff(self.rcv_nxt()) > 0,
        }
    }

    /// Aborts: sends RST if the peer knows of us and drops all state.
    pub fn abort(&mut self) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            let rst = self.bare(self.snd_max, TcpFlags::RST);
            self.push_rst(self.remote, rst);
        }
        self.enter_closed();
    }

    // ---------------------------------------------------------------- timers

    /// The deadline of every timer: mirror changed ones into a timer wheel after each visit.
    pub fn timers(&self) -> &Timers {
        &self.timers
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
    /// cleared by a kind handled before it) is skipped.
    pub fn handle_timers(&mut self, now: Instant, fired: TimerSet) {
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
                self.ack = AckState::Now;
            }
            TimerKind::TailLossProbe => {
                self.timers.clear(kind);
                if self.tlp.is_none() && self.recovery.is_none() && !self.sb.is_empty() {
                    self.tlp_fire = true;
                }
            }
            TimerKind::Rto => {
                // the probe goes first: it is scheduled no later than the RTO (RFC 8985 7.2), and
                // when both are due it takes the RTO's place until the next poll_transmit sends
                // it (which re-arms the RTO); if no probe can be sent, the RTO, still due, fires
                // on the next call
                if self.timers.is_due(TimerKind::TailLossProbe, now) {
                    self.on_timer(now, TimerKind::TailLossProbe);
                }
                if !self.tlp_fire {
                    self.timers.clear(kind);
                    self.on_rto(now);
                }
            }
            TimerKind::Reorder => {
                self.timers.clear(kind);
                self.detect_losses(now);
            }
            TimerKind::Persist => {
                self.timers.clear(kind);
                self.force_probe = true;
                self.persist_backoff = self.persist_backoff.saturating_add(1);
            }
            TimerKind::KeepAlive => {
                self.timers.clear(kind);
                self.on_keepalive_timer(now);
            }
        }
    }

    fn on_rto(&mut self, now: Instant) {
        let handshake = matches!(self.state, State::SynSent | State::SynReceived);
        if self.snd_una == self.snd_max && !handshake {
            return;
        }
        self.retries += 1;
        let first = *self.retrans_since.get_or_insert(now);
        let give_up = if handshake {
            self.retries > self.cfg.syn_retries
        } else {
            self.retries > self.cfg.max_retries || now - first >= self.cfg.retrans_timeout
        };
        if give_up {
            self.fail(Error::TimedOut);
            return;
        }
        self.stats.rto_events += 1;
        self.rtt.on_timeout();
        self.rtt_probe = None;
        if handshake {
            self.snd_nxt = self.iss;
        } else {
            self.cc.on_rto(now, self.sb.pipe());
            // a receiver may renege on SACKed data: after repeated timeouts, resend it too
            self.sb.mark_all_lost(self.retries > 1);
            self.recovery = Some(Recovery {
                point: self.snd_max,
                fast: false,
            });
            self.recover = self.snd_max;
            self.rexmit_head = true;
            self.dupacks = 0;
            self.tlp = None;
            self.timers.clear(TimerKind::TailLossProbe);
            self.tlp_fire = false;
            self.timers.clear(TimerKind::Reorder);
            if self.snd_wnd == 0 {
                // the window is still shut: the retransmission goes out as a window probe
                self.force_probe = true;
            }
        }
        self.timers.set(TimerKind::Rto, now + self.rtt.rto());
    }

    /// The peer answered: the series of timeouts, and its give-up clock, start again.
    fn reset_retries(&mut self) {
        self.retries = 0;
        self.retrans_since = None;
    }

    fn restart_rto(&mut self, now: Instant) {
        self.timers.set(TimerKind::Rto, now + self.rtt.rto());
    }

    // ---------------------------------------------------------------- input

    /// Processes one received segment, already matched to this connection by 4-tuple. `src` is
    /// the sender's IPv4 address: a connection in CLOSED answers it with RST.
    pub fn handle_segment(&mut self, now: Instant, src: Ipv4Addr, seg: &TcpRepr) {
        self.stats.segs_in += 1;
        if seg.flags.rst() {
            self.stats.rst_in += 1;
        }
        match self.state {
            State::Closed => {
                if let Some(rst) = reset_for(seg) {
                    self.push_rst(SocketAddrV4::new(src, seg.src_port), rst);
                }
            }
            State::SynSent => self.on_syn_sent(now, seg),
            _ => {
                self.on_synchronized(now, seg);
                self.peer_alive(now);
            }
        }
    }

    fn push_rst(&mut self, to: SocketAddrV4, rst: TcpRepr<'static>) {
        self.stats.rst_out += 1;
        self.replies.push_back((to, rst));
    }

    /// Records the peer's initial sequence number and negotiates options from its SYN.
    fn take_peer_syn(&mut self, syn: &TcpRepr) {
        self.irs = syn.seq;
        self.recv_buf.reset_start(syn.seq + 1);
        self.rcv_adv = syn.seq + 1;
        let o = &syn.options;
        let peer_mss = o.mss.unwrap_or(DEFAULT_PEER_MSS).max(64);
        match (self.cfg.window_scale, o.window_scale) {
            (true, Some(shift)) => self.snd_wscale = shift.min(MAX_WINDOW_SHIFT),
            _ => {
                self.snd_wscale = 0;
                self.rcv_wscale = 0;
            }
        }
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        self.ts_ok = self.cfg.timestamps && o.timestamp.is_some();
        if let Some((tsval, _)) = o.timestamp {
            self.ts_recent = tsval;
        }
        let mut mss = peer_mss.min(self.cfg.mss) as usize;
        if self.ts_ok {
            mss -= TIMESTAMP_OPTION_LEN;
        }
        self.mss = mss;
        self.cc = Controller::new(self.cfg.congestion, mss, self.cfg.initial_window);
    }

    fn on_syn_sent(&mut self, now: Instant, seg: &TcpRepr) {
        let f = seg.flags;
        if f.ack() && (seg.ack.diff(self.iss) <= 0 || seg.ack.diff(self.snd_max) > 0) {
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
        self.take_peer_syn(seg);
        if f.ack() {
            self.snd_una = seg.ack;
            // the window field of a SYN is never scaled (RFC 7323 2.2)
            self.snd_wnd = seg.window as usize;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.on_handshake_rtt(now);
            self.timers.clear(TimerKind::Rto);
            self.reset_retries();
            self.state = State::Established;
            self.ack = AckState::Now;
            self.push_event(Event::Connected);
            self.peer_alive(now);
            if self.fin_queued {
                self.state = State::FinWait1;
            }
            if !seg.payload.is_empty() {
                self.accept_payload(now, seg.seq + 1, seg.payload, false);
            }
            // other controls are processed as in a synchronized state (RFC 9293 3.10.7.3)
            if f.fin() {
                self.peer_fin = Some(seg.seq + 1 + seg.payload.len());
                self.try_consume_fin(now);
            }
        } else {
            // simultaneous open: answer with SYN-ACK from our original ISS
            self.state = State::SynReceived;
            self.snd_wnd = seg.window as usize;
            self.snd_wl1 = seg.seq;
            self.snd_nxt = self.iss;
        }
    }

    fn on_handshake_rtt(&mut self, now: Instant) {
        if let Some((_, sent)) = self.rtt_probe.take() {
            self.rtt.sample(now - sent);
        }
    }

    /// RCV.WND for the acceptability test: what we advertised, or more if the buffer allows.
    fn acceptance_window(&self) -> usize {
        let advertised = self.rcv_adv.diff(self.rcv_nxt()).max(0) as usize;
        advertised.max(self.recv_buf.window())
    }

    fn acceptable(&self, seq: SeqNumber, len: usize) -> bool {
        let nxt = self.rcv_nxt();
        let wnd = self.acceptance_window();
        let in_win = |s: SeqNumber| s.diff(nxt) >= 0 && (s.diff(nxt) as usize) < wnd;
        match (len, wnd) {
            (0, 0) => seq == nxt,
            (0, _) => in_win(seq),
            (_, 0) => false,
            (_, _) => in_win(seq) || in_win(seq + (len - 1)),
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
        self.ack = AckState::Now;
    }

    /// RFC 5961's challenge ACK (for an in-window RST, a SYN in a synchronized state, an ACK
    /// outside the acceptable range), under the same per-connection limit as other answers to
    /// invalid segments (section 7; Linux's `tcp_invalid_ratelimit`): a flood of forged
    /// segments gets one ACK per [`OOW_ACK_INTERVAL`], not one each.
    fn challenge_ack(&mut self, now: Instant) {
        if self
            .last_oow_ack
            .is_some_and(|t| now - t < OOW_ACK_INTERVAL)
        {
            self.stats.challenge_acks_limited += 1;
            return;
        }
        self.last_oow_ack = Some(now);
        self.stats.challenge_acks += 1;
        self.ack = AckState::Now;
    }

    fn on_synchronized(&mut self, now: Instant, seg: &TcpRepr) {
        let mut seg = *seg;
        // a retransmitted SYN (or SYN-ACK) from the peer: its SYN was processed already
        let old_syn = seg.flags.syn() && seg.seq == self.irs;
        // the window field of a SYN is never scaled (RFC 7323 2.2), even once we strip the SYN
        let wnd = (seg.window as usize) << if old_syn { 0 } else { self.snd_wscale };
        if old_syn {
            seg.flags = TcpFlags(seg.flags.0 & !TcpFlags::SYN.0);
            seg.seq += 1;
            if self.state == State::SynReceived && !seg.flags.ack() {
                // our SYN-ACK may have been lost: send it again
                self.snd_nxt = self.iss;
                return;
            }
            if self.state != State::SynReceived {
                self.ack = AckState::Now;
            }
        }

        // first: sequence number (with the PAWS check of RFC 7323 when timestamps are on)
        if self.ts_ok && !seg.flags.rst() {
            if let Some((tsval, _)) = seg.options.timestamp {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.stats.dup_segs_in += 1;
                    self.ack_out_of_window(now, seg.payload.is_empty());
                    return;
                }
            }
        }
        let len = seg.seg_len();
        if !self.acceptable(seg.seq, len) {
            // zero window: an in-sequence segment still carries a valid ACK (RFC 9293 3.10.7.4)
            let zero_window_ack =
                len > 0 && seg.seq == self.rcv_nxt() && self.acceptance_window() == 0;
            if !zero_window_ack {
                if !seg.flags.rst() {
                    self.stats.dup_segs_in += 1;
                    if !seg.payload.is_empty()
                        && (seg.seq + seg.payload.len()).diff(self.rcv_nxt()) <= 0
                    {
                        // wholly old data: a spurious retransmission, reported by D-SACK
                        self.dsack = Some((seg.seq, seg.seq + seg.payload.len()));
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
            self.ack = AckState::Now;
        }
        if self.ts_ok {
            if let Some((tsval, _)) = seg.options.timestamp {
                if seg.seq.diff(self.last_ack_sent) <= 0 {
                    self.ts_recent = tsval;
                }
            }
        }

        // second: RST (RFC 5961 3.2: only an exact match resets; in-window gets a challenge)
        if seg.flags.rst() {
            if seg.seq != self.rcv_nxt() {
                self.challenge_ack(now);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => self.enter_closed(),
                State::SynReceived => self.fail(Error::Refused),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.fail(Error::Reset)
                }
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
        if self.state == State::SynReceived {
            if seg.ack.diff(self.snd_una) > 0 && seg.ack.diff(self.snd_max) <= 0 {
                self.state = State::Established;
                self.snd_wnd = wnd;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seg.seq;
                self.snd_wl2 = seg.ack;
                self.reset_retries();
                self.push_event(Event::Connected);
                if self.fin_queued {
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
        match self.state {
            State::FinWait1 if self.our_fin_acked() => self.state = State::FinWait2,
            State::Closing if self.our_fin_acked() => self.enter_time_wait(now),
            State::LastAck if self.our_fin_acked() => {
                self.enter_closed();
                return;
            }
            _ => {}
        }

        // seventh: segment text
        if !seg.payload.is_empty() {
            if self.state.can_receive() {
                self.accept_payload(now, seg.seq, seg.payload, seg.flags.psh());
            } else {
                // data after the peer's FIN is a protocol error we simply ignore
                self.ack = AckState::Now;
            }
        }

        // eighth: FIN
        if seg.flags.fin() {
            let fin_seq = seg.seq + seg.payload.len();
            if fin_seq.diff(self.recv_buf.rcv_nxt() + self.recv_buf.window()) <= 0 {
                self.peer_fin = Some(fin_seq);
            }
            self.ack = AckState::Now;
        }
        self.try_consume_fin(now);
    }

    /// Handles the acknowledgment fields; `wnd` is the peer's window, scaled. Returns false if
    /// the segment must be dropped.
    fn process_ack(&mut self, now: Instant, seg: &TcpRepr, wnd: usize) -> bool {
        let ack = seg.ack;
        // RFC 5961 5.2: acceptable is SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT (SND.MAX here,
        // so ACKs of a retransmitted tail still count); anything else, beyond what we sent or
        // older than a window behind, is dropped with a challenge ACK: a blind attacker must
        // then guess the acknowledgement within a window too before its data is taken
        if ack.diff(self.snd_max) > 0
            || ack.diff(self.snd_una) < -(self.max_snd_wnd.min(i32::MAX as usize) as i32)
        {
            self.challenge_ack(now);
            return false;
        }
        if ack.diff(self.snd_una) < 0 {
            // an old duplicate: nothing to learn, not even the window (RFC 9293 3.10.7.4)
            return true;
        }
        let mut delivered = Delivered::default();
        let newly_acked = ack - self.snd_una;
        let syn_acked = self.snd_una == self.iss && newly_acked > 0;
        if newly_acked > 0 {
            self.sb.ack_to(ack, &mut delivered);
            self.on_new_ack(now, ack);
        } else if seg.payload.is_empty()
            && !seg.flags.fin()
            && self.snd_una != self.snd_max
            && wnd == self.snd_wnd
        {
            self.stats.dupacks_in += 1;
            self.dupacks += 1;
        }
        if self.sack_ok {
            self.process_sack(seg, &mut delivered);
        }
        self.sample_rtt(now, seg, &delivered);
        self.rack.update(now, &delivered);
        if let Some(r) = self.recovery {
            if self.snd_una.diff(r.point) >= 0 {
                self.recovery = None;
                // the duplicates counted during recovery are spent: left standing they would
                // start a new (spurious) fast retransmit right away
                self.dupacks = 0;
                if r.fast {
                    self.cc.on_recovery_end(now);
                }
            }
        }
        let delivered_bytes = newly_acked - syn_acked as usize + delivered.sacked_bytes;
        if delivered_bytes > 0 && self.recovery.is_none_or(|r| !r.fast) {
            self.cc.on_ack(now, delivered_bytes, self.rtt.srtt());
        }
        self.end_tail_probe(now);
        self.detect_losses(now);
        if newly_acked > 0 && !self.sack_ok {
            self.newreno_partial_ack(ack);
        }

        if self.snd_wl1.diff(seg.seq) < 0
            || (self.snd_wl1 == seg.seq && self.snd_wl2.diff(ack) <= 0)
        {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = wnd;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.timers.clear(TimerKind::Persist);
                self.persist_backoff = 0;
                if was_zero && self.snd_max != self.snd_una {
                    // what we sent into the shut window (the probes) was dropped: forget it and
                    // send those bytes again as part of full segments
                    self.sb.clear();
                    self.snd_nxt = self.snd_una;
                    self.snd_max = self.snd_una;
                    self.timers.clear(TimerKind::Rto);
                }
            } else {
                // the peer answers our probes: it may keep its window shut as long as it likes
                // (RFC 9293 3.8.6.1)
                self.reset_retries();
            }
        }
        if newly_acked > 0 {
            self.schedule_tail_probe(now);
        }
        true
    }

    fn on_new_ack(&mut self, now: Instant, ack: SeqNumber) {
        let data_acked = self.send_buf.ack_to(ack);
        self.snd_una = ack;
        if self.snd_nxt.diff(ack) < 0 {
            self.snd_nxt = ack;
        }
        self.stats.bytes_acked += data_acked as u64;
        if let Some((end, sent)) = self.rtt_probe {
            if ack.diff(end) >= 0 {
                self.rtt.sample(now - sent);
                self.rtt_probe = None;
            }
        }
        self.reset_retries();
        if self.recovery.is_none() {
            self.dupacks = 0;
        }
        self.rtt.reset_backoff();
        self.force_probe = false;
        if self.snd_una == self.snd_max {
            self.timers.clear(TimerKind::Rto);
            self.timers.clear(TimerKind::TailLossProbe);
            self.timers.clear(TimerKind::Reorder);
        } else {
            self.restart_rto(now);
        }
        if data_acked > 0 && self.send_space() > 0 {
            self.push_event(Event::Writable);
        }
    }

    /// Applies the SACK blocks of an ACK to the scoreboard; a D-SACK (RFC 2883: a first block
    /// below the cumulative ACK or inside the second block) tells of a spurious retransmission
    /// or reordering instead.
    fn process_sack(&mut self, seg: &TcpRepr, delivered: &mut Delivered) {
        let blocks = seg.options.sack();
        self.stats.sack_blocks_in += blocks.len() as u64;
        for (i, &(left, right)) in blocks.iter().enumerate() {
            if right.diff(left) <= 0 {
                continue;
            }
            let dsack = i == 0
                && (right.diff(seg.ack) <= 0
                    || blocks
                        .get(1)
                        .is_some_and(|&(l2, r2)| left.diff(l2) >= 0 && right.diff(r2) <= 0));
            if dsack {
                self.stats.dsack_in += 1;
                self.rack.reordering_seen = true;
                self.rack.reo_wnd_mult = (self.rack.reo_wnd_mult + 1).min(16);
                self.rack.reo_wnd_persist = 16;
                if let Some(t) = self.tlp.as_mut() {
                    t.dsacked = true;
                }
                continue;
            }
            // only blocks within what is outstanding count
            let left = left.max(self.snd_una);
            let right = right.min(self.snd_max);
            if right.diff(left) > 0 {
                self.sb.sack(left, right, delivered);
            }
        }
    }

    /// RTT sample from the newest segment this ACK delivered: never from a retransmission
    /// (Karn) unless the echoed timestamp proves the ACK answers that retransmission, and never
    /// from a segment that had been marked lost (its original transmission was slow to be
    /// acknowledged, maybe across a whole RTO: timing it would inflate SRTT).
    fn sample_rtt(&mut self, now: Instant, seg: &TcpRepr, delivered: &Delivered) {
        let Some(d) = delivered.newest else { return };
        if d.was_lost {
            return;
        }
        let unambiguous = !d.retransmitted
            || (self.ts_ok
                && seg
                    .options
                    .timestamp
                    .is_some_and(|(_, ecr)| (ecr.wrapping_sub(d.ts_val) as i32) >= 0));
        if unambiguous {
            self.rtt.sample(now - d.sent_at);
        }
    }

    /// Runs RACK (and, with SACK, the duplicate threshold) over the scoreboard; enters fast
    /// recovery if anything new was marked lost.
    fn detect_losses(&mut self, now: Instant) {
        let mut marked = 0;
        if self.sack_ok {
            let in_recovery = self.recovery.is_some();
            let dupthresh_met = self.sb.sacked_bytes() >= 3 * self.mss;
            let srtt = self.rtt.srtt().unwrap_or(self.rtt.base_rto());
            let reo_wnd = self.rack.reo_wnd(in_recovery, dupthresh_met, srtt);
            let (n, recheck) = self.sb.rack_detect(now, &self.rack, reo_wnd);
            marked += n + self.sb.dupthresh_detect(self.mss);
            self.timers.set_or_clear(TimerKind::Reorder, recheck);
        } else if self.dupacks >= 3
            && self.recovery.is_none()
            && self.snd_una.diff(self.recover) >= 0
        {
            // NewReno fast retransmit (RFC 6582 3.2 step 2)
            if !self.sb.is_empty() && self.sb.mark_lost(0, LossCause::Fast) {
                marked += 1;
            }
        }
        if marked > 0 && self.recovery.is_none() {
            self.stats.fast_recoveries += 1;
            let flight = self.sb.pipe() + self.sb.lost_bytes();
            self.cc.on_congestion_event(now, flight);
            self.recovery = Some(Recovery {
                point: self.snd_max,
                fast: true,
            });
            self.recover = self.snd_max;
            self.rexmit_head = true;
            self.timers.clear(TimerKind::TailLossProbe);
        }
    }

    /// NewReno partial acknowledgment (RFC 6582 3.2 step 5): the next hole is lost too.
    fn newreno_partial_ack(&mut self, ack: SeqNumber) {
        if let Some(r) = self.recovery {
            if r.fast && ack.diff(r.point) < 0 && !self.sb.is_empty() {
                self.sb.mark_lost(0, LossCause::Fast);
                self.rexmit_head = true;
                self.dupacks = 0;
            }
        }
    }

    /// Arms the tail loss probe (RFC 8985 7.2) after new data went out or was acknowledged.
    fn schedule_tail_probe(&mut self, now: Instant) {
        if !self.sack_ok
            || !self.state.is_synchronized()
            || self.recovery.is_some()
            || self.tlp.is_some()
            || self.sb.is_empty()
        {
            self.timers.clear(TimerKind::TailLossProbe);
            return;
        }
        let pto = match self.rtt.srtt() {
            Some(srtt) => {
                let mut p = srtt.saturating_mul(2);
                if self.sb.len() == 1 {
                    p = p + TLP_DELACK_ALLOWANCE;
                }
                p.max(TLP_MIN)
            }
            None => self.cfg.rto_initial,
        };
        // a probe that would come after the RTO is sent at the RTO's time instead
        // (RFC 8985 7.2): with one segment in flight, 2 SRTT plus the delayed-ACK allowance
        // is often later than the RTO, and the probe repairs a lost tail without the RTO's
        // collapse of cwnd
        let at = now + pto;
        self.timers.set(
            TimerKind::TailLossProbe,
            self.timers
                .get(TimerKind::Rto)
                .map_or(at, |rto| rto.min(at)),
        );
    }

    /// The probe's episode ends once what it sent is acknowledged. If it was a retransmission
    /// that no D-SACK called spurious, it repaired a real loss: reduce as for one
    /// (RFC 8985 7.4).
    fn end_tail_probe(&mut self, now: Instant) {
        let Some(t) = self.tlp else { return };
        if self.snd_una.diff(t.end) < 0 {
            return;
        }
        self.tlp = None;
        if t.retransmission && !t.dsacked && self.recovery.is_none() {
            let flight = self.sb.pipe();
            self.cc.on_congestion_event(now, flight);
            self.cc.on_recovery_end(now);
        }
    }

    fn our_fin_acked(&self) -> bool {
        self.fin_queued && self.snd_una.diff(self.send_buf.end()) > 0
    }

    fn accept_payload(&mut self, now: Instant, seq: SeqNumber, payload: &[u8], _psh: bool) {
        self.stats.bytes_in += payload.len() as u64;
        let full = payload.len() >= self.mss;
        let r = self.recv_buf.insert(seq, payload);
        if r.out_of_order {
            self.stats.ooo_segs_in += 1;
            self.ack = AckState::Now;
            return;
        }
        if r.advanced == 0 {
            self.stats.dup_segs_in += 1;
            let end = (seq + payload.len()).min(self.recv_buf.rcv_nxt());
            if end.diff(seq) > 0 {
                self.dsack = Some((seq, end));
            }
            self.ack = AckState::Now;
            return;
        }
        if self.read_shut {
            let n = self.recv_buf.len();
            self.recv_buf.consume(n);
        } else {
            self.push_event(Event::Readable);
        }
        if r.advanced > payload.len() || self.recv_buf.has_out_of_order() {
            // filled (part of) a hole: acknowledge at once (RFC 5681 4.2)
            self.ack = AckState::Now;
            return;
        }
        if full {
            self.unacked_full += 1;
        }
        match self.cfg.delayed_ack {
            Some(d) if self.unacked_full < 2 => {
                if self.ack < AckState::Delayed {
                    self.ack = AckState::Delayed;
                    self.timers.set(TimerKind::DelayedAck, now + d);
                }
            }
            _ => self.ack = AckState::Now,
        }
    }

    fn try_consume_fin(&mut self, now: Instant) {
        let Some(fin) = self.peer_fin else { return };
        if self.fin_consumed || fin != self.recv_buf.rcv_nxt() {
            return;
        }
        self.fin_consumed = true;
        self.ack = AckState::Now;
        self.push_event(Event::PeerClosed);
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                if self.our_fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.state = State::Closing;
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.stop_timers();
        self.timers
            .set(TimerKind::TimeWait, now + self.cfg.msl.saturating_mul(2));
    }

    fn stop_timers(&mut self) {
        self.timers.clear_all();
    }

    fn enter_closed(&mut self) {
        let was = self.state;
        self.state = State::Closed;
        self.stop_timers();
        self.sb.clear();
        self.ack = AckState::None;
        if was != State::Closed {
            self.push_event(Event::Closed);
        }
    }

    fn fail(&mut self, e: Error) {
        self.sb.clear();
        self.error = Some(e);
        self.push_event(Event::Error(e));
        self.send_buf.ack_to(self.send_buf.end());
        self.enter_closed();
    }

    // ---------------------------------------------------------------- keep-alive, ICMP

    /// Enables (or with `None` disables) keep-alive probing (SO_KEEPALIVE with TCP_KEEPIDLE,
    /// TCP_KEEPINTVL, TCP_KEEPCNT).
    pub fn set_keepalive(&mut self, now: Instant, ka: Option<KeepAlive>) {
        self.keepalive = ka;
        self.keepalive_probes_out = 0;
        let at = match ka {
            Some(k) if self.state.is_synchronized() => Some(now + k.idle),
            _ => None,
        };
        self.timers.set_or_clear(TimerKind::KeepAlive, at);
    }

    pub fn keepalive(&self) -> Option<KeepAlive> {
        self.keepalive
    }

    /// Any segment from the peer proves it alive: the idle period starts again.
    fn peer_alive(&mut self, now: Instant) {
        self.keepalive_probes_out = 0;
        if let Some(k) = self.keepalive {
            if matches!(
                self.state,
                State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
            ) {
                self.timers.set(TimerKind::KeepAlive, now + k.idle);
            }
        }
    }

    fn on_keepalive_timer(&mut self, now: Instant) {
        let Some(k) = self.keepalive else { return };
        if !matches!(
            self.state,
            State::Established | State::CloseWait | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        if !self.sb.is_empty() || !self.send_buf.is_empty() {
            // data in flight: the retransmission timer watches the peer instead
            self.timers.set(TimerKind::KeepAlive, now + k.idle);
            return;
        }
        if self.keepalive_probes_out >= k.count {
            self.fail(Error::TimedOut);
            return;
        }
        self.keepalive_probes_out += 1;
        self.keepalive_send = true;
        self.timers.set(TimerKind::KeepAlive, now + k.interval);
    }

    /// An ICMP destination-unreachable (or time-exceeded) quoting one of our segments with
    /// sequence number `seq`. It is believed only if `seq` is one we may have sent (RFC 5927).
    /// It ends the connection while we are already doubting the peer (connecting, or
    /// retransmitting, or probing an idle peer) and is kept as a soft error otherwise, as a
    /// transient routing failure must not kill a healthy connection (RFC 1122 4.2.3.9).
    pub fn handle_icmp_unreachable(&mut self, _now: Instant, seq: SeqNumber) {
        if !seq.in_range_incl(self.snd_una - 1, self.snd_max) {
            return;
        }
        self.stats.icmp_errors += 1;
        let doubting =
            self.state == State::SynSent || self.retries > 0 || self.keepalive_probes_out > 0;
        match self.state {
            State::Closed | State::TimeWait => {}
            _ if doubting => self.fail(Error::HostUnreachable),
            _ => self.soft_error = Some(Error::HostUnreachable),
        }
    }

    /// A snapshot of the connection's state and counters, like Linux `tcp_info`.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state,
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            rto: self.rtt.rto(),
            min_rtt: self.rack.min_rtt,
            mss: self.mss,
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.recv_buf.window(),
            bytes_in_flight: self.bytes_in_flight(),
            pipe: self.sb.pipe(),
            sacked_bytes: self.sb.sacked_bytes(),
            lost_bytes: self.sb.lost_bytes(),
            in_recovery: self.recovery.is_some(),
            backoff: self.rtt.backoff(),
            stats: self.stats,
        }
    }

    // ---------------------------------------------------------------- output

    fn ts_val(&self, now: Instant) -> u32 {
        now.as_millis() as u32
    }

    fn bare(&self, seq: SeqNumber, flags: TcpFlags) -> TcpRepr<'static> {
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
        Transmit {
            src: self.local,
            dst: self.remote,
            repr,
            payload_len,
        }
    }

    /// The window field to send, applying receiver SWS avoidance and never moving the right edge
    /// left.
    fn advertise_window(&mut self) -> u16 {
        let nxt = self.rcv_nxt();
        let free = if self.fin_consumed {
            0
        } else {
            self.recv_buf.window()
        };
        let right = self.recv_buf.rcv_nxt() + free;
        let threshold = (self.recv_buf.capacity() / 2)
            .min(self.cfg.mss as usize)
            .max(1);
        let old = self.rcv_adv.max(nxt);
        let edge = if right.diff(old) >= threshold as i32 || free == self.recv_buf.capacity() {
            right.max(old)
        } else {
            old
        };
        let wnd = ((edge - nxt) >> self.rcv_wscale).min(u16::MAX as usize);
        let adv = nxt + (wnd << self.rcv_wscale);
        if adv.diff(self.rcv_adv) > 0 {
            self.rcv_adv = adv;
        }
        wnd as u16
    }

    fn syn_options(&self, now: Instant, reply_to_peer: bool) -> TcpOptions {
        let mut o = TcpOptions {
            mss: Some(self.cfg.mss),
            ..TcpOptions::default()
        };
        let offer_ws =
            self.cfg.window_scale && (!reply_to_peer || self.snd_wscale > 0 || self.rcv_wscale > 0);
        if offer_ws {
            o.window_scale = Some(self.rcv_wscale);
        }
        o.sack_permitted = if reply_to_peer {
            self.sack_ok
        } else {
            self.cfg.sack
        };
        let ts = if reply_to_peer {
            self.ts_ok
        } else {
            self.cfg.timestamps
        };
        if ts {
            o.timestamp = Some((
                self.ts_val(now),
                if reply_to_peer { self.ts_recent } else { 0 },
            ));
        }
        o
    }

    /// The next segment to send, if any. Call until it returns `None`; every call may change
    /// [`Connection::poll_timeout`].
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
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
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                Some(self.emit_syn(now))
            }
            State::SynSent => None,
            State::SynReceived => self.emit_ack_if_due(now),
            State::TimeWait => self.emit_ack_if_due(now),
            _ => self
                .emit_data(now)
                .or_else(|| self.emit_ack_if_due(now))
                .or_else(|| self.emit_keepalive(now)),
        };
        if t.is_none() {
            self.arm_persist(now);
        }
        t
    }

    fn emit_syn(&mut self, now: Instant) -> Transmit {
        let passive = self.state == State::SynReceived;
        let mut repr = self.bare(self.iss, TcpFlags::SYN);
        repr.options = self.syn_options(now, passive);
        repr.window = self.recv_buf.window().min(u16::MAX as usize) as u16;
        if passive {
            repr.flags |= TcpFlags::ACK;
            repr.ack = self.rcv_nxt();
            self.rcv_adv = self.rcv_nxt() + repr.window as usize;
            self.last_ack_sent = repr.ack;
            self.ack = AckState::None;
        }
        let first = self.snd_max == self.iss;
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if first {
            self.rtt_probe = Some((self.snd_nxt, now));
        } else {
            self.stats.retrans_segs += 1;
        }
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        self.stats.segs_out += 1;
        self.transmit(repr, 0)
    }

    /// Header fields every synchronized segment carries: ACK, window, timestamps.
    fn fill_ack(&mut self, now: Instant, repr: &mut TcpRepr<'static>) {
        repr.flags |= TcpFlags::ACK;
        repr.ack = self.rcv_nxt();
        repr.window = self.advertise_window();
        if self.ts_ok {
            repr.options.timestamp = Some((self.ts_val(now), self.ts_recent));
        }
        if self.sack_ok {
            self.fill_sack(&mut repr.options);
        }
        self.last_ack_sent = repr.ack;
        self.ack = AckState::None;
        self.timers.clear(TimerKind::DelayedAck);
        self.unacked_full = 0;
        self.stats.segs_out += 1;
    }

    fn emit_data(&mut self, now: Instant) -> Option<Transmit> {
        if self.tlp_fire {
            self.tlp_fire = false;
            if let Some(t) = self.emit_tail_probe(now) {
                return Some(t);
            }
        }
        if let Some(t) = self.emit_retransmission(now) {
            return Some(t);
        }
        self.emit_new_data(now, false)
    }

    /// Room congestion control leaves for more bytes in flight.
    fn cwnd_room(&self) -> usize {
        let mut cwnd = self.cc.cwnd();
        if !self.sack_ok {
            // without SACK a duplicate ACK is the only sign a segment left the network: in
            // NewReno recovery each inflates the window by one segment (RFC 6582); before it,
            // the first two allow a segment each (limited transmit, RFC 3042)
            let extra = match self.recovery {
                Some(r) if r.fast => self.dupacks as usize,
                Some(_) => 0,
                None => self.dupacks.min(2) as usize,
            };
            cwnd += extra * self.mss;
        }
        cwnd.saturating_sub(self.sb.pipe())
    }

    /// Resends the first segment marked lost, if congestion control and the peer's window
    /// allow it.
    fn emit_retransmission(&mut self, now: Instant) -> Option<Transmit> {
        let (i, seg) = self.sb.next_lost()?;
        let in_window = seg.end.diff(self.snd_una + self.snd_wnd) <= 0;
        let probe = self.force_probe && self.snd_wnd == 0 && self.sb.pipe() == 0;
        let room = self.rexmit_head || self.sb.pipe() == 0 || seg.len() <= self.cwnd_room();
        if !room || !(in_window || probe) {
            return None;
        }
        self.rexmit_head = false;
        if probe {
            self.force_probe = false;
            self.stats.zero_window_probes += 1;
        }
        match seg.lost {
            Some(LossCause::Rto) => self.stats.retrans_rto += 1,
            Some(LossCause::Fast) => self.stats.retrans_fast += 1,
            _ => {}
        }
        Some(self.resend(now, i))
    }

    /// Sends segment `i` of the scoreboard again.
    fn resend(&mut self, now: Instant, i: usize) -> Transmit {
        let seg = self.sb.get(i);
        let payload_len = seg.payload_len();
        let mut repr = self.bare(seg.start, TcpFlags::NONE);
        if seg.fin {
            repr.flags |= TcpFlags::FIN;
        }
        if payload_len > 0 && seg.end == self.snd_max {
            repr.flags |= TcpFlags::PSH;
        }
        self.fill_ack(now, &mut repr);
        self.sb.on_retransmit(i, now, self.ts_val(now));
        self.stats.retrans_segs += 1;
        self.stats.bytes_retrans += payload_len as u64;
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        self.transmit(repr, payload_len)
    }

    /// The tail loss probe (RFC 8985 7.3): one new segment if the window allows, else the last
    /// segment again.
    fn emit_tail_probe(&mut self, now: Instant) -> Option<Transmit> {
        if self.sb.is_empty() || self.recovery.is_some() {
            return None;
        }
        self.stats.tlp_probes += 1;
        if let Some(t) = self.emit_new_data(now, true) {
            self.tlp = Some(TailProbe {
                end: self.snd_max,
                retransmission: false,
                dsacked: false,
            });
            self.restart_rto(now);
            return Some(t);
        }
        let i = self.sb.last_index()?;
        if self.sb.get(i).sacked {
            return None;
        }
        self.stats.retrans_tlp += 1;
        let t = self.resend(now, i);
        self.tlp = Some(TailProbe {
            end: self.snd_max,
            retransmission: true,
            dsacked: false,
        });
        self.restart_rto(now);
        Some(t)
    }

    /// Sends new data (and our FIN) as the windows, Nagle and sender-side silly window avoidance
    /// allow. A tail loss probe may exceed cwnd by one segment.
    fn emit_new_data(&mut self, now: Instant, tail_probe: bool) -> Option<Transmit> {
        let data_end = self.send_buf.end();
        let fin_pending = self.fin_queued && self.snd_max.diff(data_end) <= 0;
        let avail = if self.snd_nxt.diff(data_end) < 0 {
            data_end - self.snd_nxt
        } else {
            0
        };
        let outstanding = self.snd_nxt - self.snd_una;
        let wnd_room = self.snd_wnd.saturating_sub(outstanding);
        let mut usable = wnd_room.min(self.cwnd_room());
        if tail_probe {
            usable = wnd_room.min(self.mss);
        }
        let probing = self.force_probe && self.snd_wnd == 0 && self.sb.is_empty() && avail > 0;
        if probing {
            usable = 1;
        }
        let len = avail.min(self.mss).min(usable);
        let send_data = len > 0
            && (len == self.mss
                || probing
                || tail_probe
                || (len == avail && (self.cfg.nodelay || outstanding == 0 || fin_pending))
                || (self.max_snd_wnd > 0 && len >= self.max_snd_wnd / 2));
        let len = if send_data { len } else { 0 };
        let fin =
            fin_pending && !tail_probe && self.snd_nxt + len == data_end && (len > 0 || avail == 0);
        if len == 0 && !fin {
            return None;
        }
        let start = self.snd_nxt;
        let mut repr = self.bare(start, TcpFlags::NONE);
        if len > 0 && (len == avail || probing) {
            repr.flags |= TcpFlags::PSH;
        }
        if fin {
            repr.flags |= TcpFlags::FIN;
        }
        self.fill_ack(now, &mut repr);
        self.snd_nxt += len + fin as usize;
        self.snd_max = self.snd_nxt;
        self.sb
            .push(start, self.snd_nxt, fin, now, self.ts_val(now));
        if probing {
            self.force_probe = false;
            self.stats.zero_window_probes += 1;
        }
        self.stats.bytes_out += len as u64;
        if !self.timers.is_armed(TimerKind::Rto) {
            self.restart_rto(now);
        }
        if !tail_probe {
            self.schedule_tail_probe(now);
        }
        Some(self.transmit(repr, len))
    }

    /// A keep-alive probe: an ACK carrying `snd_una - 1`, which the peer must answer with an ACK
    /// (RFC 9293 3.8.4).
    fn emit_keepalive(&mut self, now: Instant) -> Option<Transmit> {
        if !std::mem::take(&mut self.keepalive_send) {
            return None;
        }
        let mut repr = self.bare(self.snd_una - 1, TcpFlags::NONE);
        self.fill_ack(now, &mut repr);
        self.stats.keepalive_probes += 1;
        Some(self.transmit(repr, 0))
    }

    fn emit_ack_if_due(&mut self, now: Instant) -> Option<Transmit> {
        if self.ack != AckState::Now {
            return None;
        }
        // snd_max, not snd_nxt, which an RTO rewinds: the peer may already hold everything up
        // to snd_max and would find a segment starting below its RCV.NXT unacceptable
        let mut repr = self.bare(self.snd_max, TcpFlags::NONE);
        self.fill_ack(now, &mut repr);
        self.stats.acks_out += 1;
        Some(self.transmit(repr, 0))
    }

    /// SACK blocks for an outgoing ACK (RFC 2018 4): a pending D-SACK first, then the block
    /// holding the most recent out-of-order segment, then the others; three fit beside the
    /// timestamp option, four without it.
    fn fill_sack(&mut self, o: &mut TcpOptions) {
        let room = if self.ts_ok { 3 } else { MAX_SACK_BLOCKS };
        let mut n = 0;
        if let Some(d) = self.dsack.take() {
            o.sack_blocks[0] = d;
            n = 1;
            self.stats.dsack_out += 1;
        }
        let (blocks, count) = self.sack_blocks();
        for b in &blocks[..count] {
            if n == room {
                break;
            }
            o.sack_blocks[n] = *b;
            n += 1;
        }
        o.sack_len = n as u8;
        self.stats.sack_blocks_out += n as u64;
    }

    /// Starts the persist timer when data waits on a zero window and nothing else will wake us.
    fn arm_persist(&mut self, now: Instant) {
        let waiting = self.state.is_synchronized()
            && self.snd_wnd == 0
            && self.snd_nxt.diff(self.send_buf.end()) < 0
            && self.sb.is_empty();
        if waiting
            && !self.timers.is_armed(TimerKind::Persist)
            && !self.timers.is_armed(TimerKind::Rto)
            && !self.force_probe
        {
            let base = self.rtt.base_rto().max(PERSIST_MIN);
            let d = base
                .saturating_mul(1 << self.persist_backoff.min(16))
                .min(PERSIST_MAX);
            self.timers.set(TimerKind::Persist, now + d);
        }
    }

    /// Copies the payload of `t` (from [`Connection::poll_transmit`]) into `dst`, which must be
    /// exactly `t.payload_len` bytes.
    pub fn write_payload(&self, t: &Transmit, dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), t.payload_len);
        if t.payload_len > 0 {
            self.send_buf.copy_out(t.repr.seq, dst);
        }
    }

    /// SACK blocks we would report (receiver side), most recent first.
    pub fn sack_blocks(&self) -> ([(SeqNumber, SeqNumber); MAX_SACK_BLOCKS], usize) {
        let mut out = [(SeqNumber(0), SeqNumber(0)); MAX_SACK_BLOCKS];
        let ranges = self.recv_buf.out_of_order().ranges();
        let mut n = 0;
        if let Some(first) = self.recv_buf.out_of_order().last_touched() {
            if let Some(r) = ranges.iter().find(|r| r.0 == first) {
                out[0] = *r;
                n = 1;
            }
        }
        for r in ranges {
            if n == MAX_SACK_BLOCKS {
                break;
            }
            if n > 0 && out[0] == *r {
                continue;
            }
            out[n] = *r;
            n += 1;
        }
        (out, n)
    }
}
