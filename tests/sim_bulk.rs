//! Bulk transfer of 16 MiB in each direction at once between two simulated hosts, byte-exact,
//! over 50 seeds per link model. Every run must finish within a simulated-time bound.

mod common;

use common::sim_pair::Pair;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::tcp;
use xdp_tcp::time::Duration;

const LEN: usize = 16 << 20;
const SEEDS: u64 = 50;

fn base() -> LinkConfig {
    let mut l = LinkConfig::ideal(Duration::from_millis(5));
    l.bandwidth_bps = Some(1_000_000_000);
    l
}

struct Totals {
    rtos: u64,
    corrupted: u64,
    malformed_drops: u64,
}

fn run(name: &str, link: LinkConfig, limit: Duration) -> Totals {
    let mut worst = Duration::ZERO;
    let mut t = Totals {
        rtos: 0,
        corrupted: 0,
        malformed_drops: 0,
    };
    for seed in 0..SEEDS {
        let r = Pair::builder(tcp::Config::default())
            .link(link.clone())
            .seed(seed)
            .client(|h| h.tcp.isn_secret = seed)
            .server(|h| h.tcp.isn_secret = seed.rotate_left(17))
            .build()
            .transfer(LEN, limit);
        r.assert_exact(&format!("seed {seed}"));
        worst = worst.max(r.sim_time);
        t.rtos += r.client_rto + r.server_rto;
        t.corrupted += r.corrupted;
        t.malformed_drops += r.malformed_drops;
    }
    eprintln!(
        "{name}: {SEEDS} seeds, slowest {worst:?} simulated, {} RTOs, {} frames corrupted, {} dropped as malformed",
        t.rtos, t.corrupted, t.malformed_drops
    );
    t
}

#[test]
fn clean_link() {
    let t = run("clean", base(), Duration::from_secs(30));
    assert_eq!(t.rtos, 0, "a clean link needs no retransmission timeout");
    assert_eq!(t.malformed_drops, 0);
}

#[test]
fn one_percent_loss() {
    let mut l = base();
    l.loss = 0.01;
    run("1% loss", l, Duration::from_secs(600));
}

#[test]
fn loss_reorder_duplication() {
    let mut l = base();
    l.loss = 0.05;
    l.reorder = 0.02;
    l.reorder_delay = Duration::from_millis(3);
    l.duplicate = 0.01;
    run(
        "5% loss + 2% reorder + 1% dup",
        l,
        Duration::from_secs(1800),
    );
}

#[test]
fn ten_percent_loss() {
    let mut l = base();
    l.loss = 0.10;
    run("10% loss", l, Duration::from_secs(3600));
}

#[test]
fn one_percent_corruption() {
    let mut l = base();
    l.corrupt = 0.01;
    let t = run("1% corruption", l, Duration::from_secs(600));
    // every corrupted frame that reached a host was caught by a checksum or a header check
    assert!(
        t.corrupted > 1000,
        "the link corrupted too little to test anything: {}",
        t.corrupted
    );
    assert_eq!(
        t.malformed_drops, t.corrupted,
        "corrupted frames must all be dropped, and nothing else"
    );
}
