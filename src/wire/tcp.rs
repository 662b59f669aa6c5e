//! TCP header view, options, and sequence-number arithmetic.
//!
//! TODO(wire helper): TcpPacket view, option parsing/emission, TcpRepr::parse/emit.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

impl TcpOptions {
    pub fn sack(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.sack_blocks[..self.sack_len as usize]
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
pub struct TcpPacket;
