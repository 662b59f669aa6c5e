//! Timers of one core: RTO, delayed ACK, persist, keep-alive, TIME_WAIT, SYN-RECEIVED expiry.
//!
//! One [`TimerWheel`] per core holds every timer of that core's connections. It never reads a
//! clock: the engine passes `now` in, asks [`TimerWheel::next_expiry`] how long it may sleep,
//! and drains [`TimerWheel::poll_expired`] each time round its loop. A timer's token is opaque
//! to the wheel; callers pack a connection id and a timer kind into it.

mod wheel;

pub use wheel::{TimerId, TimerWheel};
