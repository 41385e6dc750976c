//! The one place engine errors become Kafka error codes.

use kafka_protocol::error::ResponseError;

use crate::log::LogError;
use crate::metadata::TopicError;

pub fn log_error(e: &LogError) -> ResponseError {
    match e {
        LogError::CorruptBatch(_) => ResponseError::CorruptMessage,
        LogError::InvalidRecord(_) | LogError::UnsupportedMagic(_) => ResponseError::InvalidRecord,
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        LogError::UnknownProducerId(_) => ResponseError::UnknownProducerId,
        LogError::DirectoryFailed(_) | LogError::Io { .. } | LogError::CorruptFile { .. } => {
            ResponseError::KafkaStorageError
        }
    }
}

pub fn topic_error(e: &TopicError) -> ResponseError {
    match e {
        TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
        TopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        TopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        TopicError::InvalidPartitions => ResponseError::InvalidPartitions,
        TopicError::Unknown(_) => ResponseError::UnknownTopicOrPartition,
        TopicError::Storage(e) => log_error(e),
    }
}

/// A code for a response field: 0 for success.
pub fn code(r: Result<(), ResponseError>) -> i16 {
    r.err().map_or(0, |e| e.code())
}
