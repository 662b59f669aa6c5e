//! The wire layer's hot path: parse and build one Ethernet + IPv4 + TCP frame with a 64-byte
//! payload and a timestamp option (the shape of a ping-pong data segment), and the checksum.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use xdp_tcp::wire::{
    checksum, ChecksumCaps, EtherType, EthernetAddress, EthernetFrame, EthernetRepr, IpProtocol,
    Ipv4Addr, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpOptions, TcpPacket, TcpRepr,
};

const CAPS: ChecksumCaps = ChecksumCaps {
    verify_rx: true,
    compute_tx: true,
};
const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const ETH: EthernetRepr = EthernetRepr {
    src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
    dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
    ethertype: EtherType::Ipv4,
};

fn segment(payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port: 49152,
        dst_port: 7,
        seq: SeqNumber(0x1234_5678),
        ack: SeqNumber(0x9abc_def0),
        flags: TcpFlags::ACK | TcpFlags::PSH,
        window: 502,
        urgent: 0,
        options: TcpOptions {
            timestamp: Some((1_000_000, 999_000)),
            ..TcpOptions::default()
        },
        payload,
    }
}

/// Builds the frame in `buf` as the engine does: headers in place, then the checksums.
/// Returns the frame length.
fn emit(tcp: &TcpRepr, buf: &mut [u8]) -> usize {
    let ip = Ipv4Repr::new(SRC, DST, IpProtocol::Tcp, tcp.buffer_len());
    let len = ETH.buffer_len(ip.buffer_len());
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..len]);
    ETH.emit(&mut eth);
    let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut ipp, &CAPS);
    tcp.emit(
        &mut TcpPacket::new_unchecked(ipp.payload_mut()),
        SRC,
        DST,
        &CAPS,
    );
    len
}

fn parse(frame: &[u8]) -> Result<(Ipv4Repr, TcpRepr<'_>), xdp_tcp::wire::Error> {
    let eth = EthernetFrame::new_checked(frame)?;
    EthernetRepr::parse(&eth)?;
    let ip = Ipv4Packet::new_checked(eth.payload())?;
    let ip_repr = Ipv4Repr::parse(&ip, &CAPS)?;
    let tcp = TcpPacket::new_checked(ip.payload())?;
    let tcp_repr = TcpRepr::parse(&tcp, ip_repr.src_addr, ip_repr.dst_addr, &CAPS)?;
    Ok((ip_repr, tcp_repr))
}

fn bench(c: &mut Criterion) {
    let payload = [0x5au8; 64];
    let repr = segment(&payload);
    let mut umem = vec![0u8; 2048];
    let len = emit(&repr, &mut umem);
    let frame = umem[..len].to_vec();
    assert_eq!(parse(&frame).unwrap().1, repr);

    let mut g = c.benchmark_group("frame_64B_ts");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| parse(black_box(&frame)).unwrap().1.seq)
    });
    g.bench_function("emit", |b| {
        b.iter(|| emit(black_box(&repr), black_box(&mut umem)))
    });
    // The connection's path: headers in place, payload written into the frame, then checksum.
    g.bench_function("emit_in_place", |b| {
        b.iter(|| {
            let tcp = black_box(&repr);
            let ip = Ipv4Repr::new(SRC, DST, IpProtocol::Tcp, tcp.buffer_len());
            let len = ETH.buffer_len(ip.buffer_len());
            let mut eth = EthernetFrame::new_unchecked(&mut umem[..len]);
            ETH.emit(&mut eth);
            let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
            ip.emit(&mut ipp, &CAPS);
            let mut seg = TcpPacket::new_unchecked(ipp.payload_mut());
            tcp.emit_header(&mut seg);
            seg.payload_mut().copy_from_slice(black_box(&payload));
            seg.fill_checksum(SRC, DST);
            len
        })
    });
    g.bench_function("emit_in_place_header_sum", |b| {
        b.iter(|| {
            let tcp = black_box(&repr);
            let ip = Ipv4Repr::new(SRC, DST, IpProtocol::Tcp, tcp.buffer_len());
            let len = ETH.buffer_len(ip.buffer_len());
            let mut eth = EthernetFrame::new_unchecked(&mut umem[..len]);
            ETH.emit(&mut eth);
            let mut ipp = Ipv4Packet::new_unchecked(eth.payload_mut());
            ip.emit(&mut ipp, &CAPS);
            let mut seg = TcpPacket::new_unchecked(ipp.payload_mut());
            let header_sum = tcp.emit_header_with_sum(&mut seg);
            seg.payload_mut().copy_from_slice(black_box(&payload));
            seg.fill_checksum_with_header_sum(SRC, DST, header_sum);
            len
        })
    });
    g.bench_function("emit_header_only", |b| {
        b.iter(|| {
            let mut tcp = TcpPacket::new_unchecked(&mut umem[34..34 + repr.buffer_len()]);
            black_box(&repr).emit_header(&mut tcp);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("checksum");
    for n in [64usize, 1500] {
        let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("data_{n}"), |b| {
            b.iter(|| checksum::data(black_box(&data)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
