//! The xdp-tcp back-end: the load generator's client and the servers as engine [`App`]s, each on
//! its own AF_XDP socket with the steering program attached to its interface.
//!
//! [`open`] builds one endpoint in the calling thread (which must already be in the interface's
//! namespace) the way `api::Stack` does ([`xdp_tcp::engine::endpoint`]): steering program (our
//! listen ports and ephemeral range only; everything else still reaches the kernel), socket on
//! queue 0, neighbour cache seeded from the kernel's tables (the kernel keeps answering ARP),
//! and a host on the interface's address. The caller then spins on [`Engine::poll`].

use std::collections::HashMap;
use std::io;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod phase;

use super::alloc::thread_live_bytes;
use super::driver::{Clock, ConnState, Driver, SlotState};
use super::sys::CpuMark;
use super::{LoadResult, Marks, Phase, RunConfig, ServeMode, ServerReport, Workload};
use xdp_tcp::engine::endpoint::{InterfaceConfig, XdpInterface};
use xdp_tcp::engine::{App, Engine, EngineConfig, IdleBackoff};
use xdp_tcp::host::{ConnId, Host, HostConfig};
use xdp_tcp::io::xdp::{AttachMode, XdpSocket, XdpSocketConfig};
use xdp_tcp::tcp::{Connection, Event};
use xdp_tcp::time::Instant;

/// Where and how an endpoint runs.
#[derive(Debug, Clone)]
pub struct XdpOpts {
    pub iface: String,
    pub attach: AttachMode,
    /// Ports our active opens use (steered to us); keep it clear of the kernel's range when the
    /// kernel on this interface makes connections of its own.
    pub ephemeral: RangeInclusive<u16>,
    /// Sleep in `poll` after a run of idle iterations instead of spinning (CPU-honest bulk).
    pub idle_backoff: bool,
    /// With `idle_backoff`: empty iterations in a row before the engine sleeps.
    pub idle_after: u32,
}

impl XdpOpts {
    pub fn new(iface: &str) -> Self {
        XdpOpts {
            iface: iface.to_string(),
            attach: AttachMode::Auto,
            ephemeral: 10000..=65000,
            idle_backoff: false,
            idle_after: 256,
        }
    }
}

/// No ephemeral ports (a server): lo > hi, which the steering program reads as none.
#[allow(clippy::reversed_empty_ranges)]
pub fn no_ephemeral() -> RangeInclusive<u16> {
    1..=0
}

/// An engine with its steering program; dropping it detaches the program.
pub struct Endpoint<A: App> {
    pub engine: Engine<XdpSocket, A>,
    // Dropped after the engine (field order): the socket leaves the XSKMAP first.
    pub iface: XdpInterface,
}

/// The interface `opts` names with `listen` steered to us, as [`open`] and the floor attach it.
pub fn attach(opts: &XdpOpts, listen: &[u16]) -> io::Result<XdpInterface> {
    XdpInterface::attach(&InterfaceConfig {
        name: opts.iface.clone(),
        addr: None,
        ephemeral: opts.ephemeral.clone(),
        listen: listen.to_vec(),
        attach: opts.attach,
    })
}

/// Builds an endpoint on `opts.iface` in the calling thread's namespace.
pub fn open<A: App>(opts: &XdpOpts, listen: &[u16], app: A) -> io::Result<Endpoint<A>> {
    let iface = attach(opts, listen)?;
    let device = iface.open_queue(0, &XdpSocketConfig::default(), None)?;
    let host = host_for(opts, &iface, listen);
    let engine = device.into_engine(host, app, engine_config(opts));
    Ok(Endpoint { engine, iface })
}

/// The host of an endpoint on `iface`: its address, `opts`' ephemeral ports, `listen` open.
fn host_for(opts: &XdpOpts, iface: &XdpInterface, listen: &[u16]) -> Host {
    let mut hc = HostConfig::new(iface.addr().0);
    hc.ephemeral_ports = (*opts.ephemeral.start(), *opts.ephemeral.end());
    hc.tcp.nodelay = true;
    let mut host = Host::new(hc);
    for &p in listen {
        host.listen(p, 65536);
    }
    host
}

fn engine_config(opts: &XdpOpts) -> EngineConfig {
    EngineConfig {
        idle: opts.idle_backoff.then_some(IdleBackoff {
            after: opts.idle_after,
            max_sleep: std::time::Duration::from_millis(1),
        }),
        ..EngineConfig::default()
    }
}

/// [`serve`] with one engine per queue of `opts.iface` (`queues`, default the device's count,
/// which it must equal), engine `i` pinned to `cores[i]` when given. Engines own flows by hash
/// ([`xdp_tcp::rss`]: the NIC's RSS key where readable) and forward frames of other engines'
/// flows to them; the report sums theirs (CPU: the engines' thread CPU added, the mean of
/// their cores' busy fractions), and prints each engine's forwarding counters. With `marks`
/// every engine takes the server-side measurements on its own core.
#[allow(clippy::too_many_arguments)]
pub fn serve_queues(
    opts: &XdpOpts,
    ports: &[u16],
    mode: ServeMode,
    queues: Option<u32>,
    cores: Option<Vec<usize>>,
    marks: Option<Arc<Marks>>,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
    use std::sync::Mutex;
    use xdp_tcp::engine::cores::{CoreId, CoreSpec, EngineThreads};
    use xdp_tcp::engine::mesh::Mesh;
    use xdp_tcp::rss::FlowSteer;

    let iface = Arc::new(attach(opts, ports)?);
    let device = iface.queues();
    let n = queues.unwrap_or(device);
    if n != device {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: the device has {device} receive queues, not {n}",
                opts.iface
            ),
        ));
    }
    if let Some(c) = &cores {
        if c.len() < n as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{n} queues but {} cores given", c.len()),
            ));
        }
    }
    let rss = (n > 1)
        .then(|| iface.rss().ok())
        .flatten()
        .map(|r| (r.key, r.table));
    let steer = Arc::new(FlowSteer::for_device(iface.addr().0, n, rss));
    eprintln!(
        "{n} engines on {:?}, flow ownership from {:?}",
        iface.addr(),
        steer.source()
    );
    let meshes: Mutex<Vec<Option<Mesh>>> = Mutex::new(
        Mesh::build(n as usize, 1024, Vec::new())
            .into_iter()
            .map(Some)
            .collect(),
    );
    let specs = (0..n)
        .map(|q| CoreSpec {
            queue_id: q,
            core: cores.as_ref().map(|c| CoreId { id: c[q as usize] }),
            netns: None,
        })
        .collect();
    let (o, p, i) = (opts.clone(), ports.to_vec(), Arc::clone(&iface));
    let threads = EngineThreads::spawn(specs, move |spec| {
        let q = spec.queue_id;
        let device = i.open_queue(q, &XdpSocketConfig::default(), None)?;
        let mut host = host_for(&o, &i, &p);
        host.set_steering(Arc::clone(&steer), q);
        // as the single-engine server's thread (`sys::place_thread`): nice -20 where allowed
        crate::sys::boost_priority();
        let app = ServerApp::new(&p, mode, marks.clone(), spec.core.map(|c| c.id));
        let mesh = meshes
            .lock()
            .map_err(|_| io::Error::other("mesh list poisoned"))?[q as usize]
            .take()
            .ok_or_else(|| io::Error::other("engine started twice"))?;
        Ok(device
            .into_engine(host, app, engine_config(&o))
            .with_mesh(mesh))
    })?;
    ready();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut report = ServerReport::default();
    let mut busy = Vec::new();
    for (q, e) in threads.stop().into_iter().enumerate() {
        // (no last `sample` here: it measures the calling thread's CPU; the engines polled on
        // after the client's Done, until the client had joined)
        let e = e?;
        let s = e.stats();
        eprintln!(
            "engine {q}: rx {} frames, forwarded out {} in {}, dropped {}",
            s.rx_frames,
            s.forwarded_out,
            s.forwarded_in,
            s.rx_dropped()
        );
        let r = &e.app().report;
        report.accepted += r.accepted;
        report.bytes_in += r.bytes_in;
        report.bytes_out += r.bytes_out;
        if let Some(t) = r.thread_cpu {
            report.thread_cpu = Some(report.thread_cpu.unwrap_or(0.0) + t);
        }
        busy.extend(r.core_busy);
    }
    if !busy.is_empty() {
        report.core_busy = Some(busy.iter().sum::<f64>() / busy.len() as f64);
    }
    if let Ok(st) = iface.program().stats() {
        eprintln!("steering program: {st:?}");
    }
    drop(iface);
    Ok(report)
}

/// Echo / discard / source / echo-then-close on one port, and the server-side measurements.
pub struct ServerApp {
    ports: Vec<u16>,
    mode: ServeMode,
    scratch: Vec<u8>,
    zeros: Vec<u8>,
    conns: HashMap<ConnId, usize, ahash::RandomState>,
    pub report: ServerReport,
    marks: Option<Arc<Marks>>,
    core: Option<usize>,
    phase: Phase,
    mem_base: Option<i64>,
    cpu: Option<CpuMark>,
}

impl ServerApp {
    pub fn new(
        ports: &[u16],
        mode: ServeMode,
        marks: Option<Arc<Marks>>,
        core: Option<usize>,
    ) -> Self {
        ServerApp {
            ports: ports.to_vec(),
            mode,
            scratch: vec![0; 64 * 1024],
            zeros: vec![0; 64 * 1024],
            conns: HashMap::default(),
            report: ServerReport::default(),
            marks,
            core,
            phase: Phase::Setup,
            mem_base: None,
            cpu: None,
        }
    }

    /// Called every iteration: the phase's load and comparison inline, the rest out of line.
    #[inline]
    fn sample(&mut self) {
        let Some(m) = &self.marks else { return };
        let p = m.get();
        if p != self.phase {
            self.phase_changed(p);
        }
    }

    /// Moves what it can on one connection; closes it when done.
    fn service(&mut self, host: &mut Host, id: ConnId) -> usize {
        let Some(echoed) = self.conns.get_mut(&id) else {
            return 0;
        };
        let mut work = 0;
        let close = match self.mode {
            ServeMode::Echo | ServeMode::EchoClose(_) => {
                let limit = match self.mode {
                    ServeMode::EchoClose(l) => Some(l),
                    _ => None,
                };
                // Looked at without touching it first: an event that leaves nothing to echo (a
                // Writable after an ACK) must not queue the connection for output.
                let idle = |c: &Connection| {
                    c.recv_queue() == 0 || c.send_space() == 0 || c.error().is_some()
                };
                let busy = host.conn(id).map(|c| !idle(c));
                if busy == Some(true) {
                    let scratch = &mut self.scratch;
                    let moved = host
                        .with_conn(id, |c| {
                            let mut moved = 0;
                            while !idle(c) {
                                let n = c.recv_queue().min(c.send_space()).min(scratch.len());
                                let got = c.recv(&mut scratch[..n]).unwrap_or(0);
                                let sent = c.send(&scratch[..got]).unwrap_or(0);
                                if sent == 0 {
                                    break;
                                }
                                moved += sent;
                            }
                            moved
                        })
                        .unwrap_or(0);
                    *echoed += moved;
                    work += moved;
                    self.report.bytes_in += moved as u64;
                    self.report.bytes_out += moved as u64;
                }
                match host.conn(id) {
                    None => false,
                    Some(c) if c.error().is_some() => true,
                    Some(c) => {
                        (c.at_eof() && c.recv_queue() == 0) || limit.is_some_and(|l| *echoed >= l)
                    }
                }
            }
            ServeMode::Discard => {
                let waiting = host.conn(id).map(|c| {
                    if c.error().is_some() {
                        0
                    } else {
                        c.recv_queue()
                    }
                });
                if waiting.is_some_and(|n| n > 0) {
                    // In place: nothing is copied out of the receive buffer.
                    let got = host
                        .with_conn(id, |c| {
                            let mut got = 0;
                            loop {
                                let n = c.recv_queue();
                                if n == 0 {
                                    break got;
                                }
                                let k = c.consume(n);
                                if k == 0 {
                                    break got;
                                }
                                got += k;
                            }
                        })
                        .unwrap_or(0);
                    work += got;
                    self.report.bytes_in += got as u64;
                }
                match host.conn(id) {
                    None => false,
                    Some(c) => c.error().is_some() || (c.recv_queue() == 0 && c.at_eof()),
                }
            }
            ServeMode::Source => loop {
                let Some(c) = host.conn(id) else {
                    break false;
                };
                if c.error().is_some() {
                    break true;
                }
                let q = c.recv_queue();
                if q > 0 {
                    host.with_conn(id, |c| c.consume(q));
                }
                let c = host.conn(id).expect("checked above");
                if c.at_eof() {
                    break true;
                }
                let n = c.send_space().min(self.zeros.len());
                if n == 0 {
                    break false;
                }
                let sent = host.send(id, &self.zeros[..n]).unwrap_or(0);
                if sent == 0 {
                    break false;
                }
                work += sent;
                self.report.bytes_out += sent as u64;
            },
        };
        if close {
            self.conns.remove(&id);
            host.close(id);
        }
        work
    }
}

impl App for ServerApp {
    fn lends(&self) -> bool {
        true
    }

    /// Zero-copy receive: an echo answers from the received frame itself (one copy, into the
    /// send buffer), a discard consumes in place; neither touches the receive buffer. Only
    /// accepted connections are lent (the host's rule), all of them this app's; the
    /// echo-and-close mode (which counts per connection) leaves its bytes to the copy path and
    /// `service`.
    fn on_payload(&mut self, _now: Instant, _: ConnId, c: &mut Connection, data: &[u8]) -> usize {
        match self.mode {
            ServeMode::Echo => {
                let n = c.send(data).unwrap_or(0);
                self.report.bytes_in += n as u64;
                self.report.bytes_out += n as u64;
                n
            }
            ServeMode::Discard => {
                self.report.bytes_in += data.len() as u64;
                data.len()
            }
            // (a source only drains what it is sent)
            ServeMode::Source => data.len(),
            ServeMode::EchoClose(_) => 0,
        }
    }

    fn poll(&mut self, _now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        if self.mem_base.is_none() {
            self.mem_base = Some(thread_live_bytes());
        }
        self.sample();
        let mut work = 0;
        for (i, &(id, ev)) in events.iter().enumerate() {
            match ev {
                Event::Connected => {
                    for i in 0..self.ports.len() {
                        while let Some(id) = host.accept(self.ports[i]) {
                            self.report.accepted += 1;
                            self.conns.insert(id, 0);
                            host.with_conn(id, |c| c.set_writable_on_demand(true));
                            work += 1 + self.service(host, id);
                        }
                    }
                }
                Event::Closed => {
                    if self.conns.remove(&id).is_some() {
                        host.close(id);
                    }
                }
                // Writable on demand (set at accept: its writers fill the buffer first); an echo
                // or discard with nothing left to echo has no use for it.
                Event::Writable
                    if matches!(self.mode, ServeMode::Echo | ServeMode::Discard)
                        && host.conn(id).is_some_and(|c| c.recv_queue() == 0) => {}
                // Readable, Writable, PeerClosed, Error: when the next event names the same
                // connection and services it too (ping-pong's Writable then Readable for one
                // segment), once is enough: nothing happens to the connection in between.
                _ => {
                    let again = events.get(i + 1).is_some_and(|&(next, nev)| {
                        next == id && !matches!(nev, Event::Connected | Event::Closed)
                    });
                    if !again {
                        work += self.service(host, id);
                    }
                }
            }
        }
        work
    }
}

/// Serves `ports` on `opts.iface` until `stop` is set; `ready` is called once the socket is
/// registered. Runs in the calling thread (pinned and in its namespace already).
pub fn serve(
    opts: &XdpOpts,
    ports: &[u16],
    mode: ServeMode,
    marks: Option<Arc<Marks>>,
    core: Option<usize>,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
    let app = ServerApp::new(ports, mode, marks, core);
    let mut ep = open(opts, ports, app)?;
    ready();
    let mut n = 0u32;
    let mut empty = 0u64;
    loop {
        if ep.engine.poll() == 0 {
            empty += 1;
        }
        n = n.wrapping_add(1);
        if n % 1024 == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    // One more look at the marks (Done may have come during the last batch).
    ep.engine.app_mut().sample();
    let mut report = ep.engine.app().report.clone();
    report.iterations = Some(ep.engine.stats().iterations);
    report.empty_iterations = Some(empty);
    Ok(report)
}

/// One client connection: its id in the host, where it is in its life, and its requests.
struct ClientSlot {
    id: Option<ConnId>,
    state: SlotState,
    /// When the connect was sent (churn latency runs from here).
    opened: u64,
    requests: ConnState,
}

/// The load generator's client as an engine application.
pub struct ClientApp {
    cfg: RunConfig,
    clock: Clock,
    pub driver: Driver,
    conns: Vec<ClientSlot>,
    index: HashMap<ConnId, usize, ahash::RandomState>,
    zeros: Vec<u8>,
    next_open: usize,
    /// Connections opened so far (picks the server port of churn runs).
    opened: u64,
    connecting: usize,
    established: usize,
    ready_at: Option<u64>,
    setup_limit: u64,
    woke: Vec<usize>,
    done: bool,
    pub error: Option<String>,
}

const CONNECT_BURST: usize = 256;

impl ClientApp {
    pub fn new(cfg: &RunConfig) -> Self {
        let n = cfg.workload.conns();
        let clock = Clock::new();
        ClientApp {
            cfg: cfg.clone(),
            driver: Driver::new(cfg),
            conns: (0..n)
                .map(|_| ClientSlot {
                    id: None,
                    state: SlotState::Unused,
                    opened: 0,
                    requests: ConnState::default(),
                })
                .collect(),
            index: HashMap::default(),
            zeros: vec![0; 64 * 1024],
            next_open: 0,
            opened: 0,
            connecting: 0,
            established: 0,
            ready_at: None,
            setup_limit: clock.now() + 30_000_000_000,
            clock,
            woke: Vec::new(),
            done: false,
            error: None,
        }
    }

    pub fn done(&self) -> bool {
        self.done
    }

    fn churn(&self) -> bool {
        matches!(self.cfg.workload, Workload::Churn { .. })
    }

    fn upload(&self) -> bool {
        matches!(self.cfg.workload, Workload::Bulk { upload: true, .. })
    }

    fn open(&mut self, k: usize, now: Instant, host: &mut Host) {
        let target = self.cfg.workload.target_of(self.cfg.target, self.opened);
        self.opened += 1;
        match host.connect(now, target) {
            Ok(id) => {
                self.index.insert(id, k);
                self.conns[k] = ClientSlot {
                    id: Some(id),
                    state: SlotState::Connecting,
                    opened: self.clock.now(),
                    requests: ConnState::default(),
                };
                self.connecting += 1;
            }
            Err(e) => {
                self.driver.errors += 1;
                self.error = Some(format!("connect: {e:?}"));
                self.done = true;
            }
        }
    }

    /// Connection `k` ended (cleanly for a churn cycle, else an error): reopen it for churn.
    fn ended(&mut self, k: usize, host: &mut Host, clean: bool, now: Instant) {
        let c = &mut self.conns[k];
        if let Some(id) = c.id.take() {
            self.index.remove(&id);
            if clean {
                host.close(id);
            } else {
                host.abort(id);
            }
        }
        if c.state == SlotState::Connecting {
            self.connecting -= 1;
        }
        c.state = SlotState::Unused;
        self.driver.disconnected(k, &mut c.requests);
        if !clean {
            self.driver.errors += 1;
        }
        if self.churn() && !self.driver.finished(self.clock.now()) {
            self.open(k, now, host);
        } else if !self.churn() {
            self.error = Some("a connection failed or was closed by the server".into());
            self.done = true;
        }
    }

    fn pump(&mut self, k: usize, host: &mut Host, now: Instant) -> usize {
        let Some(id) = self.conns[k].id else {
            return 0;
        };
        let mut work = 0;
        // Read: the bytes are only counted, so consume them in place.
        let (got, eof, failed) = match host.conn(id) {
            Some(c) => (c.recv_queue(), c.at_eof(), c.error().is_some()),
            None => (0, false, true),
        };
        if got > 0 {
            host.with_conn(id, |c| c.consume(got));
            let t = self.clock.now();
            let churn = self.churn();
            let c = &mut self.conns[k];
            if self.driver.received(&mut c.requests, got, t) && churn {
                c.state = SlotState::Draining;
            }
            work += got;
        }
        if failed || (eof && got == 0) || (eof && host.conn(id).is_some_and(|c| c.at_eof())) {
            let clean = !failed && self.conns[k].state == SlotState::Draining;
            self.ended(k, host, clean, now);
            return work + 1;
        }
        // Write what is due.
        let upload = self.upload() && self.driver.started();
        loop {
            let c = &mut self.conns[k];
            let want = if upload {
                self.zeros.len()
            } else {
                c.requests.to_send.min(self.zeros.len())
            };
            if want == 0 {
                break;
            }
            let n = host.send(id, &self.zeros[..want]).unwrap_or(0);
            if n == 0 {
                break;
            }
            if upload {
                self.driver.wrote(n, self.clock.now());
            } else {
                c.requests.to_send -= n;
            }
            work += n;
        }
        work
    }

    fn step(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        let n = self.conns.len();
        let mut work = 0;
        let t = self.clock.now();
        while !self.driver.started() && self.next_open < n && self.connecting < CONNECT_BURST {
            let k = self.next_open;
            self.next_open += 1;
            self.open(k, now, host);
            work += 1;
        }
        if self.churn() && !self.driver.started() {
            self.driver.start(t);
        }
        for &(id, ev) in events {
            let Some(&k) = self.index.get(&id) else {
                continue;
            };
            if ev == Event::Connected && self.conns[k].state == SlotState::Connecting {
                let churn = self.churn();
                let c = &mut self.conns[k];
                c.state = SlotState::Open;
                self.connecting -= 1;
                self.established += 1;
                let at = if churn { c.opened } else { self.clock.now() };
                self.driver.connected(k, &mut c.requests, at);
            }
            if matches!(ev, Event::Error(_) | Event::Closed)
                && self.conns[k].state == SlotState::Connecting
            {
                self.ended(k, host, false, now);
                continue;
            }
            work += self.pump(k, host, now);
        }
        if !self.driver.started() {
            if self.established == n {
                match self.ready_at {
                    None => {
                        self.cfg.mark(Phase::IdleReady);
                        let settle = if matches!(self.cfg.workload, Workload::Idle { .. }) {
                            200_000_000
                        } else {
                            0
                        };
                        self.ready_at = Some(t + settle);
                    }
                    Some(r) if t >= r => {
                        self.driver.start(t);
                        if self.upload() {
                            self.woke.extend(0..n);
                        }
                    }
                    Some(_) => {}
                }
            } else if t > self.setup_limit {
                self.error = Some(format!(
                    "only {} of {n} connections established in 30 s",
                    self.established
                ));
                self.done = true;
            }
        }
        let Self {
            driver,
            conns,
            woke,
            ..
        } = self;
        driver.tick(t, |k, due, size| {
            conns[k].requests.push(due, size);
            woke.push(k);
        });
        while let Some(k) = self.woke.pop() {
            work += self.pump(k, host, now);
        }
        if let Some(p) = self.driver.phase_change(t) {
            self.cfg.mark(p);
        }
        self.driver.maybe_progress(t);
        if self.driver.finished(t) {
            self.done = true;
        }
        work
    }
}

impl App for ClientApp {
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        if self.done {
            return 0;
        }
        self.step(now, host, events)
    }
}

/// Runs one client workload on `opts.iface` in the calling thread (pinned and in its namespace).
pub fn run_client(cfg: &RunConfig, opts: &XdpOpts) -> io::Result<LoadResult> {
    let mut ep = open(opts, &[], ClientApp::new(cfg))?;
    while !ep.engine.app().done() {
        ep.engine.poll();
    }
    cfg.mark(Phase::Done);
    // Reset what is left so a long-running server does not keep it, and let the RSTs out.
    let ids: Vec<ConnId> = ep.engine.app().index.keys().copied().collect();
    for id in ids {
        ep.engine.host_mut().abort(id);
    }
    for _ in 0..64 {
        ep.engine.poll();
    }
    let app = ep.engine.app();
    if let Some(e) = &app.error {
        return Err(io::Error::other(e.clone()));
    }
    Ok(app.driver.result("xdp-tcp"))
}
