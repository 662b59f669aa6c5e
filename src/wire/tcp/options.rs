//! TCP options: the ones we understand, parsed without allocating and emitted in Linux's
//! layout.
//!
//! Options ([`TcpOptions::parse`]): EOL ends the list, NOP is skipped, unknown kinds are skipped
//! by their length. A length below 2, an option running past the header, or a known option with
//! the wrong length is `BadOption`. The window-scale shift is clamped to 14 (RFC 7323 2.3).
//! SACK blocks past the fourth are ignored (40 option bytes cannot hold a fifth anyway).
//!
//! Layout on emission ([`TcpOptions::emit`], used by [`TcpRepr::emit_header`]): every group
//! 4-byte aligned so no EOL padding is ever needed:
//! `MSS | SACK-permitted TS (or NOP NOP TS, or without TS NOP NOP SACK-permitted) | NOP WS |
//! NOP NOP SACK blocks`. Option space is 40 bytes: when SACK blocks do not fit beside the
//! others, the last blocks are dropped until they do (with timestamps at most 3 remain; with
//! everything a SYN carries, 2). [`TcpRepr::header_len`] accounts for that drop, so it always
//! equals what `emit_header` writes.

#[cfg(doc)]
use super::TcpRepr;
use super::{SeqNumber, MAX_OPTIONS_LEN, MAX_WINDOW_SHIFT};
use crate::wire::{Error, Result};

/// Maximum SACK blocks a segment can carry (4 without timestamps, 3 with).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The options we understand. Unknown options are skipped on parse and never emitted.
///
/// Equality looks only at the valid SACK blocks (`sack()`), not at stale entries past
/// `sack_len`.
#[derive(Debug, Clone, Copy, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// SACK blocks as (left edge, right edge), the first `sack_len` entries valid.
    pub sack_blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    pub sack_len: u8,
    /// (TSval, TSecr)
    pub timestamp: Option<(u32, u32)>,
}

impl PartialEq for TcpOptions {
    fn eq(&self, other: &TcpOptions) -> bool {
        self.mss == other.mss
            && self.window_scale == other.window_scale
            && self.sack_permitted == other.sack_permitted
            && self.timestamp == other.timestamp
            && self.sack() == other.sack()
    }
}

impl TcpOptions {
    /// The valid SACK blocks. A `sack_len` above [`MAX_SACK_BLOCKS`] reads as the maximum.
    pub fn sack(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.sack_blocks[..(self.sack_len as usize).min(MAX_SACK_BLOCKS)]
    }
}

/// Option kinds we know.
pub mod option_kind {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}
use option_kind as kind;

impl TcpOptions {
    /// Options with these SACK blocks (at most [`MAX_SACK_BLOCKS`] kept) and nothing else set.
    pub fn with_sack(blocks: &[(SeqNumber, SeqNumber)]) -> TcpOptions {
        let mut o = TcpOptions::default();
        o.set_sack(blocks);
        o
    }

    /// Replaces the SACK blocks; blocks past [`MAX_SACK_BLOCKS`] are dropped.
    pub fn set_sack(&mut self, blocks: &[(SeqNumber, SeqNumber)]) {
        let n = blocks.len().min(MAX_SACK_BLOCKS);
        self.sack_blocks[..n].copy_from_slice(&blocks[..n]);
        self.sack_len = n as u8;
    }

    /// Parses an option list (the bytes between the fixed header and the data offset).
    /// Allocation-free; see the module docs for what is accepted.
    #[inline]
    pub fn parse(bytes: &[u8]) -> Result<TcpOptions> {
        // The layout of nearly every segment of a connection with timestamps (Linux's, ours):
        // NOP, NOP, timestamps. Read straight, as header prediction does (RFC 7323 appendix A),
        // for a fifth of the loop's instructions; anything else takes the loop.
        if let [kind::NOP, kind::NOP, kind::TIMESTAMP, 10, ts @ ..] = bytes {
            if ts.len() == 8 {
                return Ok(TcpOptions {
                    timestamp: Some((be32(&ts[..4]), be32(&ts[4..]))),
                    ..TcpOptions::default()
                });
            }
        }
        Self::parse_any(bytes)
    }

    /// [`TcpOptions::parse`] without its fast path: every layout, option by option.
    fn parse_any(bytes: &[u8]) -> Result<TcpOptions> {
        let mut opts = TcpOptions::default();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                kind::EOL => break,
                kind::NOP => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let kind = bytes[i];
            let len = *bytes.get(i + 1).ok_or(Error::BadOption)? as usize;
            if len < 2 {
                return Err(Error::BadOption);
            }
            let body = bytes.get(i + 2..i + len).ok_or(Error::BadOption)?;
            match (kind, body) {
                (kind::MSS, &[a, b]) => opts.mss = Some(u16::from_be_bytes([a, b])),
                (kind::WINDOW_SCALE, &[shift]) => {
                    opts.window_scale = Some(shift.min(MAX_WINDOW_SHIFT))
                }
                (kind::SACK_PERMITTED, &[]) => opts.sack_permitted = true,
                (kind::SACK, _) if !body.is_empty() && body.len() % 8 == 0 => {
                    let mut n = 0;
                    for block in body.chunks_exact(8).take(MAX_SACK_BLOCKS) {
                        opts.sack_blocks[n] =
                            (SeqNumber(be32(&block[..4])), SeqNumber(be32(&block[4..])));
                        n += 1;
                    }
                    opts.sack_len = n as u8;
                }
                (kind::TIMESTAMP, _) if body.len() == 8 => {
                    opts.timestamp = Some((be32(&body[..4]), be32(&body[4..])))
                }
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::SACK
                    | kind::TIMESTAMP,
                    _,
                ) => return Err(Error::BadOption),
                _ => {}
            }
            i += len;
        }
        Ok(opts)
    }

    /// Option bytes before the SACK blocks in our layout.
    #[inline]
    fn fixed_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamp.is_some() {
            len += 12;
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// How many SACK blocks fit beside the other options in 40 bytes.
    #[inline]
    pub fn sack_blocks_emitted(&self) -> usize {
        let room = MAX_OPTIONS_LEN - self.fixed_len();
        self.sack().len().min(room.saturating_sub(4) / 8)
    }

    /// Bytes [`TcpOptions::emit`] writes: a multiple of 4, at most 40.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        let n = self.sack_blocks_emitted();
        self.fixed_len() + if n > 0 { 4 + 8 * n } else { 0 }
    }

    /// Writes the options in the layout of the module docs; returns the bytes written, which is
    /// [`TcpOptions::buffer_len`]. Panics if `out` is shorter than that.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) -> usize {
        self.write::<false>(out).0
    }

    /// [`TcpOptions::emit`], also returning the sum of the words written. Every piece of the
    /// layout is a 4-byte word at a 4-byte offset, so the sum is taken from the values.
    #[inline]
    pub(super) fn emit_with_sum(&self, out: &mut [u8]) -> (usize, u64) {
        self.write::<true>(out)
    }

    /// The options written, with their sum if `SUM` (else 0: a caller that discards the sum
    /// does not pay for it).
    #[inline(always)]
    fn write<const SUM: bool>(&self, out: &mut [u8]) -> (usize, u64) {
        let mut at = 0;
        let mut sum = 0u64;
        let mut put = |word: [u8; 4]| {
            out[at..at + 4].copy_from_slice(&word);
            at += 4;
            if SUM {
                let w = u32::from_be_bytes(word);
                sum += u64::from(w >> 16) + u64::from(w & 0xffff);
            }
        };
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            put([kind::MSS, 4, a, b]);
        }
        if let Some((val, ecr)) = self.timestamp {
            if self.sack_permitted {
                put([kind::SACK_PERMITTED, 2, kind::TIMESTAMP, 10]);
            } else {
                put([kind::NOP, kind::NOP, kind::TIMESTAMP, 10]);
            }
            put(val.to_be_bytes());
            put(ecr.to_be_bytes());
        } else if self.sack_permitted {
            put([kind::NOP, kind::NOP, kind::SACK_PERMITTED, 2]);
        }
        if let Some(shift) = self.window_scale {
            put([
                kind::NOP,
                kind::WINDOW_SCALE,
                3,
                shift.min(MAX_WINDOW_SHIFT),
            ]);
        }
        let n = self.sack_blocks_emitted();
        if n > 0 {
            put([kind::NOP, kind::NOP, kind::SACK, (2 + 8 * n) as u8]);
            for &(left, right) in &self.sack_blocks[..n] {
                put(left.0.to_be_bytes());
                put(right.0.to_be_bytes());
            }
        }
        (at, sum)
    }
}

#[inline]
fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn syn_without_timestamps_matches_linux_layout() {
        let opts = TcpOptions {
            timestamp: None,
            ..syn().options
        };
        let mut out = [0u8; 40];
        let n = opts.emit(&mut out);
        assert_eq!(&out[..n], &[2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
    }

    #[test]
    fn option_layouts() {
        let ts = Some((1, 2));
        let blocks = [
            (SeqNumber(100), SeqNumber(200)),
            (SeqNumber(300), SeqNumber(400)),
            (SeqNumber(500), SeqNumber(600)),
            (SeqNumber(700), SeqNumber(800)),
        ];
        let cases: [(TcpOptions, usize); 8] = [
            (TcpOptions::default(), 0),
            (
                TcpOptions {
                    timestamp: ts,
                    ..Default::default()
                },
                12,
            ),
            (
                TcpOptions {
                    sack_permitted: true,
                    ..Default::default()
                },
                4,
            ),
            (
                TcpOptions {
                    window_scale: Some(0),
                    ..Default::default()
                },
                4,
            ),
            (TcpOptions::with_sack(&blocks[..1]), 12),
            (TcpOptions::with_sack(&blocks), 36),
            (
                TcpOptions {
                    timestamp: ts,
                    ..TcpOptions::with_sack(&blocks[..3])
                },
                40,
            ),
            // Four blocks and timestamps cannot share 40 bytes: the fourth is dropped.
            (
                TcpOptions {
                    timestamp: ts,
                    ..TcpOptions::with_sack(&blocks)
                },
                40,
            ),
        ];
        for (opts, len) in cases {
            assert_eq!(opts.buffer_len(), len, "{opts:?}");
            let mut out = [0xeeu8; 40];
            assert_eq!(opts.emit(&mut out), len);
            let parsed = TcpOptions::parse(&out[..len]).unwrap();
            let mut expect = opts;
            expect.sack_len = opts.sack_blocks_emitted() as u8;
            assert_eq!(parsed.sack(), expect.sack());
            assert_eq!(
                (parsed.mss, parsed.window_scale, parsed.timestamp),
                (opts.mss, opts.window_scale, opts.timestamp)
            );
        }
        let mut out = [0u8; 40];
        let n = TcpOptions {
            timestamp: Some((0x01020304, 0x05060708)),
            ..Default::default()
        }
        .emit(&mut out);
        assert_eq!(&out[..n], &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn option_parsing_rules() {
        let ok = |b: &[u8]| TcpOptions::parse(b).unwrap();
        // Unknown kinds (MD5 = 19, len 18; experimental 254, len 4) are skipped.
        let mut md5 = vec![19, 18];
        md5.extend_from_slice(&[0xab; 16]);
        md5.extend_from_slice(&[2, 4, 0x05, 0xb4]);
        assert_eq!(ok(&md5).mss, Some(1460));
        assert_eq!(ok(&[254, 4, 0, 0, 3, 3, 9, 0]).window_scale, Some(9));
        // EOL ends the list: what follows is padding, even if it looks like garbage.
        assert_eq!(ok(&[2, 4, 1, 0, 0, 99, 1, 2]).mss, Some(256));
        assert_eq!(ok(&[0, 2, 4, 1, 0]), TcpOptions::default());
        // Window scale above 14 is clamped.
        assert_eq!(ok(&[3, 3, 15, 0]).window_scale, Some(14));
        assert_eq!(ok(&[3, 3, 255, 0]).window_scale, Some(14));
        // A fifth SACK block cannot fit a real header, but the parser must not overrun.
        let mut five = vec![5, 42];
        five.extend((0u32..10).flat_map(|v| v.to_be_bytes()));
        let o = ok(&five);
        assert_eq!(o.sack_len, 4);
        assert_eq!(o.sack()[3], (SeqNumber(6), SeqNumber(7)));

        let bad = |b: &[u8]| TcpOptions::parse(b).unwrap_err();
        for b in [
            &[2][..],            // kind without a length byte
            &[254, 0],           // length below 2
            &[254, 1, 1, 1],     // length below 2
            &[254, 5, 0, 0],     // runs past the end
            &[2, 3, 5, 0],       // MSS with the wrong length
            &[2, 5, 5, 0, 0],    // MSS with the wrong length
            &[3, 2, 1, 1],       // WS with the wrong length
            &[3, 4, 7, 0],       // WS with the wrong length
            &[4, 3, 0, 1],       // SACK-permitted with the wrong length
            &[5, 2, 1, 1],       // SACK with no blocks
            &[5, 6, 0, 0, 0, 1], // SACK not a multiple of 8
            &[8, 8, 0, 0, 0, 0, 0, 0],
            &[8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(bad(b), Error::BadOption, "{b:?}");
        }
    }

    #[test]
    fn equality_ignores_stale_sack_slots() {
        let mut a = TcpOptions::with_sack(&[(SeqNumber(1), SeqNumber(2)); 3]);
        a.sack_len = 1;
        let b = TcpOptions::with_sack(&[(SeqNumber(1), SeqNumber(2))]);
        assert_eq!(a, b);
        a.sack_blocks[0].1 = SeqNumber(3);
        assert_ne!(a, b);
    }

    #[test]
    fn sack_accessor_tolerates_bad_len() {
        let o = TcpOptions {
            sack_len: 200,
            ..TcpOptions::default()
        };
        assert_eq!(o.sack().len(), MAX_SACK_BLOCKS);
        assert_eq!(o.sack_blocks_emitted(), MAX_SACK_BLOCKS);
    }

    /// The fast path for NOP, NOP, timestamps gives what the option-by-option loop gives, for
    /// that layout and for every near miss (other lengths, kinds, trailing bytes).
    #[test]
    fn timestamp_fast_path_agrees_with_the_loop() {
        let ts = [1, 1, 8, 10, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
        let got = TcpOptions::parse(&ts).unwrap();
        assert_eq!(got.timestamp, Some((0x1234_5678, 0x9abc_def0)));
        assert_eq!(got, TcpOptions::parse_any(&ts).unwrap());
        let mut cases: Vec<Vec<u8>> = Vec::new();
        for cut in 0..ts.len() {
            cases.push(ts[..cut].to_vec());
        }
        for at in 0..4 {
            for v in [0u8, 1, 2, 5, 8, 9, 10, 11, 255] {
                let mut c = ts.to_vec();
                c[at] = v;
                cases.push(c);
            }
        }
        for extra in [&[0u8][..], &[1], &[1, 1], &[4, 2], &[3, 3, 7, 0]] {
            let mut c = ts.to_vec();
            c.extend_from_slice(extra);
            cases.push(c);
        }
        for c in cases {
            assert_eq!(TcpOptions::parse(&c), TcpOptions::parse_any(&c), "{c:?}");
        }
    }
}
