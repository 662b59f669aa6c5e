//! Tests of the timer wheel (a file of their own to keep `wheel.rs` short).

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

/// `next_expiry` is remembered between calls: every change to the wheel must forget it.
#[test]
fn next_expiry_follows_every_change() {
    let mut wheel = TimerWheel::new(Instant::ZERO, MS);
    assert_eq!(wheel.next_expiry(), None);
    let a = wheel.insert(ms(10), 1);
    assert_eq!(wheel.next_expiry(), Some(ms(10)));
    let b = wheel.insert(ms(5), 2);
    assert_eq!(wheel.next_expiry(), Some(ms(5)));
    assert!(wheel.reschedule(b, ms(7)));
    assert_eq!(wheel.next_expiry(), Some(ms(7)));
    assert!(wheel.reschedule(a, ms(3)));
    assert_eq!(wheel.next_expiry(), Some(ms(3)));
    assert_eq!(wheel.cancel(a), Some(1));
    assert_eq!(wheel.next_expiry(), Some(ms(7)));
    // a far timer is found at its higher-level slot, then exactly once time gets close
    let c = wheel.insert(ms(5_000), 3);
    assert_eq!(drain(&mut wheel, ms(7)), [2]);
    let far = wheel.next_expiry().unwrap();
    assert!(far <= ms(5_000) && far > ms(7), "{far:?}");
    assert_eq!(drain(&mut wheel, far), [] as [u64; 0]);
    assert!(wheel.next_expiry().unwrap() <= ms(5_000));
    assert!(wheel.reschedule(c, ms(1)));
    assert_eq!(wheel.next_expiry(), Some(far));
    assert_eq!(drain(&mut wheel, far), [3]);
    assert_eq!(wheel.next_expiry(), None);
}
