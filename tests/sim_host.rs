//! Host-level behaviour on the simulator: what happens between connections of one 4-tuple.

mod common;

use common::sim_pair::Pair;
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp::{self, State};
use xdp_tcp::time::Duration;

/// The server closes first, so the server holds TIME-WAIT; the client, with a single ephemeral
/// port, connects again at once. The new SYN is newer (timestamps, RFC 6191; or sequence
/// number, RFC 1122 4.2.2.13) and must start a new connection in one round trip instead of
/// bouncing off TIME-WAIT until the client's SYN retransmission.
fn reconnect_through_time_wait(timestamps: bool) {
    let mut p = Pair::builder(tcp::Config {
        timestamps,
        ..Default::default()
    })
    .client(|h| h.ephemeral_ports = (40000, 40000))
    .seed(7)
    .build();
    let (c, s) = (p.c, p.s);
    let (first, server) = p.connect();
    p.server().close(server);
    let mut buf = [0u8; 16];
    assert!(p.run_until(Duration::from_secs(1), |net| {
        net.host(c).recv(first, &mut buf) == Ok(0)
    }));
    p.client().close(first);
    assert!(p.run_until(Duration::from_secs(1), |net| {
        net.host_ref(c).conn_count() == 0
    }));
    let net = &mut p.net;
    assert_eq!(
        net.host_ref(s).conn_count(),
        1,
        "the server holds TIME-WAIT"
    );
    let tw = net.host_ref(s).conn(server).map(|x| x.state());
    assert_eq!(tw, Some(State::TimeWait));

    let start = p.net.now();
    let (second, accepted) = p
        .connect_within(Duration::from_secs(5))
        .expect("the second connection opens");
    let net = &mut p.net;
    let took = net.now() - start;
    assert!(
        took < Duration::from_millis(10),
        "reconnect took {took:?}: SYN bounced off TIME-WAIT"
    );
    assert_eq!(net.host_ref(s).stats().time_wait_reused, 1);
    assert_eq!(net.host(c).send(second, b"hi"), Ok(2));
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        net.host(s).recv(accepted, &mut buf) == Ok(2)
    }));
    assert_eq!(&buf[..2], b"hi");
}

#[test]
fn newer_syn_with_timestamps_ends_time_wait() {
    reconnect_through_time_wait(true);
}

#[test]
fn newer_syn_by_sequence_number_ends_time_wait() {
    reconnect_through_time_wait(false);
}

/// A server closes a connection whose client acknowledges the FIN but never sends its own
/// (the client's application keeps it open). Returns the network, host indices and the
/// server's connection, with the server in FIN-WAIT-2 `since` then. `orphan`: the server
/// closes (close(2)); otherwise it only shuts down writing (shutdown(2)).
fn server_in_fin_wait_2(
    fin_timeout: Option<Duration>,
    orphan: bool,
) -> (Network, usize, usize, xdp_tcp::host::ConnId) {
    let mut p = Pair::builder(Default::default())
        .server(|h| h.tcp.fin_timeout = fin_timeout)
        .seed(11)
        .build();
    let (_, id) = p.connect();
    let Pair { mut net, c, s, .. } = p;
    if orphan {
        net.host(s).close(id);
    } else {
        net.host(s).with_conn(id, |c| c.close());
    }
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        net.host_ref(s).conn(id).map(|x| x.state()) == Some(State::FinWait2)
    }));
    (net, c, s, id)
}

#[test]
fn closed_connection_leaves_fin_wait_2_after_fin_timeout() {
    let (mut net, c, s, id) = server_in_fin_wait_2(Some(Duration::from_secs(60)), true);
    let entered = net.now();
    let client_rsts = net.host_ref(c).stats().rst_sent_no_conn;
    net.run_until(entered + Duration::from_secs(59), |_| false);
    assert_eq!(
        net.host_ref(s).conn(id).map(|x| x.state()),
        Some(State::FinWait2),
        "still waiting before the timeout"
    );
    net.run_until(entered + Duration::from_secs(61), |_| false);
    assert_eq!(net.host_ref(s).conn_count(), 0, "dropped after fin_timeout");
    assert!(net.host_ref(s).conn(id).is_none());
    // Silently, as Linux: the client learns of it only if it sends again.
    assert_eq!(net.host_ref(s).stats().rst_sent_no_conn, 0);
    assert_eq!(net.host_ref(c).stats().rst_sent_no_conn, client_rsts);
    assert_eq!(
        net.host_ref(c).conn_count(),
        1,
        "the client still holds CLOSE-WAIT"
    );
}

#[test]
fn fin_wait_2_without_a_limit_or_after_shutdown_lasts() {
    for (fin_timeout, orphan) in [(None, true), (Some(Duration::from_secs(60)), false)] {
        let (mut net, _c, s, id) = server_in_fin_wait_2(fin_timeout, orphan);
        let entered = net.now();
        net.run_until(entered + Duration::from_secs(600), |_| false);
        assert_eq!(
            net.host_ref(s).conn(id).map(|x| x.state()),
            Some(State::FinWait2),
            "fin_timeout {fin_timeout:?}, closed {orphan}"
        );
    }
}
