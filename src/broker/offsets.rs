//! Committed offsets: OffsetCommit, OffsetFetch (one group, or many from v8), OffsetDelete.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::purgatory::Waiting;
use super::Broker;
use crate::group::classic_group::CommittedOffset;
use crate::group::store::{self, OFFSETS_TOPIC};
use crate::log::LogManager;
use crate::protocol::errors;

/// `offsets.commit.timeout.ms`: how long a commit waits for its replicas.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// One topic's committed offsets as OffsetFetch reports them: (topic, [(partition, offset)]).
type TopicOffsets = (String, Vec<(i32, Option<CommittedOffset>)>);
/// Per partition of a commit: the error found before the coordinator is asked, if any.
type Checked = (TopicName, Vec<(i32, Option<ResponseError>)>);

impl Broker {
    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.metadata
            .get(topic)
            .is_some_and(|t| (0..t.partition_count()).contains(&partition))
    }

    /// Waits until the offsets topic partition holding `group` has replicated everything
    /// written so far (Kafka writes commits with acks=all), mapping failures as Kafka's
    /// coordinator does.
    async fn await_offsets_replicated(&self, group: &str) -> Result<(), ResponseError> {
        let image = self.metadata.image();
        let count = image
            .topic(OFFSETS_TOPIC)
            .map_or(0, |t| t.partition_count());
        let p = store::partition_for(group, count);
        let (partition, reg) = self
            .leader_partition(&image, OFFSETS_TOPIC, p)
            .map_err(|_| ResponseError::NotCoordinator)?;
        let waiting = Waiting {
            required: partition.log.log_end_offset(),
            min_isr: partition.log.config().min_insync_replicas,
            leader_epoch: reg.leader_epoch,
            partition,
        };
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        self.await_replication(&waiting, deadline)
            .await
            .map_err(|e| match e {
                ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                _ => ResponseError::CoordinatorNotAvailable,
            })
    }

    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        _version: i16,
    ) -> OffsetCommitResponse {
        let now = LogManager::now_ms();
        let max_metadata = self.config.group.offset_metadata_max_bytes;
        // Per partition: Some(error) decided here, None if it goes to the coordinator.
        let mut checked: Vec<Checked> = Vec::new();
        let mut valid = Vec::new();
        for t in &req.topics {
            let mut parts = Vec::new();
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or_default();
                let error = if !self.partition_exists(&t.name, p.partition_index) {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > max_metadata {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    valid.push((
                        t.name.to_string(),
                        p.partition_index,
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: metadata.to_string(),
                            commit_timestamp: now,
                        },
                    ));
                    None
                };
                parts.push((p.partition_index, error));
            }
            checked.push((t.name.clone(), parts));
        }
        let wrote = !valid.is_empty();
        let mut group_result = if !wrote {
            Ok(())
        } else {
            self.coordinator_ready().and_then(|_| {
                self.groups
                    .commit(
                        &req.group_id,
                        &req.member_id,
                        req.group_instance_id.as_deref(),
                        req.generation_id_or_member_epoch,
                        valid,
                    )
                    .map_err(|e| errors::group_error(&e))
            })
        };
        if wrote && group_result.is_ok() {
            group_result = self.await_offsets_replicated(&req.group_id).await;
        }
        let topics = checked
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(index, error)| {
                                let r = match error {
                                    Some(e) => Err(e),
                                    None => group_result,
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(errors::code(r))
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// The committed offsets of one group: the requested partitions, or all when None.
    fn fetch_group_offsets(
        &self,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<TopicOffsets>, ResponseError> {
        self.coordinator_ready()?;
        let wanted: Option<Vec<(String, i32)>> = topics.as_ref().map(|ts| {
            ts.iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect()
        });
        let found = self
            .groups
            .committed(group, wanted.as_deref())
            .map_err(|e| errors::group_error(&e))?;
        let mut out: Vec<TopicOffsets> = Vec::new();
        for (t, p, v) in found {
            match out.last_mut() {
                Some((last, parts)) if *last == t => parts.push((p, v)),
                _ => out.push((t, vec![(p, v)])),
            }
        }
        Ok(out)
    }

    pub fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        if version >= 8 {
            let groups = req
                .groups
                .iter()
                .map(|g| {
                    let topics = g.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let base =
                        OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                    match self.fetch_group_offsets(&g.group_id, topics) {
                        Err(e) => base.with_error_code(e.code()),
                        Ok(found) => base.with_topics(
                            found
                                .into_iter()
                                .map(|(t, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(StrBytes::from_string(t)))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, v)| {
                                                    let (o, e, m) = committed_fields(v);
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_committed_leader_epoch(e)
                                                        .with_metadata(Some(m))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        match self.fetch_group_offsets(&req.group_id, topics) {
            Err(e) => OffsetFetchResponse::default().with_error_code(e.code()),
            Ok(found) => OffsetFetchResponse::default().with_topics(
                found
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetFetchResponseTopic::default()
                            .with_name(TopicName(StrBytes::from_string(t)))
                            .with_partitions(
                                parts
                                    .into_iter()
                                    .map(|(p, v)| {
                                        let (o, e, m) = committed_fields(v);
                                        OffsetFetchResponsePartition::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(if version >= 5 {
                                                e
                                            } else {
                                                -1
                                            })
                                            .with_metadata(Some(m))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        }
    }

    pub fn offset_delete(&self, req: OffsetDeleteRequest, _version: i16) -> OffsetDeleteResponse {
        let mut known = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                if self.partition_exists(&t.name, p.partition_index) {
                    known.push((t.name.to_string(), p.partition_index));
                }
            }
        }
        let results = self.coordinator_ready().and_then(|_| {
            self.groups
                .delete_offsets(&req.group_id, &known)
                .map_err(|e| errors::group_error(&e))
        });
        let results = match results {
            Err(e) => return OffsetDeleteResponse::default().with_error_code(e.code()),
            Ok(r) => r,
        };
        let mut by_partition = known.into_iter().zip(results);
        let topics = req
            .topics
            .iter()
            .map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let r = if self.partition_exists(&t.name, p.partition_index) {
                                    by_partition.next().map_or(Ok(()), |(_, r)| {
                                        r.map_err(|e| errors::group_error(&e))
                                    })
                                } else {
                                    Err(ResponseError::UnknownTopicOrPartition)
                                };
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(errors::code(r))
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetDeleteResponse::default().with_topics(topics)
    }
}

/// (offset, leader epoch, metadata) as OffsetFetch reports them; -1/-1/"" when none.
fn committed_fields(v: Option<CommittedOffset>) -> (i64, i32, StrBytes) {
    match v {
        Some(c) => (c.offset, c.leader_epoch, StrBytes::from_string(c.metadata)),
        None => (-1, -1, StrBytes::default()),
    }
}
