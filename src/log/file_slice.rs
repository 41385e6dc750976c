//! FileSlice: a run of whole record batches in a segment file, named by handle, position and
//! length instead of copied out (Kafka's FileRecords slice). Fetch answers hand it to the
//! connection, which sends it from the page cache to the socket (sendfile); the few readers
//! that must look inside the records read it into memory.
//!
//! Owns nothing but the handle it borrows: the file stays open while a slice lives, even if
//! the segment is deleted meanwhile. Never writes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::error::{IoContext, LogError};

#[derive(Clone)]
pub struct FileSlice {
    file: Arc<File>,
    path: Arc<Path>,
    position: u64,
    len: usize,
}

impl std::fmt::Debug for FileSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}[{}..+{}]",
            self.path.display(),
            self.position,
            self.len
        )
    }
}

impl FileSlice {
    pub fn new(file: Arc<File>, path: Arc<Path>, position: u64, len: usize) -> Self {
        Self {
            file,
            path,
            position,
            len,
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
    pub fn position(&self) -> u64 {
        self.position
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, read into `buf` (replacing what it held; its allocation is reused).
    pub fn read_into(&self, buf: &mut Vec<u8>) -> Result<(), LogError> {
        buf.resize(self.len, 0);
        self.file.read_exact_at(buf, self.position).at(&self.path)
    }

    /// The bytes, copied into memory (for readers that decode records).
    pub fn read_bytes(&self) -> Result<Bytes, LogError> {
        let mut buf = vec![0u8; self.len];
        self.file
            .read_exact_at(&mut buf, self.position)
            .at(&self.path)?;
        Ok(Bytes::from(buf))
    }
}
