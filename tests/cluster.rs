//! A three-node cluster of real `runnel serve` processes driven by librdkafka (rdkafka):
//! topics spread over the brokers, clients work through any single bootstrap broker, the
//! quorum survives a kill -9 of its leader, a restarted node catches up, and a whole-cluster
//! restart keeps every topic, config and record.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::cluster::{eventually, Cluster};
use kafka_protocol::messages::MetadataRequest;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin")
}

fn metadata_consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer")
}

/// The active controller as one broker reports it (Metadata's controller id), asked from a
/// thread of its own so tests can call it from anywhere.
fn controller_id(addr: &str) -> Option<i32> {
    let addr = addr.to_string();
    std::thread::spawn(move || controller_id_now(&addr))
        .join()
        .ok()
        .flatten()
}

fn controller_id_now(addr: &str) -> Option<i32> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let mut conn = runnel::client::connection::Connection::connect(addr)
            .await
            .ok()?;
        let resp = tokio::time::timeout(
            Duration::from_secs(2),
            conn.send(MetadataRequest::default().with_topics(Some(vec![]))),
        )
        .await
        .ok()?
        .ok()?;
        Some(resp.controller_id.0).filter(|id| *id >= 0)
    })
}

/// Partition → (leader, replicas) of a topic, as librdkafka sees it through `bootstrap`. A
/// broker learns a new topic a moment after the one that created it: wait up to 10 s for it.
fn layout(bootstrap: &str, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>)> {
    let consumer = metadata_consumer(bootstrap);
    let mut partitions = BTreeMap::new();
    eventually(Duration::from_secs(10), || {
        let md = consumer
            .fetch_metadata(Some(topic), TIMEOUT)
            .expect("metadata");
        partitions = md.topics()[0]
            .partitions()
            .iter()
            .map(|p| (p.id(), (p.leader(), p.replicas().to_vec())))
            .collect();
        !partitions.is_empty()
    });
    partitions
}

async fn create(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = admin(bootstrap)
        .create_topics(&[t], &AdminOptions::new().operation_timeout(Some(TIMEOUT)))
        .await
        .expect("create_topics");
    assert!(res[0].is_ok(), "create {name}: {:?}", res[0]);
}

async fn produce(bootstrap: &str, topic: &str, values: impl Iterator<Item = String>) -> usize {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let mut acked = 0;
    for v in values {
        let r = producer
            .send(
                FutureRecord::<str, str>::to(topic).payload(&v).key(&v),
                TIMEOUT,
            )
            .await;
        assert!(r.is_ok(), "produce {v}: {r:?}");
        acked += 1;
    }
    acked
}

/// Every value of a topic, read as a member of `group` through `bootstrap`.
fn consume_all(bootstrap: &str, topic: &str, group: &str, expected: usize) -> HashSet<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < expected && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            if let Some(Ok(v)) = m.payload_view::<str>() {
                seen.insert(v.to_string());
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_spread_route_elect_and_recover() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(3));
    let one = cluster.nodes[0].addr();
    let two = cluster.nodes[1].addr();
    let three = cluster.nodes[2].addr();

    // Every broker lists all three once each has registered and been unfenced.
    let (all, _) = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(15), || {
            [&one, &two, &three].iter().all(|b| {
                metadata_consumer(b)
                    .fetch_metadata(None, TIMEOUT)
                    .is_ok_and(|m| m.brokers().len() == 3)
            })
        })
    });
    assert!(all, "not every broker lists three brokers");

    // A 12-partition topic created through one broker spreads its leaders evenly.
    create(&one, "spread", 12, &[("retention.ms", "3600000")]).await;
    let l = layout(&three, "spread");
    assert_eq!(l.len(), 12);
    for id in 1..=3 {
        assert_eq!(l.values().filter(|(leader, _)| *leader == id).count(), 4);
    }

    // Produce through one broker, consume as a group through another: everything arrives.
    let n = produce(&one, "spread", (0..600).map(|i| format!("v{i}"))).await;
    let seen = tokio::task::block_in_place(|| consume_all(&three, "spread", "g1", n));
    assert_eq!(seen.len(), n);

    // kill -9 of the quorum leader: another node takes over and changes go on.
    let leader = controller_id(&one).expect("a controller");
    cluster.node(leader).kill9();
    let survivor = cluster
        .nodes
        .iter()
        .find(|n| n.is_running())
        .expect("survivor")
        .addr();
    let (elected, took) = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(15), || {
            controller_id(&survivor).is_some_and(|c| c != leader)
        })
    });
    assert!(elected, "no new controller after killing {leader}");
    eprintln!("new controller elected {took:?} after kill -9 of node {leader}");
    let bootstrap = cluster.bootstrap();
    create(&bootstrap, "after-kill", 4, &[]).await;
    // The dead node is fenced after broker.session.timeout.ms: nothing is placed on it.
    let (fenced, _) = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(20), || {
            metadata_consumer(&bootstrap)
                .fetch_metadata(None, TIMEOUT)
                .is_ok_and(|m| m.brokers().len() == 2)
        })
    });
    assert!(fenced, "node {leader} was not fenced");
    create(&bootstrap, "while-down", 4, &[]).await;
    assert!(layout(&bootstrap, "while-down")
        .values()
        .all(|(l, _)| *l != leader));

    // The killed node comes back with a torn metadata log tail (a kill -9 mid-write), cuts it,
    // catches up with what it missed, and leads again.
    let log = cluster
        .node(leader)
        .data
        .join("__cluster_metadata-0")
        .join("log");
    let len = std::fs::metadata(&log).expect("metadata log").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(len - 5))
        .expect("tear the metadata log");
    tokio::task::block_in_place(|| cluster.restart(leader));
    let back = cluster.node(leader).addr();
    let l = layout(&back, "while-down");
    assert_eq!(l.len(), 4);
    let (leads, _) = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(20), || {
            layout(&back, "spread").values().all(|(l, _)| *l > 0)
        })
    });
    assert!(
        leads,
        "partitions of node {leader} stayed offline after its return"
    );

    // Controller listener: a node of another cluster is refused, garbage closes the connection.
    let controller = format!("127.0.0.1:{}", cluster.nodes[0].controller_port);
    assert!(refused_as_another_cluster(&controller));

    // All three killed and restarted: topics, configs and records are intact.
    for node in &mut cluster.nodes {
        node.kill9();
    }
    // A node whose voter list disagrees with the quorum it formed does not start.
    let node = &cluster.nodes[0];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("serve")
        .arg("--data")
        .arg(&node.data)
        .args(["--set", "node.id=1"])
        .args([
            "--set",
            &format!(
                "listeners=PLAINTEXT://127.0.0.1:{},CONTROLLER://127.0.0.1:{}",
                node.client_port, node.controller_port
            ),
        ])
        .args([
            "--set",
            &format!(
                "controller.quorum.voters=1@127.0.0.1:{},2@127.0.0.1:{}",
                node.controller_port, cluster.nodes[1].controller_port
            ),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was formed by voters"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::task::block_in_place(|| cluster.restart_all());
    let bootstrap = cluster.bootstrap();
    for (topic, partitions) in [("spread", 12), ("after-kill", 4), ("while-down", 4)] {
        assert_eq!(layout(&bootstrap, topic).len(), partitions, "{topic}");
    }
    let configs = admin(&bootstrap)
        .describe_configs(
            &[ResourceSpecifier::Topic("spread")],
            &AdminOptions::new().request_timeout(Some(TIMEOUT)),
        )
        .await
        .expect("describe_configs");
    let retention = configs[0]
        .as_ref()
        .expect("config")
        .get("retention.ms")
        .and_then(|e| e.value.clone());
    assert_eq!(retention.as_deref(), Some("3600000"));
    let seen = tokio::task::block_in_place(|| consume_all(&two, "spread", "g2", n));
    assert_eq!(seen.len(), n, "records lost across the full restart");
}

/// KRaft's separated roles: three controller-only voters and two broker-only nodes that pull
/// the metadata log. Partitions go to brokers only and clients never see the controllers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_and_brokers_on_separate_nodes() {
    // Two brokers: the offsets topic can have two replicas, not Kafka's default three.
    let mut cluster = tokio::task::block_in_place(|| {
        Cluster::start_configured(
            vec!["controller", "controller", "controller", "broker", "broker"],
            &["offsets.topic.replication.factor=2"],
        )
    });
    let four = cluster.node(4).addr();
    let five = cluster.node(5).addr();
    let (both, _) = tokio::task::block_in_place(|| {
        eventually(Duration::from_secs(15), || {
            metadata_consumer(&four)
                .fetch_metadata(None, TIMEOUT)
                .is_ok_and(|m| m.brokers().len() == 2)
        })
    });
    assert!(both, "brokers 4 and 5 are not both listed");
    create(&five, "split", 6, &[]).await;
    let l = layout(&four, "split");
    assert!(
        l.values().all(|(leader, _)| *leader == 4 || *leader == 5),
        "{l:?}"
    );
    let n = produce(&four, "split", (0..200).map(|i| format!("s{i}"))).await;
    let seen = tokio::task::block_in_place(|| consume_all(&five, "split", "gs", n));
    assert_eq!(seen.len(), n);
    // Clients are told a broker as controller, never a controller-only node.
    let told = controller_id(&four).expect("controller id");
    assert!(told == 4 || told == 5, "told {told}");
    // The quorum, asked through a broker-only node, is led by a controller.
    let leader = {
        let addr = four.clone();
        tokio::task::spawn_blocking(move || quorum_leader(&addr))
            .await
            .expect("join")
    };
    assert!(leader.is_some_and(|l| (1..=3).contains(&l)), "{leader:?}");

    // A second process with broker 4's node.id is refused while broker 4 heartbeats.
    let tmp = tempfile::tempdir().expect("tmp");
    let voters: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.roles == "controller")
        .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
        .collect();
    let mut twin = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path())
        .args(["--set", "node.id=4", "--set", "process.roles=broker"])
        .args([
            "--set",
            &format!("controller.quorum.voters={}", voters.join(",")),
        ])
        .env("RUNNEL_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn twin");
    let stdout = twin.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    let started = rx.recv_timeout(Duration::from_secs(5));
    let _ = twin.kill();
    let _ = twin.wait();
    // It waits for broker 4's session to expire (or gives up): it never serves meanwhile.
    assert!(
        !started
            .as_ref()
            .is_ok_and(|l| l.starts_with("runnel listening")),
        "a duplicate node.id became ready: {started:?}"
    );
    let md = metadata_consumer(&five)
        .fetch_metadata(None, TIMEOUT)
        .expect("metadata");
    let b4 = md.brokers().iter().find(|b| b.id() == 4).expect("broker 4");
    assert_eq!(format!("127.0.0.1:{}", b4.port()), four);

    // The quorum leader killed: a client bootstrapping during the election is told a broker
    // as controller (librdkafka told -1 waited for one until it timed out), and the topic it
    // creates through a broker-only node lands once a new leader is elected.
    let leader = leader.expect("quorum leader");
    cluster.node(leader).kill9();
    create(&five, "after-election", 3, &[]).await;
    assert_eq!(layout(&five, "after-election").len(), 3);
}

/// The quorum leader as `runnel cluster status --json` reports it through a broker.
fn quorum_leader(addr: &str) -> Option<i32> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["cluster", "status", "--json", "-b", addr])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["leader_id"].as_i64().map(|l| l as i32)
}

/// Sends a frame with a foreign cluster id to a controller listener: the answer must be a
/// refusal naming the cluster, then the connection closes; a garbage frame closes it too.
fn refused_as_another_cluster(addr: &str) -> bool {
    use std::io::{Read, Write};
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let msg = br#"{"cluster_id":"someone-else","body":{"Controller":"DescribeQuorum"}}"#;
    s.write_all(&frame(msg)).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("reply length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("reply");
    let reply = String::from_utf8_lossy(&body);
    let refused = reply.contains("Refused") && reply.contains("someone-else");
    let closed = matches!(s.read(&mut len), Ok(0) | Err(_));
    let mut g = std::net::TcpStream::connect(addr).expect("connect");
    g.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    g.write_all(&frame(b"\x00not json")).expect("write");
    let garbage_closed = matches!(g.read(&mut len), Ok(0) | Err(_));
    refused && closed && garbage_closed
}

#[test]
fn bad_cluster_config_stops_start_up_with_one_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--set",
                "process.roles=broker",
                "--set",
                "controller.quorum.voters=1@127.0.0.1:1",
            ],
            "does not include controller",
        ),
        (
            &[
                "--set",
                "process.roles=controller",
                "--set",
                "controller.quorum.voters=1@127.0.0.1:1",
            ],
            "no CONTROLLER listener",
        ),
        (
            &[
                "--set",
                "node.id=4",
                "--set",
                "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
            ],
            "not among controller.quorum.voters",
        ),
        (
            &[
                "--set",
                "controller.quorum.voters=1@127.0.0.1:1,1@127.0.0.1:2",
            ],
            "appears twice",
        ),
        (
            &[
                "--set",
                "controller.quorum.voters=1@127.0.0.1:1,2@127.0.0.1:2",
            ],
            "no CONTROLLER listener",
        ),
    ];
    for (args, expected) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path())
            .args(args)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // A data directory belongs to one node id.
    let data = dir.path().join("d");
    let mut first = common::BrokerProcess::start_in(&data, &[]);
    first.terminate();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--set",
            "node.id=7",
            "--data",
        ])
        .arg(&data)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to node 1"));
}
