//! Listening ports: the backlog of passive connections the application has not accepted yet.
//!
//! A SYN for a listening port with no connection of its 4-tuple starts an *embryo* (a connection
//! in SYN-RECEIVED); when its handshake completes it moves to the listener's ready queue, from
//! which [`Host::accept`] hands it out. Invariants:
//! - `ready.len() + embryos <= backlog`: a SYN that would break it gets no embryo. It is answered
//!   by a SYN cookie ([`crate::tcp::cookie`], counted as `syncookies_sent`) when
//!   [`Config::syncookies`](crate::tcp::Config::syncookies) is on and the accept queue has room;
//!   otherwise it is dropped (counted as [`DropReason::BacklogFull`](super::DropReason::BacklogFull)
//!   and `listen_drops`, plus `listen_overflows` when the accept queue itself is full): the
//!   peer's SYN retransmission tries again later.
//! - An ACK for no connection is checked as a cookie only within [`cookie::LIFETIME`] of the
//!   listener's last cookie; a good one makes an established connection straight away
//!   (`syncookies_recv`), a bad one is answered by RST (`syncookies_failed`).
//! - While the SYN queue is at least half full, new embryos get at most
//!   [`Config::synack_retries_under_pressure`](crate::tcp::Config::synack_retries_under_pressure)
//!   SYN-ACK retransmissions.
//! - A passive connection belongs to its listener (its slot's `pending_on` is the port) from its
//!   SYN until it is accepted or closes; until then its events stay inside the host, except
//!   `Connected`, which the application sees as "something to accept".
//! - Closing the listener ([`Host::unlisten`]) resets every connection still pending on it.

use std::collections::VecDeque;

use super::{ConnId, Host};
use crate::tcp::cookie;
use crate::time::Instant;

#[derive(Debug)]
pub(super) struct Listener {
    backlog: usize,
    /// Established, not yet accepted.
    ready: VecDeque<ConnId>,
    /// In SYN-RECEIVED.
    embryos: usize,
    /// When the last SYN cookie went out.
    last_cookie: Option<Instant>,
}

impl Listener {
    fn new(backlog: usize) -> Self {
        Listener {
            backlog: backlog.max(1),
            ready: VecDeque::new(),
            embryos: 0,
            last_cookie: None,
        }
    }

    /// Whether the accept queue alone fills the backlog (Linux's `sk_acceptq_is_full`).
    pub(super) fn accept_queue_full(&self) -> bool {
        self.ready.len() >= self.backlog
    }

    /// Whether the SYN queue is at least half full: new embryos get fewer SYN-ACK retries.
    pub(super) fn under_pressure(&self) -> bool {
        self.embryos * 2 >= self.backlog
    }

    /// A SYN cookie went out at `now`.
    pub(super) fn cookie_sent(&mut self, now: Instant) {
        self.last_cookie = Some(now);
    }

    /// Whether an ACK for no connection may be the answer to one of our cookies.
    pub(super) fn cookies_recent(&self, now: Instant) -> bool {
        self.last_cookie
            .is_some_and(|t| now.saturating_since(t) <= cookie::LIFETIME)
    }

    /// Whether a new SYN may start an embryo.
    pub(super) fn has_room(&self) -> bool {
        self.ready.len() + self.embryos < self.backlog
    }

    /// A SYN started an embryo.
    pub(super) fn embryo_started(&mut self) {
        self.embryos += 1;
    }

    /// An embryo completed its handshake: it waits for [`Host::accept`].
    pub(super) fn established(&mut self, id: ConnId) {
        self.embryos = self.embryos.saturating_sub(1);
        self.ready.push_back(id);
    }

    /// A pending connection (embryo or not yet accepted) closed.
    pub(super) fn closed(&mut self, id: ConnId) {
        if !self.remove_ready(id) {
            self.embryos = self.embryos.saturating_sub(1);
        }
    }

    /// Takes `id` out of the ready queue; whether it was there.
    pub(super) fn remove_ready(&mut self, id: ConnId) -> bool {
        match self.ready.iter().position(|x| *x == id) {
            Some(pos) => {
                self.ready.remove(pos);
                true
            }
            None => false,
        }
    }
}

impl Host {
    /// Starts accepting connections on `port`, holding at most `backlog` not yet accepted.
    pub fn listen(&mut self, port: u16, backlog: usize) {
        self.listeners
            .entry(port)
            .or_insert_with(|| Listener::new(backlog));
    }

    /// Stops listening; connections not yet accepted are reset.
    pub fn unlisten(&mut self, port: u16) {
        let Some(l) = self.listeners.remove(&port) else {
            return;
        };
        for id in l.ready {
            self.abort(id);
        }
        let pending: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].pending_on == Some(port))
            .collect();
        for i in pending {
            let id = ConnId {
                index: i,
                generation: self.slots[i as usize].generation,
            };
            self.abort(id);
        }
    }

    /// Established connections waiting on `port`'s listener for [`Host::accept`] (0 if the port
    /// is not listening): what makes a listening socket readable.
    pub fn accept_queue_len(&self, port: u16) -> usize {
        self.listeners.get(&port).map_or(0, |l| l.ready.len())
    }

    /// An established connection from `port`'s listener, if one is waiting.
    pub fn accept(&mut self, port: u16) -> Option<ConnId> {
        let id = self.listeners.get_mut(&port)?.ready.pop_front()?;
        self.slots[id.index as usize].pending_on = None;
        self.stats.conns_accepted += 1;
        Some(id)
    }
}
