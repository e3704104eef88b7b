//! banhound: watches logs (the systemd journal first) for authentication failures and bans
//! the offending addresses in the firewall, natively: sd-journal with a persisted cursor,
//! nftables over netlink or firewalld over D-Bus, and control over D-Bus.
//!
//! The tree follows the architecture: [`engine`] is the pure core (no I/O), [`config`]
//! turns TOML into validated settings, [`source`] reads logs, [`firewall`] applies bans,
//! [`bus`] serves the D-Bus control interface, [`cli`] implements the subcommands,
//! [`metrics`] renders Prometheus metrics, [`multicast`] brings the kernel's netlink notifications (addresses, nf_tables changes). Only
//! `main` decides exit codes.

pub mod action;
pub mod bus;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod display;
pub mod engine;
pub mod firewall;
pub mod fleet;
pub mod metrics;
pub mod multicast;
pub mod source;
