//! Sockets as packetdrill sees them, and the calls on them with the answers Linux gives
//! (`net/ipv4/af_inet.c`, `net/ipv4/tcp.c`).
//!
//! A socket is a kernel descriptor (an eventfd, so packetdrill's own close(2) of leftovers at
//! the end works) standing for one of: a fresh socket (maybe bound), a listener (a port in the
//! host's listen table), or a connection (a handle into the host, held until close(2), so its
//! state and error stay readable after it ends). Options set before a connection exists are
//! kept and become its [`tcp::Config`] when it is created.
//!
//! Errors follow Linux: an error the connection ended with is reported once (Linux's `sk_err`):
//! by the next read, write, connect or SO_ERROR; after that reads return end of stream and
//! writes EPIPE. Calls return [`Attempt::Block`] only on a blocking socket; the driver waits and
//! calls again.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::ConnId;
use xdp_tcp::tcp::{self, KeepAlive, State};
use xdp_tcp::time::Duration;

use crate::adapter::{Adapter, Attempt, Errno};
use crate::ffi;
use crate::profile::Profile;

/// An address from a call, already checked for its family and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockAddr {
    V4(SocketAddrV4),
    /// Another family (the value of its `sa_family`).
    Family(i32),
    /// Shorter than a `sockaddr_in`.
    Short,
}

/// What the socket is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Fresh,
    Listening { port: u16 },
    Conn { id: ConnId },
}

/// Linux's `sock->state`, which decides what connect(2) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    Unconnected,
    Connecting,
    Connected,
}

/// Options as the application set them; `None` is the profile's default.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SockOpts {
    /// SO_RCVBUF as Linux reports it: twice what was asked, within Linux's bounds.
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    pub nodelay: bool,
    pub cork: bool,
    pub keepalive: bool,
    pub keepidle: Option<u32>,
    pub keepintvl: Option<u32>,
    pub keepcnt: Option<u32>,
    /// SO_LINGER's timeout when on.
    pub linger: Option<i32>,
    pub maxseg: Option<u16>,
    pub reuseaddr: bool,
}

impl SockOpts {
    /// The receive buffer in payload bytes: half of SO_RCVBUF, as Linux keeps half for overhead.
    pub fn rcvbuf_bytes(&self) -> Option<usize> {
        self.rcvbuf.map(|b| b / 2)
    }

    pub fn sndbuf_bytes(&self) -> Option<usize> {
        self.sndbuf.map(|b| b / 2)
    }

    /// Keep-alive timing from TCP_KEEPIDLE/KEEPINTVL/KEEPCNT, Linux's defaults where unset.
    pub fn keepalive_params(&self) -> KeepAlive {
        let d = KeepAlive::default();
        KeepAlive {
            idle: self
                .keepidle
                .map_or(d.idle, |s| Duration::from_secs(s.into())),
            interval: self
                .keepintvl
                .map_or(d.interval, |s| Duration::from_secs(s.into())),
            count: self.keepcnt.unwrap_or(d.count),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Socket {
    pub role: Role,
    pub bound: Option<SocketAddrV4>,
    pub nonblocking: bool,
    pub opts: SockOpts,
    pub shut_rd: bool,
    pub shut_wr: bool,
    pub link: Link,
    /// An error to report once (Linux's `sk_err`).
    pub err: Option<Errno>,
    /// The connection's fatal error has been moved into `err` already.
    pub err_taken: bool,
    /// Events seen on its connection: what edge-triggered epoll reports.
    pub generation: u64,
}

impl Socket {
    fn new(nonblocking: bool) -> Self {
        Socket {
            role: Role::Fresh,
            bound: None,
            nonblocking,
            opts: SockOpts::default(),
            shut_rd: false,
            shut_wr: false,
            link: Link::Unconnected,
            err: None,
            err_taken: false,
            generation: 0,
        }
    }

    /// The local port the socket holds, if any.
    pub fn port(&self) -> Option<u16> {
        match self.role {
            Role::Listening { port } => Some(port),
            _ => self.bound.map(|a| a.port()),
        }
    }

    /// The settings a connection of this socket starts with.
    pub fn tcp_config(&self, profile: &Profile) -> tcp::Config {
        let mut c = profile.tcp_config();
        if let Some(m) = self.opts.maxseg {
            c.mss = c.mss.min(m);
        }
        if let Some(b) = self.opts.rcvbuf_bytes() {
            // SO_RCVBUF locks the buffer on Linux: no auto-tuning, and the shift covers it alone
            c.recv_buffer = b;
            c.recv_buffer_max = None;
        }
        if let Some(b) = self.opts.sndbuf_bytes() {
            c.send_buffer = b;
        }
        c.nodelay = self.opts.nodelay;
        if self.opts.keepalive {
            c.keepalive = Some(self.opts.keepalive_params());
        }
        c
    }
}

/// The errno Linux gives for each way a connection fails.
pub(crate) fn errno_of(e: tcp::Error) -> Errno {
    xdp_tcp::api::error::errno(e)
}

/// Flags of recv(2) and send(2) the adapter acts on.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgFlags {
    pub peek: bool,
    pub dontwait: bool,
    pub more: bool,
    pub oob: bool,
}

impl MsgFlags {
    pub fn from_bits(flags: i32) -> Self {
        MsgFlags {
            peek: flags & libc::MSG_PEEK != 0,
            dontwait: flags & libc::MSG_DONTWAIT != 0,
            more: flags & libc::MSG_MORE != 0,
            oob: flags & libc::MSG_OOB != 0,
        }
    }
}

impl Adapter {
    /// The socket behind `fd`: EBADF for an unknown descriptor, ENOTSOCK for an epoll one.
    pub(crate) fn sock(&self, fd: i32) -> Result<&Socket, Errno> {
        match self.sockets.get(&fd) {
            Some(s) => Ok(s),
            None if self.epolls.contains_key(&fd) => Err(libc::ENOTSOCK),
            None => Err(libc::EBADF),
        }
    }

    pub(crate) fn sock_mut(&mut self, fd: i32) -> Result<&mut Socket, Errno> {
        if !self.sockets.contains_key(&fd) {
            return self.sock(fd).map(|_| unreachable!());
        }
        Ok(self.sockets.get_mut(&fd).expect("checked"))
    }

    /// The connection's state, if the socket has one.
    pub(crate) fn conn_state(&self, fd: i32) -> Option<State> {
        match self.sockets.get(&fd)?.role {
            Role::Conn { id } => self.host_ref()?.conn(id).map(|c| c.state()),
            _ => None,
        }
    }

    /// Moves the error the connection ended with, once, into the socket's pending error.
    pub(crate) fn sync_error(&mut self, fd: i32) {
        let Some(Role::Conn { id }) = self.sockets.get(&fd).map(|s| s.role) else {
            return;
        };
        let e = self
            .host_ref()
            .and_then(|h| h.conn(id))
            .and_then(|c| c.error());
        let s = self.sockets.get_mut(&fd).expect("checked");
        if let (Some(e), false) = (e, s.err_taken) {
            s.err = Some(errno_of(e));
            s.err_taken = true;
        }
    }

    /// The peer of the socket's connection, if it has one.
    pub fn peer(&self, fd: i32) -> Option<SocketAddrV4> {
        match self.sockets.get(&fd)?.role {
            Role::Conn { id } => self.host_ref()?.conn(id).map(|c| c.remote()),
            _ => None,
        }
    }

    pub fn socket(&mut self, domain: i32, ty: i32, protocol: i32) -> Result<i32, Errno> {
        if domain == libc::AF_INET6 {
            eprintln!(
                "xdp-tcp adapter: IPv6 is not supported (the stack is IPv4 only); \
                 run packetdrill with --ip_version=ipv4"
            );
            return Err(libc::EAFNOSUPPORT);
        }
        if domain != libc::AF_INET {
            return Err(libc::EAFNOSUPPORT);
        }
        let base = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        if base != libc::SOCK_STREAM || (protocol != 0 && protocol != libc::IPPROTO_TCP) {
            eprintln!("xdp-tcp adapter: only TCP sockets (SOCK_STREAM) are supported");
            return Err(libc::EPROTONOSUPPORT);
        }
        let fd = self.new_fd()?;
        let s = Socket::new(ty & libc::SOCK_NONBLOCK != 0);
        self.sockets.insert(fd, s);
        self.trace(format_args!("socket() = {fd}"));
        Ok(fd)
    }

    fn v4(addr: SockAddr) -> Result<SocketAddrV4, Errno> {
        match addr {
            SockAddr::V4(a) => Ok(a),
            SockAddr::Short => Err(libc::EINVAL),
            SockAddr::Family(_) => Err(libc::EAFNOSUPPORT),
        }
    }

    pub fn bind(&mut self, fd: i32, addr: SockAddr) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        let a = Self::v4(addr)?;
        if s.bound.is_some() || s.role != Role::Fresh {
            return Err(libc::EINVAL);
        }
        let reuse = s.opts.reuseaddr;
        if !a.ip().is_unspecified() {
            self.host_at(Some(*a.ip()))?;
        }
        let port = if a.port() == 0 {
            self.free_port()
        } else {
            let taken = self.sockets.iter().any(|(&other, o)| {
                other != fd
                    && o.port() == Some(a.port())
                    && !(reuse && o.opts.reuseaddr && !matches!(o.role, Role::Listening { .. }))
            });
            if taken {
                return Err(libc::EADDRINUSE);
            }
            a.port()
        };
        self.sock_mut(fd)?.bound = Some(SocketAddrV4::new(*a.ip(), port));
        Ok(())
    }

    pub fn listen(&mut self, fd: i32, backlog: i32) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        match s.role {
            Role::Listening { .. } => return Ok(()),
            Role::Conn { .. } => return Err(libc::EINVAL),
            Role::Fresh => {}
        }
        let bound = s.bound;
        let port = match bound {
            Some(a) => a.port(),
            None => self.free_port(),
        };
        let ip = bound.map(|a| *a.ip());
        // Linux's accept queue holds one more than the backlog (sk_acceptq_is_full)
        let backlog = backlog.clamp(0, 4096) as usize + 1;
        self.host_at(ip)?.listen(port, backlog);
        let s = self.sock_mut(fd)?;
        s.role = Role::Listening { port };
        s.bound = Some(SocketAddrV4::new(ip.unwrap_or(Ipv4Addr::UNSPECIFIED), port));
        Ok(())
    }

    pub fn accept(&mut self, fd: i32) -> Attempt<(i32, SocketAddrV4)> {
        let s = match self.sock(fd) {
            Ok(s) => s,
            Err(e) => return Attempt::err(e),
        };
        let Role::Listening { port } = s.role else {
            return Attempt::err(libc::EINVAL);
        };
        let (opts, nonblocking) = (s.opts, s.nonblocking);
        let Some(id) = self.host().and_then(|h| h.accept(port)) else {
            return if nonblocking {
                Attempt::err(libc::EAGAIN)
            } else {
                Attempt::Block
            };
        };
        let new = match self.new_fd() {
            Ok(new) => new,
            Err(e) => {
                self.host().expect("accepted from it").abort(id);
                return Attempt::err(e);
            }
        };
        let conn = self
            .host_ref()
            .and_then(|h| h.conn(id))
            .expect("just accepted");
        let (local, remote) = (conn.local(), conn.remote());
        let mut s = Socket::new(false);
        s.role = Role::Conn { id };
        s.link = Link::Connected;
        s.bound = Some(local);
        s.opts = opts;
        self.sockets.insert(new, s);
        self.by_conn.insert(id, new);
        self.trace(format_args!("accept({fd}) = {new} from {remote}"));
        Attempt::Done(Ok((new, remote)))
    }

    /// connect(2) as called: opens a connection from an unconnected socket, or answers for one
    /// under way. `Block` means a blocking socket waits: continue with
    /// [`Adapter::connect_wait`].
    pub fn connect(&mut self, fd: i32, addr: SockAddr) -> Attempt<()> {
        let s = match self.sock(fd) {
            Ok(s) => s,
            Err(e) => return Attempt::err(e),
        };
        let (role, link, nonblocking) = (s.role, s.link, s.nonblocking);
        let remote = match Self::v4(addr) {
            Ok(a) => a,
            Err(e) => return Attempt::err(e),
        };
        if matches!(role, Role::Listening { .. }) || link == Link::Connected {
            return Attempt::err(libc::EISCONN);
        }
        if link == Link::Connecting {
            return match self.connect_wait(fd) {
                Attempt::Block if nonblocking => Attempt::err(libc::EALREADY),
                other => other,
            };
        }
        if let Role::Conn { id } = role {
            if self.conn_state(fd).is_some_and(|st| st != State::Closed) {
                return Attempt::err(libc::EISCONN);
            }
            // the last attempt failed; a new connect(2) starts over
            self.by_conn.remove(&id);
            if let Some(h) = self.host() {
                h.close(id);
            }
        }
        match self.open(fd, remote) {
            Ok(()) if nonblocking => Attempt::err(libc::EINPROGRESS),
            Ok(()) => self.connect_wait(fd),
            Err(e) => Attempt::err(e),
        }
    }

    /// Starts the active open of `fd` to `remote`.
    fn open(&mut self, fd: i32, remote: SocketAddrV4) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        let cfg = s.tcp_config(&self.profile);
        let (bound, opts) = (s.bound, s.opts);
        let now = self.now();
        let host = self.host_at(bound.map(|a| *a.ip()))?;
        host.set_tcp_config(cfg);
        let id = match bound.map(|a| a.port()) {
            Some(port) => host
                .connect_from_port(now, port, remote)
                .ok_or(libc::EADDRINUSE)?,
            None => host.connect(now, remote).map_err(|_| libc::EADDRNOTAVAIL)?,
        };
        let window = self
            .profile
            .initial_window(opts.rcvbuf_bytes(), cfg.mss, false);
        let host = self.host().expect("connected on it");
        let local = host
            .with_conn(id, |c| {
                if let Some(w) = window {
                    c.set_recv_capacity(w);
                }
                if opts.cork {
                    c.set_cork(now, true);
                }
                c.local()
            })
            .expect("just opened");
        let s = self.sock_mut(fd)?;
        s.role = Role::Conn { id };
        s.link = Link::Connecting;
        s.bound = Some(local);
        s.err = None;
        s.err_taken = false;
        self.by_conn.insert(id, fd);
        self.trace(format_args!("connect({fd}) to {remote} from {local}"));
        self.flush();
        Ok(())
    }

    /// Whether a connection under way has finished: `Block` while the handshake runs, then
    /// `Ok` once established or the error it failed with.
    pub fn connect_wait(&mut self, fd: i32) -> Attempt<()> {
        self.sync_error(fd);
        let Some(state) = self.conn_state(fd) else {
            return Attempt::err(libc::EBADF);
        };
        let s = self.sockets.get_mut(&fd).expect("has a connection");
        match state {
            State::SynSent | State::SynReceived => Attempt::Block,
            State::Closed => {
                s.link = Link::Unconnected;
                Attempt::err(s.err.take().unwrap_or(libc::ECONNABORTED))
            }
            _ => {
                s.link = Link::Connected;
                Attempt::Done(Ok(()))
            }
        }
    }

    /// recv(2) and its relatives: into `buf`, consuming unless `flags.peek`.
    pub fn recv(&mut self, fd: i32, buf: &mut [u8], flags: MsgFlags) -> Attempt<usize> {
        let s = match self.sock(fd) {
            Ok(s) => s,
            Err(e) => return Attempt::err(e),
        };
        let Role::Conn { id } = s.role else {
            return Attempt::err(libc::ENOTCONN);
        };
        if flags.oob {
            return Attempt::err(libc::EINVAL);
        }
        let nonblocking = s.nonblocking || flags.dontwait;
        self.sync_error(fd);
        let host = self.host().expect("a connection implies a host");
        let (queued, eof, state) = host
            .conn(id)
            .map(|c| (c.recv_queue(), c.at_eof(), c.state()))
            .expect("held until close");
        if queued > 0 && !buf.is_empty() {
            let r = host.with_conn(id, |c| if flags.peek { c.peek(buf) } else { c.recv(buf) });
            self.flush();
            return Attempt::Done(r.expect("held").map_err(errno_of));
        }
        let s = self.sockets.get_mut(&fd).expect("checked");
        if let Some(e) = s.err.take() {
            return Attempt::err(e);
        }
        if buf.is_empty() || eof || s.shut_rd {
            return Attempt::Done(Ok(0));
        }
        match state {
            State::Closed if s.err_taken || s.link == Link::Connected => Attempt::Done(Ok(0)),
            State::Closed => Attempt::err(libc::ENOTCONN),
            _ if nonblocking => Attempt::err(libc::EAGAIN),
            _ => Attempt::Block,
        }
    }

    /// send(2) and its relatives: as much of `data` as the send buffer takes.
    pub fn send(&mut self, fd: i32, data: &[u8], flags: MsgFlags) -> Attempt<usize> {
        let s = match self.sock(fd) {
            Ok(s) => s,
            Err(e) => return Attempt::err(e),
        };
        let Role::Conn { id } = s.role else {
            return Attempt::err(libc::EPIPE);
        };
        let nonblocking = s.nonblocking || flags.dontwait;
        let corked_by_option = s.opts.cork;
        self.sync_error(fd);
        let s = self.sockets.get_mut(&fd).expect("checked");
        if let Some(e) = s.err.take() {
            return Attempt::err(e);
        }
        if s.shut_wr {
            return Attempt::err(libc::EPIPE);
        }
        let now = self.now();
        let host = self.host().expect("a connection implies a host");
        let state = host.conn(id).map(|c| c.state()).expect("held until close");
        match state {
            State::SynSent | State::SynReceived if nonblocking => {
                return Attempt::err(libc::EAGAIN)
            }
            State::SynSent | State::SynReceived => return Attempt::Block,
            State::Established | State::CloseWait => {}
            _ => return Attempt::err(libc::EPIPE),
        }
        if data.is_empty() {
            return Attempt::Done(Ok(0));
        }
        let r = host
            .with_conn(id, |c| {
                if flags.more {
                    c.set_cork(now, true);
                }
                let r = c.send(data);
                if !flags.more && !corked_by_option && c.is_corked() {
                    // a write without MSG_MORE ends the cork an earlier MSG_MORE began
                    c.set_cork(now, false);
                }
                r
            })
            .expect("held until close");
        self.flush();
        match r {
            Ok(n) => Attempt::Done(Ok(n)),
            Err(tcp::Error::WouldBlock) if nonblocking => Attempt::err(libc::EAGAIN),
            Err(tcp::Error::WouldBlock) => Attempt::Block,
            Err(e) => Attempt::err(errno_of(e)),
        }
    }

    pub fn close(&mut self, fd: i32) -> Result<(), Errno> {
        if self.epolls.remove(&fd).is_some() {
            ffi::close_fd(fd);
            return Ok(());
        }
        let s = self.sockets.remove(&fd).ok_or(libc::EBADF)?;
        for ep in self.epolls.values_mut() {
            ep.forget(fd);
        }
        ffi::close_fd(fd);
        if let Role::Conn { id } = s.role {
            self.by_conn.remove(&id);
        }
        let Some(host) = self.host() else {
            return Ok(());
        };
        match s.role {
            Role::Fresh => {}
            Role::Listening { port } => host.unlisten(port),
            Role::Conn { id } => {
                let unread = host.conn(id).is_some_and(|c| c.recv_queue() > 0);
                // Linux resets instead of closing when data was left unread (RFC 2525 2.17)
                // or SO_LINGER is on with a zero timeout
                if unread || s.opts.linger == Some(0) {
                    host.abort(id);
                } else {
                    host.close(id);
                }
            }
        }
        self.trace(format_args!("close({fd})"));
        self.flush();
        Ok(())
    }

    pub fn shutdown(&mut self, fd: i32, how: i32) -> Result<(), Errno> {
        let s = self.sock(fd)?;
        let (rd, wr) = match how {
            libc::SHUT_RD => (true, false),
            libc::SHUT_WR => (false, true),
            libc::SHUT_RDWR => (true, true),
            _ => return Err(libc::EINVAL),
        };
        let role = s.role;
        let state = self.conn_state(fd);
        match role {
            Role::Fresh => {
                let s = self.sock_mut(fd)?;
                s.shut_rd |= rd;
                s.shut_wr |= wr;
                return Err(libc::ENOTCONN);
            }
            Role::Listening { port } => {
                if rd {
                    // Linux disconnects a listener shut down for reading: it stops listening
                    if let Some(h) = self.host() {
                        h.unlisten(port);
                    }
                    let s = self.sock_mut(fd)?;
                    s.role = Role::Fresh;
                }
                self.flush();
                return Ok(());
            }
            Role::Conn { id } => {
                let host = self.host().expect("a connection implies a host");
                match state {
                    Some(State::Closed) | None => {
                        let s = self.sock_mut(fd)?;
                        s.shut_rd |= rd;
                        s.shut_wr |= wr;
                        return Err(libc::ENOTCONN);
                    }
                    Some(State::SynSent) => {
                        // Linux disconnects a connection still opening
                        host.with_conn(id, |c| c.close());
                    }
                    _ => {
                        host.with_conn(id, |c| {
                            if rd {
                                c.shutdown_read();
                            }
                            if wr {
                                c.close();
                            }
                        });
                    }
                }
            }
        }
        let s = self.sock_mut(fd)?;
        s.shut_rd |= rd;
        s.shut_wr |= wr;
        self.flush();
        Ok(())
    }

    /// fcntl(2): F_GETFL, F_SETFL (O_NONBLOCK), F_GETFD, F_SETFD.
    pub fn fcntl(&mut self, fd: i32, cmd: i32, arg: i64) -> Result<i32, Errno> {
        if self.epolls.contains_key(&fd) {
            return match cmd {
                libc::F_GETFL => Ok(libc::O_RDWR),
                libc::F_GETFD | libc::F_SETFD | libc::F_SETFL => Ok(0),
                _ => Err(libc::EINVAL),
            };
        }
        let s = self.sock_mut(fd)?;
        match cmd {
            libc::F_GETFL => Ok(libc::O_RDWR | if s.nonblocking { libc::O_NONBLOCK } else { 0 }),
            libc::F_SETFL => {
                s.nonblocking = arg & i64::from(libc::O_NONBLOCK) != 0;
                Ok(0)
            }
            libc::F_GETFD | libc::F_SETFD => Ok(0),
            _ => Err(libc::EINVAL),
        }
    }

    /// ioctl(2): SIOCINQ (FIONREAD), SIOCOUTQ, SIOCOUTQNSD, FIONBIO. `arg` is the integer the
    /// call points at (FIONBIO reads it); the result is the integer to write back.
    pub fn ioctl(&mut self, fd: i32, request: u64, arg: i32) -> Result<i32, Errno> {
        let s = self.sock(fd)?;
        if request == libc::FIONBIO {
            self.sock_mut(fd)?.nonblocking = arg != 0;
            return Ok(arg);
        }
        let role = s.role;
        let conn = match role {
            Role::Conn { id } => self.host_ref().and_then(|h| h.conn(id)),
            _ => None,
        };
        match request {
            libc::FIONREAD | libc::TIOCOUTQ | SIOCOUTQNSD => {
                if matches!(role, Role::Listening { .. }) {
                    return Err(libc::EINVAL);
                }
                let Some(c) = conn else { return Ok(0) };
                let n = match request {
                    libc::FIONREAD => c.recv_queue(),
                    libc::TIOCOUTQ => c.send_queue(),
                    _ => c.send_queue().saturating_sub(c.bytes_in_flight()),
                };
                Ok(n.min(i32::MAX as usize) as i32)
            }
            _ => Err(libc::ENOTTY),
        }
    }
}

/// SIOCOUTQNSD: bytes queued and not yet sent.
const SIOCOUTQNSD: u64 = 0x894B;
