//! LeaderEpochFileCache: which leader epoch began at which offset, kept in the partition's
//! `leader-epoch-checkpoint` file as Kafka keeps it. Followers use it to find where their log
//! diverges from the leader's (OffsetForLeaderEpoch), so it must survive restarts and follow
//! truncations.

use std::path::{Path, PathBuf};

use super::checkpoint::{self, Durability};
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
    /// The last entry was begun (`begin`) and is not in the file yet.
    unwritten: bool,
    /// The checkpoint file exists (loaded or written).
    in_file: bool,
}

impl LeaderEpochCache {
    /// The checkpoint in `dir`, without the epochs that start at or after `log_end` (begun but
    /// never appended to, or cut off by a crash), as Kafka's LogLoader truncates it. The file
    /// keeps them until its next write: dropping them again at the next load is harmless, and
    /// rewriting thousands of checkpoints made restarts after a crash slow.
    pub fn load(dir: &Path, log_end: i64) -> Result<Self, LogError> {
        let path = dir.join(FILE_NAME);
        let lines = checkpoint::read_existing(&path)?;
        let in_file = lines.is_some();
        let entries = lines
            .unwrap_or_default()
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
            .collect::<Result<Vec<_>, _>>()?;
        let mut cache = Self {
            path,
            entries,
            unwritten: false,
            in_file,
        };
        cache.entries.retain(|e| e.start_offset < log_end);
        Ok(cache)
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest one: in
    /// memory at once (followers' fetches and OffsetForLeaderEpoch see it), in the file at the
    /// log's next flush (`flush`), before the recovery point passes it. A crash loses nothing:
    /// recovery scans everything past the recovery point and finds the epochs of its batches
    /// again, and `load` drops an epoch that starts at the log end. (Written with each first
    /// append of an epoch, one record to each of 50,000 partitions cost 100,000 fsyncs; Kafka
    /// stopped fsyncing here too, KAFKA-15046.)
    pub fn begin(&mut self, epoch: i32, start_offset: i64) {
        if self.latest_epoch().is_some_and(|e| e >= epoch) {
            return;
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.unwritten = true;
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

    fn lines(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect()
    }

    /// Writes the checkpoint if epochs changed since it was last written. A shutdown
    /// (`Deferred`) leaves out the file of a log that never had it and holds one epoch, from
    /// its start: the load takes that epoch from the log's first batch (`wants_first`). At
    /// 50,000 partitions that is 50,000 files fewer to create and sync while the broker stops.
    pub fn flush(&mut self, durability: Durability, log_start: i64) -> Result<(), LogError> {
        let derivable = !self.in_file
            && matches!(self.entries.as_slice(), [only] if only.start_offset == log_start);
        match self.unwritten {
            true if durability == Durability::Deferred && derivable => Ok(()),
            true => self.write(durability),
            false => Ok(()),
        }
    }

    /// Whether the load must begin the first epoch from the log's first batch: there is no
    /// checkpoint file (see `flush`) and nothing begun since. In memory only; the next flush
    /// that may write writes it.
    pub fn wants_first(&self) -> bool {
        !self.in_file && self.entries.is_empty()
    }

    fn persist(&mut self) -> Result<(), LogError> {
        self.write(Durability::Fsync)
    }

    fn write(&mut self, durability: Durability) -> Result<(), LogError> {
        checkpoint::write(&self.path, &self.lines(), durability)?;
        self.unwritten = false;
        self.in_file = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_reload() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = LeaderEpochCache::load(dir.path(), i64::MAX).expect("load");
        c.begin(0, 0);
        c.begin(0, 5);
        c.begin(2, 10);
        c.begin(3, 20);
        assert_eq!(c.end_offset_for(2, 30), Some((2, 20)));
        assert_eq!(c.end_offset_for(1, 30), Some((0, 10)));
        c.truncate_from_end(15).expect("truncate");
        assert_eq!(c.latest_epoch(), Some(2));
        c.truncate_from_start(12).expect("start");
        let reloaded = LeaderEpochCache::load(dir.path(), i64::MAX).expect("reload");
        assert_eq!(
            reloaded.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
    }

    /// Epochs beginning at the log end are dropped by a load (Kafka's LogLoader does the same)
    /// without a write: the file keeps them until its next change, and every load drops them.
    #[test]
    fn load_forgets_epochs_at_the_log_end_without_writing() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = LeaderEpochCache::load(dir.path(), i64::MAX).expect("load");
        c.begin(1, 0);
        c.begin(4, 10);
        c.flush(Durability::Fsync, 0).expect("flush");
        let file = std::fs::read(dir.path().join(FILE_NAME)).expect("read");
        let mut at_end = LeaderEpochCache::load(dir.path(), 10).expect("at end");
        assert_eq!(at_end.latest_epoch(), Some(1));
        assert_eq!(
            std::fs::read(dir.path().join(FILE_NAME)).expect("read"),
            file
        );
        at_end.begin(5, 10);
        at_end.flush(Durability::Fsync, 0).expect("flush");
        let reloaded = LeaderEpochCache::load(dir.path(), 11).expect("reload");
        let epochs: Vec<i32> = reloaded.entries().iter().map(|e| e.epoch).collect();
        assert_eq!(epochs, vec![1, 5]);
    }

    /// A begun epoch reaches the file at the next flush, not before; a flush with nothing
    /// new writes nothing.
    #[test]
    fn epochs_reach_the_file_when_the_log_flushes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut c = LeaderEpochCache::load(dir.path(), i64::MAX).expect("load");
        c.begin(1, 0);
        c.flush(Durability::Fsync, 0).expect("flush");
        c.begin(3, 7);
        assert_eq!(c.latest_epoch(), Some(3));
        let on_disk = |end| {
            let cache = LeaderEpochCache::load(dir.path(), end).expect("load");
            cache.entries().iter().map(|e| e.epoch).collect::<Vec<_>>()
        };
        assert_eq!(on_disk(i64::MAX), vec![1]);
        c.flush(Durability::Fsync, 0).expect("flush");
        assert_eq!(on_disk(8), vec![1, 3]);
        std::fs::remove_file(dir.path().join(FILE_NAME)).expect("rm");
        c.flush(Durability::Fsync, 0).expect("nothing new");
        assert!(!dir.path().join(FILE_NAME).exists());
    }
}
