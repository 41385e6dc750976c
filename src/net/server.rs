//! The listeners: each accepts connections (`max.connections` counts them all, and each
//! connection knows its listener's name); this also runs the periodic maintenance on a thread
//! of its own (flush.ms, retention, checkpoints; the log cleaner runs on its own threads) and
//! the group timers, and on shutdown stops accepting, lets connections end, and closes the
//! log cleanly.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::connection;
use super::limits::{CreationRate, PerIp, QueuedRequestBytes};
use crate::broker::Broker;

/// How long shutdown waits for open connections to finish their current request.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
const MAINTENANCE_TICK: Duration = Duration::from_millis(500);
/// Resolution of the group timers (sessions, join and sync deadlines, initial delay).
const GROUP_TICK: Duration = Duration::from_millis(10);

/// Serves every listener, each `(name, socket)`, until `shutdown` completes.
pub async fn run(
    listeners: Vec<(String, TcpListener)>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(broker.config.max_connections.max(1)));
    let per_ip = PerIp::new(
        broker.config.max_connections_per_ip,
        broker.config.max_connections_per_ip_overrides.clone(),
    );
    let queued = Arc::new(QueuedRequestBytes::new(
        broker.config.queued_max_request_bytes,
    ));
    let maintenance = spawn_maintenance(broker.clone(), stop_rx.clone())?;
    let group_timers = tokio::spawn(group_timers(broker.clone(), stop_rx.clone()));
    tokio::spawn(crate::metrics::tick(broker.clone(), stop_rx.clone()));
    let accepting: Vec<_> = listeners
        .into_iter()
        .map(|(name, listener)| {
            tokio::spawn(accept(
                listener,
                name.into(),
                broker.clone(),
                Budgets {
                    slots: slots.clone(),
                    per_ip: per_ip.clone(),
                    rate: CreationRate::new(broker.config.max_connection_creation_rate),
                    queued: queued.clone(),
                },
                stop_rx.clone(),
            ))
        })
        .collect();
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for a in accepting {
        let _ = a.await;
    }
    // Members waiting in JoinGroup/SyncGroup are released so their connections can end.
    broker.groups.shutdown();
    let _ = group_timers.await;
    let total = broker.config.max_connections.max(1) as u32;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, slots.acquire_many(total)).await;
    // Waited for without blocking the runtime: the thread sees the stop within a tick.
    while !maintenance.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = maintenance.join();
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.shutdown()).await??;
    tracing::info!("clean shutdown complete");
    Ok(())
}

/// What a listener admits connections against: `max.connections` (all listeners),
/// `max.connections.per.ip` (all listeners) and `max.connection.creation.rate` (its own).
struct Budgets {
    slots: Arc<Semaphore>,
    per_ip: Arc<PerIp>,
    rate: CreationRate,
    /// `queued.max.request.bytes`, shared by every connection of every listener.
    queued: Arc<QueuedRequestBytes>,
}

/// Accepts connections on one listener until stopped.
async fn accept(
    listener: TcpListener,
    name: Arc<str>,
    broker: Arc<Broker>,
    budgets: Budgets,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let wait = budgets.rate.delay();
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let Ok(permit) = budgets.slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "max.connections reached: connection refused");
            continue;
        };
        let Some(ip_slot) = budgets.per_ip.admit(peer.ip()) else {
            tracing::info!(%peer, "max.connections.per.ip reached for this address: connection closed");
            continue;
        };
        let broker = broker.clone();
        let stop = stop.clone();
        let name = name.clone();
        let queued = budgets.queued.clone();
        tokio::spawn(async move {
            connection::serve(stream, broker, name, queued, stop).await;
            drop((permit, ip_slot));
        });
    }
}

/// Starts the maintenance thread: flush.ms, retention and checkpoints, every tick until
/// stopped. A thread of its own, started once, rather than a blocking task per tick: the
/// blocking pool spawns a thread whenever none is idle, and tokio panics when the OS refuses
/// one. A pass that panics is logged and the next tick runs as usual.
fn spawn_maintenance(
    broker: Arc<Broker>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let retention_every = Duration::from_millis(broker.config.retention_check_interval_ms.max(1));
    let checkpoint_every = Duration::from_millis(broker.config.checkpoint_interval_ms.max(1));
    std::thread::Builder::new()
        .name("maintenance".into())
        .spawn(move || {
            let mut last_retention = Instant::now();
            let mut last_checkpoint = Instant::now();
            loop {
                std::thread::sleep(MAINTENANCE_TICK);
                if *stop.borrow() {
                    return;
                }
                let now = Instant::now();
                let retention = now - last_retention >= retention_every;
                if retention {
                    last_retention = now;
                }
                if retention || now - last_checkpoint >= checkpoint_every || any_flush_ms(&broker) {
                    last_checkpoint = now;
                    let pass = std::panic::AssertUnwindSafe(|| broker.maintain(retention));
                    if std::panic::catch_unwind(pass).is_err() {
                        tracing::error!("a maintenance pass panicked; the next tick runs again");
                    }
                }
            }
        })
}

async fn group_timers(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(GROUP_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        broker.groups.tick(crate::log::LogManager::now_ms());
    }
}

fn any_flush_ms(broker: &Broker) -> bool {
    broker
        .metadata
        .list()
        .iter()
        .any(|t| t.config.flush_ms.is_some())
        || broker.config.log.flush_ms.is_some()
}
