//! Where log entries come from. The systemd journal is the primary source: banhound reads it
//! through libsystemd, so it sees each entry's own fields and timestamp instead of re-parsing
//! syslog text, and it keeps its place with the journal's cursor.

pub mod journal;
