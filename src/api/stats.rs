//! [`Stack::stats`](super::Stack::stats): every engine's [`EngineSnapshot`], merged on request,
//! and the JSON the control socket answers with.
//!
//! Reading statistics never stops an engine: each publishes a snapshot at the end of an
//! iteration when asked ([`crate::engine::snapshot`]); the steering program's per-queue
//! verdicts are read from its BPF map on the caller's thread.

use std::fmt::Write as _;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::shared::EngineHandle;
use crate::engine::snapshot::{merge_counters, ConnSnapshot, EngineSnapshot, StatsBoard};
use crate::host::TcpCounters;
use crate::io::xdp::SteerProgram;
use crate::tcp::State;

/// Every engine's statistics at (nearly) one instant: `engines[i]` is engine `i`'s.
#[derive(Debug, Clone)]
pub struct StackStats {
    /// Per engine, in engine order.
    pub engines: Vec<EngineSnapshot>,
}

impl StackStats {
    /// Every counter summed over the engines, with its name (see
    /// [`EngineSnapshot::counters`]): `TcpRetransSegs`, `xsk.rx_ring_full`, ...
    pub fn counters(&self) -> Vec<(String, u64)> {
        let lists: Vec<Vec<(String, u64)>> = self.engines.iter().map(|e| e.counters()).collect();
        merge_counters(lists.iter().map(Vec::as_slice))
    }

    /// One merged counter by name; `None` if no engine has it.
    pub fn get(&self, name: &str) -> Option<u64> {
        let mut found = None;
        for e in &self.engines {
            if let Some((_, v)) = e.counters().into_iter().find(|(n, _)| n == name) {
                *found.get_or_insert(0) += v;
            }
        }
        found
    }

    /// The TCP counters summed over the engines.
    pub fn tcp(&self) -> TcpCounters {
        let mut t = TcpCounters::default();
        self.engines.iter().for_each(|e| t.add(&e.tcp));
        t
    }

    /// Every connection of every engine.
    pub fn connections(&self) -> impl Iterator<Item = &ConnSnapshot> {
        self.engines.iter().flat_map(|e| e.conns.iter())
    }

    /// The JSON the control socket answers `stats` with: `{"counters": {merged}, "engines":
    /// [{"queue", "uptime_ms", "counters", "conns": [...]}]}`; each connection carries its
    /// addresses, `ss` state name, queues and `tcp_info` fields (times in microseconds).
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\"counters\":");
        counters_json(&mut s, &self.counters());
        s.push_str(",\"engines\":[");
        for (i, e) in self.engines.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(
                s,
                "{{\"queue\":{},\"uptime_ms\":{},\"counters\":",
                e.queue,
                e.uptime.as_millis()
            );
            counters_json(&mut s, &e.counters());
            s.push_str(",\"conns\":[");
            for (j, c) in e.conns.iter().enumerate() {
                if j > 0 {
                    s.push(',');
                }
                conn_json(&mut s, e.queue, c);
            }
            s.push_str("]}");
        }
        s.push_str("]}");
        s
    }
}

/// The state as `ss` names it.
pub fn ss_state(s: State) -> &'static str {
    match s {
        State::Closed => "CLOSED",
        State::SynSent => "SYN-SENT",
        State::SynReceived => "SYN-RECV",
        State::Established => "ESTAB",
        State::FinWait1 => "FIN-WAIT-1",
        State::FinWait2 => "FIN-WAIT-2",
        State::CloseWait => "CLOSE-WAIT",
        State::Closing => "CLOSING",
        State::LastAck => "LAST-ACK",
        State::TimeWait => "TIME-WAIT",
    }
}

fn counters_json(s: &mut String, list: &[(String, u64)]) {
    s.push('{');
    for (i, (n, v)) in list.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // names are ASCII letters, digits, dots and underscores: nothing to escape
        let _ = write!(s, "\"{n}\":{v}");
    }
    s.push('}');
}

fn conn_json(s: &mut String, queue: u32, c: &ConnSnapshot) {
    let i = &c.info;
    let us = |d: crate::time::Duration| d.as_nanos() / 1000;
    let _ = write!(
        s,
        "{{\"engine\":{queue},\"local\":\"{}\",\"remote\":\"{}\",\"state\":\"{}\",\
         \"recv_q\":{},\"send_q\":{},\"rtt_us\":{},\"rttvar_us\":{},\"rto_us\":{},\
         \"min_rtt_us\":{},\"mss\":{},\"cwnd\":{},\"ssthresh\":{},\"snd_wnd\":{},\
         \"rcv_wnd\":{},\"bytes_in_flight\":{},\"sacked_bytes\":{},\"lost_bytes\":{},\
         \"in_recovery\":{},\"backoff\":{},\"bytes_sent\":{},\"bytes_acked\":{},\
         \"bytes_received\":{},\"total_retrans\":{},\"reordering\":{},\"delivery_rate\":{},\
         \"segs_in\":{},\"segs_out\":{}}}",
        c.local,
        c.remote,
        ss_state(i.state),
        i.recv_queue,
        i.send_queue,
        i.srtt.map_or(0, us),
        us(i.rttvar),
        us(i.rto),
        i.min_rtt.map_or(0, us),
        i.mss,
        i.cwnd,
        i.ssthresh.min(u32::MAX as usize),
        i.snd_wnd,
        i.rcv_wnd,
        i.bytes_in_flight,
        i.sacked_bytes,
        i.lost_bytes,
        i.in_recovery,
        i.backoff,
        i.bytes_sent,
        i.bytes_acked,
        i.bytes_received,
        i.total_retrans,
        i.reordering,
        i.delivery_rate,
        i.stats.segs_in,
        i.stats.segs_out,
    );
}

/// What a stack (and its control socket) collects statistics from.
pub(crate) struct StatsSource {
    pub boards: Vec<(Arc<StatsBoard>, EngineHandle)>,
    pub program: Option<Weak<SteerProgram>>,
}

impl StatsSource {
    /// Asks every engine at once and waits up to `timeout` for all of them.
    pub fn collect(&self, timeout: Duration) -> io::Result<StackStats> {
        let replies: Vec<_> = self
            .boards
            .iter()
            .map(|(board, engine)| {
                let rx = board.request();
                engine.wake();
                rx
            })
            .collect();
        let deadline = Instant::now() + timeout;
        let program = self.program.as_ref().and_then(Weak::upgrade);
        let mut engines = Vec::with_capacity(replies.len());
        for rx in replies {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut snap = rx
                .recv_timeout(left)
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "an engine did not answer"))?;
            if let Some(p) = &program {
                snap.xdp = Some(p.queue_stats(snap.queue)?);
            }
            engines.push(snap);
        }
        Ok(StackStats { engines })
    }
}
