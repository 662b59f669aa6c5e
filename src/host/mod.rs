//! A host: one IPv4 address, its connections keyed by 4-tuple, its listen table, and the
//! framing between IPv4 packets and TCP segments. Sans-IO like the connections it holds.
//!
//! Inputs: [`Host::handle_ipv4`] for each received packet, [`Host::handle_timeout`] when
//! [`Host::poll_timeout`] is due, and application calls ([`Host::connect`], [`Host::listen`],
//! [`Host::accept`], [`Host::with_conn`] and the wrappers around it). Outputs:
//! [`Host::poll_transmit`], which writes whole IPv4 packets into the caller's buffer, and
//! [`Host::poll_event`].
//!
//! Both directions report what they did, so the caller never re-derives it from the bytes:
//! `handle_ipv4` returns an [`RxVerdict`] (delivered, and from which source, or dropped and
//! why: every drop is also counted in [`HostStats`] under its [`DropReason`]), and
//! `poll_transmit` returns a [`Tx`] (the packet's length and destination, from which the
//! caller chooses the next hop).
//!
//! Only connections that something happened to are visited: every input or application call
//! puts the connection on a ready queue, and `poll_transmit` drains just that queue. Every
//! timer of every connection lives in one hierarchical [`TimerWheel`], keyed by (connection,
//! timer kind); after a connection is visited its deadlines are compared with what the wheel
//! holds and only changes are written. No call scans every connection.
//!
//! The interface's MTU is `cfg.tcp.mss + 40` ([`HostConfig::set_mtu`]): no packet the host
//! writes is longer. What ICMP taught about narrower paths is kept per destination in a
//! [`PmtuCache`], and new connections start from it.
//!
//! Beside this file: `input.rs` (received packets: checks, demultiplexing, zero-copy lending),
//! `emit.rs` (a segment written into an outgoing frame), `icmp.rs` (ICMP errors to connections,
//! path MTU discovery), `listen.rs`
//! (listening ports and their backlog), `pmtu.rs` (the path MTU cache), `slots.rs` (the slot
//! table, connection handles and the ready queue), `stats.rs` (counters and drop reasons).

mod cookie;
mod counters;
mod emit;
mod flows;
mod icmp;
mod input;
mod limits;
mod listen;
mod pmtu;
mod prefetch;
mod slots;
mod stats;
mod strays;
#[cfg(test)]
mod tests;

pub use counters::TcpCounters;
pub use icmp::unreachable_error;
pub use input::HostSink;
pub use limits::{Limits, SharedBudget, PUBLISH_STEP};
pub use pmtu::PmtuCache;
pub use slots::ConnId;
pub use stats::{DropReason, HostStats};

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use crate::rss::FlowSteer;
use crate::tcp::{
    self, cookie::CookieJar, isn::IsnGenerator, Connection, Event, TimerKind, Transmit,
};
use crate::time::{Duration, Instant};
use crate::timer::TimerWheel;
use crate::wire::{ipv4, ChecksumCaps, IpProtocol, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};
use emit::emit_segment;
use flows::FlowTable;
use listen::Listener;
use slots::{flow_key, Slot};

const KINDS: usize = TimerKind::ALL.len();

/// Most replies to segments of no connection (RSTs, SYN cookies) waiting to be sent: a flood of
/// such segments costs bounded memory, the excess is counted in
/// [`HostStats::strays_dropped`].
pub const STRAY_LIMIT: usize = 4096;

/// What [`Host::handle_ipv4`] did with a packet. Every packet gets exactly one verdict, and a
/// `Refused` or `Dropped` one is also counted under its [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxVerdict {
    /// A TCP segment from `src` that parsed and verified went to its connection, or started
    /// one on a listener.
    Delivered { src: Ipv4Addr },
    /// A TCP segment from `src` that parsed and verified, but nothing took it: no connection
    /// (answered by RST unless it was one or, sent to a listening port, carried no ACK), or a
    /// listener's backlog is full.
    Refused { src: Ipv4Addr, reason: DropReason },
    /// An ICMP error went to the connection whose segment it quotes.
    IcmpError,
    /// The packet did not parse or verify, or is not for us.
    Dropped(DropReason),
    /// A TCP segment (or an ICMP error quoting one) for no connection of ours whose flow
    /// another engine owns ([`Host::set_steering`]): nothing was done with it; the caller hands
    /// the frame to engine `owner`.
    Foreign { owner: u32 },
}

impl RxVerdict {
    /// The source of a TCP segment that parsed and verified, taken or refused: a host really
    /// sent it (its checksum held), so its link-layer source may be learned. `None` for ICMP
    /// and anything dropped before the TCP checksum was verified.
    #[inline]
    pub fn verified_source(&self) -> Option<Ipv4Addr> {
        match *self {
            RxVerdict::Delivered { src } | RxVerdict::Refused { src, .. } => Some(src),
            RxVerdict::IcmpError | RxVerdict::Dropped(_) | RxVerdict::Foreign { .. } => None,
        }
    }
}

/// The IPv4 packet [`Host::poll_transmit`] wrote at the start of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tx {
    /// Length of the whole packet, IPv4 header included.
    pub len: usize,
    /// The destination in its IPv4 header: the caller picks the next hop toward it.
    pub dst: Ipv4Addr,
}

#[derive(Debug, Clone, Copy)]
pub struct HostConfig {
    pub addr: Ipv4Addr,
    pub tcp: tcp::Config,
    pub checksum: ChecksumCaps,
    /// Local ports for active opens, inclusive.
    pub ephemeral_ports: (u16, u16),
    pub ttl: u8,
    /// Granularity of the timer wheel: timers fire at most this late.
    pub timer_tick: Duration,
    /// Bounds on connections, TIME-WAIT entries, orphans and memory.
    pub limits: Limits,
}

impl HostConfig {
    /// The interface's MTU: the longest IPv4 packet the host sends.
    pub fn mtu(&self) -> u16 {
        self.tcp.mss.saturating_add(40)
    }

    /// Sets the interface's MTU: the MSS advertised and the largest packet sent follow it
    /// (`tcp.mss` = MTU - 40; `tcp.mss_clamp` still applies). Panics below 576 (RFC 791's
    /// least datagram every host must accept; IPv4 links carry at least 576).
    pub fn set_mtu(&mut self, mtu: u16) {
        assert!(mtu >= 576, "MTU {mtu} below 576");
        self.tcp.mss = mtu - 40;
    }

    pub fn new(addr: Ipv4Addr) -> Self {
        HostConfig {
            addr,
            tcp: tcp::Config::default(),
            checksum: ChecksumCaps::default(),
            ephemeral_ports: (32768, 60999),
            ttl: ipv4::DEFAULT_TTL,
            timer_tick: Duration::from_micros(100),
            limits: Limits::default(),
        }
    }
}

pub struct Host {
    cfg: HostConfig,
    /// `cfg.tcp` behind one pointer that new connections share instead of each a copy;
    /// replaced whenever `cfg.tcp` changes (`set_mtu`, `set_tcp_config`).
    tcp: Arc<tcp::Config>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    table: FlowTable,
    listeners: HashMap<u16, Listener, ahash::RandomState>,
    ready: VecDeque<u32>,
    wheel: TimerWheel,
    /// Connections with timers that fired, during [`Host::handle_timeout`].
    fired: Vec<u32>,
    /// Events not yet taken: those before `events_head` were polled already. A vector the
    /// engine swaps with its own each iteration ([`Host::take_events`]) rather than a queue
    /// each event is popped from and pushed again.
    events: Vec<(ConnId, Event)>,
    events_head: usize,
    strays: VecDeque<(Ipv4Addr, TcpRepr<'static>)>,
    /// Connection segments sent while a stray waited, since the last stray ([`STRAY_AFTER`]).
    ahead_of_strays: u32,
    pmtu: PmtuCache,
    isn: IsnGenerator,
    cookies: CookieJar,
    next_port: u16,
    /// Flow ownership among engines, and which engine this host is (`None`: it owns every flow).
    steer: Option<(std::sync::Arc<FlowSteer>, u32)>,
    stats: HostStats,
    /// What `limits.rs` accounts: memory of all connections, TIME-WAIT entries (and their
    /// order), orphans.
    mem_used: usize,
    /// `cfg.limits.pressure_mark()`, computed once (read after every visit).
    pressure_mark: usize,
    time_wait: usize,
    tw_fifo: VecDeque<ConnId>,
    orphans: usize,
    /// This host's part of a budget shared with the other engines of its stack, if any.
    shared: Option<limits::BudgetShare>,
}

impl Host {
    pub fn new(cfg: HostConfig) -> Self {
        Host {
            tcp: Arc::new(cfg.tcp),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            table: FlowTable::default(),
            listeners: HashMap::default(),
            ready: VecDeque::new(),
            wheel: TimerWheel::new(Instant::ZERO, cfg.timer_tick),
            fired: Vec::new(),
            events: Vec::new(),
            events_head: 0,
            strays: VecDeque::new(),
            ahead_of_strays: 0,
            pmtu: PmtuCache::default(),
            isn: IsnGenerator::new(&cfg.tcp.secret, cfg.tcp.secret_rekey),
            cookies: CookieJar::new(&cfg.tcp.secret, cfg.tcp.secret_rekey),
            next_port: cfg.ephemeral_ports.0,
            steer: None,
            stats: HostStats::default(),
            mem_used: 0,
            pressure_mark: cfg.limits.pressure_mark(),
            time_wait: 0,
            tw_fifo: VecDeque::new(),
            orphans: 0,
            shared: None,
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.cfg.addr
    }

    pub fn config(&self) -> &HostConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// What the host knows of narrower paths than its interface (RFC 1191).
    pub fn pmtu_cache(&mut self) -> &mut PmtuCache {
        &mut self.pmtu
    }

    /// Changes the interface's MTU for connections opened from now on (see
    /// [`HostConfig::set_mtu`]); the engine calls it with the MTU it read from the interface.
    pub fn set_mtu(&mut self, mtu: u16) {
        self.cfg.set_mtu(mtu);
        self.tcp = Arc::new(self.cfg.tcp);
    }

    /// Every connection held, in slot order. Visits them all: for snapshots on request
    /// ([`TcpCounters::of`], the inspector), never on the data path.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &Connection)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let id = ConnId {
                index: i as u32,
                generation: s.generation,
            };
            s.conn.as_ref().map(|c| (id, c))
        })
    }

    /// Makes this host engine `me` of several that share an address, each owning the flows
    /// `steer` assigns it: a segment for no connection of ours whose flow another engine owns
    /// gets [`RxVerdict::Foreign`] instead of an RST or a listener's handshake, and active
    /// opens choose source ports whose flows land on `me`.
    pub fn set_steering(&mut self, steer: std::sync::Arc<FlowSteer>, me: u32) {
        self.steer = Some((steer, me));
    }

    /// The engine owning the flow between `local_port` and `remote`, if not this one.
    #[inline]
    fn foreign_owner(&self, remote: SocketAddrV4, local_port: u16) -> Option<u32> {
        let (steer, me) = self.steer.as_ref()?;
        let owner = steer.owner(*remote.ip(), remote.port(), local_port);
        (owner != *me).then_some(owner)
    }

    /// Connections currently held (any state but freed).
    pub fn conn_count(&self) -> usize {
        self.table.len()
    }

    /// Active open to `remote` from an ephemeral port (with steering, one whose flow this
    /// engine owns).
    pub fn connect(&mut self, now: Instant, remote: SocketAddrV4) -> Result<ConnId, tcp::Error> {
        let (lo, hi) = self.cfg.ephemeral_ports;
        if let Some((steer, me)) = self.steer.clone() {
            let (listeners, table) = (&self.listeners, &self.table);
            let port = steer
                .choose_port(
                    me,
                    *remote.ip(),
                    remote.port(),
                    (lo, hi),
                    self.next_port,
                    |p| !listeners.contains_key(&p) && !table.contains_key(flow_key(remote, p)),
                )
                .ok_or(tcp::Error::WouldBlock)?;
            self.next_port = if port >= hi { lo } else { port + 1 };
            return Ok(self.connect_from(now, port, remote));
        }
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= hi { lo } else { port + 1 };
            if self.listeners.contains_key(&port) || self.table.contains_key(flow_key(remote, port))
            {
                continue;
            }
            if self.admit_new().is_err() {
                return Err(tcp::Error::WouldBlock);
            }
            return Ok(self.connect_from(now, port, remote));
        }
        Err(tcp::Error::WouldBlock)
    }

    /// Active open to `remote` from a local port the caller chose (a port it bound, as
    /// bind(2) then connect(2)); `None` if a listener holds the port or a connection already
    /// has this 4-tuple.
    pub fn connect_from_port(
        &mut self,
        now: Instant,
        port: u16,
        remote: SocketAddrV4,
    ) -> Option<ConnId> {
        if self.listeners.contains_key(&port) || self.table.contains_key(flow_key(remote, port)) {
            return None;
        }
        self.admit_new().ok()?;
        Some(self.connect_from(now, port, remote))
    }

    /// Sets the TCP settings that connections opened from now on start with (active opens and
    /// the SYNs a listener takes); open connections keep theirs. Lets a caller give each socket
    /// its own options (TCP_MAXSEG, buffer sizes, Nagle) before it connects or a SYN reaches
    /// its listener. The secrets (initial sequence numbers, timestamp offsets, SYN cookies) keep
    /// the key the host started with, whatever `tcp.secret` holds.
    pub fn set_tcp_config(&mut self, tcp: tcp::Config) {
        self.cfg.tcp = tcp::Config {
            secret: self.cfg.tcp.secret,
            secret_rekey: self.cfg.tcp.secret_rekey,
            ..tcp
        };
        self.tcp = Arc::new(self.cfg.tcp);
    }

    fn connect_from(&mut self, now: Instant, port: u16, remote: SocketAddrV4) -> ConnId {
        let local = SocketAddrV4::new(self.cfg.addr, port);
        let iss = self.isn.generate(now, local, remote);
        let mut conn = Connection::connect(self.tcp.clone(), local, remote, iss);
        self.start_path(now, &mut conn);
        let id = self.insert(conn, None);
        self.stats.conns_opened += 1;
        id
    }

    /// Runs `f` on the connection and then schedules whatever it caused (segments, timers,
    /// events). `None` if the handle is stale.
    pub fn with_conn<R>(&mut self, id: ConnId, f: impl FnOnce(&mut Connection) -> R) -> Option<R> {
        let pressure = self.under_memory_pressure();
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let conn = slot.conn.as_mut()?;
        if pressure || slot.send_clamped.is_some() {
            // no write grows a connection under memory pressure (limits.rs)
            limits::clamp_send(
                conn,
                &mut slot.send_clamped,
                pressure,
                &mut self.stats.send_buffers_clamped,
            );
        }
        let r = f(conn);
        self.touch(id.index);
        Some(r)
    }

    /// The connection with this 4-tuple (our address, `local_port`, `remote`), if any: the same
    /// hash-table look-up every received segment goes through.
    pub fn lookup(&self, remote: SocketAddrV4, local_port: u16) -> Option<ConnId> {
        let index = self.table.get(flow_key(remote, local_port))?;
        let slot = &self.slots[index as usize];
        slot.conn.as_ref().map(|_| ConnId {
            index,
            generation: slot.generation,
        })
    }

    /// Read-only view of a connection.
    pub fn conn(&self, id: ConnId) -> Option<&Connection> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_ref()
    }

    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, tcp::Error> {
        self.with_conn(id, |c| c.send(data))
            .unwrap_or(Err(tcp::Error::NotConnected))
    }

    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, tcp::Error> {
        self.with_conn(id, |c| c.recv(buf))
            .unwrap_or(Err(tcp::Error::NotConnected))
    }

    /// Closes like close(2): FIN after queued data, and the handle is given up (the connection
    /// lingers through FIN-WAIT/TIME-WAIT on its own; FIN-WAIT-2 for at most
    /// [`tcp::Config::fin_timeout`]).
    pub fn close(&mut self, id: ConnId) {
        self.release_with(id, |c| {
            c.close();
            c.orphan();
        });
        let lingers = self
            .conn(id)
            .is_some_and(|c| !c.is_closed() && c.state() != tcp::State::TimeWait);
        if lingers && !self.admit_orphan(id.index) {
            self.with_conn(id, Connection::abort);
        }
    }

    /// Resets the connection and gives up the handle.
    pub fn abort(&mut self, id: ConnId) {
        self.release_with(id, Connection::abort);
    }

    fn release_with(&mut self, id: ConnId, f: fn(&mut Connection)) {
        if let Some(slot) = self.slots.get_mut(id.index as usize) {
            if slot.generation == id.generation && slot.conn.is_some() {
                slot.released = true;
                self.with_conn(id, f);
            }
        }
    }

    pub fn poll_event(&mut self) -> Option<(ConnId, Event)> {
        let ev = *self.events.get(self.events_head)?;
        self.events_head += 1;
        if self.events_head == self.events.len() {
            self.events.clear();
            self.events_head = 0;
        }
        Some(ev)
    }

    /// Appends every event not yet polled to `out`, in order, as [`Host::poll_event`] until
    /// `None` would. Into an empty `out` the two vectors are swapped: nothing is copied.
    #[inline]
    pub fn take_events(&mut self, out: &mut Vec<(ConnId, Event)>) {
        if self.events_head == 0 && out.is_empty() {
            std::mem::swap(&mut self.events, out);
            return;
        }
        out.extend_from_slice(&self.events[self.events_head..]);
        self.events.clear();
        self.events_head = 0;
    }

    /// Writes the next IPv4 packet to send at the start of `buf`; `None` when there is nothing
    /// to send.
    ///
    /// `buf` must hold at least the MTU ([`HostConfig::mtu`]).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Tx> {
        if self.stray_due() {
            return self.poll_stray(buf);
        }
        while let Some(&index) = self.ready.front() {
            let slot = &mut self.slots[index as usize];
            if let Some(conn) = slot.conn.as_mut() {
                // matched by reference: moving the Transmit out of the Option copies it
                if let Some(t) = &conn.poll_transmit(now) {
                    // the connection still held, not looked up again
                    let n = emit_segment(&self.cfg, t, Some(conn), buf);
                    self.stats.tx_packets += 1;
                    self.ahead_of_strays += u32::from(!self.strays.is_empty());
                    // drained: settle it now rather than on the next call, which would poll it
                    // once more only to find nothing (~200 instructions a round trip)
                    if conn.output_drained(now) {
                        self.drained(now, index);
                    }
                    return Some(Tx {
                        len: n,
                        dst: *t.dst.ip(),
                    });
                }
            }
            self.ready.pop_front();
            self.slots[index as usize].in_ready = false;
            self.settle(index);
        }
        // the replies to segments of no connection (cookie SYN-ACKs, resets) after the
        // connections' own output: under a SYN flood an echo goes out ahead of the batch's
        // SYN-ACKs, not behind them (but at most STRAY_AFTER segments ahead of one)
        self.poll_stray(buf)
    }

    /// The connection at the front of the ready queue has nothing more to send
    /// ([`Connection::output_drained`]): out of the queue, its timers settled.
    fn drained(&mut self, now: Instant, index: u32) {
        debug_assert_eq!(self.ready.front(), Some(&index));
        if cfg!(debug_assertions) {
            if let Some(c) = self.slots[index as usize].conn.as_mut() {
                assert!(
                    c.poll_transmit(now).is_none(),
                    "output_drained, yet a segment to send"
                );
            }
        }
        self.ready.pop_front();
        self.slots[index as usize].in_ready = false;
        self.settle(index);
    }

    /// The earliest deadline of any connection (a lower bound for timers far away: the wheel
    /// may wake the caller a few times early before such a timer fires).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.has_output() {
            return Some(Instant::ZERO);
        }
        self.wheel.next_expiry()
    }

    /// The earliest timer's deadline (a lower bound as in `poll_timeout`), leaving out the
    /// pending output that `poll_timeout` reports as due at once: a busy-polling engine sends
    /// that output anyway, and need not run [`Host::handle_timeout`] for it.
    pub fn next_timer(&self) -> Option<Instant> {
        self.wheel.next_expiry()
    }

    /// Whether [`Host::poll_transmit`] may have something to send: a connection was touched or
    /// an RST for a stray segment waits. Cheap; lets a caller skip lending a frame otherwise.
    pub fn has_output(&self) -> bool {
        !self.ready.is_empty() || !self.strays.is_empty()
    }

    /// Runs every timer that is due at `now`: each connection once, with the kinds of its
    /// timers that fired, so it handles them in its own order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, token)) = self.wheel.poll_expired(now) {
            let index = (token / KINDS as u64) as u32;
            let k = (token % KINDS as u64) as usize;
            let slot = &mut self.slots[index as usize];
            slot.timers[k] = None;
            self.stats.timers_fired += 1;
            if let Some(kind) = TimerKind::from_index(k) {
                if slot.fired.is_empty() {
                    self.fired.push(index);
                }
                slot.fired.insert(kind);
            }
        }
        for i in 0..self.fired.len() {
            let index = self.fired[i];
            let slot = &mut self.slots[index as usize];
            let fired = std::mem::take(&mut slot.fired);
            if let Some(conn) = slot.conn.as_mut() {
                conn.handle_timers(now, fired);
            }
            self.touch(index);
        }
        self.fired.clear();
    }

    /// Number of armed timers across all connections.
    pub fn armed_timers(&self) -> usize {
        self.wheel.len()
    }

    /// After a connection's output is drained: bring its timers in the wheel up to date, free
    /// it if finished.
    fn settle(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        if conn.is_closed() && (slot.released || slot.pending_on.is_some()) {
            return self.free_slot(index);
        }
        self.account(index);
        let slot = &mut self.slots[index as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        for kind in conn.take_timer_changes().iter() {
            let k = kind as usize;
            let want = conn.timers().get(kind);
            let have = slot.timers[k];
            slot.timers[k] = match (have, want) {
                (None, None) => continue,
                // The same, or moved later (every segment moves the keep-alive, every ACK the
                // RTO): the wheel keeps the earlier entry, which fires early and is handed to the
                // connection; not due, it counts as changed and is placed again then. The wheel
                // entry, cold when a host holds many connections, is not touched on the
                // segment's path.
                (Some((_, old)), Some(t)) if t >= old => continue,
                (Some((id, _)), Some(t)) if self.wheel.reschedule(id, t) => Some((id, t)),
                (Some((id, _)), None) => {
                    self.wheel.cancel(id);
                    None
                }
                (_, Some(t)) => Some((
                    self.wheel
                        .insert(t, u64::from(index) * KINDS as u64 + k as u64),
                    t,
                )),
            };
        }
    }
}
