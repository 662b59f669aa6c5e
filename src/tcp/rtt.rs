//! Round-trip time estimation and the retransmission timeout, per RFC 6298.
//!
//! Before the first sample RTO is the initial value (1 s). The first sample R sets SRTT = R,
//! RTTVAR = R/2; later samples update RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and then
//! SRTT = 7/8 SRTT + 1/8 R. RTO = SRTT + max(G, 4 RTTVAR), clamped to [min, max].
//!
//! Each timeout doubles the RTO (backoff), and only a new sample ends the backoff: an
//! acknowledgement that gives none (of a retransmitted segment, under Karn's rule) leaves it, so
//! the backed-off timeout carries on to the next segment (Karn and Partridge; RFC 6298 section 5,
//! the RTO "collapses" once a new measurement is made; as Linux, which resets it only with a
//! valid sample). Callers apply Karn's rule: no sample from a retransmitted segment unless its
//! timestamp echo tells which transmission it answers.
//!
//! If the handshake timed out and completed without a sample, the RTO for data starts from
//! 3 s ([`RttEstimator::on_handshake_done`], RFC 6298 5.7).

use crate::time::Duration;

/// The RTO data starts from when the SYN (or SYN-ACK) timed out and no sample came (RFC 6298
/// 5.7).
pub const RTO_AFTER_SYN_LOSS: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// `base_rto`, kept from the last change to what it derives from (a sample, the
    /// handshake's end; before the first sample the initial RTO, clamped): every segment sent
    /// and many acknowledgements read it, only samples change it.
    base: Duration,
    min: Duration,
    max: Duration,
    granularity: Duration,
    backoff: u32,
}

impl RttEstimator {
    pub fn new(initial: Duration, min: Duration, max: Duration, granularity: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            base: initial.max(min).min(max),
            min,
            max,
            granularity,
            backoff: 0,
        }
    }

    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = Duration::from_nanos(r.as_nanos() / 2);
            }
            Some(srtt) => {
                let delta = if srtt > r { srtt - r } else { r - srtt };
                self.rttvar =
                    Duration::from_nanos((3 * self.rttvar.as_nanos() + delta.as_nanos()) / 4);
                self.srtt = Some(Duration::from_nanos(
                    (7 * srtt.as_nanos() + r.as_nanos()) / 8,
                ));
            }
        }
        self.backoff = 0;
        if let Some(srtt) = self.srtt {
            let rto = srtt + self.granularity.max(self.rttvar.saturating_mul(4));
            self.base = rto.max(self.min).min(self.max);
        }
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// RTO before backoff.
    pub fn base_rto(&self) -> Duration {
        self.base
    }

    /// RTO with the current exponential backoff applied.
    pub fn rto(&self) -> Duration {
        if self.backoff == 0 {
            // (`base` is within [min, max] already)
            return self.base;
        }
        let shift = self.backoff.min(32);
        self.base.saturating_mul(1u64 << shift).min(self.max)
    }

    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// The handshake completed. If its SYN (or SYN-ACK) timed out and no sample was taken, data
    /// starts from an RTO of 3 s rather than from the backed-off initial one (RFC 6298 5.7).
    pub fn on_handshake_done(&mut self) {
        if self.srtt.is_none() && self.backoff > 0 {
            // clamping is monotonic: clamp(max(initial, 3 s)) = max(clamp(initial), clamp(3 s))
            self.base = self
                .base
                .max(RTO_AFTER_SYN_LOSS.max(self.min).min(self.max));
            self.backoff = 0;
        }
    }

    pub fn backoff(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
            Duration::from_millis(1),
        )
    }

    #[test]
    fn rfc6298_formulas() {
        let mut e = est();
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(200));
        // RTTVAR = 3/4*50 + 1/4*100 = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(362_500));
        e.on_timeout();
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_micros(1_450_000));
        e.sample(Duration::from_millis(10));
        assert_eq!(e.backoff(), 0);
        // min clamp
        let mut f = est();
        f.sample(Duration::from_millis(1));
        assert_eq!(f.rto(), Duration::from_millis(200));
        for _ in 0..20 {
            f.on_timeout();
        }
        assert_eq!(f.rto(), Duration::from_secs(60));
    }

    #[test]
    fn three_seconds_after_a_lost_syn_unless_sampled() {
        let mut e = est();
        e.on_handshake_done();
        assert_eq!(e.rto(), Duration::from_secs(1), "no timeout, no change");
        e.on_timeout();
        e.on_handshake_done();
        assert_eq!((e.rto(), e.backoff()), (Duration::from_secs(3), 0));
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_secs(6));
        let mut s = est();
        s.on_timeout();
        s.sample(Duration::from_millis(100));
        s.on_handshake_done();
        assert_eq!(s.rto(), Duration::from_millis(300), "a sample decides");
    }
}
