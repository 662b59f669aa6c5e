//! Batched packet I/O: the seam between the engine and whatever moves frames.
//!
//! The AF_XDP datapath ([`xdp`]) is one implementation; the in-memory devices of [`mem`] (a queue
//! device for unit tests, a channel pair joining two engines on threads) are others; middleware
//! ([`pcap`] tap, [`fault`] injector) wraps any implementation. Frames are handed out as borrowed slices
//! so an implementation backed by UMEM can let the engine parse received frames in place and
//! build transmitted frames directly in their final buffer.

pub(crate) mod bpf;
pub mod ethtool;
pub mod fault;
pub mod fault_bpf;
pub mod mem;
pub mod pcap;
pub mod synflood_bpf;
pub mod xdp;

/// What [`PacketIo::recv_batch_ahead`] asks of its closure for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxPass {
    /// Look-ahead pass `n` over the batch: the frame will be handled later in this call; nothing
    /// may depend on it yet (the frame must not change any state).
    Ahead(u8),
    /// The frame's turn: handle it.
    Handle,
}

/// A batched, frame-oriented device.
pub trait PacketIo {
    /// Calls `f` on up to `budget` received frames, in arrival order; returns how many.
    /// The slice is valid only during the call: its buffer goes back to the device after.
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, f: F) -> usize;

    /// [`PacketIo::recv_batch`] with look-ahead: `f` first sees every frame of the batch with
    /// [`RxPass::Ahead`]`(0)`, then every frame with `Ahead(1)`, ... up to `Ahead(passes - 1)`,
    /// and only then each frame with [`RxPass::Handle`], in arrival order (the frames of one
    /// batch stay valid until the last pass). A pass that only starts loading what handling the
    /// frame will read (the flow-table line, then the connection) lets the memory latencies of a
    /// batch overlap instead of adding up. Devices that cannot hold a batch call `f` with
    /// `Handle` only (the default); the frames handled are the same either way.
    fn recv_batch_ahead<F: FnMut(&[u8], RxPass)>(
        &mut self,
        budget: usize,
        passes: u8,
        mut f: F,
    ) -> usize {
        let _ = passes;
        self.recv_batch(budget, |frame| f(frame, RxPass::Handle))
    }

    /// Offers up to `budget` transmit buffers of [`PacketIo::frame_capacity`] bytes each. `f`
    /// writes a frame at the start and returns its length, or `None` when it has nothing more to
    /// send (the buffer is then returned unused). Returns how many frames were queued.
    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(&mut self, budget: usize, f: F) -> usize;

    /// [`PacketIo::send_batch`] where `f` also says, with each frame, whether it may have more:
    /// `Some((len, false))` ends the batch after that frame without offering another buffer
    /// (which a device backed by UMEM would take off its free list only to put it back). The
    /// default offers no further buffer to `f` once it said so; devices override it to skip the
    /// lending too.
    fn send_batch_hinted<F: FnMut(&mut [u8]) -> Option<(usize, bool)>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let mut more = true;
        self.send_batch(budget, |buf| {
            if !more {
                return None;
            }
            let (len, m) = f(buf)?;
            more = m;
            Some(len)
        })
    }

    /// Largest frame a transmit buffer can hold.
    fn frame_capacity(&self) -> usize;

    /// Sleeps until a frame may be ready for [`PacketIo::recv_batch`] or `timeout` passes;
    /// returns whether one may be (spurious `true` is allowed). For an engine with nothing to do
    /// that is allowed to sleep. The default returns `true` at once (devices that are polled).
    fn wait_rx(&mut self, timeout: core::time::Duration) -> bool {
        let _ = timeout;
        true
    }

    /// The engine's clock, given at the start of each iteration: devices never read a clock
    /// themselves, and those that stamp frames (the pcap tap) take their time from here.
    fn set_time(&mut self, now: crate::time::Instant) {
        let _ = now;
    }

    /// The device's own counters, for statistics on request (never called per packet; an
    /// AF_XDP socket asks the kernel for its ring counters with a `getsockopt`). `None` for
    /// devices that keep none; middleware passes its inner device's through.
    fn device_stats(&self) -> Option<xdp::DeviceStats> {
        None
    }
}
