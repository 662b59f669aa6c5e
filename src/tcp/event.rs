//! What a connection tells its application: [`Event`]s to poll and the [`Error`]s its calls
//! return, as users know them from sockets.

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
    /// The connection failed; the error is also kept for [`Connection::take_error`](super::Connection::take_error).
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
    /// An ICMP error reported the peer's network unreachable (ENETUNREACH).
    NetUnreachable,
    /// An ICMP error reported the peer's host unknown (EHOSTDOWN).
    HostDown,
    /// An ICMP error reported our host isolated (ENONET).
    NoNetwork,
    /// An ICMP error reported TCP unavailable at the peer (ENOPROTOOPT).
    ProtocolUnavailable,
    /// An ICMP error reported a source route failed (EOPNOTSUPP).
    SourceRouteFailed,
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
            Error::NetUnreachable => "network unreachable",
            Error::HostDown => "host is down",
            Error::NoNetwork => "machine is not on the network",
            Error::ProtocolUnavailable => "protocol not available",
            Error::SourceRouteFailed => "source route failed",
            Error::Aborted => "connection aborted",
        };
        f.write_str(s)
    }
}

impl std::error::Error for Error {}
