//! The path MTU cache: what ICMP "fragmentation needed" reports taught the host about each
//! destination (RFC 1191 6.3), kept until it expires (Linux's `mtu_expires`, 10 minutes).
//!
//! A new connection to a cached destination starts at the cached path MTU. Entries hold only
//! MTUs below the interface's; an expired entry is gone (looked up lazily; when the cache
//! grows past [`PRUNE_AT`] entries, expired ones are swept on the next insertion).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::time::{Duration, Instant};

/// Entries beyond which an insertion first sweeps out the expired ones.
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    mtu: u16,
    expires: Instant,
}

/// Per-destination path MTUs with expiry.
#[derive(Debug, Default)]
pub struct PmtuCache {
    entries: HashMap<Ipv4Addr, Entry, ahash::RandomState>,
}

impl PmtuCache {
    /// The path MTU known for `dst` and when it expires, if any still holds at `now`.
    pub fn get(&mut self, now: Instant, dst: Ipv4Addr) -> Option<(u16, Instant)> {
        let e = *self.entries.get(&dst)?;
        if now >= e.expires {
            self.entries.remove(&dst);
            return None;
        }
        Some((e.mtu, e.expires))
    }

    /// Records that the path to `dst` carries at most `mtu` bytes, for `expires_after` from
    /// `now`; returns when the entry expires.
    pub fn insert(
        &mut self,
        now: Instant,
        dst: Ipv4Addr,
        mtu: u16,
        expires_after: Duration,
    ) -> Instant {
        if self.entries.len() >= PRUNE_AT {
            self.entries.retain(|_, e| e.expires > now);
        }
        let expires = now + expires_after;
        self.entries.insert(dst, Entry { mtu, expires });
        expires
    }

    /// Destinations held (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let mut c = PmtuCache::default();
        let a = Ipv4Addr::new(10, 0, 0, 2);
        let t0 = Instant::from_millis(5);
        let until = c.insert(t0, a, 1280, Duration::from_secs(600));
        assert_eq!(until, t0 + Duration::from_secs(600));
        assert_eq!(c.get(t0, a), Some((1280, until)));
        assert_eq!(c.get(t0, Ipv4Addr::new(10, 0, 0, 3)), None);
        assert_eq!(c.get(until, a), None);
        assert!(c.is_empty(), "removed once found expired");
    }

    #[test]
    fn a_full_cache_sweeps_expired_entries() {
        let mut c = PmtuCache::default();
        let t0 = Instant::ZERO;
        for i in 0..PRUNE_AT as u32 {
            c.insert(t0, Ipv4Addr::from(i), 1400, Duration::from_secs(1));
        }
        assert_eq!(c.len(), PRUNE_AT);
        let later = t0 + Duration::from_secs(2);
        c.insert(
            later,
            Ipv4Addr::new(1, 2, 3, 4),
            1400,
            Duration::from_secs(1),
        );
        assert_eq!(c.len(), 1);
    }
}
