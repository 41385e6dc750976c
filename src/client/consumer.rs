//! The consumer behind `runnel consume`: by assignment of every partition, or as a member of
//! a group (classic protocol, range assignor, heartbeats on their own connection, offsets
//! committed every few seconds and on exit, LeaveGroup at the end). Fetches go to each
//! partition's leader, found again in the metadata when it moves, each connection in a fetch
//! session (KIP-227).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::fetch_session::FetchSessionHandler;
use super::metadata::{check, leader_moved, s, topic_info, TopicInfo};
use super::Connection;

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 60_000;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(3_000);
const COMMIT_EVERY: Duration = Duration::from_secs(5);
const ASSIGNOR: &str = "range";

pub struct ConsumeOptions {
    pub bootstrap: String,
    pub topic: String,
    pub group: Option<String>,
    /// Where to start without a committed offset: earliest (true) or latest.
    pub from_beginning: bool,
    /// Stop after this many records.
    pub max_records: Option<u64>,
    /// Stop after this long without a record.
    pub idle_timeout: Option<Duration>,
}

/// The group membership of this consumer, shared with the heartbeat task.
#[derive(Default)]
struct Membership {
    member_id: String,
    generation: i32,
}

pub struct Consumer {
    opts: ConsumeOptions,
    /// To the bootstrap broker: metadata and the coordinator lookup.
    conn: Connection,
    topic: TopicInfo,
    /// Fetch connections, one per leader's `host:port`.
    leaders: HashMap<String, (Connection, FetchSessionHandler)>,
    /// Partition → next offset to read.
    positions: BTreeMap<i32, i64>,
    coordinator: Option<Connection>,
    membership: Arc<Mutex<Membership>>,
    rejoin: Arc<AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    last_commit: Instant,
}

impl Consumer {
    pub async fn start(opts: ConsumeOptions) -> anyhow::Result<Self> {
        let mut conn = Connection::connect(&opts.bootstrap).await?;
        let topic = topic_info(&mut conn, &opts.topic, false).await?;
        let coordinator = match &opts.group {
            Some(g) => Some(find_coordinator(&mut conn, g).await?),
            None => None,
        };
        let mut c = Self {
            opts,
            conn,
            topic,
            leaders: HashMap::new(),
            positions: BTreeMap::new(),
            coordinator,
            membership: Arc::new(Mutex::new(Membership::default())),
            rejoin: Arc::new(AtomicBool::new(true)),
            heartbeat: None,
            last_commit: Instant::now(),
        };
        if c.opts.group.is_none() {
            let all = c.topic.partitions.clone();
            c.assign(&all, &HashMap::new()).await?;
        }
        Ok(c)
    }

    fn group(&self) -> &str {
        self.opts.group.as_deref().unwrap_or_default()
    }

    /// Starts reading `partitions` at their committed offsets, or the reset position.
    async fn assign(
        &mut self,
        partitions: &[i32],
        committed: &HashMap<i32, i64>,
    ) -> anyhow::Result<()> {
        let timestamp = if self.opts.from_beginning { -2 } else { -1 };
        let missing: Vec<i32> = partitions
            .iter()
            .copied()
            .filter(|p| committed.get(p).is_none_or(|o| *o < 0))
            .collect();
        let reset = self.list_offsets(&missing, timestamp).await?;
        self.positions = partitions
            .iter()
            .map(|p| {
                let at = committed
                    .get(p)
                    .copied()
                    .filter(|o| *o >= 0)
                    .or_else(|| reset.get(p).copied())
                    .unwrap_or(0);
                (*p, at)
            })
            .collect();
        Ok(())
    }

    /// ListOffsets at each partition's leader: -2 earliest, -1 latest.
    async fn list_offsets(
        &mut self,
        partitions: &[i32],
        timestamp: i64,
    ) -> anyhow::Result<HashMap<i32, i64>> {
        let keys: Vec<(String, i32)> = partitions
            .iter()
            .map(|p| (self.opts.topic.clone(), *p))
            .collect();
        let mut out = HashMap::new();
        for ((_, p), found) in
            super::admin::list_offsets(&self.opts.bootstrap, &keys, timestamp).await?
        {
            let (offset, _) = found.map_err(|e| anyhow!("ListOffsets: {e}"))?;
            out.insert(p, offset);
        }
        Ok(out)
    }

    /// JoinGroup + SyncGroup until this member has an assignment for the current generation.
    async fn join(&mut self) -> anyhow::Result<()> {
        self.commit().await?;
        let topic = self.opts.topic.clone();
        let group = self.group().to_string();
        let coord = self
            .coordinator
            .as_mut()
            .ok_or_else(|| anyhow!("no group"))?;
        let subscription = encode_subscription(&topic)?;
        let deadline = Instant::now() + Duration::from_millis(REBALANCE_TIMEOUT_MS as u64);
        let (member_id, generation, assigned) = loop {
            if Instant::now() > deadline {
                bail!("could not join group {group}");
            }
            let member_id = lock(&self.membership).member_id.clone();
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_session_timeout_ms(SESSION_TIMEOUT_MS)
                .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
                .with_member_id(s(&member_id))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s(ASSIGNOR))
                    .with_metadata(subscription.clone())]);
            let joined = coord.send(req).await?;
            match ResponseError::try_from_code(joined.error_code) {
                None => {}
                Some(ResponseError::MemberIdRequired) => {
                    lock(&self.membership).member_id = joined.member_id.to_string();
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    lock(&self.membership).member_id.clear();
                    continue;
                }
                Some(ResponseError::RebalanceInProgress) => continue,
                Some(e) => bail!("JoinGroup: {e:?}"),
            }
            let me = joined.member_id.to_string();
            let assignments = if joined.leader == joined.member_id {
                range_assign(&joined.members, &topic, &self.topic.partitions)?
            } else {
                Vec::new()
            };
            let sync = SyncGroupRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(joined.generation_id)
                .with_member_id(s(&me))
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s(ASSIGNOR)))
                .with_assignments(assignments);
            let synced = coord.send(sync).await?;
            match ResponseError::try_from_code(synced.error_code) {
                None => {}
                Some(ResponseError::RebalanceInProgress)
                | Some(ResponseError::IllegalGeneration) => {
                    lock(&self.membership).member_id = me;
                    continue;
                }
                Some(ResponseError::UnknownMemberId) => {
                    lock(&self.membership).member_id.clear();
                    continue;
                }
                Some(e) => bail!("SyncGroup: {e:?}"),
            }
            break (
                me,
                joined.generation_id,
                decode_assignment(&synced.assignment, &topic)?,
            );
        };
        {
            let mut m = lock(&self.membership);
            m.member_id = member_id;
            m.generation = generation;
        }
        self.rejoin.store(false, Ordering::Release);
        let committed = self.fetch_committed(&assigned).await?;
        self.assign(&assigned, &committed).await?;
        tracing::info!(group = %self.group(), generation, partitions = ?assigned, "joined");
        if self.heartbeat.is_none() {
            self.heartbeat = Some(self.spawn_heartbeat().await?);
        }
        Ok(())
    }

    async fn fetch_committed(&mut self, partitions: &[i32]) -> anyhow::Result<HashMap<i32, i64>> {
        let group = self.group().to_string();
        let Some(coord) = self.coordinator.as_mut() else {
            return Ok(HashMap::new());
        };
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s(&self.opts.topic)))
                .with_partition_indexes(partitions.to_vec())]))
            .with_groups(vec![
                kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_topics(Some(vec![
                        kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(TopicName(s(&self.opts.topic)))
                            .with_partition_indexes(partitions.to_vec()),
                    ])),
            ]);
        let v = coord.version::<OffsetFetchRequest>()?;
        let req = if v >= 8 {
            req.with_group_id(Default::default())
                .with_topics(Some(vec![]))
        } else {
            req.with_groups(vec![])
        };
        let resp = coord.send_version(req, v).await?;
        let mut out = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                check(p.error_code, "OffsetFetch")?;
                out.insert(p.partition_index, p.committed_offset);
            }
        }
        for g in resp.groups {
            check(g.error_code, "OffsetFetch")?;
            for t in g.topics {
                for p in t.partitions {
                    check(p.error_code, "OffsetFetch")?;
                    out.insert(p.partition_index, p.committed_offset);
                }
            }
        }
        check(resp.error_code, "OffsetFetch")?;
        Ok(out)
    }

    async fn spawn_heartbeat(&mut self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut conn = Connection::connect(&self.opts.bootstrap).await?;
        let mut hb = find_coordinator(&mut conn, self.group()).await?;
        let group = self.group().to_string();
        let membership = self.membership.clone();
        let rejoin = self.rejoin.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let (member_id, generation) = {
                    let m = lock(&membership);
                    (m.member_id.clone(), m.generation)
                };
                let req = HeartbeatRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(&member_id))
                    .with_generation_id(generation);
                match hb.send(req).await {
                    Ok(r) if r.error_code == 0 => {}
                    Ok(_) => rejoin.store(true, Ordering::Release),
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat failed");
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                }
            }
        }))
    }

    /// Commits the current positions (group mode only).
    pub async fn commit(&mut self) -> anyhow::Result<()> {
        let group = self.group().to_string();
        let (member_id, generation) = {
            let m = lock(&self.membership);
            (m.member_id.clone(), m.generation)
        };
        let Some(coord) = self.coordinator.as_mut() else {
            return Ok(());
        };
        if self.positions.is_empty() || generation == 0 {
            return Ok(());
        }
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(&member_id))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(&self.opts.topic)))
                .with_partitions(
                    self.positions
                        .iter()
                        .map(|(p, o)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                        })
                        .collect(),
                )]);
        let resp = coord.send(req).await?;
        self.last_commit = Instant::now();
        for t in resp.topics {
            for p in t.partitions {
                match ResponseError::try_from_code(p.error_code) {
                    None => {}
                    // The group moved on: the next join takes over from the last commit.
                    Some(
                        ResponseError::RebalanceInProgress
                        | ResponseError::IllegalGeneration
                        | ResponseError::UnknownMemberId,
                    ) => self.rejoin.store(true, Ordering::Release),
                    Some(e) => bail!("OffsetCommit: {e:?}"),
                }
            }
        }
        Ok(())
    }

    /// Reads until the record or idle limit, handing each record to `each`.
    pub async fn run(&mut self, mut each: impl FnMut(i32, &Record)) -> anyhow::Result<u64> {
        let mut seen = 0u64;
        let mut last_record = Instant::now();
        loop {
            if self.opts.group.is_some() && self.rejoin.load(Ordering::Acquire) {
                self.join().await?;
            }
            if self.opts.max_records.is_some_and(|m| seen >= m) {
                break;
            }
            if self
                .opts
                .idle_timeout
                .is_some_and(|t| last_record.elapsed() >= t)
            {
                break;
            }
            let batch = self.fetch().await?;
            for (partition, record) in batch {
                if self.opts.max_records.is_some_and(|m| seen >= m) {
                    break;
                }
                self.positions.insert(partition, record.offset + 1);
                each(partition, &record);
                seen += 1;
                last_record = Instant::now();
            }
            if self.last_commit.elapsed() >= COMMIT_EVERY {
                self.commit().await?;
            }
        }
        Ok(seen)
    }

    /// One Fetch per leader of the partitions read; a partition whose leader moved (or is
    /// unreachable) is skipped until the metadata is read again.
    async fn fetch(&mut self) -> anyhow::Result<Vec<(i32, Record)>> {
        if self.positions.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(Vec::new());
        }
        let mut by_leader: BTreeMap<String, Vec<(i32, i64)>> = BTreeMap::new();
        let mut stale = false;
        for (p, o) in &self.positions {
            match self.topic.leaders.get(p) {
                Some(addr) => by_leader.entry(addr.clone()).or_default().push((*p, *o)),
                None => stale = true,
            }
        }
        // The long poll is shared out so one pass over every leader stays near 500 ms.
        let wait = 500 / by_leader.len().max(1) as i32;
        let mut out = Vec::new();
        for (addr, partitions) in by_leader {
            match self.fetch_from(&addr, &partitions, wait, &mut out).await {
                Ok(moved) => stale |= moved,
                Err(e) => {
                    tracing::debug!(leader = %addr, error = %e, "fetch failed");
                    self.leaders.remove(&addr);
                    stale = true;
                }
            }
        }
        if stale {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.topic = topic_info(&mut self.conn, &self.opts.topic, false).await?;
        }
        Ok(out)
    }

    /// Fetches `partitions` (partition, offset) from the leader at `addr` into `out`; whether
    /// some partition's leader moved.
    async fn fetch_from(
        &mut self,
        addr: &str,
        partitions: &[(i32, i64)],
        wait_ms: i32,
        out: &mut Vec<(i32, Record)>,
    ) -> anyhow::Result<bool> {
        if !self.leaders.contains_key(addr) {
            let conn = Connection::connect(addr).await?;
            let session = FetchSessionHandler::default();
            self.leaders.insert(addr.to_string(), (conn, session));
        }
        let (conn, session) = self
            .leaders
            .get_mut(addr)
            .ok_or_else(|| anyhow!("no connection to {addr}"))?;
        let v = conn.version::<FetchRequest>()?;
        let topic = FetchTopic::default().with_partitions(
            partitions
                .iter()
                .map(|(p, o)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*o)
                        .with_partition_max_bytes(1 << 20)
                })
                .collect(),
        );
        // Topics by id from v13 on, by name before.
        let topic = if v >= 13 {
            topic.with_topic_id(self.topic.id)
        } else {
            topic.with_topic(TopicName(s(&self.opts.topic)))
        };
        let mut req = FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(16 << 20)
            .with_topics(vec![topic]);
        session.build(&mut req, v);
        let resp = conn.send_version(req, v).await?;
        if !session.handle(&resp, v) {
            // The session is gone or out of step: the next fetch starts a new one.
            tracing::debug!(leader = %addr, error = resp.error_code, "fetch session reset");
            return Ok(false);
        }
        check(resp.error_code, "Fetch")?;
        let mut moved = false;
        for t in resp.responses {
            for p in t.partitions {
                if p.error_code == ResponseError::OffsetOutOfRange.code() {
                    // Retention moved past us: continue from the log start.
                    let start = self.list_offsets(&[p.partition_index], -2).await?;
                    self.positions.extend(start);
                    continue;
                }
                if leader_moved(p.error_code) {
                    moved = true;
                    continue;
                }
                check(p.error_code, "Fetch")?;
                let Some(mut records) = p.records else {
                    continue;
                };
                let from = self.positions.get(&p.partition_index).copied().unwrap_or(0);
                while records.has_remaining() {
                    let Ok(set) = RecordBatchDecoder::decode(&mut records) else {
                        break;
                    };
                    for r in set.records {
                        if r.offset >= from && !r.control {
                            out.push((p.partition_index, r));
                        }
                    }
                }
            }
        }
        Ok(moved)
    }

    /// Final commit and LeaveGroup.
    pub async fn close(mut self) -> anyhow::Result<()> {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        self.commit().await?;
        let group = self.group().to_string();
        let member_id = lock(&self.membership).member_id.clone();
        if let Some(coord) = self.coordinator.as_mut() {
            if !member_id.is_empty() {
                let req = LeaveGroupRequest::default()
                    .with_group_id(GroupId(s(&group)))
                    .with_member_id(s(&member_id))
                    .with_members(vec![MemberIdentity::default().with_member_id(s(&member_id))]);
                let v = coord.version::<LeaveGroupRequest>()?;
                let req = if v >= 3 {
                    req.with_member_id(Default::default())
                } else {
                    req.with_members(vec![])
                };
                coord.send_version(req, v).await?;
            }
        }
        Ok(())
    }
}

fn lock(m: &Mutex<Membership>) -> std::sync::MutexGuard<'_, Membership> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub async fn find_coordinator(conn: &mut Connection, group: &str) -> anyhow::Result<Connection> {
    let v = conn.version::<FindCoordinatorRequest>()?;
    let req = FindCoordinatorRequest::default().with_key_type(0);
    let req = if v >= 4 {
        req.with_coordinator_keys(vec![s(group)])
    } else {
        req.with_key(s(group))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resp = conn.send_version(req.clone(), v).await?;
        let (code, host, port) = match resp.coordinators.first() {
            Some(c) if v >= 4 => (c.error_code, c.host.to_string(), c.port),
            _ => (resp.error_code, resp.host.to_string(), resp.port),
        };
        if code == ResponseError::CoordinatorNotAvailable.code() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        check(code, "FindCoordinator")?;
        return Connection::connect(&format!("{host}:{port}"))
            .await
            .context("connecting to the group coordinator");
    }
}

fn encode_subscription(topic: &str) -> anyhow::Result<Bytes> {
    let sub = ConsumerProtocolSubscription::default().with_topics(vec![s(topic)]);
    let mut b = BytesMut::new();
    b.put_i16(0);
    sub.encode(&mut b, 0)?;
    Ok(b.freeze())
}

fn decode_assignment(bytes: &Bytes, topic: &str) -> anyhow::Result<Vec<i32>> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return Ok(Vec::new());
    }
    let version = b.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut b, version)?;
    Ok(a.assigned_partitions
        .into_iter()
        .filter(|t| t.topic.as_str() == topic)
        .flat_map(|t| t.partitions)
        .collect())
}

/// The range assignor over one topic: members sorted by id, consecutive runs of partitions,
/// the first `partitions % members` members taking one more.
fn range_assign(
    members: &[kafka_protocol::messages::join_group_response::JoinGroupResponseMember],
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<Vec<SyncGroupRequestAssignment>> {
    let mut ids: Vec<&StrBytes> = members.iter().map(|m| &m.member_id).collect();
    ids.sort();
    let n = ids.len().max(1);
    let (each, extra) = (partitions.len() / n, partitions.len() % n);
    let mut at = 0;
    let mut out = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let take = each + usize::from(i < extra);
        let mine = partitions[at..at + take].to_vec();
        at += take;
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedPartitions::default()
                .with_topic(TopicName(s(topic)))
                .with_partitions(mine),
        ]);
        let mut b = BytesMut::new();
        b.put_i16(0);
        a.encode(&mut b, 0)?;
        out.push(
            SyncGroupRequestAssignment::default()
                .with_member_id(id.clone())
                .with_assignment(b.freeze()),
        );
    }
    Ok(out)
}
