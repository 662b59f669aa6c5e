//! Forwarding between engines: a frame that arrived on an engine whose host does not own its
//! flow ([`crate::host::RxVerdict::Foreign`]) is copied into a bounded lock-free queue toward
//! the owner, which processes it as if its own queue had received it.
//!
//! One lane per ordered pair of engines, so each queue has one producer and one consumer:
//! a crossbeam [`ArrayQueue`] of full buffers and one of emptied buffers going back, so a
//! steady stream of forwarded frames allocates nothing. A full lane drops the frame (counted);
//! TCP recovers it as a loss. Nothing is locked.
//!
//! An owner asleep in its device's wait ([`super::IdleBackoff`]) is woken by the forwarder:
//! before sleeping it raises its `sleeping` flag and looks at its lanes once more; a forwarder
//! that pushed a frame and sees the flag raised calls the owner's wake function (the eventfd
//! its socket polls beside the rx ring). Both sides fence (`SeqCst`) between their write and
//! their read, so one of them always sees the other.
//!
//! [`MeshCounters`] are shared atomics, written by each engine with relaxed adds only when it
//! forwards or takes a frame, and readable from any thread while the engines run.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

/// Wakes an engine from its idle sleep.
pub type WakeFn = Arc<dyn Fn() + Send + Sync>;

/// Frames one engine hands another: full buffers one way, empty ones back.
struct Lane {
    full: ArrayQueue<Vec<u8>>,
    empty: ArrayQueue<Vec<u8>>,
}

/// Forwarding counters of one engine, live.
#[derive(Debug, Default)]
pub struct MeshCounters {
    /// Frames this engine received for a flow another engine owns and handed to it.
    pub forwarded_out: AtomicU64,
    /// Frames other engines handed to this one.
    pub forwarded_in: AtomicU64,
    /// Frames to forward dropped because the owner's lane was full.
    pub lane_full: AtomicU64,
}

/// A snapshot of [`MeshCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardStats {
    pub forwarded_out: u64,
    pub forwarded_in: u64,
    pub lane_full: u64,
}

impl MeshCounters {
    pub fn snapshot(&self) -> ForwardStats {
        ForwardStats {
            forwarded_out: self.forwarded_out.load(Ordering::Relaxed),
            forwarded_in: self.forwarded_in.load(Ordering::Relaxed),
            lane_full: self.lane_full.load(Ordering::Relaxed),
        }
    }
}

/// One engine's end of the mesh: lanes out to every other engine and in from them.
pub struct Mesh {
    me: usize,
    /// `out[j]`: toward engine `j` (`None` for `me`).
    out: Vec<Option<Arc<Lane>>>,
    /// Lanes toward this engine, one per other engine.
    inbound: Vec<Arc<Lane>>,
    /// Next inbound lane to look at, so no sender starves the others.
    next: usize,
    sleeping: Vec<Arc<AtomicBool>>,
    wakes: Vec<Option<WakeFn>>,
    counters: Vec<Arc<MeshCounters>>,
}

impl Mesh {
    /// The ends of a mesh of `engines` engines, each lane holding `capacity` frames; `wakes[i]`
    /// wakes engine `i` (missing or `None`: it is never asleep for long, e.g. it busy-polls).
    pub fn build(engines: usize, capacity: usize, wakes: Vec<Option<WakeFn>>) -> Vec<Mesh> {
        let cap = capacity.max(1);
        let lanes: Vec<Vec<Option<Arc<Lane>>>> = (0..engines)
            .map(|i| {
                (0..engines)
                    .map(|j| {
                        (i != j).then(|| {
                            Arc::new(Lane {
                                full: ArrayQueue::new(cap),
                                empty: ArrayQueue::new(cap),
                            })
                        })
                    })
                    .collect()
            })
            .collect();
        let sleeping: Vec<Arc<AtomicBool>> = (0..engines).map(|_| Arc::default()).collect();
        let counters: Vec<Arc<MeshCounters>> = (0..engines).map(|_| Arc::default()).collect();
        let mut wakes = wakes;
        wakes.resize(engines, None);
        (0..engines)
            .map(|me| Mesh {
                me,
                out: lanes[me].clone(),
                inbound: (0..engines).filter_map(|i| lanes[i][me].clone()).collect(),
                next: 0,
                sleeping: sleeping.clone(),
                wakes: wakes.clone(),
                counters: counters.clone(),
            })
            .collect()
    }

    /// This engine's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Every engine's counters (index = engine).
    pub fn counters(&self) -> Vec<Arc<MeshCounters>> {
        self.counters.clone()
    }

    /// Copies `frame` toward engine `owner`; false when it was dropped (the lane is full, or
    /// there is no such engine).
    pub fn forward(&mut self, owner: u32, frame: &[u8]) -> bool {
        let c = &self.counters[self.me];
        let Some(Some(lane)) = self.out.get(owner as usize) else {
            c.lane_full.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if lane.full.is_full() {
            c.lane_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let mut buf = lane.empty.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        if lane.full.push(buf).is_err() {
            c.lane_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        c.forwarded_out.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let o = owner as usize;
        if self.sleeping[o].load(Ordering::Relaxed) {
            if let Some(w) = &self.wakes[o] {
                w();
            }
        }
        true
    }

    /// Whether a frame waits in any inbound lane.
    #[inline]
    pub fn has_inbound(&self) -> bool {
        self.inbound.iter().any(|l| !l.full.is_empty())
    }

    /// Takes up to `max` forwarded frames, round-robin over the senders, and gives each to `f`;
    /// returns how many.
    pub fn drain(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> usize {
        let n = self.inbound.len();
        let mut done = 0;
        let mut idle_lanes = 0;
        while done < max && idle_lanes < n {
            let lane = &self.inbound[self.next];
            self.next = (self.next + 1) % n;
            match lane.full.pop() {
                Some(buf) => {
                    idle_lanes = 0;
                    f(&buf);
                    let _ = lane.empty.push(buf);
                    done += 1;
                }
                None => idle_lanes += 1,
            }
        }
        if done > 0 {
            self.counters[self.me]
                .forwarded_in
                .fetch_add(done as u64, Ordering::Relaxed);
        }
        done
    }

    /// Before an idle sleep: raises this engine's flag; false (and the flag lowered) if a frame
    /// arrived meanwhile, so the caller must not sleep.
    pub fn may_sleep(&self) -> bool {
        self.sleeping[self.me].store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.has_inbound() {
            self.woke();
            return false;
        }
        true
    }

    /// After an idle sleep.
    pub fn woke(&self) {
        self.sleeping[self.me].store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn frames_reach_the_owner_in_order_and_are_counted_both_sides() {
        let mut m = Mesh::build(3, 4, Vec::new());
        assert!(m[0].forward(2, b"one"));
        assert!(m[1].forward(2, b"two"));
        assert!(m[0].forward(2, b"three"));
        assert!(!m[1].has_inbound());
        assert!(m[2].has_inbound());
        let mut got = Vec::new();
        assert_eq!(m[2].drain(16, |f| got.push(f.to_vec())), 3);
        // round-robin between senders, in order per sender
        assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        let c = m[0].counters();
        assert_eq!(c[0].snapshot().forwarded_out, 2);
        assert_eq!(c[1].snapshot().forwarded_out, 1);
        assert_eq!(c[2].snapshot().forwarded_in, 3);
    }

    #[test]
    fn a_full_lane_drops_and_counts() {
        let mut m = Mesh::build(2, 2, Vec::new());
        assert!(m[0].forward(1, b"a"));
        assert!(m[0].forward(1, b"b"));
        assert!(!m[0].forward(1, b"c"));
        assert!(!m[0].forward(0, b"self"));
        assert!(!m[0].forward(7, b"nobody"));
        let s = m[0].counters()[0].snapshot();
        assert_eq!((s.forwarded_out, s.lane_full), (2, 3));
        assert_eq!(m[1].drain(1, |_| {}), 1);
        assert!(m[0].forward(1, b"d"));
    }

    #[test]
    fn a_sleeping_owner_is_woken_and_an_idle_one_is_not() {
        let woken = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&woken);
        let wake: WakeFn = Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        });
        let mut m = Mesh::build(2, 8, vec![None, Some(wake)]);
        assert!(m[0].forward(1, b"x"));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        // a frame waits: the owner must not sleep
        assert!(!m[1].may_sleep());
        m[1].drain(8, |_| {});
        assert!(m[1].may_sleep());
        assert!(m[0].forward(1, b"y"));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        m[1].woke();
        assert!(m[0].forward(1, b"z"));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }
}
