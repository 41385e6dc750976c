//! Runnel: a Kafka-wire-compatible event-streaming broker.
//!
//! A request's path: `net` reads a length-prefixed frame → `protocol` decodes the header and
//! body into kafka-protocol's typed request and dispatches it → a handler in `broker` does the
//! work against `log` (partitions on disk), `metadata` (which topics exist) and
//! `group` (consumer groups, which keeps its state in the log) → the typed
//! response goes back through `protocol` to bytes.
//!
//! | module | owns |
//! |---|---|
//! | `config` | the one Config: flags, server.properties, `KAFKA_*` environment |
//! | `log` | storage engine: segments, indexes, recovery, retention |
//! | `group` | consumer groups, rebalances, committed offsets (`__consumer_offsets`) |
//! | `metadata` | the topic registry (names, ids, partition counts, config overrides) |
//! | `producer` | producer ids and idempotence state (sequence checks, duplicates) |
//! | `protocol` | request headers, the ApiVersions table, dispatch, error-code mapping |
//! | `broker` | one handler file per API family |
//! | `net` | listener, connection loop, framing |
//! | `client` | the CLI's own wire client: `runnel consume`, `runnel groups` (never used by the broker) |
#![deny(unsafe_code)]

pub mod broker;
pub mod client;
pub mod config;
pub mod group;
pub mod log;
pub mod metadata;
pub mod net;
pub mod producer;
pub mod protocol;
