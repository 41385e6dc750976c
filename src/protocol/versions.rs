//! The ApiVersions table: every API Runnel answers, with the version range it answers. A range
//! is ours only where every field of every version in it is honoured (or has no meaning on a
//! single broker); kafka-protocol's own range bounds it from above.

use kafka_protocol::messages::ApiKey;

/// (API, lowest, highest) version Runnel serves.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 18),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 13),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::DescribeTopicPartitions, 0, 0),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::DescribeQuorum, 0, 2),
];

/// The range served for `key`, intersected with what kafka-protocol can decode.
pub fn range(key: ApiKey) -> Option<(i16, i16)> {
    let (_, min, max) = SUPPORTED.iter().find(|(k, _, _)| *k == key)?;
    let codec = key.valid_versions();
    let (lo, hi) = ((*min).max(codec.min), (*max).min(codec.max));
    (lo <= hi).then_some((lo, hi))
}

pub fn is_supported(key: ApiKey, version: i16) -> bool {
    range(key).is_some_and(|(lo, hi)| (lo..=hi).contains(&version))
}

/// Every served API with its range, in API-key order.
pub fn all() -> Vec<(ApiKey, i16, i16)> {
    let mut v: Vec<_> = SUPPORTED
        .iter()
        .filter_map(|(k, _, _)| range(*k).map(|(lo, hi)| (*k, lo, hi)))
        .collect();
    v.sort_by_key(|(k, _, _)| *k as i16);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fit_the_codec_and_cover_kafka_4_floors() {
        for (k, lo, hi) in all() {
            let codec = k.valid_versions();
            assert!(codec.min <= lo && hi <= codec.max, "{k:?}");
        }
        assert_eq!(range(ApiKey::ApiVersions), Some((0, 4)));
        assert!(range(ApiKey::Produce).is_some_and(|(lo, _)| lo <= 3));
        assert!(range(ApiKey::Fetch).is_some_and(|(lo, _)| lo <= 4));
    }
}
