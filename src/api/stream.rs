//! [`TcpStream`]: a connection used from an application thread, like `std::net::TcpStream`.
//!
//! The user side of the threaded API (see `shared.rs` for the direction of the modules):
//! a stream is built here, from the `Ends` a connect sets up or a listener receives in an
//! `Accepted`, never by the engine.
//!
//! # Copies per byte
//!
//! - **write: one.** [`TcpStream::write`] copies the caller's slice once, into a buffer (reused
//!   from a pool the engine refills with acknowledged ones) that travels to the engine and joins
//!   the connection's send buffer whole; segments are then built from it straight into the
//!   transmit frame, as for every connection.
//! - **read: three.** The frame's payload is copied into the connection's receive buffer (the
//!   frame goes back to the kernel at once), the engine copies the bytes from there into a
//!   message buffer for this thread (the receive buffer is a ring the engine keeps writing
//!   into), and [`TcpStream::read`] copies them into the caller's slice.
//!
//! [`TcpStream::copies`] counts every one of them. A [`super::Handler`] avoids the thread hop
//! and its copies: one each way.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::error::{broken_pipe, not_connected, reported, to_io, would_block};
use super::shared::{
    send_credit, Command, CopyCounters, Ends, EngineHandle, Ev, Opt, Shared, SockDefaults,
    MAX_CHUNK,
};
use super::stack::Stack;
use crate::tcp::{self, KeepAlive};

/// Flags of [`TcpStream::recv_with`], as `recv(2)`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvFlags {
    /// `MSG_PEEK`: copy without consuming.
    pub peek: bool,
    /// `MSG_WAITALL`: wait until the buffer is full (or end of stream, an error, the read
    /// timeout, which return what was read so far).
    pub wait_all: bool,
    /// `MSG_DONTWAIT`: do not block for this call (`EAGAIN` when nothing is there).
    pub dont_wait: bool,
}

/// Flags of [`TcpStream::send_with`], as `send(2)`'s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendFlags {
    /// `MSG_MORE`: more follows; hold a partial segment for coalescing until a send without
    /// this flag, a shutdown of writing, or 200 ms (Linux's cork limit). Full segments go out.
    pub more: bool,
    /// `MSG_NOSIGNAL`: accepted for familiarity; this stack never raises `SIGPIPE` anyway, a
    /// write on a broken connection only returns `EPIPE`.
    pub no_signal: bool,
}

/// A TCP connection of a [`Stack`], used from any thread (one at a time: `&mut self`).
///
/// Reads and writes go through channels to the engine core that owns the connection; see
/// [`crate::api`] for the flow control that bounds them. Errors carry Linux's errno
/// ([`crate::api::error`]). Dropping the stream closes it like `close(2)`: FIN after the bytes
/// written, or RST when received bytes were never read.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use xdp_tcp::api::{Stack, TcpStream};
///
/// # fn run(stack: &Stack) -> std::io::Result<()> {
/// let mut s = TcpStream::connect(stack, "10.0.0.2:7".parse().unwrap())?;
/// s.set_nodelay(true)?;
/// s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
/// s.write_all(b"ping")?;
/// let mut buf = [0; 4];
/// s.read_exact(&mut buf)?;
/// # Ok(()) }
/// ```
pub struct TcpStream {
    token: u64,
    engine: EngineHandle,
    rx: Receiver<Ev>,
    shared: Arc<Shared>,
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already read.
    head: usize,
    buffered: usize,
    eof: bool,
    /// Pending error (SO_ERROR): reported once by the next call, then the socket is dead.
    error: Option<tcp::Error>,
    dead: bool,
    read_shut: bool,
    write_shut: bool,
    nonblocking: bool,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    local: SocketAddrV4,
    peer: SocketAddrV4,
    nodelay: bool,
    keepalive: Option<KeepAlive>,
    sndbuf: usize,
    rcvbuf: usize,
}

impl TcpStream {
    /// The stream over `ends`, which it owns from now on: dropping it closes the connection.
    pub(crate) fn new(
        ends: Ends,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        d: SockDefaults,
    ) -> Self {
        let Ends {
            token,
            engine,
            rx,
            shared,
        } = ends;
        TcpStream {
            token,
            engine,
            rx,
            shared,
            chunks: VecDeque::new(),
            head: 0,
            buffered: 0,
            eof: false,
            error: None,
            dead: false,
            read_shut: false,
            write_shut: false,
            nonblocking: false,
            read_timeout: None,
            write_timeout: None,
            local,
            peer,
            nodelay: false,
            keepalive: None,
            sndbuf: d.sndbuf,
            rcvbuf: d.rcvbuf,
        }
    }

    /// Opens a connection to `remote` and blocks until it is established or fails
    /// (`ECONNREFUSED` when the peer answers with RST, `ETIMEDOUT` when SYNs go unanswered,
    /// `EHOSTUNREACH` on an ICMP error).
    ///
    /// Connections spread over the engines round-robin; each picks a source port whose
    /// return traffic lands on its own queue (see [`crate::rss`]), or is forwarded to it.
    pub fn connect(stack: &Stack, remote: SocketAddrV4) -> io::Result<TcpStream> {
        Self::connect_inner(stack, stack.pick_engine(), remote, None)
    }

    /// [`TcpStream::connect`] on engine `engine` (`0..Stack::engine_count()`).
    pub fn connect_on(stack: &Stack, engine: usize, remote: SocketAddrV4) -> io::Result<TcpStream> {
        Self::connect_inner(stack, engine, remote, None)
    }

    /// [`TcpStream::connect`] giving up after `timeout` (`ETIMEDOUT`).
    pub fn connect_timeout(
        stack: &Stack,
        remote: SocketAddrV4,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        Self::connect_inner(stack, stack.pick_engine(), remote, Some(timeout))
    }

    fn connect_inner(
        stack: &Stack,
        engine: usize,
        remote: SocketAddrV4,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let d = stack.defaults();
        let engine = stack.engine(engine)?;
        let token = stack.next_token();
        let shared = Shared::new(d.sndbuf, d.rcvbuf);
        let (tx, rx) = crossbeam::channel::unbounded();
        let unspecified = SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0);
        let ends = Ends {
            token,
            engine: engine.clone(),
            rx,
            shared: Arc::clone(&shared),
        };
        // Built before the engine hears of it, so that giving up (a time-out) closes it.
        let mut s = TcpStream::new(ends, unspecified, remote, d);
        if !engine.send(Command::Connect {
            token,
            remote,
            tx,
            shared,
        }) {
            return Err(to_io(tcp::Error::Aborted));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let ev = match deadline {
                None => s.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(d) => s.rx.recv_deadline(d),
            };
            match ev {
                Ok(Ev::Connected { local, peer }) => {
                    s.local = local;
                    s.peer = peer;
                    return Ok(s);
                }
                Ok(Ev::Error(tcp::Error::WouldBlock)) => {
                    s.dead = true;
                    return Err(io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
                }
                Ok(Ev::Error(e)) => {
                    s.dead = true;
                    return Err(to_io(e));
                }
                Ok(other) => s.absorb(other),
                Err(RecvTimeoutError::Timeout) => return Err(to_io(tcp::Error::TimedOut)),
                Err(RecvTimeoutError::Disconnected) => {
                    s.dead = true;
                    return Err(to_io(tcp::Error::Aborted));
                }
            }
        }
    }

    fn absorb(&mut self, ev: Ev) {
        match ev {
            Ev::Data(v) => {
                if self.read_shut {
                    self.release(v.len());
                    self.shared.recycle_recv(v);
                } else {
                    self.buffered += v.len();
                    self.chunks.push_back(v);
                }
            }
            Ev::Eof => self.eof = true,
            Ev::Error(e) => {
                if !self.dead {
                    self.error = Some(reported(e, self.eof));
                }
            }
            Ev::Credit | Ev::Connected { .. } => {}
        }
    }

    /// Takes every event already there; notices an engine that is gone.
    fn pump(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(ev) => self.absorb(ev),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.gone();
                    return;
                }
            }
        }
    }

    fn gone(&mut self) {
        if !self.dead && self.error.is_none() {
            self.error = Some(tcp::Error::Aborted);
        }
    }

    /// Waits for one event until `deadline`; false on time-out.
    fn wait(&mut self, deadline: Option<Instant>) -> bool {
        let r = match deadline {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => self.rx.recv_deadline(d),
        };
        match r {
            Ok(ev) => {
                self.absorb(ev);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.gone();
                true
            }
        }
    }

    /// Gives back receive credit for `n` consumed bytes; wakes the engine if it stopped.
    fn release(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.shared.recv_outstanding.fetch_sub(n, SeqCst);
        if self.shared.recv_blocked.swap(false, SeqCst) {
            self.engine.send(Command::Credit { token: self.token });
        }
    }

    fn copy_out(&mut self, buf: &mut [u8], consume: bool) -> usize {
        let mut n = 0;
        let mut head = self.head;
        let mut i = 0;
        while n < buf.len() && i < self.chunks.len() {
            let c = &self.chunks[i][head..];
            let k = c.len().min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&c[..k]);
            n += k;
            if k == c.len() {
                i += 1;
                head = 0;
            } else {
                head += k;
            }
        }
        CopyCounters::add(&self.shared.copies.message_to_caller, n);
        if consume {
            for v in self.chunks.drain(..i) {
                self.shared.recycle_recv(v);
            }
            self.head = head;
            self.buffered -= n;
            self.release(n);
        }
        n
    }

    /// `recv(2)` with flags. `Ok(0)` is end of stream: the peer's FIN, our
    /// [`Shutdown::Read`], or after an error was reported once.
    pub fn recv_with(&mut self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = self.read_timeout.map(|t| Instant::now() + t);
        let mut n = 0;
        loop {
            self.pump();
            if self.read_shut {
                return Ok(n);
            }
            if flags.peek {
                if self.buffered > 0 && (!flags.wait_all || self.buffered >= buf.len()) {
                    return Ok(self.copy_out(buf, false));
                }
            } else if self.buffered > 0 {
                n += self.copy_out(&mut buf[n..], true);
                if !flags.wait_all || n == buf.len() {
                    return Ok(n);
                }
                continue;
            }
            let have = if flags.peek { self.buffered } else { n };
            let mut finish = |s: &mut Self| {
                if flags.peek {
                    s.copy_out(buf, false)
                } else {
                    n
                }
            };
            // After the peer's FIN a read returns end of stream even if an RST followed
            // (Linux: SOCK_DONE before sk_err); the error stays for writes and SO_ERROR.
            if self.eof || self.dead {
                return Ok(finish(self));
            }
            if let Some(e) = self.error {
                if have > 0 {
                    return Ok(finish(self));
                }
                self.error = None;
                self.dead = true;
                return Err(to_io(e));
            }
            if self.nonblocking || flags.dont_wait {
                return if have > 0 {
                    Ok(finish(self))
                } else {
                    Err(would_block())
                };
            }
            if !self.wait(deadline) {
                return if have > 0 {
                    Ok(finish(self))
                } else {
                    Err(would_block())
                };
            }
        }
    }

    /// Copies received bytes without consuming them (`MSG_PEEK`); blocks like `read`.
    pub fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(
            buf,
            RecvFlags {
                peek: true,
                ..Default::default()
            },
        )
    }

    /// `send(2)` with flags: takes as many bytes as the send credit allows (blocking for some
    /// unless non-blocking or past the write timeout, then `EAGAIN`). `EPIPE` after
    /// [`Shutdown::Write`] or once the connection is gone.
    pub fn send_with(&mut self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let deadline = self.write_timeout.map(|t| Instant::now() + t);
        loop {
            self.pump();
            if self.write_shut {
                return Err(broken_pipe());
            }
            if let Some(e) = self.error.take() {
                self.dead = true;
                return Err(to_io(e));
            }
            if self.dead {
                return Err(broken_pipe());
            }
            let credit = self.shared.send_credit.load(SeqCst);
            if credit > 0 {
                let n = data.len().min(credit as usize);
                self.shared.send_credit.fetch_sub(n as isize, SeqCst);
                if !self.post_writes(&data[..n], flags.more) {
                    self.gone();
                    continue;
                }
                return Ok(n);
            }
            if self.nonblocking {
                return Err(would_block());
            }
            self.shared.send_waiting.store(true, SeqCst);
            if self.shared.send_credit.load(SeqCst) > 0 {
                continue;
            }
            if !self.wait(deadline) {
                return Err(would_block());
            }
        }
    }

    /// Hands `data` to the engine in buffers of at most [`MAX_CHUNK`] bytes: the one copy of
    /// the write path. False when the engine is gone.
    fn post_writes(&mut self, data: &[u8], more: bool) -> bool {
        let mut ok = true;
        for part in data.chunks(MAX_CHUNK) {
            let mut v = self.shared.send_buffer(part.len());
            v.extend_from_slice(part);
            CopyCounters::add(&self.shared.copies.write_to_message, part.len());
            ok &= self.engine.post(Command::Write {
                token: self.token,
                data: v,
                more,
            });
        }
        self.engine.wake();
        ok
    }

    /// `shutdown(2)`. `Write` sends FIN after the bytes already written (later writes get
    /// `EPIPE`); `Read` drops what is buffered and makes reads return `Ok(0)`; `Both` does
    /// both. `ENOTCONN` once the connection is gone.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        self.pump();
        if self.dead {
            return Err(not_connected());
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) && !self.read_shut {
            self.read_shut = true;
            let n = self.buffered;
            for v in self.chunks.drain(..) {
                self.shared.recycle_recv(v);
            }
            self.head = 0;
            self.buffered = 0;
            self.release(n);
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.write_shut = true;
        }
        self.engine.send(Command::Shutdown {
            token: self.token,
            how,
        });
        Ok(())
    }

    fn set(&mut self, opt: Opt) -> io::Result<()> {
        if self.dead {
            return Err(not_connected());
        }
        self.engine.send(Command::Set {
            token: self.token,
            opt,
        });
        Ok(())
    }

    /// `TCP_NODELAY`: turn Nagle's algorithm off.
    pub fn set_nodelay(&mut self, nodelay: bool) -> io::Result<()> {
        self.set(Opt::NoDelay(nodelay))?;
        self.nodelay = nodelay;
        Ok(())
    }

    /// The `TCP_NODELAY` setting.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.nodelay)
    }

    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`; `None` turns it off.
    /// An idle peer that answers none of `count` probes makes the next call fail with
    /// `ETIMEDOUT`.
    pub fn set_keepalive(&mut self, ka: Option<KeepAlive>) -> io::Result<()> {
        self.set(Opt::KeepAlive(ka))?;
        self.keepalive = ka;
        Ok(())
    }

    /// The keep-alive setting.
    pub fn keepalive(&self) -> io::Result<Option<KeepAlive>> {
        Ok(self.keepalive)
    }

    /// `SO_RCVTIMEO`: a read waiting longer fails with `EAGAIN` (`ErrorKind::WouldBlock`, as
    /// std on Linux). `Some(0)` is refused with `EINVAL`, as std does.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.read_timeout = t;
        Ok(())
    }

    /// `SO_SNDTIMEO`: a write waiting longer for buffer space fails with `EAGAIN`.
    pub fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.write_timeout = t;
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.write_timeout)
    }

    /// Non-blocking mode: calls that would wait return `EAGAIN` instead.
    pub fn set_nonblocking(&mut self, nonblocking: bool) -> io::Result<()> {
        self.nonblocking = nonblocking;
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.peer))
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.local))
    }

    /// `TCP_INFO`: a snapshot of the connection from its engine (state, RTT and RTO, windows,
    /// bytes in flight, counters). As in Linux, a reset connection reports state CLOSED until
    /// the stream is dropped. Waits for the engine's answer, at most a second (`ETIMEDOUT`);
    /// `ENOTCONN` if the engine no longer has the connection (the stack shut it down).
    pub fn tcp_info(&self) -> io::Result<tcp::TcpInfo> {
        let (reply, answer) = crossbeam::channel::bounded(1);
        let token = self.token;
        if !self.engine.send(Command::Info { token, reply }) {
            return Err(to_io(tcp::Error::Aborted));
        }
        match answer.recv_timeout(Duration::from_secs(1)) {
            Ok(Some(info)) => Ok(info),
            Ok(None) => Err(not_connected()),
            Err(RecvTimeoutError::Timeout) => Err(to_io(tcp::Error::TimedOut)),
            Err(RecvTimeoutError::Disconnected) => Err(to_io(tcp::Error::Aborted)),
        }
    }

    /// `SO_ERROR`: the pending error, cleared by reading it (the socket is dead after).
    pub fn take_error(&mut self) -> io::Result<Option<io::Error>> {
        self.pump();
        Ok(self.error.take().map(|e| {
            self.dead = true;
            to_io(e)
        }))
    }

    /// `SO_SNDBUF`: the connection's send buffer. A writer may have up to twice this written and
    /// not yet acknowledged by the peer, as Linux, which doubles the value set; unlike Linux,
    /// the value read back is the one set.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(self.sndbuf)
    }

    /// Sets `SO_SNDBUF`.
    pub fn set_send_buffer_size(&mut self, bytes: usize) -> io::Result<()> {
        let bytes = bytes.max(1);
        self.set(Opt::SendBuf(bytes))?;
        let delta = send_credit(bytes) - send_credit(self.sndbuf);
        self.shared.send_credit.fetch_add(delta, SeqCst);
        self.sndbuf = bytes;
        Ok(())
    }

    /// `SO_RCVBUF`: the connection's receive buffer and the most bytes handed to this stream
    /// and not yet read.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(self.rcvbuf)
    }

    /// Sets `SO_RCVBUF`. The window scale was fixed at the handshake: a larger buffer helps
    /// only up to 65535 << scale.
    pub fn set_recv_buffer_size(&mut self, bytes: usize) -> io::Result<()> {
        let bytes = bytes.max(1);
        self.shared.recv_limit.store(bytes, SeqCst);
        self.set(Opt::RecvBuf(bytes))?;
        self.rcvbuf = bytes;
        Ok(())
    }
}

/// Bytes copied on each step of a [`TcpStream`]'s two paths, since it was opened
/// ([`TcpStream::copies`]). Each byte written is copied once (`write_to_message`) before it
/// reaches the send buffer; each byte read three times (`into_recv_buffer`,
/// `recv_to_message`, `message_to_caller`); see the [module docs](self).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copies {
    /// Write: the caller's slices into the buffers sent to the engine.
    pub write_to_message: u64,
    /// Write: bytes copied into the connection's send buffer (none: it keeps the buffers
    /// themselves).
    pub into_send_buffer: u64,
    /// Read: received segments' payload into the connection's receive buffer.
    pub into_recv_buffer: u64,
    /// Read: the receive buffer into the buffers sent to this thread.
    pub recv_to_message: u64,
    /// Read: those buffers into the caller's slices (reads and peeks).
    pub message_to_caller: u64,
}

impl TcpStream {
    /// The bytes copied so far on this stream's paths, counted where they are copied (the
    /// connection's counts as of the engine's last turn on this socket, which precedes
    /// anything it sent this thread).
    pub fn copies(&self) -> Copies {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.shared.copies;
        Copies {
            write_to_message: c.write_to_message.load(Relaxed),
            into_send_buffer: c.into_send_buffer.load(Relaxed),
            into_recv_buffer: c.into_recv_buffer.load(Relaxed),
            recv_to_message: c.recv_to_message.load(Relaxed),
            message_to_caller: c.message_to_caller.load(Relaxed),
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, RecvFlags::default())
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_with(buf, SendFlags::default())
    }

    /// The bytes are in the stack's hands once written; there is nothing to flush.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        self.pump();
        self.engine.send(Command::Close {
            token: self.token,
            unread: self.buffered > 0,
        });
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
