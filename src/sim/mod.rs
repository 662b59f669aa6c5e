//! Deterministic simulation on a virtual clock: no threads, no sleeping, no real time.
//!
//! Every random decision comes from a seeded ChaCha generator, so a run is a pure function of its
//! seed and its inputs, and a failing seed replays exactly.

pub mod link;
pub mod network;
pub mod router;
