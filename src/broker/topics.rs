//! CreateTopics and DeleteTopics.

use std::collections::{BTreeMap, HashSet};

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
use super::{topic_name, Broker};
use crate::log::config::topic_keys;
use crate::metadata::Topic;
use crate::protocol::errors;

type Failure = (ResponseError, String);

fn fail(e: ResponseError, msg: impl Into<String>) -> Failure {
    (e, msg.into())
}

impl Broker {
    /// Checks one CreatableTopic and returns (partitions, overrides).
    fn creatable(&self, t: &CreatableTopic) -> Result<(i32, BTreeMap<String, String>), Failure> {
        let brokers = 1;
        let partitions = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                return Err(fail(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
            }
            let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
            indexes.sort_unstable();
            if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
                return Err(fail(
                    ResponseError::InvalidReplicaAssignment,
                    "Partitions must be numbered 0 to N-1 without gaps.",
                ));
            }
            for a in &t.assignments {
                if a.broker_ids.iter().any(|b| *b != self.node_id()) || a.broker_ids.is_empty() {
                    return Err(fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "Invalid replica assignment for partition {}: only broker {} exists.",
                            a.partition_index, self.config.node_id
                        ),
                    ));
                }
                if a.broker_ids.len() > brokers {
                    return Err(fail(
                        ResponseError::InvalidReplicationFactor,
                        format!(
                            "Replication factor: {} larger than available brokers: {brokers}.",
                            a.broker_ids.len()
                        ),
                    ));
                }
            }
            t.assignments.len() as i32
        } else {
            let rf = if t.replication_factor == -1 {
                self.config.default_replication_factor
            } else {
                t.replication_factor
            };
            if rf < 1 {
                return Err(fail(
                    ResponseError::InvalidReplicationFactor,
                    "Replication factor must be larger than 0.",
                ));
            }
            if rf as usize > brokers {
                return Err(fail(
                    ResponseError::InvalidReplicationFactor,
                    format!("Replication factor: {rf} larger than available brokers: {brokers}."),
                ));
            }
            if t.num_partitions == -1 {
                self.config.num_partitions
            } else {
                t.num_partitions
            }
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
        Ok((partitions, overrides))
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

    pub fn create_topics(&self, req: CreateTopicsRequest, _version: i16) -> CreateTopicsResponse {
        let mut seen = HashSet::new();
        let duplicates: HashSet<String> = req
            .topics
            .iter()
            .filter(|t| !seen.insert(t.name.0.to_string()))
            .map(|t| t.name.0.to_string())
            .collect();
        let results = req
            .topics
            .iter()
            .map(|t| {
                let name = t.name.0.to_string();
                let base = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
                let outcome = if duplicates.contains(&name) {
                    Err(fail(
                        ResponseError::InvalidRequest,
                        format!(
                            "Create topics request from client contains duplicate topic {name}"
                        ),
                    ))
                } else {
                    self.creatable(t).and_then(|(partitions, overrides)| {
                        let made = if req.validate_only {
                            self.topics
                                .prepare(&name, partitions, overrides)
                                .map(std::sync::Arc::new)
                        } else {
                            self.create_topic(&name, partitions, overrides)
                        };
                        made.map_err(|e| (errors::topic_error(&e), e.to_string()))
                    })
                };
                match outcome {
                    Ok(topic) => base
                        .with_topic_id(if req.validate_only {
                            Uuid::nil()
                        } else {
                            topic.id
                        })
                        .with_num_partitions(topic.partitions)
                        .with_replication_factor(1)
                        .with_configs(Some(Self::topic_configs(&topic))),
                    Err((e, msg)) => base
                        .with_error_code(e.code())
                        .with_error_message(Some(StrBytes::from_string(msg))),
                }
            })
            .collect();
        CreateTopicsResponse::default().with_topics(results)
    }

    pub fn delete_topics(&self, req: DeleteTopicsRequest, _version: i16) -> DeleteTopicsResponse {
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
        let responses = targets
            .into_iter()
            .map(|(name, id)| {
                let name = name.or_else(|| self.topics.by_id(id).map(|t| t.name.clone()));
                let result = DeletableTopicResult::default()
                    .with_name(name.as_deref().map(topic_name))
                    .with_topic_id(id);
                let Some(name) = name else {
                    return result.with_error_code(ResponseError::UnknownTopicId.code());
                };
                match self.delete_topic(&name) {
                    Ok(t) => result.with_topic_id(t.id),
                    Err(e) => result
                        .with_error_code(errors::topic_error(&e).code())
                        .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                }
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }
}
