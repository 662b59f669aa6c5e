//! Connections in a known state for the unit tests of the connection's modules.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::Connection;
use crate::tcp::config::Config;
use crate::tcp::state::State;
use crate::time::Instant;
use crate::wire::{SeqNumber, TcpFlags, TcpOptions, TcpRepr};

pub const US: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1000);
pub const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
/// Our ISS; data starts at 1.
pub const ISS: SeqNumber = SeqNumber(0);
/// The peer's ISS.
pub const IRS: SeqNumber = SeqNumber(5000);

pub fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

/// A segment from the peer acknowledging `ack`, window 65535.
pub fn from_peer(seq: SeqNumber, ack: SeqNumber, flags: TcpFlags) -> TcpRepr<'static> {
    TcpRepr {
        src_port: PEER.port(),
        dst_port: US.port(),
        seq,
        ack,
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// Active open at 0 ms answered at 100 ms by a SYN-ACK offering MSS 1460 and (if `sack`)
/// SACK, everything sent drained: ESTABLISHED with an RTT sample of 100 ms.
pub fn established(cfg: Config, sack: bool) -> Connection {
    let mut c = Connection::connect(cfg, US, PEER, ISS);
    while c.poll_transmit(ms(0)).is_some() {}
    let mut syn_ack = from_peer(IRS, ISS + 1, TcpFlags::SYN | TcpFlags::ACK);
    syn_ack.options.mss = Some(1460);
    syn_ack.options.sack_permitted = sack;
    c.handle_segment(ms(100), *PEER.ip(), &syn_ack);
    while c.poll_transmit(ms(100)).is_some() {}
    while c.poll_event().is_some() {}
    assert_eq!(c.state(), State::Established);
    c
}
