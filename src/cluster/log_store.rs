//! The metadata log on disk (Kafka's `__cluster_metadata-0`): Raft entries, the vote and the
//! committed index under `metadata.log.dir`, durable before the Raft library is told so.
//!
//! `log` holds frames of `[length u32][crc32c u32][entry as JSON]`. A torn or corrupt tail (a
//! kill -9 mid-write, a bad disk block) is cut at the last whole frame on open, as the data log
//! is recovered; the leader sends the rest again. Purges and truncations rewrite the file
//! through a temp file and a rename: metadata is small and these are rare.
//!
//! Owns the bytes of the metadata log. Never interprets records: the state machine does.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ballast::Ballast;
use super::raft_types::{io_error, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::log::checkpoint::{sync_dir, write_atomically};
use crate::log::LogError;
use crate::metadata::MetadataRecord;

const LOG_FILE: &str = "log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";
/// No metadata entry comes near this; a larger length is a corrupt frame.
const MAX_FRAME: usize = 64 << 20;
/// Space allocated past the log's end (without changing its size), so appends keep working
/// when the data logs sharing the file system fill it: a failed write is fatal to the Raft
/// library, and with it the broker's registration. Refilled when less than a quarter is left.
const RESERVE: u64 = 8 << 20;

#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    dir: PathBuf,
    /// For the writes that replace a file: vote, purge, truncation.
    ballast: Arc<Ballast>,
    file: File,
    /// The log file's length, and how far past it space is allocated.
    end: u64,
    reserved_to: u64,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// What opening the store found, for the start-up log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub entries: usize,
    /// Bytes cut from a torn or corrupt tail.
    pub truncated_bytes: u64,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LogError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| LogError::io(path, std::io::Error::other(e)))?;
    write_atomically(path, &bytes)
}

fn frame(entry: &Entry, out: &mut Vec<u8>) -> std::io::Result<()> {
    let payload = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Whole, intact frames from the start of `bytes`, and where they end.
fn parse_frames(bytes: &[u8]) -> (Vec<Entry>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_be_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len > MAX_FRAME || bytes.len() - at - 8 < len {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = serde_json::from_slice::<Entry>(payload) else {
            break;
        };
        entries.push(entry);
        at += 8 + len;
    }
    (entries, at)
}

impl LogStore {
    pub fn open(dir: &Path, ballast: Arc<Ballast>) -> std::io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_end(&mut bytes)?;
        }
        let (parsed, good) = parse_frames(&bytes);
        let last_purged: Option<LogId> = read_json(&dir.join(PURGED_FILE))?;
        let new = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if new {
            // Its first entries are fsynced, but a name is durable only with its directory.
            sync_dir(dir).map_err(std::io::Error::other)?;
        }
        let mut recovered = Recovered::default();
        if good < bytes.len() {
            recovered.truncated_bytes = (bytes.len() - good) as u64;
            tracing::warn!(
                file = %path.display(),
                bytes = recovered.truncated_bytes,
                "metadata log: torn or corrupt tail cut"
            );
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let floor = last_purged.map_or(0, |l| l.index + 1);
        let mut entries = BTreeMap::new();
        for e in parsed {
            // Entries a purge had covered before a crash cut its rewrite short.
            if e.log_id.index < floor {
                continue;
            }
            let expected = entries
                .keys()
                .next_back()
                .map_or(e.log_id.index, |last: &u64| last + 1);
            if e.log_id.index != expected {
                break;
            }
            entries.insert(e.log_id.index, e);
        }
        recovered.entries = entries.len();
        // A cut tail may have held committed entries: claim only what is still here (the
        // leader sends the rest), or the Raft library would try to apply entries that are gone.
        let last = entries
            .values()
            .next_back()
            .map(|e: &Entry| e.log_id)
            .or(last_purged);
        let committed: Option<LogId> = read_json(&dir.join(COMMITTED_FILE))?;
        let committed = match (committed, last) {
            (Some(c), Some(l)) if c.index > l.index => Some(l),
            (Some(_), None) => None,
            (c, _) => c,
        };
        let mut inner = Inner {
            vote: read_json(&dir.join(VOTE_FILE))?,
            committed,
            dir: dir.to_path_buf(),
            ballast,
            file,
            end: good as u64,
            reserved_to: 0,
            entries,
            last_purged,
        };
        inner.reserve();
        Ok((
            Self {
                inner: Arc::new(Mutex::new(inner)),
            },
            recovered,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The records of entries `from..=to`, or None when `from` was purged (a snapshot is
    /// needed instead).
    pub fn records(&self, from: u64, to: u64) -> Option<Vec<(u64, Option<MetadataRecord>)>> {
        let g = self.lock();
        let first = g
            .entries
            .keys()
            .next()
            .copied()
            .or(g.last_purged.map(|l| l.index + 1))
            .unwrap_or(0);
        if from < first {
            return None;
        }
        if from > to {
            return Some(Vec::new());
        }
        Some(
            g.entries
                .range(from..=to)
                .map(|(i, e)| {
                    let record = match &e.payload {
                        openraft::EntryPayload::Normal(r) => Some(r.clone()),
                        _ => None,
                    };
                    (*i, record)
                })
                .collect(),
        )
    }

    /// The voters of the last membership entry still in the log, if any.
    pub fn last_voters(&self) -> Option<Vec<u64>> {
        self.lock()
            .entries
            .values()
            .rev()
            .find_map(|e| match &e.payload {
                openraft::EntryPayload::Membership(m) => Some(m.voter_ids().collect()),
                _ => None,
            })
    }

    /// The last entry's index (0 when empty).
    #[cfg(test)]
    fn last_index(&self) -> u64 {
        let g = self.lock();
        g.entries
            .keys()
            .next_back()
            .copied()
            .or(g.last_purged.map(|l| l.index))
            .unwrap_or(0)
    }
}

impl Inner {
    /// Writes the remaining entries to a new file and swaps it in.
    fn rewrite(&mut self) -> Result<(), LogError> {
        let path = self.dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        for e in self.entries.values() {
            frame(e, &mut bytes).map_err(|e| LogError::io(&path, e))?;
        }
        write_atomically(&path, &bytes)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| LogError::io(&path, e))?;
        self.end = bytes.len() as u64;
        self.reserved_to = 0;
        self.reserve();
        Ok(())
    }

    /// Keeps `RESERVE` bytes allocated past the end. A file system without fallocate, or one
    /// already full, leaves the log without a reserve: appends then take their chances.
    fn reserve(&mut self) {
        if self.reserved_to.saturating_sub(self.end) >= RESERVE / 4 {
            return;
        }
        let flags = rustix::fs::FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, flags, self.end, RESERVE) {
            Ok(()) => self.reserved_to = self.end + RESERVE,
            Err(e) => tracing::debug!(error = %e, "metadata log: no space reserved"),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = self.lock();
        let last = g.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last.or(g.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut g = self.lock();
        let path = g.dir.join(VOTE_FILE);
        g.ballast
            .with_room("vote", || write_json(&path, vote))
            .map_err(|e| io_error(&std::io::Error::other(e)))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut g = self.lock();
        if g.committed == committed {
            return Ok(());
        }
        // A hint only (the Raft library lets a store skip it): a restart that finds an older
        // one applies the entries after it again once they are committed again. So a full
        // disk costs a warning here, not the quorum.
        if let Err(e) = write_json(&g.dir.join(COMMITTED_FILE), &committed) {
            tracing::warn!(error = %e, "metadata log: committed index not saved");
        }
        g.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.lock();
        let mut bytes = Vec::new();
        let mut batch = Vec::new();
        for e in entries {
            frame(&e, &mut bytes).map_err(|e| io_error(&e))?;
            batch.push(e);
        }
        let written = g.file.write_all(&bytes).and_then(|_| g.file.sync_data());
        if let Err(e) = &written {
            tracing::error!(error = %e, "metadata log write failed");
        } else {
            for e in batch {
                g.entries.insert(e.log_id.index, e);
            }
            g.end += bytes.len() as u64;
            g.reserve();
        }
        callback.log_io_completed(written);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        g.entries.split_off(&log_id.index);
        let ballast = g.ballast.clone();
        ballast
            .with_room("metadata log truncation", || g.rewrite())
            .map_err(|e| io_error(&std::io::Error::other(e)))
    }

    /// Entries are kept, not purged, when the file system has no room even for the purge's
    /// rewrite: a purge may lag (the Raft library only needs no holes), a failed write may not.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = self.lock();
        let ballast = g.ballast.clone();
        let path = g.dir.join(PURGED_FILE);
        match ballast.with_room("metadata log purge", || write_json(&path, &log_id)) {
            Ok(()) => {}
            Err(LogError::NoSpace { .. }) => {
                tracing::warn!(?log_id, "metadata log: not purged, the file system is full");
                return Ok(());
            }
            Err(e) => return Err(io_error(&std::io::Error::other(e))),
        }
        g.last_purged = Some(log_id);
        g.entries = g.entries.split_off(&(log_id.index + 1));
        // Opening skips entries up to the purged id, so a rewrite that finds no room leaves
        // a file that is still right: it is rewritten at the next purge.
        match ballast.with_room("metadata log purge", || g.rewrite()) {
            Ok(()) => {}
            Err(LogError::NoSpace { .. }) => {
                tracing::warn!(
                    ?log_id,
                    "metadata log: purged entries stay on disk until space returns"
                );
            }
            Err(e) => return Err(io_error(&std::io::Error::other(e))),
        }
        sync_dir(&g.dir).map_err(|e| io_error(&std::io::Error::other(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> std::io::Result<(LogStore, Recovered)> {
        LogStore::open(dir, Arc::new(Ballast::new(dir, 1 << 16)))
    }
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn write_entries(dir: &Path, n: u64) {
        let mut bytes = Vec::new();
        for i in 0..n {
            frame(&entry(i), &mut bytes).expect("frame");
        }
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join(LOG_FILE), bytes).expect("write");
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_frame() {
        let dir = tempfile::tempdir().expect("tmp");
        write_entries(dir.path(), 5);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("tear");
        let (store, rec) = open(dir.path()).expect("open");
        assert_eq!(rec.entries, 4);
        assert!(rec.truncated_bytes > 0);
        assert_eq!(store.last_index(), 3);
        // What is left is exactly the whole frames.
        let (_, again) = open(dir.path()).expect("reopen");
        assert_eq!(
            again,
            Recovered {
                entries: 4,
                truncated_bytes: 0
            }
        );
    }

    #[test]
    fn a_corrupt_frame_ends_the_log() {
        let dir = tempfile::tempdir().expect("tmp");
        write_entries(dir.path(), 5);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let second = 8 + u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        bytes[second + 12] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (store, rec) = open(dir.path()).expect("open");
        assert_eq!(rec.entries, 1);
        assert_eq!(store.last_index(), 0);
    }

    #[tokio::test]
    async fn committed_never_points_past_a_cut_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        write_entries(dir.path(), 5);
        write_json(&dir.path().join(COMMITTED_FILE), &Some(entry(4).log_id)).expect("committed");
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("tear");
        let (mut store, _) = open(dir.path()).expect("open");
        let committed = store.read_committed().await.expect("committed");
        assert_eq!(committed.map(|c| c.index), Some(3));
    }

    #[tokio::test]
    async fn truncate_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().expect("tmp");
        write_entries(dir.path(), 10);
        let (mut store, _) = open(dir.path()).expect("open");
        store.truncate(entry(8).log_id).await.expect("truncate");
        store.purge(entry(3).log_id).await.expect("purge");
        let (mut store, rec) = open(dir.path()).expect("reopen");
        assert_eq!(rec.entries, 4);
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(7));
        let got = store.try_get_log_entries(4..8).await.expect("read");
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn space_is_reserved_past_the_end_without_changing_its_length() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tmp");
        write_entries(dir.path(), 3);
        let len = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("stat")
            .len();
        let (store, recovered) = open(dir.path()).expect("open");
        assert_eq!(recovered.entries, 3);
        let meta = std::fs::metadata(dir.path().join(LOG_FILE)).expect("stat");
        assert_eq!(meta.len(), len, "the reserve is not part of the log");
        assert!(
            meta.blocks() * 512 >= RESERVE,
            "{} bytes allocated",
            meta.blocks() * 512
        );
        drop(store);
        let (_, recovered) = open(dir.path()).expect("reopen");
        assert_eq!(
            recovered,
            Recovered {
                entries: 3,
                truncated_bytes: 0
            }
        );
    }
}
