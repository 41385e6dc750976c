//! A bounded cache of open segment files, so 10,000 partitions fit in the default 1024 file
//! descriptors: a segment owns a path, not a handle, and borrows a handle from here per call.
//!
//! Owns the open `File`s and their eviction (least recently used). Never decides what is read
//! or written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::checkpoint::Durability;
use super::error::{IoContext, LogError};

pub struct FileCache {
    inner: Mutex<Inner>,
    /// Set while the log directory shuts down: fsyncs are left to one `syncfs` at the end.
    deferred: AtomicBool,
    /// Handles kept open at most; an evicted handle closes once its last borrower drops it.
    capacity: usize,
}

struct Inner {
    files: HashMap<PathBuf, (Arc<File>, u64)>,
    tick: u64,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                files: HashMap::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
            deferred: AtomicBool::new(false),
        }
    }

    /// A read-write handle on `path`, creating the file if asked.
    pub fn get(&self, path: &Path, create: bool) -> Result<Arc<File>, LogError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((file, used)) = inner.files.get_mut(path) {
            *used = tick;
            return Ok(file.clone());
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path)
                .at(path)?,
        );
        if inner.files.len() >= self.capacity {
            let oldest = inner
                .files
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(p, _)| p.clone());
            if let Some(p) = oldest {
                inner.files.remove(&p);
            }
        }
        inner.files.insert(path.to_path_buf(), (file.clone(), tick));
        Ok(file)
    }

    /// How writes through this cache's logs reach the disk now.
    pub fn durability(&self) -> Durability {
        match self.deferred.load(Ordering::Acquire) {
            true => Durability::Deferred,
            false => Durability::Fsync,
        }
    }

    pub fn set_durability(&self, d: Durability) {
        self.deferred
            .store(d == Durability::Deferred, Ordering::Release);
    }

    /// fsyncs `file`'s data, unless fsyncs are deferred.
    pub fn sync_data(&self, file: &File, path: &Path) -> Result<(), LogError> {
        match self.durability() {
            Durability::Fsync => file.sync_data().map_err(|e| LogError::sync_failed(path, e)),
            Durability::Deferred => Ok(()),
        }
    }

    /// Drops the cached handle of a file about to be renamed or deleted.
    pub fn forget(&self, path: &Path) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .files
            .remove(path);
    }

    pub fn open_count(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .files
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(2);
        let p = |i: u32| dir.path().join(format!("{i}"));
        cache.get(&p(1), true).expect("1");
        cache.get(&p(2), true).expect("2");
        cache.get(&p(1), false).expect("1 again");
        cache.get(&p(3), true).expect("3");
        assert_eq!(cache.open_count(), 2);
        let inner = cache.inner.lock().expect("lock");
        assert!(inner.files.contains_key(&p(1)) && inner.files.contains_key(&p(3)));
    }
}
