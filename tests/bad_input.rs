//! Hostile and broken clients at the wire level: the broker answers with a Kafka error or
//! closes that one connection, stays up, and serves the next client.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::BrokerProcess;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    framed
}

/// Reads one response frame; None if the broker closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

fn closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    // A read timeout is not a close: only EOF or a reset counts.
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        Ok(_) => false,
    }
}

fn api_versions_ok(addr: &str) {
    let mut s = connect(addr);
    s.write_all(&request(
        ApiKey::ApiVersions,
        3,
        7,
        &ApiVersionsRequest::default(),
    ))
    .expect("write");
    let mut frame = read_frame(&mut s).expect("response");
    let header = ResponseHeader::decode(&mut frame, 0).expect("header");
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut frame, 3).expect("body");
    assert_eq!(body.error_code, 0);
}

fn batch(records: usize) -> Vec<u8> {
    common::batches::batch_from(common::batches::PLAIN, records, 1, 5)
}

fn produce(s: &mut TcpStream, topic: &str, records: Vec<u8>) -> i16 {
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])]);
    s.write_all(&request(ApiKey::Produce, 9, 11, &req))
        .expect("write");
    let mut frame = read_frame(s).expect("produce response");
    ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9)).expect("header");
    let resp = ProduceResponse::decode(&mut frame, 9).expect("body");
    resp.responses[0].partition_responses[0].error_code
}

#[test]
fn oversized_frame_closes_the_connection_without_allocating() {
    let broker = BrokerProcess::start(&["--set", "socket.request.max.bytes=1048576"]);
    let mut s = connect(&broker.addr);
    s.write_all(&i32::MAX.to_be_bytes()).expect("write");
    assert!(closed(&mut s));
    let mut s = connect(&broker.addr);
    s.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert!(closed(&mut s));
    api_versions_ok(&broker.addr);
}

#[test]
fn truncated_frames_and_vanishing_clients_do_not_hurt_others() {
    let broker = BrokerProcess::start(&[]);
    for cut in [1usize, 3, 4, 10, 20] {
        let mut s = connect(&broker.addr);
        let full = request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
        s.write_all(&full[..cut.min(full.len() - 1)])
            .expect("write");
        drop(s);
    }
    // A client that announces a large frame, sends part of it and goes away.
    let mut s = connect(&broker.addr);
    s.write_all(&1_000_000i32.to_be_bytes()).expect("write");
    s.write_all(&[0u8; 1000]).expect("write");
    drop(s);
    api_versions_ok(&broker.addr);
}

#[test]
fn garbage_unknown_keys_and_versions() {
    let broker = BrokerProcess::start(&[]);
    // Unknown API key: closed.
    let mut s = connect(&broker.addr);
    let mut frame = request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    assert!(closed(&mut s));
    // A valid header followed by garbage instead of a Metadata body: closed.
    let mut s = connect(&broker.addr);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(12)
        .with_correlation_id(3);
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Metadata.request_header_version(12))
        .expect("header");
    buf.extend_from_slice(&[0xff; 7]);
    let mut framed = (buf.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&buf);
    s.write_all(&framed).expect("write");
    assert!(closed(&mut s));
    // ApiVersions of a future version: KIP-511 answer at v0 with UNSUPPORTED_VERSION.
    let mut s = connect(&broker.addr);
    let mut frame = request(ApiKey::ApiVersions, 3, 9, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    s.write_all(&frame).expect("write");
    let mut resp = read_frame(&mut s).expect("fallback response");
    assert_eq!(
        ResponseHeader::decode(&mut resp, 0)
            .expect("header")
            .correlation_id,
        9
    );
    let body = ApiVersionsResponse::decode(&mut resp, 0).expect("v0 body");
    assert_eq!(body.error_code, 35);
    assert!(body
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 4));
    api_versions_ok(&broker.addr);
}

#[test]
fn bad_batches_get_kafka_error_codes() {
    let broker = BrokerProcess::start(&[]);
    let mut s = connect(&broker.addr);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
        .expect("write");
    read_frame(&mut s).expect("create response");
    let mut bad_crc = batch(2);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0x55;
    assert_eq!(produce(&mut s, "t", bad_crc), 2, "CORRUPT_MESSAGE");
    let mut bad_count = batch(2);
    bad_count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&bad_count[21..]);
    bad_count[17..21].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(produce(&mut s, "t", bad_count), 87, "INVALID_RECORD");
    let mut truncated = batch(2);
    truncated.truncate(truncated.len() - 3);
    assert_eq!(produce(&mut s, "t", truncated), 2, "CORRUPT_MESSAGE");
    assert_eq!(
        produce(&mut s, "nope", batch(1)),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut s, "t", batch(3)),
        0,
        "and the connection still works"
    );
    // Found by the wire fuzzer: a producer may send any base offset (the log stamps its own,
    // outside the CRC); i64::MAX made the broker's hot-key sampling overflow and panic.
    let mut far = batch(3);
    far[..8].copy_from_slice(&i64::MAX.to_be_bytes());
    assert_eq!(
        produce(&mut s, "t", far),
        0,
        "stored at the log's own offsets"
    );
    // Timestamps are the producer's too: the most distant past and future, one after the other
    // (the roll check subtracts the segment's first from the incoming).
    for ts in [i64::MIN, i64::MAX, i64::MIN] {
        let mut odd = batch(2);
        odd[35..43].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c(&odd[21..]);
        odd[17..21].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(produce(&mut s, "t", odd), 0, "max timestamp {ts}");
    }
    api_versions_ok(&broker.addr);
}

/// One record of `value_len` zero bytes under key "k", zstd-compressed: a few KiB on the wire.
fn zip_bomb(value_len: usize) -> Vec<u8> {
    let record = runnel::log::batch::plain_record(
        0,
        1,
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from(vec![0u8; value_len])),
    );
    runnel::log::batch::encode_compressed(&[record], kafka_protocol::records::Compression::Zstd)
        .expect("encode")
}

/// The broker's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        / 1024
}

#[test]
fn a_zip_bomb_is_never_inflated() {
    let broker = BrokerProcess::start(&[]);
    let mut s = connect(&broker.addr);
    for (name, policy) in [("plain", "delete"), ("compacted", "compact")] {
        let create = CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(name)))
                .with_num_partitions(1)
                .with_replication_factor(1)
                .with_configs(vec![
                    kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default(
                    )
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str(policy))),
                ])]);
        s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
            .expect("write");
        read_frame(&mut s).expect("create response");
    }
    // 320 MiB of records in a few KiB: past message.max.decompressed.bytes (64 MiB). Every
    // compressed batch is looked into, whatever the topic's policy: the bomb is refused once
    // its output passes the limit, never inflated whole.
    let bomb = zip_bomb(320 << 20);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    for topic in ["compacted", "plain"] {
        assert_eq!(
            produce(&mut s, topic, bomb.clone()),
            10,
            "MESSAGE_TOO_LARGE"
        );
    }
    // Within the limit, a compressed batch is stored.
    assert_eq!(produce(&mut s, "plain", zip_bomb(32 << 20)), 0);
    assert_eq!(produce(&mut s, "plain", batch(3)), 0, "still serving");
    let peak = peak_rss_mib(broker.pid());
    eprintln!("broker peak RSS after the bombs: {peak} MiB");
    assert!(peak < 160, "the broker peaked at {peak} MiB");
}

/// A new connection that answers ApiVersions (None: the broker closed it).
fn served(addr: &str) -> Option<TcpStream> {
    let mut s = connect(addr);
    let req = request(ApiKey::ApiVersions, 3, 7, &ApiVersionsRequest::default());
    s.write_all(&req).ok()?;
    read_frame(&mut s).map(|_| s)
}

#[test]
fn connections_per_ip_and_creation_rate() {
    let broker = BrokerProcess::start(&[
        "--set",
        "max.connections.per.ip=3",
        "--set",
        "max.connection.creation.rate=20",
    ]);
    let mut open: Vec<TcpStream> = (0..3)
        .map(|i| served(&broker.addr).unwrap_or_else(|| panic!("connection {i}")))
        .collect();
    let mut fourth = connect(&broker.addr);
    assert!(
        closed(&mut fourth),
        "a fourth connection from 127.0.0.1 is closed"
    );
    open.pop();
    // The broker sees the close when its connection task reads the end of the stream.
    let again = (0..50).find_map(|_| {
        std::thread::sleep(Duration::from_millis(100));
        served(&broker.addr)
    });
    assert!(again.is_some(), "a closed connection's slot comes back");
    drop(again);
    drop(open);

    // 60 connections, one after another, at 20 a second: about 2 s past the first second's
    // burst (the bucket holds a second's worth).
    let started = std::time::Instant::now();
    for i in 0..60 {
        let ok = (0..50).find_map(|_| {
            served(&broker.addr).or_else(|| {
                std::thread::sleep(Duration::from_millis(20));
                None
            })
        });
        assert!(ok.is_some(), "connection {i} never served");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "60 connections in {took:?}"
    );
    assert!(took < Duration::from_secs(15), "60 connections in {took:?}");

    let overridden = BrokerProcess::start(&[
        "--set",
        "max.connections.per.ip=1",
        "--set",
        "max.connections.per.ip.overrides=localhost:3",
    ]);
    let open: Vec<_> = (0..3).filter_map(|_| served(&overridden.addr)).collect();
    assert_eq!(open.len(), 3, "localhost (127.0.0.1) may open three");
    let mut fourth = connect(&overridden.addr);
    assert!(closed(&mut fourth));
}

#[test]
fn connection_cap_and_idle_timeout() {
    let broker = BrokerProcess::start(&[
        "--set",
        "max.connections=2",
        "--set",
        "connections.max.idle.ms=500",
    ]);
    let mut first = connect(&broker.addr);
    let mut second = connect(&broker.addr);
    for s in [&mut first, &mut second] {
        s.write_all(&request(
            ApiKey::ApiVersions,
            3,
            1,
            &ApiVersionsRequest::default(),
        ))
        .expect("write");
        assert!(read_frame(s).is_some(), "served below the cap");
    }
    let mut third = connect(&broker.addr);
    assert!(
        closed(&mut third),
        "a connection over max.connections is closed"
    );
    // Both served connections now sit idle past connections.max.idle.ms.
    let started = std::time::Instant::now();
    assert!(closed(&mut first));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(second);
    // With the idle ones gone, new clients are served again.
    std::thread::sleep(Duration::from_millis(200));
    api_versions_ok(&broker.addr);
}

/// Clients that send fetches over many partitions and never read the answers: each waiting
/// answer keeps only a bounded number of segment file handles, so such clients cannot run
/// the broker out of descriptors (which would fail appends for everyone).
#[test]
fn unread_fetches_hold_few_file_handles() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    const PARTITIONS: i32 = 400;
    const READERS: usize = 8;
    let broker = BrokerProcess::start(&[]);
    let mut s = connect(&broker.addr);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("wide")))
            .with_num_partitions(PARTITIONS)
            .with_replication_factor(1)]);
    s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
        .expect("write");
    read_frame(&mut s).expect("create response");
    // One 20 KB batch per partition: big enough to be sent from its file, not copied.
    let big = Bytes::from(common::batches::batch_from(
        common::batches::PLAIN,
        1,
        1,
        20_000,
    ));
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("wide")))
            .with_partition_data(
                (0..PARTITIONS)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(big.clone()))
                    })
                    .collect(),
            )]);
    s.write_all(&request(ApiKey::Produce, 9, 2, &req))
        .expect("write");
    let mut frame = read_frame(&mut s).expect("produce response");
    ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9)).expect("header");
    let resp = ProduceResponse::decode(&mut frame, 9).expect("body");
    assert!(resp.responses[0]
        .partition_responses
        .iter()
        .all(|p| p.error_code == 0));

    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("wide")))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]);
    let frame = request(ApiKey::Fetch, 12, 3, &fetch);
    let readers: Vec<TcpStream> = (0..READERS)
        .map(|_| {
            let mut r = connect(&broker.addr);
            r.write_all(&frame).expect("fetch");
            r
        })
        .collect();
    // Each ~8 MB answer fills its socket buffers and waits, holding what it holds.
    std::thread::sleep(Duration::from_secs(2));
    let fds = std::fs::read_dir(format!("/proc/{}/fd", broker.pid()))
        .expect("proc")
        .count();
    // The segment file cache (256), the sockets, and at most 32 handles per waiting answer;
    // without the bound each answer would hold ~150 handles the cache had evicted.
    assert!(
        fds < 256 + READERS * (32 + 1) + 100,
        "{fds} descriptors open with {READERS} unread fetches"
    );
    drop(readers);
    api_versions_ok(&broker.addr);
}

/// Clients that stall mid-exchange: one sends half a request and waits, one sends fetches and
/// never reads the answers. Kafka's idle timer closes a connection without progress either
/// way; so does Runnel, after connections.max.idle.ms, serving other clients throughout.
#[test]
fn stalled_clients_are_closed_after_connections_max_idle_ms() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::FetchRequest;
    let broker = BrokerProcess::start(&["--set", "connections.max.idle.ms=1000"]);
    let mut s = connect(&broker.addr);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("stall")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
        .expect("write");
    read_frame(&mut s).expect("create response");
    let batch = common::batches::batch_from(common::batches::PLAIN, 1, 1, 900_000);
    assert_eq!(produce(&mut s, "stall", batch), 0);

    let whole = request(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    let mut half = connect(&broker.addr);
    half.write_all(&whole[..whole.len() / 2]).expect("write");
    let fetch = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(4 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("stall")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(4 << 20)])]);
    const FETCHES: usize = 40;
    let mut deaf = connect(&broker.addr);
    for i in 0..FETCHES {
        deaf.write_all(&request(ApiKey::Fetch, 12, i as i32, &fetch))
            .expect("fetch");
    }
    let started = std::time::Instant::now();
    api_versions_ok(&broker.addr);
    assert!(closed(&mut half), "half a frame, then nothing: closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(6),
        "closed after {waited:?}"
    );
    // Not a byte read for well past the limit; then what the kernel buffered comes, and the
    // end of the connection.
    std::thread::sleep(Duration::from_secs(3));
    api_versions_ok(&broker.addr);
    deaf.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match deaf.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(ended, "a client that reads nothing is closed");
    assert!(
        received < FETCHES * 900_000,
        "closed before every answer was sent ({received} bytes)"
    );
}

/// `queued.max.request.bytes` through real sockets: a client that declares a 900 KB request
/// and sends a little of it holds 900 KB of a 1 MiB budget, so another client's 800 KB produce
/// is not read until the first is closed (connections.max.idle.ms), while small requests are
/// answered at once; then the produce succeeds.
#[test]
fn queued_request_bytes_hold_back_large_requests_not_the_broker() {
    let broker = BrokerProcess::start(&[
        "--set",
        "queued.max.request.bytes=1048576",
        "--set",
        "connections.max.idle.ms=2000",
    ]);
    let mut s = connect(&broker.addr);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("queued")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
        .expect("write");
    read_frame(&mut s).expect("create response");

    let mut hog = connect(&broker.addr);
    let mut declared = 900_000i32.to_be_bytes().to_vec();
    declared.extend_from_slice(&[0u8; 1000]);
    hog.write_all(&declared).expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let producer = std::thread::spawn({
        let addr = broker.addr.clone();
        move || {
            let mut p = connect(&addr);
            let batch = common::batches::batch_from(common::batches::PLAIN, 1, 1, 800_000);
            (produce(&mut p, "queued", batch), started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    api_versions_ok(&broker.addr);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a small request is answered while the large one waits"
    );
    let (code, waited) = producer.join().expect("producer");
    assert_eq!(code, 0);
    assert!(
        waited >= Duration::from_millis(1500),
        "the produce waited for the budget: {waited:?}"
    );
    assert!(closed(&mut hog));
}

/// Requests sent back to back without waiting: produce requests on a durable topic are
/// appended while those before them wait for their fsync, a request of another kind waits for
/// everything before it, and every answer comes back in the order its request was sent.
#[test]
fn pipelined_requests_are_answered_in_order() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse};

    let broker = BrokerProcess::start(&["--set", "log.flush.interval.messages=1"]);
    let mut s = connect(&broker.addr);
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("durable")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    s.write_all(&request(ApiKey::CreateTopics, 5, 1, &create))
        .expect("write");
    read_frame(&mut s).expect("create response");

    let produce = |acks: i16| {
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("durable")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch(2))))])])
    };
    let latest = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("durable")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    // Correlation ids 10..=17: five produce requests, a ListOffsets, two more produce requests.
    let mut burst = Vec::new();
    for cid in 10..15 {
        burst.extend(request(
            ApiKey::Produce,
            9,
            cid,
            &produce(if cid % 2 == 0 { -1 } else { 1 }),
        ));
    }
    burst.extend(request(ApiKey::ListOffsets, 1, 15, &latest));
    for cid in 16..18 {
        burst.extend(request(ApiKey::Produce, 9, cid, &produce(-1)));
    }
    s.write_all(&burst).expect("write");

    let mut next_offset = 0;
    for cid in 10..18 {
        let mut frame = read_frame(&mut s).expect("answer");
        if cid == 15 {
            let header = ResponseHeader::decode(&mut frame, 0).expect("header");
            assert_eq!(header.correlation_id, cid);
            let resp = ListOffsetsResponse::decode(&mut frame, 1).expect("body");
            let p = &resp.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.offset),
                (0, 10),
                "sees every produce before it"
            );
            continue;
        }
        let header = ResponseHeader::decode(&mut frame, ApiKey::Produce.response_header_version(9))
            .expect("header");
        assert_eq!(header.correlation_id, cid, "answers in request order");
        let resp = ProduceResponse::decode(&mut frame, 9).expect("body");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, next_offset));
        next_offset += 2;
    }
    assert_eq!(next_offset, 14);
}
