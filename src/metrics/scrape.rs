//! One scrape of `/metrics`: the request path's counters and the broker's state read now,
//! written under the names Kafka's JMX exporter rules (Strimzi's and Confluent's examples,
//! `lowercaseOutputName`) give Kafka's MBeans, and kafka-exporter's names for offsets and lag.
//! Runnel's own figures carry a `runnel_` prefix.
//!
//! Quantiles cover the last five to six minutes (as Kafka's decaying histograms favour the
//! last five): each scrape keeps a snapshot a minute, and compares with the oldest one kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::histogram::quantile_ms;
use super::{api_name, errors, TopicMetrics};
use crate::broker::Broker;
use crate::group::classic_group::GroupState;

const WINDOW: Duration = Duration::from_secs(300);
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// Kafka's percentiles (50thPercentile ... 999thPercentile) as the exporter labels them.
const QUANTILES: [(f64, &str); 6] = [
    (0.50, "0.50"),
    (0.75, "0.75"),
    (0.95, "0.95"),
    (0.98, "0.98"),
    (0.99, "0.99"),
    (0.999, "0.999"),
];

struct Snapshot {
    at: Instant,
    times: HashMap<i16, Vec<u64>>,
    queue_times: HashMap<i16, Vec<u64>>,
    connections_created: HashMap<String, u64>,
}

pub struct Scraper {
    broker: Weak<Broker>,
    snapshots: Mutex<VecDeque<Snapshot>>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scraper")
    }
}

type Labels = Vec<(&'static str, String)>;

/// Writes families; each row is a label set and a value.
struct Out<'a, 'e> {
    enc: &'a mut DescriptorEncoder<'e>,
}

/// Label values as the text format needs them: backslash, double quote and newline escaped.
/// prometheus-client writes values as given, and group ids and record keys come from clients:
/// unescaped, one could break every scrape of the broker.
fn escaped(labels: Labels) -> Labels {
    labels
        .into_iter()
        .map(|(k, v)| {
            if !v.contains(['\\', '"', '\n']) {
                return (k, v);
            }
            let mut out = String::with_capacity(v.len() + 8);
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            (k, out)
        })
        .collect()
}

impl Out<'_, '_> {
    /// A counter family: `name` without `_total`, which the encoder appends.
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, u64)>,
    ) -> std::fmt::Result {
        let mut m = self
            .enc
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, v) in rows {
            match labels.is_empty() {
                true => m.encode_counter::<NoLabelSet, _, u64>(&v, None)?,
                false => m
                    .encode_family(&escaped(labels))?
                    .encode_counter::<NoLabelSet, _, u64>(&v, None)?,
            }
        }
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) -> std::fmt::Result {
        self.counters(name, help, [(Labels::new(), v)])
    }

    fn gauges<V: Into<f64>>(
        &mut self,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (Labels, V)>,
    ) -> std::fmt::Result {
        let mut m = self
            .enc
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, v) in rows {
            let v: f64 = v.into();
            match labels.is_empty() {
                true => m.encode_gauge(&v)?,
                false => m.encode_family(&escaped(labels))?.encode_gauge(&v)?,
            }
        }
        Ok(())
    }

    fn gauge(&mut self, name: &str, help: &str, v: impl Into<f64>) -> std::fmt::Result {
        self.gauges(name, help, [(Labels::new(), v.into())])
    }
}

fn topic_partition(topic: &str, partition: i32) -> Labels {
    vec![
        ("topic", topic.to_string()),
        ("partition", partition.to_string()),
    ]
}

impl Scraper {
    pub fn new(broker: &Arc<Broker>) -> Self {
        Self {
            broker: Arc::downgrade(broker),
            snapshots: Mutex::new(VecDeque::new()),
        }
    }

    /// The snapshot to measure the window from, after recording `now`'s when one is due.
    fn baseline(&self, now: Snapshot) -> Snapshot {
        let mut snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        let due = snaps
            .back()
            .is_none_or(|s| now.at.duration_since(s.at) >= SNAPSHOT_EVERY);
        let at = now.at;
        if due {
            snaps.push_back(now);
        }
        while snaps.len() >= 2 && at.duration_since(snaps[1].at) >= WINDOW {
            snaps.pop_front();
        }
        let first = &snaps[0];
        Snapshot {
            at: first.at,
            times: first.times.clone(),
            queue_times: first.queue_times.clone(),
            connections_created: first.connections_created.clone(),
        }
    }
}

/// Lets the first scrape's window start at process start rather than be empty.
fn empty_snapshot(at: Instant) -> Snapshot {
    Snapshot {
        at,
        times: HashMap::new(),
        queue_times: HashMap::new(),
        connections_created: HashMap::new(),
    }
}

impl Collector for Scraper {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(broker) = self.broker.upgrade() else {
            return Ok(());
        };
        let mut out = Out { enc: &mut enc };
        self.requests(&broker, &mut out)?;
        topics(&broker, &mut out)?;
        logs(&broker, &mut out)?;
        replicas(&broker, &mut out)?;
        fetch_sessions(&broker, &mut out)?;
        groups(&broker, &mut out)?;
        hot(&broker, &mut out)?;
        process(&mut out)
    }
}

impl Scraper {
    fn requests(&self, broker: &Broker, out: &mut Out) -> std::fmt::Result {
        let m = &broker.metrics;
        let apis = m.apis();
        let listeners = m.listeners_snapshot();
        let now = Instant::now();
        {
            let mut snaps = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
            if snaps.is_empty() {
                snaps.push_back(empty_snapshot(broker.started));
            }
        }
        let base = self.baseline(Snapshot {
            at: now,
            times: apis.iter().map(|a| (a.key, a.total_time.clone())).collect(),
            queue_times: apis.iter().map(|a| (a.key, a.queue_time.clone())).collect(),
            connections_created: listeners
                .iter()
                .map(|(n, l)| (n.clone(), l.created.load(Relaxed)))
                .collect(),
        });
        out.counters(
            "kafka_network_requestmetrics_requests",
            "Requests answered, by API and version (RequestsPerSec).",
            apis.iter().flat_map(|a| {
                a.by_version.iter().map(|(v, n)| {
                    (
                        vec![("request", api_name(a.key)), ("version", v.to_string())],
                        *n,
                    )
                })
            }),
        )?;
        out.counters(
            "kafka_network_requestmetrics_errors",
            "Error codes in responses, by API (ErrorsPerSec; NONE counts successes).",
            apis.iter().flat_map(|a| {
                a.errors.iter().map(|(code, n)| {
                    (
                        vec![("request", api_name(a.key)), ("error", errors::name(*code))],
                        *n,
                    )
                })
            }),
        )?;
        let empty = Vec::new();
        let quantiles = |queue: bool| -> Vec<(Labels, f64)> {
            let mut rows = Vec::new();
            for a in &apis {
                let (from, to) = match queue {
                    false => (base.times.get(&a.key), &a.total_time),
                    true => (base.queue_times.get(&a.key), &a.queue_time),
                };
                let from = from.unwrap_or(&empty);
                for (q, label) in QUANTILES {
                    let labels = vec![
                        ("request", api_name(a.key)),
                        ("quantile", label.to_string()),
                    ];
                    rows.push((labels, quantile_ms(from, to, q)));
                }
            }
            rows
        };
        out.gauges(
            "kafka_network_requestmetrics_totaltimems",
            "Request time in ms from the frame read to the response written, over the last five minutes (TotalTimeMs).",
            quantiles(false),
        )?;
        out.gauges(
            "kafka_network_requestmetrics_requestqueuetimems",
            "Time in ms a request waited behind earlier ones of its connection, over the last five minutes (RequestQueueTimeMs).",
            quantiles(true),
        )?;
        out.gauges(
            "kafka_server_socket_server_metrics_connection_count",
            "Open client connections, by listener.",
            listeners.iter().map(|(name, l)| {
                (
                    vec![("listener", name.clone())],
                    l.connections.load(Relaxed) as f64,
                )
            }),
        )?;
        out.counters(
            "kafka_server_socket_server_metrics_connection_creation",
            "Connections accepted, by listener.",
            listeners
                .iter()
                .map(|(name, l)| (vec![("listener", name.clone())], l.created.load(Relaxed))),
        )?;
        let secs = now.duration_since(base.at).as_secs_f64().max(1.0);
        out.gauges(
            "kafka_server_socket_server_metrics_connection_creation_rate",
            "Connections accepted per second over the last five minutes, by listener.",
            listeners.iter().map(|(name, l)| {
                let before = base.connections_created.get(name).copied().unwrap_or(0);
                let n = l.created.load(Relaxed).saturating_sub(before);
                (vec![("listener", name.clone())], n as f64 / secs)
            }),
        )
    }
}

/// BrokerTopicMetrics: the total row has no labels, each topic's row a `topic` label.
fn topics(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let m = &broker.metrics;
    let image = broker.metadata.image();
    m.retain_topics(|t| image.topic(t).is_some());
    let per_topic = m.topics_snapshot();
    let all = m.all_topics();
    type Field = fn(&TopicMetrics) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, &str, Field); 8] = [
        ("messagesin", "Records appended by producers.", |t| {
            &t.messages_in
        }),
        ("bytesin", "Record bytes appended by producers.", |t| {
            &t.bytes_in
        }),
        ("bytesout", "Record bytes sent to consumers.", |t| {
            &t.bytes_out
        }),
        (
            "bytesrejected",
            "Record bytes of failed produce requests.",
            |t| &t.bytes_rejected,
        ),
        (
            "totalproducerequests",
            "Produce requests, per partition.",
            |t| &t.produce_requests,
        ),
        (
            "totalfetchrequests",
            "Consumer fetch requests, per topic.",
            |t| &t.fetch_requests,
        ),
        (
            "failedproducerequests",
            "Failed produce requests, per partition.",
            |t| &t.failed_produce_requests,
        ),
        (
            "failedfetchrequests",
            "Failed consumer fetches, per partition.",
            |t| &t.failed_fetch_requests,
        ),
    ];
    for (name, help, field) in families {
        let rows = std::iter::once((Labels::new(), field(all).load(Relaxed))).chain(
            per_topic
                .iter()
                .map(|(t, tm)| (vec![("topic", t.clone())], field(tm).load(Relaxed))),
        );
        out.counters(
            &format!("kafka_server_brokertopicmetrics_{name}"),
            help,
            rows,
        )?;
    }
    out.counter(
        "kafka_server_brokertopicmetrics_replicationbytesin",
        "Record bytes fetched from leaders as a follower.",
        m.replication_bytes_in.load(Relaxed),
    )?;
    out.counter(
        "kafka_server_brokertopicmetrics_replicationbytesout",
        "Record bytes sent to followers.",
        m.replication_bytes_out.load(Relaxed),
    )
}

/// Kafka's Log MBeans, for every partition stored here.
fn logs(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let mut logs = broker.logs.all();
    logs.sort_by(|a, b| (a.topic(), a.partition()).cmp(&(b.topic(), b.partition())));
    let rows = |f: &dyn Fn(&crate::log::PartitionLog) -> f64| -> Vec<(Labels, f64)> {
        logs.iter()
            .map(|l| (topic_partition(l.topic(), l.partition()), f(l)))
            .collect()
    };
    out.gauges(
        "kafka_log_log_size",
        "Bytes of the partition's segments.",
        rows(&|l| l.size() as f64),
    )?;
    out.gauges(
        "kafka_log_log_logstartoffset",
        "The partition's log start offset.",
        rows(&|l| l.log_start_offset() as f64),
    )?;
    out.gauges(
        "kafka_log_log_logendoffset",
        "The partition's log end offset.",
        rows(&|l| l.log_end_offset() as f64),
    )?;
    out.gauges(
        "kafka_log_log_numlogsegments",
        "The partition's segments.",
        rows(&|l| l.segment_count() as f64),
    )
}

/// The FetchSessionCache MBean.
fn fetch_sessions(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let cache = &broker.fetch_sessions;
    out.gauge(
        "kafka_server_fetchsessioncache_numincrementalfetchsessions",
        "Incremental fetch sessions (KIP-227) cached.",
        cache.len() as f64,
    )?;
    out.gauge(
        "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached",
        "Partitions held by the cached fetch sessions.",
        cache.partitions_cached() as f64,
    )?;
    out.counter(
        "kafka_server_fetchsessioncache_incrementalfetchsessionevictions",
        "Fetch sessions evicted for new ones.",
        cache.evictions(),
    )
}

/// ReplicaManager and KafkaController MBeans, and kafka-exporter's topic figures.
fn replicas(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let image = broker.metadata.image();
    let me = broker.config.node_id;
    let stored = broker.logs.all().len();
    let mut led = Vec::new();
    let (mut under, mut under_min, mut at_min, mut offline) = (0u32, 0u32, 0u32, 0u32);
    let mut global_partitions = 0u32;
    for t in image.topics.values() {
        for (p, reg) in t.partitions.iter().enumerate() {
            global_partitions += 1;
            if reg.leader == crate::metadata::PartitionRegistration::NO_LEADER {
                offline += 1;
            }
            if reg.leader != me {
                continue;
            }
            led.push((t.name.clone(), p as i32));
            let (isr, min) = (reg.isr.len(), t.config.min_insync_replicas.max(1) as usize);
            under += u32::from(isr < reg.replicas.len());
            under_min += u32::from(isr < min);
            at_min += u32::from(isr == min);
        }
    }
    let failed = if broker.logs.is_failed() { stored } else { 0 };
    out.gauge(
        "kafka_server_replicamanager_partitioncount",
        "Partitions stored on this broker.",
        stored as f64,
    )?;
    out.gauge(
        "kafka_server_replicamanager_leadercount",
        "Partitions this broker leads.",
        led.len() as f64,
    )?;
    out.gauge(
        "kafka_server_replicamanager_underreplicatedpartitions",
        "Led partitions whose ISR is smaller than their replica set.",
        under,
    )?;
    out.gauge(
        "kafka_server_replicamanager_underminisrpartitioncount",
        "Led partitions whose ISR is below min.insync.replicas.",
        under_min,
    )?;
    out.gauge(
        "kafka_server_replicamanager_atminisrpartitioncount",
        "Led partitions whose ISR is exactly min.insync.replicas.",
        at_min,
    )?;
    out.gauge(
        "kafka_server_replicamanager_offlinereplicacount",
        "Replicas stored here in a failed log directory.",
        failed as f64,
    )?;
    let m = &broker.metrics;
    out.counter(
        "kafka_server_replicamanager_isrshrinks",
        "ISR shrinks asked for by this broker as leader.",
        m.isr_shrinks.load(Relaxed),
    )?;
    out.counter(
        "kafka_server_replicamanager_isrexpands",
        "ISR expansions asked for by this broker as leader.",
        m.isr_expands.load(Relaxed),
    )?;
    // As Kafka: the controller's figures come from the active controller only, so sum() over
    // the cluster is right.
    let active = broker.cluster.is_active_controller();
    let only_active = |v: u32| if active { v } else { 0 };
    out.gauge(
        "kafka_controller_kafkacontroller_activecontrollercount",
        "1 on the active controller.",
        u32::from(active),
    )?;
    out.gauge(
        "kafka_controller_kafkacontroller_offlinepartitionscount",
        "Partitions without a leader.",
        only_active(offline),
    )?;
    out.gauge(
        "kafka_controller_kafkacontroller_globaltopiccount",
        "Topics in the cluster.",
        only_active(image.topics.len() as u32),
    )?;
    out.gauge(
        "kafka_controller_kafkacontroller_globalpartitioncount",
        "Partitions in the cluster.",
        only_active(global_partitions),
    )?;
    out.gauge(
        "kafka_controller_kafkacontroller_activebrokercount",
        "Live brokers.",
        only_active(image.live_brokers().count() as u32),
    )?;
    out.gauge(
        "kafka_brokers",
        "Live brokers in the cluster (kafka-exporter).",
        image.live_brokers().count() as u32,
    )?;
    out.gauges(
        "kafka_topic_partitions",
        "Partitions of each topic (kafka-exporter).",
        image
            .topics
            .values()
            .map(|t| (vec![("topic", t.name.clone())], t.partition_count())),
    )?;
    let led_logs: Vec<_> = led
        .iter()
        .filter_map(|(t, p)| broker.logs.get(t, *p))
        .collect();
    out.gauges(
        "kafka_topic_partition_current_offset",
        "The high watermark of each partition led here (kafka-exporter).",
        led_logs.iter().map(|l| {
            (
                topic_partition(l.topic(), l.partition()),
                l.high_watermark() as f64,
            )
        }),
    )?;
    out.gauges(
        "kafka_topic_partition_oldest_offset",
        "The log start offset of each partition led here (kafka-exporter).",
        led_logs.iter().map(|l| {
            (
                topic_partition(l.topic(), l.partition()),
                l.log_start_offset() as f64,
            )
        }),
    )
}

/// GroupMetadataManager MBeans, and kafka-exporter's offsets and lag for the groups this
/// broker coordinates (lag from the high watermark of partitions stored here).
fn groups(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let stats = broker.groups.stats();
    let count = |s: Option<GroupState>| {
        stats
            .iter()
            .filter(|g| s.is_none_or(|s| g.state == s))
            .count() as u32
    };
    let prefix = "kafka_coordinator_group_groupmetadatamanager_";
    out.gauge(
        &format!("{prefix}numgroups"),
        "Groups coordinated here.",
        count(None),
    )?;
    for (name, state) in [
        ("numgroupsstable", GroupState::Stable),
        (
            "numgroupspreparingrebalance",
            GroupState::PreparingRebalance,
        ),
        (
            "numgroupscompletingrebalance",
            GroupState::CompletingRebalance,
        ),
        ("numgroupsempty", GroupState::Empty),
        ("numgroupsdead", GroupState::Dead),
    ] {
        out.gauge(
            &format!("{prefix}{name}"),
            &format!("Groups in state {}.", state.name()),
            count(Some(state)),
        )?;
    }
    let offsets: usize = stats.iter().map(|g| g.offsets.len()).sum();
    out.gauge(
        &format!("{prefix}numoffsets"),
        "Committed offsets held.",
        offsets as f64,
    )?;
    let group = |g: &crate::group::coordinator::GroupStats| vec![("consumergroup", g.id.clone())];
    out.gauges(
        "runnel_group_members",
        "Members of each group.",
        stats.iter().map(|g| (group(g), g.members as u32)),
    )?;
    out.gauges(
        "runnel_group_generation",
        "Each group's generation (rebalances completed).",
        stats.iter().map(|g| (group(g), g.generation)),
    )?;
    out.gauges(
        "runnel_group_state",
        "1 for each group's current state.",
        stats.iter().map(|g| {
            (
                vec![
                    ("consumergroup", g.id.clone()),
                    ("state", g.state.name().to_string()),
                ],
                1u32,
            )
        }),
    )?;
    let mut current = Vec::new();
    let mut lag = Vec::new();
    let mut lag_sum: Vec<(Labels, f64)> = Vec::new();
    for g in &stats {
        let mut sums: std::collections::BTreeMap<&str, f64> = Default::default();
        for (t, p, committed) in &g.offsets {
            let labels = vec![
                ("consumergroup", g.id.clone()),
                ("topic", t.clone()),
                ("partition", p.to_string()),
            ];
            current.push((labels.clone(), *committed as f64));
            let Some(log) = broker.logs.get(t, *p) else {
                continue;
            };
            let l = (log.high_watermark() - committed).max(0) as f64;
            lag.push((labels, l));
            *sums.entry(t).or_default() += l;
        }
        lag_sum.extend(sums.into_iter().map(|(t, l)| {
            (
                vec![("consumergroup", g.id.clone()), ("topic", t.to_string())],
                l,
            )
        }));
    }
    out.gauges(
        "kafka_consumergroup_current_offset",
        "Committed offset of each group and partition (kafka-exporter).",
        current,
    )?;
    out.gauges(
        "kafka_consumergroup_lag",
        "High watermark minus committed offset (kafka-exporter).",
        lag,
    )?;
    out.gauges(
        "kafka_consumergroup_lag_sum",
        "Lag summed over a topic's partitions (kafka-exporter).",
        lag_sum,
    )
}

/// Hot partitions and keys, bounded: the `HOT_PARTITIONS` hottest partitions, `HOT_KEYS` keys
/// each.
const HOT_PARTITIONS: usize = 20;
const HOT_KEYS: usize = 5;
const WINDOW_LABELS: [&str; 3] = ["1m", "5m", "15m"];

fn hot(broker: &Broker, out: &mut Out) -> std::fmt::Result {
    let report = super::top::report(broker, HOT_PARTITIONS, HOT_KEYS);
    let per_window = |f: fn(&super::top::PartitionHeat) -> [f64; 3]| {
        report
            .partitions
            .iter()
            .flat_map(move |p| {
                let rates = f(p);
                WINDOW_LABELS.iter().zip(rates).map(move |(w, r)| {
                    let mut labels = topic_partition(&p.topic, p.partition);
                    labels.push(("window", w.to_string()));
                    (labels, r)
                })
            })
            .collect::<Vec<_>>()
    };
    out.gauges(
        "runnel_hot_partition_records_per_second",
        "Records/s of the hottest partitions led here.",
        per_window(|p| p.records_per_s),
    )?;
    out.gauges(
        "runnel_hot_partition_bytes_per_second",
        "Bytes/s of the hottest partitions led here.",
        per_window(|p| p.bytes_per_s),
    )?;
    out.gauges(
        "runnel_hot_partition_skew",
        "1-minute records/s of a hot partition over its topic's mean per partition led here.",
        report
            .partitions
            .iter()
            .map(|p| (topic_partition(&p.topic, p.partition), p.skew)),
    )?;
    let keys = |f: fn(&super::top::KeyHeat) -> f64| {
        report
            .partitions
            .iter()
            .flat_map(move |p| {
                p.top_keys.iter().enumerate().map(move |(rank, k)| {
                    let mut labels = topic_partition(&p.topic, p.partition);
                    labels.push(("rank", (rank + 1).to_string()));
                    labels.push(("key", k.key.clone()));
                    (labels, f(k))
                })
            })
            .collect::<Vec<_>>()
    };
    out.gauges("runnel_hot_key_records_per_second", "Records/s of the heaviest keys of the hottest partitions (sampled, about the last minute).", keys(|k| k.records_per_s))?;
    out.gauges(
        "runnel_hot_key_share",
        "A heavy key's share of its partition's records.",
        keys(|k| k.share),
    )
}

/// The standard process metrics of Prometheus clients, from /proc.
fn process(out: &mut Out) -> std::fmt::Result {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime (fields 14 and 15, indexes 11 and 12 here) in clock ticks (100 Hz on Linux).
    let cpu = (field(11) + field(12)) / 100.0;
    let rss_pages = field(21);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    out.gauge(
        "process_resident_memory_bytes",
        "Resident memory.",
        rss_pages * 4096.0,
    )?;
    out.gauge("process_open_fds", "Open file descriptors.", fds as f64)?;
    out.counters(
        "process_cpu_seconds",
        "CPU time used (user and system).",
        [(Labels::new(), cpu as u64)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Hostile;

    impl Collector for Hostile {
        fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
            let mut out = Out { enc: &mut enc };
            let group = "g\"}\nfake_series 1\n\\".to_string();
            out.gauges(
                "runnel_group_members",
                "m",
                [(vec![("consumergroup", group)], 1u32)],
            )
        }
    }

    #[test]
    fn client_strings_in_labels_cannot_break_the_exposition() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Hostile));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [r#"runnel_group_members{consumergroup="g\"}\nfake_series 1\n\\"} 1.0"#],
            "{text}"
        );
    }
}
