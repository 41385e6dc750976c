//! Space held in reserve for the metadata quorum's own files: a file of allocated blocks in
//! `metadata.log.dir`, given up when a snapshot, a purge or truncation of the metadata log, or
//! a vote finds the file system full, so that one write still lands. The Raft library treats
//! any failed storage write as fatal, and the data logs may share the file system and fill
//! it; each of these writes replaces a file of about its own size, so once the old one is
//! gone the reserve is allocated again.
//!
//! Appends to the metadata log have their own reserve, allocated past the log's end
//! (`log_store`). Owns the reserve file alone; never writes metadata.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::log::LogError;

const FILE: &str = "reserve";
/// Room for a snapshot or a rewrite of the metadata log of some thousands of topics; a larger
/// cluster's metadata wants a `metadata.log.dir` of its own, as with Kafka.
pub const SIZE: u64 = 8 << 20;

pub struct Ballast {
    path: PathBuf,
    size: u64,
}

impl Ballast {
    /// The reserve in `dir`, allocated now if there is room.
    pub fn new(dir: &Path, size: u64) -> Self {
        let ballast = Self {
            path: dir.join(FILE),
            size,
        };
        ballast.refill();
        ballast
    }

    /// Allocates the reserve's blocks unless they already are; a file system without room
    /// (or without fallocate) leaves it smaller until the next try.
    fn refill(&self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.size) {
            return;
        }
        let allocated = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)
            .and_then(|f| {
                rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, self.size)?;
                f.sync_all()
            });
        if let Err(e) = allocated {
            // A partly allocated reserve would claim a size it does not hold.
            let _ = std::fs::remove_file(&self.path);
            tracing::debug!(error = %e, "metadata: no space reserved");
        }
    }

    /// Runs `op`; if it finds the file system full, gives up the reserve and runs it once
    /// more. Either way the reserve is allocated again where there is room.
    pub fn with_room<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let r = match op() {
            Err(LogError::NoSpace { path }) => {
                if std::fs::remove_file(&self.path).is_ok() {
                    tracing::warn!(what, %path, "metadata: file system full, reserved space used");
                    op()
                } else {
                    Err(LogError::NoSpace { path })
                }
            }
            r => r,
        };
        self.refill();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_allocated_and_given_up_once_for_a_write_that_finds_no_room() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ballast = Ballast::new(dir.path(), 1 << 20);
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE))
                .expect("reserve")
                .len(),
            1 << 20
        );
        let mut tries = 0;
        let r = ballast.with_room("test", || {
            tries += 1;
            if dir.path().join(FILE).exists() {
                Err(LogError::NoSpace { path: "x".into() })
            } else {
                Ok(tries)
            }
        });
        assert_eq!(r.expect("second try"), 2);
        assert!(dir.path().join(FILE).exists(), "allocated again");
    }
}
