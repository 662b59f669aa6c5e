//! In-memory packet devices: frames move between byte queues, no NIC, no root.
//!
//! - [`MemIo`]: one device, two frame queues and nothing else, single-threaded. Frames pushed
//!   with [`MemIo::push_rx`] are what [`PacketIo::recv_batch`] hands out, in order; what the
//!   user of the device transmits lands in [`MemIo::tx`]; [`MemIo::loop_back`] moves
//!   transmitted frames to the receive queue. For unit tests of middleware (pcap tap, fault
//!   injector) and of code that drives a `PacketIo`.
//! - [`pair`]: two [`ChanIo`] ends of an Ethernet cable over bounded crossbeam channels, so whole
//!   stacks (engines on their own threads) can talk to each other: the threaded API's tests run
//!   two [`crate::api::Stack`]s joined by one. A full channel makes `send_batch` stop early
//!   (back-pressure, like a full tx ring), never drop. [`Cable::set_up`]`(false)` cuts the
//!   cable: frames sent meanwhile are dropped in both directions, which is how a test makes a
//!   peer go silent (keep-alive death, retransmission time-out). An idle engine sleeps in
//!   [`PacketIo::wait_rx`] until a frame arrives or its [`ChanIo::waker`] is signalled.
//!
//! Both behave alike where they overlap: frames come out in the order they went in; the
//! writer of a transmitted frame gets one scratch buffer of the device's frame capacity, reused
//! and never zeroed, as a UMEM frame would be; a length of 0 or past the capacity sends nothing
//! and ends the batch. Neither models time, loss or reordering: the simulated network in
//! [`crate::sim`] does, on a virtual clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Select, Sender};

use super::PacketIo;

/// Frames in flight per direction of a [`pair`].
const DEPTH: usize = 4096;

/// The transmit buffer both devices lend: one frame's capacity, reused.
#[derive(Debug, Clone, Default)]
struct Scratch(Vec<u8>);

impl Scratch {
    fn new(capacity: usize) -> Self {
        Scratch(vec![0; capacity])
    }

    fn capacity(&self) -> usize {
        self.0.len()
    }

    /// Lends the buffer to `f`; the frame it wrote, or `None` when it has nothing to send or
    /// gave an impossible length.
    fn fill<F: FnMut(&mut [u8]) -> Option<usize>>(&mut self, f: &mut F) -> Option<&[u8]> {
        let len = f(&mut self.0)?;
        (len > 0 && len <= self.0.len()).then(|| &self.0[..len])
    }
}

/// Hands up to `budget` frames from `next` to `f`, in order; returns how many.
fn deliver<F: FnMut(&[u8])>(
    budget: usize,
    mut next: impl FnMut() -> Option<Vec<u8>>,
    mut f: F,
) -> usize {
    let mut n = 0;
    while n < budget {
        let Some(frame) = next() else {
            break;
        };
        f(&frame);
        n += 1;
    }
    n
}

/// A queue-backed device. Fields are public: tests inspect and edit them freely.
#[derive(Debug, Clone, Default)]
pub struct MemIo {
    /// Frames waiting to be received, oldest first.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames transmitted, oldest first.
    pub tx: VecDeque<Vec<u8>>,
    scratch: Scratch,
}

impl MemIo {
    /// A device whose transmit buffers hold `frame_capacity` bytes.
    pub fn new(frame_capacity: usize) -> Self {
        MemIo {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            scratch: Scratch::new(frame_capacity),
        }
    }

    /// Queues `frame` for reception.
    pub fn push_rx(&mut self, frame: impl Into<Vec<u8>>) {
        self.rx.push_back(frame.into());
    }

    /// Takes the oldest transmitted frame.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Moves every transmitted frame to the end of the receive queue.
    pub fn loop_back(&mut self) {
        self.rx.extend(self.tx.drain(..));
    }
}

impl PacketIo for MemIo {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, f: F) -> usize {
        deliver(budget, || self.rx.pop_front(), f)
    }

    fn recv_batch_ahead<F: FnMut(&[u8], super::RxPass)>(
        &mut self,
        budget: usize,
        passes: u8,
        mut f: F,
    ) -> usize {
        let n = budget.min(self.rx.len());
        let batch = &self.rx.make_contiguous()[..n];
        for pass in 0..passes {
            for frame in batch {
                f(frame, super::RxPass::Ahead(pass));
            }
        }
        for frame in self.rx.drain(..n) {
            f(&frame, super::RxPass::Handle);
        }
        n
    }

    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(frame) = self.scratch.fill(&mut f) else {
                break;
            };
            self.tx.push_back(frame.to_vec());
            n += 1;
        }
        n
    }

    fn frame_capacity(&self) -> usize {
        self.scratch.capacity()
    }
}

#[derive(Debug, Default)]
struct CableState {
    down: AtomicBool,
    dropped: AtomicU64,
}

/// The cable between the two ends of a [`pair`].
#[derive(Debug, Clone)]
pub struct Cable {
    state: Arc<CableState>,
}

impl Cable {
    /// Connects (`true`) or cuts (`false`) the cable.
    pub fn set_up(&self, up: bool) {
        self.state.down.store(!up, Relaxed);
    }

    /// Frames dropped while the cable was cut.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Relaxed)
    }
}

/// One end of a [`pair`].
#[derive(Debug)]
pub struct ChanIo {
    rx: Receiver<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    wake_rx: Receiver<()>,
    wake_tx: Sender<()>,
    state: Arc<CableState>,
    scratch: Scratch,
    /// The frames of a look-ahead batch ([`PacketIo::recv_batch_ahead`]), reused.
    batch: Vec<Vec<u8>>,
}

/// Two joined ends whose transmit buffers hold `frame_capacity` bytes, and the cable.
pub fn pair(frame_capacity: usize) -> (ChanIo, ChanIo, Cable) {
    let (a_tx, b_rx) = crossbeam::channel::bounded(DEPTH);
    let (b_tx, a_rx) = crossbeam::channel::bounded(DEPTH);
    let state = Arc::new(CableState::default());
    let end = |rx, tx| {
        let (wake_tx, wake_rx) = crossbeam::channel::bounded(1);
        ChanIo {
            rx,
            tx,
            wake_rx,
            wake_tx,
            state: Arc::clone(&state),
            scratch: Scratch::new(frame_capacity),
            batch: Vec::new(),
        }
    };
    let a = end(a_rx, a_tx);
    let b = end(b_rx, b_tx);
    (a, b, Cable { state })
}

impl ChanIo {
    /// Signalling it ends a [`PacketIo::wait_rx`] sleep at once.
    pub fn waker(&self) -> Sender<()> {
        self.wake_tx.clone()
    }
}

impl PacketIo for ChanIo {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, f: F) -> usize {
        deliver(budget, || self.rx.try_recv().ok(), f)
    }

    fn recv_batch_ahead<F: FnMut(&[u8], super::RxPass)>(
        &mut self,
        budget: usize,
        passes: u8,
        mut f: F,
    ) -> usize {
        self.batch.clear();
        while self.batch.len() < budget {
            let Ok(frame) = self.rx.try_recv() else {
                break;
            };
            self.batch.push(frame);
        }
        for pass in 0..passes {
            for frame in &self.batch {
                f(frame, super::RxPass::Ahead(pass));
            }
        }
        let n = self.batch.len();
        for frame in self.batch.drain(..) {
            f(&frame, super::RxPass::Handle);
        }
        n
    }

    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let mut n = 0;
        while n < budget && !self.tx.is_full() {
            let Some(frame) = self.scratch.fill(&mut f) else {
                break;
            };
            let cut = self.state.down.load(Relaxed);
            if cut || self.tx.try_send(frame.to_vec()).is_err() {
                self.state.dropped.fetch_add(1, Relaxed);
            }
            n += 1;
        }
        n
    }

    fn frame_capacity(&self) -> usize {
        self.scratch.capacity()
    }

    fn wait_rx(&mut self, timeout: core::time::Duration) -> bool {
        let mut sel = Select::new();
        sel.recv(&self.rx);
        sel.recv(&self.wake_rx);
        let ready = sel.ready_timeout(timeout).is_ok();
        while self.wake_rx.try_recv().is_ok() {}
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::RxPass;

    #[test]
    fn queues_in_order_and_respects_budget() {
        let mut m = MemIo::new(64);
        for i in 0..5u8 {
            m.push_rx(vec![i; 3]);
        }
        let mut got = Vec::new();
        assert_eq!(m.recv_batch(3, |f| got.push(f[0])), 3);
        assert_eq!(m.recv_batch(10, |f| got.push(f[0])), 2);
        assert_eq!(got, [0, 1, 2, 3, 4]);

        let mut k = 0u8;
        let sent = m.send_batch(4, |buf| {
            k += 1;
            (k <= 2).then(|| {
                buf[..2].fill(k);
                2
            })
        });
        assert_eq!(sent, 2);
        assert_eq!(m.tx, [vec![1, 1], vec![2, 2]]);
        m.loop_back();
        assert!(m.tx.is_empty());
        assert_eq!(m.rx.len(), 2);
    }

    /// Two look-ahead batches of at most 3 from a device holding frames 1..=5: what the closure
    /// saw, in order.
    type Seen = Vec<(u8, RxPass)>;

    fn two_batches(dev: &mut impl PacketIo) -> (Seen, Seen) {
        let mut first = Vec::new();
        assert_eq!(dev.recv_batch_ahead(3, 2, |f, p| first.push((f[0], p))), 3);
        let mut second = Vec::new();
        assert_eq!(dev.recv_batch_ahead(3, 2, |f, p| second.push((f[0], p))), 2);
        (first, second)
    }

    /// Every frame of a batch is seen in each look-ahead pass, then handled, in order, within
    /// the budget; the frames past the budget wait for the next batch.
    #[test]
    fn look_ahead_passes_see_the_whole_batch_before_any_is_handled() {
        let order = |frames: std::ops::RangeInclusive<u8>| -> Seen {
            [RxPass::Ahead(0), RxPass::Ahead(1), RxPass::Handle]
                .into_iter()
                .flat_map(|p| frames.clone().map(move |i| (i, p)))
                .collect()
        };
        let mut m = MemIo::new(64);
        for i in 1..=5u8 {
            m.push_rx(vec![i]);
        }
        let (a, b) = two_batches(&mut m);
        assert_eq!(a, order(1..=3));
        assert_eq!(b, order(4..=5));

        let (mut tx, mut rx, _cable) = pair(64);
        let mut k = 0u8;
        tx.send_batch(8, |buf| {
            k += 1;
            (k <= 5).then(|| {
                buf[0] = k;
                1
            })
        });
        let (a, b) = two_batches(&mut rx);
        assert_eq!(a, order(1..=3));
        assert_eq!(b, order(4..=5));
    }

    #[test]
    fn a_pair_carries_frames_both_ways_until_the_cable_is_cut() {
        let (mut a, mut b, cable) = pair(64);
        assert_eq!(a.frame_capacity(), 64);
        let mut k = 0u8;
        let sent = a.send_batch(8, |buf| {
            k += 1;
            (k <= 3).then(|| {
                buf[..4].fill(k);
                4
            })
        });
        assert_eq!(sent, 3);
        let mut got = Vec::new();
        assert_eq!(b.recv_batch(2, |f| got.push(f.to_vec())), 2);
        assert_eq!(b.recv_batch(8, |f| got.push(f.to_vec())), 1);
        assert_eq!(got, [vec![1; 4], vec![2; 4], vec![3; 4]]);
        assert_eq!(b.send_batch(1, |_| Some(65)), 0, "past the capacity");

        cable.set_up(false);
        assert_eq!(b.send_batch(1, |buf| Some(buf.len())), 1);
        assert_eq!(a.recv_batch(8, |_| {}), 0);
        assert_eq!(cable.dropped(), 1);
        cable.set_up(true);
        assert_eq!(b.send_batch(1, |buf| Some(buf.len())), 1);
        assert!(a.wait_rx(core::time::Duration::from_secs(5)));
        assert_eq!(a.recv_batch(8, |_| {}), 1);

        a.waker().send(()).unwrap();
        assert!(a.wait_rx(core::time::Duration::from_secs(5)), "woken");
    }

    #[test]
    fn oversized_length_sends_nothing() {
        let mut m = MemIo::new(16);
        assert_eq!(m.send_batch(1, |_| Some(17)), 0);
        assert!(m.tx.is_empty());
    }
}
