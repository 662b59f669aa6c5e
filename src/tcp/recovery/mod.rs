//! Loss detection and recovery on the sending side, in the order they act:
//! - RACK (RFC 8985, [`Rack`]): a segment sent before one that has since been delivered
//!   (cumulatively or by SACK) is lost once it is older than that RTT plus a reordering window;
//!   the reordering timer looks again when the window runs out. With SACK this is the primary
//!   detector, backed by the duplicate threshold of RFC 6675.
//! - Without SACK, three duplicate ACKs trigger fast retransmit and NewReno recovery (RFC 6582),
//!   with limited transmit (RFC 3042) on the first two.
//! - The tail loss probe (RFC 8985 section 7) resends the last segment (or sends new data) two
//!   SRTTs after the last transmission, so a lost tail is repaired without waiting for the RTO.
//! - The RTO (RFC 6298) marks everything unacknowledged lost and restarts from one segment.
//!
//! Fast recovery sends retransmissions first, then new data, while RFC 6675's `pipe` is below
//! `cwnd`; congestion control reduces once per recovery episode, a timeout included: a repeated
//! RTO, or one during fast recovery, keeps the ssthresh the episode set (RFC 5681 3.1). D-SACKs
//! (RFC 2883) widen RACK's reordering window and tell a tail loss probe that repaired nothing.
//! An episode found spurious, by timestamps or D-SACKs ([`undo`]), has its reduction taken
//! back.
//!
//! [`Recovery`] holds only the state of these mechanisms. The scoreboard, the congestion
//! controller, the RTT estimator, the timer table and the counters stay the connection's and are
//! lent for each call in a [`Ctx`]. Invariants: at most one recovery episode at a time, ending
//! once `snd_una` passes the `snd_max` it began at; no new NewReno fast retransmit until
//! `snd_una` passes `recover`; at most one tail loss probe outstanding, and none armed during an
//! episode; the reordering timer is armed only while RACK waits for a segment to grow old enough,
//! and the probe timer never later than the RTO.
//!
//! The connection calls, per ACK: [`Recovery::on_dupack`] or [`Recovery::on_cumulative_ack`],
//! [`Recovery::on_sack_blocks`], then [`Recovery::on_ack`], then (after the window update)
//! [`Recovery::schedule_probe`]; per timer: [`Recovery::on_probe_timer`],
//! [`Recovery::detect_losses`] (reordering) and [`Recovery::on_rto`]; from its output path
//! [`Recovery::take_probe_due`], [`Recovery::on_probe_sent`], [`Recovery::may_retransmit`],
//! [`Recovery::on_retransmit`] and [`Recovery::cwnd_room`].

mod rack;
mod undo;

pub(crate) use rack::Rack;
use undo::Undo;

use super::congestion::{CongestionControl, Controller};
use super::rtt::RttEstimator;
use super::scoreboard::{Delivered, LossCause, Scoreboard};
use super::stats::Counters;
use super::timers::{TimerKind, Timers};
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// Added to the tail loss probe timeout when a single segment is in flight: the peer may hold
/// its ACK that long (RFC 8985 WCDelAckT).
const TLP_DELACK_ALLOWANCE: Duration = Duration::from_millis(200);
/// Floor of the tail loss probe timeout (as Linux).
const TLP_MIN: Duration = Duration::from_millis(10);

/// What recovery works on, lent by the connection for one call.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub sb: &'a mut Scoreboard,
    pub cc: &'a mut Controller,
    pub rtt: &'a RttEstimator,
    pub timers: &'a mut Timers,
    pub stats: &'a mut Counters,
    /// Payload bytes per segment.
    pub mss: usize,
    /// SACK was negotiated.
    pub sack: bool,
    pub snd_una: SeqNumber,
    pub snd_max: SeqNumber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Episode {
    /// snd_max when it began: it ends once snd_una passes this.
    point: SeqNumber,
    /// Fast recovery (cwnd frozen) rather than after an RTO (slow start).
    fast: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TailProbe {
    /// snd_max after the probe: the probe's episode ends when this is acknowledged.
    end: SeqNumber,
    retransmission: bool,
    dsacked: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    rack: Rack,
    episode: Option<Episode>,
    /// NewReno's `recover` (RFC 6582): no new fast retransmit until snd_una passes it.
    recover: SeqNumber,
    dupacks: u32,
    /// Retransmit the first lost segment at once, whatever cwnd says (RFC 6675 4.2).
    rexmit_head: bool,
    probe: Option<TailProbe>,
    /// The probe timer fired: the next transmission opportunity sends the probe.
    probe_due: bool,
    /// How to take back the last episode's reduction, should it prove spurious.
    /// Boxed: only connections that saw a loss episode pay for it.
    undo: Option<Box<Undo>>,
}

impl Recovery {
    /// Recovery for a connection whose first sequence number is `iss`.
    pub fn new(iss: SeqNumber) -> Self {
        Recovery {
            rack: Rack::default(),
            episode: None,
            recover: iss,
            dupacks: 0,
            rexmit_head: false,
            probe: None,
            probe_due: false,
            undo: None,
        }
    }

    /// Heap bytes held (the undo record, while there is one).
    pub fn heap_bytes(&self) -> usize {
        self.undo
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<Undo>())
    }

    /// No recovery episode and no tail loss probe outstanding: an acknowledgement that
    /// delivers nothing has nothing to end here.
    #[inline]
    pub fn is_idle(&self) -> bool {
        self.episode.is_none() && self.probe.is_none()
    }

    /// In a recovery episode (fast, or after an RTO).
    #[inline]
    pub fn in_recovery(&self) -> bool {
        self.episode.is_some()
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        self.rack.min_rtt
    }

    /// A duplicate ACK arrived (no data, no window change, something outstanding).
    pub fn on_dupack(&mut self) {
        self.dupacks += 1;
    }

    /// New data was acknowledged cumulatively: outside an episode the duplicates are spent.
    #[inline]
    pub fn on_cumulative_ack(&mut self) {
        if self.episode.is_none() {
            self.dupacks = 0;
        }
    }

    /// Applies the SACK blocks of an ACK (whose cumulative part is `ack`) to the scoreboard; a
    /// D-SACK (RFC 2883: a first block below the cumulative ACK or inside the second block)
    /// tells of a spurious retransmission or reordering instead.
    pub fn on_sack_blocks(
        &mut self,
        cx: &mut Ctx,
        blocks: &[(SeqNumber, SeqNumber)],
        ack: SeqNumber,
        delivered: &mut Delivered,
    ) {
        if !blocks.is_empty() {
            cx.stats.rare().sack_blocks_in += blocks.len() as u64;
        }
        for (i, &(left, right)) in blocks.iter().enumerate() {
            if right.diff(left) <= 0 {
                continue;
            }
            let dsack = i == 0
                && (right.diff(ack) <= 0
                    || blocks
                        .get(1)
                        .is_some_and(|&(l2, r2)| left.diff(l2) >= 0 && right.diff(r2) <= 0));
            if dsack {
                cx.stats.rare().dsack_in += 1;
                self.rack.on_dsack();
                if let Some(t) = self.probe.as_mut() {
                    t.dsacked = true;
                }
                // every retransmission reported twice, and nothing left to resend: none of
                // them was needed
                if self.undo.as_mut().is_some_and(|u| u.on_dsack(left, right))
                    && cx.sb.lost_bytes() == 0
                {
                    self.take_back(cx);
                }
                continue;
            }
            // only blocks within what is outstanding count
            let left = left.max(cx.snd_una);
            let right = right.min(cx.snd_max);
            if right.diff(left) > 0 {
                cx.sb.sack(left, right, delivered);
            }
        }
    }

    /// After an ACK's cumulative part, SACK blocks and RTT sample were taken: RACK's clock, the
    /// Eifel test of the episode when `newly_acked` (with `ecr`, the timestamp the ACK echoes),
    /// the end of an episode, congestion control's growth (by `delivered_bytes`, not during fast
    /// recovery nor on an ACK that takes a reduction back), the end of a tail loss probe, loss
    /// detection, and NewReno's partial ACK when `newly_acked`.
    #[inline]
    pub fn on_ack(
        &mut self,
        cx: &mut Ctx,
        delivered: &Delivered,
        delivered_bytes: usize,
        newly_acked: bool,
        ecr: Option<u32>,
    ) {
        self.rack_update(cx.now, delivered, cx.stats);
        let undone = newly_acked && self.episode.is_some() && self.spurious_by_timestamp(cx, ecr);
        if let Some(r) = self.episode {
            if cx.snd_una.diff(r.point) >= 0 {
                self.episode = None;
                // the duplicates counted during recovery are spent: left standing they would
                // start a new (spurious) fast retransmit right away
                self.dupacks = 0;
                if r.fast {
                    cx.cc.on_recovery_end(cx.now);
                }
            }
        }
        if delivered_bytes > 0 && !undone && self.episode.is_none_or(|r| !r.fast) {
            cx.cc.on_ack(cx.now, delivered_bytes, cx.rtt.srtt());
        }
        self.end_probe(cx);
        self.detect_losses(cx);
        if newly_acked && !cx.sack {
            self.newreno_partial_ack(cx);
        }
    }

    /// [`Recovery::on_ack`] for an acknowledgement of new data that leaves nothing in flight,
    /// with SACK on and no episode or tail probe (`is_idle`): RACK's update and congestion
    /// control's growth are what remains of it (no episode or probe ends, no Eifel test, and
    /// the caller runs loss detection should anything stay on the scoreboard).
    #[inline]
    pub fn on_whole_flight_acked(
        &mut self,
        now: Instant,
        delivered: &Delivered,
        delivered_bytes: usize,
        cc: &mut Controller,
        srtt: Option<Duration>,
        stats: &mut Counters,
    ) {
        self.rack_update(now, delivered, stats);
        cc.on_ack(now, delivered_bytes, srtt);
    }

    /// RACK learns what an acknowledgement delivered; a delivery out of order is counted.
    #[inline(always)]
    fn rack_update(&mut self, now: Instant, delivered: &Delivered, stats: &mut Counters) {
        self.rack.update(now, delivered);
        if delivered.reordered {
            stats.rare().reorder_seen += 1;
        }
    }

    /// Runs RACK (and, with SACK, the duplicate threshold) over the scoreboard, arming or
    /// clearing the reordering timer; without SACK, NewReno's fast retransmit. Enters fast
    /// recovery if anything new was marked lost.
    #[inline]
    pub fn detect_losses(&mut self, cx: &mut Ctx) {
        if cx.sack && cx.sb.is_empty() {
            // nothing in flight (every ACK of a request/response exchange, every ACK a receiver
            // sends): RACK and the duplicate threshold have nothing to mark and no deadline;
            // decided here, inlined, rather than after the call's register saves (~20
            // instructions a round trip)
            cx.timers.clear(TimerKind::Reorder);
            return;
        }
        self.detect_losses_in_flight(cx);
    }

    /// [`Recovery::detect_losses`] with something in flight, or without SACK.
    fn detect_losses_in_flight(&mut self, cx: &mut Ctx) {
        let mut marked = 0;
        if cx.sack {
            let in_recovery = self.episode.is_some();
            let dupthresh_met = cx.sb.sacked_bytes() >= 3 * cx.mss;
            let srtt = cx.rtt.srtt().unwrap_or(cx.rtt.base_rto());
            let reo_wnd = self.rack.reo_wnd(in_recovery, dupthresh_met, srtt);
            let (n, recheck) = self.rack.detect(cx.now, cx.sb, reo_wnd);
            marked += n + cx.sb.dupthresh_detect(cx.mss);
            cx.timers.set_or_clear(TimerKind::Reorder, recheck);
        } else if self.dupacks >= 3 && self.episode.is_none() && cx.snd_una.diff(self.recover) >= 0
        {
            // NewReno fast retransmit (RFC 6582 3.2 step 2)
            if !cx.sb.is_empty() && cx.sb.mark_lost(0, LossCause::Fast) {
                marked += 1;
            }
        }
        if marked > 0 && self.episode.is_none() {
            cx.stats.rare().fast_recoveries += 1;
            if cx.sack {
                cx.stats.rare().sack_recoveries += 1;
            }
            let flight = cx.sb.pipe() + cx.sb.lost_bytes();
            self.undo = Some(Box::new(Undo::new(cx.cc.snapshot(), false)));
            cx.cc.on_congestion_event(cx.now, flight);
            self.episode = Some(Episode {
                point: cx.snd_max,
                fast: true,
            });
            self.recover = cx.snd_max;
            self.rexmit_head = true;
            cx.timers.clear(TimerKind::TailLossProbe);
        }
    }

    /// NewReno partial acknowledgment (RFC 6582 3.2 step 5): the next hole is lost too.
    fn newreno_partial_ack(&mut self, cx: &mut Ctx) {
        if let Some(r) = self.episode {
            if r.fast && cx.snd_una.diff(r.point) < 0 && !cx.sb.is_empty() {
                cx.sb.mark_lost(0, LossCause::Fast);
                self.rexmit_head = true;
                self.dupacks = 0;
            }
        }
    }

    /// The probe's episode ends once what it sent is acknowledged. If it was a retransmission
    /// that no D-SACK called spurious, it repaired a real loss: reduce as for one
    /// (RFC 8985 7.4).
    fn end_probe(&mut self, cx: &mut Ctx) {
        let Some(t) = self.probe else { return };
        if cx.snd_una.diff(t.end) < 0 {
            return;
        }
        self.probe = None;
        if t.retransmission && !t.dsacked && self.episode.is_none() {
            let flight = cx.sb.pipe();
            // a reduction of its own: an older episode's undo would take it back too
            self.undo = None;
            cx.cc.on_congestion_event(cx.now, flight);
            cx.cc.on_recovery_end(cx.now);
        }
    }

    /// Eifel detection (RFC 3522): an ACK of new data echoing a timestamp older than the
    /// episode's first retransmission answers an original transmission. The episode was spurious
    /// if that ACK ends it, or leaves no retransmission unacknowledged (one still out may repair
    /// a real hole beside the reordered one; as Linux's partial undo). Returns whether the
    /// reduction was taken back.
    #[cold]
    fn spurious_by_timestamp(&mut self, cx: &mut Ctx, ecr: Option<u32>) -> bool {
        let (Some(ecr), Some(ep), Some(u)) = (ecr, self.episode, self.undo.as_ref()) else {
            return false;
        };
        if !u.echo_predates_retransmission(ecr) {
            return false;
        }
        if cx.snd_una.diff(ep.point) < 0 && cx.sb.any_retransmitted() {
            return false;
        }
        self.take_back(cx);
        true
    }

    /// The episode was spurious: congestion control returns to its state before the reduction,
    /// what is still marked lost is in flight again (the originals are getting through), and
    /// the episode ends.
    fn take_back(&mut self, cx: &mut Ctx) {
        let Some(u) = self.undo.take() else { return };
        if u.rto {
            cx.stats.rare().undo_rto += 1;
        } else {
            cx.stats.rare().undo_fast += 1;
        }
        cx.cc.undo(u.prior);
        cx.sb.unmark_lost();
        self.episode = None;
        self.rexmit_head = false;
        self.dupacks = 0;
    }

    /// Arms the tail loss probe (RFC 8985 7.2) after new data went out or was acknowledged, or
    /// clears it when no probe may be sent. `rto_initial` is the timeout without an RTT sample.
    pub fn schedule_probe(&mut self, cx: &mut Ctx, synchronized: bool, rto_initial: Duration) {
        if !cx.sack
            || !synchronized
            || self.episode.is_some()
            || self.probe.is_some()
            || cx.sb.is_empty()
        {
            cx.timers.clear(TimerKind::TailLossProbe);
            return;
        }
        let pto = match cx.rtt.srtt() {
            Some(srtt) => {
                let mut p = srtt.saturating_mul(2);
                if cx.sb.len() == 1 {
                    p = p + TLP_DELACK_ALLOWANCE;
                }
                p.max(TLP_MIN)
            }
            None => rto_initial,
        };
        // a probe that would come after the RTO is sent at the RTO's time instead
        // (RFC 8985 7.2): with one segment in flight, 2 SRTT plus the delayed-ACK allowance
        // is often later than the RTO, and the probe repairs a lost tail without the RTO's
        // collapse of cwnd
        let at = cx.now + pto;
        let at = cx.timers.get(TimerKind::Rto).map_or(at, |rto| rto.min(at));
        cx.timers.set(TimerKind::TailLossProbe, at);
    }

    /// The probe timer fired: a probe is due unless one is outstanding, an episode runs, or
    /// nothing is in flight.
    pub fn on_probe_timer(&mut self, sb: &Scoreboard) {
        if self.probe.is_none() && self.episode.is_none() && !sb.is_empty() {
            self.probe_due = true;
        }
    }

    /// A probe is due and has not been sent yet: it takes the RTO's place.
    #[inline]
    pub fn probe_due(&self) -> bool {
        self.probe_due
    }

    /// Whether the output path should send the probe now; true once per expiry.
    #[inline]
    pub fn take_probe_due(&mut self) -> bool {
        std::mem::take(&mut self.probe_due)
    }

    /// A probe went out (new data, or the last segment again); `end` is snd_max after it.
    pub fn on_probe_sent(&mut self, end: SeqNumber, retransmission: bool) {
        self.probe = Some(TailProbe {
            end,
            retransmission,
            dsacked: false,
        });
    }

    /// The retransmission timer expired (and the connection did not give up): everything
    /// unacknowledged is lost (and, if `forget_sacks`, what was SACKed too: the receiver may
    /// have reneged), an episode in slow start begins, and no probe or reordering check is left.
    pub fn on_rto(&mut self, cx: &mut Ctx, forget_sacks: bool) {
        // ssthresh once per episode: a timeout during one keeps what it set (RFC 5681 3.1)
        let new_episode = self.episode.is_none();
        if new_episode {
            self.undo = Some(Box::new(Undo::new(cx.cc.snapshot(), true)));
        } else if let Some(u) = self.undo.as_mut() {
            u.rto = true;
        }
        cx.cc.on_rto(cx.now, cx.sb.pipe(), new_episode);
        cx.sb.mark_all_lost(forget_sacks);
        self.episode = Some(Episode {
            point: cx.snd_max,
            fast: false,
        });
        self.recover = cx.snd_max;
        self.rexmit_head = true;
        self.dupacks = 0;
        self.probe = None;
        self.probe_due = false;
        cx.timers.clear(TimerKind::TailLossProbe);
        cx.timers.clear(TimerKind::Reorder);
    }

    /// The path MTU fell (RFC 1191): every segment in flight with more than `mss` payload
    /// bytes was dropped on the way; it is marked lost and resent at once. Not a congestion
    /// signal: cwnd and ssthresh stay (Linux's `tcp_simple_retransmit`). Outside an episode one
    /// begins, as after an RTO but without its reduction, so the resent segments are not taken
    /// for new losses; it ends once everything sent so far is acknowledged.
    pub fn on_mtu_reduced(&mut self, cx: &mut Ctx, mss: usize) {
        if cx.sb.mark_oversize_lost(mss) == 0 {
            return;
        }
        self.rexmit_head = true;
        if self.episode.is_none() {
            self.episode = Some(Episode {
                point: cx.snd_max,
                fast: false,
            });
            self.recover = cx.snd_max;
            self.probe = None;
            self.probe_due = false;
            cx.timers.clear(TimerKind::TailLossProbe);
        }
    }

    /// Room congestion control leaves for more bytes in flight.
    #[inline]
    pub fn cwnd_room(&self, cc: &Controller, sb: &Scoreboard, mss: usize, sack: bool) -> usize {
        let mut cwnd = cc.cwnd();
        if !sack {
            // without SACK a duplicate ACK is the only sign a segment left the network: in
            // NewReno recovery each inflates the window by one segment (RFC 6582); before it,
            // the first two allow a segment each (limited transmit, RFC 3042)
            let extra = match self.episode {
                Some(r) if r.fast => self.dupacks as usize,
                Some(_) => 0,
                None => self.dupacks.min(2) as usize,
            };
            cwnd += extra * mss;
        }
        cwnd.saturating_sub(sb.pipe())
    }

    /// Whether congestion control lets a retransmission of `len` bytes go now: the first one
    /// after losses were detected goes regardless (RFC 6675 4.2), as does any when nothing is
    /// in flight.
    pub fn may_retransmit(
        &self,
        len: usize,
        cc: &Controller,
        sb: &Scoreboard,
        mss: usize,
        sack: bool,
    ) -> bool {
        self.rexmit_head || sb.pipe() == 0 || len <= self.cwnd_room(cc, sb, mss, sack)
    }

    /// A retransmission of `[start, end)`, a segment marked lost, went out carrying our TSval
    /// `ts_val`.
    pub fn on_retransmit(&mut self, start: SeqNumber, end: SeqNumber, ts_val: u32) {
        self.rexmit_head = false;
        if self.episode.is_some() {
            if let Some(u) = self.undo.as_mut() {
                u.on_retransmit(start, end, ts_val);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::congestion::Algorithm;

    const MSS: usize = 100;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    /// What a connection lends recovery, owned here.
    struct Conn {
        sb: Scoreboard,
        cc: Controller,
        rtt: RttEstimator,
        timers: Timers,
        stats: Counters,
        sack: bool,
        snd_una: SeqNumber,
        snd_max: SeqNumber,
    }

    impl Conn {
        /// `n` 100-byte segments sent 1 ms apart from sequence number 0, with an SRTT of 10 ms.
        fn sent(n: u32, sack: bool) -> Conn {
            let mut sb = Scoreboard::new();
            for i in 0..n {
                sb.push(s(i * 100), s(i * 100 + 100), false, ms(i as u64), 0);
            }
            let mut rtt = RttEstimator::new(
                Duration::from_secs(1),
                Duration::from_millis(200),
                Duration::from_secs(60),
                Duration::from_millis(1),
            );
            rtt.sample(Duration::from_millis(10));
            Conn {
                sb,
                cc: Controller::new(Algorithm::NewReno, MSS, 10),
                rtt,
                timers: Timers::default(),
                stats: Counters::default(),
                sack,
                snd_una: s(0),
                snd_max: s(n * 100),
            }
        }

        fn cx(&mut self, now: Instant) -> Ctx<'_> {
            Ctx {
                now,
                sb: &mut self.sb,
                cc: &mut self.cc,
                rtt: &self.rtt,
                timers: &mut self.timers,
                stats: &mut self.stats,
                mss: MSS,
                sack: self.sack,
                snd_una: self.snd_una,
                snd_max: self.snd_max,
            }
        }

        /// A duplicate ACK at `now` (SACKing `block` if given), processed as the connection does.
        fn dupack(&mut self, r: &mut Recovery, now: Instant, block: Option<(u32, u32)>) {
            let mut d = Delivered::default();
            r.on_dupack();
            if let Some((a, b)) = block {
                let una = self.snd_una;
                r.on_sack_blocks(&mut self.cx(now), &[(s(a), s(b))], una, &mut d);
            }
            let bytes = d.sacked_bytes;
            r.on_ack(&mut self.cx(now), &d, bytes, false, None);
        }

        /// A cumulative ACK of everything below `ack`.
        fn ack(&mut self, r: &mut Recovery, now: Instant, ack: u32) {
            let mut d = Delivered::default();
            let newly = s(ack) - self.snd_una;
            self.sb.ack_to(s(ack), &mut d);
            self.snd_una = s(ack);
            r.on_cumulative_ack();
            r.on_ack(&mut self.cx(now), &d, newly, true, None);
        }
    }

    #[test]
    fn newreno_fast_retransmit_on_the_third_duplicate_and_partial_acks() {
        let mut c = Conn::sent(5, false);
        let mut r = Recovery::new(s(0));
        let cwnd = c.cc.cwnd();
        c.dupack(&mut r, ms(20), None);
        c.dupack(&mut r, ms(21), None);
        assert!(!r.in_recovery());
        // limited transmit: each of the first two duplicates allows one more segment
        assert_eq!(r.cwnd_room(&c.cc, &c.sb, MSS, false), cwnd + 2 * MSS - 500);
        c.dupack(&mut r, ms(22), None);
        assert!(r.in_recovery());
        assert_eq!(c.stats.snapshot().fast_recoveries, 1);
        assert_eq!(c.sb.next_lost().map(|(i, _)| i), Some(0));
        assert!(
            r.may_retransmit(10_000, &c.cc, &c.sb, MSS, false),
            "the head goes at once"
        );
        c.sb.on_retransmit(0, ms(22), 0);
        r.on_retransmit(s(0), s(100), 0);
        // a partial ACK: the next hole is lost too
        c.ack(&mut r, ms(40), 100);
        assert!(r.in_recovery());
        assert_eq!(c.sb.next_lost().map(|(_, seg)| seg.start), Some(s(100)));
        // the ACK of everything sent before recovery ends it, with cwnd reduced once
        c.ack(&mut r, ms(60), 500);
        assert!(!r.in_recovery());
        assert!(c.cc.cwnd() < cwnd);
    }

    #[test]
    fn duplicates_during_an_rto_episode_start_no_fast_recovery() {
        let mut c = Conn::sent(5, false);
        let mut r = Recovery::new(s(0));
        let mut cx = c.cx(ms(30));
        r.on_rto(&mut cx, false);
        assert!(r.in_recovery());
        for t in 31..34 {
            c.dupack(&mut r, ms(t), None);
        }
        assert_eq!(c.stats.snapshot().fast_recoveries, 0);
        // the RTO's episode ends with an ACK of everything it marked; later data is sent
        c.ack(&mut r, ms(40), 500);
        assert!(!r.in_recovery());
        c.snd_max = s(600);
        c.sb.push(s(500), s(600), false, ms(41), 0);
        // recover is 500: three duplicates of 500 may start fast retransmit again
        for t in 50..53 {
            c.dupack(&mut r, ms(t), None);
        }
        assert!(r.in_recovery());
        assert_eq!(c.stats.snapshot().fast_recoveries, 1);
    }

    #[test]
    fn rack_marks_the_hole_below_a_sack_and_arms_the_reordering_timer() {
        let mut c = Conn::sent(5, true);
        let mut r = Recovery::new(s(0));
        // segment 4 (sent at 4 ms) SACKed at 24 ms: RTT 20 ms; the window is a quarter of it
        c.dupack(&mut r, ms(24), Some((400, 500)));
        assert_eq!(c.stats.snapshot().sack_blocks_in, 1);
        // nothing is older than 20 + 5 ms yet: the timer looks again when segment 0 is
        assert!(!r.in_recovery());
        assert_eq!(c.timers.get(TimerKind::Reorder), Some(ms(25)));
        let mut cx = c.cx(ms(25));
        r.detect_losses(&mut cx);
        assert!(r.in_recovery());
        assert_eq!(c.stats.snapshot().fast_recoveries, 1);
        assert_eq!(c.sb.lost_bytes(), 100);
    }

    #[test]
    fn dsack_widens_the_window_and_marks_the_probe_spurious() {
        let mut c = Conn::sent(2, true);
        let mut r = Recovery::new(s(0));
        let mut cx = c.cx(ms(5));
        r.schedule_probe(&mut cx, true, Duration::from_secs(1));
        // SRTT 10 ms: two of it, no RTO armed to cap it
        assert_eq!(c.timers.get(TimerKind::TailLossProbe), Some(ms(25)));
        c.timers.clear(TimerKind::TailLossProbe);
        r.on_probe_timer(&c.sb);
        assert!(r.probe_due() && r.take_probe_due() && !r.take_probe_due());
        c.sb.on_retransmit(1, ms(25), 0);
        r.on_probe_sent(s(200), true);
        // the probe's ACK carries a D-SACK for the original: nothing was lost
        let mut d = Delivered::default();
        c.sb.ack_to(s(200), &mut d);
        c.snd_una = s(200);
        let ssthresh = c.cc.ssthresh();
        r.on_sack_blocks(&mut c.cx(ms(30)), &[(s(100), s(200))], s(200), &mut d);
        assert_eq!(c.stats.snapshot().dsack_in, 1);
        r.on_ack(&mut c.cx(ms(30)), &d, 200, true, None);
        assert_eq!(
            c.cc.ssthresh(),
            ssthresh,
            "a spurious probe does not reduce"
        );
        assert_eq!(r.rack.reo_wnd_mult, 2);
    }

    #[test]
    fn a_probe_that_repaired_a_loss_reduces_once() {
        let mut c = Conn::sent(2, true);
        let mut r = Recovery::new(s(0));
        r.on_probe_timer(&c.sb);
        assert!(r.take_probe_due());
        c.sb.on_retransmit(1, ms(25), 0);
        r.on_probe_sent(s(200), true);
        let cwnd = c.cc.cwnd();
        c.ack(&mut r, ms(35), 200);
        assert!(c.cc.cwnd() < cwnd + 200, "reduced as for a loss");
        assert!(!r.in_recovery());
    }

    #[test]
    fn the_probe_is_never_later_than_the_rto_nor_armed_in_recovery() {
        let mut c = Conn::sent(1, true);
        let mut r = Recovery::new(s(0));
        c.timers.set(TimerKind::Rto, ms(100));
        let mut cx = c.cx(ms(0));
        // one segment in flight: 2 SRTT + 200 ms would be later than the RTO
        r.schedule_probe(&mut cx, true, Duration::from_secs(1));
        assert_eq!(c.timers.get(TimerKind::TailLossProbe), Some(ms(100)));
        let mut cx = c.cx(ms(100));
        r.on_rto(&mut cx, false);
        assert!(r.in_recovery());
        assert_eq!(c.timers.get(TimerKind::TailLossProbe), None);
        let mut cx = c.cx(ms(101));
        r.schedule_probe(&mut cx, true, Duration::from_secs(1));
        assert_eq!(c.timers.get(TimerKind::TailLossProbe), None);
        r.on_probe_timer(&c.sb);
        assert!(!r.probe_due(), "no probe during an episode");
    }
}
