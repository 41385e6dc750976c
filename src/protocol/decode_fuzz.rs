//! A structured fuzzer for the request decoders: for every API key and version Runnel
//! advertises, frames built from Kafka's primitive encodings (small counts and lengths, so the
//! decoder walks deep into nested arrays, strings and tagged fields) and mutated encodings of a
//! real request of that version go through `dispatch::decode`, which must answer each with a
//! request or a reason to close, never a panic or an allocation the frame cannot justify.
//!
//! The wire fuzzer (`compat/wire_fuzz.py`) covers the handlers behind the decoders.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use proptest::prelude::*;

use super::dispatch::{self, Outcome};
use super::versions;

/// One of the wire's primitive encodings, with values where decoders make decisions.
#[derive(Debug, Clone)]
enum Token {
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UnsignedVarint(u32),
    /// An int16-length string (or int32-length bytes) whose declared length may lie.
    Str {
        declared: i32,
        wide: bool,
        text: Vec<u8>,
    },
    /// A compact (uvarint length + 1) string, array or bytes, the length possibly lying.
    Compact {
        declared: u32,
        text: Vec<u8>,
    },
    Uuid([u8; 16]),
}

fn interesting_i32() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => 0..8i32,
        1 => Just(-1),
        1 => Just(i32::MAX),
        1 => Just(i32::MIN),
        1 => Just(1 << 20),
        1 => any::<i32>(),
    ]
}

fn token() -> impl Strategy<Value = Token> {
    let text = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        any::<i8>().prop_map(Token::Int8),
        prop_oneof![0..8i16, Just(-1i16), any::<i16>()].prop_map(Token::Int16),
        interesting_i32().prop_map(Token::Int32),
        prop_oneof![Just(-1i64), Just(-2), 0..1000i64, any::<i64>()].prop_map(Token::Int64),
        prop_oneof![0..8u32, any::<u32>()].prop_map(Token::UnsignedVarint),
        (interesting_i32(), any::<bool>(), text.clone()).prop_map(|(d, wide, text)| {
            let declared = if d == 0 { text.len() as i32 } else { d };
            Token::Str {
                declared,
                wide,
                text,
            }
        }),
        (prop_oneof![0..8u32, any::<u32>()], text).prop_map(|(d, text)| {
            let declared = if d == 0 { text.len() as u32 + 1 } else { d };
            Token::Compact { declared, text }
        }),
        any::<[u8; 16]>().prop_map(Token::Uuid),
    ]
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_token(buf: &mut BytesMut, t: &Token) {
    match t {
        Token::Int8(v) => buf.put_i8(*v),
        Token::Int16(v) => buf.put_i16(*v),
        Token::Int32(v) => buf.put_i32(*v),
        Token::Int64(v) => buf.put_i64(*v),
        Token::UnsignedVarint(v) => put_uvarint(buf, *v),
        Token::Str {
            declared,
            wide,
            text,
        } => {
            match wide {
                true => buf.put_i32(*declared),
                false => buf.put_i16(*declared as i16),
            }
            buf.put_slice(text);
        }
        Token::Compact { declared, text } => {
            put_uvarint(buf, *declared);
            buf.put_slice(text);
        }
        Token::Uuid(b) => buf.put_slice(b),
    }
}

/// The request header every frame starts with, valid for `key` at `version`.
fn header(key: ApiKey, version: i16) -> BytesMut {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .expect("a default header encodes");
    buf
}

/// A request of every served API, encoded at `version`: the seed mutations start from.
fn seed(key: ApiKey, version: i16) -> Option<BytesMut> {
    fn enc<R: Request + Default>(version: i16) -> Option<BytesMut> {
        let mut buf = BytesMut::new();
        R::default().encode(&mut buf, version).ok().map(|_| buf)
    }
    let body = match key {
        ApiKey::Produce => enc::<ProduceRequest>(version),
        ApiKey::Fetch => enc::<FetchRequest>(version),
        ApiKey::ListOffsets => enc::<ListOffsetsRequest>(version),
        ApiKey::Metadata => enc::<MetadataRequest>(version),
        ApiKey::OffsetCommit => enc::<OffsetCommitRequest>(version),
        ApiKey::OffsetFetch => enc::<OffsetFetchRequest>(version),
        ApiKey::FindCoordinator => enc::<FindCoordinatorRequest>(version),
        ApiKey::JoinGroup => enc::<JoinGroupRequest>(version),
        ApiKey::Heartbeat => enc::<HeartbeatRequest>(version),
        ApiKey::LeaveGroup => enc::<LeaveGroupRequest>(version),
        ApiKey::SyncGroup => enc::<SyncGroupRequest>(version),
        ApiKey::DescribeGroups => enc::<DescribeGroupsRequest>(version),
        ApiKey::ListGroups => enc::<ListGroupsRequest>(version),
        ApiKey::ApiVersions => enc::<ApiVersionsRequest>(version),
        ApiKey::CreateTopics => enc::<CreateTopicsRequest>(version),
        ApiKey::DeleteTopics => enc::<DeleteTopicsRequest>(version),
        ApiKey::DeleteRecords => enc::<DeleteRecordsRequest>(version),
        ApiKey::InitProducerId => enc::<InitProducerIdRequest>(version),
        ApiKey::OffsetForLeaderEpoch => enc::<OffsetForLeaderEpochRequest>(version),
        ApiKey::DescribeConfigs => enc::<DescribeConfigsRequest>(version),
        ApiKey::AlterConfigs => enc::<AlterConfigsRequest>(version),
        ApiKey::DescribeLogDirs => enc::<DescribeLogDirsRequest>(version),
        ApiKey::CreatePartitions => enc::<CreatePartitionsRequest>(version),
        ApiKey::DeleteGroups => enc::<DeleteGroupsRequest>(version),
        ApiKey::ElectLeaders => enc::<ElectLeadersRequest>(version),
        ApiKey::IncrementalAlterConfigs => enc::<IncrementalAlterConfigsRequest>(version),
        ApiKey::ListPartitionReassignments => enc::<ListPartitionReassignmentsRequest>(version),
        ApiKey::OffsetDelete => enc::<OffsetDeleteRequest>(version),
        ApiKey::DescribeCluster => enc::<DescribeClusterRequest>(version),
        ApiKey::DescribeQuorum => enc::<DescribeQuorumRequest>(version),
        ApiKey::DescribeTopicPartitions => enc::<DescribeTopicPartitionsRequest>(version),
        _ => None,
    }?;
    let mut frame = header(key, version);
    frame.put_slice(&body);
    Some(frame)
}

/// Every advertised (API, version).
fn served() -> Vec<(ApiKey, i16)> {
    versions::all()
        .into_iter()
        .flat_map(|(k, lo, hi)| (lo..=hi).map(move |v| (k, v)))
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Put32 { at: usize, value: i32 },
    Insert { at: usize, tokens: Vec<Token> },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), interesting_i32()).prop_map(|(at, value)| Mutation::Put32 { at, value }),
        (any::<usize>(), prop::collection::vec(token(), 1..4))
            .prop_map(|(at, tokens)| Mutation::Insert { at, tokens }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// Applies `m` past the header's first 8 bytes (key, version, correlation id), so the frame
/// still reaches the decoder of the API under test.
fn apply(frame: &mut BytesMut, m: &Mutation) {
    let span = frame.len().saturating_sub(8).max(1);
    let at = |a: &usize| 8 + a % span;
    match m {
        Mutation::Flip { at: a, bit } if frame.len() > 8 => frame[at(a)] ^= 1 << bit,
        Mutation::Put32 { at: a, value } if frame.len() >= 12 => {
            let i = at(a).min(frame.len() - 4);
            frame[i..i + 4].copy_from_slice(&value.to_be_bytes());
        }
        Mutation::Insert { at: a, tokens } => {
            let i = at(a).min(frame.len());
            let mut mid = BytesMut::new();
            tokens.iter().for_each(|t| put_token(&mut mid, t));
            let tail = frame.split_off(i);
            frame.put_slice(&mid);
            frame.put_slice(&tail);
        }
        Mutation::Truncate { at: a } => frame.truncate(at(a)),
        _ => {}
    }
}

/// Decodes `frame`: a request of the API and version the frame names, or a close.
fn check(frame: BytesMut, key: ApiKey, version: i16) -> Result<(), TestCaseError> {
    match dispatch::decode(frame.freeze()) {
        Ok(r) => {
            prop_assert_eq!(r.api_key, key);
            prop_assert_eq!(r.version, version);
        }
        Err(Outcome::Close(_)) => {}
        Err(_) => prop_assert!(false, "a served version answered as unsupported"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn frames_of_primitive_encodings_decode_or_close(
        tokens in prop::collection::vec(token(), 0..48),
    ) {
        for (key, version) in served() {
            let mut frame = header(key, version);
            tokens.iter().for_each(|t| put_token(&mut frame, t));
            check(frame, key, version)?;
        }
    }

    #[test]
    fn mutated_requests_decode_or_close(
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        for (key, version) in served() {
            let Some(mut frame) = seed(key, version) else { continue };
            mutations.iter().for_each(|m| apply(&mut frame, m));
            check(frame, key, version)?;
        }
    }

    #[test]
    fn any_bytes_decode_or_close(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        // Nothing of it is trusted, not even the API key or version.
        let _ = dispatch::decode(Bytes::from(bytes));
    }
}

#[test]
fn every_served_version_has_a_seed_that_decodes() {
    let served = served();
    assert!(served.len() > 100, "{} versions", served.len());
    for (key, version) in served {
        let frame = seed(key, version).unwrap_or_else(|| panic!("no seed for {key:?} v{version}"));
        let r = dispatch::decode(frame.freeze());
        assert!(
            r.as_ref()
                .is_ok_and(|r| r.api_key == key && r.version == version),
            "{key:?} v{version}"
        );
    }
}
