//! The Raft state machine: applies committed metadata records to this node's image and
//! publishes each new image; writes and installs snapshots (the image as records, in
//! `snapshot` under `metadata.log.dir`) so a restart replays only the entries after it.
//!
//! Never acts on an image: the broker reconciles its logs and coordinators with what is
//! published.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::ballast::Ballast;
use super::raft_types::{
    io_error, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::log::checkpoint::write_atomically;
use crate::log::{LogConfig, LogError};
use crate::metadata::records::{Applied, MetadataRecord};
use crate::metadata::MetadataImage;

const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot's bytes: the Raft library's view of it and the image as records.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    records: Vec<MetadataRecord>,
}

pub struct StateMachine {
    dir: PathBuf,
    /// For snapshots, written whole to a new file.
    ballast: Arc<Ballast>,
    /// This node's topic defaults, which every topic's config starts from.
    defaults: LogConfig,
    image: MetadataImage,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    publish: watch::Sender<Arc<MetadataImage>>,
}

fn write_snapshot(dir: &Path, ballast: &Ballast, bytes: &[u8]) -> Result<(), LogError> {
    let path = dir.join(SNAPSHOT_FILE);
    ballast.with_room("metadata snapshot", || write_atomically(&path, bytes))
}

fn decode(bytes: &[u8]) -> std::io::Result<SnapshotFile> {
    serde_json::from_slice(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

impl StateMachine {
    /// Starts from the last snapshot on disk, if any.
    pub fn open(
        dir: &Path,
        defaults: LogConfig,
        ballast: Arc<Ballast>,
    ) -> std::io::Result<(Self, watch::Receiver<Arc<MetadataImage>>)> {
        let mut sm = Self {
            dir: dir.to_path_buf(),
            ballast,
            defaults,
            image: MetadataImage::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            publish: watch::channel(Arc::new(MetadataImage::default())).0,
        };
        match std::fs::read(dir.join(SNAPSHOT_FILE)) {
            Ok(bytes) => {
                sm.load(decode(&bytes)?);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let rx = sm.publish.subscribe();
        Ok((sm, rx))
    }

    /// The voters of the membership the last snapshot holds.
    pub fn voters(&self) -> Vec<u64> {
        self.membership.voter_ids().collect()
    }

    fn load(&mut self, file: SnapshotFile) {
        let offset = file.meta.last_log_id.map_or(0, |l| l.index);
        self.image = MetadataImage::from_records(file.records, offset, &self.defaults);
        self.last_applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership;
        self.publish.send_replace(Arc::new(self.image.clone()));
    }
}

pub struct SnapshotBuilder {
    dir: PathBuf,
    ballast: Arc<Ballast>,
    meta: SnapshotMeta,
    records: Vec<MetadataRecord>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let file = SnapshotFile {
            meta: self.meta.clone(),
            records: std::mem::take(&mut self.records),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| io_error(&std::io::Error::other(e)))?;
        write_snapshot(&self.dir, &self.ballast, &bytes)
            .map_err(|e| io_error(&std::io::Error::other(e)))?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(bytes),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            self.last_applied = Some(e.log_id);
            self.image.offset = e.log_id.index;
            out.push(match e.payload {
                EntryPayload::Blank => Applied::Done,
                EntryPayload::Normal(record) => self.image.apply(record, &self.defaults),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    Applied::Done
                }
            });
        }
        self.publish.send_replace(Arc::new(self.image.clone()));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let id = self
            .last_applied
            .map_or("0".to_string(), |l| format!("{}-{}", l.leader_id, l.index));
        SnapshotBuilder {
            dir: self.dir.clone(),
            ballast: self.ballast.clone(),
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: id,
            },
            records: self.image.to_records(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, StorageError> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let mut file = decode(&snapshot).map_err(|e| io_error(&e))?;
        file.meta = meta.clone();
        let bytes = serde_json::to_vec(&file).map_err(|e| io_error(&std::io::Error::other(e)))?;
        write_snapshot(&self.dir, &self.ballast, &bytes)
            .map_err(|e| io_error(&std::io::Error::other(e)))?;
        self.load(file);
        Ok(())
    }

    /// The last snapshot written (by the builder or an install), read back from its file.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let bytes = match std::fs::read(self.dir.join(SNAPSHOT_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&e)),
        };
        let file = decode(&bytes).map_err(|e| io_error(&e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(bytes),
        }))
    }
}
