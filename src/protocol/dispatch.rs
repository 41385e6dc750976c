//! From one request frame to one response frame: header decode, version check, typed decode,
//! the handler call, and encoding with the right response-header version.

use std::future::Future;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::response::{FileRecords, ResponseFrame};
use super::versions;
use crate::broker::{Broker, Client};

/// Fetch v12 (KIP-482 tagged fields) encodes records with a varint length.
const FIRST_FLEXIBLE_FETCH_VERSION: i16 = 12;

/// What the connection does after a request.
pub enum Outcome<'a> {
    Respond(ResponseFrame),
    /// A produce whose records are appended, its answer waiting on fsyncs or followers: the
    /// connection may go on appending the produce requests behind it, answering in order.
    Deferred(Pin<Box<dyn Future<Output = Result<ResponseFrame, String>> + Send + 'a>>),
    /// acks=0 produce: no response is sent.
    Silent,
    /// The request could not be understood (or an acks=0 produce failed): Kafka closes the
    /// connection, and so do we.
    Close(String),
}

/// Encodes a response; `files` holds the record batches a fetch response leaves in segment
/// files (their placeholders are in the body), `flexible` whether the body's version is.
fn frame(
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
    files: FileRecords,
    flexible: bool,
) -> Outcome<'static> {
    match encode(correlation_id, header_version, body, files, flexible) {
        Ok(frame) => Outcome::Respond(frame),
        Err(reason) => Outcome::Close(reason),
    }
}

fn encode(
    correlation_id: i32,
    header_version: i16,
    body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
    files: FileRecords,
    flexible: bool,
) -> Result<ResponseFrame, String> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let r = header
        .encode(&mut buf, header_version)
        .and_then(|_| body(&mut buf))
        .and_then(|_| {
            let len = i32::try_from(buf.len() - 4)?;
            buf[..4].copy_from_slice(&len.to_be_bytes());
            files.splice(buf, flexible)
        });
    r.map_err(|e| format!("could not encode response: {e}"))
}

/// KIP-511: an ApiVersions request of a version we do not know is answered at v0 with
/// UNSUPPORTED_VERSION and our ranges, so the client can retry with one we do.
fn api_versions_fallback(correlation_id: i32) -> Outcome<'static> {
    let body = crate::broker::api_versions::response()
        .with_error_code(ResponseError::UnsupportedVersion.code());
    frame(
        correlation_id,
        0,
        |buf| body.encode(buf, 0),
        FileRecords::default(),
        false,
    )
}

/// What handlers may know of the connection a request came on (Kafka's RequestContext).
pub struct RequestContext<'a> {
    /// The client's address as DescribeGroups shows it (`/127.0.0.1`).
    pub peer_host: &'a str,
    /// The listener it arrived on: answers name brokers by their endpoints on it.
    pub listener: &'a str,
    /// Set when the request just handled was a follower's Fetch, so the connection times it
    /// as Kafka's `FetchFollower` rather than `FetchConsumer`.
    pub follower_fetch: std::sync::atomic::AtomicBool,
}

fn count_errors(broker: &Broker, key: i16, response: &ResponseKind) {
    crate::metrics::errors::each_code(response, &mut |c| broker.metrics.error(key, c));
}

/// A request frame decoded: what every handler starts from.
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Decodes a request frame, or says how to answer one that cannot be served: an ApiVersions of
/// a version we do not know gets KIP-511's fallback; anything else undecodable closes the
/// connection. Never panics, whatever the bytes (`decode_fuzz` holds it to that).
pub fn decode(mut frame_bytes: Bytes) -> Result<Request, Outcome<'static>> {
    if frame_bytes.len() < 8 {
        return Err(Outcome::Close("request shorter than a header".into()));
    }
    let key_raw = i16::from_be_bytes([frame_bytes[0], frame_bytes[1]]);
    let version = i16::from_be_bytes([frame_bytes[2], frame_bytes[3]]);
    let correlation_id = i32::from_be_bytes([
        frame_bytes[4],
        frame_bytes[5],
        frame_bytes[6],
        frame_bytes[7],
    ]);
    let Ok(api_key) = ApiKey::try_from(key_raw) else {
        return Err(Outcome::Close(format!("unknown API key {key_raw}")));
    };
    if !versions::is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return Err(api_versions_fallback(correlation_id));
        }
        return Err(Outcome::Close(format!(
            "unsupported version {version} of {api_key:?}"
        )));
    }
    let header =
        match RequestHeader::decode(&mut frame_bytes, api_key.request_header_version(version)) {
            Ok(h) => h,
            Err(e) => return Err(Outcome::Close(format!("bad request header: {e}"))),
        };
    match RequestKind::decode(api_key, &mut frame_bytes, version) {
        Ok(body) => Ok(Request {
            api_key,
            version,
            header,
            body,
        }),
        Err(e) => Err(Outcome::Close(format!(
            "could not decode {api_key:?} v{version}: {e}"
        ))),
    }
}

pub async fn handle<'a>(
    broker: &'a Broker,
    frame_bytes: Bytes,
    ctx: &RequestContext<'a>,
) -> Outcome<'a> {
    let Request {
        api_key,
        version,
        header,
        body: request,
    } = match decode(frame_bytes) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    let key_raw = api_key as i16;
    let response = match request {
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(crate::broker::api_versions::response())
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(broker.metadata(r, version, ctx.listener).await)
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let pending = broker.append_produce(r, version);
            if acks != 0 && pending.waits() {
                let (correlation_id, listener) = (header.correlation_id, ctx.listener);
                return Outcome::Deferred(Box::pin(async move {
                    let response =
                        ResponseKind::Produce(broker.finish_produce(pending, listener).await);
                    count_errors(broker, key_raw, &response);
                    encode(
                        correlation_id,
                        api_key.response_header_version(version),
                        |buf| response.encode(buf, version),
                        FileRecords::default(),
                        false,
                    )
                }));
            }
            let resp = broker.finish_produce(pending, ctx.listener).await;
            if acks == 0 {
                crate::metrics::errors::produce_codes(&resp, &mut |c| {
                    broker.metrics.error(key_raw, c)
                });
                let failed = resp
                    .responses
                    .iter()
                    .flat_map(|t| &t.partition_responses)
                    .any(|p| p.error_code != 0);
                return if failed {
                    Outcome::Close("acks=0 produce failed".into())
                } else {
                    Outcome::Silent
                };
            }
            ResponseKind::Produce(resp)
        }
        RequestKind::Fetch(r) => {
            let follower = crate::broker::fetch::replica_id(&r, version).is_some();
            ctx.follower_fetch
                .store(follower, std::sync::atomic::Ordering::Relaxed);
            let (response, files) = broker.fetch(r, version, ctx.listener).await;
            crate::metrics::errors::fetch_codes(&response, &mut |c| {
                broker.metrics.error(key_raw, c)
            });
            return frame(
                header.correlation_id,
                api_key.response_header_version(version),
                |buf| response.encode(buf, version),
                files,
                version >= FIRST_FLEXIBLE_FETCH_VERSION,
            );
        }
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(broker.list_offsets(r, version)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(broker.offset_for_leader_epoch(r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(broker.create_topics(r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(broker.delete_topics(r, version).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(broker.init_producer_id(r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(broker.find_coordinator(r, version, ctx.listener).await)
        }
        RequestKind::JoinGroup(r) => {
            let client = Client {
                id: header.client_id.as_deref().unwrap_or_default().to_string(),
                host: ctx.peer_host.to_string(),
            };
            ResponseKind::JoinGroup(broker.join_group(r, version, &client).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(broker.sync_group(r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(broker.heartbeat(r, version)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(broker.leave_group(r, version)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(broker.offset_commit(r, version).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(broker.offset_fetch(r, version)),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(broker.offset_delete(r, version))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(broker.list_groups(r, version)),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(broker.describe_groups(r, version))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(broker.delete_groups(r, version))
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(broker.describe_configs(r, version))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(broker.alter_configs(r, version).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            broker.incremental_alter_configs(r, version).await,
        ),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(broker.create_partitions(r, version).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(broker.delete_records(r, version))
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(broker.describe_cluster(r, version, ctx.listener))
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(broker.describe_topic_partitions(r, version))
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(broker.describe_log_dirs(r, version))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(broker.elect_leaders(r, version).await)
        }
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            broker.list_partition_reassignments(r, version),
        ),
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(broker.describe_quorum(r, version).await)
        }
        other => return Outcome::Close(format!("no handler for {other:?}")),
    };
    count_errors(broker, key_raw, &response);
    frame(
        header.correlation_id,
        api_key.response_header_version(version),
        |buf| response.encode(buf, version),
        FileRecords::default(),
        false,
    )
}
