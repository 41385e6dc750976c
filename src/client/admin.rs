//! Administration over the wire for the CLI: groups (list, describe with offsets and lag,
//! delete, like kafka-consumer-groups), topics and configs (like kafka-topics and
//! kafka-configs), and the metadata quorum (like kafka-metadata-quorum).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use bytes::Buf;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::consumer::find_coordinator;
use super::Connection;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// An error code with the broker's message as an error, or Ok for 0.
fn check(code: i16, message: Option<&str>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    bail!("{}: {}", error_name(code), message.unwrap_or_default())
}

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
}

/// The metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone)]
pub struct Quorum {
    pub cluster_id: String,
    pub leader: i32,
    pub epoch: i32,
    pub high_watermark: i64,
    /// (id, log end offset, last caught-up timestamp ms or -1).
    pub voters: Vec<(i32, i64, i64)>,
}

pub async fn describe_quorum(bootstrap: &str) -> anyhow::Result<Quorum> {
    let mut conn = Connection::connect(bootstrap).await?;
    let cluster_id = conn
        .send(MetadataRequest::default().with_topics(Some(vec![])))
        .await?
        .cluster_id
        .map(|c| c.to_string())
        .unwrap_or_default();
    let resp = conn.send(DescribeQuorumRequest::default()).await?;
    check(resp.error_code, resp.error_message.as_deref())?;
    let p = resp
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| anyhow!("DescribeQuorum answered no partition"))?;
    check(p.error_code, p.error_message.as_deref())?;
    Ok(Quorum {
        cluster_id,
        leader: p.leader_id.0,
        epoch: p.leader_epoch,
        high_watermark: p.high_watermark,
        voters: p
            .current_voters
            .iter()
            .map(|v| (v.replica_id.0, v.log_end_offset, v.last_caught_up_timestamp))
            .collect(),
    })
}

#[derive(Debug, Clone)]
pub struct GroupListing {
    pub id: String,
    pub protocol_type: String,
    pub state: String,
}

pub async fn list_groups(bootstrap: &str) -> anyhow::Result<Vec<GroupListing>> {
    let mut conn = Connection::connect(bootstrap).await?;
    let resp = conn.send(ListGroupsRequest::default()).await?;
    if resp.error_code != 0 {
        bail!("ListGroups: {}", error_name(resp.error_code));
    }
    let mut out: Vec<GroupListing> = resp
        .groups
        .into_iter()
        .map(|g| GroupListing {
            id: g.group_id.to_string(),
            protocol_type: g.protocol_type.to_string(),
            state: g.group_state.to_string(),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// One partition of a group's description.
#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub end: Option<i64>,
    /// The member consuming it, if any: (member id, client id, host).
    pub owner: Option<(String, String, String)>,
}

impl PartitionLag {
    pub fn lag(&self) -> Option<i64> {
        Some((self.end? - self.committed?).max(0))
    }
}

#[derive(Debug, Clone)]
pub struct GroupDetails {
    pub id: String,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: usize,
    pub partitions: Vec<PartitionLag>,
}

pub async fn describe_group(bootstrap: &str, group: &str) -> anyhow::Result<GroupDetails> {
    let mut conn = Connection::connect(bootstrap).await?;
    let mut coord = find_coordinator(&mut conn, group).await?;
    let resp = coord
        .send(DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]))
        .await?;
    let d = resp
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no description of {group}"))?;
    if d.error_code == ResponseError::GroupIdNotFound.code() || d.group_state.as_str() == "Dead" {
        bail!("group {group} does not exist");
    }
    if d.error_code != 0 {
        bail!("DescribeGroups: {}", error_name(d.error_code));
    }
    // (topic, partition) → owner, from the consumer-protocol assignments.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &d.members {
        let mut b = m.member_assignment.clone();
        if d.protocol_type.as_str() != "consumer" || b.remaining() < 2 {
            continue;
        }
        let version = b.get_i16().clamp(0, 3);
        let Ok(a) = ConsumerProtocolAssignment::decode(&mut b, version) else {
            continue;
        };
        for t in a.assigned_partitions {
            for p in t.partitions {
                owners.insert(
                    (t.topic.to_string(), p),
                    (
                        m.member_id.to_string(),
                        m.client_id.to_string(),
                        m.client_host.to_string(),
                    ),
                );
            }
        }
    }
    let v = coord.version::<OffsetFetchRequest>()?;
    let req = if v >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None)
    };
    let offsets = coord.send_version(req, v).await?;
    let mut committed: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for t in offsets.topics {
        for p in t.partitions {
            committed.insert((t.name.to_string(), p.partition_index), p.committed_offset);
        }
    }
    for g in offsets.groups {
        for t in g.topics {
            for p in t.partitions {
                committed.insert((t.name.to_string(), p.partition_index), p.committed_offset);
            }
        }
    }
    let mut keys: Vec<(String, i32)> = committed.keys().cloned().collect();
    keys.extend(owners.keys().cloned());
    keys.sort();
    keys.dedup();
    let ends: BTreeMap<(String, i32), i64> = list_offsets(bootstrap, &keys, -1)
        .await?
        .into_iter()
        .filter_map(|(k, r)| r.ok().map(|(o, _)| (k, o)))
        .collect();
    let partitions = keys
        .into_iter()
        .map(|k| PartitionLag {
            topic: k.0.clone(),
            partition: k.1,
            committed: committed.get(&k).copied().filter(|o| *o >= 0),
            end: ends.get(&k).copied(),
            owner: owners.get(&k).cloned(),
        })
        .collect();
    Ok(GroupDetails {
        id: group.to_string(),
        state: d.group_state.to_string(),
        protocol_type: d.protocol_type.to_string(),
        protocol: d.protocol_data.to_string(),
        members: d.members.len(),
        partitions,
    })
}

/// Where each partition's replicas are, as Metadata names them.
struct Placement {
    /// Broker id → `host:port`.
    brokers: BTreeMap<i32, String>,
    /// (topic, partition) → (leader, replicas).
    partitions: BTreeMap<(String, i32), (i32, Vec<i32>)>,
}

async fn placement(bootstrap: &str, partitions: &[(String, i32)]) -> anyhow::Result<Placement> {
    let mut conn = Connection::connect(bootstrap).await?;
    let mut topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    topics.dedup();
    let md = conn
        .send(
            MetadataRequest::default()
                .with_topics(Some(
                    topics
                        .iter()
                        .map(|t| {
                            metadata_request::MetadataRequestTopic::default()
                                .with_name(Some(TopicName(s(t))))
                        })
                        .collect(),
                ))
                .with_allow_auto_topic_creation(false),
        )
        .await?;
    Ok(Placement {
        brokers: md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect(),
        partitions: md
            .topics
            .iter()
            .flat_map(|t| {
                let name = t.name.as_ref().map_or_else(String::new, |n| n.to_string());
                t.partitions.iter().map(move |p| {
                    let replicas = p.replica_nodes.iter().map(|r| r.0).collect();
                    ((name.clone(), p.partition_index), (p.leader_id.0, replicas))
                })
            })
            .collect(),
    })
}

/// One ListOffsets per broker for the partitions asked of it, as `replica_id` (-1 a consumer,
/// -2 Kafka's debugging id, which any replica answers with its own log): (offset, timestamp)
/// or the error, per partition; an unreachable broker fails its partitions only.
async fn list_offsets_at(
    placement: &Placement,
    asked: BTreeMap<i32, Vec<(String, i32)>>,
    replica_id: i32,
    timestamp: i64,
) -> BTreeMap<(i32, String, i32), Result<(i64, i64), String>> {
    let mut out = BTreeMap::new();
    for (broker, partitions) in asked {
        let Some(addr) = placement.brokers.get(&broker) else {
            for (t, p) in partitions {
                out.insert((broker, t, p), Err(format!("broker {broker} is not live")));
            }
            continue;
        };
        let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (t, p) in &partitions {
            topics.entry(t).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_timestamp(timestamp),
            );
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(replica_id))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(TopicName(s(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let answer = match Connection::connect(addr).await {
            Ok(mut c) => c.send(req).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(resp) => {
                for t in resp.topics {
                    for p in t.partitions {
                        let found = match p.error_code {
                            0 => Ok((p.offset, p.timestamp)),
                            code => Err(error_name(code)),
                        };
                        out.insert((broker, t.name.to_string(), p.partition_index), found);
                    }
                }
            }
            Err(e) => {
                for (t, p) in partitions {
                    out.insert((broker, t, p), Err(format!("broker {broker}: {e}")));
                }
            }
        }
    }
    out
}

/// ListOffsets for `partitions` at `timestamp` (-2 earliest, -1 latest: the high watermark),
/// each asked of its partition's leader as Metadata names it: (offset, timestamp) or the
/// error that partition got.
pub async fn list_offsets(
    bootstrap: &str,
    partitions: &[(String, i32)],
    timestamp: i64,
) -> anyhow::Result<BTreeMap<(String, i32), Result<(i64, i64), String>>> {
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let placement = placement(bootstrap, partitions).await?;
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for key in partitions {
        match placement.partitions.get(key).map(|(l, _)| *l) {
            Some(l) if placement.brokers.contains_key(&l) => {
                by_leader.entry(l).or_default().push(key.clone())
            }
            _ => {
                out.insert(key.clone(), Err("no leader".to_string()));
            }
        }
    }
    for ((_, t, p), found) in list_offsets_at(&placement, by_leader, -1, timestamp).await {
        out.insert((t, p), found);
    }
    Ok(out)
}

/// Each replica's own log end offset, asked of the replica itself (ListOffsets latest with
/// Kafka's debugging replica id): (topic, partition) → broker → log end or error.
pub async fn replica_log_ends(
    bootstrap: &str,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), BTreeMap<i32, Result<i64, String>>>> {
    let mut out: BTreeMap<(String, i32), BTreeMap<i32, Result<i64, String>>> = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    let placement = placement(bootstrap, partitions).await?;
    let mut by_replica: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for key in partitions {
        for r in placement.partitions.get(key).map_or(&[][..], |(_, r)| r) {
            by_replica.entry(*r).or_default().push(key.clone());
        }
    }
    for ((broker, t, p), found) in list_offsets_at(&placement, by_replica, -2, -1).await {
        out.entry((t, p))
            .or_default()
            .insert(broker, found.map(|(o, _)| o));
    }
    Ok(out)
}

pub async fn delete_group(bootstrap: &str, group: &str) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap).await?;
    let mut coord = find_coordinator(&mut conn, group).await?;
    let resp = coord
        .send(DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(group))]))
        .await?;
    for r in resp.results {
        if r.error_code != 0 {
            bail!("DeleteGroups {group}: {}", error_name(r.error_code));
        }
    }
    Ok(())
}

/// A topic as `runnel topics describe` shows it (Metadata + DescribeConfigs).
#[derive(Debug, Clone)]
pub struct TopicDetails {
    pub name: String,
    pub id: String,
    pub internal: bool,
    /// (partition, leader, replicas, isr)
    pub partitions: Vec<(i32, i32, Vec<i32>, Vec<i32>)>,
    pub configs: Vec<ConfigValue>,
}

#[derive(Debug, Clone)]
pub struct ConfigValue {
    pub name: String,
    pub value: Option<String>,
    pub source: &'static str,
    pub read_only: bool,
}

/// A topic id as Kafka prints it: URL-safe base64 of the 16 bytes, without padding.
pub fn kafka_uuid(id: &uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        _ => "UNKNOWN",
    }
}

/// Every topic: (name, partitions, internal).
pub async fn list_topics(bootstrap: &str) -> anyhow::Result<Vec<(String, usize, bool)>> {
    let mut conn = Connection::connect(bootstrap).await?;
    let resp = conn
        .send(MetadataRequest::default().with_topics(None))
        .await?;
    let mut out: Vec<(String, usize, bool)> = resp
        .topics
        .into_iter()
        .filter_map(|t| Some((t.name?.to_string(), t.partitions.len(), t.is_internal)))
        .collect();
    out.sort();
    Ok(out)
}

pub async fn create_topic(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap).await?;
    let topic = create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s(k))
                        .with_value(Some(s(v)))
                })
                .collect(),
        );
    let resp = conn
        .send(
            CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(30_000),
        )
        .await?;
    for t in resp.topics {
        check(t.error_code, t.error_message.as_deref())?;
    }
    Ok(())
}

pub async fn delete_topic(bootstrap: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap).await?;
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![TopicName(s(name))])
        .with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(TopicName(s(name))))
        ])
        .with_timeout_ms(30_000);
    let v = conn.version::<DeleteTopicsRequest>()?;
    let req = if v >= 6 {
        req.with_topic_names(vec![])
    } else {
        req.with_topics(vec![])
    };
    let resp = conn.send_version(req, v).await?;
    for r in resp.responses {
        check(r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}

pub async fn add_partitions(bootstrap: &str, name: &str, count: i32) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap).await?;
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s(name)))
                .with_count(count)
                .with_assignments(None),
        ])
        .with_timeout_ms(30_000);
    for r in conn.send(req).await?.results {
        check(r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}

/// DescribeConfigs of a topic (resource type 2) or a broker (4).
pub async fn describe_configs(
    bootstrap: &str,
    resource_type: i8,
    name: &str,
) -> anyhow::Result<Vec<ConfigValue>> {
    let mut conn = Connection::connect(bootstrap).await?;
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configuration_keys(None),
    ]);
    let resp = conn.send(req).await?;
    let r = resp
        .results
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no answer for {name}"))?;
    check(r.error_code, r.error_message.as_deref())?;
    Ok(r.configs
        .into_iter()
        .map(|c| ConfigValue {
            name: c.name.to_string(),
            value: c.value.map(|v| v.to_string()),
            source: source_name(c.config_source),
            read_only: c.read_only,
        })
        .collect())
}

/// IncrementalAlterConfigs on a topic: `set` (SET) and `delete` (DELETE).
pub async fn alter_topic_configs(
    bootstrap: &str,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    let mut conn = Connection::connect(bootstrap).await?;
    let mut configs: Vec<incremental_alter_configs_request::AlterableConfig> = set
        .iter()
        .map(|(k, v)| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(k))
                .with_config_operation(0)
                .with_value(Some(s(v)))
        })
        .collect();
    configs.extend(delete.iter().map(|k| {
        incremental_alter_configs_request::AlterableConfig::default()
            .with_name(s(k))
            .with_config_operation(1)
    }));
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(s(topic))
            .with_configs(configs),
    ]);
    for r in conn.send(req).await?.responses {
        check(r.error_code, r.error_message.as_deref())?;
    }
    Ok(())
}

pub async fn describe_topic(bootstrap: &str, name: &str) -> anyhow::Result<TopicDetails> {
    let mut conn = Connection::connect(bootstrap).await?;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(s(name))))]))
        .with_allow_auto_topic_creation(false);
    let t = conn
        .send(req)
        .await?
        .topics
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no metadata for {name}"))?;
    if t.error_code != 0 {
        bail!("topic {name}: {}", error_name(t.error_code));
    }
    let mut partitions: Vec<(i32, i32, Vec<i32>, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.leader_id.0,
                p.replica_nodes.iter().map(|b| b.0).collect(),
                p.isr_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    partitions.sort();
    let configs = describe_configs(bootstrap, 2, name).await?;
    Ok(TopicDetails {
        name: name.to_string(),
        id: kafka_uuid(&t.topic_id),
        internal: t.is_internal,
        partitions,
        configs,
    })
}

/// ListOffsets for every partition of `topic` at `timestamp` (-2 earliest, -1 latest, -3 max
/// timestamp, else milliseconds): (partition, offset, timestamp).
pub async fn offsets(
    bootstrap: &str,
    topic: &str,
    timestamp: i64,
) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let details = describe_topic(bootstrap, topic).await?;
    let keys: Vec<(String, i32)> = details
        .partitions
        .iter()
        .map(|(p, ..)| (topic.to_string(), *p))
        .collect();
    let mut out = Vec::new();
    for ((_, p), found) in list_offsets(bootstrap, &keys, timestamp).await? {
        let (offset, ts) = found.map_err(|e| anyhow!("partition {p}: {e}"))?;
        out.push((p, offset, ts));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn topic_ids_print_as_kafka_does() {
        // Kafka's Uuid.toString of 7e698584-d339-415e-b224-933e2c7cdf66.
        let id = uuid::Uuid::parse_str("7e698584-d339-415e-b224-933e2c7cdf66").expect("uuid");
        assert_eq!(super::kafka_uuid(&id), "fmmFhNM5QV6yJJM-LHzfZg");
    }
}
