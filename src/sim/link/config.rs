//! The random model's parameters ([`LinkConfig`]) and what the link counts ([`LinkStats`]).

#[cfg(doc)]
use super::Link;
use crate::time::Duration;

/// The MTU of an Ethernet link, every link's unless configured otherwise.
pub const DEFAULT_MTU: usize = 1500;

/// The behaviour of a [`Link`]. Start from [`LinkConfig::ideal`] and add faults with the
/// `with_*` helpers, or set fields directly.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// The largest frame the link carries (the links of a [`Network`](crate::sim::network::Network)
    /// carry IPv4 packets, so this is the IP MTU): a longer frame is dropped and counted in
    /// [`LinkStats::dropped_oversize`]. 1500 from [`LinkConfig::ideal`].
    pub mtu: usize,
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra uniform delay in `0..=jitter` per frame; frames reorder when it exceeds their spacing.
    pub jitter: Duration,
    /// Serialization rate in bits per second; `None` means infinitely fast (no queueing).
    pub bandwidth_bps: Option<u64>,
    /// Most bytes that may wait for the transmitter (the frame being serialized not counted);
    /// a frame that would exceed it is tail-dropped. Only meaningful with a bandwidth.
    pub queue_limit: Option<usize>,
    /// Long-run fraction of frames lost on the wire, in `0.0..=1.0`.
    pub loss: f64,
    /// 1 (or 0): independent losses. `n > 1`: each loss event drops a burst of `1..=n`
    /// consecutive frames (uniform), events being rarer so the long-run fraction stays `loss`.
    pub loss_burst_max: u32,
    /// Probability a frame is held back by `reorder_delay` so later frames overtake it.
    pub reorder: f64,
    /// How long a reordered frame is held back.
    pub reorder_delay: Duration,
    /// Probability a frame is delivered twice (the copy [`DUPLICATE_GAP`](super::DUPLICATE_GAP) later).
    pub duplicate: f64,
    /// Probability one random bit of a frame is flipped.
    pub corrupt: f64,
}

impl LinkConfig {
    /// A link with an MTU of 1500 that only delays: no jitter, no bandwidth limit, no faults.
    pub fn ideal(latency: Duration) -> Self {
        LinkConfig {
            mtu: DEFAULT_MTU,
            latency,
            jitter: Duration::ZERO,
            bandwidth_bps: None,
            queue_limit: None,
            loss: 0.0,
            loss_burst_max: 1,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            duplicate: 0.0,
            corrupt: 0.0,
        }
    }

    pub fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }

    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    pub fn with_bandwidth(mut self, bps: u64) -> Self {
        self.bandwidth_bps = Some(bps);
        self
    }

    pub fn with_queue_limit(mut self, bytes: usize) -> Self {
        self.queue_limit = Some(bytes);
        self
    }

    /// Independent losses.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self.loss_burst_max = 1;
        self
    }

    /// Losses in bursts of `1..=burst_max` consecutive frames, `loss` of all frames in the long run.
    pub fn with_loss_bursts(mut self, loss: f64, burst_max: u32) -> Self {
        self.loss = loss;
        self.loss_burst_max = burst_max;
        self
    }

    pub fn with_reorder(mut self, probability: f64, delay: Duration) -> Self {
        self.reorder = probability;
        self.reorder_delay = delay;
        self
    }

    pub fn with_duplicate(mut self, probability: f64) -> Self {
        self.duplicate = probability;
        self
    }

    pub fn with_corrupt(mut self, probability: f64) -> Self {
        self.corrupt = probability;
        self
    }

    pub(super) fn validate(&self) {
        for (name, p) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
        ] {
            assert!(
                (0.0..=1.0).contains(&p),
                "LinkConfig::{name} = {p} is not a probability"
            );
        }
        assert!(
            self.bandwidth_bps != Some(0),
            "LinkConfig::bandwidth_bps must not be zero"
        );
    }

    /// Probability that a frame outside a burst starts a loss event.
    ///
    /// A cycle is a run of kept frames (geometric, mean `1/p - 1`) then a burst of mean
    /// `B = (n + 1) / 2`; the lost fraction is `B / (1/p - 1 + B)`. Solving for `p` gives
    /// `loss / (B (1 - loss) + loss)`, which is `loss` itself when `n = 1`.
    pub(super) fn loss_event_probability(&self) -> f64 {
        if self.loss <= 0.0 {
            return 0.0;
        }
        let mean_burst = (f64::from(self.loss_burst_max.max(1)) + 1.0) / 2.0;
        self.loss / (mean_burst * (1.0 - self.loss) + self.loss)
    }
}

/// Counters of a [`Link`]. Every frame given to `send` ends in exactly one of the `dropped_*`
/// counters or is delivered (or still in flight); duplicates add to `delivered` on top.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames given to `send`.
    pub sent: u64,
    /// Frames handed out by `recv`, duplicates included.
    pub delivered: u64,
    /// Frames lost by the random loss model.
    pub dropped_loss: u64,
    /// Frames tail-dropped because the queue was full.
    pub dropped_queue: u64,
    /// Frames dropped by the scripted filter.
    pub dropped_filter: u64,
    /// Frames longer than the MTU, dropped before anything else.
    pub dropped_oversize: u64,
    /// Loss events; `dropped_loss / loss_events` is the mean burst length.
    pub loss_events: u64,
    /// Extra copies made, by the model or the filter.
    pub duplicated: u64,
    /// Frames held back by `reorder_delay` (whether or not anything actually overtook them).
    pub reordered: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Bytes handed out by `recv`.
    pub bytes_delivered: u64,
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    #[should_panic(expected = "not a probability")]
    fn rejects_bad_probabilities() {
        Link::new(LinkConfig::ideal(MS).with_loss(1.5), 0);
    }
}
