//! ListOffsets: earliest (-2), latest (-1, the high watermark), max timestamp (-3), earliest
//! local (-4), and by timestamp through the time index. Asked by a consumer (replica id -1),
//! only the leader answers; asked with Kafka's debugging replica id (-2), any replica answers
//! from its own log, and "latest" is that log's end (how a follower's lag is seen).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::Broker;
use crate::log::PartitionLog;
use crate::protocol::errors;

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;
pub const MAX_TIMESTAMP: i64 = -3;
pub const EARLIEST_LOCAL: i64 = -4;

/// Kafka's ListOffsetsRequest.DEBUGGING_REPLICA_ID.
pub const DEBUGGING_REPLICA_ID: i32 = -2;
const CONSUMER_REPLICA_ID: i32 = -1;

/// (offset, timestamp) for a ListOffsets query; (-1, -1) when no record matches. "Latest" is
/// the high watermark for a consumer, the log end for anyone else (as in Kafka).
/// Records below the log start offset (DeleteRecords inside a batch) are never answered.
fn lookup(
    log: &PartitionLog,
    timestamp: i64,
    consumer: bool,
) -> Result<(i64, i64), crate::log::LogError> {
    let found = match timestamp {
        LATEST if consumer => return Ok((log.high_watermark(), -1)),
        LATEST => return Ok((log.log_end_offset(), -1)),
        EARLIEST | EARLIEST_LOCAL => return Ok((log.log_start_offset(), -1)),
        MAX_TIMESTAMP => log.max_timestamp_offset()?,
        ts => log.offset_for_timestamp(ts)?,
    };
    Ok(found.map_or((-1, -1), |(o, ts)| (o.max(log.log_start_offset()), ts)))
}

impl Broker {
    pub fn list_offsets(&self, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        let image = self.metadata.image();
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let base = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_offset(-1)
                            .with_timestamp(-1)
                            .with_leader_epoch(-1);
                        let found = match req.replica_id.0 {
                            DEBUGGING_REPLICA_ID => {
                                self.replica_log(&image, &t.name.0, p.partition_index)
                            }
                            _ => self.leader_log(&image, &t.name.0, p.partition_index),
                        };
                        let (log, reg) = match found {
                            Ok(x) => x,
                            Err(e) => return base.with_error_code(e.code()),
                        };
                        let consumer = req.replica_id.0 == CONSUMER_REPLICA_ID;
                        match lookup(&log, p.timestamp, consumer) {
                            // The leader epoch field exists from v4 on.
                            Ok((offset, ts)) => base
                                .with_offset(offset)
                                .with_timestamp(ts)
                                .with_leader_epoch(if version >= 4 {
                                    reg.leader_epoch
                                } else {
                                    -1
                                }),
                            Err(e) => base.with_error_code(errors::log_error(&e).code()),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(parts)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }
}
