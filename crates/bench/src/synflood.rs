//! A SYN flood from the peer side (`xdp-tcp load --workload synflood`): spoofed SYNs from random
//! sources in a subnet, sent through a raw IPv4 socket (`IP_HDRINCL`, batched with
//! sendmmsg(2)) or by an XDP program the kernel runs in live-frames mode ([`run_xdp`]), a
//! bounded count at a bounded rate. Only for testbeds the caller owns: the
//! target must be a namespace a test created.
//!
//! Each SYN has a random source address (inside `subnet`, never its network or broadcast
//! address nor the target), a random source port from 1024 up and a random ISN, and carries MSS,
//! SACK-permitted, timestamps and window scale like a Linux SYN, so a listener that answers
//! with cookies takes the full option path.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use xdp_tcp::io::synflood_bpf::{SynFloodProgram, SYN_FRAME_LEN, SYN_TCP_HEADER_LEN};
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
    /// SYNs per sendmmsg(2) or per `BPF_PROG_TEST_RUN`, 1..=[`MAX_BATCH`]. Smaller batches hold
    /// the sending core for less time at once (each SYN is delivered to the target inside the call, on the sender's core):
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

/// Sends the flood from the calling thread's namespace through a raw socket. Needs
/// CAP_NET_RAW.
pub fn run(cfg: &FloodConfig) -> io::Result<FloodReport> {
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = send_raw(fd, cfg);
    // SAFETY: `fd` is ours and not used after.
    unsafe { libc::close(fd) };
    result
}

/// The device an XDP flood leaves by ([`run_xdp`]): its name in the calling thread's
/// namespace, its own MAC and the target's (or the next hop's) MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpDevice {
    pub ifname: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
}

impl XdpDevice {
    /// `ifname` of the calling thread's namespace, with its own MAC (read from the kernel), the
    /// frames addressed to `dst_mac`.
    pub fn lookup(ifname: &str, dst_mac: [u8; 6]) -> io::Result<Self> {
        let ifindex = xdp_tcp::io::xdp::ifindex(ifname)?;
        let src = xdp_tcp::neigh::netlink::KernelTables::open(ifindex)?.link_mac()?;
        Ok(XdpDevice {
            ifname: ifname.to_string(),
            src_mac: src.0,
            dst_mac,
        })
    }
}

/// A MAC address written `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Sends the flood out of `dev` from the kernel itself: [`XdpFlood::prepare`], then
/// [`XdpFlood::run`].
pub fn run_xdp(cfg: &FloodConfig, dev: &XdpDevice) -> io::Result<FloodReport> {
    XdpFlood::prepare(cfg, dev)?.run()
}

/// A flood sent by the kernel itself: the XDP program of [`xdp_tcp::io::synflood_bpf`] in
/// live-frames mode, one `BPF_PROG_TEST_RUN` per batch. No socket and no skb, so on a veth the
/// sending core pays little more than the receiving end's XDP path (a raw socket's SYN costs it
/// several times that). Sources, ports and ISNs come from the kernel's random numbers, not
/// from `cfg.seed`. Needs CAP_BPF and CAP_NET_ADMIN.
pub struct XdpFlood {
    cfg: FloodConfig,
    ifname: String,
    template: [u8; SYN_FRAME_LEN],
    prog: SynFloodProgram,
}

impl XdpFlood {
    /// Loads and attaches the program in the calling thread's namespace (tens of
    /// milliseconds: the verifier), so that [`Self::run`] starts sending at once.
    pub fn prepare(cfg: &FloodConfig, dev: &XdpDevice) -> io::Result<Self> {
        let ifindex = xdp_tcp::io::xdp::ifindex(&dev.ifname)?;
        Ok(XdpFlood {
            cfg: *cfg,
            ifname: dev.ifname.clone(),
            template: syn_frame(cfg, dev),
            prog: SynFloodProgram::load(cfg.subnet, *cfg.target.ip(), ifindex)?,
        })
    }

    /// Sends the flood; call from the thread (namespace) that prepared it.
    ///
    /// Where the kernel refuses live-frames mode (EPERM: seen on a 6.18 kernel of a sandboxed
    /// VM, with every capability in the initial namespaces, while the same call without the
    /// flag ran), the flood goes out of the device through a packet socket instead
    /// ([`send_packet`]), and says so on stderr: the same frames, built in user space, each
    /// an skb on the sending core.
    pub fn run(&self) -> io::Result<FloodReport> {
        let before = self.prog.sent()?;
        if self.cfg.count == 0 {
            return paced(&self.cfg, |_| Ok(0));
        }
        match self.prog.send(&self.template, 1) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                eprintln!(
                    "synflood: the kernel refuses BPF_PROG_TEST_RUN in live-frames mode ({e}); \
                     sending through a packet socket (PACKET_QDISC_BYPASS) instead"
                );
                return send_packet(&self.cfg, &self.template, &self.ifname);
            }
            r => r?,
        }
        let cfg = FloodConfig {
            count: self.cfg.count - 1,
            ..self.cfg
        };
        let mut report = paced(&cfg, |n| {
            self.prog.send(&self.template, n as u32)?;
            Ok(n)
        })?;
        // what the program wrote and handed to the device, by its own count
        report.sent = self.prog.sent()? - before;
        report.rate = report.sent as f64 / report.seconds.max(1e-9);
        Ok(report)
    }
}

/// Sends the flood out of `ifname` (the calling thread's namespace) through a packet socket
/// that bypasses the qdisc: each SYN of [`write_syn`] behind `template`'s Ethernet header,
/// batched with sendmmsg(2). No route or neighbour look-up, but an skb per frame. Needs
/// CAP_NET_RAW.
pub fn send_packet(cfg: &FloodConfig, template: &[u8], ifname: &str) -> io::Result<FloodReport> {
    let ifindex = xdp_tcp::io::xdp::ifindex(ifname)?;
    // SAFETY: plain socket(2) (protocol 0: it receives nothing); closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields bind it to the device.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the length given.
        let r = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: an int option of the right size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut rng = Rng::new(cfg.seed);
        let mut bufs = vec![[0u8; 128]; MAX_BATCH];
        for b in &mut bufs {
            b[..14].copy_from_slice(&template[..14]);
        }
        let mut lens = [0usize; MAX_BATCH];
        paced(cfg, |n| {
            for i in 0..n {
                lens[i] = 14 + write_syn(&mut rng, cfg, &mut bufs[i][14..]);
            }
            sendmmsg(fd, &mut bufs[..n], &lens[..n], None)
        })
    })();
    // SAFETY: `fd` is ours and not used after.
    unsafe { libc::close(fd) };
    result
}

/// One sendmmsg(2) of `bufs[i][..lens[i]]`, to `dst` if given; how many the kernel took (none
/// when it is out of buffers).
fn sendmmsg(
    fd: i32,
    bufs: &mut [[u8; 128]],
    lens: &[usize],
    dst: Option<&libc::sockaddr_in>,
) -> io::Result<usize> {
    let mut iov: Vec<libc::iovec> = bufs
        .iter_mut()
        .zip(lens)
        .map(|(b, &len)| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: len,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iov
        .iter_mut()
        .map(|v| {
            // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            if let Some(dst) = dst {
                m.msg_hdr.msg_name = (dst as *const libc::sockaddr_in).cast_mut().cast();
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            }
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    // SAFETY: `msgs` holds one header per buffer, pointing at `iov`, `bufs` and `dst`, all
    // alive for the call.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as u32, 0) };
    if r < 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOBUFS) | Some(libc::EAGAIN) => Ok(0),
            _ => Err(e),
        }
    } else {
        Ok(r as usize)
    }
}

/// The template frame of [`XdpFlood`]: Ethernet and one SYN of [`write_syn`], whose source,
/// port, ISN and checksums the program rewrites.
pub fn syn_frame(cfg: &FloodConfig, dev: &XdpDevice) -> [u8; SYN_FRAME_LEN] {
    let mut frame = [0u8; SYN_FRAME_LEN];
    frame[..6].copy_from_slice(&dev.dst_mac);
    frame[6..12].copy_from_slice(&dev.src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let n = write_syn(&mut Rng::new(cfg.seed), cfg, &mut frame[14..]);
    assert_eq!(
        n,
        20 + SYN_TCP_HEADER_LEN,
        "the program checksums a TCP header of exactly this length"
    );
    frame
}

fn send_raw(fd: i32, cfg: &FloodConfig) -> io::Result<FloodReport> {
    let mut rng = Rng::new(cfg.seed);
    let mut bufs = vec![[0u8; 128]; MAX_BATCH];
    let mut lens = [0usize; MAX_BATCH];
    let dst = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(*cfg.target.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    paced(cfg, |n| {
        for i in 0..n {
            lens[i] = write_syn(&mut rng, cfg, &mut bufs[i]);
        }
        sendmmsg(fd, &mut bufs[..n], &lens[..n], Some(&dst))
    })
}

/// Sends `cfg.count` SYNs in batches of `cfg.batch` at `cfg.rate`: each batch goes when the
/// schedule reaches its first packet. `send(n)` sends a batch of `n` and returns how many the
/// kernel took; the rest count as errors.
fn paced(
    cfg: &FloodConfig,
    mut send: impl FnMut(usize) -> io::Result<usize>,
) -> io::Result<FloodReport> {
    let batch = cfg.batch.clamp(1, MAX_BATCH);
    let start = Instant::now();
    let per_packet = Duration::from_secs_f64(1.0 / cfg.rate.max(1) as f64);
    let (mut sent, mut errors) = (0u64, 0u64);
    while sent + errors < cfg.count {
        let n = ((cfg.count - sent - errors) as usize).min(batch);
        // sleep through most of a long wait, spin the rest
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
        let took = send(n)?.min(n);
        sent += took as u64;
        errors += (n - took) as u64;
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

    #[test]
    fn the_xdp_template_is_a_valid_syn_frame() {
        let cfg = FloodConfig {
            target: "10.11.0.1:8080".parse().unwrap(),
            subnet: ("198.18.0.0".parse().unwrap(), 16),
            count: 1,
            rate: 1,
            seed: 3,
            batch: 16,
        };
        let dev = XdpDevice {
            ifname: "veth0".into(),
            src_mac: parse_mac("02:00:00:00:00:02").unwrap(),
            dst_mac: parse_mac("02:00:00:00:00:01").unwrap(),
        };
        let f = syn_frame(&cfg, &dev);
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let caps = ChecksumCaps::default();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let ipr = Ipv4Repr::parse(&ip, &caps).expect("IPv4 checksum");
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        let r = TcpRepr::parse(&t, ipr.src_addr, ipr.dst_addr, &caps).expect("TCP checksum");
        assert_eq!((r.flags, r.dst_port), (TcpFlags::SYN, 8080));
        assert_eq!(t.header_len() as usize, SYN_TCP_HEADER_LEN);
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:01:03"), None);
        assert_eq!(parse_mac("02:00:00:00:00:zz"), None);
    }
}
