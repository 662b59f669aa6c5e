//! Small OS helpers for the harness: pinning and namespaces, CPU and memory accounting from
//! /proc, interface addresses, signals.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Raises the calling thread's priority ([`boost_priority`]), pins it to `core` (if given) and
/// enters network namespace `netns` (a name under /run/netns or a path), in that order.
pub fn place_thread(core: Option<usize>, netns: Option<&str>) -> io::Result<()> {
    boost_priority();
    if let Some(core) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            return Err(io::Error::other(format!("could not pin to core {core}")));
        }
    }
    if let Some(ns) = netns {
        let path = if ns.contains('/') {
            ns.to_string()
        } else {
            format!("/run/netns/{ns}")
        };
        xdp_tcp::engine::cores::enter_netns(Path::new(&path))?;
    }
    Ok(())
}

/// Gives the calling thread nice -20 (best effort, needs CAP_SYS_NICE). On a machine shared with
/// other work a pinned benchmark thread then keeps its core almost to itself (the scheduler
/// weighs nice -20 about 90 times nice 0) without the starvation risks of a real-time class;
/// without it, being descheduled for a few milliseconds shows up in every open-loop percentile.
pub fn boost_priority() -> bool {
    // SAFETY: gettid and setpriority on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, -20) == 0
    }
}

/// (busy, total) jiffies of one CPU from /proc/stat; busy is everything but idle and iowait.
pub fn cpu_jiffies(core: usize) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{core} ");
    let line = stat.lines().find(|l| l.starts_with(&name))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU time of the calling thread, nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU accounting between two moments on one thread pinned to `core`.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    jiffies: Option<(u64, u64)>,
    thread_ns: u64,
    wall: std::time::Instant,
}

impl CpuMark {
    pub fn take(core: Option<usize>) -> Self {
        CpuMark {
            jiffies: core.and_then(cpu_jiffies),
            thread_ns: thread_cpu_ns(),
            wall: std::time::Instant::now(),
        }
    }

    /// (core busy fraction, thread CPU seconds per second) since `self`.
    pub fn since(&self, core: Option<usize>) -> (Option<f64>, f64) {
        let now = CpuMark::take(core);
        let busy = match (self.jiffies, now.jiffies) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        };
        let wall = now.wall.duration_since(self.wall).as_secs_f64().max(1e-9);
        (busy, (now.thread_ns - self.thread_ns) as f64 / 1e9 / wall)
    }
}

/// Kernel memory that grows with TCP sockets: slab (socket structures) plus socket buffer pages
/// (sockstat `mem`), bytes. Global, not per namespace: take differences.
pub fn kernel_socket_memory() -> u64 {
    let slab = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    // sockstat is per namespace but the caller sits in the namespace whose sockets it counts.
    let pages = std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_string();
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if w == "mem" {
                    return it.next()?.parse::<u64>().ok();
                }
            }
            None
        })
        .unwrap_or(0);
    slab + pages * 4096
}

/// Raises the open-file limit (idle-connection runs hold both ends of every connection in one
/// process): to 1M when privileged, else to the hard limit.
pub fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write one struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 || r.rlim_cur >= 1 << 20 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: r.rlim_max.max(1 << 20),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// The current (soft) open-file limit.
pub fn nofile_limit() -> usize {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return 1024;
    }
    usize::try_from(r.rlim_cur).unwrap_or(usize::MAX)
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Sets a flag on SIGINT and SIGTERM instead of dying, so servers detach their XDP program and
/// print their counters.
pub fn stop_on_signals() -> &'static AtomicBool {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    &STOP
}
