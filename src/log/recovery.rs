//! LogLoader: opens a partition directory at start-up. After a clean shutdown the segments and
//! their trimmed indexes are trusted (an index that fails its sanity check is rebuilt). After a
//! crash every segment from the recovery point on is scanned batch by batch: the log is cut at
//! the first invalid byte and every later segment is deleted. A cleaner swap interrupted after
//! its commit point (`.swap` files) is finished first.
//!
//! Owns start-up only; never runs while the log serves requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use super::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::config::LogConfig;
use super::dir_health::DirHealth;
use super::epoch_cache::LeaderEpochCache;
use super::error::{IoContext, LogError};
use super::file_cache::FileCache;
use super::partition_log::now_ms;
use super::partition_log::{PartitionLog, WriterState};
use super::segment::{self, with_tail, Segment, CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX};
use crate::producer::state::{self as producer_state, ProducerStateManager};

/// What the directory-level loader knows about one partition.
pub struct LoadParams {
    pub dir: PathBuf,
    pub topic: String,
    pub partition: i32,
    pub config: LogConfig,
    pub files: Arc<FileCache>,
    pub health: Arc<DirHealth>,
    pub clean_shutdown: bool,
    pub recovery_point: i64,
    pub log_start_offset: i64,
    /// The checkpointed high watermark (`replication-offset-checkpoint`); None: not known, so
    /// the log start (as Kafka assumes). A leader alone in its ISR moves it to the log end at
    /// once; otherwise followers' fetches move it.
    pub high_watermark: Option<i64>,
}

/// What recovery did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryStats {
    pub segments_scanned: usize,
    pub bytes_truncated: u64,
    pub segments_deleted: usize,
}

fn is_leftover(name: &str) -> bool {
    name.ends_with(DELETED_SUFFIX) || name.ends_with(".tmp") || name.ends_with(CLEANED_SUFFIX)
}

/// The offset after the last whole batch of a file (`base` when it holds none).
fn next_offset_of(path: &Path, base: i64) -> Result<i64, LogError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).at(path)?;
    let len = file.metadata().at(path)?.len();
    let (mut position, mut next) = (0u64, base);
    let mut header = [0u8; HEADER_LEN];
    while position + HEADER_LEN as u64 <= len {
        file.read_exact_at(&mut header, position).at(path)?;
        let Ok(h) = BatchHeader::parse(&header) else {
            break;
        };
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32
            || position + h.total_len() as u64 > len
        {
            break;
        }
        next = h.next_offset();
        position += h.total_len() as u64;
    }
    Ok(next)
}

/// Finishes a cleaner swap that passed its commit point: the segments the cleaned one covers
/// go, its files take their final names. Old segments past the cleaned one's last batch may
/// stay; every record in them has a later version, so keeping them loses nothing.
fn complete_swap(dir: &Path, base: i64, bases: &mut Vec<i64>) -> Result<(), LogError> {
    let log_swap = with_tail(
        &segment::file_name(dir, base, segment::LOG_SUFFIX),
        SWAP_SUFFIX,
    );
    let next = next_offset_of(&log_swap, base)?;
    let mut kept = Vec::with_capacity(bases.len());
    for b in bases.drain(..) {
        if b >= base && b < next.max(base + 1) {
            remove_segment_files(dir, b)?;
        } else {
            kept.push(b);
        }
    }
    *bases = kept;
    for suffix in segment::FILE_SUFFIXES {
        let to = segment::file_name(dir, base, suffix);
        let from = with_tail(&to, SWAP_SUFFIX);
        if from.exists() {
            std::fs::rename(&from, &to).at(&from)?;
        } else {
            // Rebuilt by the scan that follows.
            remove_if_present(&to)?;
        }
    }
    bases.push(base);
    tracing::info!(dir = %dir.display(), base, next, "finished an interrupted cleaner swap");
    Ok(())
}

/// Base offsets of the segments in `dir`, after removing leftovers of interrupted work and
/// finishing interrupted swaps.
fn list_segments(dir: &Path) -> Result<(Vec<i64>, Vec<i64>), LogError> {
    let mut bases = Vec::new();
    let mut snapshots = Vec::new();
    let mut indexes = Vec::new();
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if is_leftover(&name) {
            remove_if_present(&path)?;
            continue;
        }
        if let Some(stem) = name.strip_suffix(SWAP_SUFFIX) {
            swaps.push((stem.to_string(), path));
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match ext {
            segment::LOG_SUFFIX => bases.push(base),
            segment::INDEX_SUFFIX | segment::TIME_INDEX_SUFFIX => indexes.push((base, path)),
            producer_state::SNAPSHOT_SUFFIX => snapshots.push(base),
            _ => {}
        }
    }
    for (stem, _) in &swaps {
        if let Some((b, segment::LOG_SUFFIX)) = stem.split_once('.') {
            if let Ok(base) = b.parse() {
                complete_swap(dir, base, &mut bases)?;
            }
        }
    }
    // Whatever `.swap` is left had no `.log.swap` beside it: that swap never committed.
    for (_, path) in &swaps {
        remove_if_present(path)?;
    }
    bases.sort_unstable();
    for (base, path) in indexes {
        if bases.binary_search(&base).is_err() {
            remove_if_present(&path)?;
        }
    }
    snapshots.sort_unstable();
    Ok((bases, snapshots))
}

/// A background deletion may have removed the file first.
fn remove_if_present(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io(path, e)),
        _ => Ok(()),
    }
}

fn remove_segment_files(dir: &Path, base: i64) -> Result<(), LogError> {
    for suffix in [
        segment::LOG_SUFFIX,
        segment::INDEX_SUFFIX,
        segment::TIME_INDEX_SUFFIX,
    ] {
        remove_if_present(&segment::file_name(dir, base, suffix))?;
    }
    Ok(())
}

/// The producer state at `log_end`: the newest readable snapshot at or below it, plus every
/// batch after the snapshot. Snapshots beyond the log end (left by a truncation) are removed.
/// After a clean shutdown, no snapshot at all means no producers (a clean close writes one
/// whenever there are any), so nothing is scanned, as Kafka's loader does.
fn rebuild_producer_state(
    dir: &Path,
    snapshots: &[i64],
    segments: &BTreeMap<i64, Arc<Segment>>,
    clean_shutdown: bool,
    (log_start, log_end): (i64, i64),
) -> Result<ProducerStateManager, LogError> {
    if clean_shutdown && snapshots.is_empty() {
        return Ok(ProducerStateManager::default());
    }
    let mut from = log_start;
    let mut state = ProducerStateManager::default();
    for &offset in snapshots.iter().rev() {
        let path = producer_state::snapshot_path(dir, offset);
        if offset > log_end {
            remove_if_present(&path)?;
            continue;
        }
        match ProducerStateManager::read_snapshot(&path) {
            Ok(s) => {
                state = s;
                from = offset;
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable producer snapshot");
                remove_if_present(&path)?;
            }
        }
    }
    let now = now_ms();
    let start_base = segments
        .range(..=from)
        .next_back()
        .map_or(i64::MIN, |(b, _)| *b);
    for seg in segments.range(start_base..).map(|(_, s)| s) {
        seg.for_each_batch_from(from, |h| {
            if h.base_offset >= from {
                state.update(h, now);
            }
        })?;
    }
    Ok(state)
}

impl PartitionLog {
    /// Creates or opens the partition log in `p.dir`, recovering it as needed.
    pub fn load(p: LoadParams) -> Result<(PartitionLog, RecoveryStats), LogError> {
        std::fs::create_dir_all(&p.dir).at(&p.dir)?;
        let seg_cfg = Self::segment_config(&p.config);
        // One directory listing for segments and producer snapshots: at start-up it is done
        // once per partition, tens of thousands of times.
        let (bases, snapshots) = list_segments(&p.dir)?;
        let mut stats = RecoveryStats::default();
        // Unclean: scan from the segment that holds the recovery point.
        let scan_from = if p.clean_shutdown {
            i64::MAX
        } else {
            bases
                .iter()
                .copied()
                .filter(|b| *b <= p.recovery_point)
                .max()
                .unwrap_or(i64::MIN)
        };
        let mut segments = BTreeMap::new();
        let mut expected_next = None;
        let mut epoch_starts = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let trusted = if base < scan_from {
                Segment::open(&p.dir, base, p.files.clone(), seg_cfg, last)?
            } else {
                None
            };
            let (seg, truncated) = match trusted {
                Some(seg) => (seg, false),
                None => {
                    let seg = Segment::open_for_recovery(&p.dir, base, p.files.clone(), seg_cfg)?;
                    let outcome = seg.recover(p.config.max_message_bytes)?;
                    stats.segments_scanned += 1;
                    stats.bytes_truncated += outcome.truncated_bytes;
                    epoch_starts.extend(outcome.epoch_starts);
                    // Not flushed here (one fsync per partition made restarts of thousands
                    // slow): the recovery point stays where it was, as Kafka's LogLoader
                    // keeps it, so a second crash scans this segment again.
                    if !last {
                        seg.seal()?;
                    }
                    (seg, outcome.truncated_bytes > 0)
                }
            };
            // A segment that starts before the previous one ended overlaps it: treat it as
            // the first invalid byte of the log.
            if expected_next.is_some_and(|n| base < n) {
                remove_segment_files(&p.dir, base)?;
                stats.segments_deleted += 1;
                continue;
            }
            expected_next = Some(seg.next_offset());
            seg.close_handle();
            segments.insert(base, Arc::new(seg));
            if truncated {
                for &later in &bases[i + 1..] {
                    remove_segment_files(&p.dir, later)?;
                    stats.segments_deleted += 1;
                }
                break;
            }
        }
        // The last segment loaded must be writable; if recovery cut the log at a sealed one,
        // reopen it for appending.
        if let Some((&base, seg)) = segments.iter().next_back() {
            if !seg.offset_index().is_writable() {
                seg.seal()?;
                let reopened = Segment::open(&p.dir, base, p.files.clone(), seg_cfg, true)?
                    .ok_or_else(|| LogError::CorruptFile {
                        path: seg.log_path().display().to_string(),
                        reason: "unreadable after recovery".into(),
                    })?;
                segments.insert(base, Arc::new(reopened));
            }
        }
        if segments.is_empty() {
            let start = p.log_start_offset.max(0);
            segments.insert(
                start,
                Arc::new(Segment::create(&p.dir, start, p.files.clone(), seg_cfg)?),
            );
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_end = segments.values().next_back().map_or(0, |s| s.next_offset());
        let log_start = p.log_start_offset.max(first_base).min(log_end);
        let producers = rebuild_producer_state(
            &p.dir,
            &snapshots,
            &segments,
            p.clean_shutdown,
            (log_start, log_end),
        )?;
        let mut epochs = LeaderEpochCache::load(&p.dir, log_end)?;
        if log_start < log_end && epochs.wants_first() {
            let first = segments
                .range(..=log_start)
                .next_back()
                .map(|(_, s)| s.find_batch(log_start))
                .transpose()?
                .flatten();
            if let Some(b) = first {
                epochs.begin(b.header.partition_leader_epoch, log_start);
            }
        }
        for (epoch, start) in epoch_starts {
            if start < log_end {
                epochs.begin(epoch, start);
            }
        }
        if stats.segments_scanned > 0 {
            // Debug: the start-up summary counts them; a line each would be 50,000 lines.
            tracing::debug!(topic = %p.topic, partition = p.partition, ?stats, log_end, "recovered partition log");
        }
        // Only a flush moves the recovery point past what was flushed before the crash.
        let recovery_point = if p.clean_shutdown {
            log_end
        } else {
            p.recovery_point.clamp(log_start, log_end)
        };
        let log = PartitionLog {
            dir: p.dir,
            topic: p.topic,
            partition: p.partition,
            config: RwLock::new(Arc::new(p.config)),
            files: p.files,
            segments: RwLock::new(segments),
            writer: Mutex::new(WriterState {
                epochs,
                unflushed_messages: 0,
                first_unflushed_ms: None,
                producers,
            }),
            log_start_offset: AtomicI64::new(log_start),
            log_end_offset: AtomicI64::new(log_end),
            high_watermark: AtomicI64::new(
                p.high_watermark
                    .map_or(log_start, |hw| hw.clamp(log_start, log_end)),
            ),
            hw_follows_end: AtomicBool::new(true),
            recovery_point: AtomicI64::new(recovery_point),
            synced_to: AtomicI64::new(recovery_point),
            health: p.health,
            deleting: AtomicBool::new(false),
            growth: Default::default(),
            snapshots_on_disk: AtomicBool::new(!snapshots.is_empty()),
            truncations: AtomicU64::new(0),
        };
        Ok((log, stats))
    }
}
