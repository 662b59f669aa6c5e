//! One connection's TCP timestamps (RFC 7323): the TSval it sends, TS.Recent (the peer's value
//! it echoes) with its age, the PAWS test, and round-trip times from echoed values.
//!
//! Our timestamp clock ticks in milliseconds of the engine's clock plus a per-connection offset,
//! a keyed hash of the secret and the 4-tuple (RFC 7323 5.4), the same construction as the ISN
//! under another domain: TSval tells nothing of the engine's uptime nor of the ISN's clock term,
//! yet one 4-tuple always gets the same offset, so successive incarnations of a connection send
//! increasing values, as PAWS and reuse of TIME-WAIT (RFC 6191) need.
//!
//! TS.Recent is taken from the peer's SYN, then only from segments the connection has accepted
//! (after the sequence, RST, SYN and ACK checks of RFC 9293 3.10.7.4), that satisfy
//! SEG.SEQ <= Last.ACK.sent (RFC 7323 4.3) and whose TSval is not older: while valid it never
//! moves back, and a blind segment (which fails the ACK check unless its sender also guessed an
//! acceptable acknowledgement) cannot move it forward. It is valid for [`PAWS_IDLE`] (24 days)
//! after its last update (5.5); then PAWS accepts any value and the next accepted segment sets
//! it afresh.
//!
//! The connection calls [`Timestamps::on_syn`] for the peer's SYN, [`Timestamps::paws_rejects`]
//! in the sequence check, [`Timestamps::on_accepted`] once a segment passed the ACK check,
//! [`Timestamps::val`] and [`Timestamps::recent`] for every segment it sends, and
//! [`Timestamps::rtt`] for an acknowledgement of new data it could not time otherwise.

use std::net::SocketAddrV4;

use super::isn::tuple_hash;
use super::secret::Secret;
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

/// How long TS.Recent stays valid after its last update (RFC 7323 5.5): the peer's clock, at
/// one tick per millisecond at most, cannot wrap half its 32-bit space in less.
pub const PAWS_IDLE: Duration = Duration::from_secs(24 * 24 * 3600);

/// Domain of [`tuple_hash`] for the timestamp offset.
const OFFSET_DOMAIN: u8 = 1;

/// The offset of the connection from `local` to `remote`: a keyed hash under a key derived from
/// `secret` for timestamps alone. Never rekeyed, so successive incarnations of a 4-tuple keep
/// one increasing clock.
pub fn offset(secret: &Secret, local: SocketAddrV4, remote: SocketAddrV4) -> u32 {
    tuple_hash(&secret.derive(b"ts"), OFFSET_DOMAIN, local, remote) as u32
}

/// Our TSval at `now` for a connection whose offset is `offset`.
#[inline]
pub fn val_at(offset: u32, now: Instant) -> u32 {
    (now.as_millis() as u32).wrapping_add(offset)
}

#[derive(Debug, Clone)]
pub struct Timestamps {
    offset: u32,
    recent: u32,
    /// When TS.Recent was last set; `None` before the peer's SYN.
    recent_at: Option<Instant>,
}

impl Timestamps {
    /// The clock of the connection from `local` to `remote` under `secret`.
    pub fn new(secret: &Secret, local: SocketAddrV4, remote: SocketAddrV4) -> Self {
        Timestamps {
            offset: offset(secret, local, remote),
            recent: 0,
            recent_at: None,
        }
    }

    /// Our TSval at `now`.
    #[inline]
    pub fn val(&self, now: Instant) -> u32 {
        val_at(self.offset, now)
    }

    /// TS.Recent: the value to echo.
    #[inline]
    pub fn recent(&self) -> u32 {
        self.recent
    }

    fn valid(&self, now: Instant) -> bool {
        self.recent_at.is_some_and(|t| now - t < PAWS_IDLE)
    }

    /// The peer's SYN carried `tsval`.
    pub fn on_syn(&mut self, tsval: u32, now: Instant) {
        self.recent = tsval;
        self.recent_at = Some(now);
    }

    /// PAWS (RFC 7323 5.3 R1): a segment other than an RST carrying `tsval` is an old
    /// duplicate, to drop, when `tsval` is older than a valid TS.Recent.
    #[inline]
    pub fn paws_rejects(&self, tsval: u32, now: Instant) -> bool {
        (tsval.wrapping_sub(self.recent) as i32) < 0 && self.valid(now)
    }

    /// A segment at `seq` carrying `tsval` was accepted, and the last acknowledgement we sent
    /// was `last_ack_sent`: record its TSval if it is due (RFC 7323 4.3).
    #[inline]
    pub fn on_accepted(
        &mut self,
        tsval: u32,
        seq: SeqNumber,
        last_ack_sent: SeqNumber,
        now: Instant,
    ) {
        if seq.diff(last_ack_sent) <= 0
            && ((tsval.wrapping_sub(self.recent) as i32) >= 0 || !self.valid(now))
        {
            self.recent = tsval;
            self.recent_at = Some(now);
        }
    }

    /// Whether `tsval` is newer than TS.Recent (RFC 6191's test of a SYN in TIME-WAIT).
    pub fn is_newer(&self, tsval: u32) -> bool {
        (tsval.wrapping_sub(self.recent) as i32) > 0
    }

    /// The round-trip time an acknowledgement of new data echoing `ecr` measures (RFC 7323 4.1),
    /// at the clock's millisecond granularity (never less than one tick). `None` for an echo
    /// that is no value we sent within `max` before `now` (zero, from the future, or too old).
    pub fn rtt(&self, ecr: u32, now: Instant, max: Duration) -> Option<Duration> {
        let ticks = self.val(now).wrapping_sub(ecr) as i32;
        if ecr == 0 || ticks < 0 || ticks as u64 > max.as_millis() {
            return None;
        }
        Some(Duration::from_millis(ticks.max(1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn offset_is_per_tuple_and_secret_and_stable() {
        let (a, b, c) = (
            addr("10.0.0.1:80"),
            addr("10.0.0.2:4000"),
            addr("10.0.0.2:4001"),
        );
        let t = ms(5000);
        let ab = Timestamps::new(&Secret::from_seed(7), a, b);
        // two connections at the same instant: their values differ by more than any clock term
        // could explain, and neither is the engine's uptime
        let ac = Timestamps::new(&Secret::from_seed(7), a, c);
        assert_ne!(ab.val(t), ac.val(t));
        assert_ne!(ab.val(t), 5000);
        assert_ne!(
            ab.val(t),
            Timestamps::new(&Secret::from_seed(8), a, b).val(t)
        );
        // a new incarnation of one tuple continues its clock
        assert_eq!(
            Timestamps::new(&Secret::from_seed(7), a, b).val(ms(6000)),
            ab.val(t).wrapping_add(1000)
        );
        // the offset is not the ISN's hash term
        let isn = super::super::isn::IsnGenerator::new(&Secret::from_seed(7), Duration::ZERO)
            .generate(Instant::ZERO, a, b);
        assert_ne!(ab.val(Instant::ZERO), isn.0);
    }

    #[test]
    fn ts_recent_moves_forward_only_from_segments_covering_last_ack_sent() {
        let mut ts = Timestamps::new(
            &Secret::from_seed(1),
            addr("10.0.0.1:1"),
            addr("10.0.0.2:2"),
        );
        ts.on_syn(1000, ms(0));
        let last_ack = SeqNumber(500);
        // beyond Last.ACK.sent (out of order, or after a delayed ACK's first segment): ignored
        ts.on_accepted(1100, SeqNumber(600), last_ack, ms(10));
        assert_eq!(ts.recent(), 1000);
        ts.on_accepted(1100, SeqNumber(500), last_ack, ms(10));
        assert_eq!(ts.recent(), 1100);
        // an older value never moves it back
        ts.on_accepted(1050, SeqNumber(400), last_ack, ms(20));
        assert_eq!(ts.recent(), 1100);
        assert!(ts.paws_rejects(1099, ms(20)));
        assert!(!ts.paws_rejects(1100, ms(20)));
        // across the wrap of the peer's clock
        ts.on_syn(u32::MAX - 5, ms(0));
        assert!(!ts.paws_rejects(3, ms(1)));
        assert!(ts.paws_rejects(u32::MAX - 6, ms(1)));
    }

    #[test]
    fn ts_recent_is_invalid_after_24_days() {
        let mut ts = Timestamps::new(
            &Secret::from_seed(1),
            addr("10.0.0.1:1"),
            addr("10.0.0.2:2"),
        );
        ts.on_syn(1000, ms(0));
        let just_before = Instant::ZERO + (PAWS_IDLE - Duration::from_millis(1));
        assert!(ts.paws_rejects(999, just_before));
        let after = Instant::ZERO + PAWS_IDLE;
        assert!(!ts.paws_rejects(999, after));
        // the first accepted segment then sets it, whatever its value
        ts.on_accepted(999, SeqNumber(0), SeqNumber(0), after);
        assert_eq!(ts.recent(), 999);
        assert!(ts.paws_rejects(998, after));
    }

    #[test]
    fn rtt_from_an_echo_of_our_own_clock() {
        let ts = Timestamps::new(
            &Secret::from_seed(3),
            addr("10.0.0.1:1"),
            addr("10.0.0.2:2"),
        );
        let max = Duration::from_secs(60);
        let sent = ts.val(ms(1000));
        assert_eq!(
            ts.rtt(sent, ms(1250), max),
            Some(Duration::from_millis(250))
        );
        // the same tick: one tick, never zero
        assert_eq!(ts.rtt(sent, ms(1000), max), Some(Duration::from_millis(1)));
        // from the future, too old, or zero: no sample
        assert_eq!(ts.rtt(sent.wrapping_add(5), ms(1000), max), None);
        assert_eq!(ts.rtt(sent, ms(61_001), max), None);
        assert_eq!(ts.rtt(0, ms(1000), max), None);
    }
}
