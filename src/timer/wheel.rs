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
        if !self.lists[READY as usize].is_empty() {
            return Some(self.tick_instant(self.elapsed));
        }
        self.next_boundary()
            .map(|(_, tick)| self.tick_instant(tick))
    }

    /// Pops one timer whose tick boundary is at or before `now`, cascading timers down as time
    /// advances. Call repeatedly until `None`. Timers fire in tick order (a deadline set in the
    /// past fires on the next poll), in no particular order within a tick. `now` must not go
    /// backwards.
    pub fn poll_expired(&mut self, now: Instant) -> Option<(TimerId, u64)> {
        debug_assert!(now >= self.last_now, "TimerWheel: time went backwards");
        self.last_now = now;
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
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap};

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn drain(wheel: &mut TimerWheel, now: Instant) -> Vec<u64> {
        let mut fired: Vec<u64> = std::iter::from_fn(|| wheel.poll_expired(now))
            .map(|(_, t)| t)
            .collect();
        fired.sort_unstable();
        fired
    }

    #[test]
    fn fires_at_the_first_tick_boundary_at_or_after_the_deadline() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        wheel.insert(Instant::from_micros(1_500), 1);
        wheel.insert(ms(2), 2);
        wheel.insert(Instant::from_micros(2_001), 3);
        assert_eq!(wheel.next_expiry(), Some(ms(2)));
        assert_eq!(
            drain(&mut wheel, Instant::from_micros(1_999)),
            [] as [u64; 0]
        );
        assert_eq!(drain(&mut wheel, ms(2)), [1, 2]);
        assert_eq!(wheel.next_expiry(), Some(ms(3)));
        assert_eq!(
            drain(&mut wheel, Instant::from_micros(2_999)),
            [] as [u64; 0]
        );
        assert_eq!(drain(&mut wheel, ms(10)), [3]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn level_boundaries() {
        let boundaries = [
            1,
            2,
            63,
            64,
            65,
            127,
            128,
            4095,
            4096,
            4097,
            (1 << 18) - 1,
            1 << 18,
            (1 << 24) - 1,
            1 << 24,
            (1 << 30) - 1,
            1 << 30,
            (1 << 36) - 1,
            1 << 36,
            (1 << 36) + 1,
            1 << 42,
        ];
        // From tick 0 and from offsets that make the target cross block boundaries of each level.
        for offset in [0u64, 1, 37, 63, 4000, 4095, (1 << 24) - 5, (1 << 36) - 2] {
            for &ticks in &boundaries {
                let mut wheel = TimerWheel::new(ms(3), MS);
                let origin = ms(3 + offset);
                assert_eq!(drain(&mut wheel, origin), [] as [u64; 0]);
                let due = origin + MS.saturating_mul(ticks);
                let id = wheel.insert(due, ticks);
                assert_eq!(wheel.deadline(id), Some(due));
                // Follow next_expiry like an engine would: it never overshoots and converges.
                let mut wakeups = 0;
                let mut fired = Vec::new();
                while fired.is_empty() {
                    let next = wheel.next_expiry().unwrap();
                    assert!(
                        next <= due,
                        "offset {offset} ticks {ticks}: {next:?} > {due:?}"
                    );
                    if next < due {
                        assert_eq!(
                            drain(
                                &mut wheel,
                                next.checked_sub(Duration::from_nanos(1)).unwrap()
                            ),
                            [] as [u64; 0]
                        );
                    }
                    fired = drain(&mut wheel, next);
                    wakeups += 1;
                    assert!(wakeups <= LEVELS + 1, "offset {offset} ticks {ticks}");
                }
                assert_eq!((fired, wheel.last_now), (vec![ticks], due));
                assert_eq!(wheel.deadline(id), None);
                assert_eq!(wheel.next_expiry(), None);
            }
        }
    }

    #[test]
    fn every_tick_of_two_blocks_fires_on_time() {
        // One timer per tick across several level-1 and level-2 boundaries, polled every tick.
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        for t in (1..9000).rev() {
            wheel.insert(ms(t), t);
        }
        for t in 1..9000 {
            if t % 64 != 0 {
                assert_eq!(wheel.next_expiry(), Some(ms(t)), "tick {t}");
            }
            assert_eq!(drain(&mut wheel, ms(t)), [t]);
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn a_big_jump_fires_everything_due_in_tick_order() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        let ticks = [5u64, 64, 3, 70_000, 4096, 1 << 37, 262_143, 9];
        for &t in &ticks {
            wheel.insert(ms(t), t);
        }
        let fired: Vec<u64> = std::iter::from_fn(|| wheel.poll_expired(ms(1 << 36)))
            .map(|(_, t)| t)
            .collect();
        assert_eq!(fired, [3, 5, 9, 64, 4096, 70_000, 262_143]);
        assert_eq!(wheel.len(), 1);
        assert_eq!(drain(&mut wheel, ms(1 << 37)), [1 << 37]);
    }

    #[test]
    fn far_future_timers_wait_in_overflow() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        let three_years = Instant::from_secs(3 * 365 * 86_400); // beyond 64^6 ms
        let far = wheel.insert(three_years, 1);
        let never = wheel.insert(Instant::MAX, 2);
        let near = wheel.insert(ms(10), 3);
        assert_eq!(drain(&mut wheel, ms(10)), [3]);
        assert_eq!(wheel.deadline(near), None);
        // Advance in large uneven steps; nothing fires early.
        let mut now = ms(10);
        while now < three_years {
            assert_eq!(drain(&mut wheel, now), [] as [u64; 0]);
            assert!(wheel.next_expiry().unwrap() > now);
            now += Duration::from_secs(86_400 * 17 + 12_345);
        }
        assert_eq!(
            drain(
                &mut wheel,
                three_years.checked_sub(Duration::from_nanos(1)).unwrap()
            ),
            [] as [u64; 0]
        );
        assert_eq!(drain(&mut wheel, three_years), [1]);
        assert_eq!(wheel.deadline(far), None);
        assert_eq!(wheel.deadline(never), Some(Instant::MAX));
        // Instant::MAX lies past the last tick boundary, so it clamps to that boundary: a driver
        // polling at next_expiry() can never spin on a timer that could not fire.
        let last_boundary = Instant::from_nanos(u64::MAX / 1_000_000 * 1_000_000);
        let mut wakeups = 0;
        while wheel.next_expiry() != Some(last_boundary) {
            let next = wheel.next_expiry().unwrap();
            assert!(next < last_boundary);
            assert_eq!(drain(&mut wheel, next), [] as [u64; 0]);
            wakeups += 1;
        }
        assert!(wakeups <= LEVELS, "{wakeups} wake-ups");
        let just_before = last_boundary.checked_sub(Duration::from_nanos(1)).unwrap();
        assert_eq!(drain(&mut wheel, just_before), [] as [u64; 0]);
        assert_eq!(drain(&mut wheel, last_boundary), [2]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll() {
        let mut wheel = TimerWheel::new(ms(100), MS);
        wheel.insert(ms(5), 1); // before the wheel's start
        assert_eq!(wheel.next_expiry(), Some(ms(100)));
        assert_eq!(drain(&mut wheel, ms(100)), [1]);
        assert_eq!(drain(&mut wheel, ms(500)), [] as [u64; 0]);
        wheel.insert(ms(499), 2);
        wheel.insert(ms(500), 3);
        assert!(wheel.next_expiry().unwrap() <= ms(500));
        assert_eq!(drain(&mut wheel, ms(500)), [2, 3]);
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        let a = wheel.insert(ms(10), 1);
        let b = wheel.insert(ms(10), 2);
        let c = wheel.insert(ms(5000), 3);
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.cancel(a), Some(1));
        assert_eq!(wheel.cancel(a), None);
        assert!(!wheel.reschedule(a, ms(1)));
        assert_eq!(wheel.deadline(a), None);
        // The freed entry is reused under a new generation: the old id cannot touch it.
        let d = wheel.insert(ms(20), 4);
        assert_ne!(a, d);
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.deadline(d), Some(ms(20)));
        assert_eq!(wheel.cancel(c), Some(3));
        assert_eq!(wheel.next_expiry(), Some(ms(10)));
        let fired: Vec<_> = std::iter::from_fn(|| wheel.poll_expired(ms(10))).collect();
        assert_eq!(fired, [(b, 2)]);
        assert_eq!(wheel.cancel(b), None, "a fired id is stale");
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.cancel(d), Some(4));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_expiry(), None);
    }

    #[test]
    fn reschedule_moves_timers_both_ways() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        let rto = wheel.insert(ms(200), 1);
        wheel.insert(ms(40), 2);
        assert!(wheel.reschedule(rto, ms(30))); // earlier, into level 0
        assert_eq!(wheel.next_expiry(), Some(ms(30)));
        assert!(wheel.reschedule(rto, ms(100_000))); // much later
        assert_eq!(wheel.deadline(rto), Some(ms(100_000)));
        assert_eq!(drain(&mut wheel, ms(40)), [2]);
        assert!(wheel.reschedule(rto, ms(39))); // into the past: due now
        assert_eq!(wheel.next_expiry(), Some(ms(40)));
        assert!(wheel.reschedule(rto, ms(41))); // out of the ready list again
        assert_eq!(wheel.next_expiry(), Some(ms(41)));
        assert_eq!(drain(&mut wheel, ms(40)), [] as [u64; 0]);
        assert_eq!(drain(&mut wheel, ms(41)), [1]);
        assert!(!wheel.reschedule(rto, ms(50)));
    }

    #[test]
    fn swap_remove_keeps_positions_consistent() {
        // Many timers in one slot, cancelled in a scrambled order, with checks after each.
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        let ids: Vec<_> = (0..200).map(|t| wheel.insert(ms(50), t)).collect();
        for k in (0..200).map(|i| (i * 77) % 200) {
            assert_eq!(wheel.cancel(ids[k]), Some(k as u64));
            for (j, &id) in ids.iter().enumerate() {
                let e = &wheel.entries[id.index as usize];
                if e.list != VACANT {
                    assert_eq!(
                        wheel.lists[e.list as usize][e.pos as usize], id.index,
                        "{j}"
                    );
                }
            }
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.occupied, [0; LEVELS]);
    }

    #[test]
    fn ticks_that_do_not_divide_a_millisecond() {
        let mut wheel = TimerWheel::new(Instant::from_nanos(5), Duration::from_nanos(7));
        wheel.insert(Instant::from_nanos(5 + 7 * 100 + 1), 1); // tick 101
        assert_eq!(
            drain(&mut wheel, Instant::from_nanos(5 + 7 * 101 - 1)),
            [] as [u64; 0]
        );
        assert_eq!(drain(&mut wheel, Instant::from_nanos(5 + 7 * 101)), [1]);
    }

    // The check is a debug assertion: without them (`cargo test --release`) there is nothing to
    // catch.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "time went backwards")]
    fn time_going_backwards_is_caught_in_debug() {
        let mut wheel = TimerWheel::new(Instant::ZERO, MS);
        wheel.poll_expired(ms(10));
        wheel.poll_expired(ms(9));
    }

    #[derive(Clone, Debug)]
    enum Op {
        /// Deadline `now + delta - past`.
        Insert {
            delta: u64,
            past: bool,
        },
        /// Index into every id ever issued, live or stale.
        Cancel(usize),
        Reschedule(usize, u64, bool),
        Advance(u64),
    }

    /// Spans spread over many orders of magnitude, so every level and the overflow are hit.
    fn span() -> impl Strategy<Value = u64> {
        (0u32..56, any::<u64>()).prop_map(|(bits, r)| r & ((1u64 << bits) - 1))
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (span(), prop::bool::weighted(0.1)).prop_map(|(delta, past)| Op::Insert { delta, past }),
            1 => any::<usize>().prop_map(Op::Cancel),
            2 => (any::<usize>(), span(), prop::bool::weighted(0.1)).prop_map(|(i, d, p)| Op::Reschedule(i, d, p)),
            3 => span().prop_map(Op::Advance),
        ]
    }

    /// The obvious model: timers keyed by their firing tick (tokens are unique).
    struct Reference {
        start: u64,
        tick: u64,
        now: u64,
        by_tick: BTreeMap<(u64, u64), TimerId>,
        armed: HashMap<TimerId, (u64, u64, Instant)>,
    }

    impl Reference {
        fn fire_tick(&self, deadline: Instant) -> u64 {
            deadline
                .as_nanos()
                .saturating_sub(self.start)
                .div_ceil(self.tick)
        }
        fn arm(&mut self, id: TimerId, deadline: Instant, token: u64) {
            let t = self.fire_tick(deadline);
            self.by_tick.insert((t, token), id);
            self.armed.insert(id, (t, token, deadline));
        }
        fn disarm(&mut self, id: TimerId) -> Option<u64> {
            let (t, token, _) = self.armed.remove(&id)?;
            self.by_tick.remove(&(t, token));
            Some(token)
        }
    }

    fn deadline_from(now: u64, delta: u64, past: bool) -> Instant {
        Instant::from_nanos(if past {
            now.saturating_sub(delta)
        } else {
            now.saturating_add(delta)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn matches_a_btreemap(
            start in 0u64..1 << 40,
            tick in prop_oneof![Just(1u64), Just(7), Just(1000), Just(1_000_000), 1u64..5000],
            ops in prop::collection::vec(op(), 1..400),
        ) {
            let mut wheel = TimerWheel::new(Instant::from_nanos(start), Duration::from_nanos(tick));
            let mut model = Reference { start, tick, now: start, by_tick: BTreeMap::new(), armed: HashMap::new() };
            let mut ids: Vec<TimerId> = Vec::new();
            let mut next_token = 0u64;
            let mut elapsed_tick = 0u64;
            for op in ops {
                match op {
                    Op::Insert { delta, past } => {
                        let deadline = deadline_from(model.now, delta, past);
                        let id = wheel.insert(deadline, next_token);
                        prop_assert!(!model.armed.contains_key(&id), "fresh id {:?} reused", id);
                        model.arm(id, deadline, next_token);
                        ids.push(id);
                        next_token += 1;
                    }
                    Op::Cancel(i) if !ids.is_empty() => {
                        let id = ids[i % ids.len()];
                        prop_assert_eq!(wheel.cancel(id), model.disarm(id));
                    }
                    Op::Reschedule(i, delta, past) if !ids.is_empty() => {
                        let id = ids[i % ids.len()];
                        let deadline = deadline_from(model.now, delta, past);
                        let armed = model.disarm(id);
                        prop_assert_eq!(wheel.reschedule(id, deadline), armed.is_some());
                        if let Some(token) = armed {
                            model.arm(id, deadline, token);
                        }
                    }
                    Op::Advance(delta) => {
                        model.now = model.now.saturating_add(delta);
                        let now = Instant::from_nanos(model.now);
                        let now_tick = (model.now - start) / tick;
                        let mut fired: Vec<(TimerId, u64)> = std::iter::from_fn(|| wheel.poll_expired(now)).collect();
                        let mut expected = Vec::new();
                        while let Some(entry) = model.by_tick.first_entry() {
                            if entry.key().0 > now_tick {
                                break;
                            }
                            let ((_, token), id) = entry.remove_entry();
                            let (_, _, deadline) = model.armed.remove(&id).unwrap();
                            prop_assert!(deadline <= now, "{:?} fired early", id);
                            expected.push((id, token));
                        }
                        fired.sort_unstable_by_key(|&(_, token)| token);
                        expected.sort_unstable_by_key(|&(_, token)| token);
                        prop_assert_eq!(fired, expected, "at tick {}", now_tick);
                        elapsed_tick = now_tick;
                    }
                    _ => {}
                }
                prop_assert_eq!(wheel.len(), model.armed.len());
                // next_expiry: None iff empty; never after the earliest timer; exact within the
                // current 64-tick block; never in the past unless a timer is due.
                let next = wheel.next_expiry();
                match model.by_tick.keys().next() {
                    None => prop_assert_eq!(next, None),
                    Some(&(first, _)) => {
                        let next = next.unwrap().as_nanos();
                        let first_at = start.saturating_add(first.saturating_mul(tick));
                        if first <= elapsed_tick {
                            prop_assert!(next <= model.now);
                        } else {
                            prop_assert!(next <= first_at);
                            prop_assert!(next > start + elapsed_tick * tick);
                            if first >> 6 == elapsed_tick >> 6 {
                                prop_assert_eq!(next, first_at);
                            }
                        }
                    }
                }
            }
            for id in ids.iter().rev().take(20) {
                prop_assert_eq!(wheel.deadline(*id), model.armed.get(id).map(|&(_, _, d)| d));
            }
        }
    }
}
