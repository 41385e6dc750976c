//! The replica fetcher (Kafka's ReplicaFetcherThread): for every partition this broker follows,
//! fetch from its leader over the leader's client listener with Fetch requests naming this
//! replica, and append the leader's batches as they are. One task and one connection per
//! leader, many partitions per request, in a fetch session (KIP-227): once the leader holds
//! the partitions, a fetch names only those whose position moved.
//!
//! Owns the follower's side of the log: where to fetch from, truncation to the leader's log
//! on a diverging epoch, and the follower's high watermark. Never serves clients and never
//! changes metadata.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{topic_name, Broker};
use crate::client::connection::Connection;
use crate::client::fetch_session::FetchSessionHandler;
use crate::log::{manager::remove_in_background, PartitionLog};
use crate::metadata::{MetadataImage, PartitionRegistration};

/// Starts and stops one fetcher per leader this broker follows, as images arrive, until `stop`.
pub async fn run(broker: Arc<Broker>, mut stop: watch::Receiver<bool>) {
    let mut images = broker.published.subscribe();
    let mut fetchers: HashMap<i32, JoinHandle<()>> = HashMap::new();
    loop {
        let image = broker.metadata.image();
        let sources: BTreeSet<i32> = followed(&image, broker.config.node_id)
            .map(|(_, _, reg)| reg.leader)
            .collect();
        fetchers.retain(|leader, task| {
            let keep = sources.contains(leader) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for leader in sources {
            fetchers
                .entry(leader)
                .or_insert_with(|| tokio::spawn(fetch_from(broker.clone(), leader)));
        }
        tokio::select! {
            r = images.changed() => if r.is_err() { break },
            _ = stop.changed() => break,
        }
    }
    for task in fetchers.into_values() {
        task.abort();
    }
}

/// The partitions `me` follows (a replica, not the leader) with a live leader.
fn followed(
    image: &MetadataImage,
    me: i32,
) -> impl Iterator<Item = (&str, i32, &PartitionRegistration)> {
    image.topics.values().flat_map(move |t| {
        t.partitions
            .iter()
            .enumerate()
            .filter(move |(_, reg)| {
                reg.leader != me
                    && reg.leader != PartitionRegistration::NO_LEADER
                    && reg.replicas.contains(&me)
            })
            .map(move |(p, reg)| (t.name.as_str(), p as i32, reg))
    })
}

/// Fetches everything `leader` leads for this broker, reconnecting after failures.
async fn fetch_from(broker: Arc<Broker>, leader: i32) {
    let backoff = Duration::from_millis(broker.config.cluster.replica_fetch_backoff_ms.max(10));
    loop {
        let addr = broker
            .metadata
            .image()
            .live_broker(leader)
            .and_then(|b| b.endpoint(&broker.config.listeners.inter_broker))
            .map(|e| format!("{}:{}", e.host, e.port));
        let Some(addr) = addr else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        match Connection::connect(&addr).await {
            Ok(mut conn) => {
                if let Err(e) = fetch_loop(&broker, leader, &mut conn).await {
                    tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
                }
            }
            Err(e) => tracing::debug!(leader, error = %e, "cannot reach the leader"),
        }
        tokio::time::sleep(backoff).await;
    }
}

/// One connection's fetches, until an I/O or protocol failure.
async fn fetch_loop(broker: &Broker, leader: i32, conn: &mut Connection) -> anyhow::Result<()> {
    let version = conn.version::<FetchRequest>()?;
    let settings = &broker.config.cluster;
    let timeout = Duration::from_millis(settings.replica_fetch_wait_max_ms.max(0) as u64)
        + Duration::from_secs(30);
    let me = broker.config.node_id;
    // Per connection: a new connection starts with a full fetch.
    let mut session = FetchSessionHandler::default();
    loop {
        let image = broker.metadata.image();
        let mut topics: Vec<FetchTopic> = Vec::new();
        // What each partition was asked with: its log, fetch offset and the leader's epoch.
        let mut asked: HashMap<(String, i32), (Arc<PartitionLog>, i64, i32)> = HashMap::new();
        for (topic, p, reg) in followed(&image, me).filter(|(_, _, r)| r.leader == leader) {
            let Some(log) = broker.partition_log(topic, p) else {
                continue;
            };
            let offset = log.log_end_offset();
            let fp = FetchPartition::default()
                .with_partition(p)
                .with_current_leader_epoch(reg.leader_epoch)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(log.latest_epoch().unwrap_or(-1))
                .with_log_start_offset(log.log_start_offset())
                .with_partition_max_bytes(settings.replica_fetch_max_bytes);
            asked.insert((topic.to_string(), p), (log, offset, reg.leader_epoch));
            match topics.last_mut().filter(|t| t.topic.0.as_str() == topic) {
                Some(t) => t.partitions.push(fp),
                None => {
                    let id = image.topic(topic).map(|t| t.id).unwrap_or_default();
                    topics.push(
                        FetchTopic::default()
                            .with_topic(topic_name(topic))
                            .with_topic_id(id)
                            .with_partitions(vec![fp]),
                    );
                }
            }
        }
        if topics.is_empty() {
            // Nothing to follow from this leader in this image: wait for the next one.
            let mut images = broker.published.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(1), images.changed()).await;
            continue;
        }
        let mut req = FetchRequest::default()
            .with_max_wait_ms(settings.replica_fetch_wait_max_ms)
            .with_min_bytes(1)
            .with_max_bytes(settings.replica_fetch_response_max_bytes)
            .with_session_epoch(-1)
            .with_topics(topics);
        if version >= 15 {
            req = req.with_replica_state(ReplicaState::default().with_replica_id(BrokerId(me)));
        } else {
            req = req.with_replica_id(BrokerId(me));
        }
        session.build(&mut req, version);
        let resp = tokio::time::timeout(timeout, conn.send_version(req, version))
            .await
            .map_err(|_| anyhow::anyhow!("fetch timed out"))??;
        if !session.handle(&resp, version) {
            tracing::debug!(leader, error = resp.error_code, "fetch session reset");
            continue;
        }
        let mut failed = 0usize;
        for t in resp.responses {
            let name = match version >= 13 {
                true => image.topic_by_id(t.topic_id).map(|t| t.name.clone()),
                false => Some(t.topic.0.to_string()),
            };
            let Some(name) = name else { continue };
            for pd in t.partitions {
                let Some((log, offset, epoch)) = asked.get(&(name.clone(), pd.partition_index))
                else {
                    continue;
                };
                let bytes = pd.records.as_ref().map_or(0, |r| r.len() as u64);
                let applied = match log.config().flush_messages {
                    // The append fsyncs when flush.messages is reached (as Kafka's fetcher
                    // thread does): this worker's other tasks move to another meanwhile.
                    Some(_) => crate::log::blocking(|| apply(log, *offset, *epoch, &pd)),
                    None => apply(log, *offset, *epoch, &pd),
                };
                match applied {
                    Ok(()) => {
                        broker
                            .metrics
                            .replication_bytes_in
                            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed += 1;
                        tracing::debug!(topic = %name, partition = pd.partition_index, error = %e, "follower fetch not applied");
                    }
                }
            }
        }
        if failed > 0 {
            // Leadership moved or the log refused the data: let metadata catch up.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Applies one partition of a fetch response, fetched in leader epoch `epoch`, to the
/// follower's log (which refuses it if this broker has since begun leading a later epoch).
fn apply(log: &PartitionLog, offset: i64, epoch: i32, pd: &PartitionData) -> anyhow::Result<()> {
    if pd.error_code != 0 {
        let e = ResponseError::try_from_code(pd.error_code);
        if e == Some(ResponseError::OffsetOutOfRange) {
            return out_of_range(log, offset, epoch, pd);
        }
        anyhow::bail!("leader answered {e:?}");
    }
    if pd.diverging_epoch.epoch >= 0 || pd.diverging_epoch.end_offset >= 0 {
        let div = &pd.diverging_epoch;
        let ours = log
            .end_offset_for_epoch(div.epoch)
            .map_or(div.end_offset, |(_, end)| end);
        let to = div.end_offset.min(ours).max(0);
        if to < log.high_watermark() {
            tracing::warn!(
                topic = log.topic(),
                partition = log.partition(),
                to,
                hw = log.high_watermark(),
                "truncating below the high watermark"
            );
        }
        tracing::info!(
            topic = log.topic(),
            partition = log.partition(),
            to,
            fetched = offset,
            end = log.log_end_offset(),
            epoch = ?log.latest_epoch(),
            leader_epoch = div.epoch,
            leader_end = div.end_offset,
            "truncating to the leader's log"
        );
        remove_in_background(log.truncate_to(to, epoch)?);
        return Ok(());
    }
    if let Some(records) = pd.records.as_ref().filter(|r| !r.is_empty()) {
        log.append_replicated(records, epoch)?;
    }
    log.set_high_watermark(pd.high_watermark);
    if pd.log_start_offset > log.log_start_offset() {
        let start = pd.log_start_offset.min(log.high_watermark());
        if start > log.log_start_offset() {
            remove_in_background(log.delete_records(start)?.1);
        }
    }
    Ok(())
}

/// The leader does not have `offset`: below its log start the follower starts over there;
/// past its end, the follower's suffix was never committed and goes.
fn out_of_range(
    log: &PartitionLog,
    offset: i64,
    epoch: i32,
    pd: &PartitionData,
) -> anyhow::Result<()> {
    if pd.log_start_offset >= 0 && offset < pd.log_start_offset {
        remove_in_background(log.truncate_fully_and_start_at(pd.log_start_offset, epoch)?);
    } else if pd.high_watermark >= 0 && pd.high_watermark < offset {
        remove_in_background(log.truncate_to(pd.high_watermark, epoch)?);
    }
    Ok(())
}
