//! A deterministic network of [`Host`]s joined by seeded [`Link`]s, on a virtual clock.
//!
//! [`Network::step`] moves every packet the hosts want to send onto its link, jumps virtual time
//! to the next event (a delivery or a host deadline), and processes everything due then. Nothing
//! here sleeps or reads a clock: a simulated second costs only the work done in it. Routing is by
//! destination address: a packet goes over the link from its sender to the host that owns the
//! address, and is dropped (counted) if there is none.

use std::net::Ipv4Addr;

use super::link::{Link, LinkConfig};
use crate::host::{Host, HostConfig};
use crate::time::Instant;
use crate::wire::Ipv4Packet;

/// Largest packet a host may emit here: IPv4 header + TCP header with options + a 64 KiB payload
/// would be far more than any MSS we use; 9 KiB covers jumbo MSS settings.
const MAX_PACKET: usize = 9216;

pub struct Network {
    now: Instant,
    hosts: Vec<Host>,
    /// (from, to, link), one per direction.
    links: Vec<(usize, usize, Link)>,
    buf: Vec<u8>,
    unroutable: u64,
    steps: u64,
    /// Print every delivered packet (set from `XDP_TCP_SIM_TRACE=1` or by a test).
    pub trace: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    pub fn new() -> Self {
        Network {
            now: Instant::ZERO,
            hosts: Vec::new(),
            links: Vec::new(),
            buf: vec![0; MAX_PACKET],
            unroutable: 0,
            steps: 0,
            trace: std::env::var_os("XDP_TCP_SIM_TRACE").is_some(),
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    pub fn add_host(&mut self, cfg: HostConfig) -> usize {
        self.hosts.push(Host::new(cfg));
        self.hosts.len() - 1
    }

    pub fn host(&mut self, i: usize) -> &mut Host {
        &mut self.hosts[i]
    }

    pub fn host_ref(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Joins `a` and `b` with a link in each direction, both with `cfg`; the directions get
    /// different seeds derived from `seed`.
    pub fn connect(&mut self, a: usize, b: usize, cfg: LinkConfig, seed: u64) {
        self.connect_one_way(a, b, cfg.clone(), seed.wrapping_mul(2).wrapping_add(1));
        self.connect_one_way(b, a, cfg, seed.wrapping_mul(2).wrapping_add(2));
    }

    pub fn connect_one_way(&mut self, from: usize, to: usize, cfg: LinkConfig, seed: u64) {
        self.links.retain(|(f, t, _)| !(*f == from && *t == to));
        self.links.push((from, to, Link::new(cfg, seed)));
    }

    /// The link from `from` to `to`, to change its faults or read its statistics.
    pub fn link(&mut self, from: usize, to: usize) -> Option<&mut Link> {
        self.links
            .iter_mut()
            .find(|(f, t, _)| *f == from && *t == to)
            .map(|(_, _, l)| l)
    }

    /// Packets that had no link to their destination.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn route(&self, from: usize, dst: Ipv4Addr) -> Option<usize> {
        let to = self.hosts.iter().position(|h| h.addr() == dst)?;
        self.links
            .iter()
            .position(|(f, t, _)| *f == from && *t == to)
    }

    /// Moves every packet the hosts have ready onto the links.
    pub fn flush(&mut self) {
        for h in 0..self.hosts.len() {
            while let Some(tx) = self.hosts[h].poll_transmit(self.now, &mut self.buf) {
                match self.route(h, tx.dst) {
                    Some(l) => self.links[l].2.send(self.now, &self.buf[..tx.len]),
                    None => self.unroutable += 1,
                }
            }
        }
    }

    /// The next instant something happens, if anything will.
    pub fn next_event(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for (_, _, l) in &self.links {
            if let Some(t) = l.next_delivery() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        for h in &mut self.hosts {
            if let Some(t) = h.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Sends what is pending, advances to the next event and processes it. Returns false when
    /// nothing is left to happen (the network is idle).
    pub fn step(&mut self) -> bool {
        self.flush();
        let Some(next) = self.next_event() else {
            return false;
        };
        self.advance_to(next);
        true
    }

    /// Advances virtual time to `t` (never backwards), delivering and firing everything due.
    pub fn advance_to(&mut self, t: Instant) {
        self.steps += 1;
        self.now = self.now.max(t);
        let now = self.now;
        for i in 0..self.links.len() {
            let to = self.links[i].1;
            while let Some(frame) = self.links[i].2.recv(now) {
                if self.trace {
                    eprintln!("{now:?} {} -> {}: {}", self.links[i].0, to, Packet(&frame));
                }
                self.hosts[to].handle_ipv4(now, &frame);
                self.links[i].2.recycle(frame);
            }
        }
        for h in &mut self.hosts {
            if h.poll_timeout().is_some_and(|d| d <= now) {
                h.handle_timeout(now);
            }
        }
        self.flush();
    }

    /// Steps until `done` holds or virtual time passes `limit`. Returns whether `done` held.
    /// `done` runs after every step, so it is also where an application acts.
    pub fn run_until(
        &mut self,
        limit: Instant,
        mut done: impl FnMut(&mut Network) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            if self.now > limit {
                return false;
            }
            if !self.step() {
                return done(self);
            }
        }
    }
}

/// tcpdump-like text for an IPv4 packet carrying TCP; never fails.
pub struct Packet<'a>(pub &'a [u8]);

impl core::fmt::Display for Packet<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        use crate::wire::{ChecksumCaps, Ipv4Repr, TcpPacket, TcpRepr};
        let caps = ChecksumCaps::default();
        let ip = match Ipv4Packet::new_checked(self.0) {
            Ok(p) => p,
            Err(e) => return write!(f, "[bad ipv4: {e}]"),
        };
        let repr = match Ipv4Repr::parse(&ip, &caps) {
            Ok(r) => r,
            Err(e) => return write!(f, "[bad ipv4: {e}]"),
        };
        let seg = TcpPacket::new_checked(ip.payload())
            .and_then(|t| TcpRepr::parse(&t, repr.src_addr, repr.dst_addr, &caps));
        match seg {
            Ok(s) => write!(
                f,
                "{}:{} > {}:{} {}",
                repr.src_addr, s.src_port, repr.dst_addr, s.dst_port, s
            ),
            Err(e) => write!(f, "{} > {} [bad tcp: {e}]", repr.src_addr, repr.dst_addr),
        }
    }
}
