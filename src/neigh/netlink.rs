//! The kernel's own tables, read over rtnetlink: routes and neighbours to seed the
//! [`NeighCache`], the interface's MAC and MTU, and kernel-assisted resolution while the kernel owns ARP
//! (the engine serves [`NeighCache::poll_kernel_probe`] with [`KernelTables::probe`] and
//! [`NeighCache::poll_kernel_update`] with [`KernelTables::set_neighbour`]); also the
//! interface's IPv4 address ([`interface_ipv4`], from getifaddrs).
//!
//! The one part of `neigh` that does I/O. Synchronous on purpose (`netlink-sys` socket,
//! `netlink-packet-route` messages, no async runtime): it runs at start-up and, afterwards, only
//! for a next hop that is not resolved yet, never per packet. The socket belongs to the network
//! namespace of the thread that opens it, so open it on the engine's thread after entering the
//! stack's namespace.

use std::io;
use std::net::Ipv4Addr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{NeighCache, Route, SeedState};
use crate::time::Instant;
use crate::wire::EthernetAddress;

/// An rtnetlink socket scoped to one interface.
pub struct KernelTables {
    sock: Socket,
    ifindex: u32,
    seq: u32,
    buf: Vec<u8>,
}

/// A neighbour as the kernel holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelNeighbour {
    pub ip: Ipv4Addr,
    pub mac: EthernetAddress,
    pub state: SeedState,
}

/// What [`KernelTables::seed`] put into the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub routes: Vec<Route>,
    pub neighbours: Vec<KernelNeighbour>,
}

impl KernelTables {
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(KernelTables {
            sock,
            ifindex,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `msg` and collects the replies until the dump ends or the request is acknowledged.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let mut hdr = NetlinkHeader::default();
        hdr.flags = NLM_F_REQUEST | flags;
        hdr.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(hdr, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.sock.send(&out, 0)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut data = &self.buf[..n.min(self.buf.len())];
            while !data.is_empty() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(data)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (msg.header.length as usize).max(16).min(data.len());
                data = &data[len..];
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(replies),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The interface's attributes (RTM_GETLINK).
    fn link_attributes(&mut self) -> io::Result<Vec<LinkAttribute>> {
        let mut msg = LinkMessage::default();
        msg.header.index = self.ifindex;
        let mut attributes = Vec::new();
        for reply in self.request(RouteNetlinkMessage::GetLink(msg), 0)? {
            if let RouteNetlinkMessage::NewLink(link) = reply {
                attributes.extend(link.attributes);
            }
        }
        Ok(attributes)
    }

    /// The interface's MAC address.
    pub fn link_mac(&mut self) -> io::Result<EthernetAddress> {
        self.link_attributes()?
            .into_iter()
            .find_map(|a| match a {
                LinkAttribute::Address(mac) => EthernetAddress::from_bytes(&mac),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {} has no MAC address", self.ifindex),
                )
            })
    }

    /// The interface's MTU (IFLA_MTU): the longest IPv4 packet it sends.
    pub fn link_mtu(&mut self) -> io::Result<u32> {
        self.link_attributes()?
            .into_iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(mtu),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("interface {} has no MTU", self.ifindex),
                )
            })
    }

    /// IPv4 unicast routes of the main table out of our interface.
    pub fn routes(&mut self) -> io::Result<Vec<Route>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let mut routes = Vec::new();
        for reply in self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)? {
            let RouteNetlinkMessage::NewRoute(r) = reply else {
                continue;
            };
            if r.header.address_family != AddressFamily::Inet || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            let mut table = u32::from(r.header.table);
            let mut oif = None;
            let mut dst = Ipv4Addr::UNSPECIFIED;
            let mut gateway = None;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = *ip,
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    _ => {}
                }
            }
            if table == u32::from(RouteHeader::RT_TABLE_MAIN) && oif == Some(self.ifindex) {
                routes.push(Route {
                    dst,
                    prefix_len: r.header.destination_prefix_length,
                    gateway,
                });
            }
        }
        Ok(routes)
    }

    /// Usable IPv4 neighbours on our interface (incomplete and failed entries left out).
    pub fn neighbours(&mut self) -> io::Result<Vec<KernelNeighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.ifindex;
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => self.usable(&n),
                _ => None,
            })
            .collect())
    }

    fn usable(&self, n: &NeighbourMessage) -> Option<KernelNeighbour> {
        if n.header.ifindex != self.ifindex || n.header.family != AddressFamily::Inet {
            return None;
        }
        let state = match n.header.state {
            NeighbourState::Reachable => SeedState::Reachable,
            NeighbourState::Stale | NeighbourState::Delay | NeighbourState::Probe => {
                SeedState::Stale
            }
            NeighbourState::Permanent | NeighbourState::Noarp => SeedState::Permanent,
            _ => return None,
        };
        let mut ip = None;
        let mut mac = None;
        for a in &n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(*a),
                NeighbourAttribute::LinkLayerAddress(b) => mac = EthernetAddress::from_bytes(b),
                _ => {}
            }
        }
        Some(KernelNeighbour {
            ip: ip?,
            mac: mac.filter(|m| m.is_unicast() && *m != EthernetAddress::UNSPECIFIED)?,
            state,
        })
    }

    /// The kernel's usable entry for `ip`, if any.
    pub fn neighbour(&mut self, ip: Ipv4Addr) -> io::Result<Option<KernelNeighbour>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.ifindex;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.request(RouteNetlinkMessage::GetNeighbour(msg), 0) {
            Ok(replies) => Ok(replies.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => self.usable(n),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks the kernel to resolve `ip` (`NTF_USE`: the kernel sends its own ARP request, as if a
    /// packet were waiting, creating the entry when absent). The answer lands in the kernel's
    /// table; read it back with [`KernelTables::neighbour`].
    pub fn resolve(&mut self, ip: Ipv4Addr) -> io::Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.ifindex;
        msg.header.flags = NeighbourFlags::Use;
        msg.header.state = NeighbourState::None;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_ACK,
        )
        .map(drop)
    }

    /// Writes `ip` at `mac` into the kernel's neighbour table as reachable (creating or
    /// replacing the entry), as the kernel would after hearing the ARP itself; packets the
    /// kernel queued for `ip` go out.
    pub fn set_neighbour(&mut self, ip: Ipv4Addr, mac: EthernetAddress) -> io::Result<()> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = self.ifindex;
        msg.header.state = NeighbourState::Reachable;
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(
            mac.as_bytes().to_vec(),
        ));
        self.request(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
        )
        .map(drop)
    }

    /// One probe from [`NeighCache::poll_kernel_probe`]: the kernel's entry if it has one (learned
    /// into `neigh`), else a request that the kernel resolve it for the next probe to find.
    pub fn probe(
        &mut self,
        now: Instant,
        neigh: &mut NeighCache,
        ip: Ipv4Addr,
    ) -> io::Result<bool> {
        if let Some(n) = self.neighbour(ip)? {
            neigh.learn(now, n.ip, n.mac);
            return Ok(true);
        }
        self.resolve(ip)?;
        Ok(false)
    }

    /// Reads the kernel's routes and neighbours for our interface into `neigh`.
    pub fn seed(&mut self, now: Instant, neigh: &mut NeighCache) -> io::Result<SeedReport> {
        let routes = self.routes()?;
        for r in &routes {
            neigh.add_route(*r);
        }
        let neighbours = self.neighbours()?;
        for n in &neighbours {
            neigh.seed(now, n.ip, n.mac, n.state);
        }
        Ok(SeedReport { routes, neighbours })
    }
}

/// The first IPv4 address of interface `ifname` in the calling thread's namespace, with its
/// prefix length (getifaddrs).
pub fn interface_ipv4(ifname: &str) -> io::Result<(Ipv4Addr, u8)> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we free below; we only read it in between.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut p = head;
    while !p.is_null() {
        // SAFETY: p is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        // SAFETY: ifa_addr is non-null and points to a sockaddr of at least its family's size.
        let family = unsafe { (*ifa.ifa_addr).sa_family } as i32;
        if name.to_bytes() != ifname.as_bytes() || family != libc::AF_INET {
            continue;
        }
        // SAFETY: family AF_INET means these are sockaddr_in.
        let (addr, mask) = unsafe {
            let a = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            let m = if ifa.ifa_netmask.is_null() {
                u32::MAX
            } else {
                u32::from_be(
                    (*(ifa.ifa_netmask as *const libc::sockaddr_in))
                        .sin_addr
                        .s_addr,
                )
            };
            (Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)), m)
        };
        found = Some((addr, mask.count_ones() as u8));
        break;
    }
    // SAFETY: head came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no IPv4 address on {ifname} in this namespace"),
        )
    })
}
