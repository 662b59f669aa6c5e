//! Profiles: which TCP settings the adapter's host runs with, chosen by `--so_flags`.
//!
//! - `stack`: the stack's own defaults ([`tcp::Config::default`]), unchanged.
//! - `linux` (the default): what scripts written against Linux expect, as far as the stack's
//!   settings reach. Linux 6.x with default sysctls: initial window 10, initial RTO 1 s,
//!   minimum RTO 200 ms, maximum RTO 120 s, delayed ACK 40 ms, SYN options
//!   `mss, sackOK, TS, nop, wscale` (the stack's own layout already), window scale 7 (Linux
//!   derives it from `tcp_rmem[2]` = 6 MiB) and an initial receive window of 64 KiB rounded
//!   down to whole segments: 64240 in a SYN (MSS 1460), 65160 in a SYN-ACK with timestamps
//!   (1448-byte segments). [`Profile::initial_window`] gives that window; the adapter sets it
//!   on each new connection before its SYN leaves.
//!
//! What `linux` cannot match is listed in the README (section "packetdrill").
//!
//! Flags are words separated by commas or spaces: `profile=linux|stack` (or just `linux` or
//! `stack`), `local_ip=A.B.C.D` (the address to use when no bind(2) or inbound packet has
//! named one yet), `trace` (print every packet and call to standard error).

use std::net::Ipv4Addr;

use xdp_tcp::tcp;
use xdp_tcp::time::Duration;

/// The space Linux turns its default receive buffer (`tcp_rmem[1]` = 128 KiB) into: half of
/// it, with the default `tcp_adv_win_scale` (or scaling ratio).
const LINUX_INITIAL_SPACE: usize = 65536;
/// Linux's `tcp_rmem[2]`, from which it derives the window scale it offers (7).
const LINUX_RMEM_MAX: usize = 6 * 1024 * 1024;
/// Bytes of the timestamp option on every segment once negotiated.
const TS_OPTION_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// The stack's own defaults.
    Stack,
    /// What scripts written against Linux expect.
    Linux,
}

/// The parsed `--so_flags`.
#[derive(Debug, Clone)]
pub struct Profile {
    pub kind: ProfileKind,
    /// The host's address until a bind(2) or an inbound packet names one.
    pub local_ip: Option<Ipv4Addr>,
    /// Print every packet and call to standard error.
    pub trace: bool,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            kind: ProfileKind::Linux,
            local_ip: None,
            trace: false,
        }
    }
}

impl Profile {
    /// Parses `--so_flags` (see the module docs); an unknown word is an error naming it.
    pub fn parse(flags: &str) -> Result<Profile, String> {
        let mut p = Profile::default();
        for word in flags
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            let (key, value) = match word.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (word, None),
            };
            match (key, value) {
                ("profile", Some("linux")) | ("linux", None) => p.kind = ProfileKind::Linux,
                ("profile", Some("stack")) | ("stack", None) => p.kind = ProfileKind::Stack,
                ("local_ip", Some(ip)) => {
                    p.local_ip = Some(
                        ip.parse()
                            .map_err(|_| format!("local_ip={ip}: not an IPv4 address"))?,
                    )
                }
                ("trace", None) => p.trace = true,
                _ => {
                    return Err(format!(
                    "unknown flag {word:?} (known: profile=linux|stack, local_ip=A.B.C.D, trace)"
                ))
                }
            }
        }
        Ok(p)
    }

    /// The TCP settings a new socket starts with.
    pub fn tcp_config(&self) -> tcp::Config {
        let base = tcp::Config::default();
        match self.kind {
            ProfileKind::Stack => base,
            ProfileKind::Linux => tcp::Config {
                rto_max: Duration::from_secs(120),
                // only for the window scale it yields (7): the buffer a connection really
                // starts with is `initial_window`
                recv_buffer: LINUX_RMEM_MAX,
                ..base
            },
        }
    }

    /// The receive buffer (and so the window) a new connection starts with, if the profile
    /// sets one: `rcvbuf` is what SO_RCVBUF asked for, `mss` the segment size we advertise and
    /// `timestamps` whether every segment will carry the timestamp option (known for a SYN-ACK;
    /// a SYN assumes not). Linux quantizes its initial window to whole segments of that size.
    pub fn initial_window(
        &self,
        rcvbuf: Option<usize>,
        mss: u16,
        timestamps: bool,
    ) -> Option<usize> {
        if self.kind != ProfileKind::Linux {
            return None;
        }
        let space = rcvbuf.unwrap_or(LINUX_INITIAL_SPACE);
        let seg = usize::from(mss) - if timestamps { TS_OPTION_LEN } else { 0 };
        Some(if space > seg {
            space - space % seg
        } else {
            space
        })
    }

    /// The receive buffer a socket's connection is created with: what SO_RCVBUF asked for, else
    /// the profile's.
    pub fn recv_buffer(&self, rcvbuf: Option<usize>) -> usize {
        rcvbuf.unwrap_or(self.tcp_config().recv_buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_reject_unknown_words() {
        let p = Profile::parse("").unwrap();
        assert_eq!(p.kind, ProfileKind::Linux);
        let p = Profile::parse("profile=stack, local_ip=10.0.0.2 trace").unwrap();
        assert_eq!(p.kind, ProfileKind::Stack);
        assert_eq!(p.local_ip, Some(Ipv4Addr::new(10, 0, 0, 2)));
        assert!(p.trace);
        assert_eq!(Profile::parse("linux").unwrap().kind, ProfileKind::Linux);
        assert!(Profile::parse("profile=bsd")
            .unwrap_err()
            .contains("profile=bsd"));
        assert!(Profile::parse("local_ip=::1").is_err());
    }

    #[test]
    fn linux_initial_windows_are_whole_segments_of_64k() {
        let p = Profile::default();
        assert_eq!(p.initial_window(None, 1460, false), Some(64240));
        assert_eq!(p.initial_window(None, 1460, true), Some(65160));
        assert_eq!(p.initial_window(Some(1000), 1460, false), Some(1000));
        assert_eq!(p.initial_window(Some(10000), 1000, false), Some(10000));
        let stack = Profile::parse("stack").unwrap();
        assert_eq!(stack.initial_window(None, 1460, true), None);
    }

    #[test]
    fn linux_offers_window_scale_7_like_tcp_rmem_max() {
        let cfg = Profile::default().tcp_config();
        let mut shift = 0;
        while (cfg.recv_buffer >> shift) > usize::from(u16::MAX) {
            shift += 1;
        }
        assert_eq!(shift, 7);
        assert_eq!(cfg.rto_max, Duration::from_secs(120));
    }
}
