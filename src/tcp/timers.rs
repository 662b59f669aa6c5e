//! A connection's timers: one deadline per [`TimerKind`] in a table indexed by kind.
//!
//! Invariants: a kind is armed exactly when it is in the armed set, its entry then holding its
//! deadline; every kind whose entry
//! changed since the owner last took the changes is in the change set (a kind armed again at the
//! same deadline may be there too). Only the connection arms
//! and clears entries. Its owner, after every visit, takes the kinds that changed
//! ([`Connection::take_timer_changes`](super::Connection::take_timer_changes)) and mirrors just
//! those into its timer wheel, keyed by (connection, kind); it hands back the kinds that fired as
//! a [`TimerSet`] ([`Connection::handle_timers`](super::Connection::handle_timers)), which count
//! as changed (the wheel no longer holds them), so one still armed is registered again.
//!
//! When several kinds fire at once they are handled in the order of [`TimerKind::ALL`]: the end
//! of TIME-WAIT first (nothing else matters after it), then the delayed ACK, the tail loss probe
//! before the retransmission timeout (the probe is scheduled no later than the RTO and takes its
//! place, RFC 8985 7.2), then the reordering, persist, keep-alive and cork timers. A kind handed back
//! whose deadline has moved later in the meantime is ignored: a wheel entry may be older than the
//! table.

use crate::time::Instant;

/// The kinds of timer a connection runs, in the order they are handled when due together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// TIME-WAIT's 2 MSL, and the FIN-WAIT-2 limit of a connection its application has closed
    /// ([`Config::fin_timeout`](super::Config::fin_timeout)).
    TimeWait,
    DelayedAck,
    TailLossProbe,
    Rto,
    Reorder,
    Persist,
    KeepAlive,
    /// The limit on holding back a partial segment while corked
    /// ([`Connection::set_cork`](super::Connection::set_cork)).
    Cork,
}

impl TimerKind {
    /// Every kind, in handling order; `ALL[k as usize] == k`.
    pub const ALL: [TimerKind; 8] = [
        TimerKind::TimeWait,
        TimerKind::DelayedAck,
        TimerKind::TailLossProbe,
        TimerKind::Rto,
        TimerKind::Reorder,
        TimerKind::Persist,
        TimerKind::KeepAlive,
        TimerKind::Cork,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The kind with index `i` (`kind as usize`), if any.
    pub fn from_index(i: usize) -> Option<TimerKind> {
        Self::ALL.get(i).copied()
    }
}

/// A set of timer kinds (those that fired), iterated in handling order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerSet(u8);

impl TimerSet {
    pub const EMPTY: TimerSet = TimerSet(0);

    pub fn of(kind: TimerKind) -> TimerSet {
        TimerSet(1 << kind as u8)
    }

    pub fn insert(&mut self, kind: TimerKind) {
        self.0 |= 1 << kind as u8;
    }

    pub fn remove(&mut self, kind: TimerKind) {
        self.0 &= !(1 << kind as u8);
    }

    pub fn contains(self, kind: TimerKind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in [`TimerKind::ALL`] order.
    #[inline]
    pub fn iter(self) -> impl Iterator<Item = TimerKind> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            TimerKind::from_index(i)
        })
    }

    /// Both sets' kinds.
    #[inline]
    pub fn union(self, other: TimerSet) -> TimerSet {
        TimerSet(self.0 | other.0)
    }
}

impl From<TimerKind> for TimerSet {
    fn from(kind: TimerKind) -> TimerSet {
        TimerSet::of(kind)
    }
}

/// The deadline of every timer kind of one connection, and which changed since last taken.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    /// The deadline of each kind in `armed`; the entries of the others mean nothing. Plain
    /// instants and a bit set rather than `Option`s: half the bytes in every connection.
    at: [Instant; TimerKind::COUNT],
    armed: TimerSet,
    changed: TimerSet,
}

impl Timers {
    /// The deadline of `kind`, if armed.
    #[inline]
    pub fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.armed.contains(kind).then(|| self.at[kind as usize])
    }

    /// Every deadline, indexed by `kind as usize`.
    #[inline]
    pub fn deadlines(&self) -> [Option<Instant>; TimerKind::COUNT] {
        TimerKind::ALL.map(|kind| self.get(kind))
    }

    /// The earliest deadline of any kind.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.armed.iter().map(|kind| self.at[kind as usize]).min()
    }

    pub fn is_armed(&self, kind: TimerKind) -> bool {
        self.armed.contains(kind)
    }

    pub fn is_due(&self, kind: TimerKind, now: Instant) -> bool {
        self.armed.contains(kind) && self.at[kind as usize] <= now
    }

    /// Every kind due at `now`.
    pub fn due(&self, now: Instant) -> TimerSet {
        let mut set = TimerSet::EMPTY;
        for kind in TimerKind::ALL {
            if self.is_due(kind, now) {
                set.insert(kind);
            }
        }
        set
    }

    /// Arms `kind` at `at`, or disarms it with `None`.
    #[inline]
    pub(crate) fn set_or_clear(&mut self, kind: TimerKind, at: Option<Instant>) {
        match at {
            Some(at) => self.set(kind, at),
            None => self.clear(kind),
        }
    }

    /// Arms `kind` at `at` (counted as a change even if the deadline is the same).
    #[inline]
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        self.at[kind as usize] = at;
        self.armed.insert(kind);
        self.changed.insert(kind);
    }

    #[inline]
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        if self.armed.contains(kind) {
            self.armed.remove(kind);
            self.changed.insert(kind);
        }
    }

    pub(crate) fn clear_all(&mut self) {
        for kind in TimerKind::ALL {
            self.clear(kind);
        }
    }

    /// The kinds changed since the last call, now forgotten.
    #[inline]
    pub(crate) fn take_changed(&mut self) -> TimerSet {
        std::mem::take(&mut self.changed)
    }

    /// Counts `kinds` as changed (their copies elsewhere are gone).
    #[inline]
    pub(crate) fn mark_changed(&mut self, kinds: TimerSet) {
        self.changed = self.changed.union(kinds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn kinds_index_the_table_in_handling_order() {
        for (i, k) in TimerKind::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
            assert_eq!(TimerKind::from_index(i), Some(k));
        }
        assert_eq!(TimerKind::from_index(TimerKind::COUNT), None);
        let mut s = TimerSet::of(TimerKind::Rto);
        s.insert(TimerKind::TimeWait);
        s.insert(TimerKind::TailLossProbe);
        let order: Vec<TimerKind> = s.iter().collect();
        assert_eq!(
            order,
            [
                TimerKind::TimeWait,
                TimerKind::TailLossProbe,
                TimerKind::Rto
            ]
        );
        assert!(!s.contains(TimerKind::KeepAlive));
        assert!(TimerSet::EMPTY.is_empty() && TimerSet::EMPTY.iter().next().is_none());
    }

    #[test]
    fn set_clear_and_the_next_deadline() {
        let mut t = Timers::default();
        assert_eq!(t.next_deadline(), None);
        t.set(TimerKind::KeepAlive, ms(500));
        t.set(TimerKind::Rto, ms(300));
        t.set(TimerKind::DelayedAck, ms(40));
        assert_eq!(t.next_deadline(), Some(ms(40)));
        assert_eq!(t.get(TimerKind::Rto), Some(ms(300)));
        t.clear(TimerKind::DelayedAck);
        assert!(!t.is_armed(TimerKind::DelayedAck));
        assert_eq!(t.next_deadline(), Some(ms(300)));
        // re-arming replaces the deadline, later or earlier
        t.set(TimerKind::Rto, ms(900));
        assert_eq!(t.next_deadline(), Some(ms(500)));
        assert_eq!(t.deadlines()[TimerKind::Rto as usize], Some(ms(900)));
        t.clear_all();
        assert_eq!(t.deadlines(), Timers::default().deadlines());
    }

    #[test]
    fn changes_are_tracked_until_taken() {
        let mut t = Timers::default();
        t.set(TimerKind::Rto, ms(300));
        t.set(TimerKind::DelayedAck, ms(40));
        t.clear(TimerKind::DelayedAck);
        t.clear(TimerKind::Persist);
        let c = t.take_changed();
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [TimerKind::DelayedAck, TimerKind::Rto],
            "a kind armed and cleared again changed; one never armed did not"
        );
        assert!(t.take_changed().is_empty());
        // arming counts even with the same deadline: the owner compares with its copy
        t.set(TimerKind::Rto, ms(300));
        assert_eq!(t.take_changed(), TimerKind::Rto.into());
        t.mark_changed(TimerKind::KeepAlive.into());
        t.clear_all();
        assert_eq!(
            t.take_changed().iter().collect::<Vec<_>>(),
            [TimerKind::Rto, TimerKind::KeepAlive]
        );
    }

    #[test]
    fn due_includes_deadlines_at_now() {
        let mut t = Timers::default();
        t.set(TimerKind::Rto, ms(100));
        t.set(TimerKind::TailLossProbe, ms(100));
        t.set(TimerKind::Persist, ms(101));
        assert!(t.due(ms(99)).is_empty());
        let due = t.due(ms(100));
        assert_eq!(
            due.iter().collect::<Vec<_>>(),
            [TimerKind::TailLossProbe, TimerKind::Rto]
        );
        assert!(t.is_due(TimerKind::Persist, ms(101)));
    }
}
