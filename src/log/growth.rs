//! Who waits for a partition log to grow: long-polling fetches register here and are woken when
//! its log end or high watermark moves, so an append wakes only the fetches waiting on its
//! partition (Kafka's delayed fetches keyed by partition in the fetch purgatory).
//!
//! Owns the list of waiters. Never blocks and never runs a waiter's work: waking is a
//! `notify_one` on the waiter's own `Notify`.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

#[derive(Default)]
pub struct GrowthWaiters {
    /// Weak, so a fetch that ended (answered by its deadline or another partition) leaves
    /// nothing behind; dead entries are dropped at the next register or wake.
    waiters: Mutex<Vec<Weak<Notify>>>,
}

impl GrowthWaiters {
    /// Wakes `waiter` at the next growth. Register before looking at the log, so growth in
    /// between is not missed.
    pub fn register(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.lock();
        waiters.retain(|w| w.strong_count() > 0);
        let weak = Arc::downgrade(waiter);
        if !waiters.iter().any(|w| w.ptr_eq(&weak)) {
            waiters.push(weak);
        }
    }

    /// Wakes every waiter once; they register again if they go on waiting.
    pub fn wake(&self) {
        let waiters = std::mem::take(&mut *self.lock());
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            // A permit is kept if the waiter is between two waits: it looks again.
            waiter.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Notify>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn growth_wakes_each_registered_waiter_once_and_forgets_ended_ones() {
        let growth = GrowthWaiters::default();
        let (a, b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        growth.register(&a);
        growth.register(&a);
        growth.register(&b);
        drop(b);
        assert_eq!(growth.lock().len(), 2);
        growth.register(&a);
        assert_eq!(growth.lock().len(), 1, "the ended waiter is dropped");
        growth.wake();
        // The permit was kept though nobody was waiting yet.
        tokio::time::timeout(std::time::Duration::from_secs(5), a.notified())
            .await
            .expect("woken");
        assert!(growth.lock().is_empty());
        let again = a.notified();
        growth.wake();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), again)
                .await
                .is_err(),
            "not registered again: not woken"
        );
    }
}
