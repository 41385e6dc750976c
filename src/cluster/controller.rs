//! The active controller (Kafka's QuorumController with its ClusterControlManager and
//! ReplicationControlManager): runs on whichever voter leads the quorum, validates the
//! changes brokers forward, places replicas, fences brokers that stop heartbeating, and turns
//! each decision into metadata records committed through Raft.
//!
//! Never touches partition data, and never changes the image directly: records do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use super::log_store::LogStore;
use super::raft_types::{NodeId, Raft};
use super::rpc::{ControllerReply, ControllerRequest, NewTopic, QuorumState, VoterState};
use crate::log::LogConfig;
use crate::metadata::records::{Applied, MetadataRecord, Rejection};
use crate::metadata::{
    check_override_text, validate_new_topic, MetadataImage, PartitionRegistration, TopicError,
};

/// Producer ids handed to a broker at a time (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;

pub struct ControllerSettings {
    pub node_id: i32,
    pub defaults: LogConfig,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`.
    pub leader_imbalance_check: Option<Duration>,
    /// `max.broker.partitions` (KIP-578): replicas one broker may hold; the active
    /// controller's setting applies.
    pub max_broker_partitions: u32,
}

pub struct Controller {
    settings: ControllerSettings,
    raft: Raft,
    /// The metadata log, read for broker-only nodes fetching it.
    log: LogStore,
    image: watch::Receiver<Arc<MetadataImage>>,
    /// Heartbeats (and registrations) this controller received: the term it leads, when it
    /// began leading it, and when each broker was last heard from in it.
    last_seen: Mutex<(u64, Instant, HashMap<i32, Instant>)>,
    /// When the automatic leader rebalance last ran.
    last_balance: Mutex<Instant>,
}

/// Replica lists for `partitions` new partitions over the live brokers, `rf` each: broker
/// `start + p` leads partition `p`, its followers the brokers after it. With racks, the
/// broker list alternates racks first, so a partition's replicas span racks where it can.
pub fn place(
    live: &[(i32, Option<String>)],
    partitions: i32,
    rf: usize,
    start: usize,
) -> Vec<Vec<i32>> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in live {
        by_rack.entry(rack.as_deref()).or_default().push(*id);
    }
    let mut order = Vec::with_capacity(live.len());
    for i in 0.. {
        let before = order.len();
        for ids in by_rack.values() {
            if let Some(id) = ids.get(i) {
                order.push(*id);
            }
        }
        if order.len() == before {
            break;
        }
    }
    let n = order.len();
    (0..partitions as usize)
        .map(|p| (0..rf).map(|j| order[(start + p + j) % n]).collect())
        .collect()
}

/// The error a client is told for a record the image refused.
fn rejected(r: Rejection) -> TopicError {
    match r {
        Rejection::TopicExists(n) => TopicError::AlreadyExists(n),
        Rejection::UnknownTopic(n) => TopicError::Unknown(n),
        Rejection::StaleEpoch => {
            TopicError::StaleEpoch("The partition changed since the request.".into())
        }
        Rejection::UnknownBroker(id) => {
            TopicError::InvalidReplicaAssignment(format!("Unknown broker {id}"))
        }
    }
}

fn fail(e: TopicError) -> ControllerReply {
    ControllerReply::Failed(e)
}

impl Controller {
    pub fn new(
        settings: ControllerSettings,
        raft: Raft,
        log: LogStore,
        image: watch::Receiver<Arc<MetadataImage>>,
    ) -> Self {
        Self {
            settings,
            raft,
            log,
            image,
            last_seen: Mutex::new((0, Instant::now(), HashMap::new())),
            last_balance: Mutex::new(Instant::now()),
        }
    }

    fn me(&self) -> NodeId {
        self.settings.node_id as NodeId
    }

    fn not_controller(&self) -> ControllerReply {
        ControllerReply::NotController {
            leader: self.raft.metrics().borrow().current_leader,
        }
    }

    /// Commits one record; what applying it answered, and its offset.
    async fn write(&self, record: MetadataRecord) -> Result<(Applied, u64), ControllerReply> {
        match self.raft.client_write(record).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(e) => {
                tracing::debug!(error = %e, "metadata write failed");
                Err(self.not_controller())
            }
        }
    }

    async fn write_done(&self, record: MetadataRecord) -> ControllerReply {
        match self.write(record).await {
            Ok((Applied::Rejected(r), _)) => fail(rejected(r)),
            Ok((_, offset)) => ControllerReply::Done { offset },
            Err(reply) => reply,
        }
    }

    /// Commits `records` as one entry; each one's outcome, and the entry's offset.
    async fn write_batch(
        &self,
        records: Vec<MetadataRecord>,
    ) -> Result<(Vec<Result<(), TopicError>>, u64), ControllerReply> {
        let n = records.len();
        let (applied, offset) = self.write(MetadataRecord::Batch(records)).await?;
        let Applied::Batch(each) = applied else {
            return Err(fail(TopicError::StaleEpoch(
                "The metadata log answered a batch with one outcome.".into(),
            )));
        };
        debug_assert_eq!(each.len(), n);
        let outcomes = each
            .into_iter()
            .map(|a| match a {
                Applied::Rejected(r) => Err(rejected(r)),
                _ => Ok(()),
            })
            .collect();
        Ok((outcomes, offset))
    }

    /// This node's image once it holds everything committed before now, if it leads.
    async fn leader_image(&self) -> Option<Arc<MetadataImage>> {
        self.raft.ensure_linearizable().await.ok()?;
        Some(self.image.borrow().clone())
    }

    pub async fn handle(&self, request: ControllerRequest) -> ControllerReply {
        let Some(image) = self.leader_image().await else {
            return self.not_controller();
        };
        match request {
            ControllerRequest::RegisterBroker(reg) => {
                if let Some(existing) = image.brokers.get(&reg.id) {
                    if existing.incarnation != reg.incarnation
                        && !existing.fenced
                        && self.seen_within_session(reg.id)
                    {
                        return fail(TopicError::DuplicateBroker(format!(
                            "Another broker is registered with node.id {} and still heartbeating.",
                            reg.id
                        )));
                    }
                }
                self.saw(reg.id);
                self.write_done(MetadataRecord::RegisterBroker(reg)).await
            }
            ControllerRequest::Heartbeat {
                id,
                incarnation,
                shutting_down,
            } => {
                let Some(b) = image
                    .brokers
                    .get(&id)
                    .filter(|b| b.incarnation == incarnation)
                else {
                    return ControllerReply::Heartbeat { fenced: true };
                };
                self.saw(id);
                let record = match (b.fenced, shutting_down) {
                    (false, true) => MetadataRecord::FenceBroker { id },
                    (true, false) => MetadataRecord::UnfenceBroker { id },
                    (fenced, _) => return ControllerReply::Heartbeat { fenced },
                };
                match self.write(record).await {
                    Ok(_) => ControllerReply::Heartbeat {
                        fenced: shutting_down,
                    },
                    Err(reply) => reply,
                }
            }
            ControllerRequest::CreateTopic(t) => self.create_topic(&image, t).await,
            ControllerRequest::DeleteTopic { name } => match image.topic(&name) {
                None => fail(TopicError::Unknown(name)),
                Some(t) if t.internal => fail(TopicError::InvalidName(format!(
                    "Topic {name} is an internal topic and cannot be deleted."
                ))),
                Some(_) => self.write_done(MetadataRecord::RemoveTopic { name }).await,
            },
            ControllerRequest::AlterTopicConfig {
                name,
                overrides,
                validate_only,
            } => {
                if image.topic(&name).is_none() {
                    return fail(TopicError::Unknown(name));
                }
                if let Err(e) = check_override_text(&overrides).and_then(|_| {
                    self.settings
                        .defaults
                        .with_overrides(&overrides)
                        .map(|_| ())
                        .map_err(TopicError::InvalidConfig)
                }) {
                    return fail(e);
                }
                if validate_only {
                    return ControllerReply::Done {
                        offset: image.offset,
                    };
                }
                self.write_done(MetadataRecord::TopicConfig { name, overrides })
                    .await
            }
            ControllerRequest::CreatePartitions {
                name,
                count,
                assignments,
                validate_only,
            } => {
                self.create_partitions(&image, name, count, assignments, validate_only)
                    .await
            }
            ControllerRequest::AllocateProducerIds { broker } => {
                match self
                    .write(MetadataRecord::ProducerIds {
                        broker,
                        block_size: PRODUCER_ID_BLOCK,
                    })
                    .await
                {
                    Ok((Applied::ProducerIds { first }, offset)) => {
                        ControllerReply::ProducerIds { first, offset }
                    }
                    Ok(_) => self.not_controller(),
                    Err(reply) => reply,
                }
            }
            ControllerRequest::AlterIsr {
                broker,
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let Some(p) = image.partition(&topic, partition) else {
                    return fail(TopicError::Unknown(topic));
                };
                let stale = p.leader != broker
                    || p.leader_epoch != leader_epoch
                    || p.partition_epoch != partition_epoch;
                if stale {
                    return fail(TopicError::StaleEpoch(format!(
                        "{topic}-{partition} is at leader {} epoch {} partition epoch {}",
                        p.leader, p.leader_epoch, p.partition_epoch
                    )));
                }
                // A new member must be a live replica; the leader never drops itself.
                let invalid = !isr.contains(&broker)
                    || isr.iter().any(|r| {
                        !p.replicas.contains(r)
                            || (!p.isr.contains(r) && image.live_broker(*r).is_none())
                    });
                if invalid {
                    return fail(TopicError::InvalidReplicaAssignment(format!(
                        "ISR {isr:?} is not valid for replicas {:?}",
                        p.replicas
                    )));
                }
                self.write_done(MetadataRecord::AlterIsr {
                    topic,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                })
                .await
            }
            ControllerRequest::ElectLeaders {
                unclean,
                partitions,
            } => self.elect_leaders(&image, unclean, partitions).await,
            ControllerRequest::DescribeQuorum => self.quorum(),
            ControllerRequest::FetchMetadata { after } => {
                // Only what this leader has applied is known to be committed.
                match self.log.records(after + 1, image.offset) {
                    Some(entries) => ControllerReply::Metadata {
                        snapshot: None,
                        entries,
                    },
                    None => ControllerReply::Metadata {
                        snapshot: Some((image.offset, image.to_records())),
                        entries: Vec::new(),
                    },
                }
            }
        }
    }

    /// The quorum from the Raft library's leader metrics: each voter's matched log position;
    /// a voter matching the leader's log was caught up at the last quorum acknowledgement.
    fn quorum(&self) -> ControllerReply {
        let m = self.raft.metrics().borrow().clone();
        if m.current_leader != Some(self.me()) {
            return self.not_controller();
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let leader_end = m.last_log_index.map_or(0, |i| i as i64 + 1);
        let acked_at = m.millis_since_quorum_ack.map_or(-1, |ago| now - ago as i64);
        let matched = m.replication.clone().unwrap_or_default();
        let voters = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| m.membership_config.voter_ids().any(|v| v == **id))
            .map(|(id, node)| {
                let end = if *id == self.me() {
                    leader_end
                } else {
                    matched
                        .get(id)
                        .copied()
                        .flatten()
                        .map_or(0, |l| l.index as i64 + 1)
                };
                VoterState {
                    id: *id as i32,
                    log_end_offset: end,
                    last_caught_up_timestamp: match (*id == self.me(), end == leader_end) {
                        (true, _) => now,
                        (false, true) => acked_at,
                        (false, false) => -1,
                    },
                    endpoint: node.addr.clone(),
                }
            })
            .collect();
        ControllerReply::Quorum(QuorumState {
            leader: self.settings.node_id,
            epoch: m.current_term as i32,
            high_watermark: m.last_applied.map_or(0, |l| l.index as i64 + 1),
            voters,
        })
    }

    fn live(image: &MetadataImage) -> Vec<(i32, Option<String>)> {
        image
            .live_brokers()
            .map(|b| (b.id, b.rack.clone()))
            .collect()
    }

    /// Checks explicit replica lists: every broker registered, none twice in a partition, and
    /// every partition with as many replicas as the first.
    fn check_assignments(
        image: &MetadataImage,
        assignments: &[Vec<i32>],
    ) -> Result<(), TopicError> {
        let rf = assignments.first().map_or(0, Vec::len);
        for (p, replicas) in assignments.iter().enumerate() {
            if replicas.is_empty() || replicas.len() != rf {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "All partitions should have the same number of replicas; partition {p} has {}.",
                    replicas.len()
                )));
            }
            let mut seen = replicas.clone();
            seen.sort_unstable();
            seen.dedup();
            if seen.len() != replicas.len() {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "Duplicate brokers not allowed in replica assignment: {replicas:?} for partition {p}."
                )));
            }
            if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
                return Err(TopicError::InvalidReplicaAssignment(format!(
                    "The manual partition assignment includes broker {b}, but no such broker is registered."
                )));
            }
        }
        Ok(())
    }

    fn placement(
        &self,
        image: &MetadataImage,
        partitions: i32,
        rf: i16,
    ) -> Result<Vec<Vec<i32>>, TopicError> {
        if rf < 1 {
            return Err(TopicError::InvalidReplicationFactor(
                "Replication factor must be larger than 0.".into(),
            ));
        }
        let live = Self::live(image);
        if rf as usize > live.len() {
            return Err(TopicError::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
                live.len()
            )));
        }
        // Before anything is allocated: a mutated request may ask for two billion partitions.
        let capacity = self.settings.max_broker_partitions as u64 * live.len() as u64;
        if partitions.max(0) as u64 * rf as u64 > capacity {
            return Err(TopicError::PolicyViolation(format!(
                "{partitions} partitions with replication factor {rf} exceed what {} broker(s) may hold (max.broker.partitions={}).",
                live.len(),
                self.settings.max_broker_partitions
            )));
        }
        let start = image
            .topics
            .values()
            .map(|t| t.partitions.len())
            .sum::<usize>();
        Ok(place(&live, partitions, rf as usize, start))
    }

    /// Refuses new replicas that would put any broker past `max.broker.partitions`, before
    /// anything is written: the request is created whole or not at all.
    fn check_broker_partitions(
        &self,
        image: &MetadataImage,
        new: &[Vec<i32>],
    ) -> Result<(), TopicError> {
        let limit = self.settings.max_broker_partitions as u64;
        let mut added: HashMap<i32, u64> = HashMap::new();
        for b in new.iter().flatten() {
            *added.entry(*b).or_default() += 1;
        }
        let over = added.iter().find_map(|(&b, &n)| {
            let held = image
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.replicas.contains(&b))
                .count() as u64;
            (held + n > limit).then_some((b, held, n))
        });
        match over {
            None => Ok(()),
            Some((b, held, n)) => Err(TopicError::PolicyViolation(format!(
                "Adding {n} partition replicas to broker {b}, which holds {held}, would exceed max.broker.partitions={limit}."
            ))),
        }
    }

    async fn create_topic(&self, image: &MetadataImage, t: NewTopic) -> ControllerReply {
        let replicas = match &t.assignments {
            Some(a) => Self::check_assignments(image, a).map(|_| a.clone()),
            None => {
                let partitions = if t.partitions == -1 {
                    self.settings.num_partitions
                } else {
                    t.partitions
                };
                let rf = if t.replication_factor == -1 {
                    self.settings.default_replication_factor
                } else {
                    t.replication_factor
                };
                validate_new_topic(&t.name, partitions, &t.overrides, &self.settings.defaults)
                    .and_then(|_| self.placement(image, partitions, rf))
            }
        };
        let replicas = match replicas.and_then(|r| {
            validate_new_topic(
                &t.name,
                r.len() as i32,
                &t.overrides,
                &self.settings.defaults,
            )?;
            self.check_broker_partitions(image, &r)?;
            Ok(r)
        }) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if image.topic(&t.name).is_some() {
            return fail(TopicError::AlreadyExists(t.name));
        }
        if t.validate_only {
            return ControllerReply::Validated { replicas };
        }
        self.write_done(MetadataRecord::Topic {
            name: t.name,
            id: t.id.unwrap_or_else(Uuid::new_v4),
            partitions: replicas
                .into_iter()
                .map(PartitionRegistration::new)
                .collect(),
            overrides: t.overrides,
        })
        .await
    }

    async fn create_partitions(
        &self,
        image: &MetadataImage,
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> ControllerReply {
        let Some(topic) = image.topic(&name) else {
            return fail(TopicError::Unknown(name));
        };
        let current = topic.partition_count();
        if count < current {
            return fail(TopicError::InvalidPartitionCount(format!(
                "Topic currently has {current} partitions, which is higher than the requested {count}."
            )));
        }
        if count == current {
            return fail(TopicError::InvalidPartitionCount(format!(
                "Topic already has {current} partitions."
            )));
        }
        let added = count - current;
        let replicas = match assignments {
            Some(a) => {
                if a.len() as i32 != added {
                    return fail(TopicError::InvalidReplicaAssignment(format!(
                        "Increasing the number of partitions by {added} but {} assignments provided.",
                        a.len()
                    )));
                }
                Self::check_assignments(image, &a).map(|_| a)
            }
            None => {
                let rf = topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
                self.placement(image, added, rf)
            }
        }
        .and_then(|r| self.check_broker_partitions(image, &r).map(|_| r));
        let replicas = match replicas {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if validate_only {
            return ControllerReply::Done {
                offset: image.offset,
            };
        }
        self.write_done(MetadataRecord::AddPartitions {
            name,
            partitions: replicas
                .into_iter()
                .map(PartitionRegistration::new)
                .collect(),
        })
        .await
    }

    fn seen_within_session(&self, id: i32) -> bool {
        let g = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        g.2.get(&id)
            .is_some_and(|t| t.elapsed() <= self.settings.session_timeout)
    }

    fn saw(&self, id: i32) {
        let mut g = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        g.2.insert(id, Instant::now());
    }

    /// Fences brokers that have not heartbeated within the session timeout. A controller that
    /// has just become leader first gives every broker a full session to reach it.
    pub async fn fence_expired(&self) {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.me()) {
            return;
        }
        let image = self.image.borrow().clone();
        let now = Instant::now();
        let expired: Vec<i32> = {
            let mut g = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 != metrics.current_term {
                *g = (metrics.current_term, now, HashMap::new());
            }
            // Brokers not heard from in this term count from its start: a session of grace.
            let (_, since, seen) = &*g;
            image
                .live_brokers()
                .filter(|b| {
                    let last = seen.get(&b.id).copied().unwrap_or(*since);
                    now.duration_since(last) > self.settings.session_timeout
                })
                .map(|b| b.id)
                .collect()
        };
        for id in expired {
            tracing::warn!(
                broker = id,
                "no heartbeat within broker.session.timeout.ms: fenced"
            );
            let _ = self.write(MetadataRecord::FenceBroker { id }).await;
        }
        self.elect_unclean(&image).await;
        self.balance_leaders().await;
    }

    /// Offline partitions of topics with `unclean.leader.election.enable=true` get any live
    /// replica as leader (records only the old ISR held are lost, so it is logged loudly).
    async fn elect_unclean(&self, image: &MetadataImage) {
        let unclean = image.topics.values().filter(|t| {
            t.config
                .accepted
                .get("unclean.leader.election.enable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        });
        let mut elections = Vec::new();
        for t in unclean {
            for (p, reg) in t.partitions.iter().enumerate() {
                if reg.leader == PartitionRegistration::NO_LEADER {
                    if let Ok(record) = election(image, &t.name, p as i32, reg, true) {
                        elections.push(record);
                    }
                }
            }
        }
        if !elections.is_empty() {
            let _ = self.write_batch(elections).await;
        }
    }

    /// The automatic leader rebalance (`auto.leader.rebalance.enable`): every
    /// `leader.imbalance.check.interval.seconds`, each partition whose preferred replica is
    /// alive, in sync and not leading gets it back as leader.
    async fn balance_leaders(&self) {
        let Some(every) = self.settings.leader_imbalance_check else {
            return;
        };
        {
            let mut last = self.last_balance.lock().unwrap_or_else(|p| p.into_inner());
            if last.elapsed() < every {
                return;
            }
            *last = Instant::now();
        }
        let image = self.image.borrow().clone();
        let records: Vec<MetadataRecord> = image
            .topics
            .values()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .enumerate()
                    .filter_map(|(p, reg)| election(&image, &t.name, p as i32, reg, false).ok())
            })
            .collect();
        if !records.is_empty() {
            tracing::info!(
                partitions = records.len(),
                "leader rebalance: preferred replicas lead again"
            );
        }
        if !records.is_empty() {
            let _ = self.write_batch(records).await;
        }
    }

    /// ElectLeaders: one election per partition asked (every partition when `None`, then
    /// answering only those an election was needed for, as Kafka does).
    async fn elect_leaders(
        &self,
        image: &MetadataImage,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> ControllerReply {
        let all = partitions.is_none();
        let asked = partitions.unwrap_or_else(|| {
            image
                .topics
                .values()
                .flat_map(|t| (0..t.partition_count()).map(|p| (t.name.clone(), p)))
                .collect()
        });
        // Every election of the request commits in one entry of the metadata log.
        let mut outcomes = Vec::with_capacity(asked.len());
        let mut records = Vec::new();
        for (topic, partition) in asked {
            let outcome = match image.partition(&topic, partition) {
                None => Err(TopicError::Unknown(topic.clone())),
                Some(reg) => election(image, &topic, partition, reg, unclean).map(|record| {
                    records.push(record);
                    records.len() - 1
                }),
            };
            if all && matches!(outcome, Err(TopicError::ElectionNotNeeded)) {
                continue;
            }
            outcomes.push((topic, partition, outcome));
        }
        let (mut written, offset) = if records.is_empty() {
            (Vec::new(), image.offset)
        } else {
            match self.write_batch(records).await {
                Ok(x) => x,
                Err(reply) => return reply,
            }
        };
        let results = outcomes
            .into_iter()
            .map(|(topic, partition, outcome)| {
                let error = match outcome {
                    Ok(i) => written
                        .get_mut(i)
                        .and_then(|w| std::mem::replace(w, Ok(())).err()),
                    Err(e) => Some(e),
                };
                (topic, partition, error)
            })
            .collect();
        ControllerReply::Elections { results, offset }
    }
}

/// The record electing a leader for one partition, or why there is none to elect. Preferred:
/// the first replica, if it is alive and in sync and not leading already. Unclean: only for a
/// partition without a leader, a live ISR member if there is one, else any live replica (then
/// the records only the old ISR held are lost, which is logged loudly).
fn election(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    reg: &PartitionRegistration,
    unclean: bool,
) -> Result<MetadataRecord, TopicError> {
    let live = |r: &&i32| image.live_broker(**r).is_some();
    let clean = |leader: i32| MetadataRecord::ElectLeader {
        topic: topic.to_string(),
        partition,
        partition_epoch: reg.partition_epoch,
        leader,
    };
    if unclean {
        if reg.leader != PartitionRegistration::NO_LEADER {
            return Err(TopicError::ElectionNotNeeded);
        }
        if let Some(r) = reg.isr.iter().find(live) {
            return Ok(clean(*r));
        }
        let Some(leader) = reg.replicas.iter().find(live).copied() else {
            return Err(TopicError::EligibleLeadersNotAvailable(format!(
                "No replica of {topic}-{partition} is alive to lead it."
            )));
        };
        tracing::error!(%topic, partition, leader, lost_isr = ?reg.isr, "UNCLEAN leader election: records only the old ISR held are lost");
        return Ok(MetadataRecord::UncleanLeader {
            topic: topic.to_string(),
            partition,
            leader,
        });
    }
    let preferred = reg
        .replicas
        .first()
        .copied()
        .unwrap_or(PartitionRegistration::NO_LEADER);
    if reg.leader == preferred {
        return Err(TopicError::ElectionNotNeeded);
    }
    if !reg.isr.contains(&preferred) || image.live_broker(preferred).is_none() {
        return Err(TopicError::PreferredLeaderNotAvailable(format!(
            "Failed to elect leader for partition {topic}-{partition}: preferred replica {preferred} is not alive and in sync."
        )));
    }
    Ok(clean(preferred))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_leaders_and_replicas_evenly() {
        let live: Vec<(i32, Option<String>)> = (1..=3).map(|i| (i, None)).collect();
        let p = place(&live, 12, 3, 0);
        for b in 1..=3 {
            assert_eq!(p.iter().filter(|r| r[0] == b).count(), 4, "leaders of {b}");
            assert_eq!(p.iter().filter(|r| r.contains(&b)).count(), 12);
        }
        assert!(p.iter().all(|r| {
            let mut s = r.clone();
            s.sort_unstable();
            s.dedup();
            s.len() == 3
        }));
    }

    #[test]
    fn placement_spans_racks() {
        let live = vec![
            (1, Some("a".to_string())),
            (2, Some("a".to_string())),
            (3, Some("b".to_string())),
            (4, Some("b".to_string())),
        ];
        let rack = |id: i32| if id <= 2 { "a" } else { "b" };
        for replicas in place(&live, 8, 2, 0) {
            assert_ne!(rack(replicas[0]), rack(replicas[1]), "{replicas:?}");
        }
    }
}
