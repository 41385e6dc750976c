//! The storage engine's one error type. The protocol layer maps it to Kafka error codes
//! (`protocol::errors`); nothing here knows about the wire.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("corrupt record batch: {0}")]
    CorruptBatch(&'static str),
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// Records without a key sent to a compacted topic: their indexes in the request.
    #[error("Compacted topic cannot accept message without key")]
    KeylessRecords(Vec<i32>),
    #[error("record batch magic {0} is not supported (v2 only)")]
    UnsupportedMagic(i8),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// A compressed batch whose records inflate past the limit (a "zip bomb" among them):
    /// refused once the output passes it, never inflated whole.
    #[error("record batch decompresses past message.max.decompressed.bytes {max}")]
    DecompressesTooLarge { max: usize },
    #[error("record batch of {count} records exceeds message.max.records {max}")]
    TooManyRecords { count: i32, max: i32 },
    #[error("offset {offset} is outside the log [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("log directory {0} is offline after an I/O failure")]
    DirectoryFailed(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: io::Error },
    /// A write found the file system full (ENOSPC, or EDQUOT for a quota). Appends undo
    /// their partial bytes and fail with it; the directory stays online, so appends resume
    /// once space returns. Anywhere else it takes the directory offline, as `Io` does.
    #[error("no space left on the device holding {path}")]
    NoSpace { path: String },
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("no state for producer {0}: its first batch must have sequence 0")]
    UnknownProducerId(i64),
    /// A follower change made for a fetch in `fetched_in` reached a log that has since begun
    /// leading a later epoch: it must not land.
    #[error(
        "follower data fetched in leader epoch {fetched_in}, but this log leads epoch {current}"
    )]
    FencedLeaderEpoch { fetched_in: i32, current: i32 },
    #[error("corrupt file {path}: {reason}")]
    CorruptFile { path: String, reason: String },
}

impl LogError {
    pub fn io(path: &std::path::Path, source: io::Error) -> Self {
        let path = path.display().to_string();
        match source.raw_os_error() {
            Some(ENOSPC | EDQUOT) => LogError::NoSpace { path },
            _ => LogError::Io { path, source },
        }
    }

    /// A task that was to write (an fsync moved off the async workers) panicked or was
    /// cancelled: whether its data is safe is unknown, as after a failed write.
    pub fn task_failed(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        LogError::Io {
            path: what.to_string(),
            source: io::Error::other(e),
        }
    }

    /// A failed fsync: whatever it reports (ENOSPC included, from a file system that allocates
    /// late), written data may be lost, so this is always `Io`, never `NoSpace`.
    pub fn sync_failed(path: &std::path::Path, source: io::Error) -> Self {
        LogError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

const ENOSPC: i32 = 28;
const EDQUOT: i32 = 122;

/// Attaches a path to an io::Result.
pub trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, LogError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, LogError> {
        self.map_err(|e| LogError::io(path, e))
    }
}
