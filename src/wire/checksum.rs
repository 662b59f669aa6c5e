//! The internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Every function here returns a *sum*: the 16-bit one's-complement sum of big-endian words,
//! folded but not inverted, except [`update`]/[`update_u32`], which take and return a checksum
//! as it sits in a header (inverted). A header's checksum field holds `!combine(&[...])`.
//!
//! A sum of non-zero data is never `0x0000` (one's complement "negative zero" `0xffff` stands in
//! for it), so `data` of all-zero bytes is the only way to get `0`.
//!
//! [`data`] treats its slice as starting on a word boundary of the covered data; a trailing odd
//! byte is padded with a zero on the right. Sums over pieces that start at odd offsets cannot be
//! combined with [`combine`]: hand whole, word-aligned pieces to it.

use std::net::Ipv4Addr;

/// Bytes summed before the 64-bit accumulator is folded, so it can never overflow. A multiple of
/// 8, which keeps every block after the first word-aligned.
const BLOCK: usize = 1 << 30;

/// One's-complement sum of `bytes` as big-endian 16-bit words, folded to 16 bits.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let mut acc = 0u64;
    if bytes.len() <= BLOCK {
        acc = sum_block(bytes);
    } else {
        for block in bytes.chunks(BLOCK) {
            acc += u64::from(fold(sum_block(block)));
        }
    }
    // The words were read in native order. The one's-complement sum commutes with byte swapping
    // (RFC 1071 section 2(B)), so swapping the folded result once gives the big-endian sum.
    u16::from_be(fold(acc))
}

/// [`data`] before its fold and byte swap: the sum of `bytes` as 16-bit words in native byte
/// order, unfolded and below 2^40. For a caller that adds more words to the same sum (each as
/// `u64::from(word.to_be())` for a big-endian 32-bit `word`) and finishes with
/// `u16::from_be(fold(acc))`, which then equals [`data`] of all those bytes.
#[inline]
pub fn partial_ne(bytes: &[u8]) -> u64 {
    if bytes.len() <= BLOCK {
        sum_block(bytes)
    } else {
        bytes
            .chunks(BLOCK)
            .map(|block| u64::from(fold(sum_block(block))))
            .sum()
    }
}

/// Sums at most `BLOCK` bytes in native byte order, 64 at a time into a 128-bit sum: each
/// 8-byte word costs an add and an add-with-carry, and a carry out of bit 63 (worth 2^64, which
/// is 1 mod 0xffff) gathers in the high half. Callgrind, 1472 bytes: ~465 instructions; 16 bytes
/// per loop step took ~530 (the loop's own compare and branch), splitting each word into 32-bit
/// halves ~700, and lanes of 16-bit words in 32-bit sums that LLVM vectorises (SSE2) ~670.
#[inline(always)]
fn sum_block(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(64);
    let mut wide = 0u128;
    for chunk in &mut chunks {
        for i in 0..8 {
            wide += u128::from(word(&chunk[8 * i..8 * i + 8]));
        }
    }
    // Below 64 bytes left: 32, 16 and 8 at most once each, by the bits of the length. Straight
    // tests instead of loops over what is left (a 96-byte segment: ~17 instructions fewer).
    let mut rest = chunks.remainder();
    if let Some((c, r)) = rest.split_first_chunk::<32>() {
        for i in 0..4 {
            wide += u128::from(word(&c[8 * i..8 * i + 8]));
        }
        rest = r;
    }
    if let Some((c, r)) = rest.split_first_chunk::<16>() {
        wide += u128::from(word(&c[0..8]));
        wide += u128::from(word(&c[8..16]));
        rest = r;
    }
    if let Some((c, r)) = rest.split_first_chunk::<8>() {
        wide += u128::from(word(c));
        rest = r;
    }
    // At most 2^27 carries and a 33-bit halves sum: no overflow below.
    let mut acc = halves(wide as u64) + (wide >> 64) as u64;
    // Up to 7 bytes left, starting on an even offset, so every piece below is a whole number
    // of 16-bit lanes in native order. Piecewise reads avoid a memcpy call for the tail.
    if rest.len() >= 4 {
        acc += u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&last) = rest.first() {
        // The odd byte is the high half of a big-endian word whose low half is zero.
        acc += u64::from(u16::from_ne_bytes([last, 0]));
    }
    acc
}

/// [`data`] of exactly 20 bytes, an IPv4 header without options: five 32-bit words and a fold,
/// without the general loop's set-up and tail (~20 instructions instead of ~58).
#[inline]
pub fn data20(b: &[u8; 20]) -> u16 {
    let w = |i: usize| u64::from(u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    u16::from_be(fold(w(0) + w(4) + w(8) + w(12) + w(16)))
}

#[inline(always)]
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

#[inline(always)]
fn halves(w: u64) -> u64 {
    (w & 0xffff_ffff) + (w >> 32)
}

/// Folds a wide sum of 16-bit words (each added as a big-endian value) to 16 bits with
/// end-around carry. Congruent mod 0xffff, and zero only for a zero input. Lets emitters sum
/// header fields from the values they write instead of reading the bytes back.
///
/// Each halving adds the word to itself rotated by half its width: the high half of that sum
/// is `hi + lo` plus the carry out of the low half's `lo + hi`, which is the end-around carry
/// (`hi + lo = c 2^k + r` gives `r + c`, which cannot overflow: `c = 1` means `r <= 2^k - 2`).
/// Three operations a halving instead of two masked adds and a repeat (~9 instructions fewer
/// a fold, and a segment takes several).
#[inline(always)]
pub fn fold(s: u64) -> u16 {
    let s = (s.wrapping_add(s.rotate_right(32)) >> 32) as u32;
    (s.wrapping_add(s.rotate_right(16)) >> 16) as u16
}

/// One's-complement sum of partial sums (for example a pseudo-header and a segment).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Sum of the IPv4 pseudo-header of RFC 9293 section 3.1 (also UDP's): source, destination, a
/// zero byte, the protocol, and the upper-layer length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u16 {
    let s = u32::from(src);
    let d = u32::from(dst);
    let sum = u64::from(s >> 16)
        + u64::from(s & 0xffff)
        + u64::from(d >> 16)
        + u64::from(d & 0xffff)
        + u64::from(proto)
        + u64::from(len >> 16)
        + u64::from(len & 0xffff);
    fold(sum)
}

/// [`pseudo_header_v4`] as a [`partial_ne`] sum, to add to one: the three 32-bit words of the
/// pseudo-header in native byte order, unfolded (below 2^35). Any `len` below 2^32.
#[inline]
pub fn pseudo_header_v4_ne(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u32) -> u64 {
    u64::from(u32::from(src).to_be())
        + u64::from(u32::from(dst).to_be())
        + u64::from(((u32::from(proto) << 16) | (len & 0xffff)).to_be())
        + u64::from((len >> 16).to_be())
}

/// New header checksum after a 16-bit field changes from `old_field` to `new_field`, by RFC 1624
/// equation 3: `HC' = ~(~HC + ~m + m')`. Unlike equation 2 it never produces `0xffff` (negative
/// zero) from a non-zero sum, so it agrees with a full recomputation for any header that is not
/// all zeros.
#[inline]
pub fn update(old_checksum: u16, old_field: u16, new_field: u16) -> u16 {
    let sum = u64::from(!old_checksum) + u64::from(!old_field) + u64::from(new_field);
    !fold(sum)
}

/// [`update`] for a 32-bit field (an IPv4 address, a sequence number): two 16-bit updates at once.
#[inline]
pub fn update_u32(old_checksum: u16, old_field: u32, new_field: u32) -> u16 {
    let sum = u64::from(!old_checksum)
        + u64::from(!(old_field >> 16) & 0xffff)
        + u64::from(!old_field & 0xffff)
        + u64::from(new_field >> 16)
        + u64::from(new_field & 0xffff);
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Word by word, carry folded back after every addition: RFC 1071 as written.
    fn naive(bytes: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < bytes.len() {
            let hi = bytes[i] as u32;
            let lo = if i + 1 < bytes.len() {
                bytes[i + 1] as u32
            } else {
                0
            };
            sum += (hi << 8) | lo;
            sum = (sum & 0xffff) + (sum >> 16);
            i += 2;
        }
        sum as u16
    }

    #[test]
    fn matches_naive_for_every_length_and_alignment() {
        let mut rng = ChaCha8Rng::seed_from_u64(1071);
        let mut buf = vec![0u8; 2000 + 16];
        for len in 0..=2000 {
            rng.fill_bytes(&mut buf);
            for align in [0, 1, 2, 3, 5, 7, 8, 13] {
                let s = &buf[align..align + len];
                assert_eq!(data(s), naive(s), "len {len} align {align}");
            }
        }
    }

    #[test]
    fn data20_matches_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(791);
        let mut h = [0u8; 20];
        for i in 0..10_000 {
            rng.fill_bytes(&mut h);
            if i % 100 == 0 {
                h = [0xff; 20];
            }
            assert_eq!(data20(&h), data(&h), "{h:?}");
            assert_eq!(data20(&h), naive(&h), "{h:?}");
        }
        assert_eq!(data20(&[0; 20]), 0);
    }

    #[test]
    fn extreme_values() {
        for len in 0..100 {
            let ones = vec![0xffu8; len];
            assert_eq!(data(&ones), naive(&ones), "ones len {len}");
            let zeros = vec![0u8; len];
            assert_eq!(data(&zeros), 0);
        }
        // 64 KiB of 0xff: the widest sum a packet produces.
        let big = vec![0xffu8; 65536];
        assert_eq!(data(&big), 0xffff);
    }

    /// `fold` against end-around-carry folding done one 16-bit word at a time, on random
    /// values of every width and on the edges (all ones, a carry out of each half, zero).
    #[test]
    fn fold_matches_word_by_word_folding() {
        fn reference(mut s: u64) -> u16 {
            let mut sum = 0u64;
            while s > 0 {
                sum += s & 0xffff;
                s >>= 16;
                sum = (sum & 0xffff) + (sum >> 16);
            }
            sum as u16
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1624);
        let mut cases: Vec<u64> = vec![
            0,
            1,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            0xffff_0001,
            0x0001_ffff_ffff,
            0xffff_ffff_0000_0001,
            0x8000_0000_8000_0000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for bits in 1..=64 {
            for _ in 0..2000 {
                cases.push(rng.gen::<u64>() >> (64 - bits));
            }
        }
        for s in cases {
            assert_eq!(fold(s), reference(s), "{s:#x}");
            assert_eq!(fold(s) == 0, s == 0, "zero only from zero: {s:#x}");
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these bytes is ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
    }

    #[test]
    fn combine_equals_sum_of_concatenation() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..1000 {
            let a_len = rng.gen_range(0..200) * 2;
            let b_len = rng.gen_range(0..200);
            let mut buf = vec![0u8; a_len + b_len];
            rng.fill_bytes(&mut buf);
            let (a, b) = buf.split_at(a_len);
            assert_eq!(combine(&[data(a), data(b)]), naive(&buf));
        }
    }

    #[test]
    fn partial_sum_with_words_added_equals_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for _ in 0..1000 {
            let words: Vec<u32> = (0..rng.gen_range(0..16)).map(|_| rng.gen()).collect();
            let mut tail = vec![0u8; rng.gen_range(0..300)];
            rng.fill_bytes(&mut tail);
            let mut acc = partial_ne(&tail);
            let mut all = Vec::new();
            for w in &words {
                acc += u64::from(w.to_be());
                all.extend_from_slice(&w.to_be_bytes());
            }
            all.extend_from_slice(&tail);
            assert_eq!(u16::from_be(fold(acc)), naive(&all));
        }
    }

    #[test]
    fn pseudo_header_matches_bytes() {
        let src = Ipv4Addr::new(192, 168, 1, 10);
        let dst = Ipv4Addr::new(10, 250, 3, 7);
        let mut ph = Vec::new();
        ph.extend_from_slice(&src.octets());
        ph.extend_from_slice(&dst.octets());
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&1480u16.to_be_bytes());
        assert_eq!(pseudo_header_v4(src, dst, 6, 1480), naive(&ph));
    }

    #[test]
    fn pseudo_header_ne_adds_to_a_partial_sum() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for i in 0..2000 {
            let (src, dst) = (
                Ipv4Addr::from(rng.gen::<u32>()),
                Ipv4Addr::from(rng.gen::<u32>()),
            );
            let len = match i % 4 {
                0 => rng.gen::<u32>(),
                _ => rng.gen_range(0..=0xffff),
            };
            let mut seg = vec![0u8; rng.gen_range(0..200)];
            rng.fill_bytes(&mut seg);
            let one_pass = u16::from_be(fold(
                partial_ne(&seg) + pseudo_header_v4_ne(src, dst, 6, len),
            ));
            assert_eq!(
                one_pass,
                combine(&[pseudo_header_v4(src, dst, 6, len), data(&seg)])
            );
        }
    }

    #[test]
    fn rfc1624_examples() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285. Equation 3 gives 0x0000,
        // the checksum a full recomputation gives; equation 2 would give the wrong 0xffff.
        assert_eq!(update(0xdd2f, 0x5555, 0x3285), 0x0000);
        // Section 3: a header whose only change is to itself keeps its checksum.
        assert_eq!(update(0x1234, 0xabcd, 0xabcd), 0x1234);
    }

    /// A 20-byte IPv4-like header with a valid checksum at bytes 10..12.
    fn header(rng: &mut ChaCha8Rng) -> [u8; 20] {
        let mut h = [0u8; 20];
        rng.fill_bytes(&mut h);
        h[0] = 0x45; // never all zeros
        h[10] = 0;
        h[11] = 0;
        let c = !data(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn incremental_equals_full_recompute() {
        let mut rng = ChaCha8Rng::seed_from_u64(1624);
        for i in 0..20_000 {
            let mut h = header(&mut rng);
            let old_ck = u16::from_be_bytes([h[10], h[11]]);
            let new_ck = if i % 2 == 0 {
                // A 16-bit field outside the checksum (bytes 10..12).
                let at = [0, 2, 4, 6, 8, 12, 14, 16, 18][rng.gen_range(0..9)];
                let old = u16::from_be_bytes([h[at], h[at + 1]]);
                let new: u16 = if rng.gen_bool(0.1) { old } else { rng.gen() };
                h[at..at + 2].copy_from_slice(&new.to_be_bytes());
                update(old_ck, old, new)
            } else {
                let at = [12, 16][rng.gen_range(0..2)];
                let old = u32::from_be_bytes(h[at..at + 4].try_into().unwrap());
                let new: u32 = rng.gen();
                h[at..at + 4].copy_from_slice(&new.to_be_bytes());
                update_u32(old_ck, old, new)
            };
            h[10] = 0;
            h[11] = 0;
            assert_eq!(new_ck, !data(&h), "iteration {i}");
            h[10..12].copy_from_slice(&new_ck.to_be_bytes());
            assert_eq!(data(&h), 0xffff);
        }
    }
}
