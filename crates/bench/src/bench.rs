//! The side-by-side benchmark (the README's main job): sets up the veth testbed, runs every
//! workload of the matrix on xdp-tcp, on the Linux kernel and (for ping-pong) on raw AF_XDP,
//! server pinned to one core and client to the other, alternating the systems over several
//! rounds, and prints one table of medians and ratios. Exits with an error only when something
//! fails, never because a figure is slow.
//!
//! Everything runs in this process: the server on a thread that entered the stack's namespace,
//! the client on a thread in the peer's namespace. Each run starts its own server and removes it
//! again (XDP programs detach when their link closes), so the systems never overlap.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde::Serialize;

use super::sys::place_thread;
use super::xdp::XdpOpts;
use super::{floor, kernel, xdp, LoadResult, Marks, RunConfig, ServeMode, ServerReport, Workload};

#[derive(Debug, Clone)]
pub struct BenchOpts {
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub testbed_script: PathBuf,
    pub name: String,
    pub server_core: usize,
    pub client_core: usize,
    /// One idle row per entry: this many idle connections beside the 1k active ones (0: the
    /// same open loop without idle connections, the control the others are compared with).
    pub idle_conns: Vec<usize>,
    pub json: Option<PathBuf>,
    /// Only the ping-pong row (and the floor).
    pub quick: bool,
    /// Only these rows (pingpong, rr64, bulk, churn, idle10k, ...; a prefix such as `idle`
    /// selects every row it begins); empty = all.
    pub only: Vec<String>,
}

impl Default for BenchOpts {
    fn default() -> Self {
        BenchOpts {
            rounds: 3,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(2),
            testbed_script: PathBuf::from("deploy/testbed.sh"),
            name: "xtbench".into(),
            server_core: 0,
            client_core: 1,
            idle_conns: vec![0, 10_000, 100_000],
            json: None,
            quick: false,
            only: Vec::new(),
        }
    }
}

pub use xdp_tcp_testbed::Testbed;

/// A server for one run.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerKind {
    Xdp { idle_backoff: bool },
    Kernel { spin: bool },
    Reflector,
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

/// The ports of the three kinds of server, kept apart so one's leftovers (TIME-WAIT) never meet
/// another.
const XDP_PORT: u16 = 7000;
const KERNEL_PORT: u16 = 7001;
const FLOOR_PORT: u16 = 7002;

struct Env {
    ns_stack: String,
    ns_peer: String,
    if_stack: String,
    if_peer: String,
    ip_stack: Ipv4Addr,
}

fn run_case(env: &Env, opts: &BenchOpts, case: &Case) -> io::Result<(LoadResult, ServerReport)> {
    let stop = Arc::new(AtomicBool::new(false));
    let marks = Marks::new();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let server_core = if case.same_core {
        opts.client_core
    } else {
        opts.server_core
    };
    let port = match case.server {
        ServerKind::Xdp { .. } => XDP_PORT,
        ServerKind::Kernel { .. } => KERNEL_PORT,
        ServerKind::Reflector => FLOOR_PORT,
    };
    let expect_conns = match case.client {
        ClientKind::KernelProcess { .. } => Some(case.workload.conns()),
        _ => None,
    };
    let server = {
        let stop = Arc::clone(&stop);
        let marks = Arc::clone(&marks);
        let ns = env.ns_stack.clone();
        let iface = env.if_stack.clone();
        let kind = case.server;
        let mode = case.mode;
        let ports = case.workload.server_ports(port);
        let shards = kernel::tables_for(case.workload.conns());
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || -> io::Result<ServerReport> {
                place_thread(Some(server_core), Some(&ns))?;
                let ready = move || {
                    let _ = ready_tx.send(());
                };
                match kind {
                    ServerKind::Xdp { idle_backoff } => {
                        let mut o = XdpOpts::new(&iface);
                        o.idle_backoff = idle_backoff;
                        o.ephemeral = xdp::no_ephemeral();
                        xdp::serve(
                            &o,
                            &ports,
                            mode,
                            Some(marks),
                            Some(server_core),
                            &stop,
                            ready,
                        )
                    }
                    ServerKind::Kernel { spin } => {
                        let o = kernel::ServeOpts {
                            spin,
                            core: Some(server_core),
                            marks: Some(marks),
                            expect_conns,
                            shards,
                        };
                        kernel::serve(&ports, mode, &o, &stop, ready)
                    }
                    ServerKind::Reflector => {
                        let o = XdpOpts::new(&iface);
                        let n = floor::reflect(&o, port, &stop, ready)?;
                        Ok(ServerReport {
                            bytes_in: n,
                            ..ServerReport::default()
                        })
                    }
                }
            })?
    };
    let finish_server =
        |stop: &AtomicBool, server: std::thread::JoinHandle<io::Result<ServerReport>>| {
            stop.store(true, Ordering::Relaxed);
            server
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
        };
    if ready_rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let r = finish_server(&stop, server);
        return Err(r
            .err()
            .unwrap_or_else(|| io::Error::other("server never became ready")));
    }
    let cfg = RunConfig {
        target: SocketAddrV4::new(env.ip_stack, port),
        workload: case.workload,
        warmup: opts.warmup,
        duration: opts.duration,
        progress: false,
        marks: Some(marks),
    };
    let client = {
        let ns = env.ns_peer.clone();
        let iface = env.if_peer.clone();
        let kind = case.client;
        let core = opts.client_core;
        std::thread::Builder::new()
            .name("bench-client".into())
            .spawn(move || -> io::Result<LoadResult> {
                place_thread(Some(core), Some(&ns))?;
                match kind {
                    ClientKind::Xdp => xdp::run_client(&cfg, &XdpOpts::new(&iface)),
                    ClientKind::Kernel { spin } => kernel::run_client(&cfg, spin),
                    ClientKind::KernelProcess { spin } => kernel_process(&cfg, spin, core, &ns),
                    ClientKind::Pinger => {
                        let size = match cfg.workload {
                            Workload::PingPong { size, .. } => size,
                            _ => 64,
                        };
                        floor::ping(&cfg, &XdpOpts::new(&iface), size)
                    }
                }
            })?
    };
    let client = client
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("client thread panicked")));
    let server = finish_server(&stop, server);
    let mut client = client?;
    let server = server?;
    client.backend = case.system.to_string();
    Ok((client, server))
}

/// Runs a kernel client as a child `xdp-tcp load` and reads its JSON result.
fn kernel_process(cfg: &RunConfig, spin: bool, core: usize, ns: &str) -> io::Result<LoadResult> {
    let Workload::Idle {
        idle,
        active,
        size,
        rate,
        ports,
    } = cfg.workload
    else {
        return Err(io::Error::other("only idle runs use a client process"));
    };
    let out = std::env::temp_dir().join(format!("xdp-tcp-load-{}.json", std::process::id()));
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["load", "--backend", "kernel", "--workload", "idle"])
        .args(["--idle", &idle.to_string(), "--active", &active.to_string()])
        .args(["--size", &size.to_string(), "--rate", &rate.to_string()])
        .args(["--ports", &ports.to_string()])
        .args(["--warmup", &cfg.warmup.as_secs_f64().to_string()])
        .args(["--duration", &cfg.duration.as_secs_f64().to_string()])
        .args([
            "--target",
            &cfg.target.to_string(),
            "--core",
            &core.to_string(),
        ])
        .args(["--netns", ns, "--json"])
        .arg(&out)
        .stdout(std::process::Stdio::null());
    if !spin {
        cmd.arg("--block");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(io::Error::other(format!("kernel client process: {status}")));
    }
    let text = std::fs::read_to_string(&out)?;
    let _ = std::fs::remove_file(&out);
    serde_json::from_str(&text).map_err(io::Error::other)
}

fn offloads(tb: &Testbed, env: &Env, o: Offloads) -> io::Result<()> {
    let (tx, seg, gro, segs) = match o {
        Offloads::Testbed => ("off", "off", "off", "1"),
        Offloads::NoTsoGso => ("on", "off", "off", "65535"),
        Offloads::Defaults => ("on", "on", "on", "65535"),
    };
    for (ns, ifname) in [("ns_stack", &env.if_stack), ("ns_peer", &env.if_peer)] {
        tb.exec(
            ns,
            &[
                "ethtool", "-K", ifname, "tx", tx, "tso", seg, "gso", seg, "gro", gro,
            ],
        )?;
        tb.exec(ns, &["ip", "link", "set", ifname, "gso_max_segs", segs])?;
    }
    Ok(())
}

fn matrix(opts: &BenchOpts) -> Vec<Case> {
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
    v.push(Case {
        offloads: Offloads::NoTsoGso,
        ..case(
            "bulk",
            "kernel",
            ServerKind::Kernel { spin: false },
            ClientKind::Kernel { spin: false },
            ServeMode::Discard,
            bulk,
        )
    });
    v.push(Case {
        offloads: Offloads::Defaults,
        ..case(
            "bulk",
            "kernel-offloads",
            ServerKind::Kernel { spin: false },
            ClientKind::Kernel { spin: false },
            ServeMode::Discard,
            bulk,
        )
    });
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
    for &n in &opts.idle_conns {
        let active = 1000;
        let idle = Workload::Idle {
            idle: n,
            active,
            size: 64,
            rate: 20_000,
            ports: super::idle_ports(n + active),
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
fn idle_row(n: usize) -> String {
    if n >= 1000 && n % 1000 == 0 {
        format!("idle{}k", n / 1000)
    } else {
        format!("idle{n}")
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one case over its rounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Medians {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub rate: Option<f64>,
    pub gbps: Option<f64>,
    pub core_busy: Option<f64>,
    /// CPU time of the server thread per second (user + system, which includes the softirq work
    /// done in its system calls).
    pub server_cpu: Option<f64>,
    pub per_core_rate: Option<f64>,
    pub bytes_per_idle_conn: Option<f64>,
}

fn medians(r: &CaseResult) -> Medians {
    let m = |f: &dyn Fn(&Run) -> Option<f64>| median(r.runs.iter().filter_map(f).collect());
    Medians {
        p50: m(&|x| x.client.latency.map(|l| l.p50)),
        p99: m(&|x| x.client.latency.map(|l| l.p99)),
        p999: m(&|x| x.client.latency.map(|l| l.p999)),
        rate: m(&|x| Some(x.client.rate)),
        gbps: m(&|x| Some(x.client.gbit_per_s)),
        core_busy: m(&|x| x.server.core_busy),
        server_cpu: m(&|x| x.server.thread_cpu),
        per_core_rate: m(&|x| x.server.thread_cpu.map(|b| x.client.rate / b.max(1e-3))),
        bytes_per_idle_conn: m(&|x| x.server.bytes_per_idle_conn),
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub workload: String,
    pub metric: String,
    pub ours: Option<f64>,
    pub other_system: String,
    pub other: Option<f64>,
    /// How many times better ours is (>1 = better), or ours/floor for the floor line.
    pub ratio: Option<f64>,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    /// The machine's own noise on the two cores, measured before the matrix.
    pub jitter: Vec<super::jitter::Jitter>,
    pub rounds: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub lines: Vec<Line>,
    pub medians: Vec<(String, String, Medians)>,
    pub cases: Vec<CaseResult>,
}

fn table(results: &[CaseResult]) -> (Vec<Line>, Vec<(String, String, Medians)>) {
    let med: Vec<(String, String, Medians)> = results
        .iter()
        .map(|r| {
            (
                r.case.row.to_string(),
                r.case.system.to_string(),
                medians(r),
            )
        })
        .collect();
    let get = |row: &str, sys: &str| {
        med.iter()
            .find(|(r, s, _)| r == row && s == sys)
            .map(|x| x.2.clone())
    };
    let mut lines = Vec::new();
    use Ratio::*;
    if let Some(x) = get("pingpong", "xdp-tcp") {
        let w = "64 B ping-pong, 1 conn";
        if let Some(f) = get("pingpong", "raw-af-xdp") {
            line(
                &mut lines,
                w,
                "p50 µs (ratio = ours/floor)",
                x.p50,
                "raw AF_XDP floor",
                f.p50,
                OursOver,
                "<= 1.3",
            );
            line(
                &mut lines,
                w,
                "round trips/s",
                x.rate,
                "raw AF_XDP floor",
                f.rate,
                Higher,
                "",
            );
        }
        if let Some(k) = get("pingpong", "kernel-spin") {
            line(
                &mut lines,
                w,
                "p50 µs",
                x.p50,
                "kernel busy-spin",
                k.p50,
                Lower,
                ">= 2x",
            );
            line(
                &mut lines,
                w,
                "p99 µs",
                x.p99,
                "kernel busy-spin",
                k.p99,
                Lower,
                "",
            );
            line(
                &mut lines,
                w,
                "round trips/s",
                x.rate,
                "kernel busy-spin",
                k.rate,
                Higher,
                "",
            );
        }
        if let Some(k) = get("pingpong", "kernel-block") {
            line(
                &mut lines,
                w,
                "p50 µs",
                x.p50,
                "kernel blocking, 2 cores",
                k.p50,
                Lower,
                ">= 5x",
            );
            line(
                &mut lines,
                w,
                "p99 µs",
                x.p99,
                "kernel blocking, 2 cores",
                k.p99,
                Lower,
                "",
            );
        }
        if let Some(k) = get("pingpong", "kernel-block-1core") {
            line(
                &mut lines,
                w,
                "p50 µs",
                x.p50,
                "kernel blocking, 1 core",
                k.p50,
                Lower,
                "",
            );
        }
    }
    if let (Some(x), Some(k)) = (get("rr64", "xdp-tcp"), get("rr64", "kernel-spin")) {
        let w = "64 B req/resp, 64 conns";
        line(
            &mut lines,
            w,
            "requests/s per server core",
            x.per_core_rate,
            "kernel busy-spin",
            k.per_core_rate,
            Higher,
            ">= 3x",
        );
        line(
            &mut lines,
            w,
            "requests/s",
            x.rate,
            "kernel busy-spin",
            k.rate,
            Higher,
            "",
        );
        line(
            &mut lines,
            w,
            "p99 µs",
            x.p99,
            "kernel busy-spin",
            k.p99,
            Lower,
            "",
        );
    }
    let pct = |v: Option<f64>| v.map(|b| b * 100.0);
    if let Some(x) = get("bulk", "xdp-tcp") {
        let w = "bulk upload, 1 conn, MTU 1500";
        if let Some(k) = get("bulk", "kernel") {
            line(
                &mut lines,
                w,
                "Gbit/s",
                x.gbps,
                "kernel, TSO/GSO off",
                k.gbps,
                Higher,
                ">= 1x",
            );
            line(
                &mut lines,
                w,
                "server thread CPU %",
                pct(x.core_busy),
                "kernel, TSO/GSO off",
                pct(k.core_busy),
                Lower,
                "",
            );
        }
        if let Some(k) = get("bulk", "kernel-offloads") {
            line(
                &mut lines,
                w,
                "Gbit/s",
                x.gbps,
                "kernel, offloads on",
                k.gbps,
                Higher,
                "report",
            );
            line(
                &mut lines,
                w,
                "server thread CPU %",
                pct(x.core_busy),
                "kernel, offloads on",
                pct(k.core_busy),
                Lower,
                "",
            );
        }
    }
    if let (Some(x), Some(k)) = (get("churn", "xdp-tcp"), get("churn", "kernel-spin")) {
        let w = "connect + 64 B req + close";
        line(
            &mut lines,
            w,
            "connections/s",
            x.rate,
            "kernel busy-spin",
            k.rate,
            Higher,
            ">= 5x",
        );
        line(
            &mut lines,
            w,
            "p99 µs (connect to response)",
            x.p99,
            "kernel busy-spin",
            k.p99,
            Lower,
            "",
        );
    }
    let mut idle_rows: Vec<&String> = results
        .iter()
        .filter(|r| matches!(r.case.workload, Workload::Idle { .. }))
        .map(|r| &r.case.row)
        .collect();
    idle_rows.dedup();
    for row in idle_rows {
        let Some(x) = get(row, "xdp-tcp") else {
            continue;
        };
        let n = results
            .iter()
            .find_map(|r| match r.case.workload {
                Workload::Idle { idle, .. } if &r.case.row == row => Some(idle),
                _ => None,
            })
            .unwrap_or(0);
        let w = if n >= 1000 {
            format!("{}k idle + 1k active @20k/s", n / 1000)
        } else {
            format!("{n} idle + 1k active @20k/s")
        };
        let kernel = get(row, "kernel-spin")
            .map(|k| (k, "kernel busy-spin".to_string()))
            .or_else(|| {
                get(row, "kernel-threads").map(|k| {
                    let t = kernel::tables_for(n + 1000);
                    (k, format!("kernel, {t} epoll threads"))
                })
            });
        if let Some((k, name)) = kernel {
            line(&mut lines, &w, "p99 µs", x.p99, &name, k.p99, Lower, "");
            if n > 0 {
                line(
                    &mut lines,
                    &w,
                    "bytes per idle conn",
                    x.bytes_per_idle_conn,
                    "kernel (slab+buffers)",
                    k.bytes_per_idle_conn,
                    Lower,
                    "report",
                );
            }
        }
        if let Some(one) = get("pingpong", "xdp-tcp") {
            line(
                &mut lines,
                &w,
                "p99 µs (ratio = this/1-conn p99)",
                x.p99,
                "xdp-tcp 1 conn ping-pong",
                one.p99,
                OursOver,
                "<= 1.2",
            );
        }
        if let (true, Some(none)) = (n > 0, get("idle0", "xdp-tcp")) {
            line(
                &mut lines,
                &w,
                "p99 µs (ratio = this/0-idle p99)",
                x.p99,
                "xdp-tcp, same load, 0 idle",
                none.p99,
                OursOver,
                "",
            );
        }
    }
    (lines, med)
}

#[derive(Clone, Copy)]
enum Ratio {
    /// other/ours: how many times lower (better) ours is.
    Lower,
    /// ours/other: how many times higher (better) ours is.
    Higher,
    /// ours/other where ours should stay close to the other (the floor, the 1-connection p99).
    OursOver,
}

#[allow(clippy::too_many_arguments)]
fn line(
    lines: &mut Vec<Line>,
    workload: &str,
    metric: &str,
    ours: Option<f64>,
    other_system: &str,
    other: Option<f64>,
    kind: Ratio,
    target: &str,
) {
    let ratio = match (ours, other) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(match kind {
            Ratio::Lower => b / a,
            Ratio::Higher | Ratio::OursOver => a / b,
        }),
        _ => None,
    };
    lines.push(Line {
        workload: workload.into(),
        metric: metric.into(),
        ours,
        other_system: other_system.into(),
        other,
        ratio,
        target: target.into(),
    });
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 100_000.0 => format!("{:.3}M", x / 1e6),
        Some(x) if x.abs() >= 1000.0 => format!("{:.1}k", x / 1e3),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// The human table.
pub fn render(lines: &[Line]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "| {:<32} | {:<34} | {:>9} | {:<26} | {:>9} | {:>6} | {:<7} |\n",
        "workload", "metric", "xdp-tcp", "compared with", "value", "ratio", "target"
    ));
    s.push_str(&format!(
        "|{}|{}|{}|{}|{}|{}|{}|\n",
        "-".repeat(34),
        "-".repeat(36),
        "-".repeat(11),
        "-".repeat(28),
        "-".repeat(11),
        "-".repeat(8),
        "-".repeat(9)
    ));
    for l in lines {
        s.push_str(&format!(
            "| {:<32} | {:<34} | {:>9} | {:<26} | {:>9} | {:>6} | {:<7} |\n",
            l.workload,
            l.metric,
            fmt(l.ours),
            l.other_system,
            fmt(l.other),
            l.ratio
                .map(|r| format!("{r:.2}x"))
                .unwrap_or_else(|| "-".into()),
            l.target
        ));
    }
    s
}

/// One line on the machine's noise, printed under the table.
pub fn jitter_line(j: &super::jitter::Jitter) -> String {
    format!(
        "machine noise, core {}: a spinning thread lost {:.2}% of {:.0} s to gaps > 5 µs ({} gaps), \
         {:.2}% to gaps > 100 µs ({}); longest {:.0} µs",
        j.core,
        j.lost_over_5us * 100.0,
        j.seconds,
        j.gaps_over_5us,
        j.lost_over_100us * 100.0,
        j.gaps_over_100us,
        j.longest_us
    )
}

fn machine() -> String {
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpus} vCPU {cpu}, Linux {uname}")
}

/// Runs the whole benchmark; prints progress to stderr and the table to stdout.
pub fn run(opts: &BenchOpts) -> io::Result<Report> {
    super::sys::raise_nofile();
    let tb = Testbed::up(&opts.testbed_script, &opts.name)?;
    let env = Env {
        ns_stack: tb.get("ns_stack")?,
        ns_peer: tb.get("ns_peer")?,
        if_stack: tb.get("if_stack")?,
        if_peer: tb.get("if_peer")?,
        ip_stack: tb
            .get("ip_stack")?
            .parse()
            .map_err(|e| io::Error::other(format!("ip_stack: {e}")))?,
    };
    // Room for the idle-connection and churn rows: a deep accept queue on the server, and the
    // kernel client's ports from the same range the xdp-tcp client uses.
    tb.exec("ns_stack", &["sysctl", "-qw", "net.core.somaxconn=65535"])?;
    tb.exec(
        "ns_stack",
        &["sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=65535"],
    )?;
    tb.exec(
        "ns_peer",
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"],
    )?;

    let jitter = super::jitter::measure(
        &[opts.server_core, opts.client_core],
        Duration::from_secs(1),
    )?;
    for j in &jitter {
        eprintln!("{}", jitter_line(j));
    }
    let mut cases = matrix(opts);
    if !opts.only.is_empty() {
        cases.retain(|c| opts.only.iter().any(|o| c.row.starts_with(o.as_str())));
    }
    let mut results: Vec<CaseResult> = cases
        .iter()
        .map(|c| CaseResult {
            case: c.clone(),
            runs: Vec::new(),
        })
        .collect();
    let started = std::time::Instant::now();
    for round in 0..opts.rounds {
        for (i, case) in cases.iter().enumerate() {
            if case.offloads != Offloads::Testbed {
                offloads(&tb, &env, case.offloads)?;
            }
            let r = run_case(&env, opts, case);
            if case.offloads != Offloads::Testbed {
                offloads(&tb, &env, Offloads::Testbed)?;
            }
            let (client, server) = r.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{} / {} (round {}): {e}", case.row, case.system, round + 1),
                )
            })?;
            let lat = client
                .latency
                .map(|l| format!("p50 {:.1} µs p99 {:.1} µs", l.p50, l.p99))
                .unwrap_or_default();
            eprintln!(
                "[{:5.1} s] round {} {:<8} {:<18} {:>10.0}/s {:>6.2} Gbit/s {lat}{}",
                started.elapsed().as_secs_f64(),
                round + 1,
                case.row,
                case.system,
                client.rate,
                client.gbit_per_s,
                server
                    .thread_cpu
                    .map(|b| format!(" server CPU {:.0}%", b * 100.0))
                    .unwrap_or_default()
            );
            results[i].runs.push(Run {
                round,
                client,
                server,
            });
        }
    }
    drop(tb);
    let (lines, medians) = table(&results);
    let report = Report {
        machine: machine(),
        jitter,
        rounds: opts.rounds,
        warmup_s: opts.warmup.as_secs_f64(),
        duration_s: opts.duration.as_secs_f64(),
        lines,
        medians,
        cases: results,
    };
    if let Some(path) = &opts.json {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).map_err(io::Error::other)?,
        )?;
    }
    Ok(report)
}
