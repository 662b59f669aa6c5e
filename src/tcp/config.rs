//! Per-connection settings ([`Config`]) and keep-alive parameters ([`KeepAlive`]).
//!
//! Defaults follow Linux where the RFCs leave a choice. A connection copies its `Config` when it
//! is created; the few settings an application may change later (Nagle, buffer sizes,
//! keep-alive, cork) have setters on [`Connection`](super::Connection).

use super::congestion;
use super::secret::Secret;
use crate::time::Duration;

/// Per-connection settings. Defaults follow Linux where the RFCs leave a choice.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The interface's MTU less 40 (the IPv4 and TCP headers without options): the largest
    /// payload a segment may carry on our link, 1460 for an MTU of 1500. We advertise it
    /// (clamped by `mss_clamp`) and never send an IPv4 packet longer than `mss + 40`. The host
    /// sets it from the interface MTU ([`HostConfig::set_mtu`](crate::host::HostConfig::set_mtu)).
    pub mss: u16,
    /// A limit on the MSS both advertised and used (TCP_MAXSEG); `None`: the path decides.
    pub mss_clamp: Option<u16>,
    /// Black-hole detection (RFC 4821, as Linux's `tcp_mtu_probing` = 1): when timeouts go on
    /// for as long as three would take (Linux's `tcp_retries1`) while full-sized segments wait,
    /// the MSS falls to `base_mss`, then halves on each further timeout down to 48 bytes.
    pub mtu_probing: bool,
    /// The MSS black-hole detection falls back to first (Linux's `tcp_base_mss`, 1024).
    pub base_mss: u16,
    /// How long a lowered path MTU (from ICMP, RFC 1191) or black-hole fallback holds before the
    /// interface's MTU is tried again (Linux's `mtu_expires`, 10 minutes).
    pub pmtu_expires: Duration,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    /// Receive-buffer auto-tuning (Linux's `tcp_moderate_rcvbuf`): `Some(max)` lets the buffer
    /// start at `recv_buffer` and grow up to `max` while the application reads more than half
    /// of it per round trip, so that the window follows the path's bandwidth-delay product
    /// instead of capping it (256 KiB at 10 ms is 200 Mbit/s). The window shift offered covers
    /// `max`. Setting a connection's buffer size by hand stops the growth for that connection
    /// (as `SO_RCVBUF` does on Linux); memory pressure clamping the buffer pauses it until the
    /// clamp is lifted (as on Linux). `None`: a fixed buffer.
    /// Default: 6 MiB, Linux's `tcp_rmem[2]` (window shift 7, as Linux offers).
    pub recv_buffer_max: Option<usize>,
    /// Offer window scaling (RFC 7323).
    pub window_scale: bool,
    /// The window scale shift we offer when `window_scale` is on; `None` offers the smallest
    /// that covers `recv_buffer`. Linux offers the shift that covers its largest possible buffer
    /// (`tcp_rmem[2]`, usually 7) whatever a connection's buffer, so a small buffer behind a
    /// large shift (windows in steps of 2^shift bytes) is common on real paths. At most 14.
    pub window_shift: Option<u8>,
    /// Offer SACK-permitted (RFC 2018).
    pub sack: bool,
    /// Offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Disable Nagle's algorithm.
    pub nodelay: bool,
    /// Delay for a lone ACK; `None` acknowledges every segment at once.
    pub delayed_ack: Option<Duration>,
    /// Quick-ACK mode, as Linux: at the start of a connection and after the receiver was idle
    /// longer than an RTO, the next min(window / (2 receive MSS), 16) (at least 2) segments are
    /// acknowledged at once, so delayed ACKs do not hold back the sender's slow start. `false`
    /// delays ACKs from the first segment on.
    pub quick_ack: bool,
    /// TIME-WAIT lasts twice this.
    pub msl: Duration,
    /// Ignore an RST in TIME-WAIT instead of closing early (RFC 1337's remedy for TIME-WAIT
    /// assassination: an old duplicate RST ending TIME-WAIT lets old segments into a new
    /// incarnation). As Linux's `tcp_rfc1337 = 1`; Linux's own default is 0.
    pub rfc1337: bool,
    /// How long a connection the application has closed may wait in FIN-WAIT-2 for the peer's
    /// FIN before it is dropped silently (Linux's `tcp_fin_timeout`, 60 s); `None` waits for
    /// ever. Connections only shut down for writing are not limited.
    pub fin_timeout: Option<Duration>,
    pub rto_initial: Duration,
    pub rto_min: Duration,
    pub rto_max: Duration,
    /// SYN (or SYN-ACK) retransmissions before giving up.
    pub syn_retries: u32,
    /// Consecutive retransmission timeouts before giving up with a timed-out error.
    pub max_retries: u32,
    /// Time from the first of a series of retransmission timeouts after which the connection
    /// gives up with a timed-out error. The default is what Linux's `tcp_retries2` = 15 amounts
    /// to: 15 RTOs doubling from 200 ms, capped at 120 s (924.6 s).
    pub retrans_timeout: Duration,
    /// Zero-window probes a connection the application has closed
    /// ([`Connection::orphan`](super::Connection::orphan)) has answered with the window still
    /// shut before it gives up with a timed-out error: nobody waits for its data. As Linux's
    /// `tcp_orphan_retries` (whose default 0 means 8). Other connections probe as long as the
    /// peer answers; unanswered probes time out as any retransmission does.
    pub orphan_retries: u32,
    /// Initial congestion window in segments (RFC 6928).
    pub initial_window: usize,
    /// Most disjoint out-of-order ranges held at once.
    pub max_ooo_ranges: usize,
    /// The 128-bit key behind initial sequence numbers (RFC 6528), timestamp offsets
    /// (RFC 7323 5.4) and SYN cookies, each under its own derived key. `Default` draws a fresh
    /// one from the OS ([`Secret::random`]); tests that must replay exactly set
    /// [`Secret::from_seed`]. A host keeps the one it started with for all its connections.
    pub secret: Secret,
    /// How often the ISN and SYN-cookie keys change (a one-way ratchet from `secret`; zero:
    /// never). Live connections are not affected; a cookie stays valid across one change.
    pub secret_rekey: Duration,
    /// Answer SYNs with SYN cookies (RFC 4987 3.6) once a listener's SYN queue is full, instead
    /// of dropping them (as Linux's `tcp_syncookies` = 1).
    pub syncookies: bool,
    /// SYN-ACK retransmissions a new embryo gets while its listener's SYN queue is at least half
    /// full (Linux lowers its `tcp_synack_retries` threshold down to 2 under the same pressure),
    /// so spoofed SYNs free their slots sooner.
    pub synack_retries_under_pressure: u32,
    pub congestion: congestion::Algorithm,
    /// Keep-alive probing; off by default as in Linux.
    pub keepalive: Option<KeepAlive>,
    /// The IPv4 time-to-live of this connection's packets (`IP_TTL`); 0 for the host's.
    pub ttl: u8,
}

/// Keep-alive parameters (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). An idle connection is
/// probed after `idle`, then every `interval`; after `count` unanswered probes it is closed with
/// [`Error::TimedOut`](super::Error::TimedOut).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Default for KeepAlive {
    /// Linux's defaults: 7200 s, 75 s, 9 probes.
    fn default() -> Self {
        KeepAlive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            count: 9,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mss: 1460,
            mss_clamp: None,
            mtu_probing: true,
            base_mss: 1024,
            pmtu_expires: Duration::from_secs(600),
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            recv_buffer_max: Some(6 << 20),
            window_scale: true,
            window_shift: None,
            sack: true,
            timestamps: true,
            nodelay: false,
            delayed_ack: Some(Duration::from_millis(40)),
            quick_ack: true,
            msl: Duration::from_secs(30),
            rfc1337: true,
            fin_timeout: Some(Duration::from_secs(60)),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            syn_retries: 6,
            max_retries: 64,
            retrans_timeout: linux_retries2_timeout(),
            orphan_retries: 8,
            initial_window: 10,
            max_ooo_ranges: 64,
            secret: Secret::random(),
            secret_rekey: Duration::from_secs(3600),
            syncookies: true,
            synack_retries_under_pressure: 2,
            congestion: congestion::Algorithm::Cubic,
            keepalive: None,
            ttl: 0,
        }
    }
}

impl Config {
    /// The MSS our SYN advertises: the interface's, clamped by `mss_clamp`.
    pub fn advertised_mss(&self) -> u16 {
        self.mss_clamp.map_or(self.mss, |c| c.min(self.mss))
    }
}

/// The give-up time Linux derives from `tcp_retries2` = 15 (`retransmits_timed_out`): the sum of
/// 16 timeouts doubling from 200 ms and capped at 120 s.
const fn linux_retries2_timeout() -> Duration {
    let mut total_ms = 0;
    let mut rto_ms = 200;
    let mut i = 0;
    while i <= 15 {
        total_ms += rto_ms;
        rto_ms = if rto_ms * 2 > 120_000 {
            120_000
        } else {
            rto_ms * 2
        };
        i += 1;
    }
    Duration::from_millis(total_ms)
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries2_default_is_linux_924_6_seconds() {
        assert_eq!(
            super::linux_retries2_timeout(),
            super::Duration::from_millis(924_600)
        );
    }
}
