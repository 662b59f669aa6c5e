//! Initial sequence numbers per RFC 6528: a clock that ticks every 4 microseconds plus a keyed
//! hash (SipHash-2-4, 128-bit key) of the connection's 4-tuple, so sequence spaces of successive
//! incarnations of a connection do not overlap and are not guessable off-path. The key is
//! rekeyed every [`Config::secret_rekey`](super::Config::secret_rekey) through a
//! [`KeyRing`]: a live connection keeps the ISN it was created with, so nothing live breaks.
//! `tuple_hash` is the keyed hash, also behind the per-connection timestamp offset
//! (RFC 7323 5.4) and SYN cookies under their own derived keys.

use std::net::SocketAddrV4;

use super::secret::{KeyRing, Secret};
use crate::time::{Duration, Instant};
use crate::wire::SeqNumber;

#[derive(Debug, Clone)]
pub struct IsnGenerator {
    keys: KeyRing,
}

impl IsnGenerator {
    /// ISNs under a key derived from `secret`, changed every `rekey` (never if zero).
    pub fn new(secret: &Secret, rekey: Duration) -> Self {
        IsnGenerator {
            keys: KeyRing::new(secret, b"isn", rekey),
        }
    }

    pub fn generate(
        &mut self,
        now: Instant,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> SeqNumber {
        self.keys.advance(now);
        let m = (now.as_micros() / 4) as u32;
        SeqNumber(m.wrapping_add(tuple_hash(self.keys.current(), 0, local, remote) as u32))
    }
}

/// A keyed pseudo-random function of a 4-tuple: without the key its value cannot be guessed,
/// with it the same tuple always gives the same value. `domain` separates uses of one key.
#[inline]
pub(crate) fn tuple_hash(
    key: &Secret,
    domain: u8,
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> u64 {
    let mut b = [0u8; 13];
    b[0] = domain;
    b[1..5].copy_from_slice(&local.ip().octets());
    b[5..7].copy_from_slice(&local.port().to_be_bytes());
    b[7..11].copy_from_slice(&remote.ip().octets());
    b[11..13].copy_from_slice(&remote.port().to_be_bytes());
    key.hash(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_tuple_secret_and_clock() {
        let a: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddrV4 = "10.0.0.2:4000".parse().unwrap();
        let c: SocketAddrV4 = "10.0.0.2:4001".parse().unwrap();
        let s = Secret::from_seed(7);
        let mut g = IsnGenerator::new(&s, Duration::ZERO);
        let t = Instant::from_secs(1);
        assert_eq!(g.generate(t, a, b), g.generate(t, a, b));
        assert_ne!(g.generate(t, a, b), g.generate(t, a, c));
        let mut other = IsnGenerator::new(&Secret::from_seed(8), Duration::ZERO);
        assert_ne!(g.generate(t, a, b), other.generate(t, a, b));
        let later = g.generate(t + Duration::from_micros(40), a, b);
        assert_eq!(later.diff(g.generate(t, a, b)), 10);
    }

    #[test]
    fn rekeying_changes_the_hash_term_not_the_clock() {
        let a: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddrV4 = "10.0.0.2:4000".parse().unwrap();
        let s = Secret::from_seed(9);
        let mut g = IsnGenerator::new(&s, Duration::from_secs(60));
        let t0 = Instant::from_secs(59);
        let before = g.generate(t0, a, b);
        let same_epoch = g.generate(t0 + Duration::from_micros(400), a, b);
        assert_eq!(same_epoch.diff(before), 100);
        let after = g.generate(Instant::from_secs(60), a, b);
        // one second of clock is 250000 ticks; a new key moves the value anywhere
        assert_ne!(after.diff(before), 250_000);
    }
}
