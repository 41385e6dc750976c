//! The broker: one handler file per API family, over the log manager and the topic registry.
//!
//! Handlers turn typed requests into typed responses. They never touch files (the log and the
//! registry do) and never see bytes on the wire (the protocol layer does).

pub mod admin;
pub mod api_versions;
pub mod configs;
pub mod fetch;
pub mod fetch_session;
pub mod groups;
pub mod init_producer_id;
pub mod leader_epoch;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod partition;
pub mod produce;
pub mod purgatory;
pub mod quorum;
pub mod replica_manager;
pub mod topics;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use kafka_protocol::error::ResponseError;

use crate::cluster::rpc::{ControllerReply, ControllerRequest, NewTopic};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::group::store::OFFSETS_TOPIC;
use crate::group::GroupCoordinator;
use crate::log::cleaner::LogCleaner;
use crate::log::{LogManager, PartitionLog};
use crate::metadata::{MetadataCache, MetadataImage, PartitionRegistration, Topic, TopicError};
use crate::producer::id_manager::ProducerIdManager;
use partition::Partition;

/// How long an admin change waits for the controller and for this broker's image.
pub(crate) const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Broker {
    pub config: Config,
    pub logs: Arc<LogManager>,
    /// Compacts the logs of `cleanup.policy=compact` topics in the background.
    pub cleaner: LogCleaner,
    /// The metadata image this broker's logs have been reconciled with.
    pub metadata: MetadataCache,
    pub cluster: Arc<Cluster>,
    pub producer_ids: ProducerIdManager,
    pub groups: GroupCoordinator,
    /// Incremental fetch sessions (KIP-227).
    pub fetch_sessions: fetch_session::FetchSessionCache,
    /// The request path's counters, read by `/metrics`.
    pub metrics: crate::metrics::BrokerMetrics,
    /// When the broker opened (the start of the first metrics window).
    pub started: std::time::Instant,
    /// The offset of the last image published to `metadata`.
    pub(crate) published: tokio::sync::watch::Sender<u64>,
    /// Partitions assigned here whose log could not be opened or created, with why: a
    /// CreateTopics that hits one rolls its topic back; `follow_metadata` retries the rest.
    pub(crate) unavailable: dashmap::DashMap<(String, i32), String>,
    /// The partitions this broker leads, with their followers' state.
    pub(crate) leaders: dashmap::DashMap<(String, i32), Arc<Partition>>,
    /// ISR changes leaders want; `cluster::isr` sends them to the controller.
    pub(crate) isr_changes: tokio::sync::mpsc::UnboundedSender<IsrChange>,
    isr_changes_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<IsrChange>>>,
}

/// An ISR a partition's leader asks the controller for (AlterPartition).
#[derive(Debug, Clone)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// Who sent a request: the header's client id and the peer address (as Kafka shows them in
/// DescribeGroups).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub id: String,
    pub host: String,
}

pub fn broker_ids(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().map(|b| BrokerId(*b)).collect()
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Broker {
    /// Opens every partition log (recovering them if the last shutdown was not clean). Which
    /// of them this broker keeps, leads or deletes follows from the metadata image.
    pub fn open(config: Config, cluster: Arc<Cluster>) -> anyhow::Result<Self> {
        let dir = config.log_dir.clone();
        crate::log::checkpoint::create_dir_durably(&dir)
            .with_context(|| format!("creating log directory {}", dir.display()))?;
        let image = cluster.image.borrow().clone();
        let defaults = config.log.clone();
        let began = std::time::Instant::now();
        let (logs, stats) = LogManager::open(&dir, config.max_open_segment_files, move |t| {
            image
                .topic(t)
                .map_or_else(|| defaults.clone(), |t| t.config.clone())
        })
        .context("opening the log directory")?;
        tracing::info!(
            partitions = logs.all().len(),
            segments_scanned = stats.segments_scanned,
            bytes_truncated = stats.bytes_truncated,
            segments_deleted = stats.segments_deleted,
            seconds = began.elapsed().as_secs_f64(),
            "logs loaded"
        );
        let logs = Arc::new(logs);
        let cleaner = LogCleaner::new(logs.clone(), config.cleaner.clone());
        cleaner.start();
        let groups = GroupCoordinator::new(config.group.clone());
        let (isr_changes, isr_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self {
            fetch_sessions: fetch_session::FetchSessionCache::new(
                config.fetch_session_cache_slots,
                config.fetch_session_eviction_ms,
                config.fetch_session_partition_budget(),
            ),
            leaders: dashmap::DashMap::new(),
            isr_changes,
            isr_changes_rx: std::sync::Mutex::new(Some(isr_rx)),
            config,
            logs,
            cleaner,
            metadata: MetadataCache::default(),
            cluster,
            producer_ids: ProducerIdManager::default(),
            groups,
            metrics: crate::metrics::BrokerMetrics::default(),
            started: std::time::Instant::now(),
            unavailable: dashmap::DashMap::new(),
            published: tokio::sync::watch::channel(0).0,
        })
    }

    /// The partitions this broker leads now.
    pub fn led_partitions(&self) -> Vec<(String, i32)> {
        self.leaders.iter().map(|e| e.key().clone()).collect()
    }

    /// Whether another broker now leads any of `partitions` (as of the published image).
    pub fn any_led_elsewhere(&self, partitions: &[(String, i32)]) -> bool {
        let image = self.metadata.image();
        partitions.iter().any(|(t, p)| {
            image.partition(t, *p).is_some_and(|r| {
                r.leader != self.config.node_id && r.leader != PartitionRegistration::NO_LEADER
            })
        })
    }

    /// Waits until the handlers see an image at or past `offset`.
    pub async fn wait_published(&self, offset: u64) -> Result<(), TopicError> {
        let mut rx = self.published.subscribe();
        let reached = tokio::time::timeout(ADMIN_TIMEOUT, rx.wait_for(|o| *o >= offset))
            .await
            .is_ok_and(|r| r.is_ok());
        match reached {
            true => Ok(()),
            false => Err(TopicError::NotController(
                "The change was committed but this broker's metadata did not catch up in time."
                    .into(),
            )),
        }
    }

    /// Sends a change to the controller and waits until this broker's image holds it.
    pub async fn controller_change(&self, request: ControllerRequest) -> Result<(), TopicError> {
        match self.cluster.call(request, ADMIN_TIMEOUT).await? {
            ControllerReply::Done { offset } => self.wait_published(offset).await,
            ControllerReply::Failed(e) => Err(e),
            other => Err(TopicError::NotController(format!(
                "unexpected controller answer {other:?}"
            ))),
        }
    }

    /// Creates `__consumer_offsets` on first use (as Kafka does at the first FindCoordinator).
    pub async fn ensure_offsets_topic(&self) -> Result<(), TopicError> {
        if self.metadata.get(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let overrides = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                self.config.group.offsets_topic_segment_bytes.to_string(),
            ),
        ]);
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            partitions: self.config.group.offsets_topic_partitions,
            replication_factor: self.config.offsets_topic_replication_factor(),
            assignments: None,
            overrides,
            validate_only: false,
            id: None,
        };
        match self.create(topic).await {
            Ok(_) | Err(TopicError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The group coordinator serves once the offsets topic exists and is loaded here.
    pub fn coordinator_ready(&self) -> Result<(), ResponseError> {
        if self.groups.is_loaded() {
            Ok(())
        } else {
            Err(ResponseError::CoordinatorNotAvailable)
        }
    }

    pub fn node_id(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    /// The controller as clients are told it: the active controller when it is also a live
    /// broker, else this broker (clients send controller requests there and any broker
    /// forwards them, as KRaft brokers do). Never -1, also while the quorum elects a leader:
    /// librdkafka's admin client told -1 waits for a controller until its request times out,
    /// and a forwarded request waits for the election anyway.
    pub fn controller_id(&self) -> BrokerId {
        match self.cluster.leader() {
            Some(l) if self.metadata.image().live_broker(l as i32).is_some() => BrokerId(l as i32),
            _ => self.node_id(),
        }
    }

    pub fn partition_log(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs.get(topic, partition)
    }

    /// The receiver of `isr_changes`, once (for the task that sends them on).
    pub fn take_isr_changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<IsrChange>> {
        self.isr_changes_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// A partition this broker leads in `image`, with its registration; otherwise the error a
    /// client must see to look for the leader again.
    pub fn leader_partition<'i>(
        &self,
        image: &'i MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<Partition>, &'i PartitionRegistration), ResponseError> {
        let reg = image
            .partition(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        if reg.leader == PartitionRegistration::NO_LEADER {
            return Err(ResponseError::LeaderNotAvailable);
        }
        if reg.leader != self.config.node_id {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let key = (topic.to_string(), partition);
        if self.unavailable.contains_key(&key) {
            // Kafka's answer for a partition in an offline log directory.
            return Err(ResponseError::KafkaStorageError);
        }
        let p = self
            .leaders
            .get(&key)
            .map(|p| p.clone())
            .filter(|p| p.leader_epoch() == reg.leader_epoch)
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        Ok((p, reg))
    }

    /// As `leader_partition`, for handlers that need only the log.
    pub fn leader_log<'i>(
        &self,
        image: &'i MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<PartitionLog>, &'i PartitionRegistration), ResponseError> {
        self.leader_partition(image, topic, partition)
            .map(|(p, reg)| (p.log.clone(), reg))
    }

    /// This broker's replica of a partition, leader or follower (debugging reads).
    pub fn replica_log<'i>(
        &self,
        image: &'i MetadataImage,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<PartitionLog>, &'i PartitionRegistration), ResponseError> {
        let reg = image
            .partition(topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let log = self
            .partition_log(topic, partition)
            .filter(|_| reg.replicas.contains(&self.config.node_id))
            .ok_or(ResponseError::NotLeaderOrFollower)?;
        Ok((log, reg))
    }

    /// KIP-951: with NOT_LEADER_OR_FOLLOWER, the partition's current leader and epoch, so a
    /// client can go there without a metadata round trip (its endpoint joins `leaders`).
    pub fn leader_hint(
        error: ResponseError,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
        leaders: &mut std::collections::BTreeSet<i32>,
    ) -> Option<(BrokerId, i32)> {
        if error != ResponseError::NotLeaderOrFollower {
            return None;
        }
        let reg = image.partition(topic, partition)?;
        image.live_broker(reg.leader)?;
        leaders.insert(reg.leader);
        Some((BrokerId(reg.leader), reg.leader_epoch))
    }

    /// Endpoints of the brokers named in leader hints, as (id, host, port, rack).
    pub fn endpoints(
        image: &MetadataImage,
        ids: &std::collections::BTreeSet<i32>,
        listener: &str,
    ) -> Vec<(BrokerId, StrBytes, i32, Option<StrBytes>)> {
        ids.iter()
            .filter_map(|id| image.live_broker(*id))
            .filter_map(|b| {
                let at = b.endpoint(listener)?;
                Some((
                    BrokerId(b.id),
                    StrBytes::from_string(at.host.clone()),
                    at.port,
                    b.rack.clone().map(StrBytes::from_string),
                ))
            })
            .collect()
    }

    /// Creates a topic through the controller, placed over the live brokers.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        overrides: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, TopicError> {
        self.create(NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: -1,
            assignments: None,
            overrides,
            validate_only: false,
            id: None,
        })
        .await
    }

    /// Creates a topic (validate_only is CreateTopics' business) and returns it as this
    /// broker's image holds it. Whole or not at all: when a partition assigned here cannot get
    /// its log, the topic is deleted again and the request fails with the reason.
    pub async fn create(&self, topic: NewTopic) -> Result<Arc<Topic>, TopicError> {
        let name = topic.name.clone();
        self.controller_change(ControllerRequest::CreateTopic(topic))
            .await?;
        let failed = self
            .unavailable
            .iter()
            .find(|e| e.key().0 == name)
            .map(|e| (e.key().1, e.value().clone()));
        if let Some((partition, why)) = failed {
            tracing::warn!(topic = %name, partition, error = %why, "topic creation rolled back");
            self.delete_topic(&name).await?;
            return Err(TopicError::Storage(format!(
                "Partition {partition} of topic '{name}' could not be created ({why}); the topic was not created."
            )));
        }
        self.metadata.get(&name).ok_or(TopicError::Unknown(name))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), TopicError> {
        self.controller_change(ControllerRequest::DeleteTopic {
            name: name.to_string(),
        })
        .await
    }

    /// The next producer id, taking a new block from the controller when this one is used up.
    pub async fn next_producer_id(&self) -> Result<i64, TopicError> {
        loop {
            if let Some(id) = self.producer_ids.next_id() {
                return Ok(id);
            }
            let broker = self.config.node_id;
            match self
                .cluster
                .call(
                    ControllerRequest::AllocateProducerIds { broker },
                    ADMIN_TIMEOUT,
                )
                .await?
            {
                ControllerReply::ProducerIds { first, .. } => self
                    .producer_ids
                    .add_block(first, crate::cluster::controller::PRODUCER_ID_BLOCK),
                other => {
                    return Err(TopicError::NotController(format!(
                        "unexpected controller answer {other:?}"
                    )))
                }
            }
        }
    }

    /// Periodic work: flush.ms, retention, checkpoints.
    pub fn maintain(&self, run_retention: bool) {
        self.logs.maintain(LogManager::now_ms(), run_retention);
    }

    /// Orderly shutdown: waiting group members released, everything flushed, clean-shutdown
    /// marker written.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.groups.shutdown();
        self.cleaner.shutdown();
        self.logs
            .shutdown()
            .context("shutting down the log directory")
    }
}
