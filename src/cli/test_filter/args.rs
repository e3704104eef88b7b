//! test-filter's command line: the arguments, which of them choose a journal, and the times
//! they take (`--now` in RFC 3339, `--since`/`--until` in journalctl's forms).

use crate::cli::{invalid, time_arg};
use crate::engine::datetime::{DateDetector, Template, Zone};
use crate::engine::time::{BanTime, Timestamp};
use crate::source::journal::JournalSource;
use anyhow::{anyhow, Context};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct TestFilterArgs {
    /// A filter name ("sshd"), a filter file, a fail2ban filter (a `filter.d/*.conf` file,
    /// or NAME[key=value,...] / fail2ban:NAME[...] looked up in --fail2ban-dir), or a
    /// failregex with an address tag (`'Failed password for .* from <HOST>'`).
    pub filter: String,
    /// A log file, "-" for standard input, or a single log line; omit it to read the journal
    /// (--journal, --journal-dir, --journal-file or --journal-namespace).
    pub source: Option<String>,
    /// Filter mode (e.g. "aggressive"); modes add regexes to the normal set. For a
    /// fail2ban filter, the same as the parameter mode=MODE.
    #[arg(long)]
    pub mode: Option<String>,
    /// fail2ban's configuration directory, where NAME[...] filters are looked up.
    #[arg(long, default_value = crate::config::fail2ban::DEFAULT_DIR)]
    pub fail2ban_dir: PathBuf,
    /// How lines are split when FILTER is a regex: "plain" (the regex sees the whole line)
    /// or "syslog" (it sees the message after `DATE HOST IDENT[PID]: `). Files only.
    #[arg(long, value_parser = ["plain", "syslog"])]
    pub format: Option<String>,
    /// Decide bans with this jail's settings from the configuration (maxretry, findtime,
    /// bantime, ignoreip, escalation); on the journal, also use its journalmatch.
    #[arg(long)]
    pub jail: Option<String>,
    /// Failures within --findtime that lead to a ban (default: the jail's, else 5).
    #[arg(long, value_name = "COUNT")]
    pub maxretry: Option<u32>,
    /// The window failures are counted in ("10m", "1h"; default: the jail's, else 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    pub findtime: Option<Duration>,
    /// How long a ban lasts ("10m", "2d", "permanent"; default: the jail's, else 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_bantime_arg)]
    pub bantime: Option<BanTime>,
    /// Time zone of dates that carry none: "local", "UTC", "+02:00", "Europe/Berlin".
    #[arg(long, default_value = "local")]
    pub timezone: String,
    /// The current time (RFC 3339), for the year of syslog dates and the time of undated
    /// lines; default: the clock.
    #[arg(long)]
    pub now: Option<String>,
    /// With --jail, read SOURCE as the daemon reads a file it has no position for: from its
    /// start at --now, where only the lines of the last findtime count. Without it, as the
    /// daemon reads the lines appended to a file it follows: each by its own date.
    #[arg(long, requires = "jail")]
    pub look_back: bool,
    #[command(flatten)]
    pub journal: JournalArgs,
    /// Print one JSON object per matched line on stdout (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// How many addresses to list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Also list every regex (with 0 hits) and the missed lines (up to --top).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Reading the journal instead of SOURCE.
#[derive(Debug, Default, Args)]
pub struct JournalArgs {
    /// Read the local system journal.
    #[arg(long = "journal")]
    pub system: bool,
    /// Read the journal files of this directory (e.g. systemd-journal-remote's output).
    #[arg(long = "journal-dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Read this journal file (repeatable).
    #[arg(long = "journal-file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read this journald namespace.
    #[arg(long = "journal-namespace", value_name = "NAME")]
    pub namespace: Option<String>,
    /// Select entries with these matches instead of the filter's (or --jail's) journalmatch,
    /// as journalctl does: FIELD=VALUE (repeatable; the same field twice is OR, different
    /// fields AND), and a separate "+" between OR groups.
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    pub matches: Vec<String>,
    /// Read entries received at or after this time, as journalctl takes it: RFC 3339,
    /// "2026-12-01 10:00", "15:53", "today", "-10min", "2h ago" (wall-clock times in
    /// --timezone).
    #[arg(long, allow_hyphen_values = true)]
    pub since: Option<String>,
    /// Read entries received at or before this time (the forms of --since).
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// What the regexes see of an entry: "message" (MESSAGE) or "syslog" (the line
    /// `HOST IDENT[PID]: MESSAGE`, for regexes written for such lines).
    /// Default: "syslog" for fail2ban filters, which are written for such lines, else
    /// "message".
    #[arg(long = "journal-render", value_parser = ["message", "syslog"])]
    pub render: Option<String>,
}

impl JournalArgs {
    /// The journal to read, if one was asked for; more than one is an error.
    pub(super) fn source(&self) -> anyhow::Result<Option<JournalSource>> {
        let mut chosen = Vec::new();
        if self.system {
            chosen.push(JournalSource::System);
        }
        if let Some(dir) = &self.dir {
            chosen.push(JournalSource::Directory(dir.clone()));
        }
        if !self.files.is_empty() {
            chosen.push(JournalSource::Files(self.files.clone()));
        }
        if let Some(ns) = &self.namespace {
            chosen.push(JournalSource::Namespace(ns.clone()));
        }
        if chosen.len() > 1 {
            return Err(invalid(anyhow!(
                "give one of --journal, --journal-dir, --journal-file and --journal-namespace"
            )));
        }
        Ok(chosen.pop())
    }

    /// The options that only make sense on the journal, if any was given.
    pub(super) fn journal_only_option(&self) -> Option<&'static str> {
        if !self.matches.is_empty() {
            Some("--match")
        } else if self.since.is_some() {
            Some("--since")
        } else if self.until.is_some() {
            Some("--until")
        } else if self.render.is_some() {
            Some("--journal-render")
        } else {
            None
        }
    }
}

pub(super) fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::engine::time::parse_duration(s).map_err(|e| e.to_string())
}

pub(super) fn parse_bantime_arg(s: &str) -> Result<BanTime, String> {
    BanTime::parse(s).map_err(|e| e.to_string())
}

/// An RFC 3339 time given as `flag`. Only ISO 8601 dates with an explicit zone are taken:
/// the detector also knows year-less syslog dates, whose year would be guessed from 1970.
pub(super) fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
    let mut d = DateDetector::new(Zone::Utc);
    match d.detect(s.as_bytes(), Timestamp::default()) {
        Some(found)
            if found.span == (0..s.len())
                && found.template == Template::Iso8601
                && has_explicit_zone(s) =>
        {
            Ok(found.timestamp)
        }
        _ => Err(invalid(anyhow!(
            "{flag} {s:?} is not an RFC 3339 time such as 2026-11-22T10:00:00Z"
        ))),
    }
}

/// Ends with "Z" or a numeric offset ("+02:00", "-0500").
pub(super) fn has_explicit_zone(s: &str) -> bool {
    if s.ends_with(['Z', 'z']) {
        return true;
    }
    let b = s.as_bytes();
    let offset = |len: usize| {
        b.len() > len
            && matches!(b[b.len() - len], b'+' | b'-')
            && b[b.len() - len + 1..]
                .iter()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || (len == 6 && i == 2 && *c == b':'))
    };
    offset(6) || offset(5)
}

/// `--since`/`--until` in journalctl's forms: wall-clock times in --timezone, relative ones
/// from --now (the clock by default).
pub(super) fn journal_time(
    flag: &str,
    s: &str,
    args: &TestFilterArgs,
) -> anyhow::Result<Timestamp> {
    let zone = Zone::parse(&args.timezone)
        .map_err(|e| invalid(anyhow!("--timezone {:?}: {e}", args.timezone)))?;
    let now = parse_now(args.now.as_deref())?;
    time_arg::parse(s, now, &time_arg::time_zone(&zone)).map_err(|e| invalid(anyhow!("{flag} {e}")))
}

pub(super) fn parse_now(arg: Option<&str>) -> anyhow::Result<Timestamp> {
    match arg {
        None => {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            Ok(Timestamp::from_micros(since_epoch.as_micros() as i64))
        }
        Some(s) => parse_time("--now", s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn args(words: &[&str]) -> TestFilterArgs {
        let cli = Cli::try_parse_from([&["banhound", "test-filter"], words].concat()).unwrap();
        match cli.command {
            Command::TestFilter(a) => *a,
            other => unreachable!("parsed test-filter, got {other:?}"),
        }
    }

    #[test]
    fn journal_flags_choose_one_source() {
        let a = args(&["sshd", "--journal-file", "a", "--journal-file", "b"]);
        assert_eq!(a.source, None);
        assert_eq!(
            a.journal.source().unwrap(),
            Some(JournalSource::Files(vec!["a".into(), "b".into()]))
        );
        let a = args(&["sshd", "--journal-namespace", "ns"]);
        assert_eq!(
            a.journal.source().unwrap(),
            Some(JournalSource::Namespace("ns".into()))
        );
        assert_eq!(args(&["sshd", "x"]).journal.source().unwrap(), None);
        assert!(args(&["sshd", "--journal", "--journal-dir", "d"])
            .journal
            .source()
            .is_err());
    }

    #[test]
    fn match_takes_plus_as_a_value() {
        let a = args(&[
            "sshd",
            "--journal",
            "--match",
            "_COMM=a",
            "--match",
            "+",
            "--match",
            "_COMM=b",
        ]);
        assert_eq!(a.journal.matches, ["_COMM=a", "+", "_COMM=b"]);
        assert_eq!(a.journal.journal_only_option(), Some("--match"));
        assert_eq!(args(&["sshd", "x"]).journal.journal_only_option(), None);
        let a = args(&["sshd", "x", "--journal-render", "syslog"]);
        assert_eq!(a.journal.journal_only_option(), Some("--journal-render"));
    }

    #[test]
    fn times_are_rfc3339_only() {
        assert_eq!(
            parse_time("--since", "2023-11-14T22:13:20Z").unwrap(),
            Timestamp::from_secs(1_700_000_000)
        );
        assert_eq!(
            parse_time("--since", "2023-11-15T00:13:20.5+02:00").unwrap(),
            Timestamp::from_micros(1_700_000_000_500_000)
        );
        assert!(parse_time("--until", "Nov 14 22:13:20").is_err());
        assert!(parse_time("--until", "2023-11-14T22:13:20Z trailing").is_err());
        assert!(parse_time("--until", "2023-11-14 22:13:20").is_err());
        assert_eq!(
            parse_time("--now", "2023-11-14T17:13:20-0500").unwrap(),
            Timestamp::from_secs(1_700_000_000)
        );
    }
}
