//! Real v2 record batches built by kafka-protocol's encoder, shared by the tests and benches.

use bytes::Bytes;

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
    let recs: Vec<_> = (0..records)
        .map(|i| {
            let mut r = runnel::log::batch::plain_record(
                i as i64,
                ts + i as i64,
                None,
                Some(Bytes::from(vec![b'x'; value_len])),
            );
            r.producer_id = producer.id;
            r.producer_epoch = producer.epoch;
            r.sequence = producer.sequence + i as i32;
            r
        })
        .collect();
    runnel::log::batch::encode(&recs).expect("encode")
}
