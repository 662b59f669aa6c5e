//! The send buffer: bytes the application queued, from the oldest unacknowledged one on.
//!
//! Invariant: byte `i` of the buffer has sequence number `start + i`, where `start` is the
//! sequence number of the first data byte not yet acknowledged. Storage grows on demand up to
//! the configured capacity, so an idle connection costs no buffer memory.

use std::collections::VecDeque;

use crate::wire::SeqNumber;

#[derive(Debug)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    capacity: usize,
    start: SeqNumber,
}

impl SendBuffer {
    pub fn new(capacity: usize, start: SeqNumber) -> Self {
        SendBuffer {
            data: VecDeque::new(),
            capacity,
            start,
        }
    }

    /// Sequence number just past the last buffered byte.
    pub fn end(&self) -> SeqNumber {
        self.start + self.data.len()
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.data.len());
    }

    pub fn free(&self) -> usize {
        self.capacity - self.data.len()
    }

    /// Appends as much of `bytes` as fits; returns how many were taken.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Drops everything before `seq` (it was acknowledged). Returns the number of bytes freed.
    pub fn ack_to(&mut self, seq: SeqNumber) -> usize {
        let n = (seq.diff(self.start).max(0) as usize).min(self.data.len());
        self.data.drain(..n);
        self.start += n;
        n
    }

    /// Copies the bytes with sequence numbers `seq .. seq + dst.len()` into `dst`.
    ///
    /// Panics if the range is not buffered: the connection only asks for what it holds.
    pub fn copy_out(&self, seq: SeqNumber, dst: &mut [u8]) {
        let off = seq - self.start;
        let end = off + dst.len();
        assert!(end <= self.data.len(), "send buffer read past its end");
        let (a, b) = self.data.as_slices();
        if off >= a.len() {
            dst.copy_from_slice(&b[off - a.len()..end - a.len()]);
        } else if end <= a.len() {
            dst.copy_from_slice(&a[off..end]);
        } else {
            let first = a.len() - off;
            dst[..first].copy_from_slice(&a[off..]);
            dst[first..].copy_from_slice(&b[..end - a.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
