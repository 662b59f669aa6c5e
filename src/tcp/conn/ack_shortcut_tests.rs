//! `process_ack`'s shortcut for an acknowledgement with nothing in flight, held against the
//! general path: two connections get the same random segments, application calls and timer
//! firings at the same times, one with the shortcut and one without, and must stay identical
//! in everything they send, raise and hold.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::input::{GENERAL_ACK_PATH_ONLY, SHORTCUTS_TAKEN};
use super::testing::*;
use super::Connection;
use crate::tcp::config::Config;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpFlags, TcpRepr};

fn with_path<R>(general: bool, f: impl FnOnce() -> R) -> R {
    GENERAL_ACK_PATH_ONLY.with(|g| g.set(general));
    let r = f();
    GENERAL_ACK_PATH_ONLY.with(|g| g.set(false));
    r
}

/// Everything a connection shows: what it sends (drained), its events, its timer and its whole
/// state (Debug covers every field).
fn drain(c: &mut Connection, now: Instant) -> String {
    let mut out = String::new();
    while let Some(t) = c.poll_transmit(now) {
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
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sack = rng.gen_bool(0.5);
        let cfg = Config {
            timestamps: false,
            send_buffer: 8 << 10,
            recv_buffer: 16 << 10,
            ..Config::default()
        };
        let mut fast = established(cfg, sack);
        let mut general = established(cfg, sack);
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
            assert_eq!(drain(&mut fast, t), drain(&mut general, t), "seed {seed}");
        }
    }
    // the shortcut's case came up often enough to mean something
    let shortcuts = SHORTCUTS_TAKEN.with(std::cell::Cell::get);
    assert!(shortcuts > 1000, "{shortcuts}");
}
