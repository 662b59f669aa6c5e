//! The back-end-independent part of a client: which requests are due on which connection, the
//! measured window, the histogram and the counters. A back-end moves bytes and reports them
//! here; it never decides timing itself, so the kernel and xdp-tcp clients follow the same rules.

use std::collections::VecDeque;
use std::time::Duration;

use super::hist::Latency;
use super::{LoadResult, Phase, RunConfig, Workload};

/// Nanoseconds since the client started, from the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(std::time::Instant);

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock(std::time::Instant::now())
    }
    #[inline]
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// Request bookkeeping of one connection.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Send (or intended send) times of the requests whose response is not complete, oldest
    /// first: responses come back in order on a stream.
    inflight: VecDeque<u64>,
    /// Bytes of the current response received so far.
    got: usize,
    /// Request bytes due but not yet accepted by the socket.
    pub to_send: usize,
}

impl ConnState {
    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Queues one request of `size` bytes, due (or sent) at `t`.
    pub fn push(&mut self, t: u64, size: usize) {
        self.inflight.push_back(t);
        self.to_send += size;
    }
}

/// Where a client's connection slot is in its life, on either back-end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No connection: not opened yet, or ended and not reopened.
    Unused,
    /// Connect sent, not established yet.
    Connecting,
    Open,
    /// Churn: the response came, waiting for the server's FIN.
    Draining,
}

pub struct Driver {
    pub workload: Workload,
    size: usize,
    /// Open loop: nanoseconds between two requests (whole client).
    interval: u64,
    next_due: u64,
    /// Open loop: established connections that take requests, served round robin.
    active: Vec<usize>,
    rr: usize,
    warmup: u64,
    duration: u64,
    /// Start of the warm-up; `None` until [`Driver::start`].
    started: Option<u64>,
    pub hist: Latency,
    completed: u64,
    bytes: u64,
    /// All completions, warm-up included (progress lines).
    completed_all: u64,
    bytes_all: u64,
    pub connections: u64,
    pub errors: u64,
    progress: bool,
    last_print: (u64, u64, u64),
    phase: Phase,
}

impl Driver {
    pub fn new(cfg: &RunConfig) -> Self {
        let (size, interval) = match cfg.workload {
            Workload::PingPong { size, .. } => (size, 0),
            Workload::OpenLoop { size, rate, .. } | Workload::Idle { size, rate, .. } => {
                (size, 1_000_000_000 / rate.max(1))
            }
            Workload::Churn { size, .. } => (size, 0),
            Workload::Bulk { .. } => (0, 0),
        };
        Driver {
            workload: cfg.workload,
            size: size.max(1),
            interval,
            next_due: 0,
            active: Vec::new(),
            rr: 0,
            warmup: cfg.warmup.as_nanos() as u64,
            duration: cfg.duration.as_nanos() as u64,
            started: None,
            hist: Latency::new(),
            completed: 0,
            bytes: 0,
            completed_all: 0,
            bytes_all: 0,
            connections: 0,
            errors: 0,
            progress: cfg.progress && super::is_terminal_stdout(),
            last_print: (0, 0, 0),
            phase: Phase::Setup,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Connections that carry requests: all but the idle ones of an idle workload.
    pub fn is_idle_conn(&self, k: usize) -> bool {
        matches!(self.workload, Workload::Idle { idle, .. } if k < idle)
    }

    /// Traffic begins: the warm-up starts now, the measured window after it.
    pub fn start(&mut self, now: u64) {
        self.started = Some(now);
        self.next_due = now;
        self.last_print = (now, 0, 0);
    }

    pub fn started(&self) -> bool {
        self.started.is_some()
    }

    fn window(&self) -> Option<(u64, u64)> {
        let s = self.started? + self.warmup;
        Some((s, s + self.duration))
    }

    fn in_window(&self, now: u64) -> bool {
        self.window().is_some_and(|(a, b)| now >= a && now < b)
    }

    /// The run is over: stop issuing requests and return.
    pub fn finished(&self, now: u64) -> bool {
        self.window().is_some_and(|(_, b)| now >= b)
    }

    /// The phase at `now`; returns it when it changed since the last call (for [`super::Marks`]).
    pub fn phase_change(&mut self, now: u64) -> Option<Phase> {
        let p = match self.window() {
            None => return None,
            Some((a, _)) if now < a => Phase::Warmup,
            Some((_, b)) if now < b => Phase::Measure,
            Some(_) => Phase::Done,
        };
        (p != self.phase).then(|| {
            self.phase = p;
            p
        })
    }

    /// Connection `k` is established.
    pub fn connected(&mut self, k: usize, c: &mut ConnState, now: u64) {
        self.connections += 1;
        if self.is_idle_conn(k) {
            return;
        }
        match self.workload {
            Workload::PingPong { depth, .. } => {
                for _ in 0..depth.max(1) {
                    c.inflight.push_back(now);
                    c.to_send += self.size;
                }
            }
            Workload::OpenLoop { .. } | Workload::Idle { .. } => self.active.push(k),
            Workload::Churn { .. } => {
                c.inflight.push_back(now);
                c.to_send += self.size;
            }
            Workload::Bulk { .. } => {}
        }
    }

    /// Connection `k` is gone (error or end of a churn cycle): it takes no more requests.
    pub fn disconnected(&mut self, k: usize, c: &mut ConnState) {
        if let Some(p) = self.active.iter().position(|&x| x == k) {
            self.active.swap_remove(p);
        }
        c.inflight.clear();
        c.got = 0;
        c.to_send = 0;
    }

    /// `n` response bytes arrived on `c`. Returns true when a request completed.
    pub fn received(&mut self, c: &mut ConnState, n: usize, now: u64) -> bool {
        self.bytes_all += n as u64;
        if self.in_window(now) {
            self.bytes += n as u64;
        }
        if matches!(self.workload, Workload::Bulk { .. }) {
            return false;
        }
        c.got += n;
        let mut done = false;
        while c.got >= self.size {
            let Some(t) = c.inflight.pop_front() else {
                // More than was asked for: count it, keep going.
                self.errors += 1;
                c.got = 0;
                break;
            };
            c.got -= self.size;
            done = true;
            self.complete(t, now);
            if let Workload::PingPong { .. } = self.workload {
                if !self.finished(now) {
                    c.inflight.push_back(now);
                    c.to_send += self.size;
                }
            }
        }
        done
    }

    fn complete(&mut self, sent: u64, now: u64) {
        self.completed_all += 1;
        if self.in_window(now) {
            self.completed += 1;
            self.hist.record(now.saturating_sub(sent));
        }
    }

    /// Bulk upload: `n` bytes accepted by the socket.
    pub fn wrote(&mut self, n: usize, now: u64) {
        self.bytes_all += n as u64;
        if self.in_window(now) {
            self.bytes += n as u64;
        }
    }

    /// Open loop: assigns every request due by `now` to a connection (round robin), calling
    /// `push(k, due, size)` for each; the caller queues it with [`ConnState::push`].
    pub fn tick(&mut self, now: u64, mut push: impl FnMut(usize, u64, usize)) {
        if self.interval == 0 || self.active.is_empty() || self.started.is_none() {
            return;
        }
        while self.next_due <= now && !self.finished(self.next_due) {
            self.rr = (self.rr + 1) % self.active.len();
            push(self.active[self.rr], self.next_due, self.size);
            self.next_due += self.interval;
        }
    }

    /// When the next open-loop request is due (for a blocking back-end's sleep).
    pub fn next_due(&self) -> Option<u64> {
        (self.interval > 0 && !self.active.is_empty()).then_some(self.next_due)
    }

    /// Prints a progress line once a second when enabled and stdout is a terminal.
    pub fn maybe_progress(&mut self, now: u64) {
        if !self.progress || self.started.is_none() {
            return;
        }
        let (t0, c0, b0) = self.last_print;
        if now < t0 + 1_000_000_000 {
            return;
        }
        let dt = (now - t0) as f64 / 1e9;
        let secs = (now - self.started.unwrap_or(now)) as f64 / 1e9;
        let rate = (self.completed_all - c0) as f64 / dt;
        let gbps = (self.bytes_all - b0) as f64 * 8.0 / dt / 1e9;
        let lat = self
            .hist
            .summary()
            .map(|s| format!("  p50 {:.1} µs  p99 {:.1} µs", s.p50, s.p99))
            .unwrap_or_default();
        println!(
            "  [{secs:5.1} s] {rate:>10.0}/s  {gbps:6.2} Gbit/s  conns {}  errors {}{lat}",
            self.connections, self.errors
        );
        self.last_print = (now, self.completed_all, self.bytes_all);
    }

    pub fn result(&self, backend: &str) -> LoadResult {
        let secs = Duration::from_nanos(self.duration).as_secs_f64();
        LoadResult {
            backend: backend.to_string(),
            workload: self.workload.label(),
            seconds: secs,
            completed: self.completed,
            rate: self.completed as f64 / secs,
            bytes: self.bytes,
            gbit_per_s: self.bytes as f64 * 8.0 / secs / 1e9,
            connections: self.connections,
            errors: self.errors,
            latency: self.hist.summary(),
            curve: self.hist.curve(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn cfg(w: Workload) -> RunConfig {
        RunConfig {
            target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
            workload: w,
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(100),
            progress: false,
            marks: None,
        }
    }

    #[test]
    fn closed_loop_keeps_depth_in_flight_and_counts_only_the_window() {
        let mut d = Driver::new(&cfg(Workload::PingPong {
            size: 64,
            conns: 1,
            depth: 2,
        }));
        let mut c = ConnState::default();
        d.start(0);
        d.connected(0, &mut c, 0);
        assert_eq!((c.inflight(), c.to_send), (2, 128));
        c.to_send = 0;
        // A response completes during the warm-up: not counted, but replaced.
        assert!(d.received(&mut c, 64, 5_000_000));
        assert_eq!((c.inflight(), c.to_send), (2, 64));
        assert_eq!(d.result("t").completed, 0);
        // Split response inside the window.
        assert!(!d.received(&mut c, 30, 20_000_000));
        assert!(d.received(&mut c, 34, 20_000_100));
        let r = d.result("t");
        assert_eq!(r.completed, 1);
        // Sent at 0, completed at 20 ms.
        assert!((r.latency.unwrap().p50 - 20_000.0).abs() < 50.0);
        // After the window no new request is issued.
        c.to_send = 0;
        d.received(&mut c, 64, 200_000_000);
        assert_eq!(c.to_send, 0);
    }

    #[test]
    fn open_loop_measures_from_the_intended_time() {
        let mut d = Driver::new(&cfg(Workload::OpenLoop {
            size: 10,
            conns: 2,
            rate: 1000,
        }));
        let mut conns = [ConnState::default(), ConnState::default()];
        d.connected(0, &mut conns[0], 0);
        d.connected(1, &mut conns[1], 0);
        d.start(0);
        // 20 ms pass before the client gets to run: 21 requests are due (0, 1, ... 20 ms).
        let mut woke = 0;
        d.tick(20_000_000, |k, t, size| {
            conns[k].push(t, size);
            woke += 1;
        });
        assert_eq!(woke, 21);
        assert_eq!(conns[0].inflight() + conns[1].inflight(), 21);
        // The oldest request on connection 1 was due at 0 ms: a response now at 20 ms counts
        // 20 ms of latency, not the few microseconds since it was actually written.
        let first = if conns[0].inflight.front() == Some(&0) {
            0
        } else {
            1
        };
        d.received(&mut conns[first], 10, 20_000_000);
        assert!((d.hist.summary().unwrap().max - 20_000.0).abs() < 50.0);
    }
}
