//! The one place engine errors become Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::group::GroupError;
use crate::log::LogError;
use crate::metadata::TopicError;

pub fn log_error(e: &LogError) -> ResponseError {
    match e {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_)
        | LogError::UnsupportedMagic(_)
        | LogError::KeylessRecords(_) => ResponseError::InvalidRecord,
        LogError::MessageTooLarge { .. }
        | LogError::DecompressesTooLarge { .. }
        | LogError::TooManyRecords { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::UnknownProducerId(_) => ResponseError::UnknownProducerId,
        LogError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
        LogError::DirectoryFailed(_)
        | LogError::Io { .. }
        | LogError::NoSpace { .. }
        | LogError::CorruptFile { .. } => ResponseError::KafkaStorageError,
    }
}

pub fn topic_error(e: &TopicError) -> ResponseError {
    match e {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::InvalidPartitions | TopicError::InvalidPartitionCount(_) => {
            ResponseError::InvalidPartitions
        }
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        TopicError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
        TopicError::NotController(_) => ResponseError::NotController,
        TopicError::DuplicateBroker(_) => ResponseError::DuplicateBrokerRegistration,
        TopicError::Storage(_) => ResponseError::KafkaStorageError,
        TopicError::StaleEpoch(_) => ResponseError::FencedLeaderEpoch,
        TopicError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
        TopicError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        TopicError::EligibleLeadersNotAvailable(_) => ResponseError::EligibleLeadersNotAvailable,
        TopicError::PolicyViolation(_) => ResponseError::PolicyViolation,
    }
}

pub fn group_error(e: &GroupError) -> ResponseError {
    match e {
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        // As Kafka: a storage failure on the offsets topic sends clients to find the
        // coordinator again.
        GroupError::NotCoordinator | GroupError::Storage(_) => ResponseError::NotCoordinator,
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId,
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        GroupError::FencedInstanceId => ResponseError::FencedInstanceId,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        GroupError::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        GroupError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
    }
}

/// A code for a response field: 0 for success.
pub fn code(r: Result<(), ResponseError>) -> i16 {
    r.err().map_or(0, |e| e.code())
}
