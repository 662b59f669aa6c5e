//! A connection pair (client 10.0.0.1, server 10.0.0.2:80) on a virtual clock, each side
//! sending a stream to the other and shutting down its writing after it, under a schedule the
//! input writes: for each packet either side sends, deliver it after a delay of its choice
//! (so reordered), drop it, duplicate it, corrupt one byte of it, or hold it for up to 3 s.
//! Configurations (SACK, timestamps, window scaling, MSS, buffer sizes, delayed ACK, Nagle,
//! stream lengths) come from the input too.
//!
//! Once the input is spent the link turns clean (a fixed 5 ms each way). Invariants: no panic;
//! whatever either application reads is a byte-exact prefix of what the other wrote; unless a
//! connection reported an error (a schedule hostile enough can make it time out, and then only
//! the prefix is checked), both streams arrive whole, end of stream included, within ten
//! minutes of virtual time on the clean link; received bytes held never exceed the receive
//! buffer; every packet is at most the sender's MTU and verifies.

use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};

use arbitrary::{Result, Unstructured};
use xdp_tcp::host::{ConnId, Host, HostConfig};
use xdp_tcp::tcp::State;
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

use super::host::{expected, CAPS};

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;
const SALT: [u8; 2] = [0x11, 0x77];
/// The longest stream either side sends. 32 KiB is still 58 segments at MTU 576 and sixteen
/// windows of the smallest (2 KiB) buffers; the schedule's input (at most 4 KiB, about three
/// bytes per packet) covers all of such a transfer. Streams of up to 100 kB cost three times as
/// much per execution and spent the extra on the clean link after the input ran out.
const STREAM_MAX: u32 = 32 * 1024;

/// A packet on the wire: due time, a tie-breaker for a stable order, destination side, bytes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct InFlight(std::cmp::Reverse<(Instant, u64)>, usize, Vec<u8>);

struct Side {
    host: Host,
    conn: Option<ConnId>,
    /// Stream length to send, bytes written so far, bytes read so far, end of stream seen.
    len: u32,
    written: u32,
    read: u32,
    eof: bool,
    shut: bool,
    failed: bool,
}

impl Side {
    /// `buf` is the application's read buffer, allocated once per run: a fresh 8 KiB array per
    /// call was zero-filled on every step and took half of the target's time.
    fn pump(&mut self, salt_out: u8, salt_in: u8, buf: &mut [u8]) {
        let Some(id) = self.conn else { return };
        while self.written < self.len {
            let space = self.host.conn(id).map_or(0, |c| c.send_space()) as u32;
            let n = (self.len - self.written).min(16_384).min(space);
            if n == 0 {
                break;
            }
            let data = expected(salt_out, self.written, n as usize);
            match self.host.send(id, &data) {
                Ok(k) if k > 0 => self.written += k as u32,
                _ => break,
            }
        }
        let synced = self.host.conn(id).is_some_and(|c| {
            !matches!(
                c.state(),
                State::SynSent | State::SynReceived | State::Closed
            )
        });
        if self.written == self.len && !self.shut && synced {
            self.host.with_conn(id, |c| c.close());
            self.shut = true;
        }
        loop {
            match self.host.recv(id, buf) {
                Ok(0) => {
                    self.eof = self.host.conn(id).is_some_and(|c| c.at_eof());
                    break;
                }
                Ok(n) => {
                    assert!(
                        buf[..n] == expected(salt_in, self.read, n)[..],
                        "read bytes at stream offset {} differ from those written",
                        self.read
                    );
                    self.read += n as u32;
                }
                Err(_) => break,
            }
        }
        if let Some(c) = self.host.conn(id) {
            assert!(
                // less than one step of the window scale past the buffer, as the rounding
                // showed the peer
                c.recv_queue()
                    <= c.recv_capacity() + c.mss().max((1usize << c.window_shifts().1) - 1),
                "receive buffer bound"
            );
            if c.error().is_some() {
                self.failed = true;
            }
        } else {
            self.failed |= !(self.eof && self.written == self.len);
        }
        while let Some((_, ev)) = self.host.poll_event() {
            if let xdp_tcp::tcp::Event::Error(_) = ev {
                self.failed = true;
            }
        }
    }

    fn done(&self, other_len: u32) -> bool {
        self.read == other_len && self.eof && self.written == self.len
    }
}

/// The `pair` fuzz target (see the module docs).
pub fn pair(data: &[u8]) {
    let _ = run(&mut Unstructured::new(data));
}

fn config(u: &mut Unstructured, addr: Ipv4Addr) -> Result<HostConfig> {
    let mut cfg = HostConfig::new(addr);
    cfg.tcp.sack = u.ratio(3, 4)?;
    cfg.tcp.timestamps = u.ratio(3, 4)?;
    cfg.tcp.window_scale = u.ratio(3, 4)?;
    cfg.set_mtu([576, 1280, 1500, 9000][u.int_in_range(0..=3)?]);
    cfg.tcp.recv_buffer = [2048, 8192, 65_536, 262_144][u.int_in_range(0..=3)?];
    cfg.tcp.send_buffer = [2048, 8192, 65_536, 262_144][u.int_in_range(0..=3)?];
    cfg.tcp.nodelay = u.arbitrary()?;
    if u.ratio(1, 4)? {
        cfg.tcp.delayed_ack = None;
    }
    cfg.tcp.max_ooo_ranges = u.int_in_range(1..=64)?;
    Ok(cfg)
}

fn run(u: &mut Unstructured) -> Result<()> {
    let ca = config(u, A)?;
    let cb = config(u, B)?;
    let la = u.int_in_range(0..=STREAM_MAX)?;
    let lb = u.int_in_range(0..=STREAM_MAX)?;
    let side = |cfg, len| Side {
        host: Host::new(cfg),
        conn: None,
        len,
        written: 0,
        read: 0,
        eof: false,
        shut: false,
        failed: false,
    };
    let mut sides = [side(ca, la), side(cb, lb)];
    sides[1].host.listen(PORT, 4);
    let mut now = Instant::from_secs(1);
    sides[0].conn = sides[0].host.connect(now, SocketAddrV4::new(B, PORT)).ok();
    if sides[0].conn.is_none() {
        return Ok(());
    }
    let mut wire: BinaryHeap<InFlight> = BinaryHeap::new();
    let mut tie = 0u64;
    let mut buf = vec![0u8; 9100];
    let mut rbuf = vec![0u8; 8192];
    let mut schedule_over: Option<Instant> = None;

    for _ in 0..200_000 {
        // Everything either side has to send goes on the wire, as the schedule says, then the
        // applications run, and what they caused goes out before time moves.
        for pass in 0..2 {
            #[allow(clippy::needless_range_loop)] // `s` also names the other side, `1 - s`
            for s in 0..2 {
                let mtu = sides[s].host.config().mtu() as usize;
                while let Some(tx) = sides[s].host.poll_transmit(now, &mut buf) {
                    assert!(
                        tx.len <= mtu,
                        "packet of {} bytes over the MTU {mtu}",
                        tx.len
                    );
                    let pkt = &buf[..tx.len];
                    check_sent(pkt);
                    let mut send = |at: Instant, bytes: Vec<u8>| {
                        tie += 1;
                        wire.push(InFlight(std::cmp::Reverse((at, tie)), 1 - s, bytes));
                    };
                    if u.is_empty() {
                        schedule_over.get_or_insert(now);
                        send(now + Duration::from_millis(5), pkt.to_vec());
                        continue;
                    }
                    let delay = |u: &mut Unstructured| -> Result<Duration> {
                        Ok(Duration::from_micros(u.int_in_range(100..=20_000)?))
                    };
                    match u.int_in_range(0..=9)? {
                        0..=4 => send(now + delay(u)?, pkt.to_vec()),
                        5 => {}
                        6 => {
                            send(now + delay(u)?, pkt.to_vec());
                            send(now + delay(u)?, pkt.to_vec());
                        }
                        7 => {
                            let mut bad = pkt.to_vec();
                            let i = u.choose_index(bad.len())?;
                            bad[i] ^= u.int_in_range(1..=255)?;
                            send(now + delay(u)?, bad);
                        }
                        8 => send(
                            now + Duration::from_millis(u.int_in_range(100..=3000)?),
                            pkt.to_vec(),
                        ),
                        _ => {
                            // hold for the next one: swap order with what follows
                            send(now + delay(u)? + Duration::from_millis(30), pkt.to_vec());
                        }
                    }
                }
            }
            if pass == 1 {
                break;
            }
            for s in 0..2 {
                let (o, i) = (SALT[s], SALT[1 - s]);
                if sides[s].conn.is_none() && s == 1 {
                    sides[1].conn = sides[1].host.accept(PORT);
                }
                sides[s].pump(o, i, &mut rbuf);
            }
        }
        if sides[0].done(lb) && sides[1].done(la) {
            return Ok(());
        }
        if sides[0].failed || sides[1].failed {
            // Only the prefix property holds after a failure; it was checked on every read.
            return Ok(());
        }
        if let Some(t0) = schedule_over {
            assert!(
                now < t0 + Duration::from_secs(600),
                "transfer incomplete 600 s into a clean link: a read {} of {lb}, b read {} of {la}, \
                 a eof {} b eof {}",
                sides[0].read,
                sides[1].read,
                sides[0].eof,
                sides[1].eof,
            );
        }
        // Next event: a delivery or a timer.
        let next_tx = wire.peek().map(|p| (p.0).0 .0);
        let next_timer = [0, 1]
            .iter()
            .filter_map(|&s| sides[s].host.poll_timeout())
            .min();
        let Some(next) = [next_tx, next_timer].into_iter().flatten().min() else {
            // Nothing will ever happen again: both sides must be finished or failed.
            panic!(
                "pair idle before the streams completed: a read {} of {lb}, b read {} of {la}; \
                 a {:?} eof {} b {:?} eof {}",
                sides[0].read,
                sides[1].read,
                sides[0]
                    .conn
                    .and_then(|id| sides[0].host.conn(id))
                    .map(|c| (c.state(), c.error(), c.stats())),
                sides[0].eof,
                sides[1]
                    .conn
                    .and_then(|id| sides[1].host.conn(id))
                    .map(|c| c.state()),
                sides[1].eof
            );
        };
        now = now.max(next);
        while wire.peek().is_some_and(|p| (p.0).0 .0 <= now) {
            let InFlight(_, to, bytes) = wire.pop().unwrap();
            sides[to].host.handle_ipv4(now, &bytes);
        }
        for s in &mut sides {
            if s.host.poll_timeout().is_some_and(|t| t <= now) {
                s.host.handle_timeout(now);
            }
        }
    }
    panic!(
        "pair did not settle in 200k steps: now {now:?} a {:?} b {:?} a: w{} r{} eof{} b: w{} r{} eof{} lens {la} {lb}",
        sides[0].conn.and_then(|id| sides[0].host.conn(id)).map(|c| c.state()),
        sides[1].conn.and_then(|id| sides[1].host.conn(id)).map(|c| c.state()),
        sides[0].written, sides[0].read, sides[0].eof, sides[1].written, sides[1].read, sides[1].eof,
    );
}

fn check_sent(pkt: &[u8]) {
    let ip = Ipv4Packet::new_checked(pkt).expect("sent IPv4 checks");
    let r = Ipv4Repr::parse(&ip, &CAPS).expect("sent IPv4 parses");
    let t = TcpPacket::new_checked(ip.payload()).expect("sent TCP checks");
    TcpRepr::parse(&t, r.src_addr, r.dst_addr, &CAPS).expect("sent TCP parses");
}
