//! Consumer groups through real librdkafka consumers (the rdkafka crate): partition sharing,
//! fan-out, resuming from committed offsets (also across a broker kill -9), the
//! cooperative-sticky assignor's incremental rebalance, and static membership.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BrokerProcess;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Broker settings that keep group tests quick: a short initial delay and a low session floor.
const FAST_GROUPS: &[&str] = &[
    "--set",
    "group.initial.rebalance.delay.ms=300",
    "--set",
    "group.min.session.timeout.ms=1000",
];

/// A rebalance as a consumer saw it: "assign" or "revoke", and the partitions.
type RebalanceEvent = (String, BTreeSet<i32>);

/// Records every rebalance a consumer goes through.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<RebalanceEvent>>>,
}

impl Recorder {
    fn events(&self) -> Vec<RebalanceEvent> {
        self.events.lock().expect("events").clone()
    }
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let (kind, tpl) = match r {
            Rebalance::Assign(t) => ("assign", *t),
            Rebalance::Revoke(t) => ("revoke", *t),
            Rebalance::Error(_) => return,
        };
        let parts = tpl.elements().iter().map(|e| e.partition()).collect();
        self.events
            .lock()
            .expect("events")
            .push((kind.to_string(), parts));
    }
}

type GroupConsumer = BaseConsumer<Recorder>;

fn group_consumer(addr: &str, group: &str, extra: &[(&str, &str)]) -> (GroupConsumer, Recorder) {
    let rec = Recorder::default();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    let consumer = c.create_with_context(rec.clone()).expect("consumer");
    (consumer, rec)
}

async fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin");
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = admin
        .create_topics(&[t], &AdminOptions::new())
        .await
        .expect("create_topics");
    assert!(res[0].is_ok(), "create {name}: {:?}", res[0]);
}

/// Produces `count` records round-robin over `partitions`, values "0".."count-1".
async fn produce(addr: &str, topic: &str, partitions: i32, from: usize, count: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // Enqueued in order (send_result does not wait), so on each partition value order is
    // offset order; then every delivery is awaited.
    let deliveries: Vec<_> = (from..from + count)
        .map(|i| {
            let v = i.to_string();
            let record = FutureRecord::<(), _>::to(topic)
                .payload(&v)
                .partition((i % partitions as usize) as i32);
            p.send_result(record).map_err(|(e, _)| e).expect("queued")
        })
        .collect();
    for d in deliveries {
        d.await.expect("delivery").expect("delivered");
    }
}

fn assigned(c: &GroupConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer until `done` holds (or the timeout), collecting (consumer, value).
fn poll_until(
    consumers: &[&GroupConsumer],
    seen: &mut Vec<(usize, i32, String)>,
    mut done: impl FnMut(&[&GroupConsumer], &[(usize, i32, String)]) -> bool,
) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        for (i, c) in consumers.iter().enumerate() {
            if let Some(m) = c.poll(Duration::from_millis(20)) {
                let m = m.expect("message");
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                seen.push((i, m.partition(), v));
            }
        }
        if done(consumers, seen) {
            return true;
        }
    }
    false
}

/// Keeps polling for `d` (to catch anything arriving that should not).
fn drain(consumers: &[&GroupConsumer], seen: &mut Vec<(usize, i32, String)>, d: Duration) {
    let until = Instant::now() + d;
    poll_until(consumers, seen, |_, _| Instant::now() >= until);
}

fn values(seen: &[(usize, i32, String)]) -> Vec<String> {
    let mut v: Vec<String> = seen.iter().map(|(_, _, v)| v.clone()).collect();
    v.sort();
    v
}

fn expected(from: usize, count: usize) -> Vec<String> {
    let mut v: Vec<String> = (from..from + count).map(|i| i.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn three_members_share_six_partitions_and_see_each_record_once() {
    let broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "shared", 6).await;
    let members: Vec<(GroupConsumer, Recorder)> = (0..3)
        .map(|_| group_consumer(&broker.addr, "trio", &[]))
        .collect();
    for (c, _) in &members {
        c.subscribe(&["shared"]).expect("subscribe");
    }
    let cs: Vec<&GroupConsumer> = members.iter().map(|(c, _)| c).collect();
    let mut seen = Vec::new();
    let settled = poll_until(&cs, &mut seen, |cs, _| {
        cs.iter().all(|c| assigned(c).len() == 2)
    });
    assert!(
        settled,
        "assignments: {:?}",
        cs.iter().map(|c| assigned(c)).collect::<Vec<_>>()
    );
    let all: BTreeSet<i32> = cs.iter().flat_map(|c| assigned(c)).collect();
    assert_eq!(
        all,
        (0..6).collect(),
        "the three assignments cover every partition once"
    );

    produce(&broker.addr, "shared", 6, 0, 600).await;
    assert!(poll_until(&cs, &mut seen, |_, s| s.len() >= 600));
    // A little longer: nothing may arrive twice.
    drain(&cs, &mut seen, Duration::from_secs(1));
    assert_eq!(values(&seen), expected(0, 600));
    for (i, partition, _) in &seen {
        assert!(
            assigned(cs[*i]).contains(partition),
            "member {i} read partition {partition} it does not own"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_groups_each_see_every_record() {
    let broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "fanout", 3).await;
    produce(&broker.addr, "fanout", 3, 0, 300).await;
    for group in ["fan-a", "fan-b"] {
        let (c, _) = group_consumer(&broker.addr, group, &[]);
        c.subscribe(&["fanout"]).expect("subscribe");
        let mut seen = Vec::new();
        assert!(
            poll_until(&[&c], &mut seen, |_, s| s.len() >= 300),
            "{group}"
        );
        assert_eq!(values(&seen), expected(0, 300), "{group}");
    }
}

fn commit_position(c: &GroupConsumer) {
    c.commit_consumer_state(CommitMode::Sync).expect("commit");
}

fn committed(c: &GroupConsumer, topic: &str, partitions: i32) -> HashMap<i32, Offset> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    c.committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_consumer_resumes_after_its_commit_also_after_a_broker_kill() {
    let mut broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "resume", 1).await;
    produce(&broker.addr, "resume", 1, 0, 100).await;

    let (c, _) = group_consumer(&broker.addr, "resumers", &[]);
    c.subscribe(&["resume"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&c], &mut seen, |_, s| s.len() >= 40));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("resume", 0, Offset::Offset(40))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit 40");
    drop(c);

    let (c, _) = group_consumer(&broker.addr, "resumers", &[]);
    c.subscribe(&["resume"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&c], &mut seen, |_, s| s.len() >= 60));
    assert_eq!(seen[0].2, "40", "resumes at the committed offset");
    assert_eq!(values(&seen), expected(40, 60));
    commit_position(&c);
    assert_eq!(committed(&c, "resume", 1)[&0], Offset::Offset(100));
    drop(c);

    broker.kill9();
    broker.restart();
    produce(&broker.addr, "resume", 1, 100, 10).await;
    let (c, _) = group_consumer(&broker.addr, "resumers", &[]);
    assert_eq!(
        committed(&c, "resume", 1)[&0],
        Offset::Offset(100),
        "an acknowledged commit survives kill -9"
    );
    c.subscribe(&["resume"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&c], &mut seen, |_, s| s.len() >= 10));
    assert_eq!(values(&seen), expected(100, 10));
}

#[tokio::test(flavor = "multi_thread")]
async fn cooperative_sticky_rebalances_incrementally() {
    let broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "coop", 6).await;
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let (a, rec_a) = group_consumer(&broker.addr, "coop-group", &coop);
    a.subscribe(&["coop"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&a], &mut seen, |cs, _| assigned(cs[0]).len() == 6));

    let (b, _) = group_consumer(&broker.addr, "coop-group", &coop);
    b.subscribe(&["coop"]).expect("subscribe");
    let ok = poll_until(&[&a, &b], &mut seen, |cs, _| {
        assigned(cs[0]).len() == 3 && assigned(cs[1]).len() == 3
    });
    assert!(ok, "a={:?} b={:?}", assigned(&a), assigned(&b));
    assert!(assigned(&a).is_disjoint(&assigned(&b)));
    // The first member gave up only what moved: one revoke of three partitions, never all six.
    let revokes: Vec<_> = rec_a
        .events()
        .into_iter()
        .filter(|(k, _)| k == "revoke")
        .collect();
    assert_eq!(revokes.len(), 1, "events: {:?}", rec_a.events());
    assert_eq!(revokes[0].1.len(), 3);
    assert!(revokes[0].1.is_disjoint(&assigned(&a)));

    produce(&broker.addr, "coop", 6, 0, 120).await;
    assert!(poll_until(&[&a, &b], &mut seen, |_, s| s.len() >= 120));
    assert_eq!(values(&seen), expected(0, 120));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_member_rejoins_without_a_rebalance() {
    let broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "static", 6).await;
    let cfg = |id: &'static str| [("group.instance.id", id), ("session.timeout.ms", "10000")];
    let (a, rec_a) = group_consumer(&broker.addr, "statics", &cfg("member-a"));
    let (b, _) = group_consumer(&broker.addr, "statics", &cfg("member-b"));
    a.subscribe(&["static"]).expect("subscribe");
    b.subscribe(&["static"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&a, &b], &mut seen, |cs, _| {
        assigned(cs[0]).len() == 3 && assigned(cs[1]).len() == 3
    }));
    let (before_a, before_b) = (assigned(&a), assigned(&b));
    let events_before = rec_a.events().len();

    // b's process goes away (a static member sends no LeaveGroup) and comes back.
    drop(b);
    let (b, rec_b) = group_consumer(&broker.addr, "statics", &cfg("member-b"));
    b.subscribe(&["static"]).expect("subscribe");
    assert!(poll_until(&[&a, &b], &mut seen, |cs, _| assigned(cs[1])
        .len()
        == 3));
    assert_eq!(
        assigned(&b),
        before_b,
        "the static member gets its partitions back"
    );
    // Give a rebalance, if one were triggered, time to reach a.
    drain(&[&a, &b], &mut seen, Duration::from_secs(3));
    assert_eq!(assigned(&a), before_a);
    assert_eq!(
        rec_a.events().len(),
        events_before,
        "a saw no rebalance: {:?}",
        rec_a.events()
    );
    assert_eq!(rec_b.events().len(), 1, "b: {:?}", rec_b.events());
}

fn runnel(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .output()
        .expect("run runnel");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).to_string();
    let (stdout, stderr) = (text(out.stdout), text(out.stderr));
    assert!(out.status.success(), "runnel {args:?} failed: {stderr}");
    (stdout, stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_consumes_as_a_group_member_and_describes_the_group() {
    let broker = BrokerProcess::start(FAST_GROUPS);
    create_topic(&broker.addr, "cli-topic", 3).await;
    produce(&broker.addr, "cli-topic", 3, 0, 30).await;
    let b = broker.addr.as_str();
    let consume = ["consume", "-b", b, "cli-topic", "--group", "cli-group"];
    let (first, _) =
        runnel(&[&consume[..], &["--from-beginning", "--max-messages", "12"]].concat());
    let (rest, _) = runnel(&[&consume[..], &["--timeout-ms", "1500"]].concat());
    let mut all: Vec<String> = first
        .lines()
        .chain(rest.lines())
        .map(String::from)
        .collect();
    assert_eq!(first.lines().count(), 12);
    all.sort();
    assert_eq!(
        all,
        expected(0, 30),
        "the second run resumes at the first one's commit"
    );

    let (list, _) = runnel(&["groups", "list", "-b", b]);
    assert!(
        list.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["cli-group", "Empty", "consumer"]),
        "{list}"
    );
    let (describe, _) = runnel(&["groups", "describe", "-b", b, "cli-group"]);
    let rows: Vec<Vec<&str>> = describe
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{describe}");
    for (p, row) in rows.iter().enumerate() {
        // TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG
        assert_eq!(
            row[..5],
            ["cli-topic", &p.to_string(), "10", "10", "0"],
            "{describe}"
        );
    }

    // A librdkafka member joins; describe shows it owning every partition.
    let (c, _) = group_consumer(b, "cli-group", &[]);
    c.subscribe(&["cli-topic"]).expect("subscribe");
    let mut seen = Vec::new();
    assert!(poll_until(&[&c], &mut seen, |cs, _| assigned(cs[0]).len() == 3));
    let (describe, _) = runnel(&["groups", "describe", "-b", b, "cli-group"]);
    assert!(
        describe.starts_with("Group cli-group is Stable (1 member"),
        "{describe}"
    );
    assert_eq!(describe.matches("/127.0.0.1").count(), 3, "{describe}");
    assert!(seen.is_empty(), "nothing left to read: {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_releases_members_waiting_to_join() {
    let mut broker = BrokerProcess::start(&["--set", "group.initial.rebalance.delay.ms=60000"]);
    create_topic(&broker.addr, "waiting", 1).await;
    let (c, _) = group_consumer(&broker.addr, "waiters", &[]);
    c.subscribe(&["waiting"]).expect("subscribe");
    let mut seen = Vec::new();
    drain(&[&c], &mut seen, Duration::from_secs(1));
    assert!(assigned(&c).is_empty(), "still in the initial delay");
    let t0 = Instant::now();
    broker.terminate();
    // Under the 5 s drain limit: the waiting JoinGroup was answered, not waited out.
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t0.elapsed()
    );
}
