//! What a filter sees of a journal entry, and batches of entries handed between threads.
//!
//! A filter gets MESSAGE as bytes (journal values need not be UTF-8 and attackers choose
//! them) with the entry's own timestamp, so no date is parsed. Filters written for syslog
//! files can instead be fed the classic line `HOST IDENT[PID]: MESSAGE`, rendered into a
//! buffer the caller reuses.
//!
//! `_HOSTNAME` is set by journald on the host that logged the entry, but in a merged journal
//! (systemd-journal-remote's output on a collector) every uploading host wrote its own
//! entries' fields, so a compromised host can put anything there. It is a label only: it is
//! rendered as one word ([`host_label`]) and never decides which address is banned.

use crate::engine::logline::SyslogLine;
use crate::engine::multiline::Origin;
use crate::engine::time::Timestamp;
use std::ops::Range;

/// Whether an entry was already acted upon before a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// At or before the stored cursor: already acted upon; the engine only counts it, so a
    /// restart remembers recent failures without banning (or notifying) twice.
    Replay,
    /// After the stored cursor: not seen before.
    New,
}

/// The fields of one entry that banhound uses, borrowed from the reader or a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView<'a> {
    /// `_SOURCE_REALTIME_TIMESTAMP` (when the sender logged it) if present and valid, else
    /// `__REALTIME_TIMESTAMP` (when journald received it).
    pub timestamp: Timestamp,
    pub message: &'a [u8],
    pub hostname: Option<&'a [u8]>,
    pub syslog_identifier: Option<&'a [u8]>,
    pub comm: Option<&'a [u8]>,
    pub pid: Option<&'a [u8]>,
}

impl<'a> EntryView<'a> {
    /// The program name as syslog shows it: SYSLOG_IDENTIFIER, else _COMM.
    pub fn ident(&self) -> Option<&'a [u8]> {
        self.syslog_identifier.or(self.comm)
    }

    /// The process that logged the entry (`_HOSTNAME`, `_PID`: set by journald, not by the
    /// sender), for filters whose sessions are processes.
    pub fn origin(&self) -> Origin<'a> {
        Origin {
            host: self.hostname.unwrap_or_default(),
            pid: self.pid,
        }
    }

    /// Writes `HOST IDENT[PID]: MESSAGE` into `out` (cleared first), leaving out the parts
    /// the entry lacks, so filters written for syslog lines apply unchanged. A `_HOSTNAME`
    /// that is not a host name (blanks, a forged `x sshd[1]: Failed password … from ADDR`) is
    /// rendered as its [`host_label`], one word, so it cannot stand in for the line's tag or
    /// message.
    pub fn render_syslog(&self, out: &mut Vec<u8>) {
        let raw = self.hostname.unwrap_or_default();
        let label;
        let host = if is_host_name(raw) {
            raw
        } else {
            label = host_label(raw);
            label.as_bytes()
        };
        SyslogLine {
            host,
            ident: self.ident().unwrap_or_default(),
            pid: self.pid,
            message: self.message,
        }
        .render_into(out);
    }
}

/// Host labels longer than this are cut: a name shown in a log line, not a payload.
pub const HOST_LABEL_BYTES: usize = 64;

fn is_host_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

fn is_host_name(raw: &[u8]) -> bool {
    raw.len() <= HOST_LABEL_BYTES && raw.iter().all(|&b| is_host_name_byte(b))
}

/// A `_HOSTNAME` as banhound shows it (log lines, events, alerts): letters, digits, `-`, `.`
/// and `_` kept, any other byte as `\xNN`, cut after [`HOST_LABEL_BYTES`] bytes of the
/// value (then ending in `…`); `-` for an empty one. One word without `,`, `(` or `)`, so
/// a list of labels reads unambiguously whatever the uploading hosts wrote.
pub fn host_label(raw: &[u8]) -> String {
    if raw.is_empty() {
        return "-".into();
    }
    let mut label = String::with_capacity(raw.len().min(HOST_LABEL_BYTES));
    for &b in raw.iter().take(HOST_LABEL_BYTES) {
        if is_host_name_byte(b) {
            label.push(char::from(b));
        } else {
            label.push_str(&format!("\\x{b:02x}"));
        }
    }
    if raw.len() > HOST_LABEL_BYTES {
        label.push('…');
    }
    label
}

/// An entry as a reader yields it: which jails it goes to, and whether it is a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadEntry<'a> {
    pub phase: Phase,
    /// Indexes of the jails (as given to `JailMatches::new`) whose matches the entry satisfies.
    pub jails: &'a [usize],
    pub entry: EntryView<'a>,
}

type Span = Range<u32>;

#[derive(Clone, Debug)]
struct Record {
    phase: Phase,
    timestamp: Timestamp,
    jails: Span,
    message: Span,
    hostname: Option<Span>,
    syslog_identifier: Option<Span>,
    comm: Option<Span>,
    pid: Option<Span>,
}

/// Entries read together, stored flat in one arena so a batch costs a few allocations that
/// are reused when the consumer hands the batch back ([`crate::source::journal::Follower::recycle`]).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    bytes: Vec<u8>,
    jails: Vec<usize>,
    records: Vec<Record>,
    cursor: Option<String>,
    skipped_no_message: u64,
    at_end: bool,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The cursor of the last entry read for this batch (including skipped ones): persist it
    /// once every entry of the batch has been processed. `None` for a batch read entirely
    /// before the stored cursor it resumed from (a replay): the stored position stays.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The reader had nothing more to read when this batch was sent: everything logged so
    /// far has been handed over. The first time this happens after a start it is said even
    /// with an empty batch, so that the consumer learns when its catch-up is done.
    pub fn at_end(&self) -> bool {
        self.at_end
    }

    /// Entries read for this batch but not delivered because they had no MESSAGE.
    pub fn skipped_no_message(&self) -> u64 {
        self.skipped_no_message
    }

    pub fn iter(&self) -> impl Iterator<Item = ReadEntry<'_>> + '_ {
        self.records.iter().map(move |r| ReadEntry {
            phase: r.phase,
            jails: &self.jails[r.jails.start as usize..r.jails.end as usize],
            entry: EntryView {
                timestamp: r.timestamp,
                message: self.slice(&r.message),
                hostname: r.hostname.as_ref().map(|s| self.slice(s)),
                syslog_identifier: r.syslog_identifier.as_ref().map(|s| self.slice(s)),
                comm: r.comm.as_ref().map(|s| self.slice(s)),
                pid: r.pid.as_ref().map(|s| self.slice(s)),
            },
        })
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.jails.clear();
        self.records.clear();
        self.cursor = None;
        self.skipped_no_message = 0;
        self.at_end = false;
    }

    /// Approximate payload size, to bound a batch by bytes as well as by count.
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn set_cursor(&mut self, cursor: String) {
        self.cursor = Some(cursor);
    }

    pub(crate) fn set_at_end(&mut self) {
        self.at_end = true;
    }

    pub(crate) fn add_skipped_no_message(&mut self, n: u64) {
        self.skipped_no_message += n;
    }

    pub(crate) fn push(&mut self, e: &ReadEntry<'_>) {
        let jails_start = self.jails.len() as u32;
        self.jails.extend_from_slice(e.jails);
        let jails = jails_start..self.jails.len() as u32;
        let message = self.store(e.entry.message);
        let hostname = e.entry.hostname.map(|v| self.store(v));
        let syslog_identifier = e.entry.syslog_identifier.map(|v| self.store(v));
        let comm = e.entry.comm.map(|v| self.store(v));
        let pid = e.entry.pid.map(|v| self.store(v));
        self.records.push(Record {
            phase: e.phase,
            timestamp: e.entry.timestamp,
            jails,
            message,
            hostname,
            syslog_identifier,
            comm,
            pid,
        });
    }

    fn store(&mut self, value: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        start..self.bytes.len() as u32
    }

    fn slice(&self, span: &Span) -> &[u8] {
        &self.bytes[span.start as usize..span.end as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(message: &[u8]) -> EntryView<'_> {
        EntryView {
            timestamp: Timestamp::from_secs(1),
            message,
            hostname: Some(b"host"),
            syslog_identifier: Some(b"sshd"),
            comm: Some(b"sshd-session"),
            pid: Some(b"42"),
        }
    }

    #[test]
    fn renders_syslog_lines() {
        let mut out = b"stale".to_vec();
        view(b"Failed password").render_syslog(&mut out);
        assert_eq!(out, b"host sshd[42]: Failed password");
        let e = EntryView {
            syslog_identifier: None,
            pid: None,
            hostname: None,
            ..view(b"\xffx")
        };
        e.render_syslog(&mut out);
        assert_eq!(out, b"sshd-session: \xffx");
        let bare = EntryView { comm: None, ..e };
        bare.render_syslog(&mut out);
        assert_eq!(out, b"\xffx");
    }

    #[test]
    fn a_forged_hostname_renders_as_one_word() {
        let mut out = Vec::new();
        let forged = EntryView {
            hostname: Some(b"a sshd[1]: Failed password from 198.51.100.9"),
            ..view(b"Accepted publickey for alice")
        };
        forged.render_syslog(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\x20sshd\\x5b1\\x5d\\x3a\\x20Failed\\x20password\\x20from\\x20198.51.100.9 \
             sshd[42]: Accepted publickey for alice"
        );
        assert_eq!(host_label(b"web-1.example.org"), "web-1.example.org");
        assert_eq!(host_label(b""), "-");
        assert_eq!(host_label(b"a,b (c)"), "a\\x2cb\\x20\\x28c\\x29");
        let long = host_label(&[b'h'; 300]);
        assert_eq!(long, format!("{}…", "h".repeat(HOST_LABEL_BYTES)));
    }

    #[test]
    fn batch_round_trips_entries() {
        let mut batch = Batch::default();
        let jails = [0usize, 2];
        let first = ReadEntry {
            phase: Phase::Replay,
            jails: &jails,
            entry: view(b"one"),
        };
        let second = ReadEntry {
            phase: Phase::New,
            jails: &jails[1..],
            entry: EntryView {
                hostname: None,
                ..view(b"two\n\xfe")
            },
        };
        batch.push(&first);
        batch.push(&second);
        batch.set_cursor("c".into());
        let got: Vec<_> = batch.iter().collect();
        assert_eq!(got, [first, second]);
        assert_eq!(batch.cursor(), Some("c"));
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.cursor(), None);
    }
}
