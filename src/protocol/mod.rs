//! The Kafka wire protocol on top of kafka-protocol's generated types: which APIs and versions
//! Runnel speaks (`versions`), turning a frame into a typed request and a typed response back
//! into a frame (`dispatch`), and the one mapping from engine errors to Kafka error codes
//! (`errors`), and the response frame the connection sends, fetched records left in their
//! files (`response`).
//!
//! Never does the work of a request: that is `broker`.

#[cfg(test)]
mod decode_fuzz;
pub mod dispatch;
pub mod errors;
pub mod response;
pub mod versions;
