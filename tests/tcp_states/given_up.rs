//! How a connection gives up, and how it waits on a shut window, as Linux does (the three
//! stack bugs the packetdrill scripts `keepalive/probes-then-timeout.pkt`,
//! `close/data-after-close-resets.pkt` and `persist/zero-window-probe.pkt` found):
//! - a keep-alive timeout resets the connection with RST (Linux's `tcp_keepalive_timer` calls
//!   `tcp_send_active_reset` before `tcp_write_err`);
//! - new data for a connection its application closed (or shut down for reading) in FIN-WAIT-1
//!   or FIN-WAIT-2 is answered by RST and the connection aborted (RFC 1122 4.2.2.13, Linux's
//!   `TCPAbortOnData`); data after a mere half-close still flows in (see `fin_wait_2`);
//! - zero-window probes back off: the persist timer alone watches the shut window, its interval
//!   doubled per probe up to the maximum RTO, with no tail loss probe or RTO in between.

use super::fin_wait_2::fin_wait_2;
use super::*;
use xdp_tcp::tcp::{KeepAlive, TimerKind};

mod keepalive {
    use super::*;

    #[test]
    fn timeout_resets_the_peer_with_rst_ack() {
        let cfg = Config {
            keepalive: Some(KeepAlive {
                idle: Duration::from_secs(10),
                interval: Duration::from_secs(5),
                count: 3,
            }),
            ..cfg()
        };
        let mut t = open(cfg, 65535);
        // last heard from the peer at 100 ms: probes (snd_una - 1) after 10 s, then every 5 s
        let probe = seg!(> ., seq ISS, ack IRS + 1, win 65535);
        t.fire(10_100).expect(probe).expect_nothing();
        t.fire(15_100).expect(probe).expect_nothing();
        t.fire(20_100).expect(probe).expect_nothing();
        assert_eq!(t.state(), State::Established);
        // three unanswered: the connection is reset, and the peer told so
        t.fire(25_100)
            .expect(seg!(> R., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Error(Error::TimedOut), Event::Closed]);
        assert_eq!(t.state(), State::Closed);
        assert!(t.c.is_closed());
        assert_eq!(t.deadline(), None);
        assert_eq!(t.c.stats().keepalive_probes, 3);
        assert_eq!(t.c.stats().rst_out, 1);
        assert_eq!(t.c.take_error(), Some(Error::TimedOut));
    }

    #[test]
    fn the_reset_carries_an_acceptable_sequence_number_and_our_timestamp() {
        let cfg = Config {
            keepalive: Some(KeepAlive {
                idle: Duration::from_secs(1),
                interval: Duration::from_secs(1),
                count: 1,
            }),
            timestamps: true,
            ..cfg()
        };
        let mut t = Tcp::connect(cfg);
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, ts (ts(0)) 0));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 65535, mss 1460, ts 700 (ts(0))))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(100)) 700))
            .expect_events(&[Event::Connected]);
        // the peer took 5 bytes and shut its window at once: nothing more can go
        t.c.send(b"hello").unwrap();
        t.at(150)
            .expect(seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, ts (ts(150)) 700, "hello"));
        t.at(200)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 6, win 0, ts 710 (ts(150))))
            .expect_nothing();
        t.fire(1200)
            .expect(seg!(> ., seq ISS + 5, ack IRS + 1, win 65535, ts (ts(1200)) 710))
            .expect_nothing();
        t.fire(2200)
            .expect(seg!(> R., seq ISS + 6, ack IRS + 1, win 65535, ts (ts(2200)) 710))
            .expect_nothing();
        assert_eq!(t.state(), State::Closed);
    }
}

mod data_after_close {
    use super::*;

    #[test]
    fn in_fin_wait_2_is_answered_by_rst_and_aborts() {
        let mut t = fin_wait_2();
        t.c.orphan();
        t.at(400)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 2, win 65535, "more data"))
            // the RST answers the segment: at its acknowledgment number, no ACK
            .expect(seg!(> R, seq ISS + 2))
            .expect_nothing()
            .expect_events(&[Event::Error(Error::Reset), Event::Closed]);
        assert_eq!(t.state(), State::Closed);
        assert!(t.c.is_closed());
        assert_eq!(t.deadline(), None);
        assert_eq!(t.c.stats().abort_on_data, 1);
        assert_eq!(t.c.stats().bytes_in, 0, "nothing was taken");
    }

    #[test]
    fn in_fin_wait_1_is_answered_by_rst_and_aborts() {
        let mut t = established();
        t.at(200).c.close();
        t.c.orphan();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 1, win 65535));
        // data that does not acknowledge our FIN yet
        t.at(300)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "late"))
            .expect(seg!(> R, seq ISS + 1))
            .expect_nothing()
            .expect_events(&[Event::Error(Error::Reset), Event::Closed]);
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn after_shutdown_of_both_directions_too() {
        // not given up, but nobody will read: Linux's RCV_SHUTDOWN, and the error is reported
        let mut t = fin_wait_2();
        t.c.shutdown_read();
        t.at(400)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 2, win 65535, "x"))
            .expect(seg!(> R, seq ISS + 2))
            .expect_nothing()
            .expect_events(&[Event::Error(Error::Reset), Event::Closed]);
        assert_eq!(t.c.take_error(), Some(Error::Reset));
    }

    #[test]
    fn old_data_and_a_bare_fin_are_no_reason_to_reset() {
        let mut t = established();
        t.at(150)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 1, win 65535, "hi"));
        assert_eq!(t.read_all(), b"hi");
        t.at(200).c.close();
        t.c.orphan();
        t.expect(seg!(> F., seq ISS + 1, ack IRS + 3, win 65535));
        t.at(300)
            .inject(seg!(< ., seq IRS + 3, ack ISS + 2, win 65535));
        assert_eq!(t.state(), State::FinWait2);
        // a retransmission of what was delivered: a duplicate ACK, as always
        t.at(400)
            .inject(seg!(< P., seq IRS + 1, ack ISS + 2, win 65535, "hi"))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 3, win 65535))
            .expect_nothing();
        // the peer's FIN alone ends it the usual way
        t.at(500)
            .inject(seg!(< F., seq IRS + 3, ack ISS + 2, win 65535))
            .expect(seg!(> ., seq ISS + 2, ack IRS + 4, win 65534))
            .expect_nothing();
        assert_eq!(t.state(), State::TimeWait);
        assert_eq!(t.c.stats().abort_on_data, 0);
        assert_eq!(t.c.stats().rst_out, 0);
    }
}

mod persist {
    use super::*;

    /// Established at 100 ms with SACK on (so a tail loss probe could be armed), the peer's
    /// window shut from its SYN-ACK on; 1000 bytes written at 100 ms. The RTO is 1 s.
    fn shut_from_the_start(rto_max: Duration) -> Tcp {
        let cfg = Config {
            sack: true,
            rto_max,
            ..cfg()
        };
        let mut t = Tcp::connect(cfg);
        t.expect(seg!(> S, seq ISS, win 65535, mss 1460, sackOK));
        t.at(100)
            .inject(seg!(< S., seq IRS, ack ISS + 1, win 0, mss 1460, sackOK))
            .expect(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535))
            .expect_nothing()
            .expect_events(&[Event::Connected]);
        assert!(t.c.sack_enabled());
        t.c.send(&pattern(1000)).unwrap();
        t.expect_nothing();
        t
    }

    #[test]
    fn zero_window_probes_back_off_with_no_tail_loss_probe() {
        let mut t = shut_from_the_start(Duration::from_secs(60));
        let data = pattern(1000);
        let probe = seg!(> P., seq ISS + 1, ack IRS + 1, win 65535, data &data[..1]);
        // one RTO, then doubling: 1 s, 2 s, 4 s, 8 s
        let mut at = 100;
        for gap in [1000, 2000, 4000, 8000] {
            at += gap;
            t.fire(at).expect(probe).expect_nothing();
            assert_eq!(t.c.timers().get(TimerKind::TailLossProbe), None);
            assert_eq!(t.c.timers().get(TimerKind::Rto), None);
        }
        assert_eq!(t.deadline(), Some(ms(at + 16_000)));
        let st = t.c.stats();
        assert_eq!(st.zero_window_probes, 4);
        assert_eq!((st.tlp_probes, st.rto_events), (0, 0));
        assert_eq!(
            t.c.cwnd(),
            10 * 1460,
            "a probe the peer drops is no congestion signal"
        );
        // the peer takes the byte and opens its window: the rest follows at once
        t.at(at + 100)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 2, win 65535))
            .expect(seg!(> P., seq ISS + 2, ack IRS + 1, win 65535, data &data[1..]))
            .expect_nothing();
        // and with data in flight in an open window, the RTO and the tail loss probe are back
        assert_eq!(t.c.timers().get(TimerKind::Rto), Some(ms(at + 1100)));
        assert_eq!(
            t.c.timers().get(TimerKind::TailLossProbe),
            Some(ms(at + 500))
        );
        assert_eq!(t.c.timers().get(TimerKind::Persist), None);
    }

    #[test]
    fn the_probe_interval_stops_growing_at_the_maximum_rto() {
        let mut t = shut_from_the_start(Duration::from_secs(4));
        let mut at = 100;
        for gap in [1000, 2000, 4000, 4000, 4000] {
            at += gap;
            t.fire(at).next().expect("a probe");
            t.expect_nothing();
        }
        // answered with the window still shut: the series of timeouts starts again
        t.at(at + 50)
            .inject(seg!(< ., seq IRS + 1, ack ISS + 1, win 0));
        assert_eq!(t.deadline(), Some(ms(at + 4000)));
        assert_eq!(t.state(), State::Established);
    }
}
