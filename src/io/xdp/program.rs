//! The XDP steering program (`bpf/xdp_steer.c`): load it, configure it, attach it to one
//! interface, register AF_XDP sockets in its XSKMAP and read its per-verdict counters.
//!
//! Order of use: [`SteerProgram::load`], [`SteerProgram::set_config`] and
//! [`SteerProgram::add_listen_port`] (any time, also while attached), [`SteerProgram::attach`],
//! then [`SteerProgram::register_socket`] for each socket once it is bound to its queue. Dropping
//! the program detaches it (closes its BPF link) and frees the maps.
//!
//! We load with libbpf directly rather than through libxdp: libxdp's multi-program dispatcher
//! fails on this kernel, and sockets are created with `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD` so
//! libxdp never attaches its default program over ours.

use std::ffi::{c_int, CString};
use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use bytemuck::{Pod, Zeroable};
use libxdp_sys as sys;

use crate::io::bpf::{
    cstr, map_delete, map_lookup_percpu, map_update, neg_errno, open_object, possible_cpus,
};

/// The compiled steering program, built from `bpf/xdp_steer.c` by `build.rs`.
pub static STEER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xdp_steer.o"));

const PROG_NAME: &str = "xdp_steer";
const MAP_XSKS: &str = "xsks_map";
const MAP_CONFIG: &str = "steer_cfg";
const MAP_PORTS: &str = "listen_ports";
const MAP_STATS: &str = "steer_stats";
/// Entries of the per-queue counters (`STEER_QUEUES` in the C source).
pub const STEER_QUEUES: u32 = 64;

// <linux/if_link.h>; not in the libxdp-sys bindings.
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `STEER_F_ARP` in the C source.
const STEER_F_ARP: u32 = 1 << 0;

/// Per-verdict counters, summed over CPUs. Mirrors `struct steer_stats` field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SteerStats {
    /// TCP segments redirected to the socket.
    pub redirect_tcp: u64,
    /// ICMP errors quoting our TCP redirected to the socket.
    pub redirect_icmp: u64,
    /// ARP frames redirected to the socket (only with [`SteerConfig::steer_arp`]).
    pub redirect_arp: u64,
    /// Frames we own but no socket was registered for the receiving queue: passed to the kernel.
    pub redirect_failed: u64,
    /// Not ours: other ethertype, IP protocol or destination address.
    pub pass_not_ours: u64,
    /// TCP (or ICMP quoting TCP) to our address on a port we do not own.
    pub pass_port: u64,
    /// IPv4 fragments to our address: the stack does not reassemble.
    pub pass_fragment: u64,
    /// Truncated or inconsistent headers.
    pub pass_malformed: u64,
    /// No address configured yet.
    pub pass_unconfigured: u64,
}

impl SteerStats {
    /// Frames handed to an AF_XDP socket.
    pub fn redirected(&self) -> u64 {
        self.redirect_tcp + self.redirect_icmp + self.redirect_arp
    }

    /// Frames given to the kernel stack (XDP_PASS), whatever the reason.
    pub fn passed(&self) -> u64 {
        self.redirect_failed
            + self.pass_not_ours
            + self.pass_port
            + self.pass_fragment
            + self.pass_malformed
            + self.pass_unconfigured
    }

    /// Adds `other`'s counters (another queue's) to these.
    pub fn add(&mut self, other: &SteerStats) {
        let a: &mut [u64; 9] = bytemuck::cast_mut(self);
        let b: &[u64; 9] = bytemuck::cast_ref(other);
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
}

/// Mirrors `struct steer_config`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
struct RawSteerConfig {
    /// Network byte order in memory, as the program compares it with `iphdr.daddr`.
    addr: u32,
    eph_lo: u16,
    eph_hi: u16,
    flags: u32,
    _pad: u32,
}

/// What the program steers to the stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteerConfig {
    /// The stack's IPv4 address. `0.0.0.0` steers nothing.
    pub addr: Ipv4Addr,
    /// Ports the stack connects from. Keep it disjoint from the kernel's
    /// `net.ipv4.ip_local_port_range` (default 32768-60999) when the address is shared with it.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Steer ARP requests/replies for `addr` too (the stack resolves neighbours itself); when
    /// false the kernel answers ARP.
    pub steer_arp: bool,
}

impl Default for SteerConfig {
    fn default() -> Self {
        SteerConfig {
            addr: Ipv4Addr::UNSPECIFIED,
            ephemeral_ports: 61000..=65535,
            steer_arp: false,
        }
    }
}

impl SteerConfig {
    fn to_raw(&self) -> RawSteerConfig {
        RawSteerConfig {
            addr: u32::from_ne_bytes(self.addr.octets()),
            eph_lo: *self.ephemeral_ports.start(),
            eph_hi: *self.ephemeral_ports.end(),
            flags: if self.steer_arp { STEER_F_ARP } else { 0 },
            _pad: 0,
        }
    }
}

/// Which XDP hook the program is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Driver (native) mode: runs before an skb is allocated.
    Native,
    /// Generic (SKB) mode: works on any device, slower.
    Generic,
}

/// Which hook to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native, then generic if the driver refuses.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// How long [`SteerProgram::attach`] retries while the interface has an XDP program (EBUSY): a
/// link just closed by a stack in this process can outlive the close for as long as a child
/// being spawned meanwhile has not exec'd yet.
pub const ATTACH_BUSY_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// The loaded steering program and its maps; attached to at most one interface.
#[derive(Debug)]
pub struct SteerProgram {
    obj: NonNull<sys::bpf_object>,
    prog_fd: c_int,
    xsks_fd: c_int,
    config_fd: c_int,
    ports_fd: c_int,
    stats_fd: c_int,
    possible_cpus: usize,
    attached: Option<Attachment>,
}

#[derive(Debug)]
struct Attachment {
    ifindex: u32,
    mode: XdpMode,
    /// Closing the link detaches the program.
    _link: OwnedFd,
}

// SAFETY: the `bpf_object` is only touched by `load` (before the value exists) and by `Drop`
// (exclusive); every other method works on map/program fds through the bpf() syscall, which is
// thread-safe.
unsafe impl Send for SteerProgram {}
// SAFETY: as above, `&self` methods only issue bpf() syscalls on fds.
unsafe impl Sync for SteerProgram {}

/// Checks that the maps' value sizes in the object match the Rust mirrors, so a layout drift
/// between C and Rust fails loudly instead of corrupting counters.
fn check_layout(obj: NonNull<sys::bpf_object>) -> io::Result<()> {
    let expect = [
        (MAP_CONFIG, std::mem::size_of::<RawSteerConfig>()),
        (MAP_STATS, std::mem::size_of::<SteerStats>()),
        (MAP_PORTS, 1),
        (MAP_XSKS, 4),
    ];
    crate::io::bpf::check_layout(obj, "xdp_steer.o", &expect)
}

/// Verifies the embedded object parses and its map layouts match the Rust mirrors. No privilege.
pub fn check_object() -> io::Result<()> {
    let obj = open_object("xdp_steer", STEER_OBJECT)?;
    let res = check_layout(obj);
    // SAFETY: `obj` came from `bpf_object__open_mem` and is not used afterwards.
    unsafe { sys::bpf_object__close(obj.as_ptr()) };
    res
}

/// The interface index of `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

impl SteerProgram {
    /// Loads the program and creates its maps (needs CAP_BPF/CAP_SYS_ADMIN). Not attached yet.
    /// The XSKMAP holds queues `0..64`; see [`SteerProgram::load_for_queues`].
    pub fn load() -> io::Result<Self> {
        Self::load_for_queues(64)
    }

    /// [`SteerProgram::load`] with an XSKMAP of `queues` entries (the device's queue count:
    /// a queue at or past it would find no socket and pass its frames to the kernel).
    pub fn load_for_queues(queues: u32) -> io::Result<Self> {
        let obj = open_object("xdp_steer", STEER_OBJECT)?;
        let close = |e: io::Error| {
            // SAFETY: `obj` came from `bpf_object__open_mem` and is not used after this.
            unsafe { sys::bpf_object__close(obj.as_ptr()) };
            e
        };
        check_layout(obj).map_err(close)?;
        let xname = cstr(MAP_XSKS);
        // SAFETY: `obj` is open and not loaded yet; the name is valid for the call.
        let xmap = unsafe { sys::bpf_object__find_map_by_name(obj.as_ptr(), xname.as_ptr()) };
        if xmap.is_null() {
            return Err(close(io::Error::other("xsks_map missing from xdp_steer.o")));
        }
        // SAFETY: `xmap` belongs to `obj`, which is not loaded yet (sizes are set before load).
        neg_errno(unsafe { sys::bpf_map__set_max_entries(xmap, queues.max(1)) }).map_err(close)?;
        // SAFETY: `obj` is a valid, not yet loaded object.
        neg_errno(unsafe { sys::bpf_object__load(obj.as_ptr()) }).map_err(close)?;

        let map_fd = |name: &str| -> io::Result<c_int> {
            let cname = cstr(name);
            // SAFETY: `obj` is loaded; the name is valid for the call.
            let fd = unsafe { sys::bpf_object__find_map_fd_by_name(obj.as_ptr(), cname.as_ptr()) };
            neg_errno(fd)
        };
        let pname = cstr(PROG_NAME);
        // SAFETY: `obj` is loaded; the name is valid for the call.
        let prog = unsafe { sys::bpf_object__find_program_by_name(obj.as_ptr(), pname.as_ptr()) };
        if prog.is_null() {
            return Err(close(io::Error::other(
                "program xdp_steer missing from xdp_steer.o",
            )));
        }
        // SAFETY: `prog` is non-null and belongs to the loaded `obj`.
        let prog_fd = neg_errno(unsafe { sys::bpf_program__fd(prog) }).map_err(close)?;
        let fds = (|| {
            Ok((
                map_fd(MAP_XSKS)?,
                map_fd(MAP_CONFIG)?,
                map_fd(MAP_PORTS)?,
                map_fd(MAP_STATS)?,
            ))
        })();
        let (xsks_fd, config_fd, ports_fd, stats_fd) = fds.map_err(close)?;
        let possible_cpus = possible_cpus().map_err(close)?;
        Ok(SteerProgram {
            obj,
            prog_fd,
            xsks_fd,
            config_fd,
            ports_fd,
            stats_fd,
            possible_cpus,
            attached: None,
        })
    }

    /// Loads, configures and attaches in one go.
    pub fn load_and_attach(
        ifindex: u32,
        config: &SteerConfig,
        mode: AttachMode,
    ) -> io::Result<Self> {
        let mut prog = Self::load()?;
        prog.set_config(config)?;
        prog.attach(ifindex, mode)?;
        Ok(prog)
    }

    /// Replaces the configuration; takes effect for the next frame.
    pub fn set_config(&self, config: &SteerConfig) -> io::Result<()> {
        let raw = config.to_raw();
        map_update(self.config_fd, &0u32, &raw)
    }

    /// Steers TCP to `port` on our address to the stack.
    pub fn add_listen_port(&self, port: u16) -> io::Result<()> {
        map_update(self.ports_fd, &port, &1u8)
    }

    /// Stops steering `port` (unless it is in the ephemeral range).
    pub fn remove_listen_port(&self, port: u16) -> io::Result<()> {
        map_delete(self.ports_fd, &port)
    }

    /// Attaches to `ifindex` (an index in the calling thread's network namespace) through a BPF
    /// link; fails with EBUSY if any XDP program is attached there already (still after
    /// `ATTACH_BUSY_RETRY`, 500 ms).
    ///
    /// A link rather than a netlink attach (`bpf_xdp_attach`): the link holds the attachment, so
    /// closing it detaches exactly our program from exactly that device, from any thread and
    /// any network namespace, and the kernel detaches it by itself if the process dies. A
    /// netlink detach resolves the ifindex in the caller's namespace and a crash leaves the
    /// program attached.
    pub fn attach(&mut self, ifindex: u32, mode: AttachMode) -> io::Result<XdpMode> {
        if self.attached.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "already attached",
            ));
        }
        let try_mode = |m: XdpMode| -> io::Result<OwnedFd> {
            // SAFETY: all-zero is a valid value of this plain C struct (libbpf also requires the
            // bytes it does not know to be zero).
            let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
            opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>();
            opts.flags = match m {
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            };
            // SAFETY: plain FFI call with a valid program fd; `opts` is valid for the call.
            let fd = unsafe {
                sys::bpf_link_create(
                    self.prog_fd,
                    ifindex as c_int,
                    sys::bpf_attach_type_BPF_XDP,
                    &opts,
                )
            };
            let fd = neg_errno(fd)?;
            // SAFETY: `fd` is a new link fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        // EBUSY: an XDP program is attached. Ours of a stack just dropped detaches when the last
        // reference to its link goes, and a child another thread is spawning holds a copy of
        // every descriptor (close-on-exec ones too) from its fork until its exec: retry a while.
        let try_mode = |m: XdpMode| -> io::Result<OwnedFd> {
            let started = std::time::Instant::now();
            loop {
                match try_mode(m) {
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY)
                            && started.elapsed() < ATTACH_BUSY_RETRY =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    r => return r,
                }
            }
        };
        let (mode, link) = match mode {
            AttachMode::Native => (XdpMode::Native, try_mode(XdpMode::Native)?),
            AttachMode::Generic => (XdpMode::Generic, try_mode(XdpMode::Generic)?),
            AttachMode::Auto => match try_mode(XdpMode::Native) {
                Ok(link) => (XdpMode::Native, link),
                // EBUSY means something else is attached: falling back would not help.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(e),
                Err(_) => (XdpMode::Generic, try_mode(XdpMode::Generic)?),
            },
        };
        self.attached = Some(Attachment {
            ifindex,
            mode,
            _link: link,
        });
        Ok(mode)
    }

    /// Where the program is attached, if it is.
    pub fn attached(&self) -> Option<(u32, XdpMode)> {
        self.attached.as_ref().map(|a| (a.ifindex, a.mode))
    }

    /// Detaches from the interface (closes the link); a no-op if not attached.
    pub fn detach(&mut self) {
        self.attached = None;
    }

    /// Directs frames steered on `queue_id` to the AF_XDP socket `fd` (bound to that queue).
    pub fn register_socket(&self, queue_id: u32, fd: RawFd) -> io::Result<()> {
        map_update(self.xsks_fd, &queue_id, &(fd as u32))
    }

    /// Removes the socket of `queue_id`; its frames are then passed (counted `redirect_failed`).
    /// Closing a socket removes it too.
    pub fn unregister_socket(&self, queue_id: u32) -> io::Result<()> {
        map_delete(self.xsks_fd, &queue_id)
    }

    /// The per-verdict counters summed over all CPUs and queues.
    pub fn stats(&self) -> io::Result<SteerStats> {
        let mut sum = SteerStats::default();
        for q in 0..STEER_QUEUES {
            sum.add(&self.queue_stats(q)?);
        }
        Ok(sum)
    }

    /// The per-verdict counters of frames received on queue `queue` (the engine serving it),
    /// summed over all CPUs. Queues from [`STEER_QUEUES`]` - 1` up share one entry.
    pub fn queue_stats(&self, queue: u32) -> io::Result<SteerStats> {
        let key = queue.min(STEER_QUEUES - 1);
        let per_cpu: Vec<SteerStats> = map_lookup_percpu(self.stats_fd, key, self.possible_cpus)?;
        let mut sum = SteerStats::default();
        per_cpu.iter().for_each(|s| sum.add(s));
        Ok(sum)
    }
}

impl Drop for SteerProgram {
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
        check_object().unwrap();
        assert_eq!(std::mem::size_of::<RawSteerConfig>(), 16);
        assert_eq!(std::mem::size_of::<SteerStats>(), 72);
    }

    #[test]
    fn config_addr_is_network_order_in_memory() {
        let cfg = SteerConfig {
            addr: Ipv4Addr::new(10, 203, 1, 2),
            ..Default::default()
        };
        let raw = cfg.to_raw();
        assert_eq!(bytemuck::bytes_of(&raw.addr), &[10, 203, 1, 2]);
    }
}
