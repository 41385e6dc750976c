//! The cleaner's offset map (Kafka's SkimpyOffsetMap): key → the latest offset seen for it,
//! within a memory budget. Keys are stored as 128-bit hashes (24 bytes a slot with the
//! offset), in an open-addressing table filled at most to the load factor. Unlike Kafka's, the
//! table starts small and doubles as keys arrive, so a log with few keys costs little memory
//! whatever the budget.
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
    load_factor: f64,
    /// Slots the budget allows.
    max_slots: usize,
}

const INITIAL_SLOTS: usize = 1024;

fn hash(key: &[u8]) -> [u64; 2] {
    let h = xxh3_128(key);
    [h as u64, (h >> 64) as u64]
}

impl OffsetMap {
    /// A map within `budget_bytes`, filled to at most `load_factor`.
    pub fn new(budget_bytes: usize, load_factor: f64) -> Self {
        let max_slots = (budget_bytes / SLOT_BYTES).max(16);
        Self {
            slots: vec![EMPTY; INITIAL_SLOTS.min(max_slots)],
            used: 0,
            load_factor: load_factor.clamp(0.01, 0.99),
            max_slots,
        }
    }

    /// The most keys this map holds once grown to its budget.
    pub fn capacity(&self) -> usize {
        ((self.max_slots as f64) * self.load_factor) as usize
    }

    fn limit(&self) -> usize {
        ((self.slots.len() as f64) * self.load_factor) as usize
    }

    /// Doubles the table (up to the budget) and places every key again.
    fn grow(&mut self) -> bool {
        if self.slots.len() >= self.max_slots {
            return false;
        }
        let size = (self.slots.len() * 2).min(self.max_slots);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for s in old.into_iter().filter(|s| s.offset >= 0) {
            let i = self.position(s.hash);
            self.slots[i] = s;
        }
        true
    }
    pub fn len(&self) -> usize {
        self.used
    }
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }
    /// Room for `n` more keys, however many of them are new.
    pub fn has_room_for(&self, n: usize) -> bool {
        self.used + n <= self.capacity()
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
        let mut i = self.position(h);
        if self.slots[i].offset < 0 {
            if self.used >= self.limit() {
                if !self.grow() {
                    return false;
                }
                i = self.position(h);
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
    fn grows_with_its_keys_within_the_budget() {
        let mut m = OffsetMap::new(128 << 20, 0.9);
        for i in 0..1_000u32 {
            assert!(m.put(&i.to_be_bytes(), i64::from(i)));
        }
        assert!(
            m.memory_bytes() <= 2048 * SLOT_BYTES,
            "{}",
            m.memory_bytes()
        );
        let mut capped = OffsetMap::new(24_000, 0.9);
        assert_eq!(capped.capacity(), 900);
        for i in 0..900u32 {
            assert!(capped.put(&i.to_be_bytes(), 0));
        }
        assert!(!capped.put(b"one more", 0));
        assert_eq!(capped.memory_bytes(), 24_000);
        for i in 0..900u32 {
            assert_eq!(capped.get(&i.to_be_bytes()), Some(0));
        }
    }

    #[test]
    fn refuses_new_keys_when_full_but_updates_known_ones() {
        let mut m = OffsetMap::new(SLOT_BYTES * 20, 0.5);
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
            let mut m = OffsetMap::new(1 << 20, 0.9);
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
