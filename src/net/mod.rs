//! The network edge: the listeners (`server`), one task per connection (`connection`) that
//! reads requests (`framing`) and answers them in order, the socket writes of a response
//! (`send`), and the budgets a new connection is admitted against (`limits`).
//!
//! Never interprets a request beyond its 4-byte length: that is `protocol`.

pub mod connection;
pub mod framing;
pub mod limits;
pub mod send;
pub mod server;
