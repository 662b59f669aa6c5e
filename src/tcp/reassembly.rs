//! Out-of-order segment tracking: which sequence ranges beyond `rcv_nxt` are already held, and
//! which of them were received most recently (the order SACK reports them in).
//!
//! Ranges are kept sorted, disjoint and non-adjacent. The number of ranges is bounded; a segment
//! that would need one more is refused (the caller drops it; the peer retransmits), so a hostile
//! peer cannot make the list grow without bound. Recency is a short list of sequence numbers,
//! newest first, one per range at most: the start of the latest segment received into each of
//! the last [`MAX_RECENT`] ranges touched. A point names whatever range holds it, so merging
//! ranges needs no bookkeeping; points whose range was consumed are dropped.

use crate::wire::SeqNumber;

/// Ranges remembered by recency: as many as one SACK option can carry.
pub const MAX_RECENT: usize = 4;

#[derive(Debug, Clone)]
pub struct Assembler {
    ranges: Vec<(SeqNumber, SeqNumber)>,
    max_ranges: usize,
    /// A point in each of the ranges most recently received into, newest first.
    recent: [SeqNumber; MAX_RECENT],
    recent_len: usize,
}

impl Assembler {
    pub fn new(max_ranges: usize) -> Self {
        Assembler {
            ranges: Vec::new(),
            max_ranges,
            recent: [SeqNumber(0); MAX_RECENT],
            recent_len: 0,
        }
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Forgets every range (the data was dropped).
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
        self.recent_len = 0;
    }

    #[cfg(test)]
    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }

    /// Left edge of the block containing the most recently received out-of-order segment.
    #[cfg(test)]
    pub fn last_touched(&self) -> Option<SeqNumber> {
        self.recent_ranges().next().map(|r| r.0)
    }

    /// The range holding `seq`, if any.
    fn range_of(&self, seq: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let i = self.ranges.partition_point(|r| r.1.diff(seq) <= 0);
        self.ranges.get(i).copied().filter(|r| r.0.diff(seq) <= 0)
    }

    /// The ranges most recently received into, newest first, each once (RFC 2018 4's order for
    /// SACK blocks: the block holding the segment that triggered the ACK, then those reported
    /// most recently).
    pub fn recent_ranges(&self) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        self.recent[..self.recent_len]
            .iter()
            .filter_map(|&p| self.range_of(p))
    }

    /// The part of `[start, end)` already held: from its first byte held to the end of that
    /// range (RFC 2883's D-SACK block for a duplicate of out-of-order data).
    pub fn overlap(&self, start: SeqNumber, end: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        let i = self.ranges.partition_point(|r| r.1.diff(start) <= 0);
        let &(s, e) = self.ranges.get(i)?;
        if s.diff(end) >= 0 {
            return None;
        }
        Some((s.max(start), e.min(end)))
    }

    /// Puts `seq` first in the recency list, dropping the point of the range it joined.
    fn touch(&mut self, seq: SeqNumber) {
        let range = self.range_of(seq);
        let mut kept = [SeqNumber(0); MAX_RECENT];
        kept[0] = seq;
        let mut n = 1;
        for &p in &self.recent[..self.recent_len] {
            if n == MAX_RECENT {
                break;
            }
            let other = self.range_of(p);
            if other.is_some() && other != range {
                kept[n] = p;
                n += 1;
            }
        }
        self.recent = kept;
        self.recent_len = n;
    }

    /// Records `[start, end)`. Returns false, changing nothing, if that would exceed the range
    /// limit.
    pub fn insert(&mut self, start: SeqNumber, end: SeqNumber) -> bool {
        if end.diff(start) <= 0 {
            return true;
        }
        // first range whose end reaches start (could merge or lie after)
        let i = self
            .ranges
            .iter()
            .position(|&(_, e)| e.diff(start) >= 0)
            .unwrap_or(self.ranges.len());
        // ranges i..j overlap or touch [start, end]
        let mut j = i;
        while j < self.ranges.len() && self.ranges[j].0.diff(end) <= 0 {
            j += 1;
        }
        if i == j {
            if self.ranges.len() >= self.max_ranges {
                return false;
            }
            self.ranges.insert(i, (start, end));
        } else {
            let s = self.ranges[i].0.min(start);
            let e = self.ranges[j - 1].1.max(end);
            self.ranges.drain(i + 1..j);
            self.ranges[i] = (s, e);
        }
        self.touch(start);
        true
    }

    /// Removes and returns the end of the range that starts at or before `seq` (data now
    /// contiguous with the in-order stream), if any. Ranges wholly before `seq` are dropped.
    pub fn pop_contiguous(&mut self, seq: SeqNumber) -> Option<SeqNumber> {
        let mut reached = None;
        while let Some(&(s, e)) = self.ranges.first() {
            if s.diff(seq) > 0 {
                break;
            }
            self.ranges.remove(0);
            if e.diff(seq) > 0 {
                reached = Some(e);
                break;
            }
        }
        if reached.is_some() {
            // points in consumed ranges name nothing any more
            let mut n = 0;
            for k in 0..self.recent_len {
                let p = self.recent[k];
                if self.range_of(p).is_some() {
                    self.recent[n] = p;
                    n += 1;
                }
            }
            self.recent_len = n;
        }
        reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let mut a = Assembler::new(4);
        assert!(a.insert(s(10), s(20)));
        assert!(a.insert(s(30), s(40)));
        assert!(a.insert(s(20), s(30)));
        assert_eq!(a.ranges(), &[(s(10), s(40))]);
        assert!(a.insert(s(5), s(12)));
        assert!(a.insert(s(50), s(60)));
        assert_eq!(a.ranges(), &[(s(5), s(40)), (s(50), s(60))]);
        assert_eq!(a.last_touched(), Some(s(50)));
    }

    #[test]
    fn recent_ranges_come_newest_first_each_once() {
        let mut a = Assembler::new(8);
        for (l, r) in [(10, 20), (30, 40), (50, 60), (70, 80), (90, 100)] {
            assert!(a.insert(s(l), s(r)));
        }
        let recent: Vec<_> = a.recent_ranges().collect();
        assert_eq!(
            recent,
            [
                (s(90), s(100)),
                (s(70), s(80)),
                (s(50), s(60)),
                (s(30), s(40))
            ]
        );
        // a segment into an older range moves it first; merging two ranges keeps one entry
        assert!(a.insert(s(40), s(50)));
        let recent: Vec<_> = a.recent_ranges().collect();
        assert_eq!(recent, [(s(30), s(60)), (s(90), s(100)), (s(70), s(80))]);
        assert!(a.insert(s(12), s(14)));
        assert_eq!(a.last_touched(), Some(s(10)));
        // consumed ranges leave the list
        assert_eq!(a.pop_contiguous(s(10)), Some(s(20)));
        let recent: Vec<_> = a.recent_ranges().collect();
        assert_eq!(recent, [(s(30), s(60)), (s(90), s(100)), (s(70), s(80))]);
        // what of a segment is held already
        assert_eq!(a.overlap(s(55), s(75)), Some((s(55), s(60))));
        assert_eq!(a.overlap(s(92), s(95)), Some((s(92), s(95))));
        assert_eq!(a.overlap(s(60), s(70)), None);
    }

    #[test]
    fn bounded_and_wrapping() {
        let mut a = Assembler::new(2);
        let base = SeqNumber(u32::MAX - 5);
        assert!(a.insert(base + 10, base + 20));
        assert!(a.insert(base, base + 4));
        assert!(!a.insert(base + 30, base + 31));
        assert_eq!(a.pop_contiguous(base), Some(base + 4));
        assert_eq!(a.pop_contiguous(base + 4), None);
        assert_eq!(a.pop_contiguous(base + 12), Some(base + 20));
        assert!(a.is_empty());
    }
}
