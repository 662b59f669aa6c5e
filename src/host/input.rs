//! What arrives: an IPv4 packet checked (header, addresses, protocol), its TCP segment parsed
//! and verified, and demultiplexed to its connection (lent to the application in place when it
//! takes the bytes), to a listener (a new connection, a cookie's ACK), or refused and counted.

use super::*;

/// The application's side of [`Host::handle_ipv4_lending`]: given a connection's handle, the
/// connection and in-order payload in place, returns how many bytes it consumed.
pub type HostSink<'a> = dyn FnMut(ConnId, &mut Connection, &[u8]) -> usize + 'a;

impl Host {
    /// Processes one received IPv4 packet (no link-layer header) and says what became of it.
    pub fn handle_ipv4(&mut self, now: Instant, packet: &[u8]) -> RxVerdict {
        self.handle_ipv4_lending(now, packet, None::<&mut HostSink<'_>>)
    }

    /// [`Host::handle_ipv4`] with zero-copy receive: in-order payload of an established
    /// connection that nothing readable precedes is lent to `sink` in place (a slice of
    /// `packet`, the received frame itself), with the connection to answer on, before anything
    /// is copied; `sink` returns how many bytes it consumed, and only the rest is copied into
    /// the receive buffer (see [`Connection::handle_segment_lending`]). Out-of-order data, data
    /// behind unread bytes and any segment off the fast path are copied as by `handle_ipv4`.
    /// No frame stays lent past the call. Counted in [`HostStats::rx_bytes_lent`] and `_kept`.
    ///
    /// `sink` is generic (a [`HostSink`] trait object works too) so that a concrete
    /// application's code is inlined into the receive path.
    pub fn handle_ipv4_lending<F>(
        &mut self,
        now: Instant,
        packet: &[u8],
        sink: Option<&mut F>,
    ) -> RxVerdict
    where
        F: FnMut(ConnId, &mut Connection, &[u8]) -> usize + ?Sized,
    {
        self.stats.rx_packets += 1;
        let caps = self.cfg.checksum;
        let ip = match Ipv4Packet::new_checked(packet)
            .and_then(|p| Ipv4Repr::parse(&p, &caps).map(|r| (p, r)))
        {
            Ok(x) => x,
            Err(e) => return self.drop(DropReason::Ipv4(e)),
        };
        let (pkt, repr) = ip;
        if repr.dst_addr != self.cfg.addr {
            let d = repr.dst_addr;
            return self.drop(if d.is_multicast() || d.is_broadcast() {
                DropReason::BadDestination
            } else {
                DropReason::NotOurAddress
            });
        }
        if self.bad_source(repr.src_addr) {
            return self.drop(DropReason::BadSource);
        }
        // (TCP asked first: every segment passes one test)
        if repr.protocol != IpProtocol::Tcp {
            if repr.protocol == IpProtocol::Icmp {
                return self.handle_icmp(now, pkt.payload());
            }
            return self.drop(DropReason::UnhandledProtocol);
        }
        let payload = pkt.payload();
        let parsed = TcpPacket::new_checked(payload)
            .and_then(|t| TcpRepr::parse(&t, repr.src_addr, repr.dst_addr, &caps));
        // (borrowed where it was parsed: moved out, the ~90-byte segment would be copied)
        let seg = match &parsed {
            Ok(s) => s,
            Err(e) => return self.drop(DropReason::Tcp(*e)),
        };
        self.handle_segment_lending(now, repr.src_addr, seg, sink)
    }

    /// Processes one parsed TCP segment addressed to us; the verdict is `Delivered` or
    /// `Refused`.
    pub fn handle_segment(&mut self, now: Instant, src: Ipv4Addr, seg: &TcpRepr) -> RxVerdict {
        self.handle_segment_lending(now, src, seg, None::<&mut HostSink<'_>>)
    }

    fn handle_segment_lending<F>(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        seg: &TcpRepr,
        sink: Option<&mut F>,
    ) -> RxVerdict
    where
        F: FnMut(ConnId, &mut Connection, &[u8]) -> usize + ?Sized,
    {
        self.stats.rx_segments += 1;
        let remote = SocketAddrV4::new(src, seg.src_port);
        if let Some(index) = self.table.get(flow_key(remote, seg.dst_port)) {
            if self.table.len() >= prefetch::SLOT_HINTS_ABOVE {
                self.prefetch_slot(index);
            }
            let slot = &self.slots[index as usize];
            let reincarnation = slot.released
                && self.listeners.contains_key(&seg.dst_port)
                && slot.conn.as_ref().is_some_and(|c| c.accepts_new_syn(seg));
            if !reincarnation {
                let slot = &mut self.slots[index as usize];
                if let Some(conn) = slot.conn.as_mut() {
                    // (a connection the application has not accepted yet is not lent)
                    match sink.filter(|_| slot.pending_on.is_none()) {
                        None => conn.handle_segment(now, src, seg),
                        Some(sink) => {
                            let id = ConnId {
                                index,
                                generation: slot.generation,
                            };
                            let stats = &mut self.stats;
                            // (`move`: the id by value and `stats` as one reference; borrowed,
                            // the closure held a pointer to the id and one per counter, ~12
                            // instructions a segment to build and follow)
                            let mut lend = move |c: &mut Connection, data: &[u8]| {
                                let taken = sink(id, c, data).min(data.len());
                                stats.rx_bytes_lent += data.len() as u64;
                                stats.rx_bytes_lent_kept += (data.len() - taken) as u64;
                                taken
                            };
                            conn.handle_segment_lending(now, src, seg, Some(&mut lend));
                        }
                    }
                }
                self.touch(index);
                return RxVerdict::Delivered { src };
            }
            // a newer SYN ends TIME-WAIT early (as Linux does): the listener takes it below
            self.stats.time_wait_reused += 1;
            self.free_slot(index);
        } else if let Some(owner) = self.foreign_owner(remote, seg.dst_port) {
            return RxVerdict::Foreign { owner };
        }
        let is_syn = seg.flags.syn() && !seg.flags.ack() && !seg.flags.rst();
        if let Some(listener) = self.listeners.get_mut(&seg.dst_port) {
            if is_syn {
                if !listener.has_room() {
                    return self.syn_queue_full(now, src, seg);
                }
                let pressure = listener.under_pressure();
                if let Err(r) = self.admit_new() {
                    return self.refuse(src, r);
                }
                let Some(listener) = self.listeners.get_mut(&seg.dst_port) else {
                    return self.refuse(src, DropReason::NoConnection);
                };
                listener.embryo_started();
                let local = SocketAddrV4::new(self.cfg.addr, seg.dst_port);
                let iss = self.isn.generate(now, local, remote);
                let mut tcp = self.tcp.clone();
                if pressure {
                    let t = Arc::make_mut(&mut tcp);
                    t.syn_retries = t.syn_retries.min(t.synack_retries_under_pressure);
                }
                let mut conn = Connection::accept(tcp, local, remote, iss, now, seg);
                self.start_path(now, &mut conn);
                self.insert(conn, Some(seg.dst_port));
                self.stats.passive_opens += 1;
                return RxVerdict::Delivered { src };
            }
            if !seg.flags.ack() {
                // a listener answers only an ACK with RST; anything else without SYN is dropped
                // (RFC 9293 3.10.7.2)
                return self.refuse(src, DropReason::NoConnection);
            }
            if !seg.flags.rst() && !seg.flags.syn() && listener.cookies_recent(now) {
                if let Some(v) = self.cookie_ack(now, src, seg) {
                    return v;
                }
            }
        }
        if let Some(rst) = tcp::reset_for(seg) {
            self.stats.rst_sent_no_conn += 1;
            self.push_stray(src, rst);
        }
        self.refuse(src, DropReason::NoConnection)
    }

    /// A new connection starts from what the cache knows of the path to its peer.
    pub(super) fn start_path(&mut self, now: Instant, conn: &mut Connection) {
        if let Some((mtu, until)) = self.pmtu.get(now, *conn.remote().ip()) {
            conn.lower_path_mtu(now, mtu, until);
        }
    }

    /// A source address no packet to us may carry: 0/8, 127/8, multicast, the limited
    /// broadcast, or our own address (as Linux's martian sources).
    #[inline]
    pub(super) fn bad_source(&self, src: Ipv4Addr) -> bool {
        // 0/8, 127/8, 224/4 (multicast) and the limited broadcast; class E is left alone, as
        // Linux does. The first octets by a bitmap: one test for the three networks.
        const BAD_NETS: [u64; 4] = [1, 1 << 63, 0, 0xffff << 32];
        let net = src.octets()[0] as usize;
        (BAD_NETS[net >> 6] >> (net & 63)) & 1 != 0
            || src == Ipv4Addr::BROADCAST
            || src == self.cfg.addr
    }

    pub(super) fn drop(&mut self, reason: DropReason) -> RxVerdict {
        self.stats.count_drop(reason);
        RxVerdict::Dropped(reason)
    }

    pub(super) fn refuse(&mut self, src: Ipv4Addr, reason: DropReason) -> RxVerdict {
        self.stats.count_drop(reason);
        RxVerdict::Refused { src, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sources_by_bitmap_are_the_martians() {
        let ours = Ipv4Addr::new(10, 0, 0, 1);
        let host = Host::new(HostConfig::new(ours));
        for net in 0..=255u32 {
            for rest in [0, 1, 0x00ff_ffff, 0x0001_0203] {
                let a = (net << 24) | rest;
                let src = Ipv4Addr::from(a);
                let martian =
                    net == 0 || net == 127 || (net & 0xf0) == 0xe0 || a == u32::MAX || src == ours;
                assert_eq!(host.bad_source(src), martian, "{src}");
            }
        }
        assert!(host.bad_source(ours));
    }
}
