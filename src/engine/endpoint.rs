//! Setting up AF_XDP endpoints on an interface: the one way [`crate::api::Stack`] and the
//! benchmark harness (`crates/bench`) both do it.
//!
//! Set-up, each step in the interface's network namespace:
//! 1. [`XdpInterface::attach`], once per interface: our address (given, or the interface's
//!    first IPv4 address), the steering program loaded, told our address, ephemeral ports and
//!    listening ports, and attached (native, else generic as [`AttachMode`] allows); its XSKMAP
//!    holds as many sockets as the device has receive queues ([`XdpInterface::queues`]).
//! 2. [`XdpInterface::open_queue`], once per queue, on the thread that will run the queue's
//!    engine (the rtnetlink socket belongs to the namespace of the thread that opens it): the
//!    AF_XDP socket and its UMEM on the queue, registered in the program's XSKMAP, a
//!    neighbour cache seeded from the kernel's tables, which keep answering ARP, and the
//!    interface's MTU, which the host's MSS follows. The result is
//!    an [`EngineIo`]; [`XdpInterface::open_socket`] is the socket alone, for code that runs
//!    no engine.
//! 3. [`EngineIo::into_engine`] with the queue's [`Host`] and application.
//!
//! Dropping the last [`Arc`] of the program detaches it. Sockets may close before or after (the
//! kernel removes a closed socket from the XSKMAP); keep the program while engines run, or the
//! frames they expect go to the kernel instead.

use std::io;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use super::{App, Engine, EngineConfig};
use crate::host::Host;
use crate::io::ethtool;
use crate::io::xdp::{
    ifindex, AttachMode, SteerConfig, SteerProgram, Waker, XdpSocket, XdpSocketConfig,
};
use crate::io::PacketIo;
use crate::neigh::netlink::{interface_ipv4, KernelTables};
use crate::neigh::{NeighCache, NeighConfig};
use crate::time::Instant;
use crate::wire::ethernet;

/// What [`XdpInterface::attach`] steers to us, and where.
#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    /// The interface's name in the calling thread's namespace.
    pub name: String,
    /// Our address and prefix length; `None`: the interface's first IPv4 address.
    pub addr: Option<(Ipv4Addr, u8)>,
    /// Ports our active opens use. An empty range (`1..=0`) steers none (a server alone).
    pub ephemeral: RangeInclusive<u16>,
    /// Ports steered to us from the start (more can be added through [`XdpInterface::program`]).
    pub listen: Vec<u16>,
    /// Which XDP hook to attach to.
    pub attach: AttachMode,
}

impl InterfaceConfig {
    /// The interface `name` at its own address, no ports steered, native XDP else generic.
    pub fn new(name: &str) -> Self {
        InterfaceConfig {
            name: name.to_string(),
            addr: None,
            ephemeral: 61000..=65535,
            listen: Vec::new(),
            attach: AttachMode::Auto,
        }
    }
}

/// An interface with the steering program attached: what every queue's endpoint on it shares.
pub struct XdpInterface {
    name: String,
    index: u32,
    addr: Ipv4Addr,
    prefix_len: u8,
    queues: u32,
    program: Arc<SteerProgram>,
}

impl XdpInterface {
    /// Resolves the address, loads, configures and attaches the steering program. Call in the
    /// interface's namespace; needs CAP_NET_ADMIN and CAP_BPF.
    pub fn attach(cfg: &InterfaceConfig) -> io::Result<XdpInterface> {
        let (addr, prefix_len) = match cfg.addr {
            Some(a) => a,
            None => interface_ipv4(&cfg.name)?,
        };
        let index = ifindex(&cfg.name)?;
        let queues = ethtool::rx_queues(&cfg.name)?;
        let mut program = SteerProgram::load_for_queues(queues)?;
        program.set_config(&SteerConfig {
            addr,
            ephemeral_ports: cfg.ephemeral.clone(),
            steer_arp: false,
        })?;
        for &port in &cfg.listen {
            program.add_listen_port(port)?;
        }
        program.attach(index, cfg.attach)?;
        Ok(XdpInterface {
            name: cfg.name.clone(),
            index,
            addr,
            prefix_len,
            queues,
            program: Arc::new(program),
        })
    }

    /// The device's receive queue count, read when attaching (the XSKMAP's size).
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// The device's RSS key and indirection table, where it has them and they predict queues
    /// the way [`crate::rss::FlowSteer`] computes them (see [`ethtool::rss`]).
    pub fn rss(&self) -> io::Result<ethtool::RssConfig> {
        ethtool::rss(&self.name)
    }

    /// Our address on the interface and its prefix length.
    pub fn addr(&self) -> (Ipv4Addr, u8) {
        (self.addr, self.prefix_len)
    }

    /// The interface's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The attached program (listening ports come and go through it).
    pub fn program(&self) -> &Arc<SteerProgram> {
        &self.program
    }

    /// Opens an AF_XDP socket (and its UMEM) on `queue`, with `waker` polled beside it when
    /// given, and registers it in the program's XSKMAP: frames steered on that queue reach it
    /// from then on.
    pub fn open_socket(
        &self,
        queue: u32,
        cfg: &XdpSocketConfig,
        waker: Option<Waker>,
    ) -> io::Result<XdpSocket> {
        let mut sock = XdpSocket::open(&self.name, queue, cfg)?;
        if let Some(w) = waker {
            sock.set_waker(w);
        }
        self.program.register_socket(queue, sock.as_raw_fd())?;
        Ok(sock)
    }

    /// [`XdpInterface::open_socket`] plus a neighbour cache seeded from the kernel's tables and
    /// the rtnetlink socket the engine keeps for later resolutions. Call on the engine's thread.
    pub fn open_queue(
        &self,
        queue: u32,
        cfg: &XdpSocketConfig,
        waker: Option<Waker>,
    ) -> io::Result<EngineIo<XdpSocket>> {
        let mut kernel = KernelTables::open(self.index)?;
        let mac = kernel.link_mac()?;
        let mtu = kernel.link_mtu()?;
        if mtu < 576 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: MTU {mtu} is below IPv4's 576", self.name),
            ));
        }
        let io = self.open_socket(queue, cfg, waker)?;
        let mut neigh = NeighCache::new(NeighConfig::new(self.addr, self.prefix_len, mac));
        kernel.seed(Instant::ZERO, &mut neigh)?;
        Ok(EngineIo {
            io,
            neigh,
            kernel: Some(kernel),
            mtu: Some(u16::try_from(mtu).unwrap_or(u16::MAX)),
        })
    }
}

/// What an engine needs besides its host and application: the device, the neighbour cache for
/// it and, on an interface whose ARP the kernel owns, the kernel's tables.
pub struct EngineIo<P> {
    /// The device.
    pub io: P,
    /// Next hops on it.
    pub neigh: NeighCache,
    /// Kernel-assisted resolution ([`Engine::with_kernel`]); `None` where the stack owns ARP.
    pub kernel: Option<KernelTables>,
    /// The interface's MTU, read from the kernel; `None` keeps the host's.
    pub mtu: Option<u16>,
}

impl<P: PacketIo> EngineIo<P> {
    /// The engine for `host` and `app` on this device. The host takes the interface's MTU, so
    /// the MSS it advertises follows it (MTU - 40), bounded by what a transmit frame holds
    /// behind the Ethernet header: no segment is ever larger than the frame.
    pub fn into_engine<A: App>(self, mut host: Host, app: A, cfg: EngineConfig) -> Engine<P, A> {
        if let Some(mtu) = self.mtu {
            let frame = self
                .io
                .frame_capacity()
                .saturating_sub(ethernet::HEADER_LEN);
            host.set_mtu(mtu.min(u16::try_from(frame).unwrap_or(u16::MAX)));
        }
        let engine = Engine::new(self.io, host, self.neigh, app, cfg);
        match self.kernel {
            Some(k) => engine.with_kernel(k),
            None => engine,
        }
    }
}
