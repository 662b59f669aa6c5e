//! The peer's window on the simulator: what the sender puts on the wire is checked against every
//! window the receiver advertised, segment by segment.
//!
//! Two hosts, 5 ms each way at 100 Mbit/s. A filter on each link parses every TCP segment: on
//! the server-to-client link it records the right edge the server advertised (ACK plus scaled
//! window; a receiver of this stack never moves it left), on the client-to-server link it checks
//! each data segment of the client against the largest edge advertised so far. The only
//! segments allowed past it are zero-window probes: sent while the server's latest
//! advertisement was a zero window, starting at that edge.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;

use xdp_tcp::host::{ConnId, HostConfig};
use xdp_tcp::sim::link::{LinkConfig, Verdict};
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp;
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{
    ChecksumCaps, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpPacket, TcpRepr,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;

/// The parts of a TCP segment the checks need.
#[derive(Debug, Clone, Copy)]
struct Seg {
    seq: SeqNumber,
    ack: SeqNumber,
    window: u16,
    len: usize,
    syn: bool,
    wscale: Option<u8>,
}

fn parse(frame: &[u8]) -> Option<Seg> {
    let caps = ChecksumCaps::default();
    let ip = Ipv4Packet::new_checked(frame).ok()?;
    let ip_repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if ip_repr.protocol != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let r = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr, &caps).ok()?;
    Some(Seg {
        seq: r.seq,
        ack: r.ack,
        window: r.window,
        len: r.payload.len(),
        syn: r.flags.syn(),
        wscale: r.options.window_scale,
    })
}

/// What the filters saw.
#[derive(Default)]
struct Wire {
    /// The server's ISS and window shift, from its SYN-ACK.
    server_iss: Option<SeqNumber>,
    server_shift: u8,
    client_offers_wscale: bool,
    /// Largest right edge the server advertised, and whether its latest window was zero.
    edge: Option<SeqNumber>,
    zero_window: bool,
    /// Server data segments (by stream offset) to drop on their first transmission.
    drop_server: Vec<u32>,
    server_sent: Vec<u32>,
    /// Client data segments past the edge: (seq, len, edge).
    beyond: Vec<(SeqNumber, usize, SeqNumber)>,
    client_data_segments: u64,
}

impl Wire {
    fn on_server_segment(&mut self, s: Seg) -> Verdict {
        if s.syn {
            self.server_iss = Some(s.seq);
            // window scaling is on only if both SYNs carried the option
            self.server_shift = match (s.wscale, self.client_offers_wscale) {
                (Some(w), true) => w,
                _ => 0,
            };
            self.edge = Some(s.ack + s.window as usize);
            return Verdict::Pass;
        }
        let shift = self.server_shift;
        let edge = s.ack + ((s.window as usize) << shift);
        if self.edge.is_none_or(|e| edge.diff(e) > 0) {
            self.edge = Some(edge);
        }
        self.zero_window = s.window == 0;
        if s.len > 0 {
            let iss = self.server_iss.expect("SYN-ACK first");
            let offset = (s.seq - (iss + 1)) as u32;
            let first = !self.server_sent.contains(&offset);
            self.server_sent.push(offset);
            if first && self.drop_server.contains(&offset) {
                return Verdict::Drop;
            }
        }
        Verdict::Pass
    }

    fn on_client_segment(&mut self, s: Seg) -> Verdict {
        if s.syn {
            self.client_offers_wscale = s.wscale.is_some();
            return Verdict::Pass;
        }
        if s.len == 0 {
            return Verdict::Pass;
        }
        self.client_data_segments += 1;
        let edge = self.edge.expect("the handshake first");
        let end = s.seq + s.len;
        let probe = self.zero_window && s.seq == edge;
        if end.diff(edge) > 0 && !probe {
            self.beyond.push((s.seq, s.len, edge));
        }
        Verdict::Pass
    }
}

struct Rig {
    net: Network,
    c: usize,
    s: usize,
    client: ConnId,
    server: ConnId,
    wire: Rc<RefCell<Wire>>,
}

impl Rig {
    fn new(client_cfg: tcp::Config, server_cfg: tcp::Config, drop_server: Vec<u32>) -> Rig {
        let link = LinkConfig::ideal(Duration::from_millis(5)).with_bandwidth(100_000_000);
        Rig::on(link, 1, client_cfg, server_cfg, drop_server)
    }

    fn on(
        link: LinkConfig,
        seed: u64,
        client_cfg: tcp::Config,
        server_cfg: tcp::Config,
        drop_server: Vec<u32>,
    ) -> Rig {
        let mut net = Network::new();
        let mut ccfg = HostConfig::new(CLIENT);
        ccfg.tcp = client_cfg;
        let mut scfg = HostConfig::new(SERVER);
        scfg.tcp = server_cfg;
        scfg.tcp.secret = scfg.tcp.secret.derive(b"abcd");
        let c = net.add_host(ccfg);
        let s = net.add_host(scfg);
        net.connect(c, s, link, seed);
        let wire = Rc::new(RefCell::new(Wire {
            drop_server,
            ..Wire::default()
        }));
        let w = wire.clone();
        net.link(s, c)
            .unwrap()
            .set_filter(Some(Box::new(move |f: &[u8]| {
                parse(f).map_or(Verdict::Pass, |s| w.borrow_mut().on_server_segment(s))
            })));
        let w = wire.clone();
        net.link(c, s)
            .unwrap()
            .set_filter(Some(Box::new(move |f: &[u8]| {
                parse(f).map_or(Verdict::Pass, |s| w.borrow_mut().on_client_segment(s))
            })));
        net.host(s).listen(PORT, 4);
        let client = net
            .host(c)
            .connect(Instant::ZERO, SocketAddrV4::new(SERVER, PORT))
            .unwrap();
        let mut server = None;
        assert!(net.run_until(Instant::from_secs(10), |net| {
            server = server.or_else(|| net.host(s).accept(PORT));
            server.is_some() && net.host_ref(c).conn(client).unwrap().is_established()
        }));
        Rig {
            net,
            c,
            s,
            client,
            server: server.unwrap(),
            wire,
        }
    }
}

/// `n` bytes that differ from their neighbours.
fn pattern(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + salt) % 251) as u8).collect()
}

impl Rig {
    fn now(&self) -> Instant {
        self.net.now()
    }

    /// Steps through every event up to `t`, then sets the clock to `t`.
    fn run_to(&mut self, t: Instant) {
        loop {
            self.net.flush();
            match self.net.next_event() {
                Some(e) if e <= t => self.net.advance_to(e),
                _ => break,
            }
        }
        self.net.advance_to(t);
    }

    fn write(&mut self, host: usize, id: ConnId, data: &[u8]) {
        assert_eq!(self.net.host(host).send(id, data), Ok(data.len()));
    }

    /// Reads everything readable on `host`.
    fn read(&mut self, host: usize, id: ConnId, into: &mut Vec<u8>) {
        read_all(&mut self.net, host, id, into);
    }
}

/// Reads everything readable on connection `id` of `host` into `into`.
fn read_all(net: &mut Network, host: usize, id: ConnId, into: &mut Vec<u8>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = net.host(host).recv(id, &mut buf) {
        if n == 0 {
            break;
        }
        into.extend_from_slice(&buf[..n]);
    }
}

/// The stale-window case of the veth testbed, step by step. The server's application reads
/// nothing, so every ACK it sends keeps its right edge E where it is. It sends four segments of
/// its own and the first is lost; the other three reach the client, which takes its window
/// from them (they are newer than anything before: SND.WL1 moves to the last). One more client
/// segment reaches the server, whose ACK for it is delayed; then the client's duplicate ACKs
/// arrive and the server retransmits its first segment at once, carrying that newer ACK and a
/// window one segment smaller: the same edge E. That segment's sequence number is older than
/// SND.WL1, so RFC 9293's rule alone keeps the window of the older ACK point while SND.UNA
/// moves up: the client believes E lies one segment further and sends a segment past it.
/// Taking the window from every segment whose ACK advances SND.UNA (Linux's
/// `tcp_may_update_window`) keeps it at E.
#[test]
fn an_ack_advancing_retransmission_brings_its_window() {
    let mss = 1448;
    // a fixed buffer, so no window shift rounds the windows below
    let server_cfg = tcp::Config {
        recv_buffer: 8 * mss,
        recv_buffer_max: None,
        ..tcp::Config::default()
    };
    let mut rig = Rig::new(tcp::Config::default(), server_cfg, vec![0]);
    let (c, s, client, server) = (rig.c, rig.s, rig.client, rig.server);
    let up = pattern(16 * mss, 1);
    let down = pattern(4 * mss, 2);
    // five client segments in the server's buffer, all acknowledged
    rig.write(c, client, &up[..5 * mss]);
    let t = rig.now() + Duration::from_millis(100);
    rig.run_to(t);
    let conn = rig.net.host_ref(c).conn(client).unwrap();
    assert_eq!((conn.bytes_in_flight(), conn.snd_wnd()), (0, 3 * mss));
    let edge = conn.snd_una() + 3 * mss;

    let t0 = rig.now();
    rig.write(s, server, &down);
    rig.run_to(t0 + Duration::from_millis(1));
    rig.write(c, client, &up[5 * mss..6 * mss]);
    rig.run_to(t0 + Duration::from_millis(12));
    // the client fills the window to E with two more segments
    rig.write(c, client, &up[6 * mss..]);
    rig.run_to(t0 + Duration::from_millis(30));
    {
        let w = rig.wire.borrow();
        assert_eq!(
            w.server_sent,
            [0, mss as u32, 2 * mss as u32, 3 * mss as u32, 0]
        );
        assert_eq!(w.edge, Some(edge), "the server never moved its right edge");
        assert!(
            w.beyond.is_empty(),
            "client data past the server's right edge {edge}: {:?}",
            w.beyond
        );
    }
    let conn = rig.net.host_ref(c).conn(client).unwrap();
    // up to the edge and no further: the two segments after the server's lost one each carry a
    // SACK block (12 bytes of option, so 12 fewer of payload), and sender-side silly window
    // avoidance holds the 24 bytes left
    assert_eq!(
        edge - conn.snd_nxt(),
        2 * 12,
        "sent up to the edge, less the SACK option room, and no further"
    );
    assert_eq!(conn.snd_una() + conn.snd_wnd(), edge);

    // the server's application reads: everything arrives, and nothing went past an edge
    let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
    let end = rig.now() + Duration::from_secs(10);
    while rig.now() < end && (up_got.len() < up.len() || down_got.len() < down.len()) {
        let t = rig.now() + Duration::from_millis(1);
        rig.run_to(t);
        rig.read(s, server, &mut up_got);
        rig.read(c, client, &mut down_got);
    }
    assert!(
        up_got == up && down_got == down,
        "the streams arrived altered"
    );
    assert!(rig.wire.borrow().beyond.is_empty());
}

/// The same check over many seeds of a lossy, reordering path, both ends sending 128 KiB at
/// once into 8 KiB receive buffers that their applications drain only every 20 ms: windows
/// are small and shut often, retransmissions carry ACKs newer than the windows before them,
/// and updates arrive out of order. No client byte may go past an edge the server advertised.
#[test]
fn no_byte_goes_past_the_edge_on_a_lossy_reordering_path() {
    let cfg = tcp::Config {
        recv_buffer: 8 * 1024,
        send_buffer: 8 * 1024,
        ..tcp::Config::default()
    };
    let len = 128 * 1024;
    let link = LinkConfig::ideal(Duration::from_millis(5))
        .with_bandwidth(10_000_000)
        .with_loss(0.03)
        .with_jitter(Duration::from_millis(5));
    let mut segments = 0;
    for seed in 0..20 {
        let mut rig = Rig::on(link.clone(), seed, cfg, cfg, Vec::new());
        let (c, s, client, server) = (rig.c, rig.s, rig.client, rig.server);
        let up = pattern(len, 1);
        let down = pattern(len, 2);
        let (mut up_sent, mut down_sent) = (0, 0);
        let (mut up_got, mut down_got) = (Vec::new(), Vec::new());
        let end = rig.now() + Duration::from_secs(120);
        while rig.now() < end && (up_got.len() < len || down_got.len() < len) {
            up_sent += rig.net.host(c).send(client, &up[up_sent..]).unwrap_or(0);
            down_sent += rig
                .net
                .host(s)
                .send(server, &down[down_sent..])
                .unwrap_or(0);
            let t = rig.now() + Duration::from_millis(20);
            rig.run_to(t);
            rig.read(s, server, &mut up_got);
            rig.read(c, client, &mut down_got);
        }
        let w = rig.wire.borrow();
        assert!(
            w.beyond.is_empty(),
            "seed {seed}: {} of {} client data segments past the server's right edge: {:?}",
            w.beyond.len(),
            w.client_data_segments,
            &w.beyond[..w.beyond.len().min(4)]
        );
        assert!(
            up_got == up && down_got == down,
            "seed {seed}: {} of {len} bytes up, {} down by {:?}",
            up_got.len(),
            down_got.len(),
            rig.now()
        );
        segments += w.client_data_segments;
    }
    // every byte went at least once, in segments of at most 1448 bytes
    assert!(
        segments >= 20 * (len as u64).div_ceil(1448),
        "{segments} segments"
    );
}

/// One upload of `len` bytes through a `Rig` on a 10 ms round trip at 100 Mbit/s (a
/// bandwidth-delay product of 125 kB), the server's application reading up to `read_per_ms`
/// bytes each millisecond; `fix` stops the server connection's auto-tuning once established.
/// Returns the rig, the time the last byte was read (`None` if not within 20 s) and what was.
fn upload(
    server_cfg: tcp::Config,
    len: usize,
    read_per_ms: usize,
    fix: bool,
) -> (Rig, Option<Duration>, Vec<u8>) {
    let mut rig = Rig::new(tcp::Config::default(), server_cfg, Vec::new());
    let (c, s, client, server) = (rig.c, rig.s, rig.client, rig.server);
    if fix {
        rig.net.host(s).with_conn(server, |c| c.fix_recv_capacity());
    }
    let up = pattern(len, 3);
    let (mut sent, mut got) = (0, Vec::new());
    let mut buf = vec![0u8; read_per_ms];
    let start = rig.now();
    let mut done = None;
    while rig.now() < start + Duration::from_secs(20) {
        sent += rig.net.host(c).send(client, &up[sent..]).unwrap_or(0);
        let t = rig.now() + Duration::from_millis(1);
        rig.run_to(t);
        if let Ok(n) = rig.net.host(s).recv(server, &mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == len {
            done = Some(rig.now());
            break;
        }
    }
    assert!(got == up[..got.len()], "the bytes read are the bytes sent");
    assert!(
        rig.wire.borrow().beyond.is_empty(),
        "client data past the server's advertised right edge"
    );
    (rig, done.map(|d| d - start), got)
}

fn autotuned(initial: usize, max: usize) -> tcp::Config {
    tcp::Config {
        recv_buffer: initial,
        recv_buffer_max: Some(max),
        ..tcp::Config::default()
    }
}

/// Receive-buffer auto-tuning: a 16 KiB buffer caps a 10 ms path at ~13 Mbit/s; allowed to grow
/// to 1 MiB while its reader keeps up, it opens to the path's bandwidth-delay product (125 kB
/// at 100 Mbit/s) and the upload runs several times faster. The window shift the server offers
/// covers the ceiling, the sender never passes an advertised edge, and the buffer never goes
/// past the ceiling.
#[test]
fn recv_buffer_auto_tuning_opens_the_window_to_the_path() {
    let len = 4 << 20;
    let (fixed_rig, fixed, _) = upload(autotuned(16 << 10, 1 << 20), len, 1 << 20, true);
    let (rig, auto, _) = upload(autotuned(16 << 10, 1 << 20), len, 1 << 20, false);
    let (fixed, auto) = (
        fixed.expect("fixed upload done"),
        auto.expect("upload done"),
    );
    let cap = |r: &Rig| r.net.host_ref(r.s).conn(r.server).unwrap().recv_capacity();
    let grown = |r: &Rig| {
        r.net
            .host_ref(r.s)
            .conn(r.server)
            .unwrap()
            .stats()
            .recv_buffer_grown
    };
    assert_eq!(cap(&fixed_rig), 16 << 10, "a fixed buffer keeps its size");
    assert_eq!(grown(&fixed_rig), 0);
    assert!(
        (125_000..=1 << 20).contains(&cap(&rig)),
        "the buffer grew to the path's BDP and no further than its ceiling: {} B",
        cap(&rig)
    );
    assert!(grown(&rig) >= 3, "grown {} times", grown(&rig));
    assert!(
        auto.as_nanos() * 4 < fixed.as_nanos(),
        "auto-tuned {auto:?} against fixed {fixed:?}"
    );
    // 1 MiB needs a shift of 5 (RFC 7323 2.3: the smallest covering the largest window)
    assert_eq!(rig.wire.borrow().server_shift, 5);
    assert_eq!(fixed_rig.wire.borrow().server_shift, 5);
}

/// A reader that takes 2 kB a millisecond (16 Mbit/s, a fifth of the link) never reads half of
/// a 64 KiB buffer in one round trip: the buffer stays as it is, whatever the sender could do.
#[test]
fn a_slow_reader_does_not_grow_its_buffer() {
    let (rig, _, got) = upload(autotuned(64 << 10, 4 << 20), 1 << 20, 2_000, false);
    let conn = rig.net.host_ref(rig.s).conn(rig.server).unwrap();
    assert!(got.len() > 512 << 10, "{} bytes read", got.len());
    assert_eq!(
        (conn.recv_capacity(), conn.stats().recv_buffer_grown),
        (64 << 10, 0)
    );
}

/// A reader that stops, with default options (window shift 7: a window rounded up to 128-byte
/// steps reaches past the buffer, 1448-byte segments not being a multiple of 128): the sender
/// fills the buffer, and the bytes the rounding showed it past the end, and then only probes the
/// zero window: no retransmission timeout, no segment dropped and sent again, the connection
/// kept. When each rounding started from the edge last rounded, the edge crept right on every
/// ACK; the segments past the buffer were dropped and retransmitted on timeouts until the sender
/// gave up.
#[test]
fn a_stalled_reader_gets_zero_window_probes_not_timeouts() {
    let mut rig = Rig::new(tcp::Config::default(), tcp::Config::default(), Vec::new());
    let (c, s, client, server) = (rig.c, rig.s, rig.client, rig.server);
    assert_eq!(rig.wire.borrow().server_shift, 7);
    let up = pattern(4 << 20, 5);
    let mut sent = 0;
    let end = rig.now() + Duration::from_secs(60);
    while rig.now() < end {
        sent += rig.net.host(c).send(client, &up[sent..]).unwrap_or(0);
        let t = rig.now() + Duration::from_millis(10);
        rig.run_to(t);
    }
    let cs = rig.net.host_ref(c).conn(client).unwrap();
    let ss = rig.net.host_ref(s).conn(server).unwrap();
    let (cst, sst) = (cs.stats(), ss.stats());
    let held = ss.recv_queue();
    let buffer = tcp::Config::default().recv_buffer;
    assert!(cs.is_established(), "the sender kept the connection");
    assert_eq!(
        (cst.rto_events, cst.retrans_rto, sst.dup_segs_in),
        (0, 0, 0),
        "no timeout, nothing received twice"
    );
    assert!(
        cst.zero_window_probes > 0,
        "the sender probes the zero window"
    );
    // the only bytes sent again are the one-byte probes into the closed window
    assert!(cst.bytes_retrans < cst.zero_window_probes, "{cst:?}");
    assert!(
        (buffer..buffer + (1 << 7)).contains(&held),
        "the buffer full, past it by less than one step of the scale: {held} B held"
    );
    assert!(rig.wire.borrow().beyond.is_empty(), "nothing past the edge");
    // and everything held is what was sent, in order
    let mut got = Vec::new();
    rig.read(s, server, &mut got);
    assert!(got.len() >= held && got == up[..got.len()]);
}

/// Memory pressure clamps each established connection's receive buffer to what it holds and
/// pauses its auto-tuning; once the pressure ends, the buffer gets its size back and auto-tuning
/// resumes, as on Linux (where pressure clamps a buffer without locking its size). Here a second
/// connection, whose reader never reads, fills a 256 KiB buffer past the server's pressure mark
/// (7/8 of a 160 KiB budget); it is aborted, and an upload on the first connection, whose reader
/// keeps up, then grows its 16 KiB buffer. When the clamp stopped auto-tuning for good, the
/// buffer stayed at 16 KiB.
#[test]
fn memory_pressure_pauses_auto_tuning_until_it_ends() {
    let mut net = Network::new();
    let mut scfg = HostConfig::new(SERVER);
    scfg.tcp = autotuned(16 << 10, 1 << 20);
    scfg.limits.mem_budget = 160 << 10;
    let c = net.add_host(HostConfig::new(CLIENT));
    let s = net.add_host(scfg);
    let link = LinkConfig::ideal(Duration::from_millis(5)).with_bandwidth(100_000_000);
    net.connect(c, s, link, 1);
    net.host(s).listen(PORT, 4);
    let to = SocketAddrV4::new(SERVER, PORT);
    let tuned_c = net.host(c).connect(Instant::ZERO, to).unwrap();
    let hog_c = net.host(c).connect(Instant::ZERO, to).unwrap();
    let mut accepted = Vec::new();
    assert!(net.run_until(Instant::from_secs(5), |net| {
        accepted.extend(net.host(s).accept(PORT));
        accepted.len() == 2
    }));
    let (tuned, hog) = (accepted[0], accepted[1]);
    assert_eq!(
        net.host_ref(s).conn(tuned).unwrap().remote(),
        net.host_ref(c).conn(tuned_c).unwrap().local()
    );
    net.host(s)
        .with_conn(hog, |c| c.set_recv_buffer_size(256 << 10));
    // the hog's reader takes nothing: its buffer fills past the pressure mark
    let fill = pattern(256 << 10, 1);
    let mut sent = 0;
    let pressed = net.run_until(Instant::from_secs(10), |net| {
        sent += net.host(c).send(hog_c, &fill[sent..]).unwrap_or(0);
        net.host_ref(s).under_memory_pressure() && net.host_ref(s).stats().windows_clamped >= 1
    });
    assert!(
        pressed,
        "the stalled reader pushed the server into memory pressure"
    );
    // the application's visit accounts the other connection under the pressure
    net.host(s).with_conn(tuned, |_| ());
    net.flush();
    assert_eq!(net.host_ref(s).stats().windows_clamped, 2);
    let conn = net.host_ref(s).conn(tuned).unwrap();
    assert!(conn.recv_capacity() < 16 << 10, "clamped to what it holds");
    assert_eq!(conn.stats().recv_buffer_grown, 0);
    // the pressure ends with the hog; an upload on the other connection, read as it comes
    net.host(s).abort(hog);
    let up = pattern(4 << 20, 2);
    let (mut sent, mut got) = (0, Vec::new());
    let done = net.run_until(Instant::from_secs(40), |net| {
        sent += net.host(c).send(tuned_c, &up[sent..]).unwrap_or(0);
        read_all(net, s, tuned, &mut got);
        got.len() == up.len()
    });
    assert!(
        done && got == up,
        "{} of {} bytes read",
        got.len(),
        up.len()
    );
    assert!(!net.host_ref(s).under_memory_pressure());
    let conn = net.host_ref(s).conn(tuned).unwrap();
    assert!(
        conn.stats().recv_buffer_grown >= 1 && conn.recv_capacity() > 16 << 10,
        "auto-tuning resumed: buffer {} B, grown {} times",
        conn.recv_capacity(),
        conn.stats().recv_buffer_grown
    );
}
