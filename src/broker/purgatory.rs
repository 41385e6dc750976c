//! The purgatory for acks=all (Kafka's DelayedProduce): an append waits until the high
//! watermark passes it, each waiter on its own partition's watermark, so a slow partition
//! holds back only the requests that wrote to it.
//!
//! Owns the outcome rules of a replicated write. Never moves the high watermark itself.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::partition::Partition;
use super::Broker;

/// An append waiting for its followers.
pub struct Waiting {
    pub partition: Arc<Partition>,
    /// The leader epoch it was appended in: another epoch means leadership moved.
    pub leader_epoch: i32,
    /// The high watermark that commits it.
    pub required: i64,
    pub min_isr: i32,
}

impl Broker {
    /// Waits until the high watermark commits `w` with enough replicas in sync
    /// (NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below `min.insync.replicas`),
    /// until leadership moves (NOT_LEADER_OR_FOLLOWER), or until the deadline
    /// (REQUEST_TIMED_OUT).
    pub async fn await_replication(
        &self,
        w: &Waiting,
        deadline: tokio::time::Instant,
    ) -> Result<(), ResponseError> {
        let mut hw = w.partition.subscribe_hw();
        let mut images = self.published.subscribe();
        let log = &w.partition.log;
        loop {
            let image = self.metadata.image();
            image
                .partition(log.topic(), log.partition())
                .filter(|r| r.leader == self.config.node_id && r.leader_epoch == w.leader_epoch)
                .ok_or(ResponseError::NotLeaderOrFollower)?;
            // The ISR the high watermark was computed with, not a handler's image of it.
            if log.high_watermark() >= w.required {
                return match (w.partition.isr_size() as i32) < w.min_isr {
                    true => Err(ResponseError::NotEnoughReplicasAfterAppend),
                    false => Ok(()),
                };
            }
            tokio::select! {
                _ = hw.changed() => {}
                _ = images.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return Err(ResponseError::RequestTimedOut),
            }
        }
    }
}
