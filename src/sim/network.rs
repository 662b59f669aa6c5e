//! A deterministic network of [`Host`]s and [`Router`]s joined by seeded [`Link`]s, on a virtual
//! clock.
//!
//! [`Network::step`] moves every packet the nodes want to send onto its link, jumps virtual time
//! to the next event (a delivery or a host deadline), and processes everything due then. Nothing
//! here sleeps or reads a clock: a simulated second costs only the work done in it.
//!
//! Nodes (hosts and routers) share one index space. Routing is by destination address: a
//! packet goes over the link from its node to the node that owns the address if there is one,
//! else over the link to the node's gateway ([`Network::set_gateway`]); a router forwards what
//! it receives the same way, checking the packet against the MTU of the link it would leave on
//! (see [`crate::sim::router`]). A packet with no way on is dropped and counted. Every link has
//! an MTU (1500 unless configured) and drops longer frames, counted per link.

use std::net::Ipv4Addr;

use super::link::{Link, LinkConfig};
use super::router::Router;
use crate::host::{Host, HostConfig, HostSink};
use crate::time::Instant;
use crate::wire::Ipv4Packet;

/// Largest packet a host may write here (9 KiB covers jumbo MTUs); what a link carries is
/// bounded by its own MTU.
const MAX_PACKET: usize = 9216;

/// A node of the network.
pub enum Node {
    Host(Box<Host>),
    Router(Router),
}

impl Node {
    fn addr(&self) -> Ipv4Addr {
        match self {
            Node::Host(h) => h.addr(),
            Node::Router(r) => r.addr(),
        }
    }
}

pub struct Network {
    now: Instant,
    nodes: Vec<Node>,
    /// (from, to, link), one per direction.
    links: Vec<(usize, usize, Link)>,
    /// Each node's gateway, for destinations it has no link to.
    gateways: Vec<Option<usize>>,
    /// Each host's zero-copy receiver, if it has one ([`Network::lend_to`]).
    lenders: Vec<Option<Box<HostSink<'static>>>>,
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
            nodes: Vec::new(),
            links: Vec::new(),
            gateways: Vec::new(),
            lenders: Vec::new(),
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
        self.add_node(Node::Host(Box::new(Host::new(cfg))))
    }

    /// Adds a router at `addr` (the source of its ICMP errors).
    pub fn add_router(&mut self, addr: Ipv4Addr) -> usize {
        self.add_node(Node::Router(Router::new(addr)))
    }

    fn add_node(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.gateways.push(None);
        self.lenders.push(None);
        self.nodes.len() - 1
    }

    /// Host `node` hands its received in-order payload to `sink` in place from now on, as an
    /// engine whose application lends does ([`Host::handle_ipv4_lending`]).
    pub fn lend_to(&mut self, node: usize, sink: Box<HostSink<'static>>) {
        self.lenders[node] = Some(sink);
    }

    /// Node `i`, a host. Panics if it is a router.
    pub fn host(&mut self, i: usize) -> &mut Host {
        match &mut self.nodes[i] {
            Node::Host(h) => h,
            Node::Router(_) => panic!("node {i} is a router"),
        }
    }

    /// Node `i`, a host. Panics if it is a router.
    pub fn host_ref(&self, i: usize) -> &Host {
        match &self.nodes[i] {
            Node::Host(h) => h,
            Node::Router(_) => panic!("node {i} is a router"),
        }
    }

    /// Node `i`, a router. Panics if it is a host.
    pub fn router(&mut self, i: usize) -> &mut Router {
        match &mut self.nodes[i] {
            Node::Router(r) => r,
            Node::Host(_) => panic!("node {i} is a host"),
        }
    }

    /// Node `i`, a router. Panics if it is a host.
    pub fn router_ref(&self, i: usize) -> &Router {
        match &self.nodes[i] {
            Node::Router(r) => r,
            Node::Host(_) => panic!("node {i} is a host"),
        }
    }

    /// Packets from `node` to an address it has no link to go to `via`.
    pub fn set_gateway(&mut self, node: usize, via: usize) {
        self.gateways[node] = Some(via);
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

    /// Every link as (from, to, link).
    pub fn links(&self) -> impl Iterator<Item = (usize, usize, &Link)> {
        self.links.iter().map(|(f, t, l)| (*f, *t, l))
    }

    /// Packets that had no link to their destination.
    pub fn unroutable(&self) -> u64 {
        self.unroutable
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn link_index(&self, from: usize, to: usize) -> Option<usize> {
        self.links
            .iter()
            .position(|(f, t, _)| *f == from && *t == to)
    }

    /// The link a packet from `from` to `dst` leaves on: straight to the node owning `dst`, else
    /// to `from`'s gateway.
    fn route(&self, from: usize, dst: Ipv4Addr) -> Option<usize> {
        let direct = self
            .nodes
            .iter()
            .position(|n| n.addr() == dst)
            .and_then(|to| self.link_index(from, to));
        direct.or_else(|| self.link_index(from, self.gateways[from]?))
    }

    /// Moves every packet the nodes have ready onto the links.
    pub fn flush(&mut self) {
        for n in 0..self.nodes.len() {
            loop {
                let (len, dst) = match &mut self.nodes[n] {
                    Node::Host(h) => match h.poll_transmit(self.now, &mut self.buf) {
                        Some(tx) => (tx.len, tx.dst),
                        None => break,
                    },
                    Node::Router(r) => match r.poll_transmit() {
                        Some(p) => {
                            self.buf[..p.len()].copy_from_slice(&p);
                            (p.len(), Ipv4Packet::new_unchecked(&p[..]).dst_addr())
                        }
                        None => break,
                    },
                };
                match self.route(n, dst) {
                    Some(l) => self.links[l].2.send(self.now, &self.buf[..len]),
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
        for n in &mut self.nodes {
            if let Node::Host(h) = n {
                if let Some(t) = h.poll_timeout() {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
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
            while let Some(mut frame) = self.links[i].2.recv(now) {
                if self.trace {
                    eprintln!("{now:?} {} -> {}: {}", self.links[i].0, to, Packet(&frame));
                }
                match &mut self.nodes[to] {
                    Node::Host(h) => {
                        h.handle_ipv4_lending(now, &frame, self.lenders[to].as_deref_mut());
                    }
                    Node::Router(_) => self.route_through(to, &mut frame),
                }
                self.links[i].2.recycle(frame);
            }
        }
        for n in &mut self.nodes {
            if let Node::Host(h) = n {
                if h.poll_timeout().is_some_and(|d| d <= now) {
                    h.handle_timeout(now);
                }
            }
        }
        self.flush();
    }

    /// Router `r` received `packet`: it goes on toward its destination if the router forwards
    /// it, on the link the route picks, whose MTU the router checks.
    fn route_through(&mut self, r: usize, packet: &mut [u8]) {
        let link = Ipv4Packet::new_checked(&*packet)
            .ok()
            .and_then(|p| self.route(r, p.dst_addr()));
        let mtu = link.map(|l| self.links[l].2.config().mtu);
        let Node::Router(router) = &mut self.nodes[r] else {
            unreachable!("route_through a host")
        };
        if let (true, Some(l)) = (router.forward(packet, mtu), link) {
            self.links[l].2.send(self.now, packet);
        }
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
        if repr.protocol == crate::wire::IpProtocol::Icmp {
            let icmp = crate::wire::Icmpv4Packet::new_checked(ip.payload())
                .and_then(|p| crate::wire::Icmpv4Repr::parse(&p, &caps));
            return match icmp {
                Ok(m) => write!(f, "{} > {} {m}", repr.src_addr, repr.dst_addr),
                Err(e) => write!(f, "{} > {} [bad icmp: {e}]", repr.src_addr, repr.dst_addr),
            };
        }
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
