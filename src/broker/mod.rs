//! The broker: one handler file per API family, over the log manager and the topic registry.
//!
//! Handlers turn typed requests into typed responses. They never touch files (the log and the
//! registry do) and never see bytes on the wire (the protocol layer does).

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::config::Config;
use crate::group::store::OFFSETS_TOPIC;
use crate::group::GroupCoordinator;
use crate::log::{LogManager, PartitionLog};
use crate::metadata::{Topic, TopicError, TopicRegistry};
use crate::producer::id_manager::ProducerIdManager;

/// The leader epoch of every partition on a single broker that never changes leaders.
pub const LEADER_EPOCH: i32 = 0;

pub struct Broker {
    pub config: Config,
    pub logs: LogManager,
    pub topics: TopicRegistry,
    pub producer_ids: ProducerIdManager,
    pub groups: GroupCoordinator,
    /// Serialises the creation of `__consumer_offsets`.
    groups_init: std::sync::Mutex<()>,
    /// Woken after every append so long-polling fetches look again.
    pub appended: tokio::sync::Notify,
}

/// Who sent a request: the header's client id and the peer address (as Kafka shows them in
/// DescribeGroups).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub id: String,
    pub host: String,
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Broker {
    /// Loads the topic registry and every partition log (recovering them if the last shutdown
    /// was not clean).
    pub fn open(config: Config) -> anyhow::Result<Self> {
        let dir = config.log_dir.clone();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating log directory {}", dir.display()))?;
        let topics =
            TopicRegistry::load(&dir, config.log.clone()).context("loading the topic registry")?;
        let configs: BTreeMap<String, crate::log::LogConfig> = topics
            .list()
            .iter()
            .map(|t| (t.name.clone(), t.config.clone()))
            .collect();
        let defaults = config.log.clone();
        let (logs, stats) = LogManager::open(&dir, config.max_open_segment_files, move |t| {
            configs.get(t).cloned().unwrap_or_else(|| defaults.clone())
        })
        .context("opening the log directory")?;
        if stats.segments_scanned > 0 {
            tracing::info!(?stats, "recovered after an unclean shutdown");
        }
        let producer_ids =
            ProducerIdManager::load(&dir).context("loading the producer id block")?;
        let groups = GroupCoordinator::new(config.group.clone());
        let broker = Self {
            config,
            logs,
            topics,
            producer_ids,
            groups,
            groups_init: std::sync::Mutex::new(()),
            appended: tokio::sync::Notify::new(),
        };
        // Partition directories of topics the registry does not know are leftovers of a delete
        // interrupted by a crash.
        for log in broker.logs.all() {
            let known = broker
                .topics
                .get(log.topic())
                .is_some_and(|t| log.partition() < t.partitions);
            if !known {
                broker.logs.delete(log.topic(), log.partition())?;
            }
        }
        for t in broker.topics.list() {
            broker.ensure_logs(&t)?;
        }
        if broker.topics.get(OFFSETS_TOPIC).is_some() {
            broker
                .ensure_group_coordinator()
                .context("loading the group coordinator")?;
        }
        Ok(broker)
    }

    /// Creates `__consumer_offsets` on first use (as Kafka does at the first FindCoordinator)
    /// and replays it into the group coordinator.
    pub fn ensure_group_coordinator(&self) -> Result<(), TopicError> {
        if self.groups.is_loaded() {
            return Ok(());
        }
        let _guard = self.groups_init.lock().unwrap_or_else(|p| p.into_inner());
        if self.groups.is_loaded() {
            return Ok(());
        }
        let topic = match self.topics.get(OFFSETS_TOPIC) {
            Some(t) => t,
            None => {
                let overrides = BTreeMap::from([
                    ("cleanup.policy".to_string(), "compact".to_string()),
                    (
                        "segment.bytes".to_string(),
                        self.config.group.offsets_topic_segment_bytes.to_string(),
                    ),
                ]);
                self.create_topic(
                    OFFSETS_TOPIC,
                    self.config.group.offsets_topic_partitions,
                    overrides,
                )?
            }
        };
        let logs = (0..topic.partitions)
            .filter_map(|p| self.partition_log(OFFSETS_TOPIC, p))
            .collect();
        self.groups
            .load(logs, LogManager::now_ms())
            .map_err(TopicError::Storage)
    }

    fn ensure_logs(&self, t: &Topic) -> Result<(), TopicError> {
        for p in 0..t.partitions {
            self.logs.get_or_create(&t.name, p, t.config.clone())?;
        }
        Ok(())
    }

    pub fn node_id(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs.get(topic, partition)
    }

    /// Creates a topic durably with its partition logs.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        let topic = self
            .topics
            .insert(self.topics.prepare(name, partitions, overrides)?)?;
        self.ensure_logs(&topic)?;
        Ok(topic)
    }

    pub fn delete_topic(&self, name: &str) -> Result<Arc<Topic>, TopicError> {
        if self.topics.get(name).is_some_and(|t| t.internal) {
            return Err(TopicError::InvalidName(format!(
                "Topic {name} is an internal topic and cannot be deleted."
            )));
        }
        let topic = self.topics.remove(name)?;
        for p in 0..topic.partitions {
            self.logs.delete(name, p)?;
        }
        self.groups.forget_topic(name);
        Ok(topic)
    }

    /// Periodic work: flush.ms, retention, checkpoints.
    pub fn maintain(&self, run_retention: bool) {
        self.logs.maintain(LogManager::now_ms(), run_retention);
    }

    /// Orderly shutdown: waiting group members released, everything flushed, clean-shutdown
    /// marker written.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.groups.shutdown();
        self.logs
            .shutdown()
            .context("shutting down the log directory")
    }
}
