//! What the link's tests share: numbered frames and a driver that runs a link to the end.

pub(super) use super::*;
pub(super) use crate::time::{Duration, Instant};

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const US: Duration = Duration::from_micros(1);

pub(super) fn at_us(us: u64) -> Instant {
    Instant::from_micros(us)
}

/// A frame carrying its index in the first 8 bytes, `len` bytes long.
pub(super) fn numbered(i: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0xa5; len.max(8)];
    f[..8].copy_from_slice(&i.to_be_bytes());
    f
}

pub(super) fn index(frame: &[u8]) -> u64 {
    u64::from_be_bytes(frame[..8].try_into().unwrap())
}

/// Sends `n` numbered frames `spacing` apart, receiving as virtual time passes; returns every
/// delivery as (arrival, bytes).
pub(super) fn run(
    link: &mut Link,
    n: u64,
    len: usize,
    spacing: Duration,
) -> Vec<(Instant, Vec<u8>)> {
    let mut trace = Vec::new();
    let mut now = Instant::ZERO;
    for i in 0..n {
        while let Some(f) = link.recv(now) {
            trace.push((f.arrival(), f.to_vec()));
            link.recycle(f);
        }
        link.send(now, &numbered(i, len));
        now += spacing;
    }
    while let Some(t) = link.next_delivery() {
        let f = link.recv(t).expect("a frame is due at next_delivery");
        trace.push((f.arrival(), f.to_vec()));
        link.recycle(f);
    }
    trace
}

pub(super) fn faulty() -> LinkConfig {
    LinkConfig::ideal(MS)
        .with_jitter(Duration::from_micros(300))
        .with_bandwidth(100_000_000)
        .with_queue_limit(20_000)
        .with_loss_bursts(0.05, 3)
        .with_reorder(0.02, Duration::from_millis(2))
        .with_duplicate(0.02)
        .with_corrupt(0.01)
}
