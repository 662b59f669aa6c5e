//! Tests of the sequence spaces: window scale, advertised windows, send-side bookkeeping.

use super::*;

fn s(n: u32) -> SeqNumber {
    SeqNumber(n)
}

#[test]
fn the_window_shift_covers_the_auto_tuning_ceiling() {
    let shift = |recv_buffer, recv_buffer_max| {
        let cfg = Config {
            recv_buffer,
            recv_buffer_max,
            ..Config::default()
        };
        Negotiated::offer(&cfg).rcv_wscale
    };
    // Linux's defaults (tcp_rmem 128 KiB .. 6 MiB) offer 7
    assert_eq!(shift(256 << 10, Some(6 << 20)), 7);
    assert_eq!(shift(256 << 10, None), 3);
    assert_eq!(shift(1 << 20, Some(64 << 10)), 5, "the larger of the two");
    assert_eq!(
        shift(64 << 10, Some(4 << 30)),
        14,
        "at most 14 (RFC 7323 2.3)"
    );
}

#[test]
fn options_need_both_ends() {
    let cfg = Config {
        recv_buffer: 1 << 20,
        recv_buffer_max: None,
        ..Config::default()
    };
    let mut n = Negotiated::offer(&cfg);
    assert_eq!((n.mss, n.rcv_wscale), (1460, 5));
    n.agree(&cfg, &TcpOptions::default(), 1460);
    // no options at all: RFC 9293's default MSS, no scaling either way
    assert_eq!(
        n,
        Negotiated {
            mss: 536,
            mss_clamp: 536,
            sack: false,
            timestamps: false,
            snd_wscale: 0,
            rcv_wscale: 0
        }
    );
    let mut n = Negotiated::offer(&cfg);
    let o = TcpOptions {
        mss: Some(9000),
        window_scale: Some(20),
        sack_permitted: true,
        timestamp: Some((1, 0)),
        ..TcpOptions::default()
    };
    n.agree(&cfg, &o, 1460);
    assert_eq!((n.mss, n.snd_wscale, n.rcv_wscale), (1460 - 12, 14, 5));
    assert!(n.sack && n.timestamps);
    let mut n = Negotiated::offer(&Config {
        sack: false,
        timestamps: false,
        ..cfg
    });
    n.agree(
        &Config {
            sack: false,
            timestamps: false,
            ..cfg
        },
        &o,
        1460,
    );
    assert!(!n.sack && !n.timestamps);
    assert_eq!(n.mss, 1460);
}

#[test]
fn acceptability_follows_rfc_9293_table() {
    let cfg = Config {
        recv_buffer: 100,
        ..Config::default()
    };
    let mut r = RecvSpace::new(&cfg);
    r.take_syn(&TcpRepr {
        src_port: 1,
        dst_port: 2,
        seq: s(999),
        ack: s(0),
        flags: crate::wire::TcpFlags::SYN,
        window: 100,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    });
    assert_eq!(r.nxt(), s(1000));
    assert!(r.acceptable(s(1000), 0));
    assert!(r.acceptable(s(1099), 0));
    assert!(!r.acceptable(s(1100), 0));
    assert!(!r.acceptable(s(999), 0));
    // a segment overlapping the window's left edge is acceptable
    assert!(r.acceptable(s(990), 20));
    assert!(!r.acceptable(s(980), 20));
    // nothing fits a zero window but an empty segment at RCV.NXT
    r.buf.insert(s(1000), &[0; 100]);
    assert_eq!(r.acceptance_window(), 0);
    assert!(r.acceptable(s(1100), 0));
    assert!(!r.acceptable(s(1100), 1));
}

#[test]
fn advertised_edge_never_moves_left_and_opens_by_enough() {
    let cfg = Config {
        recv_buffer: 4000,
        ..Config::default()
    };
    let mut r = RecvSpace::new(&cfg);
    assert_eq!(r.advertise(1000, 0), 4000);
    assert_eq!(r.adv, s(4000));
    r.buf.insert(s(0), &[0; 3000]);
    // 3000 bytes unread: the edge stays where it was
    assert_eq!(r.advertise(1000, 0), 1000);
    let mut out = [0; 500];
    r.buf.read(&mut out);
    // 500 bytes freed is less than min(buffer / 2, MSS): no silly window update
    assert_eq!(r.advertise(1000, 0), 1000);
    assert!(!r.window_opened(1000));
    let mut out = [0; 1000];
    r.buf.read(&mut out);
    assert!(r.window_opened(1000));
    assert_eq!(r.advertise(1000, 0), 2500);
    assert_eq!(r.adv, s(5500));
    // a scaled window that, rounded down, would end before the edge already advertised
    // rounds up instead (Linux's tcp_select_window): the peer never sees the edge move left,
    // even if the window then reaches 12 bytes past the buffer
    assert_eq!(r.advertise(1000, 4), (2500 + 15) >> 4);
    assert_eq!(r.adv, s(5512));
    // a window that opens rounds down, never past the buffer
    let mut out = [0; 1101];
    r.buf.read(&mut out);
    assert_eq!(r.buf.window(), 3601);
    assert_eq!(r.advertise(1000, 4), 3601 >> 4);
    assert_eq!(r.adv, s(6600));
}

#[test]
fn a_rounded_up_window_does_not_creep_past_a_stalled_readers_buffer() {
    // shift 7 (Linux's default tcp_rmem[2] of 6 MiB): 1448 is no multiple of 128, so
    // nearly every window rounded down would end before the edge promised and rounds up;
    // buffers of every size modulo 128 and 1448
    let shift = 7;
    for cap in (60_000..61_448).step_by(11) {
        let cfg = Config {
            recv_buffer: cap,
            ..Config::default()
        };
        let mut r = RecvSpace::new(&cfg);
        r.advertise(1448, shift);
        let end = s(cap as u32);
        let (mut seq, mut shown) = (s(0), r.adv);
        // while the reader takes nothing: a peer that sends only full segments that fit
        // (sender silly window avoidance), then one that sends up to every edge we show
        // it, then one that sends a byte at a time, which would move a compounding edge
        // 127 bytes a segment
        let full = std::iter::repeat_n((1448, true), 100);
        let any = std::iter::repeat_n((1448, false), 10);
        for (len, whole) in full.chain(any).chain(std::iter::repeat_n((1, false), 300)) {
            let room = r.adv.diff(seq).max(0) as usize;
            let n = if whole && room < len {
                0
            } else {
                len.min(room)
            };
            if n > 0 {
                r.buf.insert_before(seq, &vec![7; n], r.adv);
                seq += n;
            }
            let wnd = r.advertise(1448, shift);
            let edge = r.nxt() + (usize::from(wnd) << shift);
            assert!(
                edge.diff(shown.min(end)) >= 0,
                "{cap}: the edge shown moves left only from past the buffer's end, and \
                 not past it: {shown} to {edge}"
            );
            shown = edge;
            assert!(
                r.adv.diff(end) < 1 << shift,
                "{cap}: the edge stays within one step of the buffer's end"
            );
            assert_eq!(
                r.buf.len(),
                seq - s(0),
                "{cap}: the buffer took what was shown"
            );
        }
        assert_eq!(r.nxt(), r.adv, "{cap}: every byte shown was taken");
        assert_eq!(
            r.advertise(1448, shift),
            0,
            "{cap}: and the window is then shut"
        );
    }
}

#[test]
fn send_space_fin_and_window_updates() {
    let mut snd = SendSpace::new(s(100), 1000);
    // the SYN sent and acknowledged
    snd.max = s(101);
    snd.high = s(101);
    assert_eq!(snd.ack_to(s(101)), 0);
    assert_eq!((snd.una, snd.nxt), (s(101), s(101)));
    assert_eq!(snd.buf.write(b"abc"), 3);
    assert_eq!(snd.unsent(), 3);
    snd.nxt = s(104);
    snd.max = s(104);
    snd.high = s(104);
    assert_eq!((snd.in_flight(), snd.unsent()), (3, 0));
    snd.fin_queued = true;
    assert!(snd.fin_pending() && !snd.fin_acked());
    snd.nxt = s(105);
    snd.max = s(105);
    snd.high = s(105);
    assert!(!snd.fin_pending());
    assert_eq!(snd.ack_to(s(104)), 3);
    assert!(!snd.fin_acked());
    snd.ack_to(s(105));
    assert!(snd.fin_acked());
    // the window is taken only from newer segments
    assert!(snd.updates_window(s(7), s(105), 500));
    snd.set_window(500, s(7));
    assert!(!snd.updates_window(s(6), s(105), 600));
    assert!(!snd.updates_window(s(7), s(104), 600));
    assert!(snd.updates_window(s(7), s(105), 600));
    snd.set_window(200, s(8));
    assert_eq!((snd.wnd, snd.max_wnd), (200, 500));
    // the same segment again, reordered: only a grown or closed window is news
    assert!(!snd.updates_window(s(8), s(105), 100));
    assert!(snd.updates_window(s(8), s(105), 0));
    // acceptable ACKs: from a window below una to max
    assert!(snd.ack_acceptable(s(105)) && snd.ack_acceptable(s(105) - 500));
    assert!(!snd.ack_acceptable(s(106)) && !snd.ack_acceptable(s(105) - 501));
    // an ACK that advances brings its window, however old its sequence number
    snd.max = s(205);
    snd.nxt = s(205);
    snd.high = s(205);
    assert!(snd.updates_window(s(2), s(106), 100));
    assert_eq!(snd.right_edge(), s(305));
    assert_eq!(snd.acceptable_seq(), s(205));
    snd.set_window(50, s(2));
    assert_eq!(snd.acceptable_seq(), s(155), "the right edge, not beyond");
}

#[test]
fn advertise_matches_the_general_computation() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..20_000 {
        let cap = [0, 1, 100, 1448, 4000, 65_535, 65_536, 300_000, 6 << 20][next(9) as usize];
        let shift = next(15) as u8;
        let mss = 1 + next(2000) as usize;
        let base = next(u64::from(u32::MAX)) as u32;
        let held = if cap > 0 && next(2) == 0 {
            next(cap.min(5000) as u64 + 1) as usize
        } else {
            0
        };
        let step = 1i64 << shift;
        let promise = next(cap as u64 + 1) as i64 + next(3) as i64 * step - step;
        let adv = next(cap as u64 + 1) as i64 + next(3) as i64 * step - step;
        let fin_consumed = next(8) == 0;
        let make = || {
            let cfg = Config {
                recv_buffer: cap,
                ..Config::default()
            };
            let mut r = RecvSpace::new(&cfg);
            r.buf = crate::tcp::recv::RecvBuffer::new(cap, s(base), 4);
            r.buf.insert(s(base), &vec![0; held]);
            r.fin_consumed = fin_consumed;
            r.promise = s(base) + held + promise.max(0) as usize - (-promise).max(0) as usize;
            r.adv = s(base) + held + adv.max(0) as usize - (-adv).max(0) as usize;
            r
        };
        let (mut fast, mut general) = (make(), make());
        let case = (cap, shift, mss, held, promise, adv, fin_consumed);
        assert_eq!(
            fast.advertise(mss, shift),
            general.advertise_general(mss, shift),
            "{case:?}"
        );
        assert_eq!(
            (fast.promise, fast.adv),
            (general.promise, general.adv),
            "{case:?}"
        );
    }
}
