//! The UMEM and its frame accounting.
//!
//! Every frame is at any moment in exactly one [`FrameLocation`]:
//!
//! | location | meaning | enters by | leaves by |
//! |---|---|---|---|
//! | `Free` | on our free list | start, rx processed, tx completed | fill, tx write |
//! | `Fill` | lent to the kernel for rx: fill ring, kernel-internal, or rx ring not yet consumed | refill | rx consume |
//! | `App` | held by the caller: a received frame being processed, a tx buffer being written | rx consume, tx write | rx done, tx submit / unused |
//! | `Tx` | lent to the kernel for tx: tx ring, in flight, or completion ring not yet consumed | tx submit | completion |
//!
//! A per-frame location array backs the counters, so [`FramePool::check_accounting`] proves the
//! invariant frame by frame rather than trusting the counters; a transition from the wrong place
//! (the kernel handing back an address we never lent, a double return) is recorded as a
//! violation instead of corrupting the books.

use std::fmt;
use std::io;
use std::num::NonZeroU32;

use xsk_rs::config::{FrameSize, QueueSize, UmemConfig as XskUmemConfig};
use xsk_rs::{FrameDesc, Umem};

/// UMEM geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UmemConfig {
    /// Bytes per frame, a power of two >= 2048 (the kernel's `XDP_PACKET_HEADROOM` of 256 bytes
    /// and `frame_headroom` come out of it).
    pub frame_size: u32,
    /// Number of frames.
    pub frame_count: u32,
    /// Extra headroom we reserve in front of each frame's data.
    pub frame_headroom: u32,
    /// Fill ring entries, a power of two.
    pub fill_ring: u32,
    /// Completion ring entries, a power of two.
    pub comp_ring: u32,
}

impl Default for UmemConfig {
    fn default() -> Self {
        UmemConfig {
            frame_size: 2048,
            frame_count: 4096,
            frame_headroom: 0,
            fill_ring: 2048,
            comp_ring: 2048,
        }
    }
}

/// Where a frame is. See the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameLocation {
    Free = 0,
    Fill = 1,
    App = 2,
    Tx = 3,
}

/// A snapshot of the frame books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameAccounting {
    pub total: u32,
    pub free: u32,
    pub fill: u32,
    pub app: u32,
    pub tx: u32,
    /// Transitions refused because the frame was not where it should have been.
    pub violations: u64,
}

impl FrameAccounting {
    /// Frames accounted for in some location.
    pub fn sum(&self) -> u32 {
        self.free + self.fill + self.app + self.tx
    }
}

/// Why [`FramePool::check_accounting`] failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountingError {
    pub counters: FrameAccounting,
    /// Counts recomputed from the per-frame location array.
    pub recount: FrameAccounting,
    pub free_list_len: usize,
    pub reason: &'static str,
}

impl fmt::Display for AccountingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame accounting broken ({}): counters {:?}, recount {:?}, free list {}",
            self.reason, self.counters, self.recount, self.free_list_len
        )
    }
}

impl std::error::Error for AccountingError {}

/// The UMEM, its frames' pristine descriptors, the free list and the books.
#[derive(Debug)]
pub struct FramePool {
    umem: Umem,
    /// Descriptor of frame `i` as `Umem::new` made it: data address just past the headrooms.
    pristine: Vec<FrameDesc>,
    free: Vec<u32>,
    loc: Vec<FrameLocation>,
    /// Frames per location, indexed by [`FrameLocation`]; `Free`'s is the free list's length
    /// (its slot here is unused), so a frame going to or from the free list updates one counter.
    counts: [u32; 4],
    violations: u64,
    /// log2 of the frame size (a power of two: the build of the UMEM config checks it), so
    /// finding a frame from an address is a shift, not a division (~10 instructions each).
    frame_shift: u32,
    frame_capacity: usize,
    config: UmemConfig,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl FramePool {
    /// Maps and registers the UMEM; every frame starts `Free`.
    pub fn new(config: &UmemConfig) -> io::Result<Self> {
        let frame_size = FrameSize::new(config.frame_size).map_err(|e| invalid(e.to_string()))?;
        let fill = QueueSize::new(config.fill_ring).map_err(|e| invalid(e.to_string()))?;
        let comp = QueueSize::new(config.comp_ring).map_err(|e| invalid(e.to_string()))?;
        let count = NonZeroU32::new(config.frame_count)
            .ok_or_else(|| invalid("frame_count is 0".into()))?;
        let xcfg = XskUmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(fill)
            .comp_queue_size(comp)
            .frame_headroom(config.frame_headroom)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let frame_capacity = xcfg.mtu() as usize;
        let (umem, pristine) = Umem::new(xcfg, count, false).map_err(|e| {
            let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
            io::Error::other(format!(
                "creating a UMEM of {} x {} bytes: {e}{cause} (needs CAP_NET_RAW, and locked memory: \
                 RLIMIT_MEMLOCK or CAP_IPC_LOCK)",
                config.frame_count, config.frame_size
            ))
        })?;
        let n = config.frame_count as usize;
        Ok(FramePool {
            umem,
            pristine,
            // Popped from the end: hand out low frames first, which keeps a small working set.
            free: (0..n as u32).rev().collect(),
            loc: vec![FrameLocation::Free; n],
            counts: [0; 4],
            violations: 0,
            frame_shift: config.frame_size.trailing_zeros(),
            frame_capacity,
            config: *config,
        })
    }

    pub fn config(&self) -> &UmemConfig {
        &self.config
    }

    /// Bytes of frame data a frame can hold.
    pub fn frame_capacity(&self) -> usize {
        self.frame_capacity
    }

    pub fn frame_count(&self) -> u32 {
        self.config.frame_count
    }

    pub(crate) fn umem(&self) -> &Umem {
        &self.umem
    }

    /// The frame an address (data address as the kernel reports it) belongs to.
    #[inline]
    pub(crate) fn index_of(&self, addr: usize) -> Option<u32> {
        let i = addr >> self.frame_shift;
        (i < self.loc.len()).then_some(i as u32)
    }

    /// The pristine descriptor of frame `i`: full data capacity, length 0.
    pub(crate) fn desc(&self, i: u32) -> FrameDesc {
        self.pristine[i as usize]
    }

    pub fn free_len(&self) -> usize {
        self.free.len()
    }

    #[inline]
    pub fn count(&self, at: FrameLocation) -> u32 {
        match at {
            FrameLocation::Free => self.free.len() as u32,
            _ => self.counts[at as usize],
        }
    }

    /// Takes a frame off the free list into `to` (not `Free`).
    #[inline]
    pub(crate) fn take_free(&mut self, to: FrameLocation) -> Option<u32> {
        let i = self.free.pop()?;
        let moved = self.transition(i, FrameLocation::Free, to);
        debug_assert!(moved, "free list and location array disagree");
        Some(i)
    }

    /// Moves frame `i` from `from` to `to` (not to `Free`: use [`FramePool::release`]). Returns
    /// false and records a violation if it was not in `from`.
    #[inline]
    pub(crate) fn transition(&mut self, i: u32, from: FrameLocation, to: FrameLocation) -> bool {
        let slot = &mut self.loc[i as usize];
        if *slot != from {
            self.violations += 1;
            return false;
        }
        *slot = to;
        if from != FrameLocation::Free {
            self.counts[from as usize] -= 1;
        }
        if to != FrameLocation::Free {
            self.counts[to as usize] += 1;
        }
        true
    }

    /// Returns frame `i` from `from` to the free list.
    #[inline]
    pub(crate) fn release(&mut self, i: u32, from: FrameLocation) -> bool {
        if self.transition(i, from, FrameLocation::Free) {
            self.free.push(i);
            true
        } else {
            false
        }
    }

    /// The frame at `addr` (a data address from the rx ring) came back: if it was lent there
    /// (`Fill`), `read` gets it and then it goes back to the free list; if not, or if `addr` is
    /// outside the UMEM, a violation is recorded and `read` is not called. The same books as
    /// `Fill -> App`, `read`, `App -> Free`, with one bounds check and one location write:
    /// `read` cannot reach the pool, so nothing can see the frame's location meanwhile.
    #[inline]
    pub(crate) fn receive(&mut self, addr: usize, read: impl FnOnce(&Umem)) -> bool {
        let i = addr >> self.frame_shift;
        match self.loc.get_mut(i) {
            Some(slot) if *slot == FrameLocation::Fill => *slot = FrameLocation::Free,
            _ => {
                self.violations += 1;
                return false;
            }
        }
        self.counts[FrameLocation::Fill as usize] -= 1;
        read(&self.umem);
        self.free.push(i as u32);
        true
    }

    /// Lends the next free frame to `write` (`None` if none is free), with its pristine
    /// descriptor. If `write` returns true the frame goes to `Tx`, else back to the free list.
    /// The same books, violations included, as `take_free(App)`, `write`, then
    /// `transition(i, App, Tx)` or `release(i, App)`, with the location written once: `write`
    /// cannot reach the pool, so nothing can see the frame in `App`.
    #[inline]
    pub(crate) fn lend_free<R>(
        &mut self,
        write: impl FnOnce(&Umem, FrameDesc) -> (bool, R),
    ) -> Option<R> {
        let i = self.free.pop()?;
        let was_free = self.loc[i as usize] == FrameLocation::Free;
        debug_assert!(was_free, "free list and location array disagree");
        if !was_free {
            self.violations += 1;
        }
        let (sent, r) = write(&self.umem, self.pristine[i as usize]);
        if !was_free {
            // the frame was never moved to `App`, so neither move out of it can happen
            self.violations += 1;
        } else if sent {
            self.loc[i as usize] = FrameLocation::Tx;
            self.counts[FrameLocation::Tx as usize] += 1;
        } else {
            self.free.push(i);
        }
        Some(r)
    }

    /// A completed transmission's frame (`addr` from the completion ring) goes back to the free
    /// list if it was in `Tx` (a violation is recorded if not). An address outside the UMEM is
    /// ignored and returns false, as before.
    #[inline]
    pub(crate) fn complete(&mut self, addr: usize) -> bool {
        let i = addr >> self.frame_shift;
        let Some(slot) = self.loc.get_mut(i) else {
            return false;
        };
        if *slot != FrameLocation::Tx {
            self.violations += 1;
            return false;
        }
        *slot = FrameLocation::Free;
        self.counts[FrameLocation::Tx as usize] -= 1;
        self.free.push(i as u32);
        true
    }

    /// The kernel handed back an address outside the UMEM.
    pub(crate) fn record_violation(&mut self) {
        self.violations += 1;
    }

    /// The counters, without verification.
    pub fn accounting(&self) -> FrameAccounting {
        FrameAccounting {
            total: self.config.frame_count,
            free: self.free.len() as u32,
            fill: self.counts[1],
            app: self.counts[2],
            tx: self.counts[3],
            violations: self.violations,
        }
    }

    /// Proves that every frame is in exactly one place: recounts the per-frame location array,
    /// compares it with the counters and the free list, and checks that the sum is the frame
    /// count and that no violation was ever recorded.
    pub fn check_accounting(&self) -> Result<FrameAccounting, AccountingError> {
        let counters = self.accounting();
        let mut recount = FrameAccounting {
            total: self.config.frame_count,
            violations: self.violations,
            ..Default::default()
        };
        for l in &self.loc {
            match l {
                FrameLocation::Free => recount.free += 1,
                FrameLocation::Fill => recount.fill += 1,
                FrameLocation::App => recount.app += 1,
                FrameLocation::Tx => recount.tx += 1,
            }
        }
        let err = |reason| AccountingError {
            counters,
            recount,
            free_list_len: self.free.len(),
            reason,
        };
        if recount != counters {
            return Err(err("counters differ from the per-frame locations"));
        }
        if counters.sum() != counters.total {
            return Err(err("locations do not add up to the frame count"));
        }
        if self.free.len() != counters.free as usize
            || self
                .free
                .iter()
                .any(|&i| self.loc[i as usize] != FrameLocation::Free)
        {
            return Err(err("free list differs from the frames located Free"));
        }
        if counters.violations != 0 {
            return Err(err("a frame was returned from a place it was not in"));
        }
        Ok(counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> FramePool {
        FramePool::new(&UmemConfig {
            frame_count: 16,
            fill_ring: 8,
            comp_ring: 8,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn starts_all_free_and_balanced() {
        let p = small();
        let a = p.check_accounting().unwrap();
        assert_eq!((a.total, a.free, a.fill, a.app, a.tx), (16, 16, 0, 0, 0));
        assert_eq!(p.frame_capacity(), 2048 - 256);
    }

    #[test]
    fn transitions_keep_the_books_and_refuse_double_returns() {
        let mut p = small();
        let a = p.take_free(FrameLocation::Fill).unwrap();
        let b = p.take_free(FrameLocation::App).unwrap();
        assert_ne!(a, b);
        assert!(p.transition(a, FrameLocation::Fill, FrameLocation::App));
        assert!(p.transition(b, FrameLocation::App, FrameLocation::Tx));
        let acc = p.check_accounting().unwrap();
        assert_eq!((acc.free, acc.fill, acc.app, acc.tx), (14, 0, 1, 1));
        assert!(p.release(a, FrameLocation::App));
        assert!(p.release(b, FrameLocation::Tx));
        p.check_accounting().unwrap();
        assert!(
            !p.release(b, FrameLocation::Tx),
            "double completion must be refused"
        );
        assert!(p.check_accounting().is_err());
    }

    #[test]
    fn the_one_pass_moves_keep_the_same_books() {
        let mut p = small();
        let a = p.take_free(FrameLocation::Fill).unwrap();
        // rx: only a lent frame is read, and it goes straight back to the free list
        let mut reads = 0;
        let addr = p.desc(a).addr();
        assert!(p.receive(addr, |_| reads += 1));
        assert!(
            !p.receive(addr, |_| reads += 1),
            "a frame not lent must not be read"
        );
        assert!(!p.receive(16 * 2048, |_| reads += 1), "outside the UMEM");
        assert_eq!(reads, 1);
        assert_eq!(p.accounting().violations, 2);
        let mut p = small();
        // tx: a written frame goes to Tx, an unused one back where it was
        let b = p.lend_free(|_, d| (true, p_index(d))).unwrap();
        let c = p.lend_free(|_, d| (false, p_index(d))).unwrap();
        assert_ne!(b, c);
        let acc = p.check_accounting().unwrap();
        assert_eq!((acc.free, acc.fill, acc.app, acc.tx), (15, 0, 0, 1));
        assert_eq!(
            p.lend_free(|_, d| (false, p_index(d))),
            Some(c),
            "unused goes back on top"
        );
        // completion: once only
        let addr = p.desc(b).addr();
        assert!(p.complete(addr));
        p.check_accounting().unwrap();
        assert!(!p.complete(16 * 2048), "outside the UMEM is ignored");
        p.check_accounting().unwrap();
        assert!(!p.complete(addr), "double completion must be refused");
        assert!(p.check_accounting().is_err());
        // all frames lent: none to hand out
        let mut p = small();
        for _ in 0..16 {
            p.lend_free(|_, _| (true, ())).unwrap();
        }
        assert!(p.lend_free(|_, _| (true, ())).is_none());
        assert_eq!(p.check_accounting().unwrap().tx, 16);
    }

    fn p_index(d: FrameDesc) -> u32 {
        (d.addr() / 2048) as u32
    }

    #[test]
    fn addresses_map_back_to_frames() {
        let p = small();
        for i in 0..16 {
            assert_eq!(p.index_of(p.desc(i).addr()), Some(i));
        }
        assert_eq!(p.index_of(16 * 2048), None);
    }

    #[test]
    fn larger_frames_give_larger_capacity() {
        let cfg = UmemConfig {
            frame_size: 4096,
            frame_count: 8,
            fill_ring: 4,
            comp_ring: 4,
            frame_headroom: 64,
        };
        let p = FramePool::new(&cfg).unwrap();
        assert_eq!(p.frame_capacity(), 4096 - 256 - 64);
        assert_eq!(p.index_of(p.desc(7).addr()), Some(7));
        p.check_accounting().unwrap();
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(FramePool::new(&UmemConfig {
            frame_size: 3000,
            ..Default::default()
        })
        .is_err());
        assert!(FramePool::new(&UmemConfig {
            frame_count: 0,
            ..Default::default()
        })
        .is_err());
    }
}
