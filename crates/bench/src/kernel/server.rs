//! The kernel server: an epoll loop accepting on every port it serves and echoing, discarding
//! or sourcing bytes per [`ServeMode`], with the server-side measurements (CPU over the measured
//! window, kernel memory per idle connection) taken on its own thread. Past one descriptor
//! table it runs as shards ([`super::tables`]), each this same loop.

use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::tables::Shard;
use super::{close, cvt, set_int_opt, sockaddr, Epoll, ET_ALL};
use crate::sys::{kernel_socket_memory, CpuMark};
use crate::{Marks, Phase, ServeMode, ServerReport};

/// How a kernel server runs.
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
    /// With shards: shard `i` pinned to `shard_cores[i]` (empty: they keep the caller's
    /// affinity).
    pub shard_cores: Vec<usize>,
}

/// Serves `ports` on all addresses of the thread's namespace until `stop` is set.
pub fn serve(
    ports: &[u16],
    mode: ServeMode,
    opts: &ServeOpts,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
    crate::sys::raise_nofile();
    if opts.shards <= 1 {
        serve_loop(ports, mode, opts, stop, ready, None)
    } else {
        super::tables::serve_sharded(ports, mode, opts, stop, ready)
    }
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
    let bound = super::set_congestion_control(lfd)
        .and_then(|_| {
            cvt(unsafe {
                libc::bind(
                    lfd,
                    &sa as *const _ as *const libc::sockaddr,
                    mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            })
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

/// One accepted connection.
struct ServerConn {
    fd: RawFd,
    /// Echo bytes received but not yet accepted by the socket, sent before anything newer.
    unsent: Vec<u8>,
    /// Bytes echoed so far (echo-then-close closes past its limit).
    echoed: usize,
}

/// One epoll loop: the whole server, or one shard of it.
pub(super) fn serve_loop(
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

    let mut conns: Vec<Option<ServerConn>> = Vec::new();
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
                    conns[slot] = Some(ServerConn {
                        fd,
                        unsent: Vec::new(),
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
    slot: &mut Option<ServerConn>,
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
    if !c.unsent.is_empty() {
        match send(c.fd, &c.unsent) {
            Ok(n) => {
                report.bytes_out += n as u64;
                c.echoed += n;
                c.unsent.drain(..n);
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
                if c.unsent.is_empty() {
                    match send(c.fd, got) {
                        Ok(n) => off = n,
                        Err(()) => return true,
                    }
                    report.bytes_out += off as u64;
                    c.echoed += off;
                }
                c.unsent.extend_from_slice(&got[off..]);
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
        if c.echoed >= limit && c.unsent.is_empty() {
            return true;
        }
    }
    eof && c.unsent.is_empty()
}
