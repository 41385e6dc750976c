//! Fetch sessions (KIP-227, Kafka's FetchSession and FetchSessionCache): a consumer or follower
//! that fetches the same partitions over and over names them once; later (incremental) fetches
//! name only what changed, and the answers carry only partitions with something new.
//!
//! Owns the session cache: which sessions exist, their partitions and epochs, and which session
//! a full cache gives up for a new one. Never reads a log: the fetch handler reads the
//! partitions a session context names and hands the answer back to be trimmed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// Fetch v7 brought sessions; older requests are always sessionless.
const FIRST_SESSION_VERSION: i16 = 7;
/// Fetch v13 names topics by id: a session keeps the naming it was made with.
const FIRST_TOPIC_ID_VERSION: i16 = 13;
/// Session epochs a full fetch sends: 0 asks for a new session, -1 for none.
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;

/// The epoch after `epoch`, wrapping past i32::MAX to 1 (0 means "new session").
fn next_epoch(epoch: i32) -> i32 {
    match epoch {
        e if e < 0 => INITIAL_EPOCH,
        i32::MAX => 1,
        e => e + 1,
    }
}

/// A partition as a session names it: by topic name before v13, by topic id from v13 (the
/// other is empty).
type PartitionKey = (StrBytes, Uuid, i32);

/// One partition of a session: what the fetcher last asked for it and what it was last told.
struct CachedPartition {
    request: FetchPartition,
    /// Its place in the session's order.
    seq: u64,
    /// -1 after an error, so the partition is sent again once the error is gone.
    high_watermark: i64,
    log_start_offset: i64,
}

pub struct FetchSession {
    id: i32,
    uses_topic_ids: bool,
    /// What the next incremental fetch must carry.
    epoch: i32,
    partitions: HashMap<PartitionKey, CachedPartition>,
    /// The partitions in fetch order. One that returned records moves to the back, so the
    /// response's byte limit reaches the others in turn (Kafka's round robin).
    order: BTreeMap<u64, PartitionKey>,
    next_seq: u64,
}

impl FetchSession {
    fn upsert(&mut self, key: PartitionKey, request: FetchPartition) {
        match self.partitions.get_mut(&key) {
            Some(cached) => cached.request = request,
            None => {
                // The name is copied out: a slice of the request would keep the frame it came
                // in alive as long as the session.
                let key = (StrBytes::from_string(key.0.to_string()), key.1, key.2);
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert(seq, key.clone());
                let cached = CachedPartition {
                    request,
                    seq,
                    high_watermark: -1,
                    log_start_offset: -1,
                };
                self.partitions.insert(key, cached);
            }
        }
    }

    fn forget(&mut self, key: &PartitionKey) {
        if let Some(cached) = self.partitions.remove(key) {
            self.order.remove(&cached.seq);
        }
    }

    fn move_to_back(&mut self, key: &PartitionKey) {
        let seq = self.next_seq;
        if let Some(cached) = self.partitions.get_mut(key) {
            self.order.remove(&cached.seq);
            cached.seq = seq;
            self.order.insert(seq, key.clone());
            self.next_seq += 1;
        }
    }

    /// Every partition of the session as request topics, in fetch order (a topic appears
    /// once per run of its partitions, as in Kafka's responses).
    fn request_topics(&self) -> Vec<FetchTopic> {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for key in self.order.values() {
            let Some(cached) = self.partitions.get(key) else {
                continue;
            };
            let (name, id, _) = key;
            match topics.last_mut() {
                Some(t) if t.topic.0 == *name && t.topic_id == *id => {
                    t.partitions.push(cached.request.clone())
                }
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(name.clone()))
                        .with_topic_id(*id)
                        .with_partitions(vec![cached.request.clone()]),
                ),
            }
        }
        topics
    }

    /// Whether an answer for this partition must be sent, remembering what it told (Kafka's
    /// CachedPartition.maybeUpdateResponseData).
    fn must_send(&mut self, key: &PartitionKey, p: &PartitionData) -> bool {
        let Some(cached) = self.partitions.get_mut(key) else {
            return true;
        };
        let records = p.records.as_ref().is_some_and(|r| !r.is_empty());
        let mut send = records || p.error_code != 0 || p.diverging_epoch.epoch >= 0;
        if cached.high_watermark != p.high_watermark {
            send = true;
            cached.high_watermark = p.high_watermark;
        }
        if cached.log_start_offset != p.log_start_offset {
            send = true;
            cached.log_start_offset = p.log_start_offset;
        }
        if p.error_code != 0 {
            cached.high_watermark = -1;
        }
        if records {
            self.move_to_back(key);
        }
        send
    }
}

fn key(topic: &TopicName, topic_id: Uuid, partition: i32, uses_topic_ids: bool) -> PartitionKey {
    match uses_topic_ids {
        true => (StrBytes::default(), topic_id, partition),
        false => (topic.0.clone(), Uuid::nil(), partition),
    }
}

/// What a fetch request's session fields ask for, decided before any partition is read.
pub enum FetchContext {
    /// No session: every partition asked for is answered, with session id 0.
    Sessionless,
    /// A full fetch asking for a new session, made when it is answered if the cache has room.
    Full { privileged: bool },
    /// A fetch in a session: the request now names all the session's partitions; the answer
    /// keeps only those with news. `expected` is the epoch the session must still be at.
    Incremental {
        session: Arc<Mutex<FetchSession>>,
        expected: i32,
    },
    /// The session fields are wrong: answered with this error and no partitions.
    Error(ResponseError),
}

/// A session's entry in the cache, with what eviction weighs.
struct Slot {
    session: Arc<Mutex<FetchSession>>,
    /// Made by a follower: only another follower's session, or staleness, evicts it.
    privileged: bool,
    created_ms: i64,
    last_used_ms: i64,
    partitions: usize,
}

/// The sessions of this broker, at most `max.incremental.fetch.session.cache.slots`, holding
/// at most `partition_budget` partitions between them.
pub struct FetchSessionCache {
    slots: usize,
    /// Beyond Kafka, which bounds only the number of sessions: a request may name millions of
    /// partitions (socket.request.max.bytes), and a thousand sessions of millions would take
    /// the broker's memory. A full fetch that would pass it gets no session (KIP-227 lets a
    /// broker decline one); an incremental fetch that would grow past it loses its session.
    partition_budget: usize,
    /// `min.incremental.fetch.session.eviction.ms`: a session unused this long is stale; a
    /// younger one is safe from eviction by size.
    eviction_ms: i64,
    sessions: Mutex<HashMap<i32, Slot>>,
    evictions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FetchSessionCache {
    pub fn new(slots: usize, eviction_ms: i64, partition_budget: usize) -> Self {
        Self {
            slots,
            partition_budget,
            eviction_ms,
            sessions: Mutex::new(HashMap::new()),
            evictions: AtomicU64::new(0),
        }
    }

    /// Sessions in the cache.
    pub fn len(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Partitions held by all sessions, as of their last use.
    pub fn partitions_cached(&self) -> usize {
        lock(&self.sessions).values().map(|s| s.partitions).sum()
    }

    /// Sessions evicted for new ones since the start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// Reads the request's session fields (Kafka's FetchManager.newContext). A full fetch
    /// closes the session it names; an incremental one updates its session with the
    /// partitions it names and forgets, moves the session's epoch on, and has `req` name every
    /// partition of the session.
    pub fn new_context(
        &self,
        req: &mut FetchRequest,
        version: i16,
        follower: bool,
        now_ms: i64,
    ) -> FetchContext {
        if version < FIRST_SESSION_VERSION {
            return FetchContext::Sessionless;
        }
        let mut sessions = lock(&self.sessions);
        if req.session_epoch == INITIAL_EPOCH || req.session_epoch == FINAL_EPOCH {
            sessions.remove(&req.session_id);
            return match req.session_epoch {
                FINAL_EPOCH => FetchContext::Sessionless,
                _ => FetchContext::Full {
                    privileged: follower,
                },
            };
        }
        let Some(slot) = sessions.get(&req.session_id) else {
            return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
        };
        let (session, held) = (slot.session.clone(), slot.partitions);
        let mut s = lock(&session);
        if s.epoch != req.session_epoch {
            return FetchContext::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        if s.uses_topic_ids != (version >= FIRST_TOPIC_ID_VERSION) {
            return FetchContext::Error(ResponseError::FetchSessionTopicIdError);
        }
        let ids = s.uses_topic_ids;
        for t in &req.topics {
            for p in &t.partitions {
                s.upsert(key(&t.topic, t.topic_id, p.partition, ids), p.clone());
            }
        }
        for t in &req.forgotten_topics_data {
            for p in &t.partitions {
                s.forget(&key(&t.topic, t.topic_id, *p, ids));
            }
        }
        if s.partitions.len() > held {
            let others = sessions.values().map(|o| o.partitions).sum::<usize>() - held;
            if others + s.partitions.len() > self.partition_budget {
                drop(s);
                sessions.remove(&req.session_id);
                // The fetcher starts over with a full fetch, which gets no session.
                return FetchContext::Error(ResponseError::FetchSessionIdNotFound);
            }
        }
        if s.partitions.is_empty() {
            drop(s);
            sessions.remove(&req.session_id);
            return FetchContext::Sessionless;
        }
        if let Some(slot) = sessions.get_mut(&req.session_id) {
            slot.last_used_ms = now_ms;
            slot.partitions = s.partitions.len();
        }
        s.epoch = next_epoch(s.epoch);
        req.topics = s.request_topics();
        let expected = s.epoch;
        drop(s);
        FetchContext::Incremental { session, expected }
    }

    /// Completes the answer to `req` (as `new_context` left it) for its context: a full fetch
    /// gets its new session's id (0 if the cache had no room), an incremental one loses the
    /// partitions with nothing new. False when the session moved on meanwhile (a duplicate
    /// request): the answer is then an error, without partitions.
    pub fn finish(
        &self,
        context: FetchContext,
        req: &FetchRequest,
        version: i16,
        response: &mut FetchResponse,
        now_ms: i64,
    ) -> bool {
        match context {
            FetchContext::Sessionless => response.session_id = 0,
            FetchContext::Error(e) => {
                response.error_code = e.code();
                response.session_id = 0;
                response.responses.clear();
            }
            FetchContext::Full { privileged } => {
                let ids = version >= FIRST_TOPIC_ID_VERSION;
                response.session_id = self.create(req, response, ids, privileged, now_ms);
            }
            FetchContext::Incremental { session, expected } => {
                let mut s = lock(&session);
                response.session_id = s.id;
                if s.epoch != expected {
                    response.error_code = ResponseError::InvalidFetchSessionEpoch.code();
                    response.responses.clear();
                    return false;
                }
                let ids = s.uses_topic_ids;
                for t in &mut response.responses {
                    t.partitions.retain(|p| {
                        s.must_send(&key(&t.topic, t.topic_id, p.partition_index, ids), p)
                    });
                }
                response.responses.retain(|t| !t.partitions.is_empty());
            }
        }
        true
    }

    /// A new session holding the partitions of a full fetch and what it answered, if there
    /// is room or something to evict; its id, or 0.
    fn create(
        &self,
        req: &FetchRequest,
        response: &FetchResponse,
        uses_topic_ids: bool,
        privileged: bool,
        now_ms: i64,
    ) -> i32 {
        let partitions: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
        if partitions == 0 || partitions > self.partition_budget {
            return 0;
        }
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.slots
            && !self.evict_one(&mut sessions, privileged, partitions, now_ms)
        {
            return 0;
        }
        while sessions.values().map(|s| s.partitions).sum::<usize>() + partitions
            > self.partition_budget
        {
            if !self.evict_stale(&mut sessions, now_ms) {
                return 0;
            }
        }
        let id = loop {
            let candidate = (Uuid::new_v4().as_u128() as i32) & i32::MAX;
            if candidate != 0 && !sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        let mut session = FetchSession {
            id,
            uses_topic_ids,
            epoch: next_epoch(INITIAL_EPOCH),
            partitions: HashMap::with_capacity(partitions),
            order: BTreeMap::new(),
            next_seq: 0,
        };
        for t in &req.topics {
            for p in &t.partitions {
                session.upsert(
                    key(&t.topic, t.topic_id, p.partition, uses_topic_ids),
                    p.clone(),
                );
            }
        }
        for t in &response.responses {
            for p in &t.partitions {
                let k = key(&t.topic, t.topic_id, p.partition_index, uses_topic_ids);
                if let Some(cached) = session.partitions.get_mut(&k) {
                    cached.high_watermark = if p.error_code == 0 {
                        p.high_watermark
                    } else {
                        -1
                    };
                    cached.log_start_offset = p.log_start_offset;
                }
            }
        }
        let slot = Slot {
            session: Arc::new(Mutex::new(session)),
            privileged,
            created_ms: now_ms,
            last_used_ms: now_ms,
            partitions,
        };
        sessions.insert(id, slot);
        id
    }

    /// Kafka's eviction rule: a stale session (unused for the eviction time) goes first;
    /// otherwise the least valuable session old enough to be evicted, if the new one is worth
    /// more (a follower's over a consumer's, then more partitions). True if one went.
    fn evict_one(
        &self,
        sessions: &mut HashMap<i32, Slot>,
        privileged: bool,
        partitions: usize,
        now_ms: i64,
    ) -> bool {
        let victim = self.stalest(sessions, now_ms).or_else(|| {
            sessions
                .iter()
                .filter(|(_, s)| {
                    let old = now_ms - s.created_ms > self.eviction_ms;
                    old || (privileged && !s.privileged)
                })
                .map(|(id, s)| (s.privileged, s.partitions, *id))
                .min()
                .filter(|weakest| (privileged, partitions, 0) >= *weakest)
                .map(|(_, _, id)| id)
        });
        self.evict(sessions, victim)
    }

    /// Evicts the session unused longest if it is stale. True if one went.
    fn evict_stale(&self, sessions: &mut HashMap<i32, Slot>, now_ms: i64) -> bool {
        let victim = self.stalest(sessions, now_ms);
        self.evict(sessions, victim)
    }

    fn stalest(&self, sessions: &HashMap<i32, Slot>, now_ms: i64) -> Option<i32> {
        sessions
            .iter()
            .min_by_key(|(id, s)| (s.last_used_ms, **id))
            .filter(|(_, s)| now_ms - s.last_used_ms > self.eviction_ms)
            .map(|(id, _)| *id)
    }

    fn evict(&self, sessions: &mut HashMap<i32, Slot>, victim: Option<i32>) -> bool {
        let evicted = victim.is_some_and(|id| sessions.remove(&id).is_some());
        if evicted {
            self.evictions.fetch_add(1, Relaxed);
        }
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::fetch_session::named;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;

    fn request(session_id: i32, epoch: i32, partitions: &[(&str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (t, p, offset) in partitions {
            let part = FetchPartition::default()
                .with_partition(*p)
                .with_fetch_offset(*offset);
            match topics.last_mut() {
                Some(last) if last.topic.0.as_str() == *t => last.partitions.push(part),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(vec![part]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    /// An answer for every partition `req` names: `records` for those listed, hw 10.
    fn answer(req: &FetchRequest, records: &[(&str, i32)]) -> FetchResponse {
        let responses = req
            .topics
            .iter()
            .map(|t| {
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let data = records
                                    .iter()
                                    .any(|(n, i)| t.topic.0.as_str() == *n && p.partition == *i);
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_high_watermark(10)
                                    .with_records(Some(match data {
                                        true => bytes::Bytes::from_static(b"batch"),
                                        false => bytes::Bytes::new(),
                                    }))
                            })
                            .collect(),
                    )
            })
            .collect();
        FetchResponse::default().with_responses(responses)
    }

    fn answered(resp: &FetchResponse) -> Vec<(String, i32)> {
        resp.responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.0.to_string(), p.partition_index))
            })
            .collect()
    }

    /// A full fetch with epoch 0, answered: the new session's id.
    fn open(
        cache: &FetchSessionCache,
        parts: &[(&str, i32, i64)],
        follower: bool,
        now: i64,
    ) -> i32 {
        let mut req = request(0, INITIAL_EPOCH, parts);
        let ctx = cache.new_context(&mut req, 12, follower, now);
        let mut resp = answer(&req, &[]);
        assert!(cache.finish(ctx, &req, 12, &mut resp, now));
        resp.session_id
    }

    #[test]
    fn incremental_fetches_name_and_answer_only_what_changed() {
        let cache = FetchSessionCache::new(10, 120_000, 1000);
        let id = open(&cache, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)], false, 0);
        assert!(id > 0);

        // Epoch 1 names nothing: all three are read, only the one with records is answered.
        let mut req = request(id, 1, &[]);
        let ctx = cache.new_context(&mut req, 12, false, 1);
        assert_eq!(named(&req).len(), 3);
        let mut resp = answer(&req, &[("a", 1)]);
        assert!(cache.finish(ctx, &req, 12, &mut resp, 1));
        assert_eq!(
            (resp.session_id, answered(&resp)),
            (id, vec![("a".into(), 1)])
        );

        // Epoch 2 moves a-1's offset on and forgets b-0; a-1 (it returned records) is last.
        let mut req = request(id, 2, &[("a", 1, 5)]);
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("b")))
            .with_partitions(vec![0])];
        let ctx = cache.new_context(&mut req, 12, false, 2);
        assert_eq!(named(&req), vec![("a".into(), 0, 0), ("a".into(), 1, 5)]);
        let mut resp = answer(&req, &[]);
        resp.responses[0].partitions[0].high_watermark = 11;
        assert!(cache.finish(ctx, &req, 12, &mut resp, 2));
        assert_eq!(
            answered(&resp),
            vec![("a".into(), 0)],
            "its high watermark moved"
        );

        // A replayed epoch, a wrong id, and topic ids in a session made without them.
        for (sid, epoch, version, e) in [
            (id, 2, 12, ResponseError::InvalidFetchSessionEpoch),
            (id + 1, 3, 12, ResponseError::FetchSessionIdNotFound),
            (id, 3, 13, ResponseError::FetchSessionTopicIdError),
        ] {
            let mut req = request(sid, epoch, &[]);
            let ctx = cache.new_context(&mut req, version, false, 3);
            let mut resp = answer(&request(0, -1, &[("a", 0, 0)]), &[]);
            cache.finish(ctx, &req, version, &mut resp, 3);
            assert_eq!((resp.error_code, resp.session_id), (e.code(), 0));
            assert!(resp.responses.is_empty());
        }

        // Epoch -1 closes it.
        let mut req = request(id, FINAL_EPOCH, &[("a", 0, 0)]);
        let ctx = cache.new_context(&mut req, 12, false, 4);
        assert!(matches!(ctx, FetchContext::Sessionless));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_session_that_moved_on_meanwhile_answers_with_an_epoch_error() {
        let cache = FetchSessionCache::new(10, 120_000, 1000);
        let id = open(&cache, &[("a", 0, 0)], false, 0);
        let mut first = request(id, 1, &[]);
        let first_ctx = cache.new_context(&mut first, 12, false, 1);
        let mut second = request(id, 2, &[]);
        let second_ctx = cache.new_context(&mut second, 12, false, 1);
        let mut resp = answer(&first, &[("a", 0)]);
        assert!(!cache.finish(first_ctx, &first, 12, &mut resp, 1));
        assert_eq!(
            resp.error_code,
            ResponseError::InvalidFetchSessionEpoch.code()
        );
        let mut resp = answer(&second, &[("a", 0)]);
        assert!(cache.finish(second_ctx, &second, 12, &mut resp, 1));
    }

    /// An incremental fetch naming nothing: the session counts as used at `now`.
    fn touch(cache: &FetchSessionCache, id: i32, epoch: i32, now: i64) {
        let mut req = request(id, epoch, &[]);
        let ctx = cache.new_context(&mut req, 12, false, now);
        let mut resp = answer(&req, &[]);
        assert!(cache.finish(ctx, &req, 12, &mut resp, now));
        assert_eq!(resp.error_code, 0);
    }

    fn live(cache: &FetchSessionCache) -> Vec<i32> {
        lock(&cache.sessions).keys().copied().collect()
    }

    #[test]
    fn a_full_cache_evicts_as_kafka_does() {
        let cache = FetchSessionCache::new(2, 1000, 1000);
        let consumer = open(&cache, &[("a", 0, 0), ("a", 1, 0)], false, 0);
        let follower = open(&cache, &[("a", 0, 0)], true, 0);
        // Young sessions stay: a consumer's new session is refused, however big.
        assert_eq!(
            open(&cache, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)], false, 10),
            0
        );
        // A follower's evicts a consumer's, however young.
        let second = open(&cache, &[("b", 0, 0)], true, 20);
        assert!(second > 0);
        assert!(!live(&cache).contains(&consumer));
        touch(&cache, follower, 1, 1400);
        touch(&cache, second, 1, 1400);
        // Old enough to be evicted, but a consumer's session never outweighs a follower's...
        assert_eq!(open(&cache, &[("c", 0, 0), ("c", 1, 0)], false, 1500), 0);
        // ...while a follower's with more partitions does.
        let bigger = open(&cache, &[("c", 0, 0), ("c", 1, 0)], true, 1500);
        assert!(bigger > 0);
        assert_eq!(cache.len(), 2);
        assert!(live(&cache).contains(&bigger));
        // A stale session (unused past the eviction time) goes first, whatever it holds.
        touch(&cache, bigger, 1, 2600);
        let late = open(&cache, &[("d", 0, 0)], false, 3000);
        assert!(late > 0);
        let mut expected = vec![bigger, late];
        let mut got = live(&cache);
        expected.sort();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(cache.evictions(), 3);
        assert_eq!(cache.partitions_cached(), 3);
    }

    #[test]
    fn sessions_hold_no_more_partitions_than_the_budget() {
        let cache = FetchSessionCache::new(10, 1000, 4);
        let parts = [
            ("a", 0, 0),
            ("a", 1, 0),
            ("a", 2, 0),
            ("a", 3, 0),
            ("a", 4, 0),
        ];
        // More than the whole budget: answered, without a session.
        assert_eq!(open(&cache, &parts, true, 0), 0);
        let first = open(&cache, &parts[..3], false, 0);
        assert!(first > 0);
        // Two more would pass it while the first is in use.
        assert_eq!(open(&cache, &parts[3..], true, 10), 0);
        // Once the first is stale, it makes room.
        let second = open(&cache, &parts[3..], false, 1500);
        assert!(second > 0);
        assert_eq!(live(&cache), vec![second]);
        // An incremental fetch growing a session past the budget loses it.
        let mut req = request(second, 1, &parts[..3]);
        let ctx = cache.new_context(&mut req, 12, false, 1600);
        let mut resp = answer(&req, &[]);
        cache.finish(ctx, &req, 12, &mut resp, 1600);
        assert_eq!(
            resp.error_code,
            ResponseError::FetchSessionIdNotFound.code()
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn epochs_wrap_past_the_largest_to_one() {
        assert_eq!(next_epoch(FINAL_EPOCH), INITIAL_EPOCH);
        assert_eq!(next_epoch(INITIAL_EPOCH), 1);
        assert_eq!(next_epoch(i32::MAX), 1);
    }
}
