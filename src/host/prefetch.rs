//! Memory hints for the host's big arrays (slots, flow table).
//!
//! A host with a million connections reads its slot array and flow table at random: every
//! segment's look-up and connection are cache (and TLB) misses. Loading a word of a line early,
//! for a whole batch of frames before any is handled, lets those misses overlap (an out-of-order
//! core does not wait for a load whose value nothing uses yet) instead of following one another.
//!
//! A plain load, not the `prefetch` instruction: the intrinsic is `unsafe` (for its
//! `target_feature`), and this crate keeps unsafe code to the memory it shares with the kernel.

/// Loads `v` (a field of the line to bring in) without using it.
#[inline]
pub(super) fn touch<T: Copy>(v: T) {
    std::hint::black_box(v);
}
