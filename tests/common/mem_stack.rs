//! Whole [`Stack`]s on the in-memory cable, as the API tests drive them: a builder with a short
//! shutdown grace and an engine that sleeps when idle (two stacks share this machine's cores),
//! and a client/server pair on one cable. The MAC is `02:NN:00:00:00:LL` for address
//! `10.NN.x.LL`.

use std::net::Ipv4Addr;
use std::time::Duration;

use xdp_tcp::api::{Device, Stack, StackBuilder};
use xdp_tcp::engine::{EngineConfig, IdleBackoff};
use xdp_tcp::io::mem::{self, Cable, ChanIo};
use xdp_tcp::wire::EthernetAddress;

pub fn builder(addr: Ipv4Addr) -> StackBuilder {
    Stack::builder()
        .addr(addr, 24)
        .shutdown_grace(Duration::from_millis(200))
        .engine_config(EngineConfig {
            idle: Some(IdleBackoff {
                after: 64,
                max_sleep: Duration::from_millis(5),
            }),
            ..Default::default()
        })
}

/// Starts `b` on `io` with the MAC of address `addr`.
pub fn start(b: StackBuilder, io: ChanIo, addr: Ipv4Addr) -> Stack {
    let [_, net, _, last] = addr.octets();
    b.start_on(vec![Device {
        waker: Some(io.waker()),
        io,
        mac: EthernetAddress([2, net, 0, 0, 0, last]),
    }])
    .expect("start stack")
}

/// A client on `c` and a server on `s` joined by one cable of 4096 frames each way.
pub fn pair(
    (client, c): (StackBuilder, Ipv4Addr),
    (server, s): (StackBuilder, Ipv4Addr),
) -> (Stack, Stack, Cable) {
    let (a, b, link) = mem::pair(4096);
    (start(client, a, c), start(server, b, s), link)
}

/// The bytes stream `seed` carries: its own (xorshift from the seed), so that a mix-up between
/// streams shows.
pub fn payload(seed: usize, len: usize) -> Vec<u8> {
    let mut x = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
