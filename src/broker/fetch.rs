//! Fetch: long polling on min_bytes / max_wait_ms, byte limits per partition and per response
//! (at least one whole batch, KIP-74), within a fetch session (KIP-227, `fetch_session`) when
//! the client keeps one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};
use tokio::sync::Notify;

use super::fetch_session::FetchContext;
use super::Broker;
use crate::log::LogError;
use crate::protocol::errors;
use crate::protocol::response::FileRecords;

/// Fetch v13 (KIP-516) names topics by id.
const FIRST_TOPIC_ID_VERSION: i16 = 13;
/// Fetch v15 (KIP-903) moves the follower's id into ReplicaState.
const FIRST_REPLICA_STATE_VERSION: i16 = 15;

/// The broker id of a follower's fetch, None for a consumer's.
pub fn replica_id(req: &FetchRequest, version: i16) -> Option<i32> {
    let id = if version >= FIRST_REPLICA_STATE_VERSION {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    (id >= 0).then_some(id)
}

/// KIP-320: a fetch names the leader epoch it believes in; an older one is fenced, a newer
/// one means this broker has not seen the change yet.
pub(super) fn check_leader_epoch(asked: i32, current: i32) -> Result<(), ResponseError> {
    match asked {
        a if a < 0 || a == current => Ok(()),
        a if a < current => Err(ResponseError::FencedLeaderEpoch),
        _ => Err(ResponseError::UnknownLeaderEpoch),
    }
}

fn partition_error(index: i32, e: ResponseError) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(e.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()))
}

/// Where a follower's log leaves the leader's: when the follower's last epoch ends here before
/// the offset it fetches from, the epoch and end offset it must truncate to.
fn diverging_epoch(
    log: &crate::log::PartitionLog,
    last_fetched_epoch: i32,
    fetch_offset: i64,
) -> Option<EpochEndOffset> {
    let (epoch, end) = log
        .end_offset_for_epoch(last_fetched_epoch)
        .unwrap_or((-1, log.log_start_offset()));
    (epoch != last_fetched_epoch || end < fetch_offset).then(|| {
        EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end)
    })
}

/// What one fetch took from one topic, for its metrics.
struct TopicTally {
    topic: std::sync::Arc<crate::metadata::Topic>,
    bytes: u64,
    failed: u64,
}

impl Broker {
    /// The response, with the record batches it carries left in their files (see
    /// `protocol::response`).
    /// `listener`: the one the request arrived on, whose endpoints leader hints name.
    pub async fn fetch(
        &self,
        mut req: FetchRequest,
        version: i16,
        listener: &str,
    ) -> (FetchResponse, FileRecords) {
        let follower = replica_id(&req, version).is_some();
        let now = crate::log::LogManager::now_ms();
        let context = self
            .fetch_sessions
            .new_context(&mut req, version, follower, now);
        if let FetchContext::Error(_) = context {
            let mut response = FetchResponse::default();
            self.fetch_sessions
                .finish(context, &req, version, &mut response, now);
            return (response, FileRecords::default());
        }
        let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let mut tally = Vec::new();
        // Woken by the partitions it reads when they grow, and by any new metadata image (a
        // partition it waits on may have moved).
        let grown = Arc::new(Notify::new());
        let mut images = self.published.subscribe();
        loop {
            tally.clear();
            let may_wait = req.min_bytes > 0 && tokio::time::Instant::now() < deadline;
            let (response, files, bytes, errored) = self.fetch_once(
                &req,
                version,
                listener,
                &mut tally,
                may_wait.then_some(&grown),
            );
            let done = !may_wait || bytes >= req.min_bytes.max(0) as usize || errored;
            if done {
                for t in &tally {
                    let topic = self.metrics.topic(&t.topic.name);
                    self.metrics.fetched(&topic, t.bytes, t.failed, follower);
                }
                let mut response = response;
                let now = crate::log::LogManager::now_ms();
                return match self
                    .fetch_sessions
                    .finish(context, &req, version, &mut response, now)
                {
                    true => (response, files),
                    // Its answer has no partitions left for the files to go in.
                    false => (response, FileRecords::default()),
                };
            }
            tokio::select! {
                _ = grown.notified() => {}
                Ok(()) = images.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// One pass over the requested partitions: the response, its record bytes, and whether
    /// any partition had an error (which answers at once, as Kafka does); `tally` gets the
    /// bytes and failed partitions of each known topic. `grown`, if the fetch may wait, is
    /// registered with each partition before it is read.
    fn fetch_once(
        &self,
        req: &FetchRequest,
        version: i16,
        listener: &str,
        tally: &mut Vec<TopicTally>,
        grown: Option<&Arc<Notify>>,
    ) -> (FetchResponse, FileRecords, usize, bool) {
        let mut budget = if req.max_bytes > 0 {
            req.max_bytes as usize
        } else {
            usize::MAX
        };
        let mut total = 0usize;
        let mut files = FileRecords::default();
        let mut errored = false;
        let mut topics = Vec::with_capacity(req.topics.len());
        let image = self.metadata.image();
        let mut leaders = std::collections::BTreeSet::new();
        let replica = replica_id(req, version);
        let now = crate::log::LogManager::now_ms();
        for ft in &req.topics {
            let topic = if version >= FIRST_TOPIC_ID_VERSION {
                self.metadata.by_id(ft.topic_id)
            } else {
                self.metadata.get(&ft.topic.0)
            };
            let mut parts = Vec::with_capacity(ft.partitions.len());
            let total_before = total;
            for fp in &ft.partitions {
                let Some(topic) = topic.as_ref() else {
                    errored = true;
                    let e = if version >= FIRST_TOPIC_ID_VERSION {
                        ResponseError::UnknownTopicId
                    } else {
                        ResponseError::UnknownTopicOrPartition
                    };
                    parts.push(partition_error(fp.partition, e));
                    continue;
                };
                let checked = self
                    .leader_partition(&image, &topic.name, fp.partition)
                    .and_then(|(p, reg)| {
                        check_leader_epoch(fp.current_leader_epoch, reg.leader_epoch)?;
                        Ok((p, reg))
                    });
                let (partition, reg) = match checked {
                    Ok(x) => x,
                    Err(e) => {
                        errored = true;
                        let mut resp = partition_error(fp.partition, e);
                        if let Some((id, epoch)) =
                            Self::leader_hint(e, &image, &topic.name, fp.partition, &mut leaders)
                        {
                            resp = resp.with_current_leader(
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(id)
                                    .with_leader_epoch(epoch),
                            );
                        }
                        parts.push(resp);
                        continue;
                    }
                };
                let log = &partition.log;
                // A follower whose last epoch ends earlier here must truncate before it fetches.
                if let Some(diverging) = replica
                    .filter(|_| version >= 12 && fp.last_fetched_epoch >= 0)
                    .and_then(|_| diverging_epoch(log, fp.last_fetched_epoch, fp.fetch_offset))
                {
                    parts.push(
                        PartitionData::default()
                            .with_partition_index(fp.partition)
                            .with_high_watermark(log.high_watermark())
                            .with_last_stable_offset(log.high_watermark())
                            .with_log_start_offset(log.log_start_offset())
                            .with_diverging_epoch(diverging)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(Bytes::new())),
                    );
                    errored = true;
                    continue;
                }
                let max_offset = match replica {
                    Some(r) if fp.fetch_offset <= log.log_end_offset() => {
                        let eligible = image.live_broker(r).is_some();
                        let effect =
                            partition.on_follower_fetch(reg, r, fp.fetch_offset, now, eligible);
                        if let Some(isr) = effect.expand {
                            let _ = self.isr_changes.send(super::IsrChange {
                                topic: topic.name.clone(),
                                partition: fp.partition,
                                leader_epoch: reg.leader_epoch,
                                partition_epoch: reg.partition_epoch,
                                isr,
                            });
                        }
                        log.log_end_offset()
                    }
                    Some(_) => log.log_end_offset(),
                    None => log.high_watermark(),
                };
                if let Some(grown) = grown {
                    log.wake_on_growth(grown);
                }
                let limit = (fp.partition_max_bytes.max(0) as usize).min(budget);
                // KIP-74: the first partition with data may exceed the limits by one batch.
                let min_one = total == 0;
                let read = log
                    .read_up_to(fp.fetch_offset, limit, min_one, max_offset)
                    .and_then(|info| {
                        let records = match info.records.clone() {
                            Some(slice) => files.records(slice)?,
                            None => Bytes::new(),
                        };
                        Ok((info, records))
                    });
                match read {
                    Ok((info, records)) => {
                        let n = info.records.as_ref().map_or(0, |s| s.len());
                        total += n;
                        budget = budget.saturating_sub(n);
                        parts.push(
                            PartitionData::default()
                                .with_partition_index(fp.partition)
                                .with_high_watermark(info.high_watermark)
                                .with_last_stable_offset(info.high_watermark)
                                .with_log_start_offset(info.log_start_offset)
                                .with_aborted_transactions(Some(Vec::new()))
                                .with_preferred_read_replica(BrokerId(-1))
                                .with_records(Some(records)),
                        );
                    }
                    Err(e) => {
                        errored = true;
                        if !matches!(e, LogError::OffsetOutOfRange { .. }) {
                            tracing::warn!(topic = %topic.name, partition = fp.partition, error = %e, "fetch failed");
                        }
                        parts.push(
                            partition_error(fp.partition, errors::log_error(&e))
                                .with_high_watermark(log.high_watermark())
                                .with_last_stable_offset(log.high_watermark())
                                .with_log_start_offset(log.log_start_offset()),
                        );
                    }
                }
            }
            if let Some(topic) = topic {
                tally.push(TopicTally {
                    topic,
                    bytes: (total - total_before) as u64,
                    failed: parts.iter().filter(|p| p.error_code != 0).count() as u64,
                });
            }
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(ft.topic.clone())
                    .with_topic_id(ft.topic_id)
                    .with_partitions(parts),
            );
        }
        (
            FetchResponse::default()
                .with_responses(topics)
                .with_node_endpoints(
                    Self::endpoints(&image, &leaders, listener)
                        .into_iter()
                        .map(|(id, host, port, rack)| {
                            NodeEndpoint::default()
                                .with_node_id(id)
                                .with_host(host)
                                .with_port(port)
                                .with_rack(rack)
                        })
                        .collect(),
                ),
            files,
            total,
            errored,
        )
    }
}
