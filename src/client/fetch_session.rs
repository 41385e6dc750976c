//! The fetching side of a fetch session (KIP-227, Kafka's FetchSessionHandler): after one full
//! fetch, a fetch names only the partitions whose fetch position or parameters changed and
//! the ones to forget; the broker remembers the rest.
//!
//! Owns the session id and epoch to send and what the broker's session holds. Never sends:
//! the caller builds each request through it and shows it each answer.

use std::collections::{HashMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Fetch v7 brought sessions.
const FIRST_SESSION_VERSION: i16 = 7;

type Key = (StrBytes, Uuid, i32);

/// One connection's session with one broker. A new connection starts a new one.
#[derive(Default)]
pub struct FetchSessionHandler {
    /// 0: none yet (the next fetch is full and asks for one).
    session_id: i32,
    /// 0 (with or without an id): the next fetch is full.
    epoch: i32,
    /// What the broker's session holds for each partition: what was last sent for it.
    sent: HashMap<Key, FetchPartition>,
}

fn key(t: &FetchTopic, p: &FetchPartition) -> Key {
    (t.topic.0.clone(), t.topic_id, p.partition)
}

impl FetchSessionHandler {
    /// Sets `req`'s session fields and trims its topics (all the partitions wanted now) to
    /// those the session does not already hold as they are, naming the rest to forget.
    pub fn build(&mut self, req: &mut FetchRequest, version: i16) {
        if version < FIRST_SESSION_VERSION {
            return;
        }
        req.session_id = self.session_id;
        req.session_epoch = self.epoch;
        let wanted: HashSet<Key> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| key(t, p)))
            .collect();
        if self.epoch == 0 {
            // Full: the new session holds exactly these.
            self.sent = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (key(t, p), p.clone())))
                .collect();
            return;
        }
        for t in &mut req.topics {
            let topic = (t.topic.clone(), t.topic_id);
            t.partitions.retain(|p| {
                let k = (topic.0 .0.clone(), topic.1, p.partition);
                let changed = self.sent.get(&k) != Some(p);
                if changed {
                    self.sent.insert(k, p.clone());
                }
                changed
            });
        }
        req.topics.retain(|t| !t.partitions.is_empty());
        let mut forget: Vec<Key> = self
            .sent
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        forget.sort();
        let mut forgotten: Vec<ForgottenTopic> = Vec::new();
        for k in forget {
            self.sent.remove(&k);
            let (name, id, partition) = k;
            match forgotten.last_mut() {
                Some(f) if f.topic.0 == name && f.topic_id == id => f.partitions.push(partition),
                _ => forgotten.push(
                    ForgottenTopic::default()
                        .with_topic(TopicName(name))
                        .with_topic_id(id)
                        .with_partitions(vec![partition]),
                ),
            }
        }
        req.forgotten_topics_data = forgotten;
    }

    /// Takes in the broker's answer to the last request built; false if the answer is a
    /// session error (it carries no partitions; the next fetch is full again).
    pub fn handle(&mut self, resp: &FetchResponse, version: i16) -> bool {
        if version < FIRST_SESSION_VERSION {
            return true;
        }
        if resp.error_code != 0 {
            // A session the broker no longer knows is started afresh; any other session
            // error closes ours and asks for a new one in the same full fetch.
            if ResponseError::try_from_code(resp.error_code)
                == Some(ResponseError::FetchSessionIdNotFound)
            {
                self.session_id = 0;
            }
            self.epoch = 0;
            return false;
        }
        match resp.session_id {
            // No session (none made, or the broker closed it): the next fetch is full.
            0 => (self.session_id, self.epoch) = (0, 0),
            id if self.epoch == 0 => (self.session_id, self.epoch) = (id, 1),
            _ => {
                self.epoch = match self.epoch {
                    i32::MAX => 1,
                    e => e + 1,
                }
            }
        }
        true
    }
}

/// Each partition a request names, with its fetch offset: what tests compare.
#[cfg(test)]
pub(crate) fn named(req: &FetchRequest) -> Vec<(String, i32, i64)> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.topic.0.to_string(), p.partition, p.fetch_offset))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(parts: &[(&str, i32, i64)]) -> FetchRequest {
        let topics = parts
            .iter()
            .map(|(t, p, offset)| {
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*offset)])
            })
            .collect();
        FetchRequest::default().with_topics(topics)
    }

    #[test]
    fn after_a_full_fetch_only_changes_are_sent() {
        let mut h = FetchSessionHandler::default();
        let mut req = wanted(&[("a", 0, 0), ("a", 1, 0)]);
        h.build(&mut req, 12);
        assert_eq!(
            (req.session_id, req.session_epoch, named(&req).len()),
            (0, 0, 2)
        );
        assert!(h.handle(&FetchResponse::default().with_session_id(77), 12));

        let mut req = wanted(&[("a", 0, 5), ("a", 1, 0), ("b", 0, 0)]);
        h.build(&mut req, 12);
        assert_eq!((req.session_id, req.session_epoch), (77, 1));
        assert_eq!(named(&req), vec![("a".into(), 0, 5), ("b".into(), 0, 0)]);
        assert!(req.forgotten_topics_data.is_empty());
        assert!(h.handle(&FetchResponse::default().with_session_id(77), 12));

        let mut req = wanted(&[("a", 0, 5), ("b", 0, 0)]);
        h.build(&mut req, 12);
        assert_eq!(req.session_epoch, 2);
        assert!(named(&req).is_empty());
        let f = &req.forgotten_topics_data;
        assert_eq!(
            (f.len(), f[0].topic.0.as_str(), &f[0].partitions),
            (1, "a", &vec![1])
        );

        // The broker lost the session: the next fetch is full and asks for a new one.
        let lost =
            FetchResponse::default().with_error_code(ResponseError::FetchSessionIdNotFound.code());
        assert!(!h.handle(&lost, 12));
        let mut req = wanted(&[("a", 0, 5), ("b", 0, 0)]);
        h.build(&mut req, 12);
        assert_eq!(
            (req.session_id, req.session_epoch, named(&req).len()),
            (0, 0, 2)
        );

        // Another session error closes it by id within the full fetch.
        assert!(h.handle(&FetchResponse::default().with_session_id(78), 12));
        let stale = FetchResponse::default()
            .with_error_code(ResponseError::InvalidFetchSessionEpoch.code());
        assert!(!h.handle(&stale, 12));
        let mut req = wanted(&[("a", 0, 5)]);
        h.build(&mut req, 12);
        assert_eq!(
            (req.session_id, req.session_epoch, named(&req).len()),
            (78, 0, 1)
        );
    }

    #[test]
    fn before_v7_every_fetch_is_full_and_sessionless() {
        let mut h = FetchSessionHandler::default();
        let mut req = wanted(&[("a", 0, 0)]);
        h.build(&mut req, 6);
        assert!(h.handle(&FetchResponse::default().with_session_id(5), 6));
        let mut req2 = wanted(&[("a", 0, 0)]);
        h.build(&mut req2, 6);
        assert_eq!(
            (req2.session_id, req2.session_epoch, named(&req2).len()),
            (0, -1, 1)
        );
    }
}
