//! The journal source: sd-journal read once for every jail, followed live from a dedicated
//! thread that sleeps until journald writes, positioned by a persisted cursor.
//!
//! - [`matches`](mod@matches): journalctl-style match expressions per jail and the dispatch of entries;
//! - [`reader`]: opening a source, start-up positioning (replay up to the cursor, then new),
//!   reading entries without per-entry allocation;
//! - [`follow`]: the follow thread (poll(2) on the journal fd and a stop eventfd);
//! - [`cursor`]: the atomically persisted cursor;
//! - [`entry`]: what a filter sees of an entry, and batches handed between threads;
//! - `shim`: the raw sd-journal calls and syscalls, the source's only `unsafe` code.

pub mod cursor;
pub mod entry;
pub mod follow;
pub mod matches;
pub mod reader;
mod shim;

pub use cursor::{parse_cursor, CursorStore, CursorStoreError};
pub use entry::{host_label, Batch, EntryView, Phase, ReadEntry};
pub use follow::{FollowOptions, FollowStopper, Follower};
pub use matches::{JailMatches, MatchError, MatchExpr, MatchTerm};
pub use reader::{JournalError, JournalReader, JournalSource, ReadStats, Start, StartReport};
