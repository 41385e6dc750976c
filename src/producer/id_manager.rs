//! ProducerIdManager: hands out producer ids that are unique across the cluster and never
//! reused. Ids come in blocks from the controller (Kafka's ProducerIdsRecord), whose metadata
//! log makes each block durable before any id in it is given out; a restart skips at most the
//! rest of one block.

use std::sync::Mutex;

#[derive(Default)]
pub struct ProducerIdManager {
    /// (next id to give, end of the current block).
    next: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// The next id of the current block, or None when a new block is needed.
    pub fn next_id(&self) -> Option<i64> {
        let mut guard = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let (next, end) = *guard;
        if next >= end {
            return None;
        }
        guard.0 = next + 1;
        Some(next)
    }

    pub fn add_block(&self, first: i64, size: i64) {
        *self.next.lock().unwrap_or_else(|p| p.into_inner()) = (first, first + size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_the_block_until_it_is_used_up() {
        let m = ProducerIdManager::default();
        assert_eq!(m.next_id(), None);
        m.add_block(1000, 2);
        assert_eq!(
            (m.next_id(), m.next_id(), m.next_id()),
            (Some(1000), Some(1001), None)
        );
    }
}
