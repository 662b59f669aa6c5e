//! What the cache's tests share: addresses, a cache with a small hold queue, ARP builders.

pub(super) use super::*;
pub(super) use crate::time::{Duration, Instant};
pub(super) use crate::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetRepr,
};

pub(super) const US: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
pub(super) const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub(super) const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
pub(super) const FAR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
pub(super) const OUR_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);
pub(super) const PEER_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 2]);
pub(super) const NEW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 3]);
pub(super) const GW_MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 0xfe]);

pub(super) fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

pub(super) fn cache(owner: ArpOwner) -> NeighCache {
    let mut cfg = NeighConfig::new(US, 24, OUR_MAC);
    cfg.arp_owner = owner;
    cfg.max_held = 4;
    NeighCache::new(cfg)
}

pub(super) fn arp(op: ArpOperation, sha: EthernetAddress, spa: Ipv4Addr, tpa: Ipv4Addr) -> ArpRepr {
    ArpRepr::EthernetIpv4 {
        operation: op,
        source_hardware_addr: sha,
        source_protocol_addr: spa,
        target_hardware_addr: EthernetAddress::UNSPECIFIED,
        target_protocol_addr: tpa,
    }
}

pub(super) fn parse_arp(frame: &[u8]) -> (EthernetRepr, ArpRepr) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let repr = EthernetRepr::parse(&eth).unwrap();
    let a = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    (repr, a)
}
