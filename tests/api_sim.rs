//! The run-to-completion API ([`Handler`], [`Cx`], [`HandlerApp`]) on the deterministic
//! simulator: every operation and error, with the exact `ErrorKind` and errno, in virtual time
//! (keep-alive death takes simulated seconds and no real ones).

mod common;

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4};
use std::sync::{Arc, Mutex};

use common::sim_pair::{Pair, CLIENT as C, PORT, SERVER as S};
use xdp_tcp::api::{Cx, Handler, HandlerApp, KeepAlive};
use xdp_tcp::host::ConnId;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::sim::network::Network;
use xdp_tcp::time::Duration;
use xdp_tcp::wire::{ChecksumCaps, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr};

/// What a handler saw.
#[derive(Default, Debug)]
struct Rec {
    conns: Vec<ConnId>,
    connected: Vec<ConnId>,
    data: Vec<u8>,
    eof: bool,
    errors: Vec<(ErrorKind, Option<i32>)>,
    closed: usize,
    writable: usize,
}

type Log = Arc<Mutex<Rec>>;

/// Records everything; echoes when `echo`; panics on data when `panic`.
struct Probe {
    log: Log,
    echo: bool,
    panic: bool,
}

impl Probe {
    fn new(echo: bool) -> (Self, Log) {
        let log = Log::default();
        (
            Probe {
                log: log.clone(),
                echo,
                panic: false,
            },
            log,
        )
    }
}

impl Handler for Probe {
    fn on_accept(&mut self, _cx: &mut Cx<'_>, conn: ConnId) {
        self.log.lock().unwrap().conns.push(conn);
    }
    fn on_connected(&mut self, _cx: &mut Cx<'_>, conn: ConnId) {
        self.log.lock().unwrap().connected.push(conn);
    }
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        if self.panic {
            panic!("handler bug");
        }
        let mut got = Vec::new();
        let r = cx.read(conn, |a, b| {
            got.extend_from_slice(a);
            got.extend_from_slice(b);
            a.len() + b.len()
        });
        let mut log = self.log.lock().unwrap();
        if matches!(r, Ok(0)) && cx.at_eof(conn) {
            log.eof = true;
        }
        log.data.extend_from_slice(&got);
        drop(log);
        if self.echo && !got.is_empty() {
            assert_eq!(cx.write(conn, &got).unwrap(), got.len());
        }
    }
    fn on_writable(&mut self, _cx: &mut Cx<'_>, _conn: ConnId) {
        self.log.lock().unwrap().writable += 1;
    }
    fn on_error(&mut self, _cx: &mut Cx<'_>, _conn: ConnId, err: io::Error) {
        self.log
            .lock()
            .unwrap()
            .errors
            .push((err.kind(), err.raw_os_error()));
    }
    fn on_closed(&mut self, _cx: &mut Cx<'_>, _conn: ConnId) {
        self.log.lock().unwrap().closed += 1;
    }
}

/// Two hosts (the client 0, the server 1), a 1 ms link, an app on each.
struct Sim {
    net: Network,
    apps: [HandlerApp; 2],
}

impl Sim {
    fn new(cfg: xdp_tcp::tcp::Config) -> Sim {
        let pair = Pair::builder(cfg).seed(7).build();
        assert_eq!((pair.c, pair.s), (0, 1));
        Sim {
            net: pair.net,
            apps: [HandlerApp::new(), HandlerApp::new()],
        }
    }

    fn pump(net: &mut Network, apps: &mut [HandlerApp; 2]) {
        let now = net.now();
        for (i, app) in apps.iter_mut().enumerate() {
            let host = net.host(i);
            let mut evs = Vec::new();
            while let Some(e) = host.poll_event() {
                evs.push(e);
            }
            xdp_tcp::engine::App::poll(app, now, host, &evs);
        }
    }

    /// Runs until `done` or `secs` of virtual time pass.
    fn run(&mut self, secs: u64, mut done: impl FnMut(&mut Network) -> bool) -> bool {
        let limit = self.net.now() + Duration::from_secs(secs);
        let apps = &mut self.apps;
        self.net.run_until(limit, |net| {
            Self::pump(net, apps);
            done(net)
        })
    }

    fn settle(&mut self, ms: u64) {
        let until = self.net.now() + Duration::from_millis(ms);
        let apps = &mut self.apps;
        self.net.run_until(until, |net| {
            Self::pump(net, apps);
            net.now() >= until
        });
    }

    /// A Cx on host `i`.
    fn cx<R>(&mut self, i: usize, f: impl FnOnce(&mut Cx<'_>) -> R) -> R {
        let now = self.net.now();
        self.apps[i].with_cx(now, self.net.host(i), f)
    }

    /// Server probe listening, client probe connected; returns (client conn, server conn, logs).
    fn pair(&mut self, echo: bool) -> (ConnId, ConnId, Log, Log) {
        let (sp, slog) = Probe::new(echo);
        self.apps[1].listen(self.net.host(1), PORT, 16, sp).unwrap();
        let (cp, clog) = Probe::new(false);
        let now = self.net.now();
        let c = self.apps[0]
            .connect(now, self.net.host(0), SocketAddrV4::new(S, PORT), cp)
            .unwrap();
        let (cl, sl) = (clog.clone(), slog.clone());
        assert!(self.run(5, |_| !cl.lock().unwrap().connected.is_empty()
            && !sl.lock().unwrap().conns.is_empty()));
        let s = slog.lock().unwrap().conns[0];
        (c, s, clog, slog)
    }
}

fn errno(e: &io::Error) -> (ErrorKind, Option<i32>) {
    (e.kind(), e.raw_os_error())
}

#[test]
fn echo_reads_in_place_and_peer_fin_reads_zero() {
    let mut sim = Sim::new(Default::default());
    let (c, s, clog, slog) = sim.pair(true);
    assert_eq!(sim.cx(0, |cx| cx.write(c, b"hello world")).unwrap(), 11);
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().data.len() == 11));
    assert_eq!(clog.lock().unwrap().data, b"hello world");
    assert_eq!(slog.lock().unwrap().data, b"hello world");
    // Addresses.
    let (peer, local) = sim.cx(1, |cx| {
        (cx.peer_addr(s).unwrap(), cx.local_addr(s).unwrap())
    });
    assert_eq!(local, SocketAddrV4::new(S, PORT));
    assert_eq!(*peer.ip(), C);
    assert_eq!(sim.cx(0, |cx| cx.peer_addr(c).unwrap()), local);
    // The client shuts down writing: the server reads end of stream.
    sim.cx(0, |cx| cx.shutdown(c, Shutdown::Write)).unwrap();
    let sl = slog.clone();
    assert!(sim.run(5, |_| sl.lock().unwrap().eof));
    assert_eq!(
        sim.cx(1, |cx| cx.read(s, |_, _| unreachable!())).unwrap(),
        0
    );
    // Writing after our own shutdown of writing: EPIPE.
    let e = sim.cx(0, |cx| cx.write(c, b"x")).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::BrokenPipe, Some(libc::EPIPE)));
    // The server closes too; both end without errors.
    sim.cx(1, |cx| cx.close(s));
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().eof));
    assert!(clog.lock().unwrap().errors.is_empty());
    assert!(slog.lock().unwrap().errors.is_empty());
}

#[test]
fn nothing_to_read_would_block_and_peek_keeps_bytes() {
    let mut sim = Sim::new(Default::default());
    let (c, s, _, _) = sim.pair(false);
    // The server's probe reads everything in on_readable; peek on the client side instead.
    let e = sim.cx(0, |cx| cx.read(c, |_, _| 0)).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    let e = sim.cx(0, |cx| cx.recv(c, &mut [0; 4])).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::WouldBlock, Some(libc::EAGAIN)));
    // Bytes to the client: written by the server, not consumed by any handler on the client
    // (its probe consumes; so read by peek first inside the test via with_cx before pumping).
    sim.cx(1, |cx| cx.write(s, b"abcdef")).unwrap();
    sim.net.flush();
    while sim.net.host_ref(0).conn(c).unwrap().recv_queue() == 0 {
        assert!(sim.net.step());
    }
    let mut buf = [0u8; 4];
    assert_eq!(sim.cx(0, |cx| cx.peek(c, &mut buf)).unwrap(), 4);
    assert_eq!(&buf, b"abcd");
    assert_eq!(sim.cx(0, |cx| cx.readable_len(c)), 6);
    // A closure that consumes part leaves the rest.
    assert_eq!(
        sim.cx(0, |cx| cx.read(c, |a, _| {
            assert_eq!(&a[..2], b"ab");
            2
        }))
        .unwrap(),
        2
    );
    let mut rest = [0u8; 8];
    assert_eq!(sim.cx(0, |cx| cx.recv(c, &mut rest)).unwrap(), 4);
    assert_eq!(&rest[..4], b"cdef");
}

#[test]
fn peer_reset_is_econnreset_and_take_error_clears() {
    let mut sim = Sim::new(Default::default());
    let (c, s, clog, _) = sim.pair(false);
    sim.cx(1, |cx| cx.abort(s));
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().closed == 1));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::ConnectionReset, Some(libc::ECONNRESET))]
    );
    let _ = c;
}

#[test]
fn close_with_unread_bytes_resets_the_peer() {
    let mut sim = Sim::new(Default::default());
    let (c, s, clog, _) = sim.pair(false);
    // Bytes reach the server's buffer; the test closes before any handler reads them.
    sim.cx(0, |cx| cx.write(c, b"unread")).unwrap();
    sim.net.flush();
    while sim.net.host_ref(1).conn(s).unwrap().recv_queue() == 0 {
        assert!(sim.net.step());
    }
    sim.cx(1, |cx| cx.close(s));
    let cl = clog.clone();
    assert!(sim.run(5, |_| !cl.lock().unwrap().errors.is_empty()));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::ConnectionReset, Some(libc::ECONNRESET))]
    );
}

#[test]
fn refused_connect_is_econnrefused() {
    let mut sim = Sim::new(Default::default());
    let (cp, clog) = Probe::new(false);
    let now = sim.net.now();
    sim.apps[0]
        .connect(now, sim.net.host(0), SocketAddrV4::new(S, 81), cp)
        .unwrap();
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().closed == 1));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED))]
    );
}

#[test]
fn keepalive_death_is_etimedout_in_simulated_seconds() {
    let mut sim = Sim::new(Default::default());
    let (c, _s, clog, _) = sim.pair(false);
    let ka = KeepAlive {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        count: 3,
    };
    sim.cx(0, |cx| cx.set_keepalive(c, Some(ka))).unwrap();
    // The server vanishes: every packet towards it is lost.
    sim.net
        .link(0, 1)
        .unwrap()
        .set_config(LinkConfig::ideal(Duration::from_millis(1)).with_loss(1.0));
    let start = sim.net.now();
    let cl = clog.clone();
    assert!(sim.run(60, |_| cl.lock().unwrap().closed == 1));
    let took = sim.net.now() - start;
    assert!(
        took >= Duration::from_secs(16) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::TimedOut, Some(libc::ETIMEDOUT))]
    );
}

/// A connection to an address nobody answers, and a router's ICMP unreachable with `code`
/// quoting its SYN; returns the client's log and when the ICMP arrived.
fn icmp_during_connect(
    sim: &mut Sim,
    code: xdp_tcp::wire::icmpv4::DstUnreachable,
) -> (Log, xdp_tcp::time::Instant) {
    let (cp, clog) = Probe::new(false);
    let far = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 99), 80);
    let now = sim.net.now();
    let c = sim.apps[0].connect(now, sim.net.host(0), far, cp).unwrap();
    sim.net.flush(); // the SYN leaves (unroutable here)
    let (local, iss) = {
        let conn = sim.net.host_ref(0).conn(c).unwrap();
        (conn.local(), conn.iss())
    };
    let mut quoted = [0u8; 8];
    quoted[..2].copy_from_slice(&local.port().to_be_bytes());
    quoted[2..4].copy_from_slice(&far.port().to_be_bytes());
    quoted[4..8].copy_from_slice(&iss.0.to_be_bytes());
    let icmp = Icmpv4Repr::DstUnreachable {
        reason: code,
        next_hop_mtu: 0,
        header: Ipv4Repr::new(C, *far.ip(), IpProtocol::Tcp, 40),
        data: &quoted,
    };
    let caps = ChecksumCaps::default();
    let ip = Ipv4Repr::new(S, C, IpProtocol::Icmp, icmp.buffer_len());
    let mut pkt = vec![0u8; ip.buffer_len()];
    let mut p = Ipv4Packet::new_unchecked(&mut pkt[..]);
    ip.emit(&mut p, &caps);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
    let now = sim.net.now();
    sim.net.host(0).handle_ipv4(now, &pkt);
    (clog, now)
}

#[test]
fn icmp_admin_prohibited_during_connect_is_ehostunreach_at_once() {
    // a hard error (Linux's icmp_err_convert: fatal) ends the connect at once
    let mut sim = Sim::new(Default::default());
    let (clog, _) = icmp_during_connect(
        &mut sim,
        xdp_tcp::wire::icmpv4::DstUnreachable::CommProhibited,
    );
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().closed == 1));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::HostUnreachable, Some(libc::EHOSTUNREACH))]
    );
    // port unreachable is hard too, and means refused
    let mut sim = Sim::new(Default::default());
    let (clog, _) = icmp_during_connect(
        &mut sim,
        xdp_tcp::wire::icmpv4::DstUnreachable::PortUnreachable,
    );
    let cl = clog.clone();
    assert!(sim.run(5, |_| cl.lock().unwrap().closed == 1));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::ConnectionRefused, Some(libc::ECONNREFUSED))]
    );
}

#[test]
fn icmp_host_unreachable_during_connect_is_reported_when_connect_times_out() {
    // a soft error is remembered: the SYN is retried, and when the connect gives up its error
    // is the ICMP's EHOSTUNREACH instead of ETIMEDOUT (RFC 1122 4.2.3.9; Linux's tcp_write_err)
    let mut sim = Sim::new(Default::default());
    let (clog, at) = icmp_during_connect(
        &mut sim,
        xdp_tcp::wire::icmpv4::DstUnreachable::HostUnreachable,
    );
    let cl = clog.clone();
    assert!(
        !sim.run(60, |_| cl.lock().unwrap().closed == 1),
        "still trying"
    );
    assert!(clog.lock().unwrap().errors.is_empty());
    let cl = clog.clone();
    assert!(sim.run(120, |_| cl.lock().unwrap().closed == 1));
    // six retries of the SYN from a 1 s RTO doubling, the last wait capped at rto_max:
    // 1 + 2 + 4 + 8 + 16 + 32 + 60 s
    assert_eq!(sim.net.now() - at, Duration::from_secs(123));
    assert_eq!(
        clog.lock().unwrap().errors,
        [(ErrorKind::HostUnreachable, Some(libc::EHOSTUNREACH))]
    );
}

#[test]
fn options_buffer_sizes_and_take_error() {
    let mut sim = Sim::new(Default::default());
    let (c, s, _, _) = sim.pair(false);
    sim.cx(0, |cx| {
        cx.set_send_buffer_size(c, 64 * 1024).unwrap();
        cx.set_recv_buffer_size(c, 32 * 1024).unwrap();
        assert_eq!(cx.send_buffer_size(c).unwrap(), 64 * 1024);
        assert_eq!(cx.recv_buffer_size(c).unwrap(), 32 * 1024);
        cx.set_nodelay(c, true).unwrap();
        assert!(cx.connection(c).unwrap().nodelay());
        assert!(cx.take_error(c).unwrap().is_none());
        assert!(cx.send_space(c) > 0);
    });
    // Shutdown of reading: reads return end of stream at once.
    sim.cx(1, |cx| cx.shutdown(s, Shutdown::Read)).unwrap();
    assert_eq!(sim.cx(1, |cx| cx.read(s, |_, _| 0)).unwrap(), 0);
    assert!(sim.cx(1, |cx| cx.at_eof(s)));
    // After a reset the handler got on_error and on_closed, and the handle was released:
    // every call on it is ENOTCONN (SO_ERROR semantics are the threaded API's, see api_mem).
    sim.cx(1, |cx| cx.abort(s));
    sim.settle(50);
    let e = sim.cx(0, |cx| cx.take_error(c)).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::NotConnected, Some(libc::ENOTCONN)));
    let e = sim.cx(1, |cx| cx.write(s, b"x")).unwrap_err();
    assert_eq!(errno(&e), (ErrorKind::NotConnected, Some(libc::ENOTCONN)));
}

#[test]
fn handler_panic_is_caught_and_requests_shutdown() {
    let mut sim = Sim::new(Default::default());
    let (mut sp, slog) = Probe::new(false);
    sp.panic = true;
    sim.apps[1].listen(sim.net.host(1), PORT, 16, sp).unwrap();
    let (cp, clog) = Probe::new(false);
    let now = sim.net.now();
    let c = sim.apps[0]
        .connect(now, sim.net.host(0), SocketAddrV4::new(S, PORT), cp)
        .unwrap();
    let cl = clog.clone();
    assert!(sim.run(5, |_| !cl.lock().unwrap().connected.is_empty()));
    sim.cx(0, |cx| cx.write(c, b"boom")).unwrap();
    sim.settle(100);
    assert!(sim.apps[1].panicked());
    assert!(sim.apps[1].stop_requested());
    assert_eq!(slog.lock().unwrap().conns.len(), 1);
    // What the stack does next: close everything.
    let host = sim.net.host(1);
    sim.apps[1].close_all(host);
    sim.settle(100);
    assert!(!clog.lock().unwrap().errors.is_empty() || clog.lock().unwrap().eof);
}

/// Echoes lent bytes at once from the frame, at most half of each lend (so the rest goes the
/// copy path), and what reaches `on_readable` the usual way; logs both in order.
struct LendEcho {
    lent: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl Handler for LendEcho {
    fn lends(&self) -> bool {
        true
    }
    fn on_data(&mut self, out: &mut xdp_tcp::api::Lent<'_>, _: ConnId, data: &[u8]) -> usize {
        // written in place in the send buffer's room
        let half = data.len().div_ceil(2);
        let n = out
            .write_with(half, |room| {
                room.copy_from_slice(&data[..room.len()]);
                room.len()
            })
            .unwrap_or(0);
        let mut l = self.lent.lock().unwrap();
        l.0.extend_from_slice(&data[..n]);
        l.1 += n;
        n
    }
    fn on_readable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        let room = cx.send_space(conn);
        let mut got = Vec::new();
        let _ = cx.read(conn, |a, b| {
            let (a, b) = (
                &a[..a.len().min(room)],
                &b[..b.len().min(room - a.len().min(room))],
            );
            got.extend_from_slice(a);
            got.extend_from_slice(b);
            a.len() + b.len()
        });
        if !got.is_empty() {
            assert_eq!(cx.write(conn, &got).unwrap(), got.len());
            self.lent.lock().unwrap().0.extend_from_slice(&got);
        }
    }
    fn on_writable(&mut self, cx: &mut Cx<'_>, conn: ConnId) {
        self.on_readable(cx, conn);
    }
}

#[test]
fn a_lending_handler_answers_from_the_frame_and_gets_the_rest_through_on_readable() {
    let cfg = xdp_tcp::tcp::Config {
        send_buffer: 8 << 10,
        recv_buffer: 16 << 10,
        ..Default::default()
    };
    let mut sim = Sim::new(cfg);
    let log = Arc::new(Mutex::new((Vec::new(), 0)));
    let server = std::rc::Rc::new(std::cell::RefCell::new(HandlerApp::new()));
    let handler = LendEcho { lent: log.clone() };
    server
        .borrow_mut()
        .listen(sim.net.host(1), PORT, 16, handler)
        .unwrap();
    let app = std::rc::Rc::clone(&server);
    sim.net.lend_to(
        1,
        Box::new(
            move |id, conn: &mut xdp_tcp::tcp::Connection, data: &[u8]| {
                let now = xdp_tcp::time::Instant::ZERO;
                xdp_tcp::engine::App::on_payload(&mut *app.borrow_mut(), now, id, conn, data)
            },
        ),
    );
    let (cp, clog) = Probe::new(false);
    let now = sim.net.now();
    let c = sim.apps[0]
        .connect(now, sim.net.host(0), SocketAddrV4::new(S, PORT), cp)
        .unwrap();
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut off = 0;
    let limit = sim.net.now() + Duration::from_secs(30);
    let apps = &mut sim.apps;
    let done = sim.net.run_until(limit, |net| {
        let now = net.now();
        // the client's app, then the lending server's (instead of `apps[1]`)
        for i in 0..2 {
            let host = net.host(i);
            let evs: Vec<_> = std::iter::from_fn(|| host.poll_event()).collect();
            match i {
                0 => xdp_tcp::engine::App::poll(&mut apps[0], now, host, &evs),
                _ => xdp_tcp::engine::App::poll(&mut *server.borrow_mut(), now, host, &evs),
            };
        }
        if off < sent.len() && !clog.lock().unwrap().connected.is_empty() {
            off += apps[0]
                .with_cx(now, net.host(0), |cx| cx.write(c, &sent[off..]))
                .unwrap_or(0);
        }
        clog.lock().unwrap().data.len() == sent.len()
    });
    assert!(
        done,
        "echoed {} of {}",
        clog.lock().unwrap().data.len(),
        sent.len()
    );
    assert!(clog.lock().unwrap().data == sent, "the echo is byte-exact");
    let (seen, taken) = {
        let l = log.lock().unwrap();
        (l.0 == sent, l.1)
    };
    assert!(seen, "the handler saw the stream in order, lent and read");
    let stats = sim.net.host_ref(1).stats();
    assert!(
        taken > 0 && stats.rx_bytes_lent > taken as u64,
        "{taken} {stats:?}"
    );
    assert_eq!(stats.rx_bytes_lent - stats.rx_bytes_lent_kept, taken as u64);
}
