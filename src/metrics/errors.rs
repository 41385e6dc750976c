//! The error codes a response carries, as Kafka's `AbstractResponse.errorCounts` counts them
//! for `ErrorsPerSec`: one per partition, topic or group result (NONE included), and the
//! top-level code where a response has one.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{FetchResponse, ProduceResponse, ResponseKind};

/// Calls `f` with every error code of `resp`; a response of an API not listed here counts as
/// one NONE.
pub fn each_code(resp: &ResponseKind, f: &mut dyn FnMut(i16)) {
    use ResponseKind as R;
    match resp {
        R::Produce(r) => produce_codes(r, f),
        R::Fetch(r) => fetch_codes(r, f),
        R::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::Metadata(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        R::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::OffsetFetch(r) => {
            f(r.error_code);
            r.groups.iter().for_each(|g| f(g.error_code));
        }
        R::FindCoordinator(r) => {
            f(r.error_code);
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        R::JoinGroup(r) => f(r.error_code),
        R::SyncGroup(r) => f(r.error_code),
        R::Heartbeat(r) => f(r.error_code),
        R::LeaveGroup(r) => f(r.error_code),
        R::InitProducerId(r) => f(r.error_code),
        R::ApiVersions(r) => f(r.error_code),
        R::ListGroups(r) => f(r.error_code),
        R::DescribeCluster(r) => f(r.error_code),
        R::OffsetDelete(r) => f(r.error_code),
        R::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        R::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::CreatePartitions(r) => r.results.iter().for_each(|t| f(t.error_code)),
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::DeleteGroups(r) => r.results.iter().for_each(|g| f(g.error_code)),
        R::DescribeConfigs(r) => r.results.iter().for_each(|c| f(c.error_code)),
        R::AlterConfigs(r) => r.responses.iter().for_each(|c| f(c.error_code)),
        R::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|c| f(c.error_code)),
        R::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        _ => f(0),
    }
}

pub fn produce_codes(r: &ProduceResponse, f: &mut dyn FnMut(i16)) {
    r.responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .for_each(|p| f(p.error_code));
}

pub fn fetch_codes(r: &FetchResponse, f: &mut dyn FnMut(i16)) {
    f(r.error_code);
    r.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .for_each(|p| f(p.error_code));
}

/// Kafka's name of an error code (`Errors` enum): `UNKNOWN_TOPIC_OR_PARTITION`.
pub fn name(code: i16) -> String {
    if code == 0 {
        return "NONE".to_string();
    }
    let e = match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => return "UNKNOWN_SERVER_ERROR".to_string(),
        Some(e) => e,
    };
    let camel = format!("{e:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_kafkas() {
        assert_eq!(super::name(0), "NONE");
        assert_eq!(super::name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(super::name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(super::name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(super::name(56), "KAFKA_STORAGE_ERROR");
        assert_eq!(super::name(i16::MAX), "UNKNOWN_SERVER_ERROR");
    }
}
