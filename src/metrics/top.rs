//! The hot-partition report: each topic's rates summed over the partitions led here, and the
//! hottest partitions with their heaviest keys. Served as JSON at `/top` (what `runnel top`
//! reads and merges across brokers) and as `runnel_hot_*` series with bounded cardinality.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;

/// Rates over the last 1, 5 and 15 minutes.
pub type Rates = [f64; 3];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TopicHeat {
    pub topic: String,
    /// Partitions of the topic led by the brokers reporting.
    pub partitions: u32,
    pub records_per_s: Rates,
    pub bytes_per_s: Rates,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyHeat {
    pub key: String,
    pub records_per_s: f64,
    pub bytes_per_s: f64,
    /// Of the partition's records (sampled, about the last minute).
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionHeat {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub records_per_s: Rates,
    pub bytes_per_s: Rates,
    /// The partition's 1-minute records/s over its topic's mean per partition (1.0: even).
    #[serde(default)]
    pub skew: f64,
    pub top_keys: Vec<KeyHeat>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub topics: Vec<TopicHeat>,
    /// Hottest first (1-minute bytes/s).
    pub partitions: Vec<PartitionHeat>,
}

impl Report {
    /// Merges reports of several brokers (each leads different partitions), keeping the
    /// `limit` hottest partitions, and computes each partition's skew.
    pub fn merge(reports: Vec<Report>, limit: usize) -> Report {
        let mut topics: BTreeMap<String, TopicHeat> = BTreeMap::new();
        let mut partitions = Vec::new();
        for r in reports {
            for t in r.topics {
                let e = topics.entry(t.topic.clone()).or_insert_with(|| TopicHeat {
                    topic: t.topic.clone(),
                    ..Default::default()
                });
                e.partitions += t.partitions;
                for i in 0..3 {
                    e.records_per_s[i] += t.records_per_s[i];
                    e.bytes_per_s[i] += t.bytes_per_s[i];
                }
            }
            partitions.extend(r.partitions);
        }
        for p in &mut partitions {
            p.skew = topics.get(&p.topic).map_or(0.0, |t| {
                let mean = t.records_per_s[0] / f64::from(t.partitions.max(1));
                if mean > 0.0 {
                    p.records_per_s[0] / mean
                } else {
                    0.0
                }
            });
        }
        sort_hottest(&mut partitions);
        partitions.truncate(limit);
        let mut topics: Vec<TopicHeat> = topics.into_values().collect();
        topics.sort_by(|a, b| b.bytes_per_s[0].total_cmp(&a.bytes_per_s[0]));
        Report { topics, partitions }
    }
}

fn sort_hottest(p: &mut [PartitionHeat]) {
    p.sort_by(|a, b| {
        (b.bytes_per_s[0], b.records_per_s[0])
            .partial_cmp(&(a.bytes_per_s[0], a.records_per_s[0]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// This broker's report: every topic it leads partitions of, its `limit` hottest partitions
/// with up to `keys` keys each.
pub fn report(broker: &Broker, limit: usize, keys: usize) -> Report {
    let mut topics: BTreeMap<String, TopicHeat> = BTreeMap::new();
    let mut partitions = Vec::new();
    for e in broker.leaders.iter() {
        let (topic, partition) = e.key();
        let a = &e.value().activity;
        let (records, bytes) = (a.records.rates(), a.bytes.rates());
        let t = topics.entry(topic.clone()).or_insert_with(|| TopicHeat {
            topic: topic.clone(),
            ..Default::default()
        });
        t.partitions += 1;
        for i in 0..3 {
            t.records_per_s[i] += records[i];
            t.bytes_per_s[i] += bytes[i];
        }
        if records[2] > 0.0 || bytes[2] > 0.0 {
            partitions.push((topic.clone(), *partition, records, bytes));
        }
    }
    let mut heats: Vec<PartitionHeat> = partitions
        .into_iter()
        .map(|(topic, partition, records, bytes)| PartitionHeat {
            topic,
            partition,
            leader: broker.config.node_id,
            records_per_s: records,
            bytes_per_s: bytes,
            skew: 0.0,
            top_keys: Vec::new(),
        })
        .collect();
    sort_hottest(&mut heats);
    heats.truncate(limit);
    for h in &mut heats {
        if let Some(p) = broker.leaders.get(&(h.topic.clone(), h.partition)) {
            h.top_keys = p
                .activity
                .top_keys(keys)
                .into_iter()
                .map(|k| KeyHeat {
                    key: k.key,
                    records_per_s: k.records_per_s,
                    bytes_per_s: k.bytes_per_s,
                    share: k.share,
                })
                .collect();
        }
    }
    Report::merge(
        vec![Report {
            topics: topics.into_values().collect(),
            partitions: heats,
        }],
        limit,
    )
}
