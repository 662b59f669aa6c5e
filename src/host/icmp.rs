//! ICMP errors about our TCP segments: each goes to the connection whose segment it quotes,
//! which checks the quoted sequence number (RFC 5927) before believing it.
//!
//! "Fragmentation needed" (RFC 1191) lowers the path MTU: the connection re-segments and
//! resends at the new size, the host caches the MTU for the destination ([`PmtuCache`]) and
//! lowers it for every other connection to that destination too (the one place the host visits
//! connections it was not asked about: a scan, bounded by the reports that lower an MTU, each
//! of which needs a believed quote and a lower value than before). Other unreachables and time
//! exceeded map to errors as Linux's `icmp_err_convert` does, hard or soft.

use super::{DropReason, Host, RxVerdict};
use crate::tcp;
use crate::time::Instant;
use crate::wire::icmpv4::DstUnreachable;
use crate::wire::{ipv4, Icmpv4Packet, Icmpv4Repr, IpProtocol};
use std::net::SocketAddrV4;

#[cfg(doc)]
use super::pmtu::PmtuCache;

/// RFC 1191 section 7's plateaus, for a router that reports no next-hop MTU.
const PLATEAUS: [u16; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];

/// What an ICMP error tells a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// Fragmentation needed: the next hop carries at most this many bytes.
    TooBig(u16),
    /// An error, hard (fatal while connecting) or soft.
    Error(tcp::Error, bool),
}

/// The error a destination-unreachable code maps to and whether it is hard, as Linux's
/// `icmp_err_convert`; `None` for codes Linux ignores.
pub fn unreachable_error(code: DstUnreachable) -> Option<(tcp::Error, bool)> {
    use tcp::Error as E;
    use DstUnreachable::*;
    Some(match code {
        NetUnreachable | NetUnreachToS => (E::NetUnreachable, false),
        HostUnreachable | HostUnreachToS => (E::HostUnreachable, false),
        ProtoUnreachable => (E::ProtocolUnavailable, true),
        PortUnreachable => (E::Refused, true),
        SrcRouteFailed => (E::SourceRouteFailed, false),
        DstNetUnknown | NetProhibited => (E::NetUnreachable, true),
        DstHostUnknown => (E::HostDown, true),
        SrcHostIsolated => (E::NoNetwork, true),
        HostProhibited | CommProhibited | HostPrecedenceViolation | PrecedenceCutoff => {
            (E::HostUnreachable, true)
        }
        FragRequired | Unknown(_) => return None,
    })
}

/// The MTU a "fragmentation needed" report means: its next-hop MTU, or, from a router that
/// leaves it zero (before RFC 1191), the plateau below the quoted datagram's length.
fn reported_mtu(next_hop_mtu: u16, quoted_len: usize) -> u16 {
    if next_hop_mtu != 0 {
        return next_hop_mtu;
    }
    PLATEAUS
        .into_iter()
        .find(|&p| usize::from(p) < quoted_len)
        .unwrap_or(tcp::MIN_PMTU)
}

impl Host {
    /// ICMP errors quoting one of our TCP segments go to that connection; anything else is
    /// counted and dropped.
    pub(super) fn handle_icmp(&mut self, now: Instant, bytes: &[u8]) -> RxVerdict {
        let caps = self.cfg.checksum;
        let icmp = match Icmpv4Packet::new_checked(bytes).and_then(|p| Icmpv4Repr::parse(&p, &caps))
        {
            Ok(r) => r,
            Err(e) => return self.drop(DropReason::Icmp(e)),
        };
        let (header, report) = match icmp {
            Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable::FragRequired,
                next_hop_mtu,
                header,
                ..
            } => {
                let quoted_len = ipv4::HEADER_LEN + header.payload_len;
                (
                    header,
                    Report::TooBig(reported_mtu(next_hop_mtu, quoted_len)),
                )
            }
            Icmpv4Repr::DstUnreachable { reason, header, .. } => match unreachable_error(reason) {
                Some((e, hard)) => (header, Report::Error(e, hard)),
                None => return self.drop(DropReason::IcmpIgnored),
            },
            Icmpv4Repr::TimeExceeded { header, .. } => {
                (header, Report::Error(tcp::Error::HostUnreachable, false))
            }
            _ => return self.drop(DropReason::IcmpIgnored),
        };
        let (Some((sport, dport)), Some(seq)) = (icmp.quoted_ports(), icmp.quoted_tcp_seq()) else {
            return self.drop(DropReason::IcmpIgnored);
        };
        if header.src_addr != self.cfg.addr || header.protocol != IpProtocol::Tcp {
            return self.drop(DropReason::IcmpIgnored);
        }
        let remote = SocketAddrV4::new(header.dst_addr, dport);
        let Some(id) = self.lookup(remote, sport) else {
            if let Some(owner) = self.foreign_owner(remote, sport) {
                return RxVerdict::Foreign { owner };
            }
            return self.drop(DropReason::IcmpIgnored);
        };
        self.stats.icmp_errors += 1;
        match report {
            Report::TooBig(mtu) => {
                let lowered = self.with_conn(id, |c| c.handle_packet_too_big(now, seq, mtu));
                if let Some(Some(pmtu)) = lowered {
                    self.path_mtu_lowered(now, header.dst_addr, pmtu);
                }
            }
            Report::Error(e, hard) => {
                self.with_conn(id, |c| c.handle_icmp_error(now, seq, e, hard));
            }
        }
        RxVerdict::IcmpError
    }

    /// A believed report lowered the path MTU to `dst` to `pmtu`: cache it, and lower it for
    /// every other connection to `dst`.
    fn path_mtu_lowered(&mut self, now: Instant, dst: std::net::Ipv4Addr, pmtu: u16) {
        self.stats.pmtu_reductions += 1;
        let until = self.pmtu.insert(now, dst, pmtu, self.cfg.tcp.pmtu_expires);
        for index in 0..self.slots.len() as u32 {
            let Some(conn) = self.slots[index as usize].conn.as_mut() else {
                continue;
            };
            if *conn.remote().ip() == dst && conn.lower_path_mtu(now, pmtu, until).is_some() {
                self.touch(index);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_as_linux_icmp_err_convert() {
        use tcp::Error as E;
        assert_eq!(
            unreachable_error(DstUnreachable::HostUnreachable),
            Some((E::HostUnreachable, false))
        );
        assert_eq!(
            unreachable_error(DstUnreachable::NetUnreachable),
            Some((E::NetUnreachable, false))
        );
        assert_eq!(
            unreachable_error(DstUnreachable::PortUnreachable),
            Some((E::Refused, true))
        );
        assert_eq!(
            unreachable_error(DstUnreachable::CommProhibited),
            Some((E::HostUnreachable, true))
        );
        assert_eq!(
            unreachable_error(DstUnreachable::ProtoUnreachable),
            Some((E::ProtocolUnavailable, true))
        );
        assert_eq!(unreachable_error(DstUnreachable::FragRequired), None);
        assert_eq!(unreachable_error(DstUnreachable::Unknown(16)), None);
    }

    #[test]
    fn a_missing_next_hop_mtu_takes_the_plateau_below_the_quote() {
        assert_eq!(reported_mtu(1280, 1500), 1280);
        assert_eq!(reported_mtu(0, 1500), 1492);
        assert_eq!(reported_mtu(0, 1492), 1006);
        assert_eq!(reported_mtu(0, 60), tcp::MIN_PMTU);
    }
}
