//! Replication on three real `runnel serve` processes, driven by librdkafka (rdkafka): an
//! idempotent acks=all producer keeps writing while brokers are killed (-9) and restarted, and
//! a checker reads everything back: every acknowledged record is there exactly once, in
//! produce order per partition. Also: min.insync.replicas refuses acks=all writes the ISR
//! cannot hold, and a partition whose every in-sync replica is down is offline until one
//! returns, never served from a stale replica.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{eventually, Cluster};
use common::proxy::Proxy;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Short enough that a killed broker is fenced (and leaves every ISR) within seconds.
const SETTINGS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=500",
    "replica.lag.time.max.ms=4000",
];

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

async fn create(bootstrap: &str, topic: NewTopic<'_>) {
    let name = topic.name.to_string();
    let res = admin(bootstrap)
        .create_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .expect("create_topics");
    assert!(res[0].is_ok(), "create {name}: {:?}", res[0]);
}

fn producer(bootstrap: &str, acks: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if acks == "all" { "true" } else { "false" },
        )
        .set("linger.ms", "2")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer")
}

/// partition → (offset, value) of every record, read from the beginning to each partition's
/// high watermark (waits up to 60 s for every partition to be readable).
fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> BTreeMap<i32, Vec<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-checker")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut ends = BTreeMap::new();
    for p in 0..partitions {
        let (ok, _) = eventually(Duration::from_secs(60), || {
            match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
                Ok((_, high)) => {
                    ends.insert(p, high);
                    true
                }
                Err(_) => false,
            }
        });
        assert!(ok, "partition {p} has no readable high watermark");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    let done = |out: &BTreeMap<i32, Vec<(i64, String)>>| {
        ends.iter().all(|(p, end)| {
            *end == 0
                || out
                    .get(p)
                    .and_then(|v| v.last())
                    .is_some_and(|(o, _)| o + 1 >= *end)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(&out) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v = m.payload_view::<str>().and_then(Result::ok).unwrap_or("");
            out.entry(m.partition())
                .or_default()
                .push((m.offset(), v.to_string()));
        }
    }
    assert!(done(&out), "could not read up to {ends:?}");
    out
}

/// Checks what was read against what was acknowledged: every acknowledged record at its
/// offset, no value twice, values in produce order within each partition.
fn check(read: &BTreeMap<i32, Vec<(i64, String)>>, acked: &[(i32, i64, u64)]) {
    let mut at: HashMap<(i32, i64), &str> = HashMap::new();
    let mut seen = HashSet::new();
    for (p, records) in read {
        let mut last: Option<u64> = None;
        for (offset, v) in records {
            assert!(seen.insert(v.clone()), "value {v} read twice");
            let n: u64 = v.parse().expect("numeric value");
            assert!(
                last.is_none_or(|l| l < n),
                "partition {p}: {n} at offset {offset} after {last:?}"
            );
            last = Some(n);
            at.insert((*p, *offset), v);
        }
    }
    for (p, offset, n) in acked {
        let v = n.to_string();
        // librdkafka acknowledges a record without its offset (-1001) when a later batch of
        // its idempotent sequence succeeded after the record's own answer was lost.
        let found = match *offset {
            o if o >= 0 => at.get(&(*p, o)).copied() == Some(v.as_str()),
            _ => read.get(p).is_some_and(|r| r.iter().any(|(_, x)| *x == v)),
        };
        assert!(
            found,
            "acknowledged record {n} (partition {p} offset {offset}) lost"
        );
    }
}

/// A seeded xorshift, so a failing storm can be replayed with RUNNEL_STORM_SEED.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_loses_nothing_through_a_kill_storm() {
    let rounds: usize = std::env::var("RUNNEL_STORM_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("RUNNEL_STORM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    eprintln!("kill storm: {rounds} rounds, RUNNEL_STORM_SEED={seed}");
    // The automatic leader rebalance runs every 2 s: more leader moves during the storm, and
    // every partition led by its preferred replica once it is over.
    let settings = [SETTINGS, &["leader.imbalance.check.interval.seconds=2"]].concat();
    let mut cluster = Cluster::start_configured(vec!["broker,controller"; 3], &settings);
    let bootstrap = cluster.bootstrap();
    const PARTITIONS: i32 = 6;
    create(
        &bootstrap,
        NewTopic::new("storm", PARTITIONS, TopicReplication::Fixed(3))
            .set("min.insync.replicas", "2"),
    )
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
        tokio::spawn(async move {
            let producer = producer(&bootstrap, "all");
            let mut pending = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let v = n.to_string();
                let p = (n % PARTITIONS as u64) as i32;
                let record = FutureRecord::<str, str>::to("storm")
                    .partition(p)
                    .payload(&v);
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push((n, delivery));
                        n += 1;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {}
                    Err((e, _)) => panic!("enqueue: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut acked = Vec::new();
            let mut failed = 0usize;
            for (n, delivery) in pending {
                match delivery.await {
                    Ok(Ok(d)) => acked.push((d.partition, d.offset, n)),
                    _ => failed += 1,
                }
            }
            (acked, failed)
        })
    };

    let group = GroupReader::start(&bootstrap, "storm");

    let mut rng = Rng(seed);
    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(1000 + rng.next(2000))).await;
        let victim = 1 + rng.next(3) as i32;
        // One round in three is a controlled shutdown (SIGTERM) instead of a crash.
        if rng.next(3) == 0 {
            eprintln!("round {round}: SIGTERM node {victim}");
            tokio::task::block_in_place(|| cluster.node(victim).terminate());
        } else {
            eprintln!("round {round}: kill -9 node {victim}");
            cluster.node(victim).kill9();
        }
        tokio::time::sleep(Duration::from_millis(500 + rng.next(3000))).await;
        tokio::task::block_in_place(|| cluster.restart(victim));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.await.expect("writer");
    eprintln!("{} acknowledged, {failed} failed", acked.len());
    assert!(acked.len() > 1000, "too few writes acknowledged");

    let read = tokio::task::block_in_place(|| read_all(&bootstrap, "storm", PARTITIONS));
    check(&read, &acked);
    let last = tokio::task::block_in_place(|| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = partitions(&bootstrap, "storm");
            let balanced = !now.is_empty()
                && now
                    .iter()
                    .all(|(leader, replicas, _)| replicas.first() == Some(leader));
            if balanced || Instant::now() > deadline {
                return (balanced, now);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    assert!(
        last.0,
        "leaders did not return to the preferred replicas: {:?}",
        last.1
    );

    let wanted: HashSet<String> = acked.iter().map(|(_, _, n)| n.to_string()).collect();
    let (seen, backwards) = tokio::task::block_in_place(|| group.finish(&wanted));
    let missing = wanted.difference(&seen).count();
    assert_eq!(
        missing, 0,
        "the group never delivered {missing} acknowledged records"
    );
    assert!(
        backwards.is_empty(),
        "committed offsets went back: {backwards:?}"
    );
}

/// A consumer group member reading and auto-committing throughout, and a watcher that polls
/// the group's committed offsets and notes any that move backwards.
struct GroupReader {
    stop: Arc<AtomicBool>,
    member: std::thread::JoinHandle<HashSet<String>>,
    watcher: std::thread::JoinHandle<Vec<String>>,
    seen_target: Arc<std::sync::Mutex<Option<HashSet<String>>>>,
}

impl GroupReader {
    fn start(bootstrap: &str, topic: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen_target: Arc<std::sync::Mutex<Option<HashSet<String>>>> = Default::default();
        let config = |group: &str| {
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "true")
                .set("auto.commit.interval.ms", "300")
                .set("fetch.wait.max.ms", "100");
            c
        };
        let member = {
            let (stop, target) = (stop.clone(), seen_target.clone());
            let consumer: BaseConsumer = config("storm-group").create().expect("member");
            consumer.subscribe(&[topic]).expect("subscribe");
            std::thread::spawn(move || {
                let mut seen = HashSet::new();
                let deadline = Instant::now() + Duration::from_secs(600);
                while Instant::now() < deadline {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        if let Some(Ok(v)) = m.payload_view::<str>() {
                            seen.insert(v.to_string());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        let guard = target.lock().expect("target");
                        if guard.as_ref().is_none_or(|t| t.is_subset(&seen)) {
                            break;
                        }
                    }
                }
                seen
            })
        };
        let watcher = {
            let stop = stop.clone();
            let topic = topic.to_string();
            let consumer: BaseConsumer = config("storm-group").create().expect("watcher");
            std::thread::spawn(move || {
                let mut tpl = TopicPartitionList::new();
                for p in 0..6 {
                    tpl.add_partition(&topic, p);
                }
                let mut last: HashMap<i32, i64> = HashMap::new();
                let mut backwards = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(c) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(2)) {
                        for e in c.elements() {
                            let Offset::Offset(o) = e.offset() else {
                                continue;
                            };
                            let prev = last.entry(e.partition()).or_insert(o);
                            if o < *prev {
                                backwards.push(format!("p{} {} -> {o}", e.partition(), prev));
                            }
                            *prev = (*prev).max(o);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                backwards
            })
        };
        Self {
            stop,
            member,
            watcher,
            seen_target,
        }
    }

    /// Lets the member read until it has seen `wanted` (or its deadline), then stops both.
    fn finish(self, wanted: &HashSet<String>) -> (HashSet<String>, Vec<String>) {
        *self.seen_target.lock().expect("target") = Some(wanted.clone());
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.member.join().expect("member");
        let backwards = self.watcher.join().expect("watcher");
        (seen, backwards)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_and_offline_partitions() {
    // Three voters and a broker-only node 4; the partition lives on 4 (leader) and 3, so the
    // quorum keeps its majority whatever the test kills.
    let roles = vec![
        "broker,controller",
        "broker,controller",
        "broker,controller",
        "broker",
    ];
    let t0 = Instant::now();
    let step = |what: &str| eprintln!("{:>6.1}s {what}", t0.elapsed().as_secs_f64());
    let mut cluster = Cluster::start_configured(roles, SETTINGS);
    step("started");
    let bootstrap = cluster.bootstrap();
    create(
        &bootstrap,
        NewTopic::new("pair", 1, TopicReplication::Variable(&[&[4, 3]]))
            .set("min.insync.replicas", "2"),
    )
    .await;
    let all = producer(&bootstrap, "all");
    let one = producer(&bootstrap, "1");
    let send = |p: &FutureProducer, v: &str| {
        let p = p.clone();
        let v = v.to_string();
        async move {
            p.send(
                FutureRecord::<str, str>::to("pair")
                    .partition(0)
                    .payload(&v),
                Duration::from_secs(5),
            )
            .await
            .map(|d| d.offset)
            .map_err(|(e, _)| e)
        }
    };
    assert!(send(&all, "0").await.is_ok(), "acks=all with the full ISR");

    step("// A follower down");
    // A follower down: the ISR shrinks below min.insync.replicas=2.
    cluster.node(3).kill9();
    let addr1 = cluster.node(1).addr();
    let (shrunk, _) = eventually(TIMEOUT, || isr(&addr1, "pair") == vec![4]);
    assert!(shrunk, "ISR did not shrink to the leader");
    // librdkafka retries NOT_ENOUGH_REPLICAS until its message timeout; the code itself:
    // The leader learns the committed shrink a moment later (it pulls metadata).
    let addr4 = cluster.node(4).addr();
    let (known, _) = eventually(TIMEOUT, || isr(&addr4, "pair") == vec![4]);
    assert!(known, "the leader did not learn its ISR shrank");
    let code = produce_direct(&cluster.node(4).addr(), "pair", 1).await;
    assert_eq!(
        code, 19,
        "acks=all with ISR 1 < min.insync.replicas 2: NOT_ENOUGH_REPLICAS"
    );
    assert!(send(&one, "1").await.is_ok(), "acks=1 still works");
    let d = describe(&addr1, "pair", &["--under-replicated"]);
    let p0 = &d["partitions"][0];
    assert_eq!(p0["status"], "under-replicated", "{d}");
    assert!(
        p0["follower_lag"]["3"].is_null(),
        "a dead follower's lag is unknown: {d}"
    );

    step("// The follower returns");
    // The follower returns, catches up and rejoins; acks=all works again.
    tokio::task::block_in_place(|| cluster.restart(3));
    let (rejoined, took) = eventually(TIMEOUT, || isr(&addr1, "pair").len() == 2);
    assert!(rejoined, "follower did not rejoin the ISR");
    eprintln!("follower rejoined the ISR in {took:?}");
    assert!(send(&all, "2").await.is_ok(), "acks=all after the rejoin");
    let d = describe(&addr1, "pair", &[]);
    assert_eq!(d["partitions"][0]["follower_lag"]["3"], 0, "{d}");
    let d = describe(&addr1, "pair", &["--under-replicated"]);
    assert_eq!(d["partitions"].as_array().map(Vec::len), Some(0), "{d}");

    step("// Every ISR member down");
    // Every ISR member down: offline (no leader), not served by anyone.
    cluster.node(4).kill9();
    cluster.node(3).kill9();
    let (offline, _) = eventually(TIMEOUT, || leader(&addr1, "pair") == Some(-1));
    assert!(
        offline,
        "partition still has a leader with every replica down"
    );
    step("// The last in-sync replica");
    // The last in-sync replica (whichever was fenced last) returns: the partition is back
    // with every acknowledged record.
    let last = isr(&addr1, "pair");
    assert_eq!(
        last.len(),
        1,
        "an offline partition keeps its last in-sync replica"
    );
    tokio::task::block_in_place(|| cluster.restart(last[0]));
    let (back, _) = eventually(TIMEOUT, || leader(&addr1, "pair") == Some(last[0]));
    assert!(back, "partition did not come back");
    step("let read = tokio::task::block_");
    let read = tokio::task::block_in_place(|| read_all(&addr1, "pair", 1));
    let values: Vec<&str> = read[&0].iter().map(|(_, v)| v.as_str()).collect();
    for v in ["0", "1", "2"] {
        assert!(values.contains(&v), "record {v} lost: {values:?}");
    }
}

fn metadata_partition(addr: &str, topic: &str) -> Option<(i32, Vec<i32>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .ok()?;
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let p = md.topics().first()?.partitions().first()?;
    Some((p.leader(), p.isr().to_vec()))
}

/// `runnel topics describe TOPIC --json` through `addr`, with `extra` flags.
fn describe(addr: &str, topic: &str, extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["topics", "describe", topic, "--json", "-b", addr])
        .args(extra)
        .output()
        .expect("runnel topics describe");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Each partition of `topic` as (leader, replicas, ISR).
fn partitions(addr: &str, topic: &str) -> Vec<(i32, Vec<i32>, Vec<i32>)> {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create::<BaseConsumer>()
    else {
        return Vec::new();
    };
    let Ok(md) = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)) else {
        return Vec::new();
    };
    md.topics().first().map_or_else(Vec::new, |t| {
        t.partitions()
            .iter()
            .map(|p| (p.leader(), p.replicas().to_vec(), p.isr().to_vec()))
            .collect()
    })
}

fn isr(addr: &str, topic: &str) -> Vec<i32> {
    let mut isr = metadata_partition(addr, topic).map_or_else(Vec::new, |(_, isr)| isr);
    isr.sort();
    isr
}

fn leader(addr: &str, topic: &str) -> Option<i32> {
    metadata_partition(addr, topic).map(|(l, _)| l)
}

/// A ProduceRequest (acks=all, 3 s timeout) of `records` plain records straight to `addr`, with
/// our wire client: its error code for partition 0 of `topic`.
async fn produce_direct(addr: &str, topic: &str, records: usize) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let batch = common::batches::batch_from(common::batches::PLAIN, records, 1, 10);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(3000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])]);
    let mut conn = runnel::client::Connection::connect(addr)
        .await
        .expect("connect");
    let resp = conn.send_version(req, 9).await.expect("produce");
    resp.responses[0].partition_responses[0].error_code
}

/// OffsetForLeaderEpoch for partition 0 of `topic` at `addr`: (epoch, end offset).
async fn end_of_epoch(addr: &str, topic: &str, epoch: i32) -> (i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let req =
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_leader_epoch(epoch)])]);
    let mut conn = runnel::client::Connection::connect(addr)
        .await
        .expect("connect");
    let resp = conn.send(req).await.expect("OffsetForLeaderEpoch");
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "OffsetForLeaderEpoch error");
    (p.leader_epoch, p.end_offset)
}

async fn produce_values(bootstrap: &str, topic: &str, values: &[String]) -> Vec<i64> {
    let p = producer(bootstrap, "all");
    let mut offsets = Vec::new();
    for v in values {
        let r = p
            .send(
                FutureRecord::<str, str>::to(topic).partition(0).payload(v),
                TIMEOUT,
            )
            .await;
        offsets.push(r.unwrap_or_else(|e| panic!("produce {v}: {e:?}")).offset);
    }
    offsets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_truncates_after_healing() {
    // Three controllers and three brokers; every link of broker 4 runs through proxies the
    // test controls: inbound (clients and followers reach it at its advertised address) and
    // outbound to the controllers (its own voters list).
    let roles = vec![
        "controller",
        "controller",
        "controller",
        "broker",
        "broker",
        "broker",
    ];
    let mut cluster = Cluster::prepare(roles, SETTINGS);
    let inbound = Proxy::start();
    inbound.set_target(&cluster.node(4).addr());
    let to_controllers: Vec<(i32, Proxy)> = (1..=3)
        .map(|id| {
            let p = Proxy::start();
            p.set_target(&format!("127.0.0.1:{}", cluster.node(id).controller_port));
            (id, p)
        })
        .collect();
    let voters = to_controllers
        .iter()
        .map(|(id, p)| format!("{id}@{}", p.addr))
        .collect::<Vec<_>>()
        .join(",");
    let n4 = cluster.node(4);
    n4.settings
        .push(format!("advertised.listeners=PLAINTEXT://{}", inbound.addr));
    n4.settings
        .push(format!("controller.quorum.voters={voters}"));
    cluster.launch();
    let direct4 = cluster.node(4).addr();
    let majority = format!("{},{}", cluster.node(5).addr(), cluster.node(6).addr());
    create(
        &majority,
        NewTopic::new("split", 1, TopicReplication::Variable(&[&[4, 5, 6]]))
            .set("min.insync.replicas", "2"),
    )
    .await;
    let before: Vec<String> = (0..50).map(|i| format!("before-{i}")).collect();
    produce_values(&majority, "split", &before).await;

    // Partition broker 4 away from everyone.
    inbound.take_down();
    for (_, p) in &to_controllers {
        p.take_down();
    }
    // The proxies' pipes notice within 20 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // It still thinks it leads and appends, but no follower can fetch: nothing is acknowledged.
    let code = produce_direct(&direct4, "split", 5).await;
    assert_ne!(code, 0, "an isolated leader acknowledged an acks=all write");
    eprintln!("isolated leader answered error {code}");

    let addr5 = cluster.node(5).addr();
    let (moved, took) = eventually(TIMEOUT, || {
        leader(&addr5, "split").is_some_and(|l| l == 5 || l == 6)
    });
    assert!(moved, "the majority did not elect a new leader");
    eprintln!("new leader elected {took:?} after the partition");
    let during: Vec<String> = (0..50).map(|i| format!("during-{i}")).collect();
    produce_values(&majority, "split", &during).await;

    // Heal: broker 4 learns it was replaced, truncates what only it had, and rejoins.
    inbound.heal();
    for (_, p) in &to_controllers {
        p.heal();
    }
    let (rejoined, took) = eventually(TIMEOUT, || isr(&addr5, "split").len() == 3);
    assert!(rejoined, "the old leader did not rejoin the ISR");
    eprintln!("old leader back in the ISR {took:?} after healing");

    // OffsetForLeaderEpoch at the new leader: epoch 0 (broker 4's) ended after the 50 records
    // written before the partition, where the new leader's epoch began.
    let new_leader = leader(&addr5, "split").expect("leader");
    let (epoch, end) = end_of_epoch(&cluster.node(new_leader).addr(), "split", 0).await;
    assert_eq!((epoch, end), (0, 50), "end of leader epoch 0");

    // Make it the only replica left, so what it holds is what clients read.
    cluster.node(5).kill9();
    cluster.node(6).kill9();
    let (leads, _) = eventually(TIMEOUT, || leader(&direct4, "split") == Some(4));
    assert!(leads, "broker 4 did not take over");
    let read = tokio::task::block_in_place(|| read_all(&direct4, "split", 1));
    let values: Vec<&str> = read[&0].iter().map(|(_, v)| v.as_str()).collect();
    let expected: Vec<&str> = before.iter().chain(&during).map(String::as_str).collect();
    assert_eq!(
        values, expected,
        "the old leader's log is not exactly the acknowledged records"
    );
}
