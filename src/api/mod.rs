//! What applications link against: two ways to use the stack, one error model.
//!
//! - **Run to completion** ([`Handler`], [`Cx`], [`HandlerApp`]): callbacks per listener run
//!   inside an engine's loop on its core and read and write the connection buffers in place.
//!   No thread hop, no queue, no copy beyond the stack's own (frame to receive buffer, send
//!   buffer to frame). The way to low latency.
//! - **std::net-like** ([`TcpListener`], [`TcpStream`]): blocking or non-blocking sockets for
//!   application threads, with `Read`/`Write`, timeouts, `peek`, `MSG_WAITALL`/`MSG_MORE`-like
//!   flags, shutdown, buffer sizes and `SO_ERROR`. Each call crosses to the engine's core
//!   through crossbeam channels (one command queue per engine, one event channel per socket;
//!   no lock on the engine's side); credits in atomics bound what either side buffers (see
//!   `shared.rs`). A write copies each byte once: into a buffer that the connection's send
//!   buffer then keeps as it is. A read copies each byte three times: frame to receive buffer,
//!   receive buffer to a message, message to the caller ([`TcpStream::copies`] counts them).
//!   Every call takes `&self`: threads share `&Stack` and `&TcpStream`, or split a stream
//!   into owned halves, and each stream has a pollable readiness eventfd.
//! - **tokio** (cargo feature `tokio`, module `api::tokio`): the same sockets as
//!   `AsyncRead`/`AsyncWrite` streams and an async listener, woken by the engine through
//!   wakers.
//!
//! Inside, the threaded API has two sides that meet only in the types of `shared.rs`: the
//! engine-side bridge (`bridge.rs`, an [`crate::engine::App`] in every engine) sends messages,
//! including an `Accepted` for each connection a listener gets, and the user side
//! ([`stream`], [`listener`]) builds its sockets from them; [`stack`] starts the engines with the
//! bridge. No module imports one that imports it back. Every handle to one connection (its
//! clones, halves, the async stream) shares one user side, `sock.rs`.
//!
//! Both come from a [`Stack`] built by [`StackBuilder`]: on an interface with AF_XDP and the
//! XDP steering program, or over any [`crate::io::PacketIo`] (such as the in-memory
//! [`crate::io::mem::pair`]) for tests without root.
//!
//! Errors are `std::io::Error`s with Linux's errno and `ErrorKind` ([`error`]): `Ok(0)` after
//! the peer's FIN, `ECONNRESET`, `EPIPE` (never a signal), `ETIMEDOUT`, `ECONNREFUSED`,
//! `EHOSTUNREACH`, `EAGAIN`, `ENOTCONN`. As in Linux, a connection's error is reported once
//! (by the next read, write or [`TcpStream::take_error`]); after it reads return `Ok(0)` and
//! writes `EPIPE`.
//!
//! Limitation: active opens run on the first engine. With several queues the NIC's RSS hash may
//! steer a connection's return traffic to another queue, whose engine does not know it; use a
//! single queue for clients until flow steering (or a connection hand-off) exists.
#![warn(missing_docs)]

mod bridge;
pub mod capture;
mod control;
pub mod error;
pub mod handler;
mod linger;
pub mod listener;
mod shared;
mod sock;
pub mod stack;
pub mod stats;
pub mod stream;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use crate::tcp::KeepAlive;
pub use capture::{CaptureOptions, CaptureState, CaptureStatus};
pub use handler::{Cx, Handler, HandlerApp, Lent};
pub use listener::TcpListener;
pub use stack::{Device, EngineReport, Stack, StackBuilder};
pub use stats::StackStats;
pub use stream::{Copies, OwnedReadHalf, OwnedWriteHalf, RecvFlags, SendFlags, TcpStream};
