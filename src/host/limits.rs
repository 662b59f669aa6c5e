//! Hard bounds on what peers can make a host hold, each with a Linux-like default and a counted
//! refusal when reached ([`Limits`]).
//!
//! Accounting happens when a connection is settled after a visit (no call scans every
//! connection): its [`Connection::memory`] is compared with what its slot last recorded and the
//! host's total moves by the difference; a connection entering TIME-WAIT joins a FIFO of
//! TIME-WAIT entries. Invariants:
//! - `mem_used` is the sum of `slot.mem` over occupied slots;
//! - `time_wait` counts the occupied slots with `in_time_wait`, and every such slot's id is in
//!   the FIFO (which may also hold stale ids, skipped when popped);
//! - `orphans` counts the occupied slots with `orphan`: closed by the application, not yet in
//!   TIME-WAIT or closed.
//!
//! Under memory pressure (from 7/8 of the budget, like Linux's `tcp_mem` pressure threshold)
//! new connections are refused and a visited connection drops its out-of-order data and stops
//! its receive window at the bytes it holds; when pressure ends a visited connection gets its
//! buffer back. Its send buffer stops at the bytes it holds too, before the application is
//! handed the connection ([`Host::with_conn`]), so no write grows a connection under pressure:
//! the application's writes wait (`WouldBlock`) until acknowledgements free memory. (Linux
//! still lets each socket queue `tcp_wmem[0]`, 4 KiB, under pressure; with no cap on the
//! number of sockets that floor is not a bound, so here the floor is what is held.)
//!
//! The hosts of one stack (one per engine) can also share a [`SharedBudget`] ([`Host::share_budget`]),
//! like Linux's `tcp_mem`, which is one figure for the whole machine: each host publishes its
//! total to it with an atomic add, only when it has moved by [`PUBLISH_STEP`] since it last did
//! (so no cache line bounces between cores on every visit), and a host is under pressure when
//! either its own budget or the shared one is at 7/8. The shared figure lags the truth by less
//! than `PUBLISH_STEP` per host; the pressure mark leaves an eighth of the budget for that.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::slots::Slot;
use super::{ConnId, DropReason, Host, KINDS};
use crate::tcp::Connection;

/// A host publishes its memory to a [`SharedBudget`] when it moved by this much since the last
/// time (or fell to zero).
pub const PUBLISH_STEP: usize = 64 * 1024;

/// A memory budget shared by the hosts of one stack: what they hold together, against one
/// limit. Hosts join it with [`Host::share_budget`]; a host that is dropped takes its part back.
#[derive(Debug)]
pub struct SharedBudget {
    budget: usize,
    /// 7/8 of `budget`, computed once: read after every visit of every sharing host.
    mark: usize,
    used: AtomicUsize,
}

impl SharedBudget {
    /// A budget of `budget` bytes for every host that will share it.
    pub fn new(budget: usize) -> Arc<Self> {
        Arc::new(SharedBudget {
            budget,
            mark: budget / 8 * 7,
            used: AtomicUsize::new(0),
        })
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes the hosts hold together, as last published (each host's part lags its own
    /// [`Host::memory_used`] by less than [`PUBLISH_STEP`]).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// At 7/8 of the budget or more: every sharing host refuses new connections and sheds
    /// what it can.
    pub fn under_pressure(&self) -> bool {
        self.used() >= self.mark
    }
}

/// One host's part of a [`SharedBudget`]: what it last published, taken back when dropped.
#[derive(Debug)]
pub(super) struct BudgetShare {
    budget: Arc<SharedBudget>,
    published: usize,
}

impl BudgetShare {
    /// Publishes `used` if it moved by [`PUBLISH_STEP`] since the last time, or is zero.
    fn publish(&mut self, used: usize) {
        let moved = used.abs_diff(self.published);
        if moved == 0 || (moved < PUBLISH_STEP && used != 0) {
            return;
        }
        if used > self.published {
            self.budget.used.fetch_add(moved, Ordering::Relaxed);
        } else {
            self.budget.used.fetch_sub(moved, Ordering::Relaxed);
        }
        self.published = used;
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        self.budget
            .used
            .fetch_sub(self.published, Ordering::Relaxed);
    }
}

/// What a connection costs the host beyond [`Connection::memory`](crate::tcp::Connection::memory):
/// its slot, which holds the connection itself (counted twice, as the slot vector grows by
/// doubling, less the structure `memory` already counts), its flow-table entry with the
/// table's spare room, and a wheel entry and list slot for each timer kind.
pub const SLOT_OVERHEAD: usize = 2 * std::mem::size_of::<Slot>()
    - std::mem::size_of::<crate::tcp::Connection>()
    + 4 * 16
    + KINDS * 48;

/// The bounds of one host (one engine). See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections held at once, in any state. Linux has no such knob (its memory limits
    /// decide); the default, 2^20, is what one engine's tables are sized for.
    pub max_conns: usize,
    /// TIME-WAIT connections held; a connection entering TIME-WAIT beyond it ends the oldest
    /// one's TIME-WAIT early (as Linux's `tcp_max_tw_buckets`, 262144).
    pub max_time_wait: usize,
    /// Connections the application closed that are still running (FIN-WAIT, CLOSING,
    /// LAST-ACK); closing one more resets it instead (as Linux's `tcp_max_orphans`, 65536 on a
    /// machine of a few GiB).
    pub max_orphans: usize,
    /// Bytes all connections may hold together (structures and buffers, as
    /// [`Connection::memory`](crate::tcp::Connection::memory) counts). The default, 1 GiB, is
    /// about Linux's `tcp_mem` high mark on a 16 GiB machine.
    pub mem_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 1 << 20,
            max_time_wait: 262_144,
            max_orphans: 65_536,
            mem_budget: 1 << 30,
        }
    }
}

impl Limits {
    /// 7/8 of the budget: the memory pressure threshold (the host keeps it computed).
    pub(super) fn pressure_mark(&self) -> usize {
        self.mem_budget / 8 * 7
    }
}

impl Host {
    /// Bytes the host's connections hold, as last accounted.
    pub fn memory_used(&self) -> usize {
        self.mem_used
    }

    /// Whether the host is under memory pressure: at 7/8 of its budget or more, or the
    /// [`SharedBudget`] it shares is.
    pub fn under_memory_pressure(&self) -> bool {
        self.mem_used >= self.pressure_mark
            || self
                .shared
                .as_ref()
                .is_some_and(|s| s.budget.under_pressure())
    }

    /// Joins `budget`, shared with the other hosts (engines) of a stack, on top of this host's
    /// own [`Limits::mem_budget`]. What the host holds already is published at once.
    pub fn share_budget(&mut self, budget: Arc<SharedBudget>) {
        let mut share = BudgetShare {
            budget,
            published: 0,
        };
        share.publish(self.mem_used);
        self.shared = Some(share);
    }

    /// The budget this host shares, if any.
    pub fn shared_budget(&self) -> Option<&Arc<SharedBudget>> {
        self.shared.as_ref().map(|s| &s.budget)
    }

    /// Whether a new connection may be made: the connection count and memory allow it.
    /// Counts the refusal if not.
    pub(super) fn admit_new(&mut self) -> Result<(), DropReason> {
        if self.table.len() >= self.cfg.limits.max_conns {
            self.stats.conn_limit_refusals += 1;
            return Err(DropReason::OverLimit);
        }
        if self.under_memory_pressure() {
            self.stats.mem_pressure_refusals += 1;
            return Err(DropReason::OverLimit);
        }
        Ok(())
    }

    /// After a visit: the connection's memory, TIME-WAIT membership and pressure measures.
    pub(super) fn account(&mut self, index: u32) {
        let pressure = self.under_memory_pressure();
        let slot = &mut self.slots[index as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        if pressure {
            let pruned = conn.prune_out_of_order();
            if pruned > 0 {
                self.stats.ooo_pruned_bytes += pruned as u64;
            }
            if slot.clamped.is_none() && conn.is_established() {
                // the window stops at what is held; set_recv_capacity never cuts below it
                slot.clamped = Some(conn.recv_capacity());
                conn.pause_recv_autotune(true);
                conn.set_recv_capacity(0);
                self.stats.windows_clamped += 1;
            }
        } else if let Some(cap) = slot.clamped.take() {
            conn.set_recv_capacity(cap);
            conn.pause_recv_autotune(false);
        }
        clamp_send(
            conn,
            &mut slot.send_clamped,
            pressure,
            &mut self.stats.send_buffers_clamped,
        );
        let m = conn.memory() + SLOT_OVERHEAD;
        self.mem_used = self.mem_used - slot.mem + m;
        slot.mem = m;
        if let Some(s) = self.shared.as_mut() {
            s.publish(self.mem_used);
        }
        let in_tw = conn.state() == crate::tcp::State::TimeWait;
        if in_tw && !slot.in_time_wait {
            slot.in_time_wait = true;
            if slot.orphan {
                slot.orphan = false;
                self.orphans -= 1;
            }
            let id = ConnId {
                index,
                generation: slot.generation,
            };
            self.tw_fifo.push_back(id);
            self.time_wait += 1;
            self.trim_time_wait(index);
        }
    }

    /// Ends the oldest TIME-WAITs while there are more than the limit, never `keep`'s.
    fn trim_time_wait(&mut self, keep: u32) {
        while self.time_wait > self.cfg.limits.max_time_wait {
            let Some(id) = self.tw_fifo.pop_front() else {
                return;
            };
            if id.index == keep {
                self.tw_fifo.push_back(id);
                if self.tw_fifo.len() == 1 {
                    return;
                }
                continue;
            }
            let slot = &self.slots[id.index as usize];
            if slot.generation == id.generation && slot.conn.is_some() && slot.in_time_wait {
                self.stats.time_wait_recycled += 1;
                self.free_slot(id.index);
            }
        }
    }

    /// The accounting of a slot being freed.
    pub(super) fn unaccount(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        self.mem_used -= slot.mem;
        slot.mem = 0;
        if let Some(s) = self.shared.as_mut() {
            s.publish(self.mem_used);
        }
        if slot.in_time_wait {
            slot.in_time_wait = false;
            self.time_wait -= 1;
        }
        if slot.orphan {
            slot.orphan = false;
            self.orphans -= 1;
        }
    }

    /// The application gives up a connection still running: an orphan, or reset if there are
    /// too many. Whether it may linger.
    pub(super) fn admit_orphan(&mut self, index: u32) -> bool {
        if self.orphans >= self.cfg.limits.max_orphans {
            self.stats.orphans_reset += 1;
            return false;
        }
        let slot = &mut self.slots[index as usize];
        if !slot.orphan && !slot.in_time_wait {
            slot.orphan = true;
            self.orphans += 1;
        }
        true
    }

    /// TIME-WAIT entries held now.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait
    }

    /// Orphaned connections held now.
    pub fn orphan_count(&self) -> usize {
        self.orphans
    }
}

/// Stops `conn`'s send buffer at the bytes it holds under pressure, remembering its size in
/// `clamped` (counted once per episode in `count`), and frees the emptied chunks it kept; or
/// gives its size back when pressure has ended. Called after every visit ([`Host::account`])
/// and before the application is handed the connection ([`Host::with_conn`]).
pub(super) fn clamp_send(
    conn: &mut Connection,
    clamped: &mut Option<usize>,
    pressure: bool,
    count: &mut u64,
) {
    if pressure {
        conn.drop_send_spares();
        if clamped.is_none() {
            *clamped = Some(conn.send_capacity());
            // set_send_capacity never cuts below what is queued
            conn.set_send_capacity(0);
            *count += 1;
        }
    } else if let Some(cap) = clamped.take() {
        conn.set_send_capacity(cap);
    }
}
