//! A live packet capture the engines feed and another thread writes ([`crate::api::Stack`]'s
//! `capture_start`, the control socket's `pcap` requests): a [`CaptureRing`] shared by every
//! engine of a stack and one writer.
//!
//! The data path pays one relaxed load of an `AtomicU64` per iteration while no capture runs
//! ([`CaptureRing::active`]); the word holds the session and the snap length, so an engine that
//! finds a capture running needs nothing else. While one runs, the engine copies each frame it
//! receives from its device and each frame it sends (at most the snap length) into a buffer
//! taken from a bounded free list (allocated only while the list is empty), stamps it with its
//! clock (Unix nanoseconds), and pushes it on a bounded lock-free queue; when the queue is full
//! the frame is dropped and counted ([`super::EngineStats::capture_dropped`]). The writer pops
//! records, writes them, and hands the buffers back. So the memory a capture holds is bounded by
//! the queue's capacity times the largest frame.
//!
//! A frame another engine received and forwarded to this one ([`super::mesh`]) was captured by
//! the engine that received it, and is not captured again.
//!
//! Each start begins a new session; a record carries the session it was taken in, so records an
//! engine pushed in the iteration that straddled a stop are discarded by the next writer rather
//! than written into the next file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

/// Records the queue holds by default.
pub const DEFAULT_QUEUE: usize = 4096;

/// One frame as an engine took it.
#[derive(Debug)]
pub struct Captured {
    /// The session it was taken in.
    pub session: u32,
    /// The engine's clock, as Unix time in nanoseconds.
    pub ts_unix_nanos: u64,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// A running capture as an engine sees it: its session and snap length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Active {
    pub session: u32,
    pub snaplen: u32,
}

/// The queue between the engines and the capture's writer. See the module docs.
#[derive(Debug)]
pub struct CaptureRing {
    /// `session << 32 | snaplen`; snap length 0 means no capture runs.
    state: AtomicU64,
    full: ArrayQueue<Captured>,
    free: ArrayQueue<Vec<u8>>,
}

impl CaptureRing {
    /// A ring holding up to `capacity` records (at least 1).
    pub fn new(capacity: usize) -> Arc<Self> {
        let capacity = capacity.max(1);
        Arc::new(CaptureRing {
            state: AtomicU64::new(0),
            full: ArrayQueue::new(capacity),
            free: ArrayQueue::new(capacity),
        })
    }

    /// Whether a capture runs: the data path's only cost while none does.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.state.load(Ordering::Relaxed) as u32 != 0
    }

    /// The running capture, if any.
    #[inline]
    pub fn active(&self) -> Option<Active> {
        let s = self.state.load(Ordering::Relaxed);
        let snaplen = s as u32;
        (snaplen != 0).then_some(Active {
            session: (s >> 32) as u32,
            snaplen,
        })
    }

    /// Starts a new session taking `snaplen` bytes of each frame (at least 1); returns it. The
    /// caller (one writer at a time) drains the records of earlier sessions.
    pub fn start(&self, snaplen: u32) -> u32 {
        let session = ((self.state.load(Ordering::Relaxed) >> 32) as u32).wrapping_add(1);
        let word = (u64::from(session) << 32) | u64::from(snaplen.max(1));
        self.state.store(word, Ordering::Relaxed);
        session
    }

    /// Ends `session` if it still runs: engines stop copying at their next iteration.
    pub fn stop(&self, session: u32) {
        let cur = self.state.load(Ordering::Relaxed);
        if (cur >> 32) as u32 == session {
            let _ = self.state.compare_exchange(
                cur,
                u64::from(session) << 32,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Copies the first `active.snaplen` bytes of `frame`; `false` if the queue was full and
    /// the frame dropped. Called by an engine only while [`active`](Self::active) says so.
    pub fn push(&self, active: Active, ts_unix_nanos: u64, frame: &[u8]) -> bool {
        if self.full.is_full() {
            return false;
        }
        let mut data = self.free.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(active.snaplen as usize)]);
        let rec = Captured {
            session: active.session,
            ts_unix_nanos,
            orig_len: frame.len().min(u32::MAX as usize) as u32,
            data,
        };
        match self.full.push(rec) {
            Ok(()) => true,
            // another engine filled the last slot in between
            Err(rec) => {
                let _ = self.free.push(rec.data);
                false
            }
        }
    }

    /// The oldest record, for the writer.
    pub fn pop(&self) -> Option<Captured> {
        self.full.pop()
    }

    /// Gives a record's buffer back for reuse (dropped if the free list is full).
    pub fn recycle(&self, data: Vec<u8>) {
        let _ = self.free.push(data);
    }

    /// Records the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.full.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_until_started_and_after_stop() {
        let ring = CaptureRing::new(8);
        assert_eq!(ring.active(), None);
        let s = ring.start(64);
        assert_eq!(
            ring.active(),
            Some(Active {
                session: s,
                snaplen: 64
            })
        );
        ring.stop(s.wrapping_add(7)); // not the running session: no effect
        assert!(ring.active().is_some());
        ring.stop(s);
        assert_eq!(ring.active(), None);
        let t = ring.start(0);
        assert_ne!(t, s, "a new session each start");
        assert_eq!(
            ring.active().map(|a| a.snaplen),
            Some(1),
            "snap length at least 1"
        );
    }

    #[test]
    fn a_full_queue_drops_and_the_rest_comes_out_in_order_cut_at_the_snap_length() {
        let ring = CaptureRing::new(3);
        let a = Active {
            session: ring.start(4),
            snaplen: 4,
        };
        let pushed: Vec<bool> = (0..5u8)
            .map(|i| ring.push(a, 100 + u64::from(i), &[i; 10]))
            .collect();
        assert_eq!(pushed, [true, true, true, false, false]);
        for i in 0..3u8 {
            let r = ring.pop().unwrap();
            assert_eq!(
                (r.session, r.ts_unix_nanos, r.orig_len, &r.data[..]),
                (a.session, 100 + u64::from(i), 10, &[i; 4][..])
            );
            ring.recycle(r.data);
        }
        assert!(ring.pop().is_none());
        // room again; a recycled buffer is reused, holding only the new frame
        assert!(ring.push(a, 7, &[9, 9]));
        assert_eq!(ring.pop().unwrap().data, [9, 9]);
    }

    #[test]
    fn engines_on_several_threads_lose_nothing_but_what_they_count() {
        let ring = CaptureRing::new(64);
        let a = Active {
            session: ring.start(100),
            snaplen: 100,
        };
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..2u8)
                .map(|t| {
                    let ring = &ring;
                    s.spawn(move || (0..1000u64).filter(|&i| !ring.push(a, i, &[t; 20])).count())
                })
                .collect();
            let mut got = 0u64;
            while hs.iter().any(|h| !h.is_finished()) || !ring.full.is_empty() {
                if let Some(r) = ring.pop() {
                    got += 1;
                    ring.recycle(r.data);
                }
            }
            let dropped: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(got + dropped as u64, 2000, "each frame written or counted");
        });
    }
}
