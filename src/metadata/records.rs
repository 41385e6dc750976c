//! Metadata records: one record per change to the cluster's metadata, as Kafka's KRaft log
//! holds them (`RegisterBrokerRecord`, `FenceBrokerRecord`, `TopicRecord`, `PartitionRecord`,
//! `ConfigRecord`, `ProducerIdsRecord`, ...). They are the entries of the Raft log and, written
//! out from an image, its snapshots.
//!
//! Records are facts decided by the controller (placement, leaders, ids); applying them is
//! deterministic on every node. Never holds behaviour: `image` applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker as it registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: i32,
    /// New at every start of the process: a registration with another incarnation is a restart.
    pub incarnation: Uuid,
    /// One advertised endpoint per client listener (`advertised.listeners`). Records written
    /// before listeners had names lack it; such a broker is listed again once it re-registers,
    /// which it does at every start.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is not listed to clients.
    pub fenced: bool,
}

/// Where clients that arrived on `listener` reach a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
}

impl BrokerRegistration {
    /// The endpoint Kafka answers a request that arrived on `listener` with: the broker's
    /// listener of the same name (a broker without one is left out of such answers).
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.listener == listener)
    }
}

/// One partition's replicas and leadership (Kafka's PartitionRegistration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRegistration {
    /// The first replica is the preferred leader.
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: no leader (offline).
    pub leader: i32,
    pub leader_epoch: i32,
    /// Bumped by every change of the partition, leader or not.
    pub partition_epoch: i32,
}

impl PartitionRegistration {
    pub const NO_LEADER: i32 = -1;

    /// A new partition led by its first replica, every replica in sync (all of them hold the
    /// same empty log, as Kafka starts a partition).
    pub fn new(replicas: Vec<i32>) -> Self {
        let leader = replicas.first().copied().unwrap_or(Self::NO_LEADER);
        Self {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A broker (re)registers; it stays fenced until its first heartbeat.
    RegisterBroker(BrokerRegistration),
    /// Missed heartbeats, or a controlled shutdown: its leaderships move to other ISR members.
    FenceBroker {
        id: i32,
    },
    UnfenceBroker {
        id: i32,
    },
    Topic {
        name: String,
        id: Uuid,
        partitions: Vec<PartitionRegistration>,
        overrides: BTreeMap<String, String>,
    },
    RemoveTopic {
        name: String,
    },
    /// Replaces a topic's overrides.
    TopicConfig {
        name: String,
        overrides: BTreeMap<String, String>,
    },
    /// Partitions appended to a topic (CreatePartitions).
    AddPartitions {
        name: String,
        partitions: Vec<PartitionRegistration>,
    },
    /// A leader's change of its partition's ISR (Kafka's AlterPartition, written as a
    /// PartitionChangeRecord): applies only if the partition is still at the epochs the leader
    /// saw, so a stale leader's request never lands.
    AlterIsr {
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
    /// A clean election (ElectLeaders PREFERRED, the automatic leader rebalance): an ISR
    /// member takes over leadership, if the partition is still at the epoch the controller saw.
    ElectLeader {
        topic: String,
        partition: i32,
        partition_epoch: i32,
        leader: i32,
    },
    /// An offline partition of a topic with `unclean.leader.election.enable` gets a leader from
    /// outside its ISR, which becomes the whole ISR.
    UncleanLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    /// Hands a block of producer ids to a broker.
    ProducerIds {
        broker: i32,
        block_size: i64,
    },
    /// Several records in one entry of the log, applied in order, each answered on its own:
    /// a round of elections commits in one write, as Kafka's controller writes its
    /// PartitionChangeRecords in one batch.
    Batch(Vec<MetadataRecord>),
}

/// What applying a record did, returned to the controller that proposed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The first id of the block handed out.
    ProducerIds {
        first: i64,
    },
    /// The record no longer fits the image (a concurrent change got there first).
    Rejected(Rejection),
    /// What each record of a Batch answered, in order.
    Batch(Vec<Applied>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Rejection {
    TopicExists(String),
    UnknownTopic(String),
    UnknownBroker(i32),
    /// The partition moved on (new leader or ISR) since the change was asked for.
    StaleEpoch,
}
