//! Sending a response frame: encoded chunks with send(2), record batches with sendfile(2)
//! straight from the segment file, so fetched bytes are never copied into this process.
//! MSG_MORE on every chunk but the last lets the kernel pack a frame's small headers and its
//! records into full packets.
//!
//! Owns the socket writes of a response. Never encodes or reads a file itself.

use std::io;
use std::time::Duration;

use rustix::net::SendFlags;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::protocol::response::{Chunk, ResponseFrame};

/// Fails with `TimedOut` when the socket takes no bytes for `stall` (a client that stopped
/// reading), so a stuck client holds its connection no longer than an idle one.
pub async fn send_frame(
    sock: &TcpStream,
    frame: &ResponseFrame,
    stall: Duration,
) -> io::Result<()> {
    let last = frame.chunks.len().saturating_sub(1);
    for (i, chunk) in frame.chunks.iter().enumerate() {
        let flags = if i < last {
            SendFlags::MORE
        } else {
            SendFlags::empty()
        };
        match chunk {
            Chunk::Bytes(bytes) => {
                let mut done = 0;
                while done < bytes.len() {
                    done += write_with(sock, stall, || {
                        rustix::net::send(sock, &bytes[done..], flags)
                    })
                    .await?;
                }
            }
            Chunk::File(slice) => {
                let mut position = slice.position();
                let end = position + slice.len() as u64;
                while position < end {
                    let want = (end - position) as usize;
                    let sent = write_with(sock, stall, || {
                        rustix::fs::sendfile(sock, slice.file(), Some(&mut position), want)
                    })
                    .await?;
                    if sent == 0 {
                        // The segment was truncated under the fetch (a leader turned follower):
                        // the frame's size is already promised, so the connection must go.
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{slice:?} shrank while being sent"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Runs one non-blocking write when the socket is writable, waiting again on EAGAIN.
async fn write_with(
    sock: &TcpStream,
    stall: Duration,
    mut op: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    loop {
        tokio::time::timeout(stall, sock.writable())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the client reads nothing"))??;
        match sock.try_io(Interest::WRITABLE, || op().map_err(io::Error::from)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}
