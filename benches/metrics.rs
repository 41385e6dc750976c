//! What metrics add to one produce request: the counters (request by version, error code,
//! topic totals, time histograms) and hot-key sampling of a 16 KiB batch, sampled and not.
//! Compare with `cargo bench --bench log -- append/1KiB_records/16KiB_batches`, the append
//! itself. `cargo bench --bench metrics`.

#[path = "../tests/common/batches.rs"]
mod batches;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use runnel::metrics::hot::PartitionActivity;
use runnel::metrics::{BrokerMetrics, RequestTimes};

fn produce_request(c: &mut Criterion) {
    let batch = batches::batch_from(batches::PLAIN, 16, 1_700_000_000_000, 1000);
    let metrics = BrokerMetrics::default();
    let times = RequestTimes {
        total: Duration::from_micros(180),
        queue: Duration::from_micros(3),
    };
    let mut g = c.benchmark_group("produce_request_metrics");
    g.bench_function("counters", |b| {
        b.iter(|| {
            let topic = metrics.topic("orders");
            metrics.produced(Some(&topic), false, 16, batch.len() as u64);
            metrics.error(0, 0);
            metrics.request_done(0, 9, times);
        })
    });
    let unsampled = PartitionActivity::default();
    // Spend the sampling budget: from here on one batch in 64 is parsed.
    for _ in 0..100 {
        unsampled.appended(&batch, 16);
    }
    g.bench_function("hot_keys_past_the_budget_16KiB", |b| {
        b.iter(|| unsampled.appended(&batch, 16))
    });
    g.bench_function("hot_keys_every_batch_sampled_16KiB", |b| {
        let sampled = PartitionActivity::default();
        b.iter(|| {
            sampled.appended(&batch, 16);
            // Keep it under the budget, as a partition with little traffic is.
            sampled.tick();
        })
    });
    g.finish();
}

criterion_group!(benches, produce_request);
criterion_main!(benches);
