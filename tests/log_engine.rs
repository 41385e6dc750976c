//! The log engine as the broker uses it: appends, reads, rolls, retention, clean and unclean
//! restarts, and the faults a disk can throw at it, checked against a model.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use runnel::log::batch;
use runnel::log::{AppendInfo, LogConfig, LogError, LogManager, PartitionLog};

fn encode(records: usize, ts: i64, value_len: usize) -> Vec<u8> {
    common::batches::batch_from(common::batches::PLAIN, records, ts, value_len)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        segment_index_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Opens the directory with every partition a leader alone in its ISR, as the replica
/// manager makes a single broker's partitions: the high watermark is the log end.
fn open(dir: &Path, config: &LogConfig) -> LogManager {
    let c = config.clone();
    let m = LogManager::open(dir, 16, move |_| c.clone())
        .expect("open")
        .0;
    for log in m.all() {
        log.set_hw_follows_end(true);
    }
    m
}

/// All (offset, timestamp) pairs the log serves from `from`.
fn read_all(m: &LogManager, from: i64) -> Vec<(i64, i64)> {
    let log = m.get("t", 0).expect("log");
    let mut out = Vec::new();
    let mut next = from.max(log.log_start_offset());
    for _ in 0..100_000 {
        let info = log.read(next, 4096, true).expect("read");
        let Some(slice) = info.records else { break };
        let bytes = slice.read_bytes().expect("read");
        let recs = batch::record_timestamps(&bytes);
        let Some(last) = recs.last() else { break };
        next = last.0 + 1;
        out.extend(recs.into_iter().filter(|(o, _)| *o >= from));
    }
    out
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        ts: i64,
        value_len: usize,
    },
    Roll,
    CleanRestart,
    CrashRestart,
    Retention {
        keep_bytes: i64,
    },
    DeleteRecords {
        fraction: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..6, 0i64..1_000_000, 0usize..300).prop_map(|(records, ts, value_len)| Op::Append { records, ts, value_len }),
        1 => Just(Op::Roll),
        1 => Just(Op::CleanRestart),
        1 => Just(Op::CrashRestart),
        1 => (0i64..6000).prop_map(|keep_bytes| Op::Retention { keep_bytes }),
        1 => (0u8..=100).prop_map(|fraction| Op::DeleteRecords { fraction }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, max_shrink_iters: 200, .. ProptestConfig::default() })]

    /// Random operations against a model: a map offset → timestamp plus a log start offset.
    /// A crash here is a process kill after every append reached the page cache, so nothing
    /// acknowledged may be lost.
    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = small_config();
        let mut m = open(dir.path(), &config);
        let mut log = m.get_or_create("t", 0, config.clone()).expect("create");
        let mut model: BTreeMap<i64, i64> = BTreeMap::new();
        let mut start = 0i64;
        for op in ops {
            match op {
                Op::Append { records, ts, value_len } => {
                    let info = log.append(encode(records, ts, value_len), 0).expect("append");
                    let base = model.keys().next_back().map_or(start, |k| k + 1).max(start);
                    prop_assert_eq!(info.base_offset, base);
                    for i in 0..records as i64 { model.insert(base + i, ts + i); }
                }
                Op::Roll => log.roll().expect("roll"),
                Op::CleanRestart => {
                    m.shutdown().expect("shutdown");
                    drop(log); drop(m);
                    m = open(dir.path(), &config);
                    log = m.get("t", 0).expect("reloaded");
                }
                Op::CrashRestart => {
                    drop(log); drop(m);
                    m = open(dir.path(), &config);
                    log = m.get("t", 0).expect("reloaded");
                }
                Op::Retention { keep_bytes } => {
                    config.retention_bytes = keep_bytes;
                    log.set_config(config.clone());
                    let removed = log.apply_retention(i64::MAX / 4).expect("retention");
                    for p in removed { std::fs::remove_file(p).expect("rm"); }
                    m.checkpoint().expect("checkpoint");
                    config.retention_bytes = -1;
                    log.set_config(config.clone());
                    start = log.log_start_offset();
                    model = model.split_off(&start);
                }
                Op::DeleteRecords { fraction } => {
                    let end = log.log_end_offset();
                    let target = start + (end - start) * i64::from(fraction) / 100;
                    let new_start = m.delete_records("t", 0, target).expect("delete records");
                    prop_assert_eq!(new_start, target.max(start));
                    start = new_start;
                    model = model.split_off(&start);
                }
            }
            prop_assert_eq!(log.log_start_offset(), start);
            let end = model.keys().next_back().map_or(log.log_end_offset(), |k| k + 1);
            prop_assert_eq!(log.log_end_offset(), end);
        }
        let got: BTreeMap<i64, i64> = read_all(&m, start).into_iter().collect();
        prop_assert_eq!(&got, &model);
        // By-timestamp lookups agree with the model for a few probes.
        for probe in [0i64, 250_000, 500_000, 999_999, 2_000_000] {
            let want = model.iter().find(|(_, ts)| **ts >= probe).map(|(o, ts)| (*o, *ts));
            prop_assert_eq!(log.offset_for_timestamp(probe).expect("by time"), want);
        }
    }
}

fn fill(m: &LogManager, batches: usize) -> Vec<i64> {
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    (0..batches)
        .map(|i| {
            log.append(encode(3, 1_000 + i as i64, 40), 0)
                .expect("append")
                .base_offset
        })
        .collect()
}

fn active_log_file(dir: &Path) -> std::path::PathBuf {
    let pdir = dir.join("t-0");
    let mut logs: Vec<_> = std::fs::read_dir(&pdir)
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log file")
}

#[test]
fn torn_tail_at_every_byte_keeps_exactly_the_valid_prefix() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    fill(&m, 5);
    let log = m.get("t", 0).expect("log");
    let end = log.log_end_offset();
    drop(log);
    drop(m);
    let path = active_log_file(dir.path());
    let full = std::fs::read(&path).expect("read");
    let last_batch_start = batch::headers(&full)
        .last()
        .map(|(r, _)| r.start)
        .expect("batches");
    for cut in last_batch_start..full.len() {
        std::fs::write(&path, &full[..cut]).expect("cut");
        let m = open(dir.path(), &small_config());
        let log = m.get("t", 0).expect("log");
        assert_eq!(log.log_end_offset(), end - 3, "cut at {cut}");
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len() as usize,
            last_batch_start
        );
        drop(log);
        drop(m);
        std::fs::write(&path, &full).expect("restore");
    }
}

/// Durable acks' sync: records (across a roll) are fsynced and counted as synced while the
/// recovery point stays for `flush`; `flush.messages` counts again from the sync; a truncation
/// takes back what it removes; a restart rebuilds indexes past the recovery point.
#[test]
fn sync_records_makes_records_durable_and_leaves_the_recovery_point() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig {
        flush_messages: Some(8),
        ..small_config()
    };
    let m = open(dir.path(), &config);
    let log = m.get_or_create("t", 0, config.clone()).expect("create");
    let first = log.append(encode(4, 1, 100), 0).expect("append");
    assert!(!first.flush_due);
    let mut ts = 1;
    let info = loop {
        ts += 1;
        let info = log.append(encode(4, ts, 100), 0).expect("append");
        if info.flush_due {
            break info;
        }
    };
    assert_eq!(info.last_offset, 7, "due at the 8th message");
    let mut rolled = info;
    for i in 0..200 {
        rolled = log.append(encode(4, 100 + i, 100), 0).expect("append");
    }
    assert!(log.segment_count() > 1, "rolled");
    let recovery_point = log.recovery_point();
    log.sync_records().expect("sync");
    assert_eq!(log.synced_to(), rolled.last_offset + 1);
    assert_eq!(log.recovery_point(), recovery_point, "left to flush");
    let next = log.append(encode(4, 999, 100), 0).expect("append");
    assert!(!next.flush_due, "counting starts again after the sync");

    log.truncate_to(100, 0).expect("truncate");
    assert_eq!(log.synced_to(), 100);
    log.sync_records().expect("sync");
    assert_eq!(log.synced_to(), 100, "nothing past the end");
    let end = log.log_end_offset();
    drop(log);
    drop(m);
    let m = open(dir.path(), &config);
    let log = m.get("t", 0).expect("log");
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&m, 0).len() as i64, end);
}

/// Recovery does not flush (thousands of fsyncs made restarts slow), so the recovery point
/// stays where the crash left it and a second crash scans the same segment again.
#[test]
fn a_crash_after_recovery_scans_the_unflushed_segment_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    fill(&m, 5);
    let end = m.get("t", 0).expect("log").log_end_offset();
    drop(m);
    let m = open(dir.path(), &small_config());
    let log = m.get("t", 0).expect("log");
    assert_eq!(log.log_end_offset(), end);
    assert!(
        log.recovery_point() < end,
        "recovery moved the recovery point"
    );
    drop(log);
    drop(m);
    let path = active_log_file(dir.path());
    let mut bytes = std::fs::read(&path).expect("read");
    let last = batch::headers(&bytes)
        .last()
        .map(|(r, _)| r)
        .expect("batch");
    bytes[last.start + 40] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let m = open(dir.path(), &small_config());
    assert_eq!(m.get("t", 0).expect("log").log_end_offset(), end - 3);
}

#[test]
fn flipped_bit_truncates_there_and_drops_later_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let bases = fill(&m, 60);
    let log = m.get("t", 0).expect("log");
    assert!(log.segment_count() > 3, "several segments");
    drop(log);
    drop(m);
    // Corrupt the 2nd batch of the first segment: the crash left no checkpoint after the
    // rolls, so recovery scans every segment from the recorded recovery point (0).
    let path = dir.path().join("t-0").join("00000000000000000000.log");
    let mut bytes = std::fs::read(&path).expect("read");
    let second = batch::headers(&bytes)
        .nth(1)
        .map(|(r, h)| (r, h.base_offset))
        .expect("2 batches");
    bytes[second.0.start + 40] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let m = open(dir.path(), &small_config());
    let log = m.get("t", 0).expect("log");
    assert_eq!(log.log_end_offset(), second.1);
    assert!(bases.contains(&second.1));
    // Appends carry on from there.
    assert_eq!(
        log.append(encode(1, 5, 5), 0).expect("append").base_offset,
        second.1
    );
}

#[test]
fn missing_index_is_rebuilt_after_clean_shutdown_and_leftovers_are_removed() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    fill(&m, 60);
    let before = read_all(&m, 0);
    m.shutdown().expect("shutdown");
    drop(m);
    let pdir = dir.path().join("t-0");
    let index = std::fs::read_dir(&pdir)
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "index"))
        .expect("an index");
    std::fs::remove_file(&index).expect("rm index");
    std::fs::write(pdir.join("00000000000000000007.log.deleted"), b"junk").expect("stale");
    std::fs::write(
        dir.path().join("recovery-point-offset-checkpoint.tmp"),
        b"junk",
    )
    .expect("tmp");
    std::fs::write(pdir.join("leader-epoch-checkpoint.tmp"), b"junk").expect("tmp");
    let m = open(dir.path(), &small_config());
    assert!(index.exists(), "index rebuilt");
    assert_eq!(read_all(&m, 0), before);
    assert!(!pdir.join("00000000000000000007.log.deleted").exists());
    assert!(!pdir.join("leader-epoch-checkpoint.tmp").exists());
}

#[test]
fn clean_shutdown_writes_marker_and_trims_indexes() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    fill(&m, 10);
    m.shutdown().expect("shutdown");
    assert!(dir.path().join(".kafka_cleanshutdown").exists());
    for e in std::fs::read_dir(dir.path().join("t-0")).expect("ls") {
        let p = e.expect("entry").path();
        let len = std::fs::metadata(&p).expect("stat").len();
        if p.extension().is_some_and(|x| x == "index") {
            assert_eq!(len % 8, 0);
            assert!(len < 4096, "{} trimmed", p.display());
        }
    }
    drop(m);
    let _m = open(dir.path(), &small_config());
    assert!(
        !dir.path().join(".kafka_cleanshutdown").exists(),
        "marker consumed at start-up"
    );
}

/// A clean shutdown writes no producer snapshot for a log that never had producers (at 50,000
/// partitions, 50,000 files fewer to create and sync), and the restart takes "clean, no
/// snapshot" as no producers without scanning; a log with an idempotent producer keeps its
/// state, so a retry after the restart is still recognised.
#[test]
fn a_clean_shutdown_snapshots_only_logs_with_producers() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig::default();
    let snapshots = |name: &str| {
        std::fs::read_dir(dir.path().join(name))
            .expect("ls")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "snapshot"))
            })
            .count()
    };
    let idempotent = common::batches::batch_from(
        common::batches::Producer {
            id: 7,
            epoch: 0,
            sequence: 0,
        },
        3,
        1,
        10,
    );
    let m = open(dir.path(), &config);
    let plain = m.get_or_create("plain", 0, config.clone()).expect("create");
    plain.append(encode(3, 1, 10), 0).expect("append");
    let idem = m.get_or_create("idem", 0, config.clone()).expect("create");
    idem.append(idempotent.clone(), 0).expect("append");
    m.shutdown().expect("shutdown");
    drop((plain, idem, m));
    assert_eq!((snapshots("plain-0"), snapshots("idem-0")), (0, 1));

    let c = config.clone();
    let (m, stats) = LogManager::open(dir.path(), 16, move |_| c.clone()).expect("open");
    assert_eq!(stats.segments_scanned, 0);
    let plain = m.get("plain", 0).expect("plain");
    let idem = m.get("idem", 0).expect("idem");
    assert!(plain.producer_last_offsets().is_empty());
    assert_eq!(idem.producer_last_offsets().get(&7), Some(&2));
    let retry = idem.append(idempotent, 0).expect("retry");
    assert_eq!(
        (retry.base_offset, idem.log_end_offset()),
        (0, 3),
        "a duplicate"
    );
}

#[test]
fn bad_batches_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    let mut bad = encode(2, 1, 10);
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    assert!(matches!(log.append(bad, 0), Err(LogError::CorruptBatch(_))));
    let mut magic1 = encode(1, 1, 1);
    magic1[16] = 1;
    assert!(matches!(
        log.append(magic1, 0),
        Err(LogError::UnsupportedMagic(1))
    ));
    let mut cfg = small_config();
    cfg.max_message_bytes = 100;
    log.set_config(cfg);
    assert!(matches!(
        log.append(encode(1, 1, 500), 0),
        Err(LogError::MessageTooLarge { .. })
    ));
    let mut good_then_bad = encode(1, 1, 1);
    good_then_bad.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        log.append(good_then_bad, 0),
        Err(LogError::CorruptBatch(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size(), 0);
}

#[test]
fn reads_below_log_start_are_out_of_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    fill(&m, 10);
    let log = m.get("t", 0).expect("log");
    log.delete_records(12).expect("delete records");
    assert!(matches!(
        log.read(5, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        log.read(31, 100, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(30, 100, true).expect("at end").records.is_none());
    assert!(log.read(12, 100, true).expect("at start").records.is_some());
}

#[test]
fn time_retention_drops_old_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = small_config();
    let m = open(dir.path(), &cfg);
    fill(&m, 60);
    let log = m.get("t", 0).expect("log");
    let segments = log.segment_count();
    cfg.retention_ms = 1_000;
    log.set_config(cfg);
    let removed = log.apply_retention(1_000_000).expect("retention");
    let segment_files = removed
        .iter()
        .filter(|p| !p.to_string_lossy().contains(".snapshot"))
        .count();
    assert_eq!(
        segment_files,
        3 * (segments - 1),
        "every sealed segment's three files"
    );
    assert!(removed
        .iter()
        .all(|p| p.to_string_lossy().ends_with(".deleted") && p.exists()));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        log.log_start_offset(),
        log.log_end_offset()
            - log
                .read(log.log_start_offset(), 1 << 20, true)
                .map(|r| {
                    let rest = r.records.expect("rest").read_bytes().expect("read");
                    batch::record_timestamps(&rest).len() as i64
                })
                .expect("read")
    );
}

#[test]
fn leader_epochs_survive_restart_and_truncation() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    log.append(encode(2, 1, 1), 0).expect("e0");
    log.append(encode(2, 1, 1), 3).expect("e3");
    log.append(encode(2, 1, 1), 5).expect("e5");
    log.truncate_to(4, 5).expect("truncate");
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.latest_epoch(), Some(3));
    let batch = log
        .read(2, 100, true)
        .expect("read")
        .records
        .expect("batch")
        .read_bytes()
        .expect("read");
    assert_eq!(
        batch::BatchHeader::parse(&batch)
            .expect("hdr")
            .partition_leader_epoch,
        3
    );
    m.shutdown().expect("shutdown");
    drop(log);
    drop(m);
    let m = open(dir.path(), &small_config());
    assert_eq!(m.get("t", 0).expect("log").latest_epoch(), Some(3));
}

#[test]
fn a_fetch_answered_after_this_log_began_leading_never_lands() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    let leader = m.get_or_create("t", 1, small_config()).expect("create");
    leader.append(encode(2, 1, 1), 0).expect("e0");
    let fetched = leader
        .read(0, 1 << 20, true)
        .expect("read")
        .records
        .expect("batch")
        .read_bytes()
        .expect("read");
    // Became leader of epoch 1 while a fetch sent in epoch 0 was in flight.
    log.begin_epoch(1).expect("begin");
    assert!(matches!(
        log.append_replicated(&fetched, 0),
        Err(LogError::FencedLeaderEpoch {
            fetched_in: 0,
            current: 1
        })
    ));
    assert!(log.truncate_to(0, 0).is_err());
    assert!(log.truncate_fully_and_start_at(7, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    // A fetch in the epoch it follows now lands.
    assert_eq!(log.append_replicated(&fetched, 1).expect("append"), 2);
}

#[test]
fn an_epoch_begun_without_appends_goes_when_a_new_leader_diverges_at_the_log_end() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    log.append(encode(2, 1, 1), 3).expect("e3");
    // Led epoch 5 without writing to it, then another broker leads epoch 6 from offset 2.
    log.begin_epoch(5).expect("begin");
    assert_eq!(log.latest_epoch(), Some(5));
    log.truncate_to(2, 6).expect("truncate");
    assert_eq!((log.log_end_offset(), log.latest_epoch()), (2, Some(3)));
}

#[test]
fn ten_thousand_partitions_stay_within_the_file_budget() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = LogManager::open(dir.path(), 64, |_| LogConfig {
        segment_index_bytes: 4096,
        ..LogConfig::default()
    })
    .expect("open")
    .0;
    for p in 0..10_000 {
        let log = m
            .get_or_create(
                "many",
                p,
                LogConfig {
                    segment_index_bytes: 4096,
                    ..LogConfig::default()
                },
            )
            .expect("create");
        log.append(encode(1, 1, 10), 0).expect("append");
    }
    assert!(m.open_file_count() <= 64);
    let fds = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    assert!(fds < 512, "{fds} descriptors open");
    for p in (0..10_000).step_by(997) {
        assert!(m
            .get("many", p)
            .expect("log")
            .read(0, 100, true)
            .expect("read")
            .records
            .is_some());
    }
}

/// Mounts a tmpfs of `size` on a new directory for `f`, and unmounts it after (even when `f`
/// panics). Needs root (CI and the dev machines run as root).
fn on_tmpfs(size: &str, f: impl FnOnce(&Path) + std::panic::UnwindSafe) {
    let mnt = tempfile::tempdir().expect("tmp");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(mnt.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(mounted, "could not mount a tmpfs (this test needs root)");
    let path = mnt.path().to_path_buf();
    let result = std::panic::catch_unwind(move || f(&path));
    let _ = std::process::Command::new("umount")
        .arg(mnt.path())
        .status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// An append as the broker makes it: flushed when `flush.messages` is reached.
fn append_flushing(log: &PartitionLog, bytes: Vec<u8>) -> Result<AppendInfo, LogError> {
    let info = log.append(bytes, 0)?;
    if info.flush_due {
        log.flush()?;
    }
    Ok(info)
}

/// Appends batches of 4 records until one fails, then smaller ones until they fail too (so
/// the last bytes of the disk go to rolls, index entries and checkpoints); returns the errors.
fn append_until_full(m: &LogManager, ts: &mut i64) -> Vec<LogError> {
    let log = m.get("t", 0).expect("log");
    let mut errors = Vec::new();
    for value_len in [1000, 100, 0] {
        for i in 0..100_000 {
            assert!(i < 99_999, "the disk never filled");
            *ts += 1;
            if let Err(e) = append_flushing(&log, encode(4, *ts, value_len)) {
                errors.push(e);
                break;
            }
        }
    }
    errors
}

/// Writes to `path` until the file system has no byte left.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![7u8; 4096];
    for _ in 0..1_000_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    for _ in 0..4096 {
        if f.write_all(&[7]).is_err() {
            return;
        }
    }
    panic!("the disk never filled");
}

/// A real full disk (a 2 MiB tmpfs, filled by files the test removes to give space back):
/// appends fail with NoSpace and leave nothing behind, the directory stays online, everything
/// acknowledged is served, and appends resume by themselves once space returns; also when
/// the append that finds no space is the one that must roll a new segment. The log flushes
/// every 3 appends throughout. A restart without a clean shutdown finds the same log.
#[test]
fn a_full_disk_fails_appends_until_space_returns() {
    on_tmpfs("2m", |dir| {
        let filler = dir.join("filler");
        let config = LogConfig {
            segment_bytes: 20 * 1024,
            segment_index_bytes: 4096,
            index_interval_bytes: 1024,
            flush_messages: Some(12),
            ..LogConfig::default()
        };
        let m = open(dir, &config);
        let log = m.get_or_create("t", 0, config.clone()).expect("create");
        log.set_hw_follows_end(true);
        std::fs::write(&filler, vec![7u8; 512 * 1024]).expect("filler");
        let mut ts = 0i64;
        let no_space = |e: &LogError| matches!(e, LogError::NoSpace { .. });

        for e in append_until_full(&m, &mut ts) {
            assert!(no_space(&e), "{e:?}");
        }
        assert!(!m.is_failed() && m.is_full());
        assert_eq!(read_all(&m, 0).len() as i64, log.log_end_offset());
        let e = append_flushing(&log, encode(4, ts, 0)).expect_err("still full");
        assert!(no_space(&e), "{e:?}");
        std::fs::remove_file(&filler).expect("give space back");
        let end = log.log_end_offset();
        ts += 1;
        let info = append_flushing(&log, encode(4, ts, 1000)).expect("space returned");
        assert_eq!(info.base_offset, end, "offsets go on where they stopped");
        assert!(!m.is_full());

        // The active segment one batch short of full (a new one holds one batch; 4 fit),
        // then not a byte left: the append that must roll fails, and rolls once space returns.
        let segments = log.segment_count();
        for _ in 0..10 {
            ts += 1;
            append_flushing(&log, encode(4, ts, 1000)).expect("append");
            if log.segment_count() > segments {
                break;
            }
        }
        assert_eq!(log.segment_count(), segments + 1, "rolled");
        for _ in 0..3 {
            ts += 1;
            append_flushing(&log, encode(4, ts, 1000)).expect("append");
        }
        fill_disk(&filler);
        ts += 1;
        let e = append_flushing(&log, encode(4, ts, 1000)).expect_err("the roll finds no space");
        assert!(no_space(&e), "{e:?}");
        assert_eq!(log.segment_count(), segments + 1);
        assert!(!m.is_failed());
        std::fs::remove_file(&filler).expect("give space back");
        append_flushing(&log, encode(4, ts, 1000)).expect("rolls now");
        assert_eq!(log.segment_count(), segments + 2);

        let served = read_all(&m, 0);
        assert_eq!(
            served.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (0..log.log_end_offset()).collect::<Vec<_>>()
        );
        drop(log);
        drop(m);
        let m = open(dir, &config);
        assert_eq!(read_all(&m, 0), served);
    });
}

/// Leader epochs reach their checkpoint at flush, not with each first append; a crash before
/// that loses none of them: recovery reads them back from the batches past the recovery point
/// (OffsetForLeaderEpoch answers as before the crash).
#[test]
fn a_crash_keeps_the_leader_epochs_of_unflushed_batches() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = open(dir.path(), &small_config());
    let log = m.get_or_create("t", 0, small_config()).expect("create");
    for epoch in [1, 1, 4] {
        log.append(encode(3, 1_000, 40), epoch).expect("append");
    }
    log.flush().expect("flush");
    for epoch in [4, 7, 7, 9] {
        log.append(encode(3, 1_000, 40), epoch).expect("append");
    }
    let before: Vec<_> = (0..=10).map(|e| log.end_offset_for_epoch(e)).collect();
    assert_eq!(before[7], Some((7, 18)));
    drop(log);
    drop(m);
    let m = open(dir.path(), &small_config());
    let log = m.get("t", 0).expect("log");
    let after: Vec<_> = (0..=10).map(|e| log.end_offset_for_epoch(e)).collect();
    assert_eq!(after, before);
}

/// A clean shutdown writes no leader-epoch checkpoint for a log that never had one and holds
/// a single epoch from its start (50,000 files fewer at 50,000 partitions): the next load reads
/// that epoch from the first batch, after a clean shutdown and after a later crash alike. A log
/// with more epochs gets its file.
#[test]
fn a_clean_shutdown_leaves_out_epoch_checkpoints_the_first_batch_gives_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let epoch_file = |name: &str| dir.path().join(name).join("leader-epoch-checkpoint");
    let epochs = |log: &runnel::log::PartitionLog| -> Vec<_> {
        (0..=6).map(|e| log.end_offset_for_epoch(e)).collect()
    };
    let m = open(dir.path(), &small_config());
    let one = m.get_or_create("one", 0, small_config()).expect("create");
    one.begin_epoch(3).expect("leader");
    for _ in 0..2 {
        one.append(encode(3, 1_000, 40), 3).expect("append");
    }
    let two = m.get_or_create("two", 0, small_config()).expect("create");
    for epoch in [0, 2] {
        two.append(encode(3, 1_000, 40), epoch).expect("append");
    }
    let (one_before, two_before) = (epochs(&one), epochs(&two));
    assert_eq!(one_before[3], Some((3, 6)));
    m.shutdown().expect("shutdown");
    drop((one, two, m));
    assert!(!epoch_file("one-0").exists());
    assert!(epoch_file("two-0").exists());

    let m = open(dir.path(), &small_config());
    let (one, two) = (m.get("one", 0).expect("one"), m.get("two", 0).expect("two"));
    assert_eq!((epochs(&one), epochs(&two)), (one_before, two_before));
    // Appended in the same epoch, then a crash: recovery scans only past the clean end.
    one.append(encode(3, 1_000, 40), 3).expect("append");
    one.append(encode(3, 1_000, 40), 5).expect("append");
    let one_before = epochs(&one);
    assert_eq!(
        (one_before[3], one_before[5]),
        (Some((3, 9)), Some((5, 12)))
    );
    drop((one, two, m));
    let m = open(dir.path(), &small_config());
    let one = m.get("one", 0).expect("one");
    assert_eq!(epochs(&one), one_before);
}
