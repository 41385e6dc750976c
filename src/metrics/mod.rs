//! Metrics: the counters the request path bumps (requests per API and version, error codes,
//! request times; messages and bytes per topic; connections per listener) and the `/metrics`
//! endpoint, whose scrape reads these together with the broker's state (logs, replicas,
//! groups, lag) under the names Kafka's JMX exporter rules give Kafka's MBeans.
//!
//! Never takes a lock on the request path: relaxed atomics, and one map lookup per topic of a
//! produce or fetch. Never keeps a copy of state the broker already holds: the scrape reads it.

pub mod errors;
pub mod histogram;
pub mod hot;
pub mod http;
pub mod scrape;
pub mod top;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use kafka_protocol::messages::ApiKey;

use histogram::Histogram;

/// API keys and versions counted; larger ones share the last slot of each. Kafka also times
/// fetches as `FetchConsumer` and `FetchFollower`: two pseudo keys past the real ones.
const API_SLOTS: usize = 96;
pub const FETCH_CONSUMER: i16 = 94;
pub const FETCH_FOLLOWER: i16 = 95;
const VERSION_SLOTS: usize = 24;
/// Error codes 0..ERROR_SLOTS-1 each have a slot; -1 and codes past them share slot 0's twin.
const ERROR_SLOTS: usize = 192;

/// Kafka's BrokerTopicMetrics, for one topic or for all of them.
#[derive(Default)]
pub struct TopicMetrics {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_rejected: AtomicU64,
    pub produce_requests: AtomicU64,
    pub fetch_requests: AtomicU64,
    pub failed_produce_requests: AtomicU64,
    pub failed_fetch_requests: AtomicU64,
}

/// Per listener: open connections and connections accepted.
#[derive(Default)]
pub struct ListenerMetrics {
    pub connections: AtomicI64,
    pub created: AtomicU64,
}

struct ApiMetrics {
    by_version: [AtomicU64; VERSION_SLOTS],
    /// Index = error code, except slot ERROR_SLOTS - 1: codes outside 0..ERROR_SLOTS - 1.
    errors: Box<[AtomicU64]>,
    total_time: Histogram,
    queue_time: Histogram,
}

/// A request's times, as Kafka's RequestMetrics splits them.
#[derive(Clone, Copy)]
pub struct RequestTimes {
    /// From the request being whole in the connection's buffer to its response written.
    pub total: Duration,
    /// How long it waited there behind earlier requests of the connection (Kafka answers a
    /// connection's requests in order too; RequestQueueTimeMs).
    pub queue: Duration,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        Self {
            by_version: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: (0..ERROR_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            total_time: Histogram::default(),
            queue_time: Histogram::default(),
        }
    }
}

fn slot(v: i16, slots: usize) -> usize {
    (v.max(0) as usize).min(slots - 1)
}

fn api_slot(key: i16) -> usize {
    match key {
        FETCH_CONSUMER | FETCH_FOLLOWER => key as usize,
        // Unknown keys (negative, or past the last known) share the slot below the pseudo keys.
        0..FETCH_CONSUMER => key as usize,
        _ => FETCH_CONSUMER as usize - 1,
    }
}

pub struct BrokerMetrics {
    apis: Box<[ApiMetrics]>,
    all_topics: TopicMetrics,
    topics: DashMap<String, Arc<TopicMetrics>>,
    listeners: DashMap<String, Arc<ListenerMetrics>>,
    pub replication_bytes_in: AtomicU64,
    pub replication_bytes_out: AtomicU64,
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self {
            apis: (0..API_SLOTS).map(|_| ApiMetrics::default()).collect(),
            all_topics: TopicMetrics::default(),
            topics: DashMap::new(),
            listeners: DashMap::new(),
            replication_bytes_in: AtomicU64::new(0),
            replication_bytes_out: AtomicU64::new(0),
            isr_shrinks: AtomicU64::new(0),
            isr_expands: AtomicU64::new(0),
        }
    }
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Relaxed);
}

impl BrokerMetrics {
    fn api(&self, key: i16) -> &ApiMetrics {
        &self.apis[api_slot(key)]
    }

    /// A request answered (or, with acks=0, handled): counted by API and version, and timed.
    pub fn request_done(&self, key: i16, version: i16, times: RequestTimes) {
        let api = self.api(key);
        add(&api.by_version[slot(version, VERSION_SLOTS)], 1);
        api.total_time.record(times.total);
        api.queue_time.record(times.queue);
    }

    pub fn error(&self, key: i16, code: i16) {
        let i = if (0..ERROR_SLOTS as i16 - 1).contains(&code) {
            code as usize
        } else {
            ERROR_SLOTS - 1
        };
        add(&self.api(key).errors[i], 1);
    }

    /// The metrics of `topic`, created on first use.
    pub fn topic(&self, topic: &str) -> Arc<TopicMetrics> {
        if let Some(t) = self.topics.get(topic) {
            return t.clone();
        }
        self.topics.entry(topic.to_string()).or_default().clone()
    }

    /// Forgets topics `keep` says are gone (Kafka removes a deleted topic's metrics).
    pub fn retain_topics(&self, keep: impl Fn(&str) -> bool) {
        self.topics.retain(|t, _| keep(t));
    }

    /// One partition of a produce request: `records` appended (0 when it failed) of `bytes`.
    /// A topic this broker does not know counts in the total only.
    pub fn produced(&self, topic: Option<&TopicMetrics>, failed: bool, records: u64, bytes: u64) {
        for t in topic.into_iter().chain([&self.all_topics]) {
            add(&t.produce_requests, 1);
            if failed {
                add(&t.failed_produce_requests, 1);
                add(&t.bytes_rejected, bytes);
            } else {
                add(&t.messages_in, records);
                add(&t.bytes_in, bytes);
            }
        }
    }

    /// A fetch's records of one topic: to a consumer (BytesOut) or a follower (ReplicationBytesOut).
    pub fn fetched(&self, topic: &TopicMetrics, bytes: u64, failed: u64, follower: bool) {
        if follower {
            add(&self.replication_bytes_out, bytes);
            return;
        }
        for t in [topic, &self.all_topics] {
            add(&t.fetch_requests, 1);
            add(&t.bytes_out, bytes);
            add(&t.failed_fetch_requests, failed);
        }
    }

    pub fn listener(&self, name: &str) -> Arc<ListenerMetrics> {
        if let Some(l) = self.listeners.get(name) {
            return l.clone();
        }
        self.listeners.entry(name.to_string()).or_default().clone()
    }
}

/// Moves every led partition's rates and decays its key counts, every `hot::TICK_SECS`.
pub async fn tick(
    broker: Arc<crate::broker::Broker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(Duration::from_secs_f64(hot::TICK_SECS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => return,
        }
        for p in broker.leaders.iter() {
            p.value().activity.tick();
        }
    }
}

/// What a scrape reads of the request counters.
pub(crate) struct ApiSnapshot {
    pub key: i16,
    pub by_version: Vec<(i16, u64)>,
    pub errors: Vec<(i16, u64)>,
    pub total_time: Vec<u64>,
    pub queue_time: Vec<u64>,
}

impl BrokerMetrics {
    /// Every API that has seen a request.
    pub(crate) fn apis(&self) -> Vec<ApiSnapshot> {
        self.apis
            .iter()
            .enumerate()
            .filter_map(|(key, api)| {
                let by_version: Vec<(i16, u64)> = (0..VERSION_SLOTS)
                    .map(|v| (v as i16, api.by_version[v].load(Relaxed)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                if by_version.is_empty() {
                    return None;
                }
                let errors = (0..ERROR_SLOTS)
                    .map(|c| {
                        let code = if c == ERROR_SLOTS - 1 { -1 } else { c as i16 };
                        (code, api.errors[c].load(Relaxed))
                    })
                    .filter(|(_, n)| *n > 0)
                    .collect();
                Some(ApiSnapshot {
                    key: key as i16,
                    by_version,
                    errors,
                    total_time: api.total_time.snapshot(),
                    queue_time: api.queue_time.snapshot(),
                })
            })
            .collect()
    }

    pub(crate) fn topics_snapshot(&self) -> Vec<(String, Arc<TopicMetrics>)> {
        let mut v: Vec<_> = self
            .topics
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn all_topics(&self) -> &TopicMetrics {
        &self.all_topics
    }

    pub(crate) fn listeners_snapshot(&self) -> Vec<(String, Arc<ListenerMetrics>)> {
        let mut v: Vec<_> = self
            .listeners
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// Kafka's name of an API key as RequestMetrics tags it (`Produce`, `OffsetCommit`).
pub fn api_name(key: i16) -> String {
    match key {
        FETCH_CONSUMER => "FetchConsumer".to_string(),
        FETCH_FOLLOWER => "FetchFollower".to_string(),
        _ => ApiKey::try_from(key).map_or_else(|_| format!("Unknown{key}"), |k| format!("{k:?}")),
    }
}
