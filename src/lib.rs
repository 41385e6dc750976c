//! Runnel: a Kafka-wire-compatible event-streaming broker.
//!
//! A request's path: `net` accepts it on one of the listeners and reads a length-prefixed
//! frame → `protocol` decodes the header and
//! body into kafka-protocol's typed request and dispatches it → a handler in `broker` does the
//! work against `log` (partitions on disk), `metadata` (the image: brokers, topics, leaders) and
//! `group` (consumer groups, which keeps its state in the log); answers that name brokers use
//! their endpoints on the request's listener (`protocol::dispatch::RequestContext`) → the typed
//! response goes back through `protocol` to bytes, except fetched records: the log hands out
//! file slices, `protocol::response` leaves them out of the encoded frame and `net::send`
//! sends them from the page cache with sendfile. Admin changes go from the handler to the
//! active controller (`cluster`), are committed to the metadata log, replayed into every
//! node's image, and answered once this broker's image holds them. Replication: a follower's
//! `cluster::replica_fetcher` sends Fetch to the leader like a client, the leader's fetch
//! handler records the follower's position in `broker::partition`, which moves the high
//! watermark that waiting acks=all produces (`broker::purgatory`) and consumers wait on.
//!
//! | module | owns |
//! |---|---|
//! | `config` | the one Config: flags, server.properties, `KAFKA_*` environment, Kafka's image defaults; the listeners resolved |
//! | `cluster` | the controller quorum (openraft), controller listener, active controller, broker registration, replica fetcher, ISR changes |
//! | `log` | storage engine: segments, indexes, file slices for zero-copy reads, recovery, retention, the log cleaner (compaction) on its own threads |
//! | `group` | consumer groups, rebalances, committed offsets (`__consumer_offsets`) |
//! | `metadata` | metadata records, the image replayed from them, the cache handlers read |
//! | `producer` | producer ids and idempotence state (sequence checks, duplicates) |
//! | `protocol` | request headers, the ApiVersions table, dispatch, error-code mapping, response frames with records left in files |
//! | `broker` | one handler file per API family; the replica manager, each led partition's follower state and high watermark, the acks=all purgatory |
//! | `metrics` | the request path's counters and the `/metrics` + `/health` endpoint, whose scrape reads them with the broker's state under Kafka's JMX exporter names |
//! | `net` | every listener, connection loop, framing, sending a response (sendfile for records) |
//! | `client` | the wire client: the CLI's consumer, producer and admin calls, and the replica fetcher's connection to a leader |
#![deny(unsafe_code)]

pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod net;
pub mod producer;
pub mod protocol;
