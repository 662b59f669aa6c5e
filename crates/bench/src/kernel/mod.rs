//! The Linux kernel back-end: a client on non-blocking sockets and an epoll server, each either
//! busy-spinning (`epoll_wait` / `recv` with no timeout, the core never sleeps) or blocking (the
//! thread sleeps in `epoll_wait` and is woken by the kernel).
//!
//! Plain libc calls, edge-triggered epoll, `TCP_NODELAY` on every socket (as the xdp-tcp side),
//! no allocation per request. [`run_client`] is the client (`client.rs`), [`serve`] the server
//! (`server.rs`); past the open-file limit of one descriptor table both spread their sockets over
//! threads with tables of their own (`tables.rs`, [`tables_for`]). This module holds the socket
//! calls they share.

mod client;
mod server;
mod tables;

use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

pub use client::run_client;
pub use server::{serve, ServeOpts};
pub use tables::{tables_for, FDS_PER_TABLE};

/// A libc return value as a result: negative means `errno` holds the error.
pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `a` as the kernel takes it.
pub(super) fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

/// Sets an integer socket option; best effort (a failure only loses a tuning).
pub(super) fn set_int_opt(fd: RawFd, level: i32, name: i32, v: i32) {
    // SAFETY: setsockopt reads one int we own.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &v as *const i32 as *const libc::c_void,
            mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// The congestion control of every kernel socket the bench opens: CUBIC, as xdp-tcp's, and
/// the Linux default. A machine whose default is another (this VM's is BBR) would otherwise
/// compare different algorithms, and BBR paces: with the testbed's `gso_max_segs 1` every
/// segment waits for a pacing timer of its own, which held a kernel sender to ~0.4 Gbit/s on
/// this VM against either server.
pub const CONGESTION_CONTROL: &str = "cubic";

/// Sets [`CONGESTION_CONTROL`] on `fd`; a listener's choice passes to the sockets it accepts.
/// Fails loudly: a bench whose kernel rows ran another algorithm would compare the wrong thing.
pub(super) fn set_congestion_control(fd: RawFd) -> io::Result<()> {
    let name = CONGESTION_CONTROL.as_bytes();
    // SAFETY: setsockopt reads `name.len()` bytes of a slice we own.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr() as *const libc::c_void,
            name.len() as libc::socklen_t,
        )
    })
    .map(drop)
    .map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("TCP_CONGESTION {CONGESTION_CONTROL}: {e}"),
        )
    })
}

/// Closes a socket this module opened.
pub(super) fn close(fd: RawFd) {
    // SAFETY: fd is a socket this module opened and closes once.
    unsafe { libc::close(fd) };
}

/// Closes with a reset (`SO_LINGER` 0), as the xdp-tcp client ends its run: a client that
/// closed first would keep every 4-tuple in TIME-WAIT for a minute, and a later run binding
/// the same local ports would collide with them.
pub(super) fn abort(fd: RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one linger struct we own; fd is ours and closed once.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        libc::close(fd);
    }
}

/// A non-blocking socket with a connect in progress.
pub(super) fn connect_nb(target: SocketAddrV4) -> io::Result<RawFd> {
    connect_nb_from(target, None)
}

/// As [`connect_nb`], from local port `port` when given (`SO_REUSEADDR`, so one port serves
/// several server ports). The kernel's own choice searches its port range for a free 4-tuple,
/// which turns quadratic when most of the range is taken (100k connections).
pub(super) fn connect_nb_from(target: SocketAddrV4, port: Option<u16>) -> io::Result<RawFd> {
    // SAFETY: plain socket/connect calls on values we own.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    if let Err(e) = set_congestion_control(fd) {
        close(fd);
        return Err(e);
    }
    if let Some(p) = port {
        set_int_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
        let local = sockaddr(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, p));
        // SAFETY: local is a valid sockaddr_in of the given length.
        let r = unsafe {
            libc::bind(
                fd,
                &local as *const _ as *const libc::sockaddr,
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            close(fd);
            return Err(io::Error::new(e.kind(), format!("bind port {p}: {e}")));
        }
    }
    let sa = sockaddr(target);
    // SAFETY: sa is a valid sockaddr_in of the given length.
    let r = unsafe {
        libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            close(fd);
            return Err(e);
        }
    }
    Ok(fd)
}

/// Whether a non-blocking connect finished: Ok(true) connected, Ok(false) still pending.
pub(super) fn connect_done(fd: RawFd) -> io::Result<bool> {
    let mut err: i32 = 0;
    let mut len = mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: getsockopt writes one int we own.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut i32 as *mut libc::c_void,
            &mut len,
        )
    };
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    // SAFETY: sockaddr_in is plain data; getpeername writes at most `len` bytes into it.
    let mut sa: libc::sockaddr_in = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: as above.
    let r = unsafe { libc::getpeername(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) };
    Ok(r == 0)
}

/// An epoll instance, closed on drop.
pub(super) struct Epoll(RawFd);

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        Ok(Epoll(cvt(unsafe {
            libc::epoll_create1(libc::EPOLL_CLOEXEC)
        })?))
    }
    pub(super) fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: ev is a valid epoll_event for the call.
        cvt(unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
    }
    pub(super) fn wait(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: evs is a writable buffer of evs.len() events.
        let n = unsafe { libc::epoll_wait(self.0, evs.as_mut_ptr(), evs.len() as i32, timeout_ms) };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// Edge-triggered readiness for everything a connection waits on.
pub(super) const ET_ALL: u32 =
    (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Connections with a connect in flight at once while opening many.
pub(super) const CONNECT_BURST: usize = 256;
