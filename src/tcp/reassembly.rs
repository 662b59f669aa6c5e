//! Out-of-order segment tracking: which sequence ranges beyond `rcv_nxt` are already held.
//!
//! Ranges are kept sorted, disjoint and non-adjacent. The number of ranges is bounded; a segment
//! that would need one more is refused (the caller drops it; the peer retransmits), so a hostile
//! peer cannot make the list grow without bound.

use crate::wire::SeqNumber;

#[derive(Debug, Clone)]
pub struct Assembler {
    ranges: Vec<(SeqNumber, SeqNumber)>,
    max_ranges: usize,
    /// Index into `ranges` of the block most recently extended (SACK reports it first).
    last_touched: Option<SeqNumber>,
}

impl Assembler {
    pub fn new(max_ranges: usize) -> Self {
        Assembler {
            ranges: Vec::new(),
            max_ranges,
            last_touched: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.ranges
    }

    /// Left edge of the block containing the most recently received out-of-order segment.
    pub fn last_touched(&self) -> Option<SeqNumber> {
        self.last_touched
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
            self.last_touched = Some(start);
        } else {
            let s = self.ranges[i].0.min(start);
            let e = self.ranges[j - 1].1.max(end);
            self.ranges.drain(i + 1..j);
            self.ranges[i] = (s, e);
            self.last_touched = Some(s);
        }
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
        if self
            .last_touched
            .is_some_and(|t| !self.ranges.iter().any(|r| r.0 == t))
        {
            self.last_touched = None;
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
