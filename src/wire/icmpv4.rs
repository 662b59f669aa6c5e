//! ICMPv4 (RFC 792): echo, and the errors the TCP layer must hear about (RFC 5927, RFC 1191).
//!
//! An [`Icmpv4Packet`] from `new_checked` holds at least the 8-byte header; its buffer should be
//! exactly the IPv4 payload (the checksum covers all of it). [`Icmpv4Repr::parse`] verifies the
//! checksum when asked, before reading anything else.
//!
//! For an error message, the body quotes the offending datagram: its IPv4 header and at least 8
//! bytes of what followed (RFC 792). We parse the quoted header leniently: its total length
//! describes the original datagram, not the quote, and its checksum is not ours to judge. We do
//! require the quoted header to be whole and followed by 8 bytes, which hold the transport ports
//! (and, for TCP, the sequence number the stack checks against its send window, RFC 5927).

use core::fmt;

use super::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use super::{checksum, ChecksumCaps, Error, Result, SeqNumber};

/// The message type. Unnamed values keep their number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Message {
    EchoReply,
    DstUnreachable,
    EchoRequest,
    TimeExceeded,
    Unknown(u8),
}

impl From<u8> for Icmpv4Message {
    fn from(v: u8) -> Self {
        match v {
            0 => Icmpv4Message::EchoReply,
            3 => Icmpv4Message::DstUnreachable,
            8 => Icmpv4Message::EchoRequest,
            11 => Icmpv4Message::TimeExceeded,
            other => Icmpv4Message::Unknown(other),
        }
    }
}

impl From<Icmpv4Message> for u8 {
    fn from(m: Icmpv4Message) -> u8 {
        match m {
            Icmpv4Message::EchoReply => 0,
            Icmpv4Message::DstUnreachable => 3,
            Icmpv4Message::EchoRequest => 8,
            Icmpv4Message::TimeExceeded => 11,
            Icmpv4Message::Unknown(v) => v,
        }
    }
}

/// Destination-unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    NetUnreachable,
    HostUnreachable,
    ProtoUnreachable,
    PortUnreachable,
    /// Fragmentation needed and DF set: the message carries the next-hop MTU (RFC 1191).
    FragRequired,
    SrcRouteFailed,
    DstNetUnknown,
    DstHostUnknown,
    SrcHostIsolated,
    NetProhibited,
    HostProhibited,
    NetUnreachToS,
    HostUnreachToS,
    CommProhibited,
    HostPrecedenceViolation,
    PrecedenceCutoff,
    Unknown(u8),
}

impl DstUnreachable {
    /// Codes RFC 1122 (4.2.3.9) and RFC 5461 call hard errors: protocol unreachable, port
    /// unreachable, and fragmentation needed (which PMTUD handles instead). A TCP connection
    /// that is not yet established may abort on these; the rest are soft.
    pub fn is_hard_error(self) -> bool {
        matches!(
            self,
            DstUnreachable::ProtoUnreachable
                | DstUnreachable::PortUnreachable
                | DstUnreachable::FragRequired
        )
    }
}

impl From<u8> for DstUnreachable {
    fn from(v: u8) -> Self {
        use DstUnreachable::*;
        match v {
            0 => NetUnreachable,
            1 => HostUnreachable,
            2 => ProtoUnreachable,
            3 => PortUnreachable,
            4 => FragRequired,
            5 => SrcRouteFailed,
            6 => DstNetUnknown,
            7 => DstHostUnknown,
            8 => SrcHostIsolated,
            9 => NetProhibited,
            10 => HostProhibited,
            11 => NetUnreachToS,
            12 => HostUnreachToS,
            13 => CommProhibited,
            14 => HostPrecedenceViolation,
            15 => PrecedenceCutoff,
            other => Unknown(other),
        }
    }
}

impl From<DstUnreachable> for u8 {
    fn from(c: DstUnreachable) -> u8 {
        use DstUnreachable::*;
        match c {
            NetUnreachable => 0,
            HostUnreachable => 1,
            ProtoUnreachable => 2,
            PortUnreachable => 3,
            FragRequired => 4,
            SrcRouteFailed => 5,
            DstNetUnknown => 6,
            DstHostUnknown => 7,
            SrcHostIsolated => 8,
            NetProhibited => 9,
            HostProhibited => 10,
            NetUnreachToS => 11,
            HostUnreachToS => 12,
            CommProhibited => 13,
            HostPrecedenceViolation => 14,
            PrecedenceCutoff => 15,
            Unknown(v) => v,
        }
    }
}

/// Time-exceeded codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeExceeded {
    TtlExpired,
    FragReassemblyExpired,
    Unknown(u8),
}

impl From<u8> for TimeExceeded {
    fn from(v: u8) -> Self {
        match v {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragReassemblyExpired,
            other => TimeExceeded::Unknown(other),
        }
    }
}

impl From<TimeExceeded> for u8 {
    fn from(c: TimeExceeded) -> u8 {
        match c {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragReassemblyExpired => 1,
            TimeExceeded::Unknown(v) => v,
        }
    }
}

/// Length of the ICMP header: type, code, checksum, and 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
/// Bytes of the quoted datagram's payload kept in an error [`Icmpv4Repr`].
pub const QUOTED_PAYLOAD_LEN: usize = 8;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    /// RFC 1191: low 16 bits of the otherwise unused word in a code-4 unreachable.
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: usize = 8;
}

/// A view of an ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Icmpv4Packet<T> {
        Icmpv4Packet { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<Icmpv4Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` if the buffer is shorter than the 8-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn msg_type(&self) -> Icmpv4Message {
        Icmpv4Message::from(self.buffer.as_ref()[field::TYPE])
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    /// Echo identifier (bytes 4..6; meaningful for echo messages).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        self.u16_at(field::ECHO_IDENT.start)
    }

    /// Echo sequence number (bytes 6..8; meaningful for echo messages).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        self.u16_at(field::ECHO_SEQNO.start)
    }

    /// Next-hop MTU (bytes 6..8; meaningful for a fragmentation-needed unreachable).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(field::NEXT_HOP_MTU.start)
    }

    /// True if the whole message sums to negative zero.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }

    #[inline]
    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Icmpv4Packet<&'a T> {
    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, m: Icmpv4Message) {
        self.buffer.as_mut()[field::TYPE] = m.into();
    }

    #[inline]
    pub fn set_msg_code(&mut self, code: u8) {
        self.buffer.as_mut()[field::CODE] = code;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, v: u16) {
        self.set_u16(field::ECHO_IDENT.start, v);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, v: u16) {
        self.set_u16(field::ECHO_SEQNO.start, v);
    }

    /// Writes the whole rest-of-header word: zero, then the MTU in its low half.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        self.set_u16(4, 0);
        self.set_u16(field::NEXT_HOP_MTU.start, mtu);
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA..]
    }

    /// Checksums the whole buffer and stores the result.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::data(self.buffer.as_ref());
        self.set_checksum(c);
    }

    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// A parsed ICMPv4 message of a type we handle. `data` borrows from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icmpv4Repr<'a> {
    EchoRequest {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    EchoReply {
        ident: u16,
        seq_no: u16,
        data: &'a [u8],
    },
    DstUnreachable {
        reason: DstUnreachable,
        /// RFC 1191 next-hop MTU; meaningful only for `FragRequired` (0 from old routers).
        next_hop_mtu: u16,
        /// The quoted datagram's header. `payload_len` is the original datagram's, not the
        /// quote's.
        header: Ipv4Repr,
        /// The first 8 bytes of the quoted payload.
        data: &'a [u8],
    },
    TimeExceeded {
        reason: TimeExceeded,
        header: Ipv4Repr,
        data: &'a [u8],
    },
}

impl<'a> Icmpv4Repr<'a> {
    /// Parses an echo or error message. Types we do not handle are `Unsupported`. An error
    /// whose quote is too short to hold a whole IPv4 header and 8 more bytes is `Truncated`.
    /// Echo codes other than 0 are accepted, as Linux does.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Icmpv4Packet<&'a T>,
        caps: &ChecksumCaps,
    ) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if caps.verify_rx && !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        match packet.msg_type() {
            Icmpv4Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            Icmpv4Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data: packet.data(),
            }),
            Icmpv4Message::DstUnreachable => {
                let (header, data) = parse_quote(packet.data())?;
                Ok(Icmpv4Repr::DstUnreachable {
                    reason: DstUnreachable::from(packet.msg_code()),
                    next_hop_mtu: packet.next_hop_mtu(),
                    header,
                    data,
                })
            }
            Icmpv4Message::TimeExceeded => {
                let (header, data) = parse_quote(packet.data())?;
                Ok(Icmpv4Repr::TimeExceeded {
                    reason: TimeExceeded::from(packet.msg_code()),
                    header,
                    data,
                })
            }
            Icmpv4Message::Unknown(_) => Err(Error::Unsupported),
        }
    }

    /// Bytes the message occupies: header plus echo data, or plus a 20-byte quoted header and
    /// its data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => {
                    data.len()
                }
                Icmpv4Repr::DstUnreachable { data, .. } | Icmpv4Repr::TimeExceeded { data, .. } => {
                    ipv4::HEADER_LEN + data.len()
                }
            }
    }

    /// Writes the message, its checksum when `caps.compute_tx`. The buffer must be exactly
    /// [`Icmpv4Repr::buffer_len`] long (the checksum covers all of it); panics otherwise.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Icmpv4Packet<T>,
        caps: &ChecksumCaps,
    ) {
        assert_eq!(
            packet.buffer.as_ref().len(),
            self.buffer_len(),
            "ICMP buffer length"
        );
        packet.set_msg_code(0);
        match *self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let m = match self {
                    Icmpv4Repr::EchoRequest { .. } => Icmpv4Message::EchoRequest,
                    _ => Icmpv4Message::EchoReply,
                };
                packet.set_msg_type(m);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                packet.data_mut().copy_from_slice(data);
            }
            Icmpv4Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                header,
                data,
            } => {
                packet.set_msg_type(Icmpv4Message::DstUnreachable);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(next_hop_mtu);
                emit_quote(&header, data, packet.data_mut(), caps);
            }
            Icmpv4Repr::TimeExceeded {
                reason,
                header,
                data,
            } => {
                packet.set_msg_type(Icmpv4Message::TimeExceeded);
                packet.set_msg_code(reason.into());
                packet.set_next_hop_mtu(0);
                emit_quote(&header, data, packet.data_mut(), caps);
            }
        }
        if caps.compute_tx {
            packet.fill_checksum();
        } else {
            packet.set_checksum(0);
        }
    }

    /// For an error about a TCP or UDP datagram: its (source, destination) ports, which with
    /// the quoted addresses name the flow it belongs to.
    pub fn quoted_ports(&self) -> Option<(u16, u16)> {
        let (header, data) = self.quote()?;
        if !matches!(header.protocol, IpProtocol::Tcp | IpProtocol::Udp) {
            return None;
        }
        Some((
            u16::from_be_bytes([data[0], data[1]]),
            u16::from_be_bytes([data[2], data[3]]),
        ))
    }

    /// For an error about a TCP segment: the sequence number it carried (RFC 5927 asks that it
    /// lie in SND.UNA..SND.NXT before the error is believed).
    pub fn quoted_tcp_seq(&self) -> Option<SeqNumber> {
        let (header, data) = self.quote()?;
        if header.protocol != IpProtocol::Tcp {
            return None;
        }
        Some(SeqNumber(u32::from_be_bytes([
            data[4], data[5], data[6], data[7],
        ])))
    }

    /// The quoted header and at least 8 bytes of its payload, for error messages whose quote
    /// is whole (always so after `parse`).
    fn quote(&self) -> Option<(&Ipv4Repr, &'a [u8])> {
        match self {
            Icmpv4Repr::DstUnreachable { header, data, .. }
            | Icmpv4Repr::TimeExceeded { header, data, .. }
                if data.len() >= QUOTED_PAYLOAD_LEN =>
            {
                Some((header, data))
            }
            _ => None,
        }
    }
}

/// Reads a quoted datagram: a whole IPv4 header, then the first 8 bytes of its payload.
fn parse_quote(quote: &[u8]) -> Result<(Ipv4Repr, &[u8])> {
    if quote.len() < ipv4::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let ip = Ipv4Packet::new_unchecked(quote);
    if ip.version() != 4 {
        return Err(Error::BadVersion);
    }
    let header_len = ip.header_len() as usize;
    if header_len < ipv4::HEADER_LEN {
        return Err(Error::BadOffset);
    }
    let total_len = ip.total_len() as usize;
    if total_len < header_len {
        return Err(Error::BadLength);
    }
    let data = quote
        .get(header_len..header_len + QUOTED_PAYLOAD_LEN)
        .ok_or(Error::Truncated)?;
    let header = Ipv4Repr {
        src_addr: ip.src_addr(),
        dst_addr: ip.dst_addr(),
        protocol: ip.protocol(),
        payload_len: total_len - header_len,
        ttl: ip.ttl(),
        dscp_ecn: ip.dscp_ecn(),
        ident: ip.ident(),
    };
    Ok((header, data))
}

fn emit_quote(header: &Ipv4Repr, data: &[u8], out: &mut [u8], caps: &ChecksumCaps) {
    let (h, d) = out.split_at_mut(ipv4::HEADER_LEN);
    header.emit(&mut Ipv4Packet::new_unchecked(h), caps);
    d.copy_from_slice(data);
}

impl fmt::Display for Icmpv4Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                write!(
                    f,
                    "ICMP echo request, id {ident}, seq {seq_no}, length {}",
                    data.len()
                )
            }
            Icmpv4Repr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                write!(
                    f,
                    "ICMP echo reply, id {ident}, seq {seq_no}, length {}",
                    data.len()
                )
            }
            Icmpv4Repr::DstUnreachable {
                reason,
                next_hop_mtu,
                header,
                ..
            } => {
                write!(f, "ICMP unreachable {reason:?}")?;
                if *reason == DstUnreachable::FragRequired {
                    write!(f, " mtu {next_hop_mtu}")?;
                }
                write!(
                    f,
                    " for {} > {} {}",
                    header.src_addr, header.dst_addr, header.protocol
                )
            }
            Icmpv4Repr::TimeExceeded { reason, header, .. } => write!(
                f,
                "ICMP time exceeded {reason:?} for {} > {} {}",
                header.src_addr, header.dst_addr, header.protocol
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const CAPS: ChecksumCaps = ChecksumCaps {
        verify_rx: true,
        compute_tx: true,
    };

    fn emit(repr: &Icmpv4Repr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &CAPS);
        buf
    }

    fn quoted() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Tcp,
            payload_len: 1480,
            ttl: 1,
            dscp_ecn: 0,
            ident: 7,
        }
    }

    const TCP_START: [u8; 8] = [0x30, 0x39, 0x00, 0x50, 0xde, 0xad, 0xbe, 0xef];

    #[test]
    fn echo_round_trip() {
        // A Linux ping, type 8 id 0x1234 seq 1, checksummed by hand below.
        let repr = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
            data: b"abcdefgh",
        };
        let buf = emit(&repr);
        assert_eq!(&buf[..2], &[8, 0]);
        assert_eq!(checksum::data(&buf), 0xffff);
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, &CAPS).unwrap(), repr);
        let reply = Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 1,
            data: b"",
        };
        let buf = emit(&reply);
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap(), &CAPS).unwrap(),
            reply
        );
    }

    #[test]
    fn unreachable_round_trip_and_ports() {
        let repr = Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::FragRequired,
            next_hop_mtu: 1400,
            header: quoted(),
            data: &TCP_START,
        };
        let buf = emit(&repr);
        assert_eq!(buf.len(), 8 + 20 + 8);
        let parsed =
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap(), &CAPS).unwrap();
        assert_eq!(parsed, repr);
        assert_eq!(parsed.quoted_ports(), Some((12345, 80)));
        assert_eq!(parsed.quoted_tcp_seq(), Some(SeqNumber(0xdeadbeef)));
        assert!(DstUnreachable::FragRequired.is_hard_error());
        assert!(!DstUnreachable::HostUnreachable.is_hard_error());

        let te = Icmpv4Repr::TimeExceeded {
            reason: TimeExceeded::TtlExpired,
            header: quoted(),
            data: &TCP_START,
        };
        let buf = emit(&te);
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap(), &CAPS).unwrap(),
            te
        );
    }

    #[test]
    fn long_quote_keeps_eight_bytes_and_options_are_skipped() {
        // A router quoting 60 bytes of a datagram whose header has 4 bytes of options.
        let mut body = vec![
            0x46, 0, 0x05, 0xdc, 0, 7, 0x40, 0, 1, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        body.extend_from_slice(&[1, 1, 1, 0]);
        body.extend_from_slice(&TCP_START);
        body.extend_from_slice(&[0x55; 28]);
        let mut buf = vec![3, 3, 0, 0, 0, 0, 0, 0];
        buf.extend_from_slice(&body);
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let parsed =
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap(), &CAPS).unwrap();
        match parsed {
            Icmpv4Repr::DstUnreachable {
                reason,
                header,
                data,
                ..
            } => {
                assert_eq!(reason, DstUnreachable::PortUnreachable);
                assert_eq!(header.payload_len, 1500 - 24);
                assert_eq!(data, &TCP_START);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_quotes_are_errors() {
        let repr = Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::PortUnreachable,
            next_hop_mtu: 0,
            header: quoted(),
            data: &TCP_START,
        };
        let full = emit(&repr);
        for len in 0..full.len() {
            let mut buf = full[..len].to_vec();
            if len >= HEADER_LEN {
                Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
            }
            let got =
                Icmpv4Packet::new_checked(&buf[..]).and_then(|p| Icmpv4Repr::parse(&p, &CAPS));
            assert_eq!(got, Err(Error::Truncated), "len {len}");
        }
        let mut bad = full.clone();
        bad[8] = 0x65; // quoted version 6
        Icmpv4Packet::new_unchecked(&mut bad[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&bad[..]).unwrap(), &CAPS),
            Err(Error::BadVersion)
        );
        let mut bad = full.clone();
        bad[8] = 0x44; // IHL 4
        Icmpv4Packet::new_unchecked(&mut bad[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&bad[..]).unwrap(), &CAPS),
            Err(Error::BadOffset)
        );
    }

    #[test]
    fn checksum_and_unknown_type() {
        let mut buf = emit(&Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: b"x",
        });
        buf[8] ^= 0x10;
        let p = Icmpv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&p, &CAPS), Err(Error::BadChecksum));
        buf[0] = 13; // timestamp request
        Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        assert_eq!(
            Icmpv4Repr::parse(&Icmpv4Packet::new_checked(&buf[..]).unwrap(), &CAPS),
            Err(Error::Unsupported)
        );
    }
}
