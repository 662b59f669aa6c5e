//! Neighbour resolution for IPv4 over Ethernet: the next hop of each destination and its MAC.
//! Sans-IO: no clock, no sockets, no netlink. The engine feeds it and drains it.
//!
//! - **Routes** decide the next hop: the destination itself when on-link (inside a connected
//!   prefix, our own subnet always is), else the gateway of the longest matching route.
//! - **Entries** map a next hop to a MAC. `Reachable` until `reachable_time` after the last
//!   confirmation; then `Stale`: still used, but the first use starts a probe, and an entry whose
//!   probes all go unanswered is removed. `Permanent` entries (static in the kernel) never change.
//!   `Incomplete` entries are being resolved and hold packets.
//! - **Who speaks ARP** ([`ArpOwner`]). By default the kernel keeps answering ARP for the address
//!   the stack shares with it, and ARP replies go to the kernel too, so a probe is a request to the
//!   engine ([`NeighCache::poll_kernel_probe`]) to read the kernel's entry or make the kernel
//!   resolve it. When the XDP program steers ARP to the stack, the stack answers requests for its
//!   address and sends its own broadcast requests ([`NeighCache::poll_arp`]).
//! - **Learning**: requests and replies update an existing entry (RFC 826 "merge"), including
//!   gratuitous ARP; a request addressed to us creates one (we are about to answer that host); an
//!   unsolicited reply creates nothing. With `learn_from_ipv4`, the source MAC of a received IPv4
//!   frame from an on-link source creates or confirms that source's entry, so a server can answer
//!   a SYN without a resolution round trip.
//! - **Held packets**: a packet to a next hop being resolved is copied into a bounded queue
//!   (oldest dropped when full, counted) and released, in order, with its Ethernet header once
//!   the hop resolves ([`NeighCache::poll_released`]); dropped, counted, if resolution fails.
//!
//! Call order in the engine: [`NeighCache::handle_arp`] / [`NeighCache::observe_ipv4`] for each
//! received frame; [`NeighCache::lookup`] for each packet to send, then [`NeighCache::hold`] when
//! it is not ready; [`NeighCache::handle_timeout`] when [`NeighCache::poll_timeout`] is due; and
//! drain [`NeighCache::poll_arp`], [`NeighCache::poll_released`] and
//! [`NeighCache::poll_kernel_probe`] every iteration. Deadlines are kept as one cached minimum,
//! recomputed only when an entry's probe schedule changes, so `poll_timeout` is O(1).

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};
use crate::wire::{
    arp, ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr,
};

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

/// A route: `dst/prefix_len` reached directly (`gateway: None`) or through `gateway`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        prefix_match(self.dst, ip, self.prefix_len)
    }
}

fn prefix_match(net: Ipv4Addr, ip: Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    };
    u32::from(net) & mask == u32::from(ip) & mask
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Incomplete,
    Reachable,
    Stale,
    Permanent,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: EthernetAddress,
    state: State,
    confirmed: Instant,
    used: Instant,
    /// Probes sent in the current resolution or refresh.
    probes: u32,
    next_probe: Option<Instant>,
}

#[derive(Debug)]
struct Held {
    hop: Ipv4Addr,
    mac: EthernetAddress,
    packet: Vec<u8>,
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

/// Most neighbours handed to the kernel per second: each costs the engine a netlink request, and
/// ARP is cheap to forge.
const KERNEL_UPDATES_PER_SEC: u32 = 64;

/// Ethernet frames carrying ARP are padded to the 60-byte minimum (FCS excluded).
pub const ARP_FRAME_LEN: usize = 60;

pub struct NeighCache {
    cfg: NeighConfig,
    /// Longest prefix first.
    routes: Vec<Route>,
    entries: HashMap<Ipv4Addr, Entry, ahash::RandomState>,
    held: VecDeque<Held>,
    released: VecDeque<Held>,
    spare: Vec<Vec<u8>>,
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
}

impl NeighCache {
    pub fn new(cfg: NeighConfig) -> Self {
        let connected = Route {
            dst: cfg.addr,
            prefix_len: cfg.prefix_len.min(32),
            gateway: None,
        };
        NeighCache {
            cfg,
            routes: vec![connected],
            entries: HashMap::default(),
            held: VecDeque::new(),
            released: VecDeque::new(),
            spare: Vec::new(),
            requests: VecDeque::new(),
            replies: VecDeque::new(),
            kernel_probes: VecDeque::new(),
            kernel_updates: VecDeque::new(),
            update_window: (Instant::ZERO, 0),
            next_probe: None,
            next_gc: None,
            stats: NeighStats::default(),
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
        &self.routes
    }

    /// Adds (or replaces, same prefix) a route.
    pub fn add_route(&mut self, route: Route) {
        let mut route = route;
        route.prefix_len = route.prefix_len.min(32);
        self.routes
            .retain(|r| !(r.prefix_len == route.prefix_len && r.contains(route.dst)));
        self.routes.push(route);
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
    }

    /// The next hop toward `dst`: `dst` itself if on-link, else the gateway.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let r = self.routes.iter().find(|r| r.contains(dst))?;
        Some(r.gateway.unwrap_or(dst))
    }

    fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.routes
            .iter()
            .any(|r| r.gateway.is_none() && r.contains(ip))
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
        self.held.len()
    }

    /// Seeds an entry read from the kernel's table at start-up.
    pub fn seed(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress, state: SeedState) {
        if ip == self.cfg.addr || !mac.is_unicast() || mac == EthernetAddress::UNSPECIFIED {
            return;
        }
        let state = match state {
            SeedState::Reachable => State::Reachable,
            SeedState::Stale => State::Stale,
            SeedState::Permanent => State::Permanent,
        };
        self.make_room(now);
        self.entries.insert(
            ip,
            Entry {
                mac,
                state,
                confirmed: now,
                used: now,
                probes: 0,
                next_probe: None,
            },
        );
        self.arm_gc(now);
    }

    // ------------------------------------------------------------ transmit side

    /// Where to send a packet for `dst`. A stale entry is still used and starts a refresh.
    #[inline]
    pub fn lookup(&mut self, now: Instant, dst: Ipv4Addr) -> Lookup {
        let Some(hop) = self.next_hop(dst) else {
            self.stats.no_route += 1;
            return Lookup::NoRoute;
        };
        let reachable_time = self.cfg.reachable_time;
        let Some(e) = self.entries.get_mut(&hop) else {
            return Lookup::Pending(hop);
        };
        e.used = now;
        match e.state {
            State::Permanent => Lookup::Ready(e.mac),
            State::Incomplete => Lookup::Pending(hop),
            State::Reachable if now < e.confirmed + reachable_time => Lookup::Ready(e.mac),
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
        if self.cfg.max_held == 0 {
            self.stats.dropped_overflow += 1;
            return;
        }
        while self.held.len() >= self.cfg.max_held {
            if let Some(old) = self.held.pop_front() {
                self.stats.dropped_overflow += 1;
                self.spare.push(old.packet);
            }
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        self.stats.held += 1;
        self.stats.held_bytes_copied += packet.len() as u64;
        let item = Held {
            hop,
            mac: EthernetAddress::UNSPECIFIED,
            packet: buf,
        };
        match self.entries.get(&hop).map(|e| (e.state, e.mac)) {
            Some((State::Incomplete, _)) => self.held.push_back(item),
            Some((_, mac)) => self.released.push_back(Held { mac, ..item }),
            None => {
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
                self.held.push_back(item);
                self.start_probing(now, hop);
                self.arm_gc(now);
            }
        }
    }

    /// Whether [`NeighCache::poll_arp`] or [`NeighCache::poll_released`] has a frame to give.
    pub fn has_output(&self) -> bool {
        !self.replies.is_empty() || !self.requests.is_empty() || !self.released.is_empty()
    }

    /// Writes the next ARP frame to send (a reply, or with [`ArpOwner::Stack`] a request) into
    /// `buf`; returns its length ([`ARP_FRAME_LEN`]). `None` if there is none or `buf` is short.
    pub fn poll_arp(&mut self, buf: &mut [u8]) -> Option<usize> {
        if buf.len() < ARP_FRAME_LEN {
            return None;
        }
        let (dst_mac, repr) = if let Some((mac, ip)) = self.replies.pop_front() {
            self.stats.arp_replies_sent += 1;
            (mac, self.arp(ArpOperation::Reply, mac, ip))
        } else {
            let ip = self.requests.pop_front()?;
            self.stats.arp_requests_sent += 1;
            (
                EthernetAddress::BROADCAST,
                self.arp(ArpOperation::Request, EthernetAddress::UNSPECIFIED, ip),
            )
        };
        let frame = &mut buf[..ARP_FRAME_LEN];
        EthernetRepr {
            src_addr: self.cfg.mac,
            dst_addr: dst_mac,
            ethertype: EtherType::Arp,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut *frame));
        let body = &mut frame[ethernet::HEADER_LEN..];
        repr.emit(&mut ArpPacket::new_unchecked(
            &mut body[..arp::ETHERNET_IPV4_LEN],
        ));
        body[arp::ETHERNET_IPV4_LEN..].fill(0);
        Some(ARP_FRAME_LEN)
    }

    fn arp(
        &self,
        operation: ArpOperation,
        target_mac: EthernetAddress,
        target: Ipv4Addr,
    ) -> ArpRepr {
        ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: self.cfg.mac,
            source_protocol_addr: self.cfg.addr,
            target_hardware_addr: target_mac,
            target_protocol_addr: target,
        }
    }

    /// Writes the next released packet as a whole Ethernet frame into `buf`; returns its length.
    pub fn poll_released(&mut self, buf: &mut [u8]) -> Option<usize> {
        loop {
            let h = self.released.pop_front()?;
            let len = ethernet::HEADER_LEN + h.packet.len();
            if len > buf.len() {
                self.stats.dropped_too_big += 1;
                self.spare.push(h.packet);
                continue;
            }
            EthernetRepr {
                src_addr: self.cfg.mac,
                dst_addr: h.mac,
                ethertype: EtherType::Ipv4,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            buf[ethernet::HEADER_LEN..len].copy_from_slice(&h.packet);
            self.stats.released += 1;
            self.spare.push(h.packet);
            return Some(len);
        }
    }

    /// With [`ArpOwner::Kernel`]: a next hop the engine should look up in the kernel's table,
    /// asking the kernel to resolve it when absent, then report with [`NeighCache::learn`].
    pub fn poll_kernel_probe(&mut self) -> Option<Ipv4Addr> {
        let ip = self.kernel_probes.pop_front()?;
        self.stats.kernel_probes += 1;
        Some(ip)
    }

    /// With [`ArpOwner::Stack`]: a neighbour the engine should write into the kernel's table.
    /// The XDP program steers ARP for our address to the stack, so the kernel, which shares the
    /// address (ping, other ports), would otherwise never hear a reply to its own requests nor
    /// refresh its entries.
    pub fn poll_kernel_update(&mut self) -> Option<(Ipv4Addr, EthernetAddress)> {
        let u = self.kernel_updates.pop_front()?;
        self.stats.kernel_updates += 1;
        Some(u)
    }

    fn queue_kernel_update(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) {
        if self.kernel_updates.contains(&(ip, mac)) {
            return;
        }
        let (start, n) = &mut self.update_window;
        if now.saturating_since(*start) >= crate::time::Duration::from_secs(1) {
            *start = now;
            *n = 0;
        }
        if *n >= KERNEL_UPDATES_PER_SEC {
            self.stats.kernel_updates_limited += 1;
            return;
        }
        *n += 1;
        self.kernel_updates.push_back((ip, mac));
    }

    // ------------------------------------------------------------ receive side

    /// Processes a received ARP packet.
    pub fn handle_arp(&mut self, now: Instant, repr: &ArpRepr) {
        let ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_protocol_addr: tpa,
            ..
        } = *repr;
        let for_us = tpa == self.cfg.addr;
        let is_request = match operation {
            ArpOperation::Request => true,
            ArpOperation::Reply => false,
            ArpOperation::Unknown(_) => {
                self.stats.arp_unknown_op += 1;
                return;
            }
        };
        if !sha.is_unicast() || sha == EthernetAddress::UNSPECIFIED {
            self.stats.arp_bad_sender += 1;
            return;
        }
        if spa == self.cfg.addr {
            // Someone else claims our address (our own kernel never reaches this path).
            self.stats.arp_conflicts += 1;
            return;
        }
        let answer = is_request && for_us && self.cfg.arp_owner == ArpOwner::Stack;
        if spa.is_unspecified() {
            // An address probe (RFC 5227): defend our address, learn nothing.
            if answer {
                self.replies.push_back((sha, spa));
            } else {
                self.stats.arp_ignored += 1;
            }
            return;
        }
        if spa == tpa {
            self.stats.gratuitous += 1;
        }
        if for_us && self.cfg.arp_owner == ArpOwner::Stack && self.on_link(spa) {
            // what the kernel learns from ARP addressed to it (a reply to its request, or a
            // request for its address), whether or not the stack keeps an entry
            self.queue_kernel_update(now, spa, sha);
        }
        let changed = if self.on_link(spa) {
            self.update(now, spa, sha, is_request && for_us)
        } else {
            false
        };
        if answer {
            self.replies.push_back((sha, spa));
        } else if !changed {
            self.stats.arp_ignored += 1;
        }
    }

    /// A received IPv4 frame from `src_ip` came from `src_mac`: with `learn_from_ipv4`, creates or
    /// confirms the entry of an on-link source.
    #[inline]
    pub fn observe_ipv4(&mut self, now: Instant, src_ip: Ipv4Addr, src_mac: EthernetAddress) {
        if !self.cfg.learn_from_ipv4 {
            return;
        }
        if let Some(e) = self.entries.get_mut(&src_ip) {
            if e.mac == src_mac && e.state == State::Reachable {
                e.confirmed = now;
                return;
            }
        }
        if src_ip == self.cfg.addr || !src_mac.is_unicast() || !self.on_link(src_ip) {
            return;
        }
        self.update(now, src_ip, src_mac, true);
    }

    /// Records that `ip` is at `mac` from an authoritative source (the kernel's table):
    /// creates, confirms or updates the entry and releases what waits on it.
    pub fn learn(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress) {
        if ip == self.cfg.addr || !mac.is_unicast() || mac == EthernetAddress::UNSPECIFIED {
            return;
        }
        self.update(now, ip, mac, true);
    }

    /// Returns whether anything was created or confirmed.
    fn update(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress, create: bool) -> bool {
        let was = match self.entries.get_mut(&ip) {
            Some(e) if e.state == State::Permanent => return false,
            Some(e) => {
                if e.state != State::Incomplete && e.mac != mac {
                    self.stats.mac_changed += 1;
                }
                let was = e.state;
                *e = Entry {
                    mac,
                    state: State::Reachable,
                    confirmed: now,
                    used: e.used,
                    probes: 0,
                    next_probe: None,
                };
                was
            }
            None if create => {
                self.make_room(now);
                self.entries.insert(
                    ip,
                    Entry {
                        mac,
                        state: State::Reachable,
                        confirmed: now,
                        used: now,
                        probes: 0,
                        next_probe: None,
                    },
                );
                self.stats.learned += 1;
                self.arm_gc(now);
                return true;
            }
            None => return false,
        };
        if was == State::Incomplete {
            self.stats.resolved += 1;
            self.release(ip, mac);
        }
        true
    }

    fn release(&mut self, hop: Ipv4Addr, mac: EthernetAddress) {
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].hop == hop {
                if let Some(h) = self.held.remove(i) {
                    self.released.push_back(Held { mac, ..h });
                }
            } else {
                i += 1;
            }
        }
    }

    // ------------------------------------------------------------ timers

    fn start_probing(&mut self, now: Instant, hop: Ipv4Addr) {
        if let Some(e) = self.entries.get_mut(&hop) {
            e.probes = 0;
        }
        self.probe(now, hop);
    }

    /// Sends one probe for `hop` and schedules the next.
    fn probe(&mut self, now: Instant, hop: Ipv4Addr) {
        let Some(e) = self.entries.get_mut(&hop) else {
            return;
        };
        let backoff = self
            .cfg
            .retry_interval
            .saturating_mul(1u64 << e.probes.min(20));
        e.probes += 1;
        let at = now + backoff;
        e.next_probe = Some(at);
        self.next_probe = Some(self.next_probe.map_or(at, |t| t.min(at)));
        match self.cfg.arp_owner {
            ArpOwner::Stack => self.requests.push_back(hop),
            ArpOwner::Kernel => self.kernel_probes.push_back(hop),
        }
    }

    fn arm_gc(&mut self, now: Instant) {
        if self.next_gc.is_none() {
            self.next_gc = Some(now + self.cfg.gc_time);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_probe, self.next_gc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
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

    fn run_probes(&mut self, now: Instant) {
        let due: Vec<(Ipv4Addr, State, u32)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.next_probe.is_some_and(|t| t <= now))
            .map(|(ip, e)| (*ip, e.state, e.probes))
            .collect();
        for (ip, state, probes) in due {
            if probes < self.cfg.max_probes {
                self.probe(now, ip);
                continue;
            }
            self.entries.remove(&ip);
            if state == State::Incomplete {
                self.stats.resolve_failed += 1;
                self.drop_held(ip);
            } else {
                self.stats.expired += 1;
            }
        }
        self.next_probe = self.entries.values().filter_map(|e| e.next_probe).min();
    }

    fn drop_held(&mut self, hop: Ipv4Addr) {
        let spare = &mut self.spare;
        let stats = &mut self.stats;
        self.held.retain_mut(|h| {
            if h.hop == hop {
                stats.dropped_unresolved += 1;
                spare.push(std::mem::take(&mut h.packet));
                false
            } else {
                true
            }
        });
    }

    fn gc(&mut self, now: Instant) {
        let gc_time = self.cfg.gc_time;
        let reachable_time = self.cfg.reachable_time;
        let before = self.entries.len();
        self.entries.retain(|_, e| {
            let stale = e.state == State::Stale
                || (e.state == State::Reachable && now >= e.confirmed + reachable_time);
            !(stale && e.next_probe.is_none() && now >= e.used + gc_time)
        });
        self.stats.expired += (before - self.entries.len()) as u64;
    }

    /// Evicts the least recently used non-permanent, non-incomplete entry when full.
    fn make_room(&mut self, _now: Instant) {
        if self.entries.len() < self.cfg.max_entries.max(1) {
            return;
        }
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| !matches!(e.state, State::Permanent | State::Incomplete))
            .min_by_key(|(_, e)| e.used)
            .map(|(ip, _)| *ip);
        if let Some(ip) = victim {
            self.entries.remove(&ip);
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
    const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
    const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
    const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
    const NEW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);
    const GW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn cache(owner: ArpOwner) -> NeighCache {
        let mut cfg = NeighConfig::new(US, 24, OUR_MAC);
        cfg.arp_owner = owner;
        cfg.max_held = 4;
        NeighCache::new(cfg)
    }

    fn arp(op: ArpOperation, sha: EthernetAddress, spa: Ipv4Addr, tpa: Ipv4Addr) -> ArpRepr {
        ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: sha,
            source_protocol_addr: spa,
            target_hardware_addr: EthernetAddress::UNSPECIFIED,
            target_protocol_addr: tpa,
        }
    }

    fn parse_arp(frame: &[u8]) -> (EthernetRepr, ArpRepr) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        let repr = EthernetRepr::parse(&eth).unwrap();
        let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
        (repr, a)
    }

    #[test]
    fn next_hop_is_destination_on_link_else_gateway() {
        let mut n = cache(ArpOwner::Kernel);
        assert_eq!(n.next_hop(PEER), Some(PEER));
        assert_eq!(n.next_hop(FAR), None);
        assert_eq!(n.lookup(t(0), FAR), Lookup::NoRoute);
        n.add_route(Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Some(GW),
        });
        assert_eq!(n.next_hop(FAR), Some(GW));
        assert_eq!(n.next_hop(PEER), Some(PEER), "longest prefix wins");
        n.add_route(Route {
            dst: Ipv4Addr::new(192, 0, 2, 0),
            prefix_len: 24,
            gateway: None,
        });
        assert_eq!(n.next_hop(FAR), Some(FAR));
    }

    #[test]
    fn stack_owned_arp_answers_requests_for_us_only() {
        let mut n = cache(ArpOwner::Stack);
        n.handle_arp(t(0), &arp(ArpOperation::Request, PEER_MAC, PEER, US));
        let mut buf = [0u8; 128];
        let len = n.poll_arp(&mut buf).expect("a reply");
        assert_eq!(len, ARP_FRAME_LEN);
        let (eth, a) = parse_arp(&buf[..len]);
        assert_eq!((eth.dst_addr, eth.src_addr), (PEER_MAC, OUR_MAC));
        assert_eq!(
            a,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: OUR_MAC,
                source_protocol_addr: US,
                target_hardware_addr: PEER_MAC,
                target_protocol_addr: PEER,
            }
        );
        // The requester was learned: we are about to talk to it.
        assert_eq!(n.lookup(t(1), PEER), Lookup::Ready(PEER_MAC));
        // A request for another host: no reply, no entry for its sender.
        n.handle_arp(t(2), &arp(ArpOperation::Request, GW_MAC, GW, PEER));
        assert_eq!(n.poll_arp(&mut buf), None);
        assert_eq!(n.peek(GW), None);
        // The kernel owns ARP: learn, never answer.
        let mut k = cache(ArpOwner::Kernel);
        k.handle_arp(t(0), &arp(ArpOperation::Request, PEER_MAC, PEER, US));
        assert_eq!(k.poll_arp(&mut buf), None);
        assert_eq!(k.peek(PEER), Some(PEER_MAC));
    }

    #[test]
    fn unknown_hop_is_resolved_by_arp_and_held_packets_released_in_order() {
        let mut n = cache(ArpOwner::Stack);
        assert_eq!(n.lookup(t(0), PEER), Lookup::Pending(PEER));
        n.hold(t(0), PEER, &[0x45, 1]);
        n.hold(t(0), PEER, &[0x45, 2]);
        let mut buf = [0u8; 128];
        let len = n.poll_arp(&mut buf).expect("a request");
        let (eth, a) = parse_arp(&buf[..len]);
        assert_eq!(eth.dst_addr, EthernetAddress::BROADCAST);
        assert_eq!(
            a,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: OUR_MAC,
                source_protocol_addr: US,
                target_hardware_addr: EthernetAddress::UNSPECIFIED,
                target_protocol_addr: PEER,
            }
        );
        assert_eq!(n.poll_arp(&mut buf), None, "one request per probe");
        assert_eq!(n.poll_timeout(), Some(t(10)));
        n.handle_timeout(t(10));
        assert!(n.poll_arp(&mut buf).is_some(), "retry after 10 ms");
        assert_eq!(n.poll_timeout(), Some(t(30)), "back-off doubles");
        assert_eq!(n.poll_released(&mut buf), None);

        n.handle_arp(t(12), &arp(ArpOperation::Reply, PEER_MAC, PEER, US));
        assert_eq!(n.stats().resolved, 1);
        for k in [1u8, 2] {
            let len = n.poll_released(&mut buf).expect("released");
            assert_eq!(len, 16);
            assert_eq!(&buf[..6], PEER_MAC.as_bytes());
            assert_eq!(&buf[12..16], &[0x08, 0x00, 0x45, k]);
        }
        assert_eq!(n.poll_released(&mut buf), None);
        assert_eq!(n.lookup(t(13), PEER), Lookup::Ready(PEER_MAC));
        assert_eq!(n.held_len(), 0);
    }

    #[test]
    fn held_queue_drops_oldest_and_failed_resolution_drops_the_rest() {
        let mut n = cache(ArpOwner::Kernel);
        for k in 0..6u8 {
            n.hold(t(0), PEER, &[k]);
        }
        assert_eq!(n.held_len(), 4);
        assert_eq!(n.stats().dropped_overflow, 2);
        assert_eq!(n.poll_kernel_probe(), Some(PEER));
        assert_eq!(n.poll_kernel_probe(), None);
        let mut now = t(0);
        while let Some(at) = n.poll_timeout().filter(|&at| at < t(10_000)) {
            now = at;
            n.handle_timeout(now);
            while n.poll_kernel_probe().is_some() {}
        }
        assert_eq!(n.stats().kernel_probes, 8);
        assert_eq!(n.stats().resolve_failed, 1);
        assert_eq!(n.stats().dropped_unresolved, 4);
        assert_eq!(n.held_len(), 0);
        assert_eq!(n.peek(PEER), None);
        // 10 * (1 + 2 + ... + 128) ms
        assert_eq!(now, t(2550));
    }

    #[test]
    fn kernel_answer_releases_held_packets() {
        let mut n = cache(ArpOwner::Kernel);
        n.hold(t(0), PEER, &[0x45]);
        assert_eq!(n.poll_kernel_probe(), Some(PEER));
        n.learn(t(1), PEER, PEER_MAC);
        let mut buf = [0u8; 64];
        assert_eq!(n.poll_released(&mut buf), Some(15));
        assert_eq!(n.lookup(t(2), PEER), Lookup::Ready(PEER_MAC));
    }

    #[test]
    fn gratuitous_arp_updates_existing_entries_only() {
        let mut n = cache(ArpOwner::Stack);
        n.seed(t(0), PEER, PEER_MAC, SeedState::Reachable);
        n.handle_arp(t(1), &arp(ArpOperation::Request, NEW_MAC, PEER, PEER));
        assert_eq!(n.peek(PEER), Some(NEW_MAC));
        assert_eq!(n.stats().mac_changed, 1);
        n.handle_arp(t(1), &arp(ArpOperation::Reply, GW_MAC, GW, GW));
        assert_eq!(n.peek(GW), None, "gratuitous ARP creates nothing");
        n.handle_arp(t(1), &arp(ArpOperation::Reply, GW_MAC, GW, US));
        assert_eq!(n.peek(GW), None, "neither does an unsolicited reply");
        assert_eq!(n.stats().gratuitous, 2);
        let mut buf = [0u8; 64];
        assert_eq!(n.poll_arp(&mut buf), None);
        // Permanent entries do not move.
        n.seed(t(2), GW, GW_MAC, SeedState::Permanent);
        n.handle_arp(t(3), &arp(ArpOperation::Reply, NEW_MAC, GW, GW));
        assert_eq!(n.peek(GW), Some(GW_MAC));
    }

    #[test]
    fn arp_for_us_is_handed_to_the_kernel_when_the_stack_owns_arp() {
        let mut n = cache(ArpOwner::Stack);
        // a reply to the kernel's own request: the stack keeps no entry, the kernel gets one
        n.handle_arp(t(1), &arp(ArpOperation::Reply, PEER_MAC, PEER, US));
        assert_eq!(n.peek(PEER), None);
        assert_eq!(n.poll_kernel_update(), Some((PEER, PEER_MAC)));
        assert_eq!(n.poll_kernel_update(), None);
        // a request for our address too; one for another host, or from off the subnet, not
        n.handle_arp(t(2), &arp(ArpOperation::Request, NEW_MAC, PEER, US));
        n.handle_arp(t(2), &arp(ArpOperation::Request, GW_MAC, GW, PEER));
        n.handle_arp(
            t(2),
            &arp(
                ArpOperation::Request,
                GW_MAC,
                Ipv4Addr::new(10, 9, 9, 9),
                US,
            ),
        );
        assert_eq!(n.poll_kernel_update(), Some((PEER, NEW_MAC)));
        assert_eq!(n.poll_kernel_update(), None);
        assert_eq!(n.stats().kernel_updates, 2);
        // the kernel hears ARP itself when it owns it
        let mut k = cache(ArpOwner::Kernel);
        k.handle_arp(t(1), &arp(ArpOperation::Reply, PEER_MAC, PEER, US));
        assert_eq!(k.poll_kernel_update(), None);
    }

    #[test]
    fn kernel_updates_are_rate_limited() {
        let mut n = cache(ArpOwner::Stack);
        let host = |i: u32| Ipv4Addr::from(u32::from(US) & !0xff | (i % 250 + 2));
        for i in 0..100u32 {
            let mac = EthernetAddress([2, 0, 0, 0, 1, i as u8]);
            n.handle_arp(t(10), &arp(ArpOperation::Request, mac, host(i), US));
            while n.poll_kernel_update().is_some() {}
        }
        assert_eq!(n.stats().kernel_updates, u64::from(KERNEL_UPDATES_PER_SEC));
        assert_eq!(
            n.stats().kernel_updates_limited,
            100 - u64::from(KERNEL_UPDATES_PER_SEC)
        );
        // a second later the budget is back
        n.handle_arp(t(1010), &arp(ArpOperation::Reply, PEER_MAC, PEER, US));
        assert_eq!(n.poll_kernel_update(), Some((PEER, PEER_MAC)));
    }

    #[test]
    fn bad_arp_is_counted_not_learned() {
        let mut n = cache(ArpOwner::Stack);
        n.handle_arp(t(0), &arp(ArpOperation::Request, PEER_MAC, US, US));
        assert_eq!(n.stats().arp_conflicts, 1);
        n.handle_arp(
            t(0),
            &arp(ArpOperation::Request, EthernetAddress::BROADCAST, PEER, US),
        );
        assert_eq!(n.stats().arp_bad_sender, 1);
        n.handle_arp(t(0), &arp(ArpOperation::Unknown(9), PEER_MAC, PEER, US));
        assert_eq!(n.stats().arp_unknown_op, 1);
        n.handle_arp(t(0), &arp(ArpOperation::Request, PEER_MAC, FAR, US));
        assert_eq!(n.peek(FAR), None, "senders off our subnet are not learned");
        let mut buf = [0u8; 64];
        assert!(
            n.poll_arp(&mut buf).is_some(),
            "but a request for us is answered"
        );
        // An address probe for us (sender 0.0.0.0) is answered, nothing learned.
        n.handle_arp(
            t(0),
            &arp(ArpOperation::Request, NEW_MAC, Ipv4Addr::UNSPECIFIED, US),
        );
        let len = n.poll_arp(&mut buf).unwrap();
        assert_eq!(&buf[..6], NEW_MAC.as_bytes());
        assert_eq!(len, ARP_FRAME_LEN);
        assert_eq!(n.len(), 0);
    }

    #[test]
    fn stale_entries_are_used_while_refreshed_and_removed_if_silent() {
        let mut n = cache(ArpOwner::Stack);
        n.seed(t(0), PEER, PEER_MAC, SeedState::Reachable);
        let mut buf = [0u8; 64];
        assert_eq!(n.lookup(t(1), PEER), Lookup::Ready(PEER_MAC));
        assert_eq!(n.poll_arp(&mut buf), None, "fresh: no probe");
        let later = t(30_001);
        assert_eq!(
            n.lookup(later, PEER),
            Lookup::Ready(PEER_MAC),
            "stale still used"
        );
        assert!(n.poll_arp(&mut buf).is_some(), "and refreshed");
        assert_eq!(n.lookup(later, PEER), Lookup::Ready(PEER_MAC));
        assert_eq!(n.poll_arp(&mut buf), None, "one refresh at a time");
        // A reply confirms it.
        n.handle_arp(later, &arp(ArpOperation::Reply, PEER_MAC, PEER, US));
        // The cached deadline is a lower bound: one spurious wake-up, then only the gc sweep.
        n.handle_timeout(later + Duration::from_millis(10));
        assert_eq!(n.poll_timeout(), Some(t(60_000)));
        // Stale again, and this time nobody answers.
        let mut now = t(70_000);
        assert_eq!(n.lookup(now, PEER), Lookup::Ready(PEER_MAC));
        while let Some(at) = n.poll_timeout().filter(|&at| at < t(100_000)) {
            now = now.max(at);
            n.handle_timeout(now);
            while n.poll_arp(&mut buf).is_some() {}
        }
        assert_eq!(n.peek(PEER), None);
        assert_eq!(n.stats().expired, 1);
        assert_eq!(n.stats().arp_requests_sent, 9);
    }

    #[test]
    fn ipv4_sources_on_link_are_learned_and_confirmed() {
        let mut n = cache(ArpOwner::Kernel);
        n.observe_ipv4(t(0), PEER, PEER_MAC);
        assert_eq!(n.lookup(t(0), PEER), Lookup::Ready(PEER_MAC));
        n.observe_ipv4(t(20_000), PEER, PEER_MAC);
        assert_eq!(n.lookup(t(40_000), PEER), Lookup::Ready(PEER_MAC));
        assert_eq!(
            n.poll_kernel_probe(),
            None,
            "confirmed at 20 s: still reachable"
        );
        n.observe_ipv4(t(0), FAR, GW_MAC);
        assert_eq!(n.peek(FAR), None);
        let mut off = cache(ArpOwner::Kernel);
        off.cfg.learn_from_ipv4 = false;
        off.observe_ipv4(t(0), PEER, PEER_MAC);
        assert_eq!(off.peek(PEER), None);
    }

    #[test]
    fn unused_stale_entries_are_collected_and_the_cache_is_bounded() {
        let mut n = cache(ArpOwner::Kernel);
        n.cfg.max_entries = 2;
        n.seed(t(0), PEER, PEER_MAC, SeedState::Stale);
        n.seed(t(1), GW, GW_MAC, SeedState::Reachable);
        n.learn(t(2), Ipv4Addr::new(10, 0, 0, 3), NEW_MAC);
        assert_eq!(n.stats().evicted, 1);
        assert_eq!(n.peek(PEER), None, "least recently used goes");
        n.handle_timeout(t(120_000));
        assert_eq!(n.len(), 0);
        assert_eq!(n.poll_timeout(), None);
    }
}
