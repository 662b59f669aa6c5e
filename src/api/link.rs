//! An in-memory Ethernet link between two [`PacketIo`] ends over crossbeam channels, so whole
//! stacks (engines on their own threads) can talk to each other without a NIC or root: the
//! threaded API's tests run two [`super::Stack`]s joined by one.
//!
//! Each direction is a bounded channel of frames; a full channel makes `send_batch` stop early
//! (back-pressure, like a full tx ring), never drop. [`Link::set_up`]`(false)` cuts the cable:
//! frames sent meanwhile are dropped in both directions, which is how a test makes a peer go
//! silent (keep-alive death, retransmission time-out). An idle engine sleeps in
//! [`PacketIo::wait_rx`] until a frame arrives or its [`ChanIo::waker`] is signalled.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Select, Sender};

use crate::io::PacketIo;

/// Frames in flight per direction.
const DEPTH: usize = 4096;

#[derive(Debug, Default)]
struct LinkState {
    down: AtomicBool,
    dropped: AtomicU64,
}

/// Control of a link made by [`pair`].
#[derive(Debug, Clone)]
pub struct Link {
    state: Arc<LinkState>,
}

impl Link {
    /// Connects (`true`) or cuts (`false`) the cable.
    pub fn set_up(&self, up: bool) {
        self.state.down.store(!up, Relaxed);
    }

    /// Frames dropped while the cable was cut.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Relaxed)
    }
}

/// One end of the link.
#[derive(Debug)]
pub struct ChanIo {
    rx: Receiver<Vec<u8>>,
    tx: Sender<Vec<u8>>,
    wake_rx: Receiver<()>,
    wake_tx: Sender<()>,
    state: Arc<LinkState>,
    buf: Vec<u8>,
}

/// Two joined ends whose transmit buffers hold `frame_capacity` bytes, and the cable.
pub fn pair(frame_capacity: usize) -> (ChanIo, ChanIo, Link) {
    let (a_tx, b_rx) = crossbeam::channel::bounded(DEPTH);
    let (b_tx, a_rx) = crossbeam::channel::bounded(DEPTH);
    let state = Arc::new(LinkState::default());
    let end = |rx, tx| {
        let (wake_tx, wake_rx) = crossbeam::channel::bounded(1);
        ChanIo {
            rx,
            tx,
            wake_rx,
            wake_tx,
            state: Arc::clone(&state),
            buf: vec![0; frame_capacity],
        }
    };
    let a = end(a_rx, a_tx);
    let b = end(b_rx, b_tx);
    (a, b, Link { state })
}

impl ChanIo {
    /// Signalling it ends a [`PacketIo::wait_rx`] sleep at once.
    pub fn waker(&self) -> Sender<()> {
        self.wake_tx.clone()
    }
}

impl PacketIo for ChanIo {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, mut f: F) -> usize {
        let mut n = 0;
        while n < budget {
            let Ok(frame) = self.rx.try_recv() else {
                break;
            };
            f(&frame);
            n += 1;
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
            let Some(len) = f(&mut self.buf) else {
                break;
            };
            let len = len.min(self.buf.len());
            let cut = self.state.down.load(Relaxed);
            if cut || self.tx.try_send(self.buf[..len].to_vec()).is_err() {
                self.state.dropped.fetch_add(1, Relaxed);
            }
            n += 1;
        }
        n
    }

    fn frame_capacity(&self) -> usize {
        self.buf.len()
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
