//! The path: its MTU, the MSS of each segment, and what ICMP says about it (RFC 1191 path MTU
//! discovery with RFC 5927's checks, RFC 4821 black-hole detection, RFC 1122 4.2.3.9 and
//! RFC 5461 soft and hard errors), as Linux's `tcp_sync_mss`, `tcp_current_mss`,
//! `tcp_simple_retransmit`, `tcp_mtu_probing` and `tcp_v4_err` do it.
//!
//! Invariants:
//! - `pmtu` lies in [`MIN_PMTU`]`..=iface` (`iface` is the interface's MTU, `cfg.mss + 40`) and
//!   the negotiated MSS always follows it and the black-hole search ([`Connection::sync_mss`]).
//! - No IPv4 packet we build is longer than `pmtu`: a data segment carries at most
//!   [`Connection::current_mss`] bytes, the MSS less the SACK blocks that very segment carries;
//!   a segment recorded longer than that is split before it is sent again.
//! - A lowered path MTU, and a black-hole fallback, hold until `cfg.pmtu_expires` after they
//!   were set; then the interface's MTU is tried again (checked on each transmission poll).
//! - ICMP errors never end a synchronized connection: they are kept as a soft error that
//!   [`Connection::take_error`] reports, and that a later timeout reports instead of
//!   `TimedOut`. Only a hard error while connecting ends the connection.
//!
//! The host calls [`Connection::handle_packet_too_big`] and [`Connection::handle_icmp_error`]
//! for ICMP errors quoting one of our segments, and [`Connection::lower_path_mtu`] to pass on
//! what its path MTU cache knows.

use super::space::MIN_SND_MSS;
use super::Connection;
use crate::tcp::config::Config;
use crate::tcp::congestion::CongestionControl;
use crate::tcp::event::Error;
use crate::tcp::state::State;
use crate::time::Instant;
use crate::wire::tcp::MAX_SACK_BLOCKS;
use crate::wire::SeqNumber;

/// The least path MTU believed: a report below it counts as this (Linux's `min_pmtu`).
pub const MIN_PMTU: u16 = 552;
/// IPv4 and TCP headers without options.
const HEADERS: usize = 40;
/// Black-hole detection starts after timeouts have gone on as long as this many would take
/// from the minimum RTO (Linux's `tcp_retries1`).
const BLACK_HOLE_RETRIES: u32 = 3;

/// What the connection knows of its path's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PathMtu {
    /// The interface's MTU.
    pub iface: u16,
    /// The path's MTU as far as we know: the interface's unless ICMP said less.
    pub pmtu: u16,
    /// The largest MSS (without options) black-hole detection allows, once engaged.
    pub search_mss: Option<usize>,
    /// When a lowered `pmtu` and `search_mss` are forgotten.
    pub expires: Option<Instant>,
}

impl PathMtu {
    pub fn new(cfg: &Config) -> Self {
        let iface = cfg.mss.saturating_add(HEADERS as u16);
        PathMtu {
            iface,
            pmtu: iface,
            search_mss: None,
            expires: None,
        }
    }

    /// Payload bytes a segment without options may carry on the path.
    #[inline]
    pub fn mss(&self) -> usize {
        (self.pmtu as usize - HEADERS).min(self.search_mss.unwrap_or(usize::MAX))
    }
}

impl Connection {
    /// The path MTU in use: the largest IPv4 packet this connection sends.
    pub fn path_mtu(&self) -> u16 {
        self.path.pmtu
    }

    /// Sets the negotiated MSS from the path (Linux's `tcp_sync_mss`); congestion control's
    /// windows keep their size in segments.
    pub(super) fn sync_mss(&mut self) {
        let before = self.opts.mss;
        self.opts.sync_mss(self.path.mss());
        if self.opts.mss != before {
            self.cc.set_mss(self.opts.mss);
        }
    }

    /// Bytes of the SACK option the next segment carries: exactly what `fill_sack` will put in.
    #[inline]
    fn sack_option_len(&self) -> usize {
        if !self.opts.sack {
            return 0;
        }
        let room = if self.opts.timestamps {
            3
        } else {
            MAX_SACK_BLOCKS
        };
        // the same count as `fill_sack`: the D-SACK, then the ranges by recency
        let blocks = self.rcv.dsack.is_some() as usize
            + if self.rcv.buf.has_out_of_order() {
                self.rcv.buf.out_of_order().recent_ranges().count()
            } else {
                0
            };
        match blocks.min(room) {
            0 => 0,
            n => 4 + 8 * n,
        }
    }

    /// Payload bytes the next data segment may carry: the MSS less the SACK blocks it will
    /// carry (Linux's `tcp_current_mss`), so the packet never exceeds the path MTU.
    #[inline]
    pub(super) fn current_mss(&self) -> usize {
        self.opts.mss - self.sack_option_len()
    }

    /// Forgets a lowered path MTU and black-hole fallback once they expire: the interface's MTU
    /// is tried again (RFC 1191 6.3), and ICMP lowers it again if the path is still narrow.
    #[inline]
    pub(super) fn expire_path(&mut self, now: Instant) {
        if self.path.expires.is_some_and(|t| now >= t) {
            self.path.pmtu = self.path.iface;
            self.path.search_mss = None;
            self.path.expires = None;
            self.sync_mss();
        }
    }

    /// An ICMP "fragmentation needed" (RFC 1191) quoting our segment with sequence number
    /// `seq`: the next hop carries at most `mtu` bytes. Believed only for a segment in flight
    /// (RFC 5927: `snd_una <= seq < snd_max`). Returns the path MTU now in use if the report
    /// lowered it; the host then caches it for the peer.
    pub fn handle_packet_too_big(&mut self, now: Instant, seq: SeqNumber, mtu: u16) -> Option<u16> {
        if matches!(self.state, State::Closed | State::TimeWait)
            || seq.diff(self.snd.una) < 0
            || seq.diff(self.snd.max) >= 0
        {
            return None;
        }
        self.stats.rare().icmp_errors += 1;
        self.lower_path_mtu(now, mtu, now + self.cfg.pmtu_expires)
    }

    /// Lowers the path MTU to `mtu` (at least [`MIN_PMTU`]) until `until`, if that is lower
    /// than the one in use; returns the new path MTU then. What is in flight and no longer fits
    /// was dropped on the way: it is marked lost and sent again at once, re-segmented, without
    /// reducing the congestion window, which keeps its size in segments (the units changed,
    /// not the congestion: Linux's `tcp_simple_retransmit`). Also how the host passes on its
    /// cached path MTU to a new connection (call it right after creating it) or to the other
    /// connections to a peer.
    pub fn lower_path_mtu(&mut self, now: Instant, mtu: u16, until: Instant) -> Option<u16> {
        let mtu = mtu.max(MIN_PMTU);
        if mtu >= self.path.pmtu || matches!(self.state, State::Closed | State::TimeWait) {
            return None;
        }
        self.path.pmtu = mtu;
        self.path.expires = Some(self.path.expires.map_or(until, |t| t.max(until)));
        self.stats.rare().pmtu_reductions += 1;
        let before = self.opts.mss;
        self.sync_mss();
        if self.opts.mss < before && self.state.is_synchronized() {
            let mss = self.current_mss();
            let (rec, mut cx) = self.loss(now);
            rec.on_mtu_reduced(&mut cx, mss);
        }
        Some(mtu)
    }

    /// An ICMP error other than "fragmentation needed" quoting our segment with sequence number
    /// `seq`, as the error `e` it maps to; `hard` for the codes Linux's `icmp_err_convert`
    /// calls fatal (port and protocol unreachable, administratively prohibited, ...). Believed
    /// only for a segment in flight (RFC 5927), `snd_una - 1` included, which keep-alive probes
    /// carry. While connecting, a hard error ends the connection with `e`. Anything else is
    /// kept as a soft error (Linux's `sk_err_soft`, RFC 1122 4.2.3.9, RFC 5461): reported by
    /// [`Connection::take_error`], and by the connection's failure instead of `TimedOut` if
    /// its retransmissions or keep-alive probes later time out. It never ends a synchronized
    /// connection.
    pub fn handle_icmp_error(&mut self, _now: Instant, seq: SeqNumber, e: Error, hard: bool) {
        if !seq.in_range_incl(self.snd.una - 1, self.snd.max) {
            return;
        }
        self.stats.rare().icmp_errors += 1;
        match self.state {
            State::Closed | State::TimeWait => {}
            State::SynSent if hard => self.fail(e),
            // an embryo of a listener is dropped silently, as by an RST
            State::SynReceived if hard && self.passive => self.enter_closed(),
            State::SynReceived if hard => self.fail(e),
            _ => self.soft_error = Some(e),
        }
    }

    /// The error a connection that timed out fails with: the last soft error if one came in
    /// (an ICMP report says more than the silence), else `TimedOut` (Linux's `tcp_write_err`).
    pub(super) fn timeout_error(&mut self) -> Error {
        self.soft_error.take().unwrap_or(Error::TimedOut)
    }

    /// Black-hole detection (RFC 4821 and RFC 8899, as Linux's `tcp_mtu_probing` = 1), on a
    /// retransmission timeout in a series that began at `first`: once the series has gone on
    /// as long as three timeouts from the minimum RTO take (Linux's `retransmits_timed_out`
    /// with `tcp_retries1`), and the segment to resend is larger than the fallback, the path
    /// may be dropping big packets without telling (ICMP filtered): the MSS falls to
    /// `cfg.base_mss`, then halves on each further timeout, down to [`MIN_SND_MSS`]. It holds
    /// until `cfg.pmtu_expires`.
    pub(super) fn probe_black_hole(&mut self, now: Instant, first: Instant) {
        if !self.cfg.mtu_probing || self.sb.is_empty() {
            return;
        }
        let boundary = self
            .cfg
            .rto_min
            .saturating_mul((2 << BLACK_HOLE_RETRIES) - 1);
        if now - first < boundary {
            return;
        }
        let fallback = match self.path.search_mss {
            None => self.cfg.base_mss as usize,
            Some(m) => m / 2,
        }
        .min(self.cfg.base_mss as usize)
        .max(MIN_SND_MSS);
        if self.sb.get(0).payload_len() + self.opts.options_len() <= fallback {
            return;
        }
        self.path.search_mss = Some(fallback);
        self.path.expires = Some(now + self.cfg.pmtu_expires);
        self.stats.rare().black_hole_fallbacks += 1;
        self.sync_mss();
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{established, ms, IRS, ISS, PEER};
    use super::*;
    use crate::tcp::timers::TimerKind;
    use crate::wire::{TcpFlags, TcpOptions, TcpRepr};

    fn seg(seq: SeqNumber, ack: SeqNumber, payload: &'static [u8], ts: u32) -> TcpRepr<'static> {
        let mut s = super::super::testing::from_peer(seq, ack, TcpFlags::ACK);
        s.options.timestamp = Some((ts, 1));
        s.payload = payload;
        s
    }

    /// ESTABLISHED with SACK and timestamps, the peer's MSS 1460: 1448 bytes per segment.
    fn with_timestamps() -> Connection {
        let mut c = Connection::connect(Config::default(), super::super::testing::US, PEER, ISS);
        while c.poll_transmit(ms(0)).is_some() {}
        let mut syn_ack =
            super::super::testing::from_peer(IRS, ISS + 1, TcpFlags::SYN | TcpFlags::ACK);
        syn_ack.options = TcpOptions {
            mss: Some(1460),
            sack_permitted: true,
            timestamp: Some((1, 0)),
            window_scale: Some(7),
            ..TcpOptions::default()
        };
        c.handle_segment(ms(100), *PEER.ip(), &syn_ack);
        while c.poll_transmit(ms(100)).is_some() {}
        while c.poll_event().is_some() {}
        assert_eq!((c.mss(), c.path_mtu()), (1448, 1500));
        c
    }

    /// The IPv4 packet length of `t`.
    fn ip_len(t: &crate::tcp::Transmit) -> usize {
        20 + t.segment_len()
    }

    #[test]
    fn data_segments_leave_room_for_their_sack_blocks() {
        let mut c = with_timestamps();
        c.set_nodelay(true);
        // the peer's data arrives with 1, 2 then 3 holes: each of our next segments carries
        // that many SACK blocks, and its payload shrinks by their 4 + 8n bytes
        for n in 1..=3u32 {
            let t_now = 200 + 10 * u64::from(n);
            let hole_seq = IRS + 1 + (n as usize) * 200;
            c.handle_segment(
                ms(t_now),
                *PEER.ip(),
                &seg(hole_seq, ISS + 1, &[7; 100], 1 + n),
            );
            c.send(&vec![1; 3000]).unwrap();
            let t = c.poll_transmit(ms(t_now)).expect("data");
            assert_eq!(t.repr.options.sack().len(), n as usize);
            assert_eq!(t.payload_len, 1448 - (4 + 8 * n as usize), "{n} blocks");
            assert_eq!(ip_len(&t), 1500, "exactly the MTU");
            while let Some(t) = c.poll_transmit(ms(t_now)) {
                assert!(ip_len(&t) <= 1500);
            }
        }
    }

    #[test]
    fn a_retransmission_that_no_longer_fits_is_split() {
        let mut c = with_timestamps();
        c.send(&vec![1; 1448]).unwrap();
        let t = c.poll_transmit(ms(200)).expect("a full segment");
        assert_eq!((t.payload_len, t.repr.options.sack().len()), (1448, 0));
        // out-of-order data from the peer: every segment now carries one SACK block
        c.handle_segment(ms(210), *PEER.ip(), &seg(IRS + 101, ISS + 1, &[7; 100], 2));
        while c.poll_transmit(ms(210)).is_some() {}
        c.timers.clear(TimerKind::TailLossProbe);
        let rto = c.timers().get(TimerKind::Rto).unwrap();
        c.handle_timeout(rto);
        let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit(rto))
            .map(|t| (t.repr.seq, t.payload_len, ip_len(&t)))
            .collect();
        // the head goes as a full segment with its SACK block, the rest after it: one MSS,
        // the congestion window after a timeout
        assert_eq!(
            sent,
            [
                (ISS + 1, 1436, 1500),
                (ISS + 1 + 1436, 12, 20 + 32 + 12 + 12)
            ]
        );
        assert_eq!(c.stats().retrans_rto, 2);
    }

    #[test]
    fn fragmentation_needed_lowers_the_mss_and_resends_at_once() {
        let mut c = with_timestamps();
        c.send(&vec![1; 4 * 1448]).unwrap();
        let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit(ms(200))).collect();
        assert_eq!(sent.len(), 4);
        let cwnd = c.cwnd();
        // a quote of a sequence number not in flight is not believed (RFC 5927)
        assert_eq!(
            c.handle_packet_too_big(ms(205), ISS + 1 + 4 * 1448, 1280),
            None
        );
        assert_eq!(c.handle_packet_too_big(ms(205), ISS, 1280), None);
        assert_eq!(c.mss(), 1448);
        assert_eq!(
            c.handle_packet_too_big(ms(205), ISS + 1 + 1448, 1280),
            Some(1280)
        );
        assert_eq!((c.path_mtu(), c.mss()), (1280, 1280 - 40 - 12));
        // everything in flight was too big: resent at once at the new size
        let resent: Vec<_> = std::iter::from_fn(|| c.poll_transmit(ms(205)))
            .map(|t| (t.repr.seq - (ISS + 1), t.payload_len, ip_len(&t)))
            .collect();
        assert_eq!(resent[0], (0, 1228, 1280));
        assert!(resent.iter().all(|&(_, len, ip)| len <= 1228 && ip <= 1280));
        // not reduced: as many segments as before, of the new size
        assert_eq!(c.cwnd(), cwnd / 1448 * 1228);
        assert_eq!(c.state(), State::Established);
        assert_eq!(c.error(), None);
        // a higher or equal report changes nothing; a tiny one counts as 552
        assert_eq!(c.handle_packet_too_big(ms(206), ISS + 1, 1400), None);
        assert_eq!(
            c.handle_packet_too_big(ms(206), ISS + 1, 68),
            Some(MIN_PMTU)
        );
        assert_eq!(c.mss(), 552 - 40 - 12);
        // ten minutes later the interface's MTU is tried again
        let later = ms(206) + Config::default().pmtu_expires;
        c.poll_transmit(later);
        assert_eq!((c.path_mtu(), c.mss()), (1500, 1448));
    }

    #[test]
    fn peer_mss_is_floored_at_48_and_clamped_by_ours() {
        let clamp = Config {
            mss_clamp: Some(1000),
            ..Config::default()
        };
        let mut c = Connection::connect(clamp, super::super::testing::US, PEER, ISS);
        let syn = c.poll_transmit(ms(0)).unwrap();
        assert_eq!(
            syn.repr.options.mss,
            Some(1000),
            "TCP_MAXSEG clamps what we offer"
        );
        let mut syn_ack =
            super::super::testing::from_peer(IRS, ISS + 1, TcpFlags::SYN | TcpFlags::ACK);
        syn_ack.options.mss = Some(1460);
        c.handle_segment(ms(100), *PEER.ip(), &syn_ack);
        assert_eq!(c.mss(), 1000);
        let mut c = established(Config::default(), false);
        assert_eq!(c.mss(), 1460);
        let mut tiny = Connection::connect(Config::default(), super::super::testing::US, PEER, ISS);
        tiny.poll_transmit(ms(0));
        syn_ack.options.mss = Some(8);
        tiny.handle_segment(ms(100), *PEER.ip(), &syn_ack);
        assert_eq!(tiny.mss(), 48, "Linux's tcp_min_snd_mss");
        c.send(&[0; 100]).unwrap();
        assert_eq!(c.poll_transmit(ms(100)).unwrap().payload_len, 100);
    }
}
