//! An in-memory [`PacketIo`]: two frame queues and nothing else.
//!
//! Frames pushed with [`MemIo::push_rx`] are what [`PacketIo::recv_batch`] hands out, in order;
//! what the user of the device transmits lands in [`MemIo::tx`]. [`MemIo::loop_back`] moves
//! transmitted frames to the receive queue. Meant for unit tests of middleware (pcap tap, fault
//! injector) and of code that drives a `PacketIo`; it has no timing, loss or capacity limits
//! (the simulated network in `sim` models those).

use std::collections::VecDeque;

use super::PacketIo;

/// A queue-backed device. Fields are public: tests inspect and edit them freely.
#[derive(Debug, Clone, Default)]
pub struct MemIo {
    /// Frames waiting to be received, oldest first.
    pub rx: VecDeque<Vec<u8>>,
    /// Frames transmitted, oldest first.
    pub tx: VecDeque<Vec<u8>>,
    capacity: usize,
    scratch: Vec<u8>,
}

impl MemIo {
    /// A device whose transmit buffers hold `frame_capacity` bytes.
    pub fn new(frame_capacity: usize) -> Self {
        MemIo {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            capacity: frame_capacity,
            scratch: vec![0; frame_capacity],
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
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, mut f: F) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(frame) = self.rx.pop_front() else {
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
        while n < budget {
            // A stale frame in the buffer mimics a reused UMEM frame: writers must not rely on
            // zeroed buffers.
            let Some(len) = f(&mut self.scratch) else {
                break;
            };
            if len == 0 || len > self.capacity {
                break;
            }
            self.tx.push_back(self.scratch[..len].to_vec());
            n += 1;
        }
        n
    }

    fn frame_capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn oversized_length_sends_nothing() {
        let mut m = MemIo::new(16);
        assert_eq!(m.send_batch(1, |_| Some(17)), 0);
        assert!(m.tx.is_empty());
    }
}
