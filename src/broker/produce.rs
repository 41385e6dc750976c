//! Produce: acks levels, min.insync.replicas, per-partition appends and errors.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

use super::purgatory::Waiting;
use super::Broker;
use crate::log::LogError;
use crate::metadata::MetadataImage;
use crate::protocol::errors;

/// Produce v13 (KIP-516) names topics by id instead of by name.
pub const FIRST_TOPIC_ID_VERSION: i16 = 13;

fn failed(index: i32, e: ResponseError, message: Option<String>) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(message.map(StrBytes::from_string))
}

/// A failed partition; with NOT_LEADER_OR_FOLLOWER, the current leader as `image` has it
/// (KIP-951), so the client moves there without a metadata round trip.
fn failed_with_hint(
    e: ResponseError,
    image: &MetadataImage,
    topic: &str,
    index: i32,
    leaders: &mut BTreeSet<i32>,
) -> PartitionProduceResponse {
    let resp = failed(index, e, None);
    match Broker::leader_hint(e, image, topic, index, leaders) {
        Some((id, epoch)) => resp.with_current_leader(
            LeaderIdAndEpoch::default()
                .with_leader_id(id)
                .with_leader_epoch(epoch),
        ),
        None => resp,
    }
}

/// A partition's fsync for durable acks, running.
type Sync = JoinHandle<Result<(), LogError>>;

/// A produce request whose records are appended, its answer waiting on fsyncs (durable acks)
/// and on the followers (acks=all). Appending and waiting are apart so a connection can append
/// its next produce while this one waits, and one fsync covers both (group commit).
pub struct PendingProduce {
    responses: Vec<TopicProduceResponse>,
    /// Leaders that NOT_LEADER_OR_FOLLOWER answers name (KIP-951).
    leaders: BTreeSet<i32>,
    /// (topic, partition) positions in `responses` and the sync each waits on.
    flushes: Vec<(usize, usize, Sync)>,
    waits: Vec<(usize, usize, Waiting)>,
    /// The request's timeout, from when it was appended.
    deadline: Instant,
}

impl PendingProduce {
    /// Whether the answer must wait for anything.
    pub fn waits(&self) -> bool {
        !self.flushes.is_empty() || !self.waits.is_empty()
    }
}

impl Broker {
    /// Appends a produce request's records; `finish_produce` answers it.
    pub fn append_produce(&self, req: ProduceRequest, version: i16) -> PendingProduce {
        let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
        let image = self.metadata.image();
        let mut leaders = BTreeSet::new();
        let mut responses = Vec::with_capacity(req.topic_data.len());
        let mut waits = Vec::new();
        let mut flushes = Vec::new();
        for td in req.topic_data {
            let topic = if version >= FIRST_TOPIC_ID_VERSION {
                self.metadata.by_id(td.topic_id)
            } else {
                self.metadata.get(&td.name.0)
            };
            let mut parts = Vec::with_capacity(td.partition_data.len());
            // Per partition: its bytes and the records appended, for the topic's metrics.
            let mut sizes = Vec::with_capacity(td.partition_data.len());
            for pd in td.partition_data {
                let index = pd.index;
                sizes.push((pd.records.as_ref().map_or(0, |r| r.len() as u64), 0u64));
                let Some(topic) = topic.as_ref() else {
                    let e = if version >= FIRST_TOPIC_ID_VERSION {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    };
                    parts.push(failed(index, e, None));
                    continue;
                };
                if topic.internal {
                    let msg = format!("Cannot append to internal topic {}", topic.name);
                    parts.push(failed(
                        index,
                        ResponseError::InvalidTopicException,
                        Some(msg),
                    ));
                    continue;
                }
                if !matches!(req.acks, -1..=1) {
                    parts.push(failed(index, ResponseError::InvalidRequiredAcks, None));
                    continue;
                }
                let (partition, reg) = match self.leader_partition(&image, &topic.name, index) {
                    Ok(x) => x,
                    Err(e) => {
                        parts.push(failed_with_hint(
                            e,
                            &image,
                            &topic.name,
                            index,
                            &mut leaders,
                        ));
                        continue;
                    }
                };
                let log = &partition.log;
                let config = log.config();
                let isr = partition.isr_size() as i32;
                if req.acks == -1 && config.min_insync_replicas > isr {
                    let msg = format!("The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {}", config.min_insync_replicas);
                    parts.push(failed(index, ResponseError::NotEnoughReplicas, Some(msg)));
                    continue;
                }
                let Some(records) = pd.records else {
                    parts.push(failed(index, ResponseError::CorruptMessage, None));
                    continue;
                };
                match log.append(records.clone(), reg.leader_epoch) {
                    Ok(info) => {
                        let n = (info.last_offset - info.base_offset + 1).max(0) as u64;
                        if let Some(s) = sizes.last_mut() {
                            s.1 = n;
                        }
                        partition.activity.appended(&records, n);
                        if info.flush_due {
                            let (p, upto) = (partition.clone(), info.last_offset + 1);
                            flushes.push((
                                responses.len(),
                                parts.len(),
                                tokio::spawn(async move { p.wait_durable(upto).await }),
                            ));
                        }
                        if req.acks == -1 {
                            waits.push((
                                responses.len(),
                                parts.len(),
                                Waiting {
                                    partition: partition.clone(),
                                    leader_epoch: reg.leader_epoch,
                                    required: info.last_offset + 1,
                                    min_isr: config.min_insync_replicas,
                                },
                            ));
                        }
                        parts.push(
                            PartitionProduceResponse::default()
                                .with_index(index)
                                .with_base_offset(info.base_offset)
                                .with_log_append_time_ms(info.log_append_time)
                                .with_log_start_offset(info.log_start_offset),
                        );
                    }
                    Err(e) => {
                        tracing::debug!(topic = %topic.name, partition = index, error = %e, "produce rejected");
                        let mut resp = failed(index, errors::log_error(&e), Some(e.to_string()));
                        // v8+ (KIP-467): which records were bad, so clients fail only those.
                        if let (LogError::KeylessRecords(bad), true) = (&e, version >= 8) {
                            resp = resp.with_record_errors(
                                bad.iter()
                                    .map(|i| {
                                        BatchIndexAndErrorMessage::default().with_batch_index(*i)
                                    })
                                    .collect(),
                            );
                        }
                        parts.push(resp);
                    }
                }
            }
            let metrics = topic.as_ref().map(|t| self.metrics.topic(&t.name));
            for ((bytes, records), p) in sizes.iter().zip(&parts) {
                self.metrics
                    .produced(metrics.as_deref(), p.error_code != 0, *records, *bytes);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(td.name)
                    .with_topic_id(td.topic_id)
                    .with_partition_responses(parts),
            );
        }
        PendingProduce {
            responses,
            leaders,
            flushes,
            waits,
            deadline,
        }
    }

    /// Waits for what `pending` needs and answers it; `listener`: the one the request arrived
    /// on, whose endpoints leader hints name.
    pub async fn finish_produce(&self, pending: PendingProduce, listener: &str) -> ProduceResponse {
        let PendingProduce {
            mut responses,
            mut leaders,
            flushes,
            waits,
            deadline,
        } = pending;
        // Durable acks: the partitions' fsyncs, started as each append finished, run at once.
        for (topic, part, flush) in flushes {
            let flushed = flush.await;
            if let Err(e) = flushed.unwrap_or_else(|e| Err(LogError::task_failed("flush", e))) {
                let p = &mut responses[topic].partition_responses[part];
                *p = failed(p.index, errors::log_error(&e), Some(e.to_string()));
            }
        }
        // acks=all: each partition answers once its high watermark passes the batch (the
        // purgatory); every wait shares the request's timeout.
        for (topic, part, w) in waits {
            if let Err(e) = self.await_replication(&w, deadline).await {
                // Leadership moved while it waited: name the new leader as of now.
                let image = self.metadata.image();
                let log = &w.partition.log;
                responses[topic].partition_responses[part] =
                    failed_with_hint(e, &image, log.topic(), log.partition(), &mut leaders);
            }
        }
        let node_endpoints = Self::endpoints(&self.metadata.image(), &leaders, listener)
            .into_iter()
            .map(|(id, host, port, rack)| {
                NodeEndpoint::default()
                    .with_node_id(id)
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack)
            })
            .collect();
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(node_endpoints)
    }
}
