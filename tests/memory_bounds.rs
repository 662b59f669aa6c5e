//! Memory a hostile peer can make a host hold, measured by a counting global allocator: bytes
//! at the right edge of receive windows cost what they are, not the window up to them; a peer
//! that opens connections without end meets the host's limits (counted refusals) and the heap
//! stops growing at the budget; TIME-WAIT entries and orphans stay within their limits.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use xdp_tcp::host::{DropReason, Host, HostConfig, SharedBudget, PUBLISH_STEP};
use xdp_tcp::tcp::{self, Secret, State};
use xdp_tcp::time::{Duration, Instant};
use xdp_tcp::wire::{
    ChecksumCaps, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

struct Counting;

static HEAP: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes straight to the system allocator; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        HEAP.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout, passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        HEAP.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` above with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        HEAP.fetch_add(new, Ordering::Relaxed);
        HEAP.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as for `dealloc`, and `new` is the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The tests measure one process-wide heap: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn heap() -> usize {
    HEAP.load(Ordering::Relaxed)
}

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const PORT: u16 = 80;
const MIB: usize = 1 << 20;

fn parse(packet: &[u8]) -> (Ipv4Addr, TcpRepr<'static>) {
    let caps = ChecksumCaps::default();
    let ip = Ipv4Packet::new_checked(packet).unwrap();
    let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    let r = TcpRepr::parse(&t, ipr.src_addr, ipr.dst_addr, &caps).unwrap();
    (ipr.dst_addr, TcpRepr { payload: &[], ..r })
}

fn seg(port: u16, seq: SeqNumber, ack: SeqNumber, flags: TcpFlags) -> TcpRepr<'static> {
    TcpRepr {
        src_port: port,
        dst_port: PORT,
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// A raw peer at `src`: completes handshakes with the server by hand, as an attacker would,
/// with no state of its own beyond the numbers.
struct Raw {
    now: Instant,
    buf: Vec<u8>,
}

impl Raw {
    /// Drains the server's output; the SYN-ACKs it sent, by (peer address, peer port).
    fn drain(&mut self, server: &mut Host) -> Vec<(Ipv4Addr, TcpRepr<'static>)> {
        let mut out = Vec::new();
        while let Some(tx) = server.poll_transmit(self.now, &mut self.buf) {
            let (dst, r) = parse(&self.buf[..tx.len]);
            if r.flags.syn() && r.flags.ack() {
                out.push((dst, r));
            }
        }
        out
    }

    /// Opens one connection from `src:port`: SYN, then the ACK of the SYN-ACK. Whether the
    /// server answered the SYN.
    fn open(&mut self, server: &mut Host, src: Ipv4Addr, port: u16) -> bool {
        let isn = SeqNumber(u32::from(port).wrapping_mul(2654435761));
        server.handle_segment(self.now, src, &seg(port, isn, SeqNumber(0), TcpFlags::SYN));
        let answers = self.drain(server);
        let Some((_, sa)) = answers
            .iter()
            .find(|(d, r)| *d == src && r.dst_port == port)
        else {
            return false;
        };
        let ack = seg(port, isn + 1, sa.seq + 1, TcpFlags::ACK);
        server.handle_segment(self.now, src, &ack);
        self.drain(server);
        true
    }
}

fn server_cfg(limits: Option<xdp_tcp::host::Limits>) -> HostConfig {
    let mut cfg = HostConfig::new(SERVER);
    cfg.tcp = tcp::Config {
        secret: Secret::from_seed(42),
        ..tcp::Config::default()
    };
    if let Some(l) = limits {
        cfg.limits = l;
    }
    cfg
}

fn budget_limits(budget: usize) -> xdp_tcp::host::Limits {
    xdp_tcp::host::Limits {
        mem_budget: budget,
        ..Default::default()
    }
}

/// The host's accounted memory is within `budget`; `peak` follows the heap's growth from `start`.
fn check_budget(server: &Host, budget: usize, start: usize, peak: &mut usize) {
    *peak = (*peak).max(heap().saturating_sub(start));
    assert!(
        server.memory_used() <= budget,
        "accounted {} of {budget}",
        server.memory_used()
    );
}

fn peer(i: u32) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(
            10,
            1 + (i / 60_000) as u8,
            (i / 250 % 240) as u8,
            1 + (i % 250) as u8,
        ),
        1024 + (i % 60_000) as u16,
    )
}

#[test]
fn ten_thousand_bytes_at_window_edges_cost_under_10_mib() {
    let _g = SERIAL.lock().unwrap();
    let mut server = Host::new(server_cfg(None));
    server.listen(PORT, 20_000);
    let mut raw = Raw {
        now: Instant::from_secs(1),
        buf: vec![0u8; 2048],
    };
    let n = 10_000u32;
    let empty = heap();
    for i in 0..n {
        let (src, port) = peer(i);
        assert!(raw.open(&mut server, src, port));
    }
    eprintln!(
        "{n} established connections: heap +{} B each, {} B each accounted",
        (heap() - empty) / n as usize,
        server.memory_used() / n as usize
    );
    assert_eq!(server.accept_queue_len(PORT), n as usize);
    let before = heap();
    let mut acks = 0;
    for i in 0..n {
        let (src, port) = peer(i);
        let id = server.lookup(SocketAddrV4::new(src, port), PORT).unwrap();
        let c = server.conn(id).unwrap();
        assert_eq!(c.state(), State::Established);
        // the last byte the window admits
        let edge = c.rcv_nxt() + (c.rcv_wnd() - 1);
        let mut s = seg(port, edge, c.snd_nxt(), TcpFlags::ACK);
        s.payload = b"!";
        server.handle_segment(raw.now, src, &s);
        while server.poll_transmit(raw.now, &mut raw.buf).is_some() {
            acks += 1;
        }
    }
    let grown = heap().saturating_sub(before);
    eprintln!(
        "{n} bytes at window edges of {} KiB: heap +{} KiB ({} B per connection), {acks} ACKs",
        tcp::Config::default().recv_buffer / 1024,
        grown / 1024,
        grown / n as usize
    );
    assert!(acks >= n as usize, "each out-of-order byte is acknowledged");
    assert!(grown < 10 * MIB, "heap grew by {grown} bytes");
    // every byte is held: the window edge is where it was
    let (src, port) = peer(0);
    let id = server.lookup(SocketAddrV4::new(src, port), PORT).unwrap();
    assert!(server.conn(id).unwrap().rcv_wnd() > 0);
}

#[test]
fn endless_opener_meets_the_budget_with_counted_refusals() {
    let _g = SERIAL.lock().unwrap();
    let budget = 8 * MIB;
    let mut server = Host::new(server_cfg(Some(budget_limits(budget))));
    // an accept queue that never fills: the application accepts everything
    server.listen(PORT, 1 << 20);
    let mut raw = Raw {
        now: Instant::from_secs(1),
        buf: vec![0u8; 2048],
    };
    let start = heap();
    let mut accepted = Vec::new();
    let mut refused = 0u32;
    let mut peak = 0usize;
    for i in 0..60_000u32 {
        let (src, port) = peer(i);
        if !raw.open(&mut server, src, port) {
            refused += 1;
        }
        while let Some(id) = server.accept(PORT) {
            accepted.push(id);
        }
        // every 100 connections, each gets a window's worth of out-of-order data at its edge
        if i % 100 == 99 {
            for k in i - 99..=i {
                let (src, port) = peer(k);
                let Some(id) = server.lookup(SocketAddrV4::new(src, port), PORT) else {
                    continue;
                };
                let c = server.conn(id).unwrap();
                if c.rcv_wnd() < 3000 {
                    continue;
                }
                let mut s = seg(port, c.rcv_nxt() + 1000, c.snd_nxt(), TcpFlags::ACK);
                let data = [7u8; 1400];
                s.payload = &data;
                server.handle_segment(raw.now, src, &s);
                while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
            }
        }
        check_budget(&server, budget, start, &mut peak);
    }
    let st = server.stats().clone();
    eprintln!(
        "{} connections held, {refused} refusals ({} counted under pressure), accounted {} KiB of \
         {} KiB, heap peak +{} KiB, {} out-of-order bytes pruned",
        server.conn_count(),
        st.mem_pressure_refusals,
        server.memory_used() / 1024,
        budget / 1024,
        peak / 1024,
        st.ooo_pruned_bytes
    );
    assert!(refused > 10_000, "the opener was stopped");
    assert_eq!(u64::from(refused), st.dropped(DropReason::OverLimit));
    assert_eq!(st.mem_pressure_refusals, u64::from(refused));
    // the heap (connections, tables, queues, and this test's own list of handles) never grew
    // past the budget
    assert!(peak < budget, "heap peak +{peak}");
}

#[test]
fn connection_count_time_wait_and_orphans_are_bounded() {
    let _g = SERIAL.lock().unwrap();
    let limits = xdp_tcp::host::Limits {
        max_conns: 50,
        max_time_wait: 10,
        max_orphans: 5,
        ..Default::default()
    };
    let mut server = Host::new(server_cfg(Some(limits)));
    server.listen(PORT, 1000);
    let mut raw = Raw {
        now: Instant::from_secs(1),
        buf: vec![0u8; 2048],
    };
    let mut opened = 0;
    for i in 0..80u32 {
        let (src, port) = peer(i);
        if raw.open(&mut server, src, port) {
            opened += 1;
        }
    }
    assert_eq!(opened, 50);
    assert_eq!(server.stats().conn_limit_refusals, 30);
    assert_eq!(server.conn_count(), 50);
    let ids: Vec<_> = std::iter::from_fn(|| server.accept(PORT)).collect();
    // close 20: the first 5 linger as orphans in FIN-WAIT-1, the rest are reset
    for &id in &ids[..20] {
        server.close(id);
    }
    while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
    assert_eq!(server.orphan_count(), 5);
    assert_eq!(server.stats().orphans_reset, 15);
    assert_eq!(server.conn_count(), 35);
    // the peers of the next 20 close first; then the server closes: LAST-ACK, not TIME-WAIT.
    // For TIME-WAIT the server closes first and the peer answers with ACK and FIN.
    let mut in_tw = 0;
    for (k, &id) in ids[20..45].iter().enumerate() {
        let c = server.conn(id).unwrap();
        let (src, port) = (*c.remote().ip(), c.remote().port());
        let (rcv, snd) = (c.rcv_nxt(), c.snd_nxt());
        server.with_conn(id, |c| c.close());
        while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
        server.handle_segment(
            raw.now,
            src,
            &seg(port, rcv, snd + 1, TcpFlags::ACK | TcpFlags::FIN),
        );
        while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
        if server
            .conn(id)
            .is_some_and(|c| c.state() == State::TimeWait)
        {
            in_tw += 1;
        }
        assert!(server.time_wait_count() <= 10, "after {k}");
    }
    assert_eq!(in_tw, 25, "each reached TIME-WAIT");
    assert_eq!(server.time_wait_count(), 10);
    assert_eq!(server.stats().time_wait_recycled, 15);
    assert_eq!(server.conn_count(), 35 - 15);
    // the limits free room: new connections are taken again
    let (src, port) = peer(1000);
    raw.now += Duration::from_millis(1);
    assert!(raw.open(&mut server, src, port));
}

#[test]
fn engines_sharing_a_budget_refuse_together_and_stay_under_it() {
    // Two hosts (two engines of one stack) share 8 MiB; each alone would allow 1 GiB. A peer
    // opening connections without end on the first drives both into pressure: the second,
    // holding nothing, refuses too, and the two together never hold more than the budget.
    let _g = SERIAL.lock().unwrap();
    let budget = 8 * MIB;
    let shared = SharedBudget::new(budget);
    let mut a = Host::new(server_cfg(None));
    let mut b = Host::new(server_cfg(None));
    a.share_budget(shared.clone());
    b.share_budget(shared.clone());
    a.listen(PORT, 1 << 20);
    b.listen(PORT, 1 << 20);
    let mut raw = Raw {
        now: Instant::from_secs(1),
        buf: vec![0u8; 2048],
    };
    let start = heap();
    let mut peak = 0usize;
    let mut refused = 0u32;
    let mut opened = 0u32;
    for i in 0..20_000u32 {
        let (src, port) = peer(i);
        if raw.open(&mut a, src, port) {
            opened += 1;
        } else {
            refused += 1;
        }
        while a.accept(PORT).is_some() {}
        let held = a.memory_used() + b.memory_used();
        assert!(held <= budget, "the two hold {held} bytes");
        // the shared figure lags each host's own by less than one publishing step
        assert!(
            held.abs_diff(shared.used()) < 2 * PUBLISH_STEP,
            "{held} vs {}",
            shared.used()
        );
        peak = peak.max(heap().saturating_sub(start));
    }
    assert!(shared.under_pressure());
    assert!(
        refused > 10_000 && opened > 1000,
        "{opened} opened, {refused} refused"
    );
    assert_eq!(a.stats().mem_pressure_refusals, u64::from(refused));
    // the second host holds nothing of its own, yet refuses: the budget is the stack's
    assert_eq!(b.memory_used(), 0);
    let (src, port) = peer(50_000);
    assert!(!raw.open(&mut b, src, port), "b admitted a connection");
    assert_eq!(b.stats().mem_pressure_refusals, 1);
    assert_eq!(b.stats().dropped(DropReason::OverLimit), 1);
    assert!(peak < budget, "heap peak +{peak}");
    eprintln!(
        "{opened} connections on the first host ({} KiB), {refused} refused; shared {} KiB of \
         {} KiB; heap peak +{} KiB",
        a.memory_used() / 1024,
        shared.used() / 1024,
        budget / 1024,
        peak / 1024
    );
    // the first host going away gives its part back: the second takes connections again
    drop(a);
    assert_eq!(shared.used(), 0);
    assert!(!shared.under_pressure());
    raw.now += Duration::from_millis(1);
    assert!(
        raw.open(&mut b, src, port),
        "b refused with the budget free"
    );
    assert_eq!(b.conn_count(), 1);
}

#[test]
fn writes_to_peers_that_never_acknowledge_stay_under_the_budget() {
    let _g = SERIAL.lock().unwrap();
    let budget = 8 * MIB;
    let mut server = Host::new(server_cfg(Some(budget_limits(budget))));
    server.listen(PORT, 4096);
    let mut raw = Raw {
        now: Instant::from_secs(1),
        buf: vec![0u8; 2048],
    };
    let n = 1000u32;
    let mut ids = Vec::new();
    for i in 0..n {
        let (src, port) = peer(i);
        assert!(raw.open(&mut server, src, port));
        ids.push(server.accept(PORT).unwrap());
    }
    let sndbuf = server.conn(ids[0]).unwrap().send_capacity();
    assert!(
        sndbuf * n as usize > 10 * budget,
        "the writes could hold far more than the budget"
    );
    let start = heap();
    let chunk = vec![0x5au8; 16 * 1024];
    let (mut peak, mut refused, mut taken) = (0usize, 0u32, 0usize);
    // The application fills every send buffer; the peers announce a window but never
    // acknowledge a byte, so everything written stays held.
    for &id in &ids {
        loop {
            match server.send(id, &chunk) {
                Ok(k) => taken += k,
                Err(tcp::Error::WouldBlock) => break,
                Err(e) => panic!("send: {e:?}"),
            }
        }
        if server.conn(id).unwrap().send_queue() == 0 {
            refused += 1;
        }
        while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
        check_budget(&server, budget, start, &mut peak);
    }
    let st = server.stats().clone();
    eprintln!(
        "{n} connections, {} KiB written, {refused} refused every byte, {} send buffers clamped, \
         accounted {} KiB of {} KiB, heap peak +{} KiB",
        taken / 1024,
        st.send_buffers_clamped,
        server.memory_used() / 1024,
        budget / 1024,
        peak / 1024
    );
    assert!(peak < budget, "heap peak +{peak}");
    assert!(refused > n / 2, "writes were stopped under pressure");
    assert!(st.send_buffers_clamped >= u64::from(refused));
    // The peers acknowledge everything, window after window: memory goes back, pressure ends,
    // and the next write on a clamped connection finds its buffer whole again.
    let mut passes = 0;
    while ids
        .iter()
        .any(|&id| server.conn(id).unwrap().send_queue() > 0)
    {
        passes += 1;
        // the peers sent no MSS option (536 bytes) and acknowledge once a pass, so the window
        // grows by two segments a pass: 256 KiB take ~22 passes
        assert!(passes <= 60, "the queued bytes drain");
        for (i, &id) in ids.iter().enumerate() {
            let (src, port) = peer(i as u32);
            let c = server.conn(id).unwrap();
            let isn = SeqNumber(u32::from(port).wrapping_mul(2654435761));
            let ack = seg(port, isn + 1, c.snd_nxt(), TcpFlags::ACK);
            server.handle_segment(raw.now, src, &ack);
            while server.poll_transmit(raw.now, &mut raw.buf).is_some() {}
        }
    }
    assert!(
        !server.under_memory_pressure(),
        "accounted {}",
        server.memory_used()
    );
    let last = *ids.last().unwrap();
    assert_eq!(server.send(last, &chunk).unwrap(), chunk.len());
    assert_eq!(server.conn(last).unwrap().send_capacity(), sndbuf);
}
