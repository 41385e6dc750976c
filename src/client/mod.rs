//! A small Kafka client for the `runnel` command line: one connection per broker, version
//! negotiation through ApiVersions, typed requests from kafka-protocol, and the group consumer
//! behind `runnel consume --group`.
//!
//! Owns nothing of the broker: it speaks the wire protocol like any other client, so the CLI
//! works against Kafka too. The broker uses only its `Connection`, for a follower's fetches
//! from a leader (as Kafka's replica fetcher uses its NetworkClient).

pub mod admin;
pub mod connection;
pub mod consumer;
pub mod fetch_session;
pub mod metadata;
pub mod producer;

pub use connection::Connection;
