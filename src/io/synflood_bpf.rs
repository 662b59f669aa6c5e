//! A SYN flood sent by the kernel itself: the XDP program `bpf/synflood.c`, run with
//! `BPF_PROG_TEST_RUN` in live-frames mode (`BPF_F_TEST_XDP_LIVE_FRAMES`, kernel >= 5.18). Each
//! run of the program turns a template frame into a SYN from a random source of a subnet (random
//! port and ISN, checksums computed) and transmits it out of a device (`XDP_TX`), with no
//! socket and no skb.
//!
//! This is test tooling, like [`crate::io::fault_bpf`]: the harness's flood generator
//! (`xdp-tcp load --workload synflood --via xdp`) uses it on a veth, where a raw socket's SYN
//! costs the sending core its route and neighbour look-ups, an skb, and on the other end a copy
//! of that skb into an XDP buffer before the receiver's XDP program even runs: on a 2-core
//! testbed nearly a whole core at 110k SYN/s, taken from the clients that share it. From this
//! program the frame reaches the other end as an XDP frame, as a NIC's receive hands it over.

use std::ffi::c_int;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use bytemuck::{Pod, Zeroable};
use libxdp_sys as sys;

use crate::io::bpf::{
    check_object, close_on_err, link_create, load_object, map_fd, map_lookup_percpu, map_update,
    neg_errno, possible_cpus, program_fd,
};

/// The compiled program, built from `bpf/synflood.c` by `build.rs`.
pub static SYNFLOOD_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/synflood.o"));

const MAP_CONFIG: &str = "synflood_cfg";
const MAP_SENT: &str = "synflood_sent";
const PROG: &str = "xdp_synflood";

/// The template's TCP header length, which the program checksums (`TCP_LEN` in the C source).
pub const SYN_TCP_HEADER_LEN: usize = 40;
/// Ethernet, IPv4 and that TCP header: the template frame's length.
pub const SYN_FRAME_LEN: usize = 14 + 20 + SYN_TCP_HEADER_LEN;
/// Runs per `BPF_PROG_TEST_RUN` batch at most (the kernel's `TEST_XDP_MAX_BATCH`).
pub const MAX_BATCH: u32 = 256;

/// Mirrors `struct synflood_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
struct RawConfig {
    net: u32,
    span: u32,
    avoid: u32,
    ifindex: u32,
}

fn layouts() -> [(&'static str, usize); 2] {
    [
        (MAP_CONFIG, std::mem::size_of::<RawConfig>()),
        (MAP_SENT, 8),
    ]
}

/// Verifies the embedded object parses and its map layouts match the Rust mirrors. No privilege.
pub fn check_synflood_object() -> io::Result<()> {
    check_object("synflood", SYNFLOOD_OBJECT, &layouts())
}

/// The loaded generator. Dropping it detaches and unloads the program.
pub struct SynFloodProgram {
    obj: NonNull<sys::bpf_object>,
    prog_fd: c_int,
    sent_fd: c_int,
    possible_cpus: usize,
    ifindex: u32,
    /// The program attached (generic mode) to the namespace's loopback, see [`Self::load`].
    _resident: OwnedFd,
}

// SAFETY: the `bpf_object` is only touched by `load` (before the value exists) and by `Drop`
// (exclusive); every other method works on program/map fds through the bpf() syscall.
unsafe impl Send for SynFloodProgram {}

/// `(network, host addresses)` of `subnet` as the program draws from: every host address but
/// the network and broadcast ones (prefixes longer than /30 count as /30).
fn source_range(subnet: (Ipv4Addr, u8)) -> (u32, u32) {
    let host_bits = 32 - u32::from(subnet.1.min(30));
    let mask = if host_bits == 32 {
        0
    } else {
        u32::MAX << host_bits
    };
    let span = ((1u64 << host_bits) - 2) as u32;
    (u32::from(subnet.0) & mask, span)
}

impl SynFloodProgram {
    /// Loads the program (needs CAP_BPF and CAP_NET_ADMIN) to send out of device `ifindex` of
    /// the calling thread's network namespace, drawing sources from `subnet`, never `avoid`.
    ///
    /// The program is also attached, in generic mode and passing every frame, to the
    /// namespace's loopback device. A test run of an XDP program that no device holds adds it
    /// to the kernel's XDP dispatcher and removes it again, waiting two RCU grace periods: about
    /// 2.6 ms a call here, which held the flood to 600 SYN/s in batches of 16. Attached, it stays
    /// in the dispatcher and a batch costs only its frames.
    pub fn load(subnet: (Ipv4Addr, u8), avoid: Ipv4Addr, ifindex: u32) -> io::Result<Self> {
        let obj = load_object("synflood", SYNFLOOD_OBJECT, &layouts())?;
        let fds = (|| {
            Ok((
                program_fd(obj, PROG)?,
                map_fd(obj, MAP_CONFIG)?,
                map_fd(obj, MAP_SENT)?,
                possible_cpus()?,
            ))
        })();
        let (prog_fd, config_fd, sent_fd, possible_cpus) = close_on_err(obj, fds)?;
        let (net, span) = source_range(subnet);
        let raw = RawConfig {
            net,
            span,
            avoid: u32::from(avoid),
            ifindex,
        };
        // the configuration first: attached, the program runs on loopback frames at once
        close_on_err(obj, map_update(config_fd, &0u32, &raw))?;
        let resident = close_on_err(obj, attach_to_loopback(prog_fd))?;
        Ok(SynFloodProgram {
            obj,
            prog_fd,
            sent_fd,
            possible_cpus,
            ifindex,
            _resident: resident,
        })
    }

    /// Runs the program `count` times (at most [`MAX_BATCH`]) on `template`, a SYN frame of
    /// [`SYN_FRAME_LEN`] bytes whose addresses, destination port and options the program
    /// keeps, and transmits each result out of the device given to [`Self::load`]. Call from
    /// the namespace it was loaded in. Returns when the kernel has handed them all to the
    /// device.
    pub fn send(&self, template: &[u8; SYN_FRAME_LEN], count: u32) -> io::Result<()> {
        if count == 0 || count > MAX_BATCH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{count} runs: 1..={MAX_BATCH} per call"),
            ));
        }
        // SAFETY: all-zero is a valid value of this plain C struct.
        let mut ctx: sys::xdp_md = unsafe { std::mem::zeroed() };
        ctx.ingress_ifindex = self.ifindex;
        // the kernel wants the context's data offsets to describe `data_in` (no metadata)
        ctx.data_end = SYN_FRAME_LEN as u32;
        // SAFETY: all-zero is the documented "no options" state of this C struct; `sz` tells
        // libbpf which fields we know about.
        let mut opts: sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<sys::bpf_test_run_opts>();
        opts.data_in = template.as_ptr().cast();
        opts.data_size_in = SYN_FRAME_LEN as u32;
        opts.ctx_in = (&ctx as *const sys::xdp_md).cast();
        opts.ctx_size_in = std::mem::size_of::<sys::xdp_md>() as u32;
        opts.repeat = count as c_int;
        opts.batch_size = count;
        opts.flags = sys::BPF_F_TEST_XDP_LIVE_FRAMES;
        // SAFETY: `opts` points at `template` and `ctx`, both alive for the call; in live-frames
        // mode the kernel only reads them (no data or context out).
        neg_errno(unsafe { sys::bpf_prog_test_run_opts(self.prog_fd, &mut opts) })?;
        Ok(())
    }

    /// Frames the program has written and transmitted so far, over all CPUs.
    pub fn sent(&self) -> io::Result<u64> {
        let per_cpu: Vec<u64> = map_lookup_percpu(self.sent_fd, 0, self.possible_cpus)?;
        Ok(per_cpu.iter().sum())
    }
}

/// `XDP_FLAGS_SKB_MODE` of <linux/if_link.h>: generic XDP, which every device supports.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;

/// Attaches `prog_fd` in generic mode to the calling thread's namespace's loopback through a
/// BPF link: closing the link (or the process ending) detaches it.
fn attach_to_loopback(prog_fd: c_int) -> io::Result<OwnedFd> {
    let lo = crate::io::xdp::ifindex("lo")?;
    link_create(
        prog_fd,
        lo,
        sys::bpf_attach_type_BPF_XDP,
        XDP_FLAGS_SKB_MODE,
    )
}

impl Drop for SynFloodProgram {
    fn drop(&mut self) {
        // (the link in `_resident` closes after this body; closing the object first only drops
        // libbpf's references, the link holds its own)
        // SAFETY: `obj` is the object we loaded; nothing uses it or its fds after this.
        unsafe { sys::bpf_object__close(self.obj.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_object_matches_rust_layouts() {
        check_synflood_object().unwrap();
        assert_eq!(std::mem::size_of::<RawConfig>(), 16);
    }

    #[test]
    fn sources_are_the_host_addresses_of_the_subnet() {
        assert_eq!(
            source_range((Ipv4Addr::new(198, 18, 7, 9), 16)),
            (u32::from(Ipv4Addr::new(198, 18, 0, 0)), 65534)
        );
        assert_eq!(
            source_range((Ipv4Addr::new(10, 0, 0, 5), 32)),
            (u32::from(Ipv4Addr::new(10, 0, 0, 4)), 2)
        );
    }
}
