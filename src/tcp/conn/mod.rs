//! One TCP connection as a sans-IO state machine (RFC 9293 section 3.10).
//!
//! The connection ties its sub-states together; each keeps its own invariants:
//! - the send and receive sequence spaces and the negotiated options ([`space`]),
//! - the timer table ([`Timers`]), one deadline per kind,
//! - loss detection and recovery ([`Recovery`]: RACK, tail loss probe, NewReno, D-SACK) over
//!   the [`Scoreboard`] of segments in flight, with the RTT estimator and congestion control,
//! - the path's MTU and each segment's MSS, and ICMP errors (`path`),
//! - keep-alive ([`KeepAliveState`]) and the counters ([`ConnStats`]).
//!
//! Invariants of the whole: every segment sent is recorded in the scoreboard with its transmit
//! time; retransmissions are chosen from it. Once CLOSED, no timer is armed and the scoreboard
//! is empty. Events for the application are queued at most once per kind for `Readable` and
//! `Writable` until polled.
//!
//! Inputs: [`Connection::handle_segment`] (in `input`), [`Connection::handle_timers`] or
//! [`Connection::handle_timeout`] (in `timer`), and the application calls (in `app`). Outputs:
//! [`Connection::poll_transmit`] with [`Transmit::write_segment`] (in `output`),
//! [`Connection::poll_event`], and [`Connection::take_timer_changes`] or
//! [`Connection::poll_timeout`]. After any input, poll transmissions until `None`, then read the
//! timers again.

mod ack;
#[cfg(test)]
mod ack_shortcut_tests;
mod app;
mod input;
mod output;
mod path;
mod space;
#[cfg(test)]
mod testing;
mod timer;

pub use app::CORK_LIMIT;
pub use output::Transmit;
pub use path::MIN_PMTU;

/// Where [`Connection::handle_segment_lending`] lends in-order payload in place: called with
/// the connection and the bytes, it returns how many it consumed.
pub type PayloadSink<'a> = dyn FnMut(&mut Connection, &[u8]) -> usize + 'a;

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::Arc;

use self::path::PathMtu;
use self::space::{AckState, Negotiated, RecvSpace, SendSpace};
use super::config::Config;
use super::congestion::{CongestionControl, Controller};
use super::event::{Error, Event};
use super::keepalive::KeepAliveState;
use super::recovery::{Ctx, Recovery};
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::state::State;
use super::stats::{ConnStats, Counters};
use super::timers::{TimerKind, Timers};
use super::timestamps::Timestamps;
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// One TCP connection, sans-IO: segments, expired timers and application calls go in; segments
/// to send, events and deadlines come out.
///
/// Open with [`Connection::connect`] (active) or [`Connection::accept`] (from a SYN a listener
/// took). After every input ([`Connection::handle_segment`], [`Connection::handle_timers`],
/// any application call), call [`Connection::poll_transmit`] until `None`, writing each segment
/// with [`Transmit::write_segment`]; then drain [`Connection::poll_event`] and mirror
/// [`Connection::take_timer_changes`] into a timer wheel (or wait for
/// [`Connection::poll_timeout`]). Once [`Connection::is_closed`], drop it.
#[derive(Debug)]
pub struct Connection {
    /// Shared with the host and its other connections until an option is set on this one
    /// (copied on write): a pointer instead of some 200 bytes in every connection.
    cfg: Arc<Config>,
    state: State,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    /// Opened by a listener: an RST in SYN-RECEIVED just drops the embryo instead of an error.
    passive: bool,
    /// The application has given the connection up (closed, not just shut down for writing):
    /// nobody will read, and FIN-WAIT-2 is bounded by `cfg.fin_timeout`.
    orphaned: bool,

    snd: SendSpace,
    rcv: RecvSpace,
    opts: Negotiated,
    path: PathMtu,
    /// Our timestamp clock and TS.Recent (used once `opts.timestamps`).
    ts: Timestamps,
    timers: Timers,

    rtt: RttEstimator,
    /// The SYN's transmission time, for the handshake's RTT sample.
    rtt_probe: Option<(SeqNumber, Instant)>,
    /// Consecutive retransmission timeouts.
    retries: u32,
    /// When the current series of retransmission timeouts began.
    retrans_since: Option<Instant>,
    cc: Controller,
    sb: Scoreboard,
    recovery: Recovery,

    /// Zero-window probes sent in a row without the window opening.
    persist_backoff: u32,
    /// Of those, how many the peer answered with its window still shut (at most one per probe).
    probes_answered: u32,
    /// Send one byte (or a retransmission) into a shut window.
    force_probe: bool,
    /// When we last answered an invalid segment (rate limit of RFC 5961 section 7).
    last_oow_ack: Option<Instant>,
    keepalive: KeepAliveState,
    /// Segments shorter than the MSS wait (TCP_CORK, MSG_MORE) until uncorked, our FIN, or the
    /// cork timer. Never set once our FIN is queued; the cork timer is armed exactly while set.
    corked: bool,

    /// RSTs to send, each with its destination: in CLOSED that is the sender of the segment
    /// answered, not `remote`.
    replies: VecDeque<(SocketAddrV4, TcpRepr<'static>)>,
    events: EventQueue,
    error: Option<Error>,
    /// An error worth reporting that did not end the connection (an ICMP report).
    soft_error: Option<Error>,
    stats: Counters,
    /// Start of the current delivery-rate interval: when, and `bytes_acked` then.
    rate_mark: Option<(Instant, u64)>,
    /// Bytes per second acknowledged over the last complete interval (`tcp_info`'s
    /// delivery rate).
    delivery_rate: u64,
}

/// Application events in order, `Readable` and `Writable` each queued at most once until
/// polled.
#[derive(Debug, Default)]
struct EventQueue {
    queue: VecDeque<Event>,
    readable_queued: bool,
    writable_queued: bool,
    /// `Writable` only when `writable_wanted` (see [`Connection::set_writable_on_demand`]).
    writable_on_demand: bool,
    /// A writer found the send buffer full (or asked) since the last `Writable`.
    writable_wanted: bool,
}

impl EventQueue {
    fn push(&mut self, ev: Event) {
        match ev {
            Event::Readable if self.readable_queued => return,
            Event::Writable if self.writable_queued => return,
            Event::Readable => self.readable_queued = true,
            Event::Writable => {
                self.writable_queued = true;
                self.writable_wanted = false;
            }
            _ => {}
        }
        self.queue.push_back(ev);
    }

    /// Whether freed send space is worth a `Writable` now.
    #[inline]
    fn writable_due(&self) -> bool {
        !self.writable_on_demand || self.writable_wanted
    }

    fn pop(&mut self) -> Option<Event> {
        let ev = self.queue.pop_front()?;
        match ev {
            Event::Readable => self.readable_queued = false,
            Event::Writable => self.writable_queued = false,
            _ => {}
        }
        Some(ev)
    }
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

impl Connection {
    fn new(
        cfg: Arc<Config>,
        state: State,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
    ) -> Self {
        let mss = cfg.mss as usize;
        Connection {
            state,
            local,
            remote,
            passive: false,
            orphaned: false,
            snd: SendSpace::new(iss, cfg.send_buffer),
            rcv: RecvSpace::new(&cfg),
            opts: Negotiated::offer(&cfg),
            path: PathMtu::new(&cfg),
            ts: Timestamps::new(&cfg.secret, local, remote),
            timers: Timers::default(),
            rtt: RttEstimator::new(
                cfg.rto_initial,
                cfg.rto_min,
                cfg.rto_max,
                Duration::from_millis(1),
            ),
            rtt_probe: None,
            retries: 0,
            retrans_since: None,
            cc: Controller::new(cfg.congestion, mss, cfg.initial_window),
            sb: Scoreboard::new(),
            recovery: Recovery::new(iss),
            persist_backoff: 0,
            probes_answered: 0,
            force_probe: false,
            last_oow_ack: None,
            keepalive: KeepAliveState::new(cfg.keepalive),
            corked: false,
            replies: VecDeque::new(),
            events: EventQueue::default(),
            error: None,
            soft_error: None,
            stats: Counters::default(),
            rate_mark: None,
            delivery_rate: 0,
            cfg,
        }
    }

    /// Active open: the connection starts in SYN-SENT and its SYN is ready to transmit.
    /// `cfg` may be a [`Config`] or an `Arc<Config>` shared with other connections.
    pub fn connect(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
    ) -> Self {
        Connection::new(cfg.into(), State::SynSent, local, remote, iss)
    }

    /// Passive open from a SYN that a listener accepted: the result is in SYN-RECEIVED with its
    /// SYN-ACK ready to transmit. Listening itself (answering other segments to the port, the
    /// backlog) is the host's.
    pub fn accept(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
        syn: &TcpRepr,
    ) -> Self {
        let mut c = Connection::new(cfg.into(), State::SynReceived, local, remote, iss);
        c.passive = true;
        c.take_peer_syn(now, syn);
        // the SYN-ACK's window field is never scaled; the peer's SYN window neither
        c.snd.wnd = syn.window as usize;
        c.snd.max_wnd = c.snd.wnd;
        c.snd.wl1 = syn.seq;
        c
    }

    /// Passive open completed by a SYN cookie: `syn` is the peer's SYN as the cookie and its
    /// ACK rebuilt it ([`cookie::rebuild_syn`](crate::tcp::cookie::rebuild_syn)) and `iss` the
    /// cookie. The SYN-ACK already went out without state, so the result waits in SYN-RECEIVED
    /// for that ACK (feed it with [`Connection::handle_segment`]) with nothing to send and no
    /// round-trip sample pending: the handshake's time is unknown.
    pub fn accept_cookie(
        cfg: impl Into<Arc<Config>>,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNumber,
        now: Instant,
        syn: &TcpRepr,
    ) -> Self {
        let mut c = Connection::accept(cfg, local, remote, iss, now, syn);
        let _ = c.poll_transmit(now);
        c.rtt_probe = None;
        c.stats.segs_out = 0;
        c
    }

    /// Bytes this connection holds: its own structure and what its buffers allocated (the
    /// host's memory budget counts this).
    pub fn memory(&self) -> usize {
        std::mem::size_of::<Connection>()
            + self.events.queue.capacity() * std::mem::size_of::<Event>()
            + self.replies.capacity() * std::mem::size_of::<(SocketAddrV4, TcpRepr<'static>)>()
            + self.rcv.buf.allocated()
            + self.snd.buf.allocated()
            + self.sb.len() * 64
            + self.stats.heap_bytes()
            + self.recovery.heap_bytes()
            + self.rcv.auto_tune_heap_bytes()
    }

    /// Drops the out-of-order data held (memory pressure; the peer retransmits it, and SACK
    /// blocks stop reporting it, as RFC 2018 8 allows); the bytes dropped.
    pub fn prune_out_of_order(&mut self) -> usize {
        self.rcv.buf.prune_out_of_order()
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

    /// Every counter of the connection (a copy: the rare ones live apart, see `Counters`).
    pub fn stats(&self) -> ConnStats {
        self.stats.snapshot()
    }

    /// Adds this connection's counters to `total` (a host's sum over its connections).
    pub fn add_stats_to(&self, total: &mut ConnStats) {
        self.stats.add_to(total);
    }

    /// Bytes copied so far from the application into the send buffer, and from segments into
    /// the receive buffer (`ConnStats::send_buf_copied`, `recv_buf_copied`, without the copy of
    /// every counter that [`Connection::stats`] makes).
    pub fn copied(&self) -> (u64, u64) {
        (self.stats.send_buf_copied, self.stats.recv_buf_copied)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn iss(&self) -> SeqNumber {
        self.snd.iss
    }

    pub fn irs(&self) -> SeqNumber {
        self.rcv.irs
    }

    pub fn snd_una(&self) -> SeqNumber {
        self.snd.una
    }

    pub fn snd_nxt(&self) -> SeqNumber {
        self.snd.nxt
    }

    /// The peer's window in bytes, scaled.
    pub fn snd_wnd(&self) -> usize {
        self.snd.wnd
    }

    pub fn rcv_nxt(&self) -> SeqNumber {
        self.rcv.nxt()
    }

    /// The window we can offer now, in bytes.
    pub fn rcv_wnd(&self) -> usize {
        self.rcv.buf.window()
    }

    /// Payload bytes per segment we send.
    pub fn mss(&self) -> usize {
        self.opts.mss
    }

    pub fn window_shifts(&self) -> (u8, u8) {
        (self.opts.snd_wscale, self.opts.rcv_wscale)
    }

    pub fn sack_enabled(&self) -> bool {
        self.opts.sack
    }

    pub fn timestamps_enabled(&self) -> bool {
        self.opts.timestamps
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
        self.snd.in_flight()
    }

    /// Bytes queued in the send buffer, sent or not.
    pub fn send_queue(&self) -> usize {
        self.snd.buf.len()
    }

    pub fn send_capacity(&self) -> usize {
        self.snd.buf.capacity()
    }

    pub fn recv_capacity(&self) -> usize {
        self.rcv.buf.capacity()
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

    /// Whether [`Connection::poll_event`] has an event to give.
    #[inline]
    pub fn has_events(&self) -> bool {
        !self.events.queue.is_empty()
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    fn push_event(&mut self, ev: Event) {
        self.events.push(ev);
    }

    fn push_rst(&mut self, to: SocketAddrV4, rst: TcpRepr<'static>) {
        self.stats.rare().rst_out += 1;
        self.replies.push_back((to, rst));
    }

    /// Loss recovery and what it works on, lent for one call.
    #[inline]
    fn loss(&mut self, now: Instant) -> (&mut Recovery, Ctx<'_>) {
        (
            &mut self.recovery,
            Ctx {
                now,
                sb: &mut self.sb,
                cc: &mut self.cc,
                rtt: &self.rtt,
                timers: &mut self.timers,
                stats: &mut self.stats,
                mss: self.opts.mss,
                sack: self.opts.sack,
                snd_una: self.snd.una,
                snd_max: self.snd.max,
            },
        )
    }

    /// Arms (or clears) the tail loss probe after data went out or was acknowledged. None
    /// while the peer's window is shut: the persist timer probes it, backing off.
    fn schedule_tail_probe(&mut self, now: Instant) {
        if self.sb.is_empty() || !self.opts.sack {
            // what Recovery::schedule_probe decides first, without building its context: the
            // case of every ACK that leaves nothing in flight (request/response)
            self.timers.clear(TimerKind::TailLossProbe);
            return;
        }
        let synchronized = self.state.is_synchronized() && self.snd.wnd > 0;
        let rto_initial = self.cfg.rto_initial;
        let (rec, mut cx) = self.loss(now);
        rec.schedule_probe(&mut cx, synchronized, rto_initial);
    }

    /// Any segment from the peer proves it alive: the keep-alive idle period starts again.
    fn peer_alive(&mut self, now: Instant) {
        self.keepalive.peer_alive(now, self.state, &mut self.timers);
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.timers.clear_all();
        self.timers
            .set(TimerKind::TimeWait, now + self.cfg.msl.saturating_mul(2));
        // Everything sent is acknowledged and no more data comes: give the buffers back now
        // (a server in churn holds one TIME-WAIT connection per recent client port).
        self.snd.buf.release();
        self.rcv.buf.release();
        self.rcv.auto = None;
        self.sb.release();
    }

    fn enter_closed(&mut self) {
        let was = self.state;
        match was {
            State::SynSent | State::SynReceived => self.stats.rare().attempt_fails += 1,
            State::Established | State::CloseWait => self.stats.rare().estab_resets += 1,
            _ => {}
        }
        self.state = State::Closed;
        self.timers.clear_all();
        self.sb.clear();
        self.rcv.ack = AckState::None;
        if was != State::Closed {
            self.push_event(Event::Closed);
        }
    }

    fn fail(&mut self, e: Error) {
        self.sb.clear();
        self.error = Some(e);
        self.push_event(Event::Error(e));
        self.snd.buf.ack_to(self.snd.buf.end());
        self.enter_closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ChecksumCaps, TcpPacket};

    /// Every connection, TIME-WAIT included, is this struct: cold state (loss recovery's undo
    /// record, the rare counters, the shared configuration) lives behind pointers so a
    /// connection takes few cache lines to create and to keep. Raise the bound only with a
    /// reason (and the churn and memory-per-connection rows of the bench measured).
    #[test]
    fn connection_stays_small() {
        let size = std::mem::size_of::<Connection>();
        assert!(size <= 1224, "tcp::Connection is {size} bytes, over 1224");
    }

    /// Delivers everything `from` has to send to `to` at `now`, as the wire would.
    fn deliver(now: Instant, from: &mut Connection, to: &mut Connection) -> usize {
        let mut n = 0;
        while let Some(t) = from.poll_transmit(now) {
            let mut buf = vec![0u8; t.segment_len()];
            t.write_segment(Some(from), &mut buf, true);
            let p = TcpPacket::new_checked(&buf[..]).expect("valid segment");
            let r = TcpRepr::parse(&p, *t.src.ip(), *t.dst.ip(), &ChecksumCaps::default())
                .expect("checksum and options");
            to.handle_segment(now, *t.src.ip(), &r);
            n += 1;
        }
        n
    }

    /// A churn cycle without loss (connect, 64 bytes each way, the server closes first)
    /// allocates none of the cold state: no rare counters, no undo record.
    #[test]
    fn a_clean_exchange_allocates_no_cold_state() {
        use std::net::Ipv4Addr;
        let cli = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 40000);
        let srv = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        let cfg = Config::default();
        let ms = Instant::from_millis;
        let mut c = Connection::connect(cfg, cli, srv, SeqNumber(1000));
        let syn = c.poll_transmit(ms(0)).expect("SYN").repr;
        let mut s = Connection::accept(cfg, srv, cli, SeqNumber(9000), ms(1), &syn);
        deliver(ms(1), &mut s, &mut c);
        deliver(ms(2), &mut c, &mut s);
        assert_eq!(
            (c.state(), s.state()),
            (State::Established, State::Established)
        );
        assert_eq!(c.send(&[7u8; 64]), Ok(64));
        deliver(ms(3), &mut c, &mut s);
        let mut buf = [0u8; 128];
        assert_eq!(s.recv(&mut buf), Ok(64));
        assert_eq!(s.send(&buf[..64]), Ok(64));
        s.close();
        for t in 4..40 {
            let moved = deliver(ms(t), &mut s, &mut c) + deliver(ms(t), &mut c, &mut s);
            if t == 5 {
                assert_eq!(c.recv(&mut buf), Ok(64));
                c.close();
            }
            if moved == 0 && t > 5 {
                break;
            }
        }
        assert_eq!(s.state(), State::TimeWait);
        assert_eq!(c.state(), State::Closed);
        assert_eq!(
            (s.snd.buf.allocated(), s.rcv.buf.allocated()),
            (0, 0),
            "TIME-WAIT keeps no buffer storage"
        );
        for (name, conn) in [("client", &c), ("server", &s)] {
            assert_eq!(conn.stats.heap_bytes(), 0, "{name}: {:?}", conn.stats());
            assert_eq!(conn.recovery.heap_bytes(), 0, "{name}");
            assert!(conn.stats().segs_in >= 3 && conn.stats().bytes_received == 64);
        }
    }

    #[test]
    fn readable_and_writable_are_queued_once_until_polled() {
        let mut q = EventQueue::default();
        q.push(Event::Readable);
        q.push(Event::Writable);
        q.push(Event::Readable);
        q.push(Event::PeerClosed);
        q.push(Event::Writable);
        assert_eq!(q.pop(), Some(Event::Readable));
        q.push(Event::Readable);
        let rest: Vec<Event> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(rest, [Event::Writable, Event::PeerClosed, Event::Readable]);
    }

    #[test]
    fn reset_for_answers_everything_but_a_reset() {
        let seg = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq: SeqNumber(10),
            ack: SeqNumber(20),
            flags: TcpFlags::ACK,
            window: 9,
            urgent: 0,
            options: TcpOptions::default(),
            payload: b"abc",
        };
        let rst = reset_for(&seg).unwrap();
        assert_eq!((rst.src_port, rst.dst_port), (2, 1));
        assert_eq!((rst.seq, rst.flags), (SeqNumber(20), TcpFlags::RST));
        let syn = TcpRepr {
            flags: TcpFlags::SYN,
            ..seg
        };
        let rst = reset_for(&syn).unwrap();
        assert_eq!((rst.seq, rst.ack), (SeqNumber(0), SeqNumber(14)));
        assert_eq!(
            reset_for(&TcpRepr {
                flags: TcpFlags::RST,
                ..seg
            }),
            None
        );
    }
}
