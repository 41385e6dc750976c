//! LeaderEpochFileCache: which leader epoch began at which offset, kept in the partition's
//! `leader-epoch-checkpoint` file as Kafka keeps it. Followers use it to find where their log
//! diverges from the leader's (OffsetForLeaderEpoch), so it must survive restarts and follow
//! truncations.

use std::path::{Path, PathBuf};

use super::checkpoint;
use super::error::LogError;

pub const FILE_NAME: &str = "leader-epoch-checkpoint";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn load(dir: &Path) -> Result<Self, LogError> {
        let path = dir.join(FILE_NAME);
        let entries = checkpoint::read(&path)?
            .iter()
            .map(|l| {
                let mut it = l.split_whitespace().map(str::parse::<i64>);
                match (it.next(), it.next()) {
                    (Some(Ok(e)), Some(Ok(o))) => Ok(EpochEntry {
                        epoch: e as i32,
                        start_offset: o,
                    }),
                    _ => Err(LogError::CorruptFile {
                        path: path.display().to_string(),
                        reason: format!("bad line {l:?}"),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { path, entries })
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest one.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if self.latest_epoch().is_some_and(|e| e >= epoch) {
            return Ok(());
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.persist()
    }

    /// Forgets epochs that start at or after `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<(), LogError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.persist()?;
        }
        Ok(())
    }

    /// Moves the first epoch's start up to the new log start offset.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<(), LogError> {
        let keep_from = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset)
            .unwrap_or(0);
        if keep_from == 0
            && self
                .entries
                .first()
                .is_none_or(|e| e.start_offset >= start_offset)
        {
            return Ok(());
        }
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(start_offset);
        }
        self.persist()
    }

    /// The end offset of `epoch`: the start of the next epoch, or `log_end` for the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end: i64) -> Option<(i32, i64)> {
        let idx = self.entries.iter().rposition(|e| e.epoch <= epoch)?;
        let end = self
            .entries
            .get(idx + 1)
            .map_or(log_end, |next| next.start_offset);
        Some((self.entries[idx].epoch, end))
    }

    fn persist(&self) -> Result<(), LogError> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write(&self.path, &lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_reload() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = LeaderEpochCache::load(dir.path()).expect("load");
        c.assign(0, 0).expect("e0");
        c.assign(0, 5).expect("same epoch ignored");
        c.assign(2, 10).expect("e2");
        c.assign(3, 20).expect("e3");
        assert_eq!(c.end_offset_for(2, 30), Some((2, 20)));
        assert_eq!(c.end_offset_for(1, 30), Some((0, 10)));
        c.truncate_from_end(15).expect("truncate");
        assert_eq!(c.latest_epoch(), Some(2));
        c.truncate_from_start(12).expect("start");
        let reloaded = LeaderEpochCache::load(dir.path()).expect("reload");
        assert_eq!(
            reloaded.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
    }
}
