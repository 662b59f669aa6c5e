//! IPv4 headers (RFC 791).
//!
//! Invariants of an [`Ipv4Packet`] from `new_checked`: the buffer holds at least 20 bytes, the
//! version is 4, and `20 <= header_len <= total_len <= buffer.len()`. Every accessor is then
//! infallible. [`Ipv4Packet::payload`] ends at `total_len`, not at the end of the buffer, so the
//! padding Ethernet adds to short frames never reaches the layer above. Options are kept as an
//! opaque slice and never interpreted.
//!
//! The variable-length accessors (`options`, `payload`) also clamp to the buffer, so even a view
//! whose length fields were changed through setters cannot make them panic.
//!
//! [`Ipv4Repr::parse`] refuses fragments (we do not reassemble) and, when asked, a header whose
//! checksum does not verify. [`Ipv4Repr::emit`] writes a 20-byte header with DF set.

use core::fmt;
use std::net::Ipv4Addr;

use super::checksum;
use super::{ChecksumCaps, Error, Result};

/// The protocol field. Unnamed values keep their number, so conversion is lossless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    Icmp,
    Tcp,
    Udp,
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    #[inline]
    fn from(v: u8) -> Self {
        match v {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    #[inline]
    fn from(p: IpProtocol) -> u8 {
        match p {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(v) => v,
        }
    }
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::Icmp => f.write_str("icmp"),
            IpProtocol::Tcp => f.write_str("tcp"),
            IpProtocol::Udp => f.write_str("udp"),
            IpProtocol::Unknown(v) => write!(f, "proto {v}"),
        }
    }
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// TTL we send with unless told otherwise (Linux's default).
pub const DEFAULT_TTL: u8 = 64;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps `buffer` without validation; fixed-field accessors panic if it is shorter than 20.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Ipv4Packet<T> {
        Ipv4Packet { buffer }
    }

    /// Wraps `buffer` after [`Ipv4Packet::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Ipv4Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Establishes the invariants in the module docs. `Truncated` if the buffer is shorter than
    /// 20 bytes or than `total_len`; `BadVersion` if the version is not 4; `BadOffset` if IHL is
    /// below 5; `BadLength` if `total_len` is shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = self.header_len() as usize;
        if header_len < HEADER_LEN {
            return Err(Error::BadOffset);
        }
        let total_len = self.total_len() as usize;
        if total_len < header_len {
            return Err(Error::BadLength);
        }
        if total_len > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the upper six bits, ECN in the lower two.
    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.dscp_ecn() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.dscp_ecn() & 0x03
    }

    /// Length of header plus payload, as the header says.
    #[inline]
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH.start)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT.start)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF.start) & OFFSET_MASK) << 3
    }

    /// True for any piece of a fragmented datagram: MF set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF.start) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SRC_ADDR.start)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DST_ADDR.start)
    }

    /// Raw option bytes between the fixed header and `header_len`.
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (self.header_len() as usize).min(b.len());
        &b[HEADER_LEN.min(end)..end]
    }

    /// True if the header (options included) sums to negative zero.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let h = self.header_bytes();
        let sum = match <&[u8; 20]>::try_from(h) {
            Ok(fixed) => checksum::data20(fixed),
            Err(_) => checksum::data(h),
        };
        sum == 0xffff
    }

    #[inline]
    fn header_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..(self.header_len() as usize).min(b.len())]
    }

    /// `header_len..total_len`, clamped to the buffer.
    #[inline]
    fn payload_range(&self) -> core::ops::Range<usize> {
        let len = self.buffer.as_ref().len();
        let start = (self.header_len() as usize).min(len);
        let end = (self.total_len() as usize).clamp(start, len);
        start..end
    }

    #[inline]
    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    #[inline]
    fn addr_at(&self, at: usize) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Ipv4Packet<&'a T> {
    /// The payload, `header_len..total_len`: trailing link-layer padding is excluded.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let range = self.payload_range();
        &self.buffer.as_ref()[range]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_version_and_header_len(&mut self, header_len: u8) {
        debug_assert!(header_len % 4 == 0 && (20..=60).contains(&header_len));
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) & 0x0f);
    }

    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Header length in bytes; rounded down to a multiple of 4.
    #[inline]
    pub fn set_header_len(&mut self, header_len: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((header_len / 4) & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH.start, v);
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        self.set_u16(field::IDENT.start, v);
    }

    /// Sets DF, clears MF and the fragment offset: the only flags we send.
    #[inline]
    pub fn set_unfragmented_df(&mut self) {
        self.set_u16(field::FLG_OFF.start, FLAG_DF);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, v: bool) {
        self.set_flag(FLAG_DF, v);
    }

    #[inline]
    pub fn set_more_frags(&mut self, v: bool) {
        self.set_flag(FLAG_MF, v);
    }

    /// Fragment offset in bytes; rounded down to a multiple of 8.
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let old = self.u16_at(field::FLG_OFF.start);
        self.set_u16(field::FLG_OFF.start, (old & !OFFSET_MASK) | (bytes >> 3));
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    #[inline]
    pub fn set_protocol(&mut self, p: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = p.into();
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes the header checksum over `header_len` bytes and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = !checksum::data(self.header_bytes());
        self.set_checksum(c);
    }

    /// The payload, `header_len..total_len` clamped to the buffer; set both lengths first.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    #[inline]
    fn set_flag(&mut self, flag: u16, v: bool) {
        let old = self.u16_at(field::FLG_OFF.start);
        self.set_u16(
            field::FLG_OFF.start,
            if v { old | flag } else { old & !flag },
        );
    }

    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// The parsed header of an unfragmented IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header (options excluded), by the total-length field.
    pub payload_len: usize,
    pub ttl: u8,
    /// DSCP and ECN bits, as in the header.
    pub dscp_ecn: u8,
    /// Identification. Meaningless for an atomic datagram (RFC 6864), kept for round trips and
    /// for the quoted header in ICMP errors.
    pub ident: u16,
}

impl Ipv4Repr {
    /// A header with the default TTL, DSCP/ECN zero and ident zero.
    pub const fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
    ) -> Ipv4Repr {
        Ipv4Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl: DEFAULT_TTL,
            dscp_ecn: 0,
            ident: 0,
        }
    }

    /// Parses the header of `packet` (re-checking lengths, so an unchecked view is fine).
    /// The checksum is checked before anything else is interpreted (`BadChecksum`), then
    /// fragments are refused (`Fragmented`).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>, caps: &ChecksumCaps) -> Result<Ipv4Repr> {
        packet.check_len()?;
        if caps.verify_rx && !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.is_fragment() {
            return Err(Error::Fragmented);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() as usize - packet.header_len() as usize,
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
        })
    }

    /// Header length we emit: no options.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with DF set, and its checksum when `caps.compute_tx` (zero
    /// otherwise). The payload is the caller's, in [`Ipv4Packet::payload_mut`] afterwards.
    /// Panics if the buffer is shorter than 20 bytes; `payload_len` must fit the 16-bit length.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Ipv4Packet<T>,
        caps: &ChecksumCaps,
    ) {
        debug_assert!(self.payload_len <= u16::MAX as usize - HEADER_LEN);
        packet.set_version_and_header_len(HEADER_LEN as u8);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.set_unfragmented_df();
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        let c = if caps.compute_tx {
            !checksum::fold(self.header_sum())
        } else {
            0
        };
        packet.set_checksum(c);
    }

    /// Sum of the 20-byte header `emit` writes (checksum field zero), from the field values:
    /// reading back bytes just written by narrow stores would stall on store forwarding.
    #[inline]
    fn header_sum(&self) -> u64 {
        let s = u32::from(self.src_addr);
        let d = u32::from(self.dst_addr);
        let words = [
            0x4500 | u32::from(self.dscp_ecn),
            (HEADER_LEN + self.payload_len) as u32 & 0xffff,
            u32::from(self.ident),
            u32::from(FLAG_DF),
            u32::from(self.ttl) << 8 | u32::from(u8::from(self.protocol)),
            s >> 16,
            s & 0xffff,
            d >> 16,
            d & 0xffff,
        ];
        words.iter().map(|&w| u64::from(w)).sum()
    }
}

impl fmt::Display for Ipv4Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IP {} > {}: {} len {} ttl {}",
            self.src_addr, self.dst_addr, self.protocol, self.payload_len, self.ttl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: ChecksumCaps = ChecksumCaps {
        verify_rx: true,
        compute_tx: true,
    };

    fn repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::Tcp,
            payload_len: 4,
            ttl: 64,
            dscp_ecn: 0x02,
            ident: 0x1234,
        }
    }

    fn packet() -> Vec<u8> {
        let r = repr();
        let mut buf = vec![0u8; r.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        r.emit(&mut p, &CAPS);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        buf
    }

    #[test]
    fn known_bytes() {
        let buf = packet();
        let expect = [
            0x45, 0x02, 0x00, 0x18, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 10, 0, 0, 1,
            10, 0, 0, 2,
        ];
        assert_eq!(buf[..10], expect[..10]);
        assert_eq!(buf[12..20], expect[12..20]);
        // Checksum by hand: sum of the words with the checksum zeroed, inverted.
        let mut h = expect;
        let c = !checksum::data(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(buf[..20], h);
        assert_eq!(&buf[20..], &[1, 2, 3, 4]);
    }

    #[test]
    fn round_trip_and_padding() {
        let mut buf = packet();
        buf.extend_from_slice(&[0xee; 22]); // Ethernet minimum-frame padding
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, &CAPS).unwrap(), repr());
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert!(p.dont_frag() && !p.more_frags() && p.frag_offset() == 0);
        assert!(p.options().is_empty());
    }

    #[test]
    fn options_are_skipped() {
        let mut buf = packet();
        // Insert 8 bytes of options (NOPs, then EOL) and fix up IHL, length, checksum.
        buf.splice(20..20, [1, 1, 1, 1, 1, 1, 1, 0]);
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_header_len(28);
        p.set_total_len(32);
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.options(), &[1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(Ipv4Repr::parse(&p, &CAPS).unwrap(), repr());
    }

    #[test]
    fn malformed_headers() {
        let good = packet();
        let with = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut b = good.clone();
            f(&mut Ipv4Packet::new_unchecked(&mut b[..]));
            Ipv4Packet::new_checked(&b[..]).err()
        };
        assert_eq!(with(&|p| p.set_version(6)), Some(Error::BadVersion));
        assert_eq!(with(&|p| p.set_header_len(16)), Some(Error::BadOffset));
        assert_eq!(with(&|p| p.set_header_len(0)), Some(Error::BadOffset));
        assert_eq!(with(&|p| p.set_header_len(28)), Some(Error::BadLength));
        assert_eq!(with(&|p| p.set_total_len(19)), Some(Error::BadLength));
        assert_eq!(with(&|p| p.set_total_len(25)), Some(Error::Truncated));
        assert_eq!(with(&|p| p.set_total_len(23)), None);
        for len in 0..good.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&good[..len]).err(),
                Some(Error::Truncated)
            );
        }
    }

    #[test]
    fn fragments_and_checksum() {
        let parse = |f: &dyn Fn(&mut Ipv4Packet<&mut [u8]>)| {
            let mut b = packet();
            let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
            f(&mut p);
            p.fill_checksum();
            Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap(), &CAPS)
        };
        assert_eq!(parse(&|p| p.set_more_frags(true)), Err(Error::Fragmented));
        assert_eq!(parse(&|p| p.set_frag_offset(8)), Err(Error::Fragmented));
        assert_eq!(parse(&|p| p.set_dont_frag(false)).unwrap(), repr());

        let mut b = packet();
        b[8] ^= 1;
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p, &CAPS), Err(Error::BadChecksum));
        let lax = ChecksumCaps {
            verify_rx: false,
            compute_tx: true,
        };
        assert_eq!(Ipv4Repr::parse(&p, &lax).unwrap().ttl, 65);
    }

    #[test]
    fn no_checksum_when_offloaded() {
        let mut buf = [0xffu8; 24];
        repr().emit(
            &mut Ipv4Packet::new_unchecked(&mut buf[..]),
            &ChecksumCaps {
                verify_rx: true,
                compute_tx: false,
            },
        );
        assert_eq!(&buf[10..12], &[0, 0]);
    }
}
