//! Replies to segments of no connection (resets, cookie SYN-ACKs): a bounded queue, sent after
//! the connections' own output but never starved by it.

use super::*;

/// Connection segments that go ahead of a waiting stray reply at most: a connection with a
/// window of data to send does not hold back resets and cookie SYN-ACKs for ever.
pub(super) const STRAY_AFTER: u32 = 8;

impl Host {
    /// Queues a reply to a segment of no connection, unless [`STRAY_LIMIT`] are waiting.
    pub(super) fn push_stray(&mut self, dst: Ipv4Addr, repr: TcpRepr<'static>) {
        if self.strays.len() >= STRAY_LIMIT {
            self.stats.strays_dropped += 1;
            return;
        }
        self.strays.push_back((dst, repr));
    }

    /// Whether a stray has waited behind [`STRAY_AFTER`] connection segments.
    pub(super) fn stray_due(&self) -> bool {
        self.ahead_of_strays >= STRAY_AFTER && !self.strays.is_empty()
    }

    /// Writes the oldest stray reply into `buf`, if any.
    pub(super) fn poll_stray(&mut self, buf: &mut [u8]) -> Option<Tx> {
        self.ahead_of_strays = 0;
        let (dst, repr) = self.strays.pop_front()?;
        let t = Transmit {
            src: SocketAddrV4::new(self.cfg.addr, repr.src_port),
            dst: SocketAddrV4::new(dst, repr.dst_port),
            repr,
            payload_len: 0,
        };
        self.stats.tx_packets += 1;
        let len = emit_segment(&self.cfg, &t, None, buf);
        Some(Tx { len, dst })
    }
}
