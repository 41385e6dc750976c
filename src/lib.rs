//! Runnel: a Kafka-wire-compatible event-streaming broker.
//!
//! A request's path: `net` reads a length-prefixed frame → `protocol` decodes the header and
//! body into kafka-protocol's typed request and dispatches it → a handler in `broker` does the
//! work against `log` (partitions on disk), `metadata` (the image: brokers, topics, leaders) and
//! `group` (consumer groups, which keeps its state in the log) → the typed
//! response goes back through `protocol` to bytes. Admin changes go from the handler to the
//! active controller (`cluster`), are committed to the metadata log, replayed into every
//! node's image, and answered once this broker's image holds them.
//!
//! | module | owns |
//! |---|---|
//! | `config` | the one Config: flags, server.properties, `KAFKA_*` environment |
//! | `cluster` | the controller quorum (openraft), controller listener, active controller, broker registration |
//! | `log` | storage engine: segments, indexes, recovery, retention |
//! | `group` | consumer groups, rebalances, committed offsets (`__consumer_offsets`) |
//! | `metadata` | metadata records, the image replayed from them, the cache handlers read |
//! | `producer` | producer ids and idempotence state (sequence checks, duplicates) |
//! | `protocol` | request headers, the ApiVersions table, dispatch, error-code mapping |
//! | `broker` | one handler file per API family |
//! | `net` | listener, connection loop, framing |
//! | `client` | the CLI's own wire client: `runnel consume`, `runnel groups` (never used by the broker) |
#![deny(unsafe_code)]

pub mod broker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod group;
pub mod log;
pub mod metadata;
pub mod net;
pub mod producer;
pub mod protocol;
