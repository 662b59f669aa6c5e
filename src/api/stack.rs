//! Starting and stopping a stack: [`StackBuilder`] and the [`Stack`] handle.
//!
//! The stack joins the two sides of the threaded API: it runs the engine-side bridge
//! (`bridge.rs`) in every engine and gives the user side (`TcpStream`, `TcpListener`) the
//! handles to reach them; it imports neither user-side type.
//!
//! On an interface ([`StackBuilder::start`]): load the XDP steering program, tell it our
//! address, ephemeral ports and listening ports, attach it (native, else generic), then start
//! one engine per queue on its own thread (pinned to a core if asked), each opening its AF_XDP
//! socket on its queue, registering it in the program's XSKMAP and seeding its neighbour cache
//! from the kernel's tables (the set-up of [`crate::engine::endpoint`], shared with the
//! benchmark harness). Over any other [`PacketIo`] ([`StackBuilder::start_on`]): one
//! engine per device, resolving neighbours over ARP itself; that is how the API is tested
//! without root.
//!
//! Shutdown ([`Stack::shutdown`], also on drop, on Ctrl-C with [`Stack::shutdown_on_ctrl_c`],
//! and when a handler panics): every engine closes its connections (FIN; RST where received
//! bytes were never read) and stops listening, waits for them to finish (TIME-WAIT does not
//! count) up to the grace period, resets whatever remains, and reports drained; then the
//! sockets leave the XSKMAP, the engines stop and the program detaches.

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam::channel::Sender;

use super::bridge::StackApp;
use super::capture::Capture;
use super::control::ControlServer;
use super::handler::{Handler, HandlerApp};
use super::shared::{Control, EngineHandle, SockDefaults, Wake};
use super::stats::{StackStats, StatsSource};
use crate::engine::capture::CaptureRing;
use crate::engine::cores::{enter_netns, CoreId, CoreSpec, EngineThreads};
use crate::engine::endpoint::{EngineIo, InterfaceConfig, XdpInterface};
use crate::engine::mesh::{ForwardStats, Mesh, MeshCounters, WakeFn};
use crate::engine::snapshot::StatsBoard;
use crate::engine::{EngineConfig, EngineStats, IdleBackoff};
use crate::host::{Host, HostConfig, HostStats};
use crate::io::ethtool::RssConfig;
use crate::io::xdp::{AttachMode, SteerProgram, Waker, XdpSocketConfig};
use crate::io::PacketIo;
use crate::neigh::{ArpOwner, NeighCache, NeighConfig};
use crate::rss::FlowSteer;
use crate::tcp;
use crate::wire::EthernetAddress;

/// Frames each lane between two engines holds.
const MESH_LANE: usize = 1024;

/// One engine's counters as it stopped ([`Stack::engine_reports`]).
#[derive(Debug, Clone, Default)]
pub struct EngineReport {
    /// Frames, forwarding, drops by reason.
    pub engine: EngineStats,
    /// Connections opened and accepted, segments, drops by reason.
    pub host: HostStats,
}

/// Flow ownership over `n` engines: the device's RSS where it could be read and covers only
/// our queues, else the stack's own.
fn steering(addr: Ipv4Addr, n: u32, rss: Option<RssConfig>) -> FlowSteer {
    FlowSteer::for_device(addr, n, rss.map(|r| (r.key, r.table)))
}

fn cfg_name(i: &Option<String>) -> &str {
    i.as_deref().unwrap_or("?")
}

type Factory = Arc<dyn Fn() -> Box<dyn Handler + Send> + Send + Sync>;
type Stopper = Box<dyn FnOnce() -> Vec<io::Result<()>> + Send>;

/// A device for [`StackBuilder::start_on`]: a [`PacketIo`], the MAC it sends from, and
/// optionally a way to wake its engine from an idle sleep when a command arrives.
pub struct Device<P> {
    /// The device.
    pub io: P,
    /// Our MAC on it.
    pub mac: EthernetAddress,
    /// Signalled after each command to the engine (see [`crate::io::mem::ChanIo::waker`]).
    pub waker: Option<Sender<()>>,
}

/// Configures and starts a [`Stack`].
///
/// ```no_run
/// use xdp_tcp::api::{Cx, Handler, Stack};
/// use xdp_tcp::host::ConnId;
///
/// struct Echo;
/// impl Handler for Echo {
///     fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
///         let mut buf = [0u8; 4096];
///         let room = cx.send_space(conn).min(buf.len());
///         match cx.recv(conn, &mut buf[..room]) {
///             Ok(0) if room > 0 => cx.close(conn),
///             Ok(n) => drop(cx.write(conn, &buf[..n])),
///             Err(_) => {}
///         }
///     }
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let stack = Stack::builder()
///     .interface("eth0")
///     .handler(7, || Echo)
///     .start()?;
/// stack.shutdown_on_ctrl_c()?;
/// stack.wait();
/// # Ok(()) }
/// ```
pub struct StackBuilder {
    interface: Option<String>,
    netns: Option<PathBuf>,
    queues: Option<u32>,
    cores: Option<Vec<usize>>,
    forwarding: bool,
    addr: Option<(Ipv4Addr, u8)>,
    ephemeral: RangeInclusive<u16>,
    tcp: tcp::Config,
    engine: EngineConfig,
    attach: AttachMode,
    socket: XdpSocketConfig,
    handlers: Vec<(u16, Factory)>,
    backlog: usize,
    mem_budget: usize,
    grace: Duration,
    control_socket: Option<PathBuf>,
}

impl Default for StackBuilder {
    fn default() -> Self {
        StackBuilder {
            interface: None,
            netns: None,
            queues: None,
            cores: None,
            forwarding: false,
            addr: None,
            ephemeral: 61000..=65535,
            tcp: tcp::Config::default(),
            engine: EngineConfig {
                idle: Some(IdleBackoff {
                    after: 1024,
                    max_sleep: Duration::from_millis(1),
                }),
                ..EngineConfig::default()
            },
            attach: AttachMode::Auto,
            socket: XdpSocketConfig::default(),
            handlers: Vec::new(),
            backlog: 1024,
            mem_budget: crate::host::Limits::default().mem_budget,
            grace: Duration::from_millis(500),
            control_socket: None,
        }
    }
}

impl StackBuilder {
    /// The interface to run on ([`StackBuilder::start`]).
    pub fn interface(mut self, name: &str) -> Self {
        self.interface = Some(name.to_string());
        self
    }

    /// A network namespace (`/run/netns/NAME`) the interface lives in; the engines and the
    /// set-up enter it, the calling thread does not.
    pub fn netns(mut self, path: impl Into<PathBuf>) -> Self {
        self.netns = Some(path.into());
        self
    }

    /// Queues to serve, `0..n`, one engine each. Default: every receive queue of the interface
    /// (its channel count, or a veth's queue count). [`StackBuilder::start`] refuses a count
    /// that does not cover the device's queues exactly: frames on a queue without a socket
    /// would reach the kernel, which resets them (set the channels first,
    /// `deploy/nic-setup.sh IF --queues N`).
    pub fn queues(mut self, n: u32) -> Self {
        self.queues = Some(n.max(1));
        self
    }

    /// Pins engine `i` to core `cores[i]`; starting fails if there are fewer cores than
    /// engines. Unpinned by default.
    pub fn cores(mut self, cores: Vec<usize>) -> Self {
        self.cores = Some(cores);
        self
    }

    /// For [`StackBuilder::start_on`]: the devices are queues of one link, so a flow's frames
    /// may arrive on any of them. Engines then own flows by hash and forward frames to the
    /// owner (as [`StackBuilder::start`] always does with several queues). Off by default:
    /// each device is its own link.
    pub fn forwarding(mut self, on: bool) -> Self {
        self.forwarding = on;
        self
    }

    /// Our IPv4 address and prefix length. Default on an interface: its first IPv4 address;
    /// required for [`StackBuilder::start_on`].
    pub fn addr(mut self, addr: Ipv4Addr, prefix_len: u8) -> Self {
        self.addr = Some((addr, prefix_len));
        self
    }

    /// Local ports for active opens (default 61000-65535). Keep them outside the kernel's
    /// `net.ipv4.ip_local_port_range` (32768-60999) when sharing its address: the XDP program
    /// steers these ports to us.
    pub fn ephemeral_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.ephemeral = ports;
        self
    }

    /// Every connection's settings (MSS, buffers, Nagle, delayed ACK, keep-alive, ...).
    pub fn tcp_config(mut self, cfg: tcp::Config) -> Self {
        self.tcp = cfg;
        self
    }

    /// Send-buffer size of new connections (`SO_SNDBUF`).
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.tcp.send_buffer = bytes;
        self
    }

    /// Receive-buffer size of new connections (`SO_RCVBUF`).
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.tcp.recv_buffer = bytes;
        self
    }

    /// Receive-buffer auto-tuning up to `max` bytes (Linux's `tcp_rmem[2]`, 6 MiB by default
    /// there): new connections start at [`StackBuilder::recv_buffer`] and grow while their
    /// reader keeps up ([`tcp::Config::recv_buffer_max`]); a connection given a size with
    /// `set_recv_buffer_size` keeps it.
    pub fn recv_buffer_max(mut self, max: usize) -> Self {
        self.tcp.recv_buffer_max = Some(max);
        self
    }

    /// Engine batch sizes and idling. Default: spin 1024 empty iterations, then sleep up to
    /// 1 ms in the device's wait (a frame, or a command from an application thread, wakes it
    /// at once).
    pub fn engine_config(mut self, cfg: EngineConfig) -> Self {
        self.engine = cfg;
        self
    }

    /// Which XDP hook to attach to (default: native, else generic).
    pub fn attach_mode(mut self, mode: AttachMode) -> Self {
        self.attach = mode;
        self
    }

    /// AF_XDP socket settings (UMEM, rings, bind mode).
    pub fn socket_config(mut self, cfg: XdpSocketConfig) -> Self {
        self.socket = cfg;
        self
    }

    /// Pending connections per listener not yet accepted (default 1024).
    pub fn backlog(mut self, n: usize) -> Self {
        self.backlog = n.max(1);
        self
    }

    /// Bytes all connections of all engines may hold together (default 1 GiB, about Linux's
    /// `tcp_mem` high mark on a 16 GiB machine): from 7/8 of it every engine refuses new
    /// connections and sheds out-of-order data and window, as one host does at its own
    /// [`Limits::mem_budget`](crate::host::Limits::mem_budget) (see [`SharedBudget`](crate::host::SharedBudget)).
    pub fn mem_budget(mut self, bytes: usize) -> Self {
        self.mem_budget = bytes;
        self
    }

    /// How long shutdown lets connections close gracefully before resetting them (500 ms).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Serves `port` with handlers made by `factory`, one per engine, called on the engine's
    /// thread inside its loop.
    pub fn handler<H, F>(mut self, port: u16, factory: F) -> Self
    where
        H: Handler + Send + 'static,
        F: Fn() -> H + Send + Sync + 'static,
    {
        self.handlers.push((
            port,
            Arc::new(move || Box::new(factory()) as Box<dyn Handler + Send>),
        ));
        self
    }

    /// Serves the inspector (`xdp-tcp stat PATH`) on a unix socket at `path`, from a thread
    /// of its own (never an engine's): statistics and connections on request, and a pcap
    /// capture switched on and off (`xdp-tcp pcap PATH`, [`Stack::capture_start`]). Off by
    /// default.
    /// A stale socket file at `path` is replaced; one a live stack answers on is an error.
    pub fn control_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.control_socket = Some(path.into());
        self
    }

    fn specs(&self, n: u32) -> io::Result<Vec<CoreSpec>> {
        if let Some(c) = &self.cores {
            if c.len() < n as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{n} engines (one per queue) but {} cores given ({c:?}): give one core per queue, or fewer queues",
                        c.len()
                    ),
                ));
            }
        }
        Ok((0..n)
            .map(|q| CoreSpec {
                queue_id: q,
                core: self.cores.as_ref().map(|c| CoreId { id: c[q as usize] }),
                netns: self.netns.clone(),
            })
            .collect())
    }

    /// Starts on the interface: XDP program, one AF_XDP socket and engine per queue. Needs
    /// CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW (root), see `deploy/README.md`.
    pub fn start(self) -> io::Result<Stack> {
        let ifname = self
            .interface
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no interface given"))?;
        let cfg = InterfaceConfig {
            name: ifname,
            addr: self.addr,
            ephemeral: self.ephemeral.clone(),
            listen: self.handlers.iter().map(|(p, _)| *p).collect(),
            attach: self.attach,
        };
        let want = self.queues;
        let (iface, rss) = in_netns(self.netns.clone(), move || {
            let iface = XdpInterface::attach(&cfg)?;
            let n = want.unwrap_or(iface.queues());
            let rss = if n > 1 { iface.rss().ok() } else { None };
            Ok((iface, rss))
        })?;
        let (addr, _) = iface.addr();
        let device = iface.queues();
        let n = self.queues.unwrap_or(device);
        if n != device {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: the device has {device} receive queues and the stack would serve {n}: {}",
                    cfg_name(&self.interface),
                    if n < device {
                        "frames on the others would reach the kernel, which resets them; set the channel count first (deploy/nic-setup.sh IF --queues N)"
                    } else {
                        "there is no queue to bind the extra engines to"
                    }
                ),
            ));
        }
        let steer = (n > 1).then(|| Arc::new(steering(addr, n, rss)));
        let program = Arc::clone(iface.program());
        let socket = self.socket.clone();
        let specs = self.specs(n)?;
        // An engine sleeping in poll(2) when idle is woken by its application threads' commands
        // through an eventfd polled beside the socket, not after its longest sleep.
        let wakers = specs
            .iter()
            .map(|_| Waker::new())
            .collect::<io::Result<Vec<Waker>>>()?;
        let wakes = wakers.iter().cloned().map(Wake::Xdp).map(Some).collect();
        let open = move |spec: &CoreSpec| {
            let waker = wakers.get(spec.queue_id as usize).cloned();
            iface.open_queue(spec.queue_id, &socket, waker)
        };
        self.launch(addr, specs, open, Some(program), wakes, steer)
    }

    /// Starts one engine per device (no XDP, no root): the devices' engines resolve
    /// neighbours over ARP themselves. Needs [`StackBuilder::addr`].
    pub fn start_on<P: PacketIo + Send + 'static>(
        self,
        devices: Vec<Device<P>>,
    ) -> io::Result<Stack> {
        let (addr, prefix_len) = self.addr.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "start_on needs an address")
        })?;
        let n = devices.len() as u32;
        let specs = self.specs(n)?;
        let steer = (self.forwarding && n > 1).then(|| Arc::new(FlowSteer::software(addr, n)));
        let wakes: Vec<Option<Wake>> = devices
            .iter()
            .map(|d| d.waker.clone().map(Wake::Chan))
            .collect();
        let slots: Mutex<Vec<Option<Device<P>>>> =
            Mutex::new(devices.into_iter().map(Some).collect());
        let open = move |spec: &CoreSpec| {
            let d = slots
                .lock()
                .map_err(|_| io::Error::other("device list poisoned"))?
                .get_mut(spec.queue_id as usize)
                .and_then(Option::take)
                .ok_or_else(|| io::Error::other("no device for this engine"))?;
            let mut cfg = NeighConfig::new(addr, prefix_len, d.mac);
            cfg.arp_owner = ArpOwner::Stack;
            Ok(EngineIo {
                io: d.io,
                neigh: NeighCache::new(cfg),
                kernel: None,
                mtu: None,
            })
        };
        self.launch(addr, specs, open, None, wakes, steer)
    }

    #[allow(clippy::too_many_arguments)]
    fn launch<P, F>(
        self,
        addr: Ipv4Addr,
        specs: Vec<CoreSpec>,
        open: F,
        program: Option<Arc<SteerProgram>>,
        wakes: Vec<Option<Wake>>,
        steer: Option<Arc<FlowSteer>>,
    ) -> io::Result<Stack>
    where
        P: PacketIo + Send + 'static,
        F: Fn(&CoreSpec) -> io::Result<EngineIo<P>> + Send + Sync + 'static,
    {
        let control = Control::new();
        let tokens = Arc::new(AtomicU64::new(1));
        let defaults = SockDefaults {
            sndbuf: self.tcp.send_buffer,
            rcvbuf: self.tcp.recv_buffer,
            backlog: self.backlog,
            grace: self.grace.into(),
        };
        let mut handles = Vec::new();
        let mut receivers = Vec::new();
        for wake in wakes {
            let (cmd, rx) = crossbeam::channel::unbounded();
            handles.push(EngineHandle { cmd, wake });
            receivers.push(Some(rx));
        }
        let receivers = Mutex::new(receivers);
        let boards: Vec<Arc<StatsBoard>> = handles.iter().map(|_| StatsBoard::new()).collect();
        let engine_boards = boards.clone();
        let ring = CaptureRing::new(crate::engine::capture::DEFAULT_QUEUE);
        let engine_ring = Arc::clone(&ring);
        let control_socket = self.control_socket.clone();
        // Lanes between every pair of engines when flows are owned by hash.
        let meshes: Mutex<Vec<Option<Mesh>>> = Mutex::new(match &steer {
            Some(_) => {
                let wake_fns = handles
                    .iter()
                    .map(|h| {
                        h.wake.clone().map(|w| {
                            let f: WakeFn = Arc::new(move || w.wake());
                            f
                        })
                    })
                    .collect();
                Mesh::build(handles.len(), MESH_LANE, wake_fns)
                    .into_iter()
                    .map(Some)
                    .collect()
            }
            None => Vec::new(),
        });
        let forwarding: Vec<Arc<MeshCounters>> = meshes
            .lock()
            .map_err(|_| io::Error::other("mesh list poisoned"))?
            .first()
            .and_then(|m| m.as_ref().map(Mesh::counters))
            .unwrap_or_default();
        let mut hcfg = HostConfig::new(addr);
        hcfg.tcp = self.tcp;
        hcfg.ephemeral_ports = (*self.ephemeral.start(), *self.ephemeral.end());
        let (engine_cfg, handlers, backlog) = (self.engine, self.handlers, self.backlog);
        let budget = crate::host::SharedBudget::new(self.mem_budget);
        let (ctl, tok, hs) = (Arc::clone(&control), Arc::clone(&tokens), handles.clone());
        let threads = EngineThreads::spawn(specs, move |spec| {
            let q = spec.queue_id as usize;
            let device = open(spec)?;
            // each engine its own secret from the OS, whatever the builder's config held
            let mut cfg = hcfg;
            cfg.tcp.secret = crate::tcp::Secret::random();
            let mut host = Host::new(cfg);
            host.share_budget(Arc::clone(&budget));
            if let Some(s) = &steer {
                host.set_steering(Arc::clone(s), spec.queue_id);
            }
            let mesh = meshes
                .lock()
                .map_err(|_| io::Error::other("mesh list poisoned"))?
                .get_mut(q)
                .and_then(Option::take);
            let mut app = HandlerApp::new();
            for (port, factory) in &handlers {
                app.listen_boxed(&mut host, *port, backlog, factory())?;
            }
            let rx = receivers
                .lock()
                .map_err(|_| io::Error::other("receiver list poisoned"))?[q]
                .take()
                .ok_or_else(|| io::Error::other("engine started twice"))?;
            let app = StackApp::new(
                app,
                rx,
                hs[q].clone(),
                Arc::clone(&ctl),
                Arc::clone(&tok),
                defaults,
            );
            let engine = device
                .into_engine(host, app, engine_cfg)
                .with_stats_board(Arc::clone(&engine_boards[q]), spec.queue_id)
                .with_capture(Arc::clone(&engine_ring));
            Ok(match mesh {
                Some(m) => engine.with_mesh(m),
                None => engine,
            })
        })?;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&reports);
        let wakes: Vec<Wake> = handles.iter().filter_map(|h| h.wake.clone()).collect();
        let stop: Stopper = Box::new(move || {
            let mut out = Vec::new();
            let results = threads
                .stop_waking(|| wakes.iter().for_each(Wake::wake))
                .into_iter()
                .map(|r| {
                    r.map(|e| {
                        out.push(EngineReport {
                            engine: e.stats().clone(),
                            host: e.host().stats().clone(),
                        })
                    })
                })
                .collect();
            if let Ok(mut k) = keep.lock() {
                *k = out;
            }
            results
        });
        let stats = Arc::new(StatsSource {
            boards: boards.into_iter().zip(handles.iter().cloned()).collect(),
            program: program.as_ref().map(Arc::downgrade),
        });
        let mut stack = Stack {
            capture: Arc::new(Capture::new(ring)),
            stats,
            inspector: Mutex::new(None),
            forwarding,
            reports,
            next_engine: AtomicUsize::new(0),
            engines: handles,
            control,
            tokens,
            addr,
            defaults,
            program: Mutex::new(program),
            stop: Mutex::new(Some(stop)),
            stopped: AtomicBool::new(false),
            grace: self.grace,
        };
        if let Some(path) = control_socket {
            *stack.inspector.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(
                ControlServer::start(&path, Arc::clone(&stack.stats), Arc::clone(&stack.capture))?,
            );
        }
        Ok(stack)
    }
}

/// Runs `f` on a thread inside `netns` (or the current namespace).
fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::spawn(move || {
        if let Some(ns) = &netns {
            enter_netns(ns)?;
        }
        f()
    })
    .join()
    .map_err(|_| io::Error::other("set-up thread panicked"))?
}

/// A running stack. Make connections with [`super::TcpStream::connect`] and
/// [`super::TcpListener::bind`], or serve them with handlers given to the builder.
/// Dropping it shuts it down ([`Stack::shutdown`]).
pub struct Stack {
    pub(super) capture: Arc<Capture>,
    stats: Arc<StatsSource>,
    inspector: Mutex<Option<ControlServer>>,
    forwarding: Vec<Arc<MeshCounters>>,
    reports: Arc<Mutex<Vec<EngineReport>>>,
    next_engine: AtomicUsize,
    engines: Vec<EngineHandle>,
    control: Arc<Control>,
    tokens: Arc<AtomicU64>,
    addr: Ipv4Addr,
    defaults: SockDefaults,
    program: Mutex<Option<Arc<SteerProgram>>>,
    /// Taken by the first shutdown; a `Mutex` so that `Stack` is `Sync` and threads share it
    /// by reference.
    stop: Mutex<Option<Stopper>>,
    stopped: AtomicBool,
    grace: Duration,
}

impl Stack {
    /// A builder with the defaults.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// Our IPv4 address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Engines running.
    pub fn engine_count(&self) -> usize {
        self.engines.len()
    }

    /// Every engine's statistics, and their sum ([`StackStats::counters`]): XDP verdicts per
    /// queue, AF_XDP ring and drop counters, host drops by reason, TCP counters under Linux's
    /// names, every connection's `tcp_info`. Each engine publishes a snapshot at the end of its
    /// next iteration (no lock, nothing paid on the data path until asked); waits up to a
    /// second for them. `ENOTCONN` after shutdown.
    pub fn stats(&self) -> io::Result<StackStats> {
        if self.stopped.load(SeqCst) {
            return Err(super::error::not_connected());
        }
        self.stats.collect(Duration::from_secs(1))
    }

    /// Each engine's forwarding counters, live (index = engine = queue); empty when the
    /// engines do not forward (one engine, or [`StackBuilder::forwarding`] off).
    pub fn forwarding(&self) -> Vec<ForwardStats> {
        self.forwarding.iter().map(|c| c.snapshot()).collect()
    }

    /// What each engine counted (its own and its host's counters), as it stopped; empty until
    /// [`Stack::shutdown`] returned.
    pub fn engine_reports(&self) -> Vec<EngineReport> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The engine the next [`super::TcpStream::connect`] runs on: round-robin.
    pub(crate) fn pick_engine(&self) -> usize {
        self.next_engine.fetch_add(1, SeqCst) % self.engines.len().max(1)
    }

    /// Asks for a clean shutdown (returns at once; [`Stack::wait`] returns after it).
    pub fn request_shutdown(&self) {
        self.control.request();
    }

    /// True once shutdown was asked for (Ctrl-C, a handler panic, [`Stack::request_shutdown`]).
    pub fn shutdown_requested(&self) -> bool {
        self.control.requested()
    }

    /// True if a handler panicked (the stack then shuts itself down).
    pub fn handler_panicked(&self) -> bool {
        self.control.panicked()
    }

    /// Blocks until shutdown is asked for: what a server's `main` does after starting.
    pub fn wait(&self) {
        self.control.wait();
    }

    /// Ctrl-C (SIGINT, and SIGTERM) asks for a clean shutdown. Once per process.
    pub fn shutdown_on_ctrl_c(&self) -> io::Result<()> {
        let control = Arc::clone(&self.control);
        ctrlc::set_handler(move || control.request()).map_err(io::Error::other)
    }

    /// Closes every connection (FIN, then RST after the grace period), stops the engines and
    /// detaches the XDP program. Returns the first engine failure, if any. Idempotent.
    pub fn shutdown(&self) -> io::Result<()> {
        // Held to the end: a second caller returns once the first finished.
        let mut stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
        let Some(stop) = stop.take() else {
            return Ok(());
        };
        self.stopped.store(true, SeqCst);
        if let Some(mut c) = self
            .inspector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            c.stop();
        }
        let _ = self.capture.stop();
        self.control.request();
        let deadline = std::time::Instant::now() + self.grace + Duration::from_secs(1);
        while self.control.drained.load(SeqCst) < self.engines.len()
            && std::time::Instant::now() < deadline
        {
            for e in &self.engines {
                if let Some(w) = &e.wake {
                    w.wake();
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Let the last FINs and RSTs leave before the sockets close.
        std::thread::sleep(Duration::from_millis(5));
        let mut program = self.program.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = program.as_ref() {
            for q in 0..self.engines.len() as u32 {
                let _ = p.unregister_socket(q);
            }
        }
        let results = stop();
        // Listeners hold only weak references: this detaches the program.
        *program = None;
        results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    pub(crate) fn engine(&self, i: usize) -> io::Result<EngineHandle> {
        if self.stopped.load(SeqCst) {
            return Err(super::error::to_io(tcp::Error::Aborted));
        }
        self.engines
            .get(i)
            .cloned()
            .ok_or_else(super::error::not_connected)
    }

    pub(crate) fn engines(&self) -> Vec<EngineHandle> {
        self.engines.clone()
    }

    pub(crate) fn next_token(&self) -> u64 {
        self.tokens.fetch_add(1, SeqCst)
    }

    pub(crate) fn defaults(&self) -> SockDefaults {
        self.defaults
    }

    pub(crate) fn program(&self) -> Option<Weak<SteerProgram>> {
        self.program
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::downgrade)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("addr", &self.addr)
            .field("engines", &self.engines.len())
            .finish_non_exhaustive()
    }
}
