//! Wrappers around the producer and consumer rings used by libxdp.
//!
//! libxdp does not copy the rings it is passed when creating a UMEM
//! or a socket, it retains the pointers - `xsk->rx`, `xsk->tx`,
//! `ctx->fill`, `ctx->comp` and `umem->fill_save` / `umem->comp_save`
//! - and dereferences them again during teardown to work out which
//! memory to unmap. A ring must therefore neither move nor be freed
//! until libxdp is done with it, which is why the rings here are heap
//! allocated and reference counted.
//!
//! Since the type that owns the socket or UMEM needs to keep the
//! rings alive but has no business reading them, sharing is done via
//! the access-free handles returned by `handle`.

use std::{
    cell::UnsafeCell,
    fmt, ptr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use libxdp_sys::{xdp_desc, xsk_ring_cons, xsk_ring_prod};

// The ring operations of libxdp's xsk.h, in Rust. They are `static
// inline` in C, so libxdp-sys can only reach them through out-of-line
// wrappers: a call each, with its own prologue, and nothing inlined
// into the caller's loop. These read and write the same fields with
// the same orderings (acquire on the other side's position, release on
// our own), so they mix freely with the libxdp versions.
//
// Every function takes a pointer to an initialised ring (mapped by
// libxdp, or the test fakes below) that nothing else in user space is
// using for the duration of the call.

/// `xsk_prod_nb_free`: free slots, re-reading the consumer position
/// only when the cached one shows fewer than `nb`.
#[inline(always)]
pub(crate) unsafe fn prod_nb_free(r: *mut xsk_ring_prod, nb: u32) -> u32 {
    // SAFETY: the caller passes an initialised ring, used by no one
    // else in user space; `consumer` points at the position the kernel
    // updates, a u32 in the ring's mapping, read atomically.
    unsafe {
        let free = (*r).cached_cons.wrapping_sub((*r).cached_prod);
        if free >= nb {
            return free;
        }
        let cons = AtomicU32::from_ptr((*r).consumer).load(Ordering::Acquire);
        // kept a ring size ahead, as libxdp does, so the test above
        // needs no addition
        (*r).cached_cons = cons.wrapping_add((*r).size);
        (*r).cached_cons.wrapping_sub((*r).cached_prod)
    }
}

/// `xsk_cons_nb_avail`: entries ready, at most `nb`, re-reading the
/// producer position only when the cached one shows none.
#[inline(always)]
pub(crate) unsafe fn cons_nb_avail(r: *mut xsk_ring_cons, nb: u32) -> u32 {
    // SAFETY: as in `prod_nb_free`, for the producer position.
    unsafe {
        let mut entries = (*r).cached_prod.wrapping_sub((*r).cached_cons);
        if entries == 0 {
            (*r).cached_prod = AtomicU32::from_ptr((*r).producer).load(Ordering::Acquire);
            entries = (*r).cached_prod.wrapping_sub((*r).cached_cons);
        }
        entries.min(nb)
    }
}

/// `xsk_ring_prod__reserve`: all `nb` slots from `*idx` on, or none.
#[inline(always)]
pub(crate) unsafe fn prod_reserve(r: *mut xsk_ring_prod, nb: u32, idx: &mut u32) -> u32 {
    // SAFETY: as in `prod_nb_free`.
    unsafe {
        if prod_nb_free(r, nb) < nb {
            return 0;
        }
        *idx = (*r).cached_prod;
        (*r).cached_prod = (*r).cached_prod.wrapping_add(nb);
        nb
    }
}

/// `xsk_ring_prod__submit`: hands the next `nb` written slots to the
/// kernel (release: the entries are written before it sees them).
#[inline(always)]
pub(crate) unsafe fn prod_submit(r: *mut xsk_ring_prod, nb: u32) {
    // SAFETY: as in `prod_nb_free`; only user space writes the
    // producer position, so the relaxed load reads our own last store.
    unsafe {
        let p = AtomicU32::from_ptr((*r).producer);
        p.store(p.load(Ordering::Relaxed).wrapping_add(nb), Ordering::Release);
    }
}

/// `xsk_ring_cons__peek`: up to `nb` entries from `*idx` on.
#[inline(always)]
pub(crate) unsafe fn cons_peek(r: *mut xsk_ring_cons, nb: u32, idx: &mut u32) -> u32 {
    // SAFETY: as in `cons_nb_avail`.
    unsafe {
        let entries = cons_nb_avail(r, nb);
        if entries > 0 {
            *idx = (*r).cached_cons;
            (*r).cached_cons = (*r).cached_cons.wrapping_add(entries);
        }
        entries
    }
}

/// `xsk_ring_cons__release`: gives the next `nb` read entries back to
/// the kernel (release: they are read before it may overwrite them).
#[inline(always)]
pub(crate) unsafe fn cons_release(r: *mut xsk_ring_cons, nb: u32) {
    // SAFETY: as in `prod_submit`, for the consumer position.
    unsafe {
        let c = AtomicU32::from_ptr((*r).consumer);
        c.store(c.load(Ordering::Relaxed).wrapping_add(nb), Ordering::Release);
    }
}

/// `xsk_ring_prod__needs_wakeup`.
#[inline(always)]
pub(crate) unsafe fn prod_needs_wakeup(r: *const xsk_ring_prod) -> bool {
    // SAFETY: as in `prod_nb_free`; `flags` is a u32 of the ring's
    // mapping that the kernel updates.
    unsafe {
        AtomicU32::from_ptr((*r).flags).load(Ordering::Relaxed) & libxdp_sys::XDP_RING_NEED_WAKEUP
            != 0
    }
}

/// `xsk_ring_prod__fill_addr`: the fill ring's slot `idx`.
#[inline(always)]
pub(crate) unsafe fn fill_addr(r: *mut xsk_ring_prod, idx: u32) -> *mut u64 {
    // SAFETY: the entries of a fill ring are u64 and `mask` keeps the
    // index inside them.
    unsafe { (*r).ring.cast::<u64>().add((idx & (*r).mask) as usize) }
}

/// `xsk_ring_cons__comp_addr`: the completion ring's entry `idx`.
#[inline(always)]
pub(crate) unsafe fn comp_addr(r: *mut xsk_ring_cons, idx: u32) -> *const u64 {
    // SAFETY: as in `fill_addr`.
    unsafe { (*r).ring.cast::<u64>().add((idx & (*r).mask) as usize) }
}

/// `xsk_ring_prod__tx_desc`: the tx ring's slot `idx`.
#[inline(always)]
pub(crate) unsafe fn tx_desc(r: *mut xsk_ring_prod, idx: u32) -> *mut xdp_desc {
    // SAFETY: the entries of a tx ring are `xdp_desc` and `mask` keeps
    // the index inside them.
    unsafe { (*r).ring.cast::<xdp_desc>().add((idx & (*r).mask) as usize) }
}

/// `xsk_ring_cons__rx_desc`: the rx ring's entry `idx`.
#[inline(always)]
pub(crate) unsafe fn rx_desc(r: *mut xsk_ring_cons, idx: u32) -> *const xdp_desc {
    // SAFETY: as in `tx_desc`.
    unsafe { (*r).ring.cast::<xdp_desc>().add((idx & (*r).mask) as usize) }
}

/// The number of free slots on a producer ring.
///
/// # Safety
///
/// `ring` must point at an initialised ring, and the caller must
/// have exclusive access to it, as this writes the ring's cached
/// consumer position.
#[inline]
pub(crate) unsafe fn prod_nb_free_exact(ring: *mut xsk_ring_prod) -> u32 {
    // libxdp answers from its cached consumer position whenever that
    // cache already holds as many slots as were asked for, and only
    // reloads the real position otherwise. Asking for the ring size
    // therefore ensures the value returned is always up to date.
    let size = unsafe { (*ring).size };

    unsafe { prod_nb_free(ring, size) }
}

/// The number of entries ready to be consumed on a consumer ring.
///
/// # Safety
///
/// See [`prod_nb_free_exact`]. This writes the ring's cached
/// producer and consumer positions.
#[inline]
pub(crate) unsafe fn cons_nb_avail_exact(ring: *mut xsk_ring_cons) -> u32 {
    let size = unsafe { (*ring).size };

    let mut idx = 0;

    // The first peek bumps cached_cons by the number of frames the
    // cache knew about. The second peek results in a refresh of that
    // cache, and gives us the number of consumable frames the cache
    // did not know about. Together, we have the number of consumable
    // frames at this point in time.
    let n = unsafe { cons_peek(ring, size, &mut idx) + cons_peek(ring, size, &mut idx) };

    // One cancel, after both peeks. Cancelling between them would
    // restore the cache the first peek emptied, so the second would
    // count the same entries again.
    //
    // The cancel does not undo the reload. A following consume
    // sees the current producer position without paying for a
    // reload of its own. Nothing here writes ring memory or the
    // consumer position, and the cancel gives back exactly what
    // the peeks took, so a following consume still hands out
    // every entry from the first.
    // SAFETY: `xsk_ring_cons__cancel`, on the ring the caller vouched for.
    unsafe { (*ring).cached_cons = (*ring).cached_cons.wrapping_sub(n) };

    n
}

/// A consumer ring.
///
/// The ring is reachable only as a raw pointer, through [`as_ptr`]:
/// libxdp's ring functions take pointers and nothing else reads or
/// writes one, so no reference to a ring is ever created and the
/// pointer libxdp holds for the life of the socket or UMEM is never
/// invalidated. The [`UnsafeCell`] is what makes writing through a
/// pointer derived from a shared borrow sound.
///
/// What the wrapper provides is exclusion. It is deliberately not
/// [`Clone`] and the handles returned by [`handle`] grant no access,
/// so it is the only way to reach the ring, and since [`as_ptr`]
/// takes `&self` whatever holds a wrapper has to go on taking `&mut
/// self` for calls that write to the ring.
///
/// [`as_ptr`]: Self::as_ptr
/// [`handle`]: Self::handle
/// [`UnsafeCell`]: std::cell::UnsafeCell
pub(crate) struct XskRingCons(Arc<UnsafeCell<xsk_ring_cons>>);

impl XskRingCons {
    /// A handle that keeps this ring's memory alive but grants no
    /// access to it.
    ///
    /// Should be held by whatever owns the socket or UMEM this ring
    /// was passed to, to guarantee the ring outlives libxdp's use of
    /// it.
    pub(crate) fn handle(&self) -> XskRingConsHandle {
        XskRingConsHandle(Arc::clone(&self.0))
    }

    /// A pointer to the ring, for handing to libxdp.
    ///
    /// Writeable, so see this type's docs on which borrow to take.
    pub(crate) fn as_ptr(&self) -> *mut xsk_ring_cons {
        self.0.get()
    }

    pub(crate) fn is_ring_null(&self) -> bool {
        // SAFETY: the ring is initialised and libxdp is not touching
        // it. Read through the pointer rather than through a
        // reference, so that no borrow of the ring is created.
        unsafe { (*self.0.get()).ring.is_null() }
    }
}

impl Default for XskRingCons {
    // `Arc` rather than `Rc`, as what is shared across threads here
    // is the refcount, not the ring: a queue holding the wrapper can
    // be sent to another thread while the handle keeping the same
    // allocation alive stays behind on this one, so the count has to
    // be atomic.
    #[allow(clippy::arc_with_non_send_sync)]
    fn default() -> Self {
        Self(Arc::new(UnsafeCell::new(xsk_ring_cons {
            cached_prod: 0,
            cached_cons: 0,
            mask: 0,
            size: 0,
            producer: ptr::null_mut(),
            consumer: ptr::null_mut(),
            ring: ptr::null_mut(),
            flags: ptr::null_mut(),
        })))
    }
}

impl fmt::Debug for XskRingCons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: see `is_ring_null`. Copied out so that what gets
        // borrowed for formatting is the copy and not the ring.
        let ring = unsafe { *self.0.get() };

        f.debug_tuple("XskRingCons").field(&ring).finish()
    }
}

// SAFETY: the ring is only reached through this wrapper, which cannot
// be duplicated, so it is never reached from two threads at once.
// libxdp reaches it on setup and teardown, and a teardown can happen
// on a different thread from the last use, but never concurrently
// with one: a teardown runs on the thread holding the last handle to
// whatever libxdp stored the ring on, and by then the wrapper is
// either gone or reachable only from that same thread.
//
// The ring also outlives every such teardown, since everything libxdp
// stored it on holds a handle, or the wrapper itself, for its life.
//
// Ordering between two such teardowns runs through libxdp's own
// unsynchronised refcounts, which is why a socket is deleted under
// the same UMEM lock its creation takes.
unsafe impl Send for XskRingCons {}

/// Keeps an [`XskRingCons`]'s memory alive without granting any
/// access to it.
pub(crate) struct XskRingConsHandle(Arc<UnsafeCell<xsk_ring_cons>>);

impl fmt::Debug for XskRingConsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The address, not the contents. A handle is access-free, and
        // reading the ring through one would be reaching around the
        // wrapper that serialises access to it.
        f.debug_tuple("XskRingConsHandle")
            .field(&self.0.get())
            .finish()
    }
}

// SAFETY: this handle grants no access to the ring it keeps alive.
unsafe impl Send for XskRingConsHandle {}

/// A producer ring.
///
/// See [`XskRingCons`].
pub(crate) struct XskRingProd(Arc<UnsafeCell<xsk_ring_prod>>);

impl XskRingProd {
    /// A handle that keeps this ring's memory alive but grants no
    /// access to it.
    ///
    /// See [`XskRingCons::handle`].
    pub(crate) fn handle(&self) -> XskRingProdHandle {
        XskRingProdHandle(Arc::clone(&self.0))
    }

    /// A pointer to the ring, for handing to libxdp.
    ///
    /// See [`XskRingCons::as_ptr`].
    pub(crate) fn as_ptr(&self) -> *mut xsk_ring_prod {
        self.0.get()
    }

    pub(crate) fn is_ring_null(&self) -> bool {
        // SAFETY: see `XskRingCons::is_ring_null`.
        unsafe { (*self.0.get()).ring.is_null() }
    }
}

impl Default for XskRingProd {
    // See the impl for `XskRingCons`.
    #[allow(clippy::arc_with_non_send_sync)]
    fn default() -> Self {
        Self(Arc::new(UnsafeCell::new(xsk_ring_prod {
            cached_prod: 0,
            cached_cons: 0,
            mask: 0,
            size: 0,
            producer: ptr::null_mut(),
            consumer: ptr::null_mut(),
            ring: ptr::null_mut(),
            flags: ptr::null_mut(),
        })))
    }
}

impl fmt::Debug for XskRingProd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // See the impl for `XskRingCons`.
        let ring = unsafe { *self.0.get() };

        f.debug_tuple("XskRingProd").field(&ring).finish()
    }
}

// SAFETY: see the impl for `XskRingCons`.
unsafe impl Send for XskRingProd {}

/// Keeps an [`XskRingProd`]'s memory alive without granting any
/// access to it.
pub(crate) struct XskRingProdHandle(Arc<UnsafeCell<xsk_ring_prod>>);

impl fmt::Debug for XskRingProdHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // See the impl for `XskRingConsHandle`.
        f.debug_tuple("XskRingProdHandle")
            .field(&self.0.get())
            .finish()
    }
}

// SAFETY: this handle grants no access to the ring it keeps alive.
unsafe impl Send for XskRingProdHandle {}

#[cfg(test)]
#[path = "ring_tests.rs"]
mod tests;
