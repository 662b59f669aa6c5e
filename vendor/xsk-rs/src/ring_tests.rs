//! Tests of `ring`: the Rust ring operations side by side with libxdp's on fake rings.
use libxdp_sys::{
    xdp_desc, xsk_ring_cons__peek, xsk_ring_cons__release, xsk_ring_prod__reserve,
    xsk_ring_prod__submit,
};

use super::*;

const SIZE: u32 = 4;

/// Memory standing in for the pages the kernel maps for a ring.
///
/// Held as raw pointers rather than as boxes. The pointers handed
/// out below stay in use for as long as the ring holding this
/// does, and a box asserts exclusive access to what it points at
/// every time it is moved, which would invalidate every one of
/// them the moment this is moved into that ring.
struct RingMem {
    positions: *mut [u32; 2],
    entries: *mut [u64],
}

impl RingMem {
    fn new(size: u32) -> Self {
        // An rx or tx ring's entries are `xdp_desc`, wider than
        // the addresses a fill or comp ring holds, so the entry
        // area is sized for the wider of the two.
        let entry_u64s = size_of::<xdp_desc>().div_ceil(size_of::<u64>());

        Self {
            positions: Box::into_raw(Box::new([0; 2])),
            entries: Box::into_raw(vec![0; size as usize * entry_u64s].into_boxed_slice()),
        }
    }

    fn producer(&self) -> *mut u32 {
        self.positions.cast()
    }

    fn consumer(&self) -> *mut u32 {
        // The consumer position sits alongside the producer, so
        // this stays within the allocation the pointer came from.
        unsafe { self.positions.cast::<u32>().add(1) }
    }

    fn entries(&self) -> *mut u64 {
        self.entries.cast()
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: both pointers came from `Box::into_raw` in
        // `new`, and nothing else frees them.
        unsafe {
            drop(Box::from_raw(self.positions));
            drop(Box::from_raw(self.entries));
        }
    }
}

/// A consumer ring backed by memory the test owns.
struct FakeCons {
    ring: xsk_ring_cons,
    _mem: RingMem,
}

impl FakeCons {
    fn new(size: u32) -> Self {
        let mem = RingMem::new(size);

        // libxdp sets an rx ring's cached positions from the
        // ring's own and leaves a comp ring's zeroed, which on a
        // fresh ring comes to the same thing.
        let ring = xsk_ring_cons {
            cached_prod: 0,
            cached_cons: 0,
            mask: size - 1,
            size,
            producer: mem.producer(),
            consumer: mem.consumer(),
            ring: mem.entries().cast(),
            flags: ptr::null_mut(),
        };

        Self { ring, _mem: mem }
    }

    fn as_ptr(&mut self) -> *mut xsk_ring_cons {
        &mut self.ring
    }

    /// Hand `nb` entries to the ring, as the kernel would.
    fn kernel_produce(&mut self, nb: u32) {
        unsafe { *self.ring.producer += nb };
    }

    fn cached_cons(&self) -> u32 {
        self.ring.cached_cons
    }

    fn consumer(&self) -> u32 {
        unsafe { *self.ring.consumer }
    }
}

/// A producer ring backed by memory the test owns.
///
/// See [`FakeCons`].
struct FakeProd {
    ring: xsk_ring_prod,
    _mem: RingMem,
}

impl FakeProd {
    fn new(size: u32) -> Self {
        let mem = RingMem::new(size);

        // libxdp keeps a producer ring's cached consumer
        // position a ring size ahead of the real one, which is
        // the addition `xsk_prod_nb_free` avoids by leaving it
        // there.
        let ring = xsk_ring_prod {
            cached_prod: 0,
            cached_cons: size,
            mask: size - 1,
            size,
            producer: mem.producer(),
            consumer: mem.consumer(),
            ring: mem.entries().cast(),
            flags: ptr::null_mut(),
        };

        Self { ring, _mem: mem }
    }

    fn as_ptr(&mut self) -> *mut xsk_ring_prod {
        &mut self.ring
    }

    /// Take `nb` entries off the ring, as the kernel would.
    fn kernel_consume(&mut self, nb: u32) {
        unsafe { *self.ring.consumer += nb };
    }

    fn cached_prod(&self) -> u32 {
        self.ring.cached_prod
    }
}

/// Miri cannot run the tests below, which call into libxdp, so
/// this stands in for them where `RingMem` is concerned: it holds
/// the pointers a ring is built from the same way, and writes
/// through every one of them after the memory has been moved.
#[test]
fn ring_mem_pointers_all_stay_usable() {
    struct Ring {
        producer: *mut u32,
        consumer: *mut u32,
        entries: *mut u64,
        _mem: RingMem,
    }

    let mem = RingMem::new(SIZE);

    let ring = Ring {
        producer: mem.producer(),
        consumer: mem.consumer(),
        entries: mem.entries(),
        _mem: mem,
    };

    unsafe {
        for i in 0..SIZE {
            *ring.entries.add(i as usize) = i.into();
        }

        *ring.producer = SIZE;
        *ring.consumer = 1;

        assert_eq!(*ring.producer, SIZE);
        assert_eq!(*ring.consumer, 1);
        assert_eq!(*ring.entries.add(1), 1);
    }
}

// These call into libxdp, which Miri cannot execute.

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_is_zero_on_an_empty_ring() {
    let mut cons = FakeCons::new(SIZE);

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 0);
    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 0);
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_sees_late_arrivals() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(1);

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 1);

    cons.kernel_produce(2);

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 3);
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_is_idempotent() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(2);

    for _ in 0..3 {
        assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 2);
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_restores_the_ring_positions() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(2);

    let cached_cons = cons.cached_cons();
    let consumer = cons.consumer();

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 2);

    assert_eq!(cons.cached_cons(), cached_cons);
    assert_eq!(cons.consumer(), consumer);
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_after_a_partial_consume() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(3);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_cons__peek(cons.as_ptr(), 1, &mut idx) },
        1
    );

    unsafe { xsk_ring_cons__release(cons.as_ptr(), 1) };

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 2);
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_reports_a_full_ring() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(SIZE);

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, SIZE);
}

#[test]
#[cfg_attr(miri, ignore)]
fn cons_nb_avail_exact_leaves_every_entry_for_a_later_peek() {
    let mut cons = FakeCons::new(SIZE);

    cons.kernel_produce(3);

    assert_eq!(unsafe { cons_nb_avail_exact(cons.as_ptr()) }, 3);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_cons__peek(cons.as_ptr(), 3, &mut idx) },
        3
    );
    assert_eq!(idx, 0);
}

#[test]
#[cfg_attr(miri, ignore)]
fn prod_nb_free_exact_is_the_ring_size_on_an_empty_ring() {
    let mut prod = FakeProd::new(SIZE);

    assert_eq!(unsafe { prod_nb_free_exact(prod.as_ptr()) }, SIZE);
}

#[test]
#[cfg_attr(miri, ignore)]
fn prod_nb_free_exact_is_zero_on_a_full_ring() {
    let mut prod = FakeProd::new(SIZE);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_prod__reserve(prod.as_ptr(), SIZE, &mut idx) },
        SIZE
    );

    unsafe { xsk_ring_prod__submit(prod.as_ptr(), SIZE) };

    assert_eq!(unsafe { prod_nb_free_exact(prod.as_ptr()) }, 0);
}

#[test]
#[cfg_attr(miri, ignore)]
fn prod_nb_free_exact_tracks_reservations() {
    let mut prod = FakeProd::new(SIZE);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_prod__reserve(prod.as_ptr(), 2, &mut idx) },
        2
    );

    assert_eq!(unsafe { prod_nb_free_exact(prod.as_ptr()) }, 2);
}

#[test]
#[cfg_attr(miri, ignore)]
fn prod_nb_free_exact_sees_entries_taken_by_the_kernel() {
    let mut prod = FakeProd::new(SIZE);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_prod__reserve(prod.as_ptr(), 2, &mut idx) },
        2
    );

    unsafe { xsk_ring_prod__submit(prod.as_ptr(), 2) };

    prod.kernel_consume(2);

    assert_eq!(unsafe { prod_nb_free_exact(prod.as_ptr()) }, SIZE);
}

#[test]
#[cfg_attr(miri, ignore)]
fn prod_nb_free_exact_leaves_the_cached_producer_position_alone() {
    let mut prod = FakeProd::new(SIZE);

    let mut idx = 0;

    assert_eq!(
        unsafe { xsk_ring_prod__reserve(prod.as_ptr(), 2, &mut idx) },
        2
    );

    unsafe { xsk_ring_prod__submit(prod.as_ptr(), 2) };

    let cached_prod = prod.cached_prod();

    assert_eq!(unsafe { prod_nb_free_exact(prod.as_ptr()) }, 2);
    assert_eq!(prod.cached_prod(), cached_prod);

    assert_eq!(
        unsafe { xsk_ring_prod__reserve(prod.as_ptr(), 2, &mut idx) },
        2
    );
}

// The Rust ring operations against libxdp's, step by step on two
// identical rings: same results, same positions.

fn prod_state(p: &FakeProd) -> (u32, u32, u32, u32) {
    unsafe {
        (
            p.ring.cached_prod,
            p.ring.cached_cons,
            *p.ring.producer,
            *p.ring.consumer,
        )
    }
}

fn cons_state(c: &FakeCons) -> (u32, u32, u32, u32) {
    unsafe {
        (
            c.ring.cached_prod,
            c.ring.cached_cons,
            *c.ring.producer,
            *c.ring.consumer,
        )
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn rust_producer_operations_match_libxdp() {
    let (mut a, mut b) = (FakeProd::new(SIZE), FakeProd::new(SIZE));

    for (nb, kernel_takes) in [(3, 0), (2, 2), (1, 0), (3, 3), (4, 1), (2, 4)] {
        let (mut ia, mut ib) = (0, 0);

        let ra = unsafe { xsk_ring_prod__reserve(a.as_ptr(), nb, &mut ia) };
        let rb = unsafe { prod_reserve(b.as_ptr(), nb, &mut ib) };
        assert_eq!((ra, ia), (rb, ib));

        unsafe {
            xsk_ring_prod__submit(a.as_ptr(), ra);
            prod_submit(b.as_ptr(), rb);
        }
        assert_eq!(prod_state(&a), prod_state(&b));

        // the kernel takes at most what was submitted
        let (_, _, producer, consumer) = prod_state(&a);
        let kernel_takes = kernel_takes.min(producer.wrapping_sub(consumer));
        a.kernel_consume(kernel_takes);
        b.kernel_consume(kernel_takes);

        for want in [0, 1, SIZE] {
            assert_eq!(
                unsafe { libxdp_sys::xsk_prod_nb_free(a.as_ptr(), want) },
                unsafe { prod_nb_free(b.as_ptr(), want) }
            );
            assert_eq!(prod_state(&a), prod_state(&b));
        }
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn rust_consumer_operations_match_libxdp() {
    let (mut a, mut b) = (FakeCons::new(SIZE), FakeCons::new(SIZE));

    for (kernel_puts, nb) in [(0, 1), (3, 2), (0, 4), (2, 1), (4, 4), (1, 3)] {
        a.kernel_produce(kernel_puts);
        b.kernel_produce(kernel_puts);

        assert_eq!(
            unsafe { libxdp_sys::xsk_cons_nb_avail(a.as_ptr(), SIZE) },
            unsafe { cons_nb_avail(b.as_ptr(), SIZE) }
        );

        let (mut ia, mut ib) = (0, 0);

        let ra = unsafe { xsk_ring_cons__peek(a.as_ptr(), nb, &mut ia) };
        let rb = unsafe { cons_peek(b.as_ptr(), nb, &mut ib) };
        assert_eq!((ra, ia), (rb, ib));

        unsafe {
            xsk_ring_cons__release(a.as_ptr(), ra);
            cons_release(b.as_ptr(), rb);
        }
        assert_eq!(cons_state(&a), cons_state(&b));
    }
}

#[test]
#[cfg_attr(miri, ignore)]
fn rust_entry_accessors_match_libxdp() {
    let mut p = FakeProd::new(SIZE);
    let mut c = FakeCons::new(SIZE);

    for idx in [0, 1, SIZE - 1, SIZE, 2 * SIZE + 1, u32::MAX] {
        unsafe {
            assert_eq!(
                libxdp_sys::xsk_ring_prod__fill_addr(p.as_ptr(), idx),
                fill_addr(p.as_ptr(), idx)
            );
            assert_eq!(
                libxdp_sys::xsk_ring_prod__tx_desc(p.as_ptr(), idx),
                tx_desc(p.as_ptr(), idx)
            );
            assert_eq!(
                libxdp_sys::xsk_ring_cons__comp_addr(c.as_ptr(), idx),
                comp_addr(c.as_ptr(), idx)
            );
            assert_eq!(
                libxdp_sys::xsk_ring_cons__rx_desc(c.as_ptr(), idx),
                rx_desc(c.as_ptr(), idx)
            );
        }
    }
}
