//! getsockopt(2) and setsockopt(2): the options a TCP script uses, with Linux's bounds, errors
//! and reported values (SO_RCVBUF and SO_SNDBUF doubled, TCP_MAXSEG the MSS in use once
//! connected), and TCP_INFO filled from the connection's [`TcpInfo`] in Linux's layout.
//!
//! An option set before the connection exists becomes part of its configuration; one set on a
//! connection is applied to it at once (Nagle, cork and keep-alive act immediately, as in
//! Linux: uncorking or disabling Nagle pushes what waits).

use xdp_tcp::tcp::{State, TcpInfo};

use crate::adapter::{Adapter, Errno};
use crate::sockets::Role;

/// Linux's `net.core.rmem_max` and `wmem_max`: SO_RCVBUF and SO_SNDBUF are capped there.
const RMEM_MAX: usize = 212_992;
const WMEM_MAX: usize = 212_992;
/// Linux's `SOCK_MIN_RCVBUF` and `SOCK_MIN_SNDBUF` (after doubling).
const MIN_RCVBUF: usize = 2304;
const MIN_SNDBUF: usize = 4608;
/// What getsockopt reports before SO_RCVBUF/SO_SNDBUF were set: Linux's `tcp_rmem[1]` and
/// `tcp_wmem[1]`.
const DEFAULT_RCVBUF: usize = 131_072;
const DEFAULT_SNDBUF: usize = 16_384;
/// TCP_MAXSEG bounds (Linux's TCP_MIN_MSS and MAX_TCP_WINDOW).
const MIN_MSS: i32 = 88;
const MAX_MSS: i32 = 32767;
/// Linux's TCP_MSS_DEFAULT: TCP_MAXSEG before a connection exists.
const DEFAULT_MSS: i32 = 536;
/// Size of Linux's `struct tcp_info` (6.x).
pub const TCP_INFO_LEN: usize = 248;

/// An option's value as the call passes it.
fn int(val: &[u8]) -> Result<i32, Errno> {
    let b: [u8; 4] = val
        .get(..4)
        .ok_or(libc::EINVAL)?
        .try_into()
        .expect("4 bytes");
    Ok(i32::from_ne_bytes(b))
}

/// Linux's `state` numbering in `tcp_info` (`include/net/tcp_states.h`).
fn linux_state(s: State) -> u8 {
    match s {
        State::Established => 1,
        State::SynSent => 2,
        State::SynReceived => 3,
        State::FinWait1 => 4,
        State::FinWait2 => 5,
        State::TimeWait => 6,
        State::Closed => 7,
        State::CloseWait => 8,
        State::LastAck => 9,
        State::Closing => 11,
    }
}

/// Writes `info` in the layout of Linux's `struct tcp_info`; fields the stack does not track
/// are zero.
pub fn tcp_info_bytes(info: &TcpInfo, advmss: u16, listening: bool) -> [u8; TCP_INFO_LEN] {
    let mut b = [0u8; TCP_INFO_LEN];
    let mut put32 = |off: usize, v: u64| {
        b[off..off + 4].copy_from_slice(&(v.min(u64::from(u32::MAX)) as u32).to_ne_bytes())
    };
    let mss = info.mss.max(1) as u64;
    let segs = |bytes: usize| (bytes as u64).div_ceil(mss);
    let us = |d: xdp_tcp::time::Duration| d.as_micros();
    put32(8, us(info.rto));
    put32(12, 40_000);
    put32(16, info.mss as u64);
    put32(20, info.mss as u64);
    put32(24, segs(info.bytes_in_flight));
    put32(28, segs(info.sacked_bytes));
    put32(32, segs(info.lost_bytes));
    put32(60, 1500);
    put32(68, info.srtt.map_or(0, us));
    put32(72, us(info.rttvar));
    put32(
        76,
        if info.ssthresh >= (i32::MAX as usize) {
            0x7fff_ffff
        } else {
            segs(info.ssthresh)
        },
    );
    put32(80, segs(info.cwnd));
    put32(84, u64::from(advmss));
    put32(88, 3);
    put32(100, info.stats.retrans_segs);
    put32(136, info.stats.segs_out);
    put32(140, info.stats.segs_in);
    put32(148, info.min_rtt.map_or(0, us));
    put32(216, info.stats.dsack_in);
    put32(228, info.snd_wnd as u64);
    put32(232, info.rcv_wnd as u64);
    let put64 = |b: &mut [u8; TCP_INFO_LEN], off: usize, v: u64| {
        b[off..off + 8].copy_from_slice(&v.to_ne_bytes())
    };
    put64(&mut b, 120, info.stats.bytes_acked);
    put64(&mut b, 128, info.stats.bytes_in);
    put64(&mut b, 200, info.stats.bytes_out);
    put64(&mut b, 208, info.stats.bytes_retrans);
    b[0] = if listening {
        10
    } else {
        linux_state(info.state)
    };
    b[1] = if info.in_recovery { 3 } else { 0 };
    b[4] = info.backoff.min(255) as u8;
    let total_rto = info.stats.rto_events.min(u64::from(u16::MAX)) as u16;
    b[240..242].copy_from_slice(&total_rto.to_ne_bytes());
    b
}

impl Adapter {
    /// getsockopt(2): writes at most `out.len()` bytes of the value into `out` and returns how
    /// many (the new `optlen`).
    pub fn getsockopt(
        &mut self,
        fd: i32,
        level: i32,
        name: i32,
        out: &mut [u8],
    ) -> Result<usize, Errno> {
        self.sync_error(fd);
        let s = self.sock(fd)?;
        let role = s.role;
        let opts = s.opts;
        let conn = match role {
            Role::Conn { id } => self.host_ref().and_then(|h| h.conn(id)),
            _ => None,
        };
        let v: i32 = match (level, name) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => {
                let s = self.sock_mut(fd)?;
                match s.err.take() {
                    Some(e) => e,
                    // a soft error (an ICMP report) when no hard one is pending
                    None if !s.err_taken => match role {
                        Role::Conn { id } => self
                            .host()
                            .and_then(|h| h.with_conn(id, |c| c.take_error()))
                            .flatten()
                            .map_or(0, crate::sockets::errno_of),
                        _ => 0,
                    },
                    None => 0,
                }
            }
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => opts.rcvbuf.unwrap_or(DEFAULT_RCVBUF) as i32,
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => opts.sndbuf.unwrap_or(DEFAULT_SNDBUF) as i32,
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => i32::from(opts.keepalive),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => i32::from(opts.reuseaddr),
            (libc::SOL_SOCKET, libc::SO_TYPE) => libc::SOCK_STREAM,
            (libc::SOL_SOCKET, libc::SO_ACCEPTCONN) => {
                i32::from(matches!(role, Role::Listening { .. }))
            }
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                let mut v = [0u8; 8];
                v[..4].copy_from_slice(&i32::from(opts.linger.is_some()).to_ne_bytes());
                v[4..].copy_from_slice(&opts.linger.unwrap_or(0).to_ne_bytes());
                let n = out.len().min(8);
                out[..n].copy_from_slice(&v[..n]);
                return Ok(n);
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => {
                i32::from(conn.map_or(opts.nodelay, |c| c.nodelay()))
            }
            (libc::IPPROTO_TCP, libc::TCP_CORK) => i32::from(opts.cork),
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => match conn {
                Some(c) if c.state() != State::Closed => c.mss() as i32,
                _ => opts.maxseg.map_or(DEFAULT_MSS, i32::from),
            },
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => {
                opts.keepalive_params().idle.as_millis() as i32 / 1000
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => {
                opts.keepalive_params().interval.as_millis() as i32 / 1000
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => opts.keepalive_params().count as i32,
            (libc::IPPROTO_TCP, libc::TCP_INFO) => {
                let advmss = s_advmss(&opts, self);
                let bytes = match conn {
                    Some(c) => tcp_info_bytes(&c.info(), advmss, false),
                    None => {
                        let mut b = [0u8; TCP_INFO_LEN];
                        b[0] = if matches!(role, Role::Listening { .. }) {
                            10
                        } else {
                            7
                        };
                        b
                    }
                };
                let n = out.len().min(TCP_INFO_LEN);
                out[..n].copy_from_slice(&bytes[..n]);
                return Ok(n);
            }
            (libc::SOL_SOCKET | libc::IPPROTO_TCP, _) => return Err(libc::ENOPROTOOPT),
            _ => return Err(libc::EOPNOTSUPP),
        };
        let n = out.len().min(4);
        out[..n].copy_from_slice(&v.to_ne_bytes()[..n]);
        Ok(n)
    }

    /// setsockopt(2) with the value's bytes.
    pub fn setsockopt(&mut self, fd: i32, level: i32, name: i32, val: &[u8]) -> Result<(), Errno> {
        let role = self.sock(fd)?.role;
        let now = self.now();
        let id = match role {
            Role::Conn { id } => Some(id),
            _ => None,
        };
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_LINGER) => {
                if val.len() < 8 {
                    return Err(libc::EINVAL);
                }
                let on = int(&val[..4])?;
                let secs = int(&val[4..8])?;
                self.sock_mut(fd)?.opts.linger = (on != 0).then_some(secs.max(0));
                return Ok(());
            }
            (libc::SOL_SOCKET | libc::IPPROTO_TCP, _) => {}
            _ => return Err(libc::ENOPROTOOPT),
        }
        let v = int(val)?;
        let s = self.sock_mut(fd)?;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                let b = (v.max(0) as usize).min(RMEM_MAX).saturating_mul(2);
                s.opts.rcvbuf = Some(b.max(MIN_RCVBUF));
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                let b = (v.max(0) as usize).min(WMEM_MAX).saturating_mul(2);
                s.opts.sndbuf = Some(b.max(MIN_SNDBUF));
            }
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => s.opts.keepalive = v != 0,
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.opts.reuseaddr = v != 0,
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => s.opts.nodelay = v != 0,
            (libc::IPPROTO_TCP, libc::TCP_CORK) => s.opts.cork = v != 0,
            (libc::IPPROTO_TCP, libc::TCP_MAXSEG) => {
                if v != 0 && !(MIN_MSS..=MAX_MSS).contains(&v) {
                    return Err(libc::EINVAL);
                }
                s.opts.maxseg = (v != 0).then_some(v as u16);
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) if (1..=32767).contains(&v) => {
                s.opts.keepidle = Some(v as u32)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) if (1..=32767).contains(&v) => {
                s.opts.keepintvl = Some(v as u32)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) if (1..=127).contains(&v) => {
                s.opts.keepcnt = Some(v as u32)
            }
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT) => {
                return Err(libc::EINVAL)
            }
            _ => return Err(libc::ENOPROTOOPT),
        }
        let opts = s.opts;
        let Some(id) = id else { return Ok(()) };
        let host = self.host().expect("a connection implies a host");
        host.with_conn(id, |c| match (level, name) {
            (libc::SOL_SOCKET, libc::SO_RCVBUF) => {
                c.set_recv_buffer_size(opts.rcvbuf_bytes().expect("just set"))
            }
            (libc::SOL_SOCKET, libc::SO_SNDBUF) => {
                c.set_send_capacity(opts.sndbuf_bytes().expect("just set"))
            }
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE)
            | (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE | libc::TCP_KEEPINTVL | libc::TCP_KEEPCNT) => {
                // changing the timing of a running keep-alive restarts its idle period, as in
                // Linux
                if opts.keepalive {
                    c.set_keepalive(now, Some(opts.keepalive_params()));
                } else {
                    c.set_keepalive(now, None);
                }
            }
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) => c.set_nodelay(opts.nodelay),
            (libc::IPPROTO_TCP, libc::TCP_CORK) => c.set_cork(now, opts.cork),
            _ => {}
        });
        self.flush();
        Ok(())
    }
}

/// The MSS a socket advertises: TCP_MAXSEG if set, else the profile's.
fn s_advmss(opts: &crate::sockets::SockOpts, a: &Adapter) -> u16 {
    let base = a.profile.tcp_config().mss;
    opts.maxseg.map_or(base, |m| m.min(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_state_numbers() {
        assert_eq!(linux_state(State::Established), 1);
        assert_eq!(linux_state(State::Closing), 11);
    }
}
