//! Connection budgets, with Kafka's names and behaviour: `max.connections.per.ip` (and its
//! overrides) closes a connection from an address that already has its share, and
//! `max.connection.creation.rate` makes a listener wait before accepting once new connections
//! come faster than the rate (Kafka's acceptor throttles the same way); and
//! `queued.max.request.bytes` bounds the request bytes held in memory across connections.
//!
//! Never reads or writes a connection's bytes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Open connections per client address.
pub struct PerIp {
    default: usize,
    overrides: BTreeMap<IpAddr, usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's place in its address's count, given back when dropped.
pub struct IpSlot {
    limits: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerIp {
    pub fn new(default: usize, overrides: BTreeMap<IpAddr, usize>) -> Arc<Self> {
        Arc::new(Self {
            default,
            overrides,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection from `ip`, or None when the address is at its limit.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.default);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

/// A token bucket of one second's worth of connections.
pub struct CreationRate {
    per_second: f64,
    /// Tokens left and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl CreationRate {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self {
            per_second,
            bucket: Mutex::new((per_second, Instant::now())),
        }
    }

    /// How long to wait before accepting the next connection (zero: at once); takes its token.
    pub fn delay(&self) -> Duration {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refilled = b.0 + now.duration_since(b.1).as_secs_f64() * self.per_second;
        let tokens = refilled.min(self.per_second) - 1.0;
        *b = (tokens, now);
        if tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queued_bytes_wait_for_room_without_holding_back_small_requests() {
        let budget = QueuedRequestBytes::new(Some(1000));
        let quick = Duration::from_millis(50);
        let big = budget.reserve(900).await.expect("bounded");
        let waiting = budget.reserve(500);
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(quick, &mut waiting).await.is_err());
        let small = tokio::time::timeout(quick, budget.reserve(50))
            .await
            .expect("a small request fits beside the big one");
        drop(big);
        let second = tokio::time::timeout(quick, &mut waiting)
            .await
            .expect("room once the first is answered");
        drop((small, second));
        // A frame beyond the whole budget takes all of it, once all of it is free.
        let whole = budget.reserve(5000).await.expect("bounded");
        assert!(tokio::time::timeout(quick, budget.reserve(1))
            .await
            .is_err());
        drop(whole);
        assert!(QueuedRequestBytes::new(None)
            .reserve(1 << 30)
            .await
            .is_none());
    }

    #[test]
    fn per_ip_counts_come_back_when_connections_close() {
        let local: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let limits = PerIp::new(2, BTreeMap::from([(other, 3)]));
        let a = limits.admit(local).expect("first");
        let _b = limits.admit(local).expect("second");
        assert!(limits.admit(local).is_none(), "third over the limit");
        drop(a);
        assert!(limits.admit(local).is_some(), "a slot came back");
        let others: Vec<_> = (0..3).filter_map(|_| limits.admit(other)).collect();
        assert_eq!(others.len(), 3, "the override allows three");
        assert!(limits.admit(other).is_none());
        let none = PerIp::new(0, BTreeMap::new());
        assert!(none.admit(local).is_none());
        assert!(none.open.lock().expect("lock").is_empty());
    }

    #[test]
    fn creation_rate_spaces_connections_past_the_burst() {
        let r = CreationRate::new(10);
        let waits: Vec<Duration> = (0..15).map(|_| r.delay()).collect();
        assert!(waits[..10].iter().all(|w| w.is_zero()), "{waits:?}");
        // The 11th onwards wait about 0.1 s more each (no time passes here).
        assert!((waits[10].as_secs_f64() - 0.1).abs() < 0.01, "{waits:?}");
        assert!((waits[14].as_secs_f64() - 0.5).abs() < 0.01, "{waits:?}");
    }
}

/// `queued.max.request.bytes`: request bytes in memory at once, across all connections. A
/// connection takes its next request's share before reading its body and gives it back once
/// the request is answered; while the budget has no room for it, the connection waits unread
/// (Kafka mutes it the same way). Small requests are not held behind a large one waiting for
/// room (Kafka's memory pool is not a queue either). A frame larger than the whole budget
/// waits until it has all of it.
pub struct QueuedRequestBytes {
    limit: Option<u64>,
    budget: Arc<RequestBudget>,
}

#[derive(Default)]
struct RequestBudget {
    used: AtomicU64,
    freed: Notify,
}

/// One request's share of the budget, given back when dropped.
pub struct QueuedRequest {
    budget: Arc<RequestBudget>,
    bytes: u64,
}

impl Drop for QueuedRequest {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.freed.notify_waiters();
    }
}

impl QueuedRequestBytes {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            budget: Arc::default(),
        }
    }

    /// Waits until a request of `size` bytes fits; None when unbounded.
    pub async fn reserve(&self, size: usize) -> Option<QueuedRequest> {
        let limit = self.limit?;
        let want = (size as u64).clamp(1, limit);
        loop {
            // Registered before looking, so a release in between is not missed.
            let freed = self.budget.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let taken =
                self.budget
                    .used
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                        (used + want <= limit).then_some(used + want)
                    });
            if taken.is_ok() {
                return Some(QueuedRequest {
                    budget: self.budget.clone(),
                    bytes: want,
                });
            }
            freed.await;
        }
    }
}
