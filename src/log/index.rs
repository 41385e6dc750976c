//! A sparse index file of fixed-size, sorted entries, memory-mapped: the shared machinery under
//! `OffsetIndex` and `TimeIndex` (Kafka's AbstractIndex).
//!
//! Owns the entry count, binary search, preallocation and trimming. Never reads the log.
//! One writer appends (under the partition's append lock); readers see only entries published
//! through the atomic count, so lookups never wait for the writer.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

use super::error::{IoContext, LogError};
use super::mmap::MappedFile;

/// One entry's on-disk form.
pub trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    /// The value entries are sorted by (offset for the offset index, timestamp for the time index).
    fn key(&self) -> i64;
    fn encode(&self, out: &mut [u8]);
    fn decode(bytes: &[u8]) -> Self;
}

enum Mapping {
    /// A sealed index not read since it was opened or sealed: no mapping, no handle.
    Cold,
    ReadOnly(Option<MappedFile>),
    Writable(MappedFile),
}

pub struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    mapping: RwLock<Mapping>,
    entries: AtomicUsize,
    /// Entries the writable mapping can hold (`segment.index.bytes` / entry size).
    max_entries: usize,
    _entry: PhantomData<E>,
}

impl<E: IndexEntry> IndexFile<E> {
    /// A new, empty, writable index preallocated to `max_bytes`.
    pub fn create(path: &Path, max_bytes: usize) -> Result<Self, LogError> {
        let _ = std::fs::remove_file(path);
        Self::open_writable(path, max_bytes, 0)
    }

    /// Reopens an index for appending, keeping its first `entries` entries.
    pub fn open_writable(path: &Path, max_bytes: usize, entries: usize) -> Result<Self, LogError> {
        let max_entries = (max_bytes / E::SIZE).max(entries).max(1);
        let map = MappedFile::open_rw(path, (max_entries * E::SIZE) as u64)?;
        Ok(Self {
            path: path.to_path_buf(),
            mapping: RwLock::new(Mapping::Writable(map)),
            entries: AtomicUsize::new(entries),
            max_entries,
            _entry: PhantomData,
        })
    }

    /// A sealed (trimmed) index; mapped only when first searched.
    pub fn open_sealed(path: &Path) -> Result<Self, LogError> {
        let len = std::fs::metadata(path).at(path)?.len() as usize;
        Ok(Self {
            path: path.to_path_buf(),
            mapping: RwLock::new(Mapping::Cold),
            entries: AtomicUsize::new(len / E::SIZE),
            max_entries: len / E::SIZE,
            _entry: PhantomData,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_full(&self) -> bool {
        self.len() >= self.max_entries
    }
    pub fn is_mapped(&self) -> bool {
        !matches!(*self.read_lock(), Mapping::Cold)
    }

    pub fn is_writable(&self) -> bool {
        matches!(*self.read_lock(), Mapping::Writable(_))
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, Mapping> {
        self.mapping.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_lock(&self) -> std::sync::RwLockWriteGuard<'_, Mapping> {
        self.mapping.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an entry; returns false (and writes nothing) when the index is full.
    pub fn append(&self, entry: E) -> bool {
        let n = self.len();
        if n >= self.max_entries {
            return false;
        }
        let guard = self.read_lock();
        let Mapping::Writable(map) = &*guard else {
            return false;
        };
        let mut buf = [0u8; 16];
        entry.encode(&mut buf[..E::SIZE]);
        map.write(n * E::SIZE, &buf[..E::SIZE]);
        self.entries.store(n + 1, Ordering::Release);
        true
    }

    /// Forgets every entry from `n` on (truncation of the log behind them).
    pub fn truncate_entries(&self, n: usize) {
        if n < self.len() {
            self.entries.store(n, Ordering::Release);
        }
    }

    /// Entry `i` of the published ones.
    fn entry_in(map: Option<&MappedFile>, i: usize) -> Option<E> {
        let map = map?;
        if (i + 1) * E::SIZE > map.len() {
            return None;
        }
        let mut buf = [0u8; 16];
        map.read(i * E::SIZE, &mut buf[..E::SIZE]);
        Some(E::decode(&buf[..E::SIZE]))
    }

    /// Runs `f` over the mapping, mapping a cold sealed index first.
    fn with_map<T>(&self, f: impl FnOnce(Option<&MappedFile>) -> T) -> Result<T, LogError> {
        {
            let guard = self.read_lock();
            match &*guard {
                Mapping::Writable(m) => return Ok(f(Some(m))),
                Mapping::ReadOnly(m) => return Ok(f(m.as_ref())),
                Mapping::Cold => {}
            }
        }
        let mut guard = self.write_lock();
        if matches!(*guard, Mapping::Cold) {
            *guard = Mapping::ReadOnly(MappedFile::open_ro(&self.path)?);
        }
        match &*guard {
            Mapping::Writable(m) => Ok(f(Some(m))),
            Mapping::ReadOnly(m) => Ok(f(m.as_ref())),
            Mapping::Cold => Ok(f(None)),
        }
    }

    pub fn entry(&self, i: usize) -> Result<Option<E>, LogError> {
        if i >= self.len() {
            return Ok(None);
        }
        self.with_map(|m| Self::entry_in(m, i))
    }

    pub fn last(&self) -> Result<Option<E>, LogError> {
        match self.len() {
            0 => Ok(None),
            n => self.entry(n - 1),
        }
    }

    /// The last entry whose key is ≤ `target`, if any.
    pub fn floor(&self, target: i64) -> Result<Option<E>, LogError> {
        self.floor_by(target, |e| e.key())
    }

    /// As `floor`, by another value the entries are sorted by (an offset index's positions).
    pub fn floor_by(&self, target: i64, key: impl Fn(&E) -> i64) -> Result<Option<E>, LogError> {
        let n = self.len();
        self.with_map(|m| {
            let (mut lo, mut hi) = (0usize, n);
            // Invariant: entries before `lo` have key ≤ target; entries from `hi` have key > target.
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match Self::entry_in(m, mid) {
                    Some(e) if key(&e) <= target => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            lo.checked_sub(1).and_then(|i| Self::entry_in(m, i))
        })
    }

    /// Every published entry, in order (recovery checks and tests).
    pub fn all(&self) -> Result<Vec<E>, LogError> {
        let n = self.len();
        self.with_map(|m| (0..n).filter_map(|i| Self::entry_in(m, i)).collect())
    }

    pub fn flush(&self) -> Result<(), LogError> {
        if let Mapping::Writable(m) = &*self.read_lock() {
            m.flush().at(&self.path)?;
        }
        Ok(())
    }

    /// Flushes, unmaps and trims the file to its entries: the form Kafka leaves a closed index in.
    pub fn seal(&self) -> Result<(), LogError> {
        let mut guard = self.write_lock();
        if let Mapping::Writable(m) = &*guard {
            m.flush().at(&self.path)?;
        }
        *guard = Mapping::Cold;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .at(&self.path)?;
        file.set_len((self.len() * E::SIZE) as u64).at(&self.path)?;
        Ok(())
    }

    /// Drops a read-only mapping of a sealed index (it is remapped on the next lookup).
    pub fn release(&self) {
        let mut guard = self.write_lock();
        if matches!(*guard, Mapping::ReadOnly(_)) {
            *guard = Mapping::Cold;
        }
    }
}
