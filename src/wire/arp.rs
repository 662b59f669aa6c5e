//! ARP (RFC 826), of which we speak only the Ethernet/IPv4 flavour.
//!
//! The [`ArpPacket`] view follows the hardware and protocol address lengths the packet declares,
//! so it can read any ARP packet; `new_checked` makes sure the buffer holds the fixed header and
//! both address pairs at those lengths. [`ArpRepr::parse`] then accepts only hardware type 1
//! (Ethernet), protocol type 0x0800, lengths 6 and 4, and returns `Unsupported` for the rest.

use core::fmt;
use std::net::Ipv4Addr;

use super::{Error, EthernetAddress, Result};

/// An ARP opcode. Unnamed values keep their number, so conversion is lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    Request,
    Reply,
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(v: u16) -> Self {
        match v {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(op: ArpOperation) -> u16 {
        match op {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(v) => v,
        }
    }
}

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type for IPv4 (its EtherType).
pub const PTYPE_IPV4: u16 = 0x0800;

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// Start of the variable part: sender hw, sender proto, target hw, target proto.
    pub const ADDRS: usize = 8;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = 28;

/// A view of an ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wraps `buffer` without validation; accessors may panic on a short buffer.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ArpPacket<T> {
        ArpPacket { buffer }
    }

    #[inline]
    pub fn new_checked(buffer: T) -> Result<ArpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` unless the buffer holds the fixed part and both address pairs at the
    /// declared lengths. Trailing bytes (Ethernet padding) are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < field::ADDRS {
            return Err(Error::Truncated);
        }
        if b.len() < field::ADDRS + 2 * (b[field::HLEN] as usize + b[field::PLEN] as usize) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        self.u16_at(field::HTYPE.start)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        self.u16_at(field::PTYPE.start)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(self.u16_at(field::OPER.start))
    }

    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        let at = field::ADDRS;
        &self.buffer.as_ref()[at..at + self.hlen()]
    }

    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        let at = field::ADDRS + self.hlen();
        &self.buffer.as_ref()[at..at + self.plen()]
    }

    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        let at = field::ADDRS + self.hlen() + self.plen();
        &self.buffer.as_ref()[at..at + self.hlen()]
    }

    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        let at = field::ADDRS + 2 * self.hlen() + self.plen();
        &self.buffer.as_ref()[at..at + self.plen()]
    }

    /// Bytes the packet occupies by its declared address lengths (padding excluded).
    #[inline]
    pub fn packet_len(&self) -> usize {
        field::ADDRS + 2 * (self.hlen() + self.plen())
    }

    fn hlen(&self) -> usize {
        self.hardware_len() as usize
    }

    fn plen(&self) -> usize {
        self.protocol_len() as usize
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&v.to_be_bytes());
    }

    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    #[inline]
    pub fn set_operation(&mut self, op: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(op).to_be_bytes());
    }

    /// The address setters use the lengths already in the header; set those first.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let at = field::ADDRS;
        let n = self.hlen();
        self.buffer.as_mut()[at..at + n].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let at = field::ADDRS + self.hlen();
        let n = self.plen();
        self.buffer.as_mut()[at..at + n].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let at = field::ADDRS + self.hlen() + self.plen();
        let n = self.hlen();
        self.buffer.as_mut()[at..at + n].copy_from_slice(addr);
    }

    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let at = field::ADDRS + 2 * self.hlen() + self.plen();
        let n = self.plen();
        self.buffer.as_mut()[at..at + n].copy_from_slice(addr);
    }
}

/// A parsed ARP packet. One variant today; an enum so that the match in the neighbour code says
/// which flavour it handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpRepr {
    EthernetIpv4 {
        operation: ArpOperation,
        source_hardware_addr: EthernetAddress,
        source_protocol_addr: Ipv4Addr,
        target_hardware_addr: EthernetAddress,
        target_protocol_addr: Ipv4Addr,
    },
}

impl ArpRepr {
    /// Parses an Ethernet/IPv4 ARP packet; other hardware or protocol types, or other address
    /// lengths, are `Unsupported`. An unknown opcode parses: the caller decides to ignore it.
    pub fn parse<T: AsRef<[u8]>>(packet: &ArpPacket<T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != PTYPE_IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let mac = |b: &[u8]| EthernetAddress::from_bytes(b).ok_or(Error::Truncated);
        let ip = |b: &[u8]| -> Result<Ipv4Addr> {
            let a: [u8; 4] = b.try_into().map_err(|_| Error::Truncated)?;
            Ok(Ipv4Addr::from(a))
        };
        Ok(ArpRepr::EthernetIpv4 {
            operation: packet.operation(),
            source_hardware_addr: mac(packet.source_hardware_addr())?,
            source_protocol_addr: ip(packet.source_protocol_addr())?,
            target_hardware_addr: mac(packet.target_hardware_addr())?,
            target_protocol_addr: ip(packet.target_protocol_addr())?,
        })
    }

    pub const fn buffer_len(&self) -> usize {
        match self {
            ArpRepr::EthernetIpv4 { .. } => ETHERNET_IPV4_LEN,
        }
    }

    /// Writes the packet. Panics if the buffer is shorter than [`ArpRepr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut ArpPacket<T>) {
        match *self {
            ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            } => {
                packet.set_hardware_type(HTYPE_ETHERNET);
                packet.set_protocol_type(PTYPE_IPV4);
                packet.set_hardware_len(6);
                packet.set_protocol_len(4);
                packet.set_operation(operation);
                packet.set_source_hardware_addr(&source_hardware_addr.0);
                packet.set_source_protocol_addr(&source_protocol_addr.octets());
                packet.set_target_hardware_addr(&target_hardware_addr.0);
                packet.set_target_protocol_addr(&target_protocol_addr.octets());
            }
        }
    }
}

impl fmt::Display for ArpRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            } => write!(
                f,
                "ARP who-has {target_protocol_addr} tell {source_protocol_addr} ({source_hardware_addr})"
            ),
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr,
                source_protocol_addr,
                ..
            } => write!(f, "ARP reply {source_protocol_addr} is-at {source_hardware_addr}"),
            ArpRepr::EthernetIpv4 { operation: ArpOperation::Unknown(op), .. } => {
                write!(f, "ARP opcode {op}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet, IPv4, request
        0x02, 0, 0, 0, 0, 1, 10, 0, 0, 1, // sender
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // target
    ];

    fn request() -> ArpRepr {
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            source_protocol_addr: Ipv4Addr::new(10, 0, 0, 1),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: Ipv4Addr::new(10, 0, 0, 2),
        }
    }

    #[test]
    fn parse_and_emit() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(ArpRepr::parse(&p).unwrap(), request());
        let mut buf = [0xaau8; 28];
        request().emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf, REQUEST);
        assert_eq!(
            request().to_string(),
            "ARP who-has 10.0.0.2 tell 10.0.0.1 (02:00:00:00:00:01)"
        );
    }

    #[test]
    fn padding_ignored_and_truncation_detected() {
        let mut padded = REQUEST.to_vec();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(
            ArpRepr::parse(&ArpPacket::new_checked(&padded[..]).unwrap()).unwrap(),
            request()
        );
        for len in 0..REQUEST.len() {
            assert_eq!(
                ArpPacket::new_checked(&REQUEST[..len]).err(),
                Some(Error::Truncated),
                "{len}"
            );
        }
    }

    #[test]
    fn other_flavours_unsupported() {
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut buf = REQUEST.to_vec();
            buf[at] = v;
            buf.resize(8 + 2 * (8 + 16), 0);
            let p = ArpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(ArpRepr::parse(&p), Err(Error::Unsupported), "byte {at}");
        }
    }

    #[test]
    fn unknown_opcode_round_trips() {
        let mut buf = REQUEST;
        buf[7] = 9;
        let repr = ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).unwrap()).unwrap();
        let ArpRepr::EthernetIpv4 { operation, .. } = repr;
        assert_eq!(operation, ArpOperation::Unknown(9));
    }
}
