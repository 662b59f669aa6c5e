//! A fault injector: wraps any [`PacketIo`] and drops, duplicates, corrupts or delays frames at
//! seeded, per-direction rates, counting each decision.
//!
//! Decisions come from ChaCha8, one stream per direction seeded from [`FaultConfig::seed`], so a
//! run is reproducible from the seed and the frame sequence alone (rx decisions do not depend on
//! how tx traffic interleaves). Per frame, in order: drop (`drop`); else hold back (`delay`);
//! else pass, flipping one random bit after the Ethernet header (`corrupt`, so the frame still
//! reaches its destination and checksums must catch it), and pass a second copy (`duplicate`).
//!
//! A held frame is reordered, not lost: it leaves after [`FaultRates::delay_frames`] later frames
//! of its direction have passed, or at the first call that finds the device idle (a `recv_batch`
//! that receives nothing releases held frames of both directions; a `send_batch` whose closure
//! has nothing to send releases held tx frames). Extra frames (duplicates, released frames) go
//! right after the frame that caused them, or first in the next batch when the budget is spent:
//! no batch exceeds its budget. `wait_rx` returns at once while rx frames are queued or held.
//!
//! The closure of `send_batch` is called at most `budget` times; a dropped or held frame still
//! counts as sent in the return value (from the caller's side it left).
//!
//! Corrupting a received frame or holding any frame copies it; passing it whole does not.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::PacketIo;

/// Probabilities (each in `0.0..=1.0`) for one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultRates {
    pub drop: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// Probability that a frame is held back by `delay_frames` frames (reordering).
    pub delay: f64,
    /// How many later frames overtake a held one (at least 1 when `delay > 0`).
    pub delay_frames: u32,
}

impl FaultRates {
    /// Only drops, at `p`.
    pub fn drop(p: f64) -> Self {
        FaultRates {
            drop: p,
            ..Default::default()
        }
    }

    fn check(&self) -> Result<(), String> {
        for (name, p) in [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
            ("delay", self.delay),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} rate {p} is not in 0..=1"));
            }
        }
        if self.delay > 0.0 && self.delay_frames == 0 {
            return Err("delay > 0 needs delay_frames >= 1".into());
        }
        Ok(())
    }
}

/// Seed and rates for both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    /// Applied to frames the inner device receives.
    pub rx: FaultRates,
    /// Applied to frames written through `send_batch`.
    pub tx: FaultRates,
}

/// What happened to the frames of one direction. `frames` counts frames offered by the inner
/// device (rx) or by the caller (tx); `passed` counts frames handed on, duplicates included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    pub frames: u64,
    pub passed: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub delayed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub rx: DirStats,
    pub tx: DirStats,
}

/// The faults and queues of one direction.
#[derive(Debug)]
struct Dir {
    rates: FaultRates,
    rng: ChaCha8Rng,
    /// Held frames with the number of frames still to overtake them.
    held: VecDeque<(u32, Vec<u8>)>,
    /// Frames to pass before anything new: duplicates and released held frames.
    ready: VecDeque<Vec<u8>>,
    stats: DirStats,
}

enum Verdict {
    Drop,
    Hold,
    Pass { corrupt: bool, duplicate: bool },
}

impl Dir {
    fn new(rates: FaultRates, seed: u64) -> Self {
        Dir {
            rates,
            rng: ChaCha8Rng::seed_from_u64(seed),
            held: VecDeque::new(),
            ready: VecDeque::new(),
            stats: DirStats::default(),
        }
    }

    fn roll(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p)
    }

    fn decide(&mut self) -> Verdict {
        self.stats.frames += 1;
        if self.roll(self.rates.drop) {
            self.stats.dropped += 1;
            return Verdict::Drop;
        }
        if self.roll(self.rates.delay) {
            self.stats.delayed += 1;
            return Verdict::Hold;
        }
        let corrupt = self.roll(self.rates.corrupt);
        let duplicate = self.roll(self.rates.duplicate);
        self.stats.corrupted += u64::from(corrupt);
        self.stats.duplicated += u64::from(duplicate);
        Verdict::Pass { corrupt, duplicate }
    }

    fn hold(&mut self, frame: &[u8]) {
        self.held
            .push_back((self.rates.delay_frames.max(1), frame.to_vec()));
    }

    /// Flips one random bit after the Ethernet header (anywhere in a frame shorter than that).
    fn corrupt(&mut self, frame: &mut [u8]) {
        if frame.is_empty() {
            return;
        }
        let start = if frame.len() > 14 { 14 } else { 0 };
        let bit = self.rng.gen_range(start * 8..frame.len() * 8);
        frame[bit / 8] ^= 1 << (bit % 8);
    }

    /// A frame passed: held frames it overtook move closer to release.
    fn overtaken(&mut self) {
        for (left, _) in self.held.iter_mut() {
            *left = left.saturating_sub(1);
        }
        while self.held.front().is_some_and(|(left, _)| *left == 0) {
            let (_, f) = self.held.pop_front().unwrap();
            self.ready.push_back(f);
        }
    }

    fn release_all(&mut self) {
        self.ready.extend(self.held.drain(..).map(|(_, f)| f));
    }
}

/// The injector. See the module docs for the order of decisions and when held frames leave.
#[derive(Debug)]
pub struct FaultInjector<P> {
    inner: P,
    rx: Dir,
    tx: Dir,
    scratch: Vec<u8>,
}

/// Seeds the tx stream apart from the rx stream.
const TX_STREAM: u64 = 0x9e37_79b9_7f4a_7c15;

impl<P: PacketIo> FaultInjector<P> {
    /// Panics if a rate is outside `0..=1` or a delay has `delay_frames == 0`.
    pub fn new(inner: P, config: FaultConfig) -> Self {
        for (dir, r) in [("rx", &config.rx), ("tx", &config.tx)] {
            if let Err(e) = r.check() {
                panic!("FaultConfig.{dir}: {e}");
            }
        }
        FaultInjector {
            inner,
            rx: Dir::new(config.rx, config.seed),
            tx: Dir::new(config.tx, config.seed ^ TX_STREAM),
            scratch: Vec::new(),
        }
    }

    /// Changes the rates from the next frame on; the random streams continue.
    pub fn set_rates(&mut self, rx: FaultRates, tx: FaultRates) {
        for (dir, r) in [("rx", &rx), ("tx", &tx)] {
            if let Err(e) = r.check() {
                panic!("{dir}: {e}");
            }
        }
        self.rx.rates = rx;
        self.tx.rates = tx;
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            rx: self.rx.stats,
            tx: self.tx.stats,
        }
    }

    /// Frames held back or queued (rx, tx): not yet handed on.
    pub fn pending(&self) -> (usize, usize) {
        (
            self.rx.held.len() + self.rx.ready.len(),
            self.tx.held.len() + self.tx.ready.len(),
        )
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    /// Gives back the device; frames still held or queued are lost.
    pub fn into_inner(self) -> P {
        self.inner
    }

    /// Sends queued tx frames (duplicates, released held frames) while the device takes them.
    fn send_ready(&mut self) {
        if self.tx.ready.is_empty() {
            return;
        }
        let FaultInjector { inner, tx, .. } = self;
        let n = tx.ready.len();
        inner.send_batch(n, |buf| {
            let f = tx.ready.front()?;
            if f.len() > buf.len() {
                // cannot happen: it fitted a buffer of the same device before
                tx.ready.pop_front();
                return None;
            }
            buf[..f.len()].copy_from_slice(f);
            let len = f.len();
            tx.ready.pop_front();
            tx.stats.passed += 1;
            Some(len)
        });
    }
}

impl<P: PacketIo> PacketIo for FaultInjector<P> {
    fn recv_batch<F: FnMut(&[u8])>(&mut self, budget: usize, mut f: F) -> usize {
        let mut n = 0;
        let deliver_ready = |rx: &mut Dir, n: &mut usize, f: &mut F| {
            while *n < budget {
                let Some(frame) = rx.ready.pop_front() else {
                    break;
                };
                f(&frame);
                rx.stats.passed += 1;
                *n += 1;
            }
        };
        deliver_ready(&mut self.rx, &mut n, &mut f);
        if n == budget {
            return n;
        }
        let FaultInjector {
            inner, rx, scratch, ..
        } = self;
        let got = inner.recv_batch(budget - n, |frame| match rx.decide() {
            Verdict::Drop => {}
            Verdict::Hold => rx.hold(frame),
            Verdict::Pass { corrupt, duplicate } => {
                let frame = if corrupt {
                    scratch.clear();
                    scratch.extend_from_slice(frame);
                    rx.corrupt(scratch);
                    &scratch[..]
                } else {
                    frame
                };
                // Queued frames are older: they go first, and this one waits its turn.
                if n < budget && rx.ready.is_empty() {
                    f(frame);
                    rx.stats.passed += 1;
                    n += 1;
                } else {
                    rx.ready.push_back(frame.to_vec());
                }
                if duplicate {
                    rx.ready.push_back(frame.to_vec());
                }
                rx.overtaken();
                deliver_ready(rx, &mut n, &mut f);
            }
        });
        if got == 0 {
            self.rx.release_all();
            self.tx.release_all();
            self.send_ready();
        }
        deliver_ready(&mut self.rx, &mut n, &mut f);
        n
    }

    fn send_batch<F: FnMut(&mut [u8]) -> Option<usize>>(
        &mut self,
        budget: usize,
        mut f: F,
    ) -> usize {
        let mut consumed = 0;
        let mut exhausted = false;
        // Queued frames (duplicates, released held frames) take buffers too.
        let buffers = budget
            .saturating_mul(2)
            .saturating_add(self.tx.ready.len() + self.tx.held.len());
        let FaultInjector { inner, tx, .. } = self;
        inner.send_batch(buffers, |buf| {
            // Queued frames are older than anything the caller writes now: they go first.
            if let Some(frame) = tx.ready.front() {
                if frame.len() <= buf.len() {
                    buf[..frame.len()].copy_from_slice(frame);
                    let len = frame.len();
                    tx.ready.pop_front();
                    tx.stats.passed += 1;
                    return Some(len);
                }
                // cannot happen: it fitted a buffer of the same device before
                tx.ready.pop_front();
            }
            while consumed < budget && !exhausted {
                let Some(len) = f(buf) else {
                    exhausted = true;
                    return None;
                };
                consumed += 1;
                if len == 0 || len > buf.len() {
                    // the inner device refuses it; not a fault decision
                    return Some(len);
                }
                match tx.decide() {
                    Verdict::Drop => continue,
                    Verdict::Hold => {
                        tx.hold(&buf[..len]);
                        continue;
                    }
                    Verdict::Pass { corrupt, duplicate } => {
                        if corrupt {
                            tx.corrupt(&mut buf[..len]);
                        }
                        if duplicate {
                            tx.ready.push_back(buf[..len].to_vec());
                        }
                        tx.stats.passed += 1;
                        tx.overtaken();
                        return Some(len);
                    }
                }
            }
            None
        });
        if consumed == 0 {
            self.tx.release_all();
        }
        self.send_ready();
        consumed
    }

    fn frame_capacity(&self) -> usize {
        self.inner.frame_capacity()
    }

    fn wait_rx(&mut self, timeout: core::time::Duration) -> bool {
        if !self.rx.ready.is_empty() || !self.rx.held.is_empty() {
            return true;
        }
        self.inner.wait_rx(timeout)
    }

    fn set_time(&mut self, now: crate::time::Instant) {
        self.inner.set_time(now);
    }

    fn device_stats(&self) -> Option<super::xdp::DeviceStats> {
        self.inner.device_stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::mem::MemIo;

    fn numbered(n: u32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut f = vec![0u8; 60];
                f[14..18].copy_from_slice(&i.to_be_bytes());
                f
            })
            .collect()
    }

    fn id(f: &[u8]) -> u32 {
        u32::from_be_bytes(f[14..18].try_into().unwrap())
    }

    /// Feeds `frames` through the rx side in batches of `batch`; returns what came out.
    fn run_rx(cfg: FaultConfig, frames: &[Vec<u8>], batch: usize) -> (Vec<Vec<u8>>, FaultStats) {
        let mut mem = MemIo::new(2048);
        mem.rx.extend(frames.iter().cloned());
        let mut fi = FaultInjector::new(mem, cfg);
        let mut out = Vec::new();
        loop {
            let mut got = 0;
            let n = fi.recv_batch(batch, |f| {
                got += 1;
                out.push(f.to_vec())
            });
            assert_eq!(n, got);
            assert!(n <= batch, "batch over budget");
            if n == 0 && fi.pending().0 == 0 && fi.inner().rx.is_empty() {
                break;
            }
        }
        (out, fi.stats())
    }

    /// Sends `frames` through the tx side in batches of `batch`; returns what reached the device.
    fn run_tx(cfg: FaultConfig, frames: &[Vec<u8>], batch: usize) -> (Vec<Vec<u8>>, FaultStats) {
        let mut fi = FaultInjector::new(MemIo::new(2048), cfg);
        let mut it = frames.iter().peekable();
        while it.peek().is_some() {
            let mut calls = 0;
            let sent = fi.send_batch(batch, |buf| {
                calls += 1;
                let f = it.next()?;
                buf[..f.len()].copy_from_slice(f);
                Some(f.len())
            });
            assert!(calls <= batch, "closure called past the budget");
            assert!(sent <= batch);
        }
        // an idle call releases what is still held
        assert_eq!(fi.send_batch(4, |_| None), 0);
        assert_eq!(fi.pending().1, 0);
        let stats = fi.stats();
        (fi.into_inner().tx.into_iter().collect(), stats)
    }

    #[test]
    fn no_faults_is_transparent() {
        let frames = numbered(100);
        let (out, st) = run_rx(FaultConfig::default(), &frames, 7);
        assert_eq!(out, frames);
        assert_eq!((st.rx.frames, st.rx.passed), (100, 100));
        let (out, st) = run_tx(FaultConfig::default(), &frames, 7);
        assert_eq!(out, frames);
        assert_eq!((st.tx.frames, st.tx.passed), (100, 100));
    }

    #[test]
    fn drop_rate_is_close_and_seeded() {
        let frames = numbered(20_000);
        let cfg = FaultConfig {
            seed: 42,
            rx: FaultRates::drop(0.2),
            tx: FaultRates::drop(0.05),
        };
        let (out, st) = run_rx(cfg, &frames, 64);
        // 20000 * 0.2 = 4000, sd = sqrt(20000*0.2*0.8) ~ 57: allow 5 sd
        assert!((3715..=4285).contains(&st.rx.dropped), "{st:?}");
        assert_eq!(out.len() as u64, 20_000 - st.rx.dropped);
        assert!(
            out.windows(2).all(|w| id(&w[0]) < id(&w[1])),
            "order changed"
        );
        let (again, st2) = run_rx(cfg, &frames, 5);
        assert_eq!((again, st2), (out, st), "same seed, different outcome");
        let (other, _) = run_rx(FaultConfig { seed: 43, ..cfg }, &frames, 64);
        assert_ne!(other.len(), 0);
        assert_ne!(
            other.iter().map(|f| id(f)).collect::<Vec<_>>(),
            run_rx(cfg, &frames, 64)
                .0
                .iter()
                .map(|f| id(f))
                .collect::<Vec<_>>()
        );
        let (out, st) = run_tx(cfg, &frames, 64);
        assert!((860..=1140).contains(&st.tx.dropped), "{st:?}");
        assert_eq!(out.len() as u64, 20_000 - st.tx.dropped);
    }

    #[test]
    fn duplicates_follow_their_original() {
        let frames = numbered(5_000);
        let rates = FaultRates {
            duplicate: 0.1,
            ..Default::default()
        };
        for (out, st) in [
            {
                let (o, s) = run_rx(
                    FaultConfig {
                        seed: 1,
                        rx: rates,
                        ..Default::default()
                    },
                    &frames,
                    16,
                );
                (o, s.rx)
            },
            {
                let (o, s) = run_tx(
                    FaultConfig {
                        seed: 1,
                        tx: rates,
                        ..Default::default()
                    },
                    &frames,
                    16,
                );
                (o, s.tx)
            },
        ] {
            assert!((380..=620).contains(&st.duplicated), "{st:?}");
            assert_eq!(out.len() as u64, 5_000 + st.duplicated);
            assert_eq!(st.passed, out.len() as u64);
            // every original once, in order; a duplicate comes after its original
            let mut count = vec![0u32; 5_000];
            let mut next_new = 0;
            for f in &out {
                let i = id(f) as usize;
                if count[i] == 0 {
                    assert_eq!(i, next_new, "originals out of order");
                    next_new += 1;
                }
                count[i] += 1;
            }
            assert!(count.iter().all(|&c| c == 1 || c == 2));
            assert_eq!(
                count.iter().filter(|&&c| c == 2).count() as u64,
                st.duplicated
            );
        }
    }

    #[test]
    fn corruption_flips_exactly_one_bit_after_ethernet() {
        let frames = numbered(2_000);
        let rates = FaultRates {
            corrupt: 0.25,
            ..Default::default()
        };
        let (out, st) = run_rx(
            FaultConfig {
                seed: 9,
                rx: rates,
                ..Default::default()
            },
            &frames,
            32,
        );
        assert_eq!(out.len(), frames.len());
        let mut flipped = 0;
        for (a, b) in out.iter().zip(&frames) {
            let bits: u32 = a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum();
            assert!(bits <= 1);
            assert_eq!(a[..14], b[..14], "Ethernet header touched");
            flipped += bits;
        }
        assert_eq!(u64::from(flipped), st.rx.corrupted);
        assert!((400..=600).contains(&flipped), "{st:?}");
    }

    #[test]
    fn delay_reorders_but_loses_nothing() {
        let frames = numbered(3_000);
        let rates = FaultRates {
            delay: 0.1,
            delay_frames: 3,
            ..Default::default()
        };
        for batch in [1, 8, 64] {
            let cfg = FaultConfig {
                seed: 5,
                rx: rates,
                tx: rates,
            };
            let (rx, srx) = run_rx(cfg, &frames, batch);
            let (tx, stx) = run_tx(cfg, &frames, batch);
            for (out, st) in [(rx, srx.rx), (tx, stx.tx)] {
                assert!((220..=380).contains(&st.delayed), "{st:?}");
                assert_eq!(out.len(), frames.len(), "frames lost");
                let ids: Vec<u32> = out.iter().map(|f| id(f)).collect();
                let inversions = ids.windows(2).filter(|w| w[0] > w[1]).count();
                assert!(
                    inversions > 100,
                    "batch {batch}: not reordered: {inversions} {st:?}"
                );
                let mut sorted = ids.clone();
                sorted.sort();
                assert_eq!(sorted, (0..3_000).collect::<Vec<_>>());
                // a released frame waits at most for the rest of the batch that released it
                for (pos, &i) in ids.iter().enumerate() {
                    let late = pos as i64 - i as i64;
                    assert!(
                        late <= 3 + batch as i64 + 8,
                        "frame {i} held too long at {pos}"
                    );
                }
            }
        }
    }

    #[test]
    fn wait_rx_is_ready_while_frames_are_queued() {
        let mut mem = MemIo::new(128);
        mem.push_rx(vec![1u8; 60]);
        let cfg = FaultConfig {
            rx: FaultRates {
                duplicate: 1.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut fi = FaultInjector::new(mem, cfg);
        assert_eq!(fi.recv_batch(1, |_| {}), 1);
        assert_eq!(fi.pending().0, 1);
        assert!(fi.wait_rx(core::time::Duration::ZERO));
        assert_eq!(fi.recv_batch(1, |_| {}), 1);
        assert_eq!(fi.pending().0, 0);
    }

    #[test]
    #[should_panic(expected = "drop rate 1.5")]
    fn rejects_a_rate_above_one() {
        FaultInjector::new(
            MemIo::new(64),
            FaultConfig {
                rx: FaultRates::drop(1.5),
                ..Default::default()
            },
        );
    }
}
