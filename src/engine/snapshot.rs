//! Statistics an engine publishes on request: [`EngineSnapshot`] (every counter of the engine,
//! its host, neighbour cache and device, and every connection with its `tcp_info`) through a
//! [`StatsBoard`].
//!
//! The data path pays one relaxed load of an `AtomicBool` per iteration. A reader (another
//! thread: `Stack::stats`, the control socket) queues a reply channel on the board, raises the
//! flag and wakes the engine; at the end of its next iteration the engine builds one snapshot
//! for every reply queued (the counters stay plain `u64` fields the engine alone writes) and
//! sends it. No lock on either side; a snapshot allocates, on request only.

use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::{Receiver, Sender};

use super::EngineStats;
use crate::host::{ConnId, DropReason, Host, HostStats, TcpCounters};
use crate::io::xdp::{DeviceStats, SteerStats};
use crate::neigh::NeighStats;
use crate::tcp::TcpInfo;

/// One connection as the inspector lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// Its handle on the engine.
    pub id: ConnId,
    /// Our address and port.
    pub local: SocketAddrV4,
    /// The peer's.
    pub remote: SocketAddrV4,
    /// Its `tcp_info`.
    pub info: TcpInfo,
}

/// Everything one engine counts, at one instant.
#[derive(Debug, Clone)]
pub struct EngineSnapshot {
    /// The queue the engine serves.
    pub queue: u32,
    /// Time since the engine started.
    pub uptime: std::time::Duration,
    /// The loop's counters.
    pub engine: EngineStats,
    /// The host's counters, drops by reason among them.
    pub host: HostStats,
    /// TCP counters under Linux's names.
    pub tcp: TcpCounters,
    /// The neighbour cache's counters.
    pub neigh: NeighStats,
    /// The device's counters (an AF_XDP socket's and the kernel's ring counters).
    pub device: Option<DeviceStats>,
    /// The steering program's verdicts on this engine's queue; filled in by the stack, which
    /// holds the program.
    pub xdp: Option<SteerStats>,
    /// Every connection the engine holds.
    pub conns: Vec<ConnSnapshot>,
}

/// Pushes `(prefix + field, value)` for every field of a counter struct. The pattern names
/// every field, so a counter added to the struct without being listed fails to compile.
macro_rules! push_fields {
    ($out:ident, $prefix:literal, $ty:ident, $v:expr, [$($f:ident),* $(,)?]) => {{
        let $ty { $($f),* } = $v;
        $($out.push((concat!($prefix, stringify!($f)).to_string(), u64::from($f)));)*
    }};
}

impl EngineSnapshot {
    /// Takes the snapshot of an engine's parts (`xdp` is left `None`).
    pub fn take(
        queue: u32,
        uptime: std::time::Duration,
        engine: &EngineStats,
        host: &Host,
        neigh: &NeighStats,
        device: Option<DeviceStats>,
    ) -> Self {
        let conns = host
            .connections()
            .map(|(id, c)| ConnSnapshot {
                id,
                local: c.local(),
                remote: c.remote(),
                info: c.info(),
            })
            .collect();
        EngineSnapshot {
            queue,
            uptime,
            engine: engine.clone(),
            host: host.stats().clone(),
            tcp: TcpCounters::of(host),
            neigh: neigh.clone(),
            device,
            xdp: None,
            conns,
        }
    }

    /// Every counter with its name: the TCP counters under Linux's names (`TcpRetransSegs`),
    /// the others as `section.field` (`xsk.rx_ring_full`, `xdp.redirect_tcp`,
    /// `host.drop.tcp_bad_checksum`, `engine.rx_frames`).
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self
            .tcp
            .named()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        if let Some(x) = self.xdp {
            push_fields!(
                out,
                "xdp.",
                SteerStats,
                x,
                [
                    redirect_tcp,
                    redirect_icmp,
                    redirect_arp,
                    redirect_failed,
                    pass_not_ours,
                    pass_port,
                    pass_fragment,
                    pass_malformed,
                    pass_unconfigured,
                ]
            );
        }
        if let Some(d) = self.device {
            if let Some(r) = d.ring {
                push_fields!(
                    out,
                    "xsk.",
                    RingStats,
                    r,
                    [
                        rx_dropped,
                        rx_invalid_descs,
                        tx_invalid_descs,
                        rx_ring_full,
                        rx_fill_ring_empty_descs,
                        tx_ring_empty_descs,
                    ]
                );
            }
            push_fields!(
                out,
                "xsk.",
                SocketStats,
                d.socket,
                [
                    rx_frames,
                    rx_bytes,
                    tx_frames,
                    tx_bytes,
                    tx_kicks,
                    fill_kicks,
                    tx_no_frame,
                    tx_bad_len,
                    bind_busy_retries,
                    wakeups,
                ]
            );
        }
        push_fields!(
            out,
            "engine.",
            EngineStats,
            self.engine.clone(),
            [
                iterations,
                idle_sleeps,
                rx_frames,
                rx_bytes,
                rx_ipv4,
                rx_arp,
                tx_frames,
                tx_bytes,
                tx_ipv4,
                tx_arp,
                tx_released,
                events,
                kernel_probe_errors,
                kernel_probe_unserved,
                kernel_update_errors,
                kernel_update_unserved,
                drop_truncated,
                drop_not_our_mac,
                drop_bad_arp,
                drop_ipv6,
                drop_ethertype,
                drop_no_route,
                forwarded_out,
                forwarded_in,
                drop_forward,
                capture_queued,
                capture_dropped,
            ]
        );
        let h = &self.host;
        for (name, v) in [
            ("host.rx_packets", h.rx_packets),
            ("host.rx_segments", h.rx_segments),
            ("host.rx_bytes_lent", h.rx_bytes_lent),
            ("host.rx_bytes_lent_kept", h.rx_bytes_lent_kept),
            ("host.tx_packets", h.tx_packets),
            ("host.rst_sent_no_conn", h.rst_sent_no_conn),
            ("host.conns_opened", h.conns_opened),
            ("host.conns_accepted", h.conns_accepted),
            ("host.passive_opens", h.passive_opens),
            ("host.conns_freed", h.conns_freed),
            ("host.icmp_errors", h.icmp_errors),
            ("host.timers_fired", h.timers_fired),
            ("host.conns", self.conns.len() as u64),
        ] {
            out.push((name.to_string(), v));
        }
        for r in DropReason::all() {
            out.push((format!("host.drop.{}", drop_name(r)), h.dropped(r)));
        }
        push_fields!(
            out,
            "neigh.",
            NeighStats,
            self.neigh.clone(),
            [
                arp_requests_sent,
                arp_replies_sent,
                kernel_probes,
                learned,
                mac_changed,
                gratuitous,
                resolved,
                resolve_failed,
                expired,
                evicted,
                held,
                released,
                held_bytes_copied,
                dropped_overflow,
                dropped_unresolved,
                dropped_too_big,
                no_route,
                arp_conflicts,
                arp_bad_sender,
                arp_unknown_op,
                arp_ignored,
                kernel_updates,
                kernel_updates_limited,
            ]
        );
        out
    }
}

use crate::io::xdp::{RingStats, SocketStats};

/// `DropReason::Tcp(BadChecksum)` as `tcp_bad_checksum`.
pub fn drop_name(r: DropReason) -> String {
    let mut out = String::new();
    for (i, ch) in format!("{r:?}").chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

/// Sums counters by name, keeping the first list's order (engines' lists share one).
pub fn merge_counters<'a>(
    lists: impl IntoIterator<Item = &'a [(String, u64)]>,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for list in lists {
        for (n, v) in list {
            match index.get(n) {
                Some(&i) => {
                    let e: &mut (String, u64) = &mut out[i];
                    e.1 += v;
                }
                None => {
                    index.insert(n.clone(), out.len());
                    out.push((n.clone(), *v));
                }
            }
        }
    }
    out
}

/// Where an engine publishes its [`EngineSnapshot`] when asked. Shared by the engine and
/// whoever reads it.
#[derive(Debug)]
pub struct StatsBoard {
    pending: AtomicBool,
    tx: Sender<Sender<EngineSnapshot>>,
    rx: Receiver<Sender<EngineSnapshot>>,
}

impl StatsBoard {
    /// A board for one engine.
    pub fn new() -> Arc<Self> {
        let (tx, rx) = crossbeam::channel::unbounded();
        Arc::new(StatsBoard {
            pending: AtomicBool::new(false),
            tx,
            rx,
        })
    }

    /// Asks for a snapshot: the engine answers on the returned channel at the end of its next
    /// iteration (wake it if it may sleep).
    pub fn request(&self) -> Receiver<EngineSnapshot> {
        let (tx, rx) = crossbeam::channel::bounded(1);
        let _ = self.tx.send(tx);
        self.pending.store(true, Ordering::Release);
        rx
    }

    /// Whether a request waits: the data path's only cost.
    #[inline]
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Relaxed)
    }

    /// Answers every queued request with one snapshot made by `take` (called only if one
    /// waits).
    pub fn serve(&self, take: impl FnOnce() -> EngineSnapshot) {
        if !self.pending.swap(false, Ordering::Acquire) {
            return;
        }
        let waiting: Vec<_> = self.rx.try_iter().collect();
        if waiting.is_empty() {
            return;
        }
        let snap = take();
        for w in waiting {
            let _ = w.send(snap.clone());
        }
    }
}
