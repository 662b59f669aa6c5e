//! Connections the application has given up (closed) while TCP still closes them: what both the
//! handler API and the socket API do with them, in one place.

use std::collections::HashSet;

use crate::host::{ConnId, Host};
use crate::tcp::{self, Event};

/// `close(2)` on `id`: FIN after the buffered bytes or, as in Linux, RST when received bytes
/// were never read, so the peer learns its data was not. Returns true for the FIN (the
/// connection lingers while it closes), false for the RST.
pub(crate) fn close_or_reset(host: &mut Host, id: ConnId) -> bool {
    if host.conn(id).is_some_and(|c| c.recv_queue() > 0) {
        host.abort(id);
        false
    } else {
        host.close(id);
        true
    }
}

/// Released by the application but not closed yet: bytes arriving now are answered by RST.
#[derive(Default)]
pub(crate) struct Lingering(HashSet<ConnId, ahash::RandomState>);

impl Lingering {
    /// Closes `id` with [`close_or_reset`] and keeps it while it closes.
    pub fn close(&mut self, host: &mut Host, id: ConnId) {
        if close_or_reset(host, id) {
            self.0.insert(id);
        }
    }

    /// Keeps `id`, already closed by the application.
    pub fn insert(&mut self, id: ConnId) {
        self.0.insert(id);
    }

    pub fn contains(&self, id: &ConnId) -> bool {
        self.0.contains(id)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Handles `ev` if `id` is lingering (returns false otherwise): data from the peer resets
    /// it, nobody being left to read; CLOSED forgets it.
    pub fn event(&mut self, host: &mut Host, id: ConnId, ev: Event) -> bool {
        if !self.0.contains(&id) {
            return false;
        }
        match ev {
            Event::Readable if host.conn(id).is_some_and(|c| c.recv_queue() > 0) => host.abort(id),
            Event::Closed => {
                self.0.remove(&id);
            }
            _ => {}
        }
        true
    }

    /// True when every one is closed, in TIME-WAIT, or in FIN-WAIT-2 (everything we sent, FIN
    /// included, is acknowledged).
    pub fn quiet(&self, host: &Host) -> bool {
        self.0.iter().all(|&id| {
            host.conn(id).is_none_or(|c| {
                matches!(
                    c.state(),
                    tcp::State::Closed | tcp::State::TimeWait | tcp::State::FinWait2
                )
            })
        })
    }

    /// Resets every one.
    pub fn abort_all(&mut self, host: &mut Host) {
        for id in std::mem::take(&mut self.0) {
            host.abort(id);
        }
    }
}
