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
    // Throttled so each cleaning takes a second or more and the kills land in the middle.
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
    let round = |r: usize| {
        (0..2_000).map(move |k| {
            (
                format!("key-{k:05}"),
                Some(format!("{r}-{}", "v".repeat(200))),
            )
        })
    };
    let filler = || [("filler".to_string(), Some("x".to_string()))];
    for r in 0..5 {
        produce(&broker.addr, topic, round(r));
    }
    let dir = broker.data.join("crashy-0");
    // A cleaning writing (or swapping) its segments leaves `.cleaned` or `.swap` files.
    let cleaning = || {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries.filter_map(|e| e.ok()).any(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.ends_with(".cleaned") || name.ends_with(".swap")
                })
            })
            .unwrap_or(false)
    };
    let mut mid_cleaning = 0;
    for (i, delay_ms) in [100u64, 400, 700].into_iter().enumerate() {
        // New dirt, then (past max.compaction.lag.ms) a roll: a cleaning is due. Wait until it
        // writes, then kill the broker.
        let r = 5 + i;
        produce(&broker.addr, topic, round(r));
        std::thread::sleep(Duration::from_millis(1_100));
        produce(&broker.addr, topic, filler());
        let (writing, _) = common::cluster::eventually(Duration::from_secs(60), cleaning);
        assert!(writing, "the cleaner never started writing");
        std::thread::sleep(Duration::from_millis(delay_ms));
        broker.kill9();
        mid_cleaning += usize::from(cleaning());
        broker.restart();
        let seen = read_all(&broker.addr, topic);
        assert_ordered(&seen);
        let want: HashMap<String, Option<String>> = round(r).chain(filler()).collect();
        assert_eq!(
            latest(&seen),
            want,
            "after a kill -9 {delay_ms} ms into writing"
        );
    }
    assert!(
        mid_cleaning > 0,
        "no kill landed while a cleaning was writing"
    );
    // Every key once, and the filler twice: the newest starts the active segment, which the
    // cleaner never reads, so the one before it has no later version yet as far as it knows.
    let seen = read_until(&broker.addr, topic, Duration::from_secs(120), |s| {
        s.len() == 2_002
    });
    assert_eq!(seen.len(), 2_002);
    assert_eq!(latest(&seen), round(7).chain(filler()).collect());
}

#[test]
fn log_cleaner_enable_false_leaves_compacted_topics_as_written() {
    let broker = BrokerProcess::start(&[
        "--set",
        "log.cleaner.enable=false",
        "--set",
        "log.cleaner.backoff.ms=100",
    ]);
    let topic = "uncleaned";
    create_topic(
        &broker.addr,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("max.compaction.lag.ms", "500"),
        ],
    );
    produce(&broker.addr, topic, rounds(100, 5));
    std::thread::sleep(Duration::from_millis(600));
    produce(
        &broker.addr,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(read_all(&broker.addr, topic).len(), 501);
}

/// Partition 0's leader and ISR as the cluster's metadata has them.
fn leader_and_isr(addr: &str, topic: &str) -> Option<(i32, Vec<i32>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .ok()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5)).ok()?;
    let p = md.topics().first()?.partitions().first()?;
    let mut isr = p.isr().to_vec();
    isr.sort();
    Some((p.leader(), isr))
}

#[test]
fn a_follower_catches_up_from_a_cleaned_leader_and_leads_with_the_latest_values() {
    let mut cluster = common::cluster::Cluster::start_configured(
        vec!["broker,controller"; 3],
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=500",
            "replica.lag.time.max.ms=3000",
            "log.cleaner.backoff.ms=100",
            "leader.imbalance.check.interval.seconds=1",
        ],
    );
    let topic = "replicated-changelog";
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .create()
        .expect("admin");
    // Node 3 is the preferred leader: it leads again once back in sync.
    let assignment: &[&[i32]] = &[&[3, 1, 2]];
    let t = NewTopic::new(topic, 1, TopicReplication::Variable(assignment))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "65536")
        .set("max.compaction.lag.ms", "1000");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.create_topics(&[t], &AdminOptions::new()))
        .expect("create_topics");
    assert!(res[0].is_ok(), "{res:?}");
    // Node 3 misses everything; the next leader cleans while it is away.
    cluster.node(3).kill9();
    let bootstrap = cluster.bootstrap();
    let (moved, _) = common::cluster::eventually(Duration::from_secs(30), || {
        leader_and_isr(&bootstrap, topic).is_some_and(|(l, _)| l == 1 || l == 2)
    });
    assert!(moved, "no leader took over from node 3");
    produce(&bootstrap, topic, rounds(1_000, 30));
    std::thread::sleep(Duration::from_millis(1_100));
    produce(
        &bootstrap,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    let cleaned = read_until(&bootstrap, topic, Duration::from_secs(60), |s| {
        s.len() == 1_001
    });
    assert_eq!(cleaned.len(), 1_001, "the leader cleaned");
    // Back, node 3 fetches the cleaned log (offsets with gaps) and rejoins the ISR.
    cluster.restart(3);
    let (back, _) = common::cluster::eventually(Duration::from_secs(60), || {
        leader_and_isr(&cluster.bootstrap(), topic).is_some_and(|(_, isr)| isr == [1, 2, 3])
    });
    assert!(back, "node 3 never rejoined the ISR");
    let bootstrap = cluster.bootstrap();
    let (leads, _) = common::cluster::eventually(Duration::from_secs(30), || {
        leader_and_isr(&bootstrap, topic).is_some_and(|(l, _)| l == 3)
    });
    assert!(leads, "node 3 did not take its preferred leadership back");
    let seen = read_all(&bootstrap, topic);
    assert_ordered(&seen);
    let want: HashMap<String, Option<String>> = rounds(1_000, 1)
        .map(|(k, _)| (k, Some("29".to_string())))
        .chain([("filler".to_string(), Some("x".to_string()))])
        .collect();
    assert_eq!(latest(&seen), want);
    assert_eq!(seen.len(), 1_001, "node 3 holds the cleaned log it fetched");
}

#[test]
fn deleting_a_topic_mid_cleaning_leaves_the_broker_writable() {
    let broker = BrokerProcess::start(&[
        "--set",
        "log.cleaner.backoff.ms=100",
        "--set",
        "log.cleaner.io.max.bytes.per.second=500000",
    ]);
    let topic = "doomed";
    create_topic(
        &broker.addr,
        topic,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            ("max.compaction.lag.ms", "1000"),
        ],
    );
    produce(&broker.addr, topic, rounds(2_000, 20));
    std::thread::sleep(Duration::from_millis(1_100));
    produce(
        &broker.addr,
        topic,
        [("filler".to_string(), Some("x".to_string()))],
    );
    let dir = broker.data.join("doomed-0");
    let (writing, _) = common::cluster::eventually(Duration::from_secs(60), || {
        std::fs::read_dir(&dir).is_ok_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".cleaned")))
        })
    });
    assert!(writing, "the cleaner never started writing");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let res = rt
        .block_on(admin.delete_topics(&[topic], &AdminOptions::new()))
        .expect("delete_topics");
    assert!(res[0].is_ok(), "{res:?}");
    // The cleaning is abandoned; the log directory stays online for every other topic.
    std::thread::sleep(Duration::from_secs(1));
    create_topic(&broker.addr, "after", &[]);
    produce(&broker.addr, "after", rounds(10, 1));
    assert_eq!(read_all(&broker.addr, "after").len(), 10);
}
