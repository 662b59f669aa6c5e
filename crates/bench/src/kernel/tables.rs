//! Past one file-descriptor table: a process that may not raise its open-file limit above the
//! hard limit (no CAP_SYS_RESOURCE; 20,000 on this machine) holds more sockets by giving threads
//! descriptor tables of their own (`unshare(CLONE_FILES)`). The server runs as shards sharing
//! the ports with `SO_REUSEPORT`; the client opens its idle connections in holder threads and
//! runs the active ones itself. [`tables_for`] says how many tables a connection count needs.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use super::server::{serve_loop, ServeOpts};
use super::{abort, connect_done, connect_nb_from, cvt, Epoll, CONNECT_BURST, ET_ALL};
use crate::{LoadResult, RunConfig, ServeMode, ServerReport, Workload};

/// Sockets one file descriptor table of a sharded server or idle holder takes, under the hard
/// open-file limit this machine sets (20,000) with room for everything else.
pub const FDS_PER_TABLE: usize = 15_000;

/// How many descriptor tables `conns` sockets need when the open-file limit cannot be raised
/// past the hard limit (1 when it can).
pub fn tables_for(conns: usize) -> usize {
    let limit = crate::sys::nofile_limit();
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
pub(super) struct Shard<'a> {
    pub(super) index: usize,
    /// Connections open over all shards.
    pub(super) open: &'a std::sync::atomic::AtomicUsize,
}

/// [`serve`](super::serve) as `opts.shards` threads sharing the ports (`SO_REUSEPORT`), each
/// with a descriptor table of its own; `ready` once all listen. The report sums the counters
/// and CPU of all shards, and takes the memory samples of shard 0 (which counts all of them).
pub(super) fn serve_sharded(
    ports: &[u16],
    mode: ServeMode,
    opts: &ServeOpts,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
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
                        let pin = opts.shard_cores.get(index).copied();
                        let r = own_fd_table()
                            .and_then(|_| match pin {
                                Some(c) => crate::sys::place_thread(Some(c), None),
                                None => Ok(()),
                            })
                            .and_then(|_| {
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

/// An idle workload with more connections than one descriptor table takes: `tables` threads,
/// each with a table of its own, open and hold the idle connections (the same way and to the
/// same server ports as [`run_client`] would), then this thread runs the active ones.
pub(super) fn run_client_with_holders(
    cfg: &RunConfig,
    spin: bool,
    tables: usize,
) -> io::Result<LoadResult> {
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
            super::run_client(&run, spin)
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
