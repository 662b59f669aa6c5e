//! Memory hints for the host's big arrays (slots, flow table).
//!
//! A host with a million connections reads its slot array and flow table at random: every
//! segment's look-up and connection are cache (and TLB) misses. Loading a word of a line early,
//! for a whole batch of frames before any is handled, lets those misses overlap (an out-of-order
//! core does not wait for a load whose value nothing uses yet) instead of following one another.
//!
//! A plain load, not the `prefetch` instruction: the intrinsic is `unsafe` (for its
//! `target_feature`), and this crate keeps unsafe code to the memory it shares with the kernel.

/// Fewest connections for which a received segment's slot and connection are hinted before
/// they are read ([`Host::handle_segment`](super::Host::handle_segment)): below it, their lines
/// mostly stay in cache between segments (256 connections of 1-2 KiB each fit in an L2),
/// and the hints would only cost (~25 instructions a segment, callgrind).
pub(super) const SLOT_HINTS_ABOVE: usize = 256;

/// Loads `v` (a field of the line to bring in) without using it.
#[inline]
pub(super) fn touch<T: Copy>(v: T) {
    std::hint::black_box(v);
}

/// Starts loading the lines of `conn` a received segment reads: one field of each part of it
/// (send and receive sequence space, congestion control, RTT estimator, keep-alive, options,
/// error), each a getter that returns a copy. Without the layout (the compiler orders the
/// fields) this is a sample, not every line; lines next to a touched one come with it (the
/// adjacent-line prefetcher).
#[inline]
pub(super) fn touch_conn(conn: &crate::tcp::Connection) {
    touch(conn.state());
    touch(conn.snd_una());
    touch(conn.snd_nxt());
    touch(conn.rcv_nxt());
    touch(conn.rcv_wnd());
    touch(conn.cwnd());
    touch(conn.ssthresh());
    touch(conn.rto());
    touch(conn.send_queue());
    touch(conn.recv_queue());
    touch(conn.mss());
    touch(conn.keepalive());
    touch(conn.error());
    touch(conn.ttl());
}

impl super::Host {
    /// Starts loading, without waiting, what [`Host::handle_ipv4`](super::Host::handle_ipv4) will touch for `packet`: the
    /// flow-table line of its 4-tuple and, when that line is at hand, its connection's slot.
    /// Changes nothing; a packet that does not parse is ignored.
    ///
    /// With many connections their state is not in cache, and a segment's look-up and
    /// connection cost a memory latency or two each (plus TLB walks). A caller holding a batch
    /// of received frames calls this for every frame, then `handle_ipv4` for each: the misses of
    /// the batch overlap instead of adding up. Calling it twice per frame (two passes over the
    /// batch) lets the first pass's flow-table lines arrive before the second reads them.
    #[inline]
    pub fn prefetch_ipv4(&self, packet: &[u8]) {
        let Some(key) = super::slots::flow_key_of(packet, self.cfg.addr) else {
            return;
        };
        self.table.prefetch(key);
    }

    /// The second pass of [`Host::prefetch_ipv4`](super::Host::prefetch_ipv4): looks the 4-tuple up (its line should be
    /// in cache by now) and starts loading the connection's slot.
    #[inline]
    pub fn prefetch_ipv4_conn(&self, packet: &[u8]) {
        let Some(key) = super::slots::flow_key_of(packet, self.cfg.addr) else {
            return;
        };
        if let Some(index) = self.table.get(key) {
            self.prefetch_slot(index);
        }
    }
}
