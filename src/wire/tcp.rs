//! TCP header view, options, and sequence-number arithmetic.
//!
//! Invariants of a [`TcpPacket`] from `new_checked`: the buffer holds at least 20 bytes and
//! `20 <= header_len <= buffer.len()`, so every accessor is infallible. The buffer is the whole
//! segment, exactly the IPv4 payload: its length is the TCP length in the pseudo-header and
//! decides where the payload ends.
//!
//! Options ([`TcpOptions::parse`]): EOL ends the list, NOP is skipped, unknown kinds are skipped
//! by their length. A length below 2, an option running past the header, or a known option with
//! the wrong length is `BadOption`. The window-scale shift is clamped to 14 (RFC 7323 2.3).
//! SACK blocks past the fourth are ignored (40 option bytes cannot hold a fifth anyway).
//!
//! Emission ([`TcpRepr::emit_header`]) lays options out as Linux does, every group 4-byte
//! aligned so no EOL padding is ever needed:
//! `MSS | SACK-permitted TS (or NOP NOP TS, or without TS NOP NOP SACK-permitted) | NOP WS |
//! NOP NOP SACK blocks`. Option space is 40 bytes: when SACK blocks do not fit beside the
//! others, the last blocks are dropped until they do (with timestamps at most 3 remain; with
//! everything a SYN carries, 2). [`TcpRepr::header_len`] accounts for that drop, so it always
//! equals what `emit_header` writes.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};
use std::net::Ipv4Addr;

use super::checksum;
use super::{ChecksumCaps, Error, Result};

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

/// Maximum SACK blocks a segment can carry (4 without timestamps, 3 with).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The options we understand. Unknown options are skipped on parse and never emitted.
///
/// Equality looks only at the valid SACK blocks (`sack()`), not at stale entries past
/// `sack_len`.
#[derive(Debug, Clone, Copy, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// SACK blocks as (left edge, right edge), the first `sack_len` entries valid.
    pub sack_blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    pub sack_len: u8,
    /// (TSval, TSecr)
    pub timestamp: Option<(u32, u32)>,
}

impl PartialEq for TcpOptions {
    fn eq(&self, other: &TcpOptions) -> bool {
        self.mss == other.mss
            && self.window_scale == other.window_scale
            && self.sack_permitted == other.sack_permitted
            && self.timestamp == other.timestamp
            && self.sack() == other.sack()
    }
}

impl TcpOptions {
    /// The valid SACK blocks. A `sack_len` above [`MAX_SACK_BLOCKS`] reads as the maximum.
    pub fn sack(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.sack_blocks[..(self.sack_len as usize).min(MAX_SACK_BLOCKS)]
    }
}

/// A parsed TCP segment. `payload` borrows from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    /// Acknowledgment number; meaningful only when `flags` has ACK.
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    /// The raw window field (unscaled).
    pub window: u16,
    pub urgent: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

impl TcpRepr<'_> {
    /// Sequence space the segment occupies: payload plus one each for SYN and FIN.
    #[inline]
    pub fn seg_len(&self) -> usize {
        self.payload.len() + self.flags.syn() as usize + self.flags.fin() as usize
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

/// Option kinds we know.
pub mod option_kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}
use option_kind as kind;

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
        let ph = checksum::pseudo_header_v4(src, dst, 6, b.len() as u32);
        checksum::combine(&[ph, checksum::data(b)])
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

impl TcpOptions {
    /// Options with these SACK blocks (at most [`MAX_SACK_BLOCKS`] kept) and nothing else set.
    pub fn with_sack(blocks: &[(SeqNumber, SeqNumber)]) -> TcpOptions {
        let mut o = TcpOptions::default();
        o.set_sack(blocks);
        o
    }

    /// Replaces the SACK blocks; blocks past [`MAX_SACK_BLOCKS`] are dropped.
    pub fn set_sack(&mut self, blocks: &[(SeqNumber, SeqNumber)]) {
        let n = blocks.len().min(MAX_SACK_BLOCKS);
        self.sack_blocks[..n].copy_from_slice(&blocks[..n]);
        self.sack_len = n as u8;
    }

    /// Parses an option list (the bytes between the fixed header and the data offset).
    /// Allocation-free; see the module docs for what is accepted.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions> {
        let mut opts = TcpOptions::default();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                kind::EOL => break,
                kind::NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let kind = bytes[i];
            let len = *bytes.get(i + 1).ok_or(Error::BadOption)? as usize;
            if len < 2 {
                return Err(Error::BadOption);
            }
            let body = bytes.get(i + 2..i + len).ok_or(Error::BadOption)?;
            match (kind, body) {
                (kind::MSS, &[a, b]) => opts.mss = Some(u16::from_be_bytes([a, b])),
                (kind::WINDOW_SCALE, &[shift]) => {
                    opts.window_scale = Some(shift.min(MAX_WINDOW_SHIFT))
                }
                (kind::SACK_PERMITTED, &[]) => opts.sack_permitted = true,
                (kind::SACK, _) if !body.is_empty() && body.len() % 8 == 0 => {
                    let mut n = 0;
                    for block in body.chunks_exact(8).take(MAX_SACK_BLOCKS) {
                        opts.sack_blocks[n] =
                            (SeqNumber(be32(&block[..4])), SeqNumber(be32(&block[4..])));
                        n += 1;
                    }
                    opts.sack_len = n as u8;
                }
                (kind::TIMESTAMP, _) if body.len() == 8 => {
                    opts.timestamp = Some((be32(&body[..4]), be32(&body[4..])))
                }
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::SACK
                    | kind::TIMESTAMP,
                    _,
                ) => return Err(Error::BadOption),
                _ => {}
            }
            i += len;
        }
        Ok(opts)
    }

    /// Option bytes before the SACK blocks in our layout.
    #[inline]
    fn fixed_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks fit beside the other options in 40 bytes.
    #[inline]
    pub fn sack_blocks_emitted(&self) -> usize {
        let room = MAX_OPTIONS_LEN - self.fixed_len();
        self.sack().len().min(room.saturating_sub(4) / 8)
    }

    /// Bytes [`TcpOptions::emit`] writes: a multiple of 4, at most 40.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        let n = self.sack_blocks_emitted();
        self.fixed_len() + if n > 0 { 4 + 8 * n } else { 0 }
    }

    /// Writes the options in the layout of the module docs; returns the bytes written, which is
    /// [`TcpOptions::buffer_len`]. Panics if `out` is shorter than that.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) -> usize {
        self.emit_with_sum(out).0
    }

    /// [`TcpOptions::emit`], also returning the sum of the words written. Every piece of the
    /// layout is a 4-byte word at a 4-byte offset, so the sum is taken from the values.
    #[inline]
    fn emit_with_sum(&self, out: &mut [u8]) -> (usize, u64) {
        let mut at = 0;
        let mut sum = 0u64;
        let mut put = |word: [u8; 4]| {
            out[at..at + 4].copy_from_slice(&word);
            at += 4;
            let w = u32::from_be_bytes(word);
            sum += u64::from(w >> 16) + u64::from(w & 0xffff);
        };
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            put([kind::MSS, 4, a, b]);
        }
        if let Some((val, ecr)) = self.timestamp {
            if self.sack_permitted {
                put([kind::SACK_PERMITTED, 2, kind::TIMESTAMP, 10]);
            } else {
                put([kind::NOP, kind::NOP, kind::TIMESTAMP, 10]);
            }
            put(val.to_be_bytes());
            put(ecr.to_be_bytes());
        } else if self.sack_permitted {
            put([kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
        }
        if let Some(shift) = self.window_scale {
            put([
                kind::NOP,
                kind::WINDOW_SCALE,
                3,
                shift.min(MAX_WINDOW_SHIFT),
            ]);
        }
        let n = self.sack_blocks_emitted();
        if n > 0 {
            put([kind::NOP, kind::NOP, kind::SACK, (2 + 8 * n) as u8]);
            for &(left, right) in &self.sack_blocks[..n] {
                put(left.0.to_be_bytes());
                put(right.0.to_be_bytes());
            }
        }
        (at, sum)
    }
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> TcpRepr<'a> {
    /// Parses a segment (re-checking lengths, so an unchecked view is fine). With
    /// `caps.verify_rx` the checksum over the pseudo-header for `src`, `dst` is checked first
    /// (`BadChecksum`). A zero port is `Malformed`; bad options are `BadOption`.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) -> Result<TcpRepr<'a>> {
        packet.check_len()?;
        if caps.verify_rx && !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let src_port = packet.src_port();
        let dst_port = packet.dst_port();
        if src_port == 0 || dst_port == 0 {
            return Err(Error::Malformed);
        }
        Ok(TcpRepr {
            src_port,
            dst_port,
            seq: packet.seq_number(),
            ack: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window_len(),
            urgent: packet.urgent_at(),
            options: TcpOptions::parse(packet.options())?,
            payload: packet.payload(),
        })
    }

    /// Header bytes [`TcpRepr::emit_header`] writes: 20 plus the options (see the module docs
    /// for the layout and for which SACK blocks are dropped when they do not fit).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the header and options, and zeroes the checksum field; neither the payload nor a
    /// checksum is written. For building a segment in its final buffer: the caller writes the
    /// payload into [`TcpPacket::payload_mut`] and then calls [`TcpPacket::fill_checksum`].
    /// The buffer's length is the segment's, so it must be `header_len()` plus the payload the
    /// caller will write. Panics if it is shorter than `header_len()`.
    #[inline]
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) {
        self.emit_header_with_sum(packet);
    }

    /// [`TcpRepr::emit_header`], also returning the sum of the header as written (checksum
    /// field zero) for [`TcpPacket::fill_checksum_with_header_sum`]. That pair checksums a
    /// segment built in place without reading back the header just written, whose narrow stores
    /// make the wide loads of a checksum stall on store forwarding.
    #[inline]
    pub fn emit_header_with_sum<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
    ) -> u16 {
        let header_len = self.header_len();
        assert!(
            packet.buffer.as_ref().len() >= header_len,
            "TCP buffer shorter than the header"
        );
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq);
        packet.set_ack_number(self.ack);
        // Data offset and flags as one word; this also clears the reserved bits.
        let off_flags = (((header_len / 4) as u16) << 12) | u16::from(self.flags.0);
        packet.set_u16(field::DATA_OFF, off_flags);
        packet.set_window_len(self.window);
        packet.set_checksum(0);
        packet.set_urgent_at(self.urgent);
        let mut sum = [
            self.src_port,
            self.dst_port,
            (self.seq.0 >> 16) as u16,
            self.seq.0 as u16,
            (self.ack.0 >> 16) as u16,
            self.ack.0 as u16,
            off_flags,
            self.window,
            self.urgent,
        ]
        .iter()
        .map(|&w| u64::from(w))
        .sum::<u64>();
        if header_len > HEADER_LEN {
            let (_, options_sum) = self
                .options
                .emit_with_sum(&mut packet.buffer.as_mut()[field::OPTIONS..header_len]);
            sum += options_sum;
        }
        checksum::fold(sum)
    }

    /// Writes the whole segment: header, a copy of `self.payload`, and the checksum when
    /// `caps.compute_tx` (zero otherwise). Panics unless the buffer is exactly `buffer_len()`.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut TcpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) {
        assert_eq!(
            packet.buffer.as_ref().len(),
            self.buffer_len(),
            "TCP buffer length"
        );
        let header_sum = self.emit_header_with_sum(packet);
        packet.payload_mut().copy_from_slice(self.payload);
        if caps.compute_tx {
            // The payload is summed from the source slice, not from the copy just made.
            let ph = checksum::pseudo_header_v4(src, dst, 6, self.buffer_len() as u32);
            let sum = checksum::combine(&[ph, header_sum, checksum::data(self.payload)]);
            packet.set_checksum(!sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
    const CAPS: ChecksumCaps = ChecksumCaps {
        verify_rx: true,
        compute_tx: true,
    };

    /// A Linux SYN: MSS 1460, SACK-permitted + TS, NOP WS 7, as `tcpdump -x` shows it.
    const LINUX_SYN_OPTIONS: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn syn() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(0x0102_0304),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some((123456, 0)),
                ..TcpOptions::default()
            },
            payload: &[],
        }
    }

    fn emit(repr: &TcpRepr) -> Vec<u8> {
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SRC, DST, &CAPS);
        buf
    }

    fn parse(buf: &[u8]) -> Result<TcpRepr<'_>> {
        TcpRepr::parse(&TcpPacket::new_checked(buf)?, SRC, DST, &CAPS)
    }

    #[test]
    fn syn_matches_linux_layout() {
        let buf = emit(&syn());
        assert_eq!(buf.len(), 40);
        assert_eq!(buf[12], 0xa0);
        assert_eq!(&buf[20..], &LINUX_SYN_OPTIONS);
        assert_eq!(parse(&buf).unwrap(), syn());
    }

    #[test]
    fn syn_without_timestamps_matches_linux_layout() {
        let opts = TcpOptions {
            timestamp: None,
            ..syn().options
        };
        let mut out = [0u8; 40];
        let n = opts.emit(&mut out);
        assert_eq!(&out[..n], &[2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
    }

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
    fn emit_header_then_payload_in_place() {
        let repr = TcpRepr {
            flags: TcpFlags::ACK,
            payload: b"in place",
            ..syn()
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut p = TcpPacket::new_unchecked(&mut buf[..]);
        repr.emit_header(&mut p);
        p.payload_mut().copy_from_slice(b"in place");
        p.fill_checksum(SRC, DST);
        assert_eq!(buf, emit(&repr));
    }

    #[test]
    fn option_layouts() {
        let ts = Some((1, 2));
        let blocks = [
            (SeqNumber(100), SeqNumber(200)),
            (SeqNumber(300), SeqNumber(400)),
            (SeqNumber(500), SeqNumber(600)),
            (SeqNumber(700), SeqNumber(800)),
        ];
        let cases: [(TcpOptions, usize); 8] = [
            (TcpOptions::default(), 0),
            (
                TcpOptions {
                    timestamp: ts,
                    ..Default::default()
                },
                12,
            ),
            (
                TcpOptions {
                    sack_permitted: true,
                    ..Default::default()
                },
                4,
            ),
            (
                TcpOptions {
                    window_scale: Some(0),
                    ..Default::default()
                },
                4,
            ),
            (TcpOptions::with_sack(&blocks[..1]), 12),
            (TcpOptions::with_sack(&blocks), 36),
            (
                TcpOptions {
                    timestamp: ts,
                    ..TcpOptions::with_sack(&blocks[..3])
                },
                40,
            ),
            // Four blocks and timestamps cannot share 40 bytes: the fourth is dropped.
            (
                TcpOptions {
                    timestamp: ts,
                    ..TcpOptions::with_sack(&blocks)
                },
                40,
            ),
        ];
        for (opts, len) in cases {
            assert_eq!(opts.buffer_len(), len, "{opts:?}");
            let mut out = [0xeeu8; 40];
            assert_eq!(opts.emit(&mut out), len);
            let parsed = TcpOptions::parse(&out[..len]).unwrap();
            let mut expect = opts;
            expect.sack_len = opts.sack_blocks_emitted() as u8;
            assert_eq!(parsed.sack(), expect.sack());
            assert_eq!(
                (parsed.mss, parsed.window_scale, parsed.timestamp),
                (opts.mss, opts.window_scale, opts.timestamp)
            );
        }
        let mut out = [0u8; 40];
        let n = TcpOptions {
            timestamp: Some((0x01020304, 0x05060708)),
            ..Default::default()
        }
        .emit(&mut out);
        assert_eq!(&out[..n], &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn everything_at_once_keeps_two_sack_blocks() {
        let blocks = [(SeqNumber(1), SeqNumber(2)); 4];
        let opts = TcpOptions {
            mss: Some(536),
            window_scale: Some(14),
            sack_permitted: true,
            timestamp: Some((5, 6)),
            ..TcpOptions::with_sack(&blocks)
        };
        assert_eq!(opts.sack_blocks_emitted(), 2);
        assert_eq!(opts.buffer_len(), 40);
        let repr = TcpRepr {
            options: opts,
            ..syn()
        };
        assert_eq!(repr.header_len(), 60);
        let buf = emit(&repr);
        let parsed = parse(&buf).unwrap();
        assert_eq!(parsed.options.sack(), &blocks[..2]);
    }

    #[test]
    fn option_parsing_rules() {
        let ok = |b: &[u8]| TcpOptions::parse(b).unwrap();
        // Unknown kinds (MD5 = 19, len 18; experimental 254, len 4) are skipped.
        let mut md5 = vec![19, 18];
        md5.extend_from_slice(&[0xab; 16]);
        md5.extend_from_slice(&[2, 4, 0x05, 0xb4]);
        assert_eq!(ok(&md5).mss, Some(1460));
        assert_eq!(ok(&[254, 4, 0, 0, 3, 3, 9, 0]).window_scale, Some(9));
        // EOL ends the list: what follows is padding, even if it looks like garbage.
        assert_eq!(ok(&[2, 4, 1, 0, 0, 99, 1, 2]).mss, Some(256));
        assert_eq!(ok(&[0, 2, 4, 1, 0]), TcpOptions::default());
        // Window scale above 14 is clamped.
        assert_eq!(ok(&[3, 3, 15, 0]).window_scale, Some(14));
        assert_eq!(ok(&[3, 3, 255, 0]).window_scale, Some(14));
        // A fifth SACK block cannot fit a real header, but the parser must not overrun.
        let mut five = vec![5, 42];
        five.extend((0u32..10).flat_map(|v| v.to_be_bytes()));
        let o = ok(&five);
        assert_eq!(o.sack_len, 4);
        assert_eq!(o.sack()[3], (SeqNumber(6), SeqNumber(7)));

        let bad = |b: &[u8]| TcpOptions::parse(b).unwrap_err();
        for b in [
            &[2][..],            // kind without a length byte
            &[254, 0],           // length below 2
            &[254, 1, 1, 1],     // length below 2
            &[254, 5, 0, 0],     // runs past the end
            &[2, 3, 5, 0],       // MSS with the wrong length
            &[2, 5, 5, 0, 0],    // MSS with the wrong length
            &[3, 2, 1, 1],       // WS with the wrong length
            &[3, 4, 7, 0],       // WS with the wrong length
            &[4, 3, 0, 1],       // SACK-permitted with the wrong length
            &[5, 2, 1, 1],       // SACK with no blocks
            &[5, 6, 0, 0, 0, 1], // SACK not a multiple of 8
            &[8, 8, 0, 0, 0, 0, 0, 0],
            &[8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(bad(b), Error::BadOption, "{b:?}");
        }
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

    #[test]
    fn checksum_and_ports() {
        let mut buf = emit(&syn());
        buf[30] ^= 0x40;
        assert_eq!(parse(&buf), Err(Error::BadChecksum));
        let lax = ChecksumCaps {
            verify_rx: false,
            compute_tx: false,
        };
        assert!(TcpRepr::parse(&TcpPacket::new_checked(&buf[..]).unwrap(), SRC, DST, &lax).is_ok());
        let zero_port = TcpRepr {
            src_port: 0,
            ..syn()
        };
        assert_eq!(parse(&emit(&zero_port)), Err(Error::Malformed));
        // Without compute_tx the checksum field is left zero for the NIC.
        let mut buf = vec![0xffu8; syn().buffer_len()];
        syn().emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SRC, DST, &lax);
        assert_eq!(&buf[16..18], &[0, 0]);
    }

    #[test]
    fn reserved_bits_cleared_and_flags_kept() {
        let mut buf = [0xffu8; 20];
        let all = TcpRepr {
            flags: TcpFlags(0xff),
            options: TcpOptions::default(),
            ..syn()
        };
        all.emit_header(&mut TcpPacket::new_unchecked(&mut buf[..]));
        assert_eq!(buf[12], 0x50);
        assert_eq!(buf[13], 0xff);
    }

    #[test]
    fn equality_ignores_stale_sack_slots() {
        let mut a = TcpOptions::with_sack(&[(SeqNumber(1), SeqNumber(2)); 3]);
        a.sack_len = 1;
        let b = TcpOptions::with_sack(&[(SeqNumber(1), SeqNumber(2))]);
        assert_eq!(a, b);
        a.sack_blocks[0].1 = SeqNumber(3);
        assert_ne!(a, b);
    }

    #[test]
    fn sack_accessor_tolerates_bad_len() {
        let o = TcpOptions {
            sack_len: 200,
            ..TcpOptions::default()
        };
        assert_eq!(o.sack().len(), MAX_SACK_BLOCKS);
        assert_eq!(o.sack_blocks_emitted(), MAX_SACK_BLOCKS);
    }
}
