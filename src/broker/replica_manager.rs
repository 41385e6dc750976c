//! The replica manager's part that exists today (Kafka's ReplicaManager applying metadata
//! deltas): follows the images the quorum publishes and makes this broker's logs and group
//! coordinator match them before handlers see them; imports the pre-quorum topic registry.
//!
//! Owns the order "reconcile, then publish". Never decides placement or leadership.

use std::sync::Arc;

use tokio::sync::watch;

use super::partition::Partition;
use super::Broker;
use crate::cluster::rpc::{ControllerRequest, NewTopic};
use crate::group::store::OFFSETS_TOPIC;
use crate::log::LogManager;
use crate::metadata::{read_legacy_registry, MetadataImage, TopicError, LEGACY_FILE_NAME};

impl Broker {
    /// Makes this broker's logs and coordinators match a new image, then publishes it to
    /// the handlers: a partition newly assigned here gets its log, a deleted one loses it,
    /// config changes reach the logs, and the group coordinator loads the offsets topic's
    /// partitions this broker leads.
    pub fn apply_image(&self, image: Arc<MetadataImage>) -> Result<(), TopicError> {
        let me = self.config.node_id;
        let previous = self.metadata.image();
        let now = LogManager::now_ms();
        let mut hw_moved = false;
        for t in image.topics.values() {
            if previous
                .topic(&t.name)
                .is_none_or(|before| before.id != t.id)
                && previous.offset > 0
            {
                tracing::info!(topic = %t.name, partitions = t.partition_count(), "topic created");
            }
            for (p, reg) in t.partitions.iter().enumerate() {
                if !reg.replicas.contains(&me) {
                    continue;
                }
                let log = self
                    .logs
                    .get_or_create(&t.name, p as i32, t.config.clone())?;
                if *log.config() != t.config {
                    log.set_config(t.config.clone());
                }
                let key = (t.name.clone(), p as i32);
                if reg.leader != me {
                    // A follower's high watermark is the leader's, learnt by fetching.
                    if self.leaders.remove(&key).is_some() || log.hw_follows_end() {
                        log.set_hw_follows_end(false);
                    }
                    continue;
                }
                let current = self
                    .leaders
                    .get(&key)
                    .map(|p| p.clone())
                    .filter(|p| p.leader_epoch() == reg.leader_epoch);
                let partition = match current {
                    Some(p) => p,
                    None => {
                        // Becoming leader: the new epoch starts at our log end.
                        log.begin_epoch(reg.leader_epoch)?;
                        let p = Arc::new(Partition::new(log, reg, now));
                        self.leaders.insert(key, p.clone());
                        p
                    }
                };
                hw_moved |= partition.refresh(reg);
            }
        }
        for t in previous.topics.values() {
            let gone = image.topic(&t.name).is_none_or(|now| now.id != t.id);
            if gone {
                tracing::info!(topic = %t.name, "topic deleted");
                for p in 0..t.partition_count() {
                    self.leaders.remove(&(t.name.clone(), p));
                    self.logs.delete(&t.name, p)?;
                }
                self.groups.forget_topic(&t.name);
            }
        }
        if let Some(offsets) = image.topic(OFFSETS_TOPIC) {
            let logs: Vec<_> = (0..offsets.partition_count())
                .map(|p| {
                    let leads = image
                        .partition(OFFSETS_TOPIC, p)
                        .is_some_and(|r| r.leader == me);
                    leads
                        .then(|| self.partition_log(OFFSETS_TOPIC, p))
                        .flatten()
                })
                .collect();
            let led: Vec<bool> = logs.iter().map(Option::is_some).collect();
            if !self.groups.is_loaded() || self.groups.led_partitions() != led {
                self.groups
                    .load(logs, LogManager::now_ms())
                    .map_err(TopicError::from)?;
            }
        }
        let offset = image.offset;
        self.metadata.publish(image);
        self.published.send_replace(offset);
        if hw_moved {
            self.appended.notify_waiters();
        }
        Ok(())
    }

    /// Deletes partition directories the caught-up image does not assign here: leftovers of a
    /// delete interrupted by a crash, or of topics deleted while this broker was down.
    pub fn remove_stray_logs(&self) -> Result<(), TopicError> {
        let image = self.metadata.image();
        let me = self.config.node_id;
        for log in self.logs.all() {
            let assigned = image
                .partition(log.topic(), log.partition())
                .is_some_and(|r| r.replicas.contains(&me));
            if !assigned {
                tracing::info!(
                    topic = log.topic(),
                    partition = log.partition(),
                    "stray partition removed"
                );
                self.logs.delete(log.topic(), log.partition())?;
            }
        }
        Ok(())
    }

    /// Applies every image the quorum publishes, in order, until `stop`.
    pub async fn follow_metadata(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut images = self.cluster.image.clone();
        loop {
            let image = images.borrow_and_update().clone();
            let b = self.clone();
            match tokio::task::spawn_blocking(move || b.apply_image(image)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "applying the metadata image failed"),
                Err(e) => tracing::error!(error = %e, "applying the metadata image panicked"),
            }
            tokio::select! {
                r = images.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    }

    /// Topics of the registry file a single broker kept before the quorum become metadata
    /// records (same ids, led here), once; the file is then renamed so it is not read again.
    pub async fn import_legacy_registry(&self) -> anyhow::Result<()> {
        let dir = self.config.log_dir.clone();
        let topics = read_legacy_registry(&dir)?;
        if topics.is_empty() {
            return Ok(());
        }
        for (name, id, partitions, overrides) in topics {
            let request = ControllerRequest::CreateTopic(NewTopic {
                name: name.clone(),
                partitions,
                replication_factor: 1,
                assignments: Some(vec![vec![self.config.node_id]; partitions.max(0) as usize]),
                overrides,
                validate_only: false,
                id: Some(id),
            });
            match self.controller_change(request).await {
                Ok(()) | Err(TopicError::AlreadyExists(_)) => {}
                Err(e) => anyhow::bail!("importing topic {name} from {LEGACY_FILE_NAME}: {e}"),
            }
        }
        std::fs::rename(
            dir.join(LEGACY_FILE_NAME),
            dir.join(format!("{LEGACY_FILE_NAME}.imported")),
        )?;
        tracing::info!("topic registry imported into the metadata log");
        Ok(())
    }
}
