//! The sender's record of every segment in flight: the SACK scoreboard of RFC 6675 and the
//! per-segment transmit times RACK (RFC 8985) needs.
//!
//! Segments are kept in sequence order from `snd_una` to `snd_max`, one entry per transmitted
//! segment (a FIN counts as one sequence number of its segment). Each is in exactly one of three
//! conditions: in flight, SACKed, or marked lost and waiting for retransmission. Running byte
//! totals of each condition make `pipe` (RFC 6675's estimate of bytes in the network) O(1).

use std::collections::VecDeque;

use crate::time::Instant;
use crate::wire::SeqNumber;

/// Why a segment was marked lost; retransmissions are counted by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossCause {
    /// RACK or the duplicate-ACK threshold, in fast recovery.
    Fast,
    /// The retransmission timer.
    Rto,
    /// The path MTU fell below the segment's size (RFC 1191).
    PathMtu,
    /// The peer's window shrank below the segment: it was dropped, not lost in the network.
    Window,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: SeqNumber,
    /// One past the last sequence number (FIN included).
    pub end: SeqNumber,
    pub fin: bool,
    /// Last (re)transmission.
    pub sent_at: Instant,
    /// Our timestamp value on that transmission.
    pub ts_val: u32,
    pub retransmits: u32,
    pub sacked: bool,
    pub lost: Option<LossCause>,
}

impl Segment {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Payload bytes (the FIN's sequence number is not a byte).
    pub fn payload_len(&self) -> usize {
        self.len() - self.fin as usize
    }

    /// Neither SACKed nor marked lost: counted in `pipe`.
    pub fn is_in_flight(&self) -> bool {
        !self.sacked && self.lost.is_none()
    }
}

/// A segment an acknowledgment delivered, as RTT sampling and RACK need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredSegment {
    /// Its last transmission.
    pub sent_at: Instant,
    pub end: SeqNumber,
    pub retransmitted: bool,
    /// It was marked lost (and perhaps not yet resent): the original transmission arrived
    /// after all, so `sent_at` says nothing about the path's RTT.
    pub was_lost: bool,
    pub ts_val: u32,
}

/// What an acknowledgment (cumulative and SACK) delivered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivered {
    /// Bytes newly SACKed.
    pub sacked_bytes: usize,
    /// The most recently sent segment among those newly acknowledged or SACKed.
    pub newest: Option<DeliveredSegment>,
    /// A newly delivered segment lay below the highest SACKed one: the network reordered.
    pub reordered: bool,
}

#[derive(Debug, Default)]
pub struct Scoreboard {
    segs: VecDeque<Segment>,
    in_flight: usize,
    sacked: usize,
    lost: usize,
    /// Highest sequence number SACKed (RACK's FACK).
    fack: Option<SeqNumber>,
}

impl Scoreboard {
    pub fn new() -> Self {
        Self::default()
    }

    /// Frees the segment queue's storage if it is empty (a connection that sends no more).
    pub fn release(&mut self) {
        if self.segs.is_empty() {
            self.segs = VecDeque::new();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// RFC 6675 pipe: bytes believed to be in the network.
    pub fn pipe(&self) -> usize {
        self.in_flight
    }

    pub fn sacked_bytes(&self) -> usize {
        self.sacked
    }

    #[inline]
    pub fn lost_bytes(&self) -> usize {
        self.lost
    }

    fn account(&mut self, s: &Segment, sign: bool) {
        let n = s.len();
        let field = if s.sacked {
            &mut self.sacked
        } else if s.lost.is_some() {
            &mut self.lost
        } else {
            &mut self.in_flight
        };
        if sign {
            *field += n;
        } else {
            *field -= n;
        }
    }

    /// Records a new segment, sent now (it must start at the previous one's end).
    pub fn push(&mut self, start: SeqNumber, end: SeqNumber, fin: bool, now: Instant, ts_val: u32) {
        debug_assert!(self.segs.back().is_none_or(|s| s.end == start));
        let s = Segment {
            start,
            end,
            fin,
            sent_at: now,
            ts_val,
            retransmits: 0,
            sacked: false,
            lost: None,
        };
        self.account(&s, true);
        self.segs.push_back(s);
    }

    /// Drops everything below `ack`; returns what that delivered.
    #[inline(always)]
    pub fn ack_to(&mut self, ack: SeqNumber, out: &mut Delivered) {
        if self.segs.back().is_some_and(|s| s.end.diff(ack) <= 0) {
            self.ack_all(out);
            return;
        }
        self.ack_to_within(ack, out);
    }

    /// [`Scoreboard::ack_to`] of an acknowledgement covering every segment (that of every
    /// request/response exchange): what each delivers, then nothing left in any count (each
    /// is the sum of its segments' lengths), without accounting for them one by one.
    #[inline(always)]
    fn ack_all(&mut self, out: &mut Delivered) {
        let fack = self.fack;
        // (popped one by one: cheaper than the deque's iterator and clear for the one or few
        // segments an acknowledgement usually covers)
        while let Some(s) = self.segs.pop_front() {
            if !s.sacked {
                note_delivered(out, &s, fack);
            }
        }
        self.in_flight = 0;
        self.sacked = 0;
        self.lost = 0;
    }

    /// [`Scoreboard::ack_to`] of an acknowledgement that leaves segments (or none to drop).
    fn ack_to_within(&mut self, ack: SeqNumber, out: &mut Delivered) {
        while let Some(s) = self.segs.front().copied() {
            if s.start.diff(ack) >= 0 {
                break;
            }
            self.account(&s, false);
            if s.end.diff(ack) <= 0 {
                self.segs.pop_front();
                if !s.sacked {
                    note_delivered(out, &s, self.fack);
                }
            } else {
                // partially acknowledged: keep the rest
                let front = self.segs.front_mut().unwrap();
                front.start = ack;
                let rest = *front;
                self.account(&rest, true);
                if !s.sacked {
                    note_delivered(out, &s, self.fack);
                }
                break;
            }
        }
    }

    /// Marks segments wholly inside the SACK block `[left, right)`.
    pub fn sack(&mut self, left: SeqNumber, right: SeqNumber, out: &mut Delivered) {
        let start = self.segs.partition_point(|s| s.end.diff(left) <= 0);
        for i in start..self.segs.len() {
            let s = self.segs[i];
            if s.start.diff(right) >= 0 {
                break;
            }
            if s.sacked || s.start.diff(left) < 0 || s.end.diff(right) > 0 {
                continue;
            }
            self.account(&s, false);
            let seg = &mut self.segs[i];
            seg.sacked = true;
            seg.lost = None;
            let s2 = *seg;
            self.account(&s2, true);
            out.sacked_bytes += s.len();
            note_delivered(out, &s, self.fack);
        }
        if self.fack.is_none_or(|f| right.diff(f) > 0) {
            self.fack = Some(right);
        }
    }

    /// Marks a segment lost (no-op if SACKed or already lost).
    pub fn mark_lost(&mut self, i: usize, cause: LossCause) -> bool {
        let s = self.segs[i];
        if s.sacked || s.lost.is_some() {
            return false;
        }
        self.account(&s, false);
        self.segs[i].lost = Some(cause);
        let s2 = self.segs[i];
        self.account(&s2, true);
        true
    }

    /// After a retransmission timeout everything not SACKed is lost. If `forget_sacks`, SACK
    /// information is discarded too (the receiver may have reneged).
    pub fn mark_all_lost(&mut self, forget_sacks: bool) {
        for i in 0..self.segs.len() {
            if forget_sacks && self.segs[i].sacked {
                let s = self.segs[i];
                self.account(&s, false);
                self.segs[i].sacked = false;
                let s2 = self.segs[i];
                self.account(&s2, true);
            }
            if self.segs[i].lost.is_none() {
                self.mark_lost(i, LossCause::Rto);
            } else {
                self.segs[i].lost = Some(LossCause::Rto);
            }
        }
        if forget_sacks {
            self.fack = None;
        }
    }

    /// Marks every segment in flight with more than `mss` payload bytes lost, as dropped for
    /// being too big for the path; returns how many.
    pub fn mark_oversize_lost(&mut self, mss: usize) -> usize {
        let mut marked = 0;
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.is_in_flight() && s.payload_len() > mss && self.mark_lost(i, LossCause::PathMtu) {
                marked += 1;
            }
        }
        marked
    }

    /// Segments marked lost are in flight again (the loss was spurious, their originals are
    /// getting through).
    pub fn unmark_lost(&mut self) {
        if self.lost == 0 {
            return;
        }
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.lost.is_some() && !s.sacked {
                self.account(&s, false);
                self.segs[i].lost = None;
                let s2 = self.segs[i];
                self.account(&s2, true);
            }
        }
    }

    /// Whether a segment not yet acknowledged was retransmitted.
    pub fn any_retransmitted(&self) -> bool {
        self.segs.iter().any(|s| s.retransmits > 0)
    }

    /// Marks every segment in flight that starts at or beyond `edge` (the peer's right edge,
    /// moved left below them) as waiting for retransmission.
    pub fn mark_beyond(&mut self, edge: SeqNumber) {
        let start = self.segs.partition_point(|s| s.start.diff(edge) < 0);
        for i in start..self.segs.len() {
            self.mark_lost(i, LossCause::Window);
        }
    }

    /// The first segment waiting for retransmission.
    pub fn next_lost(&self) -> Option<(usize, Segment)> {
        if self.lost == 0 {
            return None;
        }
        self.segs
            .iter()
            .enumerate()
            .find(|(_, s)| s.lost.is_some() && !s.sacked)
            .map(|(i, s)| (i, *s))
    }

    /// Records a retransmission of segment `i`: it is in flight again.
    pub fn on_retransmit(&mut self, i: usize, now: Instant, ts_val: u32) {
        let s = self.segs[i];
        self.account(&s, false);
        let seg = &mut self.segs[i];
        seg.lost = None;
        seg.sent_at = now;
        seg.ts_val = ts_val;
        seg.retransmits += 1;
        let s2 = *seg;
        self.account(&s2, true);
    }

    /// Splits segment `i` at `at`, strictly inside its payload, into two segments in the same
    /// condition (the FIN, if any, stays with the second), so the first can be resent alone:
    /// re-segmentation once the segment no longer fits the MSS of the moment. Totals and
    /// `pipe` are unchanged.
    pub fn split(&mut self, i: usize, at: SeqNumber) {
        let s = self.segs[i];
        debug_assert!(at.diff(s.start) > 0 && at.diff(s.start + s.payload_len()) < 0);
        let tail = Segment { start: at, ..s };
        let head = &mut self.segs[i];
        head.end = at;
        head.fin = false;
        self.segs.insert(i + 1, tail);
    }

    pub fn get(&self, i: usize) -> Segment {
        self.segs[i]
    }

    /// Index of the last segment (for a tail loss probe).
    pub fn last_index(&self) -> Option<usize> {
        self.segs.len().checked_sub(1)
    }

    /// RFC 6675 IsLost for the first in-flight segment: SACKed bytes above it exceed
    /// (DupThresh - 1) * SMSS. Used with SACK when RACK has no sample yet.
    ///
    /// Only original transmissions are judged (RFC 6675 NextSeg looks above HighRxt): the
    /// SACKs above a retransmitted segment were there before it was resent, so they say nothing
    /// about the retransmission. Whether a retransmission was lost is for RACK's clock to say.
    pub fn dupthresh_detect(&mut self, mss: usize) -> usize {
        let mut marked = 0;
        let mut sacked_above = self.sacked;
        for i in 0..self.segs.len() {
            let s = self.segs[i];
            if s.sacked {
                sacked_above -= s.len();
                continue;
            }
            if s.retransmits > 0 {
                continue;
            }
            if sacked_above > 2 * mss && s.lost.is_none() {
                if self.mark_lost(i, LossCause::Fast) {
                    marked += 1;
                }
            } else if sacked_above <= 2 * mss {
                break;
            }
        }
        marked
    }

    pub fn clear(&mut self) {
        self.segs.clear();
        self.in_flight = 0;
        self.sacked = 0;
        self.lost = 0;
        self.fack = None;
    }
}

#[inline]
fn note_delivered(out: &mut Delivered, s: &Segment, fack: Option<SeqNumber>) {
    let newer = match out.newest {
        None => true,
        Some(n) => s.sent_at > n.sent_at || (s.sent_at == n.sent_at && s.end.diff(n.end) > 0),
    };
    if newer {
        out.newest = Some(DeliveredSegment {
            sent_at: s.sent_at,
            end: s.end,
            retransmitted: s.retransmits > 0,
            was_lost: s.lost.is_some(),
            ts_val: s.ts_val,
        });
    }
    if fack.is_some_and(|f| s.end.diff(f) < 0) {
        out.reordered = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn board() -> Scoreboard {
        let mut b = Scoreboard::new();
        for i in 0..5u32 {
            b.push(
                s(i * 100),
                s(i * 100 + 100),
                false,
                Instant::from_millis(i as u64),
                0,
            );
        }
        b
    }

    #[test]
    fn pipe_tracks_sack_loss_and_retransmission() {
        let mut b = board();
        assert_eq!(b.pipe(), 500);
        let mut d = Delivered::default();
        b.sack(s(200), s(400), &mut d);
        assert_eq!(
            (b.pipe(), b.sacked_bytes(), d.sacked_bytes),
            (300, 200, 200)
        );
        assert_eq!(d.newest.map(|n| n.end), Some(s(400)));
        assert!(b.mark_lost(0, LossCause::Fast));
        assert_eq!((b.pipe(), b.lost_bytes()), (200, 100));
        assert_eq!(b.next_lost().map(|(i, _)| i), Some(0));
        b.on_retransmit(0, Instant::from_millis(10), 0);
        assert_eq!((b.pipe(), b.lost_bytes()), (300, 0));
        let mut d = Delivered::default();
        b.ack_to(s(250), &mut d);
        // segment [200,300) was SACKed: only its unsacked remainder accounting changes
        assert_eq!(b.len(), 3);
        assert_eq!((b.pipe(), b.sacked_bytes()), (100, 150));
        assert_eq!(
            d.newest.map(|n| n.retransmitted),
            Some(true),
            "newest delivered was a retransmission"
        );
    }

    #[test]
    fn delivery_of_a_segment_marked_lost_is_flagged() {
        let mut b = board();
        b.mark_all_lost(false);
        b.on_retransmit(0, Instant::from_millis(300), 0);
        // the originals of 1 and 2 arrive after all: their timing includes the RTO wait
        let mut d = Delivered::default();
        b.ack_to(s(300), &mut d);
        let n = d.newest.unwrap();
        assert_eq!(
            n.end,
            s(100),
            "the retransmission is the most recently sent"
        );
        assert!(n.retransmitted && !n.was_lost);
        let mut d = Delivered::default();
        b.ack_to(s(400), &mut d);
        let n = d.newest.unwrap();
        assert!(n.was_lost && !n.retransmitted);
    }

    #[test]
    fn split_keeps_condition_totals_and_the_fin_at_the_end() {
        let mut b = board();
        b.push(s(500), s(601), true, Instant::from_millis(5), 0);
        assert!(b.mark_lost(5, LossCause::Rto));
        let (pipe, lost) = (b.pipe(), b.lost_bytes());
        b.split(5, s(560));
        assert_eq!(b.len(), 7);
        let (head, tail) = (b.get(5), b.get(6));
        assert_eq!((head.start, head.end, head.fin), (s(500), s(560), false));
        assert_eq!((tail.start, tail.end, tail.fin), (s(560), s(601), true));
        assert_eq!(
            (head.lost, tail.lost),
            (Some(LossCause::Rto), Some(LossCause::Rto))
        );
        assert_eq!((b.pipe(), b.lost_bytes()), (pipe, lost));
        assert_eq!(
            b.next_lost().map(|(i, seg)| (i, seg.end)),
            Some((5, s(560)))
        );
        b.split(0, s(40));
        assert_eq!(
            (b.get(0).end, b.get(1).start, b.get(1).end),
            (s(40), s(40), s(100))
        );
        assert_eq!(b.pipe(), pipe);
    }

    #[test]
    fn a_shrunk_window_takes_what_lies_beyond_out_of_flight() {
        let mut b = board();
        b.mark_beyond(s(250));
        // [200, 300) starts inside the window and stays in flight; the two after it do not
        assert_eq!((b.pipe(), b.lost_bytes()), (300, 200));
        assert_eq!(
            b.next_lost().map(|(i, x)| (i, x.lost)),
            Some((3, Some(LossCause::Window)))
        );
        // a split keeps the byte totals, and both halves wait
        b.split(3, s(320));
        assert_eq!(b.len(), 6);
        assert_eq!((b.pipe(), b.lost_bytes()), (300, 200));
        let (i, head) = b.next_lost().unwrap();
        assert_eq!((i, head.start, head.end), (3, s(300), s(320)));
        b.on_retransmit(3, Instant::from_millis(9), 0);
        assert_eq!((b.pipe(), b.lost_bytes()), (320, 180));
        assert_eq!(
            b.next_lost().map(|(_, x)| (x.start, x.end)),
            Some((s(320), s(400)))
        );
        // a FIN stays with the second half
        let mut f = Scoreboard::new();
        f.push(s(0), s(101), true, Instant::ZERO, 0);
        f.split(0, s(60));
        assert_eq!((f.get(0).fin, f.get(1).fin), (false, true));
        assert_eq!((f.get(1).payload_len(), f.pipe()), (40, 101));
    }

    #[test]
    fn dupthresh_needs_three_segments_sacked_above() {
        let mut b = board();
        let mut d = Delivered::default();
        b.sack(s(300), s(500), &mut d);
        assert_eq!(b.dupthresh_detect(100), 0);
        b.sack(s(200), s(300), &mut d);
        // 300 bytes SACKed above each of the first two: both lost by RFC 6675 IsLost
        assert_eq!(b.dupthresh_detect(100), 2);
        assert_eq!(b.next_lost().map(|(i, _)| i), Some(0));
        // once resent, a segment is not marked lost again by the same SACKs
        b.on_retransmit(0, Instant::from_millis(20), 0);
        b.on_retransmit(1, Instant::from_millis(20), 0);
        assert_eq!(b.dupthresh_detect(100), 0);
        assert_eq!(b.pipe(), 200);
    }
}
