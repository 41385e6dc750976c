//! Throttler: holds the cleaner's disk I/O to `log.cleaner.io.max.bytes.per.second` across
//! every cleaner thread (Kafka's Throttler): bytes are counted over short periods and a thread
//! that finds the rate exceeded sleeps until it is back at the limit.
//!
//! Owns the rate accounting. Never does I/O itself.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the observed rate is compared with the limit.
const CHECK_EVERY: Duration = Duration::from_millis(100);

pub struct Throttler {
    bytes_per_second: f64,
    period: Mutex<(Instant, f64)>,
}

impl Throttler {
    pub fn new(bytes_per_second: f64) -> Self {
        Self {
            bytes_per_second,
            period: Mutex::new((Instant::now(), 0.0)),
        }
    }

    /// Counts `bytes` of I/O and sleeps if they put the rate over the limit.
    pub fn account(&self, bytes: usize) {
        if !(self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0) {
            return;
        }
        let sleep = {
            let mut p = self.period.lock().unwrap_or_else(|e| e.into_inner());
            p.1 += bytes as f64;
            let elapsed = p.0.elapsed();
            let period_allows = self.bytes_per_second * CHECK_EVERY.as_secs_f64();
            if elapsed < CHECK_EVERY && p.1 < period_allows {
                return;
            }
            let wanted = Duration::from_secs_f64(p.1 / self.bytes_per_second);
            *p = (Instant::now(), 0.0);
            wanted.saturating_sub(elapsed)
        };
        if !sleep.is_zero() {
            std::thread::sleep(sleep.min(Duration::from_secs(10)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_rate_near_the_limit() {
        let t = Throttler::new(2_000_000.0);
        let start = Instant::now();
        for _ in 0..100 {
            t.account(10_000);
        }
        // 1 MB at 2 MB/s: about half a second (the last period may go unaccounted).
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(350), "{took:?}");
    }

    #[test]
    fn unlimited_never_sleeps() {
        let t = Throttler::new(f64::MAX);
        let start = Instant::now();
        for _ in 0..1_000 {
            t.account(1 << 20);
        }
        assert!(start.elapsed() < Duration::from_millis(500));
    }
}
