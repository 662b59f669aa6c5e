//! The engine's side of the threaded API: the commands application threads send, the events
//! each socket receives, and [`StackApp`], the [`App`] that serves both and the handlers.
//!
//! Between an application thread and the engine's core there are only crossbeam channels and
//! atomics: one command queue per engine (any thread to the engine) and one event channel per
//! socket (engine to the socket's owner). Neither side ever waits for the other while holding
//! anything, and the engine never blocks: it only `try_recv`s commands and `send`s on unbounded
//! channels whose depth the credits below bound.
//!
//! Flow control, both ways, with atomics in [`Shared`]:
//! - **receive**: the engine moves bytes out of the connection into `Data` events only while
//!   the bytes the application holds (`recv_outstanding`, sent and not yet read) are below
//!   `recv_limit` (SO_RCVBUF). Past it the bytes stay in the connection, whose window closes,
//!   so the peer stops. The engine then sets `recv_blocked`; the reader, after consuming, sees
//!   the flag and sends a `Credit` command so the engine resumes.
//! - **send**: a write takes credit (`send_credit`, SO_SNDBUF to start with) before handing its
//!   bytes to the engine, and blocks (or returns `EAGAIN`) without it; the engine returns the
//!   credit when the bytes enter the connection's send buffer. So at most SO_SNDBUF bytes wait
//!   in the queue and the engine, plus the send buffer itself (Linux also reserves twice the
//!   value set). A waiting writer sets `send_waiting`; the engine answers it with a `Credit` event.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};

use super::handler::HandlerApp;
use super::linger::Lingering;
use super::stream::TcpStream;
use crate::engine::App;
use crate::host::{ConnId, Host};
use crate::tcp::{self, Event, KeepAlive};
use crate::time::{Duration, Instant};

/// How long bytes written with `more` are held for coalescing (Linux's `TCP_CORK` limit).
pub(crate) const CORK_LIMIT: Duration = Duration::from_millis(200);
/// Largest `Data` event.
const MAX_CHUNK: usize = 256 * 1024;

/// Atomics shared by one socket's owner and its engine.
#[derive(Debug)]
pub(crate) struct Shared {
    pub send_credit: AtomicIsize,
    pub send_waiting: AtomicBool,
    pub recv_outstanding: AtomicUsize,
    pub recv_limit: AtomicUsize,
    pub recv_blocked: AtomicBool,
}

impl Shared {
    pub fn new(sndbuf: usize, rcvbuf: usize) -> Arc<Self> {
        Arc::new(Shared {
            send_credit: AtomicIsize::new(sndbuf as isize),
            send_waiting: AtomicBool::new(false),
            recv_outstanding: AtomicUsize::new(0),
            recv_limit: AtomicUsize::new(rcvbuf),
            recv_blocked: AtomicBool::new(false),
        })
    }
}

/// A socket option set from an application thread.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opt {
    NoDelay(bool),
    KeepAlive(Option<KeepAlive>),
    SendBuf(usize),
    RecvBuf(usize),
}

/// Application thread -> engine.
pub(crate) enum Command {
    Connect {
        token: u64,
        remote: SocketAddrV4,
        tx: Sender<Ev>,
        shared: Arc<Shared>,
    },
    Listen {
        port: u16,
        id: u64,
        backlog: usize,
        accept: Sender<TcpStream>,
        reply: Sender<std::io::Result<()>>,
    },
    Unlisten {
        port: u16,
        id: u64,
    },
    Write {
        token: u64,
        data: Vec<u8>,
        more: bool,
    },
    Shutdown {
        token: u64,
        how: Shutdown,
    },
    /// The owner dropped the socket; `unread` when it held bytes it never read (close with
    /// unread data resets, as in Linux).
    Close {
        token: u64,
        unread: bool,
    },
    Set {
        token: u64,
        opt: Opt,
    },
    /// The reader consumed bytes after the engine stopped for lack of receive credit.
    Credit {
        token: u64,
    },
    /// `TCP_INFO`: the connection's snapshot, `None` once it is gone.
    Info {
        token: u64,
        reply: Sender<Option<tcp::TcpInfo>>,
    },
}

/// Engine -> one socket's owner.
#[derive(Debug)]
pub(crate) enum Ev {
    Connected {
        local: SocketAddrV4,
        peer: SocketAddrV4,
    },
    Data(Vec<u8>),
    Eof,
    Error(tcp::Error),
    Credit,
}

/// A way to an engine: its command queue and, for devices that sleep, a wake-up.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    pub cmd: Sender<Command>,
    pub wake: Option<Wake>,
}

/// How an engine sleeping in its device's wait is woken.
#[derive(Clone)]
pub(crate) enum Wake {
    /// A channel the device selects on ([`crate::io::mem::ChanIo::waker`]).
    Chan(Sender<()>),
    /// The eventfd an AF_XDP socket polls beside itself.
    Xdp(crate::io::xdp::Waker),
}

impl Wake {
    pub fn wake(&self) {
        match self {
            Wake::Chan(s) => {
                let _ = s.try_send(());
            }
            Wake::Xdp(w) => w.wake(),
        }
    }
}

impl EngineHandle {
    /// False when the engine is gone.
    pub fn send(&self, c: Command) -> bool {
        let ok = self.cmd.send(c).is_ok();
        if let Some(w) = &self.wake {
            w.wake();
        }
        ok
    }
}

/// Stack-wide shutdown state shared by the handle and every engine.
pub(crate) struct Control {
    requested: AtomicBool,
    panicked: AtomicBool,
    pub drained: AtomicUsize,
    notify_tx: Sender<()>,
    notify_rx: Receiver<()>,
}

impl Control {
    pub fn new() -> Arc<Self> {
        let (notify_tx, notify_rx) = crossbeam::channel::bounded(1);
        Arc::new(Control {
            requested: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            drained: AtomicUsize::new(0),
            notify_tx,
            notify_rx,
        })
    }

    pub fn request(&self) {
        if !self.requested.swap(true, SeqCst) {
            let _ = self.notify_tx.try_send(());
        }
    }

    pub fn requested(&self) -> bool {
        self.requested.load(SeqCst)
    }

    pub fn panicked(&self) -> bool {
        self.panicked.load(SeqCst)
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        while !self.requested() {
            let _ = self
                .notify_rx
                .recv_timeout(std::time::Duration::from_millis(100));
        }
    }
}

/// Engine-side state of one socket.
struct Sock {
    conn: ConnId,
    tx: Sender<Ev>,
    shared: Arc<Shared>,
    /// Written by the owner, not yet in the connection's send buffer.
    pending: VecDeque<u8>,
    /// The last write asked to hold for coalescing (`MSG_MORE`), until this instant.
    hold_until: Option<Instant>,
    shut_wr: bool,
    fin_queued: bool,
    read_shut: bool,
    eof_sent: bool,
    err_sent: bool,
    closed: bool,
}

impl Sock {
    fn new(conn: ConnId, tx: Sender<Ev>, shared: Arc<Shared>) -> Self {
        Sock {
            conn,
            tx,
            shared,
            pending: VecDeque::new(),
            hold_until: None,
            shut_wr: false,
            fin_queued: false,
            read_shut: false,
            eof_sent: false,
            err_sent: false,
            closed: false,
        }
    }

    fn credit(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.shared.send_credit.fetch_add(n as isize, SeqCst);
        if self.shared.send_waiting.swap(false, SeqCst) {
            let _ = self.tx.send(Ev::Credit);
        }
    }
}

/// Settings every socket starts with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SockDefaults {
    pub sndbuf: usize,
    pub rcvbuf: usize,
    pub backlog: usize,
    pub grace: Duration,
}

/// The [`App`] of every engine of a [`super::Stack`]: handlers plus threaded sockets.
pub(crate) struct StackApp {
    pub handlers: HandlerApp,
    socks: HashMap<u64, Sock, ahash::RandomState>,
    by_conn: HashMap<ConnId, u64, ahash::RandomState>,
    /// Released by their owner and not closed yet: bytes arriving now are answered by RST.
    lingering: Lingering,
    listeners: HashMap<u16, (u64, Sender<TcpStream>), ahash::RandomState>,
    held: Vec<u64>,
    cmds: Receiver<Command>,
    me: EngineHandle,
    control: Arc<Control>,
    tokens: Arc<AtomicU64>,
    defaults: SockDefaults,
    shutdown_at: Option<Instant>,
    drained: bool,
}

impl StackApp {
    pub fn new(
        handlers: HandlerApp,
        cmds: Receiver<Command>,
        me: EngineHandle,
        control: Arc<Control>,
        tokens: Arc<AtomicU64>,
        defaults: SockDefaults,
    ) -> Self {
        StackApp {
            handlers,
            socks: HashMap::default(),
            by_conn: HashMap::default(),
            lingering: Lingering::default(),
            listeners: HashMap::default(),
            held: Vec::new(),
            cmds,
            me,
            control,
            tokens,
            defaults,
            shutdown_at: None,
            drained: false,
        }
    }

    fn add_sock(&mut self, token: u64, sock: Sock) {
        self.by_conn.insert(sock.conn, token);
        self.socks.insert(token, sock);
    }

    fn command(&mut self, now: Instant, host: &mut Host, cmd: Command) {
        match cmd {
            Command::Connect {
                token,
                remote,
                tx,
                shared,
            } => {
                if self.shutdown_at.is_some() {
                    let _ = tx.send(Ev::Error(tcp::Error::Aborted));
                    return;
                }
                match host.connect(now, remote) {
                    Ok(id) => {
                        host.with_conn(id, |c| {
                            c.set_send_capacity(self.defaults.sndbuf);
                            c.set_recv_capacity(shared.recv_limit.load(SeqCst));
                        });
                        self.add_sock(token, Sock::new(id, tx, shared));
                    }
                    // Every ephemeral port to that peer is taken.
                    Err(_) => {
                        let _ = tx.send(Ev::Error(tcp::Error::WouldBlock));
                    }
                }
            }
            Command::Listen {
                port,
                id,
                backlog,
                accept,
                reply,
            } => {
                let r = if self.shutdown_at.is_some() {
                    Err(super::error::to_io(tcp::Error::Aborted))
                } else if self.listeners.contains_key(&port) || self.handlers.listens_on(port) {
                    Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE))
                } else {
                    host.listen(port, backlog);
                    self.listeners.insert(port, (id, accept));
                    Ok(())
                };
                let _ = reply.send(r);
            }
            Command::Unlisten { port, id } => {
                let ours = self.listeners.get(&port).is_some_and(|l| l.0 == id);
                if ours {
                    self.listeners.remove(&port);
                    host.unlisten(port);
                }
            }
            Command::Write { token, data, more } => {
                if let Some(s) = self.socks.get_mut(&token) {
                    s.pending.extend(&data);
                    if more {
                        if s.hold_until.is_none() {
                            s.hold_until = Some(now + CORK_LIMIT);
                            self.held.push(token);
                        }
                    } else {
                        s.hold_until = None;
                    }
                    self.service(now, host, token);
                }
            }
            Command::Shutdown { token, how } => {
                if let Some(s) = self.socks.get_mut(&token) {
                    if matches!(how, Shutdown::Read | Shutdown::Both) {
                        s.read_shut = true;
                        host.with_conn(s.conn, |c| c.shutdown_read());
                    }
                    if matches!(how, Shutdown::Write | Shutdown::Both) {
                        s.shut_wr = true;
                        s.hold_until = None;
                    }
                    self.service(now, host, token);
                }
            }
            Command::Close { token, unread } => {
                if let Some(s) = self.socks.get_mut(&token) {
                    s.closed = true;
                    s.hold_until = None;
                    if unread {
                        host.abort(s.conn);
                        let s = self.socks.remove(&token).expect("present");
                        self.by_conn.remove(&s.conn);
                        return;
                    }
                    self.service(now, host, token);
                }
            }
            Command::Set { token, opt } => {
                if let Some(s) = self.socks.get(&token) {
                    let id = s.conn;
                    host.with_conn(id, |c| match opt {
                        Opt::NoDelay(v) => c.set_nodelay(v),
                        Opt::KeepAlive(ka) => c.set_keepalive(now, ka),
                        Opt::SendBuf(n) => c.set_send_capacity(n),
                        Opt::RecvBuf(n) => c.set_recv_capacity(n),
                    });
                    self.service(now, host, token);
                }
            }
            Command::Credit { token } => {
                self.service(now, host, token);
            }
            Command::Info { token, reply } => {
                let info = self
                    .socks
                    .get(&token)
                    .and_then(|s| host.conn(s.conn))
                    .map(|c| c.info());
                let _ = reply.send(info);
            }
        }
    }

    /// Moves bytes between the socket's owner and its connection as far as credits and buffer
    /// space allow, then reports end of stream and errors once everything before them went out.
    fn service(&mut self, now: Instant, host: &mut Host, token: u64) -> usize {
        let Some(s) = self.socks.get_mut(&token) else {
            return 0;
        };
        let id = s.conn;
        let mut work = 0;
        if !s.pending.is_empty() {
            let hold = s.hold_until.is_some_and(|t| now < t);
            let mss = host.conn(id).map_or(1, |c| c.mss().max(1));
            let allowed = if hold {
                s.pending.len() / mss * mss
            } else {
                s.pending.len()
            };
            if allowed > 0 {
                let data = s.pending.make_contiguous();
                match host.with_conn(id, |c| c.send(&data[..allowed])) {
                    Some(Ok(n)) => {
                        s.pending.drain(..n);
                        s.credit(n);
                        work += n;
                    }
                    Some(Err(tcp::Error::WouldBlock)) => {}
                    // The connection failed or is gone: the bytes can never go; the error
                    // reaches the owner below.
                    _ => {
                        let n = s.pending.len();
                        s.pending.clear();
                        s.credit(n);
                    }
                }
            }
        }
        if s.pending.is_empty() {
            s.hold_until = None;
        }
        if s.pending.is_empty() && (s.shut_wr || s.closed) && !s.fin_queued {
            s.fin_queued = true;
            host.with_conn(id, |c| c.close());
        }
        if s.closed {
            if s.pending.is_empty() {
                self.lingering.close(host, id);
                self.socks.remove(&token);
                self.by_conn.remove(&id);
            }
            return work;
        }
        if !s.read_shut {
            while let Some(c) = host.conn(id) {
                let queued = c.recv_queue();
                if queued == 0 {
                    break;
                }
                let limit = s.shared.recv_limit.load(SeqCst);
                let held = s.shared.recv_outstanding.load(SeqCst);
                if held >= limit {
                    s.shared.recv_blocked.store(true, SeqCst);
                    // The reader may have consumed between the load and the flag.
                    if s.shared.recv_outstanding.load(SeqCst) >= limit {
                        break;
                    }
                    continue;
                }
                let n = queued.min(limit - held).min(MAX_CHUNK);
                let mut v = Vec::with_capacity(n);
                host.with_conn(id, |c| {
                    let (a, b) = c.readable();
                    let x = a.len().min(n);
                    v.extend_from_slice(&a[..x]);
                    v.extend_from_slice(&b[..n - x]);
                    c.consume(n);
                });
                s.shared.recv_outstanding.fetch_add(n, SeqCst);
                let _ = s.tx.send(Ev::Data(v));
                work += n;
            }
        }
        if let Some(c) = host.conn(id) {
            if c.recv_queue() == 0 || s.read_shut {
                if c.at_eof() && !s.eof_sent {
                    s.eof_sent = true;
                    let _ = s.tx.send(Ev::Eof);
                }
                if let Some(e) = c.error() {
                    if !s.err_sent {
                        s.err_sent = true;
                        let _ = s.tx.send(Ev::Error(e));
                    }
                }
            }
        }
        work
    }

    fn event(&mut self, now: Instant, host: &mut Host, id: ConnId, ev: Event) -> usize {
        if self.lingering.event(host, id, ev) {
            return 1;
        }
        if let Some(&token) = self.by_conn.get(&id) {
            if ev == Event::Connected {
                if let (Some(s), Some(c)) = (self.socks.get(&token), host.conn(id)) {
                    let _ = s.tx.send(Ev::Connected {
                        local: c.local(),
                        peer: c.remote(),
                    });
                }
            }
            return 1 + self.service(now, host, token);
        }
        if self.handlers.claims(host, id, ev) {
            self.handlers.handle_event(now, host, id, ev);
            if self.handlers.stop_requested() && !self.control.requested() {
                if self.handlers.panicked() {
                    self.control.panicked.store(true, SeqCst);
                }
                self.control.request();
            }
            return 1;
        }
        if ev != Event::Connected {
            return 0;
        }
        let Some(port) = host.conn(id).map(|c| c.local().port()) else {
            return 0;
        };
        let mut work = 0;
        while self.listeners.contains_key(&port) {
            let Some(conn) = host.accept(port) else {
                break;
            };
            let token = self.tokens.fetch_add(1, SeqCst);
            let shared = Shared::new(self.defaults.sndbuf, self.defaults.rcvbuf);
            let (tx, rx) = crossbeam::channel::unbounded();
            let (local, peer) = host
                .conn(conn)
                .map(|c| (c.local(), c.remote()))
                .expect("just accepted");
            host.with_conn(conn, |c| {
                c.set_send_capacity(self.defaults.sndbuf);
                c.set_recv_capacity(self.defaults.rcvbuf);
            });
            self.add_sock(token, Sock::new(conn, tx, Arc::clone(&shared)));
            let stream = TcpStream::from_parts(
                token,
                self.me.clone(),
                rx,
                shared,
                local,
                peer,
                self.defaults,
            );
            // Bytes and FIN that came before the accept raised no event of their own.
            work += 1 + self.service(now, host, token);
            if let Some(l) = self.listeners.get(&port) {
                if l.1.send(stream).is_err() {
                    // The listener is gone; dropping the stream closes the connection.
                    self.listeners.remove(&port);
                }
            }
        }
        work
    }

    fn begin_shutdown(&mut self, now: Instant, host: &mut Host) {
        self.shutdown_at = Some(now + self.defaults.grace);
        self.handlers.close_all(host);
        for port in std::mem::take(&mut self.listeners).into_keys() {
            host.unlisten(port);
        }
        for (_, s) in std::mem::take(&mut self.socks) {
            let _ = s.tx.send(Ev::Error(tcp::Error::Aborted));
            self.lingering.close(host, s.conn);
        }
        self.by_conn.clear();
    }

    fn quiet(&self, host: &Host) -> bool {
        self.handlers.quiet(host) && self.lingering.quiet(host)
    }
}

impl App for StackApp {
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        let mut work = 0;
        while let Ok(cmd) = self.cmds.try_recv() {
            work += 1;
            self.command(now, host, cmd);
        }
        for &(id, ev) in events {
            work += self.event(now, host, id, ev);
        }
        if !self.held.is_empty() {
            let due: Vec<u64> = self
                .held
                .iter()
                .copied()
                .filter(|t| {
                    self.socks
                        .get(t)
                        .is_none_or(|s| s.hold_until.is_none_or(|h| h <= now))
                })
                .collect();
            self.held.retain(|t| !due.contains(t));
            for t in due {
                if let Some(s) = self.socks.get_mut(&t) {
                    s.hold_until = None;
                }
                work += self.service(now, host, t);
            }
        }
        if self.control.requested() && self.shutdown_at.is_none() {
            self.begin_shutdown(now, host);
            work += 1;
        }
        if let Some(deadline) = self.shutdown_at {
            if !self.drained && (now >= deadline || self.quiet(host)) {
                self.handlers.abort_all(host);
                self.lingering.abort_all(host);
                self.drained = true;
                self.control.drained.fetch_add(1, SeqCst);
            }
        }
        work
    }
}
