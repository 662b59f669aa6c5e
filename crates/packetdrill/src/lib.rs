//! xdp-tcp judged by packetdrill: a shared object implementing packetdrill's `--so_filename`
//! interface (`struct packetdrill_interface`) over one [`xdp_tcp::host::Host`] on virtual time.
//!
//! packetdrill loads the library, calls `packetdrill_interface_init` with its `--so_flags`, and
//! then routes every system call of a script here, hands over every inbound IPv4 datagram
//! (`netdev_send`), takes every outbound one (`netdev_receive`) and reads and sleeps on the
//! library's clock (`gettimeofday`, `usleep`). Nothing here reads a real clock or touches a real
//! network: time moves only when packetdrill waits or asks for a packet, so a script runs as
//! fast as the CPU allows and exactly to the microsecond.
//!
//! Layers, each using only the ones below it:
//! - `ffi`: the C entry points; the crate's only `unsafe` code, converting pointers into
//!   calls on the driver.
//! - [`Driver`]: the state behind a mutex, the clock, and calls that block (packetdrill runs a
//!   blocking call on a second thread and waits until that thread sleeps).
//! - [`Adapter`]: single-threaded state: the host, sockets (`sockets`), options (`sockopt`),
//!   readiness for poll and epoll (`readiness`), and the datagrams waiting to be sniffed.
//! - [`Profile`]: the TCP settings chosen by `--so_flags` (`linux` or `stack`).
//!
//! How to run scripts, what is supported and what the `linux` profile cannot match: the
//! README's "packetdrill" section and `deploy/conformance`.

#![deny(clippy::undocumented_unsafe_blocks)]

mod adapter;
mod driver;
mod ffi;
mod profile;
mod readiness;
mod sockets;
mod sockopt;

pub use adapter::{Adapter, Attempt, Errno, EPOCH};
pub use driver::Driver;
pub use ffi::{packetdrill_interface_init, PacketdrillInterface};
pub use profile::{Profile, ProfileKind};
pub use readiness::{EpollEvent, PollFd};
pub use sockets::{MsgFlags, SockAddr};
pub use sockopt::TCP_INFO_LEN;
