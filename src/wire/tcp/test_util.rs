//! What the TCP view's tests share: addresses, a Linux-like SYN, and emit/parse round trips.

pub(super) use super::*;
pub(super) use crate::wire::{ChecksumCaps, Error, Result};

pub(super) const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
pub(super) const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
pub(super) const CAPS: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};

/// A Linux SYN: MSS 1460, SACK-permitted + TS, NOP WS 7, as `tcpdump -x` shows it.
pub(super) const LINUX_SYN_OPTIONS: [u8; 20] = [
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x03, 0x03, 0x07,
];

pub(super) fn syn() -> TcpRepr<'static> {
    TcpRepr {
        src_port: 40000,
        dst_port: 80,
        seq: SeqNumber(0x0102_0304),
        ack: SeqNumber(0),
        flags: TcpFlags::SYN,
        window: 64240,
        urgent: 0,
        options: TcpOptions {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamp: Some((123456, 0)),
            ..TcpOptions::default()
        },
        payload: &[],
    }
}

pub(super) fn emit(repr: &TcpRepr) -> Vec<u8> {
    let mut buf = vec![0xa5; repr.buffer_len()];
    repr.emit(&mut TcpPacket::new_unchecked(&mut buf[..]), SRC, DST, &CAPS);
    buf
}

pub(super) fn parse(buf: &[u8]) -> Result<TcpRepr<'_>> {
    TcpRepr::parse(&TcpPacket::new_checked(buf)?, SRC, DST, &CAPS)
}
