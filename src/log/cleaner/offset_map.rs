//! The cleaner's offset map (Kafka's SkimpyOffsetMap): key → the latest offset seen for it,
//! in a fixed memory budget. Keys are stored as 128-bit hashes (24 bytes a slot with the
//! offset), in an open-addressing table filled at most to the load factor.
//!
//! Owns the table and its memory bound. Never reads the log.

use xxhash_rust::xxh3::xxh3_128;

/// Bytes one slot takes: a 128-bit key hash and an offset.
pub const SLOT_BYTES: usize = 24;

#[derive(Clone, Copy)]
struct Slot {
    hash: [u64; 2],
    /// -1: empty.
    offset: i64,
}

const EMPTY: Slot = Slot {
    hash: [0, 0],
    offset: -1,
};

pub struct OffsetMap {
    slots: Vec<Slot>,
    used: usize,
    max_entries: usize,
}

fn hash(key: &[u8]) -> [u64; 2] {
    let h = xxh3_128(key);
    [h as u64, (h >> 64) as u64]
}

impl OffsetMap {
    /// A map within `budget_bytes`, filled to at most `load_factor`, and no larger than
    /// `expected_keys` need: a small dirty section does not cost the whole budget.
    pub fn new(budget_bytes: usize, load_factor: f64, expected_keys: usize) -> Self {
        let load_factor = load_factor.clamp(0.1, 0.99);
        let by_budget = (budget_bytes / SLOT_BYTES).max(16);
        let by_need = ((expected_keys as f64 / load_factor) as usize).saturating_add(16);
        let slots = by_budget.min(by_need);
        Self {
            slots: vec![EMPTY; slots],
            used: 0,
            max_entries: ((slots as f64) * load_factor) as usize,
        }
    }

    /// The most keys this map holds.
    pub fn capacity(&self) -> usize {
        self.max_entries
    }
    pub fn len(&self) -> usize {
        self.used
    }
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
    /// Room for `n` more keys, however many of them are new.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.used + n <= self.max_entries
    }
    /// Memory held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    fn position(&self, h: [u64; 2]) -> usize {
        let n = self.slots.len();
        let mut i = (h[0] as usize) % n;
        loop {
            let s = &self.slots[i];
            if s.offset < 0 || s.hash == h {
                return i;
            }
            i = (i + 1) % n;
        }
    }

    /// Records `offset` as the latest for `key`. Returns false (and records nothing) when a
    /// new key finds the map full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = hash(key);
        let i = self.position(h);
        if self.slots[i].offset < 0 {
            if self.used >= self.max_entries {
                return false;
            }
            self.used += 1;
        }
        self.slots[i] = Slot { hash: h, offset };
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let s = self.slots[self.position(hash(key))];
        (s.offset >= 0).then_some(s.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn sized_by_need_within_the_budget() {
        let small = OffsetMap::new(128 << 20, 0.9, 1_000);
        assert!(small.memory_bytes() < 40_000);
        assert!(small.capacity() >= 1_000);
        let capped = OffsetMap::new(24_000, 0.9, 1_000_000);
        assert_eq!(capped.memory_bytes(), 24_000);
        assert_eq!(capped.capacity(), 900);
    }

    #[test]
    fn refuses_new_keys_when_full_but_updates_known_ones() {
        let mut m = OffsetMap::new(SLOT_BYTES * 20, 0.5, 100);
        let cap = m.capacity();
        for i in 0..cap {
            assert!(m.put(format!("k{i}").as_bytes(), i as i64));
        }
        assert!(!m.put(b"new", 99));
        assert!(m.put(b"k0", 1_000));
        assert_eq!(m.get(b"k0"), Some(1_000));
        assert_eq!(m.get(b"new"), None);
    }

    proptest! {
        #[test]
        fn agrees_with_a_hashmap(ops in proptest::collection::vec((0u16..300, 0i64..1_000_000), 0..2_000)) {
            let mut m = OffsetMap::new(1 << 20, 0.9, 400);
            let mut model = HashMap::new();
            for (k, off) in &ops {
                let key = k.to_be_bytes();
                prop_assert!(m.put(&key, *off));
                model.insert(*k, *off);
            }
            prop_assert_eq!(m.len(), model.len());
            for (k, off) in &model {
                prop_assert_eq!(m.get(&k.to_be_bytes()), Some(*off));
            }
        }
    }
}
