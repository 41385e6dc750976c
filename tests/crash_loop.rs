//! A crash loop: a broker killed with SIGKILL at random moments, 100 times, restarted on the
//! same data each time, under an idempotent acks=all librdkafka producer and a consumer
//! group committing as it goes. A checker then compares what was acknowledged with what can
//! be read back: nothing acknowledged lost, nothing stored twice or out of order, and the
//! group's committed offsets never went backwards.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TOPIC: &str = "crash-loop";
const PARTITIONS: i32 = 3;
const CYCLES: usize = 100;
const GROUP: &str = "crash-loop-group";

/// What the broker acknowledged: (partition, value) of each record, and failures.
#[derive(Default)]
struct Acks {
    acked: Mutex<Vec<(i32, u64)>>,
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let value = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse().ok())
                    .expect("our own payload");
                self.acked
                    .lock()
                    .expect("acks")
                    .push((m.partition(), value));
            }
            Err((e, _)) => self.failed.lock().expect("failed").push(e.to_string()),
        }
    }
}

/// Reconnect quickly: the broker is back within a second of each kill.
fn client_config(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "300")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "300")
        .set("socket.timeout.ms", "10000");
    c
}

/// A small generator (xorshift) so a failing run's kill moments can be repeated by seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn produce(addr: String, stop: Arc<AtomicBool>) -> (ThreadedProducer<Acks>, u64) {
    let producer: ThreadedProducer<Acks> = client_config(&addr)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "600000")
        .create_with_context(Acks::default())
        .expect("producer");
    let mut next = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let payload = next.to_string();
        let partition = (next % PARTITIONS as u64) as i32;
        let record: BaseRecord<(), String> =
            BaseRecord::to(TOPIC).partition(partition).payload(&payload);
        match producer.send(record) {
            Ok(()) => next += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
            Err((e, _)) => panic!("send: {e}"),
        }
        thread::sleep(Duration::from_millis(1));
    }
    (producer, next)
}

/// Consumes as a group member, committing every 100 ms; checks each time that the
/// committed offsets are at least what earlier successful commits stored.
fn consume(addr: String, stop: Arc<AtomicBool>) -> (u64, BTreeMap<i32, i64>) {
    let consumer: BaseConsumer = client_config(&addr)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let mut consumed = 0u64;
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
            consumed += 1;
        }
        if last_commit.elapsed() < Duration::from_millis(100) {
            continue;
        }
        last_commit = Instant::now();
        let Ok(position) = consumer.position() else {
            continue;
        };
        if position.count() == 0 {
            continue;
        }
        if consumer.commit(&position, CommitMode::Sync).is_ok() {
            for e in position.elements() {
                if let Offset::Offset(o) = e.offset() {
                    let c = committed.entry(e.partition()).or_insert(o);
                    *c = (*c).max(o);
                }
            }
        }
        if let Ok(now) = consumer.committed(Duration::from_secs(2)) {
            for e in now.elements() {
                let (Offset::Offset(o), Some(before)) = (e.offset(), committed.get(&e.partition()))
                else {
                    continue;
                };
                assert!(
                    o >= *before,
                    "partition {}: committed offset went back from {before} to {o}",
                    e.partition()
                );
            }
        }
    }
    (consumed, committed)
}

/// Every record of every partition, from the start.
fn read_back(addr: &str) -> BTreeMap<i32, Vec<u64>> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "crash-loop-checker")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut out = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(TOPIC, p, Duration::from_secs(30))
            .expect("watermarks");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
        consumer.assign(&tpl).expect("assign");
        let mut values = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 0;
        while next < high && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                next = m.offset() + 1;
                let value = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse().ok())
                    .expect("our own payload");
                values.push(value);
            }
        }
        assert_eq!(next, high, "partition {p} read to its end");
        out.insert(p, values);
    }
    out
}

#[test]
fn a_hundred_kill_9s_lose_nothing_acknowledged_and_store_nothing_twice() {
    let mut broker = BrokerProcess::start(&[
        "--set",
        &format!("num.partitions={PARTITIONS}"),
        "--set",
        "group.initial.rebalance.delay.ms=0",
        "--set",
        "group.min.session.timeout.ms=1000",
    ]);
    let addr = broker.addr.clone();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (addr, stop) = (addr.clone(), stop.clone());
        thread::spawn(move || produce(addr, stop))
    };
    let consumer = {
        let (addr, stop) = (addr.clone(), stop.clone());
        thread::spawn(move || consume(addr, stop))
    };
    let started = Instant::now();
    for _ in 0..CYCLES {
        // Kill at any moment: mid-append, mid-commit, mid-recovery of the last restart.
        thread::sleep(Duration::from_millis(20 + rng.below(600)));
        broker.restart();
    }
    let cycled = started.elapsed();
    // Let the clients catch up with the last restart before they stop.
    thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (producer, sent) = producer.join().expect("producer thread");
    assert!(
        producer.flush(Duration::from_secs(120)).is_ok(),
        "every record resolved"
    );
    let fatal = producer.client().fatal_error();
    assert!(fatal.is_none(), "the idempotent producer failed: {fatal:?}");
    let (consumed, committed) = consumer.join().expect("consumer thread");
    let acked = producer.context().acked.lock().expect("acks").clone();
    let failed = producer.context().failed.lock().expect("failed").clone();

    let stored = read_back(&addr);
    let mut seen = HashSet::new();
    for (p, values) in &stored {
        for v in values {
            assert!(seen.insert(*v), "value {v} stored twice");
        }
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {p} out of order"
        );
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(p, v)| stored.get(p).is_none_or(|vs| vs.binary_search(v).is_err()))
        .collect();
    let final_committed: BTreeMap<i32, i64> = {
        let c: BaseConsumer = client_config(&addr)
            .set("group.id", GROUP)
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(TOPIC, p);
        }
        c.committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed")
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    };
    println!(
        "{CYCLES} kill -9 cycles in {:.0} s: {sent} sent, {} acknowledged, {} failed, {} stored, \
         {} lost, 0 duplicates; {consumed} consumed, committed {committed:?}, now {final_committed:?}",
        cycled.as_secs_f64(),
        acked.len(),
        failed.len(),
        seen.len(),
        lost.len(),
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    assert!(acked.len() as u64 == sent, "every record acknowledged");
    assert!(
        consumed > 0 && !committed.is_empty(),
        "the group made progress"
    );
    for (p, o) in &committed {
        assert!(
            final_committed.get(p).is_some_and(|now| now >= o),
            "partition {p}: committed {o} went back to {:?}",
            final_committed.get(p)
        );
    }
}
