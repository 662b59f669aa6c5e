//! `deploy/nic-setup.sh` (issue 13, acceptance 6): what `--dry-run` prints for a veth and for
//! named drivers, the refusals, and a real run on a 2-queue veth of the testbed (root).

mod common;

use std::process::{Command, Output};

use common::testbed::{require_environment, Testbed};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nic-setup.sh");

fn run(args: &[&str], online: u32) -> Output {
    Command::new(SCRIPT)
        .args(args)
        .env("NIC_SETUP_ONLINE", online.to_string())
        .output()
        .expect("run nic-setup.sh")
}

/// The commands printed (comments dropped).
fn commands(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn dry_run_for_a_named_nic_driver_prints_channels_rss_offloads_and_irqs() {
    let out = run(
        &[
            "eth9",
            "--queues",
            "4",
            "--cores",
            "2-5",
            "--driver",
            "ice",
            "--dry-run",
            "--busy-poll",
        ],
        8,
    );
    let cmds = commands(&out);
    assert_eq!(
        cmds,
        [
            "ethtool -L eth9 combined 4",
            "ethtool -X eth9 hfunc toeplitz equal 4",
            "ethtool -N eth9 rx-flow-hash tcp4 sdfn",
            "ethtool -K eth9 gro off lro off",
            "ethtool -K eth9 ntuple on",
            // no such device here: the IRQ step names its pattern; cores 0,1,6,7 are free
            "echo 0,1,6,7 > /proc/irq/IRQ/smp_affinity_list",
            "echo 2 > /sys/class/net/eth9/napi_defer_hard_irqs",
            "echo 200000 > /sys/class/net/eth9/gro_flush_timeout",
        ]
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(".cores(vec![2,3,4,5])"), "{text}");
}

#[test]
fn dry_run_differs_by_driver_family() {
    let mlx = commands(&run(
        &[
            "e0",
            "--queues",
            "2",
            "--cores",
            "0,1",
            "--driver",
            "mlx5_core",
            "--dry-run",
        ],
        2,
    ));
    assert!(mlx.contains(&"ethtool -K e0 ntuple on".to_string()));
    // every core runs an engine: no IRQ move
    assert!(!mlx.iter().any(|c| c.contains("smp_affinity")), "{mlx:?}");
    let ena = commands(&run(
        &[
            "e0",
            "--queues",
            "2",
            "--cores",
            "0,1",
            "--driver",
            "ena",
            "--dry-run",
        ],
        4,
    ));
    assert!(!ena.iter().any(|c| c.contains("ntuple")), "{ena:?}");
    assert!(ena.contains(&"ethtool -X e0 hfunc toeplitz equal 2".to_string()));
    let veth = commands(&run(
        &[
            "v0",
            "--queues",
            "2",
            "--cores",
            "0,1",
            "--driver",
            "veth",
            "--dry-run",
        ],
        4,
    ));
    assert_eq!(veth, ["ethtool -L v0 rx 2 tx 2", "ethtool -K v0 gro off"]);
}

#[test]
fn too_few_cores_or_no_queue_count_is_refused() {
    let out = run(
        &[
            "e0",
            "--queues",
            "2",
            "--cores",
            "0",
            "--driver",
            "ice",
            "--dry-run",
        ],
        2,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 queues need 2 engine cores"));
    let out = run(&["e0", "--cores", "0", "--dry-run"], 2);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["e0", "--queues", "1", "--cores", "3-1", "--dry-run"], 2);
    assert_eq!(out.status.code(), Some(2));
}

/// On a real 2-queue veth: the driver is detected, the dry run prints the veth steps, and the
/// real run applies them (the channel count stays 2, GRO is off).
#[test]
fn veth_of_the_testbed_is_detected_and_set_up() {
    require_environment(&[]);
    let tb = Testbed::up_queues("ns", 2);
    let ifname = tb.get("if_stack").to_string();
    let out = tb
        .in_ns(
            "ns_stack",
            &[
                SCRIPT,
                &ifname,
                "--queues",
                "2",
                "--cores",
                "0,1",
                "--dry-run",
            ],
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("driver veth"), "{text}");
    assert_eq!(
        commands(&out),
        [
            format!("ethtool -L {ifname} rx 2 tx 2"),
            format!("ethtool -K {ifname} gro off")
        ]
    );
    let out = tb
        .in_ns(
            "ns_stack",
            &[SCRIPT, &ifname, "--queues", "2", "--cores", "0,1"],
        )
        .output()
        .unwrap();
    commands(&out);
    let out = tb
        .in_ns("ns_stack", &["ethtool", "-l", &ifname])
        .output()
        .unwrap();
    let l = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(l.matches("RX:\t\t2").count() == 2, "{l}");
}
