//! A connection's timers: one deadline per [`TimerKind`] in a table indexed by kind.
//!
//! Invariants: a kind is armed exactly when it is in the armed set, its entry then holding its
//! deadline. Only the connection arms and clears entries. Its owner, after every visit, takes
//! the kinds that changed ([`Connection::take_timer_changes`](super::Connection::take_timer_changes))
//! and mirrors just those into its timer wheel, keyed by (connection, kind), lazily: an entry
//! whose deadline moved later stays where it is, fires early and is handed back. It hands back
//! the kinds that fired as a [`TimerSet`] ([`Connection::handle_timers`](super::Connection::handle_timers)),
//! which count as changed (the wheel no longer holds them), so one still armed is registered
//! again.
//!
//! So the changes taken are those such a lazy mirror acts on, no more: every kind armed now and
//! not at the last take, every kind armed then and not now, every kind armed at both whose
//! deadline went earlier than it was at some point since (its entry is kept when the kind is
//! cleared, for that comparison), and every kind handed back. A kind armed at both takes whose
//! deadline only moved later (the RTO and the probe of every round trip, cleared by the ACK and
//! armed again by the reply) is left out: the mirror's entry, no later than the deadline at the
//! last take, fires early and is placed again then. (A kind armed again at an unchanged deadline
//! may be left out too.) An owner that mirrors every kind on every take, with the same lazy
//! rule, ends with the same entries (tested).
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
    /// Kinds armed earlier than their entry, or armed while not armed at the last take.
    changed: TimerSet,
    /// Kinds handed back (fired): reported whatever their state.
    handed_back: TimerSet,
    /// The armed set at the last take: the kinds the owner's mirror holds an entry for, each no
    /// later than its entry in `at` (an entry cleared since keeps its deadline).
    taken: TimerSet,
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

    /// Arms `kind` at `at`: a change unless the owner's mirror holds it already at a deadline
    /// no later (the entry's).
    #[inline]
    pub(crate) fn set(&mut self, kind: TimerKind, at: Instant) {
        let entry = &mut self.at[kind as usize];
        if !self.taken.contains(kind) || at < *entry {
            self.changed.insert(kind);
        }
        *entry = at;
        self.armed.insert(kind);
    }

    /// Disarms `kind`, its entry kept (see `taken`); the change is found at the take.
    #[inline]
    pub(crate) fn clear(&mut self, kind: TimerKind) {
        self.armed.remove(kind);
    }

    pub(crate) fn clear_all(&mut self) {
        for kind in TimerKind::ALL {
            self.clear(kind);
        }
    }

    /// The kinds changed since the last call as a lazy mirror sees them (see the module
    /// documentation), now forgotten.
    #[inline]
    pub(crate) fn take_changed(&mut self) -> TimerSet {
        let armed = self.armed.0;
        let set = (std::mem::take(&mut self.changed).0 & armed)
            | (self.taken.0 & !armed)
            | std::mem::take(&mut self.handed_back).0;
        self.taken = self.armed;
        TimerSet(set)
    }

    /// Counts `kinds` as changed (their copies elsewhere are gone).
    #[inline]
    pub(crate) fn mark_changed(&mut self, kinds: TimerSet) {
        self.handed_back = self.handed_back.union(kinds);
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
            [TimerKind::Rto],
            "armed and cleared again between takes: the mirror never held it"
        );
        assert!(t.take_changed().is_empty());
        // the mirror holds 300: the same deadline or a later one needs nothing of it
        t.set(TimerKind::Rto, ms(300));
        t.set(TimerKind::Rto, ms(900));
        assert!(t.take_changed().is_empty());
        // cleared and armed again later (an ACK, then the reply): still nothing
        t.clear(TimerKind::Rto);
        t.set(TimerKind::Rto, ms(1000));
        assert!(t.take_changed().is_empty());
        // earlier than the entry: a change, even if back later before the take
        t.set(TimerKind::Rto, ms(200));
        t.set(TimerKind::Rto, ms(2000));
        assert_eq!(t.take_changed(), TimerKind::Rto.into());
        // cleared: a change; handed back: a change even if not armed
        t.clear(TimerKind::Rto);
        t.mark_changed(TimerKind::KeepAlive.into());
        assert_eq!(
            t.take_changed().iter().collect::<Vec<_>>(),
            [TimerKind::Rto, TimerKind::KeepAlive]
        );
        // not held by the mirror any more: arming is a change at any deadline
        t.set(TimerKind::Rto, ms(5000));
        assert_eq!(t.take_changed(), TimerKind::Rto.into());
    }

    /// The host's rule (`Host::settle`): an entry moved later stays; earlier moves, arming and
    /// clearing are applied; `fire` removes an entry as the wheel does when it expires.
    fn mirror(m: &mut [Option<Instant>; TimerKind::COUNT], t: &Timers, kinds: TimerSet) {
        for kind in kinds.iter() {
            let k = kind as usize;
            m[k] = match (m[k], t.get(kind)) {
                (Some(old), Some(new)) if new >= old => Some(old),
                (_, want) => want,
            };
        }
    }

    /// The change record is a cache of what a lazy mirror would do: over random sequences of
    /// arming, clearing and firing, a mirror fed only the changes taken holds exactly what one
    /// fed every kind on every take holds, and never an entry later than the deadline (nor one
    /// for a kind not armed, nor none for one armed).
    #[test]
    fn the_changes_taken_keep_a_lazy_mirror_as_one_told_everything() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut t = Timers::default();
            let mut told = [None; TimerKind::COUNT];
            let mut all = [None; TimerKind::COUNT];
            for _ in 0..300 {
                for _ in 0..rand(6) {
                    let kind = TimerKind::ALL[rand(TimerKind::COUNT as u64) as usize];
                    match rand(4) {
                        0 => t.clear(kind),
                        1 => t.clear_all(),
                        _ => t.set(kind, ms(100 + rand(50))),
                    }
                }
                if rand(4) == 0 {
                    // the wheel fires an entry it holds; the connection may clear the kind
                    let kind = TimerKind::ALL[rand(TimerKind::COUNT as u64) as usize];
                    let k = kind as usize;
                    if told[k].is_some() {
                        told[k] = None;
                        all[k] = None;
                        t.mark_changed(kind.into());
                        if rand(2) == 0 {
                            t.clear(kind);
                        }
                    }
                }
                let changed = t.take_changed();
                mirror(&mut told, &t, changed);
                mirror(&mut all, &t, TimerSet(0xff));
                assert_eq!(told, all);
                for kind in TimerKind::ALL {
                    match (told[kind as usize], t.get(kind)) {
                        (Some(m), Some(d)) => assert!(m <= d),
                        (None, None) => {}
                        other => panic!("{kind:?}: mirror and table differ: {other:?}"),
                    }
                }
            }
        }
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
