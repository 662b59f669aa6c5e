//! The sans-IO TCP connection (RFC 9293) and what it needs: buffers, reassembly, RTT estimation,
//! congestion control, initial sequence numbers.
//!
//! A [`Connection`] never reads a clock and never does I/O. Feed it segments with
//! [`Connection::handle_segment`] and expired deadlines with [`Connection::handle_timeout`]; take
//! segments out with [`Connection::poll_transmit`] (then [`Connection::write_payload`] to copy the
//! payload straight into the outgoing frame), application events with
//! [`Connection::poll_event`], and the next deadline with [`Connection::poll_timeout`].

pub mod congestion;
mod conn;
pub mod isn;
pub mod reassembly;
pub mod recv;
pub mod rtt;
pub mod scoreboard;
pub mod send;
mod state;

pub use congestion::Algorithm;
pub use conn::{reset_for, ConnStats, Connection, TcpInfo, TimerKind, Transmit};
pub use state::State;

use crate::time::Duration;

/// Per-connection settings. Defaults follow Linux where the RFCs leave a choice.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// MSS we advertise: the largest payload we accept in one segment (MTU 1500 - 40).
    pub mss: u16,
    pub send_buffer: usize,
    pub recv_buffer: usize,
    /// Offer window scaling (RFC 7323).
    pub window_scale: bool,
    /// Offer SACK-permitted (RFC 2018).
    pub sack: bool,
    /// Offer timestamps (RFC 7323).
    pub timestamps: bool,
    /// Disable Nagle's algorithm.
    pub nodelay: bool,
    /// Delay for a lone ACK; `None` acknowledges every segment at once.
    pub delayed_ack: Option<Duration>,
    /// TIME-WAIT lasts twice this.
    pub msl: Duration,
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
    /// Initial congestion window in segments (RFC 6928).
    pub initial_window: usize,
    /// Most disjoint out-of-order ranges held at once.
    pub max_ooo_ranges: usize,
    /// Key for initial sequence numbers (RFC 6528); random in production, fixed in tests.
    pub isn_secret: u64,
    pub congestion: congestion::Algorithm,
    /// Keep-alive probing; off by default as in Linux.
    pub keepalive: Option<KeepAlive>,
}

/// Keep-alive parameters (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT). An idle connection is
/// probed after `idle`, then every `interval`; after `count` unanswered probes it is closed with
/// [`Error::TimedOut`].
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
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            window_scale: true,
            sack: true,
            timestamps: true,
            nodelay: false,
            delayed_ack: Some(Duration::from_millis(40)),
            msl: Duration::from_secs(30),
            fin_timeout: Some(Duration::from_secs(60)),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            syn_retries: 6,
            max_retries: 64,
            retrans_timeout: linux_retries2_timeout(),
            initial_window: 10,
            max_ooo_ranges: 64,
            isn_secret: 0x5eed,
            congestion: congestion::Algorithm::Cubic,
            keepalive: None,
        }
    }
}

/// What the application learns from a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// New bytes can be read.
    Readable,
    /// Send-buffer space was freed.
    Writable,
    /// The peer sent FIN: reads return end of stream once the buffer is drained.
    PeerClosed,
    /// The connection failed; the error is also kept for [`Connection::take_error`].
    Error(Error),
    /// The connection reached CLOSED; its resources can be released.
    Closed,
}

/// Connection errors, as users know them from sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Nothing to read or no buffer space yet (EAGAIN).
    WouldBlock,
    /// Not connected yet, or already closed (ENOTCONN).
    NotConnected,
    /// Writing after our shutdown of writing (EPIPE).
    BrokenPipe,
    /// The peer reset the connection (ECONNRESET).
    Reset,
    /// The peer answered our SYN with RST (ECONNREFUSED).
    Refused,
    /// Retransmissions or keep-alive probes went unanswered (ETIMEDOUT).
    TimedOut,
    /// An ICMP error reported the peer unreachable (EHOSTUNREACH).
    HostUnreachable,
    /// The application aborted the connection (ECONNABORTED).
    Aborted,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = match self {
            Error::WouldBlock => "operation would block",
            Error::NotConnected => "not connected",
            Error::BrokenPipe => "broken pipe",
            Error::Reset => "connection reset",
            Error::Refused => "connection refused",
            Error::TimedOut => "timed out",
            Error::HostUnreachable => "host unreachable",
            Error::Aborted => "connection aborted",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}

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
