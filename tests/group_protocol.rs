//! The group APIs' error codes and version-specific shapes at the wire level (kafka-protocol's
//! codec over a plain connection), for the cases real clients rarely provoke on purpose.

mod common;

use bytes::Bytes;
use common::BrokerProcess;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use runnel::client::Connection;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join(group: &str, member: &str, instance: Option<&str>, protocol: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s(protocol))
            .with_metadata(Bytes::from_static(b"meta"))])
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

#[tokio::test]
async fn group_error_codes_follow_kafka() {
    let broker = BrokerProcess::start(&["--set", "group.initial.rebalance.delay.ms=0"]);
    let mut c = Connection::connect(&broker.addr).await.expect("connect");

    // FindCoordinator v4+: one answer per key.
    let fc = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]);
    let r = c.send_version(fc, 4).await.expect("find");
    assert_eq!(r.coordinators.len(), 2);
    assert!(r
        .coordinators
        .iter()
        .all(|k| k.error_code == 0 && k.port > 0));

    let r = c
        .send_version(join("", "", None, "range"), 5)
        .await
        .expect("join");
    assert_eq!(r.error_code, code(ResponseError::InvalidGroupId));
    let r = c
        .send_version(join("g", "", None, "range").with_session_timeout_ms(10), 5)
        .await
        .expect("join");
    assert_eq!(r.error_code, code(ResponseError::InvalidSessionTimeout));

    // v4+: MEMBER_ID_REQUIRED hands out the id to come back with.
    let r = c
        .send_version(join("g", "", None, "range"), 5)
        .await
        .expect("join");
    assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
    let me = r.member_id.to_string();
    assert!(me.starts_with("runnel-cli-"), "{me}");
    let r = c
        .send_version(join("g", &me, None, "range"), 5)
        .await
        .expect("join");
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(r.leader.as_str(), me);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    // v0–v3 join directly.
    let mut old = Connection::connect(&broker.addr).await.expect("connect");
    let r = old
        .send_version(join("g", "", None, "roundrobin"), 3)
        .await
        .expect("join");
    assert_eq!(
        r.error_code,
        code(ResponseError::InconsistentGroupProtocol),
        "no protocol in common with the group"
    );

    let sync = |gen: i32| {
        SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(gen)
            .with_member_id(s(&me))
    };
    let r = c.send_version(sync(7), 3).await.expect("sync");
    assert_eq!(r.error_code, code(ResponseError::IllegalGeneration));
    let r = c.send_version(sync(1), 3).await.expect("sync");
    assert_eq!(r.error_code, 0);

    let hb = |member: &str, gen: i32| {
        HeartbeatRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(gen)
            .with_member_id(s(member))
    };
    assert_eq!(
        c.send_version(hb(&me, 1), 3).await.expect("hb").error_code,
        0
    );
    assert_eq!(
        c.send_version(hb(&me, 0), 3).await.expect("hb").error_code,
        code(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        c.send_version(hb("stranger", 1), 3)
            .await
            .expect("hb")
            .error_code,
        code(ResponseError::UnknownMemberId)
    );

    // Commits: unknown partition, oversized metadata, stale generation, simple commits.
    c.send(CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]))
    .await
    .expect("create");
    let commit = |group: &str, gen: i32, member: &str, parts: Vec<(i32, &str)>| {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(gen)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, m)| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(5)
                                .with_committed_metadata(Some(s(m)))
                        })
                        .collect(),
                )])
    };
    let big = "x".repeat(5000);
    let r = c
        .send_version(commit("g", 1, &me, vec![(0, "ok"), (9, ""), (1, &big)]), 8)
        .await
        .expect("commit");
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            0,
            code(ResponseError::UnknownTopicOrPartition),
            code(ResponseError::OffsetMetadataTooLarge)
        ]
    );
    let r = c
        .send_version(commit("g", 0, &me, vec![(0, "")]), 8)
        .await
        .expect("commit");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::IllegalGeneration)
    );
    let r = c
        .send_version(commit("g", -1, "", vec![(0, "")]), 8)
        .await
        .expect("commit");
    assert_eq!(
        r.topics[0].partitions[0].error_code,
        code(ResponseError::UnknownMemberId),
        "no simple commits into a group with members"
    );
    let r = c
        .send_version(commit("standalone", -1, "", vec![(1, "meta-1")]), 8)
        .await
        .expect("commit");
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    // OffsetFetch v8: several groups in one request.
    let fetch = OffsetFetchRequest::default().with_groups(
        ["g", "standalone", "never"]
            .iter()
            .map(|g| {
                OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s(g)))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1])]))
            })
            .collect(),
    );
    let r = c.send_version(fetch, 8).await.expect("fetch");
    let got: Vec<(String, Vec<(i64, String)>)> = r
        .groups
        .iter()
        .map(|g| {
            let parts = g.topics[0]
                .partitions
                .iter()
                .map(|p| {
                    (
                        p.committed_offset,
                        p.metadata.as_deref().unwrap_or("").to_string(),
                    )
                })
                .collect();
            (g.group_id.to_string(), parts)
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "g".to_string(),
                vec![(5, "ok".to_string()), (-1, String::new())]
            ),
            (
                "standalone".to_string(),
                vec![(-1, String::new()), (5, "meta-1".to_string())]
            ),
            (
                "never".to_string(),
                vec![(-1, String::new()), (-1, String::new())]
            ),
        ]
    );

    // Static members: a second process with the same instance id fences the first.
    let r = c
        .send_version(join("s", "", Some("inst"), "range"), 5)
        .await
        .expect("join");
    assert_eq!(r.error_code, 0, "static members skip MEMBER_ID_REQUIRED");
    let first = r.member_id.to_string();
    let r = c
        .send_version(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("s")))
                .with_generation_id(1)
                .with_member_id(s(&first))
                .with_group_instance_id(Some(s("inst"))),
            3,
        )
        .await
        .expect("sync");
    assert_eq!(r.error_code, 0);
    let r = c
        .send_version(join("s", "", Some("inst"), "range"), 5)
        .await
        .expect("rejoin");
    assert_eq!((r.error_code, r.generation_id), (0, 1), "no rebalance");
    let hb = HeartbeatRequest::default()
        .with_group_id(GroupId(s("s")))
        .with_generation_id(1)
        .with_member_id(s(&first))
        .with_group_instance_id(Some(s("inst")));
    assert_eq!(
        c.send_version(hb, 3).await.expect("hb").error_code,
        code(ResponseError::FencedInstanceId)
    );

    // Describe: a missing group is Dead (v5), GROUP_ID_NOT_FOUND (v6).
    let d = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g")), GroupId(s("nope"))]);
    let r = c.send_version(d.clone(), 5).await.expect("describe");
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
    assert_eq!(r.groups[0].members.len(), 1);
    assert_eq!(r.groups[0].members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(
        (r.groups[1].error_code, r.groups[1].group_state.as_str()),
        (0, "Dead")
    );
    let r = c.send_version(d, 6).await.expect("describe");
    assert_eq!(r.groups[1].error_code, code(ResponseError::GroupIdNotFound));

    // Leave (v3+ batch), then the group can be deleted; a second delete finds nothing.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            leave_group_request::MemberIdentity::default().with_member_id(s(&me)),
            leave_group_request::MemberIdentity::default().with_member_id(s("ghost")),
        ]);
    let r = c.send_version(leave, 3).await.expect("leave");
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [0, code(ResponseError::UnknownMemberId)]);
    let del =
        DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g")), GroupId(s("s"))]);
    let r = c.send_version(del.clone(), 2).await.expect("delete");
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(codes, [0, code(ResponseError::NonEmptyGroup)]);
    let r = c.send_version(del, 2).await.expect("delete");
    assert_eq!(
        r.results[0].error_code,
        code(ResponseError::GroupIdNotFound)
    );

    // ListGroups with a states filter (v4+).
    let r = c
        .send_version(
            ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
            4,
        )
        .await
        .expect("list");
    let ids: Vec<&str> = r.groups.iter().map(|g| g.group_id.as_str()).collect();
    assert_eq!(ids, ["standalone"]);
}
