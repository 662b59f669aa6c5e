//! Writing a segment into an outgoing frame.

use super::HostConfig;
use crate::tcp::{Connection, Transmit};
use crate::wire::segment::emit_ipv4_tcp;
use crate::wire::{IpProtocol, Ipv4Repr};

/// Writes the IPv4 packet of `t` at the start of `buf` in one step (headers, payload from the
/// connection's send buffer, checksums); returns its length.
pub(super) fn emit_segment(
    cfg: &HostConfig,
    t: &Transmit,
    conn: Option<&Connection>,
    buf: &mut [u8],
) -> usize {
    let mut ip = Ipv4Repr::new(*t.src.ip(), *t.dst.ip(), IpProtocol::Tcp, 0);
    ip.ttl = match conn.map_or(0, Connection::ttl) {
        0 => cfg.ttl,
        ttl => ttl,
    };
    let fill = |payload: &mut [u8]| {
        debug_assert!(conn.is_some(), "a payload needs its connection");
        if let Some(c) = conn {
            c.write_payload(t, payload);
        }
    };
    emit_ipv4_tcp(
        &ip,
        &t.repr,
        t.payload_len,
        buf,
        cfg.checksum.compute_tx,
        fill,
    )
}
