//! A hostile peer against the stack's echo server on the veth testbed: a raw AF_PACKET socket
//! in the peer's namespace plays a TCP endpoint of its own (from an address of the peer's subnet
//! that the peer's kernel does not own, so the kernel never answers for it), builds every frame
//! itself and reads every frame the stack sends. Each case asserts the exact reply on the wire
//! (or that none comes), and that the attacked connection's echo stream stays byte-exact
//! afterwards; at the end the stack's drop counters must hold exactly the drops the cases caused.
//!
//! - overlapping and duplicate data (D-SACK for the duplicate), SACK blocks that renege;
//! - RFC 5961: RST out of window (silence), in window but not exact (challenge ACK), exact
//!   (reset); SYN on an established connection (challenge ACK); an ACK of data never sent or
//!   older than the window (challenge ACK, data dropped);
//! - a zero window that never opens (probes back off, the connection survives), MSS 64 and 1
//!   (the floor of 48);
//! - malformed options (length 0, length 1, overlong: dropped and counted; repeated: accepted),
//!   bad TCP and IP checksums, IP fragments (passed to the kernel by the XDP program, counted
//!   there), a data offset beyond the frame, broadcast and multicast sources.
//!
//! Root and the veth tools are required: missing ones fail with the fix, never skip.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::apps::EchoServer;
use common::testbed::{in_netns, ok, require_environment, Testbed};
use common::veth::{start, stop};
use xdp_tcp::host::DropReason;
use xdp_tcp::io::xdp::SteerStats;
use xdp_tcp::neigh::ArpOwner;
use xdp_tcp::wire::{
    self, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol,
    Ipv4Addr, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

const ECHO_PORT: u16 = 7000;
const CAPS: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};

/// One testbed at a time: each test pins an engine and runs a peer on two shared cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// A segment the stack sent, owned.
#[derive(Debug, Clone)]
struct Seg {
    dport: u16,
    seq: u32,
    ack: u32,
    flags: TcpFlags,
    opts: TcpOptions,
    payload: Vec<u8>,
    at: Instant,
}

/// The raw peer: an AF_PACKET socket on the peer's veth, speaking as `me`.
struct RawPeer {
    fd: OwnedFd,
    me: Ipv4Addr,
    stack: Ipv4Addr,
    my_mac: [u8; 6],
    stack_mac: [u8; 6],
    /// Segments read and not yet taken, in arrival order.
    backlog: Vec<Seg>,
}

impl RawPeer {
    fn open(tb: &Testbed, me: Ipv4Addr) -> RawPeer {
        let ifname = tb.get("if_peer").to_string();
        let fd = in_netns(tb.get("ns_peer"), move || {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: plain socket(2) call; the fd is owned below.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(
                fd >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: fd is a new descriptor nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let name = std::ffi::CString::new(ifname).unwrap();
            // SAFETY: a valid NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert!(index > 0, "peer interface");
            // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = index as i32;
            // SAFETY: sll is a valid sockaddr_ll of the length given.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            };
            // SAFETY: tv is a valid timeval of the length given.
            let r = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    &tv as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            assert_eq!(r, 0);
            fd
        });
        RawPeer {
            fd,
            me,
            stack: tb.ip("ip_stack"),
            my_mac: tb.mac("mac_peer"),
            stack_mac: tb.mac("mac_stack"),
            backlog: Vec::new(),
        }
    }

    fn send_frame(&self, frame: &[u8]) {
        // SAFETY: frame is a valid buffer of its length.
        let n = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
        assert_eq!(
            n as usize,
            frame.len(),
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// An Ethernet frame around `ip` (an IPv4 packet).
    fn frame(&self, ip: &[u8]) -> Vec<u8> {
        let eth = EthernetRepr {
            src_addr: EthernetAddress(self.my_mac),
            dst_addr: EthernetAddress(self.stack_mac),
            ethertype: EtherType::Ipv4,
        };
        let mut buf = vec![0u8; eth.buffer_len(ip.len())];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        f.payload_mut().copy_from_slice(ip);
        buf
    }

    /// The IPv4 packet of `seg` from `src` to the stack, checksums right.
    fn packet_from(&self, src: Ipv4Addr, seg: &TcpRepr) -> Vec<u8> {
        let ip = Ipv4Repr::new(src, self.stack, IpProtocol::Tcp, seg.buffer_len());
        let mut buf = vec![0u8; ip.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &CAPS);
        seg.emit(
            &mut TcpPacket::new_unchecked(p.payload_mut()),
            src,
            self.stack,
            &CAPS,
        );
        buf
    }

    fn send_seg(&self, seg: &TcpRepr) {
        self.send_frame(&self.frame(&self.packet_from(self.me, seg)));
    }

    /// Reads frames for up to `wait`, keeping TCP segments from the stack to us.
    fn pump(&mut self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: buf is a valid buffer of its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n > 0 {
                if let Some(s) = self.parse(&buf[..n as usize]) {
                    self.backlog.push(s);
                }
            }
            if Instant::now() >= until {
                return;
            }
        }
    }

    fn parse(&self, frame: &[u8]) -> Option<Seg> {
        let f = EthernetFrame::new_checked(frame).ok()?;
        if f.ethertype() != EtherType::Ipv4 || f.src_addr() != EthernetAddress(self.stack_mac) {
            return None;
        }
        let ip = Ipv4Packet::new_checked(f.payload()).ok()?;
        let r = Ipv4Repr::parse(&ip, &CAPS).expect("the stack's IPv4 verifies");
        if r.src_addr != self.stack || r.dst_addr != self.me || r.protocol != IpProtocol::Tcp {
            return None;
        }
        let t = TcpPacket::new_checked(ip.payload()).expect("the stack's TCP checks");
        let s = TcpRepr::parse(&t, r.src_addr, r.dst_addr, &CAPS).expect("the stack's TCP");
        Some(Seg {
            dport: s.dst_port,
            seq: s.seq.0,
            ack: s.ack.0,
            flags: s.flags,
            opts: s.options,
            payload: s.payload.to_vec(),
            at: Instant::now(),
        })
    }

    /// Takes every segment for `port` read within `wait`.
    fn take(&mut self, port: u16, wait: Duration) -> Vec<Seg> {
        self.pump(wait);
        let (mine, rest) = self.backlog.drain(..).partition(|s| s.dport == port);
        self.backlog = rest;
        mine
    }

    /// The first segment for `port` within `wait`.
    fn expect(&mut self, port: u16, wait: Duration, what: &str) -> Seg {
        let until = Instant::now() + wait;
        loop {
            if let Some(i) = self.backlog.iter().position(|s| s.dport == port) {
                return self.backlog.remove(i);
            }
            assert!(Instant::now() < until, "{what}: no segment from the stack");
            self.pump(Duration::from_millis(10));
        }
    }

    fn silence(&mut self, port: u16, wait: Duration, what: &str) {
        let got = self.take(port, wait);
        assert!(got.is_empty(), "{what}: expected no reply, got {got:?}");
    }
}

/// One connection of the raw peer to the echo server.
struct Conn {
    port: u16,
    /// Our next sequence number, and the stack's next one we expect.
    snd_nxt: u32,
    rcv_nxt: u32,
    /// Highest ACK the stack sent us, and whether timestamps are on.
    ts: bool,
    ts_recent: u32,
    ts_val: u32,
    /// Everything we sent and everything echoed back (in order).
    sent: Vec<u8>,
    echoed: Vec<u8>,
    window: u16,
}

impl Conn {
    fn opts(&mut self) -> TcpOptions {
        self.ts_val = self.ts_val.wrapping_add(10);
        TcpOptions {
            timestamp: self.ts.then_some((self.ts_val, self.ts_recent)),
            ..TcpOptions::default()
        }
    }

    /// A segment from us at `seq` acknowledging `ack`, with our current window.
    fn seg<'a>(&mut self, seq: u32, ack: u32, flags: TcpFlags, payload: &'a [u8]) -> TcpRepr<'a> {
        TcpRepr {
            src_port: self.port,
            dst_port: ECHO_PORT,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags,
            window: self.window,
            urgent: 0,
            options: self.opts(),
            payload,
        }
    }

    fn open(peer: &mut RawPeer, port: u16, syn_opts: TcpOptions) -> (Conn, Seg) {
        let iss = 0x1000_0000u32.wrapping_mul(u32::from(port));
        let mut c = Conn {
            port,
            snd_nxt: iss,
            rcv_nxt: 0,
            ts: syn_opts.timestamp.is_some(),
            ts_recent: 0,
            ts_val: 1000,
            sent: Vec::new(),
            echoed: Vec::new(),
            window: 65535,
        };
        let syn = TcpRepr {
            src_port: port,
            dst_port: ECHO_PORT,
            seq: SeqNumber(iss),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 65535,
            urgent: 0,
            options: syn_opts,
            payload: &[],
        };
        peer.send_seg(&syn);
        let sa = peer.expect(port, Duration::from_secs(3), "SYN-ACK");
        assert_eq!(sa.flags, TcpFlags::SYN | TcpFlags::ACK, "{sa:?}");
        assert_eq!(sa.ack, iss.wrapping_add(1));
        c.snd_nxt = iss.wrapping_add(1);
        c.rcv_nxt = sa.seq.wrapping_add(1);
        c.note(&sa);
        let ack = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[]);
        peer.send_seg(&ack);
        (c, sa)
    }

    fn note(&mut self, s: &Seg) {
        if let Some((v, _)) = s.opts.timestamp {
            self.ts_recent = v;
        }
    }

    /// Sends `data` as new data in one segment.
    fn send(&mut self, peer: &mut RawPeer, data: &[u8]) {
        let seg = self.seg(
            self.snd_nxt,
            self.rcv_nxt,
            TcpFlags::ACK | TcpFlags::PSH,
            data,
        );
        peer.send_seg(&seg);
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        self.sent.extend_from_slice(data);
    }

    /// Reads for `wait`, taking in-order echoed data (acknowledging it) and returning every
    /// segment seen.
    fn absorb(&mut self, peer: &mut RawPeer, wait: Duration, ack: bool) -> Vec<Seg> {
        let segs = peer.take(self.port, wait);
        for s in &segs {
            self.note(s);
            let off = s.seq.wrapping_sub(self.rcv_nxt) as i32;
            if !s.payload.is_empty() && off <= 0 && (-off as usize) < s.payload.len() {
                let new = &s.payload[(-off) as usize..];
                self.echoed.extend_from_slice(new);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(new.len() as u32);
            }
        }
        if ack && segs.iter().any(|s| !s.payload.is_empty()) {
            let a = self.seg(self.snd_nxt, self.rcv_nxt, TcpFlags::ACK, &[]);
            peer.send_seg(&a);
        }
        segs
    }

    /// Sends `data` and checks that the whole stream so far comes back, byte for byte.
    fn echo_check(&mut self, peer: &mut RawPeer, data: &[u8], what: &str) {
        if !data.is_empty() {
            self.send(peer, data);
        }
        let until = Instant::now() + Duration::from_secs(5);
        while self.echoed.len() < self.sent.len() && Instant::now() < until {
            let segs = self.absorb(peer, Duration::from_millis(30), true);
            for s in &segs {
                assert!(
                    !s.flags.rst(),
                    "{what}: the stack reset the connection: {s:?}"
                );
            }
        }
        assert_eq!(self.echoed.len(), self.sent.len(), "{what}: echo length");
        assert!(
            self.echoed == self.sent,
            "{what}: echo differs from what was sent"
        );
    }

    /// The bare ACK the stack sends for our current state.
    fn assert_ack(&self, s: &Seg, what: &str) {
        assert_eq!(s.flags, TcpFlags::ACK, "{what}: {s:?}");
        assert!(s.payload.is_empty(), "{what}: {s:?}");
        assert_eq!(s.ack, self.snd_nxt, "{what}: ACK number {s:?}");
    }
}

fn full_syn_opts() -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(0),
        sack_permitted: true,
        timestamp: Some((1000, 0)),
        ..TcpOptions::default()
    }
}

/// The testbed, the echo server on it, and the raw peer from a spare address of the peer's
/// subnet that the stack resolves to the peer's MAC through a permanent neighbour entry.
fn with_stack(
    tag: &str,
    body: impl FnOnce(&dyn Fn() -> SteerStats, &mut RawPeer),
    drops: &[(DropReason, u64)],
) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_environment(&[]);
    let tb = Testbed::up(tag);
    let peer_ip = tb.ip("ip_peer");
    let o = peer_ip.octets();
    let me = Ipv4Addr::new(o[0], o[1], o[2], 77);
    ok(
        tb.in_ns(
            "ns_stack",
            &[
                "ip",
                "neigh",
                "replace",
                &me.to_string(),
                "lladdr",
                tb.get("mac_peer"),
                "dev",
                tb.get("if_stack"),
                "nud",
                "permanent",
            ],
        )
        .output()
        .unwrap(),
        "permanent neighbour for the raw peer",
    );
    let echo = EchoServer::new(ECHO_PORT);
    let run = start(&tb, ArpOwner::Kernel, &[ECHO_PORT], echo);
    let mut peer = RawPeer::open(&tb, me);
    std::thread::sleep(Duration::from_millis(100));
    let prog = std::sync::Arc::clone(&run.prog);
    body(&move || prog.stats().unwrap(), &mut peer);
    let engine = stop(&tb, run);
    let stats = engine.host().stats();
    for &(reason, n) in drops {
        assert_eq!(stats.dropped(reason), n, "drops counted as {reason:?}");
    }
}

#[test]
fn overlapping_duplicate_data_and_reneged_sack() {
    with_stack(
        "adv1",
        |_steer, peer| {
            let (mut c, _) = Conn::open(peer, 41001, full_syn_opts());
            c.echo_check(peer, b"hello", "first echo");

            // Overlap: bytes 0..100 then 50..150 of new data, one stream.
            let data: Vec<u8> = (0..150u32).map(|i| (i * 7 + 3) as u8).collect();
            let base = c.snd_nxt;
            let s1 = c.seg(base, c.rcv_nxt, TcpFlags::ACK, &data[..100]);
            peer.send_seg(&s1);
            let s2 = c.seg(base.wrapping_add(50), c.rcv_nxt, TcpFlags::ACK, &data[50..]);
            peer.send_seg(&s2);
            c.snd_nxt = base.wrapping_add(150);
            c.sent.extend_from_slice(&data);
            c.echo_check(peer, &[], "overlapping data echoed once, in order");

            // A duplicate of data already acknowledged: an immediate ACK with a D-SACK block
            // naming it (RFC 2883), and nothing echoed twice.
            std::thread::sleep(Duration::from_millis(600));
            let dup = c.seg(base, c.rcv_nxt, TcpFlags::ACK, &data[..100]);
            peer.send_seg(&dup);
            let a = peer.expect(c.port, Duration::from_secs(1), "duplicate data");
            c.assert_ack(&a, "ACK for a duplicate");
            assert_eq!(
                a.opts.sack(),
                &[(SeqNumber(base), SeqNumber(base.wrapping_add(100)))],
                "D-SACK for the duplicate"
            );
            c.echo_check(peer, b"after the duplicate", "stream after duplicate");

            // Reneging SACK: the stack echoes 3 segments; we acknowledge none of them but SACK
            // the last, then take the SACK back. The stack must not forget the SACKed data:
            // it retransmits everything on its own and the stream arrives whole.
            let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            for chunk in big.chunks(1400) {
                c.send(peer, chunk);
            }
            let segs = peer.take(c.port, Duration::from_millis(300));
            for s in &segs {
                c.note(s);
            }
            let data_segs: Vec<_> = segs.iter().filter(|s| !s.payload.is_empty()).collect();
            assert!(
                data_segs.len() >= 2,
                "echo came in several segments: {segs:?}"
            );
            // we act as if all but the last were lost
            let first = c.rcv_nxt;
            assert_eq!(data_segs[0].seq, first, "{segs:?}");
            let last = data_segs.last().unwrap();
            let l = last.seq;
            let r = last.seq.wrapping_add(last.payload.len() as u32);
            let mut s = c.seg(c.snd_nxt, first, TcpFlags::ACK, &[]);
            s.options.set_sack(&[(SeqNumber(l), SeqNumber(r))]);
            peer.send_seg(&s);
            let mut s = c.seg(c.snd_nxt, first, TcpFlags::ACK, &[]);
            s.options.set_sack(&[]);
            peer.send_seg(&s);
            // The stack retransmits on its own (we answer nothing until it does), and since we
            // kept none of the first copies, the whole stream arriving means the reneged block
            // was sent again too.
            let re = peer.expect(
                c.port,
                Duration::from_secs(5),
                "retransmission after renege",
            );
            assert!(!re.payload.is_empty(), "a retransmission: {re:?}");
            peer.backlog.insert(0, re);
            c.echo_check(peer, &[], "stream after a reneged SACK");
            c.echo_check(peer, b"end", "stream after a reneged SACK");
        },
        &[],
    );
}

#[test]
fn rfc5961_rst_syn_and_ack_checks() {
    with_stack(
        "adv2",
        |_steer, peer| {
            let (mut c, _) = Conn::open(peer, 41002, full_syn_opts());
            c.echo_check(peer, b"ping", "first echo");
            let gap = Duration::from_millis(600); // past the 500 ms challenge-ACK limit

            // RST far outside the window: silence, connection unharmed.
            let rst = c.seg(c.snd_nxt.wrapping_add(1 << 30), 0, TcpFlags::RST, &[]);
            peer.send_seg(&rst);
            peer.silence(c.port, Duration::from_millis(300), "RST out of window");
            c.echo_check(peer, b"after RST out of window", "RST out of window");

            // RST in the window, not exact: a challenge ACK, connection unharmed.
            std::thread::sleep(gap);
            let rst = c.seg(c.snd_nxt.wrapping_add(100), 0, TcpFlags::RST, &[]);
            peer.send_seg(&rst);
            let a = peer.expect(c.port, Duration::from_secs(1), "RST in window");
            c.assert_ack(&a, "challenge ACK for an in-window RST");
            assert_eq!(a.seq, c.rcv_nxt);
            peer.silence(c.port, Duration::from_millis(100), "one challenge ACK");
            c.echo_check(peer, b"after RST in window", "RST in window");

            // SYN on the established connection: a challenge ACK, connection unharmed.
            std::thread::sleep(gap);
            let mut syn = c.seg(c.snd_nxt.wrapping_add(5000), 0, TcpFlags::SYN, &[]);
            syn.options = full_syn_opts();
            peer.send_seg(&syn);
            let a = peer.expect(c.port, Duration::from_secs(1), "SYN on established");
            c.assert_ack(&a, "challenge ACK for a SYN");
            c.echo_check(peer, b"after SYN", "SYN on established");

            // Data whose ACK acknowledges bytes never sent: challenge ACK, data dropped.
            std::thread::sleep(gap);
            let future = c.seg(
                c.snd_nxt,
                c.rcv_nxt.wrapping_add(100_000),
                TcpFlags::ACK,
                b"XXXX",
            );
            peer.send_seg(&future);
            let a = peer.expect(c.port, Duration::from_secs(1), "ACK from the future");
            c.assert_ack(&a, "challenge ACK for an ACK from the future");
            assert_eq!(a.seq, c.rcv_nxt);
            peer.silence(
                c.port,
                Duration::from_millis(200),
                "data with a future ACK dropped",
            );

            // Data whose ACK is older than SND.UNA - MAX.SND.WND: the same.
            std::thread::sleep(gap);
            let old = c.seg(
                c.snd_nxt,
                c.rcv_nxt.wrapping_sub(1 << 30),
                TcpFlags::ACK,
                b"YYYY",
            );
            peer.send_seg(&old);
            let a = peer.expect(c.port, Duration::from_secs(1), "ACK too old");
            c.assert_ack(&a, "challenge ACK for an ACK too old");
            peer.silence(
                c.port,
                Duration::from_millis(200),
                "data with an old ACK dropped",
            );
            c.echo_check(peer, b"after bad ACKs", "stream after bad ACKs");

            // RST exactly at RCV.NXT: the connection is reset, silently; what follows gets RST.
            let rst = c.seg(c.snd_nxt, 0, TcpFlags::RST, &[]);
            peer.send_seg(&rst);
            peer.silence(c.port, Duration::from_millis(300), "exact RST");
            let after = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, b"gone?");
            peer.send_seg(&after);
            let r = peer.expect(c.port, Duration::from_secs(1), "data after reset");
            assert!(
                r.flags.rst(),
                "the reset connection answers with RST: {r:?}"
            );
            assert_eq!(r.seq, c.rcv_nxt, "RST at the ACK it was sent");
        },
        &[],
    );
}

#[test]
fn zero_window_and_tiny_mss() {
    with_stack(
        "adv3",
        |_steer, peer| {
            // MSS 64: no segment carries more than 64 bytes of payload and options.
            let mut o = full_syn_opts();
            o.mss = Some(64);
            let (mut c, _) = Conn::open(peer, 41003, o);
            let data: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
            c.send(peer, &data);
            let mut seen = 0;
            let until = Instant::now() + Duration::from_secs(5);
            while c.echoed.len() < c.sent.len() && Instant::now() < until {
                for s in c.absorb(peer, Duration::from_millis(30), true) {
                    let opt_len = s.opts.buffer_len();
                    assert!(s.payload.len() + opt_len <= 64, "MSS 64: {s:?}");
                    seen = seen.max(s.payload.len() + opt_len);
                }
            }
            assert!(c.echoed == c.sent, "echo under MSS 64");
            assert_eq!(seen, 64, "full segments under MSS 64");

            // MSS 1: floored at 48 (Linux's TCP_MIN_SND_MSS).
            let mut o = full_syn_opts();
            o.mss = Some(1);
            let (mut c, _) = Conn::open(peer, 41004, o);
            c.send(peer, &data[..500]);
            let mut seen = 0;
            let until = Instant::now() + Duration::from_secs(5);
            while c.echoed.len() < c.sent.len() && Instant::now() < until {
                for s in c.absorb(peer, Duration::from_millis(30), true) {
                    if !s.payload.is_empty() {
                        seen = seen.max(s.payload.len() + s.opts.buffer_len());
                    }
                }
            }
            assert!(c.echoed == c.sent, "echo under MSS 1");
            assert_eq!(seen, 48, "MSS 1 is floored at 48");

            // A zero window that never opens: probes with growing gaps, the connection lives.
            let (mut c, _) = Conn::open(peer, 41005, full_syn_opts());
            c.echo_check(peer, b"before", "before zero window");
            c.window = 0;
            let z = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[]);
            peer.send_seg(&z);
            c.send(peer, &data[..200]);
            let mut probes: Vec<Instant> = Vec::new();
            let until = Instant::now() + Duration::from_secs(8);
            while Instant::now() < until {
                for s in peer.take(c.port, Duration::from_millis(20)) {
                    c.note(&s);
                    assert!(!s.flags.rst(), "reset under a zero window: {s:?}");
                    if s.seq.wrapping_sub(c.rcv_nxt) as i32 <= 0 && s.payload.len() <= 1 {
                        // a probe (or the ACK of our data): answer with the window still zero
                        if s.seq.wrapping_add(s.payload.len() as u32) != c.rcv_nxt
                            || !s.payload.is_empty()
                        {
                            probes.push(s.at);
                        }
                        let z = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[]);
                        peer.send_seg(&z);
                    } else {
                        panic!("data beyond a zero window: {s:?}");
                    }
                }
            }
            assert!(probes.len() >= 3, "zero-window probes: {probes:?}");
            let gaps: Vec<Duration> = probes.windows(2).map(|w| w[1] - w[0]).collect();
            // Each gap at least the one before (less 30% for scheduling on a loaded machine),
            // and the last at least 1.5 times the first: backoff, not a fixed interval.
            for w in gaps.windows(2) {
                assert!(w[1] * 10 >= w[0] * 7, "probe gaps shrink: {gaps:?}");
            }
            assert!(
                *gaps.last().unwrap() * 2 >= gaps[0] * 3,
                "probe gaps back off: {gaps:?}"
            );
            // open the window: the data comes, whole
            c.window = 65535;
            let open = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[]);
            peer.send_seg(&open);
            c.echo_check(peer, b"after", "stream after the zero window");
        },
        &[],
    );
}

/// `seg` as an IPv4 packet with its TCP options replaced by `raw` (same length as the
/// options the repr emits), checksum fixed.
fn with_raw_options(peer: &RawPeer, seg: &TcpRepr, raw: &[u8]) -> Vec<u8> {
    let mut pkt = peer.packet_from(peer.me, seg);
    let mut ip = Ipv4Packet::new_unchecked(&mut pkt[..]);
    let mut t = TcpPacket::new_unchecked(ip.payload_mut());
    assert_eq!(t.options_mut().len(), raw.len());
    t.options_mut().copy_from_slice(raw);
    t.fill_checksum(peer.me, peer.stack);
    pkt
}

#[test]
fn malformed_packets_dropped_and_counted() {
    with_stack(
        "adv4",
        |steer, peer| {
            let (mut c, _) = Conn::open(peer, 41006, full_syn_opts());
            c.echo_check(peer, b"ping", "first echo");
            let quiet = Duration::from_millis(250);
            let port = c.port;
            // Segments carrying 12 option bytes (the timestamp) whose bytes we replace.
            let bad_opts = |c: &mut Conn, peer: &mut RawPeer, raw: [u8; 12], what: &str| {
                let seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, b"bad!");
                let pkt = with_raw_options(peer, &seg, &raw);
                peer.send_frame(&peer.frame(&pkt));
                peer.silence(port, quiet, what);
            };
            let ts = |c: &Conn| {
                let mut b = [1u8, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
                b[4..8].copy_from_slice(&(c.ts_val + 5).to_be_bytes());
                b[8..12].copy_from_slice(&c.ts_recent.to_be_bytes());
                b
            };
            let mut raw = ts(&c);
            raw[0] = 2; // MSS kind with length 0
            raw[1] = 0;
            bad_opts(&mut c, peer, raw, "option length 0");
            let mut raw = ts(&c);
            raw[0] = 0xfe; // unknown kind, length 1
            raw[1] = 1;
            bad_opts(&mut c, peer, raw, "option length 1");
            let mut raw = ts(&c);
            raw[2] = 8;
            raw[3] = 40; // timestamp running past the header
            bad_opts(&mut c, peer, raw, "overlong option");
            c.echo_check(peer, b"after bad options", "stream after bad options");

            // Repeated options are legal: the segment is taken (the last timestamp counts).
            // Options NOP NOP TS(old) NOP NOP TS(current), in place of TS + one SACK block.
            let mut seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK | TcpFlags::PSH, b"rep");
            let (v, e) = seg.options.timestamp.unwrap();
            seg.options.set_sack(&[(SeqNumber(1), SeqNumber(2))]);
            let mut raw = [0u8; 24];
            raw[..4].copy_from_slice(&[1, 1, 8, 10]);
            raw[4..8].copy_from_slice(&v.wrapping_sub(5).to_be_bytes());
            raw[8..12].copy_from_slice(&e.to_be_bytes());
            raw[12..16].copy_from_slice(&[1, 1, 8, 10]);
            raw[16..20].copy_from_slice(&v.to_be_bytes());
            raw[20..24].copy_from_slice(&e.to_be_bytes());
            let pkt = with_raw_options(peer, &seg, &raw);
            peer.send_frame(&peer.frame(&pkt));
            c.snd_nxt = c.snd_nxt.wrapping_add(3);
            c.sent.extend_from_slice(b"rep");
            c.echo_check(peer, &[], "segment with repeated options taken");

            // Bad TCP checksum: silence. Bad IPv4 checksum: silence.
            let seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, b"sum!");
            let mut pkt = peer.packet_from(peer.me, &seg);
            pkt[20 + 16] ^= 0x55;
            peer.send_frame(&peer.frame(&pkt));
            peer.silence(port, quiet, "bad TCP checksum");
            let mut pkt = peer.packet_from(peer.me, &seg);
            pkt[10] ^= 0x55;
            peer.send_frame(&peer.frame(&pkt));
            peer.silence(port, quiet, "bad IPv4 checksum");

            // Data offset beyond the frame: 60-byte header claimed, 20 present.
            let seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[]);
            let mut seg0 = seg;
            seg0.options = TcpOptions::default();
            let mut pkt = peer.packet_from(peer.me, &seg0);
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut pkt[..]);
                let mut t = TcpPacket::new_unchecked(ip.payload_mut());
                t.set_header_len(60);
                t.fill_checksum(peer.me, peer.stack);
            }
            peer.send_frame(&peer.frame(&pkt));
            peer.silence(port, quiet, "data offset beyond the frame");

            // IP fragments: the first half of a segment, MF set; then a second fragment alone.
            let seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, &[b'f'; 64]);
            let whole = peer.packet_from(peer.me, &seg);
            let mut frag = whole[..20 + 40].to_vec();
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut frag[..]);
                ip.set_total_len(60);
                ip.set_dont_frag(false);
                ip.set_more_frags(true);
                ip.set_ident(0x4242);
                ip.fill_checksum();
            }
            let before = steer().pass_fragment;
            peer.send_frame(&peer.frame(&frag));
            peer.silence(port, quiet, "first fragment");
            assert_eq!(
                steer().pass_fragment,
                before + 1,
                "fragment passed by XDP, counted"
            );

            // Broadcast and multicast sources.
            for src in [Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 1)] {
                let seg = c.seg(c.snd_nxt, c.rcv_nxt, TcpFlags::ACK, b"bcast");
                let pkt = peer.packet_from(src, &seg);
                peer.send_frame(&peer.frame(&pkt));
            }
            peer.silence(port, quiet, "broadcast/multicast source");
            // a SYN from a broadcast source too (an answer would go to everyone)
            let mut syn = c.seg(12345, 0, TcpFlags::SYN, &[]);
            syn.src_port = 41999;
            let pkt = peer.packet_from(Ipv4Addr::BROADCAST, &syn);
            peer.send_frame(&peer.frame(&pkt));
            let any = peer.take(41999, quiet);
            assert!(any.is_empty(), "SYN from broadcast answered: {any:?}");

            c.echo_check(peer, b"still whole", "stream after malformed packets");
        },
        &[
            (DropReason::Tcp(wire::Error::BadOption), 3),
            (DropReason::Tcp(wire::Error::BadChecksum), 1),
            (DropReason::Ipv4(wire::Error::BadChecksum), 1),
            (DropReason::Tcp(wire::Error::BadOffset), 1),
            (DropReason::BadSource, 3),
        ],
    );
}
