//! The records inside a stored batch, for the few who look inside one (the log cleaner, the
//! keyless check of compacted topics, timestamp lookups, hot-key sampling): each record's
//! offset, timestamp, key and whether it is a tombstone, with its byte range, so a cleaned
//! batch is the kept records' original bytes (only the timestamp delta is re-encoded when a
//! delete horizon moves the batch's base timestamp).
//!
//! Owns v2 record framing and batch compression. Never decides what is kept (the cleaner's
//! `filter` does); decompression is `codec`'s, bounded. kafka-protocol decodes records into owned objects and keeps its
//! varint codec private, so the few varints of a record's framing are read here.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use crate::log::batch::{BatchHeader, HEADER_LEN};
use crate::log::codec::{self, GZIP, LZ4, NONE, SNAPPY, ZSTD};
use crate::log::error::LogError;

/// One record of a batch, located in the batch's uncompressed record bytes.
#[derive(Debug, Clone)]
pub struct Record {
    /// The whole record, length prefix included.
    pub range: Range<usize>,
    /// Where the fields after the timestamp delta start (the offset delta onwards).
    after_timestamp: usize,
    attributes: u8,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Range<usize>>,
    pub tombstone: bool,
}

fn corrupt() -> LogError {
    LogError::CorruptBatch("record framing")
}

/// Reads an unsigned varint at `*at`, advancing it.
fn read_uvarint(b: &[u8], at: &mut usize) -> Result<u64, LogError> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *b.get(*at).ok_or_else(corrupt)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(corrupt())
}

fn read_varlong(b: &[u8], at: &mut usize) -> Result<i64, LogError> {
    let z = read_uvarint(b, at)?;
    Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
}

fn read_varint(b: &[u8], at: &mut usize) -> Result<i32, LogError> {
    i32::try_from(read_varlong(b, at)?).map_err(|_| corrupt())
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A length-prefixed field: its range, or None for length -1 (null).
fn read_field(b: &[u8], at: &mut usize, end: usize) -> Result<Option<Range<usize>>, LogError> {
    let len = read_varint(b, at)?;
    if len < 0 {
        return Ok(None);
    }
    let start = *at;
    *at = start.checked_add(len as usize).ok_or_else(corrupt)?;
    if *at > end {
        return Err(corrupt());
    }
    Ok(Some(start..*at))
}

/// The batch's record bytes: borrowed when uncompressed, else decompressed up to `limit`
/// bytes (`codec::MAX_DECOMPRESSED_BATCH` unless a caller wants less).
pub fn plain<'a>(
    batch: &'a [u8],
    h: &BatchHeader,
    limit: usize,
) -> Result<Cow<'a, [u8]>, LogError> {
    let body = batch.get(HEADER_LEN..).ok_or_else(corrupt)?;
    if h.compression() == NONE {
        return Ok(Cow::Borrowed(body));
    }
    codec::decompress(h.compression(), body, limit).map(Cow::Owned)
}

/// `plain` record bytes compressed with `codec`.
pub fn compress(codec: i16, plain: &[u8]) -> Result<Vec<u8>, LogError> {
    let mut out = BytesMut::new();
    let put = |b: &mut dyn BufMut| -> anyhow::Result<()> {
        b.put_slice(plain);
        Ok(())
    };
    let r = match codec {
        NONE => return Ok(plain.to_vec()),
        GZIP => Gzip::compress(&mut out, |b| put(b)),
        SNAPPY => Snappy::compress(&mut out, |b| put(b)),
        LZ4 => Lz4::compress(&mut out, |b| put(b)),
        ZSTD => Zstd::compress(&mut out, |b| put(b)),
        _ => return Err(LogError::CorruptBatch("unknown compression codec")),
    };
    r.map_err(|_| LogError::CorruptBatch("records do not compress"))?;
    Ok(out.to_vec())
}

/// Every record of a batch whose uncompressed record bytes are `plain`.
pub fn parse(plain: &[u8], h: &BatchHeader) -> Result<Vec<Record>, LogError> {
    let mut out = Vec::with_capacity(h.record_count.clamp(0, 1 << 16) as usize);
    let mut at = 0usize;
    while at < plain.len() && out.len() < h.record_count.max(0) as usize {
        let start = at;
        let len = read_varint(plain, &mut at)?;
        let end = at
            .checked_add(usize::try_from(len).map_err(|_| corrupt())?)
            .filter(|e| *e <= plain.len())
            .ok_or_else(corrupt)?;
        let attributes = *plain.get(at).ok_or_else(corrupt)?;
        at += 1;
        let timestamp_delta = read_varlong(plain, &mut at)?;
        let after_timestamp = at;
        let offset_delta = read_varint(plain, &mut at)?;
        let key = read_field(plain, &mut at, end)?;
        let value = read_field(plain, &mut at, end)?;
        if at > end {
            return Err(corrupt());
        }
        out.push(Record {
            range: start..end,
            after_timestamp,
            attributes,
            // Saturating: the batch may be a producer's, whose base offset is not yet stamped.
            offset: h.base_offset.saturating_add(i64::from(offset_delta)),
            timestamp: h.base_timestamp.saturating_add(timestamp_delta),
            key,
            tombstone: value.is_none(),
        });
        at = end;
    }
    if out.len() != h.record_count.max(0) as usize {
        return Err(LogError::CorruptBatch(
            "fewer records than the batch declares",
        ));
    }
    Ok(out)
}

/// Appends `r` to `out` with its timestamp delta taken against `base_timestamp`.
pub fn write_rebased(out: &mut Vec<u8>, plain: &[u8], r: &Record, base_timestamp: i64) {
    let mut body = Vec::with_capacity(r.range.len() + 8);
    body.push(r.attributes);
    put_varlong(&mut body, r.timestamp.saturating_sub(base_timestamp));
    body.extend_from_slice(&plain[r.after_timestamp..r.range.end]);
    put_varlong(out, body.len() as i64);
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{self, test_batches};
    use kafka_protocol::records::Compression;

    #[test]
    fn parses_what_kafka_protocol_encodes_for_every_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut b = test_batches::batch_with(7, 5_000, 20, codec);
            batch::stamp(&mut b, 100, 0);
            let h = batch::verify(&b).expect("valid");
            let p = plain(&b, &h, codec::MAX_DECOMPRESSED_BATCH).expect("decompresses");
            let records = parse(&p, &h).expect("parses");
            assert_eq!(records.len(), 7);
            assert_eq!(
                records.iter().map(|r| r.offset).collect::<Vec<_>>(),
                (100..107).collect::<Vec<_>>()
            );
            assert!(records
                .iter()
                .enumerate()
                .all(|(i, r)| r.timestamp == 5_000 + i as i64 && !r.tombstone));
            let again = compress(h.compression(), &p).expect("compresses");
            let mut rebuilt = b[..HEADER_LEN].to_vec();
            rebuilt.extend_from_slice(&again);
            let h2 = BatchHeader::parse(&rebuilt).expect("header");
            assert_eq!(
                parse(
                    &plain(&rebuilt, &h2, codec::MAX_DECOMPRESSED_BATCH).expect("plain"),
                    &h2
                )
                .expect("parse")
                .len(),
                7
            );
        }
    }

    /// Found by the wire fuzzer: a producer's batch (not yet stamped) with a base offset of
    /// i64::MAX overflowed when its records were sampled for hot keys.
    #[test]
    fn unstamped_extreme_offsets_and_timestamps_do_not_overflow() {
        let mut b = test_batches::batch(3, 5_000, 10);
        batch::stamp(&mut b, i64::MAX, 0);
        let h = BatchHeader::parse(&b).expect("header");
        assert_eq!(h.next_offset(), i64::MAX);
        let p = plain(&b, &h, codec::MAX_DECOMPRESSED_BATCH).expect("plain");
        let records = parse(&p, &h).expect("parses");
        assert!(records.iter().all(|r| r.offset == i64::MAX));
        let mut out = Vec::new();
        write_rebased(&mut out, &p, &records[0], i64::MIN);
        write_rebased(&mut out, &p, &records[0], i64::MAX);
    }

    #[test]
    fn rebased_records_keep_their_timestamps() {
        let b = test_batches::batch(3, 1_000, 10);
        let h = batch::verify(&b).expect("valid");
        let p = plain(&b, &h, codec::MAX_DECOMPRESSED_BATCH).expect("plain");
        let records = parse(&p, &h).expect("parse");
        let mut out = Vec::new();
        for r in &records {
            write_rebased(&mut out, &p, r, 86_400_000);
        }
        let shifted = BatchHeader {
            base_timestamp: 86_400_000,
            ..h
        };
        let again = parse(&out, &shifted).expect("parse");
        assert_eq!(
            again
                .iter()
                .map(|r| (r.offset, r.timestamp))
                .collect::<Vec<_>>(),
            records
                .iter()
                .map(|r| (r.offset, r.timestamp))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn truncated_framing_is_an_error_not_a_panic() {
        let b = test_batches::batch(3, 1_000, 10);
        let h = batch::verify(&b).expect("valid");
        let p = plain(&b, &h, codec::MAX_DECOMPRESSED_BATCH).expect("plain");
        for cut in 0..p.len() {
            assert!(parse(&p[..cut], &h).is_err());
        }
    }
}
