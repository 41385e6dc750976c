//! The one Config: built-in defaults, then a Kafka `server.properties` file, then `KAFKA_*`
//! environment variables (as Kafka's docker images read them), then command-line flags; later
//! sources win. Keys Runnel does not act on are collected to be listed once; bad values stop
//! start-up with one line naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};

use crate::log::cleaner::CleanerConfig;
use crate::log::LogConfig;

mod listeners;
pub use listeners::{Listener, ListenerSettings, Listeners};

const HOUR_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct Config {
    /// The listener keys as given; `listeners` is resolved from them when loading.
    pub listener_settings: ListenerSettings,
    /// Every listener served, each with its advertised endpoint.
    pub listeners: Listeners,
    /// `node.id` / `broker.id`.
    pub node_id: i32,
    /// `log.dirs`: Runnel uses the first directory.
    pub log_dir: PathBuf,
    /// `num.partitions` for auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    pub auto_create_topics: bool,
    /// Defaults for every topic's LogConfig (the `log.*` broker keys).
    pub log: LogConfig,
    /// The log cleaner's settings (`log.cleaner.*`).
    pub cleaner: CleanerConfig,
    /// `socket.request.max.bytes`: larger frames close the connection unread.
    pub socket_request_max_bytes: usize,
    /// `max.connections`.
    pub max_connections: usize,
    /// `max.connections.per.ip`, and `max.connections.per.ip.overrides` resolved to addresses.
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_overrides: BTreeMap<std::net::IpAddr, usize>,
    /// The text of `max.connections.per.ip.overrides`, as given (for DescribeConfigs).
    pub max_connections_per_ip_overrides_text: String,
    /// `max.connection.creation.rate`: new connections a second on each listener.
    pub max_connection_creation_rate: u32,
    /// `max.broker.partitions` (KIP-578): partition replicas one broker may hold.
    pub max_broker_partitions: u32,
    /// `controller.max.records.per.batch`: the most metadata changes one admin request may
    /// make (partitions created, topics deleted), as Kafka's controller.
    pub controller_max_records_per_batch: u32,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// `max.incremental.fetch.session.cache.slots`: fetch sessions (KIP-227) kept at once.
    pub fetch_session_cache_slots: usize,
    /// `min.incremental.fetch.session.eviction.ms`: a fetch session unused this long may be
    /// evicted for a new one, and one younger is safe from eviction by size.
    pub fetch_session_eviction_ms: i64,
    /// `queued.max.request.bytes`: request bytes held in memory at once, across connections;
    /// None (-1): unbounded.
    pub queued_max_request_bytes: Option<u64>,
    /// `metrics.listeners`: where `/metrics` and `/health` are served (host:port), None when
    /// set empty.
    pub metrics_listener: Option<String>,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub checkpoint_interval_ms: u64,
    /// `cluster.id` (KAFKA_CLUSTER_ID / CLUSTER_ID in docker images).
    pub cluster_id: String,
    /// The group coordinator's settings (`group.*`, `offsets.*`).
    pub group: crate::group::GroupConfig,
    /// Segment files kept open at once.
    pub max_open_segment_files: usize,
    /// KRaft settings: roles, the controller quorum, heartbeats.
    pub cluster: ClusterConfig,
    /// Where each value came from: key → (value, source), for DescribeConfigs.
    pub explicit: BTreeMap<String, (String, Source)>,
    /// Keys given that Runnel does not act on, listed once at start-up.
    pub ignored: Vec<String>,
}

/// Where the values nobody set come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defaults {
    /// Runnel's own: one node on 127.0.0.1:9092, data in ./runnel-data.
    Runnel,
    /// Those of Kafka's docker images, for `runnel serve --image-defaults` in Runnel's image.
    KafkaImage,
}

/// Where Kafka's images keep the log (and declare their volume).
pub const IMAGE_DATA_DIR: &str = "/var/lib/kafka/data";

/// The single-node broker and controller Kafka's image runs when no variable configures it:
/// reachable from the host through a published port 9092.
const IMAGE_SINGLE_NODE: &[(&str, &str)] = &[
    ("process.roles", "broker,controller"),
    ("node.id", "1"),
    ("controller.quorum.voters", "1@localhost:9093"),
    ("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
    ("advertised.listeners", "PLAINTEXT://localhost:9092"),
    ("controller.listener.names", "CONTROLLER"),
    (
        "listener.security.protocol.map",
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    ),
];

/// A voter of `controller.quorum.voters`: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

impl Voter {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `process.roles` includes `controller` (a voter of the metadata quorum).
    pub controller: bool,
    /// `process.roles` includes `broker` (serves clients and holds partitions).
    pub broker: bool,
    /// `controller.quorum.voters`; empty: a quorum of this node alone.
    pub voters: Vec<Voter>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `metadata.log.dir` (default: the first log dir).
    pub metadata_log_dir: Option<PathBuf>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch waits for data.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.max.bytes`: per partition in one follower fetch.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: the pause after a failed follower fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `auto.leader.rebalance.enable`: preferred replicas lead again once back in sync.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often the controller checks.
    pub leader_imbalance_check_interval_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            controller: true,
            broker: true,
            voters: Vec::new(),
            rack: None,
            metadata_log_dir: None,
            heartbeat_interval_ms: 2000,
            session_timeout_ms: 9000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1024 * 1024,
            replica_fetch_response_max_bytes: 10 * 1024 * 1024,
            replica_fetch_backoff_ms: 1000,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
        }
    }
}

/// `1@host:9093,2@host:9093` → voters.
pub fn parse_voters(v: &str) -> anyhow::Result<Vec<Voter>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (id, addr) = s
                .split_once('@')
                .ok_or_else(|| anyhow!("controller.quorum.voters: {s:?} is not id@host:port"))?;
            let (host, port) = addr
                .rsplit_once(':')
                .ok_or_else(|| anyhow!("controller.quorum.voters: {s:?} has no port"))?;
            Ok(Voter {
                id: parse_num("controller.quorum.voters", id)?,
                host: host.trim_matches(|c| c == '[' || c == ']').to_string(),
                port: parse_num("controller.quorum.voters", port)?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    File,
    Env,
    Flag,
}

/// Keys Kafka deployments commonly set that Runnel accepts without acting on them (thread
/// counts, socket buffers, the transaction log, JMX, ...). Like unknown keys they are listed
/// once at start-up, never fatal, so a docker-compose file written for Kafka starts.
const ACCEPTED_WITHOUT_EFFECT: &[&str] = &[
    "controller.quorum.bootstrap.servers",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "zookeeper.connect",
    "confluent.support.metrics.enable",
    "jmx.port",
    "heap.opts",
    "log4j.loggers",
    "log4j.root.loglevel",
    "opts",
    "delete.topic.enable",
];

impl Default for Config {
    fn default() -> Self {
        Self {
            listener_settings: ListenerSettings::default(),
            listeners: Listeners {
                client: vec![Listener {
                    name: "PLAINTEXT".to_string(),
                    bind: SocketAddr::from(([127, 0, 0, 1], 9092)),
                    advertised_host: "127.0.0.1".to_string(),
                    advertised_port: 9092,
                }],
                controller: None,
                inter_broker: "PLAINTEXT".to_string(),
            },
            node_id: 1,
            log_dir: PathBuf::from("./runnel-data"),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            log: LogConfig::default(),
            cleaner: CleanerConfig::default(),
            socket_request_max_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            max_connections_per_ip_overrides_text: String::new(),
            max_connection_creation_rate: i32::MAX as u32,
            max_broker_partitions: DEFAULT_MAX_BROKER_PARTITIONS,
            controller_max_records_per_batch: 10_000,
            connections_max_idle_ms: 600_000,
            fetch_session_cache_slots: 1000,
            fetch_session_eviction_ms: 120_000,
            queued_max_request_bytes: Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES),
            metrics_listener: Some(DEFAULT_METRICS_LISTENER.to_string()),
            retention_check_interval_ms: 300_000,
            checkpoint_interval_ms: 60_000,
            cluster_id: "runnel-cluster-0000000001".to_string(),
            group: crate::group::GroupConfig::default(),
            max_open_segment_files: crate::log::manager::DEFAULT_OPEN_FILES,
            cluster: ClusterConfig::default(),
            explicit: BTreeMap::new(),
            ignored: Vec::new(),
        }
    }
}

/// `host:count,ip:count`: each host name resolved to its addresses (as Kafka does at start-up).
fn parse_ip_overrides(v: &str) -> anyhow::Result<BTreeMap<std::net::IpAddr, usize>> {
    use std::net::ToSocketAddrs;
    let mut out = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = || {
            anyhow!(
                "invalid entry {entry:?} in max.connections.per.ip.overrides: expected host:count"
            )
        };
        let (host, count) = entry.rsplit_once(':').ok_or_else(bad)?;
        let count: usize = count.trim().parse().map_err(|_| bad())?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, 0)
            .to_socket_addrs()
            .with_context(|| format!("resolving {host:?} of max.connections.per.ip.overrides"))?;
        for a in addrs {
            out.insert(a.ip(), count);
        }
    }
    Ok(out)
}

pub const DEFAULT_METRICS_LISTENER: &str = "127.0.0.1:9644";

/// `max.broker.partitions` by default: measured to fit the 2-core, default-limits machine the
/// README's figures come from with room to spare (see its Performance section).
pub const DEFAULT_MAX_BROKER_PARTITIONS: u32 = 100_000;
/// Runnel bounds what Kafka leaves unbounded by default (-1): 512 MiB of requests in memory.
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: u64 = 512 * 1024 * 1024;

/// `http://host:port` (the scheme may be left out); empty turns the endpoint off.
fn parse_metrics_listener(v: &str) -> anyhow::Result<Option<String>> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let addr = v.strip_prefix("http://").unwrap_or(v);
    match addr.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() && !addr.contains('/') => {
            Ok(Some(addr.to_string()))
        }
        _ => bail!("invalid value {v:?} for metrics.listeners: expected http://host:port"),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> anyhow::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow!("invalid value {v:?} for {key}"))
}

/// A rate as Kafka prints a double, with Double.MaxValue for "no limit".
fn format_rate(r: f64) -> String {
    if r >= f64::MAX {
        "1.7976931348623157E308".to_string()
    } else {
        r.to_string()
    }
}

fn parse_bool(key: &str, v: &str) -> anyhow::Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => bail!("invalid value {v:?} for {key}: expected true or false"),
    }
}

/// `KAFKA_LOG_DIRS` → `log.dirs`, with the docker images' escapes (`___` → `-`, `__` → `_`).
pub fn env_key_to_property(var: &str) -> Option<String> {
    let rest = var.strip_prefix("KAFKA_")?;
    let lower = rest.to_ascii_lowercase();
    Some(
        lower
            .replace("___", "-")
            .replace("__", "\u{0}")
            .replace('_', ".")
            .replace('\u{0}', "_"),
    )
}

/// Parses `server.properties` text: `key=value` or `key: value` lines, `#`/`!` comments.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let at = l.find(['=', ':'])?;
            Some((l[..at].trim().to_string(), l[at + 1..].trim().to_string()))
        })
        .collect()
}

impl Config {
    /// Applies one `server.properties` key. Returns false for a key Runnel does not know.
    pub fn set(&mut self, key: &str, v: &str) -> anyhow::Result<bool> {
        let l = &mut self.listener_settings;
        match key {
            "listeners" => l.listeners = v.to_string(),
            "advertised.listeners" => l.advertised = Some(v.to_string()),
            "listener.security.protocol.map" => l.protocol_map = Some(v.to_string()),
            "inter.broker.listener.name" => l.inter_broker = Some(v.to_string()),
            "controller.listener.names" => {
                l.controller_names = v
                    .split(',')
                    .map(|n| n.trim().to_ascii_uppercase())
                    .filter(|n| !n.is_empty())
                    .collect()
            }
            "node.id" | "broker.id" => self.node_id = parse_num(key, v)?,
            "log.dirs" | "log.dir" => {
                let first = v.split(',').next().unwrap_or(v).trim();
                self.log_dir = PathBuf::from(first);
            }
            "num.partitions" => self.num_partitions = parse_num(key, v)?,
            "default.replication.factor" => self.default_replication_factor = parse_num(key, v)?,
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(key, v)?,
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_num(key, v)?,
            "max.connections" => self.max_connections = parse_num(key, v)?,
            "max.connections.per.ip" => self.max_connections_per_ip = parse_num(key, v)?,
            "max.connections.per.ip.overrides" => {
                self.max_connections_per_ip_overrides = parse_ip_overrides(v)?;
                self.max_connections_per_ip_overrides_text = v.trim().to_string();
            }
            "max.connection.creation.rate" => {
                self.max_connection_creation_rate = parse_num(key, v)?
            }
            "connections.max.idle.ms" => self.connections_max_idle_ms = parse_num(key, v)?,
            "queued.max.request.bytes" => {
                let n: i64 = parse_num(key, v)?;
                self.queued_max_request_bytes = match n {
                    -1 => None,
                    n if n > 0 => Some(n as u64),
                    _ => bail!("invalid value {v:?} for {key}: -1 (unbounded) or a positive size"),
                }
            }
            "max.broker.partitions" => self.max_broker_partitions = parse_num(key, v)?,
            "max.incremental.fetch.session.cache.slots" => {
                self.fetch_session_cache_slots = parse_num(key, v)?
            }
            "min.incremental.fetch.session.eviction.ms" => {
                self.fetch_session_eviction_ms = parse_num(key, v)?
            }
            "controller.max.records.per.batch" => {
                self.controller_max_records_per_batch = parse_num(key, v)?;
                if self.controller_max_records_per_batch == 0 {
                    bail!("invalid value {v:?} for {key}: at least 1");
                }
            }
            "message.max.records" => {
                self.log.max_batch_records = parse_num(key, v)?;
                if self.log.max_batch_records < 1 {
                    bail!("invalid value {v:?} for {key}: at least 1");
                }
            }
            "message.max.decompressed.bytes" => {
                let max = crate::log::codec::MAX_DECOMPRESSED_BATCH;
                self.log.max_decompressed_bytes = parse_num(key, v)?;
                if !(1..=max).contains(&self.log.max_decompressed_bytes) {
                    bail!("invalid value {v:?} for {key}: 1 to {max}");
                }
            }
            "metrics.listeners" => self.metrics_listener = parse_metrics_listener(v)?,
            "log.retention.check.interval.ms" => {
                self.retention_check_interval_ms = parse_num(key, v)?
            }
            "log.flush.offset.checkpoint.interval.ms" => {
                self.checkpoint_interval_ms = parse_num(key, v)?
            }
            "cluster.id" => self.cluster_id = v.to_string(),
            "process.roles" => {
                let roles: Vec<String> = v
                    .split(',')
                    .map(|r| r.trim().to_ascii_lowercase())
                    .collect();
                if let Some(bad) = roles
                    .iter()
                    .find(|r| !matches!(r.as_str(), "broker" | "controller"))
                {
                    bail!("process.roles: unknown role {bad:?} (broker, controller)");
                }
                self.cluster.broker = roles.iter().any(|r| r == "broker");
                self.cluster.controller = roles.iter().any(|r| r == "controller");
            }
            "controller.quorum.voters" => self.cluster.voters = parse_voters(v)?,
            "broker.rack" => self.cluster.rack = Some(v.to_string()).filter(|r| !r.is_empty()),
            "metadata.log.dir" => self.cluster.metadata_log_dir = Some(PathBuf::from(v)),
            "broker.heartbeat.interval.ms" => {
                self.cluster.heartbeat_interval_ms = parse_num(key, v)?
            }
            "broker.session.timeout.ms" => self.cluster.session_timeout_ms = parse_num(key, v)?,
            "replica.lag.time.max.ms" => self.cluster.replica_lag_time_max_ms = parse_num(key, v)?,
            "replica.fetch.wait.max.ms" => {
                self.cluster.replica_fetch_wait_max_ms = parse_num(key, v)?
            }
            "replica.fetch.max.bytes" => self.cluster.replica_fetch_max_bytes = parse_num(key, v)?,
            "replica.fetch.response.max.bytes" => {
                self.cluster.replica_fetch_response_max_bytes = parse_num(key, v)?
            }
            "replica.fetch.backoff.ms" => {
                self.cluster.replica_fetch_backoff_ms = parse_num(key, v)?
            }
            "auto.leader.rebalance.enable" => {
                self.cluster.auto_leader_rebalance_enable = parse_bool(key, v)?
            }
            "leader.imbalance.check.interval.seconds" => {
                self.cluster.leader_imbalance_check_interval_seconds = parse_num(key, v)?
            }
            "log.retention.hours" => self.log.retention_ms = parse_num::<i64>(key, v)? * HOUR_MS,
            "log.retention.minutes" => self.log.retention_ms = parse_num::<i64>(key, v)? * 60_000,
            "log.roll.hours" => self.log.segment_ms = parse_num::<i64>(key, v)? * HOUR_MS,
            "producer.id.expiration.ms" => self.log.producer_id_expiration_ms = parse_num(key, v)?,
            "group.initial.rebalance.delay.ms" => {
                self.group.initial_rebalance_delay_ms = parse_num(key, v)?
            }
            "group.min.session.timeout.ms" => {
                self.group.min_session_timeout_ms = parse_num(key, v)?
            }
            "group.max.session.timeout.ms" => {
                self.group.max_session_timeout_ms = parse_num(key, v)?
            }
            "group.max.size" => self.group.max_size = parse_num(key, v)?,
            "offsets.retention.minutes" => {
                self.group.offsets_retention_ms = parse_num::<i64>(key, v)? * 60_000
            }
            "offsets.retention.check.interval.ms" => {
                self.group.offsets_retention_check_interval_ms = parse_num(key, v)?
            }
            "offset.metadata.max.bytes" => {
                self.group.offset_metadata_max_bytes = parse_num(key, v)?
            }
            "offsets.topic.num.partitions" => {
                let n: i32 = parse_num(key, v)?;
                if n < 1 {
                    bail!("offsets.topic.num.partitions must be at least 1");
                }
                self.group.offsets_topic_partitions = n;
            }
            "offsets.topic.replication.factor" => {
                let rf: i16 = parse_num(key, v)?;
                if rf < 1 {
                    bail!("offsets.topic.replication.factor must be at least 1");
                }
                self.group.offsets_topic_replication_factor = Some(rf);
            }
            "offsets.topic.segment.bytes" => {
                self.group.offsets_topic_segment_bytes = parse_num(key, v)?
            }
            "log.cleaner.enable" => self.cleaner.enable = parse_bool(key, v)?,
            "log.cleaner.threads" => {
                self.cleaner.threads = parse_num(key, v)?;
                if self.cleaner.threads < 1 {
                    bail!("log.cleaner.threads must be at least 1");
                }
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.cleaner.dedupe_buffer_size = parse_num(key, v)?;
                if self.cleaner.dedupe_buffer_size < 1024 * 1024 {
                    bail!("log.cleaner.dedupe.buffer.size must be at least 1048576");
                }
            }
            "log.cleaner.io.buffer.size" => self.cleaner.io_buffer_size = parse_num(key, v)?,
            "log.cleaner.io.buffer.load.factor" => {
                let f: f64 = parse_num(key, v)?;
                if !(f > 0.0 && f < 1.0) {
                    bail!("log.cleaner.io.buffer.load.factor must be between 0 and 1");
                }
                self.cleaner.io_buffer_load_factor = f;
            }
            "log.cleaner.io.max.bytes.per.second" => {
                let r: f64 = parse_num(key, v)?;
                if r.is_nan() || r <= 0.0 {
                    bail!("log.cleaner.io.max.bytes.per.second must be positive");
                }
                self.cleaner.io_max_bytes_per_second = r;
            }
            "log.cleaner.backoff.ms" => self.cleaner.backoff_ms = parse_num(key, v)?,
            "message.max.bytes" => self
                .log
                .set("max.message.bytes", v)
                .map_err(|e| anyhow!(e))?,
            _ => {
                let topic_key = match key {
                    "log.retention.ms" => "retention.ms",
                    "log.retention.bytes" => "retention.bytes",
                    "log.segment.bytes" => "segment.bytes",
                    "log.roll.ms" => "segment.ms",
                    "log.index.size.max.bytes" => "segment.index.bytes",
                    "log.index.interval.bytes" => "index.interval.bytes",
                    "log.flush.interval.messages" => "flush.messages",
                    "log.flush.interval.ms" => "flush.ms",
                    "log.message.timestamp.type" => "message.timestamp.type",
                    "min.insync.replicas" => "min.insync.replicas",
                    "log.cleanup.policy" => "cleanup.policy",
                    "log.cleaner.delete.retention.ms" => "delete.retention.ms",
                    "log.cleaner.min.cleanable.ratio" => "min.cleanable.dirty.ratio",
                    "log.cleaner.min.compaction.lag.ms" => "min.compaction.lag.ms",
                    "log.cleaner.max.compaction.lag.ms" => "max.compaction.lag.ms",
                    _ => return Ok(ACCEPTED_WITHOUT_EFFECT.contains(&key)),
                };
                self.log
                    .set(topic_key, v)
                    .map_err(|e| anyhow!("{key}: {e}"))?;
            }
        }
        Ok(true)
    }

    fn apply(&mut self, key: &str, v: &str, source: Source) -> anyhow::Result<()> {
        let known = self.set(key, v)?;
        if known {
            self.explicit
                .insert(key.to_string(), (v.to_string(), source));
        }
        if (!known || ACCEPTED_WITHOUT_EFFECT.contains(&key))
            && !self.ignored.iter().any(|k| k == key)
        {
            self.ignored.push(key.to_string());
        }
        Ok(())
    }

    /// The offsets topic's replication factor as configured or defaulted.
    pub fn offsets_topic_replication_factor(&self) -> i16 {
        self.group
            .offsets_topic_replication_factor
            .unwrap_or(if self.cluster.voters.len() > 1 { 3 } else { 1 })
    }

    /// Partitions all fetch sessions may hold between them: ten fetchers (followers, consumer
    /// groups) naming every partition the broker may hold; a session's cached partition takes
    /// about 200 bytes, so 200 MB at the default `max.broker.partitions`.
    pub fn fetch_session_partition_budget(&self) -> usize {
        10 * self.max_broker_partitions as usize
    }

    /// Builds the Config from a properties file (optional), the environment and flag overrides.
    pub fn load(
        defaults: Defaults,
        properties_file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut c = Config::default();
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        env.sort();
        // (variable, key, value) of each variable naming a broker key.
        let env: Vec<(String, String, String)> = env
            .into_iter()
            .filter_map(|(var, v)| {
                let key = match var.as_str() {
                    "CLUSTER_ID" => "cluster.id".to_string(),
                    // They describe the image and the JVM, not the broker.
                    "KAFKA_VERSION" | "KAFKA_HOME" | "KAFKA_OPTS" | "KAFKA_HEAP_OPTS"
                    | "KAFKA_JMX_OPTS" | "KAFKA_LOG4J_OPTS" => return None,
                    _ => env_key_to_property(&var)?,
                };
                Some((var, key, v))
            })
            .collect();
        if defaults == Defaults::KafkaImage {
            c.set("log.dirs", IMAGE_DATA_DIR)?;
            // In a container the loopback default would be unreachable from the host.
            c.set("metrics.listeners", "http://0.0.0.0:9644")?;
            // Kafka's images run their stock single-node properties only when no variable
            // configures the broker.
            if properties_file.is_none() && env.iter().all(|(var, ..)| var == "CLUSTER_ID") {
                for (k, v) in IMAGE_SINGLE_NODE {
                    c.set(k, v)?;
                }
            }
        }
        if let Some(path) = properties_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            for (k, v) in parse_properties(&text) {
                c.apply(&k, &v, Source::File)?;
            }
        }
        for (var, key, v) in env {
            c.apply(&key, &v, Source::Env)
                .with_context(|| format!("from environment variable {var}"))?;
        }
        for (k, v) in flags {
            c.apply(k, v, Source::Flag)?;
        }
        if defaults == Defaults::KafkaImage {
            c.listeners_from_advertised();
        }
        c.check_cluster()?;
        if c.num_partitions < 1 {
            bail!("num.partitions must be at least 1");
        }
        Ok(c)
    }
}

impl Config {
    /// Kafka's images, given advertised listeners but no `listeners`, listen on each advertised
    /// port on every interface (their start script derives one from the other).
    fn listeners_from_advertised(&mut self) {
        let l = &mut self.listener_settings;
        if self.explicit.contains_key("listeners")
            || !self.explicit.contains_key("advertised.listeners")
        {
            return;
        }
        let Some(advertised) = &l.advertised else {
            return;
        };
        l.listeners = advertised
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| match (e.split_once("://"), e.rsplit_once(':')) {
                (Some((name, _)), Some((_, port))) => format!("{name}://0.0.0.0:{port}"),
                _ => e.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
    }

    /// Resolves the controller listener and checks the quorum settings; each failure is one
    /// line naming the key.
    fn check_cluster(&mut self) -> anyhow::Result<()> {
        self.listeners = listeners::resolve(&self.listener_settings)?;
        let c = &self.cluster;
        if c.broker && !c.controller && c.voters.is_empty() {
            bail!("process.roles=broker needs controller.quorum.voters to find the controllers");
        }
        if c.broker && self.listeners.client.is_empty() {
            bail!("listeners has no client listener, which process.roles=broker needs");
        }
        let mut ids: Vec<i32> = c.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("controller.quorum.voters: node id {} appears twice", w[0]);
        }
        if !c.controller && ids.contains(&self.node_id) {
            bail!(
                "node.id {} is among controller.quorum.voters but process.roles does not include controller",
                self.node_id
            );
        }
        if c.controller && !c.voters.is_empty() && !ids.contains(&self.node_id) {
            bail!(
                "node.id {} is not among controller.quorum.voters ({ids:?}) but process.roles includes controller",
                self.node_id
            );
        }
        if c.controller && (c.voters.len() > 1 || !c.broker) && self.listeners.controller.is_none()
        {
            let names = self.listener_settings.controller_names.join(",");
            bail!(
                "listeners has no {names} listener, which controller.quorum.voters needs (controller.listener.names={names})"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("server.properties");
        std::fs::write(&file, "# comment\nnum.partitions=3\nlog.retention.hours=1\nlisteners=PLAINTEXT://0.0.0.0:19092\nprocess.roles=broker,controller\n").expect("write");
        let env = vec![
            ("KAFKA_NUM_PARTITIONS".to_string(), "4".to_string()),
            (
                "KAFKA_ADVERTISED_LISTENERS".to_string(),
                "PLAINTEXT://kafka:9092".to_string(),
            ),
            ("KAFKA_LOG_SEGMENT_BYTES".to_string(), "1048576".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let flags = vec![("num.partitions".to_string(), "5".to_string())];
        let c = Config::load(Defaults::Runnel, Some(&file), env, &flags).expect("config");
        assert_eq!(c.num_partitions, 5);
        assert_eq!(c.log.retention_ms, HOUR_MS);
        assert_eq!(c.log.segment_bytes, 1_048_576);
        let l = &c.listeners.client[0];
        assert_eq!(l.bind, "0.0.0.0:19092".parse().expect("addr"));
        assert_eq!(
            (l.advertised_host.as_str(), l.advertised_port),
            ("kafka", 9092)
        );
    }

    #[test]
    fn keys_without_effect_are_listed_once() {
        let env = vec![
            ("KAFKA_JMX_PORT".to_string(), "9999".to_string()),
            ("KAFKA_SOME_FUTURE_KEY".to_string(), "1".to_string()),
        ];
        let flags = vec![("some.future.key".to_string(), "2".to_string())];
        let c = Config::load(Defaults::Runnel, None, env, &flags).expect("config");
        assert_eq!(c.ignored, ["jmx.port", "some.future.key"]);
    }

    #[test]
    fn image_defaults_apply_only_without_kafka_variables() {
        let c = Config::load(Defaults::KafkaImage, None, Vec::new(), &[]).expect("config");
        assert_eq!(c.log_dir, PathBuf::from(IMAGE_DATA_DIR));
        assert_eq!(c.metrics_listener.as_deref(), Some("0.0.0.0:9644"));
        let l = &c.listeners.client[0];
        assert_eq!(
            (l.advertised_host.as_str(), l.advertised_port),
            ("localhost", 9092)
        );
        assert!(c.listeners.controller.is_some());
        let env = vec![(
            "KAFKA_LISTENERS".to_string(),
            "PLAINTEXT://127.0.0.1:19092".to_string(),
        )];
        let c = Config::load(Defaults::KafkaImage, None, env, &[]).expect("config");
        assert_eq!(c.log_dir, PathBuf::from(IMAGE_DATA_DIR));
        let l = &c.listeners.client[0];
        assert_eq!(
            (l.advertised_host.as_str(), l.advertised_port),
            ("127.0.0.1", 19092)
        );
        assert!(c.listeners.controller.is_none());
    }

    /// A compose file of Confluent's shape sets advertised listeners only.
    #[test]
    fn image_listeners_follow_advertised_ones_when_unset() {
        let env = vec![
            (
                "KAFKA_ADVERTISED_LISTENERS".to_string(),
                "PLAINTEXT://kafka:29092,PLAINTEXT_HOST://localhost:9092".to_string(),
            ),
            (
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP".to_string(),
                "PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT".to_string(),
            ),
        ];
        let c = Config::load(Defaults::KafkaImage, None, env.clone(), &[]).expect("config");
        let binds: Vec<String> = c
            .listeners
            .client
            .iter()
            .map(|l| l.bind.to_string())
            .collect();
        assert_eq!(binds, ["0.0.0.0:29092", "0.0.0.0:9092"]);
        assert_eq!(c.listeners.client[0].advertised_host, "kafka");
        // Outside the image an advertised listener must be one of listeners, as in Kafka.
        assert!(Config::load(Defaults::Runnel, None, env, &[]).is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        let env = vec![("KAFKA_NUM_PARTITIONS".to_string(), "many".to_string())];
        let err = Config::load(Defaults::Runnel, None, env, &[]).expect_err("bad value");
        assert!(format!("{err:#}").contains("KAFKA_NUM_PARTITIONS"));
        assert!(Config::load(
            Defaults::Runnel,
            None,
            Vec::new(),
            &[("log.segment.bytes".into(), "x".into())]
        )
        .is_err());
    }

    #[test]
    fn env_names_map_like_the_docker_images() {
        assert_eq!(
            env_key_to_property("KAFKA_LOG_DIRS").as_deref(),
            Some("log.dirs")
        );
        assert_eq!(
            env_key_to_property("KAFKA_AUTO_CREATE_TOPICS_ENABLE").as_deref(),
            Some("auto.create.topics.enable")
        );
        assert_eq!(
            env_key_to_property("KAFKA_SOME__UNDERSCORE___DASH").as_deref(),
            Some("some_underscore-dash")
        );
    }
}

/// One broker setting as DescribeConfigs reports it.
#[derive(Debug, Clone)]
pub struct BrokerSetting {
    pub name: &'static str,
    pub value: String,
    /// Set in server.properties, the environment or a flag (STATIC_BROKER_CONFIG), rather
    /// than left at its default.
    pub explicit: bool,
    pub kind: crate::log::config::ConfigKind,
    pub doc: &'static str,
}

impl Config {
    /// Every broker setting Runnel honours, with its current value.
    pub fn settings(&self) -> Vec<BrokerSetting> {
        use crate::log::config::ConfigKind::{Boolean, Double, Int, Long, String as Str};
        let g = &self.group;
        let (listeners, advertised) = self.listeners.describe();
        let mut out: Vec<(
            &'static str,
            String,
            crate::log::config::ConfigKind,
            &'static str,
        )> = vec![
            (
                "listeners",
                listeners,
                Str,
                "The addresses the broker listens on, one per listener name.",
            ),
            (
                "advertised.listeners",
                advertised,
                Str,
                "The endpoint of each listener clients are told to connect to.",
            ),
            (
                "inter.broker.listener.name",
                self.listeners.inter_broker.clone(),
                Str,
                "The listener other brokers reach this one on.",
            ),
            (
                "node.id",
                self.node_id.to_string(),
                Int,
                "This broker's id.",
            ),
            (
                "log.dirs",
                self.log_dir.display().to_string(),
                Str,
                "The directory holding the log (the first one is used).",
            ),
            (
                "num.partitions",
                self.num_partitions.to_string(),
                Int,
                "Partitions of auto-created topics and of CreateTopics with -1.",
            ),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
                Int,
                "Replication factor of auto-created topics.",
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
                Boolean,
                "Create a topic when a client asks for its metadata.",
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_max_bytes.to_string(),
                Int,
                "The largest request accepted; larger frames close the connection.",
            ),
            (
                "max.connections",
                self.max_connections.to_string(),
                Int,
                "The most client connections served at once.",
            ),
            (
                "max.connections.per.ip",
                self.max_connections_per_ip.to_string(),
                Int,
                "The most connections from one client address; more are closed at once.",
            ),
            (
                "max.connections.per.ip.overrides",
                self.max_connections_per_ip_overrides_text.clone(),
                Str,
                "Per-address limits (host:count,...) that replace max.connections.per.ip.",
            ),
            (
                "max.connection.creation.rate",
                self.max_connection_creation_rate.to_string(),
                Int,
                "New connections accepted a second on each listener; faster ones wait to be accepted.",
            ),
            (
                "max.broker.partitions",
                self.max_broker_partitions.to_string(),
                Int,
                "Partition replicas one broker may hold; CreateTopics and CreatePartitions beyond it fail whole with POLICY_VIOLATION.",
            ),
            (
                "controller.max.records.per.batch",
                self.controller_max_records_per_batch.to_string(),
                Int,
                "The most partitions one CreateTopics or CreatePartitions may create, and topics one DeleteTopics may delete; beyond it the whole request fails with POLICY_VIOLATION.",
            ),
            (
                "message.max.records",
                self.log.max_batch_records.to_string(),
                Int,
                "The most records one produced batch may declare; a batch with more is refused with MESSAGE_TOO_LARGE.",
            ),
            (
                "message.max.decompressed.bytes",
                self.log.max_decompressed_bytes.to_string(),
                Int,
                "What a produced compressed batch may decompress to; past it (a zip bomb) the batch is refused with MESSAGE_TOO_LARGE, never inflated whole.",
            ),
            (
                "connections.max.idle.ms",
                self.connections_max_idle_ms.to_string(),
                Long,
                "Connections idle, or stalled mid-request or mid-response, are closed after this long.",
            ),
            (
                "max.incremental.fetch.session.cache.slots",
                self.fetch_session_cache_slots.to_string(),
                Int,
                "Fetch sessions (KIP-227) kept at once; a full cache gives up a stale or less valuable session for a new one, or answers without a session.",
            ),
            (
                "min.incremental.fetch.session.eviction.ms",
                self.fetch_session_eviction_ms.to_string(),
                Int,
                "A fetch session unused this long may be evicted; a younger one is not evicted for a bigger one.",
            ),
            (
                "queued.max.request.bytes",
                self.queued_max_request_bytes
                    .map_or_else(|| "-1".to_string(), |n| n.to_string()),
                Long,
                "Request bytes held in memory at once across connections; past it, connections wait before reading their next request. -1: unbounded.",
            ),
            (
                "metrics.listeners",
                self.metrics_listener
                    .as_ref()
                    .map_or_else(String::new, |a| format!("http://{a}")),
                Str,
                "Where /metrics (Prometheus) and /health are served; empty: nowhere.",
            ),
            (
                "log.retention.check.interval.ms",
                self.retention_check_interval_ms.to_string(),
                Long,
                "How often retention runs.",
            ),
            (
                "log.flush.offset.checkpoint.interval.ms",
                self.checkpoint_interval_ms.to_string(),
                Int,
                "How often the recovery point checkpoint is written.",
            ),
            (
                "producer.id.expiration.ms",
                self.log.producer_id_expiration_ms.to_string(),
                Int,
                "Idempotence state of a producer idle this long is dropped.",
            ),
            (
                "log.cleaner.enable",
                self.cleaner.enable.to_string(),
                Boolean,
                "Compact the logs of cleanup.policy=compact topics in the background.",
            ),
            (
                "log.cleaner.threads",
                self.cleaner.threads.to_string(),
                Int,
                "Threads cleaning compacted logs.",
            ),
            (
                "log.cleaner.dedupe.buffer.size",
                self.cleaner.dedupe_buffer_size.to_string(),
                Long,
                "Memory for the cleaner's key → offset maps, shared by its threads; a log with more keys is cleaned in several passes.",
            ),
            (
                "log.cleaner.io.buffer.size",
                self.cleaner.io_buffer_size.to_string(),
                Int,
                "How much a cleaner thread reads and writes at a time.",
            ),
            (
                "log.cleaner.io.buffer.load.factor",
                self.cleaner.io_buffer_load_factor.to_string(),
                Double,
                "How full the cleaner's offset map may get.",
            ),
            (
                "log.cleaner.io.max.bytes.per.second",
                format_rate(self.cleaner.io_max_bytes_per_second),
                Double,
                "The cleaner's disk reads and writes together stay below this rate.",
            ),
            (
                "log.cleaner.backoff.ms",
                self.cleaner.backoff_ms.to_string(),
                Long,
                "How long the cleaner sleeps when no log needs cleaning.",
            ),
            (
                "replica.lag.time.max.ms",
                self.cluster.replica_lag_time_max_ms.to_string(),
                Long,
                "A follower that has not caught up with the leader for this long leaves the ISR.",
            ),
            (
                "auto.leader.rebalance.enable",
                self.cluster.auto_leader_rebalance_enable.to_string(),
                Boolean,
                "Preferred replicas take their leaderships back once they are in sync again.",
            ),
            (
                "leader.imbalance.check.interval.seconds",
                self.cluster.leader_imbalance_check_interval_seconds.to_string(),
                Long,
                "How often the controller gives leaderships back to preferred replicas.",
            ),
            (
                "group.initial.rebalance.delay.ms",
                g.initial_rebalance_delay_ms.to_string(),
                Int,
                "The first join into an empty group waits this long for more members.",
            ),
            (
                "group.min.session.timeout.ms",
                g.min_session_timeout_ms.to_string(),
                Int,
                "The shortest session timeout a member may ask for.",
            ),
            (
                "group.max.session.timeout.ms",
                g.max_session_timeout_ms.to_string(),
                Int,
                "The longest session timeout a member may ask for.",
            ),
            (
                "group.max.size",
                g.max_size.to_string(),
                Int,
                "The most members a group may have.",
            ),
            (
                "offsets.retention.minutes",
                (g.offsets_retention_ms / 60_000).to_string(),
                Int,
                "Committed offsets of a group empty this long are deleted.",
            ),
            (
                "offsets.retention.check.interval.ms",
                g.offsets_retention_check_interval_ms.to_string(),
                Long,
                "How often offsets are checked for expiry.",
            ),
            (
                "offset.metadata.max.bytes",
                g.offset_metadata_max_bytes.to_string(),
                Int,
                "The longest metadata string of a committed offset.",
            ),
            (
                "offsets.topic.num.partitions",
                g.offsets_topic_partitions.to_string(),
                Int,
                "Partitions of __consumer_offsets.",
            ),
            (
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor().to_string(),
                Int,
                "Replicas of each __consumer_offsets partition; FindCoordinator waits until that many brokers are alive.",
            ),
            (
                "offsets.topic.segment.bytes",
                g.offsets_topic_segment_bytes.to_string(),
                Int,
                "Segment size of __consumer_offsets.",
            ),
        ];
        for k in crate::log::config::TOPIC_CONFIGS {
            if let Some(v) = self.log.get(k.name) {
                out.push((k.broker_keys[0], v, k.kind, k.doc));
            }
        }
        out.sort_by_key(|(n, ..)| *n);
        out.into_iter()
            .map(|(name, value, kind, doc)| BrokerSetting {
                name,
                explicit: self.is_explicit(name),
                value,
                kind,
                doc,
            })
            .collect()
    }

    /// Whether `key` (or one of the spellings that set the same value) was given explicitly.
    pub fn is_explicit(&self, key: &str) -> bool {
        let synonyms: &[&str] = match key {
            "node.id" | "broker.id" => &["node.id", "broker.id"],
            "log.dirs" | "log.dir" => &["log.dirs", "log.dir"],
            "advertised.listeners" => &["advertised.listeners", "listeners"],
            _ => crate::log::config::TOPIC_CONFIGS
                .iter()
                .find(|k| k.broker_keys.contains(&key))
                .map_or(&[][..], |k| k.broker_keys),
        };
        self.explicit.contains_key(key) || synonyms.iter().any(|s| self.explicit.contains_key(*s))
    }
}
