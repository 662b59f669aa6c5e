//! Host-level behaviour on the simulator: what happens between connections of one 4-tuple.

use std::net::{Ipv4Addr, SocketAddrV4};

use xdp_tcp::host::HostConfig;
use xdp_tcp::sim::link::LinkConfig;
use xdp_tcp::sim::network::Network;
use xdp_tcp::tcp::State;
use xdp_tcp::time::Duration;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

/// The server closes first, so the server holds TIME-WAIT; the client, with a single ephemeral
/// port, connects again at once. The new SYN is newer (timestamps, RFC 6191; or sequence
/// number, RFC 1122 4.2.2.13) and must start a new connection in one round trip instead of
/// bouncing off TIME-WAIT until the client's SYN retransmission.
fn reconnect_through_time_wait(timestamps: bool) {
    let mut net = Network::new();
    let mut ccfg = HostConfig::new(CLIENT);
    ccfg.ephemeral_ports = (40000, 40000);
    ccfg.tcp.timestamps = timestamps;
    let mut scfg = HostConfig::new(SERVER);
    scfg.tcp.timestamps = timestamps;
    let c = net.add_host(ccfg);
    let s = net.add_host(scfg);
    net.connect(c, s, LinkConfig::ideal(Duration::from_millis(1)), 7);
    net.host(s).listen(80, 8);
    let remote = SocketAddrV4::new(SERVER, 80);

    let now = net.now();
    let first = net.host(c).connect(now, remote).unwrap();
    let mut server = None;
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        server = server.or_else(|| net.host(s).accept(80));
        server.is_some()
    }));
    net.host(s).close(server.unwrap());
    let mut buf = [0u8; 16];
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        net.host(c).recv(first, &mut buf) == Ok(0)
    }));
    net.host(c).close(first);
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        net.host_ref(c).conn_count() == 0
    }));
    assert_eq!(
        net.host_ref(s).conn_count(),
        1,
        "the server holds TIME-WAIT"
    );
    let tw = net.host_ref(s).conn(server.unwrap()).map(|x| x.state());
    assert_eq!(tw, Some(State::TimeWait));

    let start = net.now();
    let second = net.host(c).connect(start, remote).unwrap();
    let mut accepted = None;
    assert!(net.run_until(net.now() + Duration::from_secs(5), |net| {
        accepted = accepted.or_else(|| net.host(s).accept(80));
        accepted.is_some()
            && net
                .host_ref(c)
                .conn(second)
                .is_some_and(|x| x.state() == State::Established)
    }));
    let took = net.now() - start;
    assert!(
        took < Duration::from_millis(10),
        "reconnect took {took:?}: SYN bounced off TIME-WAIT"
    );
    assert_eq!(net.host_ref(s).stats().time_wait_reused, 1);
    assert_eq!(net.host(c).send(second, b"hi"), Ok(2));
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        net.host(s).recv(accepted.unwrap(), &mut buf) == Ok(2)
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
    let mut net = Network::new();
    let ccfg = HostConfig::new(CLIENT);
    let mut scfg = HostConfig::new(SERVER);
    scfg.tcp.fin_timeout = fin_timeout;
    let c = net.add_host(ccfg);
    let s = net.add_host(scfg);
    net.connect(c, s, LinkConfig::ideal(Duration::from_millis(1)), 11);
    net.host(s).listen(80, 8);
    let now = net.now();
    net.host(c)
        .connect(now, SocketAddrV4::new(SERVER, 80))
        .unwrap();
    let mut server = None;
    assert!(net.run_until(net.now() + Duration::from_secs(1), |net| {
        server = server.or_else(|| net.host(s).accept(80));
        server.is_some()
    }));
    let id = server.unwrap();
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
