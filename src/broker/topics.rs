//! CreateTopics and DeleteTopics.

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::configs::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};
use super::{topic_name, Broker, ADMIN_TIMEOUT};
use crate::cluster::rpc::{ControllerReply, ControllerRequest, NewTopic};
use crate::log::config::topic_keys;
use crate::metadata::{PartitionRegistration, Topic, TopicError};
use crate::protocol::errors;

type Failure = (ResponseError, String);

fn fail(e: ResponseError, msg: impl Into<String>) -> Failure {
    (e, msg.into())
}

/// Kafka's words for a CreateTopics over `controller.max.records.per.batch`.
const TOO_MANY_PARTITIONS: &str = "Excessively large number of partitions per request.";
/// And for any other admin request over it.
pub(super) const TOO_LARGE_BATCH: &str = "Unable to perform excessively large batch operation.";

impl Broker {
    /// Whether an admin request making `records` metadata changes (partitions created, topics
    /// deleted) is within `controller.max.records.per.batch`. Kafka's controller writes a
    /// request's changes as one batch and refuses a larger one whole with POLICY_VIOLATION,
    /// before anything changes: one request must not hold the quorum for minutes.
    pub(super) fn within_record_budget(&self, records: u64) -> bool {
        records <= u64::from(self.config.controller_max_records_per_batch)
    }

    /// The controller's request for one CreatableTopic, after the checks that need no
    /// cluster state.
    fn new_topic(t: &CreatableTopic, validate_only: bool) -> Result<NewTopic, Failure> {
        let assignments = if t.assignments.is_empty() {
            None
        } else {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(fail(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
            }
            let mut sorted: Vec<_> = t.assignments.iter().collect();
            sorted.sort_by_key(|a| a.partition_index);
            if sorted
                .iter()
                .enumerate()
                .any(|(i, a)| a.partition_index != i as i32)
            {
                return Err(fail(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions must be numbered 0 to N-1 without gaps.",
                ));
            }
            Some(
                sorted
                    .iter()
                    .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                    .collect(),
            )
        };
        let overrides = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        Ok(NewTopic {
            name: t.name.0.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments,
            overrides,
            validate_only,
            id: None,
        })
    }

    /// Every topic-level config with its value and source, as CreateTopics v5+ reports.
    pub(crate) fn topic_configs(t: &Topic) -> Vec<CreatableTopicConfigs> {
        topic_keys()
            .filter_map(|k| {
                let source = if t.overrides.contains_key(k) {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                };
                t.config.get(k).map(|v| {
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(StrBytes::from_string(v)))
                        .with_config_source(source)
                })
            })
            .collect()
    }

    pub async fn create_topics(
        &self,
        req: CreateTopicsRequest,
        _version: i16,
    ) -> CreateTopicsResponse {
        let mut seen = HashSet::new();
        let duplicates: HashSet<String> = req
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.0.to_string()))
            .map(|t| t.name.0.to_string())
            .collect();
        let partitions: u64 = req
            .topics
            .iter()
            .map(|t| match t.num_partitions {
                _ if !t.assignments.is_empty() => t.assignments.len() as u64,
                -1 => self.config.num_partitions.max(0) as u64,
                n => n.max(0) as u64,
            })
            .sum();
        let too_many = !self.within_record_budget(partitions);
        let mut results = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let name = t.name.0.to_string();
            let base = CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_num_partitions(-1)
                .with_replication_factor(-1);
            let outcome = if too_many {
                Err(fail(ResponseError::PolicyViolation, TOO_MANY_PARTITIONS))
            } else if duplicates.contains(&name) {
                Err(fail(
                    ResponseError::InvalidRequest,
                    format!("Create topics request from client contains duplicate topic {name}"),
                ))
            } else {
                match Self::new_topic(t, req.validate_only) {
                    Ok(new) => self
                        .create_or_validate(new)
                        .await
                        .map_err(|e| (errors::topic_error(&e), e.to_string())),
                    Err(f) => Err(f),
                }
            };
            results.push(match outcome {
                Ok(topic) => base
                    .with_topic_id(if req.validate_only {
                        Uuid::nil()
                    } else {
                        topic.id
                    })
                    .with_num_partitions(topic.partition_count())
                    .with_replication_factor(
                        topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16,
                    )
                    .with_configs(Some(Self::topic_configs(&topic))),
                Err((e, msg)) => base
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(msg))),
            });
        }
        CreateTopicsResponse::default().with_topics(results)
    }

    /// Creates the topic, or with validate_only describes it as it would be made.
    async fn create_or_validate(&self, new: NewTopic) -> Result<Arc<Topic>, TopicError> {
        if !new.validate_only {
            return self.create(new).await;
        }
        let overrides = new.overrides.clone();
        let name = new.name.clone();
        let replicas = match self
            .cluster
            .call(ControllerRequest::CreateTopic(new), ADMIN_TIMEOUT)
            .await?
        {
            ControllerReply::Validated { replicas } => replicas,
            ControllerReply::Failed(e) => return Err(e),
            other => {
                return Err(TopicError::NotController(format!(
                    "unexpected controller answer {other:?}"
                )))
            }
        };
        let config = self
            .config
            .log
            .with_overrides(&overrides)
            .map_err(TopicError::InvalidConfig)?;
        Ok(Arc::new(Topic {
            internal: name.starts_with("__"),
            name,
            id: Uuid::nil(),
            partitions: replicas
                .into_iter()
                .map(PartitionRegistration::new)
                .collect(),
            overrides,
            config,
        }))
    }

    pub async fn delete_topics(
        &self,
        req: DeleteTopicsRequest,
        _version: i16,
    ) -> DeleteTopicsResponse {
        // v0–v5 name topics in `topic_names`; v6 in `topics`, by name or by id.
        let mut targets: Vec<(Option<String>, Uuid)> = req
            .topic_names
            .iter()
            .map(|n| (Some(n.0.to_string()), Uuid::nil()))
            .collect();
        targets.extend(
            req.topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)),
        );
        let too_many = !self.within_record_budget(targets.len() as u64);
        let mut responses = Vec::with_capacity(targets.len());
        for (name, id) in targets {
            let name = name.or_else(|| self.metadata.by_id(id).map(|t| t.name.clone()));
            let result = DeletableTopicResult::default()
                .with_name(name.as_deref().map(topic_name))
                .with_topic_id(id);
            if too_many {
                responses.push(
                    result
                        .with_error_code(ResponseError::PolicyViolation.code())
                        .with_error_message(Some(StrBytes::from_static_str(TOO_LARGE_BATCH))),
                );
                continue;
            }
            let Some(name) = name else {
                responses.push(result.with_error_code(ResponseError::UnknownTopicId.code()));
                continue;
            };
            let topic_id = self.metadata.get(&name).map_or(id, |t| t.id);
            responses.push(match self.delete_topic(&name).await {
                Ok(()) => result.with_topic_id(topic_id),
                Err(e) => result
                    .with_error_code(errors::topic_error(&e).code())
                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            });
        }
        DeleteTopicsResponse::default().with_responses(responses)
    }
}
