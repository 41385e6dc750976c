//! Metadata: this broker, the cluster id, and topics with their partitions (leader, replicas and
//! ISR are all this broker). Auto-creates requested topics when allowed.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{topic_name, Broker, LEADER_EPOCH};
use crate::metadata::{Topic, TopicError};
use crate::protocol::errors;

/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

impl Broker {
    pub fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let allow_create =
            self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let topics = match req.topics {
            // v0 sends an empty list for "all topics"; v1+ sends null.
            None => self
                .topics
                .list()
                .iter()
                .map(|t| self.describe(t))
                .collect(),
            Some(list) if list.is_empty() && version == 0 => self
                .topics
                .list()
                .iter()
                .map(|t| self.describe(t))
                .collect(),
            Some(list) => list
                .into_iter()
                .map(|rt| match rt.name {
                    Some(name) => self.lookup_or_create(&name.0, allow_create),
                    None => match self.topics.by_id(rt.topic_id) {
                        Some(t) => self.describe(&t),
                        None => MetadataResponseTopic::default()
                            .with_topic_id(rt.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    },
                })
                .collect(),
        };
        let me = MetadataResponseBroker::default()
            .with_node_id(self.node_id())
            .with_host(StrBytes::from_string(self.config.advertised_host.clone()))
            .with_port(self.config.advertised_port);
        MetadataResponse::default()
            .with_brokers(vec![me])
            .with_cluster_id(Some(StrBytes::from_string(self.config.cluster_id.clone())))
            .with_controller_id(self.node_id())
            .with_topics(topics)
            .with_cluster_authorized_operations(OPERATIONS_OMITTED)
    }

    fn lookup_or_create(&self, name: &str, allow_create: bool) -> MetadataResponseTopic {
        let failed = |e: ResponseError| {
            MetadataResponseTopic::default()
                .with_name(Some(topic_name(name)))
                .with_topic_id(Uuid::nil())
                .with_error_code(e.code())
        };
        if let Some(t) = self.topics.get(name) {
            return self.describe(&t);
        }
        if !allow_create {
            return failed(ResponseError::UnknownTopicOrPartition);
        }
        match self.create_topic(name, self.config.num_partitions, BTreeMap::new()) {
            Ok(t) => self.describe(&t),
            // Another request created it first.
            Err(TopicError::AlreadyExists(_)) => self.topics.get(name).map_or_else(
                || failed(ResponseError::UnknownTopicOrPartition),
                |t| self.describe(&t),
            ),
            Err(e) => failed(errors::topic_error(&e)),
        }
    }

    pub(crate) fn describe(&self, t: &Topic) -> MetadataResponseTopic {
        let me = self.node_id();
        let partitions = (0..t.partitions)
            .map(|p| {
                let available = self.partition_log(&t.name, p).is_some() && !self.logs.is_failed();
                MetadataResponsePartition::default()
                    .with_error_code(if available {
                        0
                    } else {
                        ResponseError::KafkaStorageError.code()
                    })
                    .with_partition_index(p)
                    .with_leader_id(me)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![me])
                    .with_isr_nodes(if available { vec![me] } else { vec![] })
                    .with_offline_replicas(if available { vec![] } else { vec![me] })
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
