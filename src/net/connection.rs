//! One client connection: read a length-prefixed frame, hand it to the dispatcher, write the
//! response, repeat. Requests on a connection are answered strictly in order, one at a time,
//! as Kafka does (pipelined requests wait in the socket buffer).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::metrics;
use crate::net::framing::{self, FrameError};
use crate::net::limits::QueuedRequestBytes;
use crate::net::send::send_frame;
use crate::protocol::dispatch::{self, Outcome, RequestContext};

/// Why a connection ended, for the debug log.
#[derive(Debug)]
enum End {
    ClientClosed,
    Idle,
    /// No progress for connections.max.idle.ms with a request half read or a response half
    /// sent: a client that sent part of a frame and waits, or stopped reading its socket.
    Stalled(&'static str),
    Shutdown,
    Oversized(i64),
    Protocol(String),
    Io(std::io::Error),
}

/// Serves a connection accepted on `listener` (its name).
pub async fn serve(
    stream: TcpStream,
    broker: Arc<Broker>,
    listener: Arc<str>,
    queued: Arc<QueuedRequestBytes>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let host = peer.map_or_else(String::new, |p| format!("/{}", p.ip()));
    let ctx = RequestContext {
        peer_host: &host,
        listener: &listener,
        follower_fetch: AtomicBool::new(false),
    };
    let counted = broker.metrics.listener(&listener);
    counted.created.fetch_add(1, Relaxed);
    counted.connections.fetch_add(1, Relaxed);
    let end = run(stream, &broker, &ctx, &queued, &mut shutdown).await;
    counted.connections.fetch_sub(1, Relaxed);
    let misbehaved = match &end {
        End::Oversized(size) => format!("frame size {size} outside socket.request.max.bytes"),
        End::Protocol(reason) => format!("bad request: {reason}"),
        End::Stalled(what) => format!("no progress within connections.max.idle.ms on {what}"),
        End::Io(error) => return tracing::debug!(?peer, %error, "connection failed"),
        end => return tracing::debug!(?peer, ?end, "connection closed"),
    };
    if let Some(suppressed) = BAD_CLIENT_WARNINGS.admit() {
        tracing::warn!(?peer, suppressed, "{misbehaved}: connection closed")
    }
}

/// Warnings about misbehaving clients, at most one a second: a client sending garbage as fast
/// as it can (a fuzzer made 900,000 lines in five minutes) must not fill the broker's disk
/// with its log. Each line says how many were left out before it.
static BAD_CLIENT_WARNINGS: WarningBudget = WarningBudget::new();

struct WarningBudget {
    /// The second (since the Unix epoch) the last warning was written in.
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl WarningBudget {
    const fn new() -> Self {
        Self {
            last_second: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Some(count left out since the last one) if a warning may be written now.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.admit_at(now)
    }

    fn admit_at(&self, now: u64) -> Option<u64> {
        let last = self.last_second.load(Relaxed);
        if last != now
            && self
                .last_second
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Relaxed));
        }
        self.suppressed.fetch_add(1, Relaxed);
        None
    }
}

async fn run(
    stream: TcpStream,
    broker: &Broker,
    ctx: &RequestContext<'_>,
    queued: &QueuedRequestBytes,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let (mut rd, wr) = stream.into_split();
    let max = broker.config.socket_request_max_bytes;
    let idle = Duration::from_millis(broker.config.connections_max_idle_ms.max(1));
    let mut buf = framing::buffer();
    // When the last read from the socket returned: a request already whole in the buffer
    // then (pipelined behind the one being answered) has waited since.
    let mut last_read = Instant::now();
    loop {
        let buffered = framing::holds_frame(&buf);
        // Only the wait for a request's first bytes counts as idle.
        let started = tokio::select! {
            r = tokio::time::timeout(idle, framing::fill(&mut rd, &mut buf, 1)) => match r {
                Err(_) => return End::Idle,
                Ok(r) => r,
            },
            _ = shutdown.changed() => return End::Shutdown,
        };
        // Kafka's idle timer counts any socket without progress: a frame begun and never
        // finished must not hold its connection (and buffer) forever.
        let size = match started {
            Ok(()) => match tokio::time::timeout(idle, framing::fill(&mut rd, &mut buf, 4)).await {
                Ok(r) => r.and_then(|()| framing::checked_size(&buf, max)),
                Err(_) => return End::Stalled("a request sent in part"),
            },
            Err(e) => Err(e),
        };
        // Held until the request is answered.
        let _queued = match &size {
            Ok(size) => queued.reserve(*size).await,
            Err(_) => None,
        };
        let frame = match size {
            Ok(size) => {
                match tokio::time::timeout(idle, framing::read_body(&mut rd, &mut buf, size)).await
                {
                    Ok(r) => r,
                    Err(_) => return End::Stalled("a request sent in part"),
                }
            }
            Err(e) => Err(e),
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(FrameError::Closed) => return End::ClientClosed,
            Err(FrameError::Oversized(size)) => return End::Oversized(size),
            Err(FrameError::Io(e)) => return End::Io(e),
        };
        let now = Instant::now();
        let received = if buffered { last_read } else { now };
        if !buffered {
            last_read = now;
        }
        let (key, version) = framing::api_key_and_version(&frame);
        match dispatch::handle(broker, frame, ctx).await {
            Outcome::Respond(response) => match send_frame(wr.as_ref(), &response, idle).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return End::Stalled("a response the client does not read")
                }
                Err(e) => return End::Io(e),
            },
            Outcome::Silent => {}
            Outcome::Close(reason) => return End::Protocol(reason),
        }
        let times = metrics::RequestTimes {
            total: received.elapsed(),
            queue: now - received,
        };
        broker.metrics.request_done(key, version, times);
        if key == ApiKey::Fetch as i16 {
            let kind = match ctx.follower_fetch.load(Relaxed) {
                true => metrics::FETCH_FOLLOWER,
                false => metrics::FETCH_CONSUMER,
            };
            broker.metrics.request_done(kind, version, times);
        }
        framing::release(&mut buf);
    }
}

#[cfg(test)]
mod tests {
    use super::WarningBudget;

    #[test]
    fn one_warning_a_second_counting_those_left_out() {
        let budget = WarningBudget::new();
        assert_eq!(budget.admit_at(5), Some(0));
        assert_eq!(budget.admit_at(5), None);
        assert_eq!(budget.admit_at(5), None);
        assert_eq!(budget.admit_at(6), Some(2));
        assert_eq!(budget.admit_at(6), None);
        assert_eq!(budget.admit_at(9), Some(1));
    }
}
