//! Cleaner: one cleaning of one log (Kafka's Cleaner.doClean). It maps each key of the dirty
//! section (first dirty offset up to the first uncleanable one) to its latest offset, within
//! the offset map's memory; then rewrites every segment below where the map ends, in groups
//! that fit one segment, keeping for each record only the latest of its key, and swaps each
//! group's cleaned segment in.
//!
//! Owns the cleaning of one log. Never picks which log (that is `manager`) and never runs on a
//! request path: the cleaner threads call it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::filter::{self, BatchPolicy, Candidate, Filtered};
use super::offset_map::OffsetMap;
use super::swap;
use super::throttle::Throttler;
use crate::log::batch::{self, BatchHeader};
use crate::log::error::LogError;
use crate::log::partition_log::PartitionLog;
use crate::log::segment::Segment;

/// What one cleaning may use and where it stops.
pub struct CleanParams<'a> {
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    pub now: i64,
    /// `log.cleaner.dedupe.buffer.size` for this thread.
    pub map_budget: usize,
    pub load_factor: f64,
    /// How much is read at a time (`log.cleaner.io.buffer.size`).
    pub io_buffer: usize,
    pub throttle: &'a Throttler,
    pub stop: &'a AtomicBool,
}

#[derive(Debug, Default, Clone)]
pub struct CleanStats {
    /// The log's new first dirty offset: everything below it is clean.
    pub end_offset: i64,
    pub segments_cleaned: usize,
    pub segments_written: usize,
    /// Bytes of the dirty section mapped (the figure cleaning throughput is quoted in).
    pub dirty_bytes: u64,
    /// Every byte read: the dirty section once for the map, then every segment cleaned.
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub map_keys: usize,
    pub map_bytes: usize,
    /// The earliest delete horizon among the tombstones left (the log is due again then).
    pub next_delete_horizon: Option<i64>,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    /// Shutdown, or the log changed under the cleaning (truncated, deleted, retention): the
    /// cleaned files are discarded and the log is left as it was.
    #[error("cleaning aborted")]
    Aborted,
    #[error("the batch at offset {0} holds more keys than log.cleaner.dedupe.buffer.size allows")]
    BufferTooSmall(i64),
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Calls `f` on each whole batch of `seg` from `from` with a base below `until`, reading
/// `io_buffer` bytes at a time into `buf` (reused: the cleaner allocates nothing per read),
/// until `f` says stop. Returns the bytes read.
fn for_each_batch(
    seg: &Segment,
    from: i64,
    until: i64,
    p: &CleanParams,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(&[u8], &BatchHeader) -> Result<bool, CleanError>,
) -> Result<u64, CleanError> {
    let mut offset = from.max(seg.base_offset());
    let mut read = 0u64;
    loop {
        if p.stop.load(Ordering::Acquire) || seg.is_deleted() {
            return Err(CleanError::Aborted);
        }
        let Some(slice) = seg.read(offset, p.io_buffer, until, true)? else {
            return Ok(read);
        };
        slice.read_into(buf)?;
        read += buf.len() as u64;
        p.throttle.account(buf.len());
        let mut next = offset;
        for (range, h) in batch::headers(buf) {
            if !f(&buf[range], &h)? {
                return Ok(read);
            }
            next = h.next_offset();
        }
        if next <= offset {
            return Ok(read);
        }
        offset = next;
    }
}

/// Keys of the dirty section → their latest offsets, and where the map ends: the first
/// offset it does not cover (the first uncleanable offset when everything fitted).
fn build_offset_map(
    segments: &[Arc<Segment>],
    p: &CleanParams,
    buf: &mut Vec<u8>,
    stats: &mut CleanStats,
) -> Result<(OffsetMap, i64), CleanError> {
    let mut map = OffsetMap::new(p.map_budget, p.load_factor);
    let mut end = p.first_dirty;
    let mut full = false;
    let dirty = segments
        .iter()
        .filter(|s| s.next_offset() > p.first_dirty && s.base_offset() < p.first_uncleanable);
    for seg in dirty {
        stats.dirty_bytes += for_each_batch(
            seg,
            p.first_dirty,
            p.first_uncleanable,
            p,
            buf,
            |bytes, h| {
                if !h.is_control() {
                    if !map.has_room_for(h.record_count.max(0) as usize) {
                        if map.is_empty() {
                            return Err(CleanError::BufferTooSmall(h.base_offset));
                        }
                        full = true;
                        return Ok(false);
                    }
                    filter::for_each_key(bytes, h, |offset, key| {
                        if offset >= p.first_dirty {
                            map.put(key, offset);
                        }
                    })?;
                }
                end = h.next_offset();
                Ok(true)
            },
        )?;
        if full {
            break;
        }
    }
    if !full {
        end = end.max(p.first_uncleanable);
    }
    stats.bytes_read += stats.dirty_bytes;
    stats.map_keys = map.len();
    stats.map_bytes = map.memory_bytes();
    Ok((map, end))
}

/// Consecutive segments that clean into one: together within `segment.bytes`, each index
/// within `segment.index.bytes`, and offsets relative to the first within an i32.
fn group_by_size(
    segments: &[Arc<Segment>],
    max_bytes: u64,
    max_index: usize,
) -> Vec<Vec<Arc<Segment>>> {
    let mut groups: Vec<Vec<Arc<Segment>>> = Vec::new();
    let mut sums = (0u64, 0usize, 0usize);
    for seg in segments {
        let (bytes, oi, ti) = (
            seg.size(),
            seg.offset_index().len() * 8,
            seg.time_index().len() * 12,
        );
        let fits = groups.last().is_some_and(|g| {
            sums.0 + bytes <= max_bytes
                && sums.1 + oi <= max_index
                && sums.2 + ti <= max_index
                && seg.next_offset() - 1 - g[0].base_offset() <= i64::from(i32::MAX)
        });
        if fits {
            sums = (sums.0 + bytes, sums.1 + oi, sums.2 + ti);
            if let Some(g) = groups.last_mut() {
                g.push(seg.clone());
            }
        } else {
            sums = (bytes, oi, ti);
            groups.push(vec![seg.clone()]);
        }
    }
    groups
}

/// Cleans `log` as `p` says. The caller records `end_offset` as the log's new first dirty
/// offset.
pub fn clean(log: &PartitionLog, p: &CleanParams) -> Result<CleanStats, CleanError> {
    let started = Instant::now();
    let mut stats = CleanStats::default();
    let segments = log.segments_snapshot();
    let Some(active_base) = segments.last().map(|s| s.base_offset()) else {
        return Err(CleanError::Aborted);
    };
    let mut buf = Vec::new();
    let (map, end) = build_offset_map(&segments, p, &mut buf, &mut stats)?;
    stats.end_offset = end;
    let config = log.config();
    let cleanable: Vec<Arc<Segment>> = segments
        .iter()
        .filter(|s| s.base_offset() < end && s.base_offset() < active_base)
        .cloned()
        .collect();
    let producers = log.producer_last_offsets();
    let policy_for = |h: &BatchHeader| BatchPolicy {
        new_horizon: p.now.saturating_add(config.delete_retention_ms),
        retain_empty: h.has_producer_id()
            && producers.get(&h.producer_id) == Some(&h.last_offset()),
    };
    let mut next_horizon: Option<i64> = None;
    for group in group_by_size(&cleanable, config.segment_bytes, config.segment_index_bytes) {
        let cleaned = Segment::create_cleaned(
            log.dir(),
            group[0].base_offset(),
            log.files.clone(),
            PartitionLog::segment_config(&config),
        )?;
        let mut out = Output::new(&cleaned, p);
        let written = (|| -> Result<(), CleanError> {
            for seg in &group {
                stats.bytes_read +=
                    for_each_batch(seg, seg.base_offset(), i64::MAX, p, &mut buf, |bytes, h| {
                        stats.records_read += h.record_count.max(0) as u64;
                        let kept = if h.is_control() {
                            Filtered::Unchanged
                        } else {
                            let horizon = h.delete_horizon();
                            filter::filter(bytes, h, &policy_for(h), |c: &Candidate<'_>| {
                                let latest = c
                                    .key
                                    .is_some_and(|k| map.get(k).is_none_or(|o| c.offset >= o));
                                let expired = c.tombstone && horizon.is_some_and(|hz| p.now >= hz);
                                latest && !expired
                            })?
                        };
                        let bytes = match &kept {
                            Filtered::Unchanged => bytes,
                            Filtered::Rebuilt(b) => b.as_slice(),
                            Filtered::Dropped => return Ok(true),
                        };
                        let nh = BatchHeader::parse(bytes)?;
                        stats.records_kept += nh.record_count.max(0) as u64;
                        if let Some(hz) = nh.delete_horizon() {
                            next_horizon = Some(next_horizon.map_or(hz, |n| n.min(hz)));
                        }
                        out.push(bytes, nh)?;
                        Ok(true)
                    })?;
            }
            out.flush()?;
            cleaned.seal()?;
            Ok(())
        })();
        stats.bytes_written += out.written;
        if let Err(e) = written {
            swap::discard(cleaned, log.dir());
            return Err(e);
        }
        if swap::crash_after(0) {
            return Err(CleanError::Aborted);
        }
        let removed = swap::replace(log, &group, cleaned)?;
        crate::log::manager::remove_in_background(removed);
        stats.segments_cleaned += group.len();
        stats.segments_written += 1;
    }
    stats.next_delete_horizon = next_horizon;
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Batches bound for the cleaned segment, written in `io_buffer`-sized appends.
struct Output<'a> {
    seg: &'a Segment,
    p: &'a CleanParams<'a>,
    buf: Vec<u8>,
    batches: Vec<(std::ops::Range<usize>, BatchHeader)>,
    written: u64,
}

impl<'a> Output<'a> {
    fn new(seg: &'a Segment, p: &'a CleanParams<'a>) -> Self {
        Self {
            seg,
            p,
            buf: Vec::new(),
            batches: Vec::new(),
            written: 0,
        }
    }

    fn push(&mut self, bytes: &[u8], h: BatchHeader) -> Result<(), CleanError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.batches.push((start..self.buf.len(), h));
        if self.buf.len() >= self.p.io_buffer {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), CleanError> {
        if self.batches.is_empty() {
            return Ok(());
        }
        self.seg.append(&self.buf, &self.batches)?;
        self.p.throttle.account(self.buf.len());
        self.written += self.buf.len() as u64;
        self.buf.clear();
        self.batches.clear();
        Ok(())
    }
}

/// The earliest delete horizon among the batches of `log` below `upto` (after a restart, when
/// the cleaner has not seen the log yet): when its next tombstones are due.
pub fn earliest_delete_horizon(log: &PartitionLog, upto: i64) -> Result<Option<i64>, LogError> {
    let mut earliest: Option<i64> = None;
    for seg in log
        .segments_snapshot()
        .iter()
        .filter(|s| s.base_offset() < upto)
    {
        seg.for_each_batch_from(seg.base_offset(), |h| {
            if let Some(hz) = h.delete_horizon() {
                earliest = Some(earliest.map_or(hz, |e| e.min(hz)));
            }
        })?;
    }
    Ok(earliest)
}
