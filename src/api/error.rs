//! Connection errors as `std::io::Error`s, each with the `ErrorKind` and the raw errno a Linux
//! socket would give, so code written against `std::net` matches on them unchanged.
//!
//! | [`tcp::Error`] | errno | [`io::ErrorKind`] | when |
//! |---|---|---|---|
//! | `WouldBlock` | `EAGAIN` | `WouldBlock` | non-blocking and nothing to do; a read or write timeout |
//! | `NotConnected` | `ENOTCONN` | `NotConnected` | not connected yet, or the handle is gone |
//! | `BrokenPipe` | `EPIPE` | `BrokenPipe` | writing after our shutdown of writing, or after the connection died |
//! | `Reset` | `ECONNRESET` | `ConnectionReset` | the peer sent RST |
//! | `Refused` | `ECONNREFUSED` | `ConnectionRefused` | the peer answered our SYN with RST |
//! | `TimedOut` | `ETIMEDOUT` | `TimedOut` | retransmissions or keep-alive probes went unanswered |
//! | `HostUnreachable` | `EHOSTUNREACH` | `HostUnreachable` | an ICMP host unreachable, prohibited or time exceeded about the peer |
//! | `NetUnreachable` | `ENETUNREACH` | `NetworkUnreachable` | an ICMP network unreachable (or unknown, or prohibited) |
//! | `HostDown` | `EHOSTDOWN` | `Uncategorized` | an ICMP destination host unknown |
//! | `NoNetwork` | `ENONET` | `Uncategorized` | an ICMP source host isolated |
//! | `ProtocolUnavailable` | `ENOPROTOOPT` | `Uncategorized` | an ICMP protocol unreachable |
//! | `SourceRouteFailed` | `EOPNOTSUPP` | `Unsupported` | an ICMP source route failed |
//!
//! The ICMP errors are Linux's (`icmp_err_convert`). On an established connection they never
//! end it: [`take_error`](crate::api::Cx::take_error) reports the last one, and so does the
//! connection's failure if it later times out (instead of `ETIMEDOUT`), as Linux does.
//! | `Aborted` | `ECONNABORTED` | `ConnectionAborted` | the connection was aborted locally (stack shut down) |
//!
//! There are no signals in this stack: where Linux raises `SIGPIPE` (unless `MSG_NOSIGNAL`),
//! a write here only returns `EPIPE`.

use std::io;

use crate::tcp;

/// The errno Linux reports for `e`.
pub fn errno(e: tcp::Error) -> i32 {
    match e {
        tcp::Error::WouldBlock => libc::EAGAIN,
        tcp::Error::NotConnected => libc::ENOTCONN,
        tcp::Error::BrokenPipe => libc::EPIPE,
        tcp::Error::Reset => libc::ECONNRESET,
        tcp::Error::Refused => libc::ECONNREFUSED,
        tcp::Error::TimedOut => libc::ETIMEDOUT,
        tcp::Error::HostUnreachable => libc::EHOSTUNREACH,
        tcp::Error::NetUnreachable => libc::ENETUNREACH,
        tcp::Error::HostDown => libc::EHOSTDOWN,
        tcp::Error::NoNetwork => libc::ENONET,
        tcp::Error::ProtocolUnavailable => libc::ENOPROTOOPT,
        tcp::Error::SourceRouteFailed => libc::EOPNOTSUPP,
        tcp::Error::Aborted => libc::ECONNABORTED,
    }
}

/// `e` as an `io::Error` carrying both the errno and its `ErrorKind`.
///
/// ```
/// use std::io::ErrorKind;
/// use xdp_tcp::{api::error::to_io, tcp};
/// let e = to_io(tcp::Error::Reset);
/// assert_eq!(e.kind(), ErrorKind::ConnectionReset);
/// assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET));
/// ```
pub fn to_io(e: tcp::Error) -> io::Error {
    io::Error::from_raw_os_error(errno(e))
}

/// `EAGAIN`: what a non-blocking call with nothing to do, or a timed-out one, returns.
pub fn would_block() -> io::Error {
    to_io(tcp::Error::WouldBlock)
}

/// `ENOTCONN`.
pub fn not_connected() -> io::Error {
    to_io(tcp::Error::NotConnected)
}

/// `EPIPE`.
pub fn broken_pipe() -> io::Error {
    to_io(tcp::Error::BrokenPipe)
}

/// The error a connection reports, as Linux reports it: an RST that arrives after the peer's
/// FIN (we are in CLOSE-WAIT, the peer's socket is gone) is `EPIPE`, not `ECONNRESET`
/// (`tcp_reset` in Linux).
pub(crate) fn reported(e: tcp::Error, peer_closed: bool) -> tcp::Error {
    match e {
        tcp::Error::Reset if peer_closed => tcp::Error::BrokenPipe,
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_kind_and_errno() {
        use io::ErrorKind as K;
        let cases = [
            (tcp::Error::WouldBlock, K::WouldBlock, libc::EAGAIN),
            (tcp::Error::NotConnected, K::NotConnected, libc::ENOTCONN),
            (tcp::Error::BrokenPipe, K::BrokenPipe, libc::EPIPE),
            (tcp::Error::Reset, K::ConnectionReset, libc::ECONNRESET),
            (
                tcp::Error::Refused,
                K::ConnectionRefused,
                libc::ECONNREFUSED,
            ),
            (tcp::Error::TimedOut, K::TimedOut, libc::ETIMEDOUT),
            (
                tcp::Error::HostUnreachable,
                K::HostUnreachable,
                libc::EHOSTUNREACH,
            ),
            (
                tcp::Error::Aborted,
                K::ConnectionAborted,
                libc::ECONNABORTED,
            ),
            (
                tcp::Error::NetUnreachable,
                K::NetworkUnreachable,
                libc::ENETUNREACH,
            ),
            (
                tcp::Error::SourceRouteFailed,
                K::Unsupported,
                libc::EOPNOTSUPP,
            ),
        ];
        for (e, kind, no) in cases {
            let io = to_io(e);
            assert_eq!((io.kind(), io.raw_os_error()), (kind, Some(no)), "{e:?}");
        }
        for (e, no) in [
            (tcp::Error::HostDown, libc::EHOSTDOWN),
            (tcp::Error::NoNetwork, libc::ENONET),
            (tcp::Error::ProtocolUnavailable, libc::ENOPROTOOPT),
        ] {
            assert_eq!(to_io(e).raw_os_error(), Some(no), "{e:?}");
        }
        assert_eq!(reported(tcp::Error::Reset, true), tcp::Error::BrokenPipe);
        assert_eq!(reported(tcp::Error::Reset, false), tcp::Error::Reset);
    }
}
