//! Real librdkafka (through the rdkafka crate) against the real broker binary.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(20);

fn producer(addr: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("message.timeout.ms", "20000")
        .set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

fn consumer(addr: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "runnel-tests-unused")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer")
}

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin")
}

async fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(addr)
        .create_topics(&[t], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(res[0].is_ok(), "create {name}: {:?}", res[0]);
}

/// Reads every partition of `topic` from the start until `expected` records were seen.
fn consume_all(
    addr: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let c = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < expected && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            out.push(m.expect("message").detach());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_every_compression_and_acks_level() {
    let broker = BrokerProcess::start(&[]);
    let topic = "mixed";
    create_topic(&broker.addr, topic, 3, &[]).await;
    let mut sent: HashMap<i32, Vec<String>> = HashMap::new();
    let mut total = 0;
    for compression in ["none", "gzip", "snappy", "lz4", "zstd"] {
        for acks in ["0", "1", "all"] {
            let p = producer(
                &broker.addr,
                &[("compression.type", compression), ("acks", acks)],
            );
            for i in 0..30 {
                let value = format!("{compression}-{acks}-{i}");
                let key = format!("key-{}", i % 7);
                let headers = OwnedHeaders::new().insert(Header {
                    key: "h",
                    value: Some(value.as_bytes()),
                });
                let rec = FutureRecord::to(topic)
                    .key(&key)
                    .payload(&value)
                    .headers(headers)
                    .timestamp(1_700_000_000_000 + i);
                let partition = p.send(rec, TIMEOUT).await.expect("delivered").partition;
                if acks != "0" {
                    sent.entry(partition).or_default().push(value);
                }
                total += 1;
            }
            // Keyless records spread over partitions too.
            p.send(FutureRecord::<(), _>::to(topic).payload("keyless"), TIMEOUT)
                .await
                .expect("keyless");
            total += 1;
        }
    }
    let got = consume_all(&broker.addr, topic, 3, total);
    assert_eq!(
        got.len(),
        total,
        "every record, including acks=0 ones, is stored once"
    );
    for (partition, values) in sent {
        let seen: Vec<String> = got
            .iter()
            .filter(|m| m.partition() == partition && m.payload() != Some(b"keyless".as_slice()))
            .filter_map(|m| m.payload().map(|v| String::from_utf8_lossy(v).to_string()))
            .filter(|v| values.contains(v))
            .collect();
        assert_eq!(seen, values, "partition {partition} keeps produce order");
    }
    let with_header = got
        .iter()
        .find(|m| m.payload() == Some(b"zstd-all-3".as_slice()))
        .expect("record");
    let h = with_header.headers().expect("headers").get(0);
    assert_eq!((h.key, h.value), ("h", Some(b"zstd-all-3".as_slice())));
    assert_eq!(
        with_header.timestamp(),
        Timestamp::CreateTime(1_700_000_000_003)
    );
    let mut offsets: Vec<i64> = got
        .iter()
        .filter(|m| m.partition() == 0)
        .map(|m| m.offset())
        .collect();
    let n = offsets.len() as i64;
    offsets.sort_unstable();
    assert_eq!(
        offsets,
        (0..n).collect::<Vec<_>>(),
        "offsets are contiguous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_and_watermarks() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker.addr, "times", 1, &[]).await;
    let p = producer(&broker.addr, &[("acks", "all"), ("linger.ms", "0")]);
    for i in 0..100i64 {
        p.send(
            FutureRecord::to("times")
                .key("k")
                .payload("v")
                .timestamp(1_000_000 + i * 10),
            TIMEOUT,
        )
        .await
        .expect("send");
    }
    let c = consumer(&broker.addr);
    assert_eq!(
        c.fetch_watermarks("times", 0, TIMEOUT).expect("watermarks"),
        (0, 100)
    );
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(1_000_455))
        .expect("tpl");
    let found = c
        .offsets_for_times(tpl, TIMEOUT)
        .expect("offsets_for_times");
    assert_eq!(
        found.find_partition("times", 0).expect("p").offset(),
        Offset::Offset(46)
    );
    let mut later = TopicPartitionList::new();
    later
        .add_partition_offset("times", 0, Offset::Offset(9_999_999_999))
        .expect("tpl");
    let none = c
        .offsets_for_times(later, TIMEOUT)
        .expect("offsets_for_times");
    assert_eq!(
        none.find_partition("times", 0).expect("p").offset(),
        Offset::End
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_and_log_append_time() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker.addr, "strict", 1, &[("min.insync.replicas", "2")]).await;
    create_topic(
        &broker.addr,
        "stamped",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let p = producer(
        &broker.addr,
        &[
            ("acks", "all"),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
        ],
    );
    let err = p
        .send(FutureRecord::to("strict").key("k").payload("v"), TIMEOUT)
        .await
        .expect_err("must fail");
    assert!(
        matches!(
            err.0,
            KafkaError::MessageProduction(RDKafkaErrorCode::NotEnoughReplicas)
        ),
        "{err:?}"
    );
    let p1 = producer(&broker.addr, &[("acks", "1")]);
    p1.send(FutureRecord::to("strict").key("k").payload("v"), TIMEOUT)
        .await
        .expect("acks=1 is fine");
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    p1.send(
        FutureRecord::to("stamped")
            .key("k")
            .payload("v")
            .timestamp(42),
        TIMEOUT,
    )
    .await
    .expect("send");
    let got = consume_all(&broker.addr, "stamped", 1, 1);
    match got[0].timestamp() {
        Timestamp::LogAppendTime(t) => assert!(t >= before - 1000, "broker time {t}"),
        other => panic!("expected LogAppendTime, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_kill_9() {
    let mut broker = BrokerProcess::start(&[]);
    create_topic(&broker.addr, "durable", 2, &[]).await;
    let p = producer(&broker.addr, &[("acks", "all")]);
    let mut acked = 0;
    for i in 0..500 {
        p.send(
            FutureRecord::to("durable")
                .key(&format!("{i}"))
                .payload("x"),
            TIMEOUT,
        )
        .await
        .expect("acked");
        acked += 1;
    }
    drop(p);
    broker.kill9();
    broker.restart();
    let got = consume_all(&broker.addr, "durable", 2, acked);
    assert_eq!(got.len(), acked);
    // And the log takes new writes after recovery.
    let p = producer(&broker.addr, &[("acks", "all")]);
    p.send(
        FutureRecord::to("durable").key("after").payload("y"),
        TIMEOUT,
    )
    .await
    .expect("after restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_as_soon_as_data_arrives() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker.addr, "wait", 1, &[]).await;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "unused")
        .set("fetch.wait.max.ms", "5000")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("wait", 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let _ = c.poll(Duration::from_millis(500));
    let p = producer(&broker.addr, &[("linger.ms", "0")]);
    let sent_at = std::time::Instant::now();
    p.send(FutureRecord::to("wait").key("k").payload("now"), TIMEOUT)
        .await
        .expect("send");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut got = None;
    while got.is_none() && std::time::Instant::now() < deadline {
        got = c
            .poll(Duration::from_millis(100))
            .map(|m| m.expect("msg").detach());
    }
    assert!(got.is_some());
    // Far less than fetch.wait.max.ms: the waiting fetch was woken by the append.
    assert!(
        sent_at.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        sent_at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_delete_and_errors() {
    let broker = BrokerProcess::start(&[]);
    let a = admin(&broker.addr);
    let opts = AdminOptions::new();
    let res = a
        .create_topics(
            &[NewTopic::new("adm", 4, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert!(res[0].is_ok());
    let again = a
        .create_topics(
            &[NewTopic::new("adm", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        again[0].as_ref().expect_err("exists").1,
        RDKafkaErrorCode::TopicAlreadyExists
    );
    let rf = a
        .create_topics(
            &[NewTopic::new("rf3", 1, TopicReplication::Fixed(3))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        rf[0].as_ref().expect_err("rf").1,
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    let bad = a
        .create_topics(
            &[NewTopic::new("bad name!", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        bad[0].as_ref().expect_err("name").1,
        RDKafkaErrorCode::InvalidTopic
    );
    let cfg = a
        .create_topics(
            &[NewTopic::new("cfg", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon")],
            &opts,
        )
        .await
        .expect("create");
    assert_eq!(
        cfg[0].as_ref().expect_err("config").1,
        RDKafkaErrorCode::InvalidConfig
    );
    let md = consumer(&broker.addr)
        .fetch_metadata(Some("adm"), TIMEOUT)
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 4);
    let p = producer(&broker.addr, &[("acks", "all")]);
    p.send(
        FutureRecord::to("adm").key("k").payload("old").partition(0),
        TIMEOUT,
    )
    .await
    .expect("send");
    let del = a.delete_topics(&["adm"], &opts).await.expect("delete");
    assert!(del[0].is_ok());
    let missing = a.delete_topics(&["adm"], &opts).await.expect("delete");
    assert_eq!(
        missing[0].as_ref().expect_err("gone").1,
        RDKafkaErrorCode::UnknownTopicOrPartition
    );
    // Re-created under the same name, it is a new, empty topic.
    let res = a
        .create_topics(
            &[NewTopic::new("adm", 1, TopicReplication::Fixed(1))],
            &opts,
        )
        .await
        .expect("create");
    assert!(res[0].is_ok());
    assert_eq!(
        consumer(&broker.addr)
            .fetch_watermarks("adm", 0, TIMEOUT)
            .expect("watermarks"),
        (0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_data_survive_a_clean_restart() {
    let mut broker = BrokerProcess::start(&[]);
    create_topic(&broker.addr, "kept", 2, &[("retention.ms", "86400000")]).await;
    let p = producer(&broker.addr, &[("acks", "all")]);
    for i in 0..50 {
        p.send(
            FutureRecord::to("kept").key(&format!("{i}")).payload("x"),
            TIMEOUT,
        )
        .await
        .expect("send");
    }
    drop(p);
    broker.terminate();
    assert!(broker.data.join(".kafka_cleanshutdown").exists());
    broker.restart();
    let md = consumer(&broker.addr)
        .fetch_metadata(Some("kept"), TIMEOUT)
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 2);
    assert_eq!(consume_all(&broker.addr, "kept", 2, 50).len(), 50);
}

/// Two listeners configured by KAFKA_* variables as a compose file sets them: each is served,
/// Metadata names the broker by the endpoint of the listener the client arrived on, librdkafka
/// produces through one and consumes through the other, and `runnel health` finds the broker
/// from the same variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_is_served_and_advertises_its_own_endpoint() {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let (internal, external) = (free(), free());
    let env = [
        (
            "KAFKA_LISTENERS",
            format!("INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}"),
        ),
        (
            "KAFKA_ADVERTISED_LISTENERS",
            format!("INTERNAL://127.0.0.1:{internal},EXTERNAL://localhost:{external}"),
        ),
        (
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT".to_string(),
        ),
        ("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL".to_string()),
        ("KAFKA_NUM_PARTITIONS", "2".to_string()),
    ];
    let broker = BrokerProcess::start_env(&env);
    assert_eq!(broker.addr, format!("127.0.0.1:{internal}"));
    for (port, host) in [(internal, "127.0.0.1"), (external, "localhost")] {
        let c = consumer(&format!("127.0.0.1:{port}"));
        let md = c.fetch_metadata(None, TIMEOUT).expect("metadata");
        let b = &md.brokers()[0];
        assert_eq!((b.host(), b.port()), (host, i32::from(port)), "via {port}");
    }
    let p = producer(&format!("localhost:{external}"), &[]);
    for i in 0..10 {
        p.send(
            FutureRecord::<(), _>::to("dual").payload(&format!("v{i}")),
            TIMEOUT,
        )
        .await
        .expect("produce through the external listener");
    }
    let values = consume_all(&broker.addr, "dual", 2, 10);
    assert_eq!(values.len(), 10);

    let health = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
            .arg("health")
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("runnel health")
            .status
            .success()
    };
    assert!(health(&[]), "health finds the broker from KAFKA_LISTENERS");
    let closed = format!("127.0.0.1:{}", free());
    assert!(!health(&["-b", &closed]), "nothing listens there");
}
