//! ProducerStateManager: for each producer id seen on a partition, its epoch and its last five
//! batches, so a retry is answered with the original offsets and a gap is refused — the rules
//! of Kafka's ProducerStateManager. Snapshotted to `<offset>.snapshot` files at segment rolls
//! and rebuilt at start-up from the latest snapshot plus the batches after it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::log::batch::BatchHeader;
use crate::log::checkpoint::{write_atomically_with, Durability};
use crate::log::error::{IoContext, LogError};

/// Batches remembered per producer (Kafka's limit on in-flight requests with idempotence).
pub const RETAINED_BATCHES: usize = 5;
pub const SNAPSHOT_SUFFIX: &str = "snapshot";
const SNAPSHOT_VERSION: i16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    pub timestamp: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMetadata>,
    /// Broker time of the last append, for `producer.id.expiration.ms`.
    pub last_append_ms: i64,
}

/// What the check of an incoming batch decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Append,
    /// A retry of a batch already in the log: answer with its offsets, append nothing.
    Duplicate(BatchMetadata),
}

/// The sequence after `seq`; sequences wrap from i32::MAX to 0 as in Kafka.
pub fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

fn last_seq_of(h: &BatchHeader) -> i32 {
    let last = i64::from(h.base_sequence) + i64::from(h.last_offset_delta);
    if last > i64::from(i32::MAX) {
        (last - i64::from(i32::MAX) - 1) as i32
    } else {
        last as i32
    }
}

#[derive(Debug, Default)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_SUFFIX}"))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list_snapshots(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let p = e.at(dir)?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(stem) = name
            .strip_suffix(SNAPSHOT_SUFFIX)
            .and_then(|s| s.strip_suffix('.'))
        {
            if let Ok(o) = stem.parse() {
                out.push(o);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl ProducerStateManager {
    pub fn len(&self) -> usize {
        self.producers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
    pub fn get(&self, pid: i64) -> Option<&ProducerEntry> {
        self.producers.get(&pid)
    }

    /// Producer id → the last offset of its latest batch.
    pub fn last_offsets(&self) -> HashMap<i64, i64> {
        self.producers
            .iter()
            .filter_map(|(pid, e)| Some((*pid, e.batches.back()?.last_offset)))
            .collect()
    }

    /// Checks a batch from a producer against what the partition knows of it.
    pub fn check(&self, h: &BatchHeader) -> Result<Check, LogError> {
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // A new producer (or one whose state expired) must start at sequence 0.
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(LogError::UnknownProducerId(h.producer_id))
            };
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                })
            };
        }
        let last_seq = last_seq_of(h);
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate(*dup));
        }
        let expected = entry.batches.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence != expected {
            return Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records a batch that is now in the log (appended, or found during recovery).
    pub fn update(&mut self, h: &BatchHeader, now_ms: i64) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.batches.clear();
            entry.epoch = h.producer_epoch;
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: h.base_sequence,
            last_seq: last_seq_of(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        while entry.batches.len() > RETAINED_BATCHES {
            entry.batches.pop_front();
        }
        entry.last_append_ms = now_ms;
    }

    /// Drops producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, e| now_ms - e.last_append_ms <= expiration_ms);
    }

    /// Forgets batches at or beyond `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.last_offset < offset);
        }
        self.producers.retain(|_, e| !e.batches.is_empty());
    }

    /// Writes `<offset>.snapshot`: version, CRC-32C of the rest, then the entries.
    pub fn write_snapshot(
        &self,
        dir: &Path,
        offset: i64,
        durability: Durability,
    ) -> Result<(), LogError> {
        let mut body = Vec::with_capacity(16 + self.producers.len() * 64);
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.extend_from_slice(&e.last_append_ms.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut file = SNAPSHOT_VERSION.to_be_bytes().to_vec();
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        write_atomically_with(&snapshot_path(dir, offset), &file, durability)
    }

    /// Reads a snapshot; a torn or corrupt one is an error (the caller falls back to an older
    /// snapshot or to a full scan).
    pub fn read_snapshot(path: &Path) -> Result<Self, LogError> {
        let bytes = std::fs::read(path).at(path)?;
        let corrupt = |why: &str| LogError::CorruptFile {
            path: path.display().to_string(),
            reason: why.to_string(),
        };
        if bytes.len() < 10 || i16::from_be_bytes([bytes[0], bytes[1]]) != SNAPSHOT_VERSION {
            return Err(corrupt("unknown snapshot version"));
        }
        let crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let body = &bytes[6..];
        if crc32c::crc32c(body) != crc {
            return Err(corrupt("snapshot CRC mismatch"));
        }
        let mut r = Reader { b: body, at: 0 };
        let n = r.u32().ok_or_else(|| corrupt("truncated"))?;
        let mut producers = HashMap::new();
        for _ in 0..n {
            let parsed = (|| {
                let pid = r.i64()?;
                let epoch = r.i16()?;
                let last_append_ms = r.i64()?;
                let count = r.u8()?;
                let mut batches = VecDeque::new();
                for _ in 0..count {
                    batches.push_back(BatchMetadata {
                        first_seq: r.i32()?,
                        last_seq: r.i32()?,
                        base_offset: r.i64()?,
                        last_offset: r.i64()?,
                        timestamp: r.i64()?,
                    });
                }
                Some((
                    pid,
                    ProducerEntry {
                        epoch,
                        batches,
                        last_append_ms,
                    },
                ))
            })();
            let (pid, entry) = parsed.ok_or_else(|| corrupt("truncated entry"))?;
            producers.insert(pid, entry);
        }
        Ok(Self { producers })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerStateManager::default();
        assert_eq!(
            s.check(&header(7, 0, 0, 3, 0)).expect("first"),
            Check::Append
        );
        assert!(matches!(
            s.check(&header(7, 0, 4, 1, 0)),
            Err(LogError::UnknownProducerId(7))
        ));
        s.update(&header(7, 0, 0, 3, 10), 0);
        assert_eq!(
            s.check(&header(7, 0, 3, 2, 0)).expect("next"),
            Check::Append
        );
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, 0)),
            Err(LogError::OutOfOrderSequence { expected: 3, .. })
        ));
        match s.check(&header(7, 0, 0, 3, 99)).expect("dup") {
            Check::Duplicate(b) => assert_eq!((b.base_offset, b.last_offset), (10, 12)),
            other => panic!("{other:?}"),
        }
        s.update(&header(7, 1, 0, 1, 13), 0);
        assert!(matches!(
            s.check(&header(7, 0, 1, 1, 0)),
            Err(LogError::InvalidProducerEpoch { .. })
        ));
        assert!(matches!(
            s.check(&header(7, 2, 1, 1, 0)),
            Err(LogError::OutOfOrderSequence { expected: 0, .. })
        ));
        // Only the last five batches are remembered.
        for i in 1..=6 {
            s.update(&header(7, 1, i, 1, 13 + i64::from(i)), 0);
        }
        assert!(matches!(
            s.check(&header(7, 1, 1, 1, 0)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert!(matches!(
            s.check(&header(7, 1, 6, 1, 0)),
            Ok(Check::Duplicate(_))
        ));
    }

    #[test]
    fn sequences_wrap_at_int32_max() {
        let mut s = ProducerStateManager::default();
        s.update(&header(1, 0, 0, 1, 0), 0);
        s.producers
            .get_mut(&1)
            .expect("p")
            .batches
            .back_mut()
            .expect("b")
            .last_seq = i32::MAX - 1;
        assert_eq!(
            s.check(&header(1, 0, i32::MAX, 2, 1)).expect("wraps"),
            Check::Append
        );
        s.update(&header(1, 0, i32::MAX, 2, 1), 0);
        assert_eq!(
            s.get(1).and_then(|e| e.batches.back()).map(|b| b.last_seq),
            Some(0)
        );
        assert_eq!(
            s.check(&header(1, 0, 1, 1, 3)).expect("after wrap"),
            Check::Append
        );
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = ProducerStateManager::default();
        s.update(&header(3, 2, 0, 4, 100), 55);
        s.update(&header(9, 0, 0, 1, 104), 56);
        s.write_snapshot(dir.path(), 105, Durability::Fsync)
            .expect("write");
        let path = snapshot_path(dir.path(), 105);
        let back = ProducerStateManager::read_snapshot(&path).expect("read");
        assert_eq!(back.producers, s.producers);
        assert_eq!(list_snapshots(dir.path()).expect("ls"), vec![105]);
        let mut bytes = std::fs::read(&path).expect("read");
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(ProducerStateManager::read_snapshot(&path).is_err());
    }
}
