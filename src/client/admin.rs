//! Group administration for `runnel groups`: list, describe (members, assignments, committed
//! and end offsets, lag) and delete, over the wire like kafka-consumer-groups.

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

fn error_name(code: i16) -> String {
    ResponseError::try_from_code(code).map_or_else(|| format!("error {code}"), |e| format!("{e:?}"))
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
    let ends = end_offsets(&mut conn, &keys).await?;
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

async fn end_offsets(
    conn: &mut Connection,
    partitions: &[(String, i32)],
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    let mut out = BTreeMap::new();
    if partitions.is_empty() {
        return Ok(out);
    }
    for t in conn.send(req).await?.topics {
        for p in t.partitions {
            if p.error_code == 0 {
                out.insert((t.name.to_string(), p.partition_index), p.offset);
            }
        }
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
