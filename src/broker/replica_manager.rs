//! The replica manager's part that exists today (Kafka's ReplicaManager applying metadata
//! deltas): follows the images the quorum publishes and makes this broker's logs and group
//! coordinator match them before handlers see them; imports the pre-quorum topic registry.
//!
//! Owns the order "reconcile, then publish". Never decides placement or leadership.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;

use super::partition::Partition;
use super::Broker;
use crate::cluster::rpc::{ControllerRequest, NewTopic};
use crate::group::store::OFFSETS_TOPIC;
use crate::log::{LogConfig, LogError, LogManager};
use crate::metadata::{read_legacy_registry, MetadataImage, TopicError, LEGACY_FILE_NAME};

impl Broker {
    /// Makes this broker's logs and coordinators match a new image, then publishes it to
    /// the handlers: a partition newly assigned here gets its log, a deleted one loses it,
    /// config changes reach the logs, and the group coordinator loads the offsets topic's
    /// partitions this broker leads.
    ///
    /// One partition's failure (its log cannot be created: no space, no memory maps) costs only
    /// that partition: it is recorded in `unavailable`, the rest of the image is applied and
    /// published, and the error returned so the caller tries again.
    pub fn apply_image(&self, image: Arc<MetadataImage>) -> Result<(), TopicError> {
        let previous = self.metadata.image();
        let now = LogManager::now_ms();
        let mut first_error = None;
        self.unavailable
            .retain(|(t, p), _| image.partition(t, *p).is_some());
        let mut failed = self.create_missing_logs(&image).unwrap_or_else(|e| {
            first_error = Some(e);
            HashMap::new()
        });
        for t in image.topics.values() {
            if previous
                .topic(&t.name)
                .is_none_or(|before| before.id != t.id)
                && previous.offset > 0
            {
                tracing::info!(topic = %t.name, partitions = t.partition_count(), "topic created");
            }
            for (p, reg) in t.partitions.iter().enumerate() {
                let key = (t.name.clone(), p as i32);
                let applied = match failed.remove(&key) {
                    Some(e) => Err(e.into()),
                    None => self.apply_partition(t, p as i32, reg, now),
                };
                match applied {
                    Ok(()) => {
                        self.unavailable.remove(&key);
                    }
                    Err(e) => {
                        if self.unavailable.insert(key, e.to_string()).is_none() {
                            tracing::error!(topic = %t.name, partition = p, error = %e, "partition log unavailable");
                        }
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        for t in previous.topics.values() {
            let gone = image.topic(&t.name).is_none_or(|now| now.id != t.id);
            if gone {
                tracing::info!(topic = %t.name, "topic deleted");
                for p in 0..t.partition_count() {
                    self.leaders.remove(&(t.name.clone(), p));
                    if let Err(e) = self.logs.delete(&t.name, p) {
                        first_error.get_or_insert(e.into());
                    }
                }
                self.groups.forget_topic(&t.name);
            }
        }
        if let Some(offsets) = image.topic(OFFSETS_TOPIC) {
            let logs: Vec<_> = (0..offsets.partition_count())
                .map(|p| {
                    let leads = image
                        .partition(OFFSETS_TOPIC, p)
                        .is_some_and(|r| r.leader == self.config.node_id);
                    leads
                        .then(|| self.partition_log(OFFSETS_TOPIC, p))
                        .flatten()
                })
                .collect();
            let led: Vec<bool> = logs.iter().map(Option::is_some).collect();
            if !self.groups.is_loaded() || self.groups.led_partitions() != led {
                if let Err(e) = self.groups.load(logs, LogManager::now_ms()) {
                    first_error.get_or_insert(e.into());
                }
            }
        }
        let offset = image.offset;
        self.metadata.publish(image);
        self.published.send_replace(offset);
        first_error.map_or(Ok(()), Err)
    }

    /// Creates, all at once, the logs of partitions the image newly assigns here; those that
    /// could not be created, with why.
    fn create_missing_logs(
        &self,
        image: &MetadataImage,
    ) -> Result<HashMap<(String, i32), LogError>, TopicError> {
        let me = self.config.node_id;
        let missing: Vec<(String, i32, LogConfig)> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter(|(p, reg)| {
                        reg.replicas.contains(&me) && self.logs.get(&t.name, *p as i32).is_none()
                    })
                    .map(|(p, _)| (t.name.clone(), p as i32, t.config.clone()))
            })
            .collect();
        if missing.is_empty() {
            return Ok(HashMap::new());
        }
        let results = self.logs.create_missing(&missing)?;
        Ok(missing
            .into_iter()
            .zip(results)
            .filter_map(|((t, p, _), r)| r.err().map(|e| ((t, p), e)))
            .collect())
    }

    /// Makes one partition assigned in the image match it here.
    fn apply_partition(
        &self,
        t: &crate::metadata::Topic,
        p: i32,
        reg: &crate::metadata::PartitionRegistration,
        now: i64,
    ) -> Result<(), TopicError> {
        let me = self.config.node_id;
        if !reg.replicas.contains(&me) {
            return Ok(());
        }
        let log = self.logs.get_or_create(&t.name, p, t.config.clone())?;
        if *log.config() != t.config {
            log.set_config(t.config.clone());
        }
        let key = (t.name.clone(), p);
        if reg.leader != me {
            // A follower's high watermark is the leader's, learnt by fetching.
            if self.leaders.remove(&key).is_some() || log.hw_follows_end() {
                log.set_hw_follows_end(false);
            }
            return Ok(());
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
        partition.refresh(reg);
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

    /// Applies every image the quorum publishes, in order, until `stop`; an image that could
    /// not be applied whole is applied again after `RETRY_APPLY` even if no newer one comes.
    pub async fn follow_metadata(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        const RETRY_APPLY: std::time::Duration = std::time::Duration::from_secs(5);
        let mut images = self.cluster.image.clone();
        loop {
            let image = images.borrow_and_update().clone();
            let b = self.clone();
            let began = std::time::Instant::now();
            let offset = image.offset;
            let applied = match tokio::task::spawn_blocking(move || b.apply_image(image)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the metadata image was not applied whole; trying again");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "applying the metadata image panicked");
                    false
                }
            };
            if began.elapsed() > std::time::Duration::from_secs(1) {
                tracing::info!(
                    offset,
                    seconds = began.elapsed().as_secs_f64(),
                    "slow metadata image applied"
                );
            }
            let retry = async {
                if applied {
                    std::future::pending::<()>().await
                }
                tokio::time::sleep(RETRY_APPLY).await
            };
            tokio::select! {
                r = images.changed() => if r.is_err() { return },
                _ = retry => {}
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
