//! One client connection: read a length-prefixed frame, hand it to the dispatcher, write the
//! response, repeat. Requests on a connection are answered strictly in order. As in Kafka, a
//! request is handled only once those before it are answered, with one exception: produce
//! requests behind a produce that waits for its fsync or its followers are appended meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore, SemaphorePermit};

use crate::broker::Broker;
use crate::metrics;
use crate::net::framing::{self, FrameError};
use crate::net::limits::{QueuedRequest, QueuedRequestBytes};
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

/// How many produce requests a connection may have appended and not yet answered. While the
/// oldest waits for its fsync (durable acks) or its followers (acks=all), the ones behind it
/// are appended, so one fsync and one replication round cover them all; answers still go out
/// in order. Kafka answers one request at a time; librdkafka and the Java producer keep up to
/// 5 in flight with idempotence.
const PIPELINE_DEPTH: u32 = 8;

/// A request handled and not yet answered, with what it holds until it is.
struct Answer<'a> {
    outcome: Outcome<'a>,
    /// Its bytes' place in `queued.max.request.bytes`.
    _queued: Option<QueuedRequest>,
    _slot: SemaphorePermit<'a>,
    key: i16,
    version: i16,
    /// The Fetch kind it is also timed as (follower or consumer).
    fetch_kind: Option<i16>,
    received: Instant,
    dequeued: Instant,
}

/// connections.max.idle.ms: how long a connection may make no progress.
fn idle_timeout(broker: &Broker) -> Duration {
    Duration::from_millis(broker.config.connections_max_idle_ms.max(1))
}

async fn run(
    stream: TcpStream,
    broker: &Broker,
    ctx: &RequestContext<'_>,
    queued: &QueuedRequestBytes,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let (rd, wr) = stream.into_split();
    let idle = idle_timeout(broker);
    let pipeline = Semaphore::new(PIPELINE_DEPTH as usize);
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = read_requests(rd, broker, ctx, queued, shutdown, &pipeline, tx);
    let writer = write_answers(wr.as_ref(), rx, broker, idle);
    tokio::pin!(reader, writer);
    tokio::select! {
        // The requests already handled are still answered (a shutdown, a bad request).
        end = &mut reader => match writer.await {
            Err(failed) if matches!(end, End::Shutdown) => failed,
            _ => end,
        },
        answered = &mut writer => match answered {
            Err(failed) => failed,
            Ok(()) => reader.await,
        },
    }
}

/// Reads and handles requests in order. A produce is handled while earlier produce requests
/// wait for their answers (up to `PIPELINE_DEPTH`); any other request first waits until
/// everything before it is answered, as in Kafka.
async fn read_requests<'a>(
    mut rd: OwnedReadHalf,
    broker: &'a Broker,
    ctx: &'a RequestContext<'a>,
    queued: &QueuedRequestBytes,
    shutdown: &mut watch::Receiver<bool>,
    pipeline: &'a Semaphore,
    answers: mpsc::UnboundedSender<Answer<'a>>,
) -> End {
    let max = broker.config.socket_request_max_bytes;
    let idle = idle_timeout(broker);
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
        let reserved = match &size {
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
        if key != ApiKey::Produce as i16 {
            // Closed only when the connection ends, with the answers it waited for.
            if pipeline.acquire_many(PIPELINE_DEPTH).await.is_err() {
                return End::Shutdown;
            }
        }
        let Ok(slot) = pipeline.acquire().await else {
            return End::Shutdown;
        };
        let outcome = dispatch::handle(broker, frame, ctx).await;
        let fetch_kind =
            (key == ApiKey::Fetch as i16).then(|| match ctx.follower_fetch.load(Relaxed) {
                true => metrics::FETCH_FOLLOWER,
                false => metrics::FETCH_CONSUMER,
            });
        let answer = Answer {
            outcome,
            _queued: reserved,
            _slot: slot,
            key,
            version,
            fetch_kind,
            received,
            dequeued: now,
        };
        match answer.outcome {
            Outcome::Close(reason) => return End::Protocol(reason),
            Outcome::Silent => answer.done(broker),
            _ => {
                if answers.send(answer).is_err() {
                    return End::Shutdown;
                }
            }
        }
        framing::release(&mut buf);
    }
}

/// Sends the answers in the order their requests came, each once it is ready.
async fn write_answers<'a>(
    wr: &TcpStream,
    mut answers: mpsc::UnboundedReceiver<Answer<'a>>,
    broker: &Broker,
    idle: Duration,
) -> Result<(), End> {
    while let Some(mut answer) = answers.recv().await {
        let outcome = std::mem::replace(&mut answer.outcome, Outcome::Silent);
        let response = match outcome {
            Outcome::Respond(response) => response,
            Outcome::Deferred(ready) => ready.await.map_err(End::Protocol)?,
            Outcome::Silent => continue,
            Outcome::Close(reason) => return Err(End::Protocol(reason)),
        };
        match send_frame(wr, &response, idle).await {
            Ok(()) => answer.done(broker),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(End::Stalled("a response the client does not read"))
            }
            Err(e) => return Err(End::Io(e)),
        }
    }
    Ok(())
}

impl Answer<'_> {
    /// Times the request, from its arrival to its answer.
    fn done(&self, broker: &Broker) {
        let times = metrics::RequestTimes {
            total: self.received.elapsed(),
            queue: self.dequeued - self.received,
        };
        broker.metrics.request_done(self.key, self.version, times);
        if let Some(kind) = self.fetch_kind {
            broker.metrics.request_done(kind, self.version, times);
        }
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
