//! Sources: where log records come from. The systemd journal first (read natively through
//! libsystemd, with a persisted cursor, [`journal`]), and plain log files: [`file`](mod@file) is the one
//! line reader (test-filter and the daemon), [`file_follow`] the daemon's follower of files
//! being written (rotation, truncation, persisted offsets), [`glob`] the wildcards of a
//! `logpath`.
//!
//! Both followers hand records to their consumer (the daemon's owner task) the same one way:
//! a dedicated thread per source (sd-journal handles are not `Send`, and reading a file or
//! the journal blocks), asleep in poll(2) on what tells it of new records (the journal's
//! inotify fd, a file's inotify watch) and on a stop eventfd, reads what is there in
//! batches (a journal [`journal::Batch`], a file [`file_follow::FileChunk`]), each with the
//! source position just after it, and sends each batch over a bounded tokio channel with
//! `blocking_send` (the journal itself or the file is the buffer: a slow consumer holds the
//! thread back, nothing is dropped). The consumer awaits the channel in its select loop, and
//! commits a batch's position with the batch's bans. No thread in between, one message per
//! batch, not per record. Dropping the feed signals the eventfd, closes the channel (which
//! frees a thread blocked sending) and joins the threads; what was not taken is read again
//! from the committed position by the next feed.

pub mod fd_shim;
pub mod file;
pub mod file_follow;
pub mod glob;
pub mod journal;
