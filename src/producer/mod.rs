//! Producers: durable producer-id allocation (`id_manager`) and the per-partition idempotence
//! state that rejects gaps and recognises retries (`state`).
//!
//! Never touches record bytes: the log hands over batch headers.

pub mod id_manager;
pub mod state;
