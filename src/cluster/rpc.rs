//! The messages of the controller listener: Raft's own RPCs between voters, and the requests
//! brokers send the active controller (registration, heartbeats, forwarded admin changes).
//! Every frame carries the cluster id; a node of another cluster is refused.

use std::collections::BTreeMap;

use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::raft_types::{NodeId, SnapshotMeta, TypeConfig, Vote};
use crate::metadata::{BrokerRegistration, MetadataRecord, TopicError};

#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub cluster_id: String,
    pub body: T,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
    Controller(ControllerRequest),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<SnapshotResponse<NodeId>, Fatal<NodeId>>),
    Controller(ControllerReply),
    /// Wrong cluster id, or a message this node cannot take: the text says which.
    Refused(String),
}

/// A topic to create, as CreateTopics asks for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    /// -1: `num.partitions` (ignored with assignments).
    pub partitions: i32,
    /// -1: `default.replication.factor`.
    pub replication_factor: i16,
    /// Explicit replicas per partition, partition 0 first.
    pub assignments: Option<Vec<Vec<i32>>>,
    pub overrides: BTreeMap<String, String>,
    pub validate_only: bool,
    /// Keeps a topic's id when an existing registry is imported; new topics get a fresh one.
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker(BrokerRegistration),
    Heartbeat {
        id: i32,
        incarnation: Uuid,
        /// Controlled shutdown: fence me now so my leaderships move before I exit.
        shutting_down: bool,
    },
    CreateTopic(NewTopic),
    DeleteTopic {
        name: String,
    },
    AlterTopicConfig {
        name: String,
        overrides: BTreeMap<String, String>,
        validate_only: bool,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker: i32,
    },
    /// A partition leader shrinks or expands its ISR (Kafka's AlterPartition).
    AlterIsr {
        broker: i32,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// ElectLeaders: the preferred replica (or, `unclean`, any live replica of an offline
    /// partition) takes over; `None`: every partition.
    ElectLeaders {
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// The quorum as its leader sees it (DescribeQuorum).
    DescribeQuorum,
    /// A broker-only node's pull of the committed metadata log after `after` (KRaft brokers
    /// fetch it the same way).
    FetchMetadata {
        after: u64,
    },
}

/// The metadata quorum as its leader reports it (KRaft's DescribeQuorum fields). Offsets are
/// exclusive ends: a voter's log end offset is its last entry's index + 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumState {
    pub leader: i32,
    /// The Raft term, KRaft's leader epoch.
    pub epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<VoterState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoterState {
    pub id: i32,
    pub log_end_offset: i64,
    /// Milliseconds since the epoch; -1 when not known.
    pub last_caught_up_timestamp: i64,
    /// `host:port` of its controller listener, empty for a quorum of one.
    pub endpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerReply {
    /// Done; visible in any image at or past `offset`.
    Done {
        offset: u64,
    },
    ProducerIds {
        first: i64,
        offset: u64,
    },
    Heartbeat {
        fenced: bool,
    },
    Quorum(QuorumState),
    /// Each partition's election: elected (None) or why not. Visible at or past `offset`.
    Elections {
        results: Vec<(String, i32, Option<TopicError>)>,
        offset: u64,
    },
    /// validate_only CreateTopics: the replicas each partition would get.
    Validated {
        replicas: Vec<Vec<i32>>,
    },
    /// Committed entries after the asked offset, each with its record (None: an entry of the
    /// Raft library's own); or, when those were purged, the image as records at `offset`.
    Metadata {
        snapshot: Option<(u64, Vec<MetadataRecord>)>,
        entries: Vec<(u64, Option<MetadataRecord>)>,
    },
    Failed(TopicError),
    /// This node does not lead the quorum; ask the leader (if known).
    NotController {
        leader: Option<NodeId>,
    },
}
