//! The v2 record batch header: parsing, validation and the two fields the broker stamps.
//!
//! Owns the byte layout of a batch header. Never decompresses or decodes records: batches are
//! stored and served as the bytes the client sent.

use super::error::LogError;
use super::{codec, records};

/// Size of the v2 batch header that precedes the records.
pub const HEADER_LEN: usize = 61;
/// Bytes before the batch length field is complete (base offset + length).
pub const LOG_OVERHEAD: usize = 12;

/// The batch's first bytes that produce stamps (base offset, length, leader epoch), all
/// before the CRC's start.
pub const STAMPED_LEN: usize = 16;

const BASE_OFFSET: usize = 0;
const LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
/// The CRC covers everything from the attributes to the end of the batch.
const CRC_START: usize = 21;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;
/// KIP-534: the batch's first timestamp is the delete horizon of the tombstones it holds.
const DELETE_HORIZON_BIT: i16 = 0x40;

fn i16_at(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(x)
}

/// The header fields of one batch, read from its first [`HEADER_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads a header; `bytes` must hold at least [`HEADER_LEN`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, LogError> {
        if bytes.len() < LOG_OVERHEAD {
            return Err(LogError::CorruptBatch("shorter than the log overhead"));
        }
        let magic = bytes.get(MAGIC).map(|m| *m as i8).unwrap_or(-1);
        if bytes.len() < HEADER_LEN {
            return Err(LogError::CorruptBatch("shorter than a v2 batch header"));
        }
        Ok(Self {
            base_offset: i64_at(bytes, BASE_OFFSET),
            batch_length: i32_at(bytes, LENGTH),
            partition_leader_epoch: i32_at(bytes, LEADER_EPOCH),
            magic,
            crc: i32_at(bytes, CRC) as u32,
            attributes: i16_at(bytes, ATTRIBUTES),
            last_offset_delta: i32_at(bytes, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(bytes, BASE_TIMESTAMP),
            max_timestamp: i64_at(bytes, MAX_TIMESTAMP),
            producer_id: i64_at(bytes, PRODUCER_ID),
            producer_epoch: i16_at(bytes, PRODUCER_EPOCH),
            base_sequence: i32_at(bytes, BASE_SEQUENCE),
            record_count: i32_at(bytes, RECORD_COUNT),
        })
    }

    /// The batch's first [`STAMPED_LEN`] bytes as this header has them.
    pub fn stamped_prefix(&self) -> [u8; STAMPED_LEN] {
        let mut p = [0u8; STAMPED_LEN];
        p[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&self.base_offset.to_be_bytes());
        p[LENGTH..LENGTH + 4].copy_from_slice(&self.batch_length.to_be_bytes());
        p[LEADER_EPOCH..LEADER_EPOCH + 4]
            .copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        p
    }

    /// Total size of the batch on disk and on the wire.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    /// Saturating: a producer's batch carries whatever base offset it was given until the log
    /// stamps it.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// When the log cleaner may drop this batch's tombstones (set by its first cleaning).
    pub fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }
}

/// The fields of a batch the log cleaner rewrites; the rest of the header stays.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite {
    pub record_count: i32,
    pub compression: i16,
    pub delete_horizon: bool,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
}

/// A batch rebuilt around new record bytes (already compressed with `compression`), keeping
/// the original's base offset, last offset delta, leader epoch and producer fields, as Kafka's
/// cleaner does so offsets and sequences survive compaction; the CRC is recomputed.
pub fn rebuild(original_header: &[u8], records: &[u8], r: Rewrite) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&original_header[..HEADER_LEN]);
    out.extend_from_slice(records);
    let length = (out.len() - LOG_OVERHEAD) as i32;
    out[LENGTH..LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let kept = i16_at(&out, ATTRIBUTES) & (TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT);
    let mut attributes = kept | (r.compression & COMPRESSION_MASK);
    if r.delete_horizon {
        attributes |= DELETE_HORIZON_BIT;
    }
    out[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&r.base_timestamp.to_be_bytes());
    out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&r.max_timestamp.to_be_bytes());
    out[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&r.record_count.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the length of the batch starting at `bytes`, if its first 12 bytes are there.
pub fn peek_total_len(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= LOG_OVERHEAD).then(|| LOG_OVERHEAD + i32_at(bytes, LENGTH).max(0) as usize)
}

/// Checks one whole batch in `bytes` (exactly one batch long): structure and CRC-32C.
/// Used both for batches arriving from clients and for batches read back during recovery.
pub fn verify(bytes: &[u8]) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(bytes)?;
    if header.magic != 2 {
        return Err(LogError::UnsupportedMagic(header.magic));
    }
    if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || header.total_len() != bytes.len()
    {
        return Err(LogError::CorruptBatch(
            "batch length does not match its bytes",
        ));
    }
    if crc32c::crc32c(&bytes[CRC_START..]) != header.crc {
        return Err(LogError::CorruptBatch("CRC-32C mismatch"));
    }
    if header.record_count < 0 || header.last_offset_delta < 0 {
        return Err(LogError::InvalidRecord(
            "negative record count or offset delta",
        ));
    }
    Ok(header)
}

/// The stricter checks for a batch a producer sends: Kafka rejects an empty batch and one whose
/// record count disagrees with its offset range (only compaction may leave gaps).
pub fn verify_from_producer(bytes: &[u8]) -> Result<BatchHeader, LogError> {
    let header = verify(bytes)?;
    if header.record_count == 0
        || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(LogError::InvalidRecord(
            "record count does not match the last offset delta",
        ));
    }
    if header.is_control() {
        return Err(LogError::InvalidRecord(
            "producers may not write control batches",
        ));
    }
    Ok(header)
}

/// Stamps the broker-owned fields, both outside the CRC, in place: how tests place batches at
/// offsets (produce writes them from the header instead, `Segment::append_stamped`).
#[cfg(test)]
pub fn stamp(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    bytes[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&leader_epoch.to_be_bytes());
}

/// For LogAppendTime topics: the broker's clock replaces the max timestamp and sets the
/// timestamp-type bit. Both lie inside the CRC, so it is recomputed.
pub fn stamp_log_append_time(bytes: &mut [u8], now_ms: i64) {
    let attributes = i16_at(bytes, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    bytes[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[CRC_START..]);
    bytes[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the whole batches at the front of `bytes`, returning each batch's byte range
/// and header; stops at the first incomplete or unparseable one.
pub fn headers(bytes: &[u8]) -> impl Iterator<Item = (std::ops::Range<usize>, BatchHeader)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(pos..)?;
        let len = peek_total_len(rest)?;
        if len < HEADER_LEN || rest.len() < len {
            return None;
        }
        let header = BatchHeader::parse(&rest[..len]).ok()?;
        let range = pos..pos + len;
        pos += len;
        Some((range, header))
    })
}

/// Every record of every batch in `bytes` with its batch's header, decompressing within
/// `codec::MAX_DECOMPRESSED_BATCH`; an error for bytes that are not whole batches.
fn each_record(
    bytes: &[u8],
    mut f: impl FnMut(&BatchHeader, &records::Record),
) -> Result<(), LogError> {
    let mut covered = 0;
    for (range, h) in headers(bytes) {
        covered = range.end;
        let plain = records::plain(&bytes[range], &h, codec::MAX_DECOMPRESSED_BATCH)?;
        for r in records::parse(&plain, &h)? {
            f(&h, &r);
        }
    }
    if covered != bytes.len() {
        return Err(LogError::CorruptBatch("bytes after the last whole batch"));
    }
    Ok(())
}

/// Looks inside a produce's batches where the broker must: every compressed batch is
/// inflated within `max_plain` bytes (a zip bomb is refused once past it, never inflated
/// whole) and its records checked against its header; with `keyed` (a compacted topic) every
/// batch is, and the result is the indexes, over all records of `batches`, of those without
/// a key. Uncompressed batches of other topics are not parsed: their bytes move untouched.
pub fn inspect_records(
    bytes: &[u8],
    batches: &[(std::ops::Range<usize>, BatchHeader)],
    max_plain: usize,
    keyed: bool,
) -> Result<Vec<i32>, LogError> {
    let mut keyless = Vec::new();
    let mut index = 0i32;
    for (range, h) in batches {
        if !keyed && h.compression() == codec::NONE {
            continue;
        }
        let batch = bytes
            .get(range.clone())
            .ok_or(LogError::CorruptBatch("truncated batch"))?;
        let plain = records::plain(batch, h, max_plain)?;
        for r in records::parse(&plain, h)? {
            if keyed && !h.is_control() && r.key.is_none() {
                keyless.push(index);
            }
            index = index.saturating_add(1);
        }
    }
    Ok(keyless)
}

/// Offset and timestamp of every record in the batches in `bytes` (decompressing as needed;
/// a batch that does not decompress within the limit is passed over). Only the rare
/// by-timestamp lookups use it; produce and fetch never look inside a batch.
pub fn record_timestamps(bytes: &[u8]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for (range, _) in headers(bytes) {
        // Records reach `out` only once their whole batch has decoded.
        let _ = each_record(&bytes[range], |h, r| {
            // LogAppendTime: every record carries the batch's (broker) timestamp.
            let ts = if h.is_log_append_time() {
                h.max_timestamp
            } else {
                r.timestamp
            };
            out.push((r.offset, ts));
        });
    }
    out
}

/// Encodes records as one uncompressed v2 batch: what Runnel writes itself (the group
/// coordinator's records) and what tests build theirs with. Offsets are relative (0, 1, ...).
pub fn encode(records: &[kafka_protocol::records::Record]) -> Result<Vec<u8>, LogError> {
    encode_compressed(records, kafka_protocol::records::Compression::None)
}

/// As `encode`, the records compressed with `compression`.
pub fn encode_compressed(
    records: &[kafka_protocol::records::Record],
    compression: kafka_protocol::records::Compression,
) -> Result<Vec<u8>, LogError> {
    let mut buf = bytes::BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .map_err(|_| LogError::InvalidRecord("records could not be encoded"))?;
    Ok(buf.to_vec())
}

/// A record of a plain (non-idempotent) batch.
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<bytes::Bytes>,
    value: Option<bytes::Bytes>,
) -> kafka_protocol::records::Record {
    kafka_protocol::records::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kafka_protocol::records::TimestampType::Creation,
        offset,
        // The encoder starts a new batch whenever offset - sequence changes.
        sequence: offset as i32,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

#[cfg(test)]
pub mod test_batches {
    //! Real v2 batches built by kafka-protocol's encoder, for tests across the log module.
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    pub fn batch(records: usize, timestamp: i64, value_len: usize) -> Vec<u8> {
        batch_with(records, timestamp, value_len, Compression::None)
    }

    pub fn batch_with(records: usize, timestamp: i64, value_len: usize, c: Compression) -> Vec<u8> {
        let recs: Vec<_> = (0..records)
            .map(|i| {
                super::plain_record(
                    i as i64,
                    timestamp + i as i64,
                    Some(Bytes::from(format!("k{i}"))),
                    Some(Bytes::from(vec![b'v'; value_len])),
                )
            })
            .collect();
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: c,
        };
        RecordBatchEncoder::encode(&mut buf, recs.iter(), &options).expect("encode test batch");
        buf.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::test_batches::batch;
    use super::*;

    #[test]
    fn verifies_encoder_output_and_rejects_flipped_bits() {
        let b = batch(3, 1_000, 10);
        let h = verify(&b).expect("valid");
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1_002);
        for i in CRC_START..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(verify(&bad).is_err(), "flip at {i} went unnoticed");
        }
    }

    #[test]
    fn stamping_keeps_crc_valid() {
        let mut b = batch(2, 5, 4);
        stamp(&mut b, 42, 7);
        let h = verify(&b).expect("still valid");
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        stamp_log_append_time(&mut b, 99);
        let h = verify(&b).expect("valid after log append time");
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn keyless_records_are_found_by_index() {
        let recs: Vec<_> = (0..5)
            .map(|i| {
                let key = (i % 2 == 0).then(|| bytes::Bytes::from(format!("k{i}")));
                plain_record(i, 0, key, Some(bytes::Bytes::from_static(b"v")))
            })
            .collect();
        let b = encode(&recs).expect("encode");
        assert_eq!(inspect(&b, 1 << 20, true).expect("whole"), vec![1, 3]);
        assert!(inspect(&batch(3, 0, 1), 1 << 20, true)
            .expect("whole")
            .is_empty());
    }

    fn inspect(b: &[u8], max_plain: usize, keyed: bool) -> Result<Vec<i32>, LogError> {
        let batches: Vec<_> = headers(b).collect();
        assert!(!batches.is_empty());
        inspect_records(b, &batches, max_plain, keyed)
    }

    #[test]
    fn compressed_batches_are_inflated_within_the_limit_and_counted() {
        let value = bytes::Bytes::from(vec![0u8; 100_000]);
        let recs: Vec<_> = (0..3)
            .map(|i| plain_record(i, 0, None, Some(value.clone())))
            .collect();
        let packed =
            encode_compressed(&recs, kafka_protocol::records::Compression::Lz4).expect("encode");
        assert!(packed.len() < 10_000, "{} bytes", packed.len());
        assert!(inspect(&packed, 400_000, false).is_ok());
        assert!(matches!(
            inspect(&packed, 200_000, false),
            Err(LogError::DecompressesTooLarge { max: 200_000 })
        ));
        // A header that counts one record more than the batch holds.
        let mut lying = packed.clone();
        lying[RECORD_COUNT..RECORD_COUNT + 4].copy_from_slice(&4i32.to_be_bytes());
        assert!(inspect(&lying, 400_000, false).is_err());
        // Uncompressed batches of a topic that is not compacted are not looked into.
        assert!(inspect(&batch(3, 0, 1), 1, false).is_ok());
    }

    #[test]
    fn headers_stops_at_partial_batch() {
        let mut two = batch(1, 0, 1);
        two.extend(batch(2, 0, 1));
        let n = two.len();
        assert_eq!(headers(&two).count(), 2);
        assert_eq!(headers(&two[..n - 1]).count(), 1);
    }
}
