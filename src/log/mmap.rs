//! The memory-mapped window onto an index file: the only place in Runnel with `unsafe`.
//!
//! Owns the mapping and raw byte copies in and out of it. Knows nothing of entry layouts
//! (that is `index`); never grows or shrinks the file while a mapping of it is alive.
#![allow(unsafe_code)]

use memmap2::{MmapOptions, MmapRaw};
use std::fs::{File, OpenOptions};
use std::path::Path;

use super::error::{IoContext, LogError};

/// A mapping of a whole file. Writers and readers copy bytes through it; callers keep writers
/// and readers on disjoint ranges (readers only read entries the writer has published).
pub struct MappedFile {
    map: MmapRaw,
}

impl MappedFile {
    /// Maps `path` writable, first sizing the file to `len` bytes (sparse if it grows).
    pub fn open_rw(path: &Path, len: u64) -> Result<Self, LogError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .at(path)?;
        file.set_len(len).at(path)?;
        let map = MmapOptions::new().map_raw(&file).at(path)?;
        Ok(Self { map })
    }

    /// Maps an existing file read-only; `None` when it is empty (an empty mapping is invalid).
    pub fn open_ro(path: &Path) -> Result<Option<Self>, LogError> {
        let file = File::open(path).at(path)?;
        if file.metadata().at(path)?.len() == 0 {
            return Ok(None);
        }
        let map = MmapOptions::new().map_raw_read_only(&file).at(path)?;
        Ok(Some(Self { map }))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Copies `out.len()` bytes starting at `at`. Panics if the range is outside the mapping,
    /// which callers rule out by checking against `len()`.
    pub fn read(&self, at: usize, out: &mut [u8]) {
        assert!(at + out.len() <= self.map.len(), "read past the mapping");
        // SAFETY: the range is inside the mapping (checked above) and the mapping lives as long
        // as `self`. Callers never read a range a writer is writing: entries are published
        // through an atomic count only after they are written.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(at), out.as_mut_ptr(), out.len())
        }
    }

    /// Copies `bytes` into the mapping at `at`. Only the partition's single writer calls this.
    pub fn write(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.map.len(), "write past the mapping");
        // SAFETY: the range is inside a writable mapping (checked above); the single writer is
        // serialised by the partition log and readers never look at unpublished entries.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.map.as_mut_ptr().add(at),
                bytes.len(),
            )
        }
    }

    pub fn flush(&self) -> std::io::Result<()> {
        self.map.flush()
    }
}
