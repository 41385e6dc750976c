//! A sparse index file of fixed-size, sorted entries: the shared machinery under `OffsetIndex`
//! and `TimeIndex` (Kafka's AbstractIndex).
//!
//! Owns the entry count, binary search and the file's contents. Never reads the log.
//! The active segment's index lives in memory and reaches its file on `flush` and `seal`
//! (recovery rebuilds what a crash lost), so an idle partition holds no memory map: 50,000
//! partitions would need 100,000 maps against the default `vm.max_map_count` of 65,530. A
//! sealed index is mapped read-only when first searched. One writer appends (under the
//! partition's append lock); readers see only entries published through the atomic count.

use std::fs::OpenOptions;
use std::io::Read;
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
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
    /// The active segment's index: its entries, of which the first `written` are in the file.
    /// `exact`: the file holds nothing past them (it was made here, or cut to them), so
    /// sealing need not trim it: one open and one ftruncate less per partition at shutdown.
    Active {
        bytes: Vec<u8>,
        written: usize,
        exact: bool,
    },
}

/// Where a lookup reads entries from.
enum Source<'a> {
    Map(Option<&'a MappedFile>),
    Memory(&'a [u8]),
}

impl Source<'_> {
    fn entry<E: IndexEntry>(&self, i: usize) -> Option<E> {
        let at = i * E::SIZE;
        let mut buf = [0u8; 16];
        match self {
            Source::Map(map) => {
                let map = (*map)?;
                if at + E::SIZE > map.len() {
                    return None;
                }
                map.read(at, &mut buf[..E::SIZE]);
            }
            Source::Memory(bytes) => buf[..E::SIZE].copy_from_slice(bytes.get(at..at + E::SIZE)?),
        }
        Some(E::decode(&buf[..E::SIZE]))
    }
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
    /// A new, empty, writable index of at most `max_bytes`.
    pub fn create(path: &Path, max_bytes: usize) -> Result<Self, LogError> {
        std::fs::File::create(path).at(path)?;
        Ok(Self::active(path, max_bytes, Vec::new(), true))
    }

    /// Reopens an index for appending, keeping its first `entries` entries. The file is not
    /// preallocated: it only ever holds entries written after the log bytes they point to were
    /// flushed (and loses them when the log is truncated), so after a crash it is a valid
    /// prefix of the index and recovery can trust it.
    pub fn open_writable(path: &Path, max_bytes: usize, entries: usize) -> Result<Self, LogError> {
        let mut bytes = vec![0u8; entries * E::SIZE];
        if entries > 0 {
            std::fs::File::open(path)
                .and_then(|mut f| f.read_exact(&mut bytes))
                .at(path)?;
        }
        Ok(Self::active(path, max_bytes, bytes, false))
    }

    fn active(path: &Path, max_bytes: usize, bytes: Vec<u8>, exact: bool) -> Self {
        let entries = bytes.len() / E::SIZE;
        let max_entries = (max_bytes / E::SIZE).max(entries).max(1);
        Self {
            path: path.to_path_buf(),
            mapping: RwLock::new(Mapping::Active {
                bytes,
                written: entries,
                exact,
            }),
            entries: AtomicUsize::new(entries),
            max_entries,
            _entry: PhantomData,
        }
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
        matches!(*self.read_lock(), Mapping::Active { .. })
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
        let mut guard = self.write_lock();
        let Mapping::Active { bytes, .. } = &mut *guard else {
            return false;
        };
        let mut buf = [0u8; 16];
        entry.encode(&mut buf[..E::SIZE]);
        bytes.truncate(n * E::SIZE);
        bytes.extend_from_slice(&buf[..E::SIZE]);
        self.entries.store(n + 1, Ordering::Release);
        true
    }

    /// Forgets every entry from `n` on (truncation of the log behind them). Entries already in
    /// the file are cut from it too: a crash must not leave them pointing into rewritten log.
    pub fn truncate_entries(&self, n: usize) -> Result<(), LogError> {
        if n >= self.len() {
            return Ok(());
        }
        self.entries.store(n, Ordering::Release);
        let mut guard = self.write_lock();
        if let Mapping::Active {
            bytes,
            written,
            exact,
        } = &mut *guard
        {
            bytes.truncate(n * E::SIZE);
            if *written > n || !*exact {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .at(&self.path)?;
                file.set_len((n * E::SIZE) as u64).at(&self.path)?;
                *written = n;
                *exact = true;
            }
        }
        Ok(())
    }

    /// Runs `f` over the entries' source, mapping a cold sealed index first.
    fn with_source<T>(&self, f: impl FnOnce(&Source) -> T) -> Result<T, LogError> {
        {
            let guard = self.read_lock();
            match &*guard {
                Mapping::Active { bytes, .. } => return Ok(f(&Source::Memory(bytes))),
                Mapping::ReadOnly(m) => return Ok(f(&Source::Map(m.as_ref()))),
                Mapping::Cold => {}
            }
        }
        let mut guard = self.write_lock();
        if matches!(*guard, Mapping::Cold) {
            *guard = Mapping::ReadOnly(MappedFile::open_ro(&self.path)?);
        }
        Ok(match &*guard {
            Mapping::Active { bytes, .. } => f(&Source::Memory(bytes)),
            Mapping::ReadOnly(m) => f(&Source::Map(m.as_ref())),
            Mapping::Cold => f(&Source::Map(None)),
        })
    }

    pub fn entry(&self, i: usize) -> Result<Option<E>, LogError> {
        if i >= self.len() {
            return Ok(None);
        }
        self.with_source(|s| s.entry(i))
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
        self.with_source(|s| {
            let (mut lo, mut hi) = (0usize, n);
            // Invariant: entries before `lo` have key ≤ target; entries from `hi` have key > target.
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match s.entry::<E>(mid) {
                    Some(e) if key(&e) <= target => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            lo.checked_sub(1).and_then(|i| s.entry(i))
        })
    }

    /// Every published entry, in order (recovery checks and tests).
    pub fn all(&self) -> Result<Vec<E>, LogError> {
        let n = self.len();
        self.with_source(|s| (0..n).filter_map(|i| s.entry(i)).collect())
    }

    /// Writes the entries of an active index not yet in its file; the file, for the caller to
    /// fsync, if anything was written. Only the partition's writer calls this.
    pub fn write_pending(&self) -> Result<Option<std::fs::File>, LogError> {
        let mut guard = self.write_lock();
        let Mapping::Active { bytes, written, .. } = &mut *guard else {
            return Ok(None);
        };
        let n = bytes.len() / E::SIZE;
        if *written >= n {
            return Ok(None);
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .at(&self.path)?;
        let at = (*written * E::SIZE) as u64;
        if let Err(e) = file.write_all_at(&bytes[*written * E::SIZE..], at) {
            // No part of an entry may stay behind in the file: it must remain a prefix.
            file.set_len(at).at(&self.path)?;
            return Err(LogError::io(&self.path, e));
        }
        *written = n;
        Ok(Some(file))
    }

    /// Writes the file to its entries, dropping them from memory and any mapping: the form
    /// Kafka leaves a closed index in. (`Segment::seal` flushes first.)
    pub fn seal(&self) -> Result<(), LogError> {
        self.write_pending()?;
        let mut guard = self.write_lock();
        let exact = matches!(*guard, Mapping::Active { exact: true, .. });
        *guard = Mapping::Cold;
        if exact {
            return Ok(());
        }
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .at(&self.path)?;
        file.set_len((self.len() * E::SIZE) as u64).at(&self.path)
    }

    /// Drops a read-only mapping of a sealed index (it is remapped on the next lookup).
    pub fn release(&self) {
        let mut guard = self.write_lock();
        if matches!(*guard, Mapping::ReadOnly(_)) {
            *guard = Mapping::Cold;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::offset_index::{OffsetIndex, OffsetPosition};

    fn entry(i: u32) -> OffsetPosition {
        OffsetPosition {
            relative_offset: i * 10,
            position: i * 4096,
        }
    }

    fn file_len(index: &OffsetIndex) -> u64 {
        std::fs::metadata(index.path()).expect("stat").len()
    }

    #[test]
    fn active_entries_reach_the_file_only_when_flushed_and_hold_no_mapping() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.index");
        let index = OffsetIndex::create(&path, 1024).expect("create");
        for i in 0..5 {
            assert!(index.append(entry(i)));
        }
        assert!(index.is_writable());
        assert_eq!(index.floor(25).expect("floor"), Some(entry(2)));
        assert_eq!(file_len(&index), 0, "nothing written before a flush");
        index.write_pending().expect("flush");
        assert_eq!(
            file_len(&index),
            40,
            "exactly the entries, not preallocated"
        );
        index.append(entry(5));
        // A crash now: the file is a valid prefix of the index, reopened as such.
        let reopened = OffsetIndex::open_writable(&path, 1024, 5).expect("reopen");
        assert_eq!(
            reopened.all().expect("all"),
            (0..5).map(entry).collect::<Vec<_>>()
        );
    }

    #[test]
    fn truncation_cuts_flushed_entries_from_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.index");
        let index = OffsetIndex::create(&path, 1024).expect("create");
        for i in 0..6 {
            index.append(entry(i));
        }
        index.write_pending().expect("flush");
        index.truncate_entries(2).expect("truncate");
        assert_eq!(file_len(&index), 16);
        assert_eq!(index.last().expect("last"), Some(entry(1)));
        // New entries after the cut land where the old ones were.
        index.append(OffsetPosition {
            relative_offset: 11,
            position: 5000,
        });
        index.write_pending().expect("flush");
        assert_eq!(file_len(&index), 24);
        assert_eq!(
            index.floor(100).expect("floor").map(|e| e.position),
            Some(5000)
        );
    }

    #[test]
    fn sealing_writes_trims_and_later_lookups_map_the_file_read_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.index");
        let index = OffsetIndex::create(&path, 1024).expect("create");
        for i in 0..4 {
            index.append(entry(i));
        }
        index.seal().expect("seal");
        assert!(!index.is_writable() && !index.is_mapped());
        assert_eq!(file_len(&index), 32);
        assert!(!index.append(entry(9)), "a sealed index takes no entries");
        assert_eq!(index.floor(31).expect("floor"), Some(entry(3)));
        assert!(index.is_mapped());
        index.release();
        assert!(!index.is_mapped());
        let sealed = OffsetIndex::open_sealed(&path).expect("open");
        assert_eq!(sealed.len(), 4);
    }

    #[test]
    fn a_full_index_refuses_entries() {
        let dir = tempfile::tempdir().expect("tmp");
        let index = OffsetIndex::create(&dir.path().join("0.index"), 16).expect("create");
        assert!(index.append(entry(0)) && index.append(entry(1)));
        assert!(index.is_full());
        assert!(!index.append(entry(2)));
    }
}
