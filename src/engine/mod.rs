//! The per-core engine: one run-to-completion loop joining a [`PacketIo`] (an AF_XDP socket on
//! one queue) to one sans-IO [`Host`] and its [`NeighCache`]. It is the only code that reads a
//! clock: CLOCK_MONOTONIC since the engine started, as a [`crate::time::Instant`].
//!
//! One [`Engine::poll`] iteration:
//! 0. **forwarded frames** (several engines, [`Engine::with_mesh`]): frames other engines
//!    received for flows this engine owns go through the same receive path first; a frame of
//!    the rx batch whose flow another engine owns ([`RxVerdict::Foreign`]) is copied into the
//!    lane toward it ([`mesh`]).
//! 1. **rx batch**: each frame is parsed in place in its UMEM frame. IPv4 goes to
//!    [`Host::handle_ipv4`] without a copy, and the engine acts on the
//!    [`RxVerdict`] it returns: a TCP segment that parsed and verified
//!    ([`verified_source`](crate::host::RxVerdict::verified_source)) lets its source MAC confirm
//!    or teach the neighbour cache the sender's entry ([`NeighCache::observe_ipv4`], on-link
//!    senders only); anything dropped teaches nothing. ARP goes to [`NeighCache::handle_arp`];
//!    anything else is dropped under a named counter in [`EngineStats`].
//! 2. **timers**: [`Host::handle_timeout`] and [`NeighCache::handle_timeout`] when due; then the
//!    neighbour cache's requests to the kernel: probes for unresolved next hops (while the kernel
//!    owns ARP) and neighbours to hand over (while the stack owns it), served over rtnetlink by
//!    [`KernelTables`] ([`crate::neigh::netlink`]).
//! 3. **application**: the [`App`] gets `&mut Host` and the events drained this iteration.
//! 4. **tx batch**: into each free UMEM frame go, in order, a pending ARP frame
//!    ([`NeighCache::poll_arp`]), a packet released by resolution
//!    ([`NeighCache::poll_released`]), or the next segment: [`Host::poll_transmit`] writes the
//!    IPv4 packet straight into the frame after a 14-byte gap and returns a
//!    [`Tx`](crate::host::Tx) (its length and destination); [`NeighCache::lookup`] picks the next
//!    hop toward `Tx::dst` and its MAC, and the Ethernet header is written in front. A packet
//!    whose next hop is not resolved yet is copied into the hold queue ([`NeighCache::hold`])
//!    and the next segment takes the frame; one with no route is dropped and counted.
//!
//! Busy-poll by default. With [`IdleBackoff`], after `after` iterations in a row that did nothing
//! the engine sleeps in [`PacketIo::wait_rx`] (the socket's `poll`), never past the next deadline.
//!
//! # Copies per byte
//!
//! | direction | copy | why it remains |
//! |---|---|---|
//! | receive | UMEM frame -> connection receive buffer (in `tcp`) | the frame must go back to the fill ring at the end of the rx batch, or the kernel runs out of frames; the application reads later, at its own pace, possibly out of many segments. **None** for the bytes an application that lends ([`App::lends`], [`crate::api::Handler::on_data`]) consumes in place from the frame: in-order bytes that nothing unread precedes are lent before any copy, and only what it leaves is copied. |
//! | receive | receive buffer -> application buffer, only with [`Host::recv`] | none with `Connection::readable` + `consume`, which lend the buffered bytes in place. |
//! | send | application buffer -> connection send buffer ([`Host::send`]) | the bytes must outlive the call until acknowledged: retransmission rebuilds segments from the send buffer. |
//! | send | send buffer -> UMEM frame (`Transmit::write_segment` inside `Host::poll_transmit`) | the frame is lent to the kernel until completion and the segment boundary is chosen at send time; copy mode copies once more inside the kernel. |
//! | send, [`crate::api::TcpStream`] | caller's slice -> message buffer (on the caller's thread) | the bytes must cross to the engine's thread; the connection's send buffer keeps that buffer itself (`Connection::send_owned`), so this replaces the copy into the send buffer. |
//! | receive, [`crate::api::TcpStream`] | receive buffer (or, lent, the frame itself) -> message buffer -> caller's slice | the receive buffer is a ring the engine keeps writing into, so the bytes leave it by a copy; the reader then copies them into its slice. Lent bytes skip the receive buffer: two copies instead of three. |
//!
//! So the stack itself makes at most one copy per byte each way (frame to buffer, buffer to
//! frame), and none on receive for bytes a lending application consumes from the frame (an echo
//! that answers from the lent bytes copies each byte once: frame to send buffer); headers are
//! built and parsed in place. An application thread using a `TcpStream`
//! pays one copy per byte written before the send buffer (the same count as a handler's
//! `Cx::write`) and two per byte read (frame to a message, to its slice), three for bytes that
//! went through the receive buffer (frame to receive buffer, to a message, to its slice);
//! `TcpStream::copies` counts each step. A packet held for neighbour resolution is
//! copied twice more (into the hold queue and out), rare and counted
//! ([`crate::neigh::NeighStats::held_bytes_copied`]). An application may add copies of its own:
//! the echo server of the engine tests (`tests/common/apps.rs`) adds two through a scratch
//! buffer (receive buffer to scratch to send buffer).

pub mod capture;
pub mod cores;
pub mod endpoint;
pub mod mesh;
pub mod snapshot;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::host::{ConnId, Host, RxVerdict};
use crate::io::{PacketIo, RxPass};
use crate::neigh::{Lookup, NeighCache};
use crate::tcp::{Connection, Event};
use crate::time::Instant;
use crate::wire::{
    ethernet, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame, EthernetRepr,
};

use crate::neigh::netlink::KernelTables;
use capture::{Active, CaptureRing};
use snapshot::{EngineSnapshot, StatsBoard};
use std::sync::Arc;

/// Sleep when idle instead of spinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleBackoff {
    /// Empty iterations in a row before sleeping.
    pub after: u32,
    /// Longest single sleep.
    pub max_sleep: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Frames taken per rx batch.
    pub rx_batch: usize,
    /// Frames offered per tx batch.
    pub tx_batch: usize,
    /// `None`: busy-poll.
    pub idle: Option<IdleBackoff>,
    /// From this many connections on, a receive batch is looked at twice before it is handled
    /// ([`PacketIo::recv_batch_ahead`]): the first pass starts loading each frame's flow-table
    /// line, the second its connection, so the batch's cache and TLB misses overlap. Below it
    /// the host's state is in cache and the passes would only cost instructions (about 50 a
    /// frame). `usize::MAX`: never.
    pub prefetch_above: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            rx_batch: 64,
            tx_batch: 64,
            idle: None,
            // a slot is ~2 KiB: 4096 connections are 8 MiB, past a core's L2
            prefetch_above: 4096,
        }
    }
}

/// Per-engine counters. Drops are counted by reason; the host and the neighbour cache keep
/// their own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub iterations: u64,
    pub idle_sleeps: u64,
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_ipv4: u64,
    pub rx_arp: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    pub tx_ipv4: u64,
    pub tx_arp: u64,
    /// Packets sent after waiting for neighbour resolution.
    pub tx_released: u64,
    pub events: u64,
    /// Kernel neighbour look-ups that failed (netlink errors).
    pub kernel_probe_errors: u64,
    /// Kernel probes with no netlink socket to serve them.
    pub kernel_probe_unserved: u64,
    /// Neighbours the stack learned from ARP (it owns ARP) that the kernel refused, or that no
    /// netlink socket could hand over.
    pub kernel_update_errors: u64,
    pub kernel_update_unserved: u64,
    pub drop_truncated: u64,
    /// Unicast to another MAC.
    pub drop_not_our_mac: u64,
    pub drop_bad_arp: u64,
    pub drop_ipv6: u64,
    pub drop_ethertype: u64,
    /// Outgoing packets with no route to their destination.
    pub drop_no_route: u64,
    /// Frames received for a flow another engine owns, handed to it ([`mesh`]).
    pub forwarded_out: u64,
    /// Frames another engine handed to this one.
    pub forwarded_in: u64,
    /// Frames for another engine dropped: its lane was full, or there is no mesh.
    pub drop_forward: u64,
    /// Frames received or sent that went to a running capture ([`capture`]).
    pub capture_queued: u64,
    /// Frames a running capture missed: its queue was full.
    pub capture_dropped: u64,
}

impl EngineStats {
    pub fn rx_dropped(&self) -> u64 {
        self.drop_truncated
            + self.drop_not_our_mac
            + self.drop_bad_arp
            + self.drop_ipv6
            + self.drop_ethertype
            + self.drop_forward
    }
}

/// The application side of an engine: run to completion inside the loop, on the engine's core.
pub trait App {
    /// Called once per iteration, after reception and timers, with the events drained from the
    /// host this iteration (often none). Returns how much work it did (0 = idle), which keeps
    /// the engine from backing off while the application is busy.
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize;

    /// Whether [`App::on_payload`] takes received payload in place (zero-copy receive). When
    /// false (the default) every received byte is copied into its connection's receive buffer
    /// and announced by [`Event::Readable`]. Asked for every received frame: keep it cheap.
    fn lends(&self) -> bool {
        false
    }

    /// Only if [`App::lends`]: in-order payload for `conn`, lent during the receive batch
    /// straight from the received frame, with the connection to answer on
    /// ([`Connection::send`] queues a reply at once). Returns how many bytes it consumed; the
    /// rest is copied into the receive buffer and announced by a `Readable` event, as without
    /// lending. Called only for bytes nothing unread precedes, on the established fast path
    /// (see [`Host::handle_ipv4_lending`]), before the events of the iteration reach
    /// [`App::poll`]; the slice cannot outlive the call, so no frame stays lent.
    fn on_payload(&mut self, now: Instant, conn: ConnId, c: &mut Connection, data: &[u8]) -> usize {
        let _ = (now, conn, c, data);
        0
    }
}

/// No application: the host still answers (RST for strays, listeners' handshakes).
impl App for () {
    fn poll(&mut self, _: Instant, _: &mut Host, _: &[(ConnId, Event)]) -> usize {
        0
    }
}

impl<F: FnMut(Instant, &mut Host, &[(ConnId, Event)]) -> usize> App for F {
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        self(now, host, events)
    }
}

pub struct Engine<P: PacketIo, A: App> {
    io: P,
    core: Core,
    app: A,
    kernel: Option<KernelTables>,
    cfg: EngineConfig,
    /// CLOCK_MONOTONIC when the engine started, in nanoseconds.
    origin: u64,
    events: Vec<(ConnId, Event)>,
    empty_iterations: u32,
    /// `cfg.idle`'s longest sleep in nanoseconds, so an empty iteration works out its sleep in
    /// integers.
    max_sleep_ns: u64,
    /// Where snapshots are asked for, and the queue they report.
    board: Option<(Arc<StatsBoard>, u32)>,
    /// Lanes to and from the other engines of a multi-queue stack.
    mesh: Option<Box<mesh::Mesh>>,
    /// Where a running capture goes, and Unix time at `origin` in nanoseconds.
    capture: Option<(Arc<CaptureRing>, u64)>,
}

/// What the per-frame calls ([`receive`], [`transmit`]) use, with the time of the iteration: in
/// one place so each call passes one pointer, not the eight arguments it took (part of them on
/// the stack), and a batch's closure captures it once. Not generic (the application is passed
/// beside it): a generic `transmit` kept `Host::poll_transmit` and `NeighCache::lookup` out of
/// line (~50 instructions a frame).
struct Core {
    now: Instant,
    host: Host,
    neigh: NeighCache,
    stats: EngineStats,
}

impl<P: PacketIo, A: App> Engine<P, A> {
    /// The clock starts now. Panics if a transmit frame cannot hold the host's largest packet
    /// (its MTU, `tcp.mss + 40`: every segment's options come out of its payload) behind an
    /// Ethernet header (a configuration error).
    pub fn new(io: P, host: Host, neigh: NeighCache, app: A, cfg: EngineConfig) -> Self {
        let need = ethernet::HEADER_LEN + usize::from(host.config().mtu());
        assert!(
            io.frame_capacity() >= need,
            "frame capacity {} < {need} (Ethernet + the MTU)",
            io.frame_capacity()
        );
        let origin = monotonic_nanos();
        Engine {
            io,
            core: Core {
                now: Instant::from_nanos(0),
                host,
                neigh,
                stats: EngineStats::default(),
            },
            app,
            kernel: None,
            cfg,
            origin,
            events: Vec::with_capacity(256),
            empty_iterations: 0,
            max_sleep_ns: cfg.idle.map_or(0, |i| {
                u64::try_from(i.max_sleep.as_nanos()).unwrap_or(u64::MAX)
            }),
            board: None,
            mesh: None,
            capture: None,
        }
    }

    /// Serves kernel probes of the neighbour cache (needed while the kernel owns ARP).
    pub fn with_kernel(mut self, kernel: KernelTables) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Publishes [`EngineSnapshot`]s of queue `queue` on `board` when asked (see
    /// [`snapshot`]).
    pub fn with_stats_board(mut self, board: Arc<StatsBoard>, queue: u32) -> Self {
        self.board = Some((board, queue));
        self
    }

    /// Copies the frames this engine receives and sends into `ring` while a capture runs on it
    /// (see [`capture`]), stamped with this engine's clock as Unix time.
    pub fn with_capture(mut self, ring: Arc<CaptureRing>) -> Self {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let since_origin = monotonic_nanos().saturating_sub(self.origin);
        self.capture = Some((ring, unix.saturating_sub(since_origin)));
        self
    }

    /// Everything this engine counts, now.
    pub fn snapshot(&self, queue: u32) -> EngineSnapshot {
        EngineSnapshot::take(
            queue,
            std::time::Duration::from_nanos(monotonic_nanos().saturating_sub(self.origin)),
            &self.core.stats,
            &self.core.host,
            self.core.neigh.stats(),
            self.io.device_stats(),
        )
    }

    #[cold]
    #[inline(never)]
    fn publish(&self) {
        if let Some((board, queue)) = &self.board {
            board.serve(|| self.snapshot(*queue));
        }
    }

    /// Joins the engine to its peers: frames whose flows another engine owns (the host's
    /// [`Host::set_steering`]) go to it through `mesh`, and frames they forward come in.
    pub fn with_mesh(mut self, mesh: mesh::Mesh) -> Self {
        self.mesh = Some(Box::new(mesh));
        self
    }

    /// Time since the engine started.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(monotonic_nanos().saturating_sub(self.origin))
    }

    pub fn host(&self) -> &Host {
        &self.core.host
    }
    pub fn host_mut(&mut self) -> &mut Host {
        &mut self.core.host
    }
    pub fn neigh(&self) -> &NeighCache {
        &self.core.neigh
    }
    pub fn neigh_mut(&mut self) -> &mut NeighCache {
        &mut self.core.neigh
    }
    pub fn app(&self) -> &A {
        &self.app
    }
    pub fn app_mut(&mut self) -> &mut A {
        &mut self.app
    }
    pub fn io(&self) -> &P {
        &self.io
    }
    pub fn io_mut(&mut self) -> &mut P {
        &mut self.io
    }
    pub fn stats(&self) -> &EngineStats {
        &self.core.stats
    }
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn into_parts(self) -> (P, Host, NeighCache, A) {
        (self.io, self.core.host, self.core.neigh, self.app)
    }

    /// Polls until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.poll();
        }
    }

    /// One iteration (see the module docs). Returns the work done: frames received and sent
    /// plus the application's own count; 0 means the iteration was idle.
    // Never inlined: `deploy/profile` counts instructions inside this function only.
    #[inline(never)]
    pub fn poll(&mut self) -> usize {
        let now = self.now();
        self.io.set_time(now);
        let Engine {
            io,
            core,
            app,
            kernel,
            cfg,
            events,
            mesh,
            capture,
            ..
        } = self;
        core.now = now;
        core.stats.iterations += 1;
        // the only cost while no capture runs: one relaxed load per iteration
        let cap = match capture {
            Some((ring, epoch)) if ring.is_on() => capturing(ring, *epoch, now),
            _ => None,
        };

        // Frames other engines forwarded came in before this batch: take them first.
        let mut work = 0;
        if let Some(m) = mesh.as_deref_mut() {
            if m.has_inbound() {
                let n = m.drain(cfg.rx_batch, |frame| receive(core, app, frame, None));
                core.stats.forwarded_in += n as u64;
                work += n;
            }
        }
        work += if core.host.conn_count() >= cfg.prefetch_above {
            io.recv_batch_ahead(cfg.rx_batch, 2, |frame, pass| match pass {
                RxPass::Ahead(p) => prefetch(frame, &core.host, p),
                RxPass::Handle => {
                    if let Some((ring, active, ts)) = cap {
                        record(ring, active, ts, frame, &mut core.stats);
                    }
                    receive(core, app, frame, mesh.as_deref_mut())
                }
            })
        } else {
            io.recv_batch(cfg.rx_batch, |frame| {
                if let Some((ring, active, ts)) = cap {
                    record(ring, active, ts, frame, &mut core.stats);
                }
                receive(core, app, frame, mesh.as_deref_mut())
            })
        };

        let Core {
            host, neigh, stats, ..
        } = &mut *core;
        // not `poll_timeout`, which is due at once whenever output waits (sent below anyway)
        if host.next_timer().is_some_and(|t| t <= now) {
            host.handle_timeout(now);
        }
        if neigh.poll_timeout().is_some_and(|t| t <= now) {
            neigh.handle_timeout(now);
        }
        while let Some((ip, mac)) = neigh.poll_kernel_update() {
            match kernel {
                Some(k) => {
                    if k.set_neighbour(ip, mac).is_err() {
                        stats.kernel_update_errors += 1;
                    }
                }
                None => stats.kernel_update_unserved += 1,
            }
        }
        while let Some(ip) = neigh.poll_kernel_probe() {
            match kernel {
                Some(k) => {
                    if k.probe(now, neigh, ip).is_err() {
                        stats.kernel_probe_errors += 1;
                    }
                }
                None => stats.kernel_probe_unserved += 1,
            }
        }

        events.clear();
        host.take_events(events);
        stats.events += events.len() as u64;
        work += events.len();
        work += app.poll(now, host, events);

        // lending a UMEM frame and taking it back costs more than the whole protocol work of an
        // idle iteration: only offer frames when something may be sent
        let sent = if host.has_output() || neigh.has_output() {
            // each frame says whether more waits (exactly the queues `transmit` takes from), so
            // the device lends no buffer only to get it back unused (~100 instructions a batch)
            let mut resolved = None;
            io.send_batch_hinted(cfg.tx_batch, |buf| {
                let n = transmit(core, buf, &mut resolved)?;
                core.stats.tx_bytes += n as u64;
                if let Some((ring, active, ts)) = cap {
                    record(ring, active, ts, &buf[..n], &mut core.stats);
                }
                Some((n, core.host.has_output() || core.neigh.has_output()))
            })
        } else {
            0
        };
        core.stats.tx_frames += sent as u64;
        work += sent;

        if self.board.as_ref().is_some_and(|(b, _)| b.pending()) {
            self.publish();
        }
        if work > 0 {
            self.empty_iterations = 0;
        } else {
            self.empty_iterations = self.empty_iterations.saturating_add(1);
            self.idle(now);
        }
        work
    }

    // Never inlined: called exactly once per empty iteration, so a profile's call count of it
    // is the number of iterations that found nothing.
    #[inline(never)]
    fn idle(&mut self, now: Instant) {
        let Some(idle) = self.cfg.idle else {
            return;
        };
        if self.empty_iterations < idle.after {
            return;
        }
        let deadline = match (
            self.core.host.poll_timeout(),
            self.core.neigh.poll_timeout(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut sleep = self.max_sleep_ns;
        if let Some(t) = deadline {
            sleep = sleep.min(t.saturating_since(now).as_nanos());
        }
        if sleep == 0 {
            return;
        }
        if let Some(m) = &self.mesh {
            if !m.may_sleep() {
                return;
            }
        }
        self.core.stats.idle_sleeps += 1;
        self.io.wait_rx(std::time::Duration::from_nanos(sleep));
        if let Some(m) = &self.mesh {
            m.woke();
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock `std::time::Instant` reads, without its
/// `Timespec` subtraction and `u128` conversion (a fifth of an empty iteration's instructions).
fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "CLOCK_MONOTONIC is always available on Linux");
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The running capture, and this iteration's time stamp for it.
#[cold]
#[inline(never)]
fn capturing(ring: &CaptureRing, epoch: u64, now: Instant) -> Option<(&CaptureRing, Active, u64)> {
    ring.active().map(|a| (ring, a, epoch + now.as_nanos()))
}

/// Hands one frame to a running capture.
#[cold]
#[inline(never)]
fn record(ring: &CaptureRing, active: Active, ts: u64, frame: &[u8], stats: &mut EngineStats) {
    if ring.push(active, ts, frame) {
        stats.capture_queued += 1;
    } else {
        stats.capture_dropped += 1;
    }
}

/// A look-ahead pass over a received frame (see [`EngineConfig::prefetch_above`]): pass 0
/// starts loading its flow-table line ([`Host::prefetch_ipv4`]), later passes its connection
/// ([`Host::prefetch_ipv4_conn`]). Changes nothing; anything but an IPv4 frame is ignored.
#[inline]
fn prefetch(frame: &[u8], host: &Host, pass: u8) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    if eth.ethertype() != EtherType::Ipv4 {
        return;
    }
    if pass == 0 {
        host.prefetch_ipv4(eth.payload());
    } else {
        host.prefetch_ipv4_conn(eth.payload());
    }
}

/// A verified segment confirms its source's neighbour entry ([`NeighCache::observe_ipv4`],
/// whose case of the peer of the moment is a comparison inlined here).
// Never inlined: `deploy/profile` counts received frames by its calls.
#[inline(never)]
fn receive<A: App>(core: &mut Core, app: &mut A, frame: &[u8], mesh: Option<&mut mesh::Mesh>) {
    let Core {
        now,
        host,
        neigh,
        stats,
    } = core;
    let now = *now;
    let mac = neigh.config().mac;
    stats.rx_frames += 1;
    stats.rx_bytes += frame.len() as u64;
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        stats.drop_truncated += 1;
        return;
    };
    let dst = eth.dst_addr();
    if dst != mac && !dst.is_broadcast() {
        stats.drop_not_our_mac += 1;
        return;
    }
    match eth.ethertype() {
        EtherType::Ipv4 => {
            stats.rx_ipv4 += 1;
            let verdict = if app.lends() {
                let mut sink =
                    |id: ConnId, c: &mut Connection, d: &[u8]| app.on_payload(now, id, c, d);
                host.handle_ipv4_lending(now, eth.payload(), Some(&mut sink))
            } else {
                host.handle_ipv4(now, eth.payload())
            };
            match verdict {
                // Another engine owns the flow; a forwarded frame is never forwarded again.
                RxVerdict::Foreign { owner } => {
                    if mesh.is_some_and(|m| m.forward(owner, frame)) {
                        stats.forwarded_out += 1;
                    } else {
                        stats.drop_forward += 1;
                    }
                }
                // Only a segment that parsed and verified may teach the cache a MAC.
                v => {
                    if let Some(src) = v.verified_source() {
                        neigh.observe_ipv4(now, src, eth.src_addr());
                    }
                }
            }
        }
        EtherType::Arp => {
            stats.rx_arp += 1;
            match ArpPacket::new_checked(eth.payload()).and_then(|p| ArpRepr::parse(&p)) {
                Ok(repr) => neigh.handle_arp(now, &repr),
                Err(_) => stats.drop_bad_arp += 1,
            }
        }
        EtherType::Ipv6 => stats.drop_ipv6 += 1,
        EtherType::Unknown(_) => stats.drop_ethertype += 1,
    }
}

/// Fills one transmit frame; `None` when there is nothing to send.
///
/// `resolved` is the last destination [`NeighCache::lookup`] found ready in this tx batch, and
/// its MAC: asking again, at the same `now`, would return the same and change nothing (the
/// entry's use is stamped `now` already, a stale one is probing already), so the segments of a
/// batch to one peer pay for one look-up (~100 instructions a frame). Holding a packet may
/// evict entries to make room, so it forgets `resolved`.
// Never inlined: `deploy/profile` counts sent frames by its calls.
#[inline(never)]
fn transmit(
    core: &mut Core,
    buf: &mut [u8],
    resolved: &mut Option<(Ipv4Addr, EthernetAddress)>,
) -> Option<usize> {
    let Core {
        now,
        host,
        neigh,
        stats,
    } = core;
    let now = *now;
    // exactly the queues the two polls below take from: one check per frame instead of two
    // calls that find nothing (~70 instructions a frame)
    if neigh.has_output() {
        if let Some(n) = neigh.poll_arp(buf) {
            stats.tx_arp += 1;
            return Some(n);
        }
        if let Some(n) = neigh.poll_released(buf) {
            stats.tx_released += 1;
            return Some(n);
        }
    }
    let (header, body) = buf.split_at_mut(ethernet::HEADER_LEN);
    loop {
        let tx = host.poll_transmit(now, body)?;
        let dst_mac = match *resolved {
            Some((ip, m)) if ip == tx.dst => m,
            _ => match neigh.lookup(now, tx.dst) {
                Lookup::Ready(m) => {
                    *resolved = Some((tx.dst, m));
                    m
                }
                Lookup::Pending(hop) => {
                    neigh.hold(now, hop, &body[..tx.len]);
                    *resolved = None;
                    continue;
                }
                Lookup::NoRoute => {
                    stats.drop_no_route += 1;
                    continue;
                }
            },
        };
        EthernetRepr {
            src_addr: neigh.config().mac,
            dst_addr: dst_mac,
            ethertype: EtherType::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut *header));
        stats.tx_ipv4 += 1;
        return Some(ethernet::HEADER_LEN + tx.len);
    }
}
