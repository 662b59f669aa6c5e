//! The flow table: 4-tuple key -> slot index, open addressing with linear probing.
//!
//! Built for a host holding a million connections, where every look-up is a cache (and TLB)
//! miss: a bucket holds the whole key and the slot index (16 bytes, four to a cache line), so a
//! look-up reads one line where a split control-byte table reads two in different places. The
//! table is at most half full, so a probe sequence almost always ends in the line it starts in.
//!
//! Invariants: `buckets.len()` is a power of two and at least twice `len`; a key sits in the
//! first empty-free run of buckets from its home (`hash & mask`) onward, with no empty bucket
//! between its home and its place (removal shifts later entries back instead of leaving
//! tombstones). Keys are hashed with a per-table random key (ahash), so a peer cannot choose
//! 4-tuples that collide.

/// Marks an empty bucket (no slot has this index: the host holds fewer connections).
const EMPTY: u32 = u32::MAX;
/// Buckets of a new table.
const MIN_BUCKETS: usize = 64;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct Bucket {
    key: u64,
    slot: u32,
}

const VACANT: Bucket = Bucket {
    key: 0,
    slot: EMPTY,
};

#[derive(Debug)]
pub(super) struct FlowTable {
    buckets: Vec<Bucket>,
    len: usize,
    hasher: ahash::RandomState,
}

impl Default for FlowTable {
    fn default() -> Self {
        FlowTable {
            buckets: vec![VACANT; MIN_BUCKETS],
            len: 0,
            hasher: ahash::RandomState::new(),
        }
    }
}

impl FlowTable {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        self.hasher.hash_one(key) as usize & self.mask()
    }

    /// The bucket holding `key`, if any.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        self.probe(key).map(|(i, _)| i)
    }

    /// The bucket holding `key` and its slot, if any: [`FlowTable::get`] takes the slot from
    /// the bucket the probe read, without indexing (and bounds-checking) it again.
    #[inline]
    fn probe(&self, key: u64) -> Option<(usize, u32)> {
        let mask = self.mask();
        let mut i = self.home(key);
        loop {
            let b = &self.buckets[i];
            if b.slot == EMPTY {
                return None;
            }
            if b.key == key {
                return Some((i, b.slot));
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the line `key`'s probe starts in (see [`super::Host::prefetch_ipv4`]).
    #[inline]
    pub(super) fn prefetch(&self, key: u64) {
        super::prefetch::touch(self.buckets[self.home(key)].key);
    }

    #[inline]
    pub(super) fn get(&self, key: u64) -> Option<u32> {
        self.probe(key).map(|(_, slot)| slot)
    }

    pub(super) fn contains_key(&self, key: u64) -> bool {
        self.find(key).is_some()
    }

    /// Maps `key` to `slot` (replacing what it mapped to).
    pub(super) fn insert(&mut self, key: u64, slot: u32) {
        debug_assert_ne!(slot, EMPTY);
        if let Some(i) = self.find(key) {
            self.buckets[i].slot = slot;
            return;
        }
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        self.place(key, slot);
        self.len += 1;
    }

    /// Puts a key known to be absent in the first empty bucket from its home.
    fn place(&mut self, key: u64, slot: u32) {
        let mask = self.mask();
        let mut i = self.home(key);
        while self.buckets[i].slot != EMPTY {
            i = (i + 1) & mask;
        }
        self.buckets[i] = Bucket { key, slot };
    }

    fn grow(&mut self) {
        let bigger = vec![VACANT; self.buckets.len() * 2];
        let old = std::mem::replace(&mut self.buckets, bigger);
        for b in old.into_iter().filter(|b| b.slot != EMPTY) {
            self.place(b.key, b.slot);
        }
    }

    /// Unmaps `key`; the slot it mapped to.
    pub(super) fn remove(&mut self, key: u64) -> Option<u32> {
        let mask = self.mask();
        let mut hole = self.find(key)?;
        let slot = self.buckets[hole].slot;
        self.len -= 1;
        // Backward shift: an entry after the hole moves into it unless its home lies
        // cyclically after the hole (then it would be placed before its home).
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let b = self.buckets[i];
            if b.slot == EMPTY {
                break;
            }
            let home = self.home(b.key);
            // distance from home to i, and from the hole to i, going forward
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.buckets[hole] = b;
                hole = i;
            }
        }
        self.buckets[hole] = VACANT;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashMap;

    /// Every key the model holds is found with its slot, and no other key is.
    fn check(t: &FlowTable, model: &HashMap<u64, u32>, rng: &mut ChaCha8Rng) {
        assert_eq!(t.len(), model.len());
        for (&k, &s) in model {
            assert_eq!(t.get(k), Some(s), "key {k:#x}");
        }
        for _ in 0..64 {
            let k = rng.gen::<u64>();
            assert_eq!(t.get(k), model.get(&k).copied());
        }
        assert!(t.buckets.len() >= 2 * t.len());
        // no empty bucket between any key's home and its place
        for (i, b) in t.buckets.iter().enumerate() {
            if b.slot == EMPTY {
                continue;
            }
            let mut j = t.home(b.key);
            while j != i {
                assert_ne!(t.buckets[j].slot, EMPTY, "a hole before key {:#x}", b.key);
                j = (j + 1) & t.mask();
            }
        }
    }

    #[test]
    fn random_inserts_and_removes_agree_with_a_map() {
        for seed in 0..8 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut t = FlowTable::default();
            let mut model = HashMap::new();
            // few distinct keys so removes and re-inserts of the same key are common, and a
            // table kept small so probe runs wrap around its end
            let space: u64 = if seed % 2 == 0 { 40 } else { 5000 };
            for step in 0..20_000u32 {
                let k = rng
                    .gen_range(0..space)
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15u64);
                if rng.gen_bool(0.55) {
                    t.insert(k, step);
                    model.insert(k, step);
                } else {
                    assert_eq!(t.remove(k), model.remove(&k));
                }
                if step % 997 == 0 {
                    check(&t, &model, &mut rng);
                }
            }
            check(&t, &model, &mut rng);
            for k in model.keys().copied().collect::<Vec<_>>() {
                assert_eq!(t.remove(k), model.remove(&k));
            }
            check(&t, &model, &mut rng);
        }
    }

    #[test]
    fn colliding_homes_probe_past_each_other_and_shift_back() {
        let mut t = FlowTable::default();
        // keys that share a home bucket, found by trying
        let home = t.home(1);
        let same: Vec<u64> = (2..).filter(|&k| t.home(k) == home).take(5).collect();
        for (i, &k) in same.iter().enumerate() {
            t.insert(k, i as u32);
        }
        assert_eq!(t.remove(same[1]), Some(1));
        assert_eq!(t.remove(same[1]), None);
        for (i, &k) in same.iter().enumerate().filter(|(i, _)| *i != 1) {
            assert_eq!(t.get(k), Some(i as u32));
        }
        assert_eq!(t.len(), 4);
    }
}
