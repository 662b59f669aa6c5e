//! The host's TCP counters under the names Linux's `nstat` (and `netstat -s`) gives them,
//! where they mean the same; ours alone carry an `XdpTcp` prefix.
//!
//! Nothing here is counted on the data path: [`TcpCounters::of`] reads the host's own counters,
//! the totals of freed connections and every live connection's counters, on request.

use super::{DropReason, Host};
use crate::tcp::{ConnStats, State};
use crate::wire;

/// Declares the struct and the table of names, so a counter cannot lack its name.
macro_rules! nstat {
    ($($(#[$m:meta])* $field:ident => $name:literal,)*) => {
        /// TCP counters of one host (or the sum of several): `TcpXxx` as in `/proc/net/snmp`,
        /// `TcpExtXxx` as in `/proc/net/netstat`, `XdpTcpXxx` for ours.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct TcpCounters {
            $($(#[$m])* pub $field: u64,)*
        }

        impl TcpCounters {
            /// Every counter with its name, in a fixed order.
            pub fn named(&self) -> Vec<(&'static str, u64)> {
                vec![$(($name, self.$field),)*]
            }

            /// Adds `o` (another engine's host) to these.
            pub fn add(&mut self, o: &TcpCounters) {
                $(self.$field += o.$field;)*
            }
        }
    };
}

nstat! {
    /// Active opens (CLOSED to SYN-SENT).
    active_opens => "TcpActiveOpens",
    /// SYNs a listener took (LISTEN to SYN-RECEIVED).
    passive_opens => "TcpPassiveOpens",
    /// Opening handshakes that ended in CLOSED.
    attempt_fails => "TcpAttemptFails",
    /// ESTABLISHED or CLOSE-WAIT straight to CLOSED.
    estab_resets => "TcpEstabResets",
    /// Connections now in ESTABLISHED or CLOSE-WAIT (a gauge, as Linux's).
    curr_estab => "TcpCurrEstab",
    /// TCP segments received, those in error included.
    in_segs => "TcpInSegs",
    /// TCP segments sent but retransmissions (as Linux counts them, which has
    /// `TcpRetransSegs` for those): new data, ACKs, SYNs, FINs and RSTs.
    out_segs => "TcpOutSegs",
    /// Segments retransmitted (SYN and SYN-ACK included).
    retrans_segs => "TcpRetransSegs",
    /// Segments dropped as malformed (header, length, checksum).
    in_errs => "TcpInErrs",
    /// RSTs sent, by connections and for segments of no connection.
    out_rsts => "TcpOutRsts",
    /// Segments dropped for a bad checksum.
    in_csum_errors => "TcpInCsumErrors",
    /// SYNs and cookie ACKs dropped because the listener's accept queue was full.
    listen_overflows => "TcpExtListenOverflows",
    /// SYNs and cookie ACKs a listener dropped for any reason, overflows included.
    listen_drops => "TcpExtListenDrops",
    /// SYN cookies sent because a listener's SYN queue was full.
    syncookies_sent => "TcpExtSyncookiesSent",
    /// ACKs with a valid cookie that made a connection.
    syncookies_recv => "TcpExtSyncookiesRecv",
    /// ACKs checked as cookies that failed.
    syncookies_failed => "TcpExtSyncookiesFailed",
    /// Segments dropped by the PAWS check.
    paws_estab => "TcpExtPAWSEstab",
    /// Challenge ACKs sent (RFC 5961).
    challenge_ack => "TcpExtTCPChallengeACK",
    /// Challenge ACKs held back by the rate limit.
    ack_skipped_challenge => "TcpExtTCPACKSkippedChallenge",
    /// Fast recoveries with SACK.
    sack_recovery => "TcpExtTCPSackRecovery",
    /// Fast recoveries without SACK (NewReno).
    reno_recovery => "TcpExtTCPRenoRecovery",
    /// D-SACK blocks received.
    dsack_recv => "TcpExtTCPDSACKRecv",
    /// Tail loss probes sent.
    loss_probes => "TcpExtTCPLossProbes",
    /// Retransmission timeouts.
    timeouts => "TcpExtTCPTimeouts",
    /// Segments retransmitted by fast retransmit or RACK, outside a timeout's recovery.
    fast_retrans => "TcpExtTCPFastRetrans",
    /// Segments received out of order and queued.
    ofo_queue => "TcpExtTCPOFOQueue",
    /// Keep-alive probes sent.
    keepalive => "TcpExtTCPKeepAlive",
    /// Zero-window probes sent.
    win_probe => "TcpExtTCPWinProbe",
    /// Reductions after a timeout undone as spurious.
    loss_undo => "TcpExtTCPLossUndo",
    /// RSTs received by connections.
    in_rsts => "XdpTcpInRsts",
    /// Segments retransmitted after a timeout.
    retrans_rto => "XdpTcpRetransRto",
    /// Segments retransmitted as tail loss probes.
    retrans_tlp => "XdpTcpRetransTlp",
    /// Segments retransmitted because the path MTU fell below them.
    retrans_mtu => "XdpTcpRetransMtu",
    /// Fast-recovery reductions undone as spurious.
    undo_recovery => "XdpTcpUndoRecovery",
    /// D-SACK blocks sent.
    dsack_sent => "XdpTcpDSACKSent",
    /// SACK blocks received and sent.
    sack_blocks_in => "XdpTcpSackBlocksIn",
    sack_blocks_out => "XdpTcpSackBlocksOut",
    /// Duplicate ACKs received.
    dupacks_in => "XdpTcpDupAcksIn",
    /// Segments received that were wholly duplicates (PAWS drops included).
    dup_segs_in => "XdpTcpDupSegsIn",
    /// Deliveries that showed reordering.
    reorder_seen => "XdpTcpReorderSeen",
    /// ACKs sent at once in quick-ACK mode.
    quick_acks => "XdpTcpQuickAcks",
    /// Window updates that moved the peer's right edge left.
    window_shrunk => "XdpTcpWindowShrunk",
    /// Times receive-buffer auto-tuning grew a connection's buffer.
    recv_buffer_grown => "XdpTcpRcvBufGrown",
    /// ICMP errors delivered to connections.
    icmp_errors => "XdpTcpIcmpErrors",
    /// Path MTU reductions taken by connections (ICMP, the cache), reductions of the host's
    /// path MTU cache, and black-hole fallbacks.
    pmtu_reductions => "XdpTcpPmtuReductions",
    pmtu_cache_reductions => "XdpTcpPmtuCacheReductions",
    black_hole_fallbacks => "XdpTcpBlackHoleFallbacks",
    /// TIME-WAIT connections ended early by a newer SYN.
    time_wait_reused => "XdpTcpTimeWaitReused",
}

impl TcpCounters {
    /// The counters of `host` now: its own, the freed connections' totals and every live
    /// connection's. Visits every connection.
    pub fn of(host: &Host) -> TcpCounters {
        let hs = host.stats();
        let mut c = hs.closed_conns;
        let mut curr_estab = 0;
        for (_, conn) in host.connections() {
            conn.add_stats_to(&mut c);
            if matches!(conn.state(), State::Established | State::CloseWait) {
                curr_estab += 1;
            }
        }
        let in_errs: u64 = DropReason::all()
            .filter(|r| matches!(r, DropReason::Tcp(_)))
            .map(|r| hs.dropped(r))
            .sum();
        let ConnStats {
            retrans_segs,
            rto_events,
            dupacks_in,
            ooo_segs_in,
            dup_segs_in,
            quick_acks,
            rst_in,
            rst_out,
            challenge_acks,
            challenge_acks_limited,
            zero_window_probes,
            window_shrunk,
            retrans_rto,
            retrans_fast,
            retrans_tlp,
            fast_recoveries,
            undo_rto,
            undo_fast,
            tlp_probes,
            sack_blocks_in,
            sack_blocks_out,
            dsack_in,
            dsack_out,
            keepalive_probes,
            icmp_errors,
            pmtu_reductions,
            retrans_mtu,
            black_hole_fallbacks,
            sack_recoveries,
            paws_drops,
            attempt_fails,
            estab_resets,
            reorder_seen,
            recv_buffer_grown,
            ..
        } = c;
        TcpCounters {
            active_opens: hs.conns_opened,
            passive_opens: hs.passive_opens,
            attempt_fails,
            estab_resets,
            curr_estab,
            in_segs: hs.rx_segments + in_errs,
            out_segs: hs.tx_packets.saturating_sub(retrans_segs),
            retrans_segs,
            in_errs,
            out_rsts: rst_out + hs.rst_sent_no_conn,
            in_csum_errors: hs.dropped(DropReason::Tcp(wire::Error::BadChecksum)),
            listen_overflows: hs.listen_overflows,
            listen_drops: hs.listen_drops,
            syncookies_sent: hs.syncookies_sent,
            syncookies_recv: hs.syncookies_recv,
            syncookies_failed: hs.syncookies_failed,
            paws_estab: paws_drops,
            challenge_ack: challenge_acks,
            ack_skipped_challenge: challenge_acks_limited,
            sack_recovery: sack_recoveries,
            reno_recovery: fast_recoveries - sack_recoveries,
            dsack_recv: dsack_in,
            loss_probes: tlp_probes,
            timeouts: rto_events,
            fast_retrans: retrans_fast,
            ofo_queue: ooo_segs_in,
            keepalive: keepalive_probes,
            win_probe: zero_window_probes,
            loss_undo: undo_rto,
            in_rsts: rst_in,
            retrans_rto,
            retrans_tlp,
            retrans_mtu,
            undo_recovery: undo_fast,
            dsack_sent: dsack_out,
            sack_blocks_in,
            sack_blocks_out,
            dupacks_in,
            dup_segs_in,
            reorder_seen,
            quick_acks,
            window_shrunk,
            recv_buffer_grown,
            icmp_errors,
            pmtu_reductions,
            pmtu_cache_reductions: hs.pmtu_reductions,
            black_hole_fallbacks,
            time_wait_reused: hs.time_wait_reused,
        }
    }

    /// The counter named `name` (`"TcpRetransSegs"`), if there is one.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}
