//! Zero-copy views over wire formats, and their parsed representations.
//!
//! Each format has a `Packet<T: AsRef<[u8]>>` view whose `new_checked` validates lengths once, so
//! no accessor panics afterwards, and a `Repr` with `parse`/`emit`/`buffer_len`. Malformed input
//! of any kind is an [`Error`] value, never a panic; callers count it as a drop reason.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
pub mod pretty;
pub mod segment;
pub mod tcp;

pub use arp::{ArpOperation, ArpPacket, ArpRepr};
pub use ethernet::{EtherType, EthernetAddress, EthernetFrame, EthernetRepr};
pub use icmpv4::{Icmpv4Message, Icmpv4Packet, Icmpv4Repr};
pub use ipv4::{IpProtocol, Ipv4Packet, Ipv4Repr};
pub use tcp::{SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, MAX_SACK_BLOCKS};

pub use std::net::Ipv4Addr;

/// Why a frame could not be parsed. `Copy`, never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Shorter than the fixed header, or than a length field says.
    Truncated,
    /// A length field is inconsistent (too small, or larger than the buffer allows).
    BadLength,
    /// A header-length / data-offset field is out of range.
    BadOffset,
    /// The checksum does not verify.
    BadChecksum,
    /// Wrong version field (IPv4 header with version != 4).
    BadVersion,
    /// A malformed option (bad length byte, option running past the header).
    BadOption,
    /// An IPv4 fragment: we do not reassemble.
    Fragmented,
    /// Well-formed but not something we handle (hardware type, opcode, protocol...).
    Unsupported,
    /// Any other field combination that is invalid on the wire.
    Malformed,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Error::Truncated => "truncated",
            Error::BadLength => "bad length",
            Error::BadOffset => "bad header offset",
            Error::BadChecksum => "bad checksum",
            Error::BadVersion => "bad version",
            Error::BadOption => "bad option",
            Error::Fragmented => "fragmented",
            Error::Unsupported => "unsupported",
            Error::Malformed => "malformed",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// Whether checksums are computed on emit and verified on parse.
///
/// Verification can be skipped when the NIC has validated them already (rx offload); emission
/// can be left to a NIC with tx checksum offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumCaps {
    pub verify_rx: bool,
    pub compute_tx: bool,
}

impl Default for ChecksumCaps {
    fn default() -> Self {
        ChecksumCaps {
            verify_rx: true,
            compute_tx: true,
        }
    }
}
