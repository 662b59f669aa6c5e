//! Routes: which next hop a destination is sent to.
//!
//! Invariants of a [`RouteTable`]: routes are sorted longest prefix first, so the first route
//! that contains a destination is the longest match; no two routes have the same prefix (adding
//! one replaces the other); prefix lengths are at most 32. The connected route of our own
//! subnet is added at construction, so our subnet is always on-link.

use std::net::Ipv4Addr;

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

/// Routes, longest prefix first.
#[derive(Debug, Clone)]
pub(super) struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// A table holding only the connected route of `addr/prefix_len`.
    pub(super) fn connected(addr: Ipv4Addr, prefix_len: u8) -> Self {
        RouteTable {
            routes: vec![Route {
                dst: addr,
                prefix_len: prefix_len.min(32),
                gateway: None,
            }],
        }
    }

    pub(super) fn as_slice(&self) -> &[Route] {
        &self.routes
    }

    /// Adds (or replaces, same prefix) a route.
    pub(super) fn add(&mut self, route: Route) {
        let mut route = route;
        route.prefix_len = route.prefix_len.min(32);
        self.routes
            .retain(|r| !(r.prefix_len == route.prefix_len && r.contains(route.dst)));
        self.routes.push(route);
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
    }

    /// The next hop toward `dst`: `dst` itself if on-link, else the gateway.
    #[inline]
    pub(super) fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let r = self.routes.iter().find(|r| r.contains(dst))?;
        Some(r.gateway.unwrap_or(dst))
    }

    /// Whether `ip` is inside a connected (gateway-less) prefix.
    pub(super) fn on_link(&self, ip: Ipv4Addr) -> bool {
        self.routes
            .iter()
            .any(|r| r.gateway.is_none() && r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

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
}
