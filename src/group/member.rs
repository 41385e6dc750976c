//! One member of a classic group: who it is, what it supports, what it was assigned, when its
//! session ends, and the JoinGroup/SyncGroup answer it is waiting for (if any).

use bytes::Bytes;
use tokio::sync::oneshot;

use super::error::GroupError;

/// The answer to a JoinGroup, as the coordinator decides it.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// KIP-814: a static leader rejoining a stable group keeps the current assignment.
    pub skip_assignment: bool,
    /// Only the leader gets the members (with their metadata for the chosen protocol).
    pub members: Vec<JoinedMember>,
}

#[derive(Debug, Clone)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

pub type Reply<T> = oneshot::Sender<Result<T, GroupError>>;

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// The session ends (and the member leaves) at this time unless it heartbeats.
    pub deadline_ms: i64,
    pub awaiting_join: Option<Reply<JoinResult>>,
    pub awaiting_sync: Option<Reply<SyncResult>>,
    /// Supports KIP-814's skip_assignment (JoinGroup v9+).
    pub supports_skip_assignment: bool,
    /// Order of arrival: the longest-standing member becomes leader when one is needed.
    pub joined_seq: u64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Kafka keeps a member alive while a JoinGroup or SyncGroup of its is in flight (here:
    /// on a connection that is still open).
    pub fn awaiting(&self) -> bool {
        self.awaiting_join.as_ref().is_some_and(|t| !t.is_closed())
            || self.awaiting_sync.as_ref().is_some_and(|t| !t.is_closed())
    }

    pub fn reply_join(&mut self, r: Result<JoinResult, GroupError>) {
        if let Some(tx) = self.awaiting_join.take() {
            let _ = tx.send(r);
        }
    }

    pub fn reply_sync(&mut self, r: Result<SyncResult, GroupError>) {
        if let Some(tx) = self.awaiting_sync.take() {
            let _ = tx.send(r);
        }
    }
}
