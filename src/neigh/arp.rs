//! ARP in and out: requests and replies the stack answers or sends when it owns ARP, and the
//! kernel probes and updates that stand in for ARP when the kernel owns it (or must still hear
//! what the stack now receives).
//!
//! Invariants:
//! - ARP is answered only with [`ArpOwner::Stack`](super::ArpOwner::Stack), only for our
//!   address, and our own address is never learned (ARP claiming it is counted as a conflict).
//! - Only on-link senders are learned; a request for us creates its sender's entry, any other
//!   ARP only updates an existing one (gratuitous ARP included).
//! - Each probe is one ARP request ([`NeighCache::poll_arp`]) or one kernel probe
//!   ([`NeighCache::poll_kernel_probe`]), never both.
//! - Kernel updates are de-duplicated and limited to [`KERNEL_UPDATES_PER_SEC`] a second.
//! - Every ARP frame is padded to [`ARP_FRAME_LEN`] bytes.

use std::net::Ipv4Addr;

use super::{ArpOwner, NeighCache};
use crate::time::Instant;
use crate::wire::{
    arp, ethernet, ArpOperation, ArpPacket, ArpRepr, EtherType, EthernetAddress, EthernetFrame,
    EthernetRepr,
};

/// Most neighbours handed to the kernel per second: each costs the engine a netlink request, and
/// ARP is cheap to forge.
pub(super) const KERNEL_UPDATES_PER_SEC: u32 = 64;

/// Ethernet frames carrying ARP are padded to the 60-byte minimum (FCS excluded).
pub const ARP_FRAME_LEN: usize = 60;

impl NeighCache {
    /// Processes a received ARP packet.
    pub fn handle_arp(&mut self, now: Instant, repr: &ArpRepr) {
        self.settle();
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
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::KERNEL_UPDATES_PER_SEC;

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
}
