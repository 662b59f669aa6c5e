//! Neighbour resolution for IPv4 over Ethernet: the next hop of each destination and its MAC.
//! Sans-IO: no clock, no sockets. The engine feeds it and drains it; [`netlink`], the one part
//! that does I/O, is the engine's window onto the kernel's own tables.
//!
//! The parts, each with its invariants in its own docs:
//! - **Routes** (`routes.rs`) decide the next hop: the destination itself when on-link (inside
//!   a connected prefix, our own subnet always is), else the gateway of the longest matching
//!   route.
//! - **The cache** (`cache.rs`) maps a next hop to a MAC. `Reachable` until `reachable_time`
//!   after the last confirmation; then `Stale`: still used, but the first use starts a probe,
//!   and an entry whose probes all go unanswered is removed. `Permanent` entries (static in the
//!   kernel) never change. `Incomplete` entries are being resolved and hold packets.
//! - **The hold queue** (`hold.rs`): a packet to a next hop being resolved is copied into a
//!   bounded queue (oldest dropped when full, counted) and released, in order, with its
//!   Ethernet header once the hop resolves ([`NeighCache::poll_released`]); dropped, counted,
//!   if resolution fails.
//! - **ARP** (`arp.rs`), and who speaks it ([`ArpOwner`]). By default the kernel keeps
//!   answering ARP for the address the stack shares with it, and ARP replies go to the kernel
//!   too, so a probe is a request to the engine ([`NeighCache::poll_kernel_probe`]) to read the
//!   kernel's entry or make the kernel resolve it ([`netlink::KernelTables::probe`]). When the
//!   XDP program steers ARP to the stack, the stack answers requests for its address and sends
//!   its own broadcast requests ([`NeighCache::poll_arp`]). Requests and replies update an
//!   existing entry (RFC 826 "merge"), including gratuitous ARP; a request addressed to us
//!   creates one (we are about to answer that host); an unsolicited reply creates nothing.
//! - **Learning from IPv4**: with `learn_from_ipv4`, the source MAC of a received IPv4 frame
//!   from an on-link source creates or confirms that source's entry, so a server can answer a
//!   SYN without a resolution round trip. The engine calls [`NeighCache::observe_ipv4`] only for
//!   a segment whose checksum held ([`crate::host::RxVerdict::verified_source`]), so a forged
//!   or corrupt frame teaches nothing.
//!
//! Call order in the engine: [`NeighCache::handle_arp`] / [`NeighCache::observe_ipv4`] for each
//! received frame; [`NeighCache::lookup`] for each packet to send, then [`NeighCache::hold`] when
//! it is not ready; [`NeighCache::handle_timeout`] when [`NeighCache::poll_timeout`] is due; and
//! drain [`NeighCache::poll_arp`], [`NeighCache::poll_released`],
//! [`NeighCache::poll_kernel_probe`] and [`NeighCache::poll_kernel_update`] every iteration.
//! Deadlines are kept as one cached minimum, recomputed only when an entry's probe schedule
//! changes, so `poll_timeout` is O(1).

mod arp;
mod cache;
mod hold;
mod hot;
pub mod netlink;
mod routes;
#[cfg(test)]
mod test_util;

pub use arp::ARP_FRAME_LEN;
pub use routes::Route;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::EthernetAddress;
use cache::{Entry, State};
use hold::HoldQueue;
use routes::RouteTable;

/// Who answers ARP for our address and receives ARP replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArpOwner {
    /// The kernel (the XDP program passes ARP): resolution goes through the kernel's table.
    #[default]
    Kernel,
    /// The stack (the XDP program steers ARP for our address to it).
    Stack,
}

#[derive(Debug, Clone)]
pub struct NeighConfig {
    pub addr: Ipv4Addr,
    pub mac: EthernetAddress,
    /// Prefix length of `addr`'s subnet: that subnet is on-link.
    pub prefix_len: u8,
    pub arp_owner: ArpOwner,
    /// Learn on-link neighbours from the source MAC of received IPv4 frames.
    pub learn_from_ipv4: bool,
    /// An entry is trusted this long after its last confirmation (Linux: 15-45 s).
    pub reachable_time: Duration,
    /// Delay before the second probe; it doubles after each unanswered probe.
    pub retry_interval: Duration,
    /// Probes before resolution gives up (the held packets are dropped) or a stale entry is
    /// removed.
    pub max_probes: u32,
    /// Stale entries unused this long are removed; also the period of that sweep.
    pub gc_time: Duration,
    pub max_entries: usize,
    /// Packets held across all unresolved next hops.
    pub max_held: usize,
}

impl NeighConfig {
    pub fn new(addr: Ipv4Addr, prefix_len: u8, mac: EthernetAddress) -> Self {
        NeighConfig {
            addr,
            mac,
            prefix_len,
            arp_owner: ArpOwner::Kernel,
            learn_from_ipv4: true,
            reachable_time: Duration::from_secs(30),
            retry_interval: Duration::from_millis(10),
            max_probes: 8,
            gc_time: Duration::from_secs(60),
            max_entries: 1024,
            max_held: 256,
        }
    }
}

/// What [`NeighCache::lookup`] found for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Send to this MAC.
    Ready(EthernetAddress),
    /// The next hop is not resolved yet: [`NeighCache::hold`] the packet for it.
    Pending(Ipv4Addr),
    /// No route covers the destination.
    NoRoute,
}

/// State of an entry as the kernel reports it, for seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedState {
    Reachable,
    Stale,
    Permanent,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighStats {
    pub arp_requests_sent: u64,
    pub arp_replies_sent: u64,
    pub kernel_probes: u64,
    /// Entries created from ARP, IPv4 or the kernel (seeds excluded).
    pub learned: u64,
    /// Entries whose MAC changed.
    pub mac_changed: u64,
    pub gratuitous: u64,
    pub resolved: u64,
    /// Resolutions that gave up after `max_probes`.
    pub resolve_failed: u64,
    /// Stale entries removed (refresh unanswered, or unused for `gc_time`).
    pub expired: u64,
    /// Entries evicted to stay within `max_entries`.
    pub evicted: u64,
    pub held: u64,
    pub released: u64,
    pub held_bytes_copied: u64,
    /// Held packets dropped because the queue was full (the oldest goes).
    pub dropped_overflow: u64,
    /// Held packets dropped because their next hop did not resolve.
    pub dropped_unresolved: u64,
    /// Released packets that did not fit the transmit buffer.
    pub dropped_too_big: u64,
    pub no_route: u64,
    /// ARP claiming our own address from another host.
    pub arp_conflicts: u64,
    /// ARP with a multicast or zero sender MAC.
    pub arp_bad_sender: u64,
    pub arp_unknown_op: u64,
    /// ARP that changed nothing: unsolicited replies, requests for other hosts of unknown
    /// senders, senders off our subnet.
    pub arp_ignored: u64,
    /// With [`ArpOwner::Stack`]: neighbours handed to the kernel's table
    /// ([`NeighCache::poll_kernel_update`]), and those dropped by the rate limit.
    pub kernel_updates: u64,
    pub kernel_updates_limited: u64,
}

pub struct NeighCache {
    cfg: NeighConfig,
    routes: RouteTable,
    entries: HashMap<Ipv4Addr, Entry, ahash::RandomState>,
    hold: HoldQueue,
    requests: VecDeque<Ipv4Addr>,
    replies: VecDeque<(EthernetAddress, Ipv4Addr)>,
    kernel_probes: VecDeque<Ipv4Addr>,
    /// ARP the kernel would have learned from, had the XDP program not steered it to us.
    kernel_updates: VecDeque<(Ipv4Addr, EthernetAddress)>,
    /// Start of the current second of kernel updates, and how many it has had.
    update_window: (Instant, u32),
    next_probe: Option<Instant>,
    next_gc: Option<Instant>,
    stats: NeighStats,
    /// The entry the traffic of the moment confirms and uses, with its true times (see
    /// [`hot`]).
    hot: Option<hot::Hot>,
}

impl NeighCache {
    pub fn new(cfg: NeighConfig) -> Self {
        NeighCache {
            routes: RouteTable::connected(cfg.addr, cfg.prefix_len),
            entries: HashMap::default(),
            hold: HoldQueue::new(cfg.max_held),
            requests: VecDeque::new(),
            replies: VecDeque::new(),
            kernel_probes: VecDeque::new(),
            kernel_updates: VecDeque::new(),
            update_window: (Instant::ZERO, 0),
            next_probe: None,
            next_gc: None,
            stats: NeighStats::default(),
            hot: None,
            cfg,
        }
    }

    pub fn config(&self) -> &NeighConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &NeighStats {
        &self.stats
    }

    /// Switches who owns ARP (when the steering program's ARP flag changes).
    pub fn set_arp_owner(&mut self, owner: ArpOwner) {
        self.cfg.arp_owner = owner;
    }

    pub fn routes(&self) -> &[Route] {
        self.routes.as_slice()
    }

    /// Adds (or replaces, same prefix) a route.
    pub fn add_route(&mut self, route: Route) {
        self.routes.add(route);
    }

    /// The next hop toward `dst`: `dst` itself if on-link, else the gateway.
    #[inline]
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.routes.next_hop(dst)
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.routes.on_link(ip)
    }

    /// Entries held, any state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The MAC known for `ip` (a next hop), without side effects.
    pub fn peek(&self, ip: Ipv4Addr) -> Option<EthernetAddress> {
        self.entries
            .get(&ip)
            .filter(|e| e.state != State::Incomplete)
            .map(|e| e.mac)
    }

    /// Packets waiting for resolution.
    pub fn held_len(&self) -> usize {
        self.hold.held_len()
    }

    /// Where to send a packet for `dst`. A stale entry is still used and starts a refresh.
    #[inline]
    pub fn lookup(&mut self, now: Instant, dst: Ipv4Addr) -> Lookup {
        let Some(hop) = self.next_hop(dst) else {
            self.stats.no_route += 1;
            return Lookup::NoRoute;
        };
        let reachable_time = self.cfg.reachable_time;
        if let Some(h) = &mut self.hot {
            if h.ip == hop && now < h.confirmed + reachable_time {
                h.used = now;
                return Lookup::Ready(h.mac());
            }
        }
        self.settle();
        let Some(e) = self.entries.get_mut(&hop) else {
            return Lookup::Pending(hop);
        };
        e.used = now;
        match e.state {
            State::Permanent => Lookup::Ready(e.mac),
            State::Incomplete => Lookup::Pending(hop),
            State::Reachable if now < e.confirmed + reachable_time => {
                self.hot = Some(hot::Hot::of(hop, e));
                Lookup::Ready(e.mac)
            }
            State::Reachable | State::Stale => {
                e.state = State::Stale;
                let mac = e.mac;
                if e.next_probe.is_none() {
                    self.start_probing(now, hop);
                }
                Lookup::Ready(mac)
            }
        }
    }

    /// Keeps a copy of `packet` (a whole IPv4 packet) until `hop` resolves, and starts resolving
    /// it. When the queue is full the oldest held packet is dropped.
    pub fn hold(&mut self, now: Instant, hop: Ipv4Addr, packet: &[u8]) {
        self.settle();
        let entry = self.entries.get(&hop).map(|e| (e.state, e.mac));
        let mac = match entry {
            Some((State::Incomplete, _)) | None => None,
            Some((_, mac)) => Some(mac),
        };
        if !self.hold.hold(hop, mac, packet, &mut self.stats) || entry.is_some() {
            return;
        }
        self.make_room(now);
        self.entries.insert(
            hop,
            Entry {
                mac: EthernetAddress::UNSPECIFIED,
                state: State::Incomplete,
                confirmed: now,
                used: now,
                probes: 0,
                next_probe: None,
            },
        );
        self.start_probing(now, hop);
        self.arm_gc(now);
    }

    /// Whether [`NeighCache::poll_arp`] or [`NeighCache::poll_released`] has a frame to give.
    pub fn has_output(&self) -> bool {
        !self.replies.is_empty() || !self.requests.is_empty() || self.hold.has_released()
    }

    /// Writes the next released packet as a whole Ethernet frame into `buf`; returns its length.
    pub fn poll_released(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.hold.poll_released(buf, self.cfg.mac, &mut self.stats)
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_probe, self.next_gc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.settle();
        if self.next_probe.is_some_and(|t| t <= now) {
            self.run_probes(now);
        }
        if self.next_gc.is_some_and(|t| t <= now) {
            self.next_gc = None;
            self.gc(now);
            if !self.entries.is_empty() {
                self.arm_gc(now);
            }
        }
    }
}
