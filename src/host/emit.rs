//! Writing a segment into an outgoing frame.

use super::HostConfig;
use crate::tcp::{Connection, Transmit};
use crate::wire::{ipv4, IpProtocol, Ipv4Packet, Ipv4Repr};

/// Builds the IPv4 header and writes the TCP segment after it in one step (header, payload
/// from the connection's send buffer, checksum).
pub(super) fn emit_segment(
    cfg: &HostConfig,
    t: &Transmit,
    conn: Option<&Connection>,
    buf: &mut [u8],
) -> usize {
    let tcp_len = t.segment_len();
    let total = ipv4::HEADER_LEN + tcp_len;
    let mut ip = Ipv4Repr::new(*t.src.ip(), *t.dst.ip(), IpProtocol::Tcp, tcp_len);
    ip.ttl = match conn.map_or(0, Connection::ttl) {
        0 => cfg.ttl,
        ttl => ttl,
    };
    let (ip_buf, tcp_buf) = buf[..total].split_at_mut(ipv4::HEADER_LEN);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_buf), &cfg.checksum);
    t.write_segment(conn, tcp_buf, cfg.checksum.compute_tx);
    total
}
