//! The producer behind `runnel produce`: records go to their partition's leader as one
//! uncompressed v2 batch per partition and request, with the acks asked for; a leader that
//! moved is looked up again and the partition retried. A key picks its partition as Kafka's
//! Java client does (murmur2 of the key bytes), so keyed records land where Kafka's own tools
//! would put them; keyless records go round-robin.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail};
use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::metadata::{check, leader_moved, s, topic_info, TopicInfo};
use super::Connection;

/// Sends of one partition that meet a moved leader, each followed by a metadata refresh.
const ATTEMPTS: usize = 10;
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

pub struct ProduceOptions {
    pub bootstrap: String,
    pub topic: String,
    /// Every record to this partition instead of by key.
    pub partition: Option<i32>,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    pub timeout: Duration,
}

/// One record to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

/// Where a record was written (offset -1 with acks=0, which answers nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub partition: i32,
    pub offset: i64,
}

pub struct Producer {
    opts: ProduceOptions,
    bootstrap: Connection,
    topic: TopicInfo,
    /// Leader `host:port` → its connection.
    leaders: HashMap<String, Connection>,
    round_robin: usize,
}

impl Producer {
    /// Connects and learns the topic's partitions (asking for it to be auto-created, as
    /// producers do).
    pub async fn connect(opts: ProduceOptions) -> anyhow::Result<Self> {
        let mut bootstrap = Connection::connect(&opts.bootstrap).await?;
        let mut topic = topic_info(&mut bootstrap, &opts.topic, true).await;
        // A topic just auto-created may not list its partitions at once.
        for _ in 0..ATTEMPTS {
            match &topic {
                Ok(t) if !t.partitions.is_empty() => break,
                _ => {
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    topic = topic_info(&mut bootstrap, &opts.topic, true).await;
                }
            }
        }
        let topic = topic?;
        if let Some(p) = opts.partition {
            if !topic.partitions.contains(&p) {
                bail!("topic {} has no partition {p}", opts.topic);
            }
        }
        Ok(Self {
            opts,
            bootstrap,
            topic,
            leaders: HashMap::new(),
            round_robin: 0,
        })
    }

    fn partition_for(&mut self, r: &OutRecord) -> i32 {
        if let Some(p) = self.opts.partition {
            return p;
        }
        let n = self.topic.partitions.len().max(1);
        let i = match &r.key {
            Some(k) => (murmur2(k) & 0x7fff_ffff) as usize % n,
            None => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % n
            }
        };
        self.topic.partitions.get(i).copied().unwrap_or(0)
    }

    /// Writes `records`; where each went, in their order.
    pub async fn send(&mut self, records: Vec<OutRecord>) -> anyhow::Result<Vec<Written>> {
        let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, r) in records.iter().enumerate() {
            let p = self.partition_for(r);
            by_partition.entry(p).or_default().push(i);
        }
        let mut written = vec![
            Written {
                partition: -1,
                offset: -1
            };
            records.len()
        ];
        for attempt in 0..ATTEMPTS {
            if by_partition.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(RETRY_BACKOFF).await;
                self.topic = topic_info(&mut self.bootstrap, &self.opts.topic, false).await?;
            }
            let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for p in by_partition.keys() {
                if let Some(leader) = self.topic.leaders.get(p) {
                    by_leader.entry(leader.clone()).or_default().push(*p);
                }
            }
            for (leader, partitions) in by_leader {
                let data = partitions
                    .iter()
                    .map(|p| {
                        let batch = encode(by_partition[p].iter().map(|&i| &records[i]))?;
                        Ok(PartitionProduceData::default()
                            .with_index(*p)
                            .with_records(Some(batch)))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let req = ProduceRequest::default()
                    .with_acks(self.opts.acks)
                    .with_timeout_ms(self.opts.timeout.as_millis().min(i32::MAX as u128) as i32)
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(s(&self.opts.topic)))
                        // Produce v13 names topics by id (KIP-516), earlier versions by name.
                        .with_topic_id(self.topic.id)
                        .with_partition_data(data)]);
                let conn = match self.leaders.entry(leader.clone()) {
                    std::collections::hash_map::Entry::Occupied(c) => c.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(Connection::connect(&leader).await?)
                    }
                };
                if self.opts.acks == 0 {
                    conn.send_no_response(req).await?;
                    for p in partitions {
                        for i in by_partition.remove(&p).unwrap_or_default() {
                            written[i] = Written {
                                partition: p,
                                offset: -1,
                            };
                        }
                    }
                    continue;
                }
                let resp = match conn.send(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        // The leader went away: look it up again on the next attempt.
                        tracing::debug!(%leader, error = %e, "produce failed");
                        self.leaders.remove(&leader);
                        continue;
                    }
                };
                for pr in resp.responses.iter().flat_map(|t| &t.partition_responses) {
                    if leader_moved(pr.error_code) {
                        continue;
                    }
                    check(pr.error_code, &format!("partition {}", pr.index))?;
                    for (n, i) in by_partition
                        .remove(&pr.index)
                        .unwrap_or_default()
                        .into_iter()
                        .enumerate()
                    {
                        written[i] = Written {
                            partition: pr.index,
                            offset: pr.base_offset + n as i64,
                        };
                    }
                }
            }
        }
        if let Some(p) = by_partition.keys().next() {
            return Err(anyhow!(
                "partition {p} of {}: no leader took the records after {ATTEMPTS} attempts",
                self.opts.topic
            ));
        }
        Ok(written)
    }
}

/// The records as one uncompressed v2 batch without a producer id (offsets relative).
fn encode<'a>(records: impl Iterator<Item = &'a OutRecord>) -> anyhow::Result<Bytes> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let records: Vec<Record> = records
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch while offset - sequence is constant; the
            // first record's -1 is the batch's base sequence: none, as without a producer id.
            sequence: i as i32 - 1,
            timestamp: now,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (s(k), Some(v.clone())))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| anyhow!("encoding records: {e}"))?;
    Ok(buf.freeze())
}

/// Kafka's murmur2 (the Java client's default partitioner hashes keys with it).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values Kafka's Java client computes (its UtilsTest and the partitions its default
    /// partitioner picks).
    #[test]
    fn murmur2_matches_kafka() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }
}
