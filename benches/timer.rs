//! Timer wheel costs. Per-operation costs must stay flat as the number of armed timers grows
//! (1k to 1M, deadlines spread over 1 ms..10 min with a 1 ms tick, as a busy core would hold);
//! only cache misses on a bigger slab may show.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::timer::{TimerId, TimerWheel};

const TICK: Duration = Duration::from_millis(1);
/// Pre-drawn random inputs, so the generator stays out of the measurement.
const RING: usize = 1 << 14;

fn spread(rng: &mut ChaCha8Rng, now: Instant) -> Instant {
    now + Duration::from_nanos(rng.gen_range(1_000_000..=600_000_000_000))
}

/// A wheel with `n` armed timers, their ids, and `RING` random deadlines and victims.
fn armed(n: usize) -> (TimerWheel, Vec<TimerId>, Vec<Instant>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut wheel = TimerWheel::new(Instant::ZERO, TICK);
    let ids = (0..n)
        .map(|i| wheel.insert(spread(&mut rng, Instant::ZERO), i as u64))
        .collect();
    let deadlines = (0..RING).map(|_| spread(&mut rng, Instant::ZERO)).collect();
    let victims = (0..RING).map(|_| rng.gen_range(0..n)).collect();
    (wheel, ids, deadlines, victims)
}

fn with_armed(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer");
    for n in [1_000, 10_000, 100_000, 1_000_000] {
        let (mut wheel, mut ids, deadlines, victims) = armed(n);
        group.bench_function(BenchmarkId::new("insert_cancel", n), |b| {
            let mut k = 0;
            b.iter(|| {
                let id = wheel.insert(deadlines[k % RING], k as u64);
                k += 1;
                wheel.cancel(id)
            })
        });
        // Cancel a random armed timer (which moves another entry in its slot) and arm a new one.
        group.bench_function(BenchmarkId::new("replace_random", n), |b| {
            let mut k = 0;
            b.iter(|| {
                let victim = victims[k % RING];
                let token = wheel.cancel(ids[victim]);
                ids[victim] = wheel.insert(deadlines[k % RING], k as u64);
                k += 1;
                token
            })
        });
        // An RTO restarted on every ACK.
        group.bench_function(BenchmarkId::new("reschedule_random", n), |b| {
            let mut k = 0;
            b.iter(|| {
                let moved = wheel.reschedule(ids[victims[k % RING]], deadlines[(k + 7) % RING]);
                k += 1;
                moved
            })
        });
        assert_eq!(wheel.len(), n);
    }
    group.finish();
}

/// Arm `n` timers over the next second, then poll every tick until all have fired.
fn insert_and_fire(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer/insert_poll");
    group.sample_size(10);
    for n in [10_000u64, 100_000, 1_000_000] {
        group.throughput(Throughput::Elements(n));
        let mut rng = ChaCha8Rng::seed_from_u64(n);
        let offsets: Vec<Duration> = (0..n)
            .map(|_| Duration::from_nanos(rng.gen_range(1..=1_000_000_000)))
            .collect();
        let mut wheel = TimerWheel::new(Instant::ZERO, TICK);
        let mut now = Instant::ZERO;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                for (i, &offset) in offsets.iter().enumerate() {
                    wheel.insert(now + offset, i as u64);
                }
                let mut fired = 0;
                while !wheel.is_empty() {
                    now += TICK;
                    while wheel.poll_expired(now).is_some() {
                        fired += 1;
                    }
                }
                assert_eq!(fired, n);
            })
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = with_armed, insert_and_fire
}
criterion_main!(benches);
