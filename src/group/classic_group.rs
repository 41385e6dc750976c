//! One classic group's state machine (Kafka's ClassicGroup): members, generations, protocol
//! selection, the join and sync phases with their deadlines, static membership, and the
//! group's committed offsets.
//!
//! Pure logic over a clock passed in (`now` in ms): it never does I/O. The coordinator persists
//! what changes and runs `tick` on a timer.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::GroupError;
use super::member::{JoinResult, JoinedMember, Member, SyncResult};
use super::GroupConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// What a JoinGroup asks for.
#[derive(Debug, Clone, Default)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: an unknown member first gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// JoinGroup v9+ (KIP-814).
    pub supports_skip_assignment: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

/// An answer now, or one the caller awaits (it comes when the phase completes).
pub enum Answer<T> {
    Now(T),
    Later(oneshot::Receiver<Result<T, GroupError>>),
}

/// The first join into an empty group waits `group.initial.rebalance.delay.ms`, and again (up
/// to the rebalance timeout) while new members keep arriving, so a starting fleet of consumers
/// lands in one rebalance.
#[derive(Debug, Clone, Copy)]
struct InitialDelay {
    delay_ms: i64,
    remaining_ms: i64,
    new_members: bool,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub state_since_ms: i64,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: HashMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or time out.
    pending: HashMap<String, i64>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    join_deadline_ms: i64,
    initial_delay: Option<InitialDelay>,
    /// Members of the new generation that have not sent SyncGroup yet, and until when they may.
    pending_sync: HashSet<String>,
    sync_deadline_ms: i64,
    pub offsets: HashMap<(String, i32), CommittedOffset>,
    next_seq: u64,
    /// The group's metadata changed in a way that must be persisted.
    pub dirty: bool,
}

impl Group {
    pub fn new(id: &str, now: i64) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            state_since_ms: now,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: HashMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            join_deadline_ms: 0,
            initial_delay: None,
            pending_sync: HashSet::new(),
            sync_deadline_ms: 0,
            offsets: HashMap::new(),
            next_seq: 0,
            dirty: false,
        }
    }

    /// A group read back from the offsets log: Stable with its members if it had any.
    pub fn restore(&mut self, members: Vec<Member>, now: i64) {
        self.members.clear();
        self.static_members.clear();
        for mut m in members {
            m.deadline_ms = now + i64::from(m.session_timeout_ms);
            m.joined_seq = self.next_seq;
            self.next_seq += 1;
            if let Some(iid) = &m.instance_id {
                self.static_members.insert(iid.clone(), m.id.clone());
            }
            self.members.insert(m.id.clone(), m);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.state_since_ms = now;
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn pending_is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's supportsProtocols: an empty group takes any non-empty protocol list; otherwise
    /// the type must match and one of the protocols must be supported by every member.
    fn supports(&self, req: &JoinRequest) -> bool {
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(req.protocol_type.as_str())
            && req.protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|iid| {
            self.static_members
                .get(iid)
                .is_some_and(|id| id != member_id)
        })
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if self.fenced(member_id, instance_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    pub fn join(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Result<Answer<JoinResult>, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if !self.supports(&req) {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_unknown(req, config, now)
        } else {
            self.join_known(req, config, now)
        }
    }

    fn join_unknown(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Result<Answer<JoinResult>, GroupError> {
        let prefix = req.instance_id.as_deref().unwrap_or(&req.client_id);
        let new_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
        if let Some(old_id) = req
            .instance_id
            .as_ref()
            .and_then(|iid| self.static_members.get(iid))
            .cloned()
        {
            return self.replace_static_member(&old_id, new_id, req, config, now);
        }
        if self.members.len() + self.pending.len() >= config.max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        if req.instance_id.is_none() && req.require_known_member_id {
            self.pending
                .insert(new_id.clone(), now + i64::from(req.session_timeout_ms));
            return Err(GroupError::MemberIdRequired(new_id));
        }
        Ok(self.add_member_and_rebalance(new_id, req, config, now))
    }

    fn join_known(
        &mut self,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Result<Answer<JoinResult>, GroupError> {
        let id = req.member_id.clone();
        if self.pending.remove(&id).is_some() {
            return Ok(self.add_member_and_rebalance(id, req, config, now));
        }
        self.check_member(&id, req.instance_id.as_deref())?;
        let same = self
            .members
            .get(&id)
            .is_some_and(|m| m.same_protocols(&req.protocols));
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                let rx = self.update_member(&id, req, now);
                self.try_complete_join(now);
                Ok(Answer::Later(rx))
            }
            GroupState::CompletingRebalance if same => {
                Ok(Answer::Now(self.join_result(&id, false)))
            }
            GroupState::Stable if same && !is_leader => {
                Ok(Answer::Now(self.join_result(&id, false)))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                Ok(self.rejoin_and_rebalance(&id, req, config, now))
            }
        }
    }

    /// KIP-345: a static member coming back with an unknown member id takes over its old
    /// identity; the old member id is fenced. A stable group with unchanged protocols does
    /// not rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Result<Answer<JoinResult>, GroupError> {
        let Some(mut member) = self.members.remove(old_id) else {
            return Ok(self.add_member_and_rebalance(new_id, req, config, now));
        };
        member.reply_join(Err(GroupError::FencedInstanceId));
        member.reply_sync(Err(GroupError::FencedInstanceId));
        let same = member.same_protocols(&req.protocols);
        member.id = new_id.clone();
        if let Some(iid) = &member.instance_id {
            self.static_members.insert(iid.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        match self.state {
            GroupState::Stable if same => {
                let m = self
                    .members
                    .get_mut(&new_id)
                    .ok_or(GroupError::UnknownMemberId)?;
                m.deadline_ms = now + i64::from(req.session_timeout_ms);
                m.client_id = req.client_id;
                m.client_host = req.client_host;
                m.supports_skip_assignment = req.supports_skip_assignment;
                self.dirty = true;
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                Ok(Answer::Now(self.join_result(&new_id, is_leader)))
            }
            GroupState::PreparingRebalance => {
                let rx = self.update_member(&new_id, req, now);
                self.try_complete_join(now);
                Ok(Answer::Later(rx))
            }
            _ => Ok(self.rejoin_and_rebalance(&new_id, req, config, now)),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        id: String,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Answer<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(iid) = &req.instance_id {
            self.static_members.insert(iid.clone(), id.clone());
        }
        if self.protocol_type.is_none() || self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let member = Member {
            id: id.clone(),
            instance_id: req.instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            deadline_ms: now + i64::from(req.session_timeout_ms),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            supports_skip_assignment: req.supports_skip_assignment,
            joined_seq: self.next_seq,
        };
        self.next_seq += 1;
        self.members.insert(id, member);
        if let Some(d) = self.initial_delay.as_mut() {
            d.new_members = true;
        }
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(config, now);
        }
        self.try_complete_join(now);
        Answer::Later(rx)
    }

    fn update_member(
        &mut self,
        id: &str,
        req: JoinRequest,
        now: i64,
    ) -> oneshot::Receiver<Result<JoinResult, GroupError>> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(id) {
            // A second JoinGroup replaces the first one's wait.
            m.reply_join(Err(GroupError::RebalanceInProgress));
            m.protocols = req.protocols;
            m.protocol_type = req.protocol_type;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.client_id = req.client_id;
            m.client_host = req.client_host;
            m.supports_skip_assignment = req.supports_skip_assignment;
            m.deadline_ms = now + i64::from(req.session_timeout_ms);
            m.awaiting_join = Some(tx);
        }
        rx
    }

    /// A member's new protocols (or a leader's rejoin) start a rebalance it waits in.
    fn rejoin_and_rebalance(
        &mut self,
        id: &str,
        req: JoinRequest,
        config: &GroupConfig,
        now: i64,
    ) -> Answer<JoinResult> {
        let rx = self.update_member(id, req, now);
        self.prepare_rebalance(config, now);
        self.try_complete_join(now);
        Answer::Later(rx)
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now: i64) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                m.reply_sync(Err(GroupError::RebalanceInProgress));
            }
        }
        self.pending_sync.clear();
        let timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = config.initial_rebalance_delay_ms.min(timeout.max(0));
            self.initial_delay = Some(InitialDelay {
                delay_ms: delay,
                remaining_ms: (timeout - delay).max(0),
                new_members: false,
            });
            self.join_deadline_ms = now + delay;
        } else {
            self.initial_delay = None;
            self.join_deadline_ms = now + timeout;
        }
        self.set_state(GroupState::PreparingRebalance, now);
    }

    fn set_state(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_since_ms = now;
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Ends the join phase when every member has rejoined, or at its deadline.
    fn try_complete_join(&mut self, now: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if let Some(d) = self.initial_delay {
            if now < self.join_deadline_ms {
                return;
            }
            if d.new_members && d.remaining_ms > 0 {
                let extra = d.delay_ms.min(d.remaining_ms);
                self.join_deadline_ms = now + extra;
                self.initial_delay = Some(InitialDelay {
                    delay_ms: d.delay_ms,
                    remaining_ms: d.remaining_ms - extra,
                    new_members: false,
                });
                if extra > 0 {
                    return;
                }
            }
        } else if !(self.all_joined() || now >= self.join_deadline_ms) {
            return;
        }
        self.complete_join(now);
    }

    fn complete_join(&mut self, now: i64) {
        self.initial_delay = None;
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.generation = self.generation.wrapping_add(1);
        self.dirty = true;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), "group rebalanced");
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now);
            return;
        }
        self.protocol = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|m| m.joined_seq)
                .map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now);
        self.sync_deadline_ms = now + self.max_rebalance_timeout();
        self.pending_sync = self.members.keys().cloned().collect();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result(&id, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                m.reply_join(Ok(result));
            }
        }
    }

    /// Every member votes for its most preferred protocol among those all members support;
    /// most votes wins, ties going to the longest-standing member's preference.
    fn select_protocol(&self) -> Option<String> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.joined_seq);
        let first = members.first()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(x, _)| x == *n))
            })
            .collect();
        let votes = |name: &String| {
            members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(name)
                })
                .count()
        };
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let v = votes(c);
            if best.is_none_or(|(_, bv)| v > bv) {
                best = Some((c, v));
            }
        }
        best.map(|(n, _)| n.clone())
    }

    fn join_result(&self, id: &str, skip_assignment: bool) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            let mut ms: Vec<&Member> = self.members.values().collect();
            ms.sort_by_key(|m| m.joined_seq);
            ms.into_iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            member_id: id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            skip_assignment: skip_assignment
                && self
                    .members
                    .get(id)
                    .is_some_and(|m| m.supports_skip_assignment),
            members,
        }
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            m.reply_join(Err(GroupError::UnknownMemberId));
            m.reply_sync(Err(GroupError::UnknownMemberId));
            if let Some(iid) = &m.instance_id {
                if self.static_members.get(iid).is_some_and(|x| x == id) {
                    self.static_members.remove(iid);
                }
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// After members left: a settled group rebalances; a joining one may now be complete.
    fn after_departure(&mut self, config: &GroupConfig, now: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(config, now);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub fn sync(&mut self, req: SyncRequest, now: i64) -> Result<Answer<SyncResult>, GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_member(&req.member_id, req.instance_id.as_deref())?;
        if req.generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        let id = req.member_id.clone();
        match self.state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                self.pending_sync.remove(&id);
                let m = self
                    .members
                    .get_mut(&id)
                    .ok_or(GroupError::UnknownMemberId)?;
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                Ok(Answer::Now(SyncResult {
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                }))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                self.pending_sync.remove(&id);
                let m = self
                    .members
                    .get_mut(&id)
                    .ok_or(GroupError::UnknownMemberId)?;
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                m.awaiting_sync = Some(tx);
                if self.leader.as_deref() == Some(id.as_str()) {
                    let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now);
                    self.dirty = true;
                    let (pt, pn) = (self.protocol_type.clone(), self.protocol.clone());
                    for m in self.members.values_mut() {
                        let r = SyncResult {
                            protocol_type: pt.clone(),
                            protocol_name: pn.clone(),
                            assignment: m.assignment.clone(),
                        };
                        m.reply_sync(Ok(r));
                    }
                }
                Ok(Answer::Later(rx))
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_member(member_id, instance_id)?;
        let state = self.state;
        let current = self.generation;
        let m = self
            .members
            .get_mut(member_id)
            .ok_or(GroupError::UnknownMemberId)?;
        match state {
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                Err(GroupError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                if generation != current {
                    return Err(GroupError::IllegalGeneration);
                }
                m.deadline_ms = now + i64::from(m.session_timeout_ms);
                Ok(())
            }
        }
    }

    /// LeaveGroup for each (member id, instance id); one result per entry.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        config: &GroupConfig,
        now: i64,
    ) -> Vec<Result<(), GroupError>> {
        let mut results = Vec::with_capacity(leaving.len());
        let mut left = false;
        for (member_id, instance_id) in leaving {
            let r = match instance_id {
                Some(iid) => match self.static_members.get(iid).cloned() {
                    None => Err(GroupError::UnknownMemberId),
                    Some(id) if !member_id.is_empty() && *member_id != id => {
                        Err(GroupError::FencedInstanceId)
                    }
                    Some(id) => {
                        self.remove_member(&id);
                        left = true;
                        Ok(())
                    }
                },
                None if self.pending.remove(member_id).is_some() => {
                    left = true;
                    Ok(())
                }
                None if self.members.contains_key(member_id) => {
                    self.remove_member(member_id);
                    left = true;
                    Ok(())
                }
                None => Err(GroupError::UnknownMemberId),
            };
            results.push(r);
        }
        if left {
            self.after_departure(config, now);
        }
        results
    }

    /// Timers: expired sessions and pending member ids, the sync deadline, the join deadline.
    pub fn tick(&mut self, config: &GroupConfig, now: i64) {
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        let mut departed = self.pending.len() != before;
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.deadline_ms <= now && !m.awaiting())
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            tracing::info!(group = %self.id, member = %id, "session expired: member removed");
            self.remove_member(id);
            departed = true;
        }
        if self.state == GroupState::CompletingRebalance && now >= self.sync_deadline_ms {
            let late: Vec<String> = self.pending_sync.iter().cloned().collect();
            for id in &late {
                tracing::info!(group = %self.id, member = %id, "no SyncGroup within the rebalance timeout: member removed");
                self.remove_member(id);
            }
            departed |= !late.is_empty();
        }
        if departed {
            self.after_departure(config, now);
        } else {
            self.try_complete_join(now);
        }
    }

    /// OffsetCommit's checks (Kafka's classic group rules).
    pub fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::CompletingRebalance => Err(GroupError::RebalanceInProgress),
            _ => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.deadline_ms = now + i64::from(m.session_timeout_ms);
                }
                Ok(())
            }
        }
    }

    /// Fails every waiting JoinGroup/SyncGroup (the broker is shutting down).
    pub fn abort_waiters(&mut self, e: GroupError) {
        for m in self.members.values_mut() {
            m.reply_join(Err(e.clone()));
            m.reply_sync(Err(e.clone()));
        }
    }

    /// Topics the members subscribed to (consumer protocol), for OffsetDelete and expiry.
    pub fn subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            topics.extend(super::consumer_protocol::subscribed_topics(
                &m.metadata_for(protocol),
            )?);
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(delay: i64) -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay_ms: delay,
            ..GroupConfig::default()
        }
    }

    fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
            supports_skip_assignment: true,
            ..JoinRequest::default()
        }
    }

    fn later<T>(a: Result<Answer<T>, GroupError>) -> oneshot::Receiver<Result<T, GroupError>> {
        match a.expect("accepted") {
            Answer::Later(rx) => rx,
            Answer::Now(_) => panic!("expected to wait"),
        }
    }

    fn accepted<T>(a: Result<Answer<T>, GroupError>) {
        assert!(a.is_ok(), "rejected: {:?}", a.err());
    }

    fn ready<T: std::fmt::Debug>(rx: &mut oneshot::Receiver<Result<T, GroupError>>) -> T {
        rx.try_recv().expect("answered").expect("success")
    }

    /// Joins a dynamic member through the MEMBER_ID_REQUIRED round; returns its pending join.
    fn join_new(
        g: &mut Group,
        c: &GroupConfig,
        protocols: &[&str],
        now: i64,
    ) -> (String, oneshot::Receiver<Result<JoinResult, GroupError>>) {
        let id = match g.join(join_req("", protocols), c, now) {
            Err(GroupError::MemberIdRequired(id)) => id,
            other => panic!("expected MEMBER_ID_REQUIRED, got {:?}", other.err()),
        };
        let rx = later(g.join(join_req(&id, protocols), c, now));
        (id, rx)
    }

    fn sync_req(id: &str, generation: i32, assignments: &[(&str, &str)]) -> SyncRequest {
        SyncRequest {
            member_id: id.to_string(),
            generation,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                .collect(),
            ..SyncRequest::default()
        }
    }

    #[test]
    fn single_member_is_stable_after_the_initial_delay() {
        let c = config(3_000);
        let mut g = Group::new("g", 0);
        let (id, mut rx) = join_new(&mut g, &c, &["range"], 0);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.tick(&c, 2_999);
        assert!(rx.try_recv().is_err(), "answered before the initial delay");
        g.tick(&c, 3_000);
        let r = ready(&mut rx);
        assert_eq!((r.generation, r.leader.as_str()), (1, id.as_str()));
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        let mut s = later(g.sync(sync_req(&id, 1, &[(&id, "a1")]), 3_001));
        assert_eq!(ready(&mut s).assignment, Bytes::from("a1"));
        assert_eq!(g.state, GroupState::Stable);
        assert!(g.heartbeat(&id, None, 1, 3_002).is_ok());
        assert!(matches!(
            g.heartbeat(&id, None, 0, 3_002),
            Err(GroupError::IllegalGeneration)
        ));
        assert!(matches!(
            g.heartbeat("nobody", None, 1, 3_002),
            Err(GroupError::UnknownMemberId)
        ));
    }

    #[test]
    fn new_members_during_the_initial_delay_extend_it_up_to_the_rebalance_timeout() {
        let c = config(1_000);
        let mut g = Group::new("g", 0);
        let (_, mut a) = join_new(&mut g, &c, &["range"], 0);
        let (_, mut b) = join_new(&mut g, &c, &["range"], 900);
        g.tick(&c, 1_000);
        assert!(a.try_recv().is_err(), "a newcomer extends the delay");
        g.tick(&c, 2_000);
        assert_eq!(ready(&mut a).generation, 1);
        assert_eq!(ready(&mut b).generation, 1);
    }

    #[test]
    fn second_member_triggers_a_rebalance_and_everyone_rejoins() {
        let c = config(0);
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, &c, &["range", "roundrobin"], 0);
        assert_eq!(ready(&mut ra).generation, 1);
        accepted(g.sync(sync_req(&a, 1, &[(&a, "all")]), 1));
        // b only speaks roundrobin: the group must switch to it.
        let (b, mut rb) = join_new(&mut g, &c, &["roundrobin"], 10);
        assert_eq!(g.state, GroupState::PreparingRebalance);
        assert!(matches!(
            g.heartbeat(&a, None, 1, 11),
            Err(GroupError::RebalanceInProgress)
        ));
        assert!(matches!(
            g.sync(sync_req(&a, 1, &[]), 11),
            Err(GroupError::RebalanceInProgress)
        ));
        assert!(rb.try_recv().is_err(), "waits for a to rejoin");
        let mut ra = later(g.join(join_req(&a, &["range", "roundrobin"]), &c, 12));
        let (ja, jb) = (ready(&mut ra), ready(&mut rb));
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(ja.leader, a, "the old leader stays leader");
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty(), "only the leader sees the members");
        let mut sb = later(g.sync(sync_req(&b, 2, &[]), 13));
        assert!(sb.try_recv().is_err(), "followers wait for the leader");
        let mut sa = later(g.sync(sync_req(&a, 2, &[(&a, "p0"), (&b, "p1")]), 14));
        assert_eq!(ready(&mut sb).assignment, Bytes::from("p1"));
        assert_eq!(ready(&mut sa).assignment, Bytes::from("p0"));
        assert!(matches!(
            g.join(join_req("", &["cooperative-sticky"]), &c, 15),
            Err(GroupError::InconsistentGroupProtocol)
        ));
    }

    #[test]
    fn silent_members_expire_and_the_rest_rebalance() {
        let c = config(0);
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, &c, &["range"], 0);
        ready(&mut ra);
        accepted(g.sync(sync_req(&a, 1, &[]), 0));
        let (b, mut rb) = join_new(&mut g, &c, &["range"], 0);
        let mut ra = later(g.join(join_req(&a, &["range"]), &c, 0));
        ready(&mut ra);
        ready(&mut rb);
        accepted(g.sync(sync_req(&a, 2, &[]), 1));
        assert_eq!(g.state, GroupState::Stable);
        // a keeps heartbeating, b goes silent past its 10 s session.
        g.heartbeat(&a, None, 2, 9_000).expect("heartbeat");
        g.tick(&c, 10_001);
        assert!(!g.members.contains_key(&b));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        let mut ra = later(g.join(join_req(&a, &["range"]), &c, 10_002));
        assert_eq!(ready(&mut ra).generation, 3);
        // A member that never rejoins is dropped at the rebalance timeout.
        accepted(g.sync(sync_req(&a, 3, &[]), 10_003));
        let (_, mut rc) = join_new(&mut g, &c, &["range"], 10_004);
        for t in [15_000, 25_000, 35_000] {
            // Heartbeats keep a's session but do not count as rejoining.
            assert!(matches!(
                g.heartbeat(&a, None, 3, t),
                Err(GroupError::RebalanceInProgress)
            ));
            g.tick(&c, t);
        }
        g.tick(&c, 10_004 + 29_999);
        assert!(rc.try_recv().is_err());
        g.tick(&c, 10_004 + 30_000);
        let jc = ready(&mut rc);
        assert_eq!(jc.generation, 4);
        assert!(!g.members.contains_key(&a), "a did not rejoin in time");
    }

    #[test]
    fn leaving_members_and_the_last_leaving_empties_the_group() {
        let c = config(0);
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, &c, &["range"], 0);
        ready(&mut ra);
        accepted(g.sync(sync_req(&a, 1, &[]), 1));
        let r = g.leave(&[(a.clone(), None), ("ghost".into(), None)], &c, 2);
        assert!(r[0].is_ok());
        assert!(matches!(r[1], Err(GroupError::UnknownMemberId)));
        assert_eq!(g.state, GroupState::Empty);
        assert_eq!(g.generation, 2);
        assert!(
            g.validate_commit("", None, -1, 3).is_ok(),
            "simple commits to an empty group"
        );
        assert!(matches!(
            g.validate_commit(&a, None, 1, 3),
            Err(GroupError::UnknownMemberId)
        ));
    }

    #[test]
    fn commits_check_member_generation_and_state() {
        let c = config(0);
        let mut g = Group::new("g", 0);
        let (a, mut ra) = join_new(&mut g, &c, &["range"], 0);
        ready(&mut ra);
        assert!(matches!(
            g.validate_commit(&a, None, 1, 1),
            Err(GroupError::RebalanceInProgress)
        ));
        accepted(g.sync(sync_req(&a, 1, &[]), 1));
        assert!(g.validate_commit(&a, None, 1, 2).is_ok());
        assert!(matches!(
            g.validate_commit(&a, None, 7, 2),
            Err(GroupError::IllegalGeneration)
        ));
        assert!(matches!(
            g.validate_commit("", None, -1, 2),
            Err(GroupError::UnknownMemberId)
        ));
    }

    #[test]
    fn static_member_rejoining_with_same_protocols_does_not_rebalance() {
        let c = config(0);
        let mut g = Group::new("g", 0);
        let mut req = join_req("", &["range"]);
        req.instance_id = Some("inst-1".into());
        let mut r1 = later(g.join(req.clone(), &c, 0));
        let j1 = ready(&mut r1);
        accepted(g.sync(sync_req(&j1.member_id, 1, &[(&j1.member_id, "mine")]), 1));
        let mut other = join_req("", &["range"]);
        other.instance_id = Some("inst-2".into());
        let mut r2 = later(g.join(other, &c, 2));
        let mut r1 = later(g.join(
            JoinRequest {
                member_id: j1.member_id.clone(),
                ..req.clone()
            },
            &c,
            3,
        ));
        let (j1, j2) = (ready(&mut r1), ready(&mut r2));
        assert_eq!(j1.generation, 2);
        let leader = j1.leader.clone();
        let assign: Vec<(&str, &str)> = vec![(&j1.member_id, "one"), (&j2.member_id, "two")];
        let (lid, other_id) = if leader == j1.member_id {
            (&j1.member_id, &j2.member_id)
        } else {
            (&j2.member_id, &j1.member_id)
        };
        accepted(g.sync(sync_req(other_id, 2, &[]), 4));
        accepted(g.sync(sync_req(lid, 2, &assign), 4));
        assert_eq!(g.state, GroupState::Stable);

        // inst-2 restarts (no LeaveGroup, new process, unknown member id).
        let mut again = join_req("", &["range"]);
        again.instance_id = Some("inst-2".into());
        let j = match g.join(again, &c, 5).expect("rejoin") {
            Answer::Now(j) => j,
            Answer::Later(_) => panic!("a static rejoin must not wait for a rebalance"),
        };
        assert_eq!(j.generation, 2);
        assert_eq!(g.state, GroupState::Stable);
        assert_ne!(j.member_id, j2.member_id);
        // The old identity is fenced.
        assert!(matches!(
            g.heartbeat(&j2.member_id, Some("inst-2"), 2, 6),
            Err(GroupError::FencedInstanceId)
        ));
        let s = match g.sync(sync_req(&j.member_id, 2, &[]), 6).expect("sync") {
            Answer::Now(s) => s,
            Answer::Later(_) => panic!("stable sync answers at once"),
        };
        assert_eq!(s.assignment, Bytes::from("two"), "keeps its assignment");
    }

    #[test]
    fn member_id_required_and_max_size() {
        let c = GroupConfig {
            max_size: 1,
            ..config(0)
        };
        let mut g = Group::new("g", 0);
        let (_a, mut ra) = join_new(&mut g, &c, &["range"], 0);
        ready(&mut ra);
        assert!(matches!(
            g.join(join_req("", &["range"]), &c, 1),
            Err(GroupError::GroupMaxSizeReached)
        ));
        assert!(matches!(
            g.join(join_req("made-up", &["range"]), &c, 1),
            Err(GroupError::UnknownMemberId)
        ));
        // Pending member ids expire after the session timeout.
        let mut g = Group::new("h", 0);
        assert!(matches!(
            g.join(join_req("", &["range"]), &config(0), 0),
            Err(GroupError::MemberIdRequired(_))
        ));
        assert!(!g.pending_is_empty());
        g.tick(&config(0), 10_001);
        assert!(g.pending_is_empty());
    }
}
