//! Memory hints for the host's big arrays (slots, flow table): prefetches.
//!
//! A host with a million connections reads its slot array and flow table at random: every
//! segment's look-up and connection are cache (and TLB) misses. A prefetch starts those loads
//! early so that several overlap instead of following one another.

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
