//! The network edge: the listener (`server`) and one task per connection (`connection`) that
//! frames requests and writes responses in order.
//!
//! Never interprets a request beyond its 4-byte length: that is `protocol`.

pub mod connection;
pub mod server;
