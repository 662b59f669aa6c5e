//! `process_ack`'s shortcuts (for an acknowledgement with nothing in flight, and for one of
//! everything in flight), held against the general path: two connections get the same random
//! segments, application calls and timer firings at the same times, one with the shortcuts and
//! one without, and must stay identical in everything they send, raise and hold. Half the seeds
//! run with timestamps (as every ping-pong segment has them), the peer echoing what we sent.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ack::{GENERAL_ACK_PATH_ONLY, SHORTCUTS_TAKEN, WHOLE_FLIGHT_SHORTCUTS_TAKEN};
use super::testing::*;
use super::Connection;
use crate::tcp::config::Config;
use crate::tcp::state::State;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

fn with_path<R>(general: bool, f: impl FnOnce() -> R) -> R {
    GENERAL_ACK_PATH_ONLY.with(|g| g.set(general));
    let r = f();
    GENERAL_ACK_PATH_ONLY.with(|g| g.set(false));
    r
}

/// [`established`], with timestamps agreed if `timestamps` (the SYN-ACK echoing our SYN's).
fn established_with(cfg: Config, sack: bool, timestamps: bool) -> Connection {
    if !timestamps {
        return established(cfg, sack);
    }
    let mut c = Connection::connect(cfg, US, PEER, ISS);
    let mut ecr = 0;
    while let Some(t) = c.poll_transmit(ms(0)) {
        ecr = t.repr.options.timestamp.expect("a SYN with timestamps").0;
    }
    let mut syn_ack = from_peer(IRS, ISS + 1, TcpFlags::SYN | TcpFlags::ACK);
    syn_ack.options.mss = Some(1460);
    syn_ack.options.sack_permitted = sack;
    syn_ack.options.timestamp = Some((1, ecr));
    c.handle_segment(ms(100), *PEER.ip(), &syn_ack);
    while c.poll_transmit(ms(100)).is_some() {}
    while c.poll_event().is_some() {}
    assert_eq!(c.state(), State::Established);
    c
}

/// Everything a connection shows: what it sends (drained), its events, its timer and its whole
/// state (Debug covers every field). `echo` takes the newest timestamp sent.
fn drain(c: &mut Connection, now: Instant, echo: &mut u32) -> String {
    let mut out = String::new();
    while let Some(t) = c.poll_transmit(now) {
        if let Some((val, _)) = t.repr.options.timestamp {
            *echo = val;
        }
        out += &format!("{t:?}\n");
    }
    while let Some(e) = c.poll_event() {
        out += &format!("{e:?}\n");
    }
    out += &format!("{:?}\n{c:?}", c.poll_timeout());
    out
}

#[test]
fn the_shortcut_leaves_every_connection_as_the_general_path_would() {
    for seed in 0..80u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sack = rng.gen_bool(0.5);
        let timestamps = seed % 2 == 1;
        let cfg = Config {
            timestamps,
            send_buffer: 8 << 10,
            recv_buffer: 16 << 10,
            ..Config::default()
        };
        let mut fast = established_with(cfg, sack, timestamps);
        let mut general = established_with(cfg, sack, timestamps);
        // the newest timestamp each sent, and the one the peer echoes
        let (mut echo, mut echo_general) = (0u32, 0u32);
        let payload = [7u8; 1460];
        let mut peer_seq = IRS + 1;
        let mut now = 100u64;
        for _ in 0..400 {
            now += rng.gen_range(0..30);
            let t = ms(now);
            match rng.gen_range(0..10) {
                // the application sends or reads, so data is sometimes in flight
                0 => {
                    let n = rng.gen_range(1..3000);
                    let a = fast.send(&payload[..n.min(1460)]);
                    let b = general.send(&payload[..n.min(1460)]);
                    assert_eq!(a, b);
                }
                1 => {
                    let mut buf = [0u8; 4096];
                    assert_eq!(fast.recv(&mut buf), general.recv(&mut buf));
                }
                // a timer fires (whichever is due)
                2 => {
                    fast.handle_timeout(t);
                    general.handle_timeout(t);
                }
                // a segment from the peer: data in or out of order, acknowledging anything
                // from a little behind what we sent to all of it, any window, sometimes with a
                // SACK block
                _ => {
                    let una = fast.snd_una();
                    let max = una + fast.bytes_in_flight();
                    let ack = match rng.gen_range(0..4) {
                        0 => una,
                        1 => max,
                        2 => una + rng.gen_range(0..=fast.bytes_in_flight()),
                        _ => SeqNumber(una.0.wrapping_sub(rng.gen_range(0..100))),
                    };
                    let len = [0, 1, 100, 1460][rng.gen_range(0..4)];
                    let seq = match rng.gen_range(0..5) {
                        0 => peer_seq + 1460,
                        1 => SeqNumber(peer_seq.0.wrapping_sub(500)),
                        _ => peer_seq,
                    };
                    let mut seg: TcpRepr = from_peer(seq, ack, TcpFlags::ACK);
                    seg.window = [0, 1000, 65535][rng.gen_range(0..3)];
                    seg.payload = &payload[..len];
                    if timestamps {
                        // the peer's clock, and an echo of our newest timestamp or an older one
                        let ecr = echo.wrapping_sub([0, 0, 0, 1, 50][rng.gen_range(0..5)]);
                        seg.options.timestamp = Some((now as u32, ecr));
                    }
                    if sack && rng.gen_bool(0.1) {
                        seg.options.sack_blocks[0] = (una, una + 10);
                        seg.options.sack_len = 1;
                    }
                    if seq == peer_seq {
                        peer_seq += len;
                    }
                    with_path(false, || fast.handle_segment(t, *PEER.ip(), &seg));
                    with_path(true, || general.handle_segment(t, *PEER.ip(), &seg));
                }
            }
            assert_eq!(
                drain(&mut fast, t, &mut echo),
                drain(&mut general, t, &mut echo_general),
                "seed {seed}"
            );
        }
    }
    // each shortcut's case came up often enough to mean something
    let shortcuts = SHORTCUTS_TAKEN.with(std::cell::Cell::get);
    assert!(shortcuts > 1000, "{shortcuts}");
    let whole_flight = WHOLE_FLIGHT_SHORTCUTS_TAKEN.with(std::cell::Cell::get);
    assert!(whole_flight > 500, "{whole_flight}");
}
