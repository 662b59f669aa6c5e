//! SYN cookies and the listener's limits, on two hosts joined by a lossless wire on virtual
//! time: a backlog filled by spoofed SYNs that never complete, then a real client whose SYN is
//! answered by a cookie, whose ACK makes the connection (with the MSS, window scale and SACK it
//! offered), and whose data then flows both ways; forged and stale cookies are refused; the
//! backlog and accept queue limits are counted as Linux counts them.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::{ConnId, DropReason, Host, HostConfig, RxVerdict};
use xdp_tcp::tcp::{self, Secret, State};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{
    ChecksumCaps, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;

/// A packet captured on the wire, parsed back.
#[derive(Debug, Clone)]
struct Seen {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    repr: TcpRepr<'static>,
    payload_len: usize,
}

/// Passes or changes a client packet on its way; `false` drops it.
type Mangle = Box<dyn FnMut(&mut Vec<u8>) -> bool>;

struct Wire {
    client: Host,
    server: Host,
    now: Instant,
    seen: Vec<Seen>,
    /// Segments from the client are passed through this first; `None` drops them.
    mangle: Option<Mangle>,
    /// Spoofed SYNs sent so far: each comes from a 4-tuple of its own.
    flooded: u32,
}

fn parse(packet: &[u8]) -> Seen {
    let caps = ChecksumCaps::default();
    let ip = Ipv4Packet::new_checked(packet).unwrap();
    let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let r = TcpRepr::parse(&tcp, ipr.src_addr, ipr.dst_addr, &caps).unwrap();
    Seen {
        src: ipr.src_addr,
        dst: ipr.dst_addr,
        payload_len: r.payload.len(),
        repr: TcpRepr { payload: &[], ..r },
    }
}

impl Wire {
    fn new(client: tcp::Config, server: tcp::Config, backlog: usize) -> Wire {
        let mut c = HostConfig::new(CLIENT);
        c.tcp = client;
        let mut s = HostConfig::new(SERVER);
        s.tcp = server;
        let mut server = Host::new(s);
        server.listen(PORT, backlog);
        Wire {
            client: Host::new(c),
            server,
            now: Instant::from_secs(100),
            seen: Vec::new(),
            mangle: None,
            flooded: 0,
        }
    }

    /// Moves packets both ways until neither host has any, at the current instant.
    fn shuttle(&mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            let mut moved = false;
            while let Some(tx) = self.client.poll_transmit(self.now, &mut buf) {
                let mut p = buf[..tx.len].to_vec();
                self.seen.push(parse(&p));
                moved = true;
                if let Some(m) = self.mangle.as_mut() {
                    if !m(&mut p) {
                        continue;
                    }
                }
                self.server.handle_ipv4(self.now, &p);
            }
            while let Some(tx) = self.server.poll_transmit(self.now, &mut buf) {
                let p = &buf[..tx.len];
                let s = parse(p);
                moved = true;
                // spoofed sources get nothing back: their SYN-ACKs vanish
                if s.dst == CLIENT {
                    self.client.handle_ipv4(self.now, p);
                }
                self.seen.push(s);
            }
            if !moved {
                return;
            }
        }
    }

    /// Runs virtual time forward by `d`, firing timers and moving packets.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.shuttle();
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Fills the server's SYN queue with SYNs from sources that never answer.
    fn flood(&mut self, n: u32) {
        for i in self.flooded..self.flooded + n {
            let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + i);
            let syn = syn_from(1024 + (i % 60_000) as u16, SeqNumber(i.wrapping_mul(7919)));
            self.server.handle_segment(self.now, src, &syn);
        }
        self.flooded += n;
        self.shuttle();
    }

    fn server_syn_acks_to_client(&self) -> Vec<&Seen> {
        self.seen
            .iter()
            .filter(|s| s.src == SERVER && s.dst == CLIENT && s.repr.flags.syn())
            .collect()
    }
}

fn syn_from(port: u16, seq: SeqNumber) -> TcpRepr<'static> {
    TcpRepr {
        src_port: port,
        dst_port: PORT,
        seq,
        ack: SeqNumber(0),
        flags: TcpFlags::SYN,
        window: 64240,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((1, 0)),
            ..TcpOptions::default()
        },
        payload: &[],
    }
}

fn cfg(seed: u64) -> tcp::Config {
    tcp::Config {
        secret: Secret::from_seed(seed),
        nodelay: true,
        ..tcp::Config::default()
    }
}

fn client_cfg(seed: u64) -> tcp::Config {
    tcp::Config {
        mss: 1400,
        // a fixed 1 MiB buffer: window shift 5 (auto-tuning's ceiling would make it 7)
        recv_buffer: 1 << 20,
        recv_buffer_max: None,
        ..cfg(seed)
    }
}

/// Sends `data` from `from` over `id` and reads it on the other side's `peer` handle, byte
/// exact.
fn transfer(w: &mut Wire, client_to_server: bool, cid: ConnId, sid: ConnId, data: &[u8]) {
    let mut got = Vec::new();
    let mut sent = 0;
    let mut buf = vec![0u8; 65536];
    for _ in 0..10_000 {
        if sent < data.len() {
            let h = if client_to_server {
                &mut w.client
            } else {
                &mut w.server
            };
            sent += h
                .send(if client_to_server { cid } else { sid }, &data[sent..])
                .unwrap_or(0);
        }
        w.run_for(Duration::from_millis(1));
        let (h, id) = if client_to_server {
            (&mut w.server, sid)
        } else {
            (&mut w.client, cid)
        };
        while let Ok(n) = h.recv(id, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == data.len() {
            break;
        }
    }
    assert!(
        got == data,
        "{} of {} bytes, or not byte-exact",
        got.len(),
        data.len()
    );
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn full_backlog_answers_with_a_cookie_that_makes_the_connection() {
    for seed in 1..=4u64 {
        let mut w = Wire::new(client_cfg(seed), cfg(seed + 100), 8);
        w.flood(8);
        assert_eq!(w.server.stats().syncookies_sent, 0, "the queue had room");
        w.flood(50);
        assert_eq!(w.server.stats().syncookies_sent, 50);
        let remote = SocketAddrV4::new(SERVER, PORT);
        let cid = w.client.connect(w.now, remote).unwrap();
        w.run_for(Duration::from_millis(10));
        let st = w.server.stats().clone();
        assert_eq!(st.syncookies_recv, 1, "seed {seed}");
        assert_eq!(st.syncookies_failed, 0);
        let synacks = w.server_syn_acks_to_client();
        assert_eq!(synacks.len(), 1, "one stateless SYN-ACK");
        // the SYN-ACK's TSval carries the options in its low bits: the client's shift (5 for its
        // 1 MiB buffer) and SACK
        let (tsval, _) = synacks[0].repr.options.timestamp.unwrap();
        assert_eq!(tsval & 0xf, 5);
        assert_ne!(tsval & 0x10, 0);
        assert_eq!(w.client.conn(cid).unwrap().state(), State::Established);
        let sid = w
            .server
            .accept(PORT)
            .expect("the cookie's connection is accepted");
        let s = w.server.conn(sid).unwrap();
        assert_eq!(s.state(), State::Established);
        // MSS 1400 rounds down to the table's 1300, less the timestamp option
        assert_eq!(s.mss(), 1300 - 12);
        assert!(s.sack_enabled() && s.timestamps_enabled());
        let c = w.client.conn(cid).unwrap();
        assert_eq!(
            s.window_shifts(),
            (c.window_shifts().1, c.window_shifts().0)
        );
        assert_eq!(c.window_shifts().1, 5);
        // data both ways, more than an unscaled window holds
        let up = pattern(300_000, seed as u8);
        transfer(&mut w, true, cid, sid, &up);
        let down = pattern(200_000, seed as u8 ^ 0x55);
        transfer(&mut w, false, cid, sid, &down);
        // the server's segments respect the cookie's MSS
        let biggest = w
            .seen
            .iter()
            .filter(|x| x.src == SERVER)
            .map(|x| x.payload_len)
            .max()
            .unwrap();
        assert_eq!(biggest, 1300 - 12);
    }
}

#[test]
fn cookie_without_timestamps_has_no_scaling_nor_sack() {
    let mut client = client_cfg(9);
    client.timestamps = false;
    let mut w = Wire::new(client, cfg(10), 2);
    w.flood(2);
    let cid = w
        .client
        .connect(w.now, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    w.run_for(Duration::from_millis(10));
    assert_eq!(w.server.stats().syncookies_recv, 1);
    let sid = w.server.accept(PORT).unwrap();
    let s = w.server.conn(sid).unwrap();
    assert_eq!(s.mss(), 1300);
    assert!(!s.sack_enabled() && !s.timestamps_enabled());
    assert_eq!(s.window_shifts(), (0, 0));
    transfer(&mut w, true, cid, sid, &pattern(100_000, 3));
}

#[test]
fn forged_and_stale_cookies_are_refused_with_rst() {
    let mut w = Wire::new(client_cfg(11), cfg(12), 2);
    w.flood(2);
    // the client's ACK of the cookie has its acknowledgement number changed
    w.mangle = Some(Box::new(|p: &mut Vec<u8>| {
        let mut ip = Ipv4Packet::new_unchecked(&mut p[..]);
        let mut t = TcpPacket::new_unchecked(ip.payload_mut());
        if t.flags().ack() && !t.flags().syn() {
            // (off by less than the MSS table's length it would decode as another MSS, as on
            // Linux: the hash makes any other value fail)
            let a = t.ack_number();
            t.set_ack_number(a + 1000);
            t.fill_checksum(CLIENT, SERVER);
        }
        true
    }));
    let cid = w
        .client
        .connect(w.now, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    w.run_for(Duration::from_millis(5));
    let st = w.server.stats().clone();
    assert_eq!(st.syncookies_sent, 1);
    assert!(st.syncookies_failed >= 1);
    assert_eq!(st.syncookies_recv, 0);
    assert!(w.server.accept(PORT).is_none());
    let rst = w
        .seen
        .iter()
        .any(|s| s.src == SERVER && s.dst == CLIENT && s.repr.flags.rst());
    assert!(rst, "a failed cookie is answered by RST");
    let _ = cid;

    // a good ACK, but too late: the cookie has aged out
    let mut w = Wire::new(client_cfg(13), cfg(14), 2);
    w.flood(2);
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let h = held.clone();
    w.mangle = Some(Box::new(move |p: &mut Vec<u8>| {
        let s = parse(p);
        if s.repr.flags.ack() && !s.repr.flags.syn() {
            h.borrow_mut().push(p.clone());
            return false;
        }
        true
    }));
    w.client
        .connect(w.now, SocketAddrV4::new(SERVER, PORT))
        .unwrap();
    w.run_for(Duration::from_millis(5));
    let ack = held.borrow()[0].clone();
    // within the cookie's life it would have been good; 4 minutes later it is not
    let mut late = w.now + Duration::from_secs(240);
    w.server.handle_timeout(late);
    // keep the listener checking cookies: another overflow just before
    let syn = syn_from(9, SeqNumber(1));
    w.server
        .handle_segment(late, Ipv4Addr::new(10, 0, 9, 9), &syn);
    late += Duration::from_millis(1);
    w.server.handle_ipv4(late, &ack);
    assert_eq!(w.server.stats().syncookies_recv, 0);
    assert_eq!(w.server.stats().syncookies_failed, 1);
}

#[test]
fn backlog_limits_are_counted_like_linux() {
    // without cookies a full SYN queue drops SYNs unanswered
    let mut off = cfg(20);
    off.syncookies = false;
    let mut w = Wire::new(client_cfg(21), off, 4);
    w.flood(10);
    let st = w.server.stats().clone();
    assert_eq!(st.dropped(DropReason::BacklogFull), 6);
    assert_eq!(st.listen_drops, 6);
    assert_eq!((st.listen_overflows, st.syncookies_sent), (0, 0));
    assert_eq!(w.server.conn_count(), 4);
    let syn_acks = w
        .seen
        .iter()
        .filter(|s| s.src == SERVER && s.repr.flags.syn())
        .count();
    assert_eq!(syn_acks, 4);

    // a full accept queue refuses even cookies: ListenOverflows
    let mut w = Wire::new(client_cfg(22), cfg(23), 2);
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(
            w.client
                .connect(w.now, SocketAddrV4::new(SERVER, PORT))
                .unwrap(),
        );
    }
    w.run_for(Duration::from_millis(5));
    assert_eq!(w.server.accept_queue_len(PORT), 2);
    let v = w.server.handle_segment(
        w.now,
        Ipv4Addr::new(10, 0, 7, 7),
        &syn_from(7, SeqNumber(7)),
    );
    assert!(matches!(
        v,
        RxVerdict::Refused {
            reason: DropReason::BacklogFull,
            ..
        }
    ));
    let st = w.server.stats().clone();
    assert_eq!((st.listen_overflows, st.listen_drops), (1, 1));
    assert_eq!(st.syncookies_sent, 0);
}

#[test]
fn embryos_under_pressure_give_up_sooner() {
    let mut off = cfg(30);
    off.syncookies = false;
    let mut w = Wire::new(client_cfg(31), off, 8);
    // the first 4 embryos find the queue under half full and get the full 6 retries; the next
    // 4 get 2
    w.flood(8);
    assert_eq!(w.server.conn_count(), 8);
    // 2 retries from a 1 s RTO: 1 + 2 + 4 s, then the last wait of 8 s; 6 take 127 s
    w.run_for(Duration::from_secs(20));
    assert_eq!(w.server.conn_count(), 4, "the late embryos are gone");
    w.run_for(Duration::from_secs(120));
    assert_eq!(w.server.conn_count(), 0);
}

#[test]
fn flood_of_100k_spoofed_syns_spares_established_and_new_connections() {
    // 100k spoofed SYNs in one virtual second against a backlog of 1024, while 10 established
    // connections exchange requests and replies and 100 new clients connect
    let mut w = Wire::new(client_cfg(40), cfg(41), 1024);
    let remote = SocketAddrV4::new(SERVER, PORT);
    let mut pairs = Vec::new();
    for _ in 0..10 {
        let c = w.client.connect(w.now, remote).unwrap();
        w.run_for(Duration::from_millis(5));
        pairs.push((c, w.server.accept(PORT).unwrap()));
    }
    let mut fresh = Vec::new();
    let mut buf = [0u8; 256];
    for round in 0..100u32 {
        w.flood(1000);
        fresh.push(w.client.connect(w.now, remote).unwrap());
        for (k, &(c, s)) in pairs.iter().enumerate() {
            let req = pattern(64, (round as u8) ^ k as u8);
            assert_eq!(w.client.send(c, &req), Ok(64));
            w.run_for(Duration::from_micros(500));
            let n = w.server.recv(s, &mut buf).unwrap();
            assert_eq!(&buf[..n], &req[..], "request {round} on {k}");
            assert_eq!(w.server.send(s, &buf[..n]), Ok(64));
            w.run_for(Duration::from_micros(500));
            let n = w.client.recv(c, &mut buf).unwrap();
            assert_eq!(&buf[..n], &req[..], "reply {round} on {k}");
        }
        while w.server.accept(PORT).is_some() {}
    }
    w.run_for(Duration::from_millis(50));
    let st = w.server.stats().clone();
    for &c in &fresh {
        assert_eq!(w.client.conn(c).unwrap().state(), State::Established);
    }
    // the SYN queue was full from the second round on: new clients came in by cookies
    assert!(
        st.syncookies_recv >= 99,
        "{} by cookies",
        st.syncookies_recv
    );
    assert_eq!(st.syncookies_failed, 0);
    assert!(
        st.syncookies_sent > 98_000,
        "{} cookies",
        st.syncookies_sent
    );
    assert_eq!(st.strays_dropped, 0);
    // what the flood holds is the SYN queue, nothing more
    assert!(
        w.server.conn_count() <= 1024 + 110,
        "{}",
        w.server.conn_count()
    );
    for &(c, s) in &pairs {
        assert_eq!(w.client.conn(c).unwrap().stats().rto_events, 0);
        assert_eq!(w.server.conn(s).unwrap().state(), State::Established);
    }
}
