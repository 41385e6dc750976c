//! Segment: one `.log` file of record batches with its `.index` and `.timeindex` (Kafka's
//! LogSegment).
//!
//! Owns appends at the tail, index maintenance, positional reads and the scan that recovers a
//! segment after a crash. Never decides when to roll, retain or flush: that is `partition_log`.

use std::io::IoSlice;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD};
use super::error::{IoContext, LogError};
use super::file_cache::FileCache;
use super::file_slice::FileSlice;
use super::offset_index::{OffsetIndex, OffsetPosition};
use super::time_index::{TimeIndex, TimestampOffset};

/// At most this many slices go to one pwritev (Linux's IOV_MAX).
const MAX_SLICES: usize = 1024;

/// Writes all of `slices` at `position`, as `write_all_at` does for one buffer.
fn write_all_vectored_at(
    file: &std::fs::File,
    mut slices: &mut [IoSlice<'_>],
    mut position: u64,
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = rustix::io::pwritev(file, &slices[..slices.len().min(MAX_SLICES)], position)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        position += n as u64;
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

pub const LOG_SUFFIX: &str = "log";
pub const INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
pub const DELETED_SUFFIX: &str = ".deleted";
/// A segment the log cleaner is still writing.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// A cleaned segment, complete, that replaces the segments it covers (at start-up if need be).
pub const SWAP_SUFFIX: &str = ".swap";
/// The suffixes of a segment's three files.
pub const FILE_SUFFIXES: [&str; 3] = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX];

/// Kafka names segment files by their base offset, zero-padded to 20 digits.
pub fn file_name(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{suffix}"))
}

/// `path` with `tail` (`.deleted`, `.cleaned`, `.swap`) appended.
pub fn with_tail(path: &Path, tail: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(tail);
    PathBuf::from(p)
}

/// Segment-level settings taken from the topic's LogConfig.
#[derive(Debug, Clone, Copy)]
pub struct SegmentConfig {
    pub index_interval_bytes: u64,
    pub max_index_bytes: usize,
}

/// Where a batch lives in a segment.
#[derive(Debug, Clone, Copy)]
pub struct BatchPosition {
    pub position: u64,
    pub header: BatchHeader,
}

pub struct Segment {
    base_offset: i64,
    log_path: Arc<Path>,
    files: Arc<FileCache>,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    config: SegmentConfig,
    /// Where the segment ends, as one word so readers see a coherent pair: the bytes of whole
    /// batches (high half; readers never look past it, so a half-written batch is invisible)
    /// and one past the last offset stored, relative to the base (low half). Both fit: a
    /// segment rolls before 2 GiB and before its relative offsets pass `i32::MAX`.
    end: AtomicU64,
    max_timestamp: AtomicI64,
    offset_of_max_timestamp: AtomicI64,
    /// The first batch's max timestamp, which `segment.ms` is measured from (-1 while empty).
    first_timestamp: AtomicI64,
    /// Bytes appended since the last offset-index entry (writer only).
    bytes_since_index: AtomicU64,
    deleted: AtomicBool,
}

/// What a full scan of a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    /// Where each newer leader epoch begins among the valid batches (as Kafka's
    /// LogSegment.recover feeds the epoch cache): the checkpoint file is written only at flush.
    pub epoch_starts: Vec<(i32, i64)>,
}

impl Segment {
    fn new(
        dir: &Path,
        base_offset: i64,
        files: Arc<FileCache>,
        config: SegmentConfig,
        oi: OffsetIndex,
        ti: TimeIndex,
    ) -> Self {
        Self {
            base_offset,
            log_path: file_name(dir, base_offset, LOG_SUFFIX).into(),
            files,
            offset_index: oi,
            time_index: ti,
            config,
            end: AtomicU64::new(0),
            max_timestamp: AtomicI64::new(-1),
            offset_of_max_timestamp: AtomicI64::new(base_offset),
            first_timestamp: AtomicI64::new(-1),
            bytes_since_index: AtomicU64::new(0),
            deleted: AtomicBool::new(false),
        }
    }

    /// A new, empty, writable segment.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        files: Arc<FileCache>,
        config: SegmentConfig,
    ) -> Result<Self, LogError> {
        let log_path = file_name(dir, base_offset, LOG_SUFFIX);
        let file = files.get(&log_path, true)?;
        file.set_len(0).at(&log_path)?;
        Self::open_for_recovery(dir, base_offset, files, config)
    }

    /// A new, empty segment under the cleaner's `.cleaned` names, written by the cleaner
    /// with `append` and renamed into place by the swap.
    pub fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        files: Arc<FileCache>,
        config: SegmentConfig,
    ) -> Result<Self, LogError> {
        let name = |suffix| with_tail(&file_name(dir, base_offset, suffix), CLEANED_SUFFIX);
        let log_path = name(LOG_SUFFIX);
        files.get(&log_path, true)?.set_len(0).at(&log_path)?;
        let oi = OffsetIndex::create(&name(INDEX_SUFFIX), config.max_index_bytes)?;
        let ti = TimeIndex::create(&name(TIME_INDEX_SUFFIX), config.max_index_bytes)?;
        let mut seg = Self::new(dir, base_offset, files, config, oi, ti);
        seg.log_path = log_path.into();
        Ok(seg)
    }

    /// Opens an existing segment, trusting its indexes if they pass a sanity check. Returns
    /// `Ok(None)` when they do not (or are missing): the caller must `recover` it instead.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        files: Arc<FileCache>,
        config: SegmentConfig,
        writable: bool,
    ) -> Result<Option<Self>, LogError> {
        let oi_path = file_name(dir, base_offset, INDEX_SUFFIX);
        let ti_path = file_name(dir, base_offset, TIME_INDEX_SUFFIX);
        let (Ok(oi_meta), Ok(ti_meta)) = (std::fs::metadata(&oi_path), std::fs::metadata(&ti_path))
        else {
            return Ok(None);
        };
        if oi_meta.len() % 8 != 0 || ti_meta.len() % 12 != 0 {
            return Ok(None);
        }
        // An index longer than a full one was preallocated by an earlier Runnel (a mapped
        // active index) and not closed cleanly: its tail is zeros, so the segment is scanned
        // rather than read.
        let preallocated =
            |len: u64, size: usize| len as usize > config.max_index_bytes / size * size;
        if writable && (preallocated(oi_meta.len(), 8) || preallocated(ti_meta.len(), 12)) {
            return Ok(None);
        }
        let (oi, ti) = if writable {
            (
                OffsetIndex::open_writable(
                    &oi_path,
                    config.max_index_bytes,
                    (oi_meta.len() / 8) as usize,
                )?,
                TimeIndex::open_writable(
                    &ti_path,
                    config.max_index_bytes,
                    (ti_meta.len() / 12) as usize,
                )?,
            )
        } else {
            (
                OffsetIndex::open_sealed(&oi_path)?,
                TimeIndex::open_sealed(&ti_path)?,
            )
        };
        let seg = Self::new(dir, base_offset, files, config, oi, ti);
        // A stat, not an open: most of a broker's partitions are idle, and an empty one needs
        // no handle at all.
        let log_len = std::fs::metadata(&seg.log_path).at(&seg.log_path)?.len();
        if !seg.indexes_are_sane(log_len)? {
            seg.release_indexes();
            return Ok(None);
        }
        // Find the end: walk batch headers from the last indexed position to the end of file.
        let start = seg
            .offset_index
            .last()?
            .map_or(0, |e| u64::from(e.position));
        let mut tail_max = (-1i64, base_offset);
        let mut end = start;
        let mut next = base_offset;
        let complete = seg.walk_headers(start, log_len, |bp| {
            end = bp.position + bp.header.total_len() as u64;
            next = bp.header.next_offset();
            if bp.header.max_timestamp > tail_max.0 {
                tail_max = (bp.header.max_timestamp, bp.header.last_offset());
            }
            true
        })?;
        if !complete || end != log_len {
            seg.release_indexes();
            return Ok(None);
        }
        if let Some(first) = seg.header_at(0, log_len)? {
            seg.first_timestamp
                .store(first.max_timestamp, Ordering::Relaxed);
        }
        if let Some(last_ti) = seg.time_index.last()? {
            seg.max_timestamp
                .store(last_ti.timestamp, Ordering::Relaxed);
            seg.offset_of_max_timestamp.store(
                base_offset + i64::from(last_ti.relative_offset),
                Ordering::Relaxed,
            );
        }
        if tail_max.0 > seg.max_timestamp.load(Ordering::Relaxed) {
            seg.max_timestamp.store(tail_max.0, Ordering::Relaxed);
            seg.offset_of_max_timestamp
                .store(tail_max.1, Ordering::Relaxed);
        }
        seg.set_end(end, next);
        Ok(Some(seg))
    }

    /// Opens a segment with fresh, empty indexes: for a new segment, or for a full scan that
    /// rebuilds them (recovery).
    pub fn open_for_recovery(
        dir: &Path,
        base_offset: i64,
        files: Arc<FileCache>,
        config: SegmentConfig,
    ) -> Result<Self, LogError> {
        let oi = OffsetIndex::create(
            &file_name(dir, base_offset, INDEX_SUFFIX),
            config.max_index_bytes,
        )?;
        let ti = TimeIndex::create(
            &file_name(dir, base_offset, TIME_INDEX_SUFFIX),
            config.max_index_bytes,
        )?;
        Ok(Self::new(dir, base_offset, files, config, oi, ti))
    }

    fn indexes_are_sane(&self, log_len: u64) -> Result<bool, LogError> {
        let entries = self.offset_index.all()?;
        let ordered = entries
            .windows(2)
            .all(|w| w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position);
        let inside = entries
            .last()
            .is_none_or(|e| u64::from(e.position) < log_len);
        let times = self.time_index.all()?;
        let times_ordered = times.windows(2).all(|w| {
            w[0].timestamp < w[1].timestamp && w[0].relative_offset <= w[1].relative_offset
        });
        Ok(ordered && inside && times_ordered)
    }

    fn file(&self) -> Result<Arc<std::fs::File>, LogError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(LogError::io(
                &self.log_path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
        self.files.get(&self.log_path, false)
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn size(&self) -> u64 {
        self.end().0
    }
    pub fn next_offset(&self) -> i64 {
        self.end().1
    }
    /// The size and the next offset, read together.
    fn end(&self) -> (u64, i64) {
        let word = self.end.load(Ordering::Acquire);
        (
            word >> 32,
            self.base_offset + (word & u64::from(u32::MAX)) as i64,
        )
    }
    fn set_end(&self, size: u64, next_offset: i64) {
        debug_assert!(size <= u64::from(u32::MAX));
        let relative = (next_offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u64;
        self.end.store((size << 32) | relative, Ordering::Release);
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }
    pub fn first_timestamp(&self) -> i64 {
        self.first_timestamp.load(Ordering::Acquire)
    }
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }
    /// Set once the segment was removed or replaced: what was just read from it may belong to
    /// another file by now, so readers look again.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }
    pub fn index_is_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    /// Appends stamped batches that lie back to back in `bytes`; `batches` gives each one's
    /// range and header. The caller (the partition's single writer) has checked them.
    pub fn append(
        &self,
        bytes: &[u8],
        batches: &[(std::ops::Range<usize>, BatchHeader)],
    ) -> Result<(), LogError> {
        self.write_at_end(bytes.len(), batches, |file, start| {
            file.write_all_at(bytes, start)
        })
    }

    /// Appends the batches in `bytes` as `append` does, each one's base offset and leader
    /// epoch taken from its header rather than from `bytes`: produce stamps a client's batches
    /// this way without copying them (both fields lie outside the CRC).
    pub fn append_stamped(
        &self,
        bytes: &[u8],
        batches: &[(std::ops::Range<usize>, BatchHeader)],
    ) -> Result<(), LogError> {
        let prefixes: Vec<[u8; batch::STAMPED_LEN]> =
            batches.iter().map(|(_, h)| h.stamped_prefix()).collect();
        let mut slices = Vec::with_capacity(2 * batches.len());
        for ((range, _), prefix) in batches.iter().zip(&prefixes) {
            slices.push(IoSlice::new(prefix));
            slices.push(IoSlice::new(
                &bytes[range.start + batch::STAMPED_LEN..range.end],
            ));
        }
        self.write_at_end(bytes.len(), batches, |file, start| {
            write_all_vectored_at(file, &mut slices, start)
        })
    }

    /// Writes `len` bytes of `batches` at the file's end through `write`, then indexes them;
    /// a failed write is undone.
    fn write_at_end(
        &self,
        len: usize,
        batches: &[(std::ops::Range<usize>, BatchHeader)],
        write: impl FnOnce(&std::fs::File, u64) -> std::io::Result<()>,
    ) -> Result<(), LogError> {
        let start = self.size();
        let file = self.file()?;
        if let Err(e) = write(&file, start) {
            // Part of the batches may be in the file: cut them, so the file ends where the
            // log does (a restart reads the file's end as the log's) and a later append
            // writes from the same place. Cutting needs no space.
            file.set_len(start).at(&self.log_path)?;
            return Err(LogError::io(&self.log_path, e));
        }
        for (range, h) in batches {
            self.track_batch(start + range.start as u64, h);
        }
        let next = batches
            .last()
            .map_or_else(|| self.next_offset(), |(_, last)| last.next_offset());
        self.set_end(start + len as u64, next);
        Ok(())
    }

    /// Index bookkeeping for one batch at `position`, as Kafka's LogSegment.append does it.
    fn track_batch(&self, position: u64, h: &BatchHeader) {
        if self.first_timestamp.load(Ordering::Relaxed) < 0 {
            self.first_timestamp
                .store(h.max_timestamp, Ordering::Relaxed);
        }
        if h.max_timestamp > self.max_timestamp.load(Ordering::Relaxed) {
            self.max_timestamp.store(h.max_timestamp, Ordering::Release);
            self.offset_of_max_timestamp
                .store(h.last_offset(), Ordering::Release);
        }
        if self.bytes_since_index.load(Ordering::Relaxed) > self.config.index_interval_bytes {
            self.offset_index.append(OffsetPosition {
                relative_offset: self.relative(h.last_offset()),
                position: position as u32,
            });
            self.maybe_append_time_entry();
            self.bytes_since_index.store(0, Ordering::Relaxed);
        }
        self.bytes_since_index
            .fetch_add(h.total_len() as u64, Ordering::Relaxed);
    }

    fn relative(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    /// A time-index entry when the max timestamp has grown since the last one.
    fn maybe_append_time_entry(&self) {
        let ts = self.max_timestamp.load(Ordering::Relaxed);
        let last = self
            .time_index
            .last()
            .ok()
            .flatten()
            .map_or(-1, |e| e.timestamp);
        if ts > last {
            let rel = self.relative(self.offset_of_max_timestamp.load(Ordering::Relaxed));
            self.time_index.append(TimestampOffset {
                timestamp: ts,
                relative_offset: rel,
            });
        }
    }

    /// fsyncs the log file alone (durable acks; indexes are rebuilt from it after a crash).
    pub fn sync_records(&self) -> Result<(), LogError> {
        self.files.sync_data(&*self.file()?, &self.log_path)
    }

    /// fsyncs the log, then writes and fsyncs the indexes' new entries. On a full disk the
    /// entries wait in memory for the next flush: an index file is a sparse prefix of its
    /// index, so lookups stay correct (they scan on from an earlier entry).
    pub fn flush(&self) -> Result<(), LogError> {
        self.files.sync_data(&*self.file()?, &self.log_path)?;
        for (pending, path) in [
            (self.offset_index.write_pending(), self.offset_index.path()),
            (self.time_index.write_pending(), self.time_index.path()),
        ] {
            match pending {
                Ok(Some(f)) => self.files.sync_data(&f, path)?,
                Ok(None) | Err(LogError::NoSpace { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Turns the active segment into a sealed one: final time entry, flushed, indexes written
    /// out and dropped from memory.
    pub fn seal(&self) -> Result<(), LogError> {
        self.maybe_append_time_entry();
        self.flush()?;
        self.offset_index.seal()?;
        self.time_index.seal()
    }

    /// Drops index mappings a sealed segment does not need until its next read.
    pub fn release_indexes(&self) {
        self.offset_index.release();
        self.time_index.release();
    }

    /// Reads the header of the batch at `position`, if a whole header lies before `limit`.
    fn header_at(&self, position: u64, limit: u64) -> Result<Option<BatchHeader>, LogError> {
        if position + HEADER_LEN as u64 > limit {
            return Ok(None);
        }
        let mut buf = [0u8; HEADER_LEN];
        self.file()?
            .read_exact_at(&mut buf, position)
            .at(&self.log_path)?;
        Ok(BatchHeader::parse(&buf).ok())
    }

    /// Calls `f` on each batch header from `position` until `limit` or until `f` says stop.
    /// Returns false if it met bytes that are not a whole batch before `limit`.
    fn walk_headers(
        &self,
        mut position: u64,
        limit: u64,
        mut f: impl FnMut(BatchPosition) -> bool,
    ) -> Result<bool, LogError> {
        const WINDOW: usize = 64 * 1024;
        if position >= limit {
            return Ok(true);
        }
        let file = self.file()?;
        let mut buf = vec![0u8; WINDOW.min((limit - position) as usize)];
        while position < limit {
            let want = WINDOW.min((limit - position) as usize);
            file.read_exact_at(&mut buf[..want], position)
                .at(&self.log_path)?;
            let mut at = 0usize;
            while at + HEADER_LEN <= want {
                let Ok(h) = BatchHeader::parse(&buf[at..]) else {
                    return Ok(false);
                };
                let len = h.total_len() as u64;
                if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32
                    || position + at as u64 + len > limit
                {
                    return Ok(false);
                }
                if !f(BatchPosition {
                    position: position + at as u64,
                    header: h,
                }) {
                    return Ok(true);
                }
                at += len as usize;
            }
            if at == 0 {
                // Fewer bytes than a header remain before the limit.
                return Ok(false);
            }
            position += at as u64;
        }
        Ok(true)
    }

    /// The first batch whose last offset is ≥ `offset`, starting from the index's hint.
    pub fn find_batch(&self, offset: i64) -> Result<Option<BatchPosition>, LogError> {
        let size = self.size();
        let target = offset.max(self.base_offset);
        let start = self
            .offset_index
            .floor(i64::from(self.relative(target)))?
            .map_or(0, |e| u64::from(e.position));
        let mut found = None;
        self.walk_headers(start, size, |bp| {
            if bp.header.last_offset() >= target {
                found = Some(bp);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Calls `f` on the header of every batch from the one holding `offset` to the end.
    pub fn for_each_batch_from(
        &self,
        offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let Some(first) = self.find_batch(offset)? else {
            return Ok(());
        };
        self.walk_headers(first.position, self.size(), |bp| {
            f(&bp.header);
            true
        })?;
        Ok(())
    }

    /// The first batch whose max timestamp is ≥ `timestamp`.
    pub fn find_batch_by_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<BatchPosition>, LogError> {
        if self.max_timestamp() < timestamp {
            return Ok(None);
        }
        let from_offset = self
            .time_index
            .floor(timestamp)?
            .map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            });
        let Some(start) = self.find_batch(from_offset)? else {
            return Ok(None);
        };
        let mut found = None;
        self.walk_headers(start.position, self.size(), |bp| {
            if bp.header.max_timestamp >= timestamp {
                found = Some(bp);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    /// Whole batches from the one holding `offset`, stopping before `max_bytes` would be passed
    /// (but at least one batch when `min_one`) and before any batch that starts at or beyond
    /// `max_offset` (the high watermark), as a slice of the file: no record byte is read.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one: bool,
    ) -> Result<Option<FileSlice>, LogError> {
        let (size, next) = self.end();
        let Some(first) = self.find_batch(offset)? else {
            return Ok(None);
        };
        let first_len = first.header.total_len();
        if first.header.base_offset >= max_offset
            || first.position + first_len as u64 > size
            || (first_len > max_bytes && !min_one)
        {
            return Ok(None);
        }
        let byte_limit = first.position + max_bytes.max(first_len) as u64;
        let end = if next <= max_offset && size <= byte_limit {
            // The common case, a reader near the tail: everything to the end fits.
            size
        } else {
            self.batch_end_before(first.position, byte_limit.min(size), max_offset.min(next))?
                .max(first.position + first_len as u64)
        };
        Ok(Some(FileSlice::new(
            self.file()?,
            self.log_path.clone(),
            first.position,
            (end - first.position) as usize,
        )))
    }

    /// The end of the last whole batch that starts at or after `from`, ends by `limit` and
    /// starts below `max_offset` (at most the segment's next offset; `from` when there is
    /// none), reading a few batch headers, not the data between.
    fn batch_end_before(&self, from: u64, limit: u64, max_offset: i64) -> Result<u64, LogError> {
        let entry_position = |e: Option<OffsetPosition>| e.map_or(0, |e| u64::from(e.position));
        let last_wanted = (max_offset - 1).max(self.base_offset);
        let by_offset = entry_position(
            self.offset_index
                .floor(i64::from(self.relative(last_wanted)))?,
        );
        let by_bytes = entry_position(
            self.offset_index
                .floor_by(limit as i64, |e| i64::from(e.position))?,
        );
        // Every batch before both entries is within both limits: the walk starts at the nearer.
        let start = from.max(by_offset.min(by_bytes));
        let mut end = start;
        self.walk_headers(start, limit, |bp| {
            if bp.header.base_offset >= max_offset {
                return false;
            }
            end = bp.position + bp.header.total_len() as u64;
            true
        })?;
        Ok(end)
    }

    /// Rebuilds both indexes by checking every batch from the start; truncates the file at the
    /// first byte that is not a whole, valid batch.
    pub fn recover(&self, max_batch_bytes: usize) -> Result<ScanOutcome, LogError> {
        const CHUNK: usize = 8 * 1024 * 1024;
        let file = self.file()?;
        let file_len = file.metadata().at(&self.log_path)?.len();
        self.offset_index.truncate_entries(0)?;
        self.time_index.truncate_entries(0)?;
        self.bytes_since_index.store(0, Ordering::Relaxed);
        self.max_timestamp.store(-1, Ordering::Relaxed);
        self.first_timestamp.store(-1, Ordering::Relaxed);
        let mut next = self.base_offset;
        let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
        // `position` is where `buf` starts in the file; `valid` is the end of the last good batch.
        let mut position = 0u64;
        let mut valid = 0u64;
        let mut buf: Vec<u8> = Vec::new();
        'outer: while position < file_len {
            let want = (CHUNK as u64).min(file_len - position) as usize;
            buf.resize(want, 0);
            file.read_exact_at(&mut buf, position).at(&self.log_path)?;
            let mut at = 0usize;
            while let Some(len) = batch::peek_total_len(&buf[at..]) {
                if len < HEADER_LEN || len > max_batch_bytes.max(CHUNK) {
                    break 'outer;
                }
                if at + len > buf.len() {
                    if at > 0 {
                        break;
                    }
                    // One batch larger than the chunk: read it whole.
                    if position + len as u64 > file_len {
                        break 'outer;
                    }
                    buf.resize(len, 0);
                    file.read_exact_at(&mut buf, position).at(&self.log_path)?;
                    continue;
                }
                let Ok(h) = batch::verify(&buf[at..at + len]) else {
                    break 'outer;
                };
                if h.base_offset < next {
                    break 'outer;
                }
                self.track_batch(position + at as u64, &h);
                if h.partition_leader_epoch >= 0
                    && epoch_starts
                        .last()
                        .is_none_or(|(e, _)| h.partition_leader_epoch > *e)
                {
                    epoch_starts.push((h.partition_leader_epoch, h.base_offset));
                }
                next = h.next_offset();
                at += len;
                valid = position + at as u64;
            }
            if at == 0 {
                break;
            }
            position += at as u64;
        }
        let position = valid;
        if position < file_len {
            file.set_len(position).at(&self.log_path)?;
        }
        self.set_end(position, next);
        Ok(ScanOutcome {
            valid_bytes: position,
            truncated_bytes: file_len - position,
            epoch_starts,
        })
    }

    /// Removes every batch at or after `offset`. Returns the bytes removed.
    pub fn truncate_to(&self, offset: i64) -> Result<u64, LogError> {
        let Some(cut) = self.find_batch(offset)? else {
            return Ok(0);
        };
        // A batch that straddles `offset` goes whole: batches are never split.
        let position = cut.position;
        let old = self.size();
        self.file()?.set_len(position).at(&self.log_path)?;
        let oi = self.offset_index.all()?;
        self.offset_index.truncate_entries(
            oi.iter()
                .take_while(|e| u64::from(e.position) < position)
                .count(),
        )?;
        let keep_rel = self.relative(cut.header.base_offset);
        let ti = self.time_index.all()?;
        self.time_index.truncate_entries(
            ti.iter()
                .take_while(|e| e.relative_offset < keep_rel)
                .count(),
        )?;
        self.set_end(position, cut.header.base_offset.max(self.base_offset));
        let mut max = (-1i64, self.base_offset);
        self.walk_headers(0, position, |bp| {
            if bp.header.max_timestamp > max.0 {
                max = (bp.header.max_timestamp, bp.header.last_offset());
            }
            true
        })?;
        self.max_timestamp.store(max.0, Ordering::Release);
        self.offset_of_max_timestamp.store(max.1, Ordering::Release);
        if position == 0 {
            self.first_timestamp.store(-1, Ordering::Release);
            self.bytes_since_index.store(0, Ordering::Relaxed);
        }
        Ok(old - position)
    }

    /// Renames the segment's files to `*.deleted` (so a crash mid-way cannot resurrect it) and
    /// returns the new paths, which the caller removes in the background.
    pub fn mark_deleted(&self) -> Result<Vec<PathBuf>, LogError> {
        self.deleted.store(true, Ordering::Release);
        self.files.forget(&self.log_path);
        self.release_indexes();
        let mut renamed = Vec::new();
        for path in [
            &*self.log_path,
            self.offset_index.path(),
            self.time_index.path(),
        ] {
            let to = with_tail(path, DELETED_SUFFIX);
            match std::fs::rename(path, &to) {
                Ok(()) => renamed.push(to),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogError::io(path, e)),
            }
        }
        Ok(renamed)
    }

    /// Closes the segment's handle so the file-handle budget covers only busy segments.
    pub fn close_handle(&self) {
        self.files.forget(&self.log_path);
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_batches::batch;
    use super::*;

    const CFG: SegmentConfig = SegmentConfig {
        index_interval_bytes: 100,
        max_index_bytes: 8 * 64,
    };

    fn append_batches(seg: &Segment, n: usize, first_offset: i64) -> i64 {
        let mut next = first_offset;
        for i in 0..n {
            let mut b = batch(3, 1_000 + 10 * i as i64, 50);
            batch::stamp(&mut b, next, 0);
            let h = batch::verify(&b).expect("valid");
            seg.append(&b, &[(0..b.len(), h)]).expect("append");
            next = h.next_offset();
        }
        next
    }

    #[test]
    fn stamped_appends_write_offsets_and_epochs_from_the_headers() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg =
            Segment::create(dir.path(), 100, Arc::new(FileCache::new(8)), CFG).expect("create");
        // Three client batches back to back, as a produce request carries them: offsets 0.
        let client: Vec<Vec<u8>> = (0..3).map(|i| batch(3, 1_000 + i, 50)).collect();
        let bytes = client.concat();
        let mut batches = Vec::new();
        let (mut at, mut next) = (0, 100);
        for b in &client {
            let mut h = batch::verify(b).expect("valid");
            (h.base_offset, h.partition_leader_epoch) = (next, 7);
            next = h.next_offset();
            batches.push((at..at + b.len(), h));
            at += b.len();
        }
        seg.append_stamped(&bytes, &batches).expect("append");
        assert_eq!((seg.next_offset(), seg.size()), (109, bytes.len() as u64));
        let file = std::fs::read(seg.log_path()).expect("read");
        let stored: Vec<_> = batch::headers(&file).collect();
        assert_eq!(stored.len(), 3);
        for ((range, h), (want_range, want)) in stored.iter().zip(&batches) {
            assert_eq!((range, h), (want_range, want));
            batch::verify(&file[range.clone()]).expect("the CRC still holds");
            let body = batch::STAMPED_LEN..range.len();
            assert_eq!(
                file[range.clone()][body.clone()],
                bytes[want_range.clone()][body]
            );
        }
        assert_eq!(
            seg.find_batch(104)
                .expect("io")
                .expect("found")
                .header
                .base_offset,
            103
        );
    }

    #[test]
    fn index_lookup_finds_every_offset() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg =
            Segment::create(dir.path(), 100, Arc::new(FileCache::new(8)), CFG).expect("create");
        let end = append_batches(&seg, 40, 100);
        assert_eq!(end, 220);
        assert!(seg.offset_index().len() > 5, "sparse index has entries");
        for off in 100..220 {
            let bp = seg.find_batch(off).expect("io").expect("found");
            assert!(bp.header.base_offset <= off && off <= bp.header.last_offset());
        }
        assert!(seg.find_batch(220).expect("io").is_none());
    }

    #[test]
    fn read_returns_whole_batches_and_at_least_one() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg = Segment::create(dir.path(), 0, Arc::new(FileCache::new(8)), CFG).expect("create");
        append_batches(&seg, 10, 0);
        let one = seg
            .read(4, 1, i64::MAX, true)
            .expect("io")
            .expect("one batch")
            .read_bytes()
            .expect("io");
        let hs: Vec<_> = batch::headers(&one).collect();
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].1.base_offset, 3);
        assert!(seg.read(4, 1, i64::MAX, false).expect("io").is_none());
        let capped = seg.read(0, 10_000, 9, true).expect("io").expect("batches");
        let capped = capped.read_bytes().expect("io");
        assert_eq!(
            batch::headers(&capped).last().map(|(_, h)| h.last_offset()),
            Some(8)
        );
    }

    /// The slice a read names, against a scan of every batch: it starts at the batch holding
    /// the offset and ends at the last whole batch within both limits, for every combination
    /// (the fast path to the end and the index-guided walk alike).
    #[test]
    fn read_ends_where_a_full_scan_says() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg = Segment::create(dir.path(), 0, Arc::new(FileCache::new(8)), CFG).expect("create");
        let end = append_batches(&seg, 30, 0);
        let mut batches = Vec::new();
        seg.walk_headers(0, seg.size(), |bp| {
            batches.push(bp);
            true
        })
        .expect("walk");
        let len = |bp: &BatchPosition| bp.header.total_len() as u64;
        for offset in 0..end {
            let first = batches
                .iter()
                .position(|b| b.header.last_offset() >= offset)
                .expect("first");
            for max_offset in [offset, offset + 1, offset + 7, end - 1, end, i64::MAX] {
                for max_bytes in [1usize, 100, 250, 1_000, 5_000, 1 << 20] {
                    for min_one in [false, true] {
                        let fits = |b: &&BatchPosition| {
                            b.header.base_offset < max_offset
                                && b.position + len(b) - batches[first].position <= max_bytes as u64
                        };
                        let mut want: Vec<_> = batches[first..].iter().take_while(fits).collect();
                        if want.is_empty()
                            && min_one
                            && batches[first].header.base_offset < max_offset
                        {
                            want.push(&batches[first]);
                        }
                        let got = seg
                            .read(offset, max_bytes, max_offset, min_one)
                            .expect("io")
                            .map(|s| (s.position(), s.len() as u64));
                        let expected = want.last().map(|last| {
                            let start = batches[first].position;
                            (start, last.position + len(last) - start)
                        });
                        assert_eq!(got, expected, "{offset} {max_offset} {max_bytes} {min_one}");
                    }
                }
            }
        }
    }

    #[test]
    fn reopen_after_seal_and_after_recover_agree() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = Arc::new(FileCache::new(8));
        let seg = Segment::create(dir.path(), 0, files.clone(), CFG).expect("create");
        append_batches(&seg, 20, 0);
        let (entries, max_ts) = (seg.offset_index().all().expect("oi"), seg.max_timestamp());
        seg.seal().expect("seal");
        drop(seg);
        let sealed = Segment::open(dir.path(), 0, files.clone(), CFG, false)
            .expect("io")
            .expect("sane");
        assert_eq!(sealed.offset_index().all().expect("oi"), entries);
        assert_eq!((sealed.next_offset(), sealed.max_timestamp()), (60, max_ts));
        let rebuilt = Segment::open_for_recovery(dir.path(), 0, files, CFG).expect("open");
        let outcome = rebuilt.recover(1 << 20).expect("recover");
        assert_eq!(outcome.truncated_bytes, 0);
        assert_eq!(rebuilt.offset_index().all().expect("oi"), entries);
        assert_eq!(rebuilt.next_offset(), 60);
    }

    #[test]
    fn truncate_to_drops_whole_batches() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg = Segment::create(dir.path(), 0, Arc::new(FileCache::new(8)), CFG).expect("create");
        append_batches(&seg, 10, 0);
        seg.truncate_to(7).expect("truncate");
        assert_eq!(seg.next_offset(), 6);
        assert!(seg.find_batch(6).expect("io").is_none());
        assert_eq!(append_batches(&seg, 1, 6), 9);
    }

    #[test]
    fn find_by_timestamp() {
        let dir = tempfile::tempdir().expect("tmp");
        let seg = Segment::create(dir.path(), 0, Arc::new(FileCache::new(8)), CFG).expect("create");
        append_batches(&seg, 30, 0); // batch i holds timestamps 1000+10i .. 1000+10i+2
        let bp = seg
            .find_batch_by_timestamp(1_095)
            .expect("io")
            .expect("found");
        assert_eq!(bp.header.base_offset, 30);
        assert!(seg.find_batch_by_timestamp(5_000).expect("io").is_none());
    }
}
