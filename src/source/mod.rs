//! Sources: where log records come from. The systemd journal first (read natively through
//! libsystemd, with a persisted cursor, [`journal`]), and plain log files: [`file`](mod@file) is the one
//! line reader (test-filter and the daemon), [`file_follow`] the daemon's follower of files
//! being written (rotation, truncation, persisted offsets), [`glob`] the wildcards of a
//! `logpath`.
//!
//! **One way of handing records to the daemon.** Every followed source is a dedicated OS
//! thread that blocks in poll(2) (on inotify, the journal's descriptor and a stop eventfd) and
//! hands whole batches, each with the position after it, straight to the daemon's owner task
//! over a bounded tokio channel (`blocking_send` on the thread, `recv().await` in the task).
//! Threads, because sd-journal handles are not `Send` and file reads block; a tokio
//! channel, because the owner task awaits everything else (signals, timers, D-Bus, netlink) in
//! one `select!` and must not block on a source; bounded, because the source itself (the
//! journal, the file) is the buffer: a slow owner holds the thread back and nothing is
//! dropped or read twice. The journal used to go through a second thread that copied batches
//! from a std channel into a tokio one: one more thread, one more wake-up and hand-over per
//! batch, for nothing the direct hand-over lacks.

pub mod fd_shim;
pub mod file;
pub mod file_follow;
pub mod glob;
pub mod journal;
