//! LogCleaner: compaction for `cleanup.policy=compact` (Kafka's LogCleaner). Background
//! threads, `log.cleaner.threads` of them, each take the filthiest compacted log, clean it and
//! checkpoint where its dirty section now starts; with nothing due they sleep
//! `log.cleaner.backoff.ms`. Their disk I/O together stays within
//! `log.cleaner.io.max.bytes.per.second`.
//!
//! | file | Kafka concept |
//! |---|---|
//! | `manager` | LogCleanerManager: the cleaner checkpoint, the filthiest log |
//! | `clean` | Cleaner: offset map, segment groups, one cleaning |
//! | `offset_map` | SkimpyOffsetMap |
//! | `filter`, `records` | MemoryRecords.filterTo: what a batch keeps |
//! | `swap` | the `.cleaned` → `.swap` → segment replacement |
//! | `throttle` | Throttler |
//!
//! Owns the threads and their lifecycle. Never runs on a request path.

pub mod clean;
pub mod filter;
pub mod manager;
pub mod offset_map;
pub mod swap;
#[cfg(test)]
mod tests;
pub mod throttle;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use clean::{CleanError, CleanParams, CleanStats};
use manager::CleanerManager;
use throttle::Throttler;

use super::manager::LogManager;
use super::partition_log::now_ms;

/// The broker's `log.cleaner.*` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`.
    pub enable: bool,
    /// `log.cleaner.threads`.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: offset-map memory shared by all threads.
    pub dedupe_buffer_size: usize,
    /// `log.cleaner.io.buffer.size`: how much a thread reads and writes at a time.
    pub io_buffer_size: usize,
    /// `log.cleaner.io.buffer.load.factor`: how full the offset map may get.
    pub io_buffer_load_factor: f64,
    /// `log.cleaner.io.max.bytes.per.second`.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: the sleep when no log is due.
    pub backoff_ms: u64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        Self {
            enable: true,
            threads: 1,
            dedupe_buffer_size: 128 * 1024 * 1024,
            io_buffer_size: 512 * 1024,
            io_buffer_load_factor: 0.9,
            io_max_bytes_per_second: f64::MAX,
            backoff_ms: 15_000,
        }
    }
}

/// How long a log whose cleaning failed waits before it is tried again.
const RETRY_FAILED_MS: i64 = 60_000;

/// The cleaner threads' nice value: when the CPUs are busy, requests come first and the
/// cleaner takes what is left (a tenth of a contended CPU at nice 10).
const CLEANER_NICE: i32 = 10;

struct Shared {
    logs: Arc<LogManager>,
    config: CleanerConfig,
    manager: CleanerManager,
    throttle: Throttler,
    stop: AtomicBool,
    /// Wakes sleeping threads at shutdown.
    sleeping: Mutex<()>,
    wake: Condvar,
}

pub struct LogCleaner {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl LogCleaner {
    /// The cleaner of `logs`' directory; its threads run once `start` is called (and only if
    /// `log.cleaner.enable`).
    pub fn new(logs: Arc<LogManager>, config: CleanerConfig) -> Self {
        let manager = CleanerManager::load(logs.dir());
        Self {
            shared: Arc::new(Shared {
                throttle: Throttler::new(config.io_max_bytes_per_second),
                logs,
                config,
                manager,
                stop: AtomicBool::new(false),
                sleeping: Mutex::new(()),
                wake: Condvar::new(),
            }),
            threads: Mutex::new(Vec::new()),
        }
    }

    pub fn start(&self) {
        if !self.shared.config.enable {
            return;
        }
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        for i in 0..self.shared.config.threads.max(1) {
            let shared = self.shared.clone();
            match std::thread::Builder::new()
                .name(format!("runnel-cleaner-{i}"))
                .spawn(move || shared.run())
            {
                Ok(t) => threads.push(t),
                Err(e) => tracing::error!(error = %e, "could not start a log cleaner thread"),
            }
        }
    }

    /// Stops the threads: a cleaning in progress is abandoned (its files discarded) and the
    /// log left as it was.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let _g = self
                .shared
                .sleeping
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.wake.notify_all();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Cleans the filthiest due log on the caller's thread, if any is due.
    pub fn clean_filthiest(&self, now: i64) -> Option<Result<CleanStats, CleanError>> {
        self.shared.clean_filthiest(now)
    }

    /// Where `topic`-`partition`'s dirty section starts, as checkpointed.
    pub fn first_dirty_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.shared
            .manager
            .first_dirty(&(topic.to_string(), partition))
    }
}

impl Shared {
    fn run(&self) {
        // Linux keeps nice values per thread: this lowers the cleaner's alone.
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), CLEANER_NICE) {
            tracing::debug!(error = %e, "could not lower the cleaner thread's priority");
        }
        while !self.stop.load(Ordering::Acquire) {
            // A failed or abandoned cleaning waits like an idle pass, so one bad log cannot
            // spin the thread.
            if matches!(self.clean_filthiest(now_ms()), Some(Ok(_))) {
                continue;
            }
            let g = self.sleeping.lock().unwrap_or_else(|p| p.into_inner());
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let _ = self
                .wake
                .wait_timeout(g, Duration::from_millis(self.config.backoff_ms.max(1)));
        }
    }

    fn clean_filthiest(&self, now: i64) -> Option<Result<CleanStats, CleanError>> {
        if self.logs.is_failed() {
            return None;
        }
        let chosen = self.manager.grab_filthiest(&self.logs.all(), now)?;
        let key = chosen.key();
        let params = CleanParams {
            first_dirty: chosen.first_dirty,
            first_uncleanable: chosen.first_uncleanable,
            now,
            map_budget: self.config.dedupe_buffer_size / self.config.threads.max(1),
            load_factor: self.config.io_buffer_load_factor,
            io_buffer: self.config.io_buffer_size.max(4096),
            throttle: &self.throttle,
            stop: &self.stop,
        };
        let r = clean::clean(&chosen.log, &params);
        match &r {
            Ok(stats) => {
                self.manager
                    .done(&key, stats.end_offset, stats.next_delete_horizon);
                let secs = stats.elapsed.as_secs_f64().max(1e-6);
                tracing::info!(
                    topic = %key.0,
                    partition = key.1,
                    dirty_ratio = format!("{:.2}", chosen.dirty_ratio),
                    segments = stats.segments_cleaned,
                    dirty_mb = format!("{:.1}", stats.dirty_bytes as f64 / 1e6),
                    read_mb = format!("{:.1}", stats.bytes_read as f64 / 1e6),
                    written_mb = format!("{:.1}", stats.bytes_written as f64 / 1e6),
                    records_kept = stats.records_kept,
                    records_read = stats.records_read,
                    map_mb = format!("{:.1}", stats.map_bytes as f64 / 1e6),
                    seconds = format!("{secs:.2}"),
                    dirty_mb_per_s = format!("{:.1}", stats.dirty_bytes as f64 / 1e6 / secs),
                    "log cleaned"
                );
            }
            Err(CleanError::Aborted) => self.manager.abandon(&key, None),
            Err(e) => {
                tracing::warn!(topic = %key.0, partition = key.1, error = %e, "log cleaning failed; retrying later");
                self.manager.abandon(&key, Some(now + RETRY_FAILED_MS));
            }
        }
        Some(r)
    }
}
