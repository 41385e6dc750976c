//! The client subcommands of `runnel`: what they print. The wire work is `runnel::client`'s.

pub mod cluster;
pub mod groups;
pub mod table;
pub mod topics;
