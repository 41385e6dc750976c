//! Why a group operation failed. `protocol::errors` maps each to its Kafka error code.

use crate::log::LogError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupError {
    #[error("The group id is empty or invalid.")]
    InvalidGroupId,
    #[error("The session timeout is outside group.min.session.timeout.ms..group.max.session.timeout.ms.")]
    InvalidSessionTimeout,
    #[error("The coordinator is not available.")]
    CoordinatorNotAvailable,
    #[error("This broker is no longer the coordinator (shutting down).")]
    NotCoordinator,
    #[error("The member id is not known to the group.")]
    UnknownMemberId,
    /// KIP-394: the coordinator issued this member id; the client must join again with it.
    #[error("The group member needs a member id to join.")]
    MemberIdRequired(String),
    #[error("The generation is not the group's current one.")]
    IllegalGeneration,
    #[error("The group is rebalancing: join again.")]
    RebalanceInProgress,
    #[error("The member's protocol type or protocols do not match the group's.")]
    InconsistentGroupProtocol,
    #[error("The group has reached group.max.size members.")]
    GroupMaxSizeReached,
    #[error("Another member with this group.instance.id replaced this one.")]
    FencedInstanceId,
    #[error("The group does not exist.")]
    GroupIdNotFound,
    #[error("The group is not empty.")]
    NonEmptyGroup,
    #[error("The group is subscribed to this topic.")]
    GroupSubscribedToTopic,
    #[error("The offset metadata is longer than offset.metadata.max.bytes.")]
    OffsetMetadataTooLarge,
    #[error("This topic-partition does not exist.")]
    UnknownTopicOrPartition,
    #[error("storing group state failed: {0}")]
    Storage(String),
}

impl From<LogError> for GroupError {
    fn from(e: LogError) -> Self {
        GroupError::Storage(e.to_string())
    }
}
