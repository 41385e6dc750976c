//! ListOffsets: earliest (-2), latest (-1, the high watermark), max timestamp (-3), earliest
//! local (-4), and by timestamp through the time index.

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

/// (offset, timestamp) for a ListOffsets query; (-1, -1) when no record matches.
/// Records below the log start offset (DeleteRecords inside a batch) are never answered.
fn lookup(log: &PartitionLog, timestamp: i64) -> Result<(i64, i64), crate::log::LogError> {
    let found = match timestamp {
        LATEST => return Ok((log.high_watermark(), -1)),
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
                        let (log, reg) = match self.leader_log(&image, &t.name.0, p.partition_index)
                        {
                            Ok(x) => x,
                            Err(e) => return base.with_error_code(e.code()),
                        };
                        match lookup(&log, p.timestamp) {
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
