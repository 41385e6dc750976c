//! Metadata: the live brokers, the cluster id, the active controller, and topics with each
//! partition's leader, epoch, replicas and ISR, from this broker's image. Auto-creates
//! requested topics (through the controller) when allowed.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{broker_ids, topic_name, Broker};
use crate::metadata::{PartitionRegistration, Topic, TopicError};
use crate::protocol::errors;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

impl Broker {
    /// Brokers are listed with their endpoints on `listener`, the listener the request
    /// arrived on, as Kafka answers.
    pub async fn metadata(
        &self,
        req: MetadataRequest,
        version: i16,
        listener: &str,
    ) -> MetadataResponse {
        let allow_create =
            self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let topics = match req.topics {
            // v0 sends an empty list for "all topics"; v1+ sends null.
            None => self
                .metadata
                .list()
                .iter()
                .map(|t| self.describe(t))
                .collect(),
            Some(list) if list.is_empty() && version == 0 => self
                .metadata
                .list()
                .iter()
                .map(|t| self.describe(t))
                .collect(),
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for rt in list {
                    out.push(match rt.name {
                        Some(name) => self.lookup_or_create(&name.0, allow_create).await,
                        None => match self.metadata.by_id(rt.topic_id) {
                            Some(t) => self.describe(&t),
                            None => MetadataResponseTopic::default()
                                .with_topic_id(rt.topic_id)
                                .with_error_code(ResponseError::UnknownTopicId.code()),
                        },
                    });
                }
                out
            }
        };
        let brokers = self
            .metadata
            .image()
            .live_brokers()
            .filter_map(|b| {
                let at = b.endpoint(listener)?;
                Some(
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.id))
                        .with_host(StrBytes::from_string(at.host.clone()))
                        .with_port(at.port)
                        .with_rack(b.rack.clone().map(StrBytes::from_string)),
                )
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_string(self.config.cluster_id.clone())))
            .with_controller_id(self.controller_id())
            .with_topics(topics)
            .with_cluster_authorized_operations(OPERATIONS_OMITTED)
    }

    async fn lookup_or_create(&self, name: &str, allow_create: bool) -> MetadataResponseTopic {
        let failed = |e: ResponseError| {
            MetadataResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(Uuid::nil())
                .with_error_code(e.code())
        };
        if let Some(t) = self.metadata.get(name) {
            return self.describe(&t);
        }
        if !allow_create {
            return failed(ResponseError::UnknownTopicOrPartition);
        }
        match self
            .create_topic(name, self.config.num_partitions, BTreeMap::new())
            .await
        {
            Ok(t) => self.describe(&t),
            // Another request created it first.
            Err(TopicError::AlreadyExists(_)) => self.metadata.get(name).map_or_else(
                || failed(ResponseError::UnknownTopicOrPartition),
                |t| self.describe(&t),
            ),
            Err(e) => failed(errors::topic_error(&e)),
        }
    }

    pub(crate) fn describe(&self, t: &Topic) -> MetadataResponseTopic {
        let me = self.config.node_id;
        let partitions = t
            .partitions
            .iter()
            .enumerate()
            .map(|(p, reg)| {
                // A replica here whose log directory failed is offline.
                let failed_here = reg.replicas.contains(&me) && self.logs.is_failed();
                let error = if reg.leader == PartitionRegistration::NO_LEADER {
                    ResponseError::LeaderNotAvailable.code()
                } else if failed_here && reg.leader == me {
                    ResponseError::KafkaStorageError.code()
                } else {
                    0
                };
                let offline: Vec<i32> = if failed_here { vec![me] } else { vec![] };
                MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(p as i32)
                    .with_leader_id(BrokerId(reg.leader))
                    .with_leader_epoch(reg.leader_epoch)
                    .with_replica_nodes(broker_ids(&reg.replicas))
                    .with_isr_nodes(broker_ids(
                        &reg.isr
                            .iter()
                            .copied()
                            .filter(|r| !offline.contains(r))
                            .collect::<Vec<_>>(),
                    ))
                    .with_offline_replicas(broker_ids(&offline))
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(&t.name)))
            .with_topic_id(t.id)
            .with_is_internal(t.internal)
            .with_partitions(partitions)
            .with_topic_authorized_operations(OPERATIONS_OMITTED)
    }
}
