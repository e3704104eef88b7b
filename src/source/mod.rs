//! Sources: where log records come from. The systemd journal first (read natively through
//! libsystemd, with a persisted cursor), and plain log files.

pub mod file;
pub mod journal;
