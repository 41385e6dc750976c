//! DescribeQuorum (KRaft's API 55): the metadata quorum's leader, epoch, high watermark and each
//! voter's progress, asked of the active controller wherever the request arrives, so
//! `kafka-metadata-quorum --bootstrap-server` works against any broker.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;

use super::{topic_name, Broker};
use crate::cluster::rpc::{ControllerReply, ControllerRequest};
use crate::log::manager::METADATA_LOG_DIR;

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Broker {
    pub async fn describe_quorum(
        &self,
        _req: DescribeQuorumRequest,
        _version: i16,
    ) -> DescribeQuorumResponse {
        let state = match self
            .cluster
            .call(ControllerRequest::DescribeQuorum, TIMEOUT)
            .await
        {
            Ok(ControllerReply::Quorum(q)) => q,
            _ => {
                return DescribeQuorumResponse::default()
                    .with_error_code(ResponseError::NotLeaderOrFollower.code())
            }
        };
        let topic = METADATA_LOG_DIR.trim_end_matches("-0");
        let voters = state
            .voters
            .iter()
            .map(|v| {
                ReplicaState::default()
                    .with_replica_id(BrokerId(v.id))
                    .with_log_end_offset(v.log_end_offset)
                    .with_last_fetch_timestamp(v.last_caught_up_timestamp)
                    .with_last_caught_up_timestamp(v.last_caught_up_timestamp)
            })
            .collect();
        let nodes = state
            .voters
            .iter()
            .filter_map(|v| {
                let (host, port) = v.endpoint.rsplit_once(':')?;
                Some(Node::default().with_node_id(BrokerId(v.id)).with_listeners(
                    vec![Listener::default()
                            .with_name(StrBytes::from_static_str("CONTROLLER"))
                            .with_host(StrBytes::from_string(host.to_string()))
                            .with_port(port.parse().ok()?)],
                ))
            })
            .collect();
        DescribeQuorumResponse::default()
            .with_topics(vec![TopicData::default()
                .with_topic_name(topic_name(topic))
                .with_partitions(vec![PartitionData::default()
                    .with_leader_id(BrokerId(state.leader))
                    .with_leader_epoch(state.epoch)
                    .with_high_watermark(state.high_watermark)
                    .with_current_voters(voters)])])
            .with_nodes(nodes)
    }
}
