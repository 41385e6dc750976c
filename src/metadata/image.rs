//! The metadata image (Kafka's MetadataImage): brokers, topics with their partitions, and the
//! producer-id counter, as of one offset of the metadata log. Every node replays the same
//! records into it; handlers read an `Arc` of the latest one and never see it change under them.
//!
//! Owns how a record changes the image, including the leader moves that fencing and
//! unfencing imply. Never decides anything: the controller chooses, records say what it chose.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::records::{Applied, BrokerRegistration, MetadataRecord, Rejection};
use super::{PartitionRegistration, Topic};
use crate::log::LogConfig;

#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// The Raft log index of the last record applied (0: nothing yet).
    pub offset: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, Arc<Topic>>,
    ids: HashMap<Uuid, String>,
    pub next_producer_id: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<Topic>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&Arc<Topic>> {
        self.ids.get(&id).and_then(|n| self.topics.get(n))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRegistration> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.topics.get(topic)?.partitions.get(p))
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionRegistration> {
        let t = self.topics.get_mut(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| Arc::make_mut(t).partitions.get_mut(i))
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    pub fn live_broker(&self, id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&id).filter(|b| !b.fenced)
    }

    /// Applies one record. `defaults` are this node's topic defaults (the `log.*` keys).
    pub fn apply(&mut self, record: MetadataRecord, defaults: &LogConfig) -> Applied {
        match record {
            MetadataRecord::RegisterBroker(reg) => {
                // A restart: what it led moves (or goes offline) until it is unfenced again.
                self.fence(reg.id);
                self.brokers.insert(
                    reg.id,
                    BrokerRegistration {
                        fenced: true,
                        ..reg
                    },
                );
            }
            MetadataRecord::FenceBroker { id } => {
                if !self.brokers.contains_key(&id) {
                    return Applied::Rejected(Rejection::UnknownBroker(id));
                }
                self.fence(id);
            }
            MetadataRecord::UnfenceBroker { id } => {
                let Some(b) = self.brokers.get_mut(&id) else {
                    return Applied::Rejected(Rejection::UnknownBroker(id));
                };
                b.fenced = false;
                self.update_partitions(|p| {
                    if p.leader == PartitionRegistration::NO_LEADER && p.isr.contains(&id) {
                        p.leader = id;
                        p.leader_epoch += 1;
                        return true;
                    }
                    false
                });
            }
            MetadataRecord::Topic {
                name,
                id,
                partitions,
                overrides,
            } => {
                if self.topics.contains_key(&name) {
                    return Applied::Rejected(Rejection::TopicExists(name));
                }
                let config = defaults.with_overrides(&overrides).unwrap_or_else(|e| {
                    // Validated by the controller; a node whose own defaults reject the
                    // combination still serves the topic, with its defaults.
                    tracing::warn!(topic = %name, error = %e, "topic overrides not applicable here");
                    defaults.clone()
                });
                self.ids.insert(id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Arc::new(Topic {
                        internal: name.starts_with("__"),
                        name,
                        id,
                        partitions,
                        overrides,
                        config,
                    }),
                );
            }
            MetadataRecord::RemoveTopic { name } => match self.topics.remove(&name) {
                Some(t) => {
                    self.ids.remove(&t.id);
                }
                None => return Applied::Rejected(Rejection::UnknownTopic(name)),
            },
            MetadataRecord::TopicConfig { name, overrides } => {
                let Some(t) = self.topics.get_mut(&name) else {
                    return Applied::Rejected(Rejection::UnknownTopic(name));
                };
                let t = Arc::make_mut(t);
                t.config = defaults
                    .with_overrides(&overrides)
                    .unwrap_or_else(|_| defaults.clone());
                t.overrides = overrides;
            }
            MetadataRecord::AddPartitions { name, partitions } => {
                let Some(t) = self.topics.get_mut(&name) else {
                    return Applied::Rejected(Rejection::UnknownTopic(name));
                };
                Arc::make_mut(t).partitions.extend(partitions);
            }
            MetadataRecord::AlterIsr {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => {
                let Some(p) = self.partition_mut(&topic, partition) else {
                    return Applied::Rejected(Rejection::UnknownTopic(topic));
                };
                if p.leader_epoch != leader_epoch || p.partition_epoch != partition_epoch {
                    return Applied::Rejected(Rejection::StaleEpoch);
                }
                p.isr = isr;
                p.partition_epoch += 1;
            }
            MetadataRecord::ElectLeader {
                topic,
                partition,
                partition_epoch,
                leader,
            } => {
                let Some(p) = self.partition_mut(&topic, partition) else {
                    return Applied::Rejected(Rejection::UnknownTopic(topic));
                };
                if p.partition_epoch != partition_epoch || !p.isr.contains(&leader) {
                    return Applied::Rejected(Rejection::StaleEpoch);
                }
                p.leader = leader;
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
            MetadataRecord::UncleanLeader {
                topic,
                partition,
                leader,
            } => {
                let Some(p) = self.partition_mut(&topic, partition) else {
                    return Applied::Rejected(Rejection::UnknownTopic(topic));
                };
                if p.leader != PartitionRegistration::NO_LEADER {
                    return Applied::Rejected(Rejection::StaleEpoch);
                }
                p.leader = leader;
                p.isr = vec![leader];
                p.leader_epoch += 1;
                p.partition_epoch += 1;
            }
            MetadataRecord::Batch(records) => {
                return Applied::Batch(
                    records
                        .into_iter()
                        .map(|r| self.apply(r, defaults))
                        .collect(),
                );
            }
            MetadataRecord::ProducerIds { block_size, .. } => {
                let first = self.next_producer_id;
                self.next_producer_id += block_size;
                return Applied::ProducerIds { first };
            }
        }
        Applied::Done
    }

    /// Fences a broker: it leaves every ISR it is in (unless it is the last member, so only an
    /// in-sync replica can lead again), and its leaderships go to another unfenced ISR member
    /// or the partition goes offline.
    fn fence(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.fenced = true;
        let live: Vec<i32> = self.live_brokers().map(|b| b.id).collect();
        self.update_partitions(|p| {
            if !p.isr.contains(&id) && p.leader != id {
                return false;
            }
            if p.isr.len() > 1 {
                p.isr.retain(|r| *r != id);
            }
            if p.leader == id {
                p.leader = p
                    .isr
                    .iter()
                    .copied()
                    .find(|r| *r != id && live.contains(r))
                    .unwrap_or(PartitionRegistration::NO_LEADER);
                p.leader_epoch += 1;
            }
            true
        });
    }

    /// Runs `change` on every partition; those it changed get a new partition epoch.
    fn update_partitions(&mut self, mut change: impl FnMut(&mut PartitionRegistration) -> bool) {
        for t in self.topics.values_mut() {
            if !t.partitions.iter().any(|p| change(&mut p.clone())) {
                continue;
            }
            for p in &mut Arc::make_mut(t).partitions {
                if change(p) {
                    p.partition_epoch += 1;
                }
            }
        }
    }

    /// The image as the records that rebuild it: a snapshot's contents.
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out: Vec<MetadataRecord> = self
            .brokers
            .values()
            .map(|b| MetadataRecord::RegisterBroker(b.clone()))
            .collect();
        out.extend(
            self.brokers
                .values()
                .filter(|b| !b.fenced)
                .map(|b| MetadataRecord::UnfenceBroker { id: b.id }),
        );
        out.extend(self.topics.values().map(|t| MetadataRecord::Topic {
            name: t.name.clone(),
            id: t.id,
            partitions: t.partitions.clone(),
            overrides: t.overrides.clone(),
        }));
        out.push(MetadataRecord::ProducerIds {
            broker: -1,
            block_size: self.next_producer_id,
        });
        out
    }

    /// Rebuilds an image from a snapshot's records, exactly: replay here must not move leaders,
    /// so topics go in after the brokers have their final fencing.
    pub fn from_records(records: Vec<MetadataRecord>, offset: u64, defaults: &LogConfig) -> Self {
        let mut image = Self {
            offset,
            ..Self::default()
        };
        for r in records {
            image.apply(r, defaults);
        }
        image
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> MetadataRecord {
        MetadataRecord::RegisterBroker(BrokerRegistration {
            id,
            incarnation: Uuid::new_v4(),
            endpoints: vec![super::super::records::Endpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9000 + id,
            }],
            rack: None,
            fenced: false,
        })
    }

    fn image_with_three() -> MetadataImage {
        let d = LogConfig::default();
        let mut i = MetadataImage::default();
        for id in 1..=3 {
            i.apply(broker(id), &d);
            i.apply(MetadataRecord::UnfenceBroker { id }, &d);
        }
        let p = PartitionRegistration::new(vec![1, 2, 3]);
        i.apply(
            MetadataRecord::Topic {
                name: "t".into(),
                id: Uuid::new_v4(),
                partitions: vec![p, PartitionRegistration::new(vec![2])],
                overrides: BTreeMap::new(),
            },
            &d,
        );
        i
    }

    #[test]
    fn registration_fences_until_unfenced() {
        let d = LogConfig::default();
        let mut i = MetadataImage::default();
        i.apply(broker(1), &d);
        assert_eq!(i.live_brokers().count(), 0);
        i.apply(MetadataRecord::UnfenceBroker { id: 1 }, &d);
        assert_eq!(i.live_brokers().count(), 1);
    }

    #[test]
    fn fencing_moves_leadership_within_the_isr_or_takes_the_partition_offline() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        i.apply(MetadataRecord::FenceBroker { id: 1 }, &d);
        let p0 = i.partition("t", 0).expect("p0").clone();
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (2, 1, vec![2, 3])
        );
        i.apply(MetadataRecord::FenceBroker { id: 2 }, &d);
        let p1 = i.partition("t", 1).expect("p1").clone();
        assert_eq!((p1.leader, p1.isr.clone()), (-1, vec![2]));
        assert_eq!(i.partition("t", 0).expect("p0").leader, 3);
        // Back: it leads again what only it had, with a new epoch.
        i.apply(MetadataRecord::UnfenceBroker { id: 2 }, &d);
        let p1 = i.partition("t", 1).expect("p1").clone();
        assert_eq!((p1.leader, p1.leader_epoch, p1.partition_epoch), (2, 2, 2));
    }

    #[test]
    fn a_fenced_follower_leaves_the_isr_and_changes_need_current_epochs() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        i.apply(MetadataRecord::FenceBroker { id: 3 }, &d);
        let p0 = i.partition("t", 0).expect("p0").clone();
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (1, 0, vec![1, 2])
        );
        let rejoin = |leader_epoch, partition_epoch| MetadataRecord::AlterIsr {
            topic: "t".into(),
            partition: 0,
            leader_epoch,
            partition_epoch,
            isr: vec![1, 2, 3],
        };
        let stale = i.apply(rejoin(0, p0.partition_epoch - 1), &d);
        assert_eq!(stale, Applied::Rejected(Rejection::StaleEpoch));
        assert_eq!(i.apply(rejoin(0, p0.partition_epoch), &d), Applied::Done);
        assert_eq!(i.partition("t", 0).expect("p0").isr, vec![1, 2, 3]);
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        i.apply(MetadataRecord::FenceBroker { id: 2 }, &d);
        assert_eq!(i.partition("t", 1).expect("p1").leader, -1);
        let elect = MetadataRecord::UncleanLeader {
            topic: "t".into(),
            partition: 1,
            leader: 2,
        };
        assert_eq!(i.apply(elect.clone(), &d), Applied::Done);
        let p1 = i.partition("t", 1).expect("p1").clone();
        assert_eq!(
            (p1.leader, p1.isr.clone(), p1.leader_epoch),
            (2, vec![2], 2)
        );
        // Only an offline partition is elected this way.
        assert_eq!(i.apply(elect, &d), Applied::Rejected(Rejection::StaleEpoch));
    }

    #[test]
    fn a_clean_election_needs_the_current_partition_epoch_and_an_isr_member() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        i.apply(MetadataRecord::FenceBroker { id: 1 }, &d);
        i.apply(MetadataRecord::UnfenceBroker { id: 1 }, &d);
        let p0 = i.partition("t", 0).expect("p0").clone();
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2, 3]));
        let elect = |leader, partition_epoch| MetadataRecord::ElectLeader {
            topic: "t".into(),
            partition: 0,
            partition_epoch,
            leader,
        };
        // Broker 1 left the ISR when fenced: it cannot lead until it rejoins.
        let out = i.apply(elect(1, p0.partition_epoch), &d);
        assert_eq!(out, Applied::Rejected(Rejection::StaleEpoch));
        let stale = i.apply(elect(3, p0.partition_epoch - 1), &d);
        assert_eq!(stale, Applied::Rejected(Rejection::StaleEpoch));
        assert_eq!(i.apply(elect(3, p0.partition_epoch), &d), Applied::Done);
        let p0 = i.partition("t", 0).expect("p0").clone();
        assert_eq!((p0.leader, p0.leader_epoch), (3, 2));
    }

    /// A batch applies its records in order and answers each: a stale election in it fails
    /// alone, and a later record sees what an earlier one changed.
    #[test]
    fn a_batch_answers_each_record_in_order() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        let p0 = i.partition("t", 0).expect("p0").clone();
        let elect = |leader, partition_epoch| MetadataRecord::ElectLeader {
            topic: "t".into(),
            partition: 0,
            partition_epoch,
            leader,
        };
        let out = i.apply(
            MetadataRecord::Batch(vec![
                elect(2, p0.partition_epoch),
                // Written against the epoch before the first election: stale by now.
                elect(3, p0.partition_epoch),
                elect(3, p0.partition_epoch + 1),
            ]),
            &d,
        );
        assert_eq!(
            out,
            Applied::Batch(vec![
                Applied::Done,
                Applied::Rejected(Rejection::StaleEpoch),
                Applied::Done
            ])
        );
        let p0 = i.partition("t", 0).expect("p0");
        assert_eq!((p0.leader, p0.leader_epoch), (3, 2));
    }

    #[test]
    fn snapshot_records_rebuild_the_same_image() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        i.apply(MetadataRecord::FenceBroker { id: 3 }, &d);
        let first = i.apply(
            MetadataRecord::ProducerIds {
                broker: 1,
                block_size: 1000,
            },
            &d,
        );
        assert_eq!(first, Applied::ProducerIds { first: 0 });
        let again = MetadataImage::from_records(i.to_records(), 7, &d);
        assert_eq!(again.offset, 7);
        assert_eq!(again.brokers, i.brokers);
        assert_eq!(again.next_producer_id, 1000);
        assert_eq!(
            again.topic("t").expect("t").partitions,
            i.topic("t").expect("t").partitions
        );
        assert!(again.topic_by_id(i.topic("t").expect("t").id).is_some());
    }

    #[test]
    fn conflicting_records_are_rejected() {
        let d = LogConfig::default();
        let mut i = image_with_three();
        let dup = MetadataRecord::Topic {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: vec![],
            overrides: BTreeMap::new(),
        };
        assert!(matches!(i.apply(dup, &d), Applied::Rejected(_)));
        let gone = MetadataRecord::RemoveTopic { name: "x".into() };
        assert!(matches!(i.apply(gone, &d), Applied::Rejected(_)));
    }
}
