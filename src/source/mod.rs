//! Sources: where log records come from. The systemd journal first (read natively through
//! libsystemd, with a persisted cursor, [`journal`]), and plain log files: [`file`](mod@file) is the one
//! line reader (test-filter and the daemon), [`file_follow`] the daemon's follower of files
//! being written (rotation, truncation, persisted offsets), [`glob`] the wildcards of a
//! `logpath`.

pub mod fd_shim;
pub mod file;
pub mod file_follow;
pub mod glob;
pub mod journal;
