//! OffsetIndex: sparse map from offset to file position within one segment (Kafka's
//! `.index` format: 4-byte offset relative to the segment base, 4-byte position, big-endian).

use super::index::IndexEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    /// Offset relative to the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment's `.log` file.
    pub position: u32,
}

impl IndexEntry for OffsetPosition {
    const SIZE: usize = 8;
    fn key(&self) -> i64 {
        i64::from(self.relative_offset)
    }
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

pub type OffsetIndex = super::index::IndexFile<OffsetPosition>;
