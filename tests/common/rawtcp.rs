//! Hand-built Ethernet + IPv4 + TCP frames for tests that talk to the kernel below the stack
//! (raw AF_XDP sockets), independent of the crate's own `wire` module so the two check each
//! other.

use std::net::Ipv4Addr;

pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub struct Tcp {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

impl Tcp {
    /// The SYN-ACK (sequence `isn`) answering `syn`: addresses and ports swapped, its sequence
    /// number acknowledged.
    pub fn syn_ack(syn: &Tcp, isn: u32) -> Tcp {
        Tcp {
            src_mac: syn.dst_mac,
            dst_mac: syn.src_mac,
            src: syn.dst,
            dst: syn.src,
            sport: syn.dport,
            dport: syn.sport,
            seq: isn,
            ack: syn.seq.wrapping_add(1),
            flags: SYN | ACK,
        }
    }
}

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// Writes the segment (with an MSS option when SYN is set) into `buf`; returns its length.
pub fn build_tcp(t: &Tcp, buf: &mut [u8]) -> usize {
    let opts: &[u8] = if t.flags & SYN != 0 {
        &[2, 4, 0x05, 0xb4]
    } else {
        &[]
    };
    let tcp_len = 20 + opts.len();
    let ip_len = 20 + tcp_len;
    let frame = &mut buf[..14 + ip_len];
    frame[0..6].copy_from_slice(&t.dst_mac);
    frame[6..12].copy_from_slice(&t.src_mac);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut frame[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[12..16].copy_from_slice(&t.src.octets());
    ip[16..20].copy_from_slice(&t.dst.octets());
    let c = csum_fold(csum_add(0, ip));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut frame[34..34 + tcp_len];
    tcp[0..2].copy_from_slice(&t.sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&t.dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&t.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&t.ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = t.flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp[16..20].fill(0);
    tcp[20..].copy_from_slice(opts);
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&t.src.octets());
    pseudo[4..8].copy_from_slice(&t.dst.octets());
    pseudo[9] = 6;
    pseudo[10..12].copy_from_slice(&(tcp_len as u16).to_be_bytes());
    let c = csum_fold(csum_add(csum_add(0, &pseudo), tcp));
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    14 + ip_len
}

/// Parses an Ethernet/IPv4/TCP frame; `None` for anything else. Checksums are not verified here:
/// the pcap test leaves that to tshark.
pub fn parse_tcp(f: &[u8]) -> Option<Tcp> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[14] >> 4 != 4 || f[23] != 6 {
        return None;
    }
    let ihl = usize::from(f[14] & 0xf) * 4;
    if ihl < 20 || f.len() < 14 + ihl + 20 {
        return None;
    }
    let tcp = &f[14 + ihl..];
    let u32_at = |i: usize| u32::from_be_bytes([tcp[i], tcp[i + 1], tcp[i + 2], tcp[i + 3]]);
    Some(Tcp {
        dst_mac: f[0..6].try_into().unwrap(),
        src_mac: f[6..12].try_into().unwrap(),
        src: Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        dst: Ipv4Addr::new(f[30], f[31], f[32], f[33]),
        sport: u16::from_be_bytes([tcp[0], tcp[1]]),
        dport: u16::from_be_bytes([tcp[2], tcp[3]]),
        seq: u32_at(4),
        ack: u32_at(8),
        flags: tcp[13],
    })
}
