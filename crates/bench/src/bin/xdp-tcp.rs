//! `xdp-tcp`: the command-line tool. `serve` and `load` on either back-end (the Linux kernel or
//! xdp-tcp on AF_XDP), the raw AF_XDP floor, and `bench`, the side-by-side benchmark.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xdp_tcp_bench::alloc::CountingAlloc;
use xdp_tcp_bench::bench::{self, BenchOpts};
use xdp_tcp_bench::sys::{place_thread, stop_on_signals};
use xdp_tcp_bench::xdp::XdpOpts;
use xdp_tcp_bench::{floor, kernel, xdp, LoadResult, RunConfig, ServeMode, Workload};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "\
usage:
  xdp-tcp serve --backend xdp|kernel --port P [--ports N] [--shards N] [--mode echo|discard|source|echo-close=N]
                [--iface IF] [--block] [--idle-after N] [--core C] [--netns NS] [--duration S]
                [--queues N] [--cores LIST]   (xdp: one engine per queue, by default every
                receive queue of the device; engine i on LIST[i])
  xdp-tcp load  --backend xdp|kernel --target IP:PORT [--workload pingpong|openloop|bulk|churn|idle]
                [--size 64] [--conns 1] [--depth 1] [--rate R] [--idle N] [--active N] [--ports N]
                [--download] [--duration 5] [--warmup 1] [--iface IF] [--block]
                [--core C] [--netns NS] [--json FILE]
  xdp-tcp load  --workload synflood --target IP:PORT --subnet NET/LEN [--count 100000]
                [--rate 100000] [--batch 64] [--seed S] [--netns NS]   (spoofed SYNs, raw socket)
                [--via xdp --iface IF --dst-mac MAC --netns NS]  (sent by an XDP program out of IF)
  xdp-tcp floor reflect --iface IF --port P [--core C] [--netns NS] [--duration S]
  xdp-tcp floor ping    --iface IF --target IP:PORT [--size 64] [--duration 5] [--warmup 1] ...
  xdp-tcp bench [--rounds 3] [--duration 2] [--warmup 0.5] [--idle 0,10000,100000] [--quick]
                [--json FILE] [--testbed-script deploy/testbed.sh] [--name xtbench]
                [--only pingpong,rr64,bulk,churn,rr64-2e,churn-2e,idle] [--external 'NAME=COMMAND;...']
  xdp-tcp stat PATH [--json | --prometheus] [--watch [--count N]]
  xdp-tcp pcap PATH --start FILE [--snaplen N] [--max-bytes N] [--max-packets N] | --stop | --status

The xdp back-end needs root; --iface is the interface it attaches to (in --netns if given).
Kernel servers and clients busy-spin unless --block. --shards N runs a kernel server as N epoll
threads sharing the ports (SO_REUSEPORT), each with a descriptor table of its own, for more
connections than the open-file limit allows one table. An xdp server with --block sleeps in poll
after 256 empty iterations in a row, or after --idle-after N (which implies --block). `stat` asks
the control socket of a stack started with `.control_socket(PATH)`: connections as `ss -tinm`
prints them and non-zero counters as `nstat` does, or JSON, or Prometheus text; --watch repeats
once a second (--count times). `pcap` switches a capture of every frame the stack receives and
sends on (--start: a new classic pcap file, written by a thread of the stack, ending by itself at
--max-bytes or --max-packets) and off (--stop), through the same socket. `bench --external` adds other stacks' echo servers to the row
`pingpong-kc` (the same spinning kernel client against xdp-tcp's server and each of them): each
COMMAND runs through `sh -c` in the stack's namespace on the server core with XDP_IFACE,
XDP_PORT and XDP_CORE set, prints `ready` once it serves, and exits on SIGTERM. The result of `load` is printed as a table
and, with --json, written as JSON (\"-\" for stdout).";

struct Args {
    pos: Vec<String>,
    kv: HashMap<String, String>,
}

impl Args {
    fn parse(raw: impl Iterator<Item = String>) -> Result<Args, String> {
        let raw: Vec<String> = raw.collect();
        // `stat` takes --json as a switch; `load` and `bench` take --json FILE
        let stat_flags: &[&str] = match raw.first().map(String::as_str) {
            Some("stat") => &["json", "prometheus", "watch"],
            Some("pcap") => &["stop", "status"],
            _ => &[],
        };
        let flags = ["block", "download", "quick"];
        let mut pos = Vec::new();
        let mut kv = HashMap::new();
        let mut it = raw.into_iter().peekable();
        while let Some(a) = it.next() {
            if let Some(k) = a.strip_prefix("--") {
                if flags.contains(&k) || stat_flags.contains(&k) {
                    kv.insert(k.to_string(), "1".to_string());
                } else {
                    let v = it.next().ok_or(format!("--{k} needs a value"))?;
                    kv.insert(k.to_string(), v);
                }
            } else {
                pos.push(a);
            }
        }
        Ok(Args { pos, kv })
    }

    fn get<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.kv.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{k} {v}: {e}")),
        }
    }

    fn need(&self, k: &str) -> Result<String, String> {
        self.kv.get(k).cloned().ok_or(format!("--{k} is required"))
    }

    fn flag(&self, k: &str) -> bool {
        self.kv.contains_key(k)
    }

    fn secs(&self, k: &str, default: f64) -> Result<Duration, String> {
        Ok(Duration::from_secs_f64(self.get(k, default)?))
    }

    fn core(&self) -> Result<Option<usize>, String> {
        self.kv
            .get("core")
            .map(|v| v.parse().map_err(|e| format!("--core {v}: {e}")))
            .transpose()
    }
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xdp-tcp: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.pos.first().map(String::as_str) {
        Some("serve") => serve(&args),
        Some("load") => load(&args),
        Some("floor") => floor_cmd(&args),
        Some("bench") => bench_cmd(&args),
        Some("stat") => stat_cmd(&args),
        Some("pcap") => pcap_cmd(&args),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xdp-tcp: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `xdp-tcp stat PATH`: one answer, or one a second with --watch.
fn stat_cmd(args: &Args) -> Result<(), String> {
    use xdp_tcp_bench::stat::{fetch, parse, render, Format};
    let path = PathBuf::from(
        args.pos
            .get(1)
            .ok_or("stat needs the control socket's PATH")?,
    );
    let format = match (args.flag("json"), args.flag("prometheus")) {
        (true, true) => return Err("--json or --prometheus, not both".into()),
        (true, false) => Format::Json,
        (false, true) => Format::Prometheus,
        (false, false) => Format::Text,
    };
    let watch = args.flag("watch");
    let count: u64 = args.get("count", if watch { u64::MAX } else { 1 })?;
    let interval = args.secs("interval", 1.0)?;
    for i in 0..count {
        if i > 0 {
            std::thread::sleep(interval);
        }
        let raw = fetch(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let out = render(&parse(&raw)?, format);
        if watch && format == Format::Text {
            // clear the terminal, as `watch` does
            print!("\x1b[H\x1b[2J");
        }
        print!("{out}");
        use std::io::Write as _;
        io::stdout().flush().map_err(err)?;
    }
    Ok(())
}

/// `xdp-tcp pcap PATH --start FILE | --stop | --status`: one request, its answer printed.
fn pcap_cmd(args: &Args) -> Result<(), String> {
    use xdp_tcp_bench::stat::{pcap_request, request};
    let path = PathBuf::from(
        args.pos
            .get(1)
            .ok_or("pcap needs the control socket's PATH")?,
    );
    let line = match (args.kv.get("start"), args.flag("stop"), args.flag("status")) {
        (Some(file), false, false) => {
            // the stack may run elsewhere in the file system's view: send an absolute path
            let file = std::path::absolute(file).map_err(|e| format!("{file}: {e}"))?;
            let line = format!(
                "pcap start {} {} {} {}",
                args.get("snaplen", 262_144u32)?,
                args.get("max-bytes", 0u64)?,
                args.get("max-packets", 0u64)?,
                file.display()
            );
            if line.contains('\n') {
                return Err("the file name holds a newline".into());
            }
            line
        }
        (None, true, false) => "pcap stop".to_string(),
        (None, false, _) => "pcap status".to_string(),
        _ => return Err("one of --start FILE, --stop, --status".into()),
    };
    let raw = request(&path, &line).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("{}", pcap_request(&raw)?);
    Ok(())
}

fn err(e: io::Error) -> String {
    e.to_string()
}

/// Runs `f` on a thread placed on the requested core and namespace.
fn placed<T: Send + 'static>(
    args: &Args,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let core = args.core()?;
    let ns = args.kv.get("netns").cloned();
    std::thread::spawn(move || {
        place_thread(core, ns.as_deref()).map_err(err)?;
        f()
    })
    .join()
    .map_err(|_| "worker thread panicked".to_string())?
}

fn serve(args: &Args) -> Result<(), String> {
    let backend = args.need("backend")?;
    let port: u16 = args
        .need("port")?
        .parse()
        .map_err(|e| format!("--port: {e}"))?;
    let mode: ServeMode = args.get("mode", ServeMode::Echo)?;
    let nports: u16 = args.get("ports", 1u16)?;
    let ports: Vec<u16> = (0..nports.max(1)).map(|i| port + i).collect();
    let stop = stop_flag(args)?;
    let core = args.core()?;
    let block = args.flag("block");
    let shards: usize = args.get("shards", 1usize)?;
    let iface = args.kv.get("iface").cloned();
    let idle_after: u32 = args.get("idle-after", 256u32)?;
    let idle_given = args.kv.contains_key("idle-after");
    let queues: Option<u32> = args
        .kv
        .get("queues")
        .map(|v| v.parse().map_err(|e| format!("--queues {v}: {e}")))
        .transpose()?;
    let cores = args.kv.get("cores").map(|v| parse_cores(v)).transpose()?;
    let multi = queues.is_some() || cores.is_some();
    let report = placed(args, move || {
        let ready = move || eprintln!("serving on port {port} ({mode:?})");
        match backend.as_str() {
            "xdp" => {
                let iface = iface.ok_or("--iface is required for the xdp back-end")?;
                let mut o = XdpOpts::new(&iface);
                o.ephemeral = xdp::no_ephemeral();
                o.idle_backoff = block || idle_given;
                o.idle_after = idle_after;
                // One engine per receive queue of the device by default, as `Stack` does: an
                // engine on queue 0 alone would leave the flows the device puts on the other
                // queues to the kernel, which refuses them.
                let device = xdp_tcp::io::ethtool::rx_queues(&iface)
                    .map_err(|e| format!("{iface}: receive queues: {e}"))?;
                if multi || device > 1 {
                    xdp::serve_queues(&o, &ports, mode, queues, cores, None, stop, ready)
                        .map_err(err)
                } else {
                    xdp::serve(&o, &ports, mode, None, core, stop, ready).map_err(err)
                }
            }
            "kernel" => {
                let o = kernel::ServeOpts {
                    spin: !block,
                    core,
                    marks: None,
                    expect_conns: None,
                    shards,
                    shard_cores: Vec::new(),
                };
                kernel::serve(&ports, mode, &o, stop, ready).map_err(err)
            }
            b => Err(format!("unknown back-end {b}")),
        }
    })?;
    eprintln!(
        "accepted {} connections, {} bytes in, {} bytes out",
        report.accepted, report.bytes_in, report.bytes_out
    );
    if let (Some(it), Some(empty)) = (report.iterations, report.empty_iterations) {
        eprintln!("engine iterations {it}, empty {empty}");
    }
    Ok(())
}

/// A core list: `0,1`, `2-5`, or both (`0,2-3`).
fn parse_cores(v: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("--cores {v}: {e}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("--cores {v}: {a}-{b} is empty"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(format!("--cores {v}: no core"));
    }
    Ok(out)
}

fn workload(args: &Args) -> Result<Workload, String> {
    let size = args.get("size", 64usize)?;
    let conns = args.get("conns", 1usize)?;
    Ok(
        match args.get("workload", "pingpong".to_string())?.as_str() {
            "pingpong" => Workload::PingPong {
                size,
                conns,
                depth: args.get("depth", 1usize)?,
            },
            "openloop" => Workload::OpenLoop {
                size,
                conns,
                rate: args.get("rate", 10_000u64)?,
            },
            "bulk" => Workload::Bulk {
                conns,
                upload: !args.flag("download"),
            },
            "churn" => Workload::Churn {
                size,
                concurrency: conns,
                ports: args.get("ports", 1u16)?,
            },
            "idle" => {
                let idle = args.get("idle", 10_000usize)?;
                let active = args.get("active", 1000usize)?;
                Workload::Idle {
                    idle,
                    active,
                    size,
                    rate: args.get("rate", 20_000u64)?,
                    ports: args.get("ports", xdp_tcp_bench::idle_ports(idle + active))?,
                }
            }
            w => return Err(format!("unknown workload {w}")),
        },
    )
}

fn print_result(r: &LoadResult, json: Option<&String>) -> Result<(), String> {
    println!("{} | {} | {:.1} s", r.backend, r.workload, r.seconds);
    println!(
        "  completed {}  ({:.0}/s)   {:.3} Gbit/s   connections {}   errors {}",
        r.completed, r.rate, r.gbit_per_s, r.connections, r.errors
    );
    if let Some(l) = &r.latency {
        println!(
            "  latency µs: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  p99.99 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
        );
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))?;
        }
    }
    Ok(())
}

fn run_config(args: &Args, workload: Workload) -> Result<RunConfig, String> {
    let target: SocketAddrV4 = args
        .need("target")?
        .parse()
        .map_err(|e| format!("--target: {e}"))?;
    Ok(RunConfig {
        target,
        workload,
        warmup: args.secs("warmup", 1.0)?,
        duration: args.secs("duration", 5.0)?,
        progress: true,
        marks: None,
    })
}

fn synflood(args: &Args) -> Result<(), String> {
    let target: SocketAddrV4 = args
        .need("target")?
        .parse()
        .map_err(|e| format!("--target: {e}"))?;
    let subnet = args.need("subnet")?;
    let (net, len) = subnet.split_once('/').ok_or("--subnet: NET/LEN expected")?;
    let cfg = xdp_tcp_bench::synflood::FloodConfig {
        target,
        subnet: (
            net.parse().map_err(|e| format!("--subnet: {e}"))?,
            len.parse().map_err(|e| format!("--subnet: {e}"))?,
        ),
        count: args.get("count", 100_000u64)?,
        rate: args.get("rate", 100_000u64)?,
        seed: args.get("seed", 1u64)?,
        batch: args.get("batch", xdp_tcp_bench::synflood::MAX_BATCH)?,
    };
    let via = args.kv.get("via").map(String::as_str).unwrap_or("raw");
    let r = match via {
        "raw" => placed(args, move || {
            xdp_tcp_bench::synflood::run(&cfg).map_err(err)
        })?,
        "xdp" => {
            // the program is attached to the namespace's loopback while it runs: only in a
            // namespace made for the test, never the machine's own
            args.need("netns")
                .map_err(|_| "--via xdp needs --netns NS (a namespace your test created)")?;
            let iface = args.need("iface")?;
            let dst = args.need("dst-mac")?;
            let dst = xdp_tcp_bench::synflood::parse_mac(&dst)
                .ok_or_else(|| format!("--dst-mac {dst}: aa:bb:cc:dd:ee:ff expected"))?;
            placed(args, move || {
                let dev = xdp_tcp_bench::synflood::XdpDevice::lookup(&iface, dst).map_err(err)?;
                xdp_tcp_bench::synflood::run_xdp(&cfg, &dev).map_err(err)
            })?
        }
        other => return Err(format!("--via {other}: raw or xdp")),
    };
    println!(
        "synflood | {} SYNs in {:.3} s ({:.0}/s), {} refused by the kernel",
        r.sent, r.seconds, r.rate, r.send_errors
    );
    Ok(())
}

fn load(args: &Args) -> Result<(), String> {
    if args.kv.get("workload").map(String::as_str) == Some("synflood") {
        return synflood(args);
    }
    let backend = args.need("backend")?;
    let cfg = run_config(args, workload(args)?)?;
    let block = args.flag("block");
    let iface = args.kv.get("iface").cloned();
    let r = placed(args, move || match backend.as_str() {
        "xdp" => {
            let iface = iface.ok_or("--iface is required for the xdp back-end")?;
            xdp::run_client(&cfg, &XdpOpts::new(&iface)).map_err(err)
        }
        "kernel" => kernel::run_client(&cfg, !block).map_err(err),
        b => Err(format!("unknown back-end {b}")),
    })?;
    print_result(&r, args.kv.get("json"))
}

fn floor_cmd(args: &Args) -> Result<(), String> {
    let iface = args.need("iface")?;
    match args.pos.get(1).map(String::as_str) {
        Some("reflect") => {
            let port: u16 = args
                .need("port")?
                .parse()
                .map_err(|e| format!("--port: {e}"))?;
            let stop = stop_flag(args)?;
            let n = placed(args, move || {
                floor::reflect(&XdpOpts::new(&iface), port, stop, || {
                    eprintln!("reflecting port {port}")
                })
                .map_err(err)
            })?;
            eprintln!("bounced {n} frames");
            Ok(())
        }
        Some("ping") => {
            let size = args.get("size", 64usize)?;
            let cfg = run_config(
                args,
                Workload::PingPong {
                    size,
                    conns: 1,
                    depth: 1,
                },
            )?;
            let r = placed(args, move || {
                floor::ping(&cfg, &XdpOpts::new(&iface), size).map_err(err)
            })?;
            print_result(&r, args.kv.get("json"))
        }
        _ => Err("floor reflect|ping".into()),
    }
}

/// Set on SIGINT/SIGTERM, and after `--duration` seconds when given.
fn stop_flag(args: &Args) -> Result<&'static std::sync::atomic::AtomicBool, String> {
    let stop = stop_on_signals();
    if let Some(d) = args.kv.get("duration") {
        let d: f64 = d.parse().map_err(|e| format!("--duration: {e}"))?;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(d));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }
    Ok(stop)
}

fn bench_opts(args: &Args) -> Result<BenchOpts, String> {
    let d = BenchOpts::default();
    Ok(BenchOpts {
        rounds: args.get("rounds", d.rounds)?,
        warmup: args.secs("warmup", d.warmup.as_secs_f64())?,
        duration: args.secs("duration", d.duration.as_secs_f64())?,
        testbed_script: args.get("testbed-script", d.testbed_script.clone())?,
        name: args.get("name", d.name.clone())?,
        idle_conns: match args.kv.get("idle") {
            None => d.idle_conns.clone(),
            Some(v) => v
                .split(',')
                .map(|n| n.parse().map_err(|e| format!("--idle {v}: {e}")))
                .collect::<Result<_, _>>()?,
        },
        json: args.kv.get("json").map(PathBuf::from),
        quick: args.flag("quick"),
        only: args
            .kv
            .get("only")
            .map(|o| o.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        external: match args.kv.get("external") {
            None => Vec::new(),
            Some(v) => v
                .split(';')
                .map(|e| {
                    e.split_once('=')
                        .map(|(n, c)| (n.trim().to_string(), c.to_string()))
                        .filter(|(n, c)| !n.is_empty() && !c.is_empty())
                        .ok_or_else(|| format!("--external {e}: want NAME=COMMAND"))
                })
                .collect::<Result<_, _>>()?,
        },
        ..d
    })
}

fn bench_cmd(args: &Args) -> Result<(), String> {
    let opts = bench_opts(args)?;
    let report = bench::run(&opts).map_err(err)?;
    println!(
        "\nxdp-tcp vs Linux kernel: 64 B unless stated, veth testbed, server and client pinned to \
         separate cores, kernel sockets {}, medians of {} rounds x {:.1} s ({})\n",
        xdp_tcp_bench::kernel::CONGESTION_CONTROL,
        report.rounds,
        report.duration_s,
        report.machine
    );
    print!("{}", bench::render(&report.lines));
    println!();
    for j in &report.jitter {
        println!("{}", bench::jitter_line(j));
    }
    if let Some(p) = &opts.json {
        println!("\nresults: {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Result<Args, String> {
        Args::parse(line.split_whitespace().map(str::to_string))
    }

    #[test]
    fn flags_take_no_value_and_options_take_the_next_word() {
        let a = args("serve --backend xdp --block --port 7000 extra").unwrap();
        assert_eq!(a.pos, ["serve", "extra"]);
        assert_eq!(a.kv["backend"], "xdp");
        assert_eq!(a.kv["port"], "7000");
        assert!(a.flag("block"));
        assert!(!a.flag("download"));
        assert_eq!(
            args("load --target").err().unwrap(),
            "--target needs a value"
        );
    }

    #[test]
    fn json_is_a_switch_for_stat_and_takes_a_file_elsewhere() {
        let a = args("stat /run/x.sock --json --watch --count 2").unwrap();
        assert_eq!(a.pos, ["stat", "/run/x.sock"]);
        assert!(a.flag("json") && a.flag("watch"));
        assert_eq!(a.kv["count"], "2");
        let a = args("load --json out.json --target 10.0.0.1:7").unwrap();
        assert_eq!(a.pos, ["load"]);
        assert_eq!(a.kv["json"], "out.json");
    }

    #[test]
    fn values_parse_with_defaults_and_say_which_option_failed() {
        let a = args("load --size 128 --conns x --core 1 --warmup 0.25").unwrap();
        assert_eq!(a.get("size", 64usize), Ok(128));
        assert_eq!(a.get("depth", 1usize), Ok(1));
        assert!(a
            .get("conns", 1usize)
            .unwrap_err()
            .starts_with("--conns x:"));
        assert_eq!(a.core(), Ok(Some(1)));
        assert_eq!(a.secs("warmup", 1.0), Ok(Duration::from_millis(250)));
        assert_eq!(a.need("target").unwrap_err(), "--target is required");
    }

    #[test]
    fn workloads_from_the_command_line() {
        let w = |line: &str| workload(&args(line).unwrap());
        assert_eq!(
            w("load"),
            Ok(Workload::PingPong {
                size: 64,
                conns: 1,
                depth: 1
            })
        );
        assert_eq!(
            w("load --workload bulk --conns 2 --download"),
            Ok(Workload::Bulk {
                conns: 2,
                upload: false
            })
        );
        assert_eq!(
            w("load --workload churn --conns 16 --ports 3"),
            Ok(Workload::Churn {
                size: 64,
                concurrency: 16,
                ports: 3
            })
        );
        // 101k connections need three server ports of ephemeral range from one client address.
        assert_eq!(
            w("load --workload idle --idle 100000"),
            Ok(Workload::Idle {
                idle: 100_000,
                active: 1000,
                size: 64,
                rate: 20_000,
                ports: 3
            })
        );
        assert_eq!(
            w("load --workload nap").unwrap_err(),
            "unknown workload nap"
        );
    }

    #[test]
    fn core_lists_take_numbers_and_ranges() {
        assert_eq!(parse_cores("0,1").unwrap(), [0, 1]);
        assert_eq!(parse_cores("0,2-4").unwrap(), [0, 2, 3, 4]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("x").is_err());
        assert!(parse_cores("").is_err());
    }

    #[test]
    fn bench_options_from_the_command_line() {
        let o = bench_opts(
            &args("bench --quick --rounds 5 --duration 1.5 --idle 0,5000 --only pingpong,churn")
                .unwrap(),
        )
        .unwrap();
        assert!(o.quick);
        assert_eq!(o.rounds, 5);
        assert_eq!(o.duration, Duration::from_millis(1500));
        assert_eq!(o.warmup, BenchOpts::default().warmup);
        assert_eq!(o.idle_conns, [0, 5000]);
        assert_eq!(o.only, ["pingpong", "churn"]);
        assert_eq!(o.json, None);
        assert!(bench_opts(&args("bench --idle 1,x").unwrap())
            .unwrap_err()
            .starts_with("--idle 1,x:"));
    }
}
