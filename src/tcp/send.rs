//! The send buffer: bytes the application queued, from the oldest unacknowledged one on, held as
//! a queue of chunks so that a buffer the application already owns joins it without a copy.
//!
//! Invariants: `len` bytes are buffered and byte `i` of them has sequence number `start + i`,
//! where `start` is the sequence number of the first data byte not yet acknowledged. They are
//! the concatenation of `chunks` minus what is acknowledged at the front of the first one. No
//! chunk is empty but a lone one, emptied by acknowledgements and kept for the next write (the
//! request-response case, which then neither allocates nor moves chunks). Each chunk records
//! `end`, the stream offset (bytes appended since the buffer began) just past its last byte, so
//! the chunk holding a sequence number is found by binary search and acknowledging bytes
//! rewrites nothing.
//!
//! Two ways in: [`SendBuffer::write`] copies a slice, up to the capacity, into the last chunk's
//! spare room and then into new chunks (reused spares first, so a connection in a steady state
//! does not allocate); [`SendBuffer::push`] appends a chunk the caller owns, whole and without
//! copying, whatever the capacity: its caller bounds what it queues that way (the threaded API's
//! send credit does). Storage is allocated on demand, so an idle connection costs no buffer
//! memory; chunks emptied by acknowledgements are kept as spares up to the capacity's worth, or
//! taken back by the caller with [`SendBuffer::take_spare`] to fill and push again.

use std::cell::Cell;
use std::collections::VecDeque;

use crate::wire::SeqNumber;

/// The smallest chunk [`SendBuffer::write`] allocates: small writes share one.
const MIN_CHUNK: usize = 512;
/// The largest chunk [`SendBuffer::write`] allocates: a segment's payload spans at most two.
const MAX_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
struct Chunk {
    /// Stream offset just past the chunk's last byte.
    end: u64,
    data: Vec<u8>,
}

impl Chunk {
    #[inline]
    fn begin(&self) -> u64 {
        self.end - self.data.len() as u64
    }
}

#[derive(Debug)]
pub struct SendBuffer {
    chunks: VecDeque<Chunk>,
    len: usize,
    capacity: usize,
    start: SeqNumber,
    /// Stream offset just past the last buffered byte: everything ever appended.
    appended: u64,
    /// Emptied chunks to reuse, and the sum of their capacities.
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// The sum of the capacities of the chunks in `chunks`, kept as they come and go (a chunk's
    /// capacity never changes while queued: writes stay within it), so [`SendBuffer::allocated`],
    /// read after every visit of the connection, does not walk the queue.
    chunk_bytes: usize,
    /// The chunk the last [`SendBuffer::copy_out`] ended in (a guess, checked before use).
    hint: Cell<usize>,
}

impl SendBuffer {
    pub fn new(capacity: usize, start: SeqNumber) -> Self {
        SendBuffer {
            chunks: VecDeque::new(),
            len: 0,
            capacity,
            start,
            appended: 0,
            spare: Vec::new(),
            spare_bytes: 0,
            chunk_bytes: 0,
            hint: Cell::new(0),
        }
    }

    /// Sequence number just past the last buffered byte.
    #[inline]
    pub fn end(&self) -> SeqNumber {
        self.start + self.len
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Frees the storage kept for later writes (the emptied chunk, the spares) if nothing is
    /// buffered: for a connection that sends no more (TIME-WAIT), so its memory goes back
    /// while still warm instead of when the connection is freed.
    pub fn release(&mut self) {
        if self.len == 0 {
            self.chunks = VecDeque::new();
            self.drop_spares();
            self.chunk_bytes = 0;
            self.hint.set(0);
        }
    }

    /// Bytes of heap the buffer holds now: its chunks and spares, allocated.
    #[inline]
    pub fn allocated(&self) -> usize {
        debug_assert_eq!(
            self.chunk_bytes,
            self.chunks.iter().map(|c| c.data.capacity()).sum::<usize>()
        );
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunk_bytes
            + self.spare_bytes
            + self.spare.capacity() * std::mem::size_of::<Vec<u8>>()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.len);
    }

    /// Room left for [`SendBuffer::write`] (none once pushed chunks fill the capacity or more).
    #[inline]
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len)
    }

    /// Appends as much of `bytes` as fits; returns how many were taken.
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        // the usual small write: all of it fits, in the last chunk's spare capacity
        let n = bytes.len();
        let free = self.free();
        if let Some(last) = self.chunks.back_mut() {
            if n > 0 && n <= last.data.capacity() - last.data.len() && n <= free {
                last.data.extend_from_slice(bytes);
                last.end += n as u64;
                self.appended += n as u64;
                self.len += n;
                return n;
            }
        }
        self.write_general(bytes)
    }

    /// [`SendBuffer::write`] of any size: what fits, into the last chunk and new ones.
    #[inline(never)]
    fn write_general(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        if n == 0 {
            return 0;
        }
        let mut rest = &bytes[..n];
        if let Some(last) = self.chunks.back_mut() {
            // Within the capacity it has: a Vec that grew would move the bytes already there.
            let k = (last.data.capacity() - last.data.len()).min(rest.len());
            last.data.extend_from_slice(&rest[..k]);
            last.end += k as u64;
            rest = &rest[k..];
        }
        let mut end = self.appended + (n - rest.len()) as u64;
        while !rest.is_empty() {
            let mut data = match self.spare.pop() {
                Some(v) => {
                    self.spare_bytes -= v.capacity();
                    v
                }
                // Growing with what is queued keeps the chunk count logarithmic until MAX_CHUNK.
                None => Vec::with_capacity(rest.len().max(self.len).clamp(MIN_CHUNK, MAX_CHUNK)),
            };
            let k = data.capacity().min(rest.len());
            data.extend_from_slice(&rest[..k]);
            end += k as u64;
            self.chunk_bytes += data.capacity();
            self.chunks.push_back(Chunk { end, data });
            rest = &rest[k..];
        }
        self.appended += n as u64;
        self.len += n;
        n
    }

    /// Lends `fill` up to `max` bytes of room at the end of the buffer, in one piece (at most
    /// what [`SendBuffer::free`] allows, and `MAX_CHUNK`): it writes the bytes to append at the
    /// start and returns how many. They are appended as by [`SendBuffer::write`], written where
    /// they stay until acknowledged, without a buffer of the caller's to copy from. Returns how
    /// many were appended (`fill` is not called when there is no room).
    pub fn write_with(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let n = max.min(self.free()).min(MAX_CHUNK);
        if n == 0 {
            return 0;
        }
        let room = self
            .chunks
            .back()
            .map_or(0, |c| c.data.capacity() - c.data.len());
        let fresh = room < n;
        if fresh {
            // the lone chunk left empty by acknowledgements makes way (no empty chunk but it)
            if self.len == 0 && self.chunks.len() == 1 {
                let kept = self.pop_front();
                self.keep_spare(kept);
            }
            let data = match self.spare.iter().position(|v| v.capacity() >= n) {
                Some(i) => {
                    let v = self.spare.swap_remove(i);
                    self.spare_bytes -= v.capacity();
                    v
                }
                None => Vec::with_capacity(self.len.clamp(MIN_CHUNK, MAX_CHUNK).max(n)),
            };
            self.chunk_bytes += data.capacity();
            self.chunks.push_back(Chunk {
                end: self.appended,
                data,
            });
        }
        let last = self.chunks.back_mut().expect("a chunk");
        let old = last.data.len();
        // within the capacity it has (a Vec that grew would move the bytes already there)
        last.data.resize(old + n, 0);
        let w = fill(&mut last.data[old..]).min(n);
        last.data.truncate(old + w);
        last.end += w as u64;
        if w == 0 && fresh {
            let data = self.chunks.pop_back().expect("the fresh chunk").data;
            self.chunk_bytes -= data.capacity();
            self.keep_spare(data);
        }
        self.appended += w as u64;
        self.len += w;
        w
    }

    /// Appends `chunk` whole, without copying it, even past the capacity. Returns its length.
    pub fn push(&mut self, chunk: Vec<u8>) -> usize {
        let n = chunk.len();
        if n > 0 {
            if self.len == 0 && self.chunks.len() == 1 {
                let kept = self.pop_front();
                self.keep_spare(kept);
            }
            self.appended += n as u64;
            self.len += n;
            self.chunk_bytes += chunk.capacity();
            self.chunks.push_back(Chunk {
                end: self.appended,
                data: chunk,
            });
        }
        n
    }

    /// Drops everything before `seq` (it was acknowledged). Returns the number of bytes freed.
    #[inline]
    pub fn ack_to(&mut self, seq: SeqNumber) -> usize {
        let n = (seq.diff(self.start).max(0) as usize).min(self.len);
        if n == 0 {
            return 0;
        }
        self.start += n;
        self.len -= n;
        if self.len == 0 && self.chunks.len() == 1 {
            // The usual request-response case: keep the chunk in place for the next write.
            if let Some(c) = self.chunks.front_mut() {
                c.data.clear();
            }
            return n;
        }
        self.free_acked_chunks();
        n
    }

    /// After an acknowledgement: the chunks wholly acknowledged go to the spares.
    #[inline(never)]
    fn free_acked_chunks(&mut self) {
        let first = self.appended - self.len as u64;
        while self.chunks.front().is_some_and(|c| c.end <= first) {
            let data = self.pop_front();
            self.keep_spare(data);
        }
    }

    fn pop_front(&mut self) -> Vec<u8> {
        self.hint.set(self.hint.get().saturating_sub(1));
        let data = self.chunks.pop_front().expect("a chunk").data;
        self.chunk_bytes -= data.capacity();
        data
    }

    fn keep_spare(&mut self, mut data: Vec<u8>) {
        if self.spare_bytes + data.capacity() <= self.capacity {
            data.clear();
            self.spare_bytes += data.capacity();
            self.spare.push(data);
        }
    }

    /// Takes an emptied chunk (cleared, its capacity kept) to fill and [`SendBuffer::push`]
    /// again.
    pub fn take_spare(&mut self) -> Option<Vec<u8>> {
        let v = self.spare.pop()?;
        self.spare_bytes -= v.capacity();
        Some(v)
    }

    /// Frees the emptied chunks kept for later writes (memory pressure).
    pub fn drop_spares(&mut self) {
        self.spare = Vec::new();
        self.spare_bytes = 0;
    }

    /// Whether [`SendBuffer::take_spare`] has one.
    pub fn has_spare(&self) -> bool {
        !self.spare.is_empty()
    }

    /// Copies the bytes with sequence numbers `seq .. seq + dst.len()` into `dst`.
    ///
    /// Panics if the range is not buffered: the connection only asks for what it holds.
    #[inline]
    pub fn copy_out(&self, seq: SeqNumber, dst: &mut [u8]) {
        let off = seq - self.start;
        assert!(off + dst.len() <= self.len, "send buffer read past its end");
        if dst.is_empty() {
            return;
        }
        let pos = self.appended - (self.len - off) as u64;
        // Segments mostly go out in order, and small ones from within the chunk the last copy
        // ended in: one look-up and one copy
        if let Some(c) = self.chunks.get(self.hint.get()) {
            let from = pos.wrapping_sub(c.begin()) as usize;
            if let Some(src) = c.data.get(from..from.wrapping_add(dst.len())) {
                dst.copy_from_slice(src);
                return;
            }
        }
        self.copy_out_from(pos, dst);
    }

    /// [`SendBuffer::copy_out`] from stream offset `pos`, from whichever chunks hold it.
    fn copy_out_from(&self, mut pos: u64, dst: &mut [u8]) {
        // the last copy's chunk or the next one holds this, mostly
        let holds = |i: usize| {
            self.chunks
                .get(i)
                .is_some_and(|c| c.begin() <= pos && pos < c.end)
        };
        let h = self.hint.get();
        let mut i = if holds(h) {
            h
        } else if holds(h + 1) {
            h + 1
        } else {
            self.chunks.partition_point(|c| c.end <= pos)
        };
        let mut out = dst;
        while !out.is_empty() {
            let c = &self.chunks[i];
            let from = (pos - c.begin()) as usize;
            let k = (c.data.len() - from).min(out.len());
            let (now, later) = out.split_at_mut(k);
            now.copy_from_slice(&c.data[from..from + k]);
            out = later;
            pos += k as u64;
            i += 1;
        }
        self.hint.set(i - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(b: &SendBuffer, seq: SeqNumber, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        b.copy_out(seq, &mut out);
        out
    }

    #[test]
    fn write_ack_copy_across_wrap() {
        let mut b = SendBuffer::new(8, SeqNumber(u32::MAX - 2));
        assert_eq!(b.write(b"abcdefghij"), 8);
        assert_eq!(b.free(), 0);
        assert_eq!(b.ack_to(SeqNumber(u32::MAX - 2) + 5), 5);
        assert_eq!(b.end() - b.len(), SeqNumber(2));
        assert_eq!(b.write(b"XYZW"), 4);
        let mut out = [0u8; 6];
        b.copy_out(SeqNumber(3), &mut out);
        assert_eq!(&out, b"ghXYZW");
        assert_eq!(b.end(), SeqNumber(9));
        // acknowledging something already acknowledged changes nothing
        assert_eq!(b.ack_to(SeqNumber(1)), 0);
    }

    #[test]
    fn pushed_chunks_join_without_copy_and_reads_span_chunks() {
        let start = SeqNumber(100);
        let mut b = SendBuffer::new(16, start);
        assert_eq!(b.write(b"abc"), 3);
        let owned = b"defghij".to_vec();
        let ptr = owned.as_ptr();
        assert_eq!(b.push(owned), 7);
        assert_eq!(b.push(Vec::new()), 0);
        // pushed past the capacity: taken whole, and writes find no room
        assert_eq!(b.push(vec![b'k'; 10]), 10);
        assert_eq!((b.len(), b.free()), (20, 0));
        assert_eq!(b.write(b"x"), 0);
        assert_eq!(read(&b, start + 1, 12), b"bcdefghijkkk");
        // the pushed bytes were not moved
        assert_eq!(b.chunks[1].data.as_ptr(), ptr);
        assert_eq!(b.ack_to(start + 5), 5);
        assert_eq!(read(&b, start + 5, 5), b"fghij");
        assert_eq!(b.ack_to(b.end()), 15);
        assert!(b.is_empty() && b.chunks.is_empty());
    }

    #[test]
    fn acknowledged_chunks_are_reused_up_to_the_capacity() {
        let start = SeqNumber(0);
        let mut b = SendBuffer::new(MIN_CHUNK * 2, start);
        assert_eq!(b.write(&[1; 100]), 100);
        let first = b.chunks[0].data.as_ptr();
        // small writes share the chunk
        assert_eq!(b.write(&[2; 100]), 100);
        assert_eq!(b.chunks.len(), 1);
        // all acknowledged: the lone chunk stays for the next write
        b.ack_to(b.end());
        assert!(!b.has_spare());
        assert_eq!(b.write(&[3; 10]), 10);
        assert_eq!(b.chunks.len(), 1);
        assert_eq!(b.chunks[0].data.as_ptr(), first, "the chunk was reused");
        assert_eq!(read(&b, start + 200, 10), [3; 10]);
        // a pushed chunk takes the place of an emptied lone one, which becomes a spare
        b.ack_to(b.end());
        assert_eq!(b.push(vec![4; 3]), 3);
        assert_eq!(b.chunks.len(), 1);
        let v = b.take_spare().expect("spare");
        assert!(v.is_empty() && v.capacity() >= MIN_CHUNK);
        assert_eq!(b.take_spare(), None);
        // two chunks acknowledged become spares, then serve writes
        assert_eq!(b.write(&[5; 600]), 600);
        assert_eq!(b.chunks.len(), 2);
        b.ack_to(b.end());
        assert!(b.has_spare() && b.chunks.is_empty());
        assert_eq!(b.write(&[6; 5]), 5);
        assert_eq!(read(&b, start + 813, 5), [6; 5]);
        // spares beyond the capacity's worth are freed
        let mut b = SendBuffer::new(4, start);
        b.push(vec![0; 100]);
        b.ack_to(b.end());
        assert!(!b.has_spare());
    }

    /// `write_with` among writes, pushes and acknowledgements, against a plain byte queue:
    /// what it appends reads back in order, a fill that writes nothing leaves no empty chunk
    /// behind (but a lone one) and takes no room, and the capacity holds.
    #[test]
    fn write_with_appends_in_place_among_writes_pushes_and_acks() {
        let start = SeqNumber(u32::MAX - 5000);
        let cap = 6000;
        let mut b = SendBuffer::new(cap, start);
        let mut model: VecDeque<u8> = VecDeque::new();
        let (mut acked, mut next, mut state) = (0usize, 0u8, 0x9e37_79b9_u64);
        let mut rnd = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut fills = [0usize; 2];
        for step in 0..4000 {
            let mut bytes = |n: usize| -> Vec<u8> {
                (0..n)
                    .map(|_| {
                        next = next.wrapping_add(1);
                        next
                    })
                    .collect()
            };
            match rnd(6) {
                0 | 1 => {
                    let (max, w) = (rnd(3000), rnd(3000));
                    let room = max.min(b.free()).min(MAX_CHUNK);
                    let want = bytes(w.min(room));
                    let mut called = false;
                    let n = b.write_with(max, |buf| {
                        called = true;
                        assert_eq!(buf.len(), room, "step {step}: the room lent");
                        buf[..want.len()].copy_from_slice(&want);
                        want.len()
                    });
                    assert_eq!(called, room > 0, "step {step}");
                    assert_eq!(n, want.len());
                    model.extend(&want);
                    fills[usize::from(n == 0)] += 1;
                }
                2 => {
                    let piece = bytes(rnd(900));
                    let n = b.write(&piece);
                    model.extend(&piece[..n]);
                }
                3 if b.len() < cap => {
                    let piece = bytes(rnd(700) + 1);
                    model.extend(&piece);
                    b.push(piece);
                }
                _ => {
                    // (everything, a quarter of the time: the lone emptied chunk's case)
                    let n = match rnd(4) {
                        0 => model.len(),
                        _ => rnd(model.len() + 1),
                    };
                    assert_eq!(b.ack_to(start + acked + n), n);
                    model.drain(..n);
                    acked += n;
                }
            }
            assert_eq!(b.len(), model.len(), "step {step}");
            assert!(
                b.chunks.len() <= 1 || b.chunks.iter().all(|c| !c.data.is_empty()),
                "step {step}: an empty chunk among others"
            );
            let _ = b.allocated(); // (checks the capacities' sum in debug builds)
            if !model.is_empty() {
                let off = rnd(model.len());
                let n = (model.len() - off).min(1448);
                let want: Vec<u8> = model.range(off..off + n).copied().collect();
                assert_eq!(read(&b, start + acked + off, n), want, "step {step}");
            }
        }
        assert!(
            fills[0] > 100 && fills[1] > 50,
            "fills writing and not: {fills:?}"
        );
    }

    #[test]
    fn many_chunks_read_back_in_order() {
        let start = SeqNumber(u32::MAX - 1000);
        let mut b = SendBuffer::new(256 * 1024, start);
        let mut all = Vec::new();
        for i in 0..200u32 {
            let piece: Vec<u8> = (0..(i * 37 % 700 + 1)).map(|j| (i + j) as u8).collect();
            if i % 3 == 0 {
                b.push(piece.clone());
            } else {
                assert_eq!(b.write(&piece), piece.len());
            }
            all.extend(piece);
        }
        assert_eq!(b.len(), all.len());
        let mut acked = 0;
        for (off, n) in [(0, 1448), (1448, 1448), (5000, 3000), (all.len() - 9, 9)] {
            assert_eq!(read(&b, start + off, n), all[off..off + n], "at {off}");
        }
        while acked < all.len() {
            let step = (all.len() - acked).min(1000);
            assert_eq!(b.ack_to(start + acked + step), step);
            acked += step;
            if acked < all.len() {
                let n = (all.len() - acked).min(1448);
                assert_eq!(read(&b, start + acked, n), all[acked..acked + n]);
            }
        }
        assert!(b.is_empty());
    }

    /// Random writes, pushes, acknowledgements and reads: every read, through the one-chunk
    /// path of `copy_out` or not, gives the same bytes as the whole walk (`copy_out_from`) and
    /// as a plain model of the stream.
    #[test]
    fn copies_match_the_general_walk_and_a_model() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5e4d);
        let start = SeqNumber(u32::MAX - 5000);
        let mut b = SendBuffer::new(64 * 1024, start);
        let mut model = VecDeque::new();
        let mut una = start;
        let mut next = 0u8;
        for step in 0..20_000 {
            match rng.gen_range(0..10) {
                0..=2 => {
                    let n = rng.gen_range(1..3000);
                    let piece: Vec<u8> = (0..n).map(|_| next.wrapping_add(1)).collect();
                    next = next.wrapping_add(1);
                    let k = if rng.gen_bool(0.3) {
                        b.push(piece.clone())
                    } else {
                        b.write(&piece)
                    };
                    model.extend(&piece[..k]);
                }
                3 if !model.is_empty() => {
                    let n = rng.gen_range(1..=model.len());
                    assert_eq!(b.ack_to(una + n), n);
                    model.drain(..n);
                    una += n;
                }
                _ if !model.is_empty() => {
                    let off = rng.gen_range(0..model.len());
                    let n = rng.gen_range(1..=(model.len() - off).min(2000));
                    let want: Vec<u8> = model.range(off..off + n).copied().collect();
                    let mut walk = vec![0u8; n];
                    b.copy_out_from(b.appended - (b.len - off) as u64, &mut walk);
                    assert_eq!(walk, want, "step {step}: the walk");
                    assert_eq!(read(&b, una + off, n), want, "step {step}");
                }
                _ => {}
            }
        }
    }
}
