//! The kernel back-end past one file-descriptor table: with the hard open-file limit set below
//! the number of connections (as this machine's 20,000 is below the benchmark's 100k), the
//! sharded epoll server and the idle-connection holders must still open, serve and count every
//! connection. Its own test binary: it lowers the process's hard limit, which cannot be undone.
//!
//! Needs root like the other veth tests; fails with the fix rather than skipping.

mod common;

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::testbed::{require_environment, Testbed};
use xdp_tcp_bench::{kernel, sys, RunConfig, ServeMode, Workload};

const LIMIT: u64 = 2500;

#[test]
fn kernel_server_and_client_hold_more_connections_than_one_descriptor_table() {
    require_environment(&[]);
    let tb = Testbed::up("fdt");
    let r = libc::rlimit {
        rlim_cur: LIMIT,
        rlim_max: LIMIT,
    };
    // SAFETY: setrlimit reads one struct we own; lowering a limit needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);

    let (idle, active) = (3000usize, 50usize);
    let conns = idle + active;
    let workload = Workload::Idle {
        idle,
        active,
        size: 64,
        rate: 2000,
        ports: 2,
    };
    let tables = kernel::tables_for(conns);
    assert!(
        tables >= 3,
        "{conns} connections under a limit of {LIMIT}: {tables} tables"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = {
        let (stop, ns) = (Arc::clone(&stop), tb.get("ns_stack").to_string());
        std::thread::spawn(move || {
            sys::place_thread(None, Some(&ns)).unwrap();
            let o = kernel::ServeOpts {
                spin: false,
                core: None,
                marks: None,
                expect_conns: Some(conns),
                shards: tables,
                shard_cores: Vec::new(),
            };
            kernel::serve(&[7200, 7201], ServeMode::Echo, &o, &stop, || {
                ready_tx.send(()).unwrap();
            })
        })
    };
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    let cfg = RunConfig {
        target: SocketAddrV4::new(tb.ip("ip_stack"), 7200),
        workload,
        warmup: Duration::from_millis(200),
        duration: Duration::from_millis(800),
        progress: false,
        marks: None,
    };
    let ns = tb.get("ns_peer").to_string();
    let client = std::thread::spawn(move || {
        sys::place_thread(None, Some(&ns)).unwrap();
        kernel::run_client(&cfg, false)
    })
    .join()
    .expect("client thread");
    stop.store(true, Ordering::Relaxed);
    let server = server.join().expect("server thread").expect("server");
    let client = client.expect("client run");

    assert_eq!(client.connections, conns as u64, "{client:?}");
    assert_eq!(client.errors, 0, "{client:?}");
    // 2000 requests/s for 0.8 s, each answered.
    assert!(client.completed >= 1400, "{client:?}");
    assert_eq!(server.accepted, conns as u64, "{server:?}");
    assert_eq!(server.idle_conns, Some(conns as u64), "{server:?}");
    assert!(
        server.bytes_per_idle_conn.is_some_and(|b| b > 0.0),
        "{server:?}"
    );
    assert_eq!(server.bytes_in, server.bytes_out, "{server:?}");
    assert!(server.bytes_in >= 64 * client.completed, "{server:?}");
}
