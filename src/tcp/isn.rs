//! Initial sequence numbers per RFC 6528: a clock that ticks every 4 microseconds plus a keyed
//! hash of the connection's 4-tuple, so sequence spaces of successive incarnations of a
//! connection do not overlap and are not guessable off-path. `tuple_hash` is the keyed hash,
//! also behind the per-connection timestamp offset (RFC 7323 5.4) under another domain.

use std::hash::Hasher;
use std::net::SocketAddrV4;

use crate::time::Instant;
use crate::wire::SeqNumber;

#[derive(Debug, Clone, Copy)]
pub struct IsnGenerator {
    secret: u64,
}

impl IsnGenerator {
    pub fn new(secret: u64) -> Self {
        IsnGenerator { secret }
    }

    pub fn generate(&self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> SeqNumber {
        let m = (now.as_micros() / 4) as u32;
        SeqNumber(m.wrapping_add(tuple_hash(self.secret, None, local, remote) as u32))
    }
}

/// A keyed pseudo-random function of a 4-tuple: without the secret its value cannot be guessed,
/// with it the same tuple always gives the same value. `domain` separates its uses (`None` is
/// the ISN's), so one value tells nothing of another.
pub(crate) fn tuple_hash(
    secret: u64,
    domain: Option<u8>,
    local: SocketAddrV4,
    remote: SocketAddrV4,
) -> u64 {
    #[allow(deprecated)] // SipHash with our own key; the std type is the keyed PRF we need
    let mut h =
        std::hash::SipHasher::new_with_keys(secret, secret.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15);
    if let Some(d) = domain {
        h.write_u8(d);
    }
    h.write(&local.ip().octets());
    h.write_u16(local.port());
    h.write(&remote.ip().octets());
    h.write_u16(remote.port());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_on_tuple_secret_and_clock() {
        let a: SocketAddrV4 = "10.0.0.1:80".parse().unwrap();
        let b: SocketAddrV4 = "10.0.0.2:4000".parse().unwrap();
        let c: SocketAddrV4 = "10.0.0.2:4001".parse().unwrap();
        let g = IsnGenerator::new(7);
        let t = Instant::from_secs(1);
        assert_eq!(g.generate(t, a, b), g.generate(t, a, b));
        assert_ne!(g.generate(t, a, b), g.generate(t, a, c));
        assert_ne!(g.generate(t, a, b), IsnGenerator::new(8).generate(t, a, b));
        let later = g.generate(t + crate::time::Duration::from_micros(40), a, b);
        assert_eq!(later.diff(g.generate(t, a, b)), 10);
    }
}
