//! A global allocator wrapper that counts the heap bytes each thread holds, so a server thread
//! can report its bytes per idle connection. Install it in a binary with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`; without it
//! [`thread_live_bytes`] stays 0.
//!
//! Per-thread counters (a const-initialised thread-local `Cell`) cost no atomic operation and no
//! sharing. Memory freed by another thread than the one that allocated it moves the count of the
//! freeing thread; the engine's connection state is allocated and freed on its own core.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
}

pub struct CountingAlloc;

#[inline]
fn add(n: i64) {
    // `try_with`: during thread teardown the slot may be gone; the count no longer matters then.
    let _ = LIVE.try_with(|c| c.set(c.get() + n));
}

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged;
// the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            add(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        add(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            add(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Heap bytes allocated and not yet freed by the calling thread (0 unless [`CountingAlloc`] is
/// the global allocator).
pub fn thread_live_bytes() -> i64 {
    LIVE.try_with(Cell::get).unwrap_or(0)
}
