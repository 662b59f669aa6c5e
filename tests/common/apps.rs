//! Small engine applications for the engine tests (`engine_mem`, `veth_interop`): an echo
//! server and a bulk client that checks every byte it gets back. Both are event-driven: a
//! connection is touched only when it has an event, so an idle connection costs nothing per
//! iteration. The echo server adds two copies of its own through a scratch buffer (receive
//! buffer to scratch to send buffer), on top of the stack's one copy each way.
//!
//! Counters are atomics behind an `Arc` so a test thread can watch progress while the app runs
//! on the engine's core (written by that core only; relaxed ordering is enough for counters).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use xdp_tcp::engine::App;
use xdp_tcp::host::{ConnId, Host};
use xdp_tcp::tcp::{self, Event};
use xdp_tcp::time::Instant;

/// What an [`EchoServer`] did so far.
#[derive(Debug, Default)]
pub struct EchoCounters {
    pub accepted: AtomicU64,
    /// Connections that reached end of stream and were closed by us after echoing everything.
    pub finished: AtomicU64,
    /// Connections that ended with an error (reset, time-out).
    pub errors: AtomicU64,
    pub bytes: AtomicU64,
}

impl EchoCounters {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Echoes every byte back on each connection accepted on `port`; closes after the peer's FIN
/// once everything is echoed.
pub struct EchoServer {
    port: u16,
    scratch: Vec<u8>,
    open: HashSet<ConnId, ahash::RandomState>,
    counters: Arc<EchoCounters>,
}

impl EchoServer {
    /// Call [`Host::listen`] on `port` before the engine runs.
    pub fn new(port: u16) -> Self {
        EchoServer {
            port,
            scratch: vec![0; 64 * 1024],
            open: HashSet::default(),
            counters: Arc::new(EchoCounters::default()),
        }
    }

    pub fn counters(&self) -> Arc<EchoCounters> {
        Arc::clone(&self.counters)
    }

    /// Connections accepted and not yet closed.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Their handles (for diagnostics).
    pub fn open_ids(&self) -> Vec<ConnId> {
        self.open.iter().copied().collect()
    }

    fn service(&mut self, host: &mut Host, id: ConnId) -> usize {
        if !self.open.contains(&id) {
            return 0;
        }
        let mut moved = 0;
        loop {
            let Some(c) = host.conn(id) else {
                self.open.remove(&id);
                return moved;
            };
            if let Some(_e) = c.error() {
                self.open.remove(&id);
                bump(&self.counters.errors, 1);
                host.close(id);
                return moved;
            }
            let n = c.recv_queue().min(c.send_space()).min(self.scratch.len());
            if n == 0 {
                if c.at_eof() {
                    self.open.remove(&id);
                    bump(&self.counters.finished, 1);
                    host.close(id);
                }
                return moved;
            }
            let scratch = &mut self.scratch[..n];
            let done = host.with_conn(id, |c| {
                let got = c.recv(scratch).unwrap_or(0);
                c.send(&scratch[..got]).unwrap_or(0)
            });
            let done = done.unwrap_or(0);
            if done == 0 {
                return moved;
            }
            moved += done;
            bump(&self.counters.bytes, done as u64);
        }
    }
}

impl App for EchoServer {
    fn poll(&mut self, _now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        let mut work = 0;
        for &(id, ev) in events {
            match ev {
                Event::Connected => {
                    while let Some(id) = host.accept(self.port) {
                        bump(&self.counters.accepted, 1);
                        self.open.insert(id);
                        // Data and FIN that came before accept raised no event.
                        work += 1 + self.service(host, id);
                    }
                }
                Event::Readable | Event::Writable | Event::PeerClosed | Event::Error(_) => {
                    work += self.service(host, id);
                }
                Event::Closed => {
                    if self.open.remove(&id) {
                        bump(&self.counters.errors, 1);
                        host.close(id);
                    }
                }
            }
        }
        work
    }
}

/// A deterministic byte stream (xorshift64*), generated on the fly for sending and again for
/// checking what comes back.
#[derive(Debug, Clone)]
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Pattern {
            state: seed ^ 0x9E37_79B9_7F4A_7C15 | 1,
            word: [0; 8],
            used: 8,
        }
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            if self.used == 8 {
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.word = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }
}

/// How one [`BulkClient`] connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOutcome {
    /// Everything sent, the same bytes read back, end of stream, closed.
    Ok,
    /// The first byte that differed, at this offset.
    Mismatch(usize),
    /// More bytes came back than were sent.
    TooLong,
    /// End of stream before everything came back.
    Short(usize),
    Error(tcp::Error),
}

#[derive(Debug, Default)]
pub struct BulkCounters {
    pub connected: AtomicU64,
    /// Connections that ended, any outcome.
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_verified: AtomicU64,
}

impl BulkCounters {
    pub fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

struct Stream {
    id: ConnId,
    tx: Pattern,
    rx: Pattern,
    chunk: Vec<u8>,
    off: usize,
    sent: usize,
    received: usize,
    shut: bool,
    outcome: Option<StreamOutcome>,
}

/// Opens `conns` connections to `remote`; each sends `len` pattern bytes, shuts down writing,
/// and expects the same `len` bytes back (an echo server) before end of stream.
pub struct BulkClient {
    remote: SocketAddrV4,
    conns: usize,
    len: usize,
    seed: u64,
    started: bool,
    streams: Vec<Stream>,
    index: HashMap<ConnId, usize, ahash::RandomState>,
    scratch: Vec<u8>,
    expect: Vec<u8>,
    counters: Arc<BulkCounters>,
}

const CHUNK: usize = 16 * 1024;

impl BulkClient {
    pub fn new(remote: SocketAddrV4, conns: usize, len: usize, seed: u64) -> Self {
        BulkClient {
            remote,
            conns,
            len,
            seed,
            started: false,
            streams: Vec::with_capacity(conns),
            index: HashMap::default(),
            scratch: vec![0; 64 * 1024],
            expect: vec![0; 64 * 1024],
            counters: Arc::new(BulkCounters::default()),
        }
    }

    pub fn counters(&self) -> Arc<BulkCounters> {
        Arc::clone(&self.counters)
    }

    /// Each connection's handle and outcome (`None`: still running).
    pub fn outcomes(&self) -> Vec<(ConnId, Option<StreamOutcome>)> {
        self.streams.iter().map(|s| (s.id, s.outcome)).collect()
    }

    pub fn done(&self) -> bool {
        self.started && self.streams.iter().all(|s| s.outcome.is_some())
    }

    fn finish(&mut self, host: &mut Host, i: usize, outcome: StreamOutcome) {
        let s = &mut self.streams[i];
        if s.outcome.is_some() {
            return;
        }
        s.outcome = Some(outcome);
        bump(&self.counters.finished, 1);
        if outcome == StreamOutcome::Ok {
            host.close(s.id);
        } else {
            bump(&self.counters.failed, 1);
            host.abort(s.id);
        }
    }

    fn pump(&mut self, host: &mut Host, i: usize) -> usize {
        let mut work = 0;
        if self.streams[i].outcome.is_some() {
            return 0;
        }
        let id = self.streams[i].id;
        if let Some(e) = host.conn(id).and_then(|c| c.error()) {
            self.finish(host, i, StreamOutcome::Error(e));
            return 1;
        }
        // Send what fits.
        loop {
            let s = &mut self.streams[i];
            if s.sent == self.len {
                if !s.shut {
                    s.shut = true;
                    host.with_conn(id, |c| c.close());
                    work += 1;
                }
                break;
            }
            let space = host.conn(id).map_or(0, |c| c.send_space());
            if space == 0 {
                break;
            }
            if s.off == s.chunk.len() {
                let n = CHUNK.min(self.len - s.sent);
                s.chunk.resize(n, 0);
                s.tx.fill(&mut s.chunk);
                s.off = 0;
            }
            let data = &s.chunk[s.off..];
            let n = match host.send(id, data) {
                Ok(n) => n,
                Err(tcp::Error::WouldBlock) => 0,
                Err(e) => {
                    self.finish(host, i, StreamOutcome::Error(e));
                    return work + 1;
                }
            };
            if n == 0 {
                break;
            }
            s.off += n;
            s.sent += n;
            bump(&self.counters.bytes_sent, n as u64);
            work += n;
        }
        // Check what came back.
        while let Some(c) = host.conn(id) {
            let queued = c.recv_queue();
            if queued == 0 {
                if c.at_eof() {
                    let s = &self.streams[i];
                    let outcome = if s.received == self.len && s.sent == self.len {
                        StreamOutcome::Ok
                    } else {
                        StreamOutcome::Short(s.received)
                    };
                    self.finish(host, i, outcome);
                    work += 1;
                }
                break;
            }
            let n = queued.min(self.scratch.len());
            let buf = &mut self.scratch[..n];
            let got = host.recv(id, buf).unwrap_or(0);
            if got == 0 {
                break;
            }
            let s = &mut self.streams[i];
            if s.received + got > self.len {
                self.finish(host, i, StreamOutcome::TooLong);
                return work + 1;
            }
            let expect = &mut self.expect[..got];
            s.rx.fill(expect);
            if let Some(k) = (0..got).find(|&k| self.scratch[k] != expect[k]) {
                let at = s.received + k;
                self.finish(host, i, StreamOutcome::Mismatch(at));
                return work + 1;
            }
            s.received += got;
            bump(&self.counters.bytes_verified, got as u64);
            work += got;
        }
        work
    }
}

impl App for BulkClient {
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        let mut work = 0;
        if !self.started {
            self.started = true;
            for k in 0..self.conns {
                let seed = self.seed.wrapping_add(k as u64);
                match host.connect(now, self.remote) {
                    Ok(id) => {
                        self.index.insert(id, self.streams.len());
                        self.streams.push(Stream {
                            id,
                            tx: Pattern::new(seed),
                            rx: Pattern::new(seed),
                            chunk: Vec::new(),
                            off: 0,
                            sent: 0,
                            received: 0,
                            shut: false,
                            outcome: None,
                        });
                    }
                    Err(_) => {
                        bump(&self.counters.failed, 1);
                        bump(&self.counters.finished, 1);
                    }
                }
            }
            work += self.conns;
        }
        for &(id, ev) in events {
            let Some(&i) = self.index.get(&id) else {
                continue;
            };
            if ev == Event::Connected {
                bump(&self.counters.connected, 1);
            }
            work += self.pump(host, i);
            if ev == Event::Closed && self.streams[i].outcome.is_none() {
                let e = host
                    .conn(id)
                    .and_then(|c| c.error())
                    .unwrap_or(tcp::Error::NotConnected);
                self.finish(host, i, StreamOutcome::Error(e));
            }
        }
        work
    }
}
