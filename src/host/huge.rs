//! Memory hints for the host's big arrays (slots, flow table): transparent huge pages, and
//! prefetches.
//!
//! A host with a million connections reads its slot array and flow table at random: with 4 KiB
//! pages nearly every segment's look-up also misses the TLB, and the page walk costs more
//! memory reads than the look-up itself. Where the kernel's THP mode is `madvise` (the default
//! of many distributions), memory is only backed by 2 MiB pages when asked for.

/// Below this an array gains nothing from huge pages.
const HUGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `v`'s allocation (its capacity) with
/// huge pages. Best effort: a kernel without THP, or with it off, refuses and nothing changes.
pub(super) fn advise<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < 2 * HUGE {
        return;
    }
    let start = v.as_ptr() as usize;
    let lo = start.next_multiple_of(HUGE);
    let hi = (start + bytes) / HUGE * HUGE;
    if hi <= lo {
        return;
    }
    // SAFETY: [lo, hi) lies inside `v`'s allocation, which lives across the call; MADV_HUGEPAGE
    // is advice on how to back it and changes no byte of it.
    let _ = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_HUGEPAGE) };
}

/// Starts loading the cache lines `x` overlaps, without waiting for them.
#[inline]
pub(super) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (x as *const T).cast::<i8>();
        let end = (p as usize % 64) + std::mem::size_of::<T>();
        let p = p.wrapping_sub(p as usize % 64);
        for off in (0..end).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults and changes no memory; the address
            // is inside `x` anyway. (Unsafe only for its `target_feature`, SSE, which every
            // x86_64 has.)
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
