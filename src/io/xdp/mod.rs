//! AF_XDP datapath: the steering program, the UMEM and one socket per queue.
//!
//! Set-up, in order:
//! 1. [`SteerProgram::load`], [`SteerProgram::set_config`] (our address, ephemeral ports),
//!    [`SteerProgram::add_listen_port`] for each listener;
//! 2. [`SteerProgram::attach`] to the interface (native, falling back to generic);
//! 3. per queue: [`XdpSocket::open`], then [`SteerProgram::register_socket`] with its fd.
//!
//! From then on each socket is a [`crate::io::PacketIo`] owned by one core. Drop sockets before
//! or after the program in any order: the kernel removes a closed socket from the XSKMAP, and the
//! program detaches itself when dropped. Frames we own that arrive on a queue with no socket are
//! passed to the kernel and counted as `redirect_failed`.
//!
//! Requirements (see `deploy/README.md`): CAP_NET_ADMIN, CAP_BPF (or root), CAP_NET_RAW for the
//! socket, enough locked memory for the UMEM. On a kernel peer across a veth, tx checksum
//! offload must be off or its TCP checksums arrive incomplete.

mod program;
mod socket;
mod umem;
mod wake;

pub use program::{
    check_object, ifindex, AttachMode, SteerConfig, SteerProgram, SteerStats, XdpMode,
    STEER_OBJECT, STEER_QUEUES,
};
pub use socket::{BindMode, DeviceStats, RingStats, SocketStats, XdpSocket, XdpSocketConfig};
pub use umem::{AccountingError, FrameAccounting, FrameLocation, FramePool, UmemConfig};
pub use wake::Waker;
pub use xsk_rs::socket::XdpStatistics;
