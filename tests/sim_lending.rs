//! Zero-copy receive on the simulator: a server host whose in-order payload is lent to the
//! application in place ([`Host::handle_ipv4_lending`], what an engine does for an
//! [`App`](xdp_tcp::engine::App) that lends) echoes it straight from the received frame.
//!
//! - Over lossy, reordering, duplicating, MTU-limited links with small buffers, many seeds: the
//!   echo is byte-exact whatever the sink takes (all, part, nothing, as the seed picks, and never
//!   more than the send buffer holds), written with `send` or in place with `send_with` (so
//!   retransmissions of bytes written in place are exercised too); bytes the sink left reach
//!   the application through the receive buffer, in order.
//! - A sink that takes nothing is exactly the copy path: the same packets at the same virtual
//!   times as a host without one.
//! - Only in-order bytes that nothing unread precedes are lent: not bytes behind unread ones,
//!   not bytes behind a hole (those are copied and read as before).

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::sim_pair::{End, Pair, PORT};
use xdp_tcp::host::{ConnId, Host};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp::{self, Connection, Event};
use xdp_tcp::time::Duration;
use xdp_tcp::wire::{Ipv4Packet, TcpPacket};

const LEN: usize = 192 << 10;
const SEEDS: u64 = 200;
const LIMIT: Duration = Duration::from_secs(600);

/// 2 ms each way at 20 Mbit/s, MTU 1280: 3% loss in bursts of up to 3, reordering and
/// duplicates; the sender learns of none of it but from the ACKs.
fn lossy() -> LinkConfig {
    let mut l = LinkConfig::ideal(Duration::from_millis(2)).with_bandwidth(20_000_000);
    l.mtu = 1280;
    l.loss = 0.03;
    l.loss_burst_max = 3;
    l.reorder = 0.03;
    l.reorder_delay = Duration::from_millis(3);
    l.duplicate = 0.01;
    l
}

/// Small buffers, window scaling at shift 7 (as Linux offers): the send buffer fills, so the
/// sink cannot always echo what it is lent.
fn config() -> tcp::Config {
    tcp::Config {
        send_buffer: 6 << 10,
        recv_buffer: 8 << 10,
        window_shift: Some(7),
        ..tcp::Config::default()
    }
}

/// What the sink did, shared with the test's loop.
#[derive(Default)]
struct Lent {
    calls: u64,
    offered: u64,
    taken: u64,
}

/// The server's echo: what the sink left is read from the receive buffer and written back,
/// never more than the send buffer takes (so nothing waits outside the connection and the
/// echoed stream stays in order); the connection is closed once the client's FIN is read.
fn serve(host: &mut Host, id: ConnId, buf: &mut [u8], closed: &mut bool) {
    if *closed {
        return;
    }
    loop {
        let Some(c) = host.conn(id) else { return };
        let n = c.recv_queue().min(c.send_space()).min(buf.len());
        if n == 0 {
            break;
        }
        let got = host.recv(id, &mut buf[..n]).expect("readable bytes");
        assert_eq!(host.send(id, &buf[..got]), Ok(got), "the space was there");
    }
    if host.conn(id).is_some_and(|c| c.at_eof()) {
        host.close(id);
        *closed = true;
    }
}

struct Run {
    echoed_exact: bool,
    finished: bool,
    lent: Lent,
    host_lent: u64,
    host_kept: u64,
    copied: u64,
}

/// The client sends `LEN` seeded bytes and reads the echo; with `sink`, the server lends to a
/// sink that takes, per call, all it is offered, half, one byte or nothing (seeded), echoing
/// what it takes with [`Connection::send`] (which may take less: then only that much was
/// taken). Without, the same runs on the copy path.
fn echo(seed: u64, link: LinkConfig, sink: bool, trace: Option<&mut Vec<String>>) -> Run {
    let mut pair = Pair::seeded(config(), seed).link(link).build();
    let lent = Rc::new(RefCell::new(Lent::default()));
    if sink {
        let l = Rc::clone(&lent);
        let mut state = seed | 1;
        pair.net.lend_to(
            pair.s,
            Box::new(move |_, conn: &mut Connection, data: &[u8]| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let want = match state % 4 {
                    0 => data.len(),
                    1 => data.len() / 2,
                    2 => 1,
                    _ => 0,
                };
                // half the time straight into the send buffer's room (`send_with`)
                let taken = match want {
                    0 => 0,
                    _ if state % 8 < 4 => conn
                        .send_with(want, |room| {
                            room.copy_from_slice(&data[..room.len()]);
                            room.len()
                        })
                        .unwrap_or(0),
                    _ => conn.send(&data[..want]).unwrap_or(0),
                };
                l.borrow_mut().count(data.len(), taken);
                taken
            }),
        );
    }
    finish(run_echo(pair, seed, trace), lent)
}

impl Lent {
    fn count(&mut self, offered: usize, taken: usize) {
        self.calls += 1;
        self.offered += offered as u64;
        self.taken += taken as u64;
    }
}

/// The run's outcome with what its sink (dropped with the network) counted.
fn finish(mut run: Run, lent: Rc<RefCell<Lent>>) -> Run {
    run.lent = Rc::try_unwrap(lent)
        .ok()
        .expect("the sink is gone")
        .into_inner();
    run
}

/// Runs the echo on `pair` (its sink installed, if any) until the client has its whole echo
/// back and released its connection; `trace` gets the server's packet counts at each change.
fn run_echo(mut pair: Pair, seed: u64, mut trace: Option<&mut Vec<String>>) -> Run {
    let (c, s) = (pair.c, pair.s);
    let mut client = End::new(c, seed, LEN);
    client.id = Some(pair.start_connect());
    let mut server = None;
    let mut closed = false;
    let mut buf = vec![0u8; 64 << 10];
    let mut seen = 0;
    let finished = pair.run_until(LIMIT, |net: &mut Network| {
        if server.is_none() {
            server = net.host(s).accept(PORT);
        }
        if let Some(id) = server {
            serve(net.host(s), id, &mut buf, &mut closed);
        }
        client.pump(net, &mut buf);
        if let Some(t) = trace.as_deref_mut() {
            let stats = net.host_ref(s).stats();
            if stats.tx_packets != seen {
                seen = stats.tx_packets;
                t.push(format!(
                    "{:?} {} {}",
                    net.now(),
                    stats.tx_packets,
                    stats.rx_packets
                ));
            }
        }
        client.released || client.error.is_some()
    }) && client.error.is_none();
    let copied = server
        .and_then(|id| pair.net.host_ref(s).conn(id))
        .map_or(0, |x| x.stats().recv_buf_copied);
    let stats = pair.net.host_ref(s).stats();
    Run {
        echoed_exact: client.received == LEN && client.sink.digest() == client.src.digest(),
        finished,
        lent: Lent::default(),
        host_lent: stats.rx_bytes_lent,
        host_kept: stats.rx_bytes_lent_kept,
        copied,
    }
}

#[test]
fn a_lent_echo_is_byte_exact_on_lossy_paths_whatever_the_sink_takes() {
    let mut failures = Vec::new();
    let (mut offered, mut taken, mut kept_somewhere) = (0, 0, 0);
    for seed in 1..=SEEDS {
        let r = echo(seed, lossy(), true, None);
        if !r.finished || !r.echoed_exact {
            failures.push(format!(
                "seed {seed}: finished {} exact {}",
                r.finished, r.echoed_exact
            ));
            continue;
        }
        // the host counts what its sink saw and left
        assert_eq!(r.host_lent, r.lent.offered, "seed {seed}: bytes lent");
        assert_eq!(
            r.host_kept,
            r.lent.offered - r.lent.taken,
            "seed {seed}: bytes kept"
        );
        offered += r.lent.offered;
        taken += r.lent.taken;
        kept_somewhere += u64::from(r.host_kept > 0);
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // the fast path lends most of the stream despite the losses, and both the sink's bytes and
    // the kept ones were exercised
    assert!(
        offered > (SEEDS * LEN as u64) / 20,
        "{offered} bytes lent of {}",
        SEEDS * LEN as u64
    );
    assert!(taken > 0 && taken < offered, "taken {taken} of {offered}");
    assert!(
        kept_somewhere > SEEDS / 2,
        "bytes kept in {kept_somewhere} runs"
    );
}

#[test]
fn a_sink_that_takes_nothing_leaves_the_wire_exactly_as_the_copy_path() {
    for seed in [3, 11, 29] {
        let mut link = lossy();
        link.loss = 0.01;
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let r = echo_taking_nothing(seed, link.clone(), &mut with);
        let plain = echo(seed, link, false, Some(&mut without));
        assert!(r.finished && r.echoed_exact && plain.finished && plain.echoed_exact);
        assert!(r.lent.calls > 0, "seed {seed}: the sink was called");
        assert_eq!(r.host_kept, r.host_lent, "seed {seed}: it kept everything");
        assert_eq!(r.copied, plain.copied, "seed {seed}: the same bytes copied");
        assert_eq!(
            with, without,
            "seed {seed}: the same packets at the same times"
        );
    }
}

/// [`echo`] with a sink that takes nothing, tracing the server's packet counts.
fn echo_taking_nothing(seed: u64, link: LinkConfig, trace: &mut Vec<String>) -> Run {
    let mut pair = Pair::seeded(config(), seed).link(link).build();
    let lent = Rc::new(RefCell::new(Lent::default()));
    let l = Rc::clone(&lent);
    pair.net.lend_to(
        pair.s,
        Box::new(move |_, _: &mut Connection, data: &[u8]| {
            l.borrow_mut().count(data.len(), 0);
            0
        }),
    );
    finish(run_echo(pair, seed, Some(trace)), lent)
}

/// Drops the first client data segment whose payload starts with `b'H'` (the hole's segment),
/// once.
fn drop_first_h(dropped: &Rc<RefCell<bool>>, frame: &[u8]) -> Verdict {
    let Ok(ip) = Ipv4Packet::new_checked(frame) else {
        return Verdict::Pass;
    };
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return Verdict::Pass;
    };
    if tcp.payload().first() == Some(&b'H') && !*dropped.borrow() {
        *dropped.borrow_mut() = true;
        return Verdict::Drop;
    }
    Verdict::Pass
}

#[test]
fn only_bytes_that_nothing_unread_or_missing_precedes_are_lent() {
    let dropped = Rc::new(RefCell::new(false));
    let d = Rc::clone(&dropped);
    let mut pair = Pair::builder(tcp::Config {
        nodelay: true,
        delayed_ack: None,
        ..tcp::Config::default()
    })
    .filter_to_server(move |f: &[u8]| drop_first_h(&d, f))
    .build();
    let (client, server) = pair.connect();
    let s = pair.s;
    // the sink takes what its switch says: nothing at first
    let offered: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let take = Rc::new(RefCell::new(false));
    let (o, t) = (Rc::clone(&offered), Rc::clone(&take));
    pair.net.lend_to(
        s,
        Box::new(move |_, _: &mut Connection, data: &[u8]| {
            o.borrow_mut().push(data.to_vec());
            if *t.borrow() {
                data.len()
            } else {
                0
            }
        }),
    );
    let settle = |pair: &mut Pair| {
        pair.run_until(Duration::from_millis(50), |_| false);
    };
    let send = |pair: &mut Pair, bytes: &[u8]| {
        assert_eq!(pair.client().send(client, bytes), Ok(bytes.len()));
        settle(pair);
    };
    let drain_events = |pair: &mut Pair| -> Vec<Event> {
        std::iter::from_fn(|| pair.server().poll_event())
            .filter(|&(id, _)| id == server)
            .map(|(_, e)| e)
            .collect()
    };
    drain_events(&mut pair);

    // 1. lent and left: kept, readable, announced; what follows is behind unread bytes
    send(&mut pair, b"aaaa");
    send(&mut pair, b"bbbb");
    send(&mut pair, b"cccc");
    assert_eq!(
        *offered.borrow(),
        [b"aaaa".to_vec()],
        "only the first was lent"
    );
    let events = drain_events(&mut pair);
    assert!(
        !events.is_empty() && events.iter().all(|e| *e == Event::Readable),
        "{events:?}"
    );
    let mut buf = [0u8; 64];
    let n = pair.server().recv(server, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"aaaabbbbcccc");

    // 2. lent and taken: nothing buffered, nothing announced
    *take.borrow_mut() = true;
    send(&mut pair, b"dddd");
    assert_eq!(offered.borrow().last().unwrap(), b"dddd");
    assert!(
        drain_events(&mut pair).is_empty(),
        "no Readable for bytes taken"
    );
    assert_eq!(pair.server().conn(server).unwrap().recv_queue(), 0);

    // 3. a hole: the segments after it and the one that fills it are copied, not lent
    offered.borrow_mut().clear();
    assert_eq!(pair.client().send(client, b"HHHH"), Ok(4));
    pair.run_until(Duration::from_micros(10), |_| false);
    send(&mut pair, b"iiii");
    send(&mut pair, b"jjjj");
    assert!(*dropped.borrow(), "the hole's segment was dropped");
    // the retransmission fills the hole
    pair.run_until(Duration::from_secs(2), |net| {
        net.host_ref(s).conn(server).unwrap().recv_queue() == 12
    });
    assert!(offered.borrow().is_empty(), "lent: {:?}", offered.borrow());
    let n = pair.server().recv(server, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"HHHHiiiijjjj");

    // 4. once read, in-order bytes are lent again
    send(&mut pair, b"kkkk");
    assert_eq!(*offered.borrow(), [b"kkkk".to_vec()]);
    let stats = pair.server().stats();
    assert_eq!((stats.rx_bytes_lent, stats.rx_bytes_lent_kept), (12, 4));
    // the peer saw every byte acknowledged
    let c = pair.client().conn(client).unwrap();
    assert_eq!(c.stats().bytes_acked, 32);
}
