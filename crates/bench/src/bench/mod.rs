//! The side-by-side benchmark (the README's main job): sets up the veth testbed, runs every
//! workload of the matrix on xdp-tcp, on the Linux kernel and (for ping-pong) on raw AF_XDP,
//! server pinned to one core and client to the other, alternating the systems over several
//! rounds, and prints one table of medians and ratios. Exits with an error only when something
//! fails, never because a figure is slow.
//!
//! Everything runs in this process: the server on a thread that entered the stack's namespace,
//! the client on a thread in the peer's namespace. Each run starts its own server and removes it
//! again (XDP programs detach when their link closes), so the systems never overlap.
//!
//! The pieces: [`matrix`] (what runs), `runner.rs` (one run), [`table`] (medians, the
//! comparisons as data and the rendered table); [`Report`] is also the JSON file
//! `deploy/plot.py` reads.

pub mod matrix;
mod runner;
pub mod table;

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::jitter::Jitter;
use matrix::{CaseResult, Offloads, Run};
use runner::{offloads, run_case, Env};
pub use table::{jitter_line, render, Line, Medians};

pub use xdp_tcp_testbed::Testbed;

/// What `xdp-tcp bench` runs and how (its command-line options).
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
    /// Other stacks' echo servers to measure against the same kernel client (the
    /// `pingpong-kc` row): (system name, shell command). See [`matrix::ServerKind::External`].
    pub external: Vec<(String, String)>,
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
            external: Vec::new(),
        }
    }
}

/// Everything a benchmark measured: what the table shows, and the JSON file it writes, which
/// `deploy/plot.py` reads (`machine`, `cases[].case.row` and `.system`,
/// `cases[].runs[].client.latency.p50` and `.curve`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    /// The machine's own noise on the two cores, measured before the matrix.
    pub jitter: Vec<Jitter>,
    pub rounds: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub lines: Vec<Line>,
    pub medians: Vec<(String, String, Medians)>,
    pub cases: Vec<CaseResult>,
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

/// Where `tb` put the two ends, with room for the idle-connection and churn rows: a deep accept
/// queue on the server, and the kernel client's ports from the same range the xdp-tcp client
/// uses.
fn prepare(tb: &Testbed) -> io::Result<Env> {
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
    tb.exec("ns_stack", &["sysctl", "-qw", "net.core.somaxconn=65535"])?;
    tb.exec(
        "ns_stack",
        &["sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=65535"],
    )?;
    tb.exec(
        "ns_peer",
        &["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 65000"],
    )?;
    Ok(env)
}

/// Whether `--only` entry `only` selects `row`: the row it names, or, when it names none of
/// `rows` exactly, every row it begins (`idle` for idle0, idle10k and idle100k; `rr64` is only
/// rr64, not rr64-2e).
fn selects(only: &str, row: &str, rows: &[&str]) -> bool {
    if rows.contains(&only) {
        row == only
    } else {
        row.starts_with(only)
    }
}

/// Runs the whole benchmark; prints progress to stderr and the table to stdout.
pub fn run(opts: &BenchOpts) -> io::Result<Report> {
    crate::sys::raise_nofile();
    let mut cases = matrix::matrix(opts);
    if !opts.only.is_empty() {
        let rows: Vec<String> = cases.iter().map(|c| c.row.clone()).collect();
        let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
        cases.retain(|c| opts.only.iter().any(|o| selects(o, &c.row, &rows)));
    }
    let tb = Testbed::up(&opts.testbed_script, &opts.name)?;
    let env = prepare(&tb)?;
    // The multi-engine rows' testbed: a veth with one queue per engine (at most 2 engines).
    let multi = match cases.iter().map(|c| c.engines).max() {
        Some(n) if n > 1 => {
            let tb =
                Testbed::up_queues(&opts.testbed_script, &format!("{}{n}", opts.name), n as u32)?;
            let env = prepare(&tb)?;
            Some((tb, env))
        }
        _ => None,
    };

    let jitter = crate::jitter::measure(
        &[opts.server_core, opts.client_core],
        Duration::from_secs(1),
    )?;
    for j in &jitter {
        eprintln!("{}", jitter_line(j));
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
            let (tb, env) = match &multi {
                Some((tb, env)) if case.engines > 1 => (tb, env),
                _ => (&tb, &env),
            };
            if case.offloads != Offloads::Testbed {
                offloads(tb, env, case.offloads)?;
            }
            let r = run_case(env, opts, case);
            if case.offloads != Offloads::Testbed {
                offloads(tb, env, Offloads::Testbed)?;
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
    drop(multi);
    drop(tb);
    let (lines, medians) = table::table(&results);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadResult, ServerReport, Summary};
    use serde_json::json;

    /// A report of the ping-pong case of xdp-tcp and of the floor, one round each.
    fn report() -> Report {
        let quick = BenchOpts {
            quick: true,
            ..BenchOpts::default()
        };
        let results: Vec<CaseResult> = matrix::matrix(&quick)
            .into_iter()
            .filter(|c| c.system == "xdp-tcp" || c.system == "raw-af-xdp")
            .map(|case| CaseResult {
                runs: vec![Run {
                    round: 0,
                    client: LoadResult {
                        backend: case.system.into(),
                        rate: 1000.0,
                        latency: Some(Summary {
                            p50: 4.5,
                            p99: 9.0,
                            ..Summary::default()
                        }),
                        curve: vec![(50.0, 4.5), (99.0, 9.0)],
                        ..LoadResult::default()
                    },
                    server: ServerReport {
                        core_busy: Some(1.0),
                        ..ServerReport::default()
                    },
                }],
                case,
            })
            .collect();
        let (lines, medians) = table::table(&results);
        Report {
            machine: "2 vCPU test".into(),
            jitter: Vec::new(),
            rounds: 1,
            warmup_s: 0.5,
            duration_s: 2.0,
            lines,
            medians,
            cases: results,
        }
    }

    #[test]
    fn json_keeps_the_shape_plot_py_and_earlier_results_have() {
        let v = serde_json::to_value(report()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = [
            "machine",
            "jitter",
            "rounds",
            "warmup_s",
            "duration_s",
            "lines",
            "medians",
            "cases",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        let floor = &v["cases"][0];
        assert_eq!(
            floor["case"],
            json!({"row": "pingpong", "system": "raw-af-xdp", "server": "reflector",
                   "client": "pinger", "mode": "echo",
                   "workload": {"kind": "ping_pong", "size": 64, "conns": 1, "depth": 1},
                   "same_core": false, "offloads": "testbed"})
        );
        let ours = &v["cases"][1];
        assert_eq!(
            ours["case"]["server"],
            json!({"xdp": {"idle_backoff": false}})
        );
        assert_eq!(ours["case"]["client"], "xdp");
        let run = &ours["runs"][0];
        assert_eq!(run["round"], 0);
        assert_eq!(run["client"]["latency"]["p50"], 4.5);
        assert_eq!(run["client"]["curve"], json!([[50.0, 4.5], [99.0, 9.0]]));
        assert_eq!(run["server"]["core_busy"], 1.0);
        assert_eq!(run["server"]["idle_conns"], json!(null));
        assert_eq!(v["medians"][1][0], "pingpong");
        assert_eq!(v["medians"][1][1], "xdp-tcp");
        assert_eq!(v["medians"][1][2]["p50"], 4.5);
        assert_eq!(
            v["lines"][0],
            json!({"workload": "64 B ping-pong, 1 conn", "metric": "p50 µs (ratio = ours/floor)",
                   "ours": 4.5, "other_system": "raw AF_XDP floor", "other": 4.5,
                   "ratio": 1.0, "target": "<= 1.3"})
        );
    }

    #[test]
    fn a_client_result_survives_the_child_process_json() {
        // The kernel client of idle rows runs as `xdp-tcp load --json` and is read back.
        let r = &report().cases[1].runs[0].client;
        let back: LoadResult = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(r).unwrap()
        );
    }
}

#[cfg(test)]
mod only_tests {
    use super::selects;

    #[test]
    fn only_names_a_row_exactly_or_a_family_by_prefix() {
        let rows = [
            "rr64", "rr64-2e", "churn", "churn-2e", "idle0", "idle10k", "idle100k",
        ];
        let pick = |o: &str| -> Vec<&str> {
            rows.iter()
                .copied()
                .filter(|r| selects(o, r, &rows))
                .collect()
        };
        assert_eq!(pick("rr64"), ["rr64"]);
        assert_eq!(pick("rr64-2e"), ["rr64-2e"]);
        assert_eq!(pick("churn"), ["churn"]);
        assert_eq!(pick("idle"), ["idle0", "idle10k", "idle100k"]);
        assert_eq!(pick("idle10"), ["idle10k", "idle100k"]);
        assert!(pick("bulk").is_empty());
    }
}
