//! An IPv4 packet carrying a TCP segment, written in one pass: [`emit_ipv4_tcp`].
//!
//! Nearly every segment of an established connection has no TCP option but timestamps (or
//! none at all). For those the two headers are written as 32-bit words from the field values
//! and both checksums are summed from the same values in one accumulator with the payload, so
//! nothing is read back and only two folds are taken. Any other segment (MSS, window scale,
//! SACK-permitted or SACK blocks) takes the general path: [`Ipv4Repr::emit`],
//! [`TcpRepr::emit_header`], the payload, [`TcpPacket::fill_checksum`]. Both paths write the
//! same bytes (the tests compare them on random segments).

use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::tcp::{TcpOptions, TcpPacket, TcpRepr};
use super::{checksum, tcp};

/// Flags and fragment offset of every packet we send: DF, not a fragment.
const DF: u32 = 0x4000;
/// NOP, NOP, timestamps (kind 8, length 10): our layout of a timestamps-only option list.
const NOP_NOP_TS: u32 = 0x0101_080a;

/// Whether `o` holds nothing but (optionally) timestamps: the one-pass layout.
#[inline]
fn timestamps_only(o: &TcpOptions) -> bool {
    o.mss.is_none() && o.window_scale.is_none() && !o.sack_permitted && o.sack_len == 0
}

/// Writes the IPv4 header `ip` (its `payload_len` ignored: the TCP segment's length is used),
/// the TCP header of `tcp` (its `payload` ignored) and `payload_len` payload bytes that `fill`
/// writes into the slice it is given, at the start of `buf`; returns the packet's length.
/// Checksums are computed when `compute_tx` (both fields are zero otherwise). Panics if `buf`
/// is shorter than the packet.
#[inline]
pub fn emit_ipv4_tcp(
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
    payload_len: usize,
    buf: &mut [u8],
    compute_tx: bool,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    if timestamps_only(&tcp.options) {
        emit_fast(ip, tcp, payload_len, buf, compute_tx, fill)
    } else {
        emit_general(ip, tcp, payload_len, buf, compute_tx, fill)
    }
}

/// Every layout: the headers through their views, the TCP checksum read back from the buffer.
#[inline]
fn emit_general(
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
    payload_len: usize,
    buf: &mut [u8],
    compute_tx: bool,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    let tcp_len = tcp.header_len() + payload_len;
    let total = ipv4::HEADER_LEN + tcp_len;
    let ip = Ipv4Repr {
        payload_len: tcp_len,
        ..*ip
    };
    let caps = checksum_caps(compute_tx);
    let (ip_buf, tcp_buf) = buf[..total].split_at_mut(ipv4::HEADER_LEN);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), &caps);
    let mut seg = TcpPacket::new_unchecked(tcp_buf);
    tcp.emit_header(&mut seg);
    if payload_len > 0 {
        fill(seg.payload_mut());
    }
    if compute_tx {
        seg.fill_checksum(ip.src_addr, ip.dst_addr);
    }
    total
}

fn checksum_caps(compute_tx: bool) -> super::ChecksumCaps {
    super::ChecksumCaps {
        verify_rx: true,
        compute_tx,
    }
}

/// No option but timestamps: words from the values, one accumulator per checksum.
#[inline(always)]
fn emit_fast(
    ip: &Ipv4Repr,
    tcp: &TcpRepr,
    payload_len: usize,
    buf: &mut [u8],
    compute_tx: bool,
    fill: impl FnOnce(&mut [u8]),
) -> usize {
    let ts = tcp.options.timestamp;
    let tcp_header_len = tcp::HEADER_LEN + if ts.is_some() { 12 } else { 0 };
    let headers = ipv4::HEADER_LEN + tcp_header_len;
    let total = headers + payload_len;
    let (hdr, payload) = buf[..total].split_at_mut(headers);
    if payload_len > 0 {
        fill(payload);
    }
    let tcp_len = (tcp_header_len + payload_len) as u32;
    let src = u32::from(ip.src_addr);
    let dst = u32::from(ip.dst_addr);
    // big-endian 32-bit words of the headers, checksum fields zero
    let ip0 = 0x4500_0000 | (u32::from(ip.dscp_ecn) << 16) | (total as u32 & 0xffff);
    let ip1 = (u32::from(ip.ident) << 16) | DF;
    let ip2 = (u32::from(ip.ttl) << 24) | (u32::from(u8::from(ip.protocol)) << 16);
    let ports = (u32::from(tcp.src_port) << 16) | u32::from(tcp.dst_port);
    let off_flags = ((tcp_header_len as u32 / 4) << 12) | u32::from(tcp.flags.0);
    let off_win = (off_flags << 16) | u32::from(tcp.window);
    let urgent = u32::from(tcp.urgent);
    let (ts_val, ts_ecr) = ts.unwrap_or((0, 0));
    let (ip_sum, tcp_sum) = if compute_tx {
        // A 32-bit word is congruent mod 0xffff to the sum of its halves, so whole words go
        // into the accumulators; the TCP one works in native byte order, as the payload's sum
        // does (the sum commutes with byte swapping, RFC 1071 2(B)), and is swapped once.
        let ip_acc = [ip0, ip1, ip2, src, dst]
            .iter()
            .map(|&w| u64::from(w))
            .sum();
        let mut acc = checksum::partial_ne(payload);
        let mut words = [
            src, dst, 6, tcp_len, ports, tcp.seq.0, tcp.ack.0, off_win, urgent,
        ]
        .iter()
        .map(|&w| u64::from(w.to_be()))
        .sum::<u64>();
        if ts.is_some() {
            words += u64::from(NOP_NOP_TS.to_be())
                + u64::from(ts_val.to_be())
                + u64::from(ts_ecr.to_be());
        }
        acc += words;
        (!checksum::fold(ip_acc), !u16::from_be(checksum::fold(acc)))
    } else {
        (0, 0)
    };
    let (fixed, opts) = hdr.split_at_mut(ipv4::HEADER_LEN + tcp::HEADER_LEN);
    put_words(
        fixed,
        [
            ip0,
            ip1,
            ip2 | u32::from(ip_sum),
            src,
            dst,
            ports,
            tcp.seq.0,
            tcp.ack.0,
            off_win,
            (u32::from(tcp_sum) << 16) | urgent,
        ],
    );
    if ts.is_some() {
        put_words(opts, [NOP_NOP_TS, ts_val, ts_ecr]);
    }
    total
}

/// Writes `N` big-endian words at the start of `out`, which is at least `4 N` bytes long.
#[inline(always)]
fn put_words<const N: usize>(out: &mut [u8], words: [u32; N]) {
    if let Some(out) = out.get_mut(..4 * N) {
        for (o, w) in out.chunks_exact_mut(4).zip(words) {
            o.copy_from_slice(&w.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{IpProtocol, Ipv4Addr, SeqNumber, TcpFlags, MAX_SACK_BLOCKS};
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_case(rng: &mut ChaCha8Rng) -> (Ipv4Repr, TcpRepr<'static>, Vec<u8>) {
        let mut ip = Ipv4Repr::new(
            Ipv4Addr::from(rng.gen::<u32>()),
            Ipv4Addr::from(rng.gen::<u32>()),
            IpProtocol::Tcp,
            0,
        );
        ip.ttl = rng.gen();
        if rng.gen_bool(0.1) {
            ip.dscp_ecn = rng.gen();
            ip.ident = rng.gen();
        }
        let mut options = TcpOptions::default();
        if rng.gen_bool(0.8) {
            // edge values too: all ones sum to negative zero
            options.timestamp = Some(match rng.gen_range(0..4) {
                0 => (0, 0),
                1 => (u32::MAX, u32::MAX),
                _ => (rng.gen(), rng.gen()),
            });
        }
        if rng.gen_bool(0.2) {
            // anything else takes the general path, which must agree with itself
            options.mss = rng.gen_bool(0.3).then(|| rng.gen());
            options.window_scale = rng.gen_bool(0.3).then(|| rng.gen_range(0..15));
            options.sack_permitted = rng.gen_bool(0.3);
            let n = rng.gen_range(0..=MAX_SACK_BLOCKS);
            for b in &mut options.sack_blocks[..n] {
                *b = (SeqNumber(rng.gen()), SeqNumber(rng.gen()));
            }
            options.sack_len = n as u8;
        }
        let tcp = TcpRepr {
            src_port: rng.gen_range(1..=u16::MAX),
            dst_port: rng.gen_range(1..=u16::MAX),
            seq: SeqNumber(rng.gen()),
            ack: SeqNumber(rng.gen()),
            flags: TcpFlags(rng.gen()),
            window: rng.gen(),
            urgent: if rng.gen_bool(0.1) { rng.gen() } else { 0 },
            options,
            payload: &[],
        };
        let len = match rng.gen_range(0..4) {
            0 => 0,
            1 => rng.gen_range(1..8),
            2 => rng.gen_range(0..200),
            _ => rng.gen_range(0..1460),
        };
        let mut payload = vec![0u8; len];
        match rng.gen_range(0..3) {
            0 => payload.fill(0xff),
            1 => payload.fill(0),
            _ => rng.fill_bytes(&mut payload),
        }
        (ip, tcp, payload)
    }

    /// The reference: the header views, then the whole segment summed from the buffer.
    fn reference(ip: &Ipv4Repr, tcp: &TcpRepr, payload: &[u8], compute_tx: bool) -> Vec<u8> {
        let tcp = TcpRepr { payload, ..*tcp };
        let ip = Ipv4Repr {
            payload_len: tcp.buffer_len(),
            ..*ip
        };
        let mut buf = vec![0x5au8; ip.buffer_len()];
        let caps = checksum_caps(compute_tx);
        let (ip_buf, tcp_buf) = buf.split_at_mut(ipv4::HEADER_LEN);
        ip.emit(&mut Ipv4Packet::new_unchecked(ip_buf), &caps);
        tcp.emit(
            &mut TcpPacket::new_unchecked(tcp_buf),
            ip.src_addr,
            ip.dst_addr,
            &caps,
        );
        buf
    }

    #[test]
    fn one_pass_writes_what_the_views_write() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5e9);
        let mut fast = 0;
        for i in 0..20_000 {
            let (ip, tcp, payload) = random_case(&mut rng);
            let compute_tx = i % 10 != 0;
            let want = reference(&ip, &tcp, &payload, compute_tx);
            let mut buf = vec![0xa5u8; 1600];
            let n = emit_ipv4_tcp(&ip, &tcp, payload.len(), &mut buf, compute_tx, |d| {
                d.copy_from_slice(&payload)
            });
            assert_eq!(&buf[..n], &want[..], "case {i}: {ip:?} {tcp:?}");
            assert!(
                buf[n..].iter().all(|&b| b == 0xa5),
                "case {i}: wrote past the end"
            );
            if timestamps_only(&tcp.options) {
                fast += 1;
                // and the general path on the same case
                let mut buf = vec![0xa5u8; 1600];
                let n = emit_general(&ip, &tcp, payload.len(), &mut buf, compute_tx, |d| {
                    d.copy_from_slice(&payload)
                });
                assert_eq!(&buf[..n], &want[..], "case {i}: general path");
            }
        }
        assert!(fast > 10_000, "{fast} cases took the one-pass path");
    }
}
