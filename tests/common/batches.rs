//! Real v2 record batches built by kafka-protocol's encoder, shared by the tests and benches.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Who wrote a batch: producer id, epoch and first sequence (-1, -1, -1 for a plain producer).
#[derive(Clone, Copy)]
pub struct Producer {
    pub id: i64,
    pub epoch: i16,
    pub sequence: i32,
}

pub const PLAIN: Producer = Producer {
    id: -1,
    epoch: -1,
    sequence: 0,
};

/// One uncompressed batch of `records` records with `value_len`-byte values, timestamps from `ts`.
pub fn batch_from(producer: Producer, records: usize, ts: i64, value_len: usize) -> Vec<u8> {
    let recs: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever offset - sequence changes.
            sequence: producer.sequence + i as i32,
            timestamp: ts + i as i64,
            key: None,
            value: Some(Bytes::from(vec![b'x'; value_len])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.to_vec()
}
