//! Listening ports: the backlog of passive connections the application has not accepted yet.
//!
//! A SYN for a listening port with no connection of its 4-tuple starts an *embryo* (a connection
//! in SYN-RECEIVED); when its handshake completes it moves to the listener's ready queue, from
//! which [`Host::accept`] hands it out. Invariants:
//! - `ready.len() + embryos <= backlog`: a SYN that would break it is dropped (counted as
//!   [`DropReason::BacklogFull`](super::DropReason::BacklogFull)), not answered: the peer's SYN
//!   retransmission tries again later.
//! - A passive connection belongs to its listener (its slot's `pending_on` is the port) from its
//!   SYN until it is accepted or closes; until then its events stay inside the host, except
//!   `Connected`, which the application sees as "something to accept".
//! - Closing the listener ([`Host::unlisten`]) resets every connection still pending on it.

use std::collections::VecDeque;

use super::{ConnId, Host};

#[derive(Debug)]
pub(super) struct Listener {
    backlog: usize,
    /// Established, not yet accepted.
    ready: VecDeque<ConnId>,
    /// In SYN-RECEIVED.
    embryos: usize,
}

impl Listener {
    fn new(backlog: usize) -> Self {
        Listener {
            backlog: backlog.max(1),
            ready: VecDeque::new(),
            embryos: 0,
        }
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
