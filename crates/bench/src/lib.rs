//! The benchmark harness of xdp-tcp, kept out of the library so applications that link xdp-tcp
//! do not pull in its dependencies (serde, serde_json, hdrhistogram).
//!
//! The load generator and the servers it measures, on two back-ends: Linux kernel sockets
//! ([`kernel`]) and xdp-tcp engine applications on their own AF_XDP socket ([`xdp`]), plus the
//! raw AF_XDP frame-echo floor ([`floor`]) and the side-by-side benchmark ([`bench`](mod@bench)).
//!
//! Both client back-ends drive the same [`driver::Driver`], which decides when requests are due
//! and records round trips in an HDR histogram, so the two are measured by the same rules:
//! - closed loop (ping-pong): `depth` requests in flight per connection, the next one sent when a
//!   response completes; latency from the moment the request was handed to the socket;
//! - open loop: requests are due at a fixed global rate and sent whatever the responses do;
//!   latency from the *intended* send time (coordinated-omission correction, as in wrk2), so a
//!   stall shows up in the percentiles instead of silently lowering the offered rate;
//! - bulk: bytes per second one way; churn: connect, one request, response, close.
//!
//! A run has a warm-up, then a measured window; only completions inside the window count. Each
//! thread is pinned with core_affinity and enters its network namespace first (AF_XDP binds,
//! XDP attaches and kernel sockets all belong to the calling thread's namespace).

pub mod alloc;
pub mod bench;
pub mod driver;
pub mod floor;
pub mod hist;
pub mod jitter;
pub mod kernel;
pub mod stat;
pub mod synflood;
pub mod sys;
pub mod xdp;

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hist::Summary;

/// What a client does on its connections.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Workload {
    /// Closed loop: `depth` requests of `size` bytes in flight on each of `conns` connections.
    PingPong {
        size: usize,
        conns: usize,
        depth: usize,
    },
    /// Open loop at `rate` requests/s over `conns` connections, latency from the intended time.
    OpenLoop {
        size: usize,
        conns: usize,
        rate: u64,
    },
    /// One-way stream on `conns` connections: `upload` to a discard server, else download from a
    /// source server.
    Bulk { conns: usize, upload: bool },
    /// `concurrency` slots, each: connect, one `size`-byte request, the response, close (the
    /// server closes first, so TIME-WAIT stays on the server as it does for real servers).
    /// Successive connections go round `ports` consecutive server ports from the target's, so
    /// a run of up to `ports` x the client's ephemeral range never repeats a 4-tuple.
    Churn {
        size: usize,
        concurrency: usize,
        ports: u16,
    },
    /// `idle` connections opened first and left silent, then an open loop at `rate` over
    /// `active` more. Connections go round `ports` consecutive server ports as in
    /// [`Workload::Churn`]: one client address has one ephemeral range (~55k ports) per server
    /// port, so 100k connections need at least two.
    Idle {
        idle: usize,
        active: usize,
        size: usize,
        rate: u64,
        ports: u16,
    },
}

impl Workload {
    pub fn conns(&self) -> usize {
        match *self {
            Workload::PingPong { conns, .. }
            | Workload::OpenLoop { conns, .. }
            | Workload::Bulk { conns, .. } => conns,
            Workload::Churn { concurrency, .. } => concurrency,
            Workload::Idle { idle, active, .. } => idle + active,
        }
    }

    /// The server port of the `n`-th connection to `target`.
    pub fn target_of(&self, target: SocketAddrV4, n: u64) -> SocketAddrV4 {
        match *self {
            Workload::Churn { ports, .. } | Workload::Idle { ports, .. } if ports > 1 => {
                SocketAddrV4::new(
                    *target.ip(),
                    target.port().wrapping_add((n % u64::from(ports)) as u16),
                )
            }
            _ => target,
        }
    }

    /// Server ports this workload connects to.
    pub fn server_ports(&self, base: u16) -> Vec<u16> {
        match *self {
            Workload::Churn { ports, .. } | Workload::Idle { ports, .. } => {
                (0..ports.max(1)).map(|i| base + i).collect()
            }
            _ => vec![base],
        }
    }

    pub fn label(&self) -> String {
        match *self {
            Workload::PingPong { size, conns, depth } => {
                format!("ping-pong {size} B x{conns} conn depth {depth}")
            }
            Workload::OpenLoop { size, conns, rate } => {
                format!("open loop {size} B x{conns} conn at {rate}/s")
            }
            Workload::Bulk { conns, upload } => format!(
                "bulk {} x{conns} conn",
                if upload { "upload" } else { "download" }
            ),
            Workload::Churn {
                size,
                concurrency,
                ports,
            } => {
                format!("churn {size} B, {concurrency} in parallel, {ports} server ports")
            }
            Workload::Idle {
                idle,
                active,
                size,
                rate,
                ports,
            } => {
                format!("{idle} idle + {active} active, {size} B at {rate}/s, {ports} server ports")
            }
        }
    }
}

/// Client ephemeral ports per server port, on both back-ends (10000..=65000, less a margin):
/// the number of server ports `conns` connections from one client address need.
pub fn idle_ports(conns: usize) -> u16 {
    const PER_PORT: usize = 50_000;
    conns.div_ceil(PER_PORT).max(1) as u16
}

/// Progress of a client run, published for a server in the same process to sample its CPU and
/// memory at the right moments (see [`Phase`]).
#[derive(Debug, Default)]
pub struct Marks(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    Setup = 0,
    /// Every idle connection of an [`Workload::Idle`] run is established, no traffic yet.
    IdleReady = 1,
    Warmup = 2,
    Measure = 3,
    Done = 4,
}

impl Marks {
    pub fn new() -> Arc<Marks> {
        Arc::new(Marks::default())
    }
    pub fn set(&self, p: Phase) {
        self.0.store(p as u8, Ordering::Release);
    }
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Setup,
            1 => Phase::IdleReady,
            2 => Phase::Warmup,
            3 => Phase::Measure,
            _ => Phase::Done,
        }
    }
}

/// One client run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: SocketAddrV4,
    pub workload: Workload,
    pub warmup: Duration,
    pub duration: Duration,
    /// Print a progress line once a second (only when stdout is a terminal).
    pub progress: bool,
    pub marks: Option<Arc<Marks>>,
}

impl RunConfig {
    pub(crate) fn mark(&self, p: Phase) {
        if let Some(m) = &self.marks {
            m.set(p);
        }
    }
}

/// What a client run measured; serialised as the machine-readable result.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LoadResult {
    pub backend: String,
    pub workload: String,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Requests (ping-pong, open loop, idle) or connections (churn) completed in the window.
    pub completed: u64,
    /// `completed` per second.
    pub rate: f64,
    /// Payload bytes moved in the window (received by the client, or written for an upload).
    pub bytes: u64,
    pub gbit_per_s: f64,
    /// Connections established over the whole run.
    pub connections: u64,
    pub errors: u64,
    pub latency: Option<Summary>,
    /// (percentile, microseconds) points of the latency distribution, for plots.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub curve: Vec<(f64, f64)>,
}

/// Server-side measurements of one run, taken on the server's own thread.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ServerReport {
    pub accepted: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Busy fraction of the server's core over the measured window (user + system + softirq),
    /// from /proc/stat; 1.0 for a spinning server.
    pub core_busy: Option<f64>,
    /// CPU time of the server thread per second of the measured window.
    pub thread_cpu: Option<f64>,
    /// Connections open when the idle ones were all established.
    pub idle_conns: Option<u64>,
    /// Heap bytes the server thread held per idle connection (xdp-tcp) or kernel slab + socket
    /// memory per connection endpoint (kernel), at [`Phase::IdleReady`].
    pub bytes_per_idle_conn: Option<f64>,
    /// xdp-tcp server: engine iterations over the whole run, and how many of them found nothing
    /// to do (`deploy/profile` prices those apart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iterations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_iterations: Option<u64>,
}

/// How a server treats what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServeMode {
    Echo,
    /// Reads and drops everything (bulk upload).
    Discard,
    /// Writes an endless stream, ignores input (bulk download).
    Source,
    /// Echoes, and closes once this many bytes were echoed (churn: the server closes first).
    EchoClose(usize),
}

impl std::str::FromStr for ServeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "echo" => Ok(ServeMode::Echo),
            "discard" => Ok(ServeMode::Discard),
            "source" => Ok(ServeMode::Source),
            _ => match s.strip_prefix("echo-close=") {
                Some(n) => n
                    .parse()
                    .map(ServeMode::EchoClose)
                    .map_err(|e| format!("{s}: {e}")),
                None => Err(format!(
                    "unknown mode {s} (echo, discard, source, echo-close=N)"
                )),
            },
        }
    }
}

pub(crate) fn is_terminal_stdout() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_modes_parse_as_the_usage_spells_them() {
        assert_eq!("echo".parse(), Ok(ServeMode::Echo));
        assert_eq!("discard".parse(), Ok(ServeMode::Discard));
        assert_eq!("source".parse(), Ok(ServeMode::Source));
        assert_eq!("echo-close=64".parse(), Ok(ServeMode::EchoClose(64)));
        assert!("echo-close=x".parse::<ServeMode>().is_err());
        assert!("mirror".parse::<ServeMode>().is_err());
    }

    #[test]
    fn connections_go_round_the_server_ports() {
        let target: SocketAddrV4 = "10.0.0.1:7000".parse().unwrap();
        let w = Workload::Churn {
            size: 64,
            concurrency: 4,
            ports: 3,
        };
        let ports: Vec<u16> = (0..4).map(|n| w.target_of(target, n).port()).collect();
        assert_eq!(ports, [7000, 7001, 7002, 7000]);
        assert_eq!(w.server_ports(7000), [7000, 7001, 7002]);
        assert_eq!(idle_ports(50_000), 1);
        assert_eq!(idle_ports(101_000), 3);
    }
}
