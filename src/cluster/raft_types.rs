//! The Raft library's type plugs: what a log entry carries (a metadata record), what applying
//! it answers, and how nodes and snapshots are represented.

use crate::metadata::records::{Applied, MetadataRecord};

openraft::declare_raft_types!(
    /// Runnel's metadata quorum.
    pub TypeConfig:
        D = MetadataRecord,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Vec<u8>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;

pub fn io_error(e: &std::io::Error) -> StorageError {
    openraft::StorageIOError::write(openraft::AnyError::new(e)).into()
}
