//! [`TcpRepr`]: a parsed segment, and the building of one in its final buffer.
//!
//! [`TcpRepr::parse`] re-checks lengths, verifies the checksum when asked and rejects a zero
//! port. Emission writes the options in the layout of [`TcpOptions::emit`]; when SACK blocks do
//! not fit beside the other options the last ones are dropped, and [`TcpRepr::header_len`]
//! accounts for that drop, so it always equals what [`TcpRepr::emit_header`] writes. A segment
//! is built in place with `emit_header`, the payload written into [`TcpPacket::payload_mut`],
//! then [`TcpPacket::fill_checksum`] (or the `_with_sum` pair, which does not read the header
//! back); [`TcpRepr::emit`] does all three from a payload slice.

use std::net::Ipv4Addr;

use super::{field, SeqNumber, TcpFlags, TcpOptions, TcpPacket, HEADER_LEN};
use crate::wire::{checksum, ChecksumCaps, Error, Result};

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
impl<'a> TcpRepr<'a> {
    /// Parses a segment (re-checking lengths, so an unchecked view is fine). With
    /// `caps.verify_rx` the checksum over the pseudo-header for `src`, `dst` is checked first
    /// (`BadChecksum`). A zero port is `Malformed`; bad options are `BadOption`.
    ///
    /// Always inlined: called out of line, the ~90-byte `TcpRepr` is built in the callee's
    /// `Result` and copied out again (~25 instructions a segment).
    #[inline(always)]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &TcpPacket<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        caps: &ChecksumCaps,
    ) -> Result<TcpRepr<'a>> {
        // The checks of `check_len`, then every field read from one fixed-size view of the
        // header: one length check instead of one per accessor.
        let b: &'a [u8] = packet.buffer.as_ref();
        let Some(h) = b.first_chunk::<HEADER_LEN>() else {
            return Err(Error::Truncated);
        };
        let header_len = usize::from(h[field::DATA_OFF] >> 4) * 4;
        if header_len < HEADER_LEN || header_len > b.len() {
            return Err(Error::BadOffset);
        }
        if caps.verify_rx && !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let u16_at = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let src_port = u16_at(field::SRC_PORT.start);
        let dst_port = u16_at(field::DST_PORT.start);
        if src_port == 0 || dst_port == 0 {
            return Err(Error::Malformed);
        }
        let (head, payload) = b.split_at(header_len);
        // Options first (the call), then the fixed fields straight from the header into the
        // result: read before the call, they were kept on the stack across it (~7 instructions).
        let options = TcpOptions::parse(&head[field::OPTIONS..])?;
        Ok(TcpRepr {
            src_port,
            dst_port,
            seq: SeqNumber(u32_at(field::SEQ_NUM.start)),
            ack: SeqNumber(u32_at(field::ACK_NUM.start)),
            flags: TcpFlags(h[field::FLAGS]),
            window: u16_at(field::WINDOW.start),
            urgent: u16_at(field::URGENT.start),
            options,
            payload,
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
        let header_len = self.write_fixed(packet);
        if header_len > HEADER_LEN {
            self.options
                .emit(&mut packet.buffer.as_mut()[field::OPTIONS..header_len]);
        }
    }

    /// Writes the 20 bytes of the fixed header (checksum zero) and returns `header_len()`.
    /// Panics if the buffer is shorter than that.
    #[inline(always)]
    fn write_fixed<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut TcpPacket<T>) -> usize {
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
        header_len
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
        let header_len = self.write_fixed(packet);
        let off_flags = (((header_len / 4) as u16) << 12) | u16::from(self.flags.0);
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
    use super::super::test_util::*;

    #[test]
    fn syn_matches_linux_layout() {
        let buf = emit(&syn());
        assert_eq!(buf.len(), 40);
        assert_eq!(buf[12], 0xa0);
        assert_eq!(&buf[20..], &LINUX_SYN_OPTIONS);
        assert_eq!(parse(&buf).unwrap(), syn());
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
}
