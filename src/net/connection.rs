//! One client connection: read a length-prefixed frame, hand it to the dispatcher, write the
//! response, repeat. Requests on a connection are answered strictly in order, one at a time,
//! as Kafka does (pipelined requests wait in the socket buffer).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::protocol::dispatch::{self, Outcome};

/// Why a connection ended, for the debug log.
#[derive(Debug)]
enum End {
    ClientClosed,
    Idle,
    Shutdown,
    Oversized(i64),
    Protocol(String),
    Io(std::io::Error),
}

pub async fn serve(stream: TcpStream, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let host = peer.map_or_else(String::new, |p| format!("/{}", p.ip()));
    match run(stream, &broker, &host, &mut shutdown).await {
        End::Oversized(size) => tracing::warn!(
            ?peer,
            size,
            "frame size outside socket.request.max.bytes: connection closed"
        ),
        End::Protocol(reason) => tracing::warn!(?peer, %reason, "bad request: connection closed"),
        End::Io(error) => tracing::debug!(?peer, %error, "connection failed"),
        end => tracing::debug!(?peer, ?end, "connection closed"),
    }
}

async fn run(
    stream: TcpStream,
    broker: &Broker,
    peer_host: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let max = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    loop {
        let size = tokio::select! {
            r = tokio::time::timeout(idle, rd.read_i32()) => match r {
                Err(_) => return End::Idle,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return End::ClientClosed,
                Ok(Err(e)) => return End::Io(e),
                Ok(Ok(size)) => size,
            },
            _ = shutdown.changed() => return End::Shutdown,
        };
        // Checked before allocating: an absurd length never turns into an allocation.
        if size < 0 || size as usize > max {
            return End::Oversized(i64::from(size));
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if let Err(e) = rd.read_exact(&mut frame).await {
            return if e.kind() == std::io::ErrorKind::UnexpectedEof {
                End::ClientClosed
            } else {
                End::Io(e)
            };
        }
        match dispatch::handle(broker, frame.freeze(), peer_host).await {
            Outcome::Respond(bytes) => {
                if let Err(e) = wr.write_all(&bytes).await {
                    return End::Io(e);
                }
            }
            Outcome::Silent => {}
            Outcome::Close(reason) => return End::Protocol(reason),
        }
    }
}
