//! Wire parsers: arbitrary bytes never panic, and what parses emits and re-parses to itself.

use std::net::Ipv4Addr;

use xdp_tcp::wire::pretty::Frame;
use xdp_tcp::wire::{
    ArpPacket, ArpRepr, ChecksumCaps, EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr,
    Ipv4Packet, Ipv4Repr, TcpOptions, TcpPacket, TcpRepr,
};

const VERIFY: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};
const TRUST: ChecksumCaps = ChecksumCaps {
    verify_rx: false,
    compute_tx: true,
};

/// An Ethernet frame: header round trip, byte for byte; the one-line printer over the whole
/// frame (it parses ARP, IPv4, ICMP and TCP beneath) never fails.
pub fn ethernet(data: &[u8]) {
    let _ = format!("{}", Frame(data));
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let repr = EthernetRepr::parse(&frame).expect("a checked frame parses");
    let payload = frame.payload();
    let mut buf = vec![0u8; repr.buffer_len(payload.len())];
    let mut out = EthernetFrame::new_unchecked(&mut buf[..]);
    repr.emit(&mut out);
    out.payload_mut().copy_from_slice(payload);
    assert_eq!(&buf[..], data, "Ethernet round trip");
}

/// An ARP packet: what parses emits and re-parses to the same `ArpRepr`.
pub fn arp(data: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = packet.packet_len();
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let _ = format!("{repr}");
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ArpPacket::new_unchecked(&mut buf[..]));
    let again = ArpRepr::parse(&ArpPacket::new_checked(&buf[..]).expect("emitted ARP checks"));
    assert_eq!(again, Ok(repr), "ARP round trip");
}

/// An IPv4 packet: parsed with and without checksum verification; what parses re-emits (20-byte
/// header, its payload) with a valid checksum and parses back to the same `Ipv4Repr`.
pub fn ipv4(data: &[u8]) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let verified = Ipv4Repr::parse(&packet, &VERIFY);
    let Ok(repr) = Ipv4Repr::parse(&packet, &TRUST) else {
        assert!(verified.is_err(), "verification made a bad packet parse");
        return;
    };
    if let Ok(v) = verified {
        assert_eq!(v, repr);
    }
    let _ = format!("{repr}");
    let payload = packet.payload();
    assert_eq!(payload.len(), repr.payload_len, "payload by total length");
    let mut buf = vec![0u8; repr.buffer_len()];
    let mut out = Ipv4Packet::new_unchecked(&mut buf[..]);
    repr.emit(&mut out, &VERIFY);
    out.payload_mut().copy_from_slice(payload);
    let back = Ipv4Packet::new_checked(&buf[..]).expect("emitted IPv4 checks");
    assert!(back.verify_checksum(), "emitted IPv4 checksum");
    assert_eq!(Ipv4Repr::parse(&back, &VERIFY), Ok(repr), "IPv4 round trip");
    assert_eq!(back.payload(), payload);
}

/// An ICMPv4 message: parsed with and without verification; what parses re-emits with a valid
/// checksum and parses back to the same `Icmpv4Repr`; the quoted-flow accessors never panic.
pub fn icmpv4(data: &[u8]) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let verified = Icmpv4Repr::parse(&packet, &VERIFY);
    let Ok(repr) = Icmpv4Repr::parse(&packet, &TRUST) else {
        assert!(verified.is_err(), "verification made a bad message parse");
        return;
    };
    if let Ok(v) = verified {
        assert_eq!(v, repr);
    }
    let _ = format!("{repr}");
    let _ = (repr.quoted_ports(), repr.quoted_tcp_seq());
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Icmpv4Packet::new_unchecked(&mut buf[..]), &VERIFY);
    let back = Icmpv4Packet::new_checked(&buf[..]).expect("emitted ICMP checks");
    assert!(back.verify_checksum(), "emitted ICMP checksum");
    assert_eq!(
        Icmpv4Repr::parse(&back, &VERIFY),
        Ok(repr),
        "ICMP round trip"
    );
}

/// A TCP segment: the first 8 bytes are the pseudo-header's addresses, the rest the segment.
/// What parses re-emits (our option layout, SACK blocks that do not fit dropped as documented),
/// its data offset is `header_len()`, its checksum verifies, and it parses back to the same
/// `TcpRepr`.
pub fn tcp(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let src = Ipv4Addr::new(data[0], data[1], data[2], data[3]);
    let dst = Ipv4Addr::new(data[4], data[5], data[6], data[7]);
    let seg = &data[8..];
    let Ok(packet) = TcpPacket::new_checked(seg) else {
        return;
    };
    let _ = (packet.payload_len(), packet.urgent_at());
    let verified = TcpRepr::parse(&packet, src, dst, &VERIFY);
    let Ok(repr) = TcpRepr::parse(&packet, src, dst, &TRUST) else {
        assert!(verified.is_err(), "verification made a bad segment parse");
        return;
    };
    if let Ok(v) = verified {
        assert_eq!(v, repr);
    }
    let _ = format!("{repr}");
    let mut expect = repr;
    let kept = repr.options.sack_blocks_emitted();
    expect.options.set_sack(&repr.options.sack()[..kept]);
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(
        &mut TcpPacket::new_unchecked(&mut buf[..]),
        src,
        dst,
        &VERIFY,
    );
    let back = TcpPacket::new_checked(&buf[..]).expect("emitted TCP checks");
    assert_eq!(back.header_len() as usize, repr.header_len(), "data offset");
    assert!(back.verify_checksum(src, dst), "emitted TCP checksum");
    assert_eq!(
        TcpRepr::parse(&back, src, dst, &VERIFY),
        Ok(expect),
        "TCP round trip"
    );
}

/// A TCP option list (at most 40 bytes are looked at, as a header holds no more): what parses
/// emits within 40 bytes, a multiple of 4, and parses back equal (less the SACK blocks that do
/// not fit).
pub fn tcp_options(data: &[u8]) {
    let data = &data[..data.len().min(40)];
    let Ok(opts) = TcpOptions::parse(data) else {
        return;
    };
    let _ = format!("{opts}");
    let len = opts.buffer_len();
    assert!(len <= 40 && len % 4 == 0, "option length {len}");
    let mut buf = [0u8; 40];
    assert_eq!(opts.emit(&mut buf[..len]), len);
    let mut expect = opts;
    expect.set_sack(&opts.sack()[..opts.sack_blocks_emitted()]);
    assert_eq!(
        TcpOptions::parse(&buf[..len]),
        Ok(expect),
        "options round trip"
    );
}
