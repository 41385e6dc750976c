//! Group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups,
//! DescribeGroups, DeleteGroups. Translation between the wire types and the coordinator.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Broker, Client};
use crate::group::classic_group::{JoinRequest, SyncRequest};
use crate::group::store::{self, OFFSETS_TOPIC};
use crate::group::GroupError;
use crate::protocol::errors;

/// FindCoordinator key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;
/// Kafka's "authorized operations not requested" marker.
const OPERATIONS_OMITTED: i32 = i32::MIN;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn opt(v: &Option<StrBytes>) -> Option<String> {
    v.as_ref().map(|x| x.to_string())
}

impl Broker {
    /// The broker coordinating `key`: for a group, the leader of its `__consumer_offsets`
    /// partition (the topic is created at the first lookup, as Kafka does).
    async fn coordinator_for(
        &self,
        key_type: i8,
        key: &str,
        listener: &str,
    ) -> Result<(BrokerId, StrBytes, i32), ResponseError> {
        match key_type {
            KEY_TYPE_GROUP => {
                self.ensure_offsets_topic().await.map_err(|e| {
                    tracing::warn!(error = %e, "cannot create the offsets topic");
                    ResponseError::CoordinatorNotAvailable
                })?;
                let image = self.metadata.image();
                let partitions = image
                    .topic(OFFSETS_TOPIC)
                    .map_or(0, |t| t.partition_count());
                let p = store::partition_for(key, partitions);
                let leader = image
                    .partition(OFFSETS_TOPIC, p)
                    .and_then(|r| image.live_broker(r.leader))
                    .ok_or(ResponseError::CoordinatorNotAvailable)?;
                let at = leader
                    .endpoint(listener)
                    .ok_or(ResponseError::CoordinatorNotAvailable)?;
                Ok((BrokerId(leader.id), s(&at.host), at.port))
            }
            // Transactions are answered by InitProducerId (not supported yet), not here.
            KEY_TYPE_TRANSACTION => {
                let at = self
                    .config
                    .listeners
                    .find(listener)
                    .ok_or(ResponseError::CoordinatorNotAvailable)?;
                Ok((self.node_id(), s(&at.advertised_host), at.advertised_port))
            }
            _ => Err(ResponseError::InvalidRequest),
        }
    }

    pub async fn find_coordinator(
        &self,
        req: FindCoordinatorRequest,
        version: i16,
        listener: &str,
    ) -> FindCoordinatorResponse {
        if version >= 4 {
            let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
            for key in &req.coordinator_keys {
                let c = Coordinator::default().with_key(key.clone());
                coordinators.push(
                    match self.coordinator_for(req.key_type, key, listener).await {
                        Ok((id, host, port)) => c.with_node_id(id).with_host(host).with_port(port),
                        Err(e) => c
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(e.code()),
                    },
                );
            }
            return FindCoordinatorResponse::default().with_coordinators(coordinators);
        }
        match self.coordinator_for(req.key_type, &req.key, listener).await {
            Ok((id, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(id)
                .with_host(host)
                .with_port(port),
            Err(e) => FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        }
    }

    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client: &Client,
    ) -> JoinGroupResponse {
        let member_id = req.member_id.to_string();
        let join = JoinRequest {
            member_id: member_id.clone(),
            instance_id: opt(&req.group_instance_id),
            client_id: client.id.clone(),
            client_host: client.host.clone(),
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: the session timeout serves for both.
            rebalance_timeout_ms: if version >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: version >= 4,
            supports_skip_assignment: version >= 9,
        };
        let blank_name = |n: Option<String>| match n {
            // Before v7 the protocol name is not nullable.
            None if version < 7 => Some(StrBytes::default()),
            n => n.map(StrBytes::from_string),
        };
        match self.groups.join(&req.group_id, join).await {
            Ok(r) => JoinGroupResponse::default()
                .with_generation_id(r.generation)
                .with_protocol_type(r.protocol_type.map(StrBytes::from_string))
                .with_protocol_name(blank_name(r.protocol_name))
                .with_leader(s(&r.leader))
                .with_skip_assignment(r.skip_assignment)
                .with_member_id(s(&r.member_id))
                .with_members(
                    r.members
                        .into_iter()
                        .map(|m| {
                            JoinGroupResponseMember::default()
                                .with_member_id(s(&m.member_id))
                                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                                .with_metadata(m.metadata)
                        })
                        .collect(),
                ),
            Err(e) => {
                let id = match &e {
                    GroupError::MemberIdRequired(id) => id.clone(),
                    _ => member_id,
                };
                JoinGroupResponse::default()
                    .with_error_code(errors::group_error(&e).code())
                    .with_generation_id(-1)
                    .with_protocol_name(blank_name(None))
                    .with_member_id(s(&id))
            }
        }
    }

    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let sync = SyncRequest {
            member_id: req.member_id.to_string(),
            instance_id: opt(&req.group_instance_id),
            generation: req.generation_id,
            protocol_type: opt(&req.protocol_type),
            protocol_name: opt(&req.protocol_name),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        match self.groups.sync(&req.group_id, sync).await {
            Ok(r) => {
                let resp = SyncGroupResponse::default().with_assignment(r.assignment);
                if version >= 5 {
                    resp.with_protocol_type(r.protocol_type.map(StrBytes::from_string))
                        .with_protocol_name(r.protocol_name.map(StrBytes::from_string))
                } else {
                    resp
                }
            }
            Err(e) => SyncGroupResponse::default().with_error_code(errors::group_error(&e).code()),
        }
    }

    pub fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let r = self.groups.heartbeat(
            &req.group_id,
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        );
        HeartbeatResponse::default()
            .with_error_code(errors::code(r.map_err(|e| errors::group_error(&e))))
    }

    pub fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        // v0–v2 name one member; v3+ a batch, possibly by group.instance.id.
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| (m.member_id.to_string(), opt(&m.group_instance_id)))
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        match self.groups.leave(&req.group_id, &leaving) {
            Err(e) => LeaveGroupResponse::default().with_error_code(errors::group_error(&e).code()),
            Ok(results) if version < 3 => {
                LeaveGroupResponse::default().with_error_code(errors::code(
                    results
                        .into_iter()
                        .next()
                        .unwrap_or(Ok(()))
                        .map_err(|e| errors::group_error(&e)),
                ))
            }
            Ok(results) => LeaveGroupResponse::default().with_members(
                leaving
                    .into_iter()
                    .zip(results)
                    .map(|((id, iid), r)| {
                        MemberResponse::default()
                            .with_member_id(s(&id))
                            .with_group_instance_id(iid.map(StrBytes::from_string))
                            .with_error_code(errors::code(r.map_err(|e| errors::group_error(&e))))
                    })
                    .collect(),
            ),
        }
    }

    pub fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let states: Vec<String> = req.states_filter.iter().map(|x| x.to_lowercase()).collect();
        let types: Vec<String> = req.types_filter.iter().map(|x| x.to_lowercase()).collect();
        let groups = self
            .groups
            .list()
            .into_iter()
            .filter(|g| states.is_empty() || states.contains(&g.state.name().to_lowercase()))
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|g| {
                let l = ListedGroup::default()
                    .with_group_id(GroupId(s(&g.id)))
                    .with_protocol_type(s(&g.protocol_type));
                let l = if version >= 4 {
                    l.with_group_state(s(g.state.name()))
                } else {
                    l
                };
                if version >= 5 {
                    l.with_group_type(s("classic"))
                } else {
                    l
                }
            })
            .collect();
        ListGroupsResponse::default().with_groups(groups)
    }

    pub fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let operations = if version >= 3 && req.include_authorized_operations {
            // Every group operation: READ, DESCRIBE, DELETE (no ACLs on this broker).
            (1 << 3) | (1 << 8) | (1 << 6)
        } else {
            OPERATIONS_OMITTED
        };
        let groups = req
            .groups
            .iter()
            .map(|id| {
                let base = DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_authorized_operations(operations);
                if id.is_empty() {
                    return base.with_error_code(ResponseError::InvalidGroupId.code());
                }
                if self.coordinator_ready().is_err() {
                    return base.with_error_code(ResponseError::CoordinatorNotAvailable.code());
                }
                let Some(d) = self.groups.describe(id) else {
                    // Kafka: a group that does not exist is described as Dead (v6: an error).
                    let base = base.with_group_state(s("Dead"));
                    return if version >= 6 {
                        base.with_error_code(ResponseError::GroupIdNotFound.code())
                            .with_error_message(Some(s(&format!(
                                "Group {} not found.",
                                id.as_str()
                            ))))
                    } else {
                        base
                    };
                };
                base.with_group_state(s(d.state.name()))
                    .with_protocol_type(s(&d.protocol_type))
                    .with_protocol_data(s(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(&m.member_id))
                                    .with_group_instance_id(if version >= 4 {
                                        m.instance_id.map(StrBytes::from_string)
                                    } else {
                                        None
                                    })
                                    .with_client_id(s(&m.client_id))
                                    .with_client_host(s(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    )
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups)
    }

    pub fn delete_groups(&self, req: DeleteGroupsRequest, _version: i16) -> DeleteGroupsResponse {
        let results = req
            .groups_names
            .iter()
            .map(|id| {
                let r = if id.is_empty() {
                    Err(ResponseError::InvalidGroupId)
                } else if self.coordinator_ready().is_err() {
                    Err(ResponseError::CoordinatorNotAvailable)
                } else {
                    self.groups.delete(id).map_err(|e| errors::group_error(&e))
                };
                DeletableGroupResult::default()
                    .with_group_id(id.clone())
                    .with_error_code(errors::code(r))
            })
            .collect();
        DeleteGroupsResponse::default().with_results(results)
    }
}
