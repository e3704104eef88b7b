//! Reading the journal through sd-journal: opening a source, installing the jails' matches,
//! positioning from a stored cursor, and turning entries into [`ReadEntry`]s.
//!
//! The hot path calls libsystemd directly (through `shim`, the journal source's only unsafe
//! code): one `sd_journal_enumerate_data` pass per entry copies the few fields banhound uses
//! into buffers that live as long as the reader, and marks the match terms the entry carries,
//! so reading allocates nothing per entry.
//!
//! Start-up positioning is where correctness lives (see [`Start`]): after a restart, entries
//! up to the stored cursor, from a look-back before the cursor's own time, are replayed
//! flagged [`Phase::Replay`] (the engine counts them but does not act twice), later ones are
//! [`Phase::New`]; a cursor whose entry was vacuumed is
//! detected with `sd_journal_test_cursor` and reported with what was lost: the time span, and
//! the number of entries when journald's sequence numbers tell.

use super::cursor::{parse_cursor, CursorParseError};
use super::entry::{EntryView, Phase, ReadEntry};
use super::matches::JailMatches;
use super::shim;
use crate::engine::time::Timestamp;
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;
use systemd::journal::{OpenDirectoryOptions, OpenFilesOptions, OpenOptions};
use systemd::Journal;

/// Which journal to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalSource {
    /// The local system journal (system services and the kernel, this machine only).
    System,
    /// A journal directory, e.g. `/var/log/journal/<machine-id>` or the output directory of
    /// systemd-journal-remote.
    Directory(PathBuf),
    /// Specific journal files.
    Files(Vec<PathBuf>),
    /// A journald namespace (`systemd-journald@NAME`), without the default namespace.
    Namespace(String),
}

impl fmt::Display for JournalSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalSource::System => f.write_str("the system journal"),
            JournalSource::Directory(d) => write!(f, "journal directory {}", d.display()),
            JournalSource::Files(files) => {
                f.write_str("journal files")?;
                for file in files {
                    write!(f, " {}", file.display())?;
                }
                Ok(())
            }
            JournalSource::Namespace(ns) => write!(f, "journal namespace {ns:?}"),
        }
    }
}

/// A failure of the journal source.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot open {what}: {source}")]
    Open {
        what: String,
        source: systemd::Error,
    },
    #[error("{operation}: {source}")]
    Call {
        operation: &'static str,
        source: io::Error,
    },
    #[error("cannot install journal match {term}: {source}")]
    Match {
        term: String,
        source: systemd::Error,
    },
    #[error("the journal follow thread stopped unexpectedly")]
    FollowThread,
}

pub(crate) fn check(
    ret: libc::c_int,
    operation: &'static str,
) -> Result<libc::c_int, JournalError> {
    if ret < 0 {
        Err(JournalError::Call {
            operation,
            source: io::Error::from_raw_os_error(-ret),
        })
    } else {
        Ok(ret)
    }
}

/// Where reading starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// The oldest entry (for `test-filter` over a whole journal file).
    Head,
    /// The first entry at or after this instant; every entry is [`Phase::New`]. Used when
    /// there is no stored cursor: `now - lookback`.
    Since(Timestamp),
    /// After a restart: entries from `replay_since` up to and including `cursor` come back as
    /// [`Phase::Replay`], the ones after it as [`Phase::New`]. A `replay_since` at or after
    /// the cursor's time replays nothing. If the cursor cannot be used at all, reading starts
    /// at `replay_since`.
    Resume {
        cursor: String,
        replay_since: Timestamp,
    },
}

impl Start {
    /// The daemon's start: resume after the stored cursor if any, else look back from `now`.
    /// `lookback` is the largest findtime of the jails, so their failure windows are full
    /// again.
    ///
    /// The replay window ends at the stored cursor and starts `lookback` before the cursor's
    /// own time, not before `now`: failures are judged in log time, and an entry logged after
    /// the cursor is judged together with the committed ones within findtime before it,
    /// however long banhound was stopped or however old the entries it is catching up on.
    /// Anchored at `now`, a stop longer than findtime (or any restart while catching up on
    /// entries older than findtime) replayed nothing and lost every failure window.
    pub fn from_stored(stored: Option<String>, now: Timestamp, lookback: Duration) -> Start {
        match stored {
            Some(cursor) => {
                // An unparsable cursor is reported when used; reading then starts here.
                let anchor = parse_cursor(&cursor).map_or(now, |p| p.realtime);
                Start::Resume {
                    cursor,
                    replay_since: anchor - lookback,
                }
            }
            None => Start::Since(now - lookback),
        }
    }
}

/// How the start went; [`StartReport::warning`] says what an admin must hear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartReport {
    Head,
    Since(Timestamp),
    /// The stored cursor's entry was found: reading continues right after it.
    Resumed {
        cursor_time: Timestamp,
    },
    /// The stored cursor's entry is no longer in the journal (vacuumed or rotated away):
    /// reading continues with the oldest entry after the cursor's time; entries logged between
    /// `cursor_time` and `resumed_at` were never seen.
    CursorLost {
        cursor_time: Timestamp,
        /// The first entry still present after the cursor, `None` if there is none yet.
        resumed_at: Option<Timestamp>,
        /// How many entries (of any program) journald wrote between the two that are gone,
        /// from their sequence numbers; `None` when unknown (journald started a new sequence).
        skipped_entries: Option<u64>,
    },
    /// The stored cursor could not be used at all; reading started at `since` instead.
    CursorUnusable {
        reason: String,
        since: Timestamp,
    },
}

impl StartReport {
    /// The span of journal time that was lost, when the cursor's entry was gone.
    pub fn skipped(&self) -> Option<Duration> {
        match self {
            StartReport::CursorLost {
                cursor_time,
                resumed_at: Some(at),
                ..
            } => Some(at.since(*cursor_time)),
            _ => None,
        }
    }

    /// What an admin must hear about the start, if anything: for a lost cursor, what was
    /// skipped (the time span, and how many entries when journald's numbering tells).
    pub fn warning(&self) -> Option<String> {
        const GONE: &str = "is gone (its file was vacuumed or deleted)";
        match self {
            StartReport::CursorLost {
                cursor_time,
                resumed_at: Some(at),
                skipped_entries,
            } => {
                let gap = at.since(*cursor_time);
                let what = match skipped_entries {
                    Some(1) => "1 journal entry (of any program)".to_string(),
                    Some(n) => format!("{n} journal entries (of any program)"),
                    None => "an unknown number of journal entries (journald started a new \
                             sequence)"
                        .to_string(),
                };
                Some(format!(
                    "the journal entry of the stored cursor ({cursor_time}) {GONE}: skipped \
                     {what} logged between {cursor_time} and {at} ({}.{:03}s); continuing at {at}",
                    gap.as_secs(),
                    gap.subsec_millis()
                ))
            }
            StartReport::CursorLost {
                cursor_time,
                resumed_at: None,
                ..
            } => Some(format!(
                "the journal entry of the stored cursor ({cursor_time}) {GONE} and nothing \
                 newer is left: continuing with new entries"
            )),
            StartReport::CursorUnusable { reason, since } => Some(format!(
                "the stored journal cursor is unusable ({reason}): starting at {since}"
            )),
            _ => None,
        }
    }
}

/// How many entries were read but not delivered, and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Entries stepped over (delivered or not).
    pub read: u64,
    pub delivered: u64,
    /// Entries without a MESSAGE field: nothing for a filter to see.
    pub no_message: u64,
    /// Entries sd-journal returned that no jail's expression accepts (should stay 0).
    pub unmatched: u64,
    /// Replayed entries older than the replay window (the stored cursor's own entry, mostly).
    pub before_window: u64,
}

/// While resuming: what the reader does until it has passed the stored cursor.
enum Boundary {
    /// Positioned on the cursor's own entry (nothing to replay): skip just that entry.
    SkipCursor(CString),
    /// Positioned at the start of the replay window: entries up to the cursor are replays.
    Replay {
        cursor: CString,
        cursor_time: Timestamp,
        replay_since: Timestamp,
    },
}

/// A field value copied out of sd-journal (its pointers are only valid until the next call).
#[derive(Default)]
struct FieldBuf {
    value: Vec<u8>,
    present: bool,
}

impl FieldBuf {
    fn set(&mut self, value: &[u8]) {
        if !self.present {
            self.value.clear();
            self.value.extend_from_slice(value);
            self.present = true;
        }
    }

    fn get(&self) -> Option<&[u8]> {
        self.present.then_some(&self.value[..])
    }
}

#[derive(Default)]
struct EntryBufs {
    message: FieldBuf,
    hostname: FieldBuf,
    syslog_identifier: FieldBuf,
    comm: FieldBuf,
    pid: FieldBuf,
    source_realtime: Option<i64>,
}

impl EntryBufs {
    fn reset(&mut self) {
        for f in [
            &mut self.message,
            &mut self.hostname,
            &mut self.syslog_identifier,
            &mut self.comm,
            &mut self.pid,
        ] {
            f.present = false;
        }
        self.source_realtime = None;
    }

    /// Copies `data` (`NAME=value`) if it is one of the fields banhound uses.
    fn note(&mut self, data: &[u8]) {
        let Some(eq) = memchr::memchr(b'=', data) else {
            return;
        };
        let (name, value) = (&data[..eq], &data[eq + 1..]);
        match name {
            b"MESSAGE" => self.message.set(value),
            b"_HOSTNAME" => self.hostname.set(value),
            b"SYSLOG_IDENTIFIER" => self.syslog_identifier.set(value),
            b"_COMM" => self.comm.set(value),
            b"_PID" => self.pid.set(value),
            b"_SOURCE_REALTIME_TIMESTAMP" if self.source_realtime.is_none() => {
                self.source_realtime = parse_usec(value);
            }
            _ => {}
        }
    }
}

fn parse_usec(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    text.parse::<i64>().ok().filter(|&v| v > 0)
}

/// A journal opened for reading, positioned, with the jails' matches installed.
///
/// Not `Send` (sd-journal objects belong to the thread that opened them): follow from a
/// dedicated thread with [`super::Follower`].
pub struct JournalReader {
    journal: Journal,
    matches: JailMatches,
    bufs: EntryBufs,
    term_hits: Vec<bool>,
    jails: Vec<usize>,
    boundary: Option<Boundary>,
    stats: ReadStats,
    on_entry: bool,
    /// Entries received after this instant end the reading (`test-filter --until`).
    until: Option<Timestamp>,
    past_until: bool,
}

impl JournalReader {
    /// Opens `source`, positions it at `start` and installs `matches`.
    pub fn open(
        source: &JournalSource,
        matches: JailMatches,
        start: &Start,
    ) -> Result<(JournalReader, StartReport), JournalError> {
        let journal = open_journal(source).map_err(|e| JournalError::Open {
            what: source.to_string(),
            source: e,
        })?;
        let mut reader = JournalReader {
            journal,
            term_hits: vec![false; matches.terms().len()],
            matches,
            bufs: EntryBufs::default(),
            jails: Vec::new(),
            boundary: None,
            stats: ReadStats::default(),
            on_entry: false,
            until: None,
            past_until: false,
        };
        let report = reader.position(start)?;
        Ok((reader, report))
    }

    fn install_matches(&mut self) -> Result<(), JournalError> {
        let Some(groups) = self.matches.union() else {
            return Ok(());
        };
        let groups = groups.to_vec();
        for (i, group) in groups.iter().enumerate() {
            if i > 0 {
                self.journal
                    .match_or()
                    .map_err(|source| JournalError::Match {
                        term: "+".into(),
                        source,
                    })?;
            }
            for term in group.terms() {
                let ret = shim::add_match(&mut self.journal, term.as_bytes());
                if ret < 0 {
                    return Err(JournalError::Match {
                        term: term.to_string(),
                        source: systemd::Error::from_raw_os_error(-ret),
                    });
                }
            }
        }
        Ok(())
    }

    fn position(&mut self, start: &Start) -> Result<StartReport, JournalError> {
        match start {
            Start::Head => {
                self.install_matches()?;
                check(shim::seek_head(&mut self.journal), "sd_journal_seek_head")?;
                Ok(StartReport::Head)
            }
            Start::Since(t) => {
                self.install_matches()?;
                self.seek_realtime(*t)?;
                Ok(StartReport::Since(*t))
            }
            Start::Resume {
                cursor,
                replay_since,
            } => self.resume(cursor, *replay_since),
        }
    }

    fn seek_realtime(&mut self, t: Timestamp) -> Result<(), JournalError> {
        let usec = u64::try_from(t.as_micros()).unwrap_or(0);
        check(
            shim::seek_realtime_usec(&mut self.journal, usec),
            "sd_journal_seek_realtime_usec",
        )
        .map(drop)
    }

    fn resume(
        &mut self,
        cursor: &str,
        replay_since: Timestamp,
    ) -> Result<StartReport, JournalError> {
        let unusable = |reason: String, this: &mut Self| -> Result<StartReport, JournalError> {
            this.install_matches()?;
            this.seek_realtime(replay_since)?;
            Ok(StartReport::CursorUnusable {
                reason,
                since: replay_since,
            })
        };
        let stored = match parse_cursor(cursor) {
            Ok(p) => p,
            Err(CursorParseError { reason, .. }) => return unusable(reason.to_string(), self),
        };
        let cursor_time = stored.realtime;
        let Ok(c_cursor) = CString::new(cursor) else {
            return unusable("it contains a NUL byte".into(), self);
        };
        // Whether the cursor's entry still exists is checked before matches are installed:
        // with matches, an entry the current configuration no longer selects would look
        // vacuumed.
        let ret = shim::seek_cursor(&mut self.journal, &c_cursor);
        if ret < 0 {
            return unusable(io::Error::from_raw_os_error(-ret).to_string(), self);
        }
        let found = if self.step()? {
            self.test_cursor(&c_cursor)?
        } else {
            false
        };
        let report = if found {
            StartReport::Resumed { cursor_time }
        } else {
            let (resumed_at, skipped_entries) = if self.on_entry {
                // The first entry left after the cursor (no match is installed yet, so of
                // any program): the sequence numbers in between are the entries lost.
                let next = self.cursor()?.and_then(|c| parse_cursor(&c).ok());
                (
                    Some(self.realtime()?.max(cursor_time)),
                    next.and_then(|next| stored.entries_until(&next)),
                )
            } else {
                (None, None)
            };
            StartReport::CursorLost {
                cursor_time,
                resumed_at,
                skipped_entries,
            }
        };
        self.install_matches()?;
        self.on_entry = false;
        if found && replay_since >= cursor_time {
            // Nothing to replay: land on the cursor's entry (the first one after seeking to
            // it, if the matches select it) and skip it.
            check(
                shim::seek_cursor(&mut self.journal, &c_cursor),
                "sd_journal_seek_cursor",
            )?;
            self.boundary = Some(Boundary::SkipCursor(c_cursor));
        } else {
            self.seek_realtime(replay_since.min(cursor_time))?;
            self.boundary = Some(Boundary::Replay {
                cursor: c_cursor,
                cursor_time,
                replay_since,
            });
        }
        Ok(report)
    }

    /// Ends the reading at the first entry journald received after `until`, as
    /// `journalctl --until` does: the receive time (`__REALTIME_TIMESTAMP`) orders the journal,
    /// not the sender's own `_SOURCE_REALTIME_TIMESTAMP`, so stopping there skips nothing later.
    pub fn set_until(&mut self, until: Timestamp) {
        self.until = Some(until);
    }

    fn step(&mut self) -> Result<bool, JournalError> {
        if self.past_until {
            return Ok(false);
        }
        let moved = check(shim::next(&mut self.journal), "sd_journal_next")? > 0;
        self.on_entry |= moved;
        if let (true, Some(until)) = (moved, self.until) {
            if self.realtime()? > until {
                self.past_until = true;
                return Ok(false);
            }
        }
        Ok(moved)
    }

    fn test_cursor(&self, cursor: &CStr) -> Result<bool, JournalError> {
        Ok(check(
            shim::test_cursor(&self.journal, cursor),
            "sd_journal_test_cursor",
        )? > 0)
    }

    fn realtime(&self) -> Result<Timestamp, JournalError> {
        let (ret, usec) = shim::realtime_usec(&self.journal);
        check(ret, "sd_journal_get_realtime_usec")?;
        Ok(Timestamp::from_micros(
            i64::try_from(usec).unwrap_or(i64::MAX),
        ))
    }

    /// Where the reader is relative to the stored cursor; `None` means skip this entry.
    fn phase(&mut self) -> Result<Option<Phase>, JournalError> {
        let phase = match &self.boundary {
            None => return Ok(Some(Phase::New)),
            Some(Boundary::SkipCursor(cursor)) => {
                let on_cursor = self.test_cursor(cursor)?;
                self.boundary = None;
                (!on_cursor).then_some(Phase::New)
            }
            Some(Boundary::Replay {
                cursor,
                cursor_time,
                replay_since,
            }) => {
                let (cursor_time, replay_since) = (*cursor_time, *replay_since);
                let realtime = self.realtime()?;
                if self.test_cursor(cursor)? {
                    self.boundary = None;
                    (realtime >= replay_since).then_some(Phase::Replay)
                } else if realtime > cursor_time {
                    // Past the cursor without meeting it: it was vacuumed, or the current
                    // matches do not select it. Either way everything from here on is new.
                    self.boundary = None;
                    Some(Phase::New)
                } else {
                    (realtime >= replay_since).then_some(Phase::Replay)
                }
            }
        };
        Ok(phase)
    }

    /// Copies the used fields of the current entry and marks its match terms.
    fn collect_fields(&mut self) -> Result<(), JournalError> {
        self.bufs.reset();
        self.term_hits.iter_mut().for_each(|h| *h = false);
        let (bufs, matches, term_hits) = (&mut self.bufs, &self.matches, &mut self.term_hits);
        let ret = shim::for_each_data(&mut self.journal, |item| {
            bufs.note(item);
            matches.note_data(item, term_hits);
        });
        check(ret, "sd_journal_enumerate_data").map(drop)
    }

    /// The next entry for at least one jail, or `None` at the end of the journal (for now:
    /// after [`super::Follower`]'s wake-up there may be more).
    pub fn next_entry(&mut self) -> Result<Option<ReadEntry<'_>>, JournalError> {
        loop {
            if !self.step()? {
                return Ok(None);
            }
            self.stats.read += 1;
            let Some(phase) = self.phase()? else {
                self.stats.before_window += 1;
                continue;
            };
            self.collect_fields()?;
            if !self.bufs.message.present {
                self.stats.no_message += 1;
                continue;
            }
            self.jails.clear();
            self.matches.dispatch(&self.term_hits, &mut self.jails);
            if self.jails.is_empty() {
                self.stats.unmatched += 1;
                continue;
            }
            let timestamp = match self.bufs.source_realtime {
                Some(us) => Timestamp::from_micros(us),
                None => self.realtime()?,
            };
            self.stats.delivered += 1;
            let b = &self.bufs;
            return Ok(Some(ReadEntry {
                phase,
                jails: &self.jails,
                entry: EntryView {
                    timestamp,
                    message: &b.message.value,
                    hostname: b.hostname.get(),
                    syslog_identifier: b.syslog_identifier.get(),
                    comm: b.comm.get(),
                    pid: b.pid.get(),
                },
            }));
        }
    }

    /// The cursor of the last entry read (delivered or skipped): the position to persist once
    /// what was read is processed. `None` before the first entry, and while replaying up to
    /// the stored cursor: a replayed entry's cursor would move the stored position back, and
    /// after the next restart the entries between it and the old position, already acted
    /// on, would come back as new.
    pub fn cursor(&self) -> Result<Option<String>, JournalError> {
        if !self.on_entry || matches!(self.boundary, Some(Boundary::Replay { .. })) {
            return Ok(None);
        }
        self.journal
            .cursor()
            .map(Some)
            .map_err(|e| JournalError::Call {
                operation: "sd_journal_get_cursor",
                source: io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(libc::EIO)),
            })
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    /// The handle, for the follow loop's wait on it ([`super::shim`]'s fd, events, timeout
    /// and process).
    pub(super) fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }
}

fn open_journal(source: &JournalSource) -> Result<Journal, systemd::Error> {
    match source {
        JournalSource::System => OpenOptions::default().system(true).local_only(true).open(),
        JournalSource::Directory(dir) => {
            OpenDirectoryOptions::default().open_directory(dir.as_os_str().as_encoded_bytes())
        }
        JournalSource::Files(files) => OpenFilesOptions::default()
            .open_files(files.iter().map(|f| f.as_os_str().as_encoded_bytes())),
        JournalSource::Namespace(ns) => OpenOptions::default().open_namespace(ns.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(skipped_entries: Option<u64>) -> StartReport {
        StartReport::CursorLost {
            cursor_time: Timestamp::from_micros(1_700_000_000_250_000),
            resumed_at: Some(Timestamp::from_micros(1_700_000_002_500_000)),
            skipped_entries,
        }
    }

    #[test]
    fn a_lost_cursor_warning_says_what_was_skipped() {
        assert_eq!(
            lost(Some(7)).warning().unwrap(),
            "the journal entry of the stored cursor (2023-11-14T22:13:20.250000Z) is gone \
             (its file was vacuumed or deleted): skipped 7 journal entries (of any program) \
             logged between 2023-11-14T22:13:20.250000Z and 2023-11-14T22:13:22.500000Z \
             (2.250s); continuing at 2023-11-14T22:13:22.500000Z"
        );
        assert!(lost(Some(1))
            .warning()
            .unwrap()
            .contains(": skipped 1 journal entry (of any program) logged between"));
        assert!(lost(None).warning().unwrap().contains(
            ": skipped an unknown number of journal entries (journald started a new sequence) \
             logged between"
        ));
        assert_eq!(lost(Some(7)).skipped(), Some(Duration::from_millis(2250)));
        let nothing_left = StartReport::CursorLost {
            cursor_time: Timestamp::from_micros(1_700_000_000_000_000),
            resumed_at: None,
            skipped_entries: None,
        };
        assert_eq!(
            nothing_left.warning().unwrap(),
            "the journal entry of the stored cursor (2023-11-14T22:13:20Z) is gone (its file \
             was vacuumed or deleted) and nothing newer is left: continuing with new entries"
        );
        assert_eq!(
            StartReport::Resumed {
                cursor_time: Timestamp::from_micros(0)
            }
            .warning(),
            None
        );
    }

    use crate::source::journal::MatchExpr;
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Stdio};

    /// 2023-11-14T22:13:20Z.
    const T0: i64 = 1_700_000_000_000_000;

    /// A journal file written by systemd-journal-remote (what systemd itself writes) with
    /// sshd entries `m0`..`m{n-1}`, one second apart from [`T0`].
    fn journal_dir(n: i64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut export = String::new();
        for i in 0..n {
            export.push_str(&format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n\
                 _BOOT_ID=5a1d8c3e9f0b4e6d8a7c2b1e0f9d8c7b\n_COMM=sshd\nMESSAGE=m{i}\n\n",
                T0 + i * 1_000_000,
                1_000_000 + i * 1_000_000
            ));
        }
        let mut remote = Command::new("/lib/systemd/systemd-journal-remote")
            .arg("-o")
            .arg(dir.path().join("test.journal"))
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-journal-remote runs");
        remote
            .stdin
            .take()
            .unwrap()
            .write_all(export.as_bytes())
            .unwrap();
        assert!(remote.wait().unwrap().success());
        dir
    }

    fn open(dir: &Path, start: &Start) -> JournalReader {
        let matches = JailMatches::new(vec![MatchExpr::parse(&["_COMM=sshd"]).unwrap()]);
        JournalReader::open(&JournalSource::Directory(dir.to_path_buf()), matches, start)
            .unwrap()
            .0
    }

    /// What a reader yields: (message, phase, the cursor it would have persisted).
    fn read_rest(reader: &mut JournalReader) -> Vec<(String, Phase, Option<String>)> {
        let mut got = Vec::new();
        while let Some(e) = reader.next_entry().unwrap() {
            let (message, phase) = (String::from_utf8_lossy(e.entry.message), e.phase);
            let message = message.into_owned();
            got.push((message, phase, reader.cursor().unwrap()));
        }
        got
    }

    #[test]
    fn the_replay_window_is_anchored_at_the_stored_entry_s_time() {
        // Stopped two hours ago (or catching up on entries that old): the window is the
        // lookback before the stored entry, not before now.
        let cursor = format!("s=ab;i=1;t={T0:x}");
        let now = Timestamp::from_micros(T0 + 7_200_000_000);
        let lookback = Duration::from_secs(600);
        assert_eq!(
            Start::from_stored(Some(cursor.clone()), now, lookback),
            Start::Resume {
                cursor,
                replay_since: Timestamp::from_micros(T0) - lookback
            }
        );
        assert_eq!(
            Start::from_stored(Some("garbage".into()), now, lookback),
            Start::Resume {
                cursor: "garbage".into(),
                replay_since: now - lookback
            }
        );
        assert_eq!(
            Start::from_stored(None, now, lookback),
            Start::Since(now - lookback)
        );
    }

    #[test]
    fn the_position_to_persist_never_goes_back_while_replaying() {
        let dir = journal_dir(6);
        let mut first = open(dir.path(), &Start::Head);
        let read: Vec<_> = read_rest(&mut first).into_iter().take(4).collect();
        let cursors: Vec<String> = read.iter().map(|r| r.2.clone().unwrap()).collect();
        drop(first);

        // Stopped after m3 was processed: m0..m3 are replayed, and the position to persist
        // stays m3's until reading is past it (a crash during the replay must not move the
        // stored position back to m1, or m2 and m3 would count as new at the next start).
        let stored = cursors[3].clone();
        let mut reader = open(
            dir.path(),
            &Start::Resume {
                cursor: stored.clone(),
                replay_since: Timestamp::from_micros(T0 - 3_600_000_000),
            },
        );
        let got = read_rest(&mut reader);
        let summary: Vec<(&str, Phase, Option<&str>)> = got
            .iter()
            .map(|(m, p, c)| (m.as_str(), *p, c.as_deref()))
            .collect();
        assert_eq!(
            summary[..4],
            [
                ("m0", Phase::Replay, None),
                ("m1", Phase::Replay, None),
                ("m2", Phase::Replay, None),
                ("m3", Phase::Replay, Some(stored.as_str())),
            ]
        );
        assert_eq!(
            summary[4..].iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            [("m4", Phase::New), ("m5", Phase::New)]
        );
        assert!(summary[4..]
            .iter()
            .all(|s| s.2.is_some_and(|c| c != stored)));
    }
}
