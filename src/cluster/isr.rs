//! The ISR manager (Kafka's AlterPartitionManager with the leader's ISR-shrink check): sends the
//! ISR changes this broker's led partitions want to the controller, and every
//! `replica.lag.time.max.ms / 2` looks for followers that fell out of sync.
//!
//! Owns when an ISR change is asked for. Never applies one: the controller commits it and it
//! arrives in the next image, checked against the partition's epochs.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::rpc::ControllerRequest;
use crate::broker::{Broker, IsrChange};
use crate::log::LogManager;

/// Runs until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let Some(mut wanted) = broker.take_isr_changes() else {
        return;
    };
    let lag = broker.config.cluster.replica_lag_time_max_ms;
    let mut tick = tokio::time::interval(Duration::from_millis((lag / 2).max(50) as u64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            change = wanted.recv() => match change {
                Some(c) => send(&broker, c),
                None => return,
            },
            _ = tick.tick() => {
                for c in shrinks(&broker, lag) {
                    send(&broker, c);
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// The led partitions whose ISR holds a follower not caught up within `lag` ms.
fn shrinks(broker: &Broker, lag: i64) -> Vec<IsrChange> {
    let image = broker.metadata.image();
    let now = LogManager::now_ms();
    let mut out = Vec::new();
    for entry in broker.leaders.iter() {
        let (topic, partition) = entry.key();
        let Some(reg) = image
            .partition(topic, *partition)
            .filter(|r| r.leader_epoch == entry.value().leader_epoch())
        else {
            continue;
        };
        if let Some(isr) = entry.value().shrink(reg, now, lag) {
            tracing::info!(%topic, partition, from = ?reg.isr, to = ?isr, "shrinking ISR");
            out.push(IsrChange {
                topic: topic.clone(),
                partition: *partition,
                leader_epoch: reg.leader_epoch,
                partition_epoch: reg.partition_epoch,
                isr,
            });
        }
    }
    out
}

/// Asks the controller for `change` in the background; a refused or failed change may be
/// asked again once the partition's state says so.
fn send(broker: &Arc<Broker>, change: IsrChange) {
    let broker = broker.clone();
    tokio::spawn(async move {
        let key = (change.topic.clone(), change.partition);
        let before = broker
            .metadata
            .image()
            .partition(&key.0, key.1)
            .map_or(0, |r| r.isr.len());
        let shrink = change.isr.len() < before;
        let request = ControllerRequest::AlterIsr {
            broker: broker.config.node_id,
            topic: change.topic,
            partition: change.partition,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            isr: change.isr,
        };
        let done = broker.controller_change(request).await;
        if done.is_ok() {
            let m = &broker.metrics;
            let counter = if shrink {
                &m.isr_shrinks
            } else {
                &m.isr_expands
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Err(e) = done {
            tracing::info!(topic = %key.0, partition = key.1, error = %e, "ISR change not made");
            let image = broker.metadata.image();
            if let (Some(p), Some(reg)) = (broker.leaders.get(&key), image.partition(&key.0, key.1))
            {
                if p.leader_epoch() == reg.leader_epoch {
                    p.clear_pending(reg);
                }
            }
        }
    });
}
