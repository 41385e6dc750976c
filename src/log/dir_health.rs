//! The health of one log directory, shared by every log in it: failed (an I/O error or a
//! failed fsync took it offline, as Kafka's LogDirFailureChannel does: nothing more is
//! written there) or full (a write found no space: appends fail until one succeeds again).
//!
//! Only records and reports state; the logs decide what each error means.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub struct DirHealth {
    failed: AtomicBool,
    full: AtomicBool,
}

impl DirHealth {
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    pub fn fail(&self, dir: &Path) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(dir = %dir.display(), "I/O failure: log directory is now offline");
        }
    }

    /// A write found the file system full.
    pub fn note_full(&self, dir: &Path) {
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(dir = %dir.display(), "no space left: appends fail with KAFKA_STORAGE_ERROR until space returns");
        }
    }

    /// An append succeeded: if the directory was full, space has returned.
    pub fn note_written(&self, dir: &Path) {
        if self.is_full() && self.full.swap(false, Ordering::Relaxed) {
            tracing::info!(dir = %dir.display(), "space returned: appends resume");
        }
    }
}
