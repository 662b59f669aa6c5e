use super::*;

type End = (Ipv4Addr, u16);

/// Microsoft's RSS verification suite, IPv4 (destination, source, IPv4-only hash, IPv4+TCP
/// hash), with [`MICROSOFT_KEY`].
const VECTORS: [(End, End, u32, u32); 5] = [
    (
        (Ipv4Addr::new(161, 142, 100, 80), 1766),
        (Ipv4Addr::new(66, 9, 149, 187), 2794),
        0x323e_8fc2,
        0x51cc_c178,
    ),
    (
        (Ipv4Addr::new(65, 69, 140, 83), 4739),
        (Ipv4Addr::new(199, 92, 111, 2), 14230),
        0xd718_262a,
        0xc626_b0ea,
    ),
    (
        (Ipv4Addr::new(12, 22, 207, 184), 38024),
        (Ipv4Addr::new(24, 19, 198, 95), 12898),
        0xd2d0_a5de,
        0x5c2b_394a,
    ),
    (
        (Ipv4Addr::new(209, 142, 163, 6), 2217),
        (Ipv4Addr::new(38, 27, 205, 30), 48228),
        0x8298_9176,
        0xafc7_327f,
    ),
    (
        (Ipv4Addr::new(202, 188, 127, 2), 1303),
        (Ipv4Addr::new(153, 39, 163, 191), 44251),
        0x5d18_09c5,
        0x10e8_28a2,
    ),
];

#[test]
fn microsoft_ipv4_tcp_vectors() {
    let t = Toeplitz::new(&MICROSOFT_KEY);
    for ((dst, dport), (src, sport), _, tcp) in VECTORS {
        assert_eq!(
            t.hash_v4_tcp(src, dst, sport, dport),
            tcp,
            "{src}:{sport} -> {dst}:{dport}"
        );
    }
}

#[test]
fn microsoft_ipv4_only_vectors_bit_by_bit() {
    let t = Toeplitz::new(&MICROSOFT_KEY);
    for ((dst, dport), (src, sport), ip_only, tcp) in VECTORS {
        let mut input = [src.octets(), dst.octets()].concat();
        assert_eq!(t.hash_bytes(&input), ip_only, "{src} -> {dst}");
        input.extend_from_slice(&sport.to_be_bytes());
        input.extend_from_slice(&dport.to_be_bytes());
        assert_eq!(t.hash_bytes(&input), tcp, "{src}:{sport} -> {dst}:{dport}");
    }
}

#[test]
fn table_driven_hash_matches_bitwise_for_other_keys() {
    // a key with every bit pattern at the window edges
    let key: Vec<u8> = (0..KEY_LEN as u8)
        .map(|i| i.wrapping_mul(37) ^ 0xa5)
        .collect();
    let t = Toeplitz::new(&key);
    let mut x = 0x1234_5678u32;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let src = Ipv4Addr::from(x);
        let dst = Ipv4Addr::from(x.rotate_left(7));
        let (sp, dp) = ((x >> 3) as u16, (x >> 11) as u16);
        let input = [
            &src.octets()[..],
            &dst.octets()[..],
            &sp.to_be_bytes()[..],
            &dp.to_be_bytes()[..],
        ]
        .concat();
        assert_eq!(t.hash_v4_tcp(src, dst, sp, dp), t.hash_bytes(&input));
    }
}

#[test]
fn indirection_maps_low_bits() {
    let t = Indirection::round_robin(128, 3);
    assert_eq!(t.entries().len(), 128);
    assert_eq!(t.queue(0), 0);
    assert_eq!(t.queue(4), 1);
    assert_eq!(t.queue(128 + 5), 2);
    assert_eq!(t.queues_used(), 3);
    assert!(Indirection::from_entries(Vec::new()).is_none());
}

/// The chooser's port, fed to the hash as the NIC would see the reply (remote -> us), lands on
/// the asked-for queue, through a table that is not round-robin.
#[test]
fn port_chooser_lands_on_the_asked_queue() {
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let remote = Ipv4Addr::new(10, 0, 0, 2);
    // uneven table: queue 3 has one entry in 16
    let mut entries = vec![0u32; 16];
    for (i, e) in entries.iter_mut().enumerate() {
        *e = match i {
            0..=7 => 0,
            8..=11 => 1,
            12..=14 => 2,
            _ => 3,
        };
    }
    let table = Indirection::from_entries(entries).unwrap();
    let steer = FlowSteer::new(local, &MICROSOFT_KEY, table.clone(), SteerSource::Device);
    let nic = Toeplitz::new(&MICROSOFT_KEY);
    for queue in 0..4 {
        let mut taken = Vec::new();
        for _ in 0..50 {
            let p = steer
                .choose_port(queue, remote, 80, (40000, 60000), 40000, |p| {
                    !taken.contains(&p)
                })
                .expect("a port");
            assert!((40000..=60000).contains(&p));
            let h = nic.hash_v4_tcp(remote, local, 80, p);
            assert_eq!(table.queue(h), queue, "port {p}");
            taken.push(p);
        }
    }
}

#[test]
fn port_chooser_respects_range_and_filter() {
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let remote = Ipv4Addr::new(10, 0, 0, 2);
    let steer = FlowSteer::software(local, 2);
    // a range of 64 ports holds about 32 per engine; all taken, none is left
    let owned: Vec<u16> = (1000..1064)
        .filter(|&p| steer.owns(1, remote, 7, p))
        .collect();
    assert!(owned.len() > 10 && owned.len() < 54, "{}", owned.len());
    assert_eq!(
        steer.choose_port(1, remote, 7, (1000, 1063), 1000, |p| !owned.contains(&p)),
        None
    );
    // starting past the end wraps around to the first owned port
    assert_eq!(
        steer.choose_port(1, remote, 7, (1000, 1063), 1063, |_| true),
        Some(*owned.iter().find(|&&p| p == 1063).unwrap_or(&owned[0]))
    );
    assert_eq!(
        steer.choose_port(0, remote, 7, (2000, 1000), 0, |_| true),
        None
    );
}

#[test]
fn every_tuple_has_exactly_one_owner() {
    let steer = FlowSteer::software(Ipv4Addr::new(10, 1, 1, 1), 4);
    let mut counts = [0u32; 4];
    for p in 0..4000u16 {
        let o = steer.owner(Ipv4Addr::new(10, 1, 1, 2), 9000 + p, 50000 + p / 3);
        counts[o as usize] += 1;
    }
    // spread: each engine within 20% of a quarter
    for c in counts {
        assert!((800..1200).contains(&c), "{counts:?}");
    }
}

#[test]
fn a_device_table_is_used_only_when_it_stays_within_our_queues() {
    let local = Ipv4Addr::new(10, 0, 0, 1);
    let key = MICROSOFT_KEY.to_vec();
    let s = FlowSteer::for_device(local, 2, Some((key.clone(), vec![0, 1, 1, 0])));
    assert_eq!(s.source(), SteerSource::Device);
    assert_eq!(s.table().entries(), [0, 1, 1, 0]);
    // a table naming queue 3 of a 2-engine stack would steer flows to nobody
    let s = FlowSteer::for_device(local, 2, Some((key, vec![0, 3])));
    assert_eq!(s.source(), SteerSource::Software);
    assert_eq!(s.table().queues_used(), 2);
    assert_eq!(
        FlowSteer::for_device(local, 4, None).table().queues_used(),
        4
    );
}
