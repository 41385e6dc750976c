//! Consumer groups (the classic protocol) and their committed offsets.
//!
//! Owns group membership, rebalances and committed offsets, persisted in the internal
//! `__consumer_offsets` topic through the log engine. Never sees the wire: the broker's group
//! handlers translate requests into coordinator calls.
//!
//! | file | Kafka concept |
//! |---|---|
//! | `classic_group` | ClassicGroup: the state machine, protocol selection, static members |
//! | `member` | ClassicGroupMember and the JoinGroup/SyncGroup answers |
//! | `coordinator` | GroupCoordinator + GroupMetadataManager: all groups, offsets, timers |
//! | `store` | the `__consumer_offsets` record formats, partitioning and replay |
//! | `consumer_protocol` | reading a consumer's subscription metadata |

pub mod classic_group;
pub mod consumer_protocol;
pub mod coordinator;
pub mod error;
pub mod member;
pub mod store;

pub use coordinator::GroupCoordinator;
pub use error::GroupError;

/// The broker settings the coordinator follows (Kafka's names and defaults).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`
    pub max_size: usize,
    /// `offsets.retention.minutes`, in ms
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`
    pub offsets_retention_check_interval_ms: i64,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.segment.bytes`
    pub offsets_topic_segment_bytes: u64,
    /// `offsets.topic.replication.factor`; None: Kafka's 3 in a cluster, 1 for a node that is
    /// its own quorum (as Kafka's shipped single-node server.properties sets it).
    pub offsets_topic_replication_factor: Option<i16>,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            offset_metadata_max_bytes: 4096,
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_topic_replication_factor: None,
        }
    }
}
