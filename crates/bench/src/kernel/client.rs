//! The kernel client: every connection of a workload on non-blocking sockets in one epoll loop,
//! timed by the shared [`Driver`]. Idle workloads past one descriptor table hand their idle
//! connections to holder threads first ([`super::tables`]).

use std::io;
use std::os::fd::RawFd;

use super::{abort, close, connect_done, connect_nb, Epoll, CONNECT_BURST, ET_ALL};
use crate::driver::{Clock, ConnState, Driver, SlotState};
use crate::{LoadResult, Phase, RunConfig, Workload};

/// One client connection: its socket, where it is in its life, and its requests.
struct ClientSlot {
    fd: RawFd,
    state: SlotState,
    /// When the connect was sent (churn latency runs from here).
    opened: u64,
    requests: ConnState,
}

/// Runs one client workload on kernel sockets in the calling thread (already pinned and in its
/// namespace). `spin`: never sleep.
pub fn run_client(cfg: &RunConfig, spin: bool) -> io::Result<LoadResult> {
    crate::sys::raise_nofile();
    if let Workload::Idle { idle, active, .. } = cfg.workload {
        let tables = super::tables_for(idle + active);
        if tables > 1 {
            return super::tables::run_client_with_holders(cfg, spin, tables);
        }
    }
    let clock = Clock::new();
    let mut d = Driver::new(cfg);
    let churn = matches!(cfg.workload, Workload::Churn { .. });
    let upload = matches!(cfg.workload, Workload::Bulk { upload: true, .. });
    let n = cfg.workload.conns();
    let ep = Epoll::new()?;
    let mut conns: Vec<ClientSlot> = (0..n)
        .map(|_| ClientSlot {
            fd: -1,
            state: SlotState::Unused,
            opened: 0,
            requests: ConnState::default(),
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
    let open = |k: usize, conns: &mut Vec<ClientSlot>, now: u64| -> io::Result<()> {
        let fd = connect_nb(cfg.workload.target_of(cfg.target, opened.get()))?;
        opened.set(opened.get() + 1);
        ep.add(fd, ET_ALL, k as u64)?;
        conns[k] = ClientSlot {
            fd,
            state: SlotState::Connecting,
            opened: now,
            requests: ConnState::default(),
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
            conns[k].requests.push(t, size);
            woke.push(k);
        });
        while let Some(k) = woke.pop() {
            let c = &mut conns[k];
            match c.state {
                SlotState::Unused => continue,
                SlotState::Connecting => match connect_done(c.fd) {
                    Ok(false) => continue,
                    Ok(true) => {
                        c.state = SlotState::Open;
                        connecting -= 1;
                        established += 1;
                        let t = if churn { c.opened } else { now };
                        d.connected(k, &mut c.requests, t);
                    }
                    Err(e) => {
                        d.errors += 1;
                        close(c.fd);
                        c.state = SlotState::Unused;
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
                SlotState::Open | SlotState::Draining => {}
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
                    if d.received(&mut c.requests, r as usize, t) && churn {
                        c.state = SlotState::Draining;
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
            while !failed && (c.requests.to_send > 0 || (upload && d.started())) {
                let len = if upload {
                    zeros.len()
                } else {
                    c.requests.to_send.min(zeros.len())
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
                        c.requests.to_send -= r as usize;
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
                let clean = churn && eof && c.state == SlotState::Draining;
                if !clean {
                    d.errors += 1;
                }
                d.disconnected(k, &mut c.requests);
                close(c.fd);
                c.state = SlotState::Unused;
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
        if c.state != SlotState::Unused {
            abort(c.fd);
        }
    }
    result?;
    Ok(d.result(if spin { "kernel-spin" } else { "kernel-block" }))
}
