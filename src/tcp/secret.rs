//! Secrets behind everything an off-path attacker must not guess: initial sequence numbers
//! (RFC 6528), timestamp offsets (RFC 7323 5.4) and SYN cookies.
//!
//! A [`Secret`] is a 128-bit key. [`Secret::random`] draws it from the operating system
//! (getrandom(2)); that is what every [`Config`](super::Config) built by `Default` holds, so no
//! constant key exists anywhere in the public API. [`Secret::from_seed`] gives a fixed key for
//! tests and simulations that must replay exactly.
//!
//! The keyed function is SipHash-2-4 (Aumasson and Bernstein), a PRF with a 128-bit key, checked
//! here against the reference test vectors. Each use derives its own key from the secret under a
//! domain label ([`Secret::derive`]), so one output tells nothing about another's.
//!
//! A [`KeyRing`] rekeys over time without breaking anything live: the key of epoch `n + 1` is a
//! one-way function of epoch `n`'s (a ratchet), so a key read out of memory later does not give
//! earlier ones; the previous epoch's key is kept for values still in flight (SYN cookies).
//! Connections compute their ISN once at creation, so a rekey never touches a live connection.

use std::fmt;

use crate::time::{Duration, Instant};

/// A 128-bit key. `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret([u64; 2]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for Secret {
    /// A fresh random key ([`Secret::random`]).
    fn default() -> Self {
        Secret::random()
    }
}

impl Secret {
    /// A key from the operating system's random source. Panics if the OS has none to give
    /// (getrandom(2) failing): running on a guessable key would be worse than not running.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        getrandom::getrandom(&mut b).expect("getrandom: no OS randomness for the TCP secret");
        Secret([
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..].try_into().unwrap()),
        ])
    }

    /// A fixed key expanded from `seed`, for tests and simulations that must replay exactly.
    /// Never use it where an attacker could be on the path: the seed space is only 64 bits.
    pub fn from_seed(seed: u64) -> Self {
        Secret::from_words(0x7365_6564_6b65_7921, seed).derive(b"seed")
    }

    /// The key made of these two words (SipHash's k0 and k1).
    pub const fn from_words(k0: u64, k1: u64) -> Self {
        Secret([k0, k1])
    }

    /// The two words of the key (for tests comparing keys).
    pub fn words(&self) -> [u64; 2] {
        self.0
    }

    /// SipHash-2-4 of `data` under this key.
    #[inline]
    pub fn hash(&self, data: &[u8]) -> u64 {
        siphash24(self.0, data)
    }

    /// A key for one use, named by `label`: independent of the keys of other labels.
    pub fn derive(&self, label: &[u8]) -> Secret {
        let mut buf = [0u8; 40];
        let n = label.len().min(buf.len() - 1);
        buf[1..1 + n].copy_from_slice(&label[..n]);
        buf[0] = 0;
        let k0 = self.hash(&buf[..1 + n]);
        buf[0] = 1;
        let k1 = self.hash(&buf[..1 + n]);
        Secret([k0, k1])
    }
}

/// SipHash-2-4 with the 128-bit key `k`, over `data`.
pub fn siphash24(k: [u64; 2], data: &[u8]) -> u64 {
    let mut v = [
        k[0] ^ 0x736f_6d65_7073_6575,
        k[1] ^ 0x646f_7261_6e64_6f6d,
        k[0] ^ 0x6c79_6765_6e65_7261,
        k[1] ^ 0x7465_6462_7974_6573,
    ];
    #[inline(always)]
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let m = u64::from_le_bytes(c.try_into().unwrap());
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// A key that changes every `period`: epoch `n + 1`'s key is a one-way function of epoch `n`'s,
/// and the previous epoch's key stays available for values made just before a change.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: Secret,
    previous: Secret,
    epoch: u64,
    period: Duration,
}

/// Epochs stepped one by one at most; a longer jump (a clock far ahead) reseeds from the current
/// key and the epoch number in one step.
const MAX_STEPS: u64 = 64;

impl KeyRing {
    /// Keys for `label` from `secret`, changing every `period` (never, if zero).
    pub fn new(secret: &Secret, label: &[u8], period: Duration) -> Self {
        let k = secret.derive(label);
        KeyRing {
            current: k,
            previous: k,
            epoch: 0,
            period,
        }
    }

    fn epoch_at(&self, now: Instant) -> u64 {
        match self.period.as_micros() {
            0 => 0,
            p => now.as_micros() / p,
        }
    }

    /// Moves to the epoch of `now` (never back).
    pub fn advance(&mut self, now: Instant) {
        let e = self.epoch_at(now);
        if e <= self.epoch {
            return;
        }
        if e - self.epoch > MAX_STEPS {
            self.previous = self.current;
            self.current = self.current.derive(&e.to_le_bytes());
        } else {
            while self.epoch < e {
                self.previous = self.current;
                self.current = self.current.derive(b"next");
                self.epoch += 1;
            }
        }
        self.epoch = e;
    }

    /// The key of the current epoch.
    #[inline]
    pub fn current(&self) -> &Secret {
        &self.current
    }

    /// The key of the epoch before (the current one's right after creation).
    #[inline]
    pub fn previous(&self) -> &Secret {
        &self.previous
    }

    /// The current epoch's number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> [u64; 2] {
        [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908]
    }

    #[test]
    fn siphash24_reference_vectors() {
        // the paper's appendix A and the reference implementation's vectors.h: key 00..0f,
        // message 00..(n-1)
        let msg: Vec<u8> = (0u8..64).collect();
        let want: [(usize, u64); 5] = [
            (0, 0x726f_db47_dd0e_0e31),
            (1, 0x74f8_39c5_93dc_67fd),
            (7, 0xab02_00f5_8b01_d137),
            (8, 0x93f5_f579_9a93_2462),
            (15, 0xa129_ca61_49be_45e5),
        ];
        for (n, h) in want {
            assert_eq!(siphash24(key(), &msg[..n]), h, "length {n}");
        }
    }

    #[test]
    fn random_secrets_differ_and_derived_keys_are_independent() {
        let a = Secret::random();
        let b = Secret::random();
        assert_ne!(a, b);
        assert_ne!(a.derive(b"isn"), a.derive(b"ts"));
        assert_eq!(a.derive(b"isn"), a.derive(b"isn"));
        assert_eq!(Secret::from_seed(5), Secret::from_seed(5));
        assert_ne!(Secret::from_seed(5), Secret::from_seed(6));
        assert_eq!(format!("{a:?}"), "Secret(..)");
    }

    #[test]
    fn key_ring_ratchets_forward_and_keeps_the_previous_key() {
        let s = Secret::from_seed(1);
        let period = Duration::from_secs(60);
        let mut r = KeyRing::new(&s, b"x", period);
        let k0 = *r.current();
        r.advance(Instant::from_secs(59));
        assert_eq!(*r.current(), k0);
        r.advance(Instant::from_secs(60));
        assert_ne!(*r.current(), k0);
        assert_eq!(*r.previous(), k0);
        let k1 = *r.current();
        // time going back changes nothing
        r.advance(Instant::from_secs(1));
        assert_eq!(*r.current(), k1);
        // two rings from one secret agree epoch by epoch, whatever steps they took
        let mut q = KeyRing::new(&s, b"x", period);
        q.advance(Instant::from_secs(185));
        r.advance(Instant::from_secs(121));
        r.advance(Instant::from_secs(185));
        assert_eq!(r.current(), q.current());
        assert_eq!(r.epoch(), 3);
        // a never-changing ring
        let mut n = KeyRing::new(&s, b"x", Duration::ZERO);
        n.advance(Instant::from_secs(1_000_000));
        assert_eq!(*n.current(), k0);
    }
}
