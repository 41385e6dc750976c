//! The group coordinator (Kafka's GroupCoordinator + GroupMetadataManager for classic groups):
//! every group of this broker, their committed offsets, persistence in `__consumer_offsets`,
//! the replay at start-up, the timers and offset expiry. The topic is compacted by the log
//! cleaner like any `cleanup.policy=compact` topic.
//!
//! Owns group state and the order of writes to the offsets topic. Never sees the wire: the
//! broker's handlers translate requests into these calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use dashmap::DashMap;

use super::classic_group::{Answer, CommittedOffset, Group, GroupState, JoinRequest, SyncRequest};
use super::error::GroupError;
use super::member::{JoinResult, Member, SyncResult};
use super::store::{self, Entry, StoredGroup, StoredMember};
use super::GroupConfig;
use crate::log::{LogError, PartitionLog};

/// A group as ListGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// What metrics show of a group coordinated here.
#[derive(Debug, Clone)]
pub struct GroupStats {
    pub id: String,
    pub state: GroupState,
    pub members: usize,
    pub generation: i32,
    /// Committed offsets: (topic, partition, offset).
    pub offsets: Vec<(String, i32, i64)>,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: bytes::Bytes,
    pub assignment: bytes::Bytes,
}

pub struct GroupCoordinator {
    config: GroupConfig,
    groups: DashMap<String, Arc<Mutex<Group>>>,
    /// Groups with members or pending member ids: the only ones the timers need to visit.
    active: DashMap<String, Arc<Mutex<Group>>>,
    /// The partitions of `__consumer_offsets` once the topic exists: Some for those this broker
    /// leads (replayed; their groups are coordinated here), None for the rest.
    logs: RwLock<Option<Vec<Option<Arc<PartitionLog>>>>>,
    last_expiry_ms: AtomicI64,
}

fn lock(g: &Mutex<Group>) -> MutexGuard<'_, Group> {
    g.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> Self {
        Self {
            config,
            groups: DashMap::new(),
            active: DashMap::new(),
            logs: RwLock::new(None),
            last_expiry_ms: AtomicI64::new(crate::log::LogManager::now_ms()),
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn is_loaded(&self) -> bool {
        self.read_logs().is_some()
    }

    fn read_logs(&self) -> std::sync::RwLockReadGuard<'_, Option<Vec<Option<Arc<PartitionLog>>>>> {
        self.logs.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Which offsets-topic partitions are coordinated here.
    pub fn led_partitions(&self) -> Vec<bool> {
        self.read_logs()
            .as_ref()
            .map(|l| l.iter().map(Option::is_some).collect())
            .unwrap_or_default()
    }

    /// Follows which offsets-topic partitions this broker leads (`logs[p]` is Some for those):
    /// a partition newly led is replayed and its groups served from here; one no longer led has
    /// its groups dropped (their members are told NOT_COORDINATOR and find the new one).
    pub fn load(&self, logs: Vec<Option<Arc<PartitionLog>>>, now: i64) -> Result<(), LogError> {
        let before = self.led_partitions();
        let led_before = |p: usize| before.get(p).copied().unwrap_or(false);
        let count = logs.len() as i32;
        let dropped: Vec<i32> = (0..logs.len())
            .filter(|p| led_before(*p) && logs[*p].is_none())
            .map(|p| p as i32)
            .collect();
        if !dropped.is_empty() {
            for group in self.all() {
                let mut g = lock(&group);
                if dropped.contains(&store::partition_for(&g.id, count)) {
                    g.abort_waiters(GroupError::NotCoordinator);
                    self.groups.remove(&g.id);
                    self.active.remove(&g.id);
                }
            }
        }
        let newly: Vec<Arc<PartitionLog>> = logs
            .iter()
            .enumerate()
            .filter(|(p, l)| l.is_some() && !led_before(*p))
            .filter_map(|(_, l)| l.clone())
            .collect();
        self.replay(&newly, now)?;
        *self.logs.write().unwrap_or_else(|p| p.into_inner()) = Some(logs);
        Ok(())
    }

    /// Replays offsets-topic partitions into groups.
    fn replay(&self, logs: &[Arc<PartitionLog>], now: i64) -> Result<(), LogError> {
        let mut offsets: HashMap<String, HashMap<(String, i32), CommittedOffset>> = HashMap::new();
        let mut metadata: HashMap<String, StoredGroup> = HashMap::new();
        let mut records = 0usize;
        for log in logs {
            for entry in store::replay(log)? {
                records += 1;
                match entry {
                    Entry::Offset {
                        group,
                        topic,
                        partition,
                        value,
                    } => {
                        let map = offsets.entry(group).or_default();
                        match value {
                            Some(v) => map.insert((topic, partition), v),
                            None => map.remove(&(topic, partition)),
                        };
                    }
                    Entry::Group { group, value } => match value {
                        Some(v) => {
                            metadata.insert(group, v);
                        }
                        None => {
                            metadata.remove(&group);
                        }
                    },
                }
            }
        }
        let mut ids: Vec<String> = offsets
            .iter()
            .filter(|(_, o)| !o.is_empty())
            .map(|(g, _)| g.clone())
            .collect();
        ids.extend(metadata.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in &ids {
            let mut g = Group::new(id, now);
            if let Some(m) = metadata.remove(id) {
                g.generation = m.generation;
                g.protocol_type = Some(m.protocol_type.clone()).filter(|t| !t.is_empty());
                g.protocol = m.protocol.clone();
                g.leader = m.leader.clone();
                let members = m
                    .members
                    .into_iter()
                    .map(|sm| restored_member(sm, &m.protocol_type, m.protocol.as_deref()))
                    .collect();
                g.restore(members, now);
                g.state_since_ms = m.state_timestamp.max(0).min(now);
            }
            g.offsets = offsets.remove(id).unwrap_or_default();
            let has_members = !g.is_empty();
            let g = Arc::new(Mutex::new(g));
            if has_members {
                self.active.insert(id.clone(), g.clone());
            }
            self.groups.insert(id.clone(), g);
        }
        if !logs.is_empty() {
            tracing::info!(
                partitions = logs.len(),
                groups = ids.len(),
                records,
                "group coordinator loaded"
            );
        }
        Ok(())
    }

    fn log_for(&self, group: &str) -> Result<Arc<PartitionLog>, GroupError> {
        let guard = self.read_logs();
        let logs = guard.as_ref().ok_or(GroupError::CoordinatorNotAvailable)?;
        let p = store::partition_for(group, logs.len() as i32);
        logs.get(p as usize)
            .and_then(Option::clone)
            .ok_or(GroupError::NotCoordinator)
    }

    fn write(&self, group: &str, entries: &[Entry], now: i64) -> Result<(), GroupError> {
        if entries.is_empty() {
            return Ok(());
        }
        let log = self.log_for(group)?;
        store::append(&log, entries, now).map_err(|e| {
            tracing::error!(group, error = %e, "writing to the offsets topic failed");
            GroupError::from(e)
        })
    }

    fn get(&self, id: &str) -> Option<Arc<Mutex<Group>>> {
        self.groups.get(id).map(|g| g.value().clone())
    }

    fn get_or_create(&self, id: &str, now: i64) -> Arc<Mutex<Group>> {
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Mutex::new(Group::new(id, now))))
            .value()
            .clone()
    }

    /// Writes the group's metadata when it changed (after a rebalance settles or empties).
    fn persist(&self, g: &mut Group, now: i64) {
        if !g.dirty {
            return;
        }
        g.dirty = false;
        let entry = stored_entry(g);
        // A lost group record costs a rebalance after a restart, never offsets: not fatal.
        let _ = self.write(&g.id, &[entry], now);
    }

    fn check_session_timeout(&self, ms: i32) -> Result<(), GroupError> {
        if ms < self.config.min_session_timeout_ms || ms > self.config.max_session_timeout_ms {
            return Err(GroupError::InvalidSessionTimeout);
        }
        Ok(())
    }

    pub async fn join(&self, group_id: &str, req: JoinRequest) -> Result<JoinResult, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.log_for(group_id)?;
        self.check_session_timeout(req.session_timeout_ms)?;
        let now = crate::log::LogManager::now_ms();
        let group = self.get_or_create(group_id, now);
        let answer = {
            let mut g = lock(&group);
            // Under the group's lock, as the timers' removal is.
            self.active.insert(group_id.to_string(), group.clone());
            let r = g.join(req, &self.config, now);
            self.persist(&mut g, now);
            r?
        };
        match answer {
            Answer::Now(r) => Ok(r),
            Answer::Later(rx) => rx.await.unwrap_or(Err(GroupError::NotCoordinator)),
        }
    }

    pub async fn sync(&self, group_id: &str, req: SyncRequest) -> Result<SyncResult, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let now = crate::log::LogManager::now_ms();
        let answer = {
            let mut g = lock(&group);
            let r = g.sync(req, now);
            self.persist(&mut g, now);
            r?
        };
        match answer {
            Answer::Now(r) => Ok(r),
            Answer::Later(rx) => rx.await.unwrap_or(Err(GroupError::NotCoordinator)),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let now = crate::log::LogManager::now_ms();
        let mut g = lock(&group);
        g.heartbeat(member_id, instance_id, generation, now)
    }

    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let group = self.get(group_id).ok_or(GroupError::UnknownMemberId)?;
        let now = crate::log::LogManager::now_ms();
        let mut g = lock(&group);
        let r = g.leave(members, &self.config, now);
        self.persist(&mut g, now);
        Ok(r)
    }

    /// OffsetCommit for partitions the caller already checked; durable before it returns.
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Result<(), GroupError> {
        self.log_for(group_id)?;
        let now = crate::log::LogManager::now_ms();
        let group = match self.get(group_id) {
            Some(g) => g,
            None if generation < 0 => self.get_or_create(group_id, now),
            None => return Err(GroupError::IllegalGeneration),
        };
        let mut g = lock(&group);
        g.validate_commit(member_id, instance_id, generation, now)?;
        let entries: Vec<Entry> = offsets
            .iter()
            .map(|(t, p, v)| Entry::Offset {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
                value: Some(v.clone()),
            })
            .collect();
        self.write(group_id, &entries, now)?;
        for (t, p, v) in offsets {
            g.offsets.insert((t, p), v);
        }
        Ok(())
    }

    /// Committed offsets of `partitions` (all of the group's when None).
    pub fn committed(
        &self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, GroupError> {
        self.log_for(group_id)?;
        let Some(group) = self.get(group_id) else {
            return Ok(partitions
                .unwrap_or_default()
                .iter()
                .map(|(t, p)| (t.clone(), *p, None))
                .collect());
        };
        let g = lock(&group);
        Ok(match partitions {
            Some(ps) => ps
                .iter()
                .map(|(t, p)| (t.clone(), *p, g.offsets.get(&(t.clone(), *p)).cloned()))
                .collect(),
            None => {
                let mut all: Vec<_> = g
                    .offsets
                    .iter()
                    .map(|((t, p), v)| (t.clone(), *p, Some(v.clone())))
                    .collect();
                all.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                all
            }
        })
    }

    pub fn list(&self) -> Vec<GroupSummary> {
        let mut out: Vec<GroupSummary> = self
            .groups
            .iter()
            .filter_map(|e| {
                let g = lock(e.value());
                let visible = g.state != GroupState::Dead
                    && (!g.is_empty() || !g.offsets.is_empty() || g.generation > 0);
                visible.then(|| GroupSummary {
                    id: g.id.clone(),
                    protocol_type: g.protocol_type.clone().unwrap_or_default(),
                    state: g.state,
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every group coordinated here, sorted by id.
    pub fn stats(&self) -> Vec<GroupStats> {
        let mut out: Vec<GroupStats> = self
            .groups
            .iter()
            .map(|e| {
                let g = lock(e.value());
                let mut offsets: Vec<_> = g
                    .offsets
                    .iter()
                    .map(|((t, p), o)| (t.clone(), *p, o.offset))
                    .collect();
                offsets.sort();
                GroupStats {
                    id: g.id.clone(),
                    state: g.state,
                    members: g.members.len(),
                    generation: g.generation,
                    offsets,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// None when the group does not exist.
    pub fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.get(group_id)?;
        let g = lock(&group);
        if g.state == GroupState::Dead {
            return None;
        }
        let protocol = g.protocol.clone().unwrap_or_default();
        let mut members: Vec<&Member> = g.members.values().collect();
        members.sort_by_key(|m| m.joined_seq);
        // As Kafka: metadata and assignments only once the group has settled.
        let settled = g.state == GroupState::Stable;
        Some(GroupDescription {
            id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: if settled {
                protocol.clone()
            } else {
                String::new()
            },
            members: members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if settled {
                        m.metadata_for(&protocol)
                    } else {
                        bytes::Bytes::new()
                    },
                    assignment: if settled {
                        m.assignment.clone()
                    } else {
                        bytes::Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups: only groups without members; their offsets go with them.
    pub fn delete(&self, group_id: &str) -> Result<(), GroupError> {
        self.log_for(group_id)?;
        let group = self.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let now = crate::log::LogManager::now_ms();
        let mut g = lock(&group);
        match g.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        let mut entries: Vec<Entry> = g
            .offsets
            .keys()
            .map(|(t, p)| Entry::Offset {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        entries.push(Entry::Group {
            group: group_id.to_string(),
            value: None,
        });
        self.write(group_id, &entries, now)?;
        g.offsets.clear();
        g.state = GroupState::Dead;
        drop(g);
        self.groups.remove(group_id);
        Ok(())
    }

    /// OffsetDelete: per partition, GROUP_SUBSCRIBED_TO_TOPIC while a member consumes it.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<Result<(), GroupError>>, GroupError> {
        self.log_for(group_id)?;
        let group = self.get(group_id).ok_or(GroupError::GroupIdNotFound)?;
        let now = crate::log::LogManager::now_ms();
        let mut g = lock(&group);
        if g.state == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound);
        }
        if !g.is_empty() && g.protocol_type.as_deref() != Some("consumer") {
            return Err(GroupError::NonEmptyGroup);
        }
        let subscribed = g.subscribed_topics().unwrap_or_default();
        let mut results = Vec::with_capacity(partitions.len());
        let mut doomed = Vec::new();
        for (t, p) in partitions {
            if subscribed.contains(t) {
                results.push(Err(GroupError::GroupSubscribedToTopic));
            } else {
                results.push(Ok(()));
                if g.offsets.contains_key(&(t.clone(), *p)) {
                    doomed.push((t.clone(), *p));
                }
            }
        }
        let entries: Vec<Entry> = doomed
            .iter()
            .map(|(t, p)| Entry::Offset {
                group: group_id.to_string(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        self.write(group_id, &entries, now)?;
        for k in doomed {
            g.offsets.remove(&k);
        }
        Ok(results)
    }

    /// A deleted topic's committed offsets go with it (Kafka does the same).
    pub fn forget_topic(&self, topic: &str) {
        let now = crate::log::LogManager::now_ms();
        for group in self.all() {
            let mut g = lock(&group);
            let keys: Vec<(String, i32)> = g
                .offsets
                .keys()
                .filter(|(t, _)| t == topic)
                .cloned()
                .collect();
            let entries: Vec<Entry> = keys
                .iter()
                .map(|(t, p)| Entry::Offset {
                    group: g.id.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: None,
                })
                .collect();
            if self.write(&g.id.clone(), &entries, now).is_ok() {
                for k in keys {
                    g.offsets.remove(&k);
                }
            }
        }
    }

    fn all(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups.iter().map(|e| e.value().clone()).collect()
    }

    /// Timers of the groups with members; offset expiry at its interval.
    pub fn tick(&self, now: i64) {
        let active: Vec<(String, Arc<Mutex<Group>>)> = self
            .active
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (id, group) in active {
            let mut g = lock(&group);
            g.tick(&self.config, now);
            self.persist(&mut g, now);
            if g.is_empty() && g.pending_is_empty() {
                // Under the group's lock: a join re-inserts it under the same lock.
                self.active.remove(&id);
            }
        }
        let last = self.last_expiry_ms.load(Ordering::Acquire);
        if now - last >= self.config.offsets_retention_check_interval_ms {
            self.last_expiry_ms.store(now, Ordering::Release);
            self.expire_offsets(now);
        }
    }

    /// `offsets.retention.minutes`: offsets of groups that have been empty that long (or, for
    /// groups that never had members, not committed to for that long), and of topics a stable
    /// consumer group no longer subscribes to. Groups left with nothing are removed.
    pub fn expire_offsets(&self, now: i64) {
        let retention = self.config.offsets_retention_ms;
        for group in self.all() {
            let mut g = lock(&group);
            let subscribed = g.subscribed_topics();
            let (empty, since, simple) =
                (g.is_empty(), g.state_since_ms, g.protocol_type.is_none());
            let expired: Vec<(String, i32)> = g
                .offsets
                .iter()
                .filter(|((t, _), v)| {
                    if g.state == GroupState::Empty {
                        let base = if simple { v.commit_timestamp } else { since };
                        now - base >= retention
                    } else {
                        subscribed.as_ref().is_some_and(|s| {
                            !s.contains(t) && now - v.commit_timestamp >= retention
                        })
                    }
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut entries: Vec<Entry> = expired
                .iter()
                .map(|(t, p)| Entry::Offset {
                    group: g.id.clone(),
                    topic: t.clone(),
                    partition: *p,
                    value: None,
                })
                .collect();
            let remove_group =
                empty && g.state == GroupState::Empty && g.offsets.len() == expired.len();
            if remove_group && g.generation > 0 {
                entries.push(Entry::Group {
                    group: g.id.clone(),
                    value: None,
                });
            }
            let id = g.id.clone();
            if self.write(&id, &entries, now).is_err() {
                continue;
            }
            if !expired.is_empty() {
                tracing::info!(group = %id, offsets = expired.len(), "committed offsets expired");
            }
            for k in expired {
                g.offsets.remove(&k);
            }
            if remove_group && g.pending_is_empty() {
                g.state = GroupState::Dead;
                drop(g);
                self.groups.remove(&id);
            }
        }
    }

    /// Shutdown: waiting JoinGroup/SyncGroup calls are told to find the coordinator again.
    pub fn shutdown(&self) {
        for group in self.all() {
            lock(&group).abort_waiters(GroupError::NotCoordinator);
        }
    }
}

fn stored_entry(g: &Group) -> Entry {
    let protocol = g.protocol.clone();
    Entry::Group {
        group: g.id.clone(),
        value: Some(StoredGroup {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            protocol: protocol.clone(),
            leader: g.leader.clone(),
            state_timestamp: g.state_since_ms,
            members: g
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(protocol.as_deref().unwrap_or_default()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }),
    }
}

fn restored_member(sm: StoredMember, protocol_type: &str, protocol: Option<&str>) -> Member {
    Member {
        id: sm.member_id,
        instance_id: sm.instance_id,
        client_id: sm.client_id,
        client_host: sm.client_host,
        session_timeout_ms: sm.session_timeout_ms,
        rebalance_timeout_ms: sm.rebalance_timeout_ms,
        protocol_type: protocol_type.to_string(),
        protocols: vec![(protocol.unwrap_or_default().to_string(), sm.subscription)],
        assignment: sm.assignment,
        deadline_ms: 0,
        awaiting_join: None,
        awaiting_sync: None,
        supports_skip_assignment: false,
        joined_seq: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::cleaner::{CleanerConfig, LogCleaner};
    use crate::log::{LogConfig, LogManager};

    const PARTITIONS: i32 = 3;

    fn offsets_logs(
        dir: &std::path::Path,
        segment_bytes: u64,
    ) -> (LogManager, Vec<Arc<PartitionLog>>) {
        let config = LogConfig {
            segment_bytes,
            cleanup_policy: "compact".into(),
            ..LogConfig::default()
        };
        let c = config.clone();
        let (logs, _) = LogManager::open(dir, 64, move |_| c.clone()).expect("open");
        let parts = (0..PARTITIONS)
            .map(|p| {
                logs.get_or_create(store::OFFSETS_TOPIC, p, config.clone())
                    .expect("log")
            })
            .collect();
        (logs, parts)
    }

    fn coordinator(
        dir: &std::path::Path,
        segment_bytes: u64,
        now: i64,
    ) -> (LogManager, GroupCoordinator) {
        let (logs, parts) = offsets_logs(dir, segment_bytes);
        let c = GroupCoordinator::new(GroupConfig {
            offsets_retention_ms: 1_000,
            ..GroupConfig::default()
        });
        c.load(parts.into_iter().map(Some).collect(), now)
            .expect("load");
        (logs, c)
    }

    fn offset(o: i64, ts: i64) -> CommittedOffset {
        CommittedOffset {
            offset: o,
            leader_epoch: 0,
            metadata: format!("m{o}"),
            commit_timestamp: ts,
        }
    }

    fn committed(c: &GroupCoordinator, g: &str) -> Vec<(String, i32, i64, String)> {
        c.committed(g, None)
            .expect("committed")
            .into_iter()
            .filter_map(|(t, p, v)| v.map(|v| (t, p, v.offset, v.metadata)))
            .collect()
    }

    #[test]
    fn commits_survive_a_reload_and_deleted_groups_stay_deleted() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (_logs, c) = coordinator(dir.path(), 1 << 20, 0);
            c.commit("g1", "", None, -1, vec![("t".into(), 0, offset(5, 0))])
                .expect("commit");
            c.commit("g1", "", None, -1, vec![("t".into(), 0, offset(9, 0))])
                .expect("commit");
            c.commit("g2", "", None, -1, vec![("t".into(), 1, offset(3, 0))])
                .expect("commit");
            c.commit("gone", "", None, -1, vec![("t".into(), 1, offset(1, 0))])
                .expect("commit");
            c.delete("gone").expect("delete");
            assert!(matches!(c.delete("gone"), Err(GroupError::GroupIdNotFound)));
            assert!(matches!(
                c.commit("g1", "someone", None, 4, vec![]),
                Err(GroupError::UnknownMemberId)
            ));
        }
        let (_logs, c) = coordinator(dir.path(), 1 << 20, 0);
        assert_eq!(committed(&c, "g1"), vec![("t".into(), 0, 9, "m9".into())]);
        assert_eq!(committed(&c, "g2"), vec![("t".into(), 1, 3, "m3".into())]);
        assert!(committed(&c, "gone").is_empty());
        let ids: Vec<String> = c.list().into_iter().map(|g| g.id).collect();
        assert_eq!(ids, ["g1", "g2"]);
    }

    #[test]
    fn groups_follow_the_leadership_of_their_offsets_partition() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_logs, parts) = offsets_logs(dir.path(), 1 << 20);
        let c = GroupCoordinator::new(GroupConfig::default());
        let all: Vec<Option<Arc<PartitionLog>>> = parts.into_iter().map(Some).collect();
        c.load(all.clone(), 0).expect("load");
        c.commit("g1", "", None, -1, vec![("t".into(), 0, offset(7, 0))])
            .expect("commit");
        let p = store::partition_for("g1", all.len() as i32) as usize;
        // Another broker leads the group's partition now: not coordinated here.
        let mut without = all.clone();
        without[p] = None;
        c.load(without, 0).expect("unload");
        assert!(c.list().iter().all(|g| g.id != "g1"));
        assert!(matches!(
            c.commit("g1", "", None, -1, vec![]),
            Err(GroupError::NotCoordinator)
        ));
        // Back here: replayed from the log, the commit is there.
        c.load(all, 0).expect("reload");
        assert_eq!(committed(&c, "g1"), vec![("t".into(), 0, 7, "m7".into())]);
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_the_retention() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (_logs, c) = coordinator(dir.path(), 1 << 20, 0);
            c.commit("old", "", None, -1, vec![("t".into(), 0, offset(5, 0))])
                .expect("commit");
            c.commit("new", "", None, -1, vec![("t".into(), 0, offset(6, 900))])
                .expect("commit");
            c.expire_offsets(999);
            assert_eq!(committed(&c, "old").len(), 1, "not yet");
            c.expire_offsets(1_000);
            assert!(committed(&c, "old").is_empty());
            assert_eq!(committed(&c, "new").len(), 1);
            assert!(
                c.describe("old").is_none(),
                "a group left with nothing is gone"
            );
        }
        let (_logs, c) = coordinator(dir.path(), 1 << 20, 1_000);
        assert!(committed(&c, "old").is_empty(), "expiry is durable");
        assert_eq!(committed(&c, "new").len(), 1);
    }

    #[test]
    fn the_log_cleaner_keeps_the_latest_state_and_bounds_the_log() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let (logs, c) = coordinator(dir.path(), 4096, 0);
            let cleaner = LogCleaner::new(Arc::new(logs), CleanerConfig::default());
            let clean = || {
                for _ in 0..100 {
                    match cleaner.clean_filthiest(0) {
                        Some(r) => {
                            r.expect("clean");
                        }
                        None => return,
                    }
                }
                panic!("the cleaner never ran out of work");
            };
            for round in 0..400i64 {
                for g in ["a", "b", "c", "d"] {
                    let v = vec![("t".into(), (round % 2) as i32, offset(round, 0))];
                    c.commit(g, "", None, -1, v).expect("commit");
                }
                clean();
            }
            c.delete("d").expect("delete");
            clean();
            for log in c.read_logs().clone().expect("loaded").iter().flatten() {
                assert!(
                    log.segment_count() <= 3,
                    "segments: {}",
                    log.segment_count()
                );
                assert!(log.size() < 3 * 4096, "size: {}", log.size());
            }
        }
        let (_logs, c) = coordinator(dir.path(), 4096, 0);
        for g in ["a", "b", "c"] {
            assert_eq!(
                committed(&c, g),
                vec![
                    ("t".into(), 0, 398, "m398".into()),
                    ("t".into(), 1, 399, "m399".into())
                ],
                "{g}"
            );
        }
        assert!(committed(&c, "d").is_empty());
    }
}
