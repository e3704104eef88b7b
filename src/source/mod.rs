//! Sources: where log records come from. Plain files here; the journal beside it.

pub mod file;
