//! The sans-IO TCP connection (RFC 9293) and what it needs: buffers, reassembly, RTT estimation,
//! congestion control, initial sequence numbers.
//!
//! A [`Connection`] never reads a clock and never does I/O. Feed it segments with
//! [`Connection::handle_segment`] and expired timers with [`Connection::handle_timers`] (the
//! kinds a timer wheel found expired) or [`Connection::handle_timeout`]; take segments out with
//! [`Connection::poll_transmit`] (then [`Transmit::write_segment`] writes the whole segment,
//! payload copied straight from the send buffer, into the outgoing frame), application events
//! with [`Connection::poll_event`], and deadlines from [`Connection::timers`] or
//! [`Connection::poll_timeout`].
//!
//! Inside, the connection is split by owned sub-state, each module stating its invariants:
//! `conn/` the state machine (`input`, `output`, `timer`, `app`, and the sequence spaces in
//! `space`), `timers` the table of deadlines keyed by [`TimerKind`], `recovery/` loss detection
//! and recovery (RACK, tail loss probe, NewReno, D-SACK) over the `scoreboard`, `keepalive`,
//! `stats`, `timestamps` (RFC 7323), `congestion/`, and the send and receive buffers (`send`, `recv`, `reassembly`).

mod config;
mod congestion;
mod conn;
pub mod cookie;
mod event;
pub mod isn;
mod keepalive;
mod reassembly;
mod recovery;
mod recv;
mod rtt;
mod scoreboard;
pub mod secret;
mod send;
mod state;
mod stats;
mod timers;
mod timestamps;

pub use config::{Config, KeepAlive};
pub use congestion::Algorithm;
pub use conn::{reset_for, Connection, PayloadSink, Transmit, CORK_LIMIT, MIN_PMTU};
pub use event::{Error, Event};
pub use rtt::RttEstimator;
pub use secret::Secret;
pub use state::State;
pub use stats::{ConnStats, TcpInfo};
pub use timers::{TimerKind, TimerSet, Timers};
