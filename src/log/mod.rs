//! The storage engine: partitions as directories of segment files with sparse offset and time
//! indexes, byte-compatible with Kafka's on-disk format.
//!
//! Owns every byte under the log directories. Never sees the wire or a request: callers hand in
//! record-batch bytes and get record-batch bytes back.
//!
//! | file | Kafka concept |
//! |---|---|
//! | `batch` | RecordBatch v2 header: validation, offset/epoch stamping |
//! | `segment` | LogSegment: `.log` + `.index` + `.timeindex` |
//! | `index`, `offset_index`, `time_index`, `mmap` | AbstractIndex, OffsetIndex, TimeIndex |
//! | `partition_log` | UnifiedLog: append, read, roll, flush, retention, truncation |
//! | `recovery` | LogLoader: start-up and crash recovery |
//! | `manager` | LogManager: a log directory, checkpoints, clean-shutdown marker |
//! | `dir_health` | LogDirFailureChannel: a directory offline after an I/O failure, or full |
//! | `checkpoint`, `epoch_cache` | OffsetCheckpointFile, LeaderEpochFileCache |
//! | `file_cache` | the bounded set of open segment files |
//! | `file_slice` | FileRecords: batches named by file position, sent without copying |
//! | `growth` | the fetch purgatory's keys: fetches waiting for a log to grow |
//! | `parallel` | start-up work spread over threads |
//! | `cleaner` | LogCleaner: compaction of `cleanup.policy=compact` logs |
//! | `codec` | decompression bounded by a limit (CompressionType's streams) |
//! | `records` | the records inside a batch (DefaultRecord framing), for the few who look |

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod codec;
pub mod config;
pub mod dir_health;
pub mod epoch_cache;
pub mod error;
pub mod file_cache;
pub mod file_slice;
pub mod growth;
pub mod index;
pub mod manager;
mod mmap;
pub mod offset_index;
pub mod parallel;
pub mod partition_log;
pub mod records;
pub mod recovery;
pub mod segment;
pub mod time_index;

pub use config::LogConfig;
pub use error::LogError;
pub use file_slice::FileSlice;
pub use manager::LogManager;
pub use partition_log::{AppendInfo, PartitionLog, ReadInfo};

/// Runs `f`, which may fsync, so that a tokio worker's other tasks move to another worker
/// meanwhile; outside a multi-threaded runtime (start-up, tests) it simply runs.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
