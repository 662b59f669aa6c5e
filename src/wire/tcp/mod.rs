//! TCP header view, options, and sequence-number arithmetic.
//!
//! Invariants of a [`TcpPacket`] from `new_checked`: the buffer holds at least 20 bytes and
//! `20 <= header_len <= buffer.len()`, so every accessor is infallible. The buffer is the whole
//! segment, exactly the IPv4 payload: its length is the TCP length in the pseudo-header and
//! decides where the payload ends.
//!
//! Beside this file: `options.rs` ([`TcpOptions`]: which options are accepted on parse, and the
//! layout they are emitted in) and `repr.rs` ([`TcpRepr`]: a parsed segment, and building one
//! in place).

mod options;
mod repr;
#[cfg(test)]
mod test_util;

pub use options::{option_kind, TcpOptions, MAX_SACK_BLOCKS};
pub use repr::TcpRepr;

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use std::net::Ipv4Addr;

use super::checksum;
use super::{Error, Result};

/// A TCP sequence number: arithmetic wraps modulo 2^32 and comparison is by the sign of the
/// 32-bit difference (RFC 9293 section 3.4), valid for numbers less than 2^31 apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Signed distance from `other` to `self`.
    #[inline]
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self.diff(other) >= 0 {
            self
        } else {
            other
        }
    }
    #[inline]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self.diff(other) <= 0 {
            self
        } else {
            other
        }
    }
    /// `lo <= self < hi` in sequence space.
    #[inline]
    pub fn in_range(self, lo: SeqNumber, hi: SeqNumber) -> bool {
        self.diff(lo) >= 0 && self.diff(hi) < 0
    }
    /// `lo <= self <= hi` in sequence space.
    #[inline]
    pub fn in_range_incl(self, lo: SeqNumber, hi: SeqNumber) -> bool {
        self.diff(lo) >= 0 && self.diff(hi) <= 0
    }
}

impl PartialOrd for SeqNumber {
    #[inline]
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: usize) {
        *self = *self + rhs;
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, rhs: usize) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs as u32))
    }
}

impl Sub for SeqNumber {
    type Output = usize;
    /// Distance `self - rhs`; the caller guarantees `self >= rhs` in sequence space. A negative
    /// distance saturates to zero so a misuse cannot produce a 4 GiB length.
    #[inline]
    fn sub(self, rhs: SeqNumber) -> usize {
        let d = self.diff(rhs);
        debug_assert!(d >= 0, "sequence subtraction went negative: {self} - {rhs}");
        d.max(0) as usize
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The TCP control bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);
    pub const NONE: TcpFlags = TcpFlags(0);

    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
    #[inline]
    pub const fn union(self, other: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | other.0)
    }
    #[inline]
    pub fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    #[inline]
    pub fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    #[inline]
    pub fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    #[inline]
    pub fn psh(self) -> bool {
        self.contains(Self::PSH)
    }
    #[inline]
    pub fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
    /// ACK set, and nothing else but PSH: the flags of an established connection's ordinary
    /// segments (data or a pure acknowledgement).
    #[inline]
    pub fn only_ack(self) -> bool {
        self.0 & !Self::PSH.0 == Self::ACK.0
    }
}

impl core::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        self.union(rhs)
    }
}

impl core::ops::BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(TcpFlags, &str); 8] = [
            (TcpFlags::SYN, "S"),
            (TcpFlags::FIN, "F"),
            (TcpFlags::RST, "R"),
            (TcpFlags::PSH, "P"),
            (TcpFlags::ACK, "."),
            (TcpFlags::URG, "U"),
            (TcpFlags::ECE, "E"),
            (TcpFlags::CWR, "W"),
        ];
        let mut any = false;
        for (flag, name) in NAMES {
            if self.contains(flag) {
                f.write_str(name)?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header the 4-bit data offset can describe.
pub const MAX_HEADER_LEN: usize = 60;
/// Room for options.
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;
/// Largest window-scale shift (RFC 7323 section 2.3).
pub const MAX_WINDOW_SHIFT: u8 = 14;

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset in the upper nibble; the lower nibble is reserved bits (and AccECN's AE).
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS: usize = 20;
}

/// A view of a TCP segment: header, options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wraps `buffer` without validation; fixed-field accessors panic if it is shorter than 20.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Wraps `buffer` after [`TcpPacket::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` if shorter than 20 bytes; `BadOffset` if the data offset is below 5 or
    /// points past the end of the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len() as usize;
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::BadOffset);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT.start)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT.start)
    }

    #[inline]
    pub fn seq_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::SEQ_NUM.start))
    }

    #[inline]
    pub fn ack_number(&self) -> SeqNumber {
        SeqNumber(self.u32_at(field::ACK_NUM.start))
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> u8 {
        (self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.buffer.as_ref()[field::FLAGS])
    }

    /// The raw (unscaled) window.
    #[inline]
    pub fn window_len(&self) -> u16 {
        self.u16_at(field::WINDOW.start)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM.start)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        self.u16_at(field::URGENT.start)
    }

    /// Raw option bytes, `20..header_len` (clamped to the buffer).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let end = (self.header_len() as usize).min(b.len());
        &b[field::OPTIONS.min(end)..end]
    }

    /// Bytes after the header.
    #[inline]
    pub fn payload_len(&self) -> usize {
        self.buffer
            .as_ref()
            .len()
            .saturating_sub(self.header_len() as usize)
    }

    /// True if the segment and the pseudo-header for `src`, `dst` sum to negative zero.
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.sum(src, dst) == 0xffff
    }

    #[inline]
    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let b = self.buffer.as_ref();
        // one accumulation, one fold (every received segment is verified)
        let ph = checksum::pseudo_header_v4_ne(src, dst, 6, b.len() as u32);
        u16::from_be(checksum::fold(checksum::partial_ne(b) + ph))
    }

    #[inline]
    fn payload_start(&self) -> usize {
        (self.header_len() as usize).min(self.buffer.as_ref().len())
    }

    #[inline]
    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    #[inline]
    fn u32_at(&self, at: usize) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// Everything after the header, to the end of the buffer.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let start = self.payload_start();
        &self.buffer.as_ref()[start..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT.start, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT.start, v);
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&v.0.to_be_bytes());
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&v.0.to_be_bytes());
    }

    /// Header length in bytes, rounded down to a multiple of 4. Keeps the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, header_len: u8) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | ((header_len / 4) << 4);
    }

    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        self.set_u16(field::WINDOW.start, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        self.set_u16(field::URGENT.start, v);
    }

    /// Option bytes, `20..header_len` (clamped to the buffer); set the header length first.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = (self.header_len() as usize).min(self.buffer.as_ref().len());
        &mut self.buffer.as_mut()[field::OPTIONS.min(end)..end]
    }

    /// Everything after the header; set the header length first.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.payload_start();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes the checksum over the pseudo-header and the whole buffer, and stores it.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = !self.sum(src, dst);
        self.set_checksum(c);
    }

    /// Like [`TcpPacket::fill_checksum`], but reads only the payload: the header's sum is the
    /// one [`TcpRepr::emit_header_with_sum`] returned, and the header must not have changed
    /// since.
    #[inline]
    pub fn fill_checksum_with_header_sum(&mut self, src: Ipv4Addr, dst: Ipv4Addr, header_sum: u16) {
        let b = self.buffer.as_ref();
        let ph = checksum::pseudo_header_v4(src, dst, 6, b.len() as u32);
        let payload = checksum::data(&b[self.payload_start()..]);
        let c = !checksum::combine(&[ph, header_sum, payload]);
        self.set_checksum(c);
    }

    #[inline]
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;

    #[test]
    fn header_and_payload_accessors() {
        let payload = b"hello";
        let repr = TcpRepr {
            flags: TcpFlags::ACK | TcpFlags::PSH,
            payload,
            ..syn()
        };
        let buf = emit(&repr);
        let p = TcpPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), SeqNumber(0x0102_0304));
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), TcpFlags::ACK | TcpFlags::PSH);
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.options(), &LINUX_SYN_OPTIONS);
        assert_eq!(p.payload(), payload);
        assert_eq!(p.payload_len(), 5);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, Ipv4Addr::new(192, 168, 0, 3)));
    }

    #[test]
    fn bad_offsets() {
        let mut buf = emit(&syn());
        for (off, err) in [
            (0u8, Some(Error::BadOffset)),
            (4, Some(Error::BadOffset)),
            (11, Some(Error::BadOffset)),
            (10, None),
        ] {
            buf[12] = off << 4;
            assert_eq!(TcpPacket::new_checked(&buf[..]).err(), err, "offset {off}");
        }
        for len in 0..HEADER_LEN {
            assert_eq!(
                TcpPacket::new_checked(&buf[..len]).err(),
                Some(Error::Truncated)
            );
        }
        for len in HEADER_LEN..40 {
            assert_eq!(
                TcpPacket::new_checked(&buf[..len]).err(),
                Some(Error::BadOffset)
            );
        }
    }
}
