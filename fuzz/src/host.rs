//! One `Host` against a peer the input plays: a listener on port 80 and one connection
//! established through it, then up to 256 operations chosen by the input:
//! - a segment on the established connection, built against its live sequence space: sequence
//!   number near RCV.NXT (or anywhere), acknowledgment near SND.UNA..SND.NXT (or too old, or
//!   from the future), any flags, window, timestamps echoing the host's, SACK blocks about the
//!   host's data, raw option bytes, a payload up to two MSS;
//! - a segment to the listener from another port (SYN with options, or anything);
//! - raw bytes as an IPv4 packet, or a valid IPv4/TCP header on the connection's 4-tuple with
//!   arbitrary bytes after it, its checksum fixed or not;
//! - an ICMP error quoting the connection (fragmentation needed with any MTU, unreachable);
//! - time passing (timers fire), and application calls: send, read, shutdown, close, abort.
//!
//! Invariants checked after every operation: no panic; every packet the host sends parses and
//! verifies, is no longer than its MTU, and carries in its payload exactly the bytes the
//! application wrote at those sequence numbers; every byte the application reads is the byte the
//! peer sent at that stream offset (the peer's payload is a function of the sequence number, so
//! any reassembly mistake shows); received bytes held never exceed the receive buffer; each
//! dropped or refused verdict is one counted drop.
//!
//! [`host_lending`] runs the same inputs with zero-copy receive on
//! (`Host::handle_ipv4_lending`): a sink takes part of each lent payload (how much follows from
//! the input's length), checks those bytes against the peer's pattern at the stream offset
//! the application has read to, and counts them read; the rest is left to the receive buffer.
//! Every invariant above holds as well.

use std::net::Ipv4Addr;

use arbitrary::{Result, Unstructured};
use xdp_tcp::host::{ConnId, Host, HostConfig, RxVerdict};
use xdp_tcp::tcp::Connection;
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{
    ChecksumCaps, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags,
    TcpOptions, TcpPacket, TcpRepr,
};

pub(crate) const CAPS: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PORT: u16 = 80;
const PEER_PORT: u16 = 40000;

/// The byte at stream offset `off` of a sender whose pattern is `salt`.
#[inline]
pub(crate) fn pattern(salt: u8, off: u32) -> u8 {
    (off.wrapping_mul(31) ^ (off >> 9) ^ u32::from(salt)) as u8
}

/// `len` bytes of the pattern `salt` from stream offset `off`.
pub(crate) fn expected(salt: u8, off: u32, len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| pattern(salt, off.wrapping_add(i)))
        .collect()
}

/// An IPv4 packet carrying `seg` from `src` to `dst`, checksums right unless `bad_sum`.
pub(crate) fn packet(src: Ipv4Addr, dst: Ipv4Addr, seg: &TcpRepr, bad_sum: bool) -> Vec<u8> {
    let tcp_len = seg.buffer_len();
    let ip = Ipv4Repr::new(src, dst, IpProtocol::Tcp, tcp_len);
    let mut buf = vec![0u8; ip.buffer_len()];
    let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
    ip.emit(&mut p, &CAPS);
    let mut t = TcpPacket::new_unchecked(p.payload_mut());
    seg.emit(&mut t, src, dst, &CAPS);
    if bad_sum {
        let c = t.checksum();
        t.set_checksum(c ^ 0x0101);
    }
    buf
}

fn options(u: &mut Unstructured, ts: Option<(u32, u32)>) -> Result<TcpOptions> {
    let mut o = TcpOptions::default();
    if u.ratio(1, 4)? {
        o.mss = Some(u.arbitrary()?);
    }
    if u.ratio(1, 4)? {
        o.window_scale = Some(u.int_in_range(0..=20)?);
    }
    o.sack_permitted = u.ratio(1, 4)?;
    o.timestamp = match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some((u.arbitrary()?, u.arbitrary()?)),
        _ => ts,
    };
    Ok(o)
}

struct Rig {
    host: Host,
    now: Instant,
    conn: Option<ConnId>,
    peer_iss: SeqNumber,
    /// The peer's timestamp clock and the host's latest TSval, for plausible echoes.
    ts_val: u32,
    ts_recent: u32,
    ts_on: bool,
    /// Bytes the application read from the connection, and wrote to it.
    read: u32,
    written: u32,
    host_iss: Option<SeqNumber>,
    buf: Vec<u8>,
    next_port: u16,
    /// Zero-copy receive on, with this salt for how much of each lend the sink takes.
    lend: Option<u8>,
}

impl Rig {
    fn deliver(&mut self, pkt: &[u8]) {
        let before = self.host.stats().dropped_total();
        let v = match self.lend {
            None => self.host.handle_ipv4(self.now, pkt),
            Some(k) => {
                let read = &mut self.read;
                let mut sink = |_: ConnId, _: &mut Connection, d: &[u8]| {
                    let n = (usize::from(k) * 37 + d.len() * 5) % (d.len() + 1);
                    assert!(
                        d[..n] == expected(0x3c, *read, n)[..],
                        "lent bytes at stream offset {} differ from those sent",
                        *read
                    );
                    *read = read.wrapping_add(n as u32);
                    n
                };
                self.host
                    .handle_ipv4_lending(self.now, pkt, Some(&mut sink))
            }
        };
        let after = self.host.stats().dropped_total();
        let counted = matches!(v, RxVerdict::Dropped(_) | RxVerdict::Refused { .. });
        assert_eq!(
            after - before,
            u64::from(counted),
            "verdict {v:?} vs drop counters"
        );
        self.drain();
    }

    /// Takes everything the host sends and checks it.
    fn drain(&mut self) {
        let mtu = self.host.config().mtu() as usize;
        while let Some(tx) = self.host.poll_transmit(self.now, &mut self.buf) {
            assert!(
                tx.len <= mtu,
                "packet of {} bytes over the MTU {mtu}",
                tx.len
            );
            let pkt = &self.buf[..tx.len];
            let ip = Ipv4Packet::new_checked(pkt).expect("sent IPv4 checks");
            let ipr = Ipv4Repr::parse(&ip, &CAPS).expect("sent IPv4 parses");
            assert_eq!(ipr.src_addr, SERVER);
            assert_eq!(ipr.dst_addr, tx.dst);
            let t = TcpPacket::new_checked(ip.payload()).expect("sent TCP checks");
            let seg = TcpRepr::parse(&t, ipr.src_addr, ipr.dst_addr, &CAPS).expect("sent TCP");
            if ipr.dst_addr != PEER || seg.dst_port != PEER_PORT || seg.src_port != PORT {
                continue;
            }
            if let Some((val, _)) = seg.options.timestamp {
                self.ts_recent = val;
            }
            if seg.flags.syn() && seg.flags.ack() && self.host_iss.is_none() {
                self.host_iss = Some(seg.seq);
            }
            // Every byte sent on the connection is the one the application wrote there.
            if let (Some(iss), false) = (self.host_iss, seg.payload.is_empty()) {
                let first = seg.seq.0.wrapping_sub(iss.0.wrapping_add(1));
                let end = first.wrapping_add(seg.payload.len() as u32);
                assert!(
                    end.wrapping_sub(1) < self.written,
                    "sent bytes up to offset {end} of {} written",
                    self.written
                );
                assert!(
                    seg.payload == &expected(0xa5, first, seg.payload.len())[..],
                    "sent bytes at offset {first} differ from those written"
                );
            }
        }
        while self.host.poll_event().is_some() {}
        if let Some(id) = self.conn {
            if let Some(c) = self.host.conn(id) {
                // a window rounded up to the scale's steps shows the peer less than one step
                // past the buffer's end, and the buffer takes what it showed
                let step = (1usize << c.window_shifts().1) - 1;
                assert!(c.recv_queue() <= c.recv_capacity().max(1) + c.mss().max(step));
                assert!(c.send_queue() <= c.send_capacity());
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        for _ in 0..10_000 {
            match self.host.poll_timeout() {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    self.host.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = until;
        self.host.handle_timeout(self.now);
        self.drain();
    }

    fn read_app(&mut self) {
        let Some(id) = self.conn else { return };
        let mut buf = [0u8; 4096];
        loop {
            match self.host.recv(id, &mut buf) {
                Ok(n) if n > 0 => {
                    assert!(
                        buf[..n] == expected(0x3c, self.read, n)[..],
                        "read bytes at stream offset {} differ from those sent",
                        self.read
                    );
                    self.read = self.read.wrapping_add(n as u32);
                }
                _ => break,
            }
        }
        self.drain();
    }

    /// A segment on the established connection's 4-tuple.
    fn conn_segment(&mut self, u: &mut Unstructured) -> Result<()> {
        let (rcv_nxt, snd_una, snd_nxt) = match self.conn.and_then(|id| self.host.conn(id)) {
            Some(c) => (c.rcv_nxt(), c.snd_una(), c.snd_nxt()),
            None => (self.peer_iss + 1, SeqNumber(0), SeqNumber(0)),
        };
        let seq = match u.int_in_range(0..=5)? {
            0..=2 => rcv_nxt,
            3 => rcv_nxt + u.int_in_range(0..=70_000usize)?,
            4 => SeqNumber(rcv_nxt.0.wrapping_sub(u.int_in_range(0..=70_000u32)?)),
            _ => SeqNumber(u.arbitrary()?),
        };
        let ack = match u.int_in_range(0..=5)? {
            0..=2 => snd_nxt,
            3 => snd_una + u.int_in_range(0..=snd_nxt.diff(snd_una).max(0) as usize)?,
            4 => SeqNumber(snd_una.0.wrapping_sub(u.int_in_range(0..=300_000u32)?)),
            _ => SeqNumber(snd_nxt.0.wrapping_add(u.int_in_range(0..=300_000u32)?)),
        };
        let mut flags = TcpFlags::ACK;
        if u.ratio(1, 3)? {
            flags = TcpFlags(u.arbitrary()?);
        } else if u.ratio(1, 8)? {
            flags |= TcpFlags::FIN;
        }
        self.ts_val = self.ts_val.wrapping_add(u.int_in_range(0..=1000)?);
        let ts = self.ts_on.then_some((self.ts_val, self.ts_recent));
        let mut opts = if u.ratio(1, 6)? {
            options(u, ts)?
        } else {
            TcpOptions {
                timestamp: ts,
                ..TcpOptions::default()
            }
        };
        if u.ratio(1, 4)? {
            let mut blocks = [(SeqNumber(0), SeqNumber(0)); 4];
            let n = u.int_in_range(1..=4)?;
            for b in &mut blocks[..n] {
                let span = snd_nxt.diff(snd_una).max(1) as usize;
                let l = snd_una + u.int_in_range(0..=span + 3000)?;
                let l = if u.ratio(1, 8)? { l - 70_000 } else { l };
                *b = (l, l + u.int_in_range(0..=span + 3000)?);
            }
            opts.set_sack(&blocks[..n]);
        }
        let len = match u.int_in_range(0..=3)? {
            0 => 0,
            1 => u.int_in_range(1..=64)?,
            2 => u.int_in_range(1..=1460)?,
            _ => u.int_in_range(1..=3000)?,
        };
        // a SYN occupies its sequence number: its data starts one later
        let first = seq
            .0
            .wrapping_add(u32::from(flags.syn()))
            .wrapping_sub(self.peer_iss.0.wrapping_add(1));
        let payload = expected(0x3c, first, len);
        let seg = TcpRepr {
            src_port: PEER_PORT,
            dst_port: PORT,
            seq,
            ack,
            flags,
            window: u.arbitrary()?,
            urgent: if u.ratio(1, 16)? { u.arbitrary()? } else { 0 },
            options: opts,
            payload: &payload,
        };
        let bad_sum = u.ratio(1, 32)?;
        let raw_opts: Option<Vec<u8>> = if u.ratio(1, 10)? {
            let n = u.int_in_range(0..=10)? * 4;
            Some(u.bytes(n)?.to_vec())
        } else {
            None
        };
        let mut pkt = packet(PEER, SERVER, &seg, bad_sum);
        if let Some(raw) = raw_opts.filter(|r| r.len() == seg.options.buffer_len()) {
            // Replace our option bytes with raw ones of the same length, then fix the checksum.
            let mut ip = Ipv4Packet::new_unchecked(&mut pkt[..]);
            let mut t = TcpPacket::new_unchecked(ip.payload_mut());
            t.options_mut().copy_from_slice(&raw);
            t.fill_checksum(PEER, SERVER);
        }
        self.deliver(&pkt);
        Ok(())
    }

    /// A segment to the listener from a port not yet used.
    fn listener_segment(&mut self, u: &mut Unstructured) -> Result<()> {
        let port = if u.ratio(1, 4)? {
            PEER_PORT + 1 + u.int_in_range(0..=3)?
        } else {
            self.next_port = self.next_port.wrapping_add(1).max(1024);
            self.next_port
        };
        let flags = if u.ratio(2, 3)? {
            TcpFlags::SYN
        } else {
            TcpFlags(u.arbitrary()?)
        };
        let opts = options(u, Some((self.ts_val, 0)))?;
        let payload = if u.ratio(1, 8)? {
            let n = u.int_in_range(0..=100)?;
            u.bytes(n)?.to_vec()
        } else {
            Vec::new()
        };
        let seg = TcpRepr {
            src_port: port,
            dst_port: if u.ratio(1, 16)? {
                u.int_in_range(1..=65535)?
            } else {
                PORT
            },
            seq: SeqNumber(u.arbitrary()?),
            ack: SeqNumber(u.arbitrary()?),
            flags,
            window: u.arbitrary()?,
            urgent: 0,
            options: opts,
            payload: &payload,
        };
        let pkt = packet(PEER, SERVER, &seg, u.ratio(1, 32)?);
        self.deliver(&pkt);
        if u.ratio(1, 2)? {
            while self.host.accept(PORT).is_some() {}
        }
        Ok(())
    }

    /// Raw bytes, or a valid header on the connection's 4-tuple and raw bytes after it.
    fn raw(&mut self, u: &mut Unstructured) -> Result<()> {
        let n = u.int_in_range(0..=1600)?;
        let mut pkt = u.bytes(n)?.to_vec();
        if u.ratio(1, 2)? && pkt.len() >= 40 {
            let total = pkt.len();
            let tcp_len = total - 20;
            let ip = Ipv4Repr::new(PEER, SERVER, IpProtocol::Tcp, tcp_len);
            ip.emit(&mut Ipv4Packet::new_unchecked(&mut pkt[..]), &CAPS);
            let (_, tcp) = pkt.split_at_mut(20);
            tcp[0..2].copy_from_slice(&PEER_PORT.to_be_bytes());
            tcp[2..4].copy_from_slice(&PORT.to_be_bytes());
            // Whatever the header says, the data is the peer's stream at that sequence number
            // (raw bytes there would be data the peer really sent, and the read check would
            // flag the harness, not the host).
            let syn = u32::from(tcp[13] & TcpFlags::SYN.0 != 0);
            let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]).wrapping_add(syn);
            let off = usize::from(tcp[12] >> 4) * 4;
            if off >= 20 && off <= tcp.len() {
                let first = seq.wrapping_sub(self.peer_iss.0.wrapping_add(1));
                let n = tcp.len() - off;
                tcp[off..].copy_from_slice(&expected(0x3c, first, n));
            }
            if u.ratio(3, 4)? {
                // data offset may point past the end: the checksum still gets filled over
                // what is there
                let sum =
                    xdp_tcp::wire::checksum::pseudo_header_v4(PEER, SERVER, 6, tcp_len as u32);
                tcp[16] = 0;
                tcp[17] = 0;
                let c =
                    !xdp_tcp::wire::checksum::combine(&[sum, xdp_tcp::wire::checksum::data(tcp)]);
                tcp[16..18].copy_from_slice(&c.to_be_bytes());
            }
        }
        self.deliver(&pkt);
        Ok(())
    }

    /// An ICMP error quoting the connection's latest segment (or anything).
    fn icmp(&mut self, u: &mut Unstructured) -> Result<()> {
        let seq = match self.conn.and_then(|id| self.host.conn(id)) {
            Some(c) if u.ratio(3, 4)? => c.snd_una(),
            _ => SeqNumber(u.arbitrary()?),
        };
        let mut quoted = [0u8; 8];
        quoted[0..2].copy_from_slice(&PORT.to_be_bytes());
        quoted[2..4].copy_from_slice(&PEER_PORT.to_be_bytes());
        quoted[4..8].copy_from_slice(&seq.0.to_be_bytes());
        let header = Ipv4Repr::new(SERVER, PEER, IpProtocol::Tcp, u.int_in_range(20..=1500)?);
        let msg = if u.ratio(1, 4)? {
            Icmpv4Repr::TimeExceeded {
                reason: u8::into(u.int_in_range(0..=1)?),
                header,
                data: &quoted,
            }
        } else {
            Icmpv4Repr::DstUnreachable {
                reason: u8::into(u.int_in_range(0..=15)?),
                next_hop_mtu: u.arbitrary()?,
                header,
                data: &quoted,
            }
        };
        let src = if u.ratio(1, 2)? {
            PEER
        } else {
            Ipv4Addr::new(10, 0, 9, 1)
        };
        let ip = Ipv4Repr::new(src, SERVER, IpProtocol::Icmp, msg.buffer_len());
        let mut pkt = vec![0u8; ip.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut pkt[..]);
        ip.emit(&mut p, &CAPS);
        msg.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &CAPS);
        self.deliver(&pkt);
        Ok(())
    }

    fn app(&mut self, u: &mut Unstructured) -> Result<()> {
        let Some(id) = self.conn else { return Ok(()) };
        match u.int_in_range(0..=9)? {
            0..=4 => {
                let n = u.int_in_range(1..=20_000u32)?;
                let data = expected(0xa5, self.written, n as usize);
                if let Ok(k) = self.host.send(id, &data) {
                    self.written = self.written.wrapping_add(k as u32);
                }
            }
            5..=6 => self.read_app(),
            7 => {
                self.host.with_conn(id, |c| c.shutdown_read());
            }
            8 => self.host.close(id),
            _ => self.host.abort(id),
        }
        self.drain();
        Ok(())
    }
}

/// The `host` fuzz target (see the module docs).
pub fn host(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data), None);
}

/// [`host`] with zero-copy receive: the same inputs, in-order payload lent to a sink first.
pub fn host_lending(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data), Some(data.len() as u8));
}

fn run(u: &mut Unstructured, lend: Option<u8>) -> Result<()> {
    let mut cfg = HostConfig::new(SERVER);
    cfg.tcp.sack = u.arbitrary()?;
    cfg.tcp.timestamps = u.arbitrary()?;
    cfg.tcp.window_scale = u.arbitrary()?;
    cfg.tcp.recv_buffer = [4096, 65536, 262_144][u.int_in_range(0..=2)?];
    cfg.tcp.send_buffer = [4096, 65536, 262_144][u.int_in_range(0..=2)?];
    cfg.tcp.max_ooo_ranges = u.int_in_range(1..=64)?;
    if u.ratio(1, 4)? {
        cfg.tcp.keepalive = Some(xdp_tcp::tcp::KeepAlive {
            idle: Duration::from_secs(1),
            interval: Duration::from_secs(1),
            count: 3,
        });
    }
    let mut host = Host::new(cfg);
    host.listen(PORT, u.int_in_range(1..=8)?);
    let mtu = host.config().mtu() as usize;
    let mut rig = Rig {
        host,
        now: Instant::from_secs(1),
        conn: None,
        peer_iss: SeqNumber(u.arbitrary()?),
        ts_val: u.arbitrary()?,
        ts_recent: 0,
        ts_on: false,
        read: 0,
        written: 0,
        host_iss: None,
        buf: vec![0u8; mtu.max(2048)],
        next_port: 1024,
        lend,
    };

    // The handshake, with the peer's SYN options from the input.
    let syn_opts = TcpOptions {
        mss: Some(u.int_in_range(1..=9000)?),
        window_scale: u.ratio(3, 4)?.then_some(u.int_in_range(0..=14)?),
        sack_permitted: u.ratio(3, 4)?,
        timestamp: u.ratio(3, 4)?.then_some((rig.ts_val, 0)),
        ..TcpOptions::default()
    };
    rig.ts_on = syn_opts.timestamp.is_some() && cfg.tcp.timestamps;
    let syn = TcpRepr {
        src_port: PEER_PORT,
        dst_port: PORT,
        seq: rig.peer_iss,
        ack: SeqNumber(0),
        flags: TcpFlags::SYN,
        window: u.arbitrary()?,
        urgent: 0,
        options: syn_opts,
        payload: &[],
    };
    rig.deliver(&packet(PEER, SERVER, &syn, false));
    if let Some(iss) = rig.host_iss {
        let ack = TcpRepr {
            seq: rig.peer_iss + 1,
            ack: iss + 1,
            flags: TcpFlags::ACK,
            options: TcpOptions {
                timestamp: rig.ts_on.then_some((rig.ts_val, rig.ts_recent)),
                ..TcpOptions::default()
            },
            ..syn
        };
        rig.deliver(&packet(PEER, SERVER, &ack, false));
        rig.conn = rig.host.accept(PORT);
        assert!(rig.conn.is_some(), "the handshake completes");
    }

    for _ in 0..256 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=15)? {
            0..=6 => rig.conn_segment(u)?,
            7..=8 => rig.listener_segment(u)?,
            9 => rig.raw(u)?,
            10 => rig.icmp(u)?,
            11..=12 => {
                let ms = match u.int_in_range(0..=3)? {
                    0 => u.int_in_range(0..=50)?,
                    1 => u.int_in_range(0..=1000)?,
                    2 => u.int_in_range(0..=10_000)?,
                    _ => u.int_in_range(0..=600_000)?,
                };
                rig.advance(Duration::from_millis(ms));
            }
            _ => rig.app(u)?,
        }
    }
    rig.read_app();
    // The host winds down: every connection ends within the longest of its timeouts.
    rig.advance(Duration::from_secs(3600));
    Ok(())
}
