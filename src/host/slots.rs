//! The slot table: where the host keeps its connections, and the handles that name them.
//!
//! Each connection lives in a slot of one `Vec`, found from its 4-tuple through one hash table
//! (`flow_key` -> slot index). Invariants:
//! - A slot holds a connection exactly while the flow table maps that connection's key to it.
//! - A [`ConnId`] names a slot and the slot's generation when it was handed out; freeing a slot
//!   bumps the generation, so a stale handle finds nothing instead of a newer connection.
//! - `in_ready` is true exactly while the slot's index is in the host's ready queue, so a
//!   connection is queued for output at most once however many times it is touched.
//! - `timers[k]` is what the wheel holds for timer kind `k` (entry and deadline); only the
//!   host's timer code (`settle`, `handle_timeout`) and `free_slot` change either, together.
//! - A freed slot's index is on the free list and is reused before the table grows.

use std::net::SocketAddrV4;

use super::{Host, KINDS};
use crate::tcp::{Connection, Event, TimerSet};
use crate::time::Instant;
use crate::timer::TimerId;

/// A connection's handle. The generation makes a handle to a freed and reused slot harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(super) index: u32,
    pub(super) generation: u32,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) generation: u32,
    pub(super) conn: Option<Connection>,
    pub(super) in_ready: bool,
    /// The wheel entry and deadline of each timer kind, as last registered.
    pub(super) timers: [Option<(TimerId, Instant)>; KINDS],
    /// Kinds that fired in the current [`Host::handle_timeout`], not yet handed over.
    pub(super) fired: TimerSet,
    /// The application is done with it: free the slot once the connection is closed.
    pub(super) released: bool,
    /// Passive and not accepted yet: the listener's port.
    pub(super) pending_on: Option<u16>,
    /// Bytes the connection held when last accounted (`limits.rs`).
    pub(super) mem: usize,
    /// Counted among the host's TIME-WAIT entries.
    pub(super) in_time_wait: bool,
    /// Counted among the host's orphans.
    pub(super) orphan: bool,
    /// The receive buffer's size before memory pressure clamped it.
    pub(super) clamped: Option<usize>,
    /// The send buffer's size before memory pressure clamped it.
    pub(super) send_clamped: Option<usize>,
}

/// The flow table's key: remote address and port, and our port (our address is the host's).
pub(super) fn flow_key(remote: SocketAddrV4, local_port: u16) -> u64 {
    (u64::from(u32::from(*remote.ip())) << 32)
        | (u64::from(remote.port()) << 16)
        | u64::from(local_port)
}

/// The flow-table key of a TCP segment in the IPv4 `packet` addressed to `local`, read from its
/// headers without verifying anything (for prefetching only); `None` if it is not one.
#[inline]
pub(super) fn flow_key_of(packet: &[u8], local: std::net::Ipv4Addr) -> Option<u64> {
    let ihl = usize::from(*packet.first()? & 0x0f) * 4;
    if packet.get(9) != Some(&6) || packet.get(16..20)? != local.octets() {
        return None;
    }
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let ports = packet.get(ihl..ihl + 4)?;
    let remote = SocketAddrV4::new(src.into(), u16::from_be_bytes([ports[0], ports[1]]));
    Some(flow_key(remote, u16::from_be_bytes([ports[2], ports[3]])))
}

impl Host {
    pub(super) fn insert(&mut self, conn: Connection, pending_on: Option<u16>) -> ConnId {
        let key = flow_key(conn.remote(), conn.local().port());
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    in_ready: false,
                    timers: [None; KINDS],
                    fired: TimerSet::EMPTY,
                    released: false,
                    pending_on: None,
                    mem: 0,
                    in_time_wait: false,
                    orphan: false,
                    clamped: None,
                    send_clamped: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.conn = Some(conn);
        slot.released = false;
        slot.pending_on = pending_on;
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        self.table.insert(key, index);
        self.touch(index);
        id
    }

    /// Starts loading slot `index`'s first cache line (its generation, checked first on every
    /// visit), so that a batch's misses overlap.
    #[inline]
    pub(super) fn prefetch_slot(&self, index: u32) {
        if let Some(slot) = self.slots.get(index as usize) {
            super::prefetch::touch(slot.generation);
            super::prefetch::touch(slot.timers[0]);
            super::prefetch::touch(slot.mem);
            if let Some(conn) = &slot.conn {
                super::prefetch::touch_conn(conn);
            }
        }
    }

    /// Something happened to the connection: collect its events, queue it for transmission.
    /// Inlined, with the events collected out of line: most visits of an application
    /// (`with_conn` around a `recv` or `send`) leave no event, and pay only for the checks.
    #[inline]
    pub(super) fn touch(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if slot.conn.as_ref().is_some_and(Connection::has_events) {
            self.collect_events(index);
        }
        let slot = &mut self.slots[index as usize];
        if !slot.in_ready {
            slot.in_ready = true;
            self.ready.push_back(index);
        }
    }

    /// Moves the connection's events to the host's, telling its listener of those it tracks.
    #[inline(never)]
    fn collect_events(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let id = ConnId {
            index,
            generation: slot.generation,
        };
        if let Some(conn) = slot.conn.as_mut() {
            while let Some(ev) = conn.poll_event() {
                match (ev, slot.pending_on) {
                    (Event::Connected, Some(port)) => {
                        if let Some(l) = self.listeners.get_mut(&port) {
                            l.established(id);
                        }
                    }
                    (Event::Closed, Some(port)) if !conn.is_established() || slot.released => {
                        if let Some(l) = self.listeners.get_mut(&port) {
                            l.closed(id);
                        }
                        slot.released = true;
                    }
                    _ => {}
                }
                if slot.pending_on.is_none() || matches!(ev, Event::Connected) {
                    self.events.push((id, ev));
                }
            }
        }
    }

    /// Forgets a connection: out of the flow table, the listener's queue and the wheel; its
    /// counters are added to the totals and its slot is reused.
    pub(super) fn free_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if slot.conn.is_none() {
            return;
        }
        self.unaccount(index);
        let slot = &mut self.slots[index as usize];
        // Read and dropped where it lies: moving the connection out (`take`) copied it, twice.
        let Some(conn) = slot.conn.as_ref() else {
            return;
        };
        if let Some(port) = slot.pending_on.take() {
            let id = ConnId {
                index,
                generation: slot.generation,
            };
            if let Some(l) = self.listeners.get_mut(&port) {
                l.remove_ready(id);
            }
        }
        self.table
            .remove(flow_key(conn.remote(), conn.local().port()));
        conn.add_stats_to(&mut self.stats.closed_conns);
        slot.conn = None;
        for t in slot.timers.iter_mut() {
            if let Some((id, _)) = t.take() {
                self.wheel.cancel(id);
            }
        }
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        self.stats.conns_freed += 1;
    }
}
