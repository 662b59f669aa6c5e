//! An RST received in each state of the connection, as one table (RFC 9293 3.10.7, RFC 5961 3).
//!
//! A row names the state, a function that brings a connection there, the RSTs the peer sends
//! (one after the other) and the [`Outcome`]; [`run`] checks every row the same way. Each row is a
//! test function of its own (its name after the test attribute), so each fails on its own. LISTEN
//! is the host's, not a connection's: its RST is tested in `listen::rst_is_ignored`.

use super::close_wait::close_wait;
use super::closed::closed;
use super::closing::closing;
use super::fin_wait_2::fin_wait_2;
use super::time_wait::{time_wait, time_wait_without_rfc1337};
use super::*;

/// What an RST does to the connection. Each is checked in full by [`run`].
enum Outcome {
    /// Dropped: nothing sent after any of the RSTs, and the state, timers, events and the
    /// challenge-ACK counter unchanged.
    Ignored,
    /// In the window but not exact (RFC 5961 3.2): answered with exactly this ACK, counted as one
    /// challenge ACK; state, timers and events unchanged.
    ChallengeAck(TcpRepr<'static>),
    /// The connection is reset with this error: nothing sent, CLOSED and released, the error
    /// then `Closed` as events, no timer left; sends fail with the error until the application
    /// takes it, once, and so do receives, unless the peer's FIN was already reached: end of
    /// stream stays (as in Linux, whose read returns 0 before it looks at the error).
    Reset(Error),
    /// The connection ends quietly (its application had closed it, or never saw it open):
    /// nothing sent, CLOSED and released, only `Closed` as event, no timer left, no error.
    ClosedQuietly,
}
use Outcome::*;

/// One row of the table.
struct Row {
    state: State,
    reach: fn() -> Tcp,
    rsts: Vec<TcpRepr<'static>>,
    outcome: Outcome,
}

/// Makes `fn rows()` listing every row by name, and for each row a function of that name with the
/// row's attributes that runs it.
macro_rules! table {
    ($(
        #[$attr:meta] $name:ident:
            $state:ident, $reach:expr, [$($rst:expr),+ $(,)?] => $outcome:expr;
    )*) => {
        fn rows() -> Vec<(&'static str, Row)> {
            vec![$((stringify!($name), table!(@row $state, $reach, [$($rst),+], $outcome))),*]
        }
        $(
            #[$attr]
            fn $name() {
                run(table!(@row $state, $reach, [$($rst),+], $outcome));
            }
        )*
    };
    (@row $state:ident, $reach:expr, [$($rst:expr),+], $outcome:expr) => {
        Row {
            state: State::$state,
            reach: $reach,
            rsts: vec![$($rst),+],
            outcome: $outcome,
        }
    };
}

table! {
    // name: state, reached by, [RSTs the peer sends] => outcome;
    #[test] closed_rst_is_never_answered:
        Closed, closed, [seg!(< R, seq 7000), seg!(< R., seq 7000, ack 1001)]
        => Ignored;
    #[test] syn_sent_rst_ack_means_connection_refused:
        SynSent, syn_sent_at_10, [seg!(< R., seq 0, ack ISS + 1)] => Reset(Error::Refused);
    #[test] syn_sent_rst_without_acceptable_ack_is_ignored:
        SynSent, syn_sent,
        [seg!(< R, seq 0), seg!(< R., seq 0, ack ISS + 7), seg!(< R., seq 0, ack ISS)]
        => Ignored;
    #[test] syn_received_exact_rst_drops_a_passive_embryo_quietly:
        SynReceived, passive, [seg!(< R, seq IRS + 1)] => ClosedQuietly;
    #[test] syn_received_exact_rst_refuses_an_active_open:
        SynReceived, simultaneous_open, [seg!(< R, seq IRS + 1)] => Reset(Error::Refused);
    #[test] syn_received_in_window_rst_gets_a_challenge_ack:
        SynReceived, passive, [seg!(< R, seq IRS + 100)]
        => ChallengeAck(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535));
    #[test] syn_received_out_of_window_rst_is_ignored:
        SynReceived, passive, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS)] => Ignored;
    #[test] established_exact_rst_resets:
        Established, established_with_unsent_data_at_200, [seg!(< R, seq IRS + 1)]
        => Reset(Error::Reset);
    #[test] established_in_window_rst_gets_a_challenge_ack:
        Established, established_at_200, [seg!(< R, seq IRS + 2)]
        => ChallengeAck(seg!(> ., seq ISS + 1, ack IRS + 1, win 65535));
    #[test] established_out_of_window_rst_is_ignored:
        Established, established, [seg!(< R, seq IRS + 70_000), seg!(< R., seq IRS, ack ISS + 1)]
        => Ignored;
    #[test] fin_wait_1_exact_rst_resets:
        FinWait1, fin_wait_1, [seg!(< R, seq IRS + 1)] => Reset(Error::Reset);
    #[test] fin_wait_1_in_window_rst_gets_a_challenge_ack:
        FinWait1, fin_wait_1, [seg!(< R, seq IRS + 3)]
        => ChallengeAck(seg!(> ., seq ISS + 2, ack IRS + 1, win 65535));
    #[test] fin_wait_1_out_of_window_rst_is_ignored:
        FinWait1, fin_wait_1, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS)] => Ignored;
    #[test] fin_wait_2_exact_rst_resets:
        FinWait2, fin_wait_2, [seg!(< R., seq IRS + 1, ack ISS + 2)]
        => Reset(Error::Reset);
    #[test] fin_wait_2_in_window_rst_gets_a_challenge_ack:
        FinWait2, fin_wait_2, [seg!(< R, seq IRS + 1000)]
        => ChallengeAck(seg!(> ., seq ISS + 2, ack IRS + 1, win 65535));
    #[test] fin_wait_2_out_of_window_rst_is_ignored:
        FinWait2, fin_wait_2, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS)] => Ignored;
    #[test] close_wait_exact_rst_resets:
        CloseWait, close_wait, [seg!(< R, seq IRS + 2)] => Reset(Error::Reset);
    #[test] close_wait_in_window_rst_gets_a_challenge_ack:
        CloseWait, close_wait, [seg!(< R, seq IRS + 50)]
        => ChallengeAck(seg!(> ., seq ISS + 1, ack IRS + 2, win 65534));
    #[test] close_wait_out_of_window_rst_is_ignored:
        CloseWait, close_wait, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS + 1)] => Ignored;
    #[test] closing_exact_rst_closes_quietly:
        Closing, closing, [seg!(< R, seq IRS + 2)] => ClosedQuietly;
    #[test] closing_in_window_rst_gets_a_challenge_ack:
        Closing, closing, [seg!(< R, seq IRS + 10)]
        => ChallengeAck(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534));
    #[test] closing_out_of_window_rst_is_ignored:
        Closing, closing, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS + 1)] => Ignored;
    #[test] last_ack_exact_rst_closes_quietly:
        LastAck, last_ack, [seg!(< R, seq IRS + 2)] => ClosedQuietly;
    #[test] last_ack_in_window_rst_gets_a_challenge_ack:
        LastAck, last_ack, [seg!(< R, seq IRS + 10)]
        => ChallengeAck(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534));
    #[test] last_ack_out_of_window_rst_is_ignored:
        LastAck, last_ack, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS + 1)] => Ignored;
    #[test] time_wait_exact_rst_is_ignored_rfc1337:
        TimeWait, time_wait, [seg!(< R, seq IRS + 2)] => Ignored;
    #[test] time_wait_exact_rst_closes_quietly_without_rfc1337:
        TimeWait, time_wait_without_rfc1337, [seg!(< R, seq IRS + 2)] => ClosedQuietly;
    #[test] time_wait_in_window_rst_gets_a_challenge_ack:
        TimeWait, time_wait, [seg!(< R, seq IRS + 9)]
        => ChallengeAck(seg!(> ., seq ISS + 2, ack IRS + 2, win 65534));
    #[test] time_wait_out_of_window_rst_is_ignored:
        TimeWait, time_wait, [seg!(< R, seq IRS + 100_000), seg!(< R, seq IRS + 1)] => Ignored;
}

/// SYN sent, nothing heard yet.
fn syn_sent() -> Tcp {
    let mut t = Tcp::connect(cfg());
    t.next().unwrap();
    t
}

fn syn_sent_at_10() -> Tcp {
    let mut t = syn_sent();
    t.at(10);
    t
}

/// A passive open, its SYN-ACK sent.
fn passive() -> Tcp {
    super::syn_received::passive(cfg())
}

/// An active open that got the peer's lone SYN (simultaneous open) and answered with a SYN-ACK.
fn simultaneous_open() -> Tcp {
    let mut t = syn_sent();
    t.inject(seg!(< S, seq IRS, win 100, mss 1460))
        .expect(seg!(> S., seq ISS, ack IRS + 1, win 65535, mss 1460));
    t
}

fn established_at_200() -> Tcp {
    let mut t = established();
    t.at(200);
    t
}

/// With bytes in the send buffer that the RST makes moot.
fn established_with_unsent_data_at_200() -> Tcp {
    let mut t = established();
    t.c.send(b"unsent").unwrap();
    t.at(200);
    t
}

/// Closed at 200 ms, the FIN sent and not yet acknowledged.
fn fin_wait_1() -> Tcp {
    let mut t = established();
    t.at(200).c.close();
    t.next().unwrap();
    t
}

fn last_ack() -> Tcp {
    super::last_ack::last_ack(cfg())
}

/// Reaches the row's state, sends its RSTs and checks its outcome.
fn run(row: Row) {
    let mut t = (row.reach)();
    assert_eq!(t.state(), row.state, "reached the row's state");
    let deadline = t.deadline();
    let challenge_acks = t.c.stats().challenge_acks;
    let eof = t.c.at_eof();
    match row.outcome {
        Ignored => {
            for rst in &row.rsts {
                t.inject(*rst).expect_nothing();
            }
            assert_eq!(t.state(), row.state);
            assert_eq!(t.deadline(), deadline, "timers untouched");
            assert_eq!(t.c.stats().challenge_acks, challenge_acks);
            t.expect_events(&[]);
        }
        ChallengeAck(ack) => {
            let [rst] = row.rsts[..] else {
                panic!("one RST for a challenge ACK");
            };
            t.inject(rst).expect(ack).expect_nothing();
            assert_eq!(t.state(), row.state);
            assert_eq!(t.deadline(), deadline, "timers untouched");
            assert_eq!(t.c.stats().challenge_acks, challenge_acks + 1);
            t.expect_events(&[]);
        }
        Reset(e) => {
            let [rst] = row.rsts[..] else {
                panic!("one RST to reset");
            };
            t.inject(rst)
                .expect_nothing()
                .expect_events(&[Event::Error(e), Event::Closed]);
            assert_eq!(t.state(), State::Closed);
            assert!(t.c.is_closed());
            assert_eq!(t.deadline(), None);
            assert_eq!(t.c.send(b"x"), Err(e));
            let read = if eof { Ok(0) } else { Err(e) };
            assert_eq!(t.c.recv(&mut [0; 4]), read);
            assert_eq!(t.c.take_error(), Some(e));
            assert_eq!(t.c.take_error(), None);
        }
        ClosedQuietly => {
            let [rst] = row.rsts[..] else {
                panic!("one RST to close");
            };
            t.inject(rst)
                .expect_nothing()
                .expect_events(&[Event::Closed]);
            assert_eq!(t.state(), State::Closed);
            assert!(t.c.is_closed());
            assert_eq!(t.deadline(), None);
            assert_eq!(t.c.take_error(), None);
        }
    }
}

/// The table covers every state a connection can be in; in each synchronized state all three
/// cases of RFC 5961 3.2: an exact RST, one in the window, one outside it.
#[test]
fn every_state_has_rows() {
    let rows = rows();
    let all = [
        State::Closed,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];
    for s in all {
        // a new state fails to compile here until it is listed above (and given rows)
        match s {
            State::Closed
            | State::SynSent
            | State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait
            | State::Closing
            | State::LastAck
            | State::TimeWait => {}
        }
        let has = |f: fn(&Outcome) -> bool| rows.iter().any(|(_, r)| r.state == s && f(&r.outcome));
        assert!(has(|_| true), "no row for {s:?}");
        if s.is_synchronized() {
            assert!(
                has(|o| matches!(o, Reset(_) | ClosedQuietly)),
                "{s:?}: exact RST"
            );
            assert!(
                has(|o| matches!(o, ChallengeAck(_))),
                "{s:?}: RST in the window"
            );
            assert!(
                has(|o| matches!(o, Ignored)),
                "{s:?}: RST outside the window"
            );
        }
    }
}
