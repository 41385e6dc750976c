//! The idempotent producer: real librdkafka bytes replayed, sequence and epoch errors, and
//! exactly-once delivery under forced retries, across kill -9 restarts.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::proxy::Proxy;
use common::BrokerProcess;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

fn exchange(addr: &str, frame: &[u8]) -> Bytes {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(&(frame.len() as i32).to_be_bytes())
        .expect("write");
    s.write_all(frame).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("response length");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("response");
    Bytes::from(body)
}

fn encode_request<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.to_vec()
}

/// Sends a Produce frame and returns (error code, base offset) of its first partition.
fn produce_frame(addr: &str, frame: &[u8]) -> (i16, i64) {
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let mut resp = exchange(addr, frame);
    ResponseHeader::decode(&mut resp, ApiKey::Produce.response_header_version(version))
        .expect("header");
    let r = ProduceResponse::decode(&mut resp, version).expect("body");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn batch(pid: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    let producer = common::batches::Producer {
        id: pid,
        epoch,
        sequence: seq,
    };
    Bytes::from(common::batches::batch_from(producer, records, 1, 1))
}

fn produce_batch(addr: &str, topic: &str, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    produce_frame(addr, &encode_request(ApiKey::Produce, 9, &req))
}

fn init_producer_id(addr: &str) -> (i64, i16) {
    let mut resp = exchange(
        addr,
        &encode_request(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default().with_transaction_timeout_ms(60000),
        ),
    );
    ResponseHeader::decode(&mut resp, ApiKey::InitProducerId.response_header_version(4))
        .expect("header");
    let r = InitProducerIdResponse::decode(&mut resp, 4).expect("body");
    assert_eq!(r.error_code, 0);
    (r.producer_id.0, r.producer_epoch)
}

fn watermarks(addr: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("consumer");
    c.fetch_watermarks(topic, partition, TIMEOUT)
        .expect("watermarks")
}

fn idempotent_producer(addr: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "120000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_librdkafka_batch_is_stored_once_even_after_kill_9() {
    let proxy = Proxy::start();
    let mut broker =
        BrokerProcess::start(&["--advertise", &proxy.addr, "--set", "num.partitions=1"]);
    proxy.set_target(&broker.addr);
    let p = idempotent_producer(&proxy.addr, &[("linger.ms", "0")]);
    let d = p
        .send(FutureRecord::to("replay").key("k").payload("once"), TIMEOUT)
        .await
        .expect("delivered");
    drop(p);
    let frames = proxy.frames.lock().expect("frames").clone();
    let produce = frames
        .iter()
        .find(|f| i16::from_be_bytes([f[0], f[1]]) == ApiKey::Produce as i16)
        .expect("a Produce frame from librdkafka")
        .clone();
    assert!(frames
        .iter()
        .any(|f| i16::from_be_bytes([f[0], f[1]]) == ApiKey::InitProducerId as i16));
    assert_eq!(
        produce_frame(&broker.addr, &produce),
        (0, d.offset),
        "the retry gets the original offset"
    );
    assert_eq!(
        watermarks(&broker.addr, "replay", 0),
        (0, 1),
        "and is not stored twice"
    );
    broker.kill9();
    broker.restart();
    assert_eq!(
        produce_frame(&broker.addr, &produce),
        (0, d.offset),
        "recognised after kill -9 too"
    );
    assert_eq!(watermarks(&broker.addr, "replay", 0), (0, 1));
    broker.terminate();
    broker.restart();
    assert_eq!(
        produce_frame(&broker.addr, &produce),
        (0, d.offset),
        "and after a clean restart (snapshot)"
    );
}

#[test]
fn sequence_gaps_and_stale_epochs_are_refused() {
    let broker = BrokerProcess::start(&[]);
    // A producer's metadata request auto-creates the topic.
    let p: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .create()
        .expect("client");
    rdkafka::producer::Producer::client(&p)
        .fetch_metadata(Some("seq"), TIMEOUT)
        .expect("metadata");
    let (pid, epoch) = init_producer_id(&broker.addr);
    let (pid2, _) = init_producer_id(&broker.addr);
    assert_ne!(pid, pid2, "every InitProducerId gets a new id");
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch, 0, 3)),
        (0, 0)
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch, 3, 2)),
        (0, 3)
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch, 0, 3)),
        (0, 0),
        "duplicate"
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch, 9, 1)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch + 1, 0, 1)),
        (0, 5),
        "a new epoch starts at 0"
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch, 5, 1)).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid, epoch + 2, 4, 1)).0,
        45,
        "a newer epoch must start at 0"
    );
    assert_eq!(
        produce_batch(&broker.addr, "seq", batch(pid2, 0, 7, 1)).0,
        59,
        "UNKNOWN_PRODUCER_ID"
    );
    assert_eq!(watermarks(&broker.addr, "seq", 0), (0, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_order_under_forced_retries() {
    const RECORDS: usize = 100_000;
    const PARTITIONS: i32 = 6;
    let proxy = Proxy::start();
    let broker = BrokerProcess::start(&["--advertise", &proxy.addr]);
    proxy.set_target(&broker.addr);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &proxy.addr)
            .create()
            .expect("admin");
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "eo",
                PARTITIONS,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .expect("create");
    let p = idempotent_producer(
        &proxy.addr,
        &[
            ("linger.ms", "5"),
            ("retry.backoff.ms", "10"),
            ("socket.timeout.ms", "2000"),
        ],
    );
    let cutter = {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let gen = std::sync::Arc::new(proxy);
        let g = gen.clone();
        let h = std::thread::spawn(move || {
            let mut cuts = 0;
            while !s.load(std::sync::atomic::Ordering::Relaxed) && cuts < 200 {
                std::thread::sleep(Duration::from_millis(150));
                g.cut();
                cuts += 1;
            }
            cuts
        });
        (stop, h, gen)
    };
    let mut inflight = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let partition = (i % PARTITIONS as usize) as i32;
        let payload = i.to_string();
        let rec = FutureRecord::<(), _>::to("eo")
            .payload(&payload)
            .partition(partition);
        inflight.push(p.send_result(rec).map_err(|(e, _)| e).expect("queued"));
        if inflight.len() >= 50_000 {
            for f in inflight.drain(..) {
                f.await.expect("future").expect("delivered");
            }
        }
    }
    for f in inflight.drain(..) {
        f.await.expect("future").expect("delivered");
    }
    cutter.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let cuts = cutter.1.join().expect("cutter");
    assert!(cuts > 0, "connections were cut while producing");
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "unused")
        // Reading by assignment: nothing to commit (a commit at close would look for the
        // group coordinator behind the proxy, which is gone by then).
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for part in 0..PARTITIONS {
        tpl.add_partition_offset("eo", part, Offset::Beginning)
            .expect("tpl");
    }
    // Read directly from the broker, not through the proxy (its advertised address): the
    // consumer only needs the bootstrap connection's metadata to point back at the proxy,
    // which still forwards.
    c.assign(&tpl).expect("assign");
    let mut last: Vec<i64> = vec![-1; PARTITIONS as usize];
    let mut seen = 0usize;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while seen < RECORDS && std::time::Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("message");
        let v: i64 = std::str::from_utf8(m.payload().expect("payload"))
            .expect("utf8")
            .parse()
            .expect("number");
        let part = m.partition() as usize;
        assert_eq!(v as usize % PARTITIONS as usize, part);
        assert!(v > last[part], "partition {part}: {v} after {}", last[part]);
        assert_eq!(
            v,
            if last[part] < 0 {
                part as i64
            } else {
                last[part] + i64::from(PARTITIONS)
            },
            "no gap, no duplicate"
        );
        last[part] = v;
        seen += 1;
    }
    assert_eq!(seen, RECORDS);
    for part in 0..PARTITIONS {
        assert_eq!(
            watermarks(&broker.addr, "eo", part).1,
            (RECORDS / PARTITIONS as usize) as i64
                + i64::from(part < (RECORDS % PARTITIONS as usize) as i32)
        );
    }
    drop(cutter.2);
}
