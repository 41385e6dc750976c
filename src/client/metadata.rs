//! What the client's commands share about a topic's metadata: its partitions and their
//! leaders, and which errors mean a leader moved. Never keeps state between calls.

use std::collections::{BTreeMap, HashMap};

use anyhow::{anyhow, bail};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Connection;

pub fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub fn check(code: i16, what: &str) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    let e = ResponseError::try_from_code(code)
        .map_or_else(|| format!("error {code}"), |e| format!("{e:?}"));
    bail!("{what}: {e}")
}

/// One topic as the metadata describes it.
pub struct TopicInfo {
    pub id: uuid::Uuid,
    pub partitions: Vec<i32>,
    /// Partition → its leader's `host:port` (absent while it has none).
    pub leaders: BTreeMap<i32, String>,
}

/// `topic`'s metadata; `create` asks the broker to auto-create it (as producers do).
pub async fn topic_info(
    conn: &mut Connection,
    topic: &str,
    create: bool,
) -> anyhow::Result<TopicInfo> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
        ]))
        .with_allow_auto_topic_creation(create);
    let resp = conn.send(req).await?;
    let t = resp
        .topics
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no metadata for {topic}"))?;
    check(t.error_code, &format!("topic {topic}"))?;
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    let brokers: HashMap<i32, String> = resp
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
        .collect();
    let leaders = t
        .partitions
        .iter()
        .filter_map(|p| Some((p.partition_index, brokers.get(&p.leader_id.0)?.clone())))
        .collect();
    Ok(TopicInfo {
        id: t.topic_id,
        partitions,
        leaders,
    })
}

/// Errors after which a partition's leader must be looked up again.
pub fn leader_moved(code: i16) -> bool {
    [
        ResponseError::NotLeaderOrFollower,
        ResponseError::LeaderNotAvailable,
        ResponseError::FencedLeaderEpoch,
        ResponseError::UnknownLeaderEpoch,
        ResponseError::UnknownTopicOrPartition,
    ]
    .iter()
    .any(|e| e.code() == code)
}
