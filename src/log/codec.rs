//! Decompressing a batch's records with a bound on the output: a small batch of a highly
//! compressible payload (a "zip bomb") is refused once its output passes the limit, never
//! inflated into memory first. kafka-protocol's codecs inflate whole, so the four codecs'
//! streaming readers are driven here (Kafka's framing: gzip, xerial-framed or raw snappy,
//! LZ4 frames, zstd frames).
//!
//! Never compresses (kafka-protocol does) and never interprets records.

use std::io::Read;

use crate::log::error::LogError;

pub const NONE: i16 = 0;
pub const GZIP: i16 = 1;
pub const SNAPPY: i16 = 2;
pub const LZ4: i16 = 3;
pub const ZSTD: i16 = 4;

/// The most a batch may decompress to wherever the broker looks inside one: the default and
/// the ceiling of `message.max.decompressed.bytes` (produce), and the bound of the cleaner and
/// timestamp lookups, which read only batches a produce accepted. Kafka's batches are at most
/// `message.max.bytes` (1 MiB) compressed; 64 times that is past what real data compresses by.
pub const MAX_DECOMPRESSED_BATCH: usize = 64 << 20;

const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic, version and compatible version.
const SNAPPY_HEADER_LEN: usize = 16;

fn too_large(limit: usize) -> LogError {
    LogError::DecompressesTooLarge { max: limit }
}

fn corrupt() -> LogError {
    LogError::CorruptBatch("records do not decompress")
}

/// Reads `r` to its end, refusing output past `limit` bytes.
fn read_bounded(r: impl Read, limit: usize) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| corrupt())?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, checking its declared size first.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), LogError> {
    let len = snap::raw::decompress_len(block).map_err(|_| corrupt())?;
    if out.len().saturating_add(len) > limit {
        return Err(too_large(limit));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|_| corrupt())?;
    Ok(())
}

fn snappy(compressed: &[u8], limit: usize) -> Result<Vec<u8>, LogError> {
    let mut out = Vec::new();
    if !compressed.starts_with(SNAPPY_MAGIC) {
        // Raw snappy, as the Java client's reader also accepts.
        snappy_block(compressed, &mut out, limit)?;
        return Ok(out);
    }
    let mut rest = compressed.get(SNAPPY_HEADER_LEN..).ok_or_else(corrupt)?;
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail.get(..len).ok_or_else(corrupt)?;
        snappy_block(block, &mut out, limit)?;
        rest = &tail[len..];
    }
    Ok(out)
}

/// The records of a batch compressed with `codec`, at most `limit` bytes of them.
pub fn decompress(codec: i16, compressed: &[u8], limit: usize) -> Result<Vec<u8>, LogError> {
    match codec {
        NONE if compressed.len() <= limit => Ok(compressed.to_vec()),
        NONE => Err(too_large(limit)),
        GZIP => read_bounded(flate2::read::GzDecoder::new(compressed), limit),
        SNAPPY => snappy(compressed, limit),
        LZ4 => read_bounded(lz4::Decoder::new(compressed).map_err(|_| corrupt())?, limit),
        ZSTD => read_bounded(
            zstd::stream::read::Decoder::new(compressed).map_err(|_| corrupt())?,
            limit,
        ),
        _ => Err(LogError::CorruptBatch("unknown compression codec")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::records::compress;

    #[test]
    fn every_codec_round_trips_within_the_limit() {
        let plain: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        for codec in [NONE, GZIP, SNAPPY, LZ4, ZSTD] {
            let packed = compress(codec, &plain).expect("compress");
            let back = decompress(codec, &packed, plain.len()).expect("decompress");
            assert!(back == plain, "codec {codec}");
            assert!(
                decompress(codec, &packed, plain.len() - 1).is_err(),
                "codec {codec} past the limit"
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        // 64 MiB of zeros packs into a few KiB to a few hundred KiB.
        let zeros = vec![0u8; 64 << 20];
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            let bomb = compress(codec, &zeros).expect("compress");
            assert!(bomb.len() < 4 << 20, "codec {codec}: {} bytes", bomb.len());
            let r = decompress(codec, &bomb, 1 << 20);
            assert!(
                matches!(r, Err(LogError::DecompressesTooLarge { max: 1048576 })),
                "codec {codec}: {r:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_and_garbage() {
        let plain = b"raw snappy without the xerial header".repeat(10);
        let raw = snap::raw::Encoder::new()
            .compress_vec(&plain)
            .expect("compress");
        assert_eq!(decompress(SNAPPY, &raw, 1 << 20).expect("raw"), plain);
        for codec in [GZIP, SNAPPY, LZ4, ZSTD] {
            assert!(decompress(codec, b"not compressed at all", 1 << 20).is_err());
        }
        assert!(decompress(7, b"", 1).is_err());
    }
}
