//! PartitionLog: one partition's ordered segments (Kafka's UnifiedLog): offsets, appends, reads,
//! rolling, flushing, truncation, the log start offset and the high watermark.
//!
//! Owns the single-writer discipline: appends serialise on one lock; reads take a snapshot of
//! the segment list and never wait for an append. Never sees the wire: the broker hands it
//! record-batch bytes and gets bytes back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::batch::{self, BatchHeader};
use super::checkpoint::{self, Durability};
use super::config::LogConfig;
use super::dir_health::DirHealth;
use super::epoch_cache::LeaderEpochCache;
use super::error::LogError;
use super::file_cache::FileCache;
use super::file_slice::FileSlice;
use super::growth::GrowthWaiters;
use super::segment::{Segment, SegmentConfig};
use crate::producer::state::{self, Check, ProducerStateManager};

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The broker time stamped into LogAppendTime batches, -1 for CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
    /// `flush.messages` is reached: the append is not durable until the caller flushes (the
    /// broker does it as group commit, one fsync for every append that waits on it).
    pub flush_due: bool,
}

/// What a read returned, with the offsets a fetch response reports.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    pub records: Option<FileSlice>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// What an append is about to add, for the roll decision.
#[derive(Debug, Clone, Copy)]
struct Incoming {
    bytes: u64,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
}

/// State only the writer touches.
pub(super) struct WriterState {
    pub(super) epochs: LeaderEpochCache,
    /// Messages appended since the last fsync (for `flush.messages`).
    pub(super) unflushed_messages: u64,
    /// When the oldest unflushed append happened (for `flush.ms`), ms since the epoch.
    pub(super) first_unflushed_ms: Option<i64>,
    /// Idempotent producers' epochs and recent batches on this partition.
    pub(super) producers: ProducerStateManager,
}

pub struct PartitionLog {
    pub(super) dir: PathBuf,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) config: RwLock<Arc<LogConfig>>,
    pub(super) files: Arc<FileCache>,
    pub(super) segments: RwLock<BTreeMap<i64, Arc<Segment>>>,
    pub(super) writer: Mutex<WriterState>,
    pub(super) log_start_offset: AtomicI64,
    pub(super) log_end_offset: AtomicI64,
    pub(super) high_watermark: AtomicI64,
    /// Set while this replica leads with an ISR of itself alone: an append is committed as
    /// soon as it is written. Otherwise followers' fetches move the high watermark.
    pub(super) hw_follows_end: AtomicBool,
    /// Everything below this offset is known to be on disk (fsynced), indexes and epochs too.
    pub(super) recovery_point: AtomicI64,
    /// The records below this offset are fsynced in their segment files (their indexes and
    /// epochs may not be: a restart rebuilds those past the recovery point). What durable acks
    /// wait on.
    pub(super) synced_to: AtomicI64,
    /// Counts truncations (under the writer lock), so a sync that ran across one does not
    /// claim offsets the truncation gave back.
    pub(super) truncations: AtomicU64,
    /// Shared by every log in the directory: failed on an I/O failure, after which nothing is
    /// written there (Kafka takes the log directory offline); full while writes find no space.
    pub(super) health: Arc<DirHealth>,
    /// Set (under the writer lock) when the partition is being deleted: its directory is
    /// about to be renamed away, so the cleaner must not swap files in it.
    pub(super) deleting: AtomicBool,
    /// Fetches waiting for the log end or the high watermark to move.
    pub(super) growth: GrowthWaiters,
    /// Whether producer snapshots may be on disk (false only when none were found at load and
    /// none written since). A clean shutdown writes none for a log without producers while
    /// this is false, and the next load takes "clean, no snapshot" as "no producers".
    pub(super) snapshots_on_disk: AtomicBool,
}

/// Renames a file to `*.deleted` so no listing sees it again; the caller removes it later.
fn retire(path: &Path) -> Result<PathBuf, LogError> {
    let to = super::segment::with_tail(path, super::segment::DELETED_SUFFIX);
    std::fs::rename(path, &to).map_err(|e| LogError::io(path, e))?;
    Ok(to)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PartitionLog {
    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn partition(&self) -> i32 {
        self.partition
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> Arc<LogConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    pub fn set_config(&self, config: LogConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// The records below this offset are fsynced (see `sync_records`).
    pub fn synced_to(&self) -> i64 {
        self.synced_to.load(Ordering::Acquire)
    }
    /// Followers' fetches (on the leader) or the leader's answers (on a follower) move this;
    /// it never passes the log end. Returns whether it moved.
    pub fn set_high_watermark(&self, hw: i64) -> bool {
        let hw = hw.min(self.log_end_offset());
        let moved = self.high_watermark.swap(hw, Ordering::AcqRel) != hw;
        if moved {
            self.growth.wake();
        }
        moved
    }

    /// Wakes `waiter` (once) when the log end or the high watermark next moves: a long-polling
    /// fetch registers before it reads.
    pub fn wake_on_growth(&self, waiter: &Arc<tokio::sync::Notify>) {
        self.growth.register(waiter);
    }

    pub fn hw_follows_end(&self) -> bool {
        self.hw_follows_end.load(Ordering::Acquire)
    }

    /// See `hw_follows_end`; turning it on brings the high watermark to the log end at once.
    pub fn set_hw_follows_end(&self, on: bool) {
        let _writer = self.lock_writer();
        self.hw_follows_end.store(on, Ordering::Release);
        if on {
            let end = self.log_end_offset();
            if self.high_watermark.swap(end, Ordering::AcqRel) != end {
                self.growth.wake();
            }
        }
    }

    pub(super) fn segment_config(config: &LogConfig) -> SegmentConfig {
        SegmentConfig {
            index_interval_bytes: config.index_interval_bytes,
            max_index_bytes: config.segment_index_bytes,
        }
    }

    pub(super) fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn active(&self) -> Option<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .next_back()
            .cloned()
    }

    pub fn segment_count(&self) -> usize {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Total bytes of all segments.
    pub fn size(&self) -> u64 {
        self.segments_snapshot().iter().map(|s| s.size()).sum()
    }

    pub(super) fn lock_writer(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log directory this partition's directory lives in.
    fn log_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    fn check_dir(&self) -> Result<(), LogError> {
        if self.health.is_failed() {
            return Err(LogError::DirectoryFailed(
                self.log_dir().display().to_string(),
            ));
        }
        Ok(())
    }

    /// Any I/O failure while writing takes the whole directory offline; so does a full disk,
    /// except where `unless_full` is used.
    pub(super) fn fail_on_io<T>(&self, r: Result<T, LogError>) -> Result<T, LogError> {
        if let Err(LogError::Io { .. } | LogError::NoSpace { .. }) = &r {
            self.health.fail(self.log_dir());
        }
        r
    }

    /// For the steps of an append, each of which leaves the log as it was when it finds no
    /// space (the segment cuts what it wrote; a roll stops where it can be taken up again):
    /// a full disk fails the append alone, and appends resume once space returns.
    fn unless_full<T>(&self, r: Result<T, LogError>) -> Result<T, LogError> {
        match r {
            Err(LogError::NoSpace { path }) => {
                self.health.note_full(self.log_dir());
                Err(LogError::NoSpace { path })
            }
            r => self.fail_on_io(r),
        }
    }

    /// Checks the batches a producer sent, assigns offsets, stamps them and appends them.
    /// Nothing is written unless every batch is valid.
    pub fn append(
        &self,
        records: impl Into<bytes::Bytes>,
        leader_epoch: i32,
    ) -> Result<AppendInfo, LogError> {
        let records: bytes::Bytes = records.into();
        self.check_dir()?;
        let config = self.config();
        let mut batches: Vec<(std::ops::Range<usize>, BatchHeader)> = Vec::new();
        let mut at = 0usize;
        while at < records.len() {
            let len = batch::peek_total_len(&records[at..])
                .ok_or(LogError::CorruptBatch("truncated batch"))?;
            if len > config.max_message_bytes {
                return Err(LogError::MessageTooLarge {
                    size: len,
                    max: config.max_message_bytes,
                });
            }
            let end = at
                .checked_add(len)
                .filter(|e| *e <= records.len())
                .ok_or(LogError::CorruptBatch("truncated batch"))?;
            let h = batch::verify_from_producer(&records[at..end])?;
            if h.record_count > config.max_batch_records {
                return Err(LogError::TooManyRecords {
                    count: h.record_count,
                    max: config.max_batch_records,
                });
            }
            batches.push((at..end, h));
            at = end;
        }
        if batches.is_empty() {
            return Err(LogError::CorruptBatch("no record batch"));
        }
        let keyless = batch::inspect_records(
            &records,
            &batches,
            config.max_decompressed_bytes,
            config.is_compacted(),
        )?;
        if !keyless.is_empty() {
            return Err(LogError::KeylessRecords(keyless));
        }
        let idempotent = batches.iter().any(|(_, h)| h.has_producer_id());
        if idempotent && batches.len() > 1 {
            return Err(LogError::InvalidRecord(
                "an idempotent produce carries exactly one batch per partition",
            ));
        }
        let mut writer = self.lock_writer();
        self.check_dir()?;
        if let Some((_, h)) = batches.iter().find(|(_, h)| h.has_producer_id()) {
            if let Check::Duplicate(original) = writer.producers.check(h)? {
                // A retry of a batch already in the log: the original offsets, nothing appended.
                return Ok(AppendInfo {
                    base_offset: original.base_offset,
                    last_offset: original.last_offset,
                    log_append_time: -1,
                    log_start_offset: self.log_start_offset(),
                    // Its first append may still wait on its fsync: this answer must too.
                    flush_due: config.flush_messages.is_some()
                        && self.synced_to() <= original.last_offset,
                });
            }
        }
        let base_offset = self.log_end_offset();
        let append_time = if config.log_append_time { now_ms() } else { -1 };
        // LogAppendTime rewrites timestamps inside the CRC: only then are the bytes copied.
        let mut rewritten = config.log_append_time.then(|| records.to_vec());
        let mut next = base_offset;
        let mut messages = 0u64;
        let mut max_timestamp = -1i64;
        for (range, h) in batches.iter_mut() {
            if let Some(bytes) = rewritten.as_mut().map(|b| &mut b[range.clone()]) {
                batch::stamp_log_append_time(bytes, append_time);
                *h = BatchHeader::parse(bytes)?;
            }
            // The offsets and epoch go to the file from the header (`append_stamped`).
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            next = h.next_offset();
            messages += h.record_count as u64;
            max_timestamp = max_timestamp.max(h.max_timestamp);
        }
        let incoming = Incoming {
            bytes: records.len() as u64,
            base_offset,
            last_offset: next - 1,
            max_timestamp,
        };
        writer.epochs.begin(leader_epoch, base_offset);
        let active = self.unless_full(self.maybe_roll(&config, incoming, &writer))?;
        let bytes = rewritten.as_deref().unwrap_or(&records);
        self.unless_full(active.append_stamped(bytes, &batches))?;
        self.health.note_written(self.log_dir());
        let now = now_ms();
        for (_, h) in &batches {
            writer.producers.update(h, now);
        }
        self.log_end_offset.store(next, Ordering::Release);
        if self.hw_follows_end.load(Ordering::Acquire) {
            self.high_watermark.store(next, Ordering::Release);
        }
        let flush_due = self.count_unflushed(&mut writer, messages, &config);
        drop(writer);
        self.growth.wake();
        Ok(AppendInfo {
            base_offset,
            last_offset: next - 1,
            log_append_time: append_time,
            log_start_offset: self.log_start_offset(),
            flush_due,
        })
    }

    /// Appends a leader's batches as they are (a follower's fetch): offsets and leader epochs
    /// stay the leader's. The batches must start at or after this log's end, each after the
    /// one before; gaps are normal where the leader's cleaner removed batches. A trailing
    /// partial batch (a fetch cut at its byte limit) is ignored. Returns the new log end
    /// offset.
    pub fn append_replicated(&self, records: &[u8], fetched_in: i32) -> Result<i64, LogError> {
        self.check_dir()?;
        let config = self.config();
        let mut writer = self.lock_writer();
        Self::check_follower(&writer, fetched_in)?;
        let mut next = self.log_end_offset();
        let mut batches: Vec<(std::ops::Range<usize>, BatchHeader)> = Vec::new();
        let mut at = 0usize;
        while let Some(len) = records.get(at..).and_then(batch::peek_total_len) {
            let Some(bytes) = records.get(at..at + len) else {
                break;
            };
            let h = batch::verify(bytes)?;
            if h.base_offset < next {
                return Err(LogError::InvalidRecord(
                    "replicated batch starts before the log end",
                ));
            }
            next = h.next_offset();
            batches.push((at..at + len, h));
            at += len;
        }
        let Some(first) = batches.first().map(|(_, h)| *h) else {
            return Ok(next);
        };
        let end = at;
        let incoming = Incoming {
            bytes: end as u64,
            base_offset: first.base_offset,
            last_offset: next - 1,
            max_timestamp: batches
                .iter()
                .map(|(_, h)| h.max_timestamp)
                .max()
                .unwrap_or(-1),
        };
        for (_, h) in &batches {
            writer.epochs.begin(h.partition_leader_epoch, h.base_offset);
        }
        let active = self.unless_full(self.maybe_roll(&config, incoming, &writer))?;
        self.unless_full(active.append(&records[..end], &batches))?;
        self.health.note_written(self.log_dir());
        let now = now_ms();
        let mut messages = 0u64;
        for (_, h) in &batches {
            writer.producers.update(h, now);
            messages += h.record_count.max(0) as u64;
        }
        self.log_end_offset.store(next, Ordering::Release);
        if self.count_unflushed(&mut writer, messages, &config) {
            self.flush_locked(&mut writer)?;
        }
        Ok(next)
    }

    /// Counts appended messages toward `flush.messages`: whether it is reached.
    fn count_unflushed(&self, writer: &mut WriterState, messages: u64, config: &LogConfig) -> bool {
        writer.unflushed_messages += messages;
        writer.first_unflushed_ms.get_or_insert_with(now_ms);
        config
            .flush_messages
            .is_some_and(|n| writer.unflushed_messages >= n)
    }

    /// Follower changes (appends, truncations) are made for a fetch sent in one leader epoch;
    /// once this log has begun a later epoch as leader (`begin_epoch`), a response that arrives
    /// late must not append to or truncate the leader's log.
    fn check_follower(writer: &WriterState, fetched_in: i32) -> Result<(), LogError> {
        match writer.epochs.latest_epoch() {
            Some(current) if current > fetched_in => Err(LogError::FencedLeaderEpoch {
                fetched_in,
                current,
            }),
            _ => Ok(()),
        }
    }

    /// Starts `epoch` at the log end (a replica becoming leader), so followers of an older
    /// epoch find where their logs diverge even before the new leader appends anything.
    pub fn begin_epoch(&self, epoch: i32) -> Result<(), LogError> {
        self.check_dir()?;
        let mut writer = self.lock_writer();
        writer.epochs.begin(epoch, self.log_end_offset());
        Ok(())
    }

    /// The end offset of `epoch` as this log knows it (OffsetForLeaderEpoch): the largest
    /// epoch at or below it, and where the next one begins (the log end for the latest).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.lock_writer()
            .epochs
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Rolls to a new segment when the active one is full, too old, or its index is full;
    /// returns the segment to append to.
    /// As Kafka's LogSegment.shouldRoll, `segment.ms` compares record timestamps: the
    /// incoming batches' against the first batch of the active segment.
    fn maybe_roll(
        &self,
        config: &LogConfig,
        incoming: Incoming,
        writer: &WriterState,
    ) -> Result<Arc<Segment>, LogError> {
        let active = self
            .active()
            .ok_or(LogError::CorruptBatch("log has no segment"))?;
        if active.is_empty() {
            return Ok(active);
        }
        let too_big = active.size() + incoming.bytes > config.segment_bytes;
        let too_old = active.first_timestamp() >= 0
            && incoming
                .max_timestamp
                .saturating_sub(active.first_timestamp())
                > config.max_segment_ms();
        let offsets_overflow = incoming.last_offset - active.base_offset() > i64::from(i32::MAX);
        if !(too_big || too_old || offsets_overflow || active.index_is_full()) {
            return Ok(active);
        }
        self.roll_at(config, incoming.base_offset, &active, writer)
    }

    /// Seals `old`, snapshots the producer state at the new segment's base (so a restart need
    /// only scan from there to rebuild it), and starts the new segment.
    fn roll_at(
        &self,
        config: &LogConfig,
        base_offset: i64,
        old: &Arc<Segment>,
        writer: &WriterState,
    ) -> Result<Arc<Segment>, LogError> {
        old.seal()?;
        self.snapshots_on_disk.store(true, Ordering::Release);
        writer
            .producers
            .write_snapshot(&self.dir, base_offset, self.files.durability())?;
        let new = Arc::new(Segment::create(
            &self.dir,
            base_offset,
            self.files.clone(),
            Self::segment_config(config),
        )?);
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(base_offset, new.clone());
        // The sealed segment was fsynced by seal(): everything before the new one is durable.
        self.recovery_point.fetch_max(base_offset, Ordering::AcqRel);
        old.close_handle();
        tracing::info!(topic = %self.topic, partition = self.partition, base_offset, rolled = old.base_offset(), "rolled a new segment");
        Ok(new)
    }

    /// Rolls now (if the active segment holds anything).
    pub fn roll(&self) -> Result<(), LogError> {
        let writer = self.lock_writer();
        let config = self.config();
        if let Some(active) = self.active().filter(|a| !a.is_empty()) {
            let r = self.roll_at(&config, self.log_end_offset(), &active, &writer);
            self.fail_on_io(r)?;
        }
        Ok(())
    }

    /// fsyncs everything appended so far and advances the recovery point.
    pub fn flush(&self) -> Result<(), LogError> {
        let mut writer = self.lock_writer();
        self.flush_locked(&mut writer)
    }

    fn flush_locked(&self, writer: &mut WriterState) -> Result<(), LogError> {
        let end = self.log_end_offset();
        if self.recovery_point() >= end {
            return Ok(());
        }
        // Epochs first: the recovery point must not pass a batch whose epoch is not on disk.
        // On a full disk the data is still made durable, but the recovery point stays, so
        // a restart reads those epochs back from the batches.
        let durability = self.files.durability();
        let epochs_written = match writer.epochs.flush(durability, self.log_start_offset()) {
            Err(LogError::NoSpace { .. }) => false,
            r => {
                self.fail_on_io(r)?;
                true
            }
        };
        let mut new_files = false;
        for seg in self.segments_snapshot() {
            if seg.next_offset() > self.recovery_point() {
                self.fail_on_io(seg.flush())?;
                new_files |= seg.base_offset() >= self.recovery_point();
            }
        }
        // A segment made since the last flush (a roll, a new log) has names an fsync of its
        // files does not make durable: the directory is fsynced too, as Kafka's flush does.
        if new_files && durability == Durability::Fsync {
            self.fail_on_io(checkpoint::sync_dir(&self.dir))?;
        }
        self.synced_to.fetch_max(end, Ordering::AcqRel);
        if epochs_written {
            self.recovery_point.store(end, Ordering::Release);
        }
        writer.unflushed_messages = 0;
        writer.first_unflushed_ms = None;
        Ok(())
    }

    /// Makes every record appended so far durable for durable acks (`flush.messages`): one
    /// fdatasync of each segment file holding records not yet synced (and of the directory
    /// when one of them is new), taken outside the writer lock so appends go on meanwhile and
    /// the next sync covers them all (group commit). Indexes, epochs and the recovery point are
    /// left to `flush`: a restart rebuilds them from the records.
    pub fn sync_records(&self) -> Result<(), LogError> {
        let (end, truncations, segments, new_files) = {
            let mut writer = self.lock_writer();
            let end = self.log_end_offset();
            let from = self.synced_to();
            if from >= end {
                return Ok(());
            }
            // This sync covers them: `flush.messages` counts from here.
            writer.unflushed_messages = 0;
            let segments: Vec<_> = self
                .segments_snapshot()
                .into_iter()
                .filter(|s| s.next_offset() > from)
                .collect();
            let new_files = segments.iter().any(|s| s.base_offset() >= from);
            (
                end,
                self.truncations.load(Ordering::Acquire),
                segments,
                new_files,
            )
        };
        for seg in &segments {
            match seg.sync_records() {
                // Truncated or retired meanwhile: none of its records are to be kept.
                Err(_) if seg.is_deleted() => {}
                r => self.fail_on_io(r)?,
            }
        }
        if new_files && self.files.durability() == Durability::Fsync {
            self.fail_on_io(checkpoint::sync_dir(&self.dir))?;
        }
        let _writer = self.lock_writer();
        if self.truncations.load(Ordering::Acquire) == truncations {
            self.synced_to.fetch_max(end, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Flushes if the oldest unflushed append is older than `flush.ms`.
    pub fn flush_if_due(&self, now: i64) -> Result<(), LogError> {
        let Some(flush_ms) = self.config().flush_ms else {
            return Ok(());
        };
        let due = self
            .lock_writer()
            .first_unflushed_ms
            .is_some_and(|t| now - t >= flush_ms);
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Reads whole batches from `offset` up to the high watermark (KIP-74: at least one batch
    /// when `min_one`, even if it exceeds `max_bytes`).
    pub fn read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Result<ReadInfo, LogError> {
        self.read_up_to(offset, max_bytes, min_one, self.high_watermark())
    }

    /// As `read`, bounded by `max_offset` (exclusive) instead of the high watermark: followers
    /// read up to the log end.
    pub fn read_up_to(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        max_offset: i64,
    ) -> Result<ReadInfo, LogError> {
        let (log_start, log_end, hw) = (
            self.log_start_offset(),
            self.log_end_offset(),
            self.high_watermark(),
        );
        if offset < log_start || offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end,
            });
        }
        let records = if offset < max_offset {
            self.read_segments(offset, max_bytes, min_one, max_offset)?
        } else {
            None
        };
        Ok(ReadInfo {
            records,
            high_watermark: hw,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// The batches from `offset` in the first segment that has any. A segment replaced by the
    /// cleaner (or removed by retention) while it is read may have answered from another
    /// file: the read is taken again from a fresh list, which a swap holds until the new
    /// segment is in it.
    fn read_segments(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        max_offset: i64,
    ) -> Result<Option<FileSlice>, LogError> {
        const ATTEMPTS: usize = 8;
        'again: for _ in 0..ATTEMPTS {
            let segments: Vec<Arc<Segment>> = {
                let guard = self.segments.read().unwrap_or_else(|p| p.into_inner());
                let from = guard
                    .range(..=offset)
                    .next_back()
                    .map_or(i64::MIN, |(b, _)| *b);
                guard.range(from..).map(|(_, s)| s.clone()).collect()
            };
            for seg in segments {
                let r = seg.read(offset, max_bytes, max_offset, min_one);
                if seg.is_deleted() {
                    continue 'again;
                }
                if let Some(slice) = r? {
                    return Ok(Some(slice));
                }
            }
            return Ok(None);
        }
        Err(LogError::io(
            &self.dir,
            std::io::Error::other("segments kept changing while they were read"),
        ))
    }

    /// Each producer's last batch's last offset: the batches the cleaner keeps even when
    /// every record in them is gone, so their sequence numbers survive.
    pub fn producer_last_offsets(&self) -> std::collections::HashMap<i64, i64> {
        self.lock_writer().producers.last_offsets()
    }

    /// The first offset whose record timestamp is ≥ `timestamp`, with that timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let hw = self.high_watermark();
        let start = self.log_start_offset();
        let first_candidate = self
            .segments_snapshot()
            .iter()
            .filter(|s| s.max_timestamp() >= timestamp && s.next_offset() > start)
            .find_map(|s| s.find_batch_by_timestamp(timestamp).transpose());
        let Some(bp) = first_candidate.transpose()? else {
            return Ok(None);
        };
        // The time index finds the first batch that reaches `timestamp`; the record itself may
        // be in a later batch when that one lies partly below the log start offset.
        let mut from = bp.header.base_offset.max(start);
        while from < hw {
            let Some(slice) = self.read_up_to(from, 64 * 1024, true, hw)?.records else {
                break;
            };
            let bytes = slice.read_bytes()?;
            let records = batch::record_timestamps(&bytes);
            if let Some(found) = records
                .iter()
                .find(|(off, ts)| *ts >= timestamp && *off >= from)
            {
                return Ok(Some(*found));
            }
            match records.last() {
                Some((last, _)) => from = last + 1,
                None => break,
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp (ListOffsets -3).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let hw = self.high_watermark();
        let Some(seg) = self
            .segments_snapshot()
            .into_iter()
            .filter(|s| !s.is_empty())
            .max_by_key(|s| s.max_timestamp())
        else {
            return Ok(None);
        };
        let max = seg.max_timestamp();
        let Some(bp) = seg.find_batch_by_timestamp(max)? else {
            return Ok(None);
        };
        let bytes = seg
            .read(bp.header.base_offset, 1, hw, true)?
            .map(|slice| slice.read_bytes())
            .transpose()?;
        Ok(bytes.and_then(|b| {
            batch::record_timestamps(&b)
                .into_iter()
                .find(|(_, ts)| *ts == max)
        }))
    }

    /// Moves the log start offset up to `offset` (DeleteRecords) and drops the segments wholly
    /// below it. Returns the new log start offset and the files to remove in the background.
    pub fn delete_records(&self, offset: i64) -> Result<(i64, Vec<PathBuf>), LogError> {
        self.check_dir()?;
        let hw = self.high_watermark();
        if offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: hw,
            });
        }
        let mut writer = self.lock_writer();
        self.log_start_offset.fetch_max(offset, Ordering::AcqRel);
        let removed = self.remove_segments_below_start(&mut writer)?;
        Ok((self.log_start_offset(), removed))
    }

    /// Retention: drops sealed segments past `retention.ms` or beyond `retention.bytes`, oldest
    /// first, never the active one. Returns the files to remove in the background.
    pub fn apply_retention(&self, now: i64) -> Result<Vec<PathBuf>, LogError> {
        self.check_dir()?;
        let config = self.config();
        // A compact-only topic keeps its records until the cleaner replaces them.
        if !config
            .cleanup_policy
            .split(',')
            .any(|p| p.trim() == "delete")
        {
            return Ok(Vec::new());
        }
        let mut writer = self.lock_writer();
        let segments = self.segments_snapshot();
        let sealed = &segments[..segments.len().saturating_sub(1)];
        let mut total: i64 = segments.iter().map(|s| s.size() as i64).sum();
        let mut doomed = 0usize;
        for seg in sealed {
            let expired = config.retention_ms >= 0
                && now.saturating_sub(seg.max_timestamp()) > config.retention_ms;
            let oversize =
                config.retention_bytes >= 0 && total - seg.size() as i64 >= config.retention_bytes;
            if !(expired || oversize) {
                break;
            }
            total -= seg.size() as i64;
            doomed += 1;
        }
        if let Some(first_kept) = segments.get(doomed) {
            self.log_start_offset
                .fetch_max(first_kept.base_offset(), Ordering::AcqRel);
        }
        if doomed > 0 {
            tracing::info!(topic = %self.topic, partition = self.partition, segments = doomed, log_start_offset = self.log_start_offset(), "segments deleted by retention");
        }
        self.remove_segments_below_start(&mut writer)
    }

    /// Unlinks every segment that ends at or below the log start offset (never the active one).
    fn remove_segments_below_start(
        &self,
        writer: &mut WriterState,
    ) -> Result<Vec<PathBuf>, LogError> {
        let start = self.log_start_offset();
        let mut removed = Vec::new();
        let mut guard = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let active_base = guard.keys().next_back().copied();
        let doomed: Vec<i64> = guard
            .iter()
            .filter(|(b, s)| Some(**b) != active_base && s.next_offset() <= start)
            .map(|(b, _)| *b)
            .collect();
        for base in doomed {
            if let Some(seg) = guard.remove(&base) {
                let r = seg.mark_deleted();
                removed.extend(self.fail_on_io(r)?);
            }
        }
        drop(guard);
        if !removed.is_empty() {
            let r = writer.epochs.truncate_from_start(start);
            self.fail_on_io(r)?;
            // Snapshots older than the first remaining segment can no longer be the start of
            // a rebuild.
            let first_base = self
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .next()
                .copied()
                .unwrap_or(start);
            for offset in state::list_snapshots(&self.dir)?
                .into_iter()
                .filter(|o| *o < first_base)
            {
                removed.push(self.fail_on_io(retire(&state::snapshot_path(&self.dir, offset)))?);
            }
        }
        Ok(removed)
    }

    /// Removes every record at or after `offset` (a follower whose log diverged from the
    /// leader's, as seen by a fetch in leader epoch `fetched_in`). A batch straddling `offset`
    /// is removed whole.
    pub fn truncate_to(&self, offset: i64, fetched_in: i32) -> Result<Vec<PathBuf>, LogError> {
        self.check_dir()?;
        let mut writer = self.lock_writer();
        Self::check_follower(&writer, fetched_in)?;
        if offset >= self.log_end_offset() {
            // An epoch this broker began as leader without appending to it ends at the log
            // end: it goes, or every fetch would report it and diverge again (as Kafka does).
            let r = writer.epochs.truncate_from_end(self.log_end_offset());
            self.fail_on_io(r)?;
            return Ok(Vec::new());
        }
        let config = self.config();
        let mut removed = Vec::new();
        let mut guard = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let after: Vec<i64> = guard.range(offset..).map(|(b, _)| *b).collect();
        for base in after {
            if let Some(seg) = guard.remove(&base) {
                removed.extend(self.fail_on_io(seg.mark_deleted())?);
            }
        }
        let new_end = match guard.values().next_back().cloned() {
            Some(seg) => {
                self.fail_on_io(seg.truncate_to(offset))?;
                if seg.offset_index().is_writable() {
                    seg.next_offset()
                } else {
                    // A sealed segment becomes the active one again: reopen it writable.
                    let base = seg.base_offset();
                    guard.remove(&base);
                    seg.seal()
                        .and_then(|_| {
                            Segment::open(
                                &self.dir,
                                base,
                                self.files.clone(),
                                Self::segment_config(&config),
                                true,
                            )?
                            .ok_or(LogError::CorruptBatch(
                                "segment unreadable after truncation",
                            ))
                        })
                        .map(|s| {
                            let end = s.next_offset();
                            guard.insert(base, Arc::new(s));
                            end
                        })?
                }
            }
            None => {
                let start = offset.max(self.log_start_offset());
                let seg = Segment::create(
                    &self.dir,
                    start,
                    self.files.clone(),
                    Self::segment_config(&config),
                )?;
                guard.insert(start, Arc::new(seg));
                start
            }
        };
        drop(guard);
        self.log_end_offset.store(new_end, Ordering::Release);
        self.high_watermark.fetch_min(new_end, Ordering::AcqRel);
        self.recovery_point.fetch_min(new_end, Ordering::AcqRel);
        self.synced_to.fetch_min(new_end, Ordering::AcqRel);
        self.truncations.fetch_add(1, Ordering::AcqRel);
        self.log_start_offset.fetch_min(new_end, Ordering::AcqRel);
        let r = writer.epochs.truncate_from_end(new_end);
        self.fail_on_io(r)?;
        writer.producers.truncate_from(new_end);
        for offset in state::list_snapshots(&self.dir)?
            .into_iter()
            .filter(|o| *o > new_end)
        {
            removed.push(self.fail_on_io(retire(&state::snapshot_path(&self.dir, offset)))?);
        }
        Ok(removed)
    }

    /// Removes every record and starts the log empty at `offset` (a follower that fell behind
    /// the leader's log start offset).
    pub fn truncate_fully_and_start_at(
        &self,
        offset: i64,
        fetched_in: i32,
    ) -> Result<Vec<PathBuf>, LogError> {
        self.check_dir()?;
        let mut writer = self.lock_writer();
        Self::check_follower(&writer, fetched_in)?;
        let config = self.config();
        let mut removed = Vec::new();
        let mut guard = self.segments.write().unwrap_or_else(|p| p.into_inner());
        for (_, seg) in std::mem::take(&mut *guard) {
            removed.extend(self.fail_on_io(seg.mark_deleted())?);
        }
        let seg = Segment::create(
            &self.dir,
            offset,
            self.files.clone(),
            Self::segment_config(&config),
        );
        guard.insert(offset, Arc::new(self.fail_on_io(seg)?));
        drop(guard);
        for a in [
            &self.log_start_offset,
            &self.log_end_offset,
            &self.high_watermark,
            &self.recovery_point,
        ] {
            a.store(offset, Ordering::Release);
        }
        let r = writer.epochs.truncate_from_end(i64::MIN);
        self.fail_on_io(r)?;
        writer.producers.truncate_from(i64::MIN);
        for snapshot in state::list_snapshots(&self.dir)? {
            removed.push(self.fail_on_io(retire(&state::snapshot_path(&self.dir, snapshot)))?);
        }
        Ok(removed)
    }

    /// Drops idempotence state of producers idle past `producer.id.expiration.ms`.
    pub fn expire_producers(&self, now: i64) {
        let expiration = self.config().producer_id_expiration_ms;
        self.lock_writer().producers.expire(now, expiration);
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.lock_writer().epochs.latest_epoch()
    }

    /// Flushes and trims the active segment's indexes: the state a clean shutdown leaves.
    pub fn close(&self) -> Result<(), LogError> {
        let mut writer = self.lock_writer();
        self.flush_locked(&mut writer)?;
        let end = self.log_end_offset();
        // An empty log needs no snapshot, and one taken at this end is still current: two
        // fsyncs each, skipped for the thousands of idle partitions a broker may hold. Nor
        // does a log that never had producers (see `snapshots_on_disk`): at 50,000 partitions
        // that is 50,000 files fewer to create and sync at shutdown.
        let no_producers =
            writer.producers.is_empty() && !self.snapshots_on_disk.load(Ordering::Acquire);
        if end > self.log_start_offset()
            && !no_producers
            && !state::snapshot_path(&self.dir, end).exists()
        {
            self.snapshots_on_disk.store(true, Ordering::Release);
            let r = writer
                .producers
                .write_snapshot(&self.dir, end, self.files.durability());
            self.fail_on_io(r)?;
        }
        if let Some(active) = self.active() {
            self.fail_on_io(active.seal())?;
            active.close_handle();
        }
        Ok(())
    }

    /// Marks every segment deleted (topic deletion). The directory itself is the caller's.
    pub fn close_for_delete(&self) {
        let _writer = self.lock_writer();
        self.deleting.store(true, Ordering::Release);
        for seg in self.segments_snapshot() {
            seg.close_handle();
            seg.release_indexes();
        }
    }
}
