//! The engine's side of the threaded API: [`StackApp`], the [`App`] every engine of a
//! [`super::Stack`] runs, serving the handlers and the sockets of application threads.
//!
//! Each iteration it takes the commands queued for its engine, then the host's events; for a
//! socket it moves bytes between the connection and the messages ([`super::shared`] describes
//! them and the credits that bound both directions). It never builds a user-side type: a new
//! connection on a listener goes out as an [`Accepted`], an active open's result as
//! [`Ev::Connected`] or an error.
//!
//! Write path: a [`Command::Write`]'s buffer goes into the connection's send buffer whole
//! ([`tcp::Connection::send_owned`]), so the writer's copy into it is the only one before the
//! transmit frame. `MSG_MORE` is the connection's cork: corked before the bytes are queued,
//! uncorked after a write without it; shutting down writing closes, which uncorks. Credit comes
//! back as the peer acknowledges, and the emptied buffers go back to the writer's pool.
//!
//! Read path: bytes are copied out of the receive buffer into [`Ev::Data`] buffers (a second
//! copy after the one from the frame; the receive buffer is a ring the engine keeps writing
//! into), which the reader copies into its own slices.
//!
//! Neither side ever waits for the other while holding anything, and the engine never blocks: it
//! only `try_recv`s commands and `send`s on unbounded channels whose depth the credits bound.

use std::collections::HashMap;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};

use super::handler::HandlerApp;
use super::linger::Lingering;
use super::shared::{
    Accepted, Command, Control, CopyCounters, Ends, EngineHandle, Ev, Linger, Opt, Ready, Shared,
    SockDefaults, MAX_CHUNK,
};
use crate::engine::App;
use crate::host::{ConnId, Host};
use crate::tcp::{self, Connection, Event};
use crate::time::Instant;

/// Engine-side state of one socket.
struct Sock {
    conn: ConnId,
    tx: Sender<Ev>,
    shared: Arc<Shared>,
    /// Bytes queued in the connection whose credit the writer has not got back: they leave the
    /// send buffer when acknowledged.
    queued: usize,
    read_shut: bool,
    eof_sent: bool,
    err_sent: bool,
    /// Its thread knows the connection is established (accepted, or `Ev::Connected` sent): bytes
    /// may be lent to it (`App::on_payload`), which then reach it after that event.
    live: bool,
}

impl Sock {
    fn new(conn: ConnId, tx: Sender<Ev>, shared: Arc<Shared>) -> Self {
        Sock {
            conn,
            tx,
            shared,
            queued: 0,
            read_shut: false,
            eof_sent: false,
            err_sent: false,
            live: false,
        }
    }

    fn credit(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.shared.send_credit.fetch_add(n as isize, SeqCst);
        if self.shared.send_waiting.swap(false, SeqCst) {
            self.shared.poke_writer();
        }
    }

    /// Bytes the reader may be sent now, in one message: its receive credit left, at most a
    /// chunk.
    fn recv_room(&self) -> usize {
        let limit = self.shared.recv_limit.load(SeqCst);
        let held = self.shared.recv_outstanding.load(SeqCst);
        limit.saturating_sub(held).min(MAX_CHUNK)
    }

    /// Sends the reader `a` then `b` in one `Ev::Data` message (from the pool), counted as
    /// copied by `counter` and held against its credit. The caller wakes the reader.
    fn post_data(&self, a: &[u8], b: &[u8], counter: &AtomicU64) {
        let n = a.len() + b.len();
        let mut v = self.shared.recv_buffer(n);
        v.extend_from_slice(a);
        v.extend_from_slice(b);
        CopyCounters::add(counter, n);
        self.shared.recv_outstanding.fetch_add(n, SeqCst);
        let _ = self.tx.send(Ev::Data(v));
    }

    /// Reports the connection's error to the owner, once.
    fn fail(&mut self, e: tcp::Error) {
        if !self.err_sent {
            self.err_sent = true;
            self.shared.fail(e);
            let _ = self.tx.send(Ev::Error(e));
        }
    }
}

impl Drop for Sock {
    fn drop(&mut self) {
        self.shared.detach();
    }
}

/// The [`App`] of every engine of a [`super::Stack`]: handlers plus threaded sockets.
pub(crate) struct StackApp {
    pub handlers: HandlerApp,
    socks: HashMap<u64, Sock, ahash::RandomState>,
    by_conn: HashMap<ConnId, u64, ahash::RandomState>,
    /// Released by their owner and not closed yet: bytes arriving now are answered by RST.
    lingering: Lingering,
    listeners: HashMap<u16, (u64, Sender<Accepted>, Arc<Ready>), ahash::RandomState>,
    /// Closed with `SO_LINGER` and waited for: told once all they sent is acknowledged.
    linger_waits: Vec<(ConnId, Sender<()>)>,
    cmds: Receiver<Command>,
    /// This engine, for the sockets it hands out.
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
            linger_waits: Vec::new(),
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

    fn remove_sock(&mut self, token: u64) -> Option<Sock> {
        let s = self.socks.remove(&token)?;
        self.by_conn.remove(&s.conn);
        Some(s)
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
                    shared.ready.notify_read();
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
                        shared.ready.notify_read();
                    }
                }
            }
            Command::Listen {
                port,
                id,
                backlog,
                accept,
                ready,
                reply,
            } => {
                let r = if self.shutdown_at.is_some() {
                    Err(super::error::to_io(tcp::Error::Aborted))
                } else if self.listeners.contains_key(&port) || self.handlers.listens_on(port) {
                    Err(std::io::Error::from_raw_os_error(libc::EADDRINUSE))
                } else {
                    host.listen(port, backlog);
                    self.listeners.insert(port, (id, accept, ready));
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
                    let n = data.len();
                    let r = host.with_conn(s.conn, |c| {
                        if more {
                            c.set_cork(now, true);
                        }
                        let r = c.send_owned(data);
                        if !more {
                            c.set_cork(now, false);
                        }
                        r
                    });
                    match r {
                        Some(Ok(n)) => s.queued += n,
                        // The connection failed or is gone: the bytes can never go; the error
                        // reaches the owner from `service`.
                        _ => s.credit(n),
                    }
                    self.service(host, token);
                }
            }
            Command::Shutdown { token, how } => {
                if let Some(s) = self.socks.get_mut(&token) {
                    if matches!(how, Shutdown::Read | Shutdown::Both) {
                        s.read_shut = true;
                        host.with_conn(s.conn, |c| c.shutdown_read());
                    }
                    if matches!(how, Shutdown::Write | Shutdown::Both) {
                        // FIN after the bytes already queued; a cork no longer holds them.
                        host.with_conn(s.conn, |c| c.close());
                    }
                    self.service(host, token);
                }
            }
            Command::Close {
                token,
                unread,
                linger,
            } => {
                if let Some(s) = self.remove_sock(token) {
                    match linger {
                        _ if unread => host.abort(s.conn),
                        Linger::Reset => host.abort(s.conn),
                        Linger::Background => self.lingering.close(host, s.conn),
                        Linger::Wait(done) => {
                            self.lingering.close(host, s.conn);
                            self.linger_waits.push((s.conn, done));
                        }
                    }
                }
            }
            Command::Set { token, opt } => {
                if let Some(s) = self.socks.get(&token) {
                    let id = s.conn;
                    host.with_conn(id, |c| match opt {
                        Opt::NoDelay(v) => c.set_nodelay(v),
                        Opt::KeepAlive(ka) => c.set_keepalive(now, ka),
                        Opt::SendBuf(n) => c.set_send_capacity(n),
                        Opt::RecvBuf(n) => c.set_recv_buffer_size(n),
                        Opt::Ttl(t) => c.set_ttl(t),
                    });
                    self.service(host, token);
                }
            }
            Command::Credit { token } => {
                self.service(host, token);
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

    /// Settles a socket with its connection: gives back the credit of acknowledged bytes and
    /// their buffers, moves received bytes to the owner as far as its credit allows, then
    /// reports end of stream and errors once everything before them went out.
    fn service(&mut self, host: &mut Host, token: u64) -> usize {
        let Some(s) = self.socks.get_mut(&token) else {
            return 0;
        };
        let id = s.conn;
        let mut work = 0;
        let mut told = false;
        let Some(c) = host.conn(id) else {
            // Gone: nothing queued will be acknowledged.
            let n = std::mem::take(&mut s.queued);
            s.credit(n);
            return 0;
        };
        s.shared.copies.mirror(c.copied());
        let acked = s.queued.saturating_sub(c.send_queue());
        if acked > 0 {
            s.queued -= acked;
            s.credit(acked);
            work += 1;
        }
        if c.has_reclaimable_chunk() && !s.shared.send_pool_full() {
            host.with_conn(id, |c| {
                while let Some(v) = c.reclaim_chunk() {
                    s.shared.recycle_send(v);
                    if s.shared.send_pool_full() {
                        break;
                    }
                }
            });
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
                let n = queued.min(s.recv_room());
                host.with_conn(id, |c| {
                    let (a, b) = c.readable();
                    let x = a.len().min(n);
                    s.post_data(&a[..x], &b[..n - x], &s.shared.copies.recv_to_message);
                    c.consume(n);
                });
                work += n;
                told = true;
            }
        }
        if let Some(c) = host.conn(id) {
            if c.recv_queue() == 0 || s.read_shut {
                if c.at_eof() && !s.eof_sent {
                    s.eof_sent = true;
                    s.shared.eof.store(true, SeqCst);
                    let _ = s.tx.send(Ev::Eof);
                    told = true;
                }
                if let Some(e) = c.error() {
                    s.fail(e);
                }
            }
        }
        if told {
            s.shared.ready.notify_read();
        }
        work
    }

    fn event(&mut self, now: Instant, host: &mut Host, id: ConnId, ev: Event) -> usize {
        if self.lingering.event(host, id, ev) {
            return 1;
        }
        if let Some(&token) = self.by_conn.get(&id) {
            if ev == Event::Connected {
                if let (Some(s), Some(c)) = (self.socks.get_mut(&token), host.conn(id)) {
                    s.live = true;
                    let _ = s.tx.send(Ev::Connected { local: c.local() });
                    s.shared.ready.notify_read();
                    s.shared.ready.notify_write();
                }
            }
            return 1 + self.service(host, token);
        }
        if self.handlers.claims(host, id, ev) {
            self.handlers.handle_event(now, host, id, ev);
            if self.handlers.stop_requested() && !self.control.requested() {
                if self.handlers.panicked() {
                    self.control.set_panicked();
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
            let mut sock = Sock::new(conn, tx, Arc::clone(&shared));
            sock.live = true;
            self.add_sock(token, sock);
            // Bytes and FIN that came before the accept raised no event of their own.
            work += 1 + self.service(host, token);
            let ends = Ends {
                token,
                engine: self.me.clone(),
                rx,
                shared,
            };
            let accepted = Accepted::new(ends, local, peer);
            if let Some(l) = self.listeners.get(&port) {
                if l.1.send(accepted).is_err() {
                    // The listener is gone; the returned message, dropped, closes the
                    // connection through our own queue.
                    self.listeners.remove(&port);
                } else {
                    l.2.notify_read();
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
        for (_, mut s) in std::mem::take(&mut self.socks) {
            s.fail(tcp::Error::Aborted);
            self.lingering.close(host, s.conn);
        }
        self.by_conn.clear();
    }

    fn quiet(&self, host: &Host) -> bool {
        self.handlers.quiet(host) && self.lingering.quiet(host)
    }
}

impl App for StackApp {
    fn lends(&self) -> bool {
        true
    }

    /// Zero-copy receive for the threaded API: a stream's in-order bytes go from the frame
    /// straight into the message for its reader, as far as its receive credit goes (what is
    /// left waits in the receive buffer for `service`, as without lending); handlers' bytes go
    /// to theirs.
    fn on_payload(&mut self, now: Instant, id: ConnId, c: &mut Connection, data: &[u8]) -> usize {
        let Some(&token) = self.by_conn.get(&id) else {
            return self.handlers.on_payload(now, id, c, data);
        };
        let Some(s) = self.socks.get_mut(&token) else {
            return 0;
        };
        if s.read_shut || !s.live {
            return 0;
        }
        let n = data.len().min(s.recv_room());
        if n == 0 {
            return 0;
        }
        s.post_data(&data[..n], &[], &s.shared.copies.frame_to_message);
        s.shared.ready.notify_read();
        n
    }

    fn poll(&mut self, now: Instant, host: &mut Host, events: &[(ConnId, Event)]) -> usize {
        let mut work = 0;
        while let Ok(cmd) = self.cmds.try_recv() {
            work += 1;
            self.command(now, host, cmd);
        }
        for &(id, ev) in events {
            work += self.event(now, host, id, ev);
        }
        if !self.linger_waits.is_empty() {
            self.linger_waits.retain(|(id, done)| {
                let quiet = host.conn(*id).is_none_or(|c| {
                    matches!(
                        c.state(),
                        tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
                    )
                });
                if quiet {
                    let _ = done.send(());
                }
                !quiet
            });
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
