//! The listener's side of SYN cookies ([`crate::tcp::cookie`] has the encoding): a SYN that
//! finds the SYN queue full is answered by a SYN-ACK whose ISN is a cookie, and nothing is kept;
//! an ACK for no connection to a port that sent cookies lately is checked as the answer to one
//! and, if good, becomes an established connection on the listener's accept queue.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{DropReason, Host, RxVerdict};
use crate::tcp::{cookie, Connection};
use crate::time::Instant;
use crate::wire::TcpRepr;

impl Host {
    /// A SYN for `seg.dst_port`, whose SYN queue is full: a cookie if allowed, else a drop.
    pub(super) fn syn_queue_full(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        seg: &TcpRepr,
    ) -> RxVerdict {
        let port = seg.dst_port;
        let Some(listener) = self.listeners.get_mut(&port) else {
            return self.refuse(src, DropReason::NoConnection);
        };
        if listener.accept_queue_full() {
            self.stats.listen_overflows += 1;
            self.stats.listen_drops += 1;
            return self.refuse(src, DropReason::BacklogFull);
        }
        if !self.cfg.tcp.syncookies {
            self.stats.listen_drops += 1;
            return self.refuse(src, DropReason::BacklogFull);
        }
        listener.cookie_sent(now);
        let local = SocketAddrV4::new(self.cfg.addr, port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        let peer_mss = seg.options.mss.unwrap_or(536);
        let iss = self.cookies.make(now, local, remote, seg.seq, peer_mss);
        // the SYN-ACK a connection would send, from a connection that is then forgotten
        let mut conn = Connection::accept(self.tcp.clone(), local, remote, iss, now, seg);
        self.start_path(now, &mut conn);
        let Some(t) = conn.poll_transmit(now) else {
            return self.refuse(src, DropReason::BacklogFull);
        };
        let mut repr = t.repr;
        if let Some((val, ecr)) = repr.options.timestamp {
            let wscale = repr
                .options
                .window_scale
                .and(seg.options.window_scale.map(|w| w.min(14)));
            let ts = cookie::encode_ts(val, wscale, repr.options.sack_permitted, false);
            repr.options.timestamp = Some((ts, ecr));
        }
        self.stats.syncookies_sent += 1;
        self.push_stray(src, repr);
        RxVerdict::Delivered { src }
    }

    /// An ACK to a listening port with no connection, after the port sent cookies: `None` if it
    /// fails as a cookie (counted; the caller answers it with RST), else what became of it.
    pub(super) fn cookie_ack(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        seg: &TcpRepr,
    ) -> Option<RxVerdict> {
        let port = seg.dst_port;
        let local = SocketAddrV4::new(self.cfg.addr, port);
        let remote = SocketAddrV4::new(src, seg.src_port);
        let iss = seg.ack - 1;
        let decoded = self
            .cookies
            .check(now, local, remote, seg.seq - 1, iss)
            .and_then(|mss| cookie::decode_options(seg, mss));
        let Some(opts) = decoded else {
            self.stats.syncookies_failed += 1;
            return None;
        };
        if let Err(r) = self.admit_new() {
            self.stats.listen_drops += 1;
            return Some(self.refuse(src, r));
        }
        let listener = self.listeners.get_mut(&port)?;
        if listener.accept_queue_full() {
            self.stats.listen_overflows += 1;
            self.stats.listen_drops += 1;
            return Some(self.refuse(src, DropReason::BacklogFull));
        }
        listener.embryo_started();
        self.stats.syncookies_recv += 1;
        let syn = cookie::rebuild_syn(seg, &opts);
        let mut conn = Connection::accept_cookie(self.tcp.clone(), local, remote, iss, now, &syn);
        self.start_path(now, &mut conn);
        // the echo is the cookie's TSval, whose low bits carry options, not a time: no RTT
        // sample from it
        let mut ack = *seg;
        if let Some((val, _)) = ack.options.timestamp {
            ack.options.timestamp = Some((val, 0));
        }
        conn.handle_segment(now, src, &ack);
        self.insert(conn, Some(port));
        Some(RxVerdict::Delivered { src })
    }
}
