//! What the stack reads from a device through the ethtool ioctl (`SIOCETHTOOL`), in the
//! calling thread's network namespace: its receive queue count and its RSS key and
//! indirection table. Read once at start-up, never per packet.
//!
//! - [`rx_queues`]: `ETHTOOL_GCHANNELS` (receive-only plus combined channels; a veth reports
//!   its real receive queue count), else the count of `queues/rx-*` in sysfs when the process
//!   lives in the device's namespace.
//! - [`rss`]: `ETHTOOL_GRSSH` (key, table, hash function) and `ETHTOOL_GRXFH` for TCP over
//!   IPv4 (which fields are hashed). Only a Toeplitz hash over addresses and ports, without a
//!   symmetric transform, predicts queues as [`crate::rss::FlowSteer`] computes them; anything
//!   else is an error, and the stack falls back to its own software steering.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_GRXFH: u32 = 0x29;
const TCP_V4_FLOW: u32 = 0x01;
const RXH_IP_SRC: u64 = 1 << 4;
const RXH_IP_DST: u64 = 1 << 5;
const RXH_L4_B_0_1: u64 = 1 << 6;
const RXH_L4_B_2_3: u64 = 1 << 7;
const ETH_RSS_HASH_TOP: u8 = 1 << 0;

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct Channels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// Bytes of `struct ethtool_rxfh` before its flexible array.
const RXFH_HEADER: usize = 24;

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs `SIOCETHTOOL` on `ifname` with `data` (its first u32 is the command).
fn ethtool(ifname: &str, data: *mut libc::c_void) -> io::Result<()> {
    let name = ifname.as_bytes();
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {ifname:?}"),
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    for (d, &s) in req.name.iter_mut().zip(name) {
        *d = s as libc::c_char;
    }
    let sock = socket()?;
    // SAFETY: `req` is a valid ifreq whose data points at a buffer the caller sized for the
    // command it wrote there; both outlive the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL as _, &mut req) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The device's receive queue count (at least 1).
pub fn rx_queues(ifname: &str) -> io::Result<u32> {
    let mut ch = Channels {
        cmd: ETHTOOL_GCHANNELS,
        ..Channels::default()
    };
    match ethtool(ifname, (&mut ch as *mut Channels).cast()) {
        Ok(()) if ch.rx_count + ch.combined_count > 0 => Ok(ch.rx_count + ch.combined_count),
        Ok(()) => Ok(1),
        Err(e) => {
            // No channels op (some virtual devices): sysfs, valid when we share its namespace.
            let dir = format!("/sys/class/net/{ifname}/queues");
            match std::fs::read_dir(&dir) {
                Ok(rd) => {
                    let n = rd
                        .filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                        .count();
                    Ok((n as u32).max(1))
                }
                Err(_) => Err(io::Error::new(
                    e.kind(),
                    format!("{ifname}: ETHTOOL_GCHANNELS: {e}"),
                )),
            }
        }
    }
}

/// A device's RSS set-up as the stack can use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssConfig {
    pub key: Vec<u8>,
    pub table: Vec<u32>,
}

/// Reads the RSS key and indirection table; an error when the device has none, or hashes
/// TCP over IPv4 in a way [`crate::rss::FlowSteer`] does not reproduce.
pub fn rss(ifname: &str) -> io::Result<RssConfig> {
    // First call: sizes only.
    let mut head = [0u32; RXFH_HEADER / 4];
    head[0] = ETHTOOL_GRSSH;
    ethtool(ifname, head.as_mut_ptr().cast())?;
    let (indir, key) = (head[2] as usize, head[3] as usize);
    if indir == 0 || key == 0 || indir > 1 << 16 || key > 256 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname}: no readable RSS table ({indir} entries, key {key} bytes)"),
        ));
    }
    let words = RXFH_HEADER / 4 + indir + key.div_ceil(4);
    let mut buf = vec![0u32; words];
    buf[0] = ETHTOOL_GRSSH;
    buf[2] = indir as u32;
    buf[3] = key as u32;
    ethtool(ifname, buf.as_mut_ptr().cast())?;
    let hfunc_xfrm = buf[4].to_ne_bytes();
    let (hfunc, xfrm) = (hfunc_xfrm[0], hfunc_xfrm[1]);
    if hfunc != ETH_RSS_HASH_TOP {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname}: RSS hash function {hfunc:#x} is not Toeplitz"),
        ));
    }
    if xfrm != 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname}: RSS input transform {xfrm:#x} (symmetric) is not modelled"),
        ));
    }
    let table = buf[RXFH_HEADER / 4..RXFH_HEADER / 4 + indir].to_vec();
    let key_bytes: Vec<u8> = buf[RXFH_HEADER / 4 + indir..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(key)
        .collect();
    let fields = tcp4_hash_fields(ifname)?;
    let want = RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3;
    if fields & want != want {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{ifname}: TCP/IPv4 RSS hashes fields {fields:#x}, not addresses and ports (ethtool -N {ifname} rx-flow-hash tcp4 sdfn)"),
        ));
    }
    Ok(RssConfig {
        key: key_bytes,
        table,
    })
}

/// The `RXH_*` fields the device hashes for TCP over IPv4.
fn tcp4_hash_fields(ifname: &str) -> io::Result<u64> {
    // struct ethtool_rxnfc is about 190 bytes; room to spare, 8-byte aligned.
    let mut buf = [0u64; 40];
    buf[0] = u64::from(ETHTOOL_GRXFH) | (u64::from(TCP_V4_FLOW) << 32);
    if cfg!(target_endian = "big") {
        buf[0] = (u64::from(ETHTOOL_GRXFH) << 32) | u64::from(TCP_V4_FLOW);
    }
    ethtool(ifname, buf.as_mut_ptr().cast())?;
    Ok(buf[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_one_queue_and_no_rss() {
        // lo has neither a channels op nor RSS in every namespace
        assert!(rx_queues("lo").unwrap() >= 1);
        assert!(rss("lo").is_err());
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(rx_queues("").is_err());
        assert!(rss("a-name-far-too-long-for-ifreq").is_err());
        assert!(rx_queues("no-such-if0").is_err());
    }
}
