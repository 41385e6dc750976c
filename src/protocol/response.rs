//! A response frame as the connection sends it: encoded bytes and, for Fetch, record batches
//! left in their segment files between them, so they go from the page cache to the socket
//! without passing through this process (Kafka's FileRecords sent with transferTo).
//!
//! kafka-protocol encodes the whole response; a fetch handler puts a unique 16-byte
//! placeholder where each partition's records go, and `splice` cuts the encoded frame at each
//! one, swapping placeholder and length prefix for the real length and the file slice. Only
//! that length prefix is encoded here (kafka-protocol keeps its varint encoder private).
//!
//! Owns the frame's layout. Never reads a file: the connection sends the slices.

use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};

use crate::log::{FileSlice, LogError};

/// One piece of a frame, in order.
pub enum Chunk {
    Bytes(Bytes),
    File(FileSlice),
}

/// A whole response frame, its 4-byte size first.
pub struct ResponseFrame {
    pub chunks: Vec<Chunk>,
}

const PLACEHOLDER_LEN: usize = 16;

/// Eight bytes drawn once per process: a topic name or client id cannot be made to look like
/// a placeholder without knowing them, and the length prefix before each is checked too.
fn placeholder_key() -> &'static [u8; 8] {
    static KEY: OnceLock<[u8; 8]> = OnceLock::new();
    KEY.get_or_init(|| {
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut key = [0u8; 8];
        key.copy_from_slice(&random[..8]);
        key
    })
}

fn placeholder(index: usize) -> [u8; PLACEHOLDER_LEN] {
    let mut p = [0u8; PLACEHOLDER_LEN];
    p[..8].copy_from_slice(placeholder_key());
    p[8..].copy_from_slice(&(index as u64).to_be_bytes());
    p
}

/// The file slices of one response, in the order their placeholders were handed out (which is
/// the order the encoder writes them: partitions in response order).
#[derive(Default)]
pub struct FileRecords {
    slices: Vec<FileSlice>,
}

/// Slices shorter than this are copied into the frame: a sendfile call costs more than
/// copying a few kilobytes, and a fetch over thousands of small partitions would otherwise
/// hold thousands of file handles until it is sent.
const INLINE_BELOW: usize = 16 * 1024;
/// File slices one response holds at most; the rest are copied. Bounds the handles that
/// fetches waiting to be sent keep open beyond the segment file cache.
const MAX_FILE_SLICES: usize = 32;

impl FileRecords {
    /// The bytes to put in a `records` field for `slice`: a placeholder the frame splices the
    /// file into, or the records themselves when small or when this response holds enough
    /// handles already.
    pub fn records(&mut self, slice: FileSlice) -> Result<Bytes, LogError> {
        if slice.len() < INLINE_BELOW || self.slices.len() >= MAX_FILE_SLICES {
            return slice.read_bytes();
        }
        self.slices.push(slice);
        Ok(Bytes::copy_from_slice(&placeholder(self.slices.len() - 1)))
    }

    /// Turns an encoded frame (size prefix included) into chunks, each placeholder and its
    /// length prefix (a varint in flexible versions, an int32 before) replaced by the slice.
    pub fn splice(self, mut encoded: BytesMut, flexible: bool) -> anyhow::Result<ResponseFrame> {
        if self.slices.is_empty() {
            return Ok(ResponseFrame {
                chunks: vec![Chunk::Bytes(encoded.freeze())],
            });
        }
        let old_prefix = length_prefix(PLACEHOLDER_LEN, flexible)?;
        // Where each placeholder's length prefix starts, and the real prefix.
        let mut cuts = Vec::with_capacity(self.slices.len());
        let mut cursor = 4;
        let mut size = encoded.len() - 4;
        for (i, slice) in self.slices.iter().enumerate() {
            let needle = placeholder(i);
            let found = encoded[cursor..]
                .windows(PLACEHOLDER_LEN)
                .position(|w| w == needle)
                .map(|p| cursor + p)
                .filter(|&p| p >= cursor + old_prefix.len())
                .filter(|&p| encoded[p - old_prefix.len()..p] == old_prefix[..]);
            let Some(at) = found else {
                anyhow::bail!("records placeholder {i} not found in the encoded response");
            };
            let prefix = length_prefix(slice.len(), flexible)?;
            size = size + prefix.len() + slice.len() - old_prefix.len() - PLACEHOLDER_LEN;
            cuts.push((at - old_prefix.len(), prefix));
            cursor = at + PLACEHOLDER_LEN;
        }
        encoded[..4].copy_from_slice(&i32::try_from(size)?.to_be_bytes());
        let encoded = encoded.freeze();
        let mut chunks = Vec::with_capacity(3 * cuts.len() + 1);
        let mut from = 0;
        for ((cut, prefix), slice) in cuts.into_iter().zip(self.slices) {
            let mut head = BytesMut::with_capacity(cut - from + prefix.len());
            head.extend_from_slice(&encoded[from..cut]);
            head.extend_from_slice(&prefix);
            chunks.push(Chunk::Bytes(head.freeze()));
            chunks.push(Chunk::File(slice));
            from = cut + old_prefix.len() + PLACEHOLDER_LEN;
        }
        chunks.push(Chunk::Bytes(encoded.slice(from..)));
        Ok(ResponseFrame { chunks })
    }
}

/// How the protocol prefixes `len` record bytes: COMPACT_RECORDS (unsigned varint of len + 1)
/// in flexible versions, RECORDS (int32) before.
fn length_prefix(len: usize, flexible: bool) -> anyhow::Result<BytesMut> {
    let mut out = BytesMut::with_capacity(5);
    if flexible {
        let mut v = u32::try_from(len + 1)?;
        while v >= 0x80 {
            out.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.put_u8(v as u8);
    } else {
        out.put_i32(i32::try_from(len)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

    use super::*;

    /// A file of `len` bytes with a recognisable pattern, and its content.
    fn patterned(len: u32) -> (tempfile::NamedTempFile, Vec<u8>) {
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        file.write_all(&content).expect("write");
        (file, content)
    }

    /// Encodes a Fetch response whose partitions hold `ranges` of `file`, spliced; returns the
    /// bytes as the wire carries them and how many chunks stayed in the file.
    fn wire(
        file: &tempfile::NamedTempFile,
        ranges: &[(u64, usize)],
        version: i16,
    ) -> (Bytes, usize) {
        let path: Arc<std::path::Path> = file.path().into();
        let handle = Arc::new(file.reopen().expect("reopen"));
        let mut files = FileRecords::default();
        let partitions = ranges
            .iter()
            .enumerate()
            .map(|(i, &(position, len))| {
                let slice = FileSlice::new(handle.clone(), path.clone(), position, len);
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(files.records(slice).expect("records")))
            })
            .collect();
        let response =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)]);
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        response.encode(&mut buf, version).expect("encode");
        let frame = files.splice(buf, version >= 12).expect("splice");
        let mut wire = Vec::new();
        let mut in_file = 0;
        for chunk in &frame.chunks {
            match chunk {
                Chunk::Bytes(b) => wire.extend_from_slice(b),
                Chunk::File(f) => {
                    in_file += 1;
                    wire.extend_from_slice(&f.read_bytes().expect("read"))
                }
            }
        }
        (Bytes::from(wire), in_file)
    }

    /// Every Fetch version's frame, spliced and put back together, decodes to the file's bytes
    /// in each partition, with the frame size right; small slices travel copied.
    #[test]
    fn spliced_frames_decode_to_the_file_bytes() {
        let (file, content) = patterned(200_000);
        let ranges = [
            (0u64, 20_000usize),
            (20_000, 0),
            (30_000, 200),
            (10, 17_000),
            (100_000, 50_000),
        ];
        for version in 4..=16i16 {
            let (wire, in_file) = wire(&file, &ranges, version);
            assert_eq!(in_file, 3, "v{version}: the three slices of 16 KiB or more");
            let size = i32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
            assert_eq!(size, wire.len() - 4, "v{version}");
            let mut body = wire.slice(4..);
            let decoded = FetchResponse::decode(&mut body, version).expect("decode");
            assert!(body.is_empty(), "v{version}: trailing bytes");
            for (p, &(position, len)) in decoded.responses[0].partitions.iter().zip(&ranges) {
                let want = &content[position as usize..position as usize + len];
                assert_eq!(p.records.as_deref(), Some(want), "v{version}");
            }
        }
    }

    /// One response keeps at most MAX_FILE_SLICES handles; further slices are copied.
    #[test]
    fn file_slices_per_response_are_capped() {
        let (file, content) = patterned(50 * 20_000);
        let ranges: Vec<(u64, usize)> = (0..50).map(|i| (i * 20_000, 20_000)).collect();
        let (wire, in_file) = wire(&file, &ranges, 16);
        assert_eq!(in_file, MAX_FILE_SLICES);
        let decoded = FetchResponse::decode(&mut wire.slice(4..), 16).expect("decode");
        for (p, &(position, len)) in decoded.responses[0].partitions.iter().zip(&ranges) {
            assert_eq!(
                p.records.as_deref(),
                Some(&content[position as usize..][..len])
            );
        }
    }
}
