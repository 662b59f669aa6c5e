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
//! - **read: two, or three.** In-order bytes with nothing unread before them, as far as the
//!   reader's receive credit goes, are copied from the received frame itself into a message
//!   buffer for this thread (zero-copy receive: the engine lends the frame's payload before
//!   any copy), and [`TcpStream::read`] copies them into the caller's slice. Other bytes (out of
//!   order, behind unread ones, past the credit) are first copied into the connection's
//!   receive buffer (the frame goes back to the kernel at once) and from there into a message
//!   buffer (the receive buffer is a ring the engine keeps writing into): three.
//!
//! [`TcpStream::copies`] counts every one of them. A [`super::Handler`] avoids the thread hop
//! and its copies: one each way.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::RecvTimeoutError;

use super::error::{not_connected, to_io};
use super::shared::{send_credit, Command, Ends, Opt, Shared, SockDefaults};
use super::sock::Inner;
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
/// A TCP connection of a [`Stack`], used from any number of threads, as `std::net::TcpStream`:
/// every method takes `&self`, `&TcpStream` implements [`Read`] and [`Write`], and
/// [`TcpStream::try_clone`] and [`TcpStream::into_split`] give further handles to the same
/// connection, so one thread can block in a read while another blocks in a write.
///
/// Reads and writes go through channels to the engine core that owns the connection; see
/// [`crate::api`] for the flow control that bounds them. Errors carry Linux's errno
/// ([`crate::api::error`]). Dropping the last handle closes the connection like `close(2)`:
/// FIN after the bytes written, or RST when received bytes were never read; `SO_LINGER`
/// ([`TcpStream::set_linger`]) as in Linux.
///
/// For `poll`, `epoll` or mio, [`TcpStream::readiness_fd`] (also [`AsRawFd`]) is an eventfd
/// that becomes readable when a call that returned `EAGAIN` in non-blocking mode may succeed.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use xdp_tcp::api::{Stack, TcpStream};
///
/// # fn run(stack: &Stack) -> std::io::Result<()> {
/// let s = TcpStream::connect(stack, "10.0.0.2:7")?;
/// s.set_nodelay(true)?;
/// s.set_read_timeout(Some(std::time::Duration::from_secs(1)))?;
/// let (mut rd, mut wr) = s.into_split();
/// let writer = std::thread::spawn(move || wr.write_all(b"ping"));
/// let mut buf = [0; 4];
/// rd.read_exact(&mut buf)?;
/// writer.join().unwrap()?;
/// # Ok(()) }
/// ```
pub struct TcpStream {
    inner: Arc<Inner>,
}

/// The IPv4 addresses of `addr`, as `std::net` resolves them (`"10.0.0.1:80"`, a
/// `SocketAddr`, a `(host, port)` pair); IPv6 ones are skipped.
pub(crate) fn v4_addrs(addr: impl ToSocketAddrs) -> io::Result<Vec<SocketAddrV4>> {
    let v4: Vec<SocketAddrV4> = addr
        .to_socket_addrs()?
        .filter_map(|a| match a {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        })
        .collect();
    if v4.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no IPv4 address to connect to (the stack speaks IPv4 only)",
        ));
    }
    Ok(v4)
}

impl TcpStream {
    /// The stream over `ends`, which it owns from now on: dropping it closes the connection.
    pub(crate) fn new(
        ends: Ends,
        local: SocketAddrV4,
        peer: SocketAddrV4,
        d: SockDefaults,
    ) -> Self {
        TcpStream {
            inner: Arc::new(Inner::new(ends, local, peer, d)),
        }
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Opens a connection to `addr` (anything `std::net` resolves: `"10.0.0.2:7"`, a
    /// `SocketAddr`, `(Ipv4Addr, u16)`; each IPv4 address in turn, as std) and blocks until it
    /// is established or fails (`ECONNREFUSED` when the peer answers with RST, `ETIMEDOUT`
    /// when SYNs go unanswered, `EHOSTUNREACH` on an ICMP error).
    ///
    /// Connections spread over the engines round-robin; each picks a source port whose
    /// return traffic lands on its own queue (see [`crate::rss`]), or is forwarded to it.
    pub fn connect(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        Self::connect_each(stack, None, addr, None)
    }

    /// [`TcpStream::connect`] on engine `engine` (`0..Stack::engine_count()`).
    pub fn connect_on(
        stack: &Stack,
        engine: usize,
        addr: impl ToSocketAddrs,
    ) -> io::Result<TcpStream> {
        Self::connect_each(stack, Some(engine), addr, None)
    }

    /// [`TcpStream::connect`] giving up after `timeout` for each address (`ETIMEDOUT`).
    pub fn connect_timeout(
        stack: &Stack,
        addr: impl ToSocketAddrs,
        timeout: Duration,
    ) -> io::Result<TcpStream> {
        Self::connect_each(stack, None, addr, Some(timeout))
    }

    fn connect_each(
        stack: &Stack,
        engine: Option<usize>,
        addr: impl ToSocketAddrs,
        timeout: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let mut last = None;
        for a in v4_addrs(addr)? {
            let e = engine.unwrap_or_else(|| stack.pick_engine());
            match Self::start_connect(stack, e, a).and_then(|s| {
                s.inner
                    .wait_connected(timeout.map(|t| Instant::now() + t))
                    .map(|()| s)
            }) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| to_io(tcp::Error::Aborted)))
    }

    /// Sends the engine the active open to `remote`; the stream exists before the engine
    /// hears of it, so that giving up (a time-out, a dropped future) closes it.
    pub(crate) fn start_connect(
        stack: &Stack,
        engine: usize,
        remote: SocketAddrV4,
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
        let s = TcpStream::new(ends, unspecified, remote, d);
        if !engine.send(Command::Connect {
            token,
            remote,
            tx,
            shared,
        }) {
            s.inner.status().dead = true;
            return Err(to_io(tcp::Error::Aborted));
        }
        Ok(s)
    }

    /// Another handle to the same connection (`dup(2)`): reads and writes through either
    /// share its buffers and settings; the connection closes when the last one is dropped.
    /// Never fails; the `Result` is std's signature.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Arc::clone(&self.inner),
        })
    }

    /// A reading and a writing handle, to move to two threads (or tasks): the connection
    /// closes when both are dropped. Dropping the writing half does not shut down writing;
    /// call [`OwnedWriteHalf::shutdown`] for the FIN.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let other = TcpStream {
            inner: Arc::clone(&self.inner),
        };
        (OwnedReadHalf(self), OwnedWriteHalf(other))
    }

    /// `recv(2)` with flags. `Ok(0)` is end of stream: the peer's FIN, our
    /// [`Shutdown::Read`], or after an error was reported once.
    pub fn recv_with(&self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        self.inner
            .recv(buf, flags.peek, flags.wait_all, flags.dont_wait)
    }

    /// Copies received bytes without consuming them (`MSG_PEEK`); blocks like `read`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
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
    pub fn send_with(&self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        self.inner.send(data, flags.more)
    }

    /// `shutdown(2)`. `Write` sends FIN after the bytes already written (later writes get
    /// `EPIPE`); `Read` drops what is buffered and makes reads return `Ok(0)`; `Both` does
    /// both. `ENOTCONN` once the connection is gone.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.shutdown(how)
    }

    /// `TCP_NODELAY`: turn Nagle's algorithm off.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.set(Opt::NoDelay(nodelay))?;
        self.inner.opts().nodelay = nodelay;
        Ok(())
    }

    /// The `TCP_NODELAY` setting.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(self.inner.opts().nodelay)
    }

    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT`; `None` turns it off.
    /// An idle peer that answers none of `count` probes makes the next call fail with
    /// `ETIMEDOUT`.
    pub fn set_keepalive(&self, ka: Option<KeepAlive>) -> io::Result<()> {
        self.inner.set(Opt::KeepAlive(ka))?;
        self.inner.opts().keepalive = ka;
        Ok(())
    }

    /// The keep-alive setting.
    pub fn keepalive(&self) -> io::Result<Option<KeepAlive>> {
        Ok(self.inner.opts().keepalive)
    }

    /// `IP_TTL`: the time-to-live of this connection's packets (1 to 255; `EINVAL` otherwise).
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let t = u8::try_from(ttl)
            .ok()
            .filter(|&t| t > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.inner.set(Opt::Ttl(t))?;
        self.inner.opts().ttl = ttl;
        Ok(())
    }

    /// The `IP_TTL` setting (64 unless set).
    pub fn ttl(&self) -> io::Result<u32> {
        Ok(self.inner.opts().ttl)
    }

    /// `SO_LINGER`, as Linux: `None` (the default) closes in the background, FIN after the
    /// bytes written; `Some(0)` resets the connection on close, dropping what is unsent;
    /// `Some(t)` makes the drop of the last handle block until everything sent, FIN included,
    /// is acknowledged, at most `t`, after which the close goes on in the background.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.inner.opts().linger = linger;
        Ok(())
    }

    /// The `SO_LINGER` setting.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts().linger)
    }

    /// `SO_RCVTIMEO`: a read waiting longer fails with `EAGAIN` (`ErrorKind::WouldBlock`, as
    /// std on Linux). `Some(0)` is refused with `EINVAL`, as std does.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.inner.opts().read_timeout = t;
        Ok(())
    }

    /// `SO_SNDTIMEO`: a write waiting longer for buffer space fails with `EAGAIN`.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        if t == Some(Duration::ZERO) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        self.inner.opts().write_timeout = t;
        Ok(())
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts().read_timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.inner.opts().write_timeout)
    }

    /// Non-blocking mode (`O_NONBLOCK`, shared by every handle): calls that would wait return
    /// `EAGAIN` instead; wait for [`TcpStream::readiness_fd`] to retry.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.inner.nonblocking.store(nonblocking, SeqCst);
        Ok(())
    }

    /// A descriptor to `poll`/`epoll`/mio for this stream: an eventfd (close-on-exec), made on
    /// the first call, that is readable when a read or write that returned `EAGAIN` may
    /// succeed (bytes, end of stream, an error, send credit). Readable at first. Do not read
    /// it yourself: the stream empties it when a call would block, before looking once more,
    /// so with edge-triggered `epoll` retry until `EAGAIN` as with a socket.
    pub fn readiness_fd(&self) -> io::Result<RawFd> {
        self.inner.shared.ready.fd()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.inner.peer))
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner
            .local
            .get()
            .map(|a| SocketAddr::V4(*a))
            .ok_or_else(not_connected)
    }

    /// The connection's `tcp_info`-like snapshot: state, RTT, RTO, cwnd, ssthresh, bytes
    /// sent, acknowledged and received, retransmissions, reordering, delivery rate (the same
    /// as [`TcpStream::tcp_info`]).
    pub fn info(&self) -> io::Result<tcp::TcpInfo> {
        self.tcp_info()
    }

    /// `TCP_INFO`: a snapshot of the connection from its engine (state, RTT and RTO, windows,
    /// bytes in flight, counters). As in Linux, a reset connection reports state CLOSED until
    /// the stream is dropped. Waits for the engine's answer, at most a second (`ETIMEDOUT`);
    /// `ENOTCONN` if the engine no longer has the connection (the stack shut it down).
    pub fn tcp_info(&self) -> io::Result<tcp::TcpInfo> {
        let (reply, answer) = crossbeam::channel::bounded(1);
        let token = self.inner.token;
        if !self.inner.engine.send(Command::Info { token, reply }) {
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
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        Ok(self.inner.take_error())
    }

    /// `SO_SNDBUF`: the connection's send buffer. A writer may have up to twice this written and
    /// not yet acknowledged by the peer, as Linux, which doubles the value set; unlike Linux,
    /// the value read back is the one set.
    pub fn send_buffer_size(&self) -> io::Result<usize> {
        Ok(self.inner.opts().sndbuf)
    }

    /// Sets `SO_SNDBUF`.
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let bytes = bytes.max(1);
        self.inner.set(Opt::SendBuf(bytes))?;
        let mut o = self.inner.opts();
        let delta = send_credit(bytes) - send_credit(o.sndbuf);
        self.inner.shared.send_credit.fetch_add(delta, SeqCst);
        o.sndbuf = bytes;
        drop(o);
        if delta > 0 {
            self.inner.shared.poke_writer();
        }
        Ok(())
    }

    /// `SO_RCVBUF`: the connection's receive buffer and the most bytes handed to this stream
    /// and not yet read.
    pub fn recv_buffer_size(&self) -> io::Result<usize> {
        Ok(self.inner.opts().rcvbuf)
    }

    /// Sets `SO_RCVBUF`. The window scale was fixed at the handshake: a larger buffer helps
    /// only up to 65535 << scale.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        let bytes = bytes.max(1);
        self.inner.shared.recv_limit.store(bytes, SeqCst);
        self.inner.set(Opt::RecvBuf(bytes))?;
        self.inner.opts().rcvbuf = bytes;
        Ok(())
    }
}

impl AsRawFd for TcpStream {
    /// [`TcpStream::readiness_fd`].
    ///
    /// # Panics
    /// When the eventfd cannot be made (`EMFILE`); call `readiness_fd` to handle that.
    fn as_raw_fd(&self) -> RawFd {
        self.readiness_fd()
            .expect("eventfd for the stream's readiness")
    }
}

/// The reading half of a [`TcpStream`] ([`TcpStream::into_split`]).
#[derive(Debug)]
pub struct OwnedReadHalf(TcpStream);

/// The writing half of a [`TcpStream`] ([`TcpStream::into_split`]).
#[derive(Debug)]
pub struct OwnedWriteHalf(TcpStream);

impl OwnedReadHalf {
    /// The whole stream, for its settings and addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }

    /// [`TcpStream::peek`].
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.peek(buf)
    }

    /// [`TcpStream::recv_with`].
    pub fn recv_with(&self, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        self.0.recv_with(buf, flags)
    }
}

impl OwnedWriteHalf {
    /// The whole stream, for its settings and addresses.
    pub fn stream(&self) -> &TcpStream {
        &self.0
    }

    /// Shuts down writing: FIN after the bytes written.
    pub fn shutdown(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }

    /// [`TcpStream::send_with`].
    pub fn send_with(&self, data: &[u8], flags: SendFlags) -> io::Result<usize> {
        self.0.send_with(data, flags)
    }
}

impl Read for OwnedReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.0).read(buf)
    }
}

impl Write for OwnedWriteHalf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes copied on each step of a [`TcpStream`]'s two paths, since it was opened
/// ([`TcpStream::copies`]). Each byte written is copied once (`write_to_message`) before it
/// reaches the send buffer; each byte read twice when it was lent from the received frame
/// (`frame_to_message`, `message_to_caller`: zero-copy receive, for in-order bytes with nothing
/// unread before them and receive credit left), three times otherwise (`into_recv_buffer`,
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
    /// Read: received frames' payload, lent in place, into the buffers sent to this thread
    /// (bytes that never entered the receive buffer: two copies per byte read instead of
    /// three).
    pub frame_to_message: u64,
    /// Read: those buffers into the caller's slices (reads and peeks).
    pub message_to_caller: u64,
}

impl TcpStream {
    /// The bytes copied so far on this stream's paths, counted where they are copied (the
    /// connection's counts as of the engine's last turn on this socket, which precedes
    /// anything it sent this thread).
    pub fn copies(&self) -> Copies {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.inner.shared.copies;
        Copies {
            write_to_message: c.write_to_message.load(Relaxed),
            into_send_buffer: c.into_send_buffer.load(Relaxed),
            into_recv_buffer: c.into_recv_buffer.load(Relaxed),
            recv_to_message: c.recv_to_message.load(Relaxed),
            frame_to_message: c.frame_to_message.load(Relaxed),
            message_to_caller: c.message_to_caller.load(Relaxed),
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_with(buf, RecvFlags::default())
    }
}

impl Read for &TcpStream {
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

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.send_with(buf, SendFlags::default())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.inner.local.get())
            .field("peer", &self.inner.peer)
            .finish_non_exhaustive()
    }
}
