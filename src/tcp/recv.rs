//! The receive buffer: in-order bytes not yet read by the application, followed by out-of-order
//! bytes held at their final offsets until the gaps before them fill.
//!
//! Invariant: byte `i` of storage has sequence number `read_seq + i`; the first `contig` bytes are
//! readable; `rcv_nxt == read_seq + contig`. Out-of-order ranges are tracked by an [`Assembler`].
//! Everything the buffer holds lies within `capacity` bytes of `read_seq`, which the advertised
//! window guarantees for a well-behaved peer; anything beyond is trimmed.

use std::collections::VecDeque;

use super::reassembly::Assembler;
use crate::wire::SeqNumber;

#[derive(Debug)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
    capacity: usize,
    read_seq: SeqNumber,
    contig: usize,
    ooo: Assembler,
}

/// What [`RecvBuffer::insert`] did with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    /// Bytes that became readable (this segment and any out-of-order data it joined).
    pub advanced: usize,
    /// The segment landed beyond `rcv_nxt` (or did not fit): the peer should get an ACK now.
    pub out_of_order: bool,
    /// Bytes copied into the buffer (the part of the payload that was new and fit).
    pub stored: usize,
}

impl RecvBuffer {
    pub fn new(capacity: usize, start: SeqNumber, max_ooo_ranges: usize) -> Self {
        RecvBuffer {
            data: VecDeque::new(),
            capacity,
            read_seq: start,
            contig: 0,
            ooo: Assembler::new(max_ooo_ranges),
        }
    }

    pub fn reset_start(&mut self, start: SeqNumber) {
        debug_assert!(self.data.is_empty());
        self.read_seq = start;
    }

    /// Next sequence number expected in order.
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.read_seq + self.contig
    }

    /// Readable bytes.
    pub fn len(&self) -> usize {
        self.contig
    }

    pub fn is_empty(&self) -> bool {
        self.contig == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.data.len());
    }

    /// Space from `rcv_nxt` to the end of the buffer: the window we can offer.
    pub fn window(&self) -> usize {
        self.capacity - self.contig
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    pub fn out_of_order(&self) -> &Assembler {
        &self.ooo
    }

    /// Stores payload that starts at `seq`. Bytes before `rcv_nxt` or beyond the buffer are
    /// ignored.
    pub fn insert(&mut self, seq: SeqNumber, payload: &[u8]) -> Inserted {
        let rcv_nxt = self.rcv_nxt();
        let mut payload = payload;
        let mut seq = seq;
        let before = rcv_nxt.diff(seq);
        if before > 0 {
            let skip = (before as usize).min(payload.len());
            payload = &payload[skip..];
            seq += skip;
        }
        let off = seq - self.read_seq;
        let room = self.capacity.saturating_sub(off);
        let payload = &payload[..payload.len().min(room)];
        if payload.is_empty() {
            return Inserted {
                advanced: 0,
                out_of_order: before <= 0 && off > self.contig,
                stored: 0,
            };
        }
        if off > self.contig && !self.ooo.insert(seq, seq + payload.len()) {
            return Inserted {
                advanced: 0,
                out_of_order: true,
                stored: 0,
            };
        }
        self.write_at(off, payload);
        if off > self.contig {
            return Inserted {
                advanced: 0,
                out_of_order: true,
                stored: payload.len(),
            };
        }
        let old = self.contig;
        self.contig = self.contig.max(off + payload.len());
        if let Some(end) = self.ooo.pop_contiguous(self.rcv_nxt()) {
            self.contig = end - self.read_seq;
        }
        Inserted {
            advanced: self.contig - old,
            out_of_order: false,
            stored: payload.len(),
        }
    }

    fn write_at(&mut self, off: usize, bytes: &[u8]) {
        let end = off + bytes.len();
        if off == self.data.len() {
            // in order, at the end: append without zero-filling first (a memset per segment)
            self.data.extend(bytes);
            return;
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        let (a, b) = self.data.as_mut_slices();
        if off >= a.len() {
            let o = off - a.len();
            b[o..o + bytes.len()].copy_from_slice(bytes);
        } else if end <= a.len() {
            a[off..end].copy_from_slice(bytes);
        } else {
            let first = a.len() - off;
            a[off..].copy_from_slice(&bytes[..first]);
            b[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        }
    }

    /// The readable bytes as up to two slices, without consuming them.
    pub fn readable(&self) -> (&[u8], &[u8]) {
        let (a, b) = self.data.as_slices();
        if self.contig <= a.len() {
            (&a[..self.contig], &[])
        } else {
            (a, &b[..self.contig - a.len()])
        }
    }

    /// Copies readable bytes into `dst` without consuming them.
    pub fn peek(&self, dst: &mut [u8]) -> usize {
        let (a, b) = self.readable();
        let n1 = a.len().min(dst.len());
        dst[..n1].copy_from_slice(&a[..n1]);
        let n2 = b.len().min(dst.len() - n1);
        dst[n1..n1 + n2].copy_from_slice(&b[..n2]);
        n1 + n2
    }

    /// Marks `n` readable bytes as consumed.
    pub fn consume(&mut self, n: usize) -> usize {
        let n = n.min(self.contig);
        self.data.drain(..n);
        self.contig -= n;
        self.read_seq += n;
        n
    }

    /// Copies and consumes up to `dst.len()` bytes.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.peek(dst);
        self.consume(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_out_of_order() {
        let start = SeqNumber(u32::MAX - 3);
        let mut r = RecvBuffer::new(16, start, 8);
        assert_eq!(
            r.insert(start + 4, b"efgh"),
            Inserted {
                advanced: 0,
                out_of_order: true,
                stored: 4
            }
        );
        assert_eq!(r.len(), 0);
        assert_eq!(
            r.insert(start, b"abcd"),
            Inserted {
                advanced: 8,
                out_of_order: false,
                stored: 4
            }
        );
        assert_eq!(r.rcv_nxt(), start + 8);
        let mut out = [0u8; 3];
        assert_eq!(r.read(&mut out), 3);
        assert_eq!(&out, b"abc");
        // duplicate of consumed data is ignored
        assert_eq!(r.insert(start, b"abcd").advanced, 0);
        assert_eq!(r.window(), 11);
        let mut rest = [0u8; 16];
        assert_eq!(r.peek(&mut rest), 5);
        assert_eq!(&rest[..5], b"defgh");
    }

    #[test]
    fn stored_counts_only_the_bytes_copied() {
        let start = SeqNumber(10);
        let mut r = RecvBuffer::new(8, start, 8);
        assert_eq!(r.insert(start, b"abcd").stored, 4);
        // the part already received is skipped, the part past the buffer trimmed
        assert_eq!(r.insert(start + 2, b"cdefghijkl").stored, 4);
        assert_eq!(r.insert(start + 1, b"bc").stored, 0);
        assert_eq!(r.len(), 8);
    }

    #[test]
    fn trims_to_capacity() {
        let mut r = RecvBuffer::new(4, SeqNumber(0), 8);
        assert_eq!(r.insert(SeqNumber(0), b"abcdef").advanced, 4);
        assert_eq!(r.window(), 0);
        assert_eq!(r.insert(SeqNumber(4), b"ef").advanced, 0);
    }
}
