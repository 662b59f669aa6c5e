//! A connection's counters ([`ConnStats`]) and its snapshot in the spirit of Linux `tcp_info`
//! ([`TcpInfo`]).
//!
//! Counters only grow; the connection increments them where the event happens, and a host adds
//! the counters of every connection it frees into one total with [`ConnStats::add`].

use super::state::State;
use crate::time::Duration;

/// Declares the counter struct and an `add` that sums every field, so a new counter cannot be
/// forgotten in the totals.
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// Adds every counter of `o` to this one (to total closed connections).
            pub fn add(&mut self, o: &$name) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

counters! {
    /// Counters in the spirit of Linux `tcp_info`.
    pub struct ConnStats {
        segs_in,
        segs_out,
        bytes_in,
        bytes_out,
        bytes_acked,
        bytes_retrans,
        retrans_segs,
        rto_events,
        dupacks_in,
        ooo_segs_in,
        dup_segs_in,
        acks_out,
        /// ACKs sent at once in quick-ACK mode, where the delayed ACK would have waited.
        quick_acks,
        rst_in,
        rst_out,
        challenge_acks,
        /// Challenge ACKs not sent because one went out less than 500 ms before.
        challenge_acks_limited,
        zero_window_probes,
        /// Segments the override timer sent into a window smaller than the MSS, where
        /// silly-window avoidance held the data back (RFC 9293 3.8.6.2.1).
        small_window_sends,
        /// Window updates that moved the peer's right edge left of what we had sent.
        window_shrunk,
        /// Retransmissions by cause.
        retrans_rto,
        retrans_fast,
        retrans_tlp,
        fast_recoveries,
        /// Reductions taken back as spurious (timestamps or D-SACK): of an episode that saw a
        /// retransmission timeout, and of a fast recovery.
        undo_rto,
        undo_fast,
        tlp_probes,
        sack_blocks_in,
        sack_blocks_out,
        dsack_in,
        dsack_out,
        keepalive_probes,
        /// Connections reset because data arrived after the application closed them or shut
        /// them down for reading (Linux's `TCPAbortOnData`).
        abort_on_data,
        icmp_errors,
        /// Bytes copied from the application's slices into the send buffer
        /// ([`Connection::send`](crate::tcp::Connection::send); chunks queued with
        /// [`Connection::send_owned`](crate::tcp::Connection::send_owned) are not copied).
        send_buf_copied,
        /// Bytes copied from received segments into the receive buffer.
        recv_buf_copied,
        /// Times ICMP (or the host's cache) lowered the path MTU (RFC 1191).
        pmtu_reductions,
        /// Retransmissions of segments the path MTU had become too small for.
        retrans_mtu,
        /// Times black-hole detection lowered the MSS after repeated timeouts (RFC 4821).
        black_hole_fallbacks,
        /// Fast recoveries entered with SACK (Linux `TCPSackRecovery`; the others are
        /// `TCPRenoRecovery`).
        sack_recoveries,
        /// Segments dropped by the PAWS check (RFC 7323 5.3; Linux `PAWSEstab`).
        paws_drops,
        /// Opening handshakes that ended in CLOSED (from SYN-SENT or SYN-RECEIVED: RFC 1213's
        /// `tcpAttemptFails`).
        attempt_fails,
        /// ESTABLISHED or CLOSE-WAIT straight to CLOSED: a reset sent or received, or a timeout
        /// (RFC 1213's `tcpEstabResets`).
        estab_resets,
        /// Payload bytes that became readable in sequence (each byte once, duplicates and
        /// bytes still out of order excluded).
        bytes_received,
        /// Deliveries that showed reordering: a segment acknowledged after one sent later
        /// (RACK, RFC 8985 6.2).
        reorder_seen,
        /// Times receive-buffer auto-tuning grew the buffer
        /// ([`Config::recv_buffer_max`](crate::tcp::Config::recv_buffer_max)).
        recv_buffer_grown,
    }
}

/// Declares [`Counters`]: the counters nearly every connection moves, inline, and the rest in
/// a box the first of them to count allocates.
macro_rules! counters_split {
    ($($hot:ident,)*) => {
        /// A connection's counters as it keeps them: the few every connection moves (segments
        /// and bytes each way, ACKs, copies) inline, the rest (losses, resets, SACK, probes,
        /// ICMP, ...) in a [`ConnStats`] allocated when the first of them counts. An exchange
        /// without loss or anomaly never allocates it.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub $hot: u64,)*
            rare: Option<Box<ConnStats>>,
        }

        impl Counters {
            /// Every counter, in one [`ConnStats`].
            pub fn snapshot(&self) -> ConnStats {
                let mut s = self.rare.as_deref().copied().unwrap_or_default();
                $(s.$hot = self.$hot;)*
                s
            }

            /// Adds every counter to `total` (without building a snapshot).
            pub fn add_to(&self, total: &mut ConnStats) {
                if let Some(rare) = self.rare.as_deref() {
                    total.add(rare);
                }
                $(total.$hot += self.$hot;)*
            }
        }
    };
}

counters_split! {
    segs_in,
    segs_out,
    bytes_in,
    bytes_out,
    bytes_acked,
    acks_out,
    quick_acks,
    send_buf_copied,
    recv_buf_copied,
    bytes_received,
}

impl Counters {
    /// The counters outside the inline set (their fields named as in [`ConnStats`]; the inline
    /// ones in it are unused), allocated on first use.
    #[inline]
    pub fn rare(&mut self) -> &mut ConnStats {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Heap bytes held (the box of rare counters, once allocated).
    pub fn heap_bytes(&self) -> usize {
        self.rare
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<ConnStats>())
    }
}

/// A snapshot in the spirit of Linux `tcp_info` (`ss -ti`): what [`Connection::info`]
/// returns, and through it `TcpStream::info` and `Cx::info`.
///
/// [`Connection::info`]: crate::tcp::Connection::info
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub state: State,
    /// Payload bytes sent, retransmissions included (`tcpi_bytes_sent`).
    pub bytes_sent: u64,
    /// Payload bytes the peer acknowledged (`tcpi_bytes_acked`).
    pub bytes_acked: u64,
    /// Payload bytes received in sequence, each once (`tcpi_bytes_received`).
    pub bytes_received: u64,
    /// Segments retransmitted over the connection's life (`tcpi_total_retrans`).
    pub total_retrans: u64,
    /// Bytes written and not yet acknowledged (`ss` Send-Q).
    pub send_queue: usize,
    /// Bytes received and not yet read (`ss` Recv-Q).
    pub recv_queue: usize,
    /// Deliveries that showed reordering so far; 0 while the path has not reordered.
    pub reordering: u64,
    /// Bytes acknowledged per second over the latest interval of at least one smoothed round
    /// trip (`tcpi_delivery_rate`; application-limited intervals included). 0 before the
    /// first such interval.
    pub delivery_rate: u64,
    pub srtt: Option<Duration>,
    pub rttvar: Duration,
    pub rto: Duration,
    pub min_rtt: Option<Duration>,
    pub mss: usize,
    pub cwnd: usize,
    pub ssthresh: usize,
    pub snd_wnd: usize,
    pub rcv_wnd: usize,
    pub bytes_in_flight: usize,
    pub pipe: usize,
    pub sacked_bytes: usize,
    pub lost_bytes: usize,
    pub in_recovery: bool,
    pub backoff: u32,
    pub stats: ConnStats,
}

#[cfg(test)]
mod tests {
    use super::{ConnStats, Counters};

    #[test]
    fn counters_box_the_rare_ones_on_first_use() {
        let mut c = Counters::default();
        c.segs_in += 2;
        c.bytes_received += 64;
        assert_eq!(c.heap_bytes(), 0, "inline counters allocate nothing");
        c.rare().rst_in += 1;
        c.rare().dup_segs_in += 3;
        assert!(c.heap_bytes() > 0);
        assert_eq!(
            c.snapshot(),
            ConnStats {
                segs_in: 2,
                bytes_received: 64,
                rst_in: 1,
                dup_segs_in: 3,
                ..ConnStats::default()
            }
        );
    }

    #[test]
    fn add_sums_every_counter() {
        let one = ConnStats {
            segs_in: 1,
            challenge_acks_limited: 2,
            icmp_errors: 3,
            ..ConnStats::default()
        };
        let mut total = one;
        total.add(&one);
        total.add(&ConnStats::default());
        assert_eq!(
            total,
            ConnStats {
                segs_in: 2,
                challenge_acks_limited: 4,
                icmp_errors: 6,
                ..ConnStats::default()
            }
        );
    }
}
