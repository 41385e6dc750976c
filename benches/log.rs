//! Log engine benchmarks: append and read throughput, crash-recovery time, file handles with
//! 10,000 partitions. `cargo bench --bench log`.

#[path = "../tests/common/batches.rs"]
mod batches;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use runnel::log::{LogConfig, LogManager, PartitionLog};

fn batch(records: usize, record_bytes: usize) -> Vec<u8> {
    batches::batch_from(batches::PLAIN, records, 1_700_000_000_000, record_bytes)
}

struct Scratch {
    _dir: tempfile::TempDir,
    manager: LogManager,
    log: std::sync::Arc<PartitionLog>,
}

fn scratch(config: LogConfig) -> Scratch {
    let dir = tempfile::tempdir().expect("tmp");
    let c = config.clone();
    let manager = LogManager::open(dir.path(), 256, move |_| c.clone())
        .expect("open")
        .0;
    let log = manager.get_or_create("bench", 0, config).expect("log");
    Scratch {
        _dir: dir,
        manager,
        log,
    }
}

fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    for (name, records) in [("16KiB_batches", 16usize), ("1MiB_batches", 1024)] {
        let one = batch(records, 1000);
        g.throughput(Throughput::Bytes(one.len() as u64));
        g.bench_function(BenchmarkId::new("1KiB_records", name), |b| {
            let mut s = scratch(LogConfig::default());
            b.iter_custom(|iters| {
                if s.log.size() > (2u64 << 30) {
                    s = scratch(LogConfig::default());
                }
                let copies: Vec<Vec<u8>> = (0..iters).map(|_| one.clone()).collect();
                let start = Instant::now();
                for bytes in copies {
                    s.log.append(bytes, 0).expect("append");
                }
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    let s = scratch(LogConfig::default());
    let one = batch(1024, 1000);
    for _ in 0..256 {
        s.log.append(one.clone(), 0).expect("fill");
    }
    let end = s.log.log_end_offset();
    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(s.log.size()));
    g.sample_size(20);
    g.bench_function("page_cache_1MiB_fetches", |b| {
        b.iter(|| {
            let mut offset = 0;
            while offset < end {
                let info = s.log.read(offset, 1 << 20, true).expect("read");
                let bytes = info.records.expect("data").read_bytes().expect("read");
                let last = runnel::log::batch::headers(&bytes)
                    .last()
                    .map(|(_, h)| h.next_offset())
                    .expect("batch");
                offset = last;
            }
        })
    });
    g.finish();
    drop(s.manager);
}

fn recovery(c: &mut Criterion) {
    let config = LogConfig {
        segment_bytes: 4 << 30,
        ..LogConfig::default()
    };
    let s = scratch(config.clone());
    let one = batch(1024, 1000);
    while s.log.size() < (1 << 30) {
        s.log.append(one.clone(), 0).expect("fill");
    }
    let dir = s._dir.path().to_path_buf();
    let size = s.log.size();
    // A crash: no shutdown, so no clean-shutdown marker; the whole tail is unflushed.
    drop(s.log);
    drop(s.manager);
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Bytes(size));
    g.bench_function("unclean_1GiB_tail", |b| {
        b.iter(|| {
            let c = config.clone();
            let (m, stats) = LogManager::open(&dir, 256, move |_| c.clone()).expect("recover");
            assert_eq!(stats.segments_scanned, 1);
            drop(m);
        })
    });
    g.finish();
}

fn many_partitions(_c: &mut Criterion) {
    let config = LogConfig {
        segment_index_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let c = config.clone();
    let m = LogManager::open(dir.path(), 256, move |_| c.clone())
        .expect("open")
        .0;
    let one = batch(1, 100);
    for p in 0..10_000 {
        m.get_or_create("many", p, config.clone())
            .expect("create")
            .append(one.clone(), 0)
            .expect("append");
    }
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    println!(
        "10000 partitions: {fds} open file descriptors in the process, {} segment files cached",
        m.open_file_count()
    );
}

criterion_group!(benches, append, read, recovery, many_partitions);
criterion_main!(benches);
