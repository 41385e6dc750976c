//! The cluster: the controller quorum (openraft over our metadata log and state machine), the
//! controller listener, the active controller, and each broker's registration and heartbeats.
//! A single node is a quorum of one voter with no listener to serve; nothing else differs.
//!
//! Owns consensus and the broker ↔ controller conversation. Never touches partition data:
//! the broker reconciles its logs with the images this module publishes.

pub mod ballast;
pub mod controller;
pub mod isr;
pub mod log_store;
pub mod observer;
pub mod raft_types;
pub mod registration;
pub mod replica_fetcher;
pub mod rpc;
pub mod state_machine;
pub mod transport;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::BasicNode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use self::controller::{Controller, ControllerSettings};
use self::raft_types::{NodeId, Raft};
use self::rpc::{ControllerReply, ControllerRequest, Reply, Request};
use crate::config::Config;
use crate::metadata::{MetadataImage, TopicError};

/// Raft timing close to KRaft's (controller.quorum.election.timeout.ms=1000): a missing leader
/// is noticed within a second. openraft's leader lease equals the maximum, so a new leader is
/// elected between about 1 and 2 s after the old one stops.
const HEARTBEAT_MS: u64 = 100;
const ELECTION_TIMEOUT_MIN_MS: u64 = 500;
const ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
/// Entries between snapshots; a restart replays at most this many.
const SNAPSHOT_EVERY: u64 = 1000;
const CONTROLLER_TICK: Duration = Duration::from_millis(500);
/// One controller call (connect, send, reply).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Cluster {
    pub node_id: i32,
    pub cluster_id: Arc<str>,
    /// A voter's Raft node and controller; None on a broker-only node, which fetches the
    /// committed metadata log from the active controller instead (an observer, as KRaft says).
    quorum: Option<(Raft, Arc<Controller>)>,
    /// Images as this node applies them.
    pub image: watch::Receiver<Arc<MetadataImage>>,
    voters: BTreeMap<NodeId, BasicNode>,
    /// The active controller as an observer last heard of it.
    leader_seen: std::sync::Mutex<Option<NodeId>>,
    /// The connection to the active controller, when it is another node.
    leader_conn: tokio::sync::Mutex<Option<(NodeId, TcpStream)>>,
}

/// Where the metadata log lives: `metadata.log.dir`, or `__cluster_metadata-0` in the log dir.
pub fn metadata_dir(config: &Config) -> PathBuf {
    config
        .cluster
        .metadata_log_dir
        .clone()
        .unwrap_or_else(|| config.log_dir.clone())
        .join(crate::log::manager::METADATA_LOG_DIR)
}

const META_PROPERTIES: &str = "meta.properties";

/// Kafka's `meta.properties`: the log directory belongs to one cluster and one node. Written
/// at the first start, checked at every other; a mismatch stops start-up with one line.
pub fn claim_data_dir(config: &Config) -> anyhow::Result<()> {
    let dir = &config.log_dir;
    crate::log::checkpoint::create_dir_durably(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let props = crate::config::parse_properties(&text);
            let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
            if get("cluster.id") != config.cluster_id {
                anyhow::bail!(
                    "log directory {} belongs to cluster {:?}, not {:?} (cluster.id / CLUSTER_ID)",
                    dir.display(),
                    get("cluster.id"),
                    config.cluster_id
                );
            }
            if get("node.id") != config.node_id.to_string() {
                anyhow::bail!(
                    "log directory {} belongs to node {}, not node.id {}",
                    dir.display(),
                    get("node.id"),
                    config.node_id
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = format!(
                "# Written by runnel at the first start.\nversion=1\ncluster.id={}\nnode.id={}\n",
                config.cluster_id, config.node_id
            );
            crate::log::checkpoint::write_atomically(&path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl Cluster {
    /// Opens the metadata log, starts the Raft node (initialising the quorum on first start)
    /// and serves the controller listener, if this node has one.
    pub async fn start(
        config: &Config,
        controller_listener: Option<TcpListener>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Self>> {
        let voters: BTreeMap<NodeId, BasicNode> = if config.cluster.voters.is_empty() {
            BTreeMap::from([(config.node_id as NodeId, BasicNode::new(""))])
        } else {
            config
                .cluster
                .voters
                .iter()
                .map(|v| (v.id as NodeId, BasicNode::new(v.addr())))
                .collect()
        };
        if !config.cluster.controller {
            let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
            let cluster = Arc::new(Self {
                node_id: config.node_id,
                cluster_id: Arc::from(config.cluster_id.as_str()),
                quorum: None,
                image,
                voters,
                leader_seen: std::sync::Mutex::new(None),
                leader_conn: tokio::sync::Mutex::new(None),
            });
            tokio::spawn(observer::follow(
                cluster.clone(),
                publish,
                config.log.clone(),
                stop,
            ));
            return Ok(cluster);
        }
        let dir = metadata_dir(config);
        crate::log::checkpoint::create_dir_durably(&dir)
            .with_context(|| format!("creating metadata.log.dir {}", dir.display()))?;
        let ballast = Arc::new(ballast::Ballast::new(&dir, ballast::SIZE));
        let (log_store, recovered) = log_store::LogStore::open(&dir, ballast.clone())
            .with_context(|| format!("opening the metadata log in {}", dir.display()))?;
        if recovered.truncated_bytes > 0 {
            tracing::warn!(?recovered, "metadata log recovered");
        }
        let (state_machine, image) =
            state_machine::StateMachine::open(&dir, config.log.clone(), ballast)
                .with_context(|| format!("reading the metadata snapshot in {}", dir.display()))?;
        let raft_config = openraft::Config {
            cluster_name: config.cluster_id.clone(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .context("Raft settings")?;
        let cluster_id: Arc<str> = Arc::from(config.cluster_id.as_str());
        let node_id = config.node_id;
        let stored_voters = log_store
            .last_voters()
            .unwrap_or_else(|| state_machine.voters());
        if !stored_voters.is_empty() && stored_voters != voters.keys().copied().collect::<Vec<_>>()
        {
            anyhow::bail!(
                "controller.quorum.voters lists {:?} but the metadata log in {} was formed by voters {stored_voters:?}",
                voters.keys().collect::<Vec<_>>(),
                dir.display()
            );
        }
        let network = transport::Network {
            cluster_id: cluster_id.clone(),
        };
        let raft = Raft::new(
            node_id as NodeId,
            Arc::new(raft_config),
            network,
            log_store.clone(),
            state_machine,
        )
        .await
        .context("starting the Raft node")?;
        if !raft.is_initialized().await.unwrap_or(true) {
            // Every voter does this with the same list; the first entry is identical on all.
            if let Err(e) = raft.initialize(voters.clone()).await {
                tracing::debug!(error = %e, "quorum already initialised");
            }
        }
        let controller = Arc::new(Controller::new(
            ControllerSettings {
                node_id,
                defaults: config.log.clone(),
                num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                max_broker_partitions: config.max_broker_partitions,
                session_timeout: Duration::from_millis(config.cluster.session_timeout_ms),
                leader_imbalance_check: config.cluster.auto_leader_rebalance_enable.then(|| {
                    Duration::from_secs(config.cluster.leader_imbalance_check_interval_seconds)
                }),
            },
            raft.clone(),
            log_store,
            image.clone(),
        ));
        if let Some(listener) = controller_listener {
            tokio::spawn(transport::serve(
                listener,
                raft.clone(),
                controller.clone(),
                cluster_id.clone(),
                stop.clone(),
            ));
        }
        let c = controller.clone();
        let mut tick_stop = stop;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(CONTROLLER_TICK) => c.fence_expired().await,
                    _ = tick_stop.changed() => return,
                }
            }
        });
        Ok(Arc::new(Self {
            node_id,
            cluster_id,
            quorum: Some((raft, controller)),
            image,
            voters,
            leader_seen: std::sync::Mutex::new(None),
            leader_conn: tokio::sync::Mutex::new(None),
        }))
    }

    /// Sends a request to the active controller (this node or another voter), following
    /// leader changes, until it is answered or `timeout` passes.
    pub async fn call(
        &self,
        request: ControllerRequest,
        timeout: Duration,
    ) -> Result<ControllerReply, TopicError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut leader_hint: Option<NodeId> = None;
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            // Without a known leader an observer asks the voters in turn; they answer with a hint.
            let leader = leader_hint.take().or_else(|| self.leader()).or_else(|| {
                self.quorum
                    .is_none()
                    .then(|| self.voters.keys().nth(attempt % self.voters.len().max(1)))
                    .flatten()
                    .copied()
            });
            let reply = match (leader, &self.quorum) {
                (None, _) => None,
                (Some(id), Some((_, controller))) if id == self.node_id as NodeId => {
                    Some(controller.handle(request.clone()).await)
                }
                (Some(id), _) => self.call_remote(id, request.clone()).await,
            };
            match reply {
                Some(ControllerReply::NotController { leader }) => {
                    leader_hint = leader.filter(|l| Some(*l) != self.leader());
                    self.set_leader_seen(None);
                }
                Some(r) => {
                    self.set_leader_seen(leader);
                    return Ok(r);
                }
                None => self.set_leader_seen(None),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TopicError::NotController(
                    "The controller quorum did not answer in time.".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The active controller as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.quorum {
            Some((raft, _)) => raft.metrics().borrow().current_leader,
            None => *self.leader_seen.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Whether this node is the active controller.
    pub fn is_active_controller(&self) -> bool {
        self.quorum.is_some() && self.leader() == u64::try_from(self.node_id).ok()
    }

    fn set_leader_seen(&self, leader: Option<NodeId>) {
        if self.quorum.is_none() {
            *self.leader_seen.lock().unwrap_or_else(|p| p.into_inner()) = leader;
        }
    }

    async fn call_remote(&self, id: NodeId, request: ControllerRequest) -> Option<ControllerReply> {
        let addr = self.voters.get(&id)?.addr.clone();
        let mut conn = self.leader_conn.lock().await;
        let mut stream = match conn.take() {
            Some((cached, s)) if cached == id => s,
            _ => transport::connect(&addr, CALL_TIMEOUT).await.ok()?,
        };
        match transport::exchange(
            &mut stream,
            &self.cluster_id,
            Request::Controller(request),
            CALL_TIMEOUT,
        )
        .await
        {
            Ok(Reply::Controller(r)) => {
                *conn = Some((id, stream));
                Some(r)
            }
            Ok(other) => {
                tracing::warn!(node = id, reply = ?other, "unexpected answer from the controller");
                None
            }
            Err(e) => {
                tracing::debug!(node = id, error = %e, "controller call failed");
                None
            }
        }
    }

    /// Waits until this node's applied image reaches `offset`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut rx = self.image.clone();
        tokio::time::timeout(timeout, rx.wait_for(|i| i.offset >= offset))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub async fn shutdown(&self) {
        if let Some((raft, _)) = &self.quorum {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!(error = %e, "Raft shutdown");
            }
        }
    }
}
