//! A broker's life as the controller sees it (Kafka's BrokerLifecycleManager): register with
//! a fresh incarnation, heartbeat every `broker.heartbeat.interval.ms` (the first one unfences
//! it), register again if the controller has forgotten it, and on SIGTERM ask to be fenced so
//! its leaderships move before the process exits (controlled shutdown).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::rpc::{ControllerReply, ControllerRequest};
use super::Cluster;
use crate::metadata::{BrokerRegistration, TopicError};

/// How long a registration keeps trying before start-up gives up.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a controlled shutdown waits for the controller.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a broker keeps serving after its leaderships moved in a controlled shutdown.
pub const LEADERSHIP_HANDOFF: Duration = Duration::from_millis(500);

/// Registers and waits until this node's image holds the registration and the unfencing, so
/// the broker starts serving with metadata at least that fresh.
///
/// While another process with this node.id still heartbeats (or a killed predecessor's session
/// has not expired yet) the controller refuses; this keeps asking until REGISTER_TIMEOUT.
pub async fn register(cluster: &Cluster, reg: &BrokerRegistration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + REGISTER_TIMEOUT;
    let mut warned = false;
    let offset = loop {
        let reply = cluster
            .call(
                ControllerRequest::RegisterBroker(reg.clone()),
                REGISTER_TIMEOUT,
            )
            .await?;
        match reply {
            ControllerReply::Done { offset } => break offset,
            ControllerReply::Failed(TopicError::DuplicateBroker(why))
                if tokio::time::Instant::now() < deadline =>
            {
                if !warned {
                    tracing::warn!("{why} Waiting for its session to expire.");
                    warned = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => anyhow::bail!("broker registration refused: {other:?}"),
        }
    };
    if !cluster.wait_applied(offset, REGISTER_TIMEOUT).await {
        anyhow::bail!("the metadata log did not reach the registration in time");
    }
    heartbeat(cluster, reg, false).await;
    // The first heartbeat unfences: serve only once this node's image says so.
    let mut images = cluster.image.clone();
    let unfenced = images.wait_for(|i| {
        i.live_broker(reg.id)
            .is_some_and(|b| b.incarnation == reg.incarnation)
    });
    if tokio::time::timeout(REGISTER_TIMEOUT, unfenced)
        .await
        .is_err()
    {
        anyhow::bail!("the controller did not unfence this broker in time");
    }
    Ok(())
}

async fn heartbeat(cluster: &Cluster, reg: &BrokerRegistration, shutting_down: bool) -> bool {
    let request = ControllerRequest::Heartbeat {
        id: reg.id,
        incarnation: reg.incarnation,
        shutting_down,
    };
    let timeout = if shutting_down {
        SHUTDOWN_TIMEOUT
    } else {
        super::CALL_TIMEOUT
    };
    matches!(
        cluster.call(request, timeout).await,
        Ok(ControllerReply::Heartbeat { .. })
    )
}

/// This broker's registration and whether it is shutting down, shared by the heartbeat loop
/// and the controlled shutdown. Every heartbeat is sent holding `shutting_down`, so once a
/// controlled shutdown has begun, no ordinary heartbeat can reach the controller after it and
/// unfence the broker again: that let a stopping broker rejoin the ISRs it had just left (its
/// fetcher still follows for the handoff), and acks=all then stalled until its session expired.
pub struct Lifecycle {
    pub reg: BrokerRegistration,
    shutting_down: tokio::sync::Mutex<bool>,
}

impl Lifecycle {
    pub fn new(reg: BrokerRegistration) -> Self {
        Self {
            reg,
            shutting_down: tokio::sync::Mutex::new(false),
        }
    }
}

/// Heartbeats until `stop`; re-registers when the controller no longer knows this
/// incarnation (it was fenced and forgotten, or the metadata was restored from elsewhere).
pub async fn heartbeat_loop(
    cluster: Arc<Cluster>,
    life: Arc<Lifecycle>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let reg = &life.reg;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        {
            let shutting_down = life.shutting_down.lock().await;
            heartbeat(&cluster, reg, *shutting_down).await;
            if *shutting_down {
                continue;
            }
        }
        let known = cluster
            .image
            .borrow()
            .brokers
            .get(&reg.id)
            .is_some_and(|b| b.incarnation == reg.incarnation);
        if !known {
            tracing::warn!("the controller no longer knows this broker: registering again");
            if let Err(e) = register(&cluster, reg).await {
                tracing::warn!(error = %e, "registration failed");
            }
        }
    }
}

/// Asks to be fenced (leaderships move away), bounded by a few seconds; the metadata offset
/// at which this node's image shows it fenced, so the broker can act on that image (answer
/// the appends waiting for followers with NOT_LEADER_OR_FOLLOWER) before it stops serving.
pub async fn controlled_shutdown(cluster: &Cluster, life: &Lifecycle) -> Option<u64> {
    let reg = &life.reg;
    let answered = {
        let mut shutting_down = life.shutting_down.lock().await;
        *shutting_down = true;
        heartbeat(cluster, reg, true).await
    };
    if !answered {
        tracing::warn!("controlled shutdown: the controller did not answer");
        return None;
    }
    let mut images = cluster.image.clone();
    let fenced = images.wait_for(|i| {
        i.brokers
            .get(&reg.id)
            .is_some_and(|b| b.incarnation == reg.incarnation && b.fenced)
    });
    let offset = match tokio::time::timeout(SHUTDOWN_TIMEOUT, fenced).await {
        Ok(Ok(image)) => Some(image.offset),
        _ => None,
    };
    if offset.is_some() {
        tracing::info!("controlled shutdown: fenced, leaderships moved");
    } else {
        tracing::warn!("controlled shutdown: this node's metadata did not show the fencing");
    }
    offset
}
