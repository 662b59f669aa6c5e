//! SYN cookies (RFC 4987 3.6), encoded as Linux encodes them: once a listener's SYN queue is
//! full, the SYN-ACK's sequence number carries what the handshake needs, and no state is kept
//! until the peer's ACK returns it.
//!
//! The initial sequence number is
//! `H1(tuple) + peer ISN + (count << 24) + ((H2(tuple, count) + mss index) mod 2^24)`, where
//! `count` is a minute counter, `H1` and `H2` keyed hashes (SipHash-2-4 under a key of its own,
//! rekeyed through a [`KeyRing`]) and the MSS index picks from [`MSS_TABLE`]. A cookie is good
//! for [`MAX_AGE`] minutes (plus the one it was made in), under the current key or the one
//! before.
//!
//! With timestamps, the low [`TS_OPT_BITS`] bits of the SYN-ACK's TSval carry the options the
//! sequence number has no room for: the peer's window shift (4 bits, 15 for none),
//! SACK-permitted and ECN; the peer echoes them in its ACK's TSecr. Without timestamps the
//! connection has neither window scaling nor SACK (as on Linux).

use std::net::SocketAddrV4;

use super::isn::tuple_hash;
use super::secret::{KeyRing, Secret};
use crate::time::{Duration, Instant};
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

/// The MSS values a cookie can encode (Linux's `msstab`): the largest not above the peer's is
/// chosen.
pub const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];

const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
/// Minutes a cookie stays good after the minute it was made in (Linux's `MAX_SYNCOOKIE_AGE`).
pub const MAX_AGE: u32 = 2;
/// Low bits of the TSval carrying options.
pub const TS_OPT_BITS: u32 = 6;
const TS_WSCALE_MASK: u32 = 0xf;
const TS_SACK: u32 = 1 << 4;
const TS_ECN: u32 = 1 << 5;
/// How long after a listener last sent a cookie an ACK to it is checked as one.
pub const LIFETIME: Duration = Duration::from_secs(60 * (MAX_AGE as u64 + 1));

/// The options a cookie brings back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieOptions {
    /// The peer's MSS, from [`MSS_TABLE`].
    pub mss: u16,
    /// The peer's window shift, if it offered scaling (only known with timestamps).
    pub wscale: Option<u8>,
    pub sack: bool,
    pub ecn: bool,
    /// The peer's TSval and the TSecr it echoed, if the ACK carried timestamps.
    pub timestamp: Option<(u32, u32)>,
}

/// The keys cookies are made and checked under.
#[derive(Debug, Clone)]
pub struct CookieJar {
    keys: KeyRing,
}

fn minute(now: Instant) -> u32 {
    (now.as_micros() / 60_000_000) as u32
}

/// The index in [`MSS_TABLE`] of the largest entry not above `mss` (the smallest if all are).
pub fn mss_index(mss: u16) -> usize {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0)
}

impl CookieJar {
    /// Keys derived from `secret`, changed every `rekey` (never if zero).
    pub fn new(secret: &Secret, rekey: Duration) -> Self {
        CookieJar {
            keys: KeyRing::new(secret, b"syncookie", rekey),
        }
    }

    fn h2(key: &Secret, local: SocketAddrV4, remote: SocketAddrV4, count: u32) -> u32 {
        let mut b = [0u8; 17];
        b[0] = 2;
        b[1..5].copy_from_slice(&local.ip().octets());
        b[5..7].copy_from_slice(&local.port().to_be_bytes());
        b[7..11].copy_from_slice(&remote.ip().octets());
        b[11..13].copy_from_slice(&remote.port().to_be_bytes());
        b[13..17].copy_from_slice(&count.to_le_bytes());
        key.hash(&b) as u32
    }

    fn encode(
        key: &Secret,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer_isn: SeqNumber,
        count: u32,
        mss_idx: u32,
    ) -> u32 {
        (tuple_hash(key, 1, local, remote) as u32)
            .wrapping_add(peer_isn.0)
            .wrapping_add(count << COOKIE_BITS)
            .wrapping_add(Self::h2(key, local, remote, count).wrapping_add(mss_idx) & COOKIE_MASK)
    }

    /// Our ISN for a SYN from `remote` to `local` carrying `peer_isn`, encoding the peer's MSS.
    pub fn make(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer_isn: SeqNumber,
        peer_mss: u16,
    ) -> SeqNumber {
        self.keys.advance(now);
        let idx = mss_index(peer_mss) as u32;
        SeqNumber(Self::encode(
            self.keys.current(),
            local,
            remote,
            peer_isn,
            minute(now),
            idx,
        ))
    }

    /// Checks that `cookie` (the ACK's acknowledgement less one) is one we made for this tuple
    /// and `peer_isn` (the ACK's sequence number less one) within [`MAX_AGE`]; the MSS it
    /// encodes if so.
    pub fn check(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        peer_isn: SeqNumber,
        cookie: SeqNumber,
    ) -> Option<u16> {
        self.keys.advance(now);
        let now_count = minute(now);
        for key in [self.keys.current(), self.keys.previous()] {
            let c = cookie
                .0
                .wrapping_sub(tuple_hash(key, 1, local, remote) as u32)
                .wrapping_sub(peer_isn.0);
            let age = now_count.wrapping_sub(c >> COOKIE_BITS) & (u32::MAX >> COOKIE_BITS);
            if age > MAX_AGE {
                continue;
            }
            let count = now_count.wrapping_sub(age);
            let idx = c.wrapping_sub(Self::h2(key, local, remote, count)) & COOKIE_MASK;
            if let Some(&mss) = MSS_TABLE.get(idx as usize) {
                return Some(mss);
            }
        }
        None
    }
}

/// The TSval of a cookie's SYN-ACK: `tsval` (our clock for the connection) with its low bits
/// replaced by the options, never later than `tsval`.
pub fn encode_ts(tsval: u32, wscale: Option<u8>, sack: bool, ecn: bool) -> u32 {
    let mut opts = wscale.map_or(TS_WSCALE_MASK, |w| u32::from(w) & TS_WSCALE_MASK);
    if sack {
        opts |= TS_SACK;
    }
    if ecn {
        opts |= TS_ECN;
    }
    let mask = (1u32 << TS_OPT_BITS) - 1;
    let ts = (tsval & !mask) | opts;
    if (ts.wrapping_sub(tsval) as i32) > 0 {
        ts.wrapping_sub(1 << TS_OPT_BITS)
    } else {
        ts
    }
}

/// What the peer's ACK brings back: its echoed TSecr's option bits (if it has timestamps) and
/// the MSS from the sequence number. `None` if the echo is malformed (a window shift over 14).
pub fn decode_options(ack: &TcpRepr, mss: u16) -> Option<CookieOptions> {
    let mut o = CookieOptions {
        mss,
        wscale: None,
        sack: false,
        ecn: false,
        timestamp: ack.options.timestamp,
    };
    let Some((_, ecr)) = ack.options.timestamp else {
        return Some(o);
    };
    if ecr == 0 {
        return Some(o);
    }
    o.sack = ecr & TS_SACK != 0;
    o.ecn = ecr & TS_ECN != 0;
    let ws = ecr & TS_WSCALE_MASK;
    if ws != TS_WSCALE_MASK {
        if ws > 14 {
            return None;
        }
        o.wscale = Some(ws as u8);
    }
    Some(o)
}

/// The SYN the peer sent, as far as the cookie and its ACK tell: what
/// [`Connection::accept`](super::Connection::accept) needs to rebuild the connection.
pub fn rebuild_syn(ack: &TcpRepr, o: &CookieOptions) -> TcpRepr<'static> {
    TcpRepr {
        src_port: ack.src_port,
        dst_port: ack.dst_port,
        seq: ack.seq - 1,
        ack: SeqNumber(0),
        flags: TcpFlags::SYN,
        window: ack.window,
        urgent: 0,
        options: TcpOptions {
            mss: Some(o.mss),
            window_scale: o.wscale,
            sack_permitted: o.sack,
            timestamp: o.timestamp.map(|(val, _)| (val, 0)),
            ..TcpOptions::default()
        },
        payload: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a() -> SocketAddrV4 {
        "10.0.0.1:80".parse().unwrap()
    }
    fn b() -> SocketAddrV4 {
        "10.0.0.2:40000".parse().unwrap()
    }

    #[test]
    fn cookie_round_trips_each_mss_and_ages_out() {
        let mut jar = CookieJar::new(&Secret::from_seed(3), Duration::from_secs(3600));
        // the start of minute 16
        let t = Instant::from_secs(960);
        let isn = SeqNumber(0xffff_fff0);
        for (mss, want) in [
            (1460, 1460),
            (9000, 1460),
            (1400, 1300),
            (536, 536),
            (100, 536),
        ] {
            let c = jar.make(t, a(), b(), isn, mss);
            assert_eq!(jar.check(t, a(), b(), isn, c), Some(want));
            // good for the minute it was made in and two more
            let late = t + Duration::from_secs(60 * 2 + 30);
            assert_eq!(jar.check(late, a(), b(), isn, c), Some(want));
            let too_late = t + Duration::from_secs(60 * 4);
            assert_eq!(jar.check(too_late, a(), b(), isn, c), None);
        }
    }

    #[test]
    fn a_cookie_is_bound_to_its_tuple_isn_and_key() {
        let s = Secret::from_seed(4);
        let mut jar = CookieJar::new(&s, Duration::ZERO);
        let t = Instant::from_secs(10);
        let isn = SeqNumber(7);
        let c = jar.make(t, a(), b(), isn, 1460);
        let other: SocketAddrV4 = "10.0.0.2:40001".parse().unwrap();
        assert_eq!(jar.check(t, a(), other, isn, c), None);
        // (a sequence number off by less than the table's length would only change the MSS: the
        // ACK's sequence number is the SYN's plus one exactly, as on Linux)
        assert_eq!(jar.check(t, a(), b(), isn + 1000, c), None);
        assert_eq!(
            jar.check(t, a(), b(), isn, SeqNumber(c.0 ^ (1 << 24))),
            None
        );
        let mut other_jar = CookieJar::new(&Secret::from_seed(5), Duration::ZERO);
        assert_eq!(other_jar.check(t, a(), b(), isn, c), None);
        // blind guesses: about 4 in 2^24 pass the MSS check for a given minute, so a few
        // thousand guesses find none
        let found = (0..5000u32)
            .filter(|i| {
                jar.check(t, a(), b(), isn, SeqNumber(i.wrapping_mul(0x9e37_79b9)))
                    .is_some()
            })
            .count();
        assert_eq!(found, 0);
    }

    #[test]
    fn a_cookie_survives_one_rekey() {
        let mut jar = CookieJar::new(&Secret::from_seed(6), Duration::from_secs(600));
        let isn = SeqNumber(99);
        let t = Instant::from_secs(599);
        let c = jar.make(t, a(), b(), isn, 1440);
        assert_eq!(
            jar.check(Instant::from_secs(601), a(), b(), isn, c),
            Some(1440)
        );
    }

    #[test]
    fn timestamp_bits_round_trip_and_never_run_ahead() {
        for tsval in [0u32, 5, 63, 64, 1000, u32::MAX, 0x8000_0000] {
            for ws in [None, Some(0), Some(7), Some(14)] {
                for (sack, ecn) in [(false, false), (true, false), (false, true), (true, true)] {
                    let ts = encode_ts(tsval, ws, sack, ecn);
                    assert!((tsval.wrapping_sub(ts) as i32) >= 0, "{ts} after {tsval}");
                    assert!(tsval.wrapping_sub(ts) < 64);
                    let ack = TcpRepr {
                        options: TcpOptions {
                            timestamp: Some((1, ts)),
                            ..TcpOptions::default()
                        },
                        ..blank()
                    };
                    let o = decode_options(&ack, 1460).unwrap();
                    if ts != 0 {
                        assert_eq!((o.wscale, o.sack, o.ecn), (ws, sack, ecn));
                    }
                }
            }
        }
    }

    fn blank() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(0),
            ack: SeqNumber(0),
            flags: TcpFlags::ACK,
            window: 0,
            urgent: 0,
            options: TcpOptions::default(),
            payload: &[],
        }
    }

    fn decoded(ts: Option<(u32, u32)>) -> CookieOptions {
        CookieOptions {
            mss: 1460,
            wscale: None,
            sack: false,
            ecn: false,
            timestamp: ts,
        }
    }

    #[test]
    fn without_timestamps_no_scaling_nor_sack() {
        let ack = TcpRepr {
            seq: SeqNumber(101),
            ..blank()
        };
        let o = decode_options(&ack, 1300).unwrap();
        assert_eq!(o, decoded(None).with_mss(1300));
        let syn = rebuild_syn(&ack, &o);
        assert_eq!(syn.seq, SeqNumber(100));
        assert_eq!(syn.options.mss, Some(1300));
        assert!(syn.flags.syn() && !syn.flags.ack());
    }

    impl CookieOptions {
        fn with_mss(mut self, mss: u16) -> Self {
            self.mss = mss;
            self
        }
    }
}
