//! xdp-tcp: a kernel-bypass TCP/IP stack on AF_XDP.
//!
//! Layers, dependencies pointing down only:
//!
//! | module | role | never touches |
//! |---|---|---|
//! | [`wire`] | zero-copy views and `Repr`s of Ethernet, ARP, IPv4, ICMPv4, TCP; checksums | anything above |
//! | [`tcp`] | the sans-IO connection: RFC 9293 state machine, buffers, retransmission | clocks, I/O, threads |
//! | [`host`] | a host: 4-tuple demux, listen table, RST for strays, IPv4 framing | I/O |
//! | [`rss`] | Toeplitz hash, indirection tables, which engine owns a flow, the port chooser | I/O |
//! | [`neigh`] | routes, ARP/neighbour cache, held packets; [`neigh::netlink`] reads the kernel's tables | I/O (except `neigh::netlink`) |
//! | [`io`] | batched packet I/O: AF_XDP, in-memory devices, pcap tap, fault injector | TCP internals |
//! | [`engine`] | the per-core loop joining a socket to a host; the only clock reader | — |
//! | [`api`] | what applications link against: run-to-completion handlers, std-like sockets, the stack's start and shutdown | — |
//! | [`sim`] | deterministic network on a virtual clock, seeded faults | real time |
//!
//! The protocol core is sans-IO: inputs are `handle_*(now, ...)`, outputs `poll_*()`, and
//! `poll_timeout()` gives the next deadline. Only the engine reads a clock.

pub mod api;
pub mod engine;
pub mod host;
pub mod io;
pub mod neigh;
pub mod rss;
pub mod sim;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod wire;

pub use time::{Duration, Instant};
