//! Request times as a log-linear histogram of microseconds in atomics: recording is one relaxed
//! add, and quantiles come from the difference of two snapshots, so a scrape can report the
//! last few minutes (as Kafka's decaying histograms do) rather than the whole uptime.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Buckets per power of two: a quantile is at most 25% above the true value.
const SUB: u64 = 4;
/// Up to 2^40 µs (12 days); longer times land in the last bucket.
pub const BUCKETS: usize = 160;

pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - u64::from(us.leading_zeros());
    let sub = (us >> (exp - 2)) & (SUB - 1);
    (((exp - 1) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The largest time (µs) bucket `i` holds.
fn upper_bound_us(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = i / SUB + 1;
    ((SUB + 1 + i % SUB) << (exp - 2)) - 1
}

impl Histogram {
    pub fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }
}

/// The `q` quantile (0..=1) in milliseconds of the times recorded between snapshots `from`
/// and `to`; 0 when there were none.
pub fn quantile_ms(from: &[u64], to: &[u64], q: f64) -> f64 {
    let diff = |i: usize| to[i].saturating_sub(from.get(i).copied().unwrap_or(0));
    let total: u64 = (0..to.len()).map(diff).sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for i in 0..to.len() {
        seen += diff(i);
        if seen >= rank {
            return upper_bound_us(i) as f64 / 1000.0;
        }
    }
    upper_bound_us(to.len() - 1) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_time_in_order() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket(us);
            assert!(b >= last, "bucket order at {us}");
            assert!(us <= upper_bound_us(b), "{us} above bucket {b}");
            assert!(
                b == 0 || us > upper_bound_us(b - 1),
                "{us} below bucket {b}"
            );
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_window() {
        let h = Histogram::default();
        let before = h.snapshot();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let after = h.snapshot();
        let p50 = quantile_ms(&before, &after, 0.5);
        let p99 = quantile_ms(&before, &after, 0.99);
        assert!((50.0..=62.5).contains(&p50), "p50 {p50}");
        assert!((99.0..=124.0).contains(&p99), "p99 {p99}");
        // Times before the window do not count.
        assert_eq!(quantile_ms(&after, &after, 0.99), 0.0);
        for _ in 0..10 {
            h.record(Duration::from_secs(10));
        }
        let p50 = quantile_ms(&after, &h.snapshot(), 0.5);
        assert!((10_000.0..=12_500.0).contains(&p50), "p50 {p50}");
    }
}
