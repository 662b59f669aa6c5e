//! Loss and duplication on a real link: the tc-BPF program `bpf/fault.c`, attached to a device's
//! tcx ingress and egress hooks. There is no netem on the test machines; this is how a veth
//! between the stack and a kernel peer loses frames.
//!
//! Attach it to the **kernel peer's** end of the link, from the peer's network namespace
//! ([`TcFaultProgram::attach_in_netns`] does the namespace switch on a helper thread), so that it
//! acts on the peer's traffic in both directions without touching the stack's own XDP program.
//! Only IPv4 TCP frames are dropped or duplicated; ARP, ICMP and the rest pass and are counted as
//! [`TcFaultStats::other`]. Rates can change at any time ([`TcFaultProgram::set_rates`]).
//!
//! Drops are silent, like loss on a wire: the sender is never told. At ingress the program
//! returns `TC_ACT_SHOT` (the sender is at the other end of the link). At egress it cannot: the
//! kernel reports `TC_ACT_SHOT` there to the sending socket as `NET_XMIT_DROP`, and Linux TCP then
//! counts the segment as not sent and sends it again at once, so the receiver never sees a gap;
//! `TC_ACT_STOLEN` is no verdict for tcx programs (the kernel runs the next program, and the frame
//! leaves). The egress drop is a redirect to ifindex 0, which names no device: the kernel frees
//! the frame and reports success to the sender, which has to find the loss and retransmit. Each
//! dropped frame that occupies sequence space (payload, SYN or FIN) is counted in
//! [`TcFaultStats::dropped_seq`]: the kernel peer's `TcpRetransSegs` (`/proc/net/snmp` of its
//! namespace) must rise by about as much.
//! Offloads: kernel TCP builds GSO packets even with `gso off`, and they are split into wire
//! frames only after the egress hook, so at egress one "frame" would be a burst of segments. The
//! testbed sets `gso_max_segs 1` on the device, which makes TCP build one segment per packet;
//! [`TcFaultStats::super_frames`] counts any multi-segment packet the program still sees.
//!
//! Attachment uses BPF links of type tcx (kernel >= 6.6) rather than a netlink clsact filter
//! (`bpf_tc_attach`): closing a link detaches exactly our program from exactly that hook, from
//! any thread and namespace, and the kernel closes it if the process dies, so a crashed test
//! leaves no filter behind. Dropping the program detaches it.

use std::ffi::{c_int, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;

use bytemuck::{Pod, Zeroable};
use libxdp_sys as sys;

use crate::io::bpf::{
    check_object, close_on_err, link_create, load_object, map_fd, map_lookup_percpu, map_update,
    possible_cpus, program_fd,
};

/// The compiled program, built from `bpf/fault.c` by `build.rs`.
pub static FAULT_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fault.o"));

const MAP_CONFIG: &str = "fault_cfg";
const MAP_STATS: &str = "fault_stats";
const MAP_SCATTER: &str = "scatter_cfg";
const PROG_INGRESS: &str = "fault_ingress";
const PROG_EGRESS: &str = "fault_egress";

// <linux/bpf.h> of kernel >= 6.6; the libxdp-sys bindings were generated from older headers.
const BPF_TCX_INGRESS: sys::bpf_attach_type = 46;
const BPF_TCX_EGRESS: sys::bpf_attach_type = 47;

/// A hook direction, as seen by the device the program is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Frames the device receives (on the peer's veth: what the stack sent).
    Ingress,
    /// Frames the device transmits (on the peer's veth: what the kernel peer sends).
    Egress,
}

impl Direction {
    fn key(self) -> u32 {
        match self {
            Direction::Ingress => 0,
            Direction::Egress => 1,
        }
    }
}

/// Probabilities for one direction, each in `0.0..=1.0`. A frame is dropped with `drop`;
/// otherwise duplicated with `duplicate`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TcFaultRates {
    pub drop: f64,
    pub duplicate: f64,
}

/// Mirrors `struct fault_config`: probabilities scaled to `2^32`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
struct RawFaultConfig {
    drop_thresh: u64,
    dup_thresh: u64,
}

fn threshold(p: f64) -> u64 {
    // p = 1.0 gives 2^32, above every u32 the program draws: always.
    (p * 4_294_967_296.0).round() as u64
}

/// Per-direction counters summed over CPUs. Mirrors `struct fault_stats` field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TcFaultStats {
    /// TCP frames let through (the originals of duplicated frames included).
    pub passed: u64,
    pub dropped: u64,
    /// Clones sent.
    pub duplicated: u64,
    /// `bpf_clone_redirect` failures (the original still passed).
    pub clone_failed: u64,
    /// Our clones coming back through the hook, passed untouched.
    pub clones_seen: u64,
    /// Not IPv4 TCP: passed untouched.
    pub other: u64,
    /// TCP frames that were GSO packets of several segments (also counted in `passed` or
    /// `dropped`): non-zero means faults hit bursts, not wire frames (see the module docs).
    pub super_frames: u64,
    /// Dropped frames that occupy sequence space (payload, SYN or FIN; also counted in
    /// `dropped`): each is a segment the sender must retransmit.
    pub dropped_seq: u64,
}

impl TcFaultStats {
    /// TCP frames the program decided on.
    pub fn tcp_frames(&self) -> u64 {
        self.passed + self.dropped
    }

    fn add(&mut self, other: &TcFaultStats) {
        let a: &mut [u64; 8] = bytemuck::cast_mut(self);
        let b: &[u64; 8] = bytemuck::cast_ref(other);
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
}

/// The loaded program; attached to at most one device (both hooks).
#[derive(Debug)]
pub struct TcFaultProgram {
    obj: NonNull<sys::bpf_object>,
    ingress_fd: c_int,
    egress_fd: c_int,
    config_fd: c_int,
    stats_fd: c_int,
    scatter_fd: c_int,
    possible_cpus: usize,
    /// Ingress then egress link; closing them detaches.
    links: Vec<OwnedFd>,
}

// SAFETY: the `bpf_object` is only touched by `load` (before the value exists) and by `Drop`
// (exclusive); every other method works on program/map fds through the bpf() syscall, which is
// thread-safe.
unsafe impl Send for TcFaultProgram {}
// SAFETY: as above, `&self` methods only issue bpf() syscalls on fds.
unsafe impl Sync for TcFaultProgram {}

/// The maps' value sizes in Rust, which the object's must match.
fn layouts() -> [(&'static str, usize); 3] {
    [
        (MAP_CONFIG, std::mem::size_of::<RawFaultConfig>()),
        (MAP_STATS, std::mem::size_of::<TcFaultStats>()),
        (MAP_SCATTER, 4),
    ]
}

/// Verifies the embedded object parses and its map layouts match the Rust mirrors. No privilege.
pub fn check_fault_object() -> io::Result<()> {
    check_object("fault", FAULT_OBJECT, &layouts())
}

/// Attaches `prog_fd` to a tcx hook of `ifindex` (in the calling thread's namespace).
fn tcx_link(prog_fd: c_int, ifindex: u32, hook: sys::bpf_attach_type) -> io::Result<OwnedFd> {
    link_create(prog_fd, ifindex, hook, 0)
}

impl TcFaultProgram {
    /// Loads the program with every rate at zero (needs CAP_BPF/CAP_SYS_ADMIN). Not attached.
    pub fn load() -> io::Result<Self> {
        let obj = load_object("fault", FAULT_OBJECT, &layouts())?;
        let fds = (|| {
            Ok((
                program_fd(obj, PROG_INGRESS)?,
                program_fd(obj, PROG_EGRESS)?,
                map_fd(obj, MAP_CONFIG)?,
                map_fd(obj, MAP_STATS)?,
                map_fd(obj, MAP_SCATTER)?,
                possible_cpus()?,
            ))
        })();
        let (ingress_fd, egress_fd, config_fd, stats_fd, scatter_fd, possible_cpus) =
            close_on_err(obj, fds)?;
        Ok(TcFaultProgram {
            obj,
            ingress_fd,
            egress_fd,
            config_fd,
            stats_fd,
            scatter_fd,
            possible_cpus,
            links: Vec::new(),
        })
    }

    /// Sets the rates of one direction; takes effect for the next frame.
    pub fn set_rates(&self, dir: Direction, rates: TcFaultRates) -> io::Result<()> {
        for (name, p) in [("drop", rates.drop), ("duplicate", rates.duplicate)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} rate {p} is not in 0..=1"),
                ));
            }
        }
        let raw = RawFaultConfig {
            drop_thresh: threshold(rates.drop),
            dup_thresh: threshold(rates.duplicate),
        };
        map_update(self.config_fd, &dir.key(), &raw)
    }

    /// Scatters what the device transmits over its transmit queues: every TCP frame at egress
    /// gets a random flow hash before the kernel picks the queue, so while a socket may change
    /// queue (nothing of it in flight below TCP) each of its frames goes out on a random one.
    /// On a multi-queue veth with no XPS map the other end then receives one flow on all its
    /// queues: how the tests exercise forwarding between engines.
    pub fn set_scatter(&self, on: bool) -> io::Result<()> {
        map_update(self.scatter_fd, &0u32, &u32::from(on))
    }

    /// Attaches to the tcx ingress and egress hooks of `ifindex`, an index in the calling
    /// thread's network namespace. Other tcx programs on the device keep running (ours is
    /// appended and passes what it does not drop).
    pub fn attach(&mut self, ifindex: u32) -> io::Result<()> {
        if !self.links.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already attached",
            ));
        }
        self.links = Self::links_for(self.ingress_fd, self.egress_fd, ifindex)?;
        Ok(())
    }

    /// Attaches to device `ifname` of the network namespace at `netns` (e.g.
    /// `/run/netns/NAME`), switching namespace on a short-lived helper thread so the caller's
    /// thread stays where it is.
    pub fn attach_in_netns(&mut self, netns: &Path, ifname: &str) -> io::Result<()> {
        if !self.links.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already attached",
            ));
        }
        let ns = std::fs::File::open(netns)?;
        let name =
            CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let (ingress_fd, egress_fd) = (self.ingress_fd, self.egress_fd);
        let links = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid netns fd changes only this thread's network namespace;
                // the thread ends right after.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `name` is a valid NUL-terminated string for the call.
                let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
                if ifindex == 0 {
                    return Err(io::Error::last_os_error());
                }
                Self::links_for(ingress_fd, egress_fd, ifindex)
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })?;
        self.links = links;
        Ok(())
    }

    fn links_for(ingress_fd: c_int, egress_fd: c_int, ifindex: u32) -> io::Result<Vec<OwnedFd>> {
        let ingress = tcx_link(ingress_fd, ifindex, BPF_TCX_INGRESS)?;
        let egress = tcx_link(egress_fd, ifindex, BPF_TCX_EGRESS)?;
        Ok(vec![ingress, egress])
    }

    pub fn is_attached(&self) -> bool {
        !self.links.is_empty()
    }

    /// Detaches from both hooks (closes the links); a no-op if not attached.
    pub fn detach(&mut self) {
        self.links.clear();
    }

    /// The counters of one direction, summed over CPUs.
    pub fn stats(&self, dir: Direction) -> io::Result<TcFaultStats> {
        let per_cpu: Vec<TcFaultStats> =
            map_lookup_percpu(self.stats_fd, dir.key(), self.possible_cpus)?;
        let mut sum = TcFaultStats::default();
        per_cpu.iter().for_each(|s| sum.add(s));
        Ok(sum)
    }
}

impl Drop for TcFaultProgram {
    fn drop(&mut self) {
        self.detach();
        // SAFETY: `obj` is the object we loaded; nothing uses it or its fds after this.
        unsafe { sys::bpf_object__close(self.obj.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_object_matches_rust_layouts() {
        check_fault_object().unwrap();
        assert_eq!(std::mem::size_of::<RawFaultConfig>(), 16);
        assert_eq!(std::mem::size_of::<TcFaultStats>(), 64);
    }

    #[test]
    fn thresholds_cover_the_u32_draw() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(1.0), 1 << 32);
        assert_eq!(threshold(0.5), 1 << 31);
        assert!(threshold(1e-9) <= 5);
    }
}
