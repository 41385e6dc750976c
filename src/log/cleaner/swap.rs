//! The swap that puts a cleaned segment in place of the segments it replaces, in Kafka's
//! crash-safe order: the cleaned files are complete and fsynced under `.cleaned` names; renamed
//! to `.swap` (the commit point: from here a restart finishes the swap, see `recovery`); the
//! old segments renamed to `.deleted`; the `.swap` files renamed into place. A kill -9 at any
//! step leaves either the old segments or the new one readable.
//!
//! Owns those renames and the segment list's change. Readers holding an old segment see it
//! marked deleted and read again from the new list (`PartitionLog::read_segments`); the list
//! is changed under its write lock, so a reader never finds the range missing.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::clean::CleanError;
use crate::log::checkpoint::sync_dir;
use crate::log::error::{IoContext, LogError};
use crate::log::partition_log::PartitionLog;
use crate::log::segment::{
    file_name, with_tail, Segment, CLEANED_SUFFIX, FILE_SUFFIXES, LOG_SUFFIX, SWAP_SUFFIX,
};

#[cfg(test)]
thread_local! {
    /// The crash tests' failpoint: the cleaning on this thread stops dead after this step,
    /// leaving the files as a kill -9 there would.
    pub static CRASH_AFTER: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Whether the crash tests stop the cleaning after `step` (never outside tests).
pub(super) fn crash_after(step: u32) -> bool {
    #[cfg(test)]
    {
        CRASH_AFTER.with(|c| c.get() == Some(step))
    }
    #[cfg(not(test))]
    {
        let _ = step;
        false
    }
}

/// Renames the segment's files from one tail to another, the log last: a `.log.swap` means
/// its indexes were renamed before it. Stops dead (a simulated crash) at `step` once the
/// indexes are renamed.
fn rename_all(
    dir: &std::path::Path,
    base: i64,
    from: &str,
    to: &str,
    step: u32,
) -> Result<bool, LogError> {
    for suffix in FILE_SUFFIXES.iter().rev() {
        if *suffix == LOG_SUFFIX && crash_after(step) {
            return Ok(false);
        }
        let path = file_name(dir, base, suffix);
        let (from, to) = (with_tail(&path, from), with_tail(&path, to));
        std::fs::rename(&from, &to).at(&from)?;
    }
    Ok(true)
}

/// Removes a cleaned segment that will not be swapped in.
pub fn discard(cleaned: Segment, dir: &std::path::Path) {
    let base = cleaned.base_offset();
    cleaned.close_handle();
    cleaned.release_indexes();
    drop(cleaned);
    discard_files(dir, base);
}

/// Replaces `old` (consecutive segments of `log`) with `cleaned` (sealed). Returns the old
/// files, renamed `.deleted`, for removal in the background.
pub fn replace(
    log: &PartitionLog,
    old: &[Arc<Segment>],
    cleaned: Segment,
) -> Result<Vec<PathBuf>, CleanError> {
    let dir = log.dir().to_path_buf();
    let base = cleaned.base_offset();
    cleaned.close_handle();
    cleaned.release_indexes();
    drop(cleaned);
    let committed = rename_all(&dir, base, CLEANED_SUFFIX, SWAP_SUFFIX, 1).and_then(|done| {
        sync_dir(&dir)?;
        Ok(done)
    });
    match committed {
        Ok(true) => {}
        Ok(false) => return Err(CleanError::Aborted),
        Err(e) => {
            discard_files(&dir, base);
            return Err(e.into());
        }
    }
    if crash_after(2) {
        return Err(CleanError::Aborted);
    }
    let config = log.config();
    let _writer = log.lock_writer();
    let mut segments = log.segments.write().unwrap_or_else(|p| p.into_inner());
    // Deletion marks the log under this same lock before renaming its directory away, and a
    // failed directory takes no writes.
    let unchanged = !log.deleting.load(Ordering::Acquire)
        && !log.health.is_failed()
        && old.iter().all(|s| {
            segments
                .get(&s.base_offset())
                .is_some_and(|current| Arc::ptr_eq(current, s))
        });
    if !unchanged {
        drop(segments);
        discard_files(&dir, base);
        return Err(CleanError::Aborted);
    }
    let mut removed = Vec::new();
    for s in old {
        segments.remove(&s.base_offset());
        removed.extend(log.fail_on_io(s.mark_deleted())?);
        if crash_after(3) {
            return Err(CleanError::Aborted);
        }
    }
    if crash_after(4) || !log.fail_on_io(rename_all(&dir, base, SWAP_SUFFIX, "", 5))? {
        return Err(CleanError::Aborted);
    }
    if crash_after(6) {
        return Err(CleanError::Aborted);
    }
    // A reader may have cached the handle of the file this name had before.
    log.files.forget(&file_name(&dir, base, LOG_SUFFIX));
    let seg_config = PartitionLog::segment_config(&config);
    let opened = Segment::open(&dir, base, log.files.clone(), seg_config, false);
    let seg = match log.fail_on_io(opened)? {
        Some(seg) => seg,
        None => {
            let seg = Segment::open_for_recovery(&dir, base, log.files.clone(), seg_config)?;
            log.fail_on_io(seg.recover(config.max_message_bytes))?;
            log.fail_on_io(seg.seal())?;
            seg
        }
    };
    seg.close_handle();
    segments.insert(base, Arc::new(seg));
    drop(segments);
    log.fail_on_io(sync_dir(&dir))?;
    Ok(removed)
}

fn discard_files(dir: &std::path::Path, base: i64) {
    for tail in [CLEANED_SUFFIX, SWAP_SUFFIX] {
        for suffix in FILE_SUFFIXES {
            let _ = std::fs::remove_file(with_tail(&file_name(dir, base, suffix), tail));
        }
    }
}
