//! The run-to-completion API: a [`Handler`] per listener, called inside the engine's loop on the
//! engine's core, with a [`Cx`] that reads and writes the connection's buffers in place.
//!
//! Each engine iteration, [`HandlerApp`] turns the host's events into calls: a finished
//! handshake on a listening port into [`Handler::on_accept`] (followed by
//! [`Handler::on_readable`] when bytes or the peer's FIN came with it), new bytes or the peer's
//! FIN into `on_readable`, freed send space into [`Handler::on_writable`], a failure into
//! [`Handler::on_error`] and the end of the connection into [`Handler::on_closed`]. A callback
//! must not block: every connection of the core waits for it.
//!
//! # Copies
//!
//! [`Cx::read`] lends the received bytes in place as two slices (the receive buffer is a ring)
//! to a closure, so the borrow cannot outlive the call. The bytes were copied once, from the
//! UMEM frame into the connection's receive buffer, during the receive batch: the frame has to
//! go back to the fill ring at once, while the application reads at its own pace (see the
//! copies table in [`crate::engine`]). A handler that [`Handler::lends`] gets in-order bytes
//! before that copy, in place in the received frame, through [`Handler::on_data`]: what it
//! consumes there is never copied, and what it leaves is copied and read as above. [`Cx::write`] copies into the send buffer, from which the
//! engine builds each segment directly in its transmit frame; the send buffer is what
//! retransmissions are rebuilt from.
//!
//! # Panics
//!
//! A panic in a callback is caught (`catch_unwind`): that handler is not called again and the
//! app reports [`HandlerApp::stop_requested`], which the [`crate::api::Stack`] turns into a
//! clean shutdown of the whole stack.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::error::{not_connected, to_io};
use super::linger::{close_or_reset, Lingering};
use crate::engine::App;
use crate::host::{ConnId, Host};
use crate::tcp::{Connection, Event, KeepAlive};
use crate::time::Instant;

/// Callbacks for the connections of one listener (or of the connections a handler opened).
/// Every method has a no-op default.
///
/// ```
/// use xdp_tcp::api::{Cx, Handler};
/// use xdp_tcp::host::ConnId;
///
/// /// Answers "pong\n" to every "ping\n".
/// struct Pong;
///
/// impl Handler for Pong {
///     fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
///         let mut pings = 0;
///         let eof = match cx.read(conn, |a, b| {
///             // Only whole lines: a partial one stays buffered for the next call.
///             let whole = (a.len() + b.len()) / 5 * 5;
///             pings = whole / 5;
///             whole
///         }) {
///             Ok(0) => cx.at_eof(conn),
///             Ok(_) => false,
///             Err(_) => true,
///         };
///         for _ in 0..pings {
///             let _ = cx.write(conn, b"pong\n");
///         }
///         if eof {
///             cx.close(conn);
///         }
///     }
/// }
/// ```
pub trait Handler {
    /// A connection to the listener completed its handshake.
    fn on_accept(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }
    /// A connection opened with [`Cx::connect`] (or [`HandlerApp::connect`]) is established.
    fn on_connected(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }
    /// Bytes arrived, or the peer sent FIN ([`Cx::read`] then returns `Ok(0)` once drained).
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }
    /// Send-buffer space was freed.
    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }
    /// The connection failed (reset, refused, timed out, unreachable); `on_closed` follows.
    fn on_error(&mut self, cx: &mut Cx<'_>, conn: ConnId, err: io::Error) {
        let _ = (cx, conn, err);
    }
    /// The connection reached CLOSED; its handle is released after this call.
    fn on_closed(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let _ = (cx, conn);
    }
    /// Whether this handler takes received bytes in place ([`Handler::on_data`]); asked once,
    /// when it is registered. False by default: every byte is copied into the receive buffer
    /// and announced by `on_readable`.
    fn lends(&self) -> bool {
        false
    }
    /// Zero-copy receive, if [`Handler::lends`]: in-order bytes of `conn`, lent in place from
    /// the received frame during the receive batch, before anything is copied, whenever
    /// nothing unread precedes them. Returns how many it consumed; it may answer at once
    /// through `out` (into the send buffer, from which segments are built and retransmitted).
    /// The bytes it leaves are copied into the receive buffer and announced by `on_readable`
    /// as usual, so returning 0 is always correct. Only bytes of an accepted connection are
    /// lent (after `on_accept`); out-of-order bytes and those behind unread ones never are.
    fn on_data(&mut self, out: &mut Lent<'_>, conn: ConnId, data: &[u8]) -> usize {
        let _ = (out, conn, data);
        0
    }
}

/// What [`Handler::on_data`] may do with the connection while it holds lent bytes: write.
pub struct Lent<'a> {
    conn: &'a mut Connection,
    now: Instant,
}

impl Lent<'_> {
    /// The engine's clock at this iteration.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// [`Cx::write`] on the connection whose bytes are lent.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.conn.send(data).map_err(to_io)
    }

    /// [`Cx::write_with`] on the connection whose bytes are lent.
    pub fn write_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> io::Result<usize> {
        self.conn.send_with(max, fill).map_err(to_io)
    }

    /// Bytes [`Lent::write`] would accept now.
    pub fn send_space(&self) -> usize {
        self.conn.send_space()
    }

    /// Read-only view of the connection (its state, statistics, addresses).
    pub fn connection(&self) -> &Connection {
        self.conn
    }
}

/// What a callback asked for that the app applies after it returns.
#[derive(Default)]
struct Ops {
    released: Vec<ConnId>,
    opened: Vec<ConnId>,
    stop: bool,
}

/// A handler's view of its core's host during one callback.
pub struct Cx<'a> {
    host: &'a mut Host,
    now: Instant,
    ops: &'a mut Ops,
}

impl Cx<'_> {
    /// The engine's clock at this iteration.
    pub fn now(&self) -> Instant {
        self.now
    }

    fn conn(&self, conn: ConnId) -> io::Result<&Connection> {
        self.host.conn(conn).ok_or_else(not_connected)
    }

    fn with<R>(&mut self, conn: ConnId, f: impl FnOnce(&mut Connection) -> R) -> io::Result<R> {
        self.host.with_conn(conn, f).ok_or_else(not_connected)
    }

    /// Lends the received bytes in place to `f` as two slices (in order; the second is empty
    /// unless the ring wrapped) and consumes as many as `f` returns. `f` is not called when
    /// nothing is buffered: then the result is `Ok(0)` at end of stream (peer's FIN, or our
    /// shutdown of reading; see [`Cx::at_eof`]), else the connection's error or `WouldBlock`.
    pub fn read(
        &mut self,
        conn: ConnId,
        f: impl FnOnce(&[u8], &[u8]) -> usize,
    ) -> io::Result<usize> {
        self.with(conn, |c| {
            if c.recv_queue() == 0 {
                return c.recv(&mut []).map_err(to_io);
            }
            let (a, b) = c.readable();
            let n = f(a, b).min(a.len() + b.len());
            Ok(c.consume(n))
        })?
    }

    /// Copies received bytes into `buf` and consumes them, like `recv(2)`.
    pub fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        self.with(conn, |c| c.recv(buf))?.map_err(to_io)
    }

    /// Copies received bytes into `buf` without consuming them (`MSG_PEEK`).
    pub fn peek(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        self.with(conn, |c| c.peek(buf))?.map_err(to_io)
    }

    /// Bytes buffered for reading.
    pub fn readable_len(&self, conn: ConnId) -> usize {
        self.host.conn(conn).map_or(0, Connection::recv_queue)
    }

    /// True when a read would return end of stream.
    pub fn at_eof(&self, conn: ConnId) -> bool {
        self.host.conn(conn).is_some_and(Connection::at_eof)
    }

    /// Queues bytes in the send buffer; returns how many fit (`WouldBlock` when none did).
    /// `EPIPE` after [`Cx::shutdown`] of writing.
    pub fn write(&mut self, conn: ConnId, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.with(conn, |c| c.send(data))?.map_err(to_io)
    }

    /// Writes in place: `fill` gets up to `max` bytes of the send buffer's room in one piece,
    /// writes the bytes to send at its start and returns how many (see
    /// [`Connection::send_with`]). No buffer of the handler's to copy from; the bytes are
    /// kept for retransmission as [`Cx::write`]'s are. `WouldBlock` when there is no room.
    pub fn write_with(
        &mut self,
        conn: ConnId,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> io::Result<usize> {
        self.with(conn, |c| c.send_with(max, fill))?.map_err(to_io)
    }

    /// Bytes [`Cx::write`] would accept now.
    pub fn send_space(&self, conn: ConnId) -> usize {
        self.host.conn(conn).map_or(0, Connection::send_space)
    }

    /// `shutdown(2)`: `Write` queues a FIN after the buffered bytes, `Read` makes reads return
    /// end of stream (later bytes are acknowledged and dropped), `Both` does both. The handle
    /// stays valid: release it with [`Cx::close`].
    pub fn shutdown(&mut self, conn: ConnId, how: Shutdown) -> io::Result<()> {
        self.with(conn, |c| {
            if matches!(how, Shutdown::Read | Shutdown::Both) {
                c.shutdown_read();
            }
            if matches!(how, Shutdown::Write | Shutdown::Both) {
                c.close();
            }
        })
    }

    /// `close(2)`: FIN after the buffered bytes, and the handle is given up; no more callbacks
    /// for it. As in Linux, unread received bytes (or bytes arriving later) make it an RST
    /// instead, so the peer learns its data was not read.
    pub fn close(&mut self, conn: ConnId) {
        close_or_reset(self.host, conn);
        self.ops.released.push(conn);
    }

    /// Resets the connection (RST) and gives up the handle.
    pub fn abort(&mut self, conn: ConnId) {
        self.host.abort(conn);
        self.ops.released.push(conn);
    }

    /// Opens a connection to `remote` owned by the calling handler:
    /// [`Handler::on_connected`] or [`Handler::on_error`] follows.
    pub fn connect(&mut self, remote: SocketAddrV4) -> io::Result<ConnId> {
        let id = self
            .host
            .connect(self.now, remote)
            .map_err(|_| io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))?;
        self.ops.opened.push(id);
        Ok(id)
    }

    /// The peer's address.
    pub fn peer_addr(&self, conn: ConnId) -> io::Result<SocketAddrV4> {
        self.conn(conn).map(Connection::remote)
    }

    /// Our address.
    pub fn local_addr(&self, conn: ConnId) -> io::Result<SocketAddrV4> {
        self.conn(conn).map(Connection::local)
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&mut self, conn: ConnId, nodelay: bool) -> io::Result<()> {
        self.with(conn, |c| c.set_nodelay(nodelay))
    }

    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`/`TCP_KEEPINTVL`/`TCP_KEEPCNT`; `None` turns it off.
    pub fn set_keepalive(&mut self, conn: ConnId, ka: Option<KeepAlive>) -> io::Result<()> {
        let now = self.now;
        self.with(conn, |c| c.set_keepalive(now, ka))
    }

    /// `SO_SNDBUF` (never below what is queued).
    pub fn set_send_buffer_size(&mut self, conn: ConnId, bytes: usize) -> io::Result<()> {
        self.with(conn, |c| c.set_send_capacity(bytes))
    }

    /// `SO_RCVBUF`.
    pub fn set_recv_buffer_size(&mut self, conn: ConnId, bytes: usize) -> io::Result<()> {
        self.with(conn, |c| c.set_recv_buffer_size(bytes))
    }

    /// The send-buffer size.
    pub fn send_buffer_size(&self, conn: ConnId) -> io::Result<usize> {
        self.conn(conn).map(Connection::send_capacity)
    }

    /// The receive-buffer size.
    pub fn recv_buffer_size(&self, conn: ConnId) -> io::Result<usize> {
        self.conn(conn).map(Connection::recv_capacity)
    }

    /// `SO_ERROR`: the pending error, cleared by reading it.
    pub fn take_error(&mut self, conn: ConnId) -> io::Result<Option<io::Error>> {
        self.with(conn, |c| c.take_error().map(to_io))
    }

    /// Read-only access to the connection (state, `tcp_info`, counters).
    pub fn connection(&self, conn: ConnId) -> Option<&Connection> {
        self.host.conn(conn)
    }

    /// The connection's `tcp_info`-like snapshot (state, RTT, RTO, cwnd, ssthresh, bytes,
    /// retransmissions, reordering, delivery rate); `None` for a stale handle.
    pub fn info(&self, conn: ConnId) -> Option<crate::tcp::TcpInfo> {
        self.host.conn(conn).map(|c| c.info())
    }

    /// Asks the stack to shut down cleanly (as a panic in a handler does).
    pub fn request_shutdown(&mut self) {
        self.ops.stop = true;
    }
}

struct Entry {
    port: Option<u16>,
    handler: Box<dyn Handler + Send>,
    poisoned: bool,
    lends: bool,
}

/// Dispatches a host's events to handlers; an [`App`] for an [`crate::engine::Engine`], or for
/// a test driving a [`Host`] by hand (the simulator).
///
/// ```
/// use xdp_tcp::api::{Cx, Handler, HandlerApp};
/// use xdp_tcp::host::{ConnId, Host, HostConfig};
///
/// struct Discard;
/// impl Handler for Discard {
///     fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
///         let _ = cx.read(conn, |a, b| a.len() + b.len());
///     }
/// }
///
/// let mut host = Host::new(HostConfig::new([10, 0, 0, 2].into()));
/// let mut app = HandlerApp::new();
/// app.listen(&mut host, 9, 128, Discard).unwrap();
/// // then: Engine::new(io, host, neigh, app, cfg), or call App::poll yourself.
/// ```
#[derive(Default)]
pub struct HandlerApp {
    handlers: Vec<Entry>,
    /// Each connection's handler (ahash: looked up for every event and every lend).
    owner: HashMap<ConnId, usize, ahash::RandomState>,
    lingering: Lingering,
    stop: bool,
    panicked: bool,
    /// Some handler lends ([`Handler::lends`]).
    lending: bool,
}

impl HandlerApp {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens on `port` of `host` and gives its connections to `handler`. `EADDRINUSE` if a
    /// handler already listens there.
    pub fn listen(
        &mut self,
        host: &mut Host,
        port: u16,
        backlog: usize,
        handler: impl Handler + Send + 'static,
    ) -> io::Result<()> {
        self.listen_boxed(host, port, backlog, Box::new(handler))
    }

    pub(crate) fn listen_boxed(
        &mut self,
        host: &mut Host,
        port: u16,
        backlog: usize,
        handler: Box<dyn Handler + Send>,
    ) -> io::Result<()> {
        if self.listens_on(port) {
            return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
        }
        host.listen(port, backlog);
        self.lending |= handler.lends();
        self.handlers.push(Entry {
            port: Some(port),
            lends: handler.lends(),
            handler,
            poisoned: false,
        });
        Ok(())
    }

    /// Opens a connection to `remote` whose events go to `handler`.
    pub fn connect(
        &mut self,
        now: Instant,
        host: &mut Host,
        remote: SocketAddrV4,
        handler: impl Handler + Send + 'static,
    ) -> io::Result<ConnId> {
        let id = host
            .connect(now, remote)
            .map_err(|_| io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))?;
        self.lending |= handler.lends();
        self.handlers.push(Entry {
            port: None,
            lends: handler.lends(),
            handler: Box::new(handler),
            poisoned: false,
        });
        self.owner.insert(id, self.handlers.len() - 1);
        Ok(id)
    }

    /// Runs `f` with a [`Cx`] outside any callback: for code that drives a host by hand (tests,
    /// a simulator). Connections it releases are closed as from a handler; connections it
    /// opens with [`Cx::connect`] get no callbacks (use [`HandlerApp::connect`] for those).
    pub fn with_cx<R>(
        &mut self,
        now: Instant,
        host: &mut Host,
        f: impl FnOnce(&mut Cx<'_>) -> R,
    ) -> R {
        let mut ops = Ops::default();
        let r = f(&mut Cx {
            host,
            now,
            ops: &mut ops,
        });
        self.stop |= ops.stop;
        for id in ops.released {
            self.owner.remove(&id);
            self.lingering.insert(id);
        }
        r
    }

    /// True when a handler panicked or asked for shutdown.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// True when a handler panicked.
    pub fn panicked(&self) -> bool {
        self.panicked
    }

    /// Connections owned by handlers.
    pub fn conn_count(&self) -> usize {
        self.owner.len()
    }

    /// Connections released by handlers and not yet closed.
    pub fn lingering_count(&self) -> usize {
        self.lingering.len()
    }

    /// True if a handler listens on `port`.
    pub fn listens_on(&self, port: u16) -> bool {
        self.handlers.iter().any(|e| e.port == Some(port))
    }

    /// True if the event is for a connection this app owns or is closing.
    pub(crate) fn claims(&self, host: &Host, id: ConnId, ev: Event) -> bool {
        if self.owner.contains_key(&id) || self.lingering.contains(&id) {
            return true;
        }
        ev == Event::Connected
            && host
                .conn(id)
                .is_some_and(|c| self.listens_on(c.local().port()))
    }

    /// Closes every connection (FIN, or RST when unread bytes remain) and stops listening;
    /// the handlers get no more calls for them.
    pub fn close_all(&mut self, host: &mut Host) {
        for e in &self.handlers {
            if let Some(p) = e.port {
                host.unlisten(p);
            }
        }
        for (id, _) in std::mem::take(&mut self.owner) {
            self.lingering.close(host, id);
        }
    }

    /// Resets every connection still open or closing.
    pub fn abort_all(&mut self, host: &mut Host) {
        for (id, _) in std::mem::take(&mut self.owner) {
            host.abort(id);
        }
        self.lingering.abort_all(host);
    }

    /// True when no connection is open and every closing one is closed, in TIME-WAIT, or in
    /// FIN-WAIT-2 (everything we sent, FIN included, is acknowledged).
    pub fn quiet(&self, host: &Host) -> bool {
        self.owner.is_empty() && self.lingering.quiet(host)
    }

    fn call(
        &mut self,
        idx: usize,
        now: Instant,
        host: &mut Host,
        f: impl FnOnce(&mut dyn Handler, &mut Cx<'_>),
    ) {
        let entry = &mut self.handlers[idx];
        if entry.poisoned {
            return;
        }
        let mut ops = Ops::default();
        let result = {
            let mut cx = Cx {
                host: &mut *host,
                now,
                ops: &mut ops,
            };
            let handler = &mut *entry.handler;
            catch_unwind(AssertUnwindSafe(|| f(handler, &mut cx)))
        };
        if result.is_err() {
            entry.poisoned = true;
            self.panicked = true;
            self.stop = true;
        }
        self.stop |= ops.stop;
        for id in ops.released {
            if self.owner.remove(&id).is_some() {
                self.lingering.insert(id);
            }
        }
        for id in ops.opened {
            self.owner.insert(id, idx);
        }
    }

    /// Handles one event; returns whether it was this app's.
    pub(crate) fn handle_event(
        &mut self,
        now: Instant,
        host: &mut Host,
        id: ConnId,
        ev: Event,
    ) -> bool {
        if self.lingering.event(host, id, ev) {
            return true;
        }
        if let Some(&idx) = self.owner.get(&id) {
            match ev {
                Event::Connected => self.call(idx, now, host, |h, cx| h.on_connected(cx, id)),
                Event::Readable | Event::PeerClosed => {
                    self.call(idx, now, host, |h, cx| h.on_readable(cx, id))
                }
                Event::Writable => self.call(idx, now, host, |h, cx| h.on_writable(cx, id)),
                Event::Error(e) => self.call(idx, now, host, |h, cx| h.on_error(cx, id, to_io(e))),
                Event::Closed => {
                    self.call(idx, now, host, |h, cx| h.on_closed(cx, id));
                    if self.owner.remove(&id).is_some() {
                        host.close(id);
                    }
                }
            }
            return true;
        }
        if ev != Event::Connected {
            return false;
        }
        let Some(port) = host.conn(id).map(|c| c.local().port()) else {
            return false;
        };
        let Some(idx) = self.handlers.iter().position(|e| e.port == Some(port)) else {
            return false;
        };
        while let Some(conn) = host.accept(port) {
            self.owner.insert(conn, idx);
            self.call(idx, now, host, |h, cx| h.on_accept(cx, conn));
            // Bytes and FIN that came before the accept raised no event of their own.
            let pending = self.owner.contains_key(&conn)
                && host
                    .conn(conn)
                    .is_some_and(|c| c.recv_queue() > 0 || c.at_eof());
            if pending {
                self.call(idx, now, host, |h, cx| h.on_readable(cx, conn));
            }
        }
        true
    }
}

impl App for HandlerApp {
    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        for &(id, ev) in events {
            self.handle_event(now, host, id, ev);
        }
        events.len()
    }

    fn lends(&self) -> bool {
        self.lending
    }

    /// To the owning handler's [`Handler::on_data`], if it lends; a panic there poisons it as
    /// in any other callback (and takes nothing).
    fn on_payload(&mut self, now: Instant, id: ConnId, c: &mut Connection, data: &[u8]) -> usize {
        let Some(&idx) = self.owner.get(&id) else {
            return 0;
        };
        let entry = &mut self.handlers[idx];
        if !entry.lends || entry.poisoned {
            return 0;
        }
        let mut out = Lent { conn: c, now };
        let handler = &mut *entry.handler;
        match catch_unwind(AssertUnwindSafe(|| handler.on_data(&mut out, id, data))) {
            Ok(n) => n,
            Err(_) => {
                entry.poisoned = true;
                self.panicked = true;
                self.stop = true;
                0
            }
        }
    }
}
