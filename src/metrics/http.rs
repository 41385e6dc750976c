//! The metrics listener (`metrics.listeners`): plain HTTP/1.1 GET of `/metrics` (Prometheus
//! text), `/top` (hot partitions and keys, JSON, for `runnel top`) and `/health`, one request
//! per connection. Bounded everywhere: the request head is
//! read within 8 KiB and 10 s, and at most 64 scrapes are served at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONCURRENT: usize = 64;
/// What `/top` reports: the hottest partitions, and keys of each.
const TOP_PARTITIONS: usize = 50;
const TOP_KEYS: usize = 10;

/// The OpenMetrics text format prometheus-client writes (Prometheus reads it, as do curl users).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves until `stop` flips.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(super::scrape::Scraper::new(&broker)));
    let registry = Arc::new(registry);
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (registry, broker) = (registry.clone(), broker.clone());
        tokio::spawn(async move {
            let _ = answer(stream, &registry, &broker).await;
            drop(permit);
        });
    }
}

/// The request line's method and path, once the head has arrived.
async fn read_head(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next()?.split_whitespace();
    Some((parts.next()?.to_string(), parts.next()?.to_string()))
}

async fn answer(
    mut stream: TcpStream,
    registry: &Registry,
    broker: &Broker,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await;
    let Ok(Some((method, target))) = head else {
        return Ok(());
    };
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method.as_str(), path) {
        ("GET", "/metrics") => {
            let mut body = String::with_capacity(64 * 1024);
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => ("200 OK", CONTENT_TYPE, body),
                Err(_) => ("500 Internal Server Error", "text/plain", String::new()),
            }
        }
        ("GET", "/top") => {
            let report = super::top::report(broker, TOP_PARTITIONS, TOP_KEYS);
            match serde_json::to_string(&report) {
                Ok(body) => ("200 OK", "application/json", body),
                Err(_) => ("500 Internal Server Error", "text/plain", String::new()),
            }
        }
        ("GET", "/health") => {
            let (status, state) = health(broker);
            let body = format!(
                "{{\"status\":\"{state}\",\"node_id\":{}}}\n",
                broker.config.node_id
            );
            (status, "application/json", body)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// Healthy while the log directory accepts writes and this broker is in the metadata image as
/// a live broker.
fn health(broker: &Broker) -> (&'static str, &'static str) {
    if broker.logs.is_failed() {
        return ("503 Service Unavailable", "log directory failed");
    }
    let image = broker.metadata.image();
    if image.live_broker(broker.config.node_id).is_none() {
        return ("503 Service Unavailable", "not registered");
    }
    ("200 OK", "ok")
}
