//! What one batch keeps when its log is cleaned (Kafka's MemoryRecords.filterTo): the batch
//! as it is when every record stays, a rebuilt batch of the kept records' bytes (same base
//! offset, last offset, producer id and sequence), an empty batch when nothing stays but the
//! producer's state needs it, or nothing.
//!
//! Owns the batch-level rules: KIP-534's delete horizon is stamped on a batch the first time
//! it is cleaned with a tombstone in it. Never decides whether a record is the latest of its
//! key: the caller's `keep` does.

use crate::log::batch::{self, BatchHeader, Rewrite, HEADER_LEN};
use crate::log::codec;
use crate::log::error::LogError;
use crate::log::records::{self, Record};

/// A record as `keep` sees it.
pub struct Candidate<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub tombstone: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays and nothing in the header changes: the original bytes.
    Unchanged,
    Rebuilt(Vec<u8>),
    Dropped,
}

/// What the cleaner does with a batch's records.
pub struct BatchPolicy {
    /// The delete horizon to stamp if the batch keeps a tombstone and has none yet.
    pub new_horizon: i64,
    /// Keep an empty batch when no record stays: the batch is its producer's last one, and
    /// its sequence numbers must survive (Kafka's RETAIN_EMPTY).
    pub retain_empty: bool,
}

/// Filters one whole, stored batch. Control batches are not the caller's to filter.
pub fn filter(
    batch: &[u8],
    h: &BatchHeader,
    policy: &BatchPolicy,
    mut keep: impl FnMut(&Candidate<'_>) -> bool,
) -> Result<Filtered, LogError> {
    let plain = records::plain(batch, h, codec::MAX_DECOMPRESSED_BATCH)?;
    let all = records::parse(&plain, h)?;
    let kept: Vec<&Record> = all
        .iter()
        .filter(|r| {
            keep(&Candidate {
                offset: r.offset,
                key: r.key.clone().map(|k| &plain[k]),
                tombstone: r.tombstone,
            })
        })
        .collect();
    // A batch carries a delete horizon exactly while it holds tombstones, so the horizons
    // left in a log say when its next tombstones are due.
    let horizon = kept
        .iter()
        .any(|r| r.tombstone)
        .then(|| h.delete_horizon().unwrap_or(policy.new_horizon));
    if kept.len() == all.len() && horizon == h.delete_horizon() {
        return Ok(Filtered::Unchanged);
    }
    let header = &batch[..HEADER_LEN];
    if kept.is_empty() {
        if !policy.retain_empty {
            return Ok(Filtered::Dropped);
        }
        let empty = Rewrite {
            record_count: 0,
            compression: 0,
            delete_horizon: false,
            base_timestamp: h.max_timestamp,
            max_timestamp: h.max_timestamp,
        };
        return Ok(Filtered::Rebuilt(batch::rebuild(header, &[], empty)));
    }
    let base_timestamp = match (horizon, h.delete_horizon()) {
        (Some(horizon), _) => horizon,
        (None, Some(_)) => kept
            .iter()
            .map(|r| r.timestamp)
            .min()
            .unwrap_or(h.max_timestamp),
        (None, None) => h.base_timestamp,
    };
    let mut out = Vec::with_capacity(plain.len());
    for r in &kept {
        if base_timestamp == h.base_timestamp {
            out.extend_from_slice(&plain[r.range.clone()]);
        } else {
            records::write_rebased(&mut out, &plain, r, base_timestamp);
        }
    }
    let max_timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        kept.iter()
            .map(|r| r.timestamp)
            .max()
            .unwrap_or(h.max_timestamp)
    };
    let body = records::compress(h.compression(), &out)?;
    Ok(Filtered::Rebuilt(batch::rebuild(
        header,
        &body,
        Rewrite {
            record_count: kept.len() as i32,
            compression: h.compression(),
            delete_horizon: horizon.is_some(),
            base_timestamp,
            max_timestamp,
        },
    )))
}

/// Calls `f` with the offset and key of every keyed record of a batch (building the offset map).
pub fn for_each_key(
    batch: &[u8],
    h: &BatchHeader,
    mut f: impl FnMut(i64, &[u8]),
) -> Result<(), LogError> {
    let plain = records::plain(batch, h, codec::MAX_DECOMPRESSED_BATCH)?;
    for r in records::parse(&plain, h)? {
        if let Some(k) = r.key {
            f(r.offset, &plain[k]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::{Compression, Record as KRecord, RecordBatchDecoder};

    fn keyed_batch(keys: &[(&str, Option<&str>)], c: Compression) -> Vec<u8> {
        let records: Vec<KRecord> = keys
            .iter()
            .enumerate()
            .map(|(i, (k, v))| KRecord {
                producer_id: 7,
                producer_epoch: 0,
                sequence: i as i32,
                ..batch::plain_record(
                    i as i64,
                    1_000 + i as i64,
                    Some(Bytes::copy_from_slice(k.as_bytes())),
                    v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect();
        let mut b = batch::encode_compressed(&records, c).expect("encode");
        batch::stamp(&mut b, 50, 3);
        b
    }

    const POLICY: BatchPolicy = BatchPolicy {
        new_horizon: 90_000,
        retain_empty: false,
    };

    #[test]
    fn keeps_offsets_sequences_and_codec_and_stamps_a_horizon() {
        for c in [Compression::None, Compression::Zstd, Compression::Gzip] {
            let b = keyed_batch(&[("a", Some("1")), ("b", Some("2")), ("a", None)], c);
            let h = batch::verify(&b).expect("valid");
            let Filtered::Rebuilt(out) =
                filter(&b, &h, &POLICY, |r| r.key != Some(b"b")).expect("filter")
            else {
                panic!("expected a rebuilt batch");
            };
            let nh = batch::verify(&out).expect("rebuilt batch verifies");
            assert_eq!(
                (
                    nh.base_offset,
                    nh.last_offset(),
                    nh.base_sequence,
                    nh.producer_id
                ),
                (50, 52, 0, 7)
            );
            assert_eq!((nh.compression(), nh.record_count), (h.compression(), 2));
            assert_eq!(nh.delete_horizon(), Some(90_000));
            let set = RecordBatchDecoder::decode(&mut Bytes::from(out)).expect("decodes");
            let got: Vec<_> = set
                .records
                .iter()
                .map(|r| (r.offset, r.timestamp, r.value.is_none()))
                .collect();
            assert_eq!(got, vec![(50, 1_000, false), (52, 1_002, true)]);
        }
    }

    #[test]
    fn unchanged_dropped_and_empty() {
        let b = keyed_batch(&[("a", Some("1")), ("b", Some("2"))], Compression::None);
        let h = batch::verify(&b).expect("valid");
        assert_eq!(
            filter(&b, &h, &POLICY, |_| true).expect("f"),
            Filtered::Unchanged
        );
        assert_eq!(
            filter(&b, &h, &POLICY, |_| false).expect("f"),
            Filtered::Dropped
        );
        let retain = BatchPolicy {
            retain_empty: true,
            ..POLICY
        };
        let Filtered::Rebuilt(empty) = filter(&b, &h, &retain, |_| false).expect("f") else {
            panic!("expected an empty batch");
        };
        let eh = batch::verify(&empty).expect("valid");
        assert_eq!(
            (eh.record_count, eh.base_offset, eh.last_offset()),
            (0, 50, 51)
        );
        assert_eq!(empty.len(), HEADER_LEN);
    }

    #[test]
    fn a_horizon_already_stamped_is_kept() {
        let b = keyed_batch(&[("a", None), ("b", Some("2"))], Compression::None);
        let h = batch::verify(&b).expect("valid");
        let Filtered::Rebuilt(first) = filter(&b, &h, &POLICY, |_| true).expect("f") else {
            panic!("a tombstone's first cleaning stamps the horizon");
        };
        let fh = batch::verify(&first).expect("valid");
        let later = BatchPolicy {
            new_horizon: 200_000,
            ..POLICY
        };
        assert_eq!(
            filter(&first, &fh, &later, |_| true).expect("f"),
            Filtered::Unchanged
        );
        let Filtered::Rebuilt(second) = filter(&first, &fh, &later, |r| !r.tombstone).expect("f")
        else {
            panic!("dropping the tombstone rebuilds");
        };
        // Without tombstones the batch has no horizon, and its record keeps its timestamp.
        let sh = batch::verify(&second).expect("v");
        assert_eq!((sh.delete_horizon(), sh.base_timestamp), (None, 1_001));
        let set = RecordBatchDecoder::decode(&mut Bytes::from(second)).expect("decodes");
        assert_eq!(set.records[0].timestamp, 1_001);
    }
}
