//! The `__consumer_offsets` topic: Kafka's record formats for committed offsets
//! (OffsetCommitKey v1 / OffsetCommitValue v3) and group metadata (GroupMetadataKey v2 /
//! GroupMetadataValue v3), the group → partition mapping, appends and the start-up replay.
//!
//! Owns the bytes of those records. Never decides group semantics (that is `group`).

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::classic_group::CommittedOffset;
use crate::log::{batch, LogError, PartitionLog};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A member as GroupMetadataValue stores it (metadata of the chosen protocol only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<StoredMember>,
}

/// One record of the topic; `None` values are tombstones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<StoredGroup>,
    },
}

/// Kafka's `Utils.abs(groupId.hashCode) % offsets.topic.num.partitions`, with Java's
/// String.hashCode over UTF-16 units, so a group lands where Kafka would put it.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let h = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

impl Entry {
    pub fn group(&self) -> &str {
        match self {
            Entry::Offset { group, .. } | Entry::Group { group, .. } => group,
        }
    }

    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            Entry::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            Entry::Group { group, .. } => {
                b.put_i16(GROUP_KEY_VERSION);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    pub fn value(&self) -> Option<Bytes> {
        let mut b = BytesMut::new();
        match self {
            Entry::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(OFFSET_VALUE_VERSION);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_timestamp);
            }
            Entry::Group { value, .. } => {
                let g = value.as_ref()?;
                b.put_i16(GROUP_VALUE_VERSION);
                put_str(&mut b, &g.protocol_type);
                b.put_i32(g.generation);
                put_nullable_str(&mut b, g.protocol.as_deref());
                put_nullable_str(&mut b, g.leader.as_deref());
                b.put_i64(g.state_timestamp);
                b.put_i32(g.members.len() as i32);
                for m in &g.members {
                    put_str(&mut b, &m.member_id);
                    put_nullable_str(&mut b, m.instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout_ms);
                    b.put_i32(m.session_timeout_ms);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    /// Reads one record back; None for keys of versions Runnel does not write (Kafka's
    /// transaction markers, share groups, ...) and for damaged records.
    pub fn decode(key: &Bytes, value: Option<&Bytes>) -> Option<Entry> {
        let mut k = Reader(key.clone());
        match k.i16()? {
            0 | 1 => {
                let group = k.string()?;
                let topic = k.string()?;
                let partition = k.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset_value(v)?),
                };
                Some(Entry::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            2 => {
                let group = k.string()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_group_value(v)?),
                };
                Some(Entry::Group { group, value })
            }
            _ => None,
        }
    }
}

fn decode_offset_value(v: &Bytes) -> Option<CommittedOffset> {
    let mut r = Reader(v.clone());
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp = r.i64()?;
    Some(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(v: &Bytes) -> Option<StoredGroup> {
    let mut r = Reader(v.clone());
    if r.i16()? != GROUP_VALUE_VERSION {
        return None;
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp = r.i64()?;
    let n = r.i32()?;
    let mut members = Vec::new();
    for _ in 0..n.max(0) {
        members.push(StoredMember {
            member_id: r.string()?,
            instance_id: r.nullable_string()?,
            client_id: r.string()?,
            client_host: r.string()?,
            rebalance_timeout_ms: r.i32()?,
            session_timeout_ms: r.i32()?,
            subscription: r.bytes()?,
            assignment: r.bytes()?,
        });
    }
    Some(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp,
        members,
    })
}

/// Bounds-checked big-endian reads: a damaged record yields None, never a panic.
struct Reader(Bytes);

impl Reader {
    fn i16(&mut self) -> Option<i16> {
        (self.0.remaining() >= 2).then(|| self.0.get_i16())
    }
    fn i32(&mut self) -> Option<i32> {
        (self.0.remaining() >= 4).then(|| self.0.get_i32())
    }
    fn i64(&mut self) -> Option<i64> {
        (self.0.remaining() >= 8).then(|| self.0.get_i64())
    }
    fn take(&mut self, n: usize) -> Option<Bytes> {
        (self.0.remaining() >= n).then(|| self.0.split_to(n))
    }
    fn nullable_string(&mut self) -> Option<Option<String>> {
        let n = self.i16()?;
        if n < 0 {
            return Some(None);
        }
        let b = self.take(n as usize)?;
        Some(Some(String::from_utf8(b.to_vec()).ok()?))
    }
    fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }
    fn bytes(&mut self) -> Option<Bytes> {
        let n = self.i32()?;
        if n < 0 {
            return Some(Bytes::new());
        }
        self.take(n as usize)
    }
}

/// Appends entries to one partition of the offsets topic as one batch.
pub fn append(log: &PartitionLog, entries: &[Entry], now: i64) -> Result<(), LogError> {
    let records: Vec<_> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| batch::plain_record(i as i64, now, Some(e.key()), e.value()))
        .collect();
    // The offsets topic is written by its leader only; its epoch follows the log's latest.
    let info = log.append(batch::encode(&records)?, log.latest_epoch().unwrap_or(0))?;
    if info.flush_due {
        // flush.messages reached (log.flush.interval.messages=1 makes commits durable).
        crate::log::blocking(|| log.flush())?;
    }
    Ok(())
}

/// Every entry of one partition, oldest first.
pub fn replay(log: &Arc<PartitionLog>) -> Result<Vec<Entry>, LogError> {
    const CHUNK: usize = 1 << 20;
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    // To the log end, not the high watermark: a new leader's log is the partition's truth
    // even before its followers confirm the tail.
    let end = log.log_end_offset();
    while offset < end {
        let Some(slice) = log.read_up_to(offset, CHUNK, true, end)?.records else {
            break;
        };
        let bytes = slice.read_bytes()?;
        let mut next = offset;
        let mut buf = bytes.clone();
        while buf.has_remaining() {
            let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf) else {
                break;
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                if r.offset < offset || r.control {
                    continue;
                }
                let Some(key) = r.key.as_ref() else { continue };
                match Entry::decode(key, r.value.as_ref()) {
                    Some(e) => out.push(e),
                    None => tracing::warn!(
                        topic = log.topic(),
                        partition = log.partition(),
                        offset = r.offset,
                        "unreadable group record skipped"
                    ),
                }
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_match_kafka() {
        // Java: Math.abs("my-group".hashCode()) % 50
        assert_eq!("my-group".encode_utf16().count(), 8);
        let h = "my-group"
            .chars()
            .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32));
        assert_eq!(partition_for("my-group", 50), h.abs() % 50);
        assert_eq!(partition_for("", 50), 0);
        for g in ["a", "group-1", "ünïcode", "x".repeat(300).as_str()] {
            assert!((0..50).contains(&partition_for(g, 50)));
        }
    }

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 7,
                    metadata: "meta".into(),
                    commit_timestamp: 1234,
                }),
            },
            Entry::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 4,
                value: None,
            },
            Entry::Group {
                group: "g".into(),
                value: Some(StoredGroup {
                    protocol_type: "consumer".into(),
                    generation: 5,
                    protocol: Some("range".into()),
                    leader: Some("m1".into()),
                    state_timestamp: 99,
                    members: vec![StoredMember {
                        member_id: "m1".into(),
                        instance_id: Some("i1".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        rebalance_timeout_ms: 300_000,
                        session_timeout_ms: 45_000,
                        subscription: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                }),
            },
            Entry::Group {
                group: "g".into(),
                value: None,
            },
        ];
        for e in entries {
            let back = Entry::decode(&e.key(), e.value().as_ref());
            assert_eq!(back.as_ref(), Some(&e));
        }
    }

    #[test]
    fn damaged_records_are_rejected_not_panicking() {
        let e = Entry::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: Some(CommittedOffset {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 0,
            }),
        };
        let (k, v) = (e.key(), e.value().expect("value"));
        for n in 0..k.len() {
            assert!(Entry::decode(&k.slice(..n), Some(&v)).is_none());
        }
        for n in 0..v.len() {
            assert!(Entry::decode(&k, Some(&v.slice(..n))).is_none());
        }
    }
}
