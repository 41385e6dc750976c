//! `/metrics` and `/health` of the real broker after known traffic from librdkafka (the rdkafka
//! crate): message, byte and request counts, error codes, log offsets, consumer lag; and a
//! Grafana dashboard's queries (tests/dashboards, written from the JMX exporter's names) each
//! matching a series.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const VALUE_LEN: usize = 100;

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, body.to_string())
}

/// Every series of a scrape: name → [(labels, value)].
type Series = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

fn scrape(addr: &str) -> Series {
    let (status, body) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let mut out = Series::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value.parse().expect("numeric value");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').expect("label");
                (k.to_string(), v.trim_matches('"').to_string())
            })
            .collect();
        out.entry(name.to_string())
            .or_default()
            .push((labels, value));
    }
    out
}

/// The sum of `name`'s series whose labels include `labels` ("" matches an absent label).
fn sum(s: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.get(name)
        .into_iter()
        .flatten()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map_or("", String::as_str) == *v)
        })
        .map(|(_, v)| v)
        .sum()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin")
}

fn produce(addr: &str, topic: &str, n: usize, from: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let value = vec![b'v'; VALUE_LEN];
    for i in from..from + n {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Reads `n` records as group `group` and commits what it read.
fn consume_and_commit(addr: &str, topic: &str, group: &str, n: usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < n && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            m.expect("message");
            seen += 1;
        }
    }
    assert_eq!(seen, n, "records consumed");
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
}

#[test]
fn metrics_after_known_traffic() {
    let broker = BrokerProcess::start(&["--set", "metrics.listeners=http://127.0.0.1:0"]);
    let metrics = broker
        .metrics
        .clone()
        .expect("metrics address in the listening line");
    let addr = &broker.addr;

    let (status, body) = http_get(&metrics, "/health");
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    assert_eq!(http_get(&metrics, "/nope").0, 404);

    let a = admin(addr);
    let opts = AdminOptions::new();
    let topic = NewTopic::new("met", 3, TopicReplication::Fixed(1));
    let created = block_on(a.create_topics(&[topic], &opts)).expect("create");
    assert!(created[0].is_ok(), "{created:?}");
    // Two requests that fail with known codes.
    let again = NewTopic::new("met", 3, TopicReplication::Fixed(1));
    let _ = block_on(a.create_topics(&[again], &opts)).expect("create again");
    let _ = block_on(a.delete_topics(&["no-such-topic"], &opts)).expect("delete");

    produce(addr, "met", 300, 0);
    consume_and_commit(addr, "met", "met-group", 300);
    produce(addr, "met", 50, 300);

    let s = scrape(&metrics);
    let topic = [("topic", "met")];
    assert_eq!(
        sum(
            &s,
            "kafka_server_brokertopicmetrics_messagesin_total",
            &topic
        ),
        350.0
    );
    assert_eq!(
        sum(
            &s,
            "kafka_server_brokertopicmetrics_messagesin_total",
            &[("topic", "")]
        ),
        350.0
    );
    let bytes_in = sum(&s, "kafka_server_brokertopicmetrics_bytesin_total", &topic);
    assert!(
        (350.0 * VALUE_LEN as f64..700.0 * VALUE_LEN as f64).contains(&bytes_in),
        "bytes in {bytes_in}"
    );
    let bytes_out = sum(&s, "kafka_server_brokertopicmetrics_bytesout_total", &topic);
    assert!(
        bytes_out >= 300.0 * VALUE_LEN as f64,
        "bytes out {bytes_out}"
    );
    assert_eq!(
        sum(
            &s,
            "kafka_server_brokertopicmetrics_failedproducerequests_total",
            &topic
        ),
        0.0
    );

    for api in [
        "Produce",
        "Fetch",
        "FetchConsumer",
        "Metadata",
        "CreateTopics",
        "OffsetCommit",
    ] {
        let n = sum(
            &s,
            "kafka_network_requestmetrics_requests_total",
            &[("request", api)],
        );
        assert!(n >= 1.0, "{api} requests: {n}");
    }
    let errors = |request, error| {
        sum(
            &s,
            "kafka_network_requestmetrics_errors_total",
            &[("request", request), ("error", error)],
        )
    };
    assert_eq!(errors("CreateTopics", "TOPIC_ALREADY_EXISTS"), 1.0);
    assert_eq!(errors("DeleteTopics", "UNKNOWN_TOPIC_OR_PARTITION"), 1.0);
    assert!(errors("Produce", "NONE") >= 1.0);
    let p99 = sum(
        &s,
        "kafka_network_requestmetrics_totaltimems",
        &[("request", "Produce"), ("quantile", "0.99")],
    );
    assert!(p99 > 0.0, "produce p99 {p99}");
    let queued = |q| {
        s.get("kafka_network_requestmetrics_requestqueuetimems")
            .into_iter()
            .flatten()
            .any(|(l, _)| {
                l.get("request").map(String::as_str) == Some("Produce")
                    && l.get("quantile").map(String::as_str) == Some(q)
            })
    };
    assert!(
        queued("0.99") && queued("0.50"),
        "queue time quantiles of Produce"
    );

    assert_eq!(sum(&s, "kafka_log_log_logendoffset", &topic), 350.0);
    assert_eq!(sum(&s, "kafka_log_log_logstartoffset", &topic), 0.0);
    assert_eq!(sum(&s, "kafka_log_log_numlogsegments", &topic), 3.0);
    assert!(sum(&s, "kafka_log_log_size", &topic) >= bytes_in);
    assert_eq!(
        sum(&s, "kafka_topic_partition_current_offset", &topic),
        350.0
    );
    assert_eq!(sum(&s, "kafka_topic_partitions", &topic), 3.0);

    let group = [("consumergroup", "met-group"), ("topic", "met")];
    assert_eq!(sum(&s, "kafka_consumergroup_current_offset", &group), 300.0);
    assert_eq!(sum(&s, "kafka_consumergroup_lag", &group), 50.0);
    assert_eq!(sum(&s, "kafka_consumergroup_lag_sum", &group), 50.0);
    assert!(
        sum(
            &s,
            "kafka_coordinator_group_groupmetadatamanager_numgroups",
            &[]
        ) >= 1.0
    );

    assert!(sum(&s, "kafka_server_replicamanager_partitioncount", &[]) >= 3.0);
    assert!(sum(&s, "kafka_server_replicamanager_leadercount", &[]) >= 3.0);
    assert_eq!(
        sum(
            &s,
            "kafka_server_replicamanager_underreplicatedpartitions",
            &[]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &s,
            "kafka_controller_kafkacontroller_activecontrollercount",
            &[]
        ),
        1.0
    );
    let listener = [("listener", "PLAINTEXT")];
    assert!(
        sum(
            &s,
            "kafka_server_socket_server_metrics_connection_creation_total",
            &listener
        ) >= 3.0
    );
    assert!(sum(&s, "process_resident_memory_bytes", &[]) > 0.0);
}

/// A label matcher: label, negated (`!=`), value.
type Matcher = (String, bool, String);

/// The metric selectors of a PromQL expression: names with their equality matchers.
fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = (b[i].is_ascii_lowercase() || b[i] == b'_')
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
        if !starts {
            i += 1;
            continue;
        }
        let end = (i..b.len())
            .find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_'))
            .unwrap_or(b.len());
        let name = &expr[i..end];
        i = end;
        let metric = ["kafka_", "process_", "runnel_"]
            .iter()
            .any(|p| name.starts_with(p));
        if !metric {
            continue;
        }
        let mut matchers = Vec::new();
        if b.get(i) == Some(&b'{') {
            let close = expr[i..].find('}').expect("closing brace") + i;
            for m in expr[i + 1..close].split(',').filter(|m| !m.is_empty()) {
                let (k, negate, v) = match m.split_once("!=") {
                    Some((k, v)) => (k, true, v),
                    None => {
                        let (k, v) = m.split_once('=').expect("matcher");
                        (k, false, v)
                    }
                };
                matchers.push((
                    k.trim().to_string(),
                    negate,
                    v.trim().trim_matches('"').to_string(),
                ));
            }
            i = close + 1;
        }
        out.push((name.to_string(), matchers));
    }
    out
}

#[test]
fn dashboard_queries_each_match_a_series() {
    let broker = BrokerProcess::start(&["--set", "metrics.listeners=http://127.0.0.1:0"]);
    let metrics = broker.metrics.clone().expect("metrics address");
    produce(&broker.addr, "dash", 20, 0);
    consume_and_commit(&broker.addr, "dash", "dash-group", 20);
    let s = scrape(&metrics);

    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/dashboards/kafka-overview.json"
    ))
    .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let found = selectors(expr);
            assert!(!found.is_empty(), "no metric in {expr}");
            for (name, matchers) in found {
                let series = s.get(&name).map(Vec::as_slice).unwrap_or_default();
                let hit = series.iter().any(|(labels, _)| {
                    matchers.iter().all(|(k, negate, v)| {
                        let actual = labels.get(k).map_or("", String::as_str);
                        (actual == v) != *negate
                    })
                });
                assert!(
                    hit,
                    "panel {:?}: {name} {matchers:?} matches no series",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 30, "only {checked} selectors checked");
}

#[test]
fn metrics_listener_can_be_turned_off_and_must_bind_when_set() {
    let off = BrokerProcess::start(&["--set", "metrics.listeners="]);
    assert_eq!(off.metrics, None);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .args([
            "--set",
            &format!("metrics.listeners=http://127.0.0.1:{port}"),
        ])
        .output()
        .expect("run runnel");
    assert!(
        !out.status.success(),
        "started although its metrics port was taken"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("metrics.listeners"), "{stderr}");
}

/// Writes `n` records of `key` to `partition` of `topic`.
fn produce_keyed(addr: &str, topic: &str, partition: i32, keys: &[(String, usize)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let value = vec![b'v'; VALUE_LEN];
    for (key, n) in keys {
        for _ in 0..*n {
            let mut record = BaseRecord::to(topic)
                .key(key)
                .payload(&value)
                .partition(partition);
            loop {
                match p.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        p.poll(Duration::from_millis(10));
                    }
                }
            }
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

fn runnel_top(metrics: &str, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["top", "--metrics", metrics])
        .args(extra)
        .output()
        .expect("runnel top");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn a_skewed_key_tops_runnel_top() {
    let broker = BrokerProcess::start(&["--set", "metrics.listeners=http://127.0.0.1:0"]);
    let metrics = broker.metrics.clone().expect("metrics address");
    let a = admin(&broker.addr);
    let topic = NewTopic::new("skewed", 2, TopicReplication::Fixed(1));
    let created = block_on(a.create_topics(&[topic], &AdminOptions::new())).expect("create");
    assert!(created[0].is_ok(), "{created:?}");
    // 90% of partition 0's records carry one key; partition 1 gets far fewer records.
    let mut keys = vec![("hot".to_string(), 2700)];
    keys.extend((0..300).map(|i| (format!("cold-{i}"), 1)));
    produce_keyed(&broker.addr, "skewed", 0, &keys);
    produce_keyed(&broker.addr, "skewed", 1, &[("p1".to_string(), 300)]);

    // Rates appear at the first tick (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let report = loop {
        let text = runnel_top(&metrics, &["--json"]);
        let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let ready = report["partitions"]
            .as_array()
            .is_some_and(|p| p.len() == 2);
        if ready || Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let partitions = report["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 2, "{report}");
    let hottest = &partitions[0];
    assert_eq!(
        (hottest["topic"].as_str(), hottest["partition"].as_i64()),
        (Some("skewed"), Some(0))
    );
    let top = &hottest["top_keys"][0];
    assert_eq!(top["key"], "hot", "{report}");
    let share = top["share"].as_f64().expect("share");
    assert!((0.85..=0.95).contains(&share), "share {share}");
    let skew = hottest["skew"].as_f64().expect("skew");
    assert!(skew > 1.5, "skew {skew}");
    assert!(hottest["records_per_s"][0].as_f64().expect("rate") > 0.0);

    let table = runnel_top(&metrics, &[]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("skewed") && l.contains("hot (90%)")),
        "{table}"
    );
    let s = scrape(&metrics);
    let hot_key = [
        ("topic", "skewed"),
        ("partition", "0"),
        ("rank", "1"),
        ("key", "hot"),
    ];
    assert!(sum(&s, "runnel_hot_key_records_per_second", &hot_key) > 0.0);
    assert!(
        sum(
            &s,
            "runnel_hot_partition_records_per_second",
            &[("topic", "skewed"), ("partition", "0"), ("window", "1m")]
        ) > 0.0
    );
}

#[test]
fn replica_metrics_follow_a_follower_down_and_back() {
    let mut cluster = common::cluster::Cluster::start_configured(
        vec!["broker,controller"; 3],
        &["replica.lag.time.max.ms=3000"],
    );
    let bootstrap = cluster.bootstrap();
    let topic = NewTopic::new("rep", 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let created =
        block_on(admin(&bootstrap).create_topics(&[topic], &AdminOptions::new())).expect("create");
    assert!(created[0].is_ok(), "{created:?}");
    produce(&bootstrap, "rep", 200, 0);

    let scrapes: Vec<(i32, Series)> = cluster
        .nodes
        .iter()
        .map(|n| (n.id, scrape(&n.metrics_addr())))
        .collect();
    let total = |name: &str| scrapes.iter().map(|(_, s)| sum(s, name, &[])).sum::<f64>();
    assert_eq!(
        total("kafka_controller_kafkacontroller_activecontrollercount"),
        1.0
    );
    assert_eq!(
        total("kafka_controller_kafkacontroller_offlinepartitionscount"),
        0.0
    );
    let rep = [("topic", "rep")];
    let leader = scrapes
        .iter()
        .find(|(_, s)| sum(s, "kafka_topic_partition_current_offset", &rep) == 200.0)
        .map(|(id, _)| *id)
        .expect("a leader reporting the partition");
    let leader_addr = cluster.node(leader).metrics_addr();
    let (follower, witness) = {
        let others: Vec<i32> = (1..=3).filter(|id| *id != leader).collect();
        (others[0], others[1])
    };
    for (id, s) in &scrapes {
        assert_eq!(
            sum(s, "kafka_log_log_logendoffset", &rep),
            200.0,
            "node {id}"
        );
    }
    // Each follower fetches from the leader in a fetch session of its own (KIP-227).
    let sessions = "kafka_server_fetchsessioncache_numincrementalfetchsessions";
    let leader_scrape = &scrapes
        .iter()
        .find(|(id, _)| *id == leader)
        .expect("leader")
        .1;
    assert_eq!(sum(leader_scrape, sessions, &[]), 2.0);
    assert_eq!(total(sessions), 2.0);
    assert_eq!(
        sum(
            leader_scrape,
            "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached",
            &[]
        ),
        2.0
    );

    cluster.node(follower).kill9();
    let shrunk = common::cluster::eventually(Duration::from_secs(30), || {
        let s = scrape(&leader_addr);
        sum(
            &s,
            "kafka_server_replicamanager_underreplicatedpartitions",
            &[],
        ) == 1.0
            && sum(&s, "kafka_server_replicamanager_isrshrinks_total", &[]) >= 1.0
    });
    assert!(
        shrunk.0,
        "the leader never reported the partition under-replicated"
    );
    let s = scrape(&leader_addr);
    assert_eq!(
        sum(
            &s,
            "kafka_server_replicamanager_atminisrpartitioncount",
            &[]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &s,
            "kafka_server_replicamanager_underminisrpartitioncount",
            &[]
        ),
        0.0
    );

    cluster.restart(follower);
    let expanded = common::cluster::eventually(Duration::from_secs(30), || {
        let s = scrape(&leader_addr);
        sum(
            &s,
            "kafka_server_replicamanager_underreplicatedpartitions",
            &[],
        ) == 0.0
            && sum(&s, "kafka_server_replicamanager_isrexpands_total", &[]) >= 1.0
    });
    assert!(
        expanded.0,
        "the follower never rejoined the ISR in the leader's metrics"
    );
    let s = scrape(&leader_addr);
    assert!(
        sum(
            &s,
            "kafka_server_brokertopicmetrics_replicationbytesout_total",
            &[]
        ) >= 200.0 * VALUE_LEN as f64
    );
    let w = scrape(&cluster.node(witness).metrics_addr());
    assert!(
        sum(
            &w,
            "kafka_server_brokertopicmetrics_replicationbytesin_total",
            &[]
        ) >= 200.0 * VALUE_LEN as f64
    );
}
