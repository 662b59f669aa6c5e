//! Issue 12, acceptance 6: the soak. The stack's echo server on the veth testbed, with the tc-BPF
//! fault program dropping 3% of TCP frames each way on the peer's veth, for `SOAK_SECS` seconds
//! after a warm-up (30 in the suite; `deploy/soak` runs it for longer) against three kinds of kernel clients in
//! the peer's namespace at once:
//! - churn: connect, 1-8 KiB echoed, close, again (4 threads);
//! - bulk: 4 connections, each 4 MiB echoed (a writer and a reader thread), then a new one;
//! - ping-pong: 10 connections, 64-byte requests in turn;
//! - held: 1000 connections open from the start to the end, 16 bytes echoed on each every few
//!   seconds (10 threads of 100).
//!
//! Every echoed byte is checked against what was sent. At the end: no error anywhere; every
//! connection the stack accepted was closed and freed (its connection count back to 0), the
//! books agree (clients' connections = accepted = finished; bytes the clients verified = bytes
//! the stack received and had acknowledged); the engine thread's heap is back at or under its
//! level after warm-up, and its peak in the second half of the run is no higher than in the
//! first (plus a quarter); the loss was real (the fault program dropped frames both ways
//! and both ends retransmitted); every UMEM frame is accounted for (`veth::stop`). Prints the
//! figures RELIABILITY.md quotes, a sample every `SOAK_SECS / 10` seconds.
//!
//! Needs root like the other veth tests; fails with the fix rather than skipping.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::apps::{EchoServer, Pattern};
use common::testbed::{require_environment, Testbed};
use common::veth;
use xdp_tcp::engine::cores::enter_netns;
use xdp_tcp::engine::App;
use xdp_tcp::host::{ConnId, Host};
use xdp_tcp::io::fault_bpf::Direction;
use xdp_tcp::neigh::ArpOwner;
use xdp_tcp::tcp::Event;
use xdp_tcp_bench::alloc::{thread_live_bytes, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const PORT: u16 = 7000;
const LOSS: f64 = 0.03;
const CHURNERS: usize = 4;
const BULKS: usize = 4;
const BULK_BYTES: usize = 4 << 20;
const PINGERS: usize = 10;
/// Long-lived connections held open for the whole run, each exchanging 16 bytes every few
/// seconds: with the rest, over 1000 connections open at once.
const HOLDERS: usize = 10;
const HELD_EACH: usize = 100;

/// What the engine thread sees, published on every poll.
#[derive(Default)]
struct Watch {
    conns: AtomicU64,
    heap: AtomicI64,
}

/// The echo server, publishing the host's connection count and the engine thread's heap.
struct Watched(EchoServer, Arc<Watch>);

impl App for Watched {
    fn poll(
        &mut self,
        now: xdp_tcp::Instant,
        host: &mut Host,
        events: &[(ConnId, Event)],
    ) -> usize {
        let work = self.0.poll(now, host, events);
        self.1
            .conns
            .store(host.conn_count() as u64, Ordering::Relaxed);
        self.1.heap.store(thread_live_bytes(), Ordering::Relaxed);
        work
    }
}

/// The clients' books.
#[derive(Default)]
struct Books {
    connections: AtomicU64,
    verified: AtomicU64,
    round_trips: AtomicU64,
    /// Held connections open so far.
    held: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Books {
    fn error(&self, e: String) {
        let mut v = self.errors.lock().unwrap();
        if v.len() < 50 {
            v.push(e);
        }
    }
}

fn connect(target: SocketAddrV4, books: &Books) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&target.into(), Duration::from_secs(10))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    books.connections.fetch_add(1, Ordering::Relaxed);
    Ok(s)
}

/// Reads to the end of stream: what is left must be nothing.
fn expect_eof(s: &mut TcpStream) -> Result<(), String> {
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).map_err(|e| format!("eof: {e}"))?;
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("{} bytes after the echo", rest.len()))
    }
}

fn churn(target: SocketAddrV4, seed: u64, stop: &AtomicBool, books: &Books) {
    let mut pat = Pattern::new(seed);
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let len = 1024 + (k * 2654435761 % 7168) as usize;
        let mut req = vec![0u8; len];
        pat.fill(&mut req);
        let r = (|| -> Result<(), String> {
            let mut s = connect(target, books).map_err(|e| format!("connect: {e}"))?;
            s.write_all(&req).map_err(|e| format!("write: {e}"))?;
            s.shutdown(std::net::Shutdown::Write)
                .map_err(|e| format!("shutdown: {e}"))?;
            let mut back = vec![0u8; len];
            s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
            if back != req {
                return Err("echo differs".into());
            }
            books.verified.fetch_add(len as u64, Ordering::Relaxed);
            expect_eof(&mut s)
        })();
        if let Err(e) = r {
            books.error(format!("churn {seed} #{k}: {e}"));
        }
    }
}

fn bulk(target: SocketAddrV4, seed: u64, stop: &AtomicBool, books: &Books) {
    let mut k = 0u64;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let r = (|| -> Result<(), String> {
            let mut s = connect(target, books).map_err(|e| format!("connect: {e}"))?;
            let mut w = s.try_clone().map_err(|e| e.to_string())?;
            let stream_seed = seed << 32 | k;
            let writer = std::thread::spawn(move || -> Result<(), String> {
                let mut pat = Pattern::new(stream_seed);
                let mut buf = vec![0u8; 64 << 10];
                let mut left = BULK_BYTES;
                while left > 0 {
                    let n = left.min(buf.len());
                    pat.fill(&mut buf[..n]);
                    w.write_all(&buf[..n]).map_err(|e| format!("write: {e}"))?;
                    left -= n;
                }
                w.shutdown(std::net::Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))
            });
            let mut pat = Pattern::new(stream_seed);
            let (mut got, mut want) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
            let mut at = 0usize;
            let read = loop {
                let n = match s.read(&mut got) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) => break Err(format!("read at {at}: {e}")),
                };
                pat.fill(&mut want[..n]);
                if got[..n] != want[..n] || at + n > BULK_BYTES {
                    break Err(format!("echo differs at or after byte {at}"));
                }
                at += n;
                books.verified.fetch_add(n as u64, Ordering::Relaxed);
            };
            writer.join().unwrap()?;
            read?;
            if at != BULK_BYTES {
                return Err(format!("end of stream after {at} bytes"));
            }
            Ok(())
        })();
        if let Err(e) = r {
            books.error(format!("bulk {seed} #{k}: {e}"));
        }
    }
}

fn ping_pong(target: SocketAddrV4, stop: &AtomicBool, books: &Books) {
    let mut conns: Vec<TcpStream> = Vec::new();
    for i in 0..PINGERS {
        match connect(target, books) {
            Ok(s) => {
                s.set_nodelay(true).unwrap();
                conns.push(s)
            }
            Err(e) => books.error(format!("ping-pong connect {i}: {e}")),
        }
    }
    let (mut req, mut rsp) = ([0u8; 64], [0u8; 64]);
    let mut n = 0u8;
    'outer: while !stop.load(Ordering::Relaxed) {
        for (i, s) in conns.iter_mut().enumerate() {
            n = n.wrapping_add(1);
            req.fill(n ^ i as u8);
            let r = s.write_all(&req).and_then(|_| s.read_exact(&mut rsp));
            if let Err(e) = r {
                books.error(format!("ping-pong {i}: {e}"));
                break 'outer;
            }
            if rsp != req {
                books.error(format!("ping-pong {i}: echo differs"));
                break 'outer;
            }
            books.round_trips.fetch_add(1, Ordering::Relaxed);
            books.verified.fetch_add(64, Ordering::Relaxed);
        }
    }
    for mut s in conns {
        let _ = s.shutdown(std::net::Shutdown::Write);
        if let Err(e) = expect_eof(&mut s) {
            books.error(format!("ping-pong close: {e}"));
        }
    }
}

fn hold(target: SocketAddrV4, seed: usize, stop: &AtomicBool, books: &Books) {
    let mut conns: Vec<TcpStream> = Vec::new();
    for i in 0..HELD_EACH {
        match connect(target, books) {
            Ok(s) => {
                s.set_nodelay(true).unwrap();
                conns.push(s);
                books.held.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => books.error(format!("held {seed}/{i} connect: {e}")),
        }
    }
    let (mut req, mut rsp) = ([0u8; 16], [0u8; 16]);
    let mut n = 0u8;
    'outer: while !stop.load(Ordering::Relaxed) {
        for (i, s) in conns.iter_mut().enumerate() {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            n = n.wrapping_add(1);
            req.fill(n ^ (seed * 31 + i) as u8);
            let r = s.write_all(&req).and_then(|_| s.read_exact(&mut rsp));
            if let Err(e) = r {
                books.error(format!("held {seed}/{i}: {e}"));
                break 'outer;
            }
            if rsp != req {
                books.error(format!("held {seed}/{i}: echo differs"));
                break 'outer;
            }
            books.verified.fetch_add(16, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    for (i, mut s) in conns.into_iter().enumerate() {
        let _ = s.shutdown(std::net::Shutdown::Write);
        if let Err(e) = expect_eof(&mut s) {
            books.error(format!("held {seed}/{i} close: {e}"));
        }
    }
}

/// One client thread's work, run in the peer's namespace.
type Client = Box<dyn FnOnce(&AtomicBool, &Books) + Send>;

fn soak_secs() -> u64 {
    std::env::var("SOAK_SECS")
        .ok()
        .map(|v| v.parse().expect("SOAK_SECS: whole seconds"))
        .unwrap_or(30)
}

#[test]
fn soak_with_churn_bulk_and_ping_pong_under_loss() {
    require_environment(&[]);
    let secs = soak_secs();
    let tb = Testbed::up("sk");
    let fault = veth::lossy_peer_link(&tb, LOSS);
    let peer_retrans_before = tb.tcp_snmp("ns_peer")["RetransSegs"];

    let echo = EchoServer::new(PORT);
    let counters = echo.counters();
    let watch = Arc::new(Watch::default());
    let run = veth::start(&tb, ArpOwner::Kernel, &[PORT], Watched(echo, watch.clone()));
    let target = SocketAddrV4::new(tb.ip("ip_stack"), PORT);

    let stop = Arc::new(AtomicBool::new(false));
    let books = Arc::new(Books::default());
    let mut clients = Vec::new();
    let peer = tb.netns_path("ns_peer");
    let spawn = |f: Client| {
        let (stop, books, peer) = (stop.clone(), books.clone(), peer.clone());
        std::thread::spawn(move || {
            enter_netns(&peer).unwrap_or_else(|e| panic!("{e}"));
            f(&stop, &books)
        })
    };
    for i in 0..CHURNERS {
        clients.push(spawn(Box::new(move |s, b| {
            churn(target, 100 + i as u64, s, b)
        })));
    }
    for i in 0..BULKS {
        clients.push(spawn(Box::new(move |s, b| {
            bulk(target, 200 + i as u64, s, b)
        })));
    }
    clients.push(spawn(Box::new(move |s, b| ping_pong(target, s, b))));
    for i in 0..HOLDERS {
        clients.push(spawn(Box::new(move |s, b| hold(target, i, s, b))));
    }

    // warm-up: every held connection open, then the heap level every later sample is judged
    // against
    let t0 = Instant::now();
    veth::wait_for("the held connections", Duration::from_secs(60), || {
        books.held.load(Ordering::Relaxed) == (HOLDERS * HELD_EACH) as u64
            || !books.errors.lock().unwrap().is_empty()
    });
    std::thread::sleep(Duration::from_secs(secs / 10).max(Duration::from_secs(3)));
    let heap_warm = watch.heap.load(Ordering::Relaxed);
    let warm = t0.elapsed();
    // the largest heap seen in the first and in the second half of the run
    let (mut heap_first, mut heap_second) = (heap_warm, 0);
    eprintln!("  t(s)  conns  heap(KiB)  connections  verified(MiB)  round trips  errors");
    // the run after warm-up, in two halves; a sample every 250 ms, a line every tenth
    let end = warm + Duration::from_secs(secs);
    let half = warm + Duration::from_secs(secs / 2);
    let step = Duration::from_secs((secs / 10).max(1));
    let mut next_line = warm + step;
    while t0.elapsed() < end {
        std::thread::sleep(Duration::from_millis(250));
        let heap = watch.heap.load(Ordering::Relaxed);
        if t0.elapsed() < half {
            heap_first = heap_first.max(heap);
        } else {
            heap_second = heap_second.max(heap);
        }
        if t0.elapsed() < next_line && t0.elapsed() < end {
            continue;
        }
        next_line += step;
        eprintln!(
            "{:6.0} {:6} {:10} {:12} {:14.1} {:12} {:7}",
            t0.elapsed().as_secs_f64(),
            watch.conns.load(Ordering::Relaxed),
            heap / 1024,
            books.connections.load(Ordering::Relaxed),
            books.verified.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            books.round_trips.load(Ordering::Relaxed),
            books.errors.lock().unwrap().len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let ran = t0.elapsed();
    // the last closes (a FIN lost to the fault program is retransmitted after an RTO)
    let deadline = Instant::now() + Duration::from_secs(60);
    while watch.conns.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let conns_left = watch.conns.load(Ordering::Relaxed);
    let heap_end = watch.heap.load(Ordering::Relaxed);
    let ingress = fault.stats(Direction::Ingress).unwrap();
    let egress = fault.stats(Direction::Egress).unwrap();
    drop(fault);
    let peer_retrans = tb.tcp_snmp("ns_peer")["RetransSegs"] - peer_retrans_before;
    let engine = veth::stop(&tb, run);
    let st = engine.host().stats().clone();
    let connections = books.connections.load(Ordering::Relaxed);
    let verified = books.verified.load(Ordering::Relaxed);
    eprintln!(
        "soak: {:.0} s, {connections} connections, {:.1} MiB echoed and verified, {} round \
         trips, {} errors; connections left {conns_left}; heap after warm-up {} KiB, largest in \
         the first half {} KiB, in the second {} KiB, at the end {} KiB; the fault program dropped {} of the stack's frames and {} of \
         the peer's; retransmitted: stack {} segments, peer {peer_retrans}; echo {:?}",
        ran.as_secs_f64(),
        verified as f64 / (1 << 20) as f64,
        books.round_trips.load(Ordering::Relaxed),
        books.errors.lock().unwrap().len(),
        heap_warm / 1024,
        heap_first / 1024,
        heap_second / 1024,
        heap_end / 1024,
        ingress.dropped,
        egress.dropped,
        st.closed_conns.retrans_segs,
        counters
    );

    let errors = books.errors.lock().unwrap();
    assert!(errors.is_empty(), "client errors: {errors:?}");
    assert_eq!(conns_left, 0, "connections still held by the stack");
    assert_eq!(engine.host().conn_count(), 0);
    // the books: every client connection was accepted, echoed to its end and freed
    assert_eq!(
        counters.get(&counters.accepted),
        connections,
        "{counters:?}"
    );
    assert_eq!(
        counters.get(&counters.finished),
        connections,
        "{counters:?}"
    );
    assert_eq!(counters.get(&counters.errors), 0, "{counters:?}");
    assert_eq!(st.conns_accepted, connections, "{st:?}");
    assert_eq!(st.conns_freed, connections, "{st:?}");
    assert_eq!(
        (st.closed_conns.bytes_received, st.closed_conns.bytes_acked),
        (verified, verified),
        "bytes the stack received in sequence and had acknowledged vs bytes the clients \
         verified (the echo server counted {})",
        counters.get(&counters.bytes)
    );
    assert!(
        connections > 100,
        "{connections} connections: too few to call it churn"
    );
    // memory steady: the second half's peak no higher than the first's (plus a quarter, for
    // where in its transfer each bulk connection happened to be at a sample), and below the
    // warm-up level once the connections are gone
    assert!(
        heap_second <= heap_first + heap_first / 4,
        "the engine's heap grew: largest {heap_second} bytes in the second half, {heap_first} \
         in the first"
    );
    assert!(
        heap_end <= heap_warm,
        "the engine's heap ended at {heap_end} bytes, above {heap_warm} after warm-up"
    );
    // the loss was real and repaired
    assert!(
        ingress.dropped > 0 && egress.dropped > 0,
        "{ingress:?} {egress:?}"
    );
    assert!(st.closed_conns.retrans_segs > 0 && peer_retrans > 0);
}
