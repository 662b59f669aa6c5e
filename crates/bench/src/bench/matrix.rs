//! What the benchmark runs: the [`Case`]s of the matrix (a row, a system, its server and client
//! and their settings) in the order they alternate within a round, and their results.

use serde::Serialize;

use super::BenchOpts;
use crate::{kernel, LoadResult, ServeMode, ServerReport, Workload};

/// A server for one run.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    Xdp {
        idle_backoff: bool,
    },
    Kernel {
        spin: bool,
    },
    Reflector,
    /// Another stack's echo server: the shell command `BenchOpts::external[index]` run in the
    /// stack's namespace on the server core, with `XDP_IFACE`, `XDP_PORT` and `XDP_CORE` in its
    /// environment. It prints `ready` on stdout once it serves and stops on SIGTERM (detaching
    /// whatever it attached).
    External {
        index: usize,
    },
}

/// A client for one run.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Xdp,
    Kernel {
        spin: bool,
    },
    /// Kernel sockets in a child `xdp-tcp load` process: with both ends of 10k+ connections as
    /// kernel sockets one process would pass the open-file limit (a hard 20000 here).
    KernelProcess {
        spin: bool,
    },
    Pinger,
}

/// One system measured on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    pub row: String,
    pub system: &'static str,
    pub server: ServerKind,
    pub client: ClientKind,
    pub mode: ServeMode,
    pub workload: Workload,
    /// Both threads on the client's core (the "blocking, one core" kernel reference).
    pub same_core: bool,
    /// Kernel offloads for this run.
    pub offloads: Offloads,
    /// Server engines (xdp-tcp) or epoll threads (kernel), one per core: the server core, then
    /// the client's. Above 1 the case runs on a testbed with this many veth queues, and the
    /// client shares its core with a server engine. Left out of the JSON when 1.
    #[serde(skip_serializing_if = "is_one")]
    pub engines: usize,
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Offload settings of both veth ends during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offloads {
    /// The testbed's: checksum, TSO, GSO, GRO off and `gso_max_segs 1`, so every frame the XDP
    /// program sees is one wire frame with a full checksum (what xdp-tcp needs).
    Testbed,
    /// TSO and GSO off, the rest at veth's defaults (checksum offload on, `gso_max_segs` 65535):
    /// the kernel with segmentation done per MTU-sized packet, as the stack does.
    NoTsoGso,
    /// TSO, GSO and GRO off with checksums computed in software (`tx off`), and `gso_max_segs`
    /// 65535: a kernel sender still builds large segments and splits them late, in software,
    /// as on the [`Offloads::NoTsoGso`] link, but every frame carries its full checksum, which
    /// xdp-tcp (and an XDP program) needs. The `bulk-kc` row's link.
    Checksums,
    /// Everything at veth's defaults: the kernel at its best on this link.
    Defaults,
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub round: usize,
    pub client: LoadResult,
    pub server: ServerReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub case: Case,
    pub runs: Vec<Run>,
}

/// Every case of the benchmark for `opts` (only ping-pong with `quick`), before `--only`.
pub fn matrix(opts: &BenchOpts) -> Vec<Case> {
    let pp = Workload::PingPong {
        size: 64,
        conns: 1,
        depth: 1,
    };
    let echo = ServeMode::Echo;
    let xdp_spin = ServerKind::Xdp {
        idle_backoff: false,
    };
    let case = |row: &str, system, server, client, mode, workload| Case {
        row: row.to_string(),
        system,
        server,
        client,
        mode,
        workload,
        same_core: false,
        offloads: Offloads::Testbed,
        engines: 1,
    };
    let mut v = vec![
        case(
            "pingpong",
            "raw-af-xdp",
            ServerKind::Reflector,
            ClientKind::Pinger,
            echo,
            pp,
        ),
        case("pingpong", "xdp-tcp", xdp_spin, ClientKind::Xdp, echo, pp),
        case(
            "pingpong",
            "kernel-spin",
            ServerKind::Kernel { spin: true },
            ClientKind::Kernel { spin: true },
            echo,
            pp,
        ),
        case(
            "pingpong",
            "kernel-block",
            ServerKind::Kernel { spin: false },
            ClientKind::Kernel { spin: false },
            echo,
            pp,
        ),
        Case {
            same_core: true,
            ..case(
                "pingpong",
                "kernel-block-1core",
                ServerKind::Kernel { spin: false },
                ClientKind::Kernel { spin: false },
                echo,
                pp,
            )
        },
    ];
    if opts.quick {
        return v;
    }
    // The same busy-spinning kernel client against each server (the kernel server's case is the
    // `pingpong` row's): what each server's end costs, whatever client xdp-tcp itself would use.
    let kc = ClientKind::Kernel { spin: true };
    v.push(case("pingpong-kc", "xdp-tcp", xdp_spin, kc, echo, pp));
    for (index, (name, _)) in opts.external.iter().enumerate() {
        let name: &'static str = Box::leak(name.clone().into_boxed_str());
        let server = ServerKind::External { index };
        v.push(case("pingpong-kc", name, server, kc, echo, pp));
    }
    let rr = Workload::PingPong {
        size: 64,
        conns: 64,
        depth: 1,
    };
    v.push(case("rr64", "xdp-tcp", xdp_spin, ClientKind::Xdp, echo, rr));
    v.push(case(
        "rr64",
        "kernel-spin",
        ServerKind::Kernel { spin: true },
        ClientKind::Kernel { spin: true },
        echo,
        rr,
    ));
    let bulk = Workload::Bulk {
        conns: 1,
        upload: true,
    };
    v.push(case(
        "bulk",
        "xdp-tcp",
        ServerKind::Xdp { idle_backoff: true },
        ClientKind::Xdp,
        ServeMode::Discard,
        bulk,
    ));
    // The kernel pair on a link of its own: `offloads` (see `Offloads`).
    let kernel_bulk = |system, offloads| Case {
        offloads,
        ..case(
            "bulk",
            system,
            ServerKind::Kernel { spin: false },
            ClientKind::Kernel { spin: false },
            ServeMode::Discard,
            bulk,
        )
    };
    v.push(kernel_bulk("kernel", Offloads::NoTsoGso));
    // on `bulk-kc`'s link (checksums computed and verified in software)
    v.push(kernel_bulk("kernel-csum", Offloads::Checksums));
    // A kernel client uploading to xdp-tcp's server (issue 16): the server judged apart from our
    // own client's copy-mode transmit, against the `bulk` row's kernel pairs.
    v.push(Case {
        offloads: Offloads::Checksums,
        ..case(
            "bulk-kc",
            "xdp-tcp",
            ServerKind::Xdp { idle_backoff: true },
            ClientKind::Kernel { spin: false },
            ServeMode::Discard,
            bulk,
        )
    });
    v.push(kernel_bulk("kernel-offloads", Offloads::Defaults));
    // One server port: the client's ~55k ports wrap within a second, so new SYNs meet their
    // 4-tuple still in TIME-WAIT on the server, which both systems take as a new connection.
    let churn = Workload::Churn {
        size: 64,
        concurrency: 16,
        ports: 1,
    };
    v.push(case(
        "churn",
        "xdp-tcp",
        xdp_spin,
        ClientKind::Xdp,
        ServeMode::EchoClose(64),
        churn,
    ));
    v.push(case(
        "churn",
        "kernel-spin",
        ServerKind::Kernel { spin: true },
        ClientKind::Kernel { spin: true },
        ServeMode::EchoClose(64),
        churn,
    ));
    // Two server engines, one per core, on a 2-queue veth: the same kernel client (busy-spinning,
    // on the client core, so it shares that core with engine 1) against xdp-tcp with 2 engines,
    // xdp-tcp with 1 (on a 1-queue veth: the 1 -> 2 engines ratio) and the kernel server given
    // both cores (two SO_REUSEPORT epoll threads). The peer's kernel picks each flow's transmit
    // queue, so about half the flows arrive on the engine that does not own them and are
    // forwarded (veth has no RSS the stack could steer by).
    let xdp_nap = ServerKind::Xdp { idle_backoff: true };
    let kblock = ClientKind::Kernel { spin: false };
    for (row, workload, mode) in [
        ("rr64-2e", rr, echo),
        ("churn-2e", churn, ServeMode::EchoClose(64)),
    ] {
        for (system, server, engines) in [
            ("xdp-tcp", xdp_nap, 2),
            ("xdp-tcp-1e", xdp_nap, 1),
            ("kernel", ServerKind::Kernel { spin: false }, 2),
        ] {
            v.push(Case {
                engines,
                ..case(row, system, server, kblock, mode, workload)
            });
        }
    }
    for &n in &opts.idle_conns {
        let active = 1000;
        let idle = Workload::Idle {
            idle: n,
            active,
            size: 64,
            rate: 20_000,
            ports: crate::idle_ports(n + active),
        };
        let row = idle_row(n);
        v.push(case(&row, "xdp-tcp", xdp_spin, ClientKind::Xdp, echo, idle));
        // Past one descriptor table (see kernel::tables_for) the kernel server runs one epoll
        // thread per table on its core; those threads block, as spinning ones would only take
        // turns at the scheduler's pace.
        let spin = kernel::tables_for(n + active) == 1;
        v.push(case(
            &row,
            if spin {
                "kernel-spin"
            } else {
                "kernel-threads"
            },
            ServerKind::Kernel { spin },
            ClientKind::KernelProcess { spin },
            echo,
            idle,
        ));
    }
    v
}

/// The row name of the idle workload with `n` idle connections (`idle10k`, `idle100k`).
pub fn idle_row(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("idle{}k", n / 1000)
    } else {
        format!("idle{n}")
    }
}
