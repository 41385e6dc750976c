//! Log compaction seen through librdkafka (the rdkafka crate) against the real broker: what a
//! consumer reading a compacted topic from the start gets after, and while, the cleaner runs;
//! tombstones and delete.retention.ms; kill -9 while cleaning.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// Counts deliveries that failed, so a test knows every record was acknowledged.
#[derive(Clone, Default)]
struct Acks {
    failed: Arc<AtomicUsize>,
}
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        if r.is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn create_topic(addr: &str, name: &str, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin");
    let mut t = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.create_topics(&[t], &AdminOptions::new()))
        .expect("create_topics");
    assert!(res[0].is_ok(), "create {name}: {:?}", res[0]);
}

/// Writes `(key, value)` pairs (None: a tombstone) with acks=all and waits for every ack.
fn produce(addr: &str, topic: &str, records: impl IntoIterator<Item = (String, Option<String>)>) {
    let acks = Acks::default();
    let p: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "60000")
        .create_with_context(acks.clone())
        .expect("producer");
    let mut sent = 0usize;
    for (k, v) in records {
        let mut record = BaseRecord::to(topic).key(&k);
        if let Some(v) = &v {
            record = record.payload(v);
        }
        let mut record = Some(record);
        for _ in 0..10_000 {
            let Some(r) = record.take() else { break };
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = Some(back);
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        assert!(record.is_none(), "the producer queue never drained");
        sent += 1;
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    assert_eq!(acks.failed.load(Ordering::Relaxed), 0, "of {sent} records");
}

/// (offset, key, value) as a consumer reading from the start sees it.
type Seen = Vec<(i64, String, Option<String>)>;

/// Everything from the start up to the high watermark, read once.
fn read_all(addr: &str, topic: &str) -> Seen {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "compaction-tests-unused")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(20))
        .expect("watermarks");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out
        .last()
        .is_none_or(|r: &(i64, String, Option<String>)| r.0 + 1 < high)
    {
        assert!(Instant::now() < deadline, "did not reach {high}: {out:?}");
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).to_string());
            out.push((m.offset(), text(m.key()).expect("key"), text(m.payload())));
        }
    }
    out
}

fn latest(seen: &Seen) -> HashMap<String, Option<String>> {
    seen.iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

fn assert_ordered(seen: &Seen) {
    for w in seen.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "offsets go back: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
}

/// Polls `read_all` until `done` holds (bounded), returning what it last read.
fn read_until(addr: &str, topic: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = read_all(addr, topic);
        if done(&seen) || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rounds(keys: usize, rounds: usize) -> impl Iterator<Item = (String, Option<String>)> {
    (0..rounds)
        .flat_map(move |r| (0..keys).map(move |k| (format!("key-{k:05}"), Some(format!("{r}")))))
}

#[test]
fn ten_thousand_keys_written_a_hundred_times_read_back_as_their_latest_values() {
    let broker = BrokerProcess::start(&["--set", "log.cleaner.backoff.ms=100"]);
    let topic = "changelog";
    create_topic(
        &broker.addr,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "1048576"),
            ("max.compaction.lag.ms", "2000"),
        ],
    );
    produce(&broker.addr, topic, rounds(10_000, 100));
    // Past max.compaction.lag.ms, the next record rolls the active segment: every round is
    // then cleanable.
    std::thread::sleep(Duration::from_millis(2_100));
    produce(
        &broker.addr,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    // A consumer reading from the start while the cleaner works.
    let addr = broker.addr.clone();
    let during = std::thread::spawn(move || read_all(&addr, topic));
    let seen = read_until(&broker.addr, topic, Duration::from_secs(120), |s| {
        s.len() == 10_001
    });
    assert_eq!(seen.len(), 10_001, "10,000 keys and the filler");
    assert_ordered(&seen);
    let want: HashMap<String, Option<String>> = rounds(10_000, 1)
        .map(|(k, _)| (k, Some("99".to_string())))
        .chain([("filler".to_string(), Some("x".to_string()))])
        .collect();
    assert_eq!(latest(&seen), want);
    let during = during.join().expect("consumer thread");
    assert_ordered(&during);
    assert_eq!(
        latest(&during),
        want,
        "the concurrent reader missed a latest value"
    );
}

#[test]
fn tombstones_are_read_until_delete_retention_ms_then_vanish() {
    let broker = BrokerProcess::start(&["--set", "log.cleaner.backoff.ms=100"]);
    let topic = "deletes";
    create_topic(
        &broker.addr,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("delete.retention.ms", "6000"),
            ("max.compaction.lag.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    produce(&broker.addr, topic, rounds(100, 3));
    produce(
        &broker.addr,
        topic,
        (0..50).map(|k| (format!("key-{k:05}"), None)),
    );
    std::thread::sleep(Duration::from_millis(1_100));
    produce(
        &broker.addr,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    let tombstones = |s: &Seen| s.iter().filter(|r| r.2.is_none()).count();
    let cleaned = read_until(&broker.addr, topic, Duration::from_secs(30), |s| {
        s.len() == 101
    });
    let first_seen = Instant::now();
    assert_eq!(
        (cleaned.len(), tombstones(&cleaned)),
        (101, 50),
        "{cleaned:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        tombstones(&read_all(&broker.addr, topic)),
        50,
        "still within the horizon"
    );
    let gone = read_until(&broker.addr, topic, Duration::from_secs(30), |s| {
        s.len() == 51
    });
    assert!(
        first_seen.elapsed() >= Duration::from_secs(3),
        "gone too early"
    );
    assert_eq!((gone.len(), tombstones(&gone)), (51, 0));
    assert!(gone
        .iter()
        .all(|(_, k, v)| k == "filler" || v.as_deref() == Some("2")));
}

#[test]
fn kill_9_while_cleaning_loses_no_latest_value() {
    // Throttled so each cleaning takes seconds and the kills land in the middle of one.
    let mut broker = BrokerProcess::start(&[
        "--set",
        "log.cleaner.backoff.ms=100",
        "--set",
        "log.cleaner.io.max.bytes.per.second=1000000",
    ]);
    let topic = "crashy";
    create_topic(
        &broker.addr,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "131072"),
            ("max.compaction.lag.ms", "1000"),
        ],
    );
    produce(&broker.addr, topic, rounds(2_000, 50));
    std::thread::sleep(Duration::from_millis(1_100));
    produce(
        &broker.addr,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    let want: HashMap<String, Option<String>> = rounds(2_000, 1)
        .map(|(k, _)| (k, Some("49".to_string())))
        .chain([("filler".to_string(), Some("x".to_string()))])
        .collect();
    let mut mid_cleaning = 0;
    for delay_ms in [700u64, 1_900, 1_300] {
        std::thread::sleep(Duration::from_millis(delay_ms));
        broker.kill9();
        // A cleaning in flight leaves its `.cleaned` (or `.swap`) files behind.
        let leftovers = std::fs::read_dir(broker.data.join("crashy-0"))
            .expect("partition directory")
            .filter_map(|e| e.ok())
            .any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.ends_with(".cleaned") || name.ends_with(".swap")
            });
        mid_cleaning += usize::from(leftovers);
        broker.restart();
        let seen = read_all(&broker.addr, topic);
        assert_ordered(&seen);
        assert_eq!(
            latest(&seen),
            want,
            "after a kill -9 {delay_ms} ms into cleaning"
        );
    }
    assert!(mid_cleaning > 0, "no kill landed while a cleaning was writing");
    let seen = read_until(&broker.addr, topic, Duration::from_secs(120), |s| {
        s.len() == 2_001
    });
    assert_eq!(seen.len(), 2_001);
    assert_eq!(latest(&seen), want);
}
