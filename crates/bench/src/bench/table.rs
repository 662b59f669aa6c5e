//! The table `xdp-tcp bench` prints and writes: the medians of every case over its rounds, then
//! one [`Line`] per [`Metric`] of each [`Comparison`] whose two cases both ran, in the order of
//! [`comparisons`]. The comparisons are data: a new line in the table is a new entry there.
//!
//! Every ratio reads "how many times better xdp-tcp is" (> 1 is better), except
//! [`Ratio::OursOver`], which reads "how close to the reference" (the floor, the 1-connection
//! p99) and is better near 1.

use serde::Serialize;

use super::matrix::{CaseResult, Run, ServerKind};
use crate::jitter::Jitter;
use crate::{kernel, Workload};

/// The system every comparison is about.
const OURS: &str = "xdp-tcp";

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

/// Which median a line shows (the unit is in the metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    P50,
    P99,
    /// Requests, round trips or connections per second.
    Rate,
    /// `Rate` per second of server thread CPU.
    RatePerCore,
    Gbps,
    /// Busy fraction of the server's core, as a percentage.
    CoreBusyPercent,
    BytesPerIdleConn,
}

impl Measure {
    fn of(self, m: &Medians) -> Option<f64> {
        match self {
            Measure::P50 => m.p50,
            Measure::P99 => m.p99,
            Measure::Rate => m.rate,
            Measure::RatePerCore => m.per_core_rate,
            Measure::Gbps => m.gbps,
            Measure::CoreBusyPercent => m.core_busy.map(|b| b * 100.0),
            Measure::BytesPerIdleConn => m.bytes_per_idle_conn,
        }
    }
}

/// How a line's ratio is computed from xdp-tcp's value and the other's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// other/ours: how many times lower (better) ours is.
    Lower,
    /// ours/other: how many times higher (better) ours is.
    Higher,
    /// ours/other where ours should stay close to the other (the floor, the 1-connection p99).
    OursOver,
}

impl Ratio {
    /// `None` unless both values are there and positive.
    pub fn of(self, ours: Option<f64>, other: Option<f64>) -> Option<f64> {
        match (ours, other) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => Some(match self {
                Ratio::Lower => b / a,
                Ratio::Higher | Ratio::OursOver => a / b,
            }),
            _ => None,
        }
    }
}

/// One line of a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// The metric column: what is compared and its unit.
    pub label: &'static str,
    pub measure: Measure,
    pub ratio: Ratio,
    /// What we aim for, shown beside the ratio ("" for none).
    pub target: &'static str,
}

const fn metric(
    label: &'static str,
    measure: Measure,
    ratio: Ratio,
    target: &'static str,
) -> Metric {
    Metric {
        label,
        measure,
        ratio,
        target,
    }
}

/// xdp-tcp on `row` against `other_system` on `other_row` (usually the same row): its lines
/// appear when both cases ran.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub row: String,
    /// The workload column.
    pub workload: String,
    pub other_row: String,
    pub other_system: &'static str,
    /// The "compared with" column.
    pub other_label: String,
    pub metrics: &'static [Metric],
}

impl Comparison {
    fn new(
        row: &str,
        workload: &str,
        other_system: &'static str,
        other_label: &str,
        metrics: &'static [Metric],
    ) -> Self {
        Comparison {
            row: row.into(),
            workload: workload.into(),
            other_row: row.into(),
            other_system,
            other_label: other_label.into(),
            metrics,
        }
    }

    /// The other system's case is on `row` instead of this comparison's own.
    fn on_row(mut self, row: &str) -> Self {
        self.other_row = row.into();
        self
    }
}

use Measure::*;
use Ratio::*;

const VS_FLOOR: &[Metric] = &[
    metric("p50 µs (ratio = ours/floor)", P50, OursOver, "<= 1.3"),
    metric("round trips/s", Rate, Higher, ""),
];
const PINGPONG_VS_SPIN: &[Metric] = &[
    metric("p50 µs", P50, Lower, ">= 2x"),
    metric("p99 µs", P99, Lower, ""),
    metric("round trips/s", Rate, Higher, ""),
];
const KC_VS_KERNEL: &[Metric] = &[
    metric("p50 µs", P50, Lower, ""),
    metric("p99 µs", P99, Lower, ""),
    metric("round trips/s", Rate, Higher, ""),
];
const KC_VS_OTHER_STACK: &[Metric] = &[
    metric("p50 µs", P50, Lower, ""),
    metric("p99 µs", P99, Lower, ">= 1x"),
    metric("round trips/s", Rate, Higher, ">= 1x"),
];
const PINGPONG_VS_BLOCK: &[Metric] = &[
    metric("p50 µs", P50, Lower, ">= 5x"),
    metric("p99 µs", P99, Lower, ""),
];
const PINGPONG_VS_ONE_CORE: &[Metric] = &[metric("p50 µs", P50, Lower, "")];
const RR_VS_SPIN: &[Metric] = &[
    metric("requests/s per server core", RatePerCore, Higher, ">= 3x"),
    metric("requests/s", Rate, Higher, ""),
    metric("p99 µs", P99, Lower, ""),
];
const BULK_VS_NO_TSO: &[Metric] = &[
    metric("Gbit/s", Gbps, Higher, ">= 1x"),
    metric("server thread CPU %", CoreBusyPercent, Lower, ""),
];
const BULK_VS_SAME_LINK: &[Metric] = &[
    metric("Gbit/s", Gbps, Higher, "report"),
    metric("server thread CPU %", CoreBusyPercent, Lower, ""),
];
const BULK_VS_OFFLOADS: &[Metric] = &[
    metric("Gbit/s", Gbps, Higher, "report"),
    metric("server thread CPU %", CoreBusyPercent, Lower, ""),
];
const CHURN_VS_SPIN: &[Metric] = &[
    metric("connections/s", Rate, Higher, ">= 5x"),
    metric("p99 µs (connect to response)", P99, Lower, ""),
];
const RR2_VS_SPIN: &[Metric] = &[
    metric("requests/s", Rate, Higher, ""),
    metric("requests/s per server core", RatePerCore, Higher, ""),
    metric("p99 µs", P99, Lower, ""),
];
/// 2 engines against 1 (ratio = 2 engines / 1 engine: 2.0 would be linear).
const RR_1_TO_2: &[Metric] = &[
    metric("requests/s (ratio = 2 engines/1)", Rate, Higher, "report"),
    metric("requests/s per server core", RatePerCore, Higher, ""),
];
const CHURN2_VS_SPIN: &[Metric] = &[
    metric("connections/s", Rate, Higher, ""),
    metric("connections/s per server core", RatePerCore, Higher, ""),
    metric("p99 µs (connect to response)", P99, Lower, ""),
];
const CHURN_1_TO_2: &[Metric] = &[
    metric(
        "connections/s (ratio = 2 engines/1)",
        Rate,
        Higher,
        "report",
    ),
    metric("connections/s per server core", RatePerCore, Higher, ""),
];
const IDLE_P99: &[Metric] = &[metric("p99 µs", P99, Lower, "")];
const IDLE_MEMORY: &[Metric] = &[metric(
    "bytes per idle conn",
    BytesPerIdleConn,
    Lower,
    "report",
)];
const IDLE_VS_ONE_CONN: &[Metric] = &[metric(
    "p99 µs (ratio = this/1-conn p99)",
    P99,
    OursOver,
    "<= 1.2",
)];
const IDLE_VS_NO_IDLE: &[Metric] = &[metric(
    "p99 µs (ratio = this/0-idle p99)",
    P99,
    OursOver,
    "",
)];

const PP: &str = "64 B ping-pong, 1 conn";
const RR: &str = "64 B req/resp, 64 conns";
const BULK: &str = "bulk upload, 1 conn, MTU 1500";
const CHURN: &str = "connect + 64 B req + close";
const RR2: &str = "64 B req/resp, 64 conns, 2 server cores, kernel client";
const CHURN2: &str = "connect + req + close, 2 server cores, kernel client";

/// The comparisons of the fixed rows: (row, workload column, other system on the same row,
/// "compared with" column, lines).
#[rustfmt::skip]
const FIXED: &[(&str, &str, &str, &str, &[Metric])] = &[
    ("pingpong", PP, "raw-af-xdp", "raw AF_XDP floor", VS_FLOOR),
    ("pingpong", PP, "kernel-spin", "kernel busy-spin", PINGPONG_VS_SPIN),
    ("pingpong", PP, "kernel-block", "kernel blocking, 2 cores", PINGPONG_VS_BLOCK),
    ("pingpong", PP, "kernel-block-1core", "kernel blocking, 1 core", PINGPONG_VS_ONE_CORE),
    ("rr64", RR, "kernel-spin", "kernel busy-spin", RR_VS_SPIN),
    ("bulk", BULK, "kernel", "kernel, TSO/GSO off", BULK_VS_NO_TSO),
    ("bulk", BULK, "kernel-offloads", "kernel, offloads on", BULK_VS_OFFLOADS),
    ("churn", CHURN, "kernel-spin", "kernel busy-spin", CHURN_VS_SPIN),
    ("rr64-2e", RR2, "kernel", "kernel epoll, 2 threads", RR2_VS_SPIN),
    ("rr64-2e", RR2, "xdp-tcp-1e", "xdp-tcp, 1 engine", RR_1_TO_2),
    ("churn-2e", CHURN2, "kernel", "kernel epoll, 2 threads", CHURN2_VS_SPIN),
    ("churn-2e", CHURN2, "xdp-tcp-1e", "xdp-tcp, 1 engine", CHURN_1_TO_2),
];

const PP_KC: &str = "64 B ping-pong, kernel client";
const BULK_KC: &str = "bulk upload, kernel client, MTU 1500";

/// The table's comparisons, in table order: those of the fixed rows, then for each of
/// `idle_rows` (the idle rows that ran, with their idle connection counts) the same group.
pub fn comparisons(idle_rows: &[(String, usize)], externals: &[&'static str]) -> Vec<Comparison> {
    let mut v: Vec<Comparison> = FIXED
        .iter()
        .map(|&(row, workload, system, label, metrics)| {
            Comparison::new(row, workload, system, label, metrics)
        })
        .collect();
    // The same kernel client against each server: the kernel's (on the ping-pong row, where it
    // ran) and every other stack's.
    v.push(
        Comparison::new(
            "pingpong-kc",
            PP_KC,
            "kernel-spin",
            "kernel busy-spin",
            KC_VS_KERNEL,
        )
        .on_row("pingpong"),
    );
    v.push(
        Comparison::new(
            "bulk-kc",
            BULK_KC,
            "kernel",
            "kernel server, TSO/GSO off",
            BULK_VS_NO_TSO,
        )
        .on_row("bulk"),
    );
    v.push(
        Comparison::new(
            "bulk-kc",
            BULK_KC,
            "kernel-csum",
            "kernel, same link",
            BULK_VS_SAME_LINK,
        )
        .on_row("bulk"),
    );
    for system in externals {
        v.push(Comparison::new(
            "pingpong-kc",
            PP_KC,
            system,
            &format!("{system}, same client"),
            KC_VS_OTHER_STACK,
        ));
    }
    for (row, n) in idle_rows {
        let n = *n;
        let workload = if n >= 1000 {
            format!("{}k idle + 1k active @20k/s", n / 1000)
        } else {
            format!("{n} idle + 1k active @20k/s")
        };
        // A row runs its kernel server either spinning or, past one descriptor table, as
        // blocking epoll threads (see `matrix`); only the one that ran shows.
        let threads = format!("kernel, {} epoll threads", kernel::tables_for(n + 1000));
        for (system, label) in [
            ("kernel-spin", "kernel busy-spin"),
            ("kernel-threads", &threads),
        ] {
            v.push(Comparison::new(row, &workload, system, label, IDLE_P99));
            if n > 0 {
                v.push(Comparison::new(
                    row,
                    &workload,
                    system,
                    "kernel (slab+buffers)",
                    IDLE_MEMORY,
                ));
            }
        }
        v.push(
            Comparison::new(
                row,
                &workload,
                OURS,
                "xdp-tcp 1 conn ping-pong",
                IDLE_VS_ONE_CONN,
            )
            .on_row("pingpong"),
        );
        if n > 0 {
            v.push(
                Comparison::new(
                    row,
                    &workload,
                    OURS,
                    "xdp-tcp, same load, 0 idle",
                    IDLE_VS_NO_IDLE,
                )
                .on_row("idle0"),
            );
        }
    }
    v
}

/// The idle rows among `results`, in order, with their idle connection counts.
fn idle_rows(results: &[CaseResult]) -> Vec<(String, usize)> {
    let mut rows: Vec<(String, usize)> = Vec::new();
    for r in results {
        if let Workload::Idle { idle, .. } = r.case.workload {
            if !rows.iter().any(|(row, _)| *row == r.case.row) {
                rows.push((r.case.row.clone(), idle));
            }
        }
    }
    rows
}

/// The medians of every case, and the table's lines: one per metric of every comparison whose
/// two cases are among `results`.
pub fn table(results: &[CaseResult]) -> (Vec<Line>, Vec<(String, String, Medians)>) {
    let med: Vec<(String, String, Medians)> = results
        .iter()
        .map(|r| (r.case.row.clone(), r.case.system.to_string(), medians(r)))
        .collect();
    let get = |row: &str, system: &str| {
        med.iter()
            .find(|(r, s, _)| r == row && s == system)
            .map(|x| &x.2)
    };
    let mut lines = Vec::new();
    let externals: Vec<&'static str> = results
        .iter()
        .filter(|r| matches!(r.case.server, ServerKind::External { .. }))
        .map(|r| r.case.system)
        .collect();
    for c in comparisons(&idle_rows(results), &externals) {
        let (Some(ours), Some(other)) = (get(&c.row, OURS), get(&c.other_row, c.other_system))
        else {
            continue;
        };
        for m in c.metrics {
            let (a, b) = (m.measure.of(ours), m.measure.of(other));
            lines.push(Line {
                workload: c.workload.clone(),
                metric: m.label.into(),
                ours: a,
                other_system: c.other_label.clone(),
                other: b,
                ratio: m.ratio.of(a, b),
                target: m.target.into(),
            });
        }
    }
    (lines, med)
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
pub fn jitter_line(j: &Jitter) -> String {
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

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
