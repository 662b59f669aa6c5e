//! The receive buffer: in-order bytes not yet read by the application, and out-of-order bytes
//! held until the gaps before them fill.
//!
//! Invariants: `data` holds exactly the readable bytes, byte `i` with sequence number
//! `read_seq + i`, so `rcv_nxt == read_seq + data.len()`. Out-of-order bytes live apart, one
//! chunk per range of the [`Assembler`] (same starts, same lengths, same order), so storage
//! grows with the bytes held and never with the offset of the furthest one: a byte at the right
//! edge of a 256 KiB window costs one byte, not 256 KiB of zeroes. Everything held lies within
//! `capacity` bytes of `read_seq`, or before the right edge last advertised where a scaled
//! window's rounding put it past that (by less than one step of the scale), which the advertised
//! window guarantees for a well-behaved peer; anything beyond is trimmed.

use std::collections::VecDeque;

use super::reassembly::Assembler;
use crate::wire::SeqNumber;

#[derive(Debug)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
    capacity: usize,
    read_seq: SeqNumber,
    ooo: Assembler,
    /// The out-of-order bytes: `(start, bytes)` for each range of `ooo`, in its order.
    chunks: Vec<(SeqNumber, Vec<u8>)>,
    ooo_bytes: usize,
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
            ooo: Assembler::new(max_ooo_ranges),
            chunks: Vec::new(),
            ooo_bytes: 0,
        }
    }

    pub fn reset_start(&mut self, start: SeqNumber) {
        debug_assert!(self.data.is_empty() && self.chunks.is_empty());
        self.read_seq = start;
    }

    /// Next sequence number expected in order.
    pub fn rcv_nxt(&self) -> SeqNumber {
        self.read_seq + self.data.len()
    }

    /// Readable bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Out-of-order bytes held.
    #[cfg(test)]
    pub fn ooo_bytes(&self) -> usize {
        self.ooo_bytes
    }

    /// Frees the storage if nothing is held, readable or out of order: for a connection that
    /// receives no more data (TIME-WAIT).
    pub fn release(&mut self) {
        if self.data.is_empty() && self.chunks.is_empty() {
            self.data = VecDeque::new();
            self.chunks = Vec::new();
        }
    }

    /// Bytes of heap the buffer holds now (readable and out-of-order storage, allocated).
    pub fn allocated(&self) -> usize {
        self.data.capacity()
            + self.chunks.capacity() * std::mem::size_of::<(SeqNumber, Vec<u8>)>()
            + self.chunks.iter().map(|c| c.1.capacity()).sum::<usize>()
    }

    /// Where the furthest byte held ends, as an offset from `read_seq`.
    fn extent(&self) -> usize {
        self.chunks
            .last()
            .map_or(self.data.len(), |(s, v)| (*s + v.len()) - self.read_seq)
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.extent());
    }

    /// Space from `rcv_nxt` to the end of the buffer: the window we can offer.
    pub fn window(&self) -> usize {
        self.capacity.saturating_sub(self.data.len())
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    pub fn out_of_order(&self) -> &Assembler {
        &self.ooo
    }

    /// Drops every out-of-order byte (memory pressure: the peer sends them again); how many.
    pub fn prune_out_of_order(&mut self) -> usize {
        let n = self.ooo_bytes;
        self.chunks = Vec::new();
        self.ooo.clear();
        self.ooo_bytes = 0;
        n
    }

    /// Stores payload that starts at `seq`. Bytes before `rcv_nxt` or beyond the buffer are
    /// ignored.
    #[cfg(test)]
    pub fn insert(&mut self, seq: SeqNumber, payload: &[u8]) -> Inserted {
        self.insert_before(seq, payload, self.read_seq)
    }

    /// [`RecvBuffer::insert`], taking also the bytes before `edge` that lie past the buffer's
    /// end: a scaled window rounded up to its steps shows the peer up to one step (less a byte)
    /// past it (see `RecvSpace::advertise`), and what we offered, we accept.
    #[inline]
    pub fn insert_before(&mut self, seq: SeqNumber, payload: &[u8], edge: SeqNumber) -> Inserted {
        let rcv_nxt = self.rcv_nxt();
        let mut payload = payload;
        let mut seq = seq;
        let before = rcv_nxt.diff(seq);
        if before > 0 {
            let skip = (before as usize).min(payload.len());
            if skip == payload.len() {
                // wholly old (possibly before what was already read)
                return Inserted {
                    advanced: 0,
                    out_of_order: false,
                    stored: 0,
                };
            }
            payload = &payload[skip..];
            seq += skip;
        }
        let off = seq - self.read_seq;
        let contig = self.data.len();
        let room = self
            .capacity
            .saturating_sub(off)
            .max(edge.diff(seq).max(0) as usize);
        let payload = &payload[..payload.len().min(room)];
        if payload.is_empty() {
            return Inserted {
                advanced: 0,
                out_of_order: before <= 0 && off > contig,
                stored: 0,
            };
        }
        if off > contig {
            if !self.ooo.insert(seq, seq + payload.len()) {
                return Inserted {
                    advanced: 0,
                    out_of_order: true,
                    stored: 0,
                };
            }
            self.store_chunk(seq, payload);
            return Inserted {
                advanced: 0,
                out_of_order: true,
                stored: payload.len(),
            };
        }
        self.data.extend(payload.iter());
        // (an in-order segment with nothing held out of order skips the assembler's call)
        if (!self.ooo.is_empty() && self.ooo.pop_contiguous(self.rcv_nxt()).is_some())
            || !self.chunks.is_empty()
        {
            self.join_chunks();
        }
        Inserted {
            advanced: self.data.len() - contig,
            out_of_order: false,
            stored: payload.len(),
        }
    }

    /// Copies `[seq, seq + payload.len())` into the chunks, merging those it overlaps or
    /// touches as the assembler merged their ranges (later bytes win where they overlap).
    fn store_chunk(&mut self, seq: SeqNumber, payload: &[u8]) {
        let end = seq + payload.len();
        let n = self.chunks.len();
        let i = self
            .chunks
            .iter()
            .position(|(s, v)| (*s + v.len()).diff(seq) >= 0)
            .unwrap_or(n);
        let mut j = i;
        while j < n && self.chunks[j].0.diff(end) <= 0 {
            j += 1;
        }
        if i == j {
            self.chunks.insert(i, (seq, payload.to_vec()));
            self.ooo_bytes += payload.len();
            return;
        }
        let last_end = {
            let (s, v) = &self.chunks[j - 1];
            *s + v.len()
        };
        let new_end = if last_end.diff(end) > 0 {
            last_end
        } else {
            end
        };
        // grow the first chunk in place when it starts first (data arriving in order after a
        // hole extends it at its end)
        let (start, mut buf) = if self.chunks[i].0.diff(seq) <= 0 {
            let (s, v) = std::mem::take(&mut self.chunks[i]);
            self.ooo_bytes -= v.len();
            (s, v)
        } else {
            (seq, Vec::new())
        };
        let first = if buf.is_empty() { i } else { i + 1 };
        buf.resize(new_end - start, 0);
        for (s, v) in self.chunks.drain(first..j) {
            let o = s - start;
            buf[o..o + v.len()].copy_from_slice(&v);
            self.ooo_bytes -= v.len();
        }
        let o = seq - start;
        buf[o..o + payload.len()].copy_from_slice(payload);
        self.ooo_bytes += buf.len();
        if first == i {
            self.chunks.insert(i, (start, buf));
        } else {
            self.chunks[i] = (start, buf);
        }
    }

    /// Moves the chunks the readable bytes now reach behind them.
    fn join_chunks(&mut self) {
        while let Some((s, _)) = self.chunks.first() {
            let nxt = self.rcv_nxt();
            if s.diff(nxt) > 0 {
                break;
            }
            let (s, v) = self.chunks.remove(0);
            self.ooo_bytes -= v.len();
            let skip = nxt - s;
            if skip < v.len() {
                self.data.extend(v[skip..].iter());
            }
        }
        debug_assert!(self
            .chunks
            .first()
            .is_none_or(|(s, _)| s.diff(self.rcv_nxt()) > 0));
    }

    /// The readable bytes as up to two slices, without consuming them.
    pub fn readable(&self) -> (&[u8], &[u8]) {
        self.data.as_slices()
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
        let n = n.min(self.data.len());
        self.data.drain(..n);
        self.read_seq += n;
        n
    }

    /// Copies and consumes up to `dst.len()` bytes.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = self.peek(dst);
        self.consume(n)
    }

    /// Whether `len` in-order bytes at `rcv_nxt` may be lent to the application instead of
    /// stored: nothing readable or out of order is held (they would come first, or be joined),
    /// and they fit the buffer.
    #[inline]
    pub fn can_lend(&self, len: usize) -> bool {
        self.data.is_empty() && self.chunks.is_empty() && len <= self.capacity
    }

    /// Takes `len` in-order bytes as received and read at once, without storing them: the
    /// application is handed them in place (see [`RecvBuffer::can_lend`]) and gives back what
    /// it leaves with [`RecvBuffer::unread`].
    #[inline]
    pub fn lend(&mut self, len: usize) {
        debug_assert!(self.can_lend(len));
        self.read_seq += len;
    }

    /// Stores `bytes`, the last of those just lent, as received but not read: they become the
    /// readable bytes (nothing else was held, see [`RecvBuffer::can_lend`]).
    pub fn unread(&mut self, bytes: &[u8]) {
        debug_assert!(self.data.is_empty() && self.chunks.is_empty());
        self.read_seq = self.read_seq - bytes.len();
        self.data.extend(bytes.iter());
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

    #[test]
    fn a_byte_at_the_window_edge_costs_a_byte() {
        let cap = 256 * 1024;
        let mut r = RecvBuffer::new(cap, SeqNumber(1000), 64);
        let ins = r.insert(SeqNumber(1000) + (cap - 1), b"x");
        assert_eq!(ins.stored, 1);
        assert_eq!(r.ooo_bytes(), 1);
        assert!(r.allocated() < 256, "{} bytes for one", r.allocated());
        // filling the hole joins it
        let fill = vec![7u8; cap - 1];
        assert_eq!(r.insert(SeqNumber(1000), &fill).advanced, cap);
        assert_eq!(r.ooo_bytes(), 0);
        let mut out = vec![0u8; cap];
        assert_eq!(r.read(&mut out), cap);
        assert_eq!(out[cap - 1], b'x');
    }

    #[test]
    fn pruning_drops_out_of_order_bytes_only() {
        let mut r = RecvBuffer::new(64, SeqNumber(0), 8);
        r.insert(SeqNumber(0), b"ab");
        r.insert(SeqNumber(10), b"kl");
        r.insert(SeqNumber(20), b"uv");
        assert_eq!(r.prune_out_of_order(), 4);
        assert!(!r.has_out_of_order());
        assert_eq!(r.insert(SeqNumber(2), b"cdefghij").advanced, 8);
        assert_eq!(r.len(), 10);
    }

    proptest::proptest! {
        /// Segments of one stream in any order, overlapping and duplicated, some beyond the
        /// window: what is read is the stream, byte for byte, and the out-of-order storage is
        /// exactly the bytes the assembler says are held.
        #[test]
        fn any_arrival_order_reads_the_stream(
            start in proptest::prelude::any::<u32>(),
            segs in proptest::collection::vec((0usize..600, 1usize..120), 1..80),
            cap in 64usize..700,
            read_every in 1usize..10,
        ) {
            let stream: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 255) as u8).collect();
            let base = SeqNumber(start);
            let mut r = RecvBuffer::new(cap, base, 8);
            let mut got = Vec::new();
            let mut buf = [0u8; 97];
            let feed = |r: &mut RecvBuffer, got: &mut Vec<u8>, off: usize, len: usize| {
                let end = (off + len).min(stream.len());
                r.insert(base + off, &stream[off..end]);
                let held: usize = r.out_of_order().ranges().iter().map(|(s, e)| *e - *s).sum();
                proptest::prop_assert_eq!(held, r.ooo_bytes());
                proptest::prop_assert!(r.ooo_bytes() + r.len() <= cap);
                let mut b = [0u8; 61];
                let n = r.read(&mut b);
                got.extend_from_slice(&b[..n]);
                Ok(())
            };
            for (k, &(off, len)) in segs.iter().enumerate() {
                feed(&mut r, &mut got, off, len)?;
                if k % read_every == 0 {
                    let n = r.read(&mut buf);
                    got.extend_from_slice(&buf[..n]);
                }
            }
            // then everything in order: the stream completes
            let mut off = got.len() + r.len();
            while off < stream.len() {
                feed(&mut r, &mut got, off, 50)?;
                while !r.is_empty() {
                    let n = r.read(&mut buf);
                    got.extend_from_slice(&buf[..n]);
                }
                off = got.len();
            }
            proptest::prop_assert_eq!(&got[..], &stream[..]);
        }
    }
}
