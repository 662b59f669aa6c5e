//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`, on
//! nightly) and by the stable replay test (`tests/fuzz_replay.rs` includes this file as a
//! module), so a committed corpus or crash input runs the same code in both.
//!
//! Each function takes the fuzzer's raw bytes and panics on a broken invariant:
//! - the wire targets parse, and where a `Repr` exists emit what they parsed and parse it back
//!   to the same value (with a checksum that verifies);
//! - [`host`] drives one `Host` (a listener and an established connection) with segments built
//!   from the input against the live connection's sequence space (see `host.rs`);
//! - [`pair`] runs a connection pair whose every packet the input drops, duplicates, delays
//!   or corrupts, then checks byte-exact delivery (see `pair.rs`).

mod host;
mod pair;
mod wire;

pub use host::{host, host_lending};
pub use pair::pair;
pub use wire::{arp, ethernet, icmpv4, ipv4, tcp, tcp_options};
