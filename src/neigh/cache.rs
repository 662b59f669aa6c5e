//! The cache proper: one entry per next hop, its state, and when it is probed and forgotten.
//!
//! Invariants:
//! - At most `max_entries` entries: a new one first evicts the least recently used entry that
//!   is neither `Permanent` nor `Incomplete`.
//! - `Permanent` entries (seeded from the kernel's static entries) never change.
//! - An entry with `next_probe` set is being resolved (`Incomplete`) or refreshed (`Stale`);
//!   `probes` counts the probes of that round and the delay before the next doubles each time,
//!   from `retry_interval`. After `max_probes` unanswered probes an `Incomplete` entry is removed
//!   with its held packets, a `Stale` one just removed.
//! - The cache's `next_probe` is a lower bound of every entry's `next_probe` (exact after each
//!   probe round), so [`NeighCache::poll_timeout`] is O(1); an early wake-up only finds nothing
//!   due.
//! - The sweep of unused stale entries runs every `gc_time` while the cache is not empty.
//! - Our own address is never learned, nor a MAC that is not unicast.

use std::net::Ipv4Addr;

use super::{ArpOwner, NeighCache, SeedState};
use crate::time::Instant;
use crate::wire::EthernetAddress;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Incomplete,
    Reachable,
    Stale,
    Permanent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) mac: EthernetAddress,
    pub(super) state: State,
    pub(super) confirmed: Instant,
    pub(super) used: Instant,
    /// Probes sent in the current resolution or refresh.
    pub(super) probes: u32,
    pub(super) next_probe: Option<Instant>,
}

impl NeighCache {
    /// Seeds an entry read from the kernel's table at start-up.
    pub fn seed(&mut self, now: Instant, ip: Ipv4Addr, mac: EthernetAddress, state: SeedState) {
        self.settle();
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

    /// A received IPv4 frame from `src_ip` came from `src_mac`: with `learn_from_ipv4`, creates or
    /// confirms the entry of an on-link source.
    ///
    /// The hot entry's case (the peer of the moment, every frame of a connection) is inlined
    /// into the caller; anything else takes a call.
    #[inline(always)]
    pub fn observe_ipv4(&mut self, now: Instant, src_ip: Ipv4Addr, src_mac: EthernetAddress) {
        if !self.cfg.learn_from_ipv4 {
            return;
        }
        if let Some(h) = &mut self.hot {
            if h.ip == src_ip && h.mac_bits == super::hot::mac_bits(src_mac) {
                h.confirmed = now;
                return;
            }
        }
        self.observe_ipv4_cold(now, src_ip, src_mac);
    }

    #[inline(never)]
    fn observe_ipv4_cold(&mut self, now: Instant, src_ip: Ipv4Addr, src_mac: EthernetAddress) {
        self.settle();
        if let Some(e) = self.entries.get_mut(&src_ip) {
            if e.mac == src_mac && e.state == State::Reachable {
                e.confirmed = now;
                self.hot = Some(super::hot::Hot::of(src_ip, e));
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
        self.settle();
        if ip == self.cfg.addr || !mac.is_unicast() || mac == EthernetAddress::UNSPECIFIED {
            return;
        }
        self.update(now, ip, mac, true);
    }

    /// Returns whether anything was created or confirmed.
    pub(super) fn update(
        &mut self,
        now: Instant,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        create: bool,
    ) -> bool {
        self.settle();
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
            self.hold.release(ip, mac);
        }
        true
    }

    pub(super) fn start_probing(&mut self, now: Instant, hop: Ipv4Addr) {
        if let Some(e) = self.entries.get_mut(&hop) {
            e.probes = 0;
        }
        self.probe(now, hop);
    }

    /// Sends one probe for `hop` and schedules the next.
    pub(super) fn probe(&mut self, now: Instant, hop: Ipv4Addr) {
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

    pub(super) fn arm_gc(&mut self, now: Instant) {
        if self.next_gc.is_none() {
            self.next_gc = Some(now + self.cfg.gc_time);
        }
    }

    pub(super) fn run_probes(&mut self, now: Instant) {
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
                self.hold.drop_unresolved(ip, &mut self.stats);
            } else {
                self.stats.expired += 1;
            }
        }
        self.next_probe = self.entries.values().filter_map(|e| e.next_probe).min();
    }

    pub(super) fn gc(&mut self, now: Instant) {
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
    pub(super) fn make_room(&mut self, _now: Instant) {
        self.settle();
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
    use super::super::test_util::*;

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
