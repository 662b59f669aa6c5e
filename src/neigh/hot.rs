//! The hot entry: the one neighbour the traffic of the moment confirms (each received frame,
//! [`NeighCache::observe_ipv4`]) and uses (each sent frame, [`NeighCache::lookup`]). Those two
//! keep its times here, without a hash look-up (~60 instructions each for a ping-pong round
//! trip, whose iterations see one frame each way).
//!
//! Invariant: while `hot` is set, the entry of `hot.ip` exists, is `Reachable` and has
//! `hot.mac()`; its true `confirmed` and `used` are `hot`'s. Every other method that reads or
//! changes entries first [`NeighCache::settle`]s, writing them back, so it sees exactly what it
//! would have seen without the hot entry.

use std::net::Ipv4Addr;

use super::cache::Entry;
use super::NeighCache;
use crate::time::Instant;
use crate::wire::EthernetAddress;

#[derive(Debug, Clone, Copy)]
pub(super) struct Hot {
    pub(super) ip: Ipv4Addr,
    /// The entry's MAC as [`mac_bits`] gives it ([`Hot::mac`] for the address): what each
    /// received frame's source is compared with, in one load instead of a 6-byte gather and two
    /// masks (~6 instructions a frame).
    pub(super) mac_bits: u64,
    pub(super) confirmed: Instant,
    pub(super) used: Instant,
}

impl Hot {
    /// `e` (the `Reachable` entry of `ip`) as the hot entry.
    pub(super) fn of(ip: Ipv4Addr, e: &Entry) -> Self {
        Hot {
            ip,
            mac_bits: mac_bits(e.mac),
            confirmed: e.confirmed,
            used: e.used,
        }
    }

    /// The entry's MAC.
    #[inline]
    pub(super) fn mac(&self) -> EthernetAddress {
        let [a, b, c, d, e, f, _, _] = self.mac_bits.to_le_bytes();
        EthernetAddress([a, b, c, d, e, f])
    }
}

/// The six bytes of `mac` in the low bytes of a `u64` (the top two zero): equal for equal
/// addresses only.
#[inline(always)]
pub(super) fn mac_bits(mac: EthernetAddress) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    u64::from_le_bytes([a, b, c, d, e, f, 0, 0])
}

impl NeighCache {
    /// Writes the hot entry's times back to its entry and forgets it.
    #[inline]
    pub(super) fn settle(&mut self) {
        if let Some(h) = self.hot.take() {
            if let Some(e) = self.entries.get_mut(&h.ip) {
                e.confirmed = h.confirmed;
                e.used = h.used;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    /// Drives two caches through the same pseudo-random sequence of frames, look-ups, ARP and
    /// timeouts: one as the engine does, one settled after every call (so never on the hot
    /// paths). Every answer, and the entries, stats and timers after every step, must agree.
    #[test]
    fn the_hot_entry_never_diverges_from_the_general_path() {
        let new = || {
            let mut n = cache(ArpOwner::Stack);
            n.cfg.max_entries = 3;
            n.cfg.reachable_time = Duration::from_millis(400);
            n.cfg.gc_time = Duration::from_millis(900);
            n.add_route(Route {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: Some(GW),
            });
            n
        };
        let (mut fast, mut slow) = (new(), new());
        let ips = [
            PEER,
            GW,
            FAR,
            Ipv4Addr::new(10, 0, 0, 9),
            Ipv4Addr::new(10, 0, 0, 10),
        ];
        let macs = [PEER_MAC, NEW_MAC, GW_MAC];
        let mut now = t(0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = [0u8; 128];
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ip = ips[(x >> 8) as usize % ips.len()];
            let mac = macs[(x >> 16) as usize % macs.len()];
            // time always moves: entries used at the same instant would make eviction pick
            // by hash order, which differs between the two caches
            let gap = 1 + (x >> 24) % 60 + ((x >> 40) % 24 == 0) as u64 * 1000;
            now += Duration::from_millis(gap);
            let (a, b) = match x % 8 {
                0..=2 => {
                    fast.observe_ipv4(now, ip, mac);
                    slow.observe_ipv4(now, ip, mac);
                    (None, None)
                }
                3..=5 => (Some(fast.lookup(now, ip)), Some(slow.lookup(now, ip))),
                6 => {
                    let hop = fast.next_hop(ip).unwrap();
                    fast.hold(now, hop, &[0x45; 20]);
                    slow.hold(now, hop, &[0x45; 20]);
                    (None, None)
                }
                _ => {
                    let reply = arp(ArpOperation::Reply, mac, ip, US);
                    fast.handle_arp(now, &reply);
                    slow.handle_arp(now, &reply);
                    (None, None)
                }
            };
            assert_eq!(a, b, "step {step}");
            for n in [&mut fast, &mut slow] {
                if n.poll_timeout().is_some_and(|t| t <= now) {
                    n.handle_timeout(now);
                }
                while n.poll_arp(&mut buf).is_some() {}
                while n.poll_released(&mut buf).is_some() {}
            }
            slow.settle();
            assert_eq!(fast.poll_timeout(), slow.poll_timeout(), "step {step}");
            assert_eq!(fast.stats(), slow.stats(), "step {step}");
            let hot = fast.hot;
            fast.settle();
            assert_eq!(fast.entries, slow.entries, "step {step}");
            fast.hot = hot;
        }
        let s = fast.stats();
        assert!(s.resolved > 10 && s.evicted > 10 && s.expired > 10, "{s:?}");
    }
}
