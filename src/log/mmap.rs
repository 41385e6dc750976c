//! The read-only memory-mapped window onto a sealed index file: the only place in Runnel with
//! `unsafe`.
//!
//! Owns the mapping and raw byte copies out of it. Knows nothing of entry layouts (that is
//! `index`); sealed index files are never written, so nothing changes under a mapping.
#![allow(unsafe_code)]

use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::path::Path;

use super::error::{IoContext, LogError};

/// A read-only mapping of a whole file.
pub struct MappedFile {
    map: MmapRaw,
}

impl MappedFile {
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
        // as `self`; sealed index files are not written while mapped.
        unsafe {
            std::ptr::copy_nonoverlapping(self.map.as_ptr().add(at), out.as_mut_ptr(), out.len())
        }
    }
}
