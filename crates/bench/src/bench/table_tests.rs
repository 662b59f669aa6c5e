//! Tests of `table.rs`.

use super::*;
use crate::bench::matrix::{Case, ClientKind, Offloads, ServerKind};
use crate::{LoadResult, ServeMode, ServerReport, Summary};

/// A case of `row` on `system` whose every round measured `p50`, `p99` and `rate`.
fn result(
    row: &str,
    system: &'static str,
    workload: Workload,
    p50: f64,
    p99: f64,
    rate: f64,
) -> CaseResult {
    let run = |round| Run {
        round,
        client: LoadResult {
            rate,
            latency: Some(Summary {
                p50,
                p99,
                ..Summary::default()
            }),
            ..LoadResult::default()
        },
        server: ServerReport {
            bytes_per_idle_conn: Some(p50 * 1000.0),
            ..ServerReport::default()
        },
    };
    CaseResult {
        case: Case {
            row: row.into(),
            system,
            server: ServerKind::Reflector,
            client: ClientKind::Pinger,
            mode: ServeMode::Echo,
            workload,
            same_core: false,
            offloads: Offloads::Testbed,
            engines: 1,
        },
        runs: (0..3).map(run).collect(),
    }
}

const PP: Workload = Workload::PingPong {
    size: 64,
    conns: 1,
    depth: 1,
};

fn idle(n: usize) -> Workload {
    Workload::Idle {
        idle: n,
        active: 1000,
        size: 64,
        rate: 20_000,
        ports: 1,
    }
}

#[test]
fn ratios_read_as_how_many_times_better() {
    assert_eq!(Lower.of(Some(2.0), Some(6.0)), Some(3.0));
    assert_eq!(Higher.of(Some(6.0), Some(2.0)), Some(3.0));
    assert_eq!(OursOver.of(Some(5.0), Some(4.0)), Some(1.25));
    assert_eq!(Higher.of(Some(0.0), Some(2.0)), None);
    assert_eq!(Lower.of(None, Some(2.0)), None);
}

#[test]
fn a_comparison_shows_only_when_both_cases_ran() {
    let results = [
        result("pingpong", "xdp-tcp", PP, 5.0, 10.0, 100_000.0),
        result("pingpong", "raw-af-xdp", PP, 4.0, 8.0, 200_000.0),
    ];
    let (lines, medians) = table(&results);
    assert_eq!(medians.len(), 2);
    let shown: Vec<_> = lines
        .iter()
        .map(|l| (l.metric.as_str(), l.other_system.as_str(), l.ratio))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "p50 µs (ratio = ours/floor)",
                "raw AF_XDP floor",
                Some(1.25)
            ),
            ("round trips/s", "raw AF_XDP floor", Some(0.5)),
        ]
    );
    assert!(lines.iter().all(|l| l.workload == "64 B ping-pong, 1 conn"));
    assert_eq!(lines[0].target, "<= 1.3");
}

#[test]
fn two_engine_rows_compare_with_one_engine_and_the_kernel_on_two_cores() {
    let opts = super::super::BenchOpts::default();
    let cases = super::super::matrix::matrix(&opts);
    for row in ["rr64-2e", "churn-2e"] {
        let on: Vec<(&str, usize)> = cases
            .iter()
            .filter(|c| c.row == row)
            .map(|c| (c.system, c.engines))
            .collect();
        assert_eq!(on, [("xdp-tcp", 2), ("xdp-tcp-1e", 1), ("kernel", 2)]);
        // the same client for all three, so the ratios are the servers'
        let clients: Vec<String> = cases
            .iter()
            .filter(|c| c.row == row)
            .map(|c| format!("{:?}", c.client))
            .collect();
        assert!(clients.windows(2).all(|w| w[0] == w[1]), "{clients:?}");
    }
    // the JSON names the engines only where there is more than one
    let two = cases.iter().find(|c| c.row == "rr64-2e").unwrap();
    let one = cases.iter().find(|c| c.row == "rr64").unwrap();
    assert_eq!(serde_json::to_value(two).unwrap()["engines"], 2);
    assert!(serde_json::to_value(one).unwrap().get("engines").is_none());

    let rr = two.workload;
    let results = [
        result("rr64-2e", "xdp-tcp", rr, 50.0, 90.0, 180_000.0),
        result("rr64-2e", "xdp-tcp-1e", rr, 60.0, 100.0, 100_000.0),
        result("rr64-2e", "kernel", rr, 80.0, 120.0, 120_000.0),
    ];
    let (lines, _) = table(&results);
    let scale = lines
        .iter()
        .find(|l| l.metric.starts_with("requests/s (ratio = 2 engines/1)"))
        .expect("a 1 -> 2 engines line");
    assert_eq!(scale.ratio, Some(1.8));
    assert_eq!(scale.other_system, "xdp-tcp, 1 engine");
    let kernel = lines
        .iter()
        .find(|l| l.metric == "requests/s" && l.other_system.starts_with("kernel"))
        .expect("a line against the kernel on two cores");
    assert_eq!(kernel.ratio, Some(1.5));
}

#[test]
fn idle_rows_compare_with_the_kernel_one_connection_and_no_idle() {
    let results = [
        result("pingpong", "xdp-tcp", PP, 5.0, 10.0, 1.0),
        result("idle0", "xdp-tcp", idle(0), 6.0, 20.0, 1.0),
        result("idle0", "kernel-spin", idle(0), 9.0, 40.0, 1.0),
        result("idle10k", "xdp-tcp", idle(10_000), 6.0, 30.0, 1.0),
        result("idle10k", "kernel-spin", idle(10_000), 9.0, 60.0, 1.0),
    ];
    let (lines, _) = table(&results);
    let shown: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.workload.as_str(),
                l.metric.as_str(),
                l.other_system.as_str(),
                l.ratio,
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "0 idle + 1k active @20k/s",
                "p99 µs",
                "kernel busy-spin",
                Some(2.0)
            ),
            (
                "0 idle + 1k active @20k/s",
                "p99 µs (ratio = this/1-conn p99)",
                "xdp-tcp 1 conn ping-pong",
                Some(2.0)
            ),
            (
                "10k idle + 1k active @20k/s",
                "p99 µs",
                "kernel busy-spin",
                Some(2.0)
            ),
            (
                "10k idle + 1k active @20k/s",
                "bytes per idle conn",
                "kernel (slab+buffers)",
                Some(1.5)
            ),
            (
                "10k idle + 1k active @20k/s",
                "p99 µs (ratio = this/1-conn p99)",
                "xdp-tcp 1 conn ping-pong",
                Some(3.0)
            ),
            (
                "10k idle + 1k active @20k/s",
                "p99 µs (ratio = this/0-idle p99)",
                "xdp-tcp, same load, 0 idle",
                Some(1.5)
            ),
        ]
    );
}

#[test]
fn every_comparison_names_a_system_of_the_matrix() {
    let opts = crate::bench::BenchOpts {
        external: vec![("other-stack".into(), "true".into())],
        ..Default::default()
    };
    let cases = crate::bench::matrix::matrix(&opts);
    let rows: Vec<(String, usize)> = opts
        .idle_conns
        .iter()
        .map(|&n| (crate::bench::matrix::idle_row(n), n))
        .collect();
    let comps = comparisons(&rows, &["other-stack"]);
    assert!(comps
        .iter()
        .any(|c| c.row == "pingpong-kc" && c.other_system == "other-stack"));
    for c in comps {
        assert!(
            cases.iter().any(|k| k.row == c.row && k.system == OURS),
            "{c:?}"
        );
        // The spinning and the threaded kernel servers are alternatives: one of them runs.
        if c.other_system != "kernel-threads" && c.other_system != "kernel-spin" {
            assert!(
                cases
                    .iter()
                    .any(|k| k.row == c.other_row && k.system == c.other_system),
                "{c:?}"
            );
        }
    }
}

#[test]
fn rendered_table_keeps_its_columns() {
    let lines = [
        Line {
            workload: "64 B ping-pong, 1 conn".into(),
            metric: "round trips/s".into(),
            ours: Some(152_345.0),
            other_system: "kernel busy-spin".into(),
            other: Some(1234.5),
            ratio: Some(123.4),
            target: ">= 2x".into(),
        },
        Line {
            workload: "w".into(),
            metric: "p50 µs".into(),
            ours: Some(4.789),
            other_system: "o".into(),
            other: None,
            ratio: None,
            target: "".into(),
        },
    ];
    let text = render(&lines);
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        "| workload                         | metric                             |   xdp-tcp | compared with              |     value |  ratio | target  |"
    );
    assert_eq!(
        rows[1],
        "|----------------------------------|------------------------------------|-----------|----------------------------|-----------|--------|---------|"
    );
    assert_eq!(
        rows[2],
        "| 64 B ping-pong, 1 conn           | round trips/s                      |    0.152M | kernel busy-spin           |      1.2k | 123.40x | >= 2x   |"
    );
    assert_eq!(
        rows[3],
        "| w                                | p50 µs                             |      4.79 | o                          |         - |      - |         |"
    );
}

#[test]
fn values_shrink_to_nine_characters() {
    assert_eq!(fmt(None), "-");
    assert_eq!(fmt(Some(4.789)), "4.79");
    assert_eq!(fmt(Some(113.4)), "113");
    assert_eq!(fmt(Some(24_100.0)), "24.1k");
    assert_eq!(fmt(Some(1_520_000.0)), "1.520M");
}
