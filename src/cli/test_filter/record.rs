//! The step every record of test-filter passes through, whatever its source: the daemon's
//! decision ([`Jail::decide`]), then the counters of the run and, with --json, one object
//! per matched record on stdout.

use crate::engine::filter::{Host, Matcher};
use crate::engine::jail::{Jail, Record as JailRecord, Seen, Step};
use crate::engine::time::Timestamp;
use crate::engine::tracker::{Mode, Tracker, Verdict};
use ipnet::IpNet;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// Counters of one run. A record is a line of a file or an entry of the journal.
#[derive(Default)]
pub(super) struct Report {
    pub(super) records: u64,
    pub(super) matched: u64,
    /// Matched a failregex through <F-NOFAIL> or <F-MLFGAINED>: not a failure, counted
    /// apart from `matched`.
    pub(super) no_failure: u64,
    /// Matched a failregex, but no address was known for the failure (yet).
    pub(super) hostless: u64,
    pub(super) ignored: u64,
    pub(super) missed: u64,
    pub(super) other_program: u64,
    pub(super) not_syslog: u64,
    pub(super) too_long: u64,
    pub(super) no_date: u64,
    /// The shape of the first line without a recognisable date ([`line_shape`]).
    pub(super) undated_shape: Option<String>,
    /// File lines more than findtime older than the newest line so far (or than --now).
    pub(super) too_old: u64,
    pub(super) no_message: u64,
    /// Searches the backtracking engine gave up on (counted in `missed` when no other
    /// regex matched the line).
    pub(super) backtracking_gave_up: u64,
    pub(super) hostnames: u64,
    pub(super) fail_hits: Vec<u64>,
    pub(super) ignore_hits: BTreeMap<usize, u64>,
    /// Single addresses, and the networks of <SUBNET> failures.
    pub(super) addresses: HashMap<IpNet, u64>,
    pub(super) bans: HashMap<IpNet, (Timestamp, u64)>,
    pub(super) ignored_addresses: u64,
    pub(super) missed_samples: Vec<(u64, String)>,
}

/// One matched record on stdout: `line` for files, `entry` for the journal.
#[derive(Serialize)]
pub(super) struct JsonMatch<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<u64>,
    time: Option<String>,
    host: String,
    regex: usize,
    user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<&'a str, Cow<'a, str>>,
    /// The time of the ban this failure decided (the jail's settings), if it decided one.
    #[serde(skip_serializing_if = "Option::is_none")]
    ban: Option<String>,
}

/// The state every record passes through, whatever its source.
pub(super) struct Run<'f, W: Write> {
    pub(super) report: Report,
    pub(super) matcher: Matcher<'f>,
    pub(super) tracker: Tracker,
    pub(super) out: W,
    pub(super) json: bool,
    pub(super) verbose: bool,
    pub(super) top: usize,
}

/// Which record a match came from: a line number or an entry number (1-based).
#[derive(Clone, Copy)]
pub(super) enum Record {
    Line(u64),
    Entry(u64),
}

impl<W: Write> Run<'_, W> {
    pub(super) fn process(
        &mut self,
        record: Record,
        jail_record: JailRecord<'_>,
        now: Timestamp,
    ) -> anyhow::Result<()> {
        let mut jail = Jail {
            matcher: &mut self.matcher,
            tracker: &mut self.tracker,
        };
        let line = match &jail_record {
            JailRecord::Line { line, .. } => Some(*line),
            JailRecord::Entry { .. } => None,
        };
        let step = jail.decide(jail_record, Mode::Live, now);
        let report = &mut self.report;
        let (time, seen) = match step {
            Step::OtherProgram => {
                report.other_program += 1;
                report.missed += 1;
                return Ok(());
            }
            Step::NotSyslog => {
                report.not_syslog += 1;
                report.missed += 1;
                return Ok(());
            }
            Step::TooOld => {
                report.too_old += 1;
                report.missed += 1;
                return Ok(());
            }
            Step::Seen { time, seen, .. } => (time, seen),
        };
        if time.is_none() {
            report.no_date += 1;
            if report.undated_shape.is_none() {
                report.undated_shape = line.map(line_shape);
            }
        }
        match seen {
            Seen::Missed { message } => {
                report.missed += 1;
                if self.verbose && report.missed_samples.len() < self.top {
                    let (Record::Line(n) | Record::Entry(n)) = record;
                    report
                        .missed_samples
                        .push((n, String::from_utf8_lossy(message).into_owned()));
                }
            }
            Seen::NoFailure { regex } => {
                report.no_failure += 1;
                report.fail_hits[regex] += 1;
            }
            Seen::Hostless { regex } => {
                report.hostless += 1;
                report.fail_hits[regex] += 1;
            }
            Seen::Ignored { ignore, .. } => {
                report.ignored += 1;
                *report.ignore_hits.entry(ignore).or_default() += 1;
            }
            Seen::Failure { failure, verdict } => {
                report.matched += 1;
                report.fail_hits[failure.regex] += 1;
                match failure.host {
                    Host::Ip(ip) => *report.addresses.entry(IpNet::from(ip)).or_default() += 1,
                    Host::Net(net) => *report.addresses.entry(net).or_default() += 1,
                    Host::Name(_) => report.hostnames += 1,
                }
                let mut ban = None;
                match verdict {
                    Some(Verdict::Ban(d)) => {
                        let e = report.bans.entry(d.target).or_insert((d.at, 0));
                        e.1 += 1;
                        ban = Some(d.at.to_rfc3339());
                    }
                    Some(Verdict::Ignored(_)) => report.ignored_addresses += 1,
                    Some(Verdict::AlreadyBanned | Verdict::Counted { .. }) | None => {}
                }
                if self.json {
                    let (line, entry) = match record {
                        Record::Line(n) => (Some(n), None),
                        Record::Entry(n) => (None, Some(n)),
                    };
                    let json = JsonMatch {
                        line,
                        entry,
                        time: time.map(Timestamp::to_rfc3339),
                        host: failure.host.to_string(),
                        regex: failure.regex,
                        user: failure.user.map(String::from_utf8_lossy),
                        fields: self
                            .matcher
                            .fields(failure.regex, failure.text)
                            .map(|(k, v)| (k, String::from_utf8_lossy(v)))
                            .collect(),
                        ban,
                    };
                    serde_json::to_writer(&mut self.out, &json)?;
                    self.out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }
}

/// How a line begins, with its digits as `9`, so that a date format can be recognised
/// without copying the line's content (addresses, names) into the report.
pub(super) fn line_shape(line: &[u8]) -> String {
    const SHAPE_LENGTH: usize = 40;
    line.trim_ascii()
        .iter()
        .take(SHAPE_LENGTH)
        .map(|&b| match b {
            b'0'..=b'9' => '9',
            b' '..=b'~' if b != b'`' => char::from(b),
            _ => '?',
        })
        .collect()
}
