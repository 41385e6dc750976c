//! LogConfig: the per-topic settings the log engine honours, with Kafka's names, defaults and
//! validation. Broker-wide defaults come from `crate::config`; topic overrides from the topic
//! registry.

use std::collections::BTreeMap;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the active segment would pass this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `segment.index.bytes`: preallocated size of each index file.
    pub segment_index_bytes: usize,
    /// `index.interval.bytes`: bytes between offset-index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: usize,
    /// `retention.ms`: -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`: -1 means no size limit.
    pub retention_bytes: i64,
    /// `flush.messages`: fsync after this many messages (None: leave it to the OS, as Kafka).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fsync when the oldest unflushed write is this old (None: never by time).
    pub flush_ms: Option<i64>,
    /// `message.timestamp.type` = LogAppendTime.
    pub log_append_time: bool,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// `cleanup.policy`: `compact` has the log cleaner keep the latest record of each key;
    /// without `delete`, time and size retention are off.
    pub cleanup_policy: String,
    /// `delete.retention.ms`: how long tombstones stay readable after their first cleaning.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`: the share of a log not yet cleaned that makes it due.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: records older than this make their log due whatever its ratio.
    pub max_compaction_lag_ms: i64,
    /// Topic configs Kafka defines that Runnel accepts, validates, stores and reports but does
    /// not act on (see ACCEPTED_TOPIC_CONFIGS).
    pub accepted: BTreeMap<String, String>,
    /// `producer.id.expiration.ms` (a broker setting): idempotence state of a producer idle
    /// this long is dropped.
    pub producer_id_expiration_ms: i64,
    /// `message.max.records` (a Runnel broker setting): the most records one produced batch
    /// may declare.
    pub max_batch_records: i32,
    /// `message.max.decompressed.bytes` (a Runnel broker setting, at most
    /// `codec::MAX_DECOMPRESSED_BATCH`): what a produced compressed batch may inflate to.
    pub max_decompressed_bytes: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * DAY_MS,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            retention_ms: 7 * DAY_MS,
            retention_bytes: -1,
            flush_messages: None,
            flush_ms: None,
            log_append_time: false,
            min_insync_replicas: 1,
            cleanup_policy: "delete".to_string(),
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            accepted: BTreeMap::new(),
            producer_id_expiration_ms: DAY_MS,
            max_batch_records: 1_000_000,
            max_decompressed_bytes: super::codec::MAX_DECOMPRESSED_BATCH,
        }
    }
}

/// DescribeConfigs' ConfigType values (KIP-569).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// A topic config Kafka defines that Runnel accepts (so tools and scripts written for Kafka
/// work) without acting on it: replication throttles, tiered storage, recompression (batches
/// stay as produced).
pub struct AcceptedKey {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigKind,
    /// For strings: the values Kafka allows (empty: any).
    pub allowed: &'static [&'static str],
    pub doc: &'static str,
}

const NO_EFFECT: &str =
    "Accepted for compatibility with Kafka; Runnel stores and reports it but does not act on it.";

pub const ACCEPTED_TOPIC_CONFIGS: &[AcceptedKey] = &[
    AcceptedKey {
        name: "compression.type",
        default: "producer",
        kind: ConfigKind::String,
        allowed: &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "compression.gzip.level",
        default: "-1",
        kind: ConfigKind::Int,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "compression.lz4.level",
        default: "9",
        kind: ConfigKind::Int,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "compression.zstd.level",
        default: "3",
        kind: ConfigKind::Int,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: ConfigKind::Long,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "follower.replication.throttled.replicas",
        default: "",
        kind: ConfigKind::List,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "leader.replication.throttled.replicas",
        default: "",
        kind: ConfigKind::List,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "local.retention.bytes",
        default: "-2",
        kind: ConfigKind::Long,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "local.retention.ms",
        default: "-2",
        kind: ConfigKind::Long,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "preallocate",
        default: "false",
        kind: ConfigKind::Boolean,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "remote.storage.enable",
        default: "false",
        kind: ConfigKind::Boolean,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "segment.jitter.ms",
        default: "0",
        kind: ConfigKind::Long,
        allowed: &[],
        doc: NO_EFFECT,
    },
    AcceptedKey {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: ConfigKind::Boolean,
        allowed: &[],
        doc: "Lets a replica outside the ISR lead an offline partition, accepting the loss of records only the ISR held.",
    },
];

pub fn accepted_key(name: &str) -> Option<&'static AcceptedKey> {
    ACCEPTED_TOPIC_CONFIGS.iter().find(|k| k.name == name)
}

/// A topic-level config this engine honours: its broker-level synonyms (most specific first,
/// as DescribeConfigs lists them), its type, and what it does.
pub struct TopicKey {
    pub name: &'static str,
    pub broker_keys: &'static [&'static str],
    pub kind: ConfigKind,
    pub doc: &'static str,
}

pub const TOPIC_CONFIGS: &[TopicKey] = &[
    TopicKey {
        name: "cleanup.policy",
        broker_keys: &["log.cleanup.policy"],
        kind: ConfigKind::List,
        doc: "delete: old segments are removed by retention.ms/retention.bytes; compact: the log cleaner keeps the latest record of every key (compact alone turns time and size retention off).",
    },
    TopicKey {
        name: "delete.retention.ms",
        broker_keys: &["log.cleaner.delete.retention.ms"],
        kind: ConfigKind::Long,
        doc: "How long a tombstone stays readable in a compacted topic after the cleaner first sees it.",
    },
    TopicKey {
        name: "flush.messages",
        broker_keys: &["log.flush.interval.messages"],
        kind: ConfigKind::Long,
        doc: "Force an fsync of the log after this many messages.",
    },
    TopicKey {
        name: "flush.ms",
        broker_keys: &["log.flush.interval.ms"],
        kind: ConfigKind::Long,
        doc: "Force an fsync of the log when its oldest unflushed message is this old.",
    },
    TopicKey {
        name: "index.interval.bytes",
        broker_keys: &["log.index.interval.bytes"],
        kind: ConfigKind::Int,
        doc: "How many bytes of records between two entries of the offset index.",
    },
    TopicKey {
        name: "max.message.bytes",
        broker_keys: &["message.max.bytes"],
        kind: ConfigKind::Int,
        doc: "The largest record batch size allowed.",
    },
    TopicKey {
        name: "message.timestamp.type",
        broker_keys: &["log.message.timestamp.type"],
        kind: ConfigKind::String,
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's time.",
    },
    TopicKey {
        name: "max.compaction.lag.ms",
        broker_keys: &["log.cleaner.max.compaction.lag.ms"],
        kind: ConfigKind::Long,
        doc: "A compacted log whose oldest uncleaned record is this old is cleaned whatever its dirty ratio (and its active segment rolls at this age).",
    },
    TopicKey {
        name: "min.cleanable.dirty.ratio",
        broker_keys: &["log.cleaner.min.cleanable.ratio"],
        kind: ConfigKind::Double,
        doc: "A compacted log is cleaned once this share of it has not been cleaned yet.",
    },
    TopicKey {
        name: "min.compaction.lag.ms",
        broker_keys: &["log.cleaner.min.compaction.lag.ms"],
        kind: ConfigKind::Long,
        doc: "Records younger than this are never compacted away.",
    },
    TopicKey {
        name: "min.insync.replicas",
        broker_keys: &["min.insync.replicas"],
        kind: ConfigKind::Int,
        doc: "With acks=all, the minimum number of in-sync replicas for a write to succeed.",
    },
    TopicKey {
        name: "retention.bytes",
        broker_keys: &["log.retention.bytes"],
        kind: ConfigKind::Long,
        doc: "The largest size a partition may grow to before old segments are deleted (-1: no limit).",
    },
    TopicKey {
        name: "retention.ms",
        broker_keys: &["log.retention.ms", "log.retention.minutes", "log.retention.hours"],
        kind: ConfigKind::Long,
        doc: "How long a segment is kept after its newest record (-1: forever).",
    },
    TopicKey {
        name: "segment.bytes",
        broker_keys: &["log.segment.bytes"],
        kind: ConfigKind::Int,
        doc: "The size at which a new segment file is started.",
    },
    TopicKey {
        name: "segment.index.bytes",
        broker_keys: &["log.index.size.max.bytes"],
        kind: ConfigKind::Int,
        doc: "The size of a segment's offset and time index files.",
    },
    TopicKey {
        name: "segment.ms",
        broker_keys: &["log.roll.ms", "log.roll.hours"],
        kind: ConfigKind::Long,
        doc: "A new segment is started when the active one's first record is this old.",
    },
];

/// The names of every topic-level key accepted: those honoured, then those only stored.
pub fn topic_keys() -> impl Iterator<Item = &'static str> {
    TOPIC_CONFIGS
        .iter()
        .map(|k| k.name)
        .chain(ACCEPTED_TOPIC_CONFIGS.iter().map(|k| k.name))
}

pub fn topic_key(name: &str) -> Option<&'static TopicKey> {
    TOPIC_CONFIGS.iter().find(|k| k.name == name)
}

fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("Invalid value {v} for configuration {key}"))
}

fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    v: T,
    min: T,
) -> Result<T, String> {
    if v < min {
        Err(format!(
            "Invalid value {v} for configuration {key}: Value must be at least {min}"
        ))
    } else {
        Ok(v)
    }
}

impl LogConfig {
    /// These defaults with `overrides` applied; an unknown key or a bad value is an error
    /// whose text is what Kafka's INVALID_CONFIG message would say.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut c = self.clone();
        for (k, v) in overrides {
            c.set(k, v)?;
        }
        if c.min_compaction_lag_ms > c.max_compaction_lag_ms {
            return Err(format!(
                "conflict topic config setting min.compaction.lag.ms ({}) > max.compaction.lag.ms ({})",
                c.min_compaction_lag_ms, c.max_compaction_lag_ms
            ));
        }
        Ok(c)
    }

    /// How old the active segment may grow: a compacted log also rolls at
    /// `max.compaction.lag.ms`, so the cleaner reaches its records in time (KIP-354).
    pub fn max_segment_ms(&self) -> i64 {
        if self.is_compacted() {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }

    /// `cleanup.policy` includes `compact`: records must have keys.
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy
            .split(',')
            .any(|p| p.trim() == "compact")
    }

    pub fn set(&mut self, key: &str, v: &str) -> Result<(), String> {
        match key {
            "segment.bytes" => self.segment_bytes = at_least(key, parse(key, v)?, 14u64)?,
            "segment.ms" => self.segment_ms = at_least(key, parse(key, v)?, 1i64)?,
            "segment.index.bytes" => self.segment_index_bytes = at_least(key, parse(key, v)?, 8usize)?,
            "index.interval.bytes" => self.index_interval_bytes = parse(key, v)?,
            "max.message.bytes" => self.max_message_bytes = parse(key, v)?,
            "retention.ms" => self.retention_ms = at_least(key, parse(key, v)?, -1i64)?,
            "retention.bytes" => self.retention_bytes = parse(key, v)?,
            "flush.messages" => {
                let n: i64 = at_least(key, parse(key, v)?, 1i64)?;
                self.flush_messages = (n != i64::MAX).then_some(n as u64);
            }
            "flush.ms" => {
                let n: i64 = at_least(key, parse(key, v)?, 0i64)?;
                self.flush_ms = (n != i64::MAX).then_some(n);
            }
            "message.timestamp.type" => {
                self.log_append_time = match v {
                    "LogAppendTime" => true,
                    "CreateTime" => false,
                    _ => return Err(format!("Invalid value {v} for configuration {key}: String must be one of: CreateTime, LogAppendTime")),
                }
            }
            "min.insync.replicas" => self.min_insync_replicas = at_least(key, parse(key, v)?, 1i32)?,
            "cleanup.policy" => {
                if !v.split(',').all(|p| matches!(p.trim(), "delete" | "compact")) {
                    return Err(format!("Invalid value {v} for configuration {key}"));
                }
                self.cleanup_policy = v.to_string();
            }
            "delete.retention.ms" => self.delete_retention_ms = at_least(key, parse(key, v)?, 0i64)?,
            "min.compaction.lag.ms" => {
                self.min_compaction_lag_ms = at_least(key, parse(key, v)?, 0i64)?
            }
            "max.compaction.lag.ms" => {
                self.max_compaction_lag_ms = at_least(key, parse(key, v)?, 1i64)?
            }
            "min.cleanable.dirty.ratio" => {
                let r: f64 = parse(key, v)?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(format!(
                        "Invalid value {v} for configuration {key}: Value must be between 0 and 1"
                    ));
                }
                self.min_cleanable_dirty_ratio = r;
            }
            _ => {
                let a = accepted_key(key)
                    .ok_or_else(|| format!("Unknown topic config name: {key}"))?;
                let bad = || format!("Invalid value {v} for configuration {key}");
                let ok = match a.kind {
                    ConfigKind::Long | ConfigKind::Int => v.trim().parse::<i64>().is_ok(),
                    ConfigKind::Boolean => matches!(v.trim(), "true" | "false"),
                    ConfigKind::Double => v.trim().parse::<f64>().is_ok_and(f64::is_finite),
                    ConfigKind::String => a.allowed.is_empty() || a.allowed.contains(&v.trim()),
                    ConfigKind::List => true,
                };
                if !ok {
                    return Err(bad());
                }
                self.accepted.insert(key.to_string(), v.trim().to_string());
            }
        }
        Ok(())
    }

    /// The current value of `key` as Kafka would print it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "flush.messages" => self
                .flush_messages
                .map_or(i64::MAX.to_string(), |n| n.to_string()),
            "flush.ms" => self.flush_ms.unwrap_or(i64::MAX).to_string(),
            "message.timestamp.type" => if self.log_append_time {
                "LogAppendTime"
            } else {
                "CreateTime"
            }
            .to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "cleanup.policy" => self.cleanup_policy.clone(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            _ => {
                let a = accepted_key(key)?;
                self.accepted
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| a.default.to_string())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_validate_like_kafka() {
        let base = LogConfig::default();
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let c = base.with_overrides(&o).expect("valid");
        assert_eq!((c.retention_ms, c.log_append_time), (1000, true));
        for key in topic_keys() {
            let v = c.get(key).expect("every key reads back");
            let mut again = LogConfig::default();
            again.set(key, &v).expect("what get prints, set accepts");
        }
        o.insert("segment.bytes".to_string(), "banana".to_string());
        assert!(base.with_overrides(&o).is_err());
        assert!(LogConfig::default().set("no.such.key", "1").is_err());
    }
}
