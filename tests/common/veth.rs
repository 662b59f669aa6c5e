//! The stack's engine on a veth testbed and the kernel-side programs the veth tests run against
//! it: [`start`] an engine with an application on the testbed's stack interface, [`stop`] it and
//! check its books; a Python echo client ([`ECHO_CLIENT`]) and a threaded echo server
//! ([`ECHO_SERVER`]) for the peer's namespace; the peer's counters.

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::testbed::{in_netns, Testbed};
use xdp_tcp::engine::cores::{CoreSpec, EngineThreads};
use xdp_tcp::engine::{App, Engine, EngineConfig, IdleBackoff};
use xdp_tcp::host::{Host, HostConfig};
use xdp_tcp::io::pcap::PcapTap;
use xdp_tcp::io::xdp::{
    ifindex, AttachMode, SteerConfig, SteerProgram, UmemConfig, XdpSocket, XdpSocketConfig,
};
use xdp_tcp::io::PacketIo;
use xdp_tcp::neigh::netlink::KernelTables;
use xdp_tcp::neigh::{ArpOwner, NeighCache, NeighConfig};
use xdp_tcp::wire::EthernetAddress;

/// A running engine: its steering program (the socket leaves its XSKMAP in [`stop`]) and thread.
pub struct Running<P: XdpBacked, A: App> {
    pub prog: Arc<SteerProgram>,
    pub threads: EngineThreads<Engine<P, A>>,
}

/// The AF_XDP socket under whatever middleware a test wraps it in.
pub trait XdpBacked: PacketIo + Send + 'static {
    fn xdp(&self) -> &XdpSocket;
    fn xdp_mut(&mut self) -> &mut XdpSocket;
}

impl XdpBacked for XdpSocket {
    fn xdp(&self) -> &XdpSocket {
        self
    }
    fn xdp_mut(&mut self) -> &mut XdpSocket {
        self
    }
}

impl XdpBacked for PcapTap<XdpSocket> {
    fn xdp(&self) -> &XdpSocket {
        self.inner()
    }
    fn xdp_mut(&mut self) -> &mut XdpSocket {
        self.inner_mut()
    }
}

/// Rings deep enough to absorb a few milliseconds of the peer's bursts while the engine shares
/// two cores with it (4096 frames in the fill ring ran dry under 100 connections: the kernel
/// counted the drops and TCP recovered, but every recovery costs seconds of test time).
pub fn socket_config() -> XdpSocketConfig {
    XdpSocketConfig {
        umem: UmemConfig {
            frame_count: 16384,
            fill_ring: 8192,
            comp_ring: 4096,
            ..Default::default()
        },
        rx_ring: 8192,
        tx_ring: 4096,
        ..Default::default()
    }
}

/// Loads and attaches the steering program in the stack's namespace, then starts one engine on
/// queue 0 on its own pinned thread, which enters the namespace before opening its netlink and
/// AF_XDP sockets.
pub fn start<A: App + Send + 'static>(
    tb: &Testbed,
    arp_owner: ArpOwner,
    listen: &[u16],
    app: A,
) -> Running<XdpSocket, A> {
    start_with(tb, arp_owner, listen, app, |sock| sock)
}

/// [`start`], with the engine's socket wrapped by `wrap` (a pcap tap, say).
pub fn start_with<P: XdpBacked, A: App + Send + 'static>(
    tb: &Testbed,
    arp_owner: ArpOwner,
    listen: &[u16],
    app: A,
    wrap: impl FnOnce(XdpSocket) -> P + Send + 'static,
) -> Running<P, A> {
    start_sized(tb, arp_owner, listen, app, wrap, socket_config())
}

/// [`start_with`] on a socket of `sock_cfg` (rings and UMEM sized by the test).
pub fn start_sized<P: XdpBacked, A: App + Send + 'static>(
    tb: &Testbed,
    arp_owner: ArpOwner,
    listen: &[u16],
    app: A,
    wrap: impl FnOnce(XdpSocket) -> P + Send + 'static,
    sock_cfg: XdpSocketConfig,
) -> Running<P, A> {
    start_tuned(tb, arp_owner, listen, app, wrap, sock_cfg, |_| {})
}

/// [`start_sized`] with the engine's configuration changed by `tune` after the defaults.
pub fn start_tuned<P: XdpBacked, A: App + Send + 'static>(
    tb: &Testbed,
    arp_owner: ArpOwner,
    listen: &[u16],
    app: A,
    wrap: impl FnOnce(XdpSocket) -> P + Send + 'static,
    sock_cfg: XdpSocketConfig,
    tune: impl Fn(&mut EngineConfig) + Send + Sync + 'static,
) -> Running<P, A> {
    let ip = tb.ip("ip_stack");
    let prefix_len: u8 = tb.get("prefix_len").parse().unwrap();
    let if_stack = tb.get("if_stack").to_string();
    let steer = SteerConfig {
        addr: ip,
        ephemeral_ports: 61000..=65535,
        steer_arp: arp_owner == ArpOwner::Stack,
    };
    let ports = listen.to_vec();
    let prog = {
        let if_stack = if_stack.clone();
        let steer = steer.clone();
        in_netns(tb.get("ns_stack"), move || {
            let mut prog = SteerProgram::load().expect("load xdp_steer (needs CAP_BPF)");
            prog.set_config(&steer).unwrap();
            for p in ports {
                prog.add_listen_port(p).unwrap();
            }
            prog.attach(ifindex(&if_stack).unwrap(), AttachMode::Auto)
                .expect("attach XDP");
            Arc::new(prog)
        })
    };

    let cores = core_affinity::get_core_ids().expect("core ids");
    let spec = CoreSpec {
        queue_id: 0,
        core: cores.last().copied(),
        netns: Some(tb.netns_path("ns_stack")),
    };
    let app = Mutex::new(Some(app));
    let wrap = Mutex::new(Some(wrap));
    let listen = listen.to_vec();
    let p = Arc::clone(&prog);
    let threads = EngineThreads::spawn(vec![spec], move |spec| {
        let mut kernel = KernelTables::open(ifindex(&if_stack)?)?;
        let mac = kernel.link_mac()?;
        let sock = XdpSocket::open(&if_stack, spec.queue_id, &sock_cfg)?;
        p.register_socket(spec.queue_id, sock.as_raw_fd())?;
        let mut ncfg = NeighConfig::new(ip, prefix_len, mac);
        ncfg.arp_owner = arp_owner;
        let mut neigh = NeighCache::new(ncfg);
        let seeded = kernel.seed(xdp_tcp::Instant::ZERO, &mut neigh)?;
        eprintln!("seeded from the kernel: {seeded:?}");
        let mut hcfg = HostConfig::new(ip);
        hcfg.ephemeral_ports = (*steer.ephemeral_ports.start(), *steer.ephemeral_ports.end());
        let mut host = Host::new(hcfg);
        for &port in &listen {
            host.listen(port, 256);
        }
        let app = app.lock().unwrap().take().expect("one engine");
        let io = (wrap.lock().unwrap().take().expect("one engine"))(sock);
        let mut cfg = EngineConfig {
            // Share the two cores with the kernel peer: spin briefly, then sleep in poll().
            idle: Some(IdleBackoff {
                after: 256,
                max_sleep: Duration::from_millis(5),
            }),
            ..Default::default()
        };
        tune(&mut cfg);
        Ok(Engine::new(io, host, neigh, app, cfg).with_kernel(kernel))
    })
    .expect("start the engine");
    Running { prog, threads }
}

/// Stops the engine once quiet and checks the books: the socket leaves the XSKMAP first so no
/// frame can be redirected after the engine's last receive.
pub fn stop<P: XdpBacked, A: App>(tb: &Testbed, run: Running<P, A>) -> Engine<P, A> {
    run.prog.unregister_socket(0).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut engine = run
        .threads
        .stop()
        .pop()
        .unwrap()
        .expect("the engine thread failed");
    let deadline = Instant::now() + Duration::from_secs(1);
    while engine.io().xdp().accounting().tx > 0 && Instant::now() < deadline {
        engine.io_mut().xdp_mut().reclaim_completions();
        std::thread::sleep(Duration::from_millis(1));
    }
    let acc = engine
        .io()
        .xdp()
        .check_accounting()
        .expect("frame accounting");
    assert_eq!((acc.app, acc.tx, acc.violations), (0, 0, 0), "{acc:?}");
    let steer = run.prog.stats().unwrap();
    let k = engine.io().xdp().kernel_stats().unwrap();
    eprintln!(
        "steer {steer:?}\nsocket {:?}\nkernel xsk drops: rx {} ring-full {} fill-empty {}\nframes {acc:?}\nengine {:?}\nhost {:?} drops {:?}\nneigh {:?}",
        engine.io().xdp().stats(),
        k.rx_dropped(),
        k.rx_ring_full(),
        k.rx_fill_ring_empty_descs(),
        engine.stats(),
        engine.host().stats(),
        engine.host().stats().drops().collect::<Vec<_>>(),
        engine.neigh().stats()
    );
    // Every frame the program redirected reached the engine, or the kernel counted it dropped at
    // the socket (no free frame in the fill ring, rx ring full): the link's own loss, which TCP
    // recovers from. Frames for a queue whose socket had left the map are `redirect_failed` and
    // went to the kernel instead, so they are not in `redirected()`.
    assert_eq!(
        steer.redirected(),
        engine.stats().rx_frames + k.rx_dropped() + k.rx_ring_full(),
        "frames the XDP program redirected vs frames the engine received + socket drops"
    );
    assert_eq!(
        engine.stats().rx_frames,
        engine.io().xdp().stats().rx_frames
    );
    assert_eq!((k.rx_invalid_descs(), k.tx_invalid_descs()), (0, 0));
    assert_eq!(engine.stats().rx_dropped(), 0, "{:?}", engine.stats());
    assert_eq!(engine.stats().drop_no_route, 0);
    assert_eq!(
        engine.neigh().config().mac,
        EthernetAddress(tb.mac("mac_stack")),
        "the MAC read over netlink"
    );
    engine
}

/// Kernel echo clients: `python3 -c ECHO_CLIENT HOST PORT N SIZE` opens N connections, sends
/// SIZE bytes on each (then shuts down writing) and checks, as they come back, that the echo is
/// the same bytes followed by end of stream. Every connection sends a different stream (one
/// random block read at a different offset), checked chunk by chunk, so memory stays at twice
/// SIZE whatever N. Prints `ok N SIZE SECONDS`; a failed connection is reported and the others go
/// on; exits non-zero if any failed, or when nothing moves for 15 s (the open ones listed).
pub const ECHO_CLIENT: &str = r#"
import os, selectors, socket, sys, time
host, port, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
block = os.urandom(size)
data = memoryview(block + block)
sel = selectors.DefaultSelector()
failed = []
t0 = time.time()
for i in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.setblocking(False)
    st = {'s': s, 'i': i, 'off': i * 7919 % size, 'sent': 0, 'got': 0, 'shut': False}
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
def fail(st, why):
    failed.append('connection %d: %s (%d sent, %d back)' % (st['i'], why, st['sent'], st['got']))
    sel.unregister(st['s'])
    st['s'].close()
left = n
while left:
    events = sel.select(timeout=15)
    if not events:
        stuck = [(k.data['i'], k.data['sent'], k.data['got']) for k in sel.get_map().values()]
        sys.exit('stalled with %d connections open (index, sent, back): %s; failed: %s' % (left, stuck[:20], failed[:10]))
    for key, ev in events:
        st = key.data
        s = st['s']
        try:
            if ev & selectors.EVENT_WRITE and not st['shut']:
                a = st['off'] + st['sent']
                try:
                    st['sent'] += s.send(data[a:st['off'] + min(st['sent'] + 262144, size)])
                except BlockingIOError:
                    pass
                if st['sent'] == size:
                    s.shutdown(socket.SHUT_WR)
                    st['shut'] = True
                    sel.modify(s, selectors.EVENT_READ, st)
            if ev & selectors.EVENT_READ:
                try:
                    chunk = s.recv(262144)
                except BlockingIOError:
                    continue
                if chunk:
                    a = st['off'] + st['got']
                    if st['got'] + len(chunk) > size or data[a:a + len(chunk)] != chunk:
                        fail(st, 'echo differs at or after byte %d' % st['got'])
                        left -= 1
                        continue
                    st['got'] += len(chunk)
                    continue
                if st['got'] != size or not st['shut']:
                    fail(st, 'end of stream early')
                else:
                    sel.unregister(s)
                    s.close()
                left -= 1
        except OSError as e:
            fail(st, repr(e))
            left -= 1
if failed:
    sys.exit('failed %d of %d: %s' % (len(failed), n, failed[:10]))
print('ok', n, size, round(time.time() - t0, 3), flush=True)
"#;

/// A threaded kernel echo server: `python3 -c ECHO_SERVER IP PORT N` prints `ready`, echoes N
/// connections until each one's end of stream, then prints `served N errors E [...]` and exits
/// non-zero if any failed.
pub const ECHO_SERVER: &str = r#"
import socket, sys, threading
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2])))
l.listen(256)
n = int(sys.argv[3])
print('ready', flush=True)
errors = []
def serve(c):
    try:
        while True:
            b = c.recv(262144)
            if not b:
                break
            c.sendall(b)
        c.close()
    except Exception as e:
        errors.append(repr(e))
threads = []
for _ in range(n):
    c, _ = l.accept()
    t = threading.Thread(target=serve, args=(c,))
    t.start()
    threads.append(t)
for t in threads:
    t.join()
print('served', n, 'errors', len(errors), errors[:3], flush=True)
sys.exit(1 if errors else 0)
"#;

/// The peer's TCP counters that a reset moves: `EstabResets`, `OutRsts`.
pub fn peer_resets(tb: &Testbed) -> [u64; 2] {
    let tcp = tb.tcp_snmp("ns_peer");
    [tcp["EstabResets"], tcp["OutRsts"]]
}

/// Waits for the `ready` line a peer-side server prints once it listens.
pub fn wait_ready(child: &mut Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "the peer's server did not start");
}

/// Polls `cond` every 5 ms until it holds; panics naming `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Issue 11, acceptance 0: the fault program's loss was real loss, seen and repaired by both ends.
///
/// `peer_retrans` is how much the peer's `TcpRetransSegs` rose; `ingress` and `egress` are the
/// fault program's counters on the peer's veth (ingress: the stack's frames, egress: the peer's);
/// `stack` the stack's connection counters. Asserts:
/// - the peer retransmitted at least 90% as many segments as it lost frames that occupied
///   sequence space (a drop it was told of would be re-sent as if new, uncounted; the 10% allow
///   for Linux merging small lost segments into one retransmission);
/// - the stack retransmitted at least 90% as many segments as it lost (it merges none, but
///   the same slack keeps the two checks alike);
/// - the stack saw the gaps the peer's losses left: out-of-order segments and SACK blocks in
///   its ACKs, each at least half as many as those losses (a loss at the tail of a flight leaves
///   no gap behind it);
/// - a duplicate segment (a spurious retransmission by the peer) was reported by D-SACK.
pub fn assert_loss_seen_and_repaired(
    peer_retrans: u64,
    ingress: &xdp_tcp::io::fault_bpf::TcFaultStats,
    egress: &xdp_tcp::io::fault_bpf::TcFaultStats,
    stack: &xdp_tcp::tcp::ConnStats,
) {
    eprintln!(
        "loss: the peer lost {} frames ({} with sequence space) and retransmitted {peer_retrans} \
         segments; the stack lost {} ({} with sequence space) and retransmitted {}; the stack saw \
         {} out-of-order and {} duplicate segments, sent {} SACK blocks and {} D-SACKs",
        egress.dropped,
        egress.dropped_seq,
        ingress.dropped,
        ingress.dropped_seq,
        stack.retrans_segs,
        stack.ooo_segs_in,
        stack.dup_segs_in,
        stack.sack_blocks_out,
        stack.dsack_out
    );
    assert!(
        peer_retrans * 10 >= egress.dropped_seq * 9,
        "the peer retransmitted {peer_retrans} segments for {} silently lost: were the drops \
         reported to it? {egress:?}",
        egress.dropped_seq
    );
    assert!(
        stack.retrans_segs * 10 >= ingress.dropped_seq * 9,
        "the stack retransmitted {} segments for {} lost: {stack:?}",
        stack.retrans_segs,
        ingress.dropped_seq
    );
    assert!(
        stack.ooo_segs_in * 2 >= egress.dropped_seq
            && stack.sack_blocks_out * 2 >= egress.dropped_seq,
        "the stack saw few gaps for {} lost segments of the peer: {stack:?}",
        egress.dropped_seq
    );
    assert!(
        stack.dup_segs_in == 0 || stack.dsack_out > 0,
        "duplicates came in but no D-SACK went out: {stack:?}"
    );
}

/// Stops a command started under `timeout` (as [`Testbed::python`] and [`Testbed::in_ns_for`]
/// start them) with SIGTERM, which `timeout` passes on to the command, and reaps it. A SIGKILL
/// (`Child::kill`) would end `timeout` alone and leave the command running.
pub fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }
    let _ = child.wait();
}

/// The fault program on the peer's veth (tcx ingress and egress), dropping `loss` of the TCP
/// frames each way: losses the stack's end cannot see happen.
pub fn lossy_peer_link(tb: &Testbed, loss: f64) -> xdp_tcp::io::fault_bpf::TcFaultProgram {
    use xdp_tcp::io::fault_bpf::{Direction, TcFaultProgram, TcFaultRates};
    let mut fault = TcFaultProgram::load().expect("load fault.o (needs CAP_BPF)");
    for dir in [Direction::Ingress, Direction::Egress] {
        let rates = TcFaultRates {
            drop: loss,
            duplicate: 0.0,
        };
        fault.set_rates(dir, rates).unwrap();
    }
    fault
        .attach_in_netns(&tb.netns_path("ns_peer"), tb.get("if_peer"))
        .expect("attach tcx ingress/egress on the peer veth (kernel >= 6.6)");
    fault
}
