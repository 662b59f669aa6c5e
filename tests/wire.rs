//! Whole-frame tests of the wire layer: round trips of every header and option combination,
//! truncated and padded frames, corrupted bits, bad lengths, and arbitrary bytes.

use proptest::prelude::*;
use xdp_tcp::wire::icmpv4::{DstUnreachable, TimeExceeded};
use xdp_tcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, ChecksumCaps, Error, EtherType, EthernetAddress,
    EthernetFrame, EthernetRepr, Icmpv4Packet, Icmpv4Repr, IpProtocol, Ipv4Addr, Ipv4Packet,
    Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr, MAX_SACK_BLOCKS,
};

const CAPS: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};
const LAX: ChecksumCaps = ChecksumCaps {
    verify_rx: false,
    compute_tx: true,
};
const SRC_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ETH: EthernetRepr = EthernetRepr {
    src_addr: EthernetAddress([0x02, 0, 0, 0, 0, 1]),
    dst_addr: EthernetAddress([0x02, 0, 0, 0, 0, 2]),
    ethertype: EtherType::Ipv4,
};

fn ip_repr(protocol: IpProtocol, payload_len: usize) -> Ipv4Repr {
    Ipv4Repr {
        src_addr: SRC_IP,
        dst_addr: DST_IP,
        protocol,
        payload_len,
        ttl: 64,
        dscp_ecn: 0,
        ident: 0x4242,
    }
}

/// Builds Ethernet + IPv4 + TCP in one buffer the way the stack does: headers in place, then
/// the checksum over what was written.
fn tcp_frame(tcp: &TcpRepr) -> Vec<u8> {
    let ip = ip_repr(IpProtocol::Tcp, tcp.buffer_len());
    let mut buf = vec![0u8; ETH.buffer_len(ip.buffer_len())];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    ETH.emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &CAPS);
    tcp.emit(
        &mut TcpPacket::new_unchecked(ipp.payload_mut()),
        SRC_IP,
        DST_IP,
        &CAPS,
    );
    buf
}

fn parse_tcp_frame<'a>(
    buf: &'a [u8],
    caps: &ChecksumCaps,
) -> Result<(Ipv4Repr, TcpRepr<'a>), Error> {
    let eth = EthernetFrame::new_checked(buf)?;
    let eth_repr = EthernetRepr::parse(&eth)?;
    assert_eq!(eth_repr.ethertype, EtherType::Ipv4);
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let ip_repr = Ipv4Repr::parse(&ip, caps)?;
    let tcp = TcpPacket::new_checked(ip.payload())?;
    let tcp_repr = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr, caps)?;
    Ok((ip_repr, tcp_repr))
}

fn segment<'a>(flags: TcpFlags, options: TcpOptions, payload: &'a [u8]) -> TcpRepr<'a> {
    TcpRepr {
        src_port: 49152,
        dst_port: 443,
        seq: SeqNumber(0xfffffff0),
        ack: SeqNumber(0x8000_0001),
        flags,
        window: 29200,
        urgent: 0,
        options,
        payload,
    }
}

/// A data segment with a timestamp, as the benchmarks and most traffic look.
fn ts_segment(payload: &[u8]) -> TcpRepr<'_> {
    let options = TcpOptions {
        timestamp: Some((0x11223344, 0x55667788)),
        ..TcpOptions::default()
    };
    segment(TcpFlags::ACK | TcpFlags::PSH, options, payload)
}

fn blocks(n: usize) -> Vec<(SeqNumber, SeqNumber)> {
    (0..n as u32)
        .map(|i| (SeqNumber(1000 * i + 1), SeqNumber(1000 * i + 500)))
        .collect()
}

/// What a parse of the emitted segment must return: the SACK blocks that fit.
fn expected_after_emit<'a>(repr: &TcpRepr<'a>) -> TcpRepr<'a> {
    let mut expect = *repr;
    expect.options.sack_len = repr.options.sack_blocks_emitted() as u8;
    if let Some(shift) = repr.options.window_scale {
        expect.options.window_scale = Some(shift.min(14));
    }
    expect
}

#[test]
fn tcp_round_trip_every_option_combination() {
    let payload: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut count = 0;
    for mss in [None, Some(536), Some(1460), Some(65535)] {
        for window_scale in [None, Some(0), Some(7), Some(14), Some(15)] {
            for sack_permitted in [false, true] {
                for timestamp in [None, Some((0, 0)), Some((u32::MAX, 12345))] {
                    for n_sack in 0..=MAX_SACK_BLOCKS {
                        for len in [0, 1, 64, 1000] {
                            let mut options = TcpOptions::with_sack(&blocks(n_sack));
                            options.mss = mss;
                            options.window_scale = window_scale;
                            options.sack_permitted = sack_permitted;
                            options.timestamp = timestamp;
                            let flags = if mss.is_some() {
                                TcpFlags::SYN
                            } else {
                                TcpFlags::ACK
                            };
                            let repr = segment(flags, options, &payload[..len]);
                            let frame = tcp_frame(&repr);
                            assert_eq!(repr.header_len() % 4, 0);
                            assert!(repr.header_len() <= 60);
                            assert_eq!(frame.len(), 14 + 20 + repr.header_len() + len);
                            let (ip, parsed) = parse_tcp_frame(&frame, &CAPS).unwrap();
                            assert_eq!(ip, ip_repr(IpProtocol::Tcp, repr.buffer_len()));
                            assert_eq!(parsed, expected_after_emit(&repr), "{repr}");
                            count += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(count, 4 * 5 * 2 * 3 * 5 * 4);
}

#[test]
fn sack_blocks_kept_with_and_without_timestamps() {
    for n in 1..=MAX_SACK_BLOCKS {
        let plain = segment(TcpFlags::ACK, TcpOptions::with_sack(&blocks(n)), b"");
        let frame = tcp_frame(&plain);
        assert_eq!(
            parse_tcp_frame(&frame, &CAPS).unwrap().1.options.sack(),
            &blocks(n)[..]
        );

        let mut with_ts = plain;
        with_ts.options.timestamp = Some((1, 2));
        let frame = tcp_frame(&with_ts);
        let kept = n.min(3);
        assert_eq!(
            parse_tcp_frame(&frame, &CAPS).unwrap().1.options.sack(),
            &blocks(n)[..kept]
        );
    }
}

/// Builds a segment with hand-written option bytes (padded to 4 with `pad`) and a valid checksum.
fn segment_with_raw_options(options: &[u8], pad: u8, payload: &[u8]) -> Vec<u8> {
    let opt_len = options.len().div_ceil(4) * 4;
    let header_len = 20 + opt_len;
    let mut buf = vec![pad; header_len + payload.len()];
    let base = segment(TcpFlags::ACK, TcpOptions::default(), b"");
    base.emit_header(&mut TcpPacket::new_unchecked(&mut buf[..20]));
    let mut p = TcpPacket::new_unchecked(&mut buf[..]);
    p.set_header_len(header_len as u8);
    p.options_mut()[..options.len()].copy_from_slice(options);
    p.payload_mut().copy_from_slice(payload);
    p.fill_checksum(SRC_IP, DST_IP);
    buf
}

fn parse_segment(buf: &[u8]) -> Result<TcpRepr<'_>, Error> {
    TcpRepr::parse(&TcpPacket::new_checked(buf)?, SRC_IP, DST_IP, &CAPS)
}

#[test]
fn unknown_options_skipped_and_eol_padding() {
    let ts = [8, 10, 0, 0, 0, 9, 0, 0, 0, 8];
    // TCP-AO (29) and an experimental option (253) between known ones, then EOL padding.
    let mut raw = vec![29, 6, 1, 2, 3, 4];
    raw.extend_from_slice(&ts);
    raw.extend_from_slice(&[253, 4, 0xbe, 0xef, 3, 3, 6, 0]);
    let buf = segment_with_raw_options(&raw, 0, b"data");
    let repr = parse_segment(&buf).unwrap();
    assert_eq!(repr.options.timestamp, Some((9, 8)));
    assert_eq!(repr.options.window_scale, Some(6));
    assert_eq!(repr.payload, b"data");

    // Anything after EOL is padding and is not parsed, even bytes that would be invalid.
    let buf = segment_with_raw_options(&[2, 4, 5, 0xb4, 0, 0xff, 0x01], 0xff, b"");
    assert_eq!(parse_segment(&buf).unwrap().options.mss, Some(1460));

    // A Linux-style NOP NOP TS without trailing padding.
    let mut raw = vec![1, 1];
    raw.extend_from_slice(&ts);
    let buf = segment_with_raw_options(&raw, 1, b"x");
    assert_eq!(
        parse_segment(&buf).unwrap().options,
        TcpOptions {
            timestamp: Some((9, 8)),
            ..Default::default()
        }
    );
}

#[test]
fn bad_option_lengths() {
    for raw in [
        &[2, 0, 0, 0][..],                     // zero length
        &[2, 1, 0, 0],                         // length 1
        &[1, 1, 1, 2],                         // MSS kind in the last byte, no length
        &[3, 3, 7, 8, 10, 0, 0, 0],            // TS running past the header
        &[254, 9, 0, 0, 0, 0, 0, 0],           // unknown option running past the header
        &[2, 6, 0, 0, 0, 0, 0, 0],             // MSS of length 6
        &[3, 2, 0, 0],                         // WS of length 2
        &[4, 4, 0, 0],                         // SACK-permitted of length 4
        &[5, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // SACK of length 9
        &[8, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // TS of length 9
    ] {
        let buf = segment_with_raw_options(raw, 0, b"payload");
        assert_eq!(parse_segment(&buf), Err(Error::BadOption), "{raw:?}");
    }
}

#[test]
fn every_prefix_of_a_frame_is_truncated() {
    let repr = ts_segment(&[0x5a; 64]);
    let frame = tcp_frame(&repr);
    for len in 0..frame.len() {
        assert_eq!(
            parse_tcp_frame(&frame[..len], &CAPS).err(),
            Some(Error::Truncated),
            "len {len}"
        );
        assert_eq!(
            parse_tcp_frame(&frame[..len], &LAX).err(),
            Some(Error::Truncated),
            "len {len}"
        );
    }
    assert!(parse_tcp_frame(&frame, &CAPS).is_ok());
}

#[test]
fn every_prefix_of_a_segment_fails_by_region() {
    let repr = ts_segment(&[0x5a; 64]);
    let frame = tcp_frame(&repr);
    let seg = &frame[34..];
    for len in 0..seg.len() {
        let expect = match len {
            0..=19 => Error::Truncated,
            20..=31 => Error::BadOffset,
            _ => Error::BadChecksum,
        };
        assert_eq!(parse_segment(&seg[..len]), Err(expect), "len {len}");
    }
}

#[test]
fn trailing_bytes_ignored_via_total_len() {
    for payload in [&b""[..], b"a", b"hello, world"] {
        let repr = ts_segment(payload);
        let mut frame = tcp_frame(&repr);
        let (ip, tcp) = parse_tcp_frame(&frame, &CAPS).unwrap();
        let (ip, tcp) = (ip, tcp.payload.to_vec());
        // Pad like a NIC would to the 60-byte minimum, and then some garbage.
        frame.resize(frame.len().max(60), 0);
        frame.extend_from_slice(&[0xde, 0xad]);
        let (ip2, tcp2) = parse_tcp_frame(&frame, &CAPS).unwrap();
        assert_eq!(ip2, ip);
        assert_eq!(tcp2.payload, &tcp[..]);
        assert_eq!(tcp2, expected_after_emit(&repr));
    }
}

#[test]
fn bad_ihl_and_data_offset() {
    // 20 + 32 + 3 = 55 bytes of IPv4 datagram.
    let frame = tcp_frame(&ts_segment(b"abc"));
    for ihl in 0..16u8 {
        let mut f = frame.clone();
        f[14] = 0x40 | ihl;
        let expect = match ihl {
            0..=4 => Some(Error::BadOffset),
            5 => None,
            // A longer header still inside total_len: the checksum no longer verifies.
            6..=13 => Some(Error::BadChecksum),
            // 56 or 60 bytes of header in a 55-byte datagram.
            _ => Some(Error::BadLength),
        };
        assert_eq!(parse_tcp_frame(&f, &CAPS).err(), expect, "ihl {ihl}");
    }
    let mut f = frame.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes()); // total_len below the header
    assert_eq!(parse_tcp_frame(&f, &CAPS).err(), Some(Error::BadLength));

    // 32 bytes of header and 3 of payload.
    for off in 0..16u8 {
        let mut f = frame.clone();
        f[34 + 12] = off << 4;
        let (strict, lax) = match off {
            0..=4 => (Error::BadOffset, Some(Error::BadOffset)),
            5 => (Error::BadChecksum, None),
            // The option area now cuts the timestamp option short.
            6 | 7 => (Error::BadChecksum, Some(Error::BadOption)),
            8 => continue, // the real offset
            _ => (Error::BadOffset, Some(Error::BadOffset)),
        };
        assert_eq!(
            parse_tcp_frame(&f, &CAPS).err(),
            Some(strict),
            "offset {off}"
        );
        assert_eq!(parse_tcp_frame(&f, &LAX).err(), lax, "offset {off}");
    }
}

#[test]
fn every_bit_flip_in_tcp_segment_is_caught() {
    let repr = ts_segment(&[0x5a; 64]);
    let frame = tcp_frame(&repr);
    for bit in 34 * 8..frame.len() * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        let err = parse_tcp_frame(&f, &CAPS).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadChecksum | Error::BadOffset | Error::BadOption | Error::Malformed
            ),
            "bit {bit}: {err:?}"
        );
    }
}

#[test]
fn every_bit_flip_in_ipv4_header_is_caught() {
    let frame = tcp_frame(&ts_segment(&[0x5a; 64]));
    for bit in 14 * 8..34 * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        let err = parse_tcp_frame(&f, &CAPS).unwrap_err();
        assert!(
            matches!(
                err,
                Error::BadChecksum
                    | Error::BadVersion
                    | Error::BadOffset
                    | Error::BadLength
                    | Error::Truncated
            ),
            "bit {bit}: {err:?}"
        );
    }
}

#[test]
fn ethernet_bit_flips_change_only_the_ethernet_header() {
    let repr = ts_segment(b"xyz");
    let frame = tcp_frame(&repr);
    for bit in 0..12 * 8 {
        let mut f = frame.clone();
        f[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            parse_tcp_frame(&f, &CAPS).unwrap().1,
            expected_after_emit(&repr)
        );
    }
}

#[test]
fn arp_round_trip_in_a_frame() {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: ETH.src_addr,
        source_protocol_addr: SRC_IP,
        target_hardware_addr: ETH.dst_addr,
        target_protocol_addr: DST_IP,
    };
    let eth = EthernetRepr {
        ethertype: EtherType::Arp,
        ..ETH
    };
    let mut buf = [0u8; 60]; // minimum frame: 18 bytes of padding after the ARP packet
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    let frame = EthernetFrame::new_checked(&buf[..]).unwrap();
    assert_eq!(EthernetRepr::parse(&frame).unwrap(), eth);
    assert_eq!(
        ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap(),
        arp
    );
    for len in 0..14 + arp.buffer_len() {
        let r = EthernetFrame::new_checked(&buf[..len])
            .and_then(|f| ArpRepr::parse(&ArpPacket::new_checked(f.payload())?));
        assert_eq!(r, Err(Error::Truncated), "len {len}");
    }
}

fn icmp_frame(icmp: &Icmpv4Repr) -> Vec<u8> {
    let ip = ip_repr(IpProtocol::Icmp, icmp.buffer_len());
    let mut buf = vec![0u8; 14 + ip.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    ETH.emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &CAPS);
    icmp.emit(&mut Icmpv4Packet::new_unchecked(ipp.payload_mut()), &CAPS);
    buf
}

fn parse_icmp_frame(buf: &[u8]) -> Result<Icmpv4Repr<'_>, Error> {
    let eth = EthernetFrame::new_checked(buf)?;
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let ip_repr = Ipv4Repr::parse(&ip, &CAPS)?;
    assert_eq!(ip_repr.protocol, IpProtocol::Icmp);
    Icmpv4Repr::parse(&Icmpv4Packet::new_checked(ip.payload())?, &CAPS)
}

#[test]
fn icmp_round_trips_and_corruption() {
    // The quoted segment: a TCP header's first 8 bytes, ports 49152 -> 443.
    let quoted_tcp = [0xc0, 0x00, 0x01, 0xbb, 0x00, 0x00, 0x10, 0x00];
    let quoted_ip = Ipv4Repr {
        ttl: 1,
        payload_len: 1460,
        ..ip_repr(IpProtocol::Tcp, 0)
    };
    let reprs = [
        Icmpv4Repr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: &[0xab; 56],
        },
        Icmpv4Repr::EchoReply {
            ident: 0xffff,
            seq_no: 0,
            data: b"",
        },
        Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::FragRequired,
            next_hop_mtu: 1280,
            header: quoted_ip,
            data: &quoted_tcp,
        },
        Icmpv4Repr::DstUnreachable {
            reason: DstUnreachable::Unknown(200),
            next_hop_mtu: 0,
            header: quoted_ip,
            data: &quoted_tcp,
        },
        Icmpv4Repr::TimeExceeded {
            reason: TimeExceeded::TtlExpired,
            header: quoted_ip,
            data: &quoted_tcp,
        },
    ];
    for repr in reprs {
        let frame = icmp_frame(&repr);
        let parsed = parse_icmp_frame(&frame).unwrap();
        assert_eq!(parsed, repr);
        if !matches!(
            repr,
            Icmpv4Repr::EchoRequest { .. } | Icmpv4Repr::EchoReply { .. }
        ) {
            assert_eq!(parsed.quoted_ports(), Some((49152, 443)));
            assert_eq!(parsed.quoted_tcp_seq(), Some(SeqNumber(0x1000)));
        } else {
            assert_eq!(parsed.quoted_ports(), None);
        }
        for len in 0..frame.len() {
            assert_eq!(
                parse_icmp_frame(&frame[..len]),
                Err(Error::Truncated),
                "len {len}"
            );
        }
        for bit in 34 * 8..frame.len() * 8 {
            let mut f = frame.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(parse_icmp_frame(&f), Err(Error::BadChecksum), "bit {bit}");
        }
    }
}

/// The connection's path: size the frame, emit headers, write the payload in place, then
/// checksum, either re-reading the header or with the sum `emit_header_with_sum` returned.
fn tcp_frame_in_place(repr: &TcpRepr, with_header_sum: bool) -> Vec<u8> {
    let ip = ip_repr(IpProtocol::Tcp, repr.buffer_len());
    let mut umem_frame = [0xccu8; 2048];
    let total = 14 + ip.buffer_len();
    let mut eth = EthernetFrame::new_unchecked(&mut umem_frame[..total]);
    ETH.emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &CAPS);
    let mut tcp = TcpPacket::new_unchecked(ipp.payload_mut());
    if with_header_sum {
        let header_sum = repr.emit_header_with_sum(&mut tcp);
        tcp.payload_mut().copy_from_slice(repr.payload);
        tcp.fill_checksum_with_header_sum(SRC_IP, DST_IP, header_sum);
    } else {
        repr.emit_header(&mut tcp);
        tcp.payload_mut().copy_from_slice(repr.payload);
        tcp.fill_checksum(SRC_IP, DST_IP);
    }
    umem_frame[..total].to_vec()
}

#[test]
fn every_emission_path_writes_the_same_bytes() {
    let payload: Vec<u8> = (0..301u32).map(|i| (i * 13) as u8).collect();
    for mss in [None, Some(1460)] {
        for window_scale in [None, Some(7), Some(200)] {
            for sack_permitted in [false, true] {
                for timestamp in [None, Some((0xdead_beef, 1))] {
                    for n_sack in 0..=MAX_SACK_BLOCKS {
                        for len in [0, 1, 2, 3, 64, 301] {
                            let mut options = TcpOptions::with_sack(&blocks(n_sack));
                            options.mss = mss;
                            options.window_scale = window_scale;
                            options.sack_permitted = sack_permitted;
                            options.timestamp = timestamp;
                            let repr = segment(TcpFlags(0xff), options, &payload[..len]);
                            let frame = tcp_frame(&repr);
                            assert_eq!(tcp_frame_in_place(&repr, false), frame, "{repr}");
                            assert_eq!(tcp_frame_in_place(&repr, true), frame, "{repr}");
                            // The IPv4 checksum emit derived from field values is the one a
                            // full pass over the header gives.
                            let mut again = frame.clone();
                            Ipv4Packet::new_unchecked(&mut again[14..]).fill_checksum();
                            assert_eq!(again, frame);
                        }
                    }
                }
            }
        }
    }
}

/// Reads every field of every view that accepts `bytes`, and runs every parser. Any panic
/// fails the property.
fn exercise(bytes: &[u8]) {
    for caps in [CAPS, LAX] {
        if let Ok(f) = EthernetFrame::new_checked(bytes) {
            let _ = (f.dst_addr(), f.src_addr(), f.ethertype(), f.payload().len());
            let _ = EthernetRepr::parse(&f);
        }
        if let Ok(p) = ArpPacket::new_checked(bytes) {
            let _ = (
                p.hardware_type(),
                p.protocol_type(),
                p.hardware_len(),
                p.protocol_len(),
                p.operation(),
            );
            let _ = (p.source_hardware_addr(), p.source_protocol_addr());
            let _ = (
                p.target_hardware_addr(),
                p.target_protocol_addr(),
                p.packet_len(),
            );
            if let Ok(r) = ArpRepr::parse(&p) {
                let _ = r.to_string();
            }
        }
        if let Ok(p) = Ipv4Packet::new_checked(bytes) {
            let _ = (
                p.version(),
                p.header_len(),
                p.dscp_ecn(),
                p.dscp(),
                p.ecn(),
                p.total_len(),
            );
            let _ = (
                p.ident(),
                p.dont_frag(),
                p.more_frags(),
                p.frag_offset(),
                p.is_fragment(),
            );
            let _ = (
                p.ttl(),
                p.protocol(),
                p.checksum(),
                p.src_addr(),
                p.dst_addr(),
            );
            let _ = (p.options().len(), p.payload().len(), p.verify_checksum());
            assert!(p.payload().len() + p.header_len() as usize == p.total_len() as usize);
            if let Ok(r) = Ipv4Repr::parse(&p, &caps) {
                assert_eq!(r.payload_len, p.payload().len());
            }
        }
        if let Ok(p) = Icmpv4Packet::new_checked(bytes) {
            let _ = (
                p.msg_type(),
                p.msg_code(),
                p.checksum(),
                p.echo_ident(),
                p.echo_seq_no(),
            );
            let _ = (p.next_hop_mtu(), p.data().len(), p.verify_checksum());
            if let Ok(r) = Icmpv4Repr::parse(&p, &caps) {
                let _ = (
                    r.buffer_len(),
                    r.quoted_ports(),
                    r.quoted_tcp_seq(),
                    r.to_string(),
                );
            }
        }
        if let Ok(p) = TcpPacket::new_checked(bytes) {
            let _ = (
                p.src_port(),
                p.dst_port(),
                p.seq_number(),
                p.ack_number(),
                p.header_len(),
            );
            let _ = (
                p.flags(),
                p.window_len(),
                p.checksum(),
                p.urgent_at(),
                p.options().len(),
            );
            let _ = (
                p.payload().len(),
                p.payload_len(),
                p.verify_checksum(SRC_IP, DST_IP),
            );
            if let Ok(r) = TcpRepr::parse(&p, SRC_IP, DST_IP, &caps) {
                let _ = (
                    r.seg_len(),
                    r.header_len(),
                    r.buffer_len(),
                    r.options.sack(),
                    r.to_string(),
                );
                assert!(r.options.sack_len as usize <= MAX_SACK_BLOCKS);
                assert!(r.options.window_scale.unwrap_or(0) <= 14);
            }
        }
        let _ = TcpOptions::parse(bytes);
        let _ = xdp_tcp::wire::pretty::Frame(bytes).to_string();
        let _ = parse_tcp_frame_any(bytes, &caps);
    }
}

/// Like `parse_tcp_frame` without the EtherType assertion.
fn parse_tcp_frame_any<'a>(buf: &'a [u8], caps: &ChecksumCaps) -> Result<TcpRepr<'a>, Error> {
    let eth = EthernetFrame::new_checked(buf)?;
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let ip_repr = Ipv4Repr::parse(&ip, caps)?;
    TcpRepr::parse(
        &TcpPacket::new_checked(ip.payload())?,
        ip_repr.src_addr,
        ip_repr.dst_addr,
        caps,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        exercise(&bytes);
    }

    /// Mutations of a valid frame reach deeper than random bytes: the headers mostly hold
    /// together, so option and quote parsing see interesting input.
    #[test]
    fn mutated_frames_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut frame = match which {
            0 => tcp_frame(&ts_segment(&[1, 2, 3, 4, 5, 6, 7, 8])),
            1 => {
                let mut o = TcpOptions::with_sack(&blocks(3));
                o.mss = Some(1460);
                tcp_frame(&segment(TcpFlags::SYN, o, b""))
            }
            _ => icmp_frame(&Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable::PortUnreachable,
                next_hop_mtu: 0,
                header: ip_repr(IpProtocol::Tcp, 40),
                data: &[0, 80, 0, 81, 1, 2, 3, 4],
            }),
        };
        for (at, v) in edits {
            let i = at % frame.len();
            frame[i] = v;
        }
        frame.truncate(cut % (frame.len() + 1));
        exercise(&frame);
        if frame.len() > 14 {
            exercise(&frame[14..]);
        }
        if frame.len() > 34 {
            exercise(&frame[34..]);
        }
    }

    #[test]
    fn tcp_round_trip_arbitrary_fields(
        ports in (1u16.., 1u16..),
        seq in any::<u32>(),
        ack in any::<u32>(),
        flags in any::<u8>(),
        window in any::<u16>(),
        urgent in any::<u16>(),
        mss in proptest::option::of(any::<u16>()),
        ws in proptest::option::of(0u8..=14),
        sack_permitted in any::<bool>(),
        ts in proptest::option::of((any::<u32>(), any::<u32>())),
        sack in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let sack: Vec<_> = sack.into_iter().map(|(l, r)| (SeqNumber(l), SeqNumber(r))).collect();
        let mut options = TcpOptions::with_sack(&sack);
        options.mss = mss;
        options.window_scale = ws;
        options.sack_permitted = sack_permitted;
        options.timestamp = ts;
        let repr = TcpRepr {
            src_port: ports.0,
            dst_port: ports.1,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            flags: TcpFlags(flags),
            window,
            urgent,
            options,
            payload: &payload,
        };
        let frame = tcp_frame(&repr);
        let (_, parsed) = parse_tcp_frame(&frame, &CAPS).unwrap();
        prop_assert_eq!(parsed, expected_after_emit(&repr));
    }
}
