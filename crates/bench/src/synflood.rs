//! A SYN flood from the peer side (`xdp-tcp load --workload synflood`): spoofed SYNs from random
//! sources in a subnet, sent through a raw IPv4 socket (`IP_HDRINCL`, batched with
//! sendmmsg(2)), a bounded count at a bounded rate. Only for testbeds the caller owns: the
//! target must be a namespace a test created.
//!
//! Each SYN has a random source address (inside `subnet`, never its network or broadcast
//! address nor the target), a random source port above 1024 and a random ISN, and carries MSS,
//! SACK-permitted, timestamps and window scale like a Linux SYN, so a listener that answers
//! with cookies takes the full option path.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use xdp_tcp::wire::{
    ChecksumCaps, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket,
    TcpRepr,
};

/// What to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodConfig {
    pub target: SocketAddrV4,
    /// Sources are drawn from this network and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// SYNs in all.
    pub count: u64,
    /// SYNs per second at most.
    pub rate: u64,
    pub seed: u64,
    /// SYNs per sendmmsg(2), 1..=[`MAX_BATCH`]. Smaller batches hold the sending core for less
    /// time at once (each SYN is delivered to the target inside the call, on the sender's core):
    /// what a latency-sensitive thread sharing that core waits for at most.
    pub batch: usize,
}

/// What was sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FloodReport {
    pub sent: u64,
    /// Packets the kernel refused (ENOBUFS and the like): not sent.
    pub send_errors: u64,
    pub seconds: f64,
    /// SYNs per second reached.
    pub rate: f64,
}

/// xorshift64*: fast, seeded, good enough to scatter sources.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A random host address in `subnet`, not `avoid`.
pub fn random_source(rng: &mut Rng, subnet: (Ipv4Addr, u8), avoid: Ipv4Addr) -> Ipv4Addr {
    let (net, len) = subnet;
    let host_bits = 32 - u32::from(len.min(30));
    let mask = if host_bits == 32 {
        0
    } else {
        u32::MAX << host_bits
    };
    let base = u32::from(net) & mask;
    let span = (1u64 << host_bits) - 2;
    loop {
        let a = Ipv4Addr::from(base + 1 + (rng.next_u64() % span) as u32);
        if a != avoid {
            return a;
        }
    }
}

/// Writes one spoofed SYN (IPv4 header included) into `buf`; its length.
pub fn write_syn(rng: &mut Rng, cfg: &FloodConfig, buf: &mut [u8]) -> usize {
    let src = random_source(rng, cfg.subnet, *cfg.target.ip());
    let r = rng.next_u64();
    let tcp = TcpRepr {
        src_port: 1024 + (r % 64_000) as u16,
        dst_port: cfg.target.port(),
        seq: SeqNumber((r >> 16) as u32),
        ack: SeqNumber(0),
        flags: TcpFlags::SYN,
        window: 64240,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some(((r >> 8) as u32, 0)),
            ..TcpOptions::default()
        },
        payload: &[],
    };
    let tcp_len = tcp.header_len();
    let ip = Ipv4Repr::new(src, *cfg.target.ip(), IpProtocol::Tcp, tcp_len);
    let total = 20 + tcp_len;
    let (h, t) = buf[..total].split_at_mut(20);
    ip.emit(
        &mut Ipv4Packet::new_unchecked(&mut *h),
        &ChecksumCaps::default(),
    );
    let mut seg = TcpPacket::new_unchecked(t);
    tcp.emit_header(&mut seg);
    seg.fill_checksum(src, *cfg.target.ip());
    total
}

/// The largest [`FloodConfig::batch`].
pub const MAX_BATCH: usize = 64;

/// Ahead of schedule by more than this, the sender sleeps instead of spinning, leaving its core
/// to whatever else runs there.
const SLEEP_AHEAD: Duration = Duration::from_micros(30);

/// Sends the flood from the calling thread's namespace. Needs CAP_NET_RAW.
pub fn run(cfg: &FloodConfig) -> io::Result<FloodReport> {
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = flood(fd, cfg);
    // SAFETY: `fd` is ours and not used after.
    unsafe { libc::close(fd) };
    result
}

fn flood(fd: i32, cfg: &FloodConfig) -> io::Result<FloodReport> {
    let mut rng = Rng::new(cfg.seed);
    let batch = cfg.batch.clamp(1, MAX_BATCH);
    let mut bufs = vec![[0u8; 128]; batch];
    let mut lens = [0usize; MAX_BATCH];
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(*cfg.target.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let start = Instant::now();
    let per_packet = Duration::from_secs_f64(1.0 / cfg.rate.max(1) as f64);
    let (mut sent, mut errors) = (0u64, 0u64);
    while sent + errors < cfg.count {
        let n = ((cfg.count - sent - errors) as usize).min(batch);
        // pace: the batch goes when the schedule reaches its first packet; sleep through most of
        // a long wait, spin the rest
        let due = per_packet.mul_f64((sent + errors) as f64);
        loop {
            let now = start.elapsed();
            if now >= due {
                break;
            }
            if due - now > SLEEP_AHEAD {
                std::thread::sleep(due - now - SLEEP_AHEAD);
            } else {
                std::hint::spin_loop();
            }
        }
        for i in 0..n {
            lens[i] = write_syn(&mut rng, cfg, &mut bufs[i]);
        }
        let mut iov: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: lens[i],
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (&dst as *const libc::sockaddr_in).cast_mut().cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        // SAFETY: `msgs` holds `n` headers pointing at `iov`, `bufs` and `dst`, all alive for
        // the call.
        let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as u32, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => errors += n as u64,
                _ => return Err(e),
            }
        } else {
            sent += r as u64;
            errors += (n - r as usize) as u64;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(FloodReport {
        sent,
        send_errors: errors,
        seconds,
        rate: sent as f64 / seconds.max(1e-9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syns_parse_verify_and_come_from_the_subnet() {
        let cfg = FloodConfig {
            target: "10.11.0.1:8080".parse().unwrap(),
            subnet: ("10.11.0.0".parse().unwrap(), 24),
            count: 1,
            rate: 1,
            seed: 7,
            batch: 64,
        };
        let mut rng = Rng::new(cfg.seed);
        let mut sources = std::collections::HashSet::new();
        let caps = ChecksumCaps::default();
        for _ in 0..2000 {
            let mut buf = [0u8; 128];
            let n = write_syn(&mut rng, &cfg, &mut buf);
            let ip = Ipv4Packet::new_checked(&buf[..n]).unwrap();
            let ipr = Ipv4Repr::parse(&ip, &caps).expect("IPv4 checksum");
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            let r = TcpRepr::parse(&t, ipr.src_addr, ipr.dst_addr, &caps).expect("TCP checksum");
            assert_eq!(r.flags, TcpFlags::SYN);
            assert_eq!(r.dst_port, 8080);
            let o = ipr.src_addr.octets();
            assert_eq!(&o[..3], &[10, 11, 0]);
            assert!(o[3] != 0 && o[3] != 255 && o[3] != 1, "{}", ipr.src_addr);
            sources.insert(ipr.src_addr);
        }
        assert!(sources.len() > 240, "{} sources", sources.len());
    }
}
