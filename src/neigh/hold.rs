//! The hold queue: packets waiting for their next hop to resolve.
//!
//! A packet whose next hop has no usable entry is copied in ([`HoldQueue::hold`]) and waits
//! under that hop. When the hop resolves, its packets move, in the order they were held, to the
//! released queue, each with the hop's MAC, and leave as whole Ethernet frames
//! ([`HoldQueue::poll_released`]); when resolution fails they are dropped.
//!
//! Invariants: at most `max` packets are held across all hops (the oldest is dropped to make
//! room, counted); every held packet ends in exactly one of `released`, `dropped_overflow`,
//! `dropped_unresolved` or `dropped_too_big`; packet buffers are recycled through a spare list,
//! so in steady state holding allocates nothing. Held bytes are copied twice (in and out),
//! counted in `held_bytes_copied`: rare, but not free.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use super::NeighStats;
use crate::wire::{ethernet, EtherType, EthernetAddress, EthernetFrame, EthernetRepr};

#[derive(Debug)]
struct Held {
    hop: Ipv4Addr,
    mac: EthernetAddress,
    packet: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct HoldQueue {
    max: usize,
    /// Waiting for their hop, oldest first.
    held: VecDeque<Held>,
    /// Resolved, waiting for a transmit buffer, in order.
    released: VecDeque<Held>,
    spare: Vec<Vec<u8>>,
}

impl HoldQueue {
    pub(super) fn new(max: usize) -> Self {
        HoldQueue {
            max,
            held: VecDeque::new(),
            released: VecDeque::new(),
            spare: Vec::new(),
        }
    }

    /// Packets waiting for resolution.
    pub(super) fn held_len(&self) -> usize {
        self.held.len()
    }

    pub(super) fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Copies `packet` in, to wait for `hop`; or, with `mac` (the hop resolved meanwhile),
    /// straight to the released queue. Returns whether it was kept (a queue of size 0 keeps
    /// nothing).
    pub(super) fn hold(
        &mut self,
        hop: Ipv4Addr,
        mac: Option<EthernetAddress>,
        packet: &[u8],
        stats: &mut NeighStats,
    ) -> bool {
        if self.max == 0 {
            stats.dropped_overflow += 1;
            return false;
        }
        while self.held.len() >= self.max {
            if let Some(old) = self.held.pop_front() {
                stats.dropped_overflow += 1;
                self.spare.push(old.packet);
            }
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(packet);
        stats.held += 1;
        stats.held_bytes_copied += packet.len() as u64;
        match mac {
            Some(mac) => self.released.push_back(Held {
                hop,
                mac,
                packet: buf,
            }),
            None => self.held.push_back(Held {
                hop,
                mac: EthernetAddress::UNSPECIFIED,
                packet: buf,
            }),
        }
        true
    }

    /// `hop` resolved to `mac`: its packets move to the released queue, in order.
    pub(super) fn release(&mut self, hop: Ipv4Addr, mac: EthernetAddress) {
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

    /// `hop` did not resolve: its packets are dropped.
    pub(super) fn drop_unresolved(&mut self, hop: Ipv4Addr, stats: &mut NeighStats) {
        let spare = &mut self.spare;
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

    /// Writes the next released packet as a whole Ethernet frame from `src_mac` into `buf`;
    /// returns its length. A packet too big for `buf` is dropped.
    pub(super) fn poll_released(
        &mut self,
        buf: &mut [u8],
        src_mac: EthernetAddress,
        stats: &mut NeighStats,
    ) -> Option<usize> {
        loop {
            let h = self.released.pop_front()?;
            let len = ethernet::HEADER_LEN + h.packet.len();
            if len > buf.len() {
                stats.dropped_too_big += 1;
                self.spare.push(h.packet);
                continue;
            }
            EthernetRepr {
                src_addr: src_mac,
                dst_addr: h.mac,
                ethertype: EtherType::Ipv4,
            }
            .emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
            buf[ethernet::HEADER_LEN..len].copy_from_slice(&h.packet);
            stats.released += 1;
            self.spare.push(h.packet);
            return Some(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

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
}
