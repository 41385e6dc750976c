//! Partition (Kafka's `Partition`): the leader's view of one partition it leads: each
//! follower's fetch position and when it was last caught up, the high watermark those positions
//! allow, and which ISR change (shrink or expand) is due.
//!
//! Owns the high-watermark rule: the smallest log end offset in the ISR, never moving back;
//! and durable acks (`flush.messages`) as group commit.
//! Never changes the ISR itself: the controller commits that (AlterPartition), and the new
//! ISR arrives with the next metadata image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::log::{LogError, PartitionLog};
use crate::metadata::PartitionRegistration;

#[derive(Debug, Clone, Copy)]
struct FollowerState {
    /// The follower holds every offset below this (its last fetch offset).
    log_end_offset: i64,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end when the follower last fetched.
    leader_end_at_last_fetch: i64,
}

struct LeaderState {
    /// The epoch this state belongs to; a new epoch starts from scratch.
    leader_epoch: i32,
    /// Where the leader's epoch began: a follower must reach it to rejoin the ISR.
    epoch_start_offset: i64,
    /// When this replica became leader (followers count as caught up until then).
    since_ms: i64,
    followers: HashMap<i32, FollowerState>,
    /// An ISR change sent to the controller and not yet seen in an image. Until it is, the
    /// high watermark counts both ISRs (Kafka's maximal ISR): a follower being added must
    /// already hold everything committed, one being removed still holds back the watermark.
    pending_isr: Option<Vec<i32>>,
    /// The committed ISR this state was last refreshed with.
    isr: Vec<i32>,
    /// The partition epoch of that registration (-1: none yet): an image that leaves this
    /// partition alone leaves its state, and an ISR change in flight, alone.
    partition_epoch: i32,
}

pub struct Partition {
    pub log: Arc<PartitionLog>,
    /// What producers sent lately: rates and hot keys (`metrics::hot`).
    pub activity: crate::metrics::hot::PartitionActivity,
    state: Mutex<LeaderState>,
    /// The high watermark, for acks=all produces waiting on it (the purgatory).
    hw: watch::Sender<i64>,
    /// One sync of the log's records at a time for produces waiting on durability; those
    /// queued behind it are covered by it or by the next, which takes in every append made
    /// meanwhile.
    flush_gate: tokio::sync::Mutex<()>,
}

/// What a follower's fetch changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FetchEffect {
    pub hw_advanced: bool,
    /// The follower caught up and should rejoin the ISR: the ISR to ask for.
    pub expand: Option<Vec<i32>>,
}

impl Partition {
    pub fn new(log: Arc<PartitionLog>, reg: &PartitionRegistration, now_ms: i64) -> Self {
        let hw = log.high_watermark();
        Self {
            state: Mutex::new(LeaderState {
                leader_epoch: reg.leader_epoch,
                epoch_start_offset: log.log_end_offset(),
                since_ms: now_ms,
                followers: HashMap::new(),
                pending_isr: None,
                isr: reg.isr.clone(),
                partition_epoch: -1,
            }),
            log,
            activity: Default::default(),
            hw: watch::channel(hw).0,
            flush_gate: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns once the records below `upto` are fsynced: group commit for `flush.messages`.
    /// The fsync runs off the async workers and outside the log's writer lock, and one fsync
    /// covers every append that came while the previous one ran.
    pub async fn wait_durable(&self, upto: i64) -> Result<(), LogError> {
        if self.log.synced_to() >= upto {
            return Ok(());
        }
        let _gate = self.flush_gate.lock().await;
        if self.log.synced_to() >= upto {
            return Ok(());
        }
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || log.sync_records())
            .await
            .unwrap_or_else(|e| Err(LogError::task_failed(self.log.topic(), e)))
    }

    pub fn leader_epoch(&self) -> i32 {
        self.lock().leader_epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaderState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The committed ISR's size as of the last image applied (min.insync.replicas checks).
    pub fn isr_size(&self) -> usize {
        self.lock().isr.len()
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Records a follower's fetch at `offset` and moves the high watermark if it can. An
    /// `eligible` follower (registered and unfenced) that caught up may rejoin the ISR.
    pub fn on_follower_fetch(
        &self,
        reg: &PartitionRegistration,
        replica: i32,
        offset: i64,
        now_ms: i64,
        eligible: bool,
    ) -> FetchEffect {
        let leader_end = self.log.log_end_offset();
        let mut state = self.lock();
        let f = state.followers.entry(replica).or_insert(FollowerState {
            log_end_offset: -1,
            last_caught_up_ms: -1,
            last_fetch_ms: now_ms,
            leader_end_at_last_fetch: -1,
        });
        // Kafka's rule: caught up now if it reached our end; caught up at its previous fetch if
        // it reached what our end was then.
        if offset >= leader_end {
            f.last_caught_up_ms = now_ms;
        } else if offset >= f.leader_end_at_last_fetch && f.leader_end_at_last_fetch >= 0 {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = offset;
        f.last_fetch_ms = now_ms;
        f.leader_end_at_last_fetch = leader_end;
        let hw = self.log.high_watermark();
        let rejoins = eligible
            && !reg.isr.contains(&replica)
            && reg.replicas.contains(&replica)
            && state.pending_isr.is_none()
            && offset >= hw
            && offset >= state.epoch_start_offset;
        let expand = rejoins.then(|| {
            let mut isr = reg.isr.clone();
            isr.push(replica);
            // From now on appends wait for the joining follower too.
            self.log.set_hw_follows_end(false);
            state.pending_isr = Some(isr.clone());
            isr
        });
        let hw_advanced = self.advance_hw_locked(&state, reg);
        FetchEffect {
            hw_advanced,
            expand,
        }
    }

    /// The high watermark the ISR allows: the smallest log end among its members (a member
    /// that has not fetched since this replica became leader holds it back).
    fn advance_hw_locked(&self, state: &LeaderState, reg: &PartitionRegistration) -> bool {
        let mut candidate = self.log.log_end_offset();
        let pending = state.pending_isr.iter().flatten();
        for r in reg.isr.iter().chain(pending).filter(|r| **r != reg.leader) {
            let end = state.followers.get(r).map_or(-1, |f| f.log_end_offset);
            candidate = candidate.min(end);
        }
        if candidate <= self.log.high_watermark() {
            return false;
        }
        self.log.set_high_watermark(candidate);
        self.hw.send_replace(self.log.high_watermark());
        true
    }

    /// A new image: when this partition's registration changed, its committed ISR replaces
    /// any change in flight.
    pub fn refresh(&self, reg: &PartitionRegistration) {
        let mut state = self.lock();
        if state.partition_epoch == reg.partition_epoch {
            return;
        }
        state.partition_epoch = reg.partition_epoch;
        state.pending_isr = None;
        self.adopt_isr(&mut state, reg)
    }

    /// Takes the image's ISR as the one the high watermark follows, and whether this replica
    /// alone is the ISR (then appends commit at once).
    fn adopt_isr(&self, state: &mut LeaderState, reg: &PartitionRegistration) {
        state.isr = reg.isr.clone();
        let alone = reg.isr.iter().all(|r| *r == reg.leader);
        if alone != self.log.hw_follows_end() {
            self.log.set_hw_follows_end(alone);
        }
        self.advance_hw_locked(state, reg);
        self.hw.send_replace(self.log.high_watermark());
    }

    /// The ISR without the followers that have not caught up within `lag_ms`, if any must go
    /// (the leader never drops itself). Marks the change pending.
    pub fn shrink(
        &self,
        reg: &PartitionRegistration,
        now_ms: i64,
        lag_ms: i64,
    ) -> Option<Vec<i32>> {
        let mut state = self.lock();
        if state.pending_isr.is_some() {
            return None;
        }
        let since = state.since_ms;
        let out_of_sync = |r: &i32| {
            *r != reg.leader
                && now_ms
                    - state
                        .followers
                        .get(r)
                        .map_or(since, |f| f.last_caught_up_ms.max(since))
                    > lag_ms
        };
        if !reg.isr.iter().any(out_of_sync) {
            return None;
        }
        let isr: Vec<i32> = reg
            .isr
            .iter()
            .copied()
            .filter(|r| !out_of_sync(r))
            .collect();
        state.pending_isr = Some(isr.clone());
        Some(isr)
    }

    /// A failed ISR change may be asked again; the image's ISR alone counts meanwhile.
    pub fn clear_pending(&self, reg: &PartitionRegistration) {
        let mut state = self.lock();
        state.pending_isr = None;
        self.adopt_isr(&mut state, reg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::test_batches::batch;
    use crate::log::{LogConfig, LogManager};

    /// A registration with `isr`; each ISR change bumps the partition epoch, as records do.
    fn reg(isr: Vec<i32>) -> PartitionRegistration {
        PartitionRegistration {
            partition_epoch: 3 - isr.len() as i32,
            isr,
            ..PartitionRegistration::new(vec![1, 2, 3])
        }
    }

    #[test]
    fn the_high_watermark_is_the_smallest_end_in_the_maximal_isr() {
        let dir = tempfile::tempdir().expect("tmp");
        let (logs, _) = LogManager::open(dir.path(), 16, |_| LogConfig::default()).expect("open");
        let log = logs
            .get_or_create("t", 0, LogConfig::default())
            .expect("log");
        let full = reg(vec![1, 2, 3]);
        let p = Partition::new(log.clone(), &full, 0);
        p.refresh(&full);
        log.append(batch(10, 1, 10), 0).expect("append");
        assert_eq!(log.high_watermark(), 0, "followers have not fetched");
        p.on_follower_fetch(&full, 2, 10, 1, true);
        assert_eq!(log.high_watermark(), 0, "follower 3 holds it back");
        assert!(p.on_follower_fetch(&full, 3, 4, 1, true).hw_advanced);
        assert_eq!(log.high_watermark(), 4);

        // 3 lags past replica.lag.time.max.ms while 2 keeps up: the shrink leaves 3 out.
        p.on_follower_fetch(&full, 2, 10, 99_000, true);
        assert_eq!(p.shrink(&full, 100_000, 30_000), Some(vec![1, 2]));
        let shrunk = reg(vec![1, 2]);
        p.refresh(&shrunk);
        assert_eq!(log.high_watermark(), 10);

        // 3 catches up: while its return is pending it already holds the watermark back.
        let effect = p.on_follower_fetch(&shrunk, 3, 10, 100_001, true);
        assert_eq!(effect.expand, Some(vec![1, 2, 3]));
        log.append(batch(5, 2, 10), 0).expect("append");
        p.on_follower_fetch(&shrunk, 2, 15, 100_002, true);
        assert_eq!(log.high_watermark(), 10, "the joining follower is counted");
        p.on_follower_fetch(&shrunk, 3, 15, 100_003, true);
        assert_eq!(log.high_watermark(), 15);
    }

    #[test]
    fn a_leader_alone_in_its_isr_commits_on_append_and_never_drops_itself() {
        let dir = tempfile::tempdir().expect("tmp");
        let (logs, _) = LogManager::open(dir.path(), 16, |_| LogConfig::default()).expect("open");
        let log = logs
            .get_or_create("t", 0, LogConfig::default())
            .expect("log");
        let alone = reg(vec![1]);
        let p = Partition::new(log.clone(), &alone, 0);
        p.refresh(&alone);
        log.append(batch(3, 1, 10), 0).expect("append");
        assert_eq!(log.high_watermark(), 3);
        assert_eq!(p.shrink(&alone, 1_000_000, 1), None);
    }
}
