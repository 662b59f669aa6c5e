//! Output with the cork: what goes out while corked, and what releases it.

use super::super::testing::{established, from_peer, ms, IRS, ISS};
use super::super::CORK_LIMIT;
use super::*;
use crate::tcp::config::Config;

/// Payload lengths of everything sent at `now`.
fn sent(c: &mut Connection, now: Instant) -> Vec<usize> {
    std::iter::from_fn(|| c.poll_transmit(now))
        .map(|t| t.payload_len)
        .collect()
}

fn nodelay() -> Connection {
    established(
        Config {
            nodelay: true,
            ..Config::default()
        },
        false,
    )
}

#[test]
fn corked_only_full_segments_go_until_uncorked() {
    let mut c = nodelay();
    let mss = c.mss();
    c.set_cork(ms(100), true);
    assert!(c.is_corked());
    c.send(&[1; 100]).unwrap();
    assert_eq!(sent(&mut c, ms(100)), [0; 0], "a partial segment waits");
    c.send(&vec![2; 2 * mss]).unwrap();
    assert_eq!(sent(&mut c, ms(110)), [mss, mss]);
    c.set_cork(ms(120), false);
    assert!(!c.is_corked());
    assert_eq!(c.timers().get(TimerKind::Cork), None);
    assert_eq!(sent(&mut c, ms(120)), [100]);
}

#[test]
fn the_cork_timer_releases_the_rest_after_200_ms() {
    let mut c = nodelay();
    c.set_cork(ms(100), true);
    c.send(&[1; 10]).unwrap();
    assert_eq!(sent(&mut c, ms(100)), [0; 0]);
    // corking again does not extend the limit
    c.set_cork(ms(150), true);
    c.send(&[2; 10]).unwrap();
    assert_eq!(c.poll_timeout(), Some(ms(100) + CORK_LIMIT));
    c.handle_timeout(ms(300));
    assert!(!c.is_corked());
    assert_eq!(sent(&mut c, ms(300)), [20]);
    assert_eq!(c.timers().get(TimerKind::Cork), None);
}

#[test]
fn our_fin_releases_corked_bytes() {
    let mut c = nodelay();
    c.set_cork(ms(100), true);
    c.send(&[1; 10]).unwrap();
    assert_eq!(sent(&mut c, ms(100)), [0; 0]);
    c.close();
    assert!(!c.is_corked());
    let t = c.poll_transmit(ms(100)).expect("data and FIN");
    assert_eq!(t.payload_len, 10);
    assert!(t.repr.flags.fin());
    // nothing to cork once the FIN is queued
    c.set_cork(ms(110), true);
    assert!(!c.is_corked());
    assert_eq!(c.timers().get(TimerKind::Cork), None);
}

#[test]
fn uncorked_data_still_waits_for_nagle() {
    let mut c = established(Config::default(), false);
    let mss = c.mss();
    c.set_cork(ms(100), true);
    c.send(&vec![1; mss + 10]).unwrap();
    assert_eq!(sent(&mut c, ms(100)), [mss]);
    c.set_cork(ms(110), false);
    // a full segment is unacknowledged: Nagle holds the small rest until the ACK
    assert_eq!(sent(&mut c, ms(110)), [0; 0]);
    let ack = from_peer(IRS + 1, ISS + 1 + mss, TcpFlags::ACK);
    c.handle_segment(ms(200), *super::super::testing::PEER.ip(), &ack);
    assert_eq!(sent(&mut c, ms(200)), [10]);
}

#[test]
fn no_probe_takes_corked_bytes() {
    let mut c = established(Config::default(), true);
    let mss = c.mss();
    c.send(&vec![1; mss]).unwrap();
    assert_eq!(sent(&mut c, ms(100)), [mss]);
    c.set_cork(ms(100), true);
    c.send(&[2; 10]).unwrap();
    // the tail loss probe resends the last segment rather than send the corked bytes
    let probe = c
        .timers()
        .get(TimerKind::TailLossProbe)
        .expect("probe armed");
    c.handle_timers(probe, TimerKind::TailLossProbe.into());
    let t = c.poll_transmit(probe).expect("the probe");
    assert_eq!((t.repr.seq, t.payload_len), (ISS + 1, mss));
}
