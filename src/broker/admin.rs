//! The rest of the Admin API on one broker: CreatePartitions, DeleteRecords, DescribeCluster,
//! DescribeTopicPartitions (KIP-966), DescribeLogDirs, ElectLeaders (forwarded to the controller)
//! and ListPartitionReassignments (nothing is ever being reassigned yet).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::topics::TOO_LARGE_BATCH;
use super::{broker_ids, topic_name, Broker, ADMIN_TIMEOUT};
use crate::cluster::rpc::{ControllerReply, ControllerRequest};
use crate::metadata::TopicError;
use crate::protocol::errors;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// The same error for every partition asked (none asked: nothing to report).
fn failed_everywhere(
    asked: Option<Vec<(String, i32)>>,
    e: &TopicError,
) -> Vec<(String, i32, Option<TopicError>)> {
    asked
        .unwrap_or_default()
        .into_iter()
        .map(|(t, p)| (t, p, Some(e.clone())))
        .collect()
}

impl Broker {
    pub async fn create_partitions(
        &self,
        req: CreatePartitionsRequest,
        _version: i16,
    ) -> CreatePartitionsResponse {
        let image = self.metadata.image();
        let added: u64 = req
            .topics
            .iter()
            .map(|t| {
                let now = image.topic(&t.name).map_or(0, |t| t.partition_count());
                t.count.saturating_sub(now).max(0) as u64
            })
            .sum();
        if !self.within_record_budget(added) {
            let results = req
                .topics
                .iter()
                .map(|t| {
                    CreatePartitionsTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(ResponseError::PolicyViolation.code())
                        .with_error_message(Some(StrBytes::from_static_str(TOO_LARGE_BATCH)))
                })
                .collect();
            return CreatePartitionsResponse::default().with_results(results);
        }
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            // Java's Admin sends null without assignments; an empty list means the same.
            let assignments = t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| {
                a.iter()
                    .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                    .collect()
            });
            let r = self
                .controller_change(ControllerRequest::CreatePartitions {
                    name: t.name.to_string(),
                    count: t.count,
                    assignments,
                    validate_only: req.validate_only,
                })
                .await;
            let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            results.push(match r {
                Ok(()) => base,
                Err(e) => base
                    .with_error_code(errors::topic_error(&e).code())
                    .with_error_message(Some(s(&e.to_string()))),
            });
        }
        CreatePartitionsResponse::default().with_results(results)
    }

    pub fn delete_records(
        &self,
        req: DeleteRecordsRequest,
        _version: i16,
    ) -> DeleteRecordsResponse {
        let image = self.metadata.image();
        let topics = req
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let base = DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1);
                        let log = match self.leader_log(&image, &t.name, p.partition_index) {
                            Ok((log, _)) => log,
                            Err(e) => return base.with_error_code(e.code()),
                        };
                        // -1: everything up to the high watermark.
                        let offset = if p.offset == -1 {
                            log.high_watermark()
                        } else {
                            p.offset
                        };
                        match self.logs.delete_records(&t.name, p.partition_index, offset) {
                            Ok(low) => base.with_low_watermark(low),
                            Err(e) => base.with_error_code(errors::log_error(&e).code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        DeleteRecordsResponse::default().with_topics(topics)
    }

    pub fn describe_cluster(
        &self,
        req: DescribeClusterRequest,
        version: i16,
        listener: &str,
    ) -> DescribeClusterResponse {
        // Endpoint type 1 is brokers; 2 (controllers, KIP-919) has no separate answer here.
        let brokers = self
            .metadata
            .image()
            .live_brokers()
            .filter_map(|b| {
                let at = b.endpoint(listener)?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(s(&at.host))
                        .with_port(at.port)
                        .with_rack(b.rack.as_deref().map(s)),
                )
            })
            .collect();
        let resp = DescribeClusterResponse::default()
            .with_cluster_id(s(&self.config.cluster_id))
            .with_controller_id(self.controller_id())
            .with_brokers(brokers)
            .with_cluster_authorized_operations(OPERATIONS_OMITTED);
        if version >= 1 {
            resp.with_endpoint_type(req.endpoint_type.max(1))
        } else {
            resp
        }
    }

    pub fn describe_topic_partitions(
        &self,
        req: DescribeTopicPartitionsRequest,
        _version: i16,
    ) -> DescribeTopicPartitionsResponse {
        let mut names: Vec<String> = if req.topics.is_empty() {
            self.metadata
                .list()
                .iter()
                .map(|t| t.name.clone())
                .collect()
        } else {
            req.topics.iter().map(|t| t.name.to_string()).collect()
        };
        names.sort();
        names.dedup();
        let (start_topic, start_partition) = req.cursor.as_ref().map_or((String::new(), 0), |c| {
            (c.topic_name.to_string(), c.partition_index)
        });
        let mut budget = req.response_partition_limit.max(1) as usize;
        let mut topics = Vec::new();
        let mut next_cursor = None;
        for name in names.into_iter().filter(|n| *n >= start_topic) {
            let Some(t) = self.metadata.get(&name) else {
                topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                        .with_name(Some(topic_name(&name)))
                        .with_topic_authorized_operations(OPERATIONS_OMITTED),
                );
                continue;
            };
            if budget == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)));
                break;
            }
            let first = if name == start_topic {
                start_partition
            } else {
                0
            };
            let mut partitions = Vec::new();
            let mut p = first;
            while let Some(reg) = t.partitions.get(p.max(0) as usize) {
                if budget == 0 {
                    next_cursor = Some(
                        Cursor::default()
                            .with_topic_name(topic_name(&name))
                            .with_partition_index(p),
                    );
                    break;
                }
                partitions.push(
                    DescribeTopicPartitionsResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(reg.leader))
                        .with_leader_epoch(reg.leader_epoch)
                        .with_replica_nodes(broker_ids(&reg.replicas))
                        .with_isr_nodes(broker_ids(&reg.isr))
                        .with_eligible_leader_replicas(Some(vec![]))
                        .with_last_known_elr(Some(vec![])),
                );
                budget -= 1;
                p += 1;
            }
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(&name)))
                    .with_topic_id(t.id)
                    .with_is_internal(t.internal)
                    .with_partitions(partitions)
                    .with_topic_authorized_operations(OPERATIONS_OMITTED),
            );
            if next_cursor.is_some() {
                break;
            }
        }
        DescribeTopicPartitionsResponse::default()
            .with_topics(topics)
            .with_next_cursor(next_cursor)
    }

    pub fn describe_log_dirs(
        &self,
        req: DescribeLogDirsRequest,
        _version: i16,
    ) -> DescribeLogDirsResponse {
        let mut by_topic: std::collections::BTreeMap<String, Vec<DescribeLogDirsPartition>> =
            Default::default();
        let wanted = |topic: &str, p: i32| {
            req.topics.as_ref().is_none_or(|ts| {
                ts.iter()
                    .any(|t| t.topic.as_str() == topic && t.partitions.contains(&p))
            })
        };
        for log in self.logs.all() {
            if !wanted(log.topic(), log.partition()) {
                continue;
            }
            by_topic.entry(log.topic().to_string()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(log.partition())
                    .with_partition_size(log.size() as i64)
                    // The current replica: its lag behind the log end is always 0.
                    .with_offset_lag((log.log_end_offset() - log.high_watermark()).max(0)),
            );
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, mut partitions)| {
                partitions.sort_by_key(|p| p.partition_index);
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect();
        let dir = std::fs::canonicalize(self.logs.dir())
            .unwrap_or_else(|_| self.logs.dir().to_path_buf());
        let error = if self.logs.is_failed() {
            ResponseError::KafkaStorageError.code()
        } else {
            0
        };
        DescribeLogDirsResponse::default().with_results(vec![DescribeLogDirsResult::default()
            .with_error_code(error)
            .with_log_dir(s(&dir.display().to_string()))
            .with_topics(topics)
            // Volume sizes are not measured (Kafka's UNKNOWN_VOLUME_BYTES).
            .with_total_bytes(-1)
            .with_usable_bytes(-1)])
    }

    /// ElectLeaders, forwarded to the controller: PREFERRED (0) gives each partition back to
    /// its first replica if that one is alive and in sync; UNCLEAN (1) gives an offline
    /// partition any live replica. Answers once this broker's metadata shows the elections.
    pub async fn elect_leaders(
        &self,
        req: ElectLeadersRequest,
        version: i16,
    ) -> ElectLeadersResponse {
        let unclean = version >= 1 && req.election_type == 1;
        let asked = req.topic_partitions.map(|topics| {
            topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
                .collect::<Vec<_>>()
        });
        let reply = self
            .cluster
            .call(
                ControllerRequest::ElectLeaders {
                    unclean,
                    partitions: asked.clone(),
                },
                ADMIN_TIMEOUT,
            )
            .await;
        let outcomes = match reply {
            Ok(ControllerReply::Elections { results, offset }) => {
                match self.wait_published(offset).await {
                    Ok(()) => results,
                    Err(e) => failed_everywhere(asked, &e),
                }
            }
            Ok(ControllerReply::Failed(e)) => failed_everywhere(asked, &e),
            Ok(other) => failed_everywhere(
                asked,
                &TopicError::NotController(format!("unexpected controller answer {other:?}")),
            ),
            Err(e) => failed_everywhere(asked, &e),
        };
        let mut results: Vec<ReplicaElectionResult> = Vec::new();
        for (topic, partition, error) in outcomes {
            let r = PartitionResult::default().with_partition_id(partition);
            let r = match error {
                None => r,
                Some(e) => r
                    .with_error_code(errors::topic_error(&e).code())
                    .with_error_message(Some(s(&e.to_string()))),
            };
            match results.last_mut().filter(|t| t.topic.as_str() == topic) {
                Some(t) => t.partition_result.push(r),
                None => results.push(
                    ReplicaElectionResult::default()
                        .with_topic(topic_name(&topic))
                        .with_partition_result(vec![r]),
                ),
            }
        }
        ElectLeadersResponse::default().with_replica_election_results(results)
    }

    pub fn list_partition_reassignments(
        &self,
        _req: ListPartitionReassignmentsRequest,
        _version: i16,
    ) -> ListPartitionReassignmentsResponse {
        // One broker: nothing is ever being reassigned.
        ListPartitionReassignmentsResponse::default()
    }
}
