//! `Stack::stats`, `TcpStream::info` and `Cx::info` between two stacks on threads joined by
//! the in-memory link (no root): the counters equal what the test did (opens, segments each
//! way, bytes), and every connection is listed with its state.

mod common;

use common::mem_stack::{builder, start};

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xdp_tcp::api::{Cx, Device, Handler, Stack, TcpListener, TcpStream};
use xdp_tcp::host::ConnId;
use xdp_tcp::io::mem::{self};
use xdp_tcp::tcp::{State, TcpInfo};
use xdp_tcp::wire::EthernetAddress;

const C: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 1);
const S: Ipv4Addr = Ipv4Addr::new(10, 8, 0, 2);

#[test]
fn stack_stats_count_what_the_streams_did_and_list_every_connection() {
    let (a, b, _link) = mem::pair(2048);
    let client = start(builder(C), a, C);
    let server = start(builder(S), b, S);
    let listener = TcpListener::bind(&server, 9).unwrap();
    const N: usize = 5;
    let mut pairs = Vec::new();
    for i in 0..N {
        let mut c = TcpStream::connect(&client, SocketAddrV4::new(S, 9)).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let msg = vec![i as u8; 1000 + i];
        c.write_all(&msg).unwrap();
        let mut got = vec![0; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
        pairs.push((c, s));
    }
    // every ACK delivered (the delayed ACK is 40 ms at most), nothing in flight
    std::thread::sleep(Duration::from_millis(300));
    let cs = client.stats().unwrap();
    let ss = server.stats().unwrap();
    assert_eq!(cs.engines.len(), 1);
    let (ct, st) = (cs.tcp(), ss.tcp());
    assert_eq!((ct.active_opens, ct.passive_opens), (N as u64, 0));
    assert_eq!((st.active_opens, st.passive_opens), (0, N as u64));
    assert_eq!((ct.curr_estab, st.curr_estab), (N as u64, N as u64));
    assert_eq!(ct.out_segs, st.in_segs, "a lossless link: sent = received");
    assert_eq!(st.out_segs, ct.in_segs);
    assert_eq!(cs.get("TcpOutSegs"), Some(ct.out_segs));
    // every TCP segment is one IPv4 frame, sent at once or after ARP resolved its next hop
    let tx = |name| cs.get(name).unwrap();
    assert_eq!(tx("engine.tx_ipv4") + tx("engine.tx_released"), ct.out_segs);
    assert_eq!(ss.get("engine.rx_ipv4"), Some(st.in_segs));
    assert_eq!(ct.retrans_segs + st.retrans_segs, 0);
    assert_eq!(ss.get("host.conns"), Some(N as u64));

    let listed: Vec<_> = ss.connections().collect();
    assert_eq!(listed.len(), N);
    for (i, (c, s)) in pairs.iter().enumerate() {
        let local = match c.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let row = listed
            .iter()
            .find(|x| x.remote == local)
            .expect("the server lists every connection");
        assert_eq!(row.info.state, State::Established);
        assert_eq!(row.local, SocketAddrV4::new(S, 9));
        let ci = c.info().unwrap();
        let si = s.info().unwrap();
        let n = 1000 + i as u64;
        assert_eq!((ci.bytes_sent, ci.bytes_acked, ci.total_retrans), (n, n, 0));
        assert_eq!(si.bytes_received, n);
        assert_eq!(row.info.bytes_received, n);
        assert_eq!((ci.send_queue, si.recv_queue), (0, 0));
        assert!(ci.srtt.is_some() && ci.rto >= ci.rttvar);
    }

    // closing with unread bytes resets (as Linux): counted once on each side
    let (c, mut s) = pairs.pop().unwrap();
    s.write_all(b"never read").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    let (ct, st) = (client.stats().unwrap().tcp(), server.stats().unwrap().tcp());
    assert_eq!((ct.out_rsts, ct.estab_resets), (1, 1));
    assert_eq!((st.in_rsts, st.estab_resets), (1, 1));
    drop(s);
}

/// Records the connection's `Cx::info` each time it is readable.
struct Recorder(Arc<Mutex<Vec<TcpInfo>>>);

impl Handler for Recorder {
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = cx.recv(conn, &mut buf) {
            if n == 0 {
                break;
            }
        }
        self.0.lock().unwrap().extend(cx.info(conn));
    }
}

#[test]
fn cx_info_reports_the_handlers_connection() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, b, _link) = mem::pair(2048);
    let client = start(builder(C), a, C);
    let s2 = seen.clone();
    let server = start(builder(S).handler(9, move || Recorder(s2.clone())), b, S);
    let mut c = TcpStream::connect(&client, SocketAddrV4::new(S, 9)).unwrap();
    c.write_all(&[7u8; 3000]).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let last = seen.lock().unwrap().last().copied();
        if let Some(i) = last.filter(|i| i.bytes_received == 3000) {
            assert_eq!(i.state, State::Established);
            assert_eq!(i.recv_queue, 0, "the handler read everything");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{last:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(server);
}

fn ask(path: &std::path::Path, request: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The control socket answers `stats` with the JSON of `Stack::stats` (every connection by
/// address), anything else with an error; it replaces a stale socket but never another file,
/// and is removed when the stack stops.
#[test]
fn control_socket_serves_stats_and_cleans_up() {
    let dir = std::env::temp_dir().join(format!("xdp-tcp-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ctl.sock");
    // a stale socket from a process that died: bound, never served
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (a, b, _link) = mem::pair(2048);
    let client = start(builder(C), a, C);
    let server = start(builder(S).control_socket(&path), b, S);
    let listener = TcpListener::bind(&server, 9).unwrap();
    let c = TcpStream::connect(&client, SocketAddrV4::new(S, 9)).unwrap();
    let _s = listener.accept().unwrap();
    let json = ask(&path, "stats\n");
    assert!(json.starts_with("{\"counters\":{\"TcpActiveOpens\":0,\"TcpPassiveOpens\":1,"));
    let peer = c.local_addr().unwrap().to_string();
    assert!(
        json.contains(&format!("\"remote\":\"{peer}\",\"state\":\"ESTAB\"")),
        "{json}"
    );
    assert!(ask(&path, "bogus\n").starts_with("{\"error\":"));

    // a second stack may not take a live stack's socket, nor a path that is not a socket
    let (x, _y, _l2) = mem::pair(2048);
    let err = Stack::builder()
        .addr(Ipv4Addr::new(10, 8, 1, 1), 24)
        .control_socket(&path)
        .start_on(vec![Device {
            waker: None,
            io: x,
            mac: EthernetAddress([2, 8, 1, 0, 0, 1]),
        }])
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let (x, _y, _l3) = mem::pair(2048);
    let err = Stack::builder()
        .addr(Ipv4Addr::new(10, 8, 1, 1), 24)
        .control_socket(&file)
        .start_on(vec![Device {
            waker: None,
            io: x,
            mac: EthernetAddress([2, 8, 1, 0, 0, 1]),
        }])
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    drop(server);
    assert!(!path.exists(), "removed on shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
