//! OffsetForLeaderEpoch (KIP-101, KIP-320): where a leader epoch ends in the leader's log, so a
//! consumer (or a follower) that read under an older leader can tell whether its position is
//! still on the log or was truncated away.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::fetch::check_leader_epoch;
use super::Broker;

impl Broker {
    pub fn offset_for_leader_epoch(
        &self,
        req: OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let image = self.metadata.image();
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let answer = self.leader_log(&image, &t.topic.0, p.partition).and_then(
                            |(log, reg)| {
                                check_leader_epoch(p.current_leader_epoch, reg.leader_epoch)?;
                                Ok(log.end_offset_for_epoch(p.leader_epoch))
                            },
                        );
                        let (code, (epoch, end)) = match answer {
                            // An epoch older than any this log knows: undefined, as Kafka says.
                            Ok(found) => (0, found.unwrap_or((-1, -1))),
                            Err(e) => (e.code(), (-1, -1)),
                        };
                        EpochEndOffset::default()
                            .with_error_code(code)
                            .with_partition(p.partition)
                            .with_leader_epoch(epoch)
                            .with_end_offset(end)
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetForLeaderEpochResponse::default().with_topics(topics)
    }
}
