//! The cleaner against real logs on disk: what a consumer reading from the start sees after
//! cleaning, tombstones and their horizon, several passes in a small buffer, producers' last
//! batches, and a crash at every step of the swap.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::clean::CleanError;
use super::swap::CRASH_AFTER;
use super::{CleanerConfig, LogCleaner};
use crate::log::batch;
use crate::log::{LogConfig, LogManager, PartitionLog};

const TOPIC: &str = "compacted";

fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        cleanup_policy: "compact".into(),
        delete_retention_ms: 10_000,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, segment_bytes: u64) -> (Arc<LogManager>, Arc<PartitionLog>) {
    open_with(dir, config(segment_bytes))
}

fn open_with(dir: &Path, config: LogConfig) -> (Arc<LogManager>, Arc<PartitionLog>) {
    let c = config.clone();
    let (logs, _) = LogManager::open(dir, 64, move |_| c.clone()).expect("open");
    let log = logs.get_or_create(TOPIC, 0, config).expect("log");
    (Arc::new(logs), log)
}

/// What a consumer reading from the start would see: (offset, key, value).
type Seen = Vec<(i64, String, Option<String>)>;

/// Writes `rounds` values for each of `keys` keys, `per_batch` records a batch; the last
/// round's values of every third key are tombstones. Returns every record written.
fn write(log: &PartitionLog, keys: usize, rounds: usize, per_batch: usize, ts: i64) -> Seen {
    let mut all = Vec::new();
    let mut pending: Vec<Record> = Vec::new();
    let flush = |pending: &mut Vec<Record>, all: &mut Seen| {
        if pending.is_empty() {
            return;
        }
        let info = log
            .append(batch::encode(pending).expect("encode"), 0)
            .expect("append");
        for (i, r) in pending.drain(..).enumerate() {
            let key = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
            let value = r
                .value
                .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
            all.push((info.base_offset + i as i64, key, value));
        }
    };
    for round in 0..rounds {
        for k in 0..keys {
            let tombstone = round + 1 == rounds && k % 3 == 0;
            let value = (!tombstone).then(|| Bytes::from(format!("k{k}-r{round}")));
            let offset = pending.len() as i64;
            pending.push(batch::plain_record(
                offset,
                ts,
                Some(Bytes::from(format!("k{k}"))),
                value,
            ));
            if pending.len() == per_batch {
                flush(&mut pending, &mut all);
            }
        }
    }
    flush(&mut pending, &mut all);
    all
}

fn read_all(log: &PartitionLog) -> Seen {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    while offset < end {
        let Some(slice) = log
            .read_up_to(offset, 1 << 20, true, end)
            .expect("read")
            .records
        else {
            break;
        };
        let mut bytes = slice.read_bytes().expect("bytes");
        let mut next = offset;
        while !bytes.is_empty() {
            let h = batch::BatchHeader::parse(&bytes).expect("header");
            next = h.next_offset();
            let set = RecordBatchDecoder::decode(&mut bytes).expect("decode");
            for r in set.records {
                let key = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
                let value = r
                    .value
                    .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
                out.push((r.offset, key, value));
            }
        }
        assert!(next > offset, "reads move forward");
        offset = next;
    }
    out
}

fn latest(all: &Seen) -> HashMap<String, (i64, Option<String>)> {
    all.iter()
        .map(|(o, k, v)| (k.clone(), (*o, v.clone())))
        .collect()
}

/// What any state of the log must satisfy: offsets strictly increase, every record is one
/// that was written (same offset, key, value), and every key's latest record is there, last.
fn assert_consistent(seen: &Seen, written: &Seen) {
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    let by_offset: HashMap<i64, &(i64, String, Option<String>)> =
        written.iter().map(|r| (r.0, r)).collect();
    for r in seen {
        assert_eq!(
            Some(&r),
            by_offset.get(&r.0),
            "record at {} was written",
            r.0
        );
    }
    let want = latest(written);
    let got = latest(seen);
    for (k, v) in &want {
        assert_eq!(got.get(k), Some(v), "latest record of {k}");
    }
}

fn clean_until_done(cleaner: &LogCleaner, now: i64) -> usize {
    let mut runs = 0;
    for _ in 0..50 {
        match cleaner.clean_filthiest(now) {
            Some(r) => {
                r.expect("clean");
                runs += 1;
            }
            None => return runs,
        }
    }
    panic!("the cleaner never ran out of work");
}

#[test]
fn a_consumer_from_the_start_sees_the_latest_value_of_every_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let (logs, log) = open(dir.path(), 16 * 1024);
    let written = write(&log, 500, 20, 25, 1_000);
    log.roll().expect("roll");
    let before = log.size();
    let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
    assert!(clean_until_done(&cleaner, 1_000) >= 1);
    let seen = read_all(&log);
    assert_consistent(&seen, &written);
    assert_eq!(
        seen.len(),
        500,
        "one record per key, tombstones within their horizon"
    );
    assert!(
        log.size() * 10 < before,
        "{} of {before} bytes left",
        log.size()
    );
    assert_eq!(
        cleaner.first_dirty_offset(TOPIC, 0),
        Some(log.log_end_offset())
    );
    // The next cleaning (two more rounds make the log dirty enough) merges the small cleaned
    // segments into few, each within segment.bytes.
    let cleaned_segments = log.segment_count();
    let more = write(&log, 500, 2, 25, 2_000);
    log.roll().expect("roll");
    clean_until_done(&cleaner, 2_000);
    assert!(
        log.segment_count() * 3 <= cleaned_segments,
        "{} segments after {cleaned_segments}",
        log.segment_count()
    );
    let seen = read_all(&log);
    assert_consistent(&seen, &written.iter().chain(&more).cloned().collect());
    // Cleaned logs survive a restart as they are.
    drop((cleaner, log));
    logs.shutdown().expect("shutdown");
    drop(logs);
    let (_logs, log) = open(dir.path(), 16 * 1024);
    assert_eq!(read_all(&log), seen);
}

#[test]
fn tombstones_stay_for_delete_retention_ms_after_their_first_cleaning() {
    let dir = tempfile::tempdir().expect("tmp");
    let (logs, log) = open(dir.path(), 8 * 1024);
    let written = write(&log, 90, 5, 10, 1_000);
    log.roll().expect("roll");
    let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
    clean_until_done(&cleaner, 5_000);
    let tombstones = |seen: &Seen| seen.iter().filter(|r| r.2.is_none()).count();
    assert_eq!(
        tombstones(&read_all(&log)),
        30,
        "visible after the first cleaning"
    );
    // Not due before the horizon (first cleaning + delete.retention.ms = 15,000).
    assert!(cleaner.clean_filthiest(14_999).is_none());
    assert_eq!(tombstones(&read_all(&log)), 30);
    assert_eq!(clean_until_done(&cleaner, 15_000), 1, "due at the horizon");
    let seen = read_all(&log);
    assert_eq!((tombstones(&seen), seen.len()), (0, 60));
    let want = latest(&written);
    for (_, k, v) in &seen {
        assert_eq!(want.get(k).map(|w| &w.1), Some(v));
    }
    assert!(
        cleaner.clean_filthiest(1_000_000).is_none(),
        "nothing left due"
    );
}

#[test]
fn keys_beyond_the_buffer_are_cleaned_in_several_passes() {
    let dir = tempfile::tempdir().expect("tmp");
    // Any dirt makes the log due, so the passes go on until every key was mapped.
    let (logs, log) = open_with(
        dir.path(),
        LogConfig {
            min_cleanable_dirty_ratio: 0.0,
            ..config(32 * 1024)
        },
    );
    let written = write(&log, 5_000, 4, 100, 1_000);
    log.roll().expect("roll");
    // 1 MiB holds about 39,000 slots: at load factor 0.1, 3,900 keys a pass.
    let cleaner = LogCleaner::new(
        logs.clone(),
        CleanerConfig {
            dedupe_buffer_size: 1 << 20,
            io_buffer_load_factor: 0.1,
            ..CleanerConfig::default()
        },
    );
    let passes = clean_until_done(&cleaner, 1_000);
    assert!(passes >= 3, "{passes} passes");
    let seen = read_all(&log);
    assert_consistent(&seen, &written);
    assert_eq!(seen.len(), 5_000);
}

#[test]
fn every_crash_point_of_the_swap_recovers_to_a_consistent_log() {
    for step in 0..=6u32 {
        let dir = tempfile::tempdir().expect("tmp");
        let written = {
            let (logs, log) = open(dir.path(), 8 * 1024);
            let written = write(&log, 200, 10, 20, 1_000);
            log.roll().expect("roll");
            log.flush().expect("flush");
            logs.checkpoint().expect("checkpoint");
            let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
            CRASH_AFTER.with(|c| c.set(Some(step)));
            let r = cleaner.clean_filthiest(1_000).expect("due");
            CRASH_AFTER.with(|c| c.set(None));
            assert!(matches!(r, Err(CleanError::Aborted)), "step {step}: {r:?}");
            // The crash left what that step leaves on disk.
            let names: Vec<String> = std::fs::read_dir(log.dir())
                .expect("ls")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            let has = |tail: &str| names.iter().any(|n| n.ends_with(tail));
            let expected = match step {
                0 | 1 => has(".log.cleaned"),
                2..=5 => has(".log.swap"),
                _ => !has(".swap") && !has(".cleaned"),
            };
            assert!(expected, "step {step}: {names:?}");
            assert_eq!(has(".log.deleted"), step >= 3, "step {step}: {names:?}");
            written
        };
        // Reopened as after a kill -9: no clean-shutdown marker.
        let (logs, log) = open(dir.path(), 8 * 1024);
        let seen = read_all(&log);
        assert_consistent(&seen, &written);
        let leftovers: Vec<_> = std::fs::read_dir(log.dir())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
            .collect();
        assert!(leftovers.is_empty(), "step {step}: {leftovers:?}");
        let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
        clean_until_done(&cleaner, 1_000);
        let cleaned = read_all(&log);
        assert_consistent(&cleaned, &written);
        assert_eq!(cleaned.len(), 200, "step {step}");
    }
}

#[test]
fn a_producers_last_batch_stays_even_when_emptied() {
    let dir = tempfile::tempdir().expect("tmp");
    let (logs, log) = open(dir.path(), 4 * 1024);
    let idempotent = |seq: i32, key: &str| {
        let r = Record {
            producer_id: 42,
            producer_epoch: 0,
            sequence: seq,
            ..batch::plain_record(
                0,
                1_000,
                Some(Bytes::from(key.to_string())),
                Some(Bytes::from("v")),
            )
        };
        batch::encode(&[r]).expect("encode")
    };
    log.append(idempotent(0, "a"), 0).expect("append");
    let last = log.append(idempotent(1, "b"), 0).expect("append");
    // Later records of both keys from another (plain) producer.
    for key in ["a", "b"] {
        let r = batch::plain_record(0, 1_000, Some(Bytes::from(key)), Some(Bytes::from("w")));
        log.append(batch::encode(&[r]).expect("encode"), 0)
            .expect("append");
    }
    log.roll().expect("roll");
    let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
    clean_until_done(&cleaner, 1_000);
    let slice = log
        .read_up_to(0, 1 << 20, true, log.log_end_offset())
        .expect("read")
        .records
        .expect("batches");
    let bytes = slice.read_bytes().expect("bytes");
    let headers: Vec<_> = batch::headers(&bytes).map(|(_, h)| h).collect();
    let empty: Vec<_> = headers.iter().filter(|h| h.record_count == 0).collect();
    assert_eq!(empty.len(), 1, "{headers:?}");
    assert_eq!(
        (
            empty[0].producer_id,
            empty[0].base_sequence,
            empty[0].last_offset()
        ),
        (42, 1, last.last_offset)
    );
    assert!(
        headers.iter().all(|h| h.base_offset != 0),
        "the producer's first batch is gone"
    );
}

#[test]
fn compact_delete_also_applies_time_retention() {
    for (policy, kept_after_retention) in [("compact", 100), ("compact,delete", 0)] {
        let dir = tempfile::tempdir().expect("tmp");
        let (logs, log) = open_with(
            dir.path(),
            LogConfig {
                cleanup_policy: policy.into(),
                retention_ms: 60_000,
                ..config(8 * 1024)
            },
        );
        write(&log, 100, 10, 10, 1_000);
        log.roll().expect("roll");
        let cleaner = LogCleaner::new(logs.clone(), CleanerConfig::default());
        clean_until_done(&cleaner, 1_000);
        assert_eq!(read_all(&log).len(), 100, "{policy}");
        let removed = log.apply_retention(1_000 + 60_001).expect("retention");
        crate::log::manager::remove_in_background(removed);
        assert_eq!(read_all(&log).len(), kept_after_retention, "{policy}");
    }
}
