//! The Linux kernel back-end: a client on non-blocking sockets and an epoll server, each either
//! busy-spinning (`epoll_wait` / `recv` with no timeout, the core never sleeps) or blocking (the
//! thread sleeps in `epoll_wait` and is woken by the kernel).
//!
//! Plain libc calls, edge-triggered epoll, `TCP_NODELAY` on every socket (as the xdp-tcp side),
//! no allocation per request.

use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::driver::{Clock, ConnState, Driver};
use super::sys::{kernel_socket_memory, CpuMark};
use super::{LoadResult, Marks, Phase, RunConfig, ServeMode, ServerReport, Workload};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut s: libc::sockaddr_in = unsafe { mem::zeroed() };
    s.sin_family = libc::AF_INET as libc::sa_family_t;
    s.sin_port = a.port().to_be();
    s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    s
}

fn set_int_opt(fd: RawFd, level: i32, name: i32, v: i32) {
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

fn close(fd: RawFd) {
    // SAFETY: fd is a socket this module opened and closes once.
    unsafe { libc::close(fd) };
}

/// Closes with a reset (`SO_LINGER` 0), as the xdp-tcp client ends its run: a client that
/// closed first would keep every 4-tuple in TIME-WAIT for a minute, and a later run binding
/// the same local ports would collide with them.
fn abort(fd: RawFd) {
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
fn connect_nb(target: SocketAddrV4) -> io::Result<RawFd> {
    connect_nb_from(target, None)
}

/// As [`connect_nb`], from local port `port` when given (`SO_REUSEADDR`, so one port serves
/// several server ports). The kernel's own choice searches its port range for a free 4-tuple,
/// which turns quadratic when most of the range is taken (100k connections).
fn connect_nb_from(target: SocketAddrV4, port: Option<u16>) -> io::Result<RawFd> {
    // SAFETY: plain socket/connect calls on values we own.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
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
fn connect_done(fd: RawFd) -> io::Result<bool> {
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

struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        Ok(Epoll(cvt(unsafe {
            libc::epoll_create1(libc::EPOLL_CLOEXEC)
        })?))
    }
    fn add(&self, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: ev is a valid epoll_event for the call.
        cvt(unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
    }
    fn wait(&self, evs: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
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

const ET_ALL: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Connections with a connect in flight at once while opening many.
const CONNECT_BURST: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Unused,
    Connecting,
    Open,
    /// Churn: the response came, waiting for the server's FIN.
    Draining,
}

struct KConn {
    fd: RawFd,
    st: St,
    opened: u64,
    req: ConnState,
}

/// Runs one client workload on kernel sockets in the calling thread (already pinned and in its
/// namespace). `spin`: never sleep.
pub fn run_client(cfg: &RunConfig, spin: bool) -> io::Result<LoadResult> {
    super::sys::raise_nofile();
    if let Workload::Idle { idle, active, .. } = cfg.workload {
        let tables = tables_for(idle + active);
        if tables > 1 {
            return run_client_with_holders(cfg, spin, tables);
        }
    }
    let clock = Clock::new();
    let mut d = Driver::new(cfg);
    let churn = matches!(cfg.workload, Workload::Churn { .. });
    let upload = matches!(cfg.workload, Workload::Bulk { upload: true, .. });
    let n = cfg.workload.conns();
    let ep = Epoll::new()?;
    let mut conns: Vec<KConn> = (0..n)
        .map(|_| KConn {
            fd: -1,
            st: St::Unused,
            opened: 0,
            req: ConnState::default(),
        })
        .collect();
    let mut buf = vec![0u8; 256 * 1024];
    let zeros = vec![0u8; 256 * 1024];
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut next_open = 0usize;
    let mut connecting = 0usize;
    let mut established = 0usize;
    let mut ready_at: Option<u64> = None;
    let setup_limit = clock.now() + 30_000_000_000;
    // One connection, spinning: recv on the socket directly, as a latency-minded client does.
    let direct = spin && n == 1 && !churn;
    let mut woke: Vec<usize> = Vec::new();
    let mut result: io::Result<()> = Ok(());

    let opened = std::cell::Cell::new(0u64);
    let open = |k: usize, conns: &mut Vec<KConn>, now: u64| -> io::Result<()> {
        let fd = connect_nb(cfg.workload.target_of(cfg.target, opened.get()))?;
        opened.set(opened.get() + 1);
        ep.add(fd, ET_ALL, k as u64)?;
        conns[k] = KConn {
            fd,
            st: St::Connecting,
            opened: now,
            req: ConnState::default(),
        };
        Ok(())
    };

    'run: loop {
        let now = clock.now();
        // Open connections, a burst at a time.
        while next_open < n && connecting < CONNECT_BURST && !d.started() {
            if let Err(e) = open(next_open, &mut conns, now) {
                result = Err(e);
                break 'run;
            }
            next_open += 1;
            connecting += 1;
        }
        if churn && !d.started() {
            d.start(now);
        }
        if !d.started() {
            if established == n {
                match ready_at {
                    None => {
                        cfg.mark(Phase::IdleReady);
                        // Give a server in this process time to sample its idle memory.
                        let settle = if matches!(cfg.workload, Workload::Idle { .. }) {
                            200_000_000
                        } else {
                            0
                        };
                        ready_at = Some(now + settle);
                    }
                    Some(t) if now >= t => {
                        d.start(now);
                        if upload {
                            woke.extend(0..n);
                        }
                    }
                    Some(_) => {}
                }
            } else if now > setup_limit {
                result = Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("only {established} of {n} connections established in 30 s"),
                ));
                break 'run;
            }
        }
        if let Some(p) = d.phase_change(now) {
            cfg.mark(p);
        }
        if d.finished(now) {
            break;
        }
        d.maybe_progress(now);

        // Wait for (or poll) readiness.
        let nev = if direct && d.started() {
            woke.push(0);
            0
        } else {
            let timeout = if spin {
                0
            } else {
                match d.next_due() {
                    Some(t) if d.started() => ((t.saturating_sub(now)) / 1_000_000) as i32,
                    _ => 10,
                }
            };
            ep.wait(&mut evs, timeout)
        };
        for e in &evs[..nev] {
            woke.push(e.u64 as usize);
        }
        let now = clock.now();
        // Open loop: a connection given a request needs a write; one whose earlier write was
        // short gets EPOLLOUT when there is room again.
        d.tick(now, |k, t, size| {
            conns[k].req.push(t, size);
            woke.push(k);
        });
        while let Some(k) = woke.pop() {
            let c = &mut conns[k];
            match c.st {
                St::Unused => continue,
                St::Connecting => match connect_done(c.fd) {
                    Ok(false) => continue,
                    Ok(true) => {
                        c.st = St::Open;
                        connecting -= 1;
                        established += 1;
                        let t = if churn { c.opened } else { now };
                        d.connected(k, &mut c.req, t);
                    }
                    Err(e) => {
                        d.errors += 1;
                        close(c.fd);
                        c.st = St::Unused;
                        connecting -= 1;
                        if !churn {
                            result = Err(io::Error::new(
                                e.kind(),
                                format!("connect to {}: {e}", cfg.target),
                            ));
                            break 'run;
                        }
                        if !d.finished(now) {
                            if let Err(e) = open(k, &mut conns, now) {
                                result = Err(e);
                                break 'run;
                            }
                            connecting += 1;
                        }
                        continue;
                    }
                },
                St::Open | St::Draining => {}
            }
            let c = &mut conns[k];
            // Read everything there is.
            let mut eof = false;
            let mut failed = false;
            loop {
                // SAFETY: buf is writable for buf.len() bytes.
                let r = unsafe {
                    libc::recv(
                        c.fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    let t = clock.now();
                    if d.received(&mut c.req, r as usize, t) && churn {
                        c.st = St::Draining;
                    }
                } else if r == 0 {
                    eof = true;
                    break;
                } else {
                    let e = io::Error::last_os_error().raw_os_error();
                    if e != Some(libc::EAGAIN) && e != Some(libc::EINTR) {
                        failed = true;
                    }
                    break;
                }
            }
            // Write what is due.
            while !failed && (c.req.to_send > 0 || (upload && d.started())) {
                let len = if upload {
                    zeros.len()
                } else {
                    c.req.to_send.min(zeros.len())
                };
                // SAFETY: zeros is readable for len bytes.
                let r = unsafe {
                    libc::send(
                        c.fd,
                        zeros.as_ptr() as *const libc::c_void,
                        len,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if r > 0 {
                    if upload {
                        d.wrote(r as usize, clock.now());
                    } else {
                        c.req.to_send -= r as usize;
                    }
                } else {
                    let e = io::Error::last_os_error().raw_os_error();
                    if e != Some(libc::EAGAIN) && e != Some(libc::EINTR) {
                        failed = true;
                    }
                    break;
                }
            }
            if eof || failed {
                let clean = churn && eof && c.st == St::Draining;
                if !clean {
                    d.errors += 1;
                }
                d.disconnected(k, &mut c.req);
                close(c.fd);
                c.st = St::Unused;
                if churn && !d.finished(now) {
                    if let Err(e) = open(k, &mut conns, clock.now()) {
                        result = Err(e);
                        break 'run;
                    }
                    connecting += 1;
                } else if !churn {
                    result = Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the server closed a connection",
                    ));
                    break 'run;
                }
            }
        }
    }
    cfg.mark(Phase::Done);
    for c in &conns {
        if c.st != St::Unused {
            abort(c.fd);
        }
    }
    result?;
    Ok(d.result(if spin { "kernel-spin" } else { "kernel-block" }))
}

/// An idle workload with more connections than one descriptor table takes: `tables` threads,
/// each with a table of its own, open and hold the idle connections (the same way and to the
/// same server ports as [`run_client`] would), then this thread runs the active ones.
fn run_client_with_holders(cfg: &RunConfig, spin: bool, tables: usize) -> io::Result<LoadResult> {
    let Workload::Idle {
        idle,
        active,
        size,
        rate,
        ports,
    } = cfg.workload
    else {
        unreachable!("only idle workloads have holders");
    };
    let established = std::sync::atomic::AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let per = idle.div_ceil(tables);
    std::thread::scope(|sc| -> io::Result<LoadResult> {
        let holders: Vec<_> = (0..tables)
            .map(|i| {
                let range = (i * per).min(idle)..((i + 1) * per).min(idle);
                let (established, failed, stop) = (&established, &failed, &stop);
                std::thread::Builder::new()
                    .name(format!("kidle-{i}"))
                    .spawn_scoped(sc, move || {
                        let r = hold_idle(cfg, range, established, stop);
                        if r.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        r
                    })
            })
            .collect::<Result<_, _>>()?;
        let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while established.load(Ordering::Relaxed) < idle
            && !failed.load(Ordering::Relaxed)
            && std::time::Instant::now() < limit
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let result = if established.load(Ordering::Relaxed) < idle {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "only {} of {idle} idle connections established",
                    established.load(Ordering::Relaxed)
                ),
            ))
        } else {
            // The idle connections go to the first server ports in turn; the active ones
            // continue the rotation.
            let mut run = cfg.clone();
            run.workload = Workload::Idle {
                idle: 0,
                active,
                size,
                rate,
                ports,
            };
            run_client(&run, spin)
        };
        stop.store(true, Ordering::Relaxed);
        for h in holders {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("idle holder panicked")))?;
        }
        let mut r = result?;
        r.workload = cfg.workload.label();
        r.connections += idle as u64;
        Ok(r)
    })
}

/// Opens connections `range` of an idle workload in a descriptor table of this thread's own
/// and holds them, silent, until `stop`.
fn hold_idle(
    cfg: &RunConfig,
    range: std::ops::Range<usize>,
    established: &std::sync::atomic::AtomicUsize,
    stop: &AtomicBool,
) -> io::Result<()> {
    own_fd_table()?;
    let ep = Epoll::new()?;
    let mut fds: Vec<RawFd> = Vec::with_capacity(range.len());
    let mut up = vec![false; range.len()];
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let (mut next, mut pending, mut done) = (range.start, 0usize, 0usize);
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let result = loop {
        if done == range.len() {
            break Ok(());
        }
        if stop.load(Ordering::Relaxed) || std::time::Instant::now() > limit {
            break Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{done} of {} idle connections established", range.len()),
            ));
        }
        while next < range.end && pending < CONNECT_BURST {
            // Connection n goes to server port n % ports from local port FIRST + n / ports:
            // every 4-tuple differs without a search through the kernel's port range.
            const FIRST: usize = 10_000;
            let ports = match cfg.workload {
                Workload::Idle { ports, .. } => usize::from(ports.max(1)),
                _ => 1,
            };
            let local = u16::try_from(FIRST + next / ports)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too few server ports"));
            let fd = match local.and_then(|p| {
                connect_nb_from(cfg.workload.target_of(cfg.target, next as u64), Some(p))
            }) {
                Ok(fd) => fd,
                Err(e) => return close_all(&fds, Err(e)),
            };
            fds.push(fd);
            if let Err(e) = ep.add(fd, ET_ALL, (fds.len() - 1) as u64) {
                return close_all(&fds, Err(e));
            }
            next += 1;
            pending += 1;
        }
        let n = ep.wait(&mut evs, 10);
        let mut err = None;
        for e in &evs[..n] {
            let i = e.u64 as usize;
            if up[i] {
                continue;
            }
            match connect_done(fds[i]) {
                Ok(false) => {}
                Ok(true) => {
                    up[i] = true;
                    pending -= 1;
                    done += 1;
                    established.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => err = Some(e),
            }
        }
        if let Some(e) = err {
            break Err(io::Error::new(
                e.kind(),
                format!("connect to {}: {e}", cfg.target),
            ));
        }
    };
    while result.is_ok() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    close_all(&fds, result)
}

fn close_all<T>(fds: &[RawFd], r: io::Result<T>) -> io::Result<T> {
    for &fd in fds {
        abort(fd);
    }
    r
}

/// Epoll data of listener `i` is `LISTENER - i`; connections use their slot + 1.
const LISTENER: u64 = u64::MAX;

fn listen_on(port: u16, reuseport: bool) -> io::Result<RawFd> {
    // SAFETY: plain socket setup calls on values we own.
    let lfd = cvt(unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    set_int_opt(lfd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    if reuseport {
        set_int_opt(lfd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
    }
    let sa = sockaddr(SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port));
    // SAFETY: sa is a valid sockaddr_in.
    let bound = cvt(unsafe {
        libc::bind(
            lfd,
            &sa as *const _ as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })
    // SAFETY: lfd is a bound socket.
    .and_then(|_| cvt(unsafe { libc::listen(lfd, 65535) }));
    if let Err(e) = bound {
        close(lfd);
        return Err(io::Error::new(
            e.kind(),
            format!("listen on port {port}: {e}"),
        ));
    }
    Ok(lfd)
}

struct SConn {
    fd: RawFd,
    pending: Vec<u8>,
    echoed: usize,
}

/// Counters a kernel server publishes while it runs.
#[derive(Debug, Default)]
pub struct ServeOpts {
    pub spin: bool,
    /// The core this thread is pinned to (for its /proc/stat line).
    pub core: Option<usize>,
    pub marks: Option<Arc<Marks>>,
    /// Sample memory per connection when this many are open (for a client in another process,
    /// which cannot set [`Marks`]).
    pub expect_conns: Option<usize>,
    /// Threads sharing the ports through `SO_REUSEPORT`, each with an epoll loop and a file
    /// descriptor table of its own (0 or 1: one loop in the calling thread). A process that
    /// may not raise its open-file limit (no CAP_SYS_RESOURCE) holds at most that many sockets
    /// per table; this is how a kernel server then holds 100k connections.
    pub shards: usize,
}

/// Sockets one file descriptor table of a sharded server or idle holder takes, under the hard
/// open-file limit this machine sets (20,000) with room for everything else.
pub const FDS_PER_TABLE: usize = 15_000;

/// How many descriptor tables `conns` sockets need when the open-file limit cannot be raised
/// past the hard limit (1 when it can).
pub fn tables_for(conns: usize) -> usize {
    let limit = super::sys::nofile_limit();
    if conns + 1000 <= limit {
        1
    } else {
        conns.div_ceil(FDS_PER_TABLE.min(limit.saturating_sub(1000).max(1000)))
    }
}

/// Gives the calling thread a file descriptor table of its own (a copy of the process's): it
/// may then open up to the open-file limit itself, and its sockets close when it exits.
fn own_fd_table() -> io::Result<()> {
    // SAFETY: unshare(CLONE_FILES) only affects the calling thread's descriptor table.
    cvt(unsafe { libc::unshare(libc::CLONE_FILES) }).map(|_| ())
}

/// What the threads of a sharded server share.
struct Shard<'a> {
    index: usize,
    /// Connections open over all shards.
    open: &'a std::sync::atomic::AtomicUsize,
}

/// Serves `ports` on all addresses of the thread's namespace until `stop` is set.
pub fn serve(
    ports: &[u16],
    mode: ServeMode,
    opts: &ServeOpts,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
    super::sys::raise_nofile();
    if opts.shards <= 1 {
        return serve_loop(ports, mode, opts, stop, ready, None);
    }
    let open = std::sync::atomic::AtomicUsize::new(0);
    let barrier = std::sync::Barrier::new(opts.shards + 1);
    let reports: Vec<io::Result<ServerReport>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..opts.shards)
            .map(|index| {
                let (open, barrier) = (&open, &barrier);
                // Threads inherit the caller's network namespace and CPU affinity.
                std::thread::Builder::new()
                    .name(format!("kserve-{index}"))
                    .spawn_scoped(sc, move || {
                        let mut waited = false;
                        let r = own_fd_table().and_then(|_| {
                            let shard = Shard { index, open };
                            serve_loop(
                                ports,
                                mode,
                                opts,
                                stop,
                                || {
                                    waited = true;
                                    barrier.wait();
                                },
                                Some(shard),
                            )
                        });
                        if !waited {
                            // Failed before listening: do not leave the others waiting.
                            barrier.wait();
                        }
                        r
                    })
            })
            .collect::<Result<_, _>>()
            .expect("spawning a server thread");
        barrier.wait();
        ready();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
            })
            .collect()
    });
    let mut total = ServerReport::default();
    for (i, r) in reports.into_iter().enumerate() {
        let r = r?;
        total.accepted += r.accepted;
        total.bytes_in += r.bytes_in;
        total.bytes_out += r.bytes_out;
        if let Some(t) = r.thread_cpu {
            total.thread_cpu = Some(total.thread_cpu.unwrap_or(0.0) + t);
        }
        if i == 0 {
            total.core_busy = r.core_busy;
            total.idle_conns = r.idle_conns;
            total.bytes_per_idle_conn = r.bytes_per_idle_conn;
        }
    }
    Ok(total)
}

/// One epoll loop: the whole server, or one shard of it.
fn serve_loop(
    ports: &[u16],
    mode: ServeMode,
    opts: &ServeOpts,
    stop: &AtomicBool,
    ready: impl FnOnce(),
    shard: Option<Shard>,
) -> io::Result<ServerReport> {
    let ep = Epoll::new()?;
    let mut listeners = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let lfd = listen_on(port, shard.is_some())?;
        listeners.push(lfd);
        ep.add(
            lfd,
            libc::EPOLLIN as u32 | libc::EPOLLET as u32,
            LISTENER - i as u64,
        )?;
    }
    ready();

    let mut conns: Vec<Option<SConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut open = 0usize;
    let mut report = ServerReport::default();
    let mut buf = vec![0u8; 256 * 1024];
    let zeros = vec![0u8; 256 * 1024];
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mem_base = kernel_socket_memory();
    let mut phase = Phase::Setup;
    let mut cpu: Option<CpuMark> = None;
    let timeout = if opts.spin { 0 } else { 10 };
    let mut iter = 0u32;
    let samples_memory = shard.as_ref().is_none_or(|s| s.index == 0);
    let count = |delta: isize| {
        if let Some(s) = &shard {
            if delta > 0 {
                s.open.fetch_add(1, Ordering::Relaxed);
            } else {
                s.open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    };

    while !stop.load(Ordering::Relaxed) {
        iter = iter.wrapping_add(1);
        if let Some(m) = &opts.marks {
            let p = m.get();
            if p != phase {
                let all = shard
                    .as_ref()
                    .map_or(open, |s| s.open.load(Ordering::Relaxed));
                if p >= Phase::IdleReady
                    && phase < Phase::IdleReady
                    && all > 0
                    && samples_memory
                    && report.idle_conns.is_none()
                {
                    let delta = kernel_socket_memory().saturating_sub(mem_base);
                    let open = all;
                    report.idle_conns = Some(open as u64);
                    // Both ends of every connection are kernel sockets on this machine.
                    report.bytes_per_idle_conn = Some(delta as f64 / (2 * open) as f64);
                }
                if p == Phase::Measure {
                    cpu = Some(CpuMark::take(opts.core));
                }
                if p == Phase::Done {
                    if let Some(c) = cpu.take() {
                        let (busy, thread) = c.since(opts.core);
                        report.core_busy = busy;
                        report.thread_cpu = Some(thread);
                    }
                }
                phase = p;
            }
        }
        let all = shard
            .as_ref()
            .map_or(open, |s| s.open.load(Ordering::Relaxed));
        if samples_memory && opts.expect_conns == Some(all) && report.idle_conns.is_none() {
            let open = all;
            let delta = kernel_socket_memory().saturating_sub(mem_base);
            report.idle_conns = Some(open as u64);
            report.bytes_per_idle_conn = Some(delta as f64 / (2 * open) as f64);
        }
        let nev = ep.wait(&mut evs, timeout);
        for e in &evs[..nev] {
            if e.u64 > LISTENER - listeners.len() as u64 {
                let lfd = listeners[(LISTENER - e.u64) as usize];
                loop {
                    // SAFETY: accept4 with null address arguments.
                    let fd = unsafe {
                        libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        break;
                    }
                    set_int_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    conns[slot] = Some(SConn {
                        fd,
                        pending: Vec::new(),
                        echoed: 0,
                    });
                    if ep.add(fd, ET_ALL, slot as u64 + 1).is_err() {
                        close(fd);
                        conns[slot] = None;
                        free.push(slot);
                        continue;
                    }
                    open += 1;
                    count(1);
                    report.accepted += 1;
                    // Data may have arrived with the handshake.
                    if service(&mut conns[slot], mode, &mut buf, &zeros, &mut report) {
                        close(fd);
                        conns[slot] = None;
                        free.push(slot);
                        open -= 1;
                        count(-1);
                    }
                }
                continue;
            }
            let slot = e.u64 as usize - 1;
            if conns[slot].is_none() {
                continue;
            }
            if service(&mut conns[slot], mode, &mut buf, &zeros, &mut report) {
                if let Some(c) = conns[slot].take() {
                    close(c.fd);
                }
                free.push(slot);
                open -= 1;
                count(-1);
            }
        }
    }
    // Stopped before the Done mark was seen (a blocking server sleeps up to 10 ms).
    if let Some(c) = cpu.take() {
        let (busy, thread) = c.since(opts.core);
        report.core_busy = busy;
        report.thread_cpu = Some(thread);
    }
    for c in conns.into_iter().flatten() {
        close(c.fd);
    }
    for lfd in listeners {
        close(lfd);
    }
    Ok(report)
}

/// Reads and writes what it can on one connection; true when it should be closed.
fn service(
    slot: &mut Option<SConn>,
    mode: ServeMode,
    buf: &mut [u8],
    zeros: &[u8],
    report: &mut ServerReport,
) -> bool {
    let Some(c) = slot.as_mut() else {
        return false;
    };
    let send = |fd: RawFd, data: &[u8]| -> Result<usize, ()> {
        // SAFETY: data is readable for its length.
        let r = unsafe {
            libc::send(
                fd,
                data.as_ptr() as *const libc::c_void,
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if r >= 0 {
            Ok(r as usize)
        } else {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(()),
            }
        }
    };
    // Flush what an earlier call could not write.
    if !c.pending.is_empty() {
        match send(c.fd, &c.pending) {
            Ok(n) => {
                report.bytes_out += n as u64;
                c.echoed += n;
                c.pending.drain(..n);
            }
            Err(()) => return true,
        }
    }
    let mut eof = false;
    loop {
        // SAFETY: buf is writable for its length.
        let r = unsafe {
            libc::recv(
                c.fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if r == 0 {
            eof = true;
            break;
        }
        if r < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                _ => return true,
            }
        }
        let got = &buf[..r as usize];
        report.bytes_in += got.len() as u64;
        match mode {
            ServeMode::Echo | ServeMode::EchoClose(_) => {
                let mut off = 0;
                if c.pending.is_empty() {
                    match send(c.fd, got) {
                        Ok(n) => off = n,
                        Err(()) => return true,
                    }
                    report.bytes_out += off as u64;
                    c.echoed += off;
                }
                c.pending.extend_from_slice(&got[off..]);
            }
            ServeMode::Discard | ServeMode::Source => {}
        }
    }
    if mode == ServeMode::Source {
        loop {
            match send(c.fd, zeros) {
                Ok(0) => break,
                Ok(n) => report.bytes_out += n as u64,
                Err(()) => return true,
            }
        }
    }
    if let ServeMode::EchoClose(limit) = mode {
        if c.echoed >= limit && c.pending.is_empty() {
            return true;
        }
    }
    eof && c.pending.is_empty()
}
