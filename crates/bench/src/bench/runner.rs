//! One run of one case: its server on a thread in the stack's namespace pinned to the server
//! core, its client on a thread (or, for idle rows on the kernel, a child process) in the peer's
//! namespace pinned to the client core, and the kernel offloads the case asks for.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::matrix::{Case, ClientKind, Offloads, ServerKind};
use super::{BenchOpts, Testbed};
use crate::sys::place_thread;
use crate::xdp::XdpOpts;
use crate::{floor, kernel, xdp, LoadResult, Marks, RunConfig, ServerReport, Workload};

/// The ports of the three kinds of server, kept apart so one's leftovers (TIME-WAIT) never meet
/// another.
const XDP_PORT: u16 = 7000;
const KERNEL_PORT: u16 = 7001;
const FLOOR_PORT: u16 = 7002;
const EXTERNAL_PORT: u16 = 7003;

/// Where the testbed put the two ends.
pub(super) struct Env {
    pub(super) ns_stack: String,
    pub(super) ns_peer: String,
    pub(super) if_stack: String,
    pub(super) if_peer: String,
    pub(super) ip_stack: Ipv4Addr,
}

/// Runs `case` once: starts its server, runs its client to the end, stops the server.
pub(super) fn run_case(
    env: &Env,
    opts: &BenchOpts,
    case: &Case,
) -> io::Result<(LoadResult, ServerReport)> {
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
        ServerKind::External { .. } => EXTERNAL_PORT,
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
        let engines = case.engines;
        let shards = kernel::tables_for(case.workload.conns()).max(engines);
        // one server engine (or epoll thread) per core: the server's, then the client's
        let cores: Vec<usize> = [server_core, opts.client_core]
            .into_iter()
            .cycle()
            .take(engines)
            .collect();
        let external = opts.external.clone();
        std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || -> io::Result<ServerReport> {
                place_thread(Some(server_core), Some(&ns))?;
                let ready = move || {
                    let _ = ready_tx.send(());
                };
                match kind {
                    ServerKind::Xdp { idle_backoff } if engines > 1 => {
                        let mut o = XdpOpts::new(&iface);
                        o.idle_backoff = idle_backoff;
                        o.ephemeral = xdp::no_ephemeral();
                        xdp::serve_queues(
                            &o,
                            &ports,
                            mode,
                            Some(engines as u32),
                            Some(cores),
                            Some(marks),
                            &stop,
                            ready,
                        )
                    }
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
                            shard_cores: if engines > 1 { cores } else { Vec::new() },
                        };
                        kernel::serve(&ports, mode, &o, &stop, ready)
                    }
                    ServerKind::External { index } => {
                        let cmd = &external[index].1;
                        external_server(cmd, &iface, port, server_core, &stop, ready)
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

/// Sets the offloads of both veth ends.
pub(super) fn offloads(tb: &Testbed, env: &Env, o: Offloads) -> io::Result<()> {
    let (tx, seg, gro, segs) = match o {
        Offloads::Testbed => ("off", "off", "off", "1"),
        Offloads::NoTsoGso => ("on", "off", "off", "65535"),
        Offloads::Checksums => ("off", "off", "off", "65535"),
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

/// Runs another stack's server (`cmd` through `sh -c`) from this thread, which is in the stack's
/// namespace on the server core, so the child is too; `ready` once it prints `ready`, SIGTERM
/// once `stop` is set (SIGKILL if it has not exited 5 s later).
fn external_server(
    cmd: &str,
    iface: &str,
    port: u16,
    core: usize,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<ServerReport> {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    // its own process group, signalled as a whole: `sh` may not exec the command
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .process_group(0)
        .env("XDP_IFACE", iface)
        .env("XDP_PORT", port.to_string())
        .env("XDP_CORE", core.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let out = child.stdout.take().expect("piped");
    let mut line = String::new();
    let mut lines = io::BufReader::new(out);
    while line.trim() != "ready" {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            return Err(io::Error::other(format!(
                "external server `{cmd}` exited ({status}) before printing `ready`"
            )));
        }
    }
    ready();
    while !stop.load(Ordering::Relaxed) {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "external server `{cmd}` exited during the run ({status})"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // kill(1), not libc: no unsafe code for a signal to our own (not yet waited for) child
    Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status()?;
    for _ in 0..500 {
        if child.try_wait()?.is_some() {
            return Ok(ServerReport::default());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    child.wait()?;
    Err(io::Error::other(format!(
        "external server `{cmd}` ignored SIGTERM for 5 s"
    )))
}
