//! Kafka's framing on a byte stream: a 4-byte big-endian size, then that many bytes. Shared by
//! the broker's connections and the wire client.
//!
//! Reads go into one buffer per connection, without zeroing; each frame is split off it, and
//! once the frame is dropped its space is reused, so steady traffic allocates nothing. The size
//! is checked before anything is reserved for it. Never interprets a frame.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug)]
pub enum FrameError {
    /// The stream ended (at a frame boundary or not).
    Closed,
    /// A size below zero or above the limit.
    Oversized(i64),
    Io(io::Error),
}

/// Reads until `buf` holds at least `want` bytes.
pub async fn fill<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), FrameError> {
    if buf.len() < want {
        buf.reserve(want - buf.len());
    }
    while buf.len() < want {
        match rd.read_buf(buf).await {
            Ok(0) => return Err(FrameError::Closed),
            Ok(_) => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// The next frame's body, of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Bytes, FrameError> {
    fill(rd, buf, 4).await?;
    let size = checked_size(buf, max)?;
    read_body(rd, buf, size).await
}

/// The size the frame at the start of `buf` declares (`buf` holds at least 4 bytes), if
/// within `max`.
pub fn checked_size(buf: &[u8], max: usize) -> Result<usize, FrameError> {
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    match usize::try_from(size) {
        Ok(size) if size <= max => Ok(size),
        _ => Err(FrameError::Oversized(i64::from(size))),
    }
}

/// The body of the frame at the start of `buf`, whose size `checked_size` gave.
pub async fn read_body<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    size: usize,
) -> Result<Bytes, FrameError> {
    fill(rd, buf, 4 + size).await?;
    buf.advance(4);
    Ok(buf.split_to(size).freeze())
}

/// A buffer for `read_frame`; `release` lets go of one grown past `KEEP` by a large frame.
pub fn buffer() -> BytesMut {
    BytesMut::with_capacity(START)
}

pub fn release(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP {
        *buf = buffer();
    }
}

const START: usize = 64 * 1024;
const KEEP: usize = 2 * 1024 * 1024;

/// Whether `buf` already holds a whole frame (read along with an earlier one).
pub fn holds_frame(buf: &[u8]) -> bool {
    match buf {
        [a, b, c, d, rest @ ..] => {
            let size = i32::from_be_bytes([*a, *b, *c, *d]);
            size >= 0 && rest.len() >= size as usize
        }
        _ => false,
    }
}

/// A request frame's API key and version (its first four bytes), -1 for a frame too short.
pub fn api_key_and_version(frame: &[u8]) -> (i16, i16) {
    match frame {
        [k0, k1, v0, v1, ..] => (
            i16::from_be_bytes([*k0, *k1]),
            i16::from_be_bytes([*v0, *v1]),
        ),
        _ => (-1, -1),
    }
}
