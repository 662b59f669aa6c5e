//! A router between hosts of a [`Network`](super::network::Network): it forwards IPv4 packets
//! hop by hop and answers, as RFC 792, RFC 1191 and RFC 1812 say, with ICMP errors from its own
//! address:
//! - a packet longer than the MTU of the link it would leave on: with DF, "fragmentation
//!   needed" carrying that MTU (RFC 1191), unless [`Router::set_frag_needed`] turned that off
//!   (a firewall filtering ICMP: a path MTU black hole); without DF it is dropped too (this
//!   router does not fragment, and nothing here sends without DF);
//! - a packet whose TTL runs out ("time exceeded", if [`Router::set_time_exceeded`] allows);
//! - while a [`RouterFault`] is set: every packet answered "destination unreachable" with the
//!   given code, or, for a routing loop, "time exceeded".
//!
//! Each error quotes the offending packet's IPv4 header and the first 8 bytes of its payload,
//! byte for byte as received (RFC 792), and none is sent about an ICMP message. Every packet
//! that is not forwarded is counted under one reason in [`RouterStats`].

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use crate::wire::icmpv4::{self, DstUnreachable, Icmpv4Message};
use crate::wire::{ipv4, ChecksumCaps, Icmpv4Packet, IpProtocol, Ipv4Packet, Ipv4Repr};

/// A temporary failure the router answers every packet with, while set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterFault {
    /// No route (or a filter): every packet gets "destination unreachable" with this code.
    Unreachable(DstUnreachable),
    /// A routing loop: every packet circles until its TTL runs out.
    Loop,
}

/// What the router did with the packets it received. Each one is counted once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub forwarded: u64,
    /// Too long for the next hop (answered by "fragmentation needed" when DF was set).
    pub too_big: u64,
    /// TTL ran out (or looped, under [`RouterFault::Loop`]).
    pub ttl_expired: u64,
    /// Answered "destination unreachable" under [`RouterFault::Unreachable`].
    pub unreachable: u64,
    /// No link toward the destination.
    pub no_route: u64,
    /// Not a valid IPv4 packet, or addressed to the router itself.
    pub not_forwarded: u64,
    /// ICMP errors sent.
    pub icmp_sent: u64,
}

/// A router; see the [module docs](self).
#[derive(Debug)]
pub struct Router {
    addr: Ipv4Addr,
    fault: Option<RouterFault>,
    time_exceeded: bool,
    frag_needed: bool,
    stats: RouterStats,
    outbox: VecDeque<Vec<u8>>,
}

impl Router {
    /// A router at `addr` (the source of its ICMP errors), answering TTL expiry.
    pub fn new(addr: Ipv4Addr) -> Self {
        Router {
            addr,
            fault: None,
            time_exceeded: true,
            frag_needed: true,
            stats: RouterStats::default(),
            outbox: VecDeque::new(),
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Sets (or with `None` ends) a failure every packet is answered with.
    pub fn set_fault(&mut self, fault: Option<RouterFault>) {
        self.fault = fault;
    }

    /// Whether TTL expiry is answered with "time exceeded" (on by default).
    pub fn set_time_exceeded(&mut self, answer: bool) {
        self.time_exceeded = answer;
    }

    /// Whether too-big packets are answered with "fragmentation needed" (on by default); off
    /// they vanish without a word, a path MTU black hole (RFC 2923).
    pub fn set_frag_needed(&mut self, answer: bool) {
        self.frag_needed = answer;
    }

    /// Takes `packet`, received from a link; `next_hop_mtu` is the MTU of the link toward its
    /// destination (`None`: no route). Returns true if the packet, its TTL decremented, is to
    /// go on that link; otherwise it was dropped, and any ICMP answer waits in
    /// [`Router::poll_transmit`].
    pub fn forward(&mut self, packet: &mut [u8], next_hop_mtu: Option<usize>) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(&*packet) else {
            self.stats.not_forwarded += 1;
            return false;
        };
        if ip.dst_addr() == self.addr || !ip.verify_checksum() {
            self.stats.not_forwarded += 1;
            return false;
        }
        match self.fault {
            Some(RouterFault::Unreachable(code)) => {
                self.stats.unreachable += 1;
                self.answer(packet, Icmpv4Message::DstUnreachable, code.into(), 0);
                return false;
            }
            Some(RouterFault::Loop) => return self.expire(packet),
            None => {}
        }
        if ip.ttl() <= 1 {
            return self.expire(packet);
        }
        let Some(mtu) = next_hop_mtu else {
            self.stats.no_route += 1;
            return false;
        };
        if packet.len() > mtu {
            self.stats.too_big += 1;
            if ip.dont_frag() && self.frag_needed {
                let code = DstUnreachable::FragRequired.into();
                let mtu = u16::try_from(mtu).unwrap_or(u16::MAX);
                self.answer(packet, Icmpv4Message::DstUnreachable, code, mtu);
            }
            return false;
        }
        let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
        ip.set_ttl(ip.ttl() - 1);
        ip.fill_checksum();
        self.stats.forwarded += 1;
        true
    }

    fn expire(&mut self, packet: &[u8]) -> bool {
        self.stats.ttl_expired += 1;
        if self.time_exceeded {
            self.answer(packet, Icmpv4Message::TimeExceeded, 0, 0);
        }
        false
    }

    /// The next ICMP error to send, a whole IPv4 packet.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    /// Queues an ICMP error of `kind` and `code` about `packet` to its source, quoting its
    /// header and the first 8 bytes of its payload; `mtu` fills the next-hop MTU field.
    fn answer(&mut self, packet: &[u8], kind: Icmpv4Message, code: u8, mtu: u16) {
        let ip = Ipv4Packet::new_unchecked(packet);
        if ip.protocol() == IpProtocol::Icmp {
            return;
        }
        let header_len = usize::from(ip.header_len());
        let quote = &packet[..(header_len + icmpv4::QUOTED_PAYLOAD_LEN).min(packet.len())];
        let icmp_len = icmpv4::HEADER_LEN + quote.len();
        let mut out_ip = Ipv4Repr::new(self.addr, ip.src_addr(), IpProtocol::Icmp, icmp_len);
        out_ip.ttl = ipv4::DEFAULT_TTL;
        let mut out = vec![0u8; out_ip.buffer_len()];
        let caps = ChecksumCaps::default();
        let (head, body) = out.split_at_mut(ipv4::HEADER_LEN);
        out_ip.emit(&mut Ipv4Packet::new_unchecked(head), &caps);
        let mut icmp = Icmpv4Packet::new_unchecked(body);
        icmp.set_msg_type(kind);
        icmp.set_msg_code(code);
        icmp.set_next_hop_mtu(mtu);
        icmp.data_mut().copy_from_slice(quote);
        icmp.fill_checksum();
        self.stats.icmp_sent += 1;
        self.outbox.push_back(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Icmpv4Repr;

    const R: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

    /// An IPv4 packet from A to B of `len` bytes whose payload starts with a TCP-like header.
    fn packet(len: usize, ttl: u8) -> Vec<u8> {
        let mut ip = Ipv4Repr::new(A, B, IpProtocol::Tcp, len - 20);
        ip.ttl = ttl;
        let mut p = vec![0u8; len];
        ip.emit(
            &mut Ipv4Packet::new_unchecked(&mut p[..]),
            &ChecksumCaps::default(),
        );
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn icmp(r: &mut Router) -> (Ipv4Repr, Vec<u8>) {
        let out = r.poll_transmit().expect("an ICMP error");
        let ip = Ipv4Packet::new_checked(&out[..]).unwrap();
        let repr = Ipv4Repr::parse(&ip, &ChecksumCaps::default()).unwrap();
        (repr, ip.payload().to_vec())
    }

    #[test]
    fn forwards_with_the_ttl_decremented() {
        let mut r = Router::new(R);
        let mut p = packet(1500, 64);
        assert!(r.forward(&mut p, Some(1500)));
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        assert!(ip.verify_checksum());
        assert_eq!(r.stats().forwarded, 1);
        assert!(r.poll_transmit().is_none());
    }

    #[test]
    fn too_big_with_df_is_answered_with_the_next_hop_mtu_and_a_quote() {
        let mut r = Router::new(R);
        let original = packet(1500, 64);
        let mut p = original.clone();
        assert!(!r.forward(&mut p, Some(1280)));
        assert_eq!(r.stats().too_big, 1);
        let (ip, body) = icmp(&mut r);
        assert_eq!(
            (ip.src_addr, ip.dst_addr, ip.protocol),
            (R, A, IpProtocol::Icmp)
        );
        assert_eq!(body.len(), 8 + 20 + 8);
        assert_eq!(
            &body[8..],
            &original[..28],
            "header and 8 bytes, as received"
        );
        let parsed = Icmpv4Repr::parse(
            &Icmpv4Packet::new_checked(&body[..]).unwrap(),
            &ChecksumCaps::default(),
        )
        .unwrap();
        match parsed {
            Icmpv4Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                header,
                ..
            } => {
                assert_eq!(reason, DstUnreachable::FragRequired);
                assert_eq!(next_hop_mtu, 1280);
                assert_eq!((header.src_addr, header.payload_len), (A, 1480));
            }
            other => panic!("{other:?}"),
        }
        // without DF: dropped, not answered
        let mut p = packet(1500, 64);
        Ipv4Packet::new_unchecked(&mut p[..]).set_dont_frag(false);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        assert!(!r.forward(&mut p, Some(1280)));
        assert_eq!((r.stats().too_big, r.stats().icmp_sent), (2, 1));
        // a black hole: dropped without a word
        r.set_frag_needed(false);
        assert!(!r.forward(&mut packet(1500, 64), Some(1280)));
        assert_eq!((r.stats().too_big, r.stats().icmp_sent), (3, 1));
    }

    #[test]
    fn ttl_expiry_loops_and_faults_are_answered() {
        let mut r = Router::new(R);
        assert!(!r.forward(&mut packet(100, 1), Some(1500)));
        let (_, body) = icmp(&mut r);
        assert_eq!((body[0], body[1]), (11, 0));
        r.set_fault(Some(RouterFault::Loop));
        assert!(!r.forward(&mut packet(100, 64), Some(1500)));
        assert_eq!(icmp(&mut r).1[0], 11);
        r.set_fault(Some(RouterFault::Unreachable(
            DstUnreachable::HostUnreachable,
        )));
        assert!(!r.forward(&mut packet(100, 64), Some(1500)));
        let (_, body) = icmp(&mut r);
        assert_eq!((body[0], body[1]), (3, 1));
        r.set_fault(None);
        r.set_time_exceeded(false);
        assert!(!r.forward(&mut packet(100, 1), Some(1500)));
        assert!(r.poll_transmit().is_none());
        assert!(!r.forward(&mut packet(100, 9), None));
        let s = *r.stats();
        assert_eq!((s.ttl_expired, s.unreachable, s.no_route), (3, 1, 1));
        // never an error about an ICMP message
        let mut p = packet(100, 1);
        Ipv4Packet::new_unchecked(&mut p[..]).set_protocol(IpProtocol::Icmp);
        Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
        r.set_time_exceeded(true);
        assert!(!r.forward(&mut p, Some(1500)));
        assert!(r.poll_transmit().is_none());
    }
}
