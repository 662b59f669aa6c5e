//! The raw AF_XDP frame-echo floor: what a round trip costs on this testbed with no TCP at all.
//!
//! The reflector is an AF_XDP socket on the stack's end whose steering program sends it TCP
//! frames for one port; it swaps MACs, IP addresses and ports and sends each frame straight back
//! (the checksums stay valid: a ones'-complement sum does not depend on the order of the words).
//! The pinger is a second AF_XDP socket on the peer's end, steering its own source port; it
//! sends one 64-byte-payload frame, spins until it returns, and times the round trip. Both go
//! through the same UMEM copy-mode rings as the stack, so the stack's own cost is whatever it
//! adds on top of this.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::driver::Clock;
use super::hist::Latency;
use super::xdp::XdpOpts;
use super::{LoadResult, RunConfig};
use xdp_tcp::engine::endpoint::XdpInterface;
use xdp_tcp::io::xdp::{XdpSocket, XdpSocketConfig};
use xdp_tcp::io::PacketIo;
use xdp_tcp::neigh::netlink::KernelTables;
use xdp_tcp::wire::{checksum, EthernetAddress};

const ETH: usize = 14;
const IP: usize = 20;
const TCP: usize = 20;
/// Source port of the pinger's frames (steered to the pinger on the peer's end).
const PING_PORT: u16 = 60999;

/// The interface with `port` steered to us and a socket on queue 0 (no engine: raw frames).
fn open_socket(opts: &XdpOpts, port: u16) -> io::Result<(XdpInterface, XdpSocket)> {
    let mut opts = opts.clone();
    opts.ephemeral = super::xdp::no_ephemeral();
    let iface = super::xdp::attach(&opts, &[port])?;
    let sock = iface.open_socket(0, &XdpSocketConfig::default(), None)?;
    Ok((iface, sock))
}

/// Swaps source and destination of the Ethernet, IPv4 and TCP headers in place.
fn reflect_in_place(f: &mut [u8]) {
    if f.len() < ETH + IP + TCP {
        return;
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    let ihl = usize::from(f[ETH] & 0x0f) * 4;
    for i in 0..4 {
        f.swap(ETH + 12 + i, ETH + 16 + i);
    }
    let t = ETH + ihl;
    if f.len() >= t + 4 {
        f.swap(t, t + 2);
        f.swap(t + 1, t + 3);
    }
}

/// Bounces every frame steered to `port` on `opts.iface` until `stop`; returns frames bounced.
pub fn reflect(
    opts: &XdpOpts,
    port: u16,
    stop: &AtomicBool,
    ready: impl FnOnce(),
) -> io::Result<u64> {
    let (_iface, mut sock) = open_socket(opts, port)?;
    ready();
    let mut stash: Vec<(usize, [u8; 2048])> = Vec::with_capacity(64);
    let mut bounced = 0u64;
    let mut n = 0u32;
    while !(n % 1024 == 0 && stop.load(Ordering::Relaxed)) {
        n = n.wrapping_add(1);
        sock.recv_batch(64, |f| {
            let mut b = [0u8; 2048];
            let len = f.len().min(2048);
            b[..len].copy_from_slice(&f[..len]);
            stash.push((len, b));
        });
        if stash.is_empty() {
            continue;
        }
        let mut i = 0;
        let sent = sock.send_batch(stash.len(), |buf| {
            let (len, b) = stash.get(i)?;
            i += 1;
            buf[..*len].copy_from_slice(&b[..*len]);
            reflect_in_place(&mut buf[..*len]);
            Some(*len)
        });
        bounced += sent as u64;
        stash.drain(..sent.min(stash.len()));
    }
    Ok(bounced)
}

/// Asks the kernel for `ip`'s MAC (it resolves with ARP if needed).
fn resolve_mac(tables: &mut KernelTables, ip: Ipv4Addr) -> io::Result<EthernetAddress> {
    for _ in 0..200 {
        if let Some(n) = tables.neighbour(ip)? {
            return Ok(n.mac);
        }
        tables.resolve(ip)?;
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no MAC for {ip}"),
    ))
}

/// Builds an Ethernet + IPv4 + TCP (ACK) frame with `payload` bytes and valid checksums.
pub fn build_frame(
    src_mac: EthernetAddress,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: usize,
    out: &mut [u8],
) -> usize {
    let len = ETH + IP + TCP + payload;
    let f = &mut out[..len];
    f.fill(0);
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[ETH..ETH + IP];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((IP + TCP + payload) as u16).to_be_bytes());
    ip[6] = 0x40;
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let c = checksum::data(ip);
    ip[10..12].copy_from_slice(&(!c).to_be_bytes());
    let tcp = &mut f[ETH + IP..];
    tcp[0..2].copy_from_slice(&src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&1u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x10;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let sum = checksum::combine(&[
        checksum::pseudo_header_v4(*src.ip(), *dst.ip(), 6, (TCP + payload) as u32),
        checksum::data(tcp),
    ]);
    tcp[16..18].copy_from_slice(&(!sum).to_be_bytes());
    len
}

/// Ping-pongs one frame with `payload` bytes to the reflector at `target`, one in flight, for
/// the configured warm-up and window.
pub fn ping(cfg: &RunConfig, opts: &XdpOpts, payload: usize) -> io::Result<LoadResult> {
    let (iface, mut sock) = open_socket(opts, PING_PORT)?;
    let addr = iface.addr().0;
    let mut tables = KernelTables::open(iface.index())?;
    let src_mac = tables.link_mac()?;
    let dst_mac = resolve_mac(&mut tables, *cfg.target.ip())?;
    let mut frame = [0u8; 2048];
    let len = build_frame(
        src_mac,
        dst_mac,
        SocketAddrV4::new(addr, PING_PORT),
        cfg.target,
        payload,
        &mut frame,
    );
    let clock = Clock::new();
    let warm_end = clock.now() + cfg.warmup.as_nanos() as u64;
    let end = warm_end + cfg.duration.as_nanos() as u64;
    let mut lat = Latency::new();
    let mut lost = 0u64;
    cfg.mark(super::Phase::Warmup);
    let mut measuring = false;
    loop {
        let sent_at = clock.now();
        if sent_at >= end {
            break;
        }
        if !measuring && sent_at >= warm_end {
            measuring = true;
            cfg.mark(super::Phase::Measure);
        }
        let mut sent = 0;
        while sent == 0 {
            sent = sock.send_batch(1, |buf| {
                buf[..len].copy_from_slice(&frame[..len]);
                Some(len)
            });
        }
        let deadline = sent_at + 100_000_000;
        let mut back = false;
        while !back {
            sock.recv_batch(64, |f| {
                if f.len() >= len && f[ETH + IP + 2..ETH + IP + 4] == PING_PORT.to_be_bytes() {
                    back = true;
                }
            });
            if !back && clock.now() > deadline {
                lost += 1;
                break;
            }
        }
        if back && sent_at >= warm_end {
            lat.record(clock.now() - sent_at);
        }
    }
    cfg.mark(super::Phase::Done);
    let secs = cfg.duration.as_secs_f64();
    Ok(LoadResult {
        backend: "raw-af-xdp".into(),
        workload: format!("frame echo, {payload} B payload"),
        seconds: secs,
        completed: lat.len(),
        rate: lat.len() as f64 / secs,
        bytes: lat.len() * payload as u64,
        gbit_per_s: 0.0,
        connections: 0,
        errors: lost,
        latency: lat.summary(),
        curve: lat.curve(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xdp_tcp::wire::{ChecksumCaps, Ipv4Packet, Ipv4Repr, TcpPacket, TcpRepr};

    #[test]
    fn built_frame_parses_and_reflects_with_valid_checksums() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 60999);
        let b = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 1), 7);
        let mut f = [0u8; 2048];
        let len = build_frame(
            EthernetAddress([2, 0, 0, 0, 0, 2]),
            EthernetAddress([2, 0, 0, 0, 0, 1]),
            a,
            b,
            64,
            &mut f,
        );
        reflect_in_place(&mut f[..len]);
        let caps = ChecksumCaps::default();
        let ip = Ipv4Packet::new_checked(&f[ETH..len]).unwrap();
        let repr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!((repr.src_addr, repr.dst_addr), (*b.ip(), *a.ip()));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let seg = TcpRepr::parse(&tcp, repr.src_addr, repr.dst_addr, &caps).unwrap();
        assert_eq!((seg.src_port, seg.dst_port), (7, 60999));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
    }
}
