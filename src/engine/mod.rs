//! The pure engine: what is a failure, and when it becomes a ban.
//!
//! Nothing in here does I/O, spawns, or reads a clock: lines and instants go in, match
//! outcomes and ban decisions come out. That makes it deterministic (the same entries
//! always give the same decisions), testable without a machine, and shareable between
//! `banhound test-filter` and the daemon.

pub mod address;
mod date_templates;
pub mod datepattern;
pub mod datetime;
pub mod filter;
pub mod jail;
pub mod logline;
pub mod multiline;
pub mod prepare;
pub mod time;
pub mod tracker;
