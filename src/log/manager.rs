//! LogManager: every partition log in one log directory: loading them at start-up (with the
//! clean-shutdown marker and the directory's checkpoint files, as Kafka keeps them), creating
//! and deleting them, and the periodic flush, checkpoint and retention passes.
//!
//! Owns the directory layout above the partition level. Never parses requests or decides
//! which topics exist: the metadata registry tells it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;

use super::checkpoint::{self, Durability};
use super::config::LogConfig;
use super::dir_health::DirHealth;
use super::error::{IoContext, LogError};
use super::file_cache::FileCache;
use super::parallel;
use super::partition_log::{now_ms, PartitionLog};
use super::recovery::{LoadParams, RecoveryStats};

pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
const DELETE_DIR_SUFFIX: &str = "-delete";

/// Segment files kept open at most; the rest are reopened on demand.
pub const DEFAULT_OPEN_FILES: usize = 256;

pub type PartitionKey = (String, i32);

pub struct LogManager {
    dir: PathBuf,
    files: Arc<FileCache>,
    health: Arc<DirHealth>,
    logs: DashMap<PartitionKey, Arc<PartitionLog>>,
    /// What the checkpoint files hold now: unchanged offsets are not rewritten, because each
    /// rewrite fsyncs and an fsync stalls the appends sharing the filesystem journal.
    last_checkpoint: std::sync::Mutex<Option<CheckpointEntries>>,
}

/// Recovery points, log start offsets and high watermarks, one entry per partition each.
type CheckpointEntries = [Vec<(String, i32, i64)>; 3];

/// `<topic>-<partition>` as Kafka names a partition directory.
/// The metadata quorum's log directory (Kafka's name), which `cluster` owns.
pub const METADATA_LOG_DIR: &str = "__cluster_metadata-0";

pub fn partition_dir_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}")
}

fn parse_partition_dir(name: &str) -> Option<PartitionKey> {
    let (topic, p) = name.rsplit_once('-')?;
    Some((topic.to_string(), p.parse().ok()?)).filter(|(t, _)| !t.is_empty())
}

/// Removes files in a background thread (segments after retention, deleted topics).
pub fn remove_in_background(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("runnel-delete".into()).spawn(move || {
        for p in paths {
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            if let Err(e) = r {
                tracing::warn!(path = %p.display(), error = %e, "could not remove deleted log files");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the deletion thread; files stay until restart");
    }
}

impl LogManager {
    /// Opens (creating if needed) the log directory and loads every partition in it.
    /// `config_for` gives each topic's LogConfig.
    pub fn open(
        dir: &Path,
        open_files: usize,
        config_for: impl Fn(&str) -> LogConfig + Sync,
    ) -> Result<(Self, RecoveryStats), LogError> {
        std::fs::create_dir_all(dir).at(dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = marker.exists();
        let read = |file: &str| -> HashMap<(String, i32), i64> {
            checkpoint::read_partition_offsets(&dir.join(file))
                .unwrap_or_default()
                .into_iter()
                .map(|(t, p, offset)| ((t, p), offset))
                .collect()
        };
        let recovery_points = read(RECOVERY_POINT_FILE);
        let log_starts = read(LOG_START_FILE);
        let high_watermarks = read(HIGH_WATERMARK_FILE);
        let lookup = |map: &HashMap<(String, i32), i64>, t: &str, p: i32| {
            map.get(&(t.to_string(), p)).copied()
        };
        let manager = Self {
            dir: dir.to_path_buf(),
            files: Arc::new(FileCache::new(open_files)),
            health: Arc::new(DirHealth::default()),
            logs: DashMap::new(),
            last_checkpoint: std::sync::Mutex::new(None),
        };
        let mut partitions = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let path = entry.at(dir)?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !path.is_dir() {
                continue;
            }
            if name.ends_with(DELETE_DIR_SUFFIX) {
                remove_in_background(vec![path.clone()]);
                continue;
            }
            // The metadata log lives beside the partitions, as in Kafka, but is not one.
            if name == METADATA_LOG_DIR {
                continue;
            }
            if let Some((topic, partition)) = parse_partition_dir(name) {
                partitions.push((path, topic, partition));
            }
        }
        // Partitions load (and after a crash, recover) in parallel: with thousands of them
        // start-up time is this loop.
        let loaded = parallel::map(&partitions, parallel::io_threads(), |(path, topic, p)| {
            PartitionLog::load(LoadParams {
                dir: path.clone(),
                config: config_for(topic),
                files: manager.files.clone(),
                health: manager.health.clone(),
                clean_shutdown,
                recovery_point: lookup(&recovery_points, topic, *p).unwrap_or(0),
                log_start_offset: lookup(&log_starts, topic, *p).unwrap_or(0),
                high_watermark: lookup(&high_watermarks, topic, *p),
                topic: topic.clone(),
                partition: *p,
            })
        });
        let mut total = RecoveryStats::default();
        for ((_, topic, partition), r) in partitions.iter().zip(loaded) {
            let (log, s) = r?;
            total.segments_scanned += s.segments_scanned;
            total.bytes_truncated += s.bytes_truncated;
            total.segments_deleted += s.segments_deleted;
            manager
                .logs
                .insert((topic.clone(), *partition), Arc::new(log));
        }
        // From here on a crash is unclean until the next orderly shutdown.
        if clean_shutdown {
            std::fs::remove_file(&marker).at(&marker)?;
            checkpoint::sync_dir(dir)?;
        }
        // A full disk must not stop the broker from starting and serving what it has.
        if let Err(e) = manager.write_checkpoints() {
            tracing::warn!(error = %e, "could not write checkpoints at start-up");
        }
        Ok((manager, total))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn is_failed(&self) -> bool {
        self.health.is_failed()
    }
    pub fn is_full(&self) -> bool {
        self.health.is_full()
    }
    pub fn open_file_count(&self) -> usize {
        self.files.open_count()
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<PartitionLog>> {
        self.logs
            .get(&(topic.to_string(), partition))
            .map(|l| l.clone())
    }

    pub fn all(&self) -> Vec<Arc<PartitionLog>> {
        self.logs.iter().map(|e| e.value().clone()).collect()
    }

    /// Returns the partition's log, creating an empty one if there is none.
    pub fn get_or_create(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, LogError> {
        if let Some(log) = self.get(topic, partition) {
            return Ok(log);
        }
        let log = self.create(topic, partition, config)?;
        checkpoint::sync_dir(&self.dir)?;
        Ok(log)
    }

    /// Creates the logs of every partition given that has none, on several threads, with one
    /// fsync of the log directory for all of them (a CreateTopics of 40,000 partitions made
    /// one at a time took minutes). The results are in the order given; the outer error is the
    /// directory's fsync failing.
    pub fn create_missing(
        &self,
        partitions: &[(String, i32, LogConfig)],
    ) -> Result<Vec<Result<(), LogError>>, LogError> {
        let created = parallel::map(
            partitions,
            parallel::io_threads(),
            |(t, p, config)| match self.get(t, *p) {
                Some(_) => Ok(()),
                None => self.create(t, *p, config.clone()).map(|_| ()),
            },
        );
        checkpoint::sync_dir(&self.dir)?;
        Ok(created)
    }

    /// Creates an empty log (its directory entry not yet fsynced).
    fn create(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<PartitionLog>, LogError> {
        if self.is_failed() {
            return Err(LogError::DirectoryFailed(self.dir.display().to_string()));
        }
        let key = (topic.to_string(), partition);
        let dir = self.dir.join(partition_dir_name(topic, partition));
        let existed = dir.exists();
        let loaded = PartitionLog::load(LoadParams {
            dir: dir.clone(),
            topic: topic.to_string(),
            partition,
            config,
            files: self.files.clone(),
            health: self.health.clone(),
            clean_shutdown: true,
            recovery_point: 0,
            log_start_offset: 0,
            high_watermark: Some(0),
        });
        let (log, _) = match loaded {
            Ok(l) => l,
            Err(e) => {
                // A half-made new partition (directory, no index) is not left behind.
                if !existed {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        let log = Arc::new(log);
        Ok(self.logs.entry(key).or_insert(log).clone())
    }

    /// Removes a partition: its directory is renamed `*-delete` at once (a crash cannot bring
    /// it back) and removed in the background.
    pub fn delete(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        let Some((_, log)) = self.logs.remove(&(topic.to_string(), partition)) else {
            return Ok(());
        };
        log.close_for_delete();
        let from = log.dir().to_path_buf();
        let to = self.dir.join(format!(
            "{}.{}{DELETE_DIR_SUFFIX}",
            partition_dir_name(topic, partition),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::rename(&from, &to).at(&from)?;
        checkpoint::sync_dir(&self.dir)?;
        remove_in_background(vec![to]);
        Ok(())
    }

    /// DeleteRecords: moves the partition's log start offset and checkpoints it at once, so a
    /// crash cannot bring the deleted records back.
    pub fn delete_records(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<i64, LogError> {
        let log = self
            .get(topic, partition)
            .ok_or(LogError::OffsetOutOfRange {
                offset: before,
                log_start: 0,
                log_end: 0,
            })?;
        let (low_watermark, removed) = log.delete_records(before)?;
        self.checkpoint()?;
        remove_in_background(removed);
        Ok(low_watermark)
    }

    /// Writes the directory's recovery-point and log-start-offset checkpoints.
    pub fn checkpoint(&self) -> Result<(), LogError> {
        if self.is_failed() {
            return Ok(());
        }
        let r = self.write_checkpoints();
        match &r {
            // The files are replaced by rename: on a full disk the old ones stay whole, and
            // the next pass writes them again.
            Err(LogError::NoSpace { .. }) => self.health.note_full(&self.dir),
            Err(_) => self.health.fail(&self.dir),
            Ok(()) => {}
        }
        r
    }

    fn write_checkpoints(&self) -> Result<(), LogError> {
        let mut entries: CheckpointEntries = Default::default();
        for log in self.all() {
            let offsets = [
                log.recovery_point(),
                log.log_start_offset(),
                log.high_watermark(),
            ];
            for (list, offset) in entries.iter_mut().zip(offsets) {
                list.push((log.topic().to_string(), log.partition(), offset));
            }
        }
        for list in entries.iter_mut() {
            list.sort();
        }
        let mut last = self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let files = [RECOVERY_POINT_FILE, LOG_START_FILE, HIGH_WATERMARK_FILE];
        for (i, (file, list)) in files.iter().zip(&entries).enumerate() {
            if last.as_ref().is_none_or(|l| l[i] != *list) {
                checkpoint::write_partition_offsets(&self.dir.join(file), list)?;
            }
        }
        *last = Some(entries);
        Ok(())
    }

    /// One pass of `flush.ms`, retention and checkpoints; the broker runs it on a timer.
    pub fn maintain(&self, now: i64, run_retention: bool) {
        for log in self.all() {
            log.expire_producers(now);
            if let Err(e) = log.flush_if_due(now) {
                tracing::error!(topic = log.topic(), partition = log.partition(), error = %e, "flush failed");
            }
            if run_retention {
                match log.apply_retention(now) {
                    Ok(removed) => remove_in_background(removed),
                    Err(e) => {
                        tracing::error!(topic = log.topic(), partition = log.partition(), error = %e, "retention failed")
                    }
                }
            }
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "checkpoint failed");
        }
    }

    /// Orderly shutdown: flush and trim every log, write the checkpoints, then the marker that
    /// lets the next start skip recovery.
    pub fn shutdown(&self) -> Result<(), LogError> {
        // Every log is closed with its fsyncs deferred, then one syncfs makes all of it
        // durable before the clean-shutdown marker is written.
        self.files.set_durability(Durability::Deferred);
        let began = std::time::Instant::now();
        let logs = self.all();
        // The records appended since the last flush go to disk while the logs close (which is
        // mostly file-system work of the CPU): the last syncfs then has only what closing wrote.
        let (closed, early_sync) = std::thread::scope(|s| {
            let early = s.spawn(|| checkpoint::sync_file_system(&self.dir));
            let closed = parallel::map(&logs, parallel::io_threads(), |log| log.close())
                .into_iter()
                .collect::<Result<(), LogError>>();
            (closed, early.join())
        });
        if let Ok(Err(e)) = early_sync {
            tracing::warn!(error = %e, "syncfs while closing failed; the last one decides");
        }
        self.files.set_durability(Durability::Fsync);
        let closing = began.elapsed();
        // Even when a log failed to close (a full disk refusing its producer snapshot), what
        // the others wrote with their fsyncs deferred is made durable before giving up.
        let synced = checkpoint::sync_file_system(&self.dir);
        tracing::info!(
            partitions = logs.len(),
            closing_seconds = closing.as_secs_f64(),
            syncing_seconds = (began.elapsed() - closing).as_secs_f64(),
            "logs closed"
        );
        closed?;
        synced?;
        self.checkpoint()?;
        if self.is_failed() {
            return Err(LogError::DirectoryFailed(self.dir.display().to_string()));
        }
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        std::fs::write(&marker, b"").at(&marker)?;
        checkpoint::sync_dir(&self.dir)
    }

    pub fn now_ms() -> i64 {
        now_ms()
    }
}
