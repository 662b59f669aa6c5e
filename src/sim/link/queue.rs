//! Where frames wait: the transmitter that serializes them at the link's bandwidth (and
//! tail-drops when its queue is full), the in-flight queue ordered by delivery time, and the
//! [`Frame`] a receiver gets.
//!
//! Invariants of [`InFlightQueue`]: frames come out by (delivery time, send order), so frames
//! due at the same instant stay FIFO; the FIFO part is sorted, and only a frame due before the
//! FIFO's last one goes to the heap, so in-order traffic costs O(1) per frame. Of
//! [`Transmitter`]: `waiting` holds the frames accepted but not yet started at the last send,
//! `waiting_bytes` their total, which is what the queue limit bounds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::ops::{Deref, DerefMut};

#[cfg(doc)]
use super::Link;
use crate::time::{Duration, Instant};

/// A delivered frame. Its buffer belongs to the link's pool: give it back with [`Link::recycle`].
#[derive(Debug)]
pub struct Frame {
    pub(super) arrival: Instant,
    pub(super) buf: Vec<u8>,
}

impl Frame {
    /// When the frame became deliverable (at or before the `now` it was received at).
    pub fn arrival(&self) -> Instant {
        self.arrival
    }

    pub fn data(&self) -> &[u8] {
        &self.buf
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }

    /// Takes the bytes out of the link's pool for good.
    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

impl Deref for Frame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl DerefMut for Frame {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// A frame on its way. `seq` (send order) breaks ties so equal times stay FIFO.
pub(super) struct InFlight {
    pub(super) at: Instant,
    seq: u64,
    pub(super) buf: Vec<u8>,
}

impl InFlight {
    fn key(&self) -> (Instant, u64) {
        (self.at, self.seq)
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    /// Reversed, so the max-heap `BinaryHeap` pops the earliest frame.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

/// In-flight frames ordered by (delivery time, seq). Most frames arrive in send order, so they
/// go to a FIFO in O(1); only a frame due before the FIFO's last one (jitter, reordering) goes
/// to the heap. [`InFlightQueue::pop_due`] takes the earlier head of the two.
#[derive(Default)]
pub(super) struct InFlightQueue {
    fifo: VecDeque<InFlight>,
    heap: BinaryHeap<InFlight>,
    next_seq: u64,
}

impl InFlightQueue {
    pub(super) fn push(&mut self, at: Instant, buf: Vec<u8>) {
        let item = InFlight {
            at,
            seq: self.next_seq,
            buf,
        };
        self.next_seq += 1;
        // seq only grows, so a frame not due before the FIFO's last keeps the FIFO sorted.
        match self.fifo.back() {
            Some(last) if last.at > at => self.heap.push(item),
            _ => self.fifo.push_back(item),
        }
    }

    /// When the earliest frame is due, if any.
    pub(super) fn next_delivery(&self) -> Option<Instant> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => Some(f.at.min(h.at)),
            (Some(f), None) => Some(f.at),
            (None, Some(h)) => Some(h.at),
            (None, None) => None,
        }
    }

    /// The earliest frame due at or before `now`, if any.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        let from_heap = match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => h.key() < f.key(),
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if from_heap {
            if self.heap.peek()?.at > now {
                return None;
            }
            self.heap.pop()
        } else {
            if self.fifo.front()?.at > now {
                return None;
            }
            self.fifo.pop_front()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }
}

/// The sending end's transmitter. It is busy until `free_at`; `waiting` holds (start of
/// serialization, len) of accepted frames that had not started at the last send, `waiting_bytes`
/// their sum.
#[derive(Debug, Default)]
pub(super) struct Transmitter {
    free_at: Instant,
    waiting: VecDeque<(Instant, usize)>,
    waiting_bytes: usize,
}

impl Transmitter {
    /// Books the transmitter for a frame of `len` bytes at `bps` (`None`: infinitely fast);
    /// returns when its last bit leaves, or `None` if it would wait and the bytes waiting would
    /// pass `queue_limit`.
    pub(super) fn serialize(
        &mut self,
        now: Instant,
        len: usize,
        bps: Option<u64>,
        queue_limit: Option<usize>,
    ) -> Option<Instant> {
        let Some(bps) = bps else {
            return Some(now);
        };
        while let Some(&(start, bytes)) = self.waiting.front() {
            if start > now {
                break;
            }
            self.waiting.pop_front();
            self.waiting_bytes -= bytes;
        }
        let start = self.free_at.max(now);
        if start > now {
            if let Some(limit) = queue_limit {
                if self.waiting_bytes + len > limit {
                    return None;
                }
            }
            self.waiting.push_back((start, len));
            self.waiting_bytes += len;
        }
        let end = start + serialization_time(len, bps);
        self.free_at = end;
        Some(end)
    }
}

/// Time for `len` bytes at `bps`, rounded up to the nanosecond.
fn serialization_time(len: usize, bps: u64) -> Duration {
    let ns = (len as u128 * 8 * 1_000_000_000).div_ceil(u128::from(bps));
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::serialization_time;

    #[test]
    fn bandwidth_serializes_frames_back_to_back() {
        // 8 Mbit/s is one byte per microsecond: a 1000-byte frame takes 1 ms on the wire.
        let mut link = Link::new(
            LinkConfig::ideal(Duration::from_millis(10)).with_bandwidth(8_000_000),
            1,
        );
        for i in 0..3 {
            link.send(Instant::ZERO, &numbered(i, 1000));
        }
        // The transmitter is idle again from 3 ms, so a frame sent at 5 ms starts at once.
        link.send(at_us(5_000), &numbered(3, 1000));
        // Sent at 5.5 ms behind a frame that ends at 6 ms: 6 + 0.5 (500 bytes) + 10.
        link.send(at_us(5_500), &numbered(4, 500));
        let mut got = Vec::new();
        while let Some(f) = link.recv(Instant::MAX) {
            got.push((index(&f), f.arrival()));
        }
        assert_eq!(
            got,
            [
                (0, at_us(11_000)),
                (1, at_us(12_000)),
                (2, at_us(13_000)),
                (3, at_us(16_000)),
                (4, at_us(16_500)),
            ]
        );
    }

    #[test]
    fn serialization_rounds_up_to_the_nanosecond() {
        assert_eq!(
            serialization_time(1, 3),
            Duration::from_nanos(2_666_666_667)
        );
        assert_eq!(
            serialization_time(1500, 10_000_000_000),
            Duration::from_nanos(1200)
        );
        assert_eq!(serialization_time(0, 1), Duration::ZERO);
    }

    #[test]
    fn full_queue_tail_drops() {
        // 1 ms per frame; 2500 bytes of queue hold two waiting frames behind the one on the wire.
        let cfg = LinkConfig::ideal(Duration::ZERO)
            .with_bandwidth(8_000_000)
            .with_queue_limit(2500);
        let mut link = Link::new(cfg, 1);
        for i in 0..4 {
            link.send(Instant::ZERO, &numbered(i, 1000));
        }
        assert_eq!(link.stats().dropped_queue, 1);
        // At 1 ms frame 1 is on the wire and only frame 2 waits: room for one more.
        link.send(at_us(1_000), &numbered(4, 1000));
        link.send(at_us(1_000), &numbered(5, 1000));
        assert_eq!(link.stats().dropped_queue, 2);
        // A frame that finds the transmitter idle never waits, however small the queue.
        let mut tiny = Link::new(
            LinkConfig::ideal(Duration::ZERO)
                .with_bandwidth(8_000_000)
                .with_queue_limit(0),
            1,
        );
        tiny.send(Instant::ZERO, &numbered(0, 1000));
        tiny.send(Instant::ZERO, &numbered(1, 1000));
        tiny.send(at_us(1_000), &numbered(2, 1000));
        assert_eq!(tiny.stats().dropped_queue, 1);

        let got: Vec<_> = std::iter::from_fn(|| link.recv(Instant::MAX))
            .map(|f| (index(&f), f.arrival()))
            .collect();
        assert_eq!(
            got,
            [
                (0, at_us(1_000)),
                (1, at_us(2_000)),
                (2, at_us(3_000)),
                (4, at_us(4_000))
            ]
        );
    }
}
