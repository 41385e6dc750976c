//! LogCleanerManager: which compacted log is cleaned next and where each one's dirty section
//! starts. The first dirty offsets are kept in `cleaner-offset-checkpoint` in the log directory
//! (Kafka's file and format), so a restart does not clean everything again.
//!
//! Owns the checkpoint, the choice of the filthiest log and the set of logs being cleaned.
//! Never cleans: `clean` does.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::log::checkpoint;
use crate::log::manager::PartitionKey;
use crate::log::partition_log::PartitionLog;

pub const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// A log chosen for cleaning, and the section that is dirty.
pub struct LogToClean {
    pub log: Arc<PartitionLog>,
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    pub dirty_ratio: f64,
}

impl LogToClean {
    pub fn key(&self) -> PartitionKey {
        (self.log.topic().to_string(), self.log.partition())
    }
}

#[derive(Default)]
struct State {
    first_dirty: HashMap<PartitionKey, i64>,
    in_progress: HashSet<PartitionKey>,
    /// The earliest delete horizon of the tombstones in each log; absent: not known yet.
    horizons: HashMap<PartitionKey, Option<i64>>,
    /// Logs whose last cleaning failed, and when they may be tried again.
    failed_until: HashMap<PartitionKey, i64>,
}

pub struct CleanerManager {
    checkpoint: PathBuf,
    state: Mutex<State>,
}

/// Where one log's dirty section is, and how dirty it is.
struct Dirt {
    first_dirty: i64,
    first_uncleanable: i64,
    dirty_bytes: u64,
    ratio: f64,
    /// The first dirty segment's first timestamp (-1: none).
    first_dirty_timestamp: i64,
}

/// The dirty section of `log`, given the checkpointed first dirty offset: from there to the
/// first uncleanable offset (the active segment, the high watermark, or the first segment
/// younger than `min.compaction.lag.ms`).
fn dirt(log: &PartitionLog, checkpointed: Option<i64>, now: i64) -> Dirt {
    let config = log.config();
    let segments = log.segments_snapshot();
    let active_base = segments.last().map_or(0, |s| s.base_offset());
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    // A checkpoint beyond the log end belongs to a log since truncated or recreated.
    let first_dirty = checkpointed
        .filter(|c| *c <= end)
        .map_or(start, |c| c.max(start));
    let too_young = (config.min_compaction_lag_ms > 0)
        .then(|| {
            segments
                .iter()
                .find(|s| s.max_timestamp() > now.saturating_sub(config.min_compaction_lag_ms))
                .map(|s| s.base_offset())
        })
        .flatten()
        .unwrap_or(i64::MAX);
    let first_uncleanable = active_base
        .min(log.high_watermark())
        .min(too_young)
        .max(first_dirty);
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let clean_bytes: u64 = sealed
        .iter()
        .filter(|s| s.next_offset() <= first_dirty)
        .map(|s| s.size())
        .sum();
    let dirty: Vec<_> = sealed
        .iter()
        .filter(|s| s.next_offset() > first_dirty && s.base_offset() < first_uncleanable)
        .collect();
    let dirty_bytes: u64 = dirty.iter().map(|s| s.size()).sum();
    let total = clean_bytes + dirty_bytes;
    Dirt {
        first_dirty,
        first_uncleanable,
        dirty_bytes,
        ratio: if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        },
        first_dirty_timestamp: dirty.first().map_or(-1, |s| s.first_timestamp()),
    }
}

impl CleanerManager {
    /// Reads the directory's checkpoint (a missing or unreadable one: everything is dirty).
    pub fn load(dir: &Path) -> Self {
        let path = dir.join(CHECKPOINT_FILE);
        let first_dirty = checkpoint::read_partition_offsets(&path)
            .unwrap_or_else(|e| {
                if path.exists() {
                    tracing::warn!(error = %e, "ignoring an unreadable cleaner checkpoint");
                }
                Vec::new()
            })
            .into_iter()
            .map(|(t, p, o)| ((t, p), o))
            .collect();
        Self {
            checkpoint: path,
            state: Mutex::new(State {
                first_dirty,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn first_dirty(&self, key: &PartitionKey) -> Option<i64> {
        self.lock().first_dirty.get(key).copied()
    }

    /// Picks the compacted log most worth cleaning (Kafka's grabFilthiestCompactedLog) and
    /// marks it in progress: the highest dirty ratio among those at or past
    /// `min.cleanable.dirty.ratio`, or with records older than `max.compaction.lag.ms`, or
    /// with tombstones past their delete horizon.
    pub fn grab_filthiest(&self, logs: &[Arc<PartitionLog>], now: i64) -> Option<LogToClean> {
        let mut state = self.lock();
        let live: HashSet<PartitionKey> = logs
            .iter()
            .map(|l| (l.topic().to_string(), l.partition()))
            .collect();
        state.first_dirty.retain(|k, _| live.contains(k));
        state.horizons.retain(|k, _| live.contains(k));
        let mut best: Option<(f64, LogToClean)> = None;
        for log in logs {
            let config = log.config();
            if !config.is_compacted() {
                continue;
            }
            let key = (log.topic().to_string(), log.partition());
            if state.in_progress.contains(&key)
                || state.failed_until.get(&key).is_some_and(|t| now < *t)
            {
                continue;
            }
            let d = dirt(log, state.first_dirty.get(&key).copied(), now);
            let horizon = match state.horizons.get(&key) {
                Some(h) => *h,
                None => {
                    let h =
                        super::clean::earliest_delete_horizon(log, d.first_dirty).unwrap_or(None);
                    state.horizons.insert(key.clone(), h);
                    h
                }
            };
            let overdue = config.max_compaction_lag_ms < i64::MAX
                && d.first_dirty_timestamp >= 0
                && now.saturating_sub(d.first_dirty_timestamp) > config.max_compaction_lag_ms;
            let tombstones_due = horizon.is_some_and(|h| now >= h);
            let due = (d.dirty_bytes > 0
                && (d.ratio >= config.min_cleanable_dirty_ratio || overdue))
                || tombstones_due;
            if !due {
                continue;
            }
            // Overdue and tombstone-due logs come first, then the dirtiest.
            let rank = if overdue || tombstones_due {
                1.0 + d.ratio
            } else {
                d.ratio
            };
            if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                best = Some((
                    rank,
                    LogToClean {
                        log: log.clone(),
                        first_dirty: d.first_dirty,
                        first_uncleanable: d.first_uncleanable,
                        dirty_ratio: d.ratio,
                    },
                ));
            }
        }
        let (_, chosen) = best?;
        state.in_progress.insert(chosen.key());
        Some(chosen)
    }

    /// Records a finished cleaning: the new first dirty offset (checkpointed at once) and when
    /// its tombstones are next due.
    pub fn done(&self, key: &PartitionKey, end_offset: i64, next_horizon: Option<i64>) {
        let entries = {
            let mut state = self.lock();
            state.in_progress.remove(key);
            state.failed_until.remove(key);
            state.first_dirty.insert(key.clone(), end_offset);
            state.horizons.insert(key.clone(), next_horizon);
            let mut entries: Vec<(String, i32, i64)> = state
                .first_dirty
                .iter()
                .map(|((t, p), o)| (t.clone(), *p, *o))
                .collect();
            entries.sort();
            entries
        };
        if let Err(e) = checkpoint::write_partition_offsets(&self.checkpoint, &entries) {
            tracing::warn!(error = %e, "could not write the cleaner checkpoint");
        }
    }

    /// Releases a log whose cleaning stopped; a failed one waits `retry_after_ms`.
    pub fn abandon(&self, key: &PartitionKey, retry_after_ms: Option<i64>) {
        let mut state = self.lock();
        state.in_progress.remove(key);
        if let Some(t) = retry_after_ms {
            state.failed_until.insert(key.clone(), t);
        }
    }
}
