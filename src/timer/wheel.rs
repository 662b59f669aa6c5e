//! A hierarchical timing wheel: six levels of 64 slots, all operations O(1), no `unsafe`.
//!
//! # Layout
//!
//! Time is counted in ticks since `start`; a deadline belongs to the first tick boundary at or
//! after it (`ceil`), so a timer never fires early. `elapsed` is the last tick processed. A timer
//! due at tick `t > elapsed` lives at the level of the highest 6-bit group in which `t` and
//! `elapsed` differ, in the slot given by `t`'s bits in that group: level 0 holds single ticks of
//! the current 64-tick block, level 1 the 64-tick spans of the current 4096-tick block, and so on
//! up to level 5, which covers `64^6` ticks (about 795 days at 1 ms). Timers beyond the current
//! top-level block wait in an overflow list and are all placed again when the block holding the
//! earliest of them is reached. Timers already due wait in a ready list.
//!
//! Invariant: at every level, every occupied slot lies after the slot `elapsed` is in. So the
//! lowest set bit of the lowest non-empty level's `occupied` bitmap is the next slot to process,
//! found without scanning, and every timer of a lower level is due before any of a higher one.
//!
//! Advancing to a level-`L` slot (`L > 0`) cascades it: its timers are placed again relative to
//! the new `elapsed` and land in lower levels or the ready list. A timer cascades at most once
//! per level between being armed and firing (overflow aside), so firing is amortised O(1).
//!
//! # Storage
//!
//! Entries live in a slab (`Vec<Entry>` with a free list). Every slot, the ready list and the
//! overflow list is a `Vec<u32>` of entry indices, and each entry records which list it is in and
//! where, so removal is a `swap_remove` plus fixing the moved entry's position. A [`TimerId`]
//! carries the entry's generation, bumped whenever the entry is freed, so a stale id (cancelled
//! or fired) is recognised and does nothing.
//!
//! Rescheduling moves the entry at once rather than lazily when its old slot comes up: it is
//! still O(1), and it keeps [`TimerWheel::next_expiry`] exact for timers in level 0.

use crate::time::{Duration, Instant};
use std::cell::Cell;

const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const LEVELS: usize = 6;
/// `log2` of the ticks the levels cover.
const RANGE_BITS: u32 = SLOT_BITS * LEVELS as u32;

/// List numbers: `level * SLOTS + slot` for wheel slots, then these two.
const READY: u16 = (LEVELS * SLOTS) as u16;
const OVERFLOW: u16 = READY + 1;
const LISTS: usize = OVERFLOW as usize + 1;
/// Marks an entry on the free list.
const VACANT: u16 = u16::MAX;
/// End of the free list.
const NIL: u32 = u32::MAX;

/// Names an armed timer. An id that was cancelled or has fired is stale and harmless to pass
/// back: ids stay unique until one slab entry has been reused 2^32 times.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

#[derive(Clone, Debug)]
struct Entry {
    deadline: Instant,
    token: u64,
    generation: u32,
    /// Position in list `list`; for a vacant entry, the next vacant index.
    pos: u32,
    list: u16,
}

/// Single-threaded hierarchical timer wheel: 6 levels of 64 slots of `tick` each, so timers up
/// to `64^6` ticks ahead sit in the levels and later ones in an overflow list.
///
/// Insert, cancel and reschedule are O(1); firing is amortised O(1). A timer fires at the first
/// tick boundary at or after its deadline: never early, and at most one tick late when polled at
/// every boundary. Use: [`insert`](Self::insert) returns a [`TimerId`] to
/// [`cancel`](Self::cancel) or [`reschedule`](Self::reschedule) with; sleep until
/// [`next_expiry`](Self::next_expiry); then call [`poll_expired`](Self::poll_expired) until it
/// returns `None`.
#[derive(Clone, Debug)]
pub struct TimerWheel {
    start: Instant,
    tick_ns: u64,
    /// Every timer due at or before this tick is in the ready list or has fired.
    elapsed: u64,
    occupied: [u64; LEVELS],
    lists: Box<[Vec<u32>]>,
    entries: Vec<Entry>,
    free: u32,
    len: usize,
    /// No overflow timer is due before this tick (a lower bound: cancels do not raise it).
    overflow_min: u64,
    /// The tick of `Instant::MAX`: later boundaries cannot be polled, so deadlines clamp to it.
    max_tick: u64,
    last_now: Instant,
    /// `next_expiry` until a timer is linked, unlinked or polled (asked every engine iteration).
    next_cache: Cell<Option<Option<Instant>>>,
}

impl TimerWheel {
    /// An empty wheel whose tick 0 is `start`. Panics if `tick` is zero.
    pub fn new(start: Instant, tick: Duration) -> Self {
        assert!(tick > Duration::ZERO, "TimerWheel tick must be positive");
        TimerWheel {
            start,
            tick_ns: tick.as_nanos(),
            elapsed: 0,
            occupied: [0; LEVELS],
            lists: (0..LISTS).map(|_| Vec::new()).collect(),
            entries: Vec::new(),
            free: NIL,
            len: 0,
            overflow_min: u64::MAX,
            max_tick: (u64::MAX - start.as_nanos()) / tick.as_nanos(),
            last_now: Instant::ZERO,
            next_cache: Cell::new(None),
        }
    }

    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_ns)
    }

    /// Arms a timer for `deadline`, O(1). It fires at the first tick boundary at or after the
    /// deadline; a deadline already passed fires on the next [`poll_expired`](Self::poll_expired).
    /// A deadline after the last tick boundary an [`Instant`] can hold (some 584 years after
    /// `start`) fires at that boundary, so a driver polling at `next_expiry` always makes progress.
    pub fn insert(&mut self, deadline: Instant, token: u64) -> TimerId {
        let index = match self.free {
            NIL => {
                let index = u32::try_from(self.entries.len())
                    .ok()
                    .filter(|&i| i != NIL)
                    .expect("TimerWheel is full");
                self.entries.push(Entry {
                    deadline,
                    token,
                    generation: 0,
                    pos: NIL,
                    list: VACANT,
                });
                index
            }
            index => {
                let entry = &mut self.entries[index as usize];
                self.free = entry.pos;
                entry.deadline = deadline;
                entry.token = token;
                index
            }
        };
        self.link(index);
        self.len += 1;
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Disarms a timer, O(1). Returns its token, or `None` if the id is stale (already fired or
    /// cancelled).
    pub fn cancel(&mut self, id: TimerId) -> Option<u64> {
        let index = self.armed(id)?;
        self.unlink(index);
        Some(self.release(index))
    }

    /// Moves an armed timer to a new deadline (earlier, later or past), O(1). Returns false and
    /// does nothing if the id is stale.
    pub fn reschedule(&mut self, id: TimerId, deadline: Instant) -> bool {
        let Some(index) = self.armed(id) else {
            return false;
        };
        let list = self.list_for(self.deadline_tick(deadline));
        let entry = &mut self.entries[index as usize];
        entry.deadline = deadline;
        // Staying in the same slot or the ready list needs no move; overflow tracks its minimum.
        if list != entry.list || list == OVERFLOW {
            self.unlink(index);
            self.link(index);
        }
        true
    }

    /// The deadline an armed timer was given, `None` for a stale id.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.armed(id)
            .map(|index| self.entries[index as usize].deadline)
    }

    /// When [`poll_expired`](Self::poll_expired) next has work, found from the bitmaps without
    /// scanning timers; `None` when no timer is armed.
    ///
    /// Never later than the earliest timer's tick boundary. It is exactly that boundary when the
    /// timer is due within the current 64-tick block (level 0). Otherwise it is the start of the
    /// higher-level slot holding the earliest timer, where polling cascades that slot and this
    /// bound tightens: an engine sleeping until it wakes at most six times more than needed for a
    /// far timer, and not at all for a near one. When a timer is already due (a deadline set in
    /// the past), it is at or before the last `now` polled: poll again at once.
    pub fn next_expiry(&self) -> Option<Instant> {
        let next =
            self.next_cache
                .get()
                .unwrap_or_else(|| match self.lists[READY as usize].len() {
                    0 => self
                        .next_boundary()
                        .map(|(_, tick)| self.tick_instant(tick)),
                    _ => Some(self.tick_instant(self.elapsed)),
                });
        self.next_cache.set(Some(next));
        next
    }

    /// Pops one timer whose tick boundary is at or before `now`, cascading timers down as time
    /// advances. Call repeatedly until `None`. Timers fire in tick order (a deadline set in the
    /// past fires on the next poll), in no particular order within a tick. `now` must not go
    /// backwards.
    pub fn poll_expired(&mut self, now: Instant) -> Option<(TimerId, u64)> {
        debug_assert!(now >= self.last_now, "TimerWheel: time went backwards");
        self.last_now = now;
        self.next_cache.set(None);
        let target = now.saturating_since(self.start).as_nanos() / self.tick_ns;
        loop {
            if let Some(index) = self.lists[READY as usize].pop() {
                let id = TimerId {
                    index,
                    generation: self.entries[index as usize].generation,
                };
                return Some((id, self.release(index)));
            }
            if self.elapsed >= target {
                return None;
            }
            match self.next_boundary() {
                Some((list, tick)) if tick <= target => {
                    self.elapsed = tick;
                    self.cascade(list);
                }
                _ => {
                    self.elapsed = target;
                    return None;
                }
            }
        }
    }

    /// Armed timers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn armed(&self, id: TimerId) -> Option<u32> {
        let entry = self.entries.get(id.index as usize)?;
        (entry.generation == id.generation && entry.list != VACANT).then_some(id.index)
    }

    /// The first tick boundary at or after `deadline`, or the last one that can be polled.
    fn deadline_tick(&self, deadline: Instant) -> u64 {
        let ns = deadline.saturating_since(self.start).as_nanos();
        ns.div_ceil(self.tick_ns).min(self.max_tick)
    }

    fn tick_instant(&self, tick: u64) -> Instant {
        self.start + Duration::from_nanos(tick.saturating_mul(self.tick_ns))
    }

    /// The list a timer due at `tick` belongs in, given the current `elapsed`.
    fn list_for(&self, tick: u64) -> u16 {
        if tick <= self.elapsed {
            return READY;
        }
        let highest_differing_bit = 63 - (tick ^ self.elapsed).leading_zeros();
        let level = highest_differing_bit / SLOT_BITS;
        if level as usize >= LEVELS {
            return OVERFLOW;
        }
        let slot = (tick >> (level * SLOT_BITS)) as usize & (SLOTS - 1);
        (level as usize * SLOTS + slot) as u16
    }

    /// The next list to process and the tick at which its span starts.
    fn next_boundary(&self) -> Option<(u16, u64)> {
        for (level, &occupied) in self.occupied.iter().enumerate() {
            if occupied != 0 {
                let slot = u64::from(occupied.trailing_zeros());
                let shift = level as u32 * SLOT_BITS;
                debug_assert!(slot > (self.elapsed >> shift) & (SLOTS as u64 - 1));
                let block = self.elapsed >> (shift + SLOT_BITS) << (shift + SLOT_BITS);
                return Some(((level * SLOTS) as u16 + slot as u16, block | slot << shift));
            }
        }
        if self.lists[OVERFLOW as usize].is_empty() {
            return None;
        }
        // Overflow timers are due in later top-level blocks; the one holding the earliest is
        // where they can be placed in the levels again.
        debug_assert!(self.overflow_min >> RANGE_BITS > self.elapsed >> RANGE_BITS);
        Some((OVERFLOW, self.overflow_min >> RANGE_BITS << RANGE_BITS))
    }

    /// Places every timer of `list` again relative to `elapsed`, which has just reached the start
    /// of its span: they go to lower levels or the ready list (or stay in overflow if still
    /// beyond the top level's block).
    fn cascade(&mut self, list: u16) {
        if (list as usize) < SLOTS {
            // A level-0 slot is all due now, and the ready list is empty whenever time advances:
            // swap the lists instead of placing each timer again.
            debug_assert!(self.lists[READY as usize].is_empty());
            self.lists.swap(list as usize, READY as usize);
            self.occupied[0] &= !(1 << list);
            for &index in self.lists[READY as usize].iter() {
                self.entries[index as usize].list = READY;
            }
            return;
        }
        let mut indices = std::mem::take(&mut self.lists[list as usize]);
        if list < READY {
            self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
        } else {
            self.overflow_min = u64::MAX;
        }
        for &index in &indices {
            self.link(index);
        }
        indices.clear();
        // Keep the allocation for the slot's next round.
        if self.lists[list as usize].is_empty() {
            self.lists[list as usize] = indices;
        }
    }

    /// Puts an entry that is in no list where its deadline belongs.
    fn link(&mut self, index: u32) {
        self.next_cache.set(None);
        let tick = self.deadline_tick(self.entries[index as usize].deadline);
        let list = self.list_for(tick);
        if list == OVERFLOW {
            self.overflow_min = self.overflow_min.min(tick);
        }
        let l = &mut self.lists[list as usize];
        let entry = &mut self.entries[index as usize];
        entry.list = list;
        entry.pos = l.len() as u32;
        l.push(index);
        if list < READY {
            self.occupied[list as usize / SLOTS] |= 1 << (list as usize % SLOTS);
        }
    }

    fn unlink(&mut self, index: u32) {
        self.next_cache.set(None);
        let Entry { list, pos, .. } = self.entries[index as usize];
        let l = &mut self.lists[list as usize];
        l.swap_remove(pos as usize);
        if let Some(&moved) = l.get(pos as usize) {
            self.entries[moved as usize].pos = pos;
        }
        if l.is_empty() {
            if list < READY {
                self.occupied[list as usize / SLOTS] &= !(1 << (list as usize % SLOTS));
            } else if list == OVERFLOW {
                self.overflow_min = u64::MAX;
            }
        }
    }

    /// Frees an unlinked entry, invalidating its ids; returns its token.
    fn release(&mut self, index: u32) -> u64 {
        let entry = &mut self.entries[index as usize];
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = VACANT;
        entry.pos = self.free;
        self.free = index;
        self.len -= 1;
        entry.token
    }
}

#[cfg(test)]
#[path = "wheel_tests.rs"]
mod tests;
