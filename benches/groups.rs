//! Group coordinator benchmarks against the real broker (release build), printed as figures:
//! - a rebalance of 10 librdkafka members after one leaves: time until the other nine own
//!   every partition again;
//! - produce throughput with and without 1,000 members heartbeating (raw wire members, one
//!   connection each, heartbeating every second: three times Kafka's default rate).
//!
//! `cargo bench --bench groups`. Subscribe-to-first-record is measured with the shared
//! harness (`kbench.py consume` without `--assign`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::BrokerProcess;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use runnel::client::Connection;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut c = Connection::connect(addr).await.expect("connect");
        let req = CreateTopicsRequest::default()
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000);
        let r = c.send(req).await.expect("create");
        assert_eq!(r.topics[0].error_code, 0, "create {topic}");
    });
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|t| t.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Ten members on a ten-partition topic; one closes; how long until the nine cover all ten.
fn rebalance_after_leave(addr: &str, heartbeat_ms: &str) -> Duration {
    let topic = format!("rebalance-{heartbeat_ms}");
    create_topic(addr, &topic, 10);
    let members: Vec<BaseConsumer> = (0..10)
        .map(|_| {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", addr)
                .set("group.id", format!("g-{topic}"))
                .set("session.timeout.ms", "10000")
                .set("heartbeat.interval.ms", heartbeat_ms)
                .create()
                .expect("consumer");
            c.subscribe(&[&topic]).expect("subscribe");
            c
        })
        .collect();
    let settle = |ms: &[BaseConsumer], want: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            for c in ms {
                let _ = c.poll(Duration::from_millis(1));
            }
            let sizes: Vec<usize> = ms.iter().map(|c| assigned(c).len()).collect();
            let all: BTreeSet<i32> = ms.iter().flat_map(assigned).collect();
            if all.len() == 10
                && sizes.iter().all(|n| *n >= 1)
                && sizes.iter().sum::<usize>() == want
            {
                return;
            }
        }
        panic!("group did not settle");
    };
    settle(&members, 10);
    let mut members = members;
    let leaver = members.pop().expect("ten members");
    let before: Vec<BTreeSet<i32>> = members.iter().map(assigned).collect();
    let t0 = Instant::now();
    drop(leaver);
    // Settled again: nine members, all ten partitions, and the assignment changed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for c in &members {
            let _ = c.poll(Duration::from_millis(1));
        }
        let now: Vec<BTreeSet<i32>> = members.iter().map(assigned).collect();
        let all: BTreeSet<i32> = now.iter().flatten().copied().collect();
        if all.len() == 10 && now != before && now.iter().all(|a| !a.is_empty()) {
            return t0.elapsed();
        }
        assert!(Instant::now() < deadline, "no rebalance after a leave");
    }
}

/// One raw group member: joins, syncs, heartbeats every second, rejoins when told to.
async fn member(addr: String, group: String, stable: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    let mut conn = Connection::connect(&addr).await.expect("connect");
    let mut member_id = String::new();
    let mut counted = false;
    while !stop.load(Ordering::Relaxed) {
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(60_000)
            .with_member_id(s(&member_id))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(bytes::Bytes::from_static(&[
                    0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,
                ]))]);
        let Ok(j) = conn.send(join).await else { return };
        member_id = j.member_id.to_string();
        if j.error_code != 0 {
            continue;
        }
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(j.generation_id)
            .with_member_id(s(&member_id));
        let Ok(r) = conn.send(sync).await else { return };
        if r.error_code != 0 {
            continue;
        }
        if !counted {
            stable.fetch_add(1, Ordering::Relaxed);
            counted = true;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let hb = HeartbeatRequest::default()
                .with_group_id(GroupId(s(&group)))
                .with_generation_id(j.generation_id)
                .with_member_id(s(&member_id));
            match conn.send(hb).await {
                Ok(r) if r.error_code == 0 => {}
                Ok(r) if r.error_code == ResponseError::RebalanceInProgress.code() => break,
                _ => return,
            }
        }
    }
}

/// Records per second for 300,000 × 100 B records, acks=1, 6 partitions.
fn produce_rate(addr: &str, topic: &str) -> f64 {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("acks", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let value = [b'x'; 100];
    let n = 300_000;
    let t0 = Instant::now();
    for _ in 0..n {
        let mut r = BaseRecord::<(), _>::to(topic).payload(&value[..]);
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    r = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    n as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo test --all-targets` runs bench targets too (without --bench): not worth minutes.
    if !std::env::args().any(|a| a == "--bench") {
        println!("groups benchmark: run it with `cargo bench --bench groups`");
        return;
    }
    let broker = BrokerProcess::start(&["--set", "group.initial.rebalance.delay.ms=3000"]);
    let addr = broker.addr.clone();
    for hb in ["3000", "100"] {
        let d = rebalance_after_leave(&addr, hb);
        println!("rebalance of 10 members after one leaves (heartbeat.interval.ms={hb}): {d:?}");
    }

    create_topic(&addr, "hb-load", 6);
    produce_rate(&addr, "hb-load"); // warm-up
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut idle = Vec::new();
    let mut loaded = Vec::new();
    for rep in 0..3 {
        idle.push(produce_rate(&addr, "hb-load"));
        let stable = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..1000)
            .map(|i| {
                rt.spawn(member(
                    addr.clone(),
                    format!("hb-{rep}-{}", i % 100),
                    stable.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(120);
        while stable.load(Ordering::Relaxed) < 1000 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("{} of 1000 members joined", stable.load(Ordering::Relaxed));
        loaded.push(produce_rate(&addr, "hb-load"));
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = rt.block_on(t);
        }
    }
    let (i, l) = (median(idle.clone()), median(loaded.clone()));
    println!("produce 300k x 100 B, no groups: {idle:.0?} rec/s (median {i:.0})");
    println!("produce 300k x 100 B, 1000 members heartbeating: {loaded:.0?} rec/s (median {l:.0})");
    println!("change: {:+.1}%", (l / i - 1.0) * 100.0);
}
