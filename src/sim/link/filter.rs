//! Scripted faults: a closure that sees each frame's bytes before the random model and may
//! drop, delay or duplicate it ([`Link::set_filter`]). For the one frame a test is about ("drop
//! the fifth data segment"), where a probability would be a matter of luck.

#[cfg(doc)]
use super::Link;
#[cfg(doc)]
use super::LinkStats;
use crate::time::Duration;

/// What a scripted filter decides for one frame; see [`Link::set_filter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave the frame to the random model.
    Pass,
    /// Drop it (counted in [`LinkStats::dropped_filter`]); the random model never sees it.
    Drop,
    /// Deliver it this much later than the model would.
    Delay(Duration),
    /// Deliver it twice (counted in [`LinkStats::duplicated`]).
    Duplicate,
}

/// A scripted fault: sees every frame's bytes before the random model.
pub type Filter = Box<dyn FnMut(&[u8]) -> Verdict>;

#[cfg(test)]
mod tests {
    use super::super::test_util::*;

    #[test]
    fn filter_verdicts_apply_before_the_model() {
        let mut link = Link::new(LinkConfig::ideal(MS), 1);
        let mut data_segments = 0;
        link.set_filter(Some(Box::new(move |f: &[u8]| match index(f) {
            _ if f.len() < 100 => Verdict::Pass,
            _ => {
                data_segments += 1;
                match data_segments {
                    5 => Verdict::Drop,
                    6 => Verdict::Delay(Duration::from_millis(5)),
                    7 => Verdict::Duplicate,
                    _ => Verdict::Pass,
                }
            }
        })));
        for i in 0..20 {
            let len = if i % 2 == 0 { 1000 } else { 40 };
            link.send(Instant::ZERO + US.saturating_mul(i), &numbered(i, len));
        }
        let got: Vec<(u64, Instant)> = std::iter::from_fn(|| link.recv(Instant::MAX))
            .map(|f| (index(&f), f.arrival()))
            .collect();
        // Data segments are the even frames: the 5th (8) is dropped, the 6th (10) arrives 5 ms
        // late, the 7th (12) twice.
        assert!(!got.iter().any(|&(i, _)| i == 8));
        assert_eq!(got.last(), Some(&(10, at_us(6_010))));
        assert_eq!(
            got.iter().filter(|&&(i, _)| i == 12).collect::<Vec<_>>(),
            [&(12, at_us(1_012)), &(12, at_us(1_013))]
        );
        assert_eq!(got.len(), 20);
        let s = link.stats();
        assert_eq!((s.dropped_filter, s.duplicated, s.delivered), (1, 1, 20));

        // Removing the filter restores plain delivery.
        link.set_filter(None);
        link.send(at_us(100), &numbered(99, 1000));
        assert_eq!(index(&link.recv(Instant::MAX).unwrap()), 99);
    }
}
