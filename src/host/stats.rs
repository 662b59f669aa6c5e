//! Host counters: packets in and out, connections opened and freed, and every dropped packet
//! under exactly one [`DropReason`].
//!
//! Each received packet the host drops adds one to one reason's counter, so
//! [`HostStats::dropped_total`] plus the packets delivered is the packets received. The counters
//! are a flat array indexed by [`DropReason::index`]: counting a drop is one add, no hashing.

use crate::tcp;
use crate::wire;

/// Why a received packet was dropped. Every drop is counted under one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Ipv4(wire::Error),
    Tcp(wire::Error),
    NotOurAddress,
    UnhandledProtocol,
    /// A SYN to a listener whose backlog is full.
    BacklogFull,
    /// A SYN (or cookie ACK) refused because the host holds as many connections or as much
    /// memory as its [`Limits`](super::Limits) allow.
    OverLimit,
    /// A segment for no connection: answered by RST unless it was one or, sent to a listening
    /// port, carried no ACK.
    NoConnection,
    /// An ICMP message we do not act on, or an error about no connection of ours.
    IcmpIgnored,
    /// ICMP that does not parse.
    Icmp(wire::Error),
    /// A source no host may send from (RFC 1122 3.2.1.3, 4.2.3.10): unspecified (0/8),
    /// loopback, multicast, limited broadcast, or our own address; answering it could reach
    /// many hosts or none.
    BadSource,
    /// A multicast or broadcast destination: TCP is unicast (RFC 1122 4.2.3.10).
    BadDestination,
}

impl DropReason {
    const WIRE_ERRORS: [wire::Error; 9] = [
        wire::Error::Truncated,
        wire::Error::BadLength,
        wire::Error::BadOffset,
        wire::Error::BadChecksum,
        wire::Error::BadVersion,
        wire::Error::BadOption,
        wire::Error::Fragmented,
        wire::Error::Unsupported,
        wire::Error::Malformed,
    ];
    pub const COUNT: usize = 3 * Self::WIRE_ERRORS.len() + 8;

    pub fn index(self) -> usize {
        let w = |e: wire::Error| Self::WIRE_ERRORS.iter().position(|x| *x == e).unwrap_or(0);
        let n = Self::WIRE_ERRORS.len();
        match self {
            DropReason::Ipv4(e) => w(e),
            DropReason::Tcp(e) => n + w(e),
            DropReason::NotOurAddress => 2 * n,
            DropReason::UnhandledProtocol => 2 * n + 1,
            DropReason::BacklogFull => 2 * n + 2,
            DropReason::NoConnection => 2 * n + 3,
            DropReason::IcmpIgnored => 2 * n + 4,
            DropReason::Icmp(e) => 2 * n + 5 + w(e),
            DropReason::BadSource => 3 * n + 5,
            DropReason::BadDestination => 3 * n + 6,
            DropReason::OverLimit => 3 * n + 7,
        }
    }

    pub fn all() -> impl Iterator<Item = DropReason> {
        let wires = Self::WIRE_ERRORS;
        wires
            .into_iter()
            .map(DropReason::Ipv4)
            .chain(wires.into_iter().map(DropReason::Tcp))
            .chain([
                DropReason::NotOurAddress,
                DropReason::UnhandledProtocol,
                DropReason::BacklogFull,
                DropReason::NoConnection,
                DropReason::IcmpIgnored,
            ])
            .chain(wires.into_iter().map(DropReason::Icmp))
            .chain([
                DropReason::BadSource,
                DropReason::BadDestination,
                DropReason::OverLimit,
            ])
    }
}

#[derive(Debug, Clone, Default)]
pub struct HostStats {
    pub rx_packets: u64,
    pub rx_segments: u64,
    /// In-order payload bytes lent in place to the application
    /// ([`Host::handle_ipv4_lending`](super::Host::handle_ipv4_lending)), never copied into a
    /// receive buffer unless it left them (next counter).
    pub rx_bytes_lent: u64,
    /// Lent bytes the application left unread: copied into the receive buffer after all.
    pub rx_bytes_lent_kept: u64,
    pub tx_packets: u64,
    pub rst_sent_no_conn: u64,
    pub conns_opened: u64,
    pub conns_accepted: u64,
    /// SYNs a listener took: LISTEN to SYN-RECEIVED (RFC 1213's `tcpPassiveOpens`).
    pub passive_opens: u64,
    pub conns_freed: u64,
    pub icmp_errors: u64,
    /// ICMP "fragmentation needed" reports that lowered the path MTU to a destination.
    pub pmtu_reductions: u64,
    pub timers_fired: u64,
    /// Connections in TIME-WAIT ended early by a newer SYN for the same 4-tuple.
    pub time_wait_reused: u64,
    /// SYN cookies sent, because a listener's SYN queue was full (Linux's `SyncookiesSent`).
    pub syncookies_sent: u64,
    /// ACKs that carried a valid cookie and made a connection (`SyncookiesRecv`).
    pub syncookies_recv: u64,
    /// ACKs checked as cookies that failed, answered by RST (`SyncookiesFailed`).
    pub syncookies_failed: u64,
    /// SYNs (or cookie ACKs) dropped because a listener's accept queue was full
    /// (`ListenOverflows`).
    pub listen_overflows: u64,
    /// SYNs and cookie ACKs a listener dropped for any reason, overflows included
    /// (`ListenDrops`).
    pub listen_drops: u64,
    /// Replies to segments of no connection (RSTs, SYN cookies) not sent because
    /// [`STRAY_LIMIT`](super::STRAY_LIMIT) were already waiting.
    pub strays_dropped: u64,
    /// New connections refused at [`Limits::max_conns`](super::Limits::max_conns).
    pub conn_limit_refusals: u64,
    /// New connections refused under memory pressure (Linux's `TCPMemoryPressures` counts the
    /// episodes; this counts the refusals).
    pub mem_pressure_refusals: u64,
    /// Out-of-order bytes dropped under memory pressure (as Linux's `OfoPruned` counts events).
    pub ooo_pruned_bytes: u64,
    /// Receive windows stopped at the bytes held under memory pressure.
    pub windows_clamped: u64,
    /// Send buffers stopped at the bytes they hold under memory pressure (the application can
    /// queue nothing more on them until it ends).
    pub send_buffers_clamped: u64,
    /// TIME-WAITs ended early because [`Limits::max_time_wait`](super::Limits::max_time_wait)
    /// were held (Linux's `TCPTimeWaitOverflow`).
    pub time_wait_recycled: u64,
    /// Connections reset on close because [`Limits::max_orphans`](super::Limits::max_orphans)
    /// were held (Linux's `TCPAbortOnMemory`, "too many orphaned sockets").
    pub orphans_reset: u64,
    /// Totals of freed connections' counters, as the kernel's `TcpRetransSegs` and friends.
    pub closed_conns: tcp::ConnStats,
    drops: DropCounters,
}

/// One counter per [`DropReason`] (more than `Default` covers for a plain array).
#[derive(Debug, Clone)]
struct DropCounters([u64; DropReason::COUNT]);

impl Default for DropCounters {
    fn default() -> Self {
        DropCounters([0; DropReason::COUNT])
    }
}

impl HostStats {
    pub(super) fn count_drop(&mut self, reason: DropReason) {
        self.drops.0[reason.index()] += 1;
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.0[reason.index()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.drops.0.iter().sum()
    }

    /// Every non-zero drop counter.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::all()
            .map(|r| (r, self.dropped(r)))
            .filter(|(_, n)| *n > 0)
    }
}
