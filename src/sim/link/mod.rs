//! A seeded, deterministic one-way link that carries byte frames on a virtual clock.
//!
//! # Model
//!
//! Each frame given to [`Link::send`] goes through these steps, in this order:
//!
//! 0. A frame longer than [`LinkConfig::mtu`] is dropped and counted: no NIC sends it, and no
//!    random draw is made for it.
//! 1. The scripted [filter](Link::set_filter), if one is set, sees the bytes first and may
//!    drop, delay or duplicate the frame. Apart from a drop, the random model still applies.
//! 2. Queueing and serialization (only with [`LinkConfig::bandwidth_bps`]): the frame occupies
//!    the transmitter for `len * 8 / bps` after every frame sent before it. If it would have to
//!    wait and the bytes already waiting plus its own exceed [`LinkConfig::queue_limit`], it is
//!    tail-dropped. A frame that starts at once never waits, so it is never tail-dropped.
//! 3. Random loss, possibly in bursts. A lost frame has still used the transmitter: it is lost
//!    on the wire, not in the queue.
//! 4. Corruption: one uniformly chosen bit is flipped.
//! 5. Delivery time: end of serialization + latency + uniform jitter in `0..=jitter` + filter
//!    delay + `reorder_delay` when the frame is picked for reordering.
//! 6. Duplication: a copy arrives [`DUPLICATE_GAP`] after the original.
//!
//! Frames due at the same instant are delivered in the order they were sent (FIFO), so without
//! jitter, reordering or filter delays the link never reorders.
//!
//! # Determinism
//!
//! All randomness comes from one ChaCha8 generator seeded by [`Link::new`]: the same seed and the
//! same calls (times, bytes, configuration changes, filter verdicts) give the same deliveries.
//! Probabilities of exactly 0 or 1 draw nothing, so an ideal link consumes no randomness.
//!
//! # Use
//!
//! Call [`Link::send`] with non-decreasing times; ask [`Link::next_delivery`] when to step the
//! virtual clock; call [`Link::recv`] until it returns `None`; hand each frame back with
//! [`Link::recycle`] once done so its buffer is reused: in steady state the link allocates
//! nothing. Frames already in flight are unaffected by [`Link::set_config`].
//!
//! Beside this file: `config.rs` ([`LinkConfig`], [`LinkStats`]), `filter.rs` (scripted
//! [`Verdict`]s), `queue.rs` (the transmitter, the in-flight queue and [`Frame`]).

mod config;
mod filter;
mod queue;
#[cfg(test)]
mod test_util;

pub use config::{LinkConfig, LinkStats, DEFAULT_MTU};
pub use filter::{Filter, Verdict};
pub use queue::Frame;

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::time::{Duration, Instant};
use queue::{InFlightQueue, Transmitter};

/// How much later than the original a duplicated frame arrives.
pub const DUPLICATE_GAP: Duration = Duration::from_micros(1);

/// Capacity of a fresh pooled buffer, so buffers of small frames can later carry full ones.
const MIN_BUFFER_CAPACITY: usize = 2048;

/// A one-way link; see the [module docs](self) for the model.
pub struct Link {
    cfg: LinkConfig,
    loss_event_p: f64,
    rng: ChaCha8Rng,
    filter: Option<Filter>,
    pool: Vec<Vec<u8>>,
    in_flight: InFlightQueue,
    tx: Transmitter,
    burst_remaining: u32,
    last_send: Instant,
    stats: LinkStats,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("cfg", &self.cfg)
            .field("in_flight", &self.in_flight())
            .field("stats", &self.stats)
            .field("filter", &self.filter.is_some())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Panics if a probability is outside `0.0..=1.0` or the bandwidth is zero.
    pub fn new(cfg: LinkConfig, seed: u64) -> Link {
        cfg.validate();
        Link {
            loss_event_p: cfg.loss_event_probability(),
            cfg,
            rng: ChaCha8Rng::seed_from_u64(seed),
            filter: None,
            pool: Vec::new(),
            in_flight: InFlightQueue::default(),
            tx: Transmitter::default(),
            burst_remaining: 0,
            last_send: Instant::ZERO,
            stats: LinkStats::default(),
        }
    }

    /// Puts a frame on the link at `now`, copying it into a pooled buffer. Times must not
    /// decrease from one call to the next.
    pub fn send(&mut self, now: Instant, frame: &[u8]) {
        debug_assert!(now >= self.last_send, "Link::send: time went backwards");
        self.last_send = now;
        self.stats.sent += 1;
        if frame.len() > self.cfg.mtu {
            self.stats.dropped_oversize += 1;
            return;
        }

        let mut extra = Duration::ZERO;
        let mut duplicate = false;
        if let Some(filter) = self.filter.as_mut() {
            match filter(frame) {
                Verdict::Pass => {}
                Verdict::Drop => {
                    self.stats.dropped_filter += 1;
                    return;
                }
                Verdict::Delay(d) => extra = d,
                Verdict::Duplicate => duplicate = true,
            }
        }

        let Some(on_wire) = self.tx.serialize(
            now,
            frame.len(),
            self.cfg.bandwidth_bps,
            self.cfg.queue_limit,
        ) else {
            self.stats.dropped_queue += 1;
            return;
        };
        if self.lose() {
            self.stats.dropped_loss += 1;
            return;
        }

        let mut buf = self.buffer(frame.len());
        buf.extend_from_slice(frame);
        if !buf.is_empty() && chance(&mut self.rng, self.cfg.corrupt) {
            let bit = self.rng.gen_range(0..buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }

        let mut at = on_wire + self.cfg.latency + extra;
        if self.cfg.jitter > Duration::ZERO {
            at += Duration::from_nanos(self.rng.gen_range(0..=self.cfg.jitter.as_nanos()));
        }
        if chance(&mut self.rng, self.cfg.reorder) {
            at += self.cfg.reorder_delay;
            self.stats.reordered += 1;
        }
        // Drawn even when the filter already asked for a copy, so that verdict does not shift
        // the random draws of later frames.
        duplicate |= chance(&mut self.rng, self.cfg.duplicate);

        let copy = duplicate.then(|| {
            let mut copy = self.buffer(buf.len());
            copy.extend_from_slice(&buf);
            copy
        });
        self.enqueue(at, buf);
        if let Some(copy) = copy {
            self.stats.duplicated += 1;
            self.enqueue(at + DUPLICATE_GAP, copy);
        }
    }

    /// When the earliest in-flight frame is due, if any.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.in_flight.next_delivery()
    }

    /// The earliest frame due at or before `now`, if any. Call until `None`: frames come out in
    /// (delivery time, send order).
    pub fn recv(&mut self, now: Instant) -> Option<Frame> {
        let item = self.in_flight.pop_due(now)?;
        self.stats.delivered += 1;
        self.stats.bytes_delivered += item.buf.len() as u64;
        Some(Frame {
            arrival: item.at,
            buf: item.buf,
        })
    }

    /// Gives a received frame's buffer back to the pool.
    pub fn recycle(&mut self, frame: Frame) {
        self.pool.push(frame.buf);
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Frames (copies included) sent but not yet received.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    /// Changes the model for frames sent from now on, e.g. `loss = 1.0` to cut the link.
    /// A loss burst in progress ends. Frames already in flight keep their delivery times.
    pub fn set_config(&mut self, cfg: LinkConfig) {
        cfg.validate();
        self.loss_event_p = cfg.loss_event_probability();
        self.burst_remaining = 0;
        self.cfg = cfg;
    }

    /// Changes the MTU for frames sent from now on (a path's MTU falling mid-transfer); the rest
    /// of the model, a loss burst in progress included, carries on.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.cfg.mtu = mtu;
    }

    /// Installs (or with `None` removes) a scripted fault that sees each frame before the random
    /// model. Keep state in the closure to pick frames by content and position, for example to
    /// drop only the fifth frame longer than 100 bytes:
    ///
    /// ```
    /// # use xdp_tcp::sim::link::{Link, LinkConfig, Verdict};
    /// # use xdp_tcp::time::{Duration, Instant};
    /// let mut link = Link::new(LinkConfig::ideal(Duration::from_millis(1)), 7);
    /// let mut seen = 0;
    /// link.set_filter(Some(Box::new(move |frame: &[u8]| {
    ///     if frame.len() > 100 {
    ///         seen += 1;
    ///         if seen == 5 {
    ///             return Verdict::Drop;
    ///         }
    ///     }
    ///     Verdict::Pass
    /// })));
    /// for _ in 0..10 {
    ///     link.send(Instant::ZERO, &[0; 200]);
    /// }
    /// assert_eq!(link.stats().dropped_filter, 1);
    /// ```
    pub fn set_filter(&mut self, filter: Option<Filter>) {
        self.filter = filter;
    }

    fn buffer(&mut self, len: usize) -> Vec<u8> {
        match self.pool.pop() {
            Some(mut buf) => {
                buf.clear();
                buf
            }
            None => Vec::with_capacity(len.max(MIN_BUFFER_CAPACITY)),
        }
    }

    fn lose(&mut self) -> bool {
        if self.burst_remaining > 0 {
            self.burst_remaining -= 1;
            return true;
        }
        if !chance(&mut self.rng, self.loss_event_p) {
            return false;
        }
        self.stats.loss_events += 1;
        let max = self.cfg.loss_burst_max.max(1);
        let burst = if max > 1 {
            self.rng.gen_range(1..=max)
        } else {
            1
        };
        self.burst_remaining = burst - 1;
        true
    }

    fn enqueue(&mut self, at: Instant, buf: Vec<u8>) {
        self.in_flight.push(at, buf);
    }
}

/// True with probability `p`; draws nothing when `p` is 0 or 1.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    p >= 1.0 || (p > 0.0 && rng.gen::<f64>() < p)
}

#[cfg(test)]
mod tests {
    use super::test_util::*;

    #[test]
    fn latency_is_exact() {
        let mut link = Link::new(LinkConfig::ideal(Duration::from_millis(10)), 1);
        assert_eq!(link.next_delivery(), None);
        link.send(at_us(0), b"a");
        link.send(at_us(5), b"b");
        assert_eq!(link.in_flight(), 2);
        assert_eq!(link.next_delivery(), Some(at_us(10_000)));
        assert!(link.recv(at_us(9_999)).is_none());
        let a = link.recv(at_us(10_000)).unwrap();
        assert_eq!((a.data(), a.arrival()), (&b"a"[..], at_us(10_000)));
        assert_eq!(link.next_delivery(), Some(at_us(10_005)));
        assert!(link.recv(at_us(10_004)).is_none());
        let b = link.recv(at_us(20_000)).unwrap();
        assert_eq!((&*b, b.arrival()), (&b"b"[..], at_us(10_005)));
        assert!(link.recv(Instant::MAX).is_none());
        assert_eq!(link.stats().delivered, 2);
        assert_eq!(link.stats().bytes_delivered, 2);
    }

    #[test]
    fn fifo_without_jitter_or_reordering() {
        for cfg in [
            LinkConfig::ideal(MS),
            LinkConfig::ideal(MS).with_bandwidth(1_000_000_000),
            LinkConfig::ideal(MS).with_loss(0.3).with_duplicate(0.3),
        ] {
            let mut link = Link::new(cfg, 9);
            let trace = run(&mut link, 10_000, 64, Duration::from_nanos(300));
            assert!(
                trace.windows(2).all(|w| w[0].0 <= w[1].0),
                "arrival times sorted"
            );
            // A duplicate arrives after the original; first arrivals keep send order.
            let mut seen = std::collections::HashSet::new();
            let order: Vec<u64> = trace
                .iter()
                .map(|(_, f)| index(f))
                .filter(|&i| seen.insert(i))
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "send order kept");
        }
        // Frames due at the same instant come out in send order.
        let mut link = Link::new(LinkConfig::ideal(MS), 1);
        for i in 0..100 {
            link.send(Instant::ZERO, &numbered(i, 8));
        }
        let order: Vec<u64> = std::iter::from_fn(|| link.recv(Instant::MAX))
            .map(|f| index(&f))
            .collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn jitter_stays_within_bounds_and_reorders_when_large() {
        let cfg = LinkConfig::ideal(MS).with_jitter(Duration::from_micros(100));
        let mut link = Link::new(cfg, 3);
        let spacing = Duration::from_micros(10);
        let trace = run(&mut link, 10_000, 64, spacing);
        assert_eq!(trace.len(), 10_000);
        let mut overtaken = 0;
        let mut highest = 0;
        for (arrival, f) in &trace {
            let i = index(f);
            let sent = Instant::ZERO + spacing.saturating_mul(i);
            let delay = *arrival - sent;
            assert!(
                delay >= MS && delay <= MS + Duration::from_micros(100),
                "delay {delay:?}"
            );
            overtaken += u64::from(i < highest);
            highest = highest.max(i);
        }
        assert!(
            overtaken > 1000,
            "jitter 10x the spacing reorders: {overtaken}"
        );
        assert!(
            trace.windows(2).all(|w| w[0].0 <= w[1].0),
            "delivered in arrival order"
        );
    }

    #[test]
    fn same_seed_same_trace_other_seed_other_trace() {
        let trace = |seed| {
            run(
                &mut Link::new(faulty(), seed),
                20_000,
                200,
                Duration::from_micros(5),
            )
        };
        let a = trace(42);
        assert_eq!(a, trace(42));
        assert_ne!(a, trace(43));
        // Not vacuous: the faults did happen.
        let mut link = Link::new(faulty(), 42);
        run(&mut link, 20_000, 200, Duration::from_micros(5));
        let s = link.stats();
        assert!(s.dropped_loss > 0 && s.dropped_queue > 0 && s.duplicated > 0);
        assert!(s.reordered > 0 && s.corrupted > 0);
        assert_eq!(s.delivered, a.len() as u64);
        assert_eq!(
            s.sent + s.duplicated,
            s.delivered + s.dropped_loss + s.dropped_queue
        );
    }

    #[test]
    fn independent_loss_rate() {
        let mut link = Link::new(LinkConfig::ideal(MS).with_loss(0.1), 5);
        let trace = run(&mut link, 100_000, 64, US);
        let lost = 100_000 - trace.len() as u64;
        assert_eq!(lost, link.stats().dropped_loss);
        assert_eq!(link.stats().loss_events, lost);
        let rate = lost as f64 / 100_000.0;
        assert!((rate - 0.1).abs() < 0.005, "loss rate {rate}");
    }

    #[test]
    fn burst_loss_rate_and_lengths() {
        for (loss, max) in [(0.05, 4), (0.2, 8), (0.01, 2)] {
            let mut link = Link::new(LinkConfig::ideal(MS).with_loss_bursts(loss, max), 11);
            let mut histogram = vec![0u64; max as usize + 1];
            for i in 0..100_000 {
                let events = link.stats().loss_events;
                link.send(Instant::ZERO, &numbered(i, 8));
                if link.stats().loss_events > events {
                    let burst = link.burst_remaining + 1;
                    assert!((1..=max).contains(&burst), "burst {burst} of at most {max}");
                    histogram[burst as usize] += 1;
                }
            }
            let s = link.stats().clone();
            let rate = s.dropped_loss as f64 / s.sent as f64;
            assert!(
                (rate - loss).abs() < loss * 0.1,
                "loss {rate}, wanted {loss}"
            );
            let mean = s.dropped_loss as f64 / s.loss_events as f64;
            let want = (f64::from(max) + 1.0) / 2.0;
            assert!(
                (mean - want).abs() < want * 0.1,
                "mean burst {mean}, wanted {want}"
            );
            // Uniform over 1..=max: each length within 25% of its share.
            let share = s.loss_events as f64 / f64::from(max);
            for (len, &count) in histogram.iter().enumerate().skip(1) {
                assert!(
                    (count as f64 - share).abs() < share * 0.25,
                    "length {len}: {count}"
                );
            }
            // The frames really are lost consecutively.
            let mut link = Link::new(LinkConfig::ideal(MS).with_loss_bursts(loss, max), 11);
            let got: Vec<u64> = run(&mut link, 100_000, 8, US)
                .iter()
                .map(|(_, f)| index(f))
                .collect();
            let longest_gap = got.windows(2).map(|w| w[1] - w[0] - 1).max().unwrap();
            assert!(longest_gap >= u64::from(max), "gap {longest_gap}");
        }
    }

    #[test]
    fn duplicate_and_reorder_rates() {
        let cfg = LinkConfig::ideal(MS)
            .with_duplicate(0.05)
            .with_reorder(0.03, Duration::from_micros(100));
        let mut link = Link::new(cfg, 17);
        let n = 100_000;
        let trace = run(&mut link, n, 64, US);
        let s = link.stats().clone();
        let mut seen = vec![0u64; n as usize];
        let mut overtaken = 0;
        let mut highest = 0;
        for (_, f) in &trace {
            let i = index(f);
            seen[i as usize] += 1;
            if seen[i as usize] == 1 {
                overtaken += u64::from(i < highest);
                highest = highest.max(i);
            }
        }
        assert!(seen.iter().all(|&c| c == 1 || c == 2));
        let copies: u64 = seen.iter().map(|&c| c - 1).sum();
        assert_eq!(copies, s.duplicated);
        let rate = |count: u64| count as f64 / n as f64;
        assert!(
            (rate(s.duplicated) - 0.05).abs() < 0.005,
            "{}",
            s.duplicated
        );
        assert!((rate(s.reordered) - 0.03).abs() < 0.003, "{}", s.reordered);
        // Held back by 100 frames' spacing, every reordered frame is overtaken.
        assert_eq!(overtaken, s.reordered);
    }

    #[test]
    fn corrupt_rate() {
        let mut link = Link::new(LinkConfig::ideal(MS).with_corrupt(0.02), 19);
        let n = 100_000;
        let trace = run(&mut link, n, 64, US);
        // Nothing is lost or reordered, so the k-th frame out is the k-th frame in.
        let corrupted = (0..n)
            .zip(&trace)
            .filter(|(i, (_, f))| *f != numbered(*i, 64))
            .count();
        assert_eq!(corrupted as u64, link.stats().corrupted);
        assert!(
            (corrupted as f64 / n as f64 - 0.02).abs() < 0.002,
            "{corrupted}"
        );
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let mut link = Link::new(LinkConfig::ideal(MS).with_corrupt(1.0), 23);
        for len in [1usize, 2, 20, 60, 1500] {
            for _ in 0..200 {
                let original: Vec<u8> = (0..len).map(|i| i as u8).collect();
                link.send(Instant::ZERO, &original);
                let f = link.recv(Instant::MAX).unwrap();
                let flipped: u32 = f
                    .iter()
                    .zip(&original)
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
                assert_eq!((f.len(), flipped), (len, 1));
                link.recycle(f);
            }
        }
        // An empty frame has no bit to flip.
        link.send(Instant::ZERO, &[]);
        assert!(link.recv(Instant::MAX).unwrap().is_empty());
    }

    #[test]
    fn set_config_cuts_and_heals_the_link() {
        let mut link = Link::new(LinkConfig::ideal(MS).with_loss_bursts(0.5, 50), 2);
        let mut now = Instant::ZERO;
        for i in 0..100 {
            link.send(now, &numbered(i, 64));
            now += US;
        }
        let in_flight = link.in_flight();
        link.set_config(LinkConfig::ideal(MS).with_loss(1.0));
        for i in 100..200 {
            link.send(now, &numbered(i, 64));
            now += US;
        }
        assert_eq!(
            link.in_flight(),
            in_flight,
            "a cut link delivers nothing new"
        );
        link.set_config(LinkConfig::ideal(MS));
        for i in 200..300 {
            link.send(now, &numbered(i, 64));
            now += US;
        }
        // Healed: no leftover burst eats the first frames after the cut.
        assert_eq!(link.in_flight(), in_flight + 100);
        let got: Vec<u64> = std::iter::from_fn(|| link.recv(Instant::MAX))
            .map(|f| index(&f))
            .collect();
        assert!(got.ends_with(&(200..300).collect::<Vec<_>>()));
    }

    #[test]
    fn frames_over_the_mtu_are_dropped_and_counted() {
        let mut link = Link::new(LinkConfig::ideal(MS).with_loss(0.5), 4);
        assert_eq!(link.config().mtu, 1500);
        let mut twin = Link::new(LinkConfig::ideal(MS).with_loss(0.5), 4);
        for i in 0..1000u64 {
            link.send(Instant::ZERO, &numbered(i, 1500));
            link.send(Instant::ZERO, &numbered(i, 1501));
            twin.send(Instant::ZERO, &numbered(i, 1500));
        }
        let s = link.stats().clone();
        assert_eq!((s.sent, s.dropped_oversize), (2000, 1000));
        // oversize frames draw nothing: the same losses as a link that never saw them
        assert_eq!(s.dropped_loss, twin.stats().dropped_loss);
        let got: Vec<usize> = std::iter::from_fn(|| link.recv(Instant::MAX))
            .map(|f| f.len())
            .collect();
        assert!(got.iter().all(|&n| n == 1500));
        link.set_mtu(1280);
        link.send(Instant::ZERO, &numbered(0, 1281));
        link.send(Instant::ZERO, &numbered(0, 1280));
        assert_eq!(link.stats().dropped_oversize, 1001);
        let mut jumbo = Link::new(LinkConfig::ideal(MS).with_mtu(9000), 1);
        jumbo.send(Instant::ZERO, &numbered(0, 9000));
        assert_eq!(jumbo.recv(Instant::MAX).map(|f| f.len()), Some(9000));
    }

    #[test]
    fn buffers_are_reused() {
        let mut link = Link::new(LinkConfig::ideal(MS), 1);
        link.send(Instant::ZERO, &[1; 64]);
        let f = link.recv(Instant::MAX).unwrap();
        let ptr = f.as_ptr();
        link.recycle(f);
        for i in 0..1000u64 {
            link.send(Instant::from_micros(i), &numbered(i, 1500));
            let f = link.recv(Instant::MAX).unwrap();
            assert_eq!(f.as_ptr(), ptr, "no allocation in steady state");
            link.recycle(f);
        }
    }
}
