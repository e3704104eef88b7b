//! One record of a jail, from its text to what it led to: the only place that decides.
//!
//! The daemon (journal entries and file lines) and `banhound test-filter` both hand each
//! record to [`Jail::decide`], so test-filter decides exactly as the daemon would. A record
//! is a file line, prepared by its file's [`FileSource`] (date, program, message), or a
//! journal entry, which comes with its message, origin and time; then the filter matches it
//! with the source's multi-line state, and a failure goes to the jail's [`Tracker`].
//!
//! The rules for time, one for everybody:
//! - a record counts at its own time; a file line without a recognisable date counts at
//!   `now`, the moment it is read (the daemon's wall clock; test-filter's `--now`);
//! - a file line more than findtime older than the newest line of its file so far is
//!   skipped before the filter sees it ([`Step::TooOld`]). The newest never passes `now`,
//!   so a line dated in the future cannot blind the jail to the lines after it. A file read
//!   from its start begins with `now` as its newest (only the last findtime can count: the
//!   look-back); a file continued after a stored offset begins with none, so the lines
//!   logged while banhound was stopped are judged by their own dates;
//! - `banhound test-filter --jail` reads a file as the daemon reads the lines appended to a
//!   followed file ([`Age::Continued`]), or with `--look-back` as it reads a file it has
//!   no position for, from its start at `--now` ([`Age::LookBack`]); without `--jail` it
//!   tests a filter, not a running jail ([`Age::Any`]: no line is too old);
//! - journal entries are not skipped by age: the journal reader starts where it should
//!   (the committed cursor, or findtime back), and entries replayed from before the cursor
//!   only rebuild windows ([`Mode::Replay`]).

use crate::engine::filter::{Failure, Host, Matcher, Outcome};
use crate::engine::multiline::{Origin, SourceState};
use crate::engine::prepare::{LinePreparer, Prepared};
use crate::engine::time::Timestamp;
use crate::engine::tracker::{Mode, Tracker, Verdict};

/// Which file lines are too old to count (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Age {
    /// A file read from its start, reading starting at this time: only its last findtime
    /// counts (the look-back).
    LookBack(Timestamp),
    /// A file continued after a stored offset: judged by its own dates.
    Continued,
    /// No line is too old (a filter test).
    Any,
}

/// What a jail remembers of one log file: its line preparation (the date detector's
/// state), the newest line's time (for the age rule) and its multi-line state.
#[derive(Debug)]
pub struct FileSource {
    preparer: LinePreparer,
    age: Age,
    newest: Option<Timestamp>,
    multiline: SourceState,
}

impl FileSource {
    pub fn new(preparer: LinePreparer, age: Age) -> FileSource {
        FileSource {
            preparer,
            age,
            newest: match age {
                Age::LookBack(start) => Some(start),
                Age::Continued | Age::Any => None,
            },
            multiline: SourceState::new(),
        }
    }

    /// The line preparation, for what its date detector saw.
    pub fn into_preparer(self) -> LinePreparer {
        self.preparer
    }
}

/// One record and the state of the source it comes from.
pub enum Record<'a> {
    /// A line of a file, as read (its end of line may still be there).
    Line {
        source: &'a mut FileSource,
        line: &'a [u8],
    },
    /// A journal entry: the text the filter sees (MESSAGE, or its syslog rendering), who
    /// logged it and when.
    Entry {
        state: &'a mut SourceState,
        message: &'a [u8],
        origin: Origin<'a>,
        time: Timestamp,
    },
}

/// What one record led to.
#[derive(Debug)]
pub enum Step<'a> {
    /// A syslog line of a program the filter does not read.
    OtherProgram,
    /// Not a syslog line, though the filter reads syslog lines.
    NotSyslog,
    /// More than findtime older than the newest line of its file: not looked at.
    TooOld,
    /// Seen by the filter. `time` is the record's own (`None`: an undated line, counted at
    /// `at`, the time it was judged at).
    Seen {
        time: Option<Timestamp>,
        at: Timestamp,
        seen: Seen<'a>,
    },
}

/// What the filter and the tracker made of a record.
#[derive(Debug)]
pub enum Seen<'a> {
    /// No failregex matched (or the prefregex did not); `message` is what the filter saw.
    Missed { message: &'a [u8] },
    /// A failregex matched through `<F-NOFAIL>`/`<F-MLFGAINED>`, or its session counts it
    /// on another line.
    NoFailure { regex: usize },
    /// A failure that names no address (yet).
    Hostless { regex: usize },
    /// A failregex matched, and so did ignoreregex `ignore`.
    Ignored { regex: usize, ignore: usize },
    /// A failure; `verdict` is the tracker's, `None` for a host name (never resolved, never
    /// banned).
    Failure {
        failure: Failure<'a>,
        verdict: Option<Verdict>,
    },
}

/// A running jail's matcher and tracker, for the records of all its sources.
pub struct Jail<'j, 'f> {
    pub matcher: &'j mut Matcher<'f>,
    pub tracker: &'j mut Tracker,
}

impl Jail<'_, '_> {
    /// Decides one record; `now` is the clock (for undated lines, the year of year-less
    /// dates and the age rule). See the module documentation.
    pub fn decide<'a>(&mut self, record: Record<'a>, mode: Mode, now: Timestamp) -> Step<'a> {
        let (state, message, origin, time, at) = match record {
            Record::Entry {
                state,
                message,
                origin,
                time,
            } => (state, message, origin, Some(time), time),
            Record::Line { source, line } => {
                let FileSource {
                    preparer,
                    age,
                    newest,
                    multiline,
                } = source;
                let (time, message, origin) = match preparer.prepare(line, now) {
                    Prepared::Message {
                        time,
                        message,
                        origin,
                        ..
                    } => (time, message, origin),
                    Prepared::OtherProgram => return Step::OtherProgram,
                    Prepared::NotSyslog => return Step::NotSyslog,
                };
                let at = time.unwrap_or(now);
                let horizon = newest.map(|newest| newest - self.tracker.policy().findtime);
                *newest = Some(newest.map_or(at, |newest| newest.max(at)).min(now));
                if *age != Age::Any && horizon.is_some_and(|horizon| at < horizon) {
                    return Step::TooOld;
                }
                (multiline, message, origin, time, at)
            }
        };
        let seen = match self.matcher.match_record(state, message, origin, at) {
            Outcome::Missed => Seen::Missed { message },
            Outcome::NoFailure { regex } => Seen::NoFailure { regex },
            Outcome::Hostless { regex } => Seen::Hostless { regex },
            Outcome::Ignored { regex, ignore } => Seen::Ignored { regex, ignore },
            Outcome::Failure(failure) => {
                let verdict = match failure.host {
                    Host::Ip(ip) => Some(self.tracker.failure(ip, at, mode)),
                    Host::Net(net) => Some(self.tracker.failure(net, at, mode)),
                    Host::Name(_) => None,
                };
                Seen::Failure { failure, verdict }
            }
        };
        Step::Seen { time, at, seen }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::address::IgnoreList;
    use crate::engine::datetime::{DateDetector, Zone};
    use crate::engine::filter::{Filter, FilterSpec};
    use crate::engine::prepare::LineFormat;
    use crate::engine::time::BanTime;
    use crate::engine::tracker::Policy;
    use std::time::Duration;

    fn parts() -> (Filter, Tracker) {
        let spec = FilterSpec {
            failregex: vec!["FAIL from <HOST>".into()],
            ..FilterSpec::default()
        };
        let tracker = Tracker::new(Policy {
            maxretry: 2,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(3600)),
            escalation: None,
            ipv6_prefix: 64,
            ignore: IgnoreList::default(),
            max_tracked: 100,
        });
        (Filter::compile(&spec).unwrap(), tracker)
    }

    fn source(age: Age) -> FileSource {
        let detector = DateDetector::new(Zone::Utc);
        FileSource::new(LinePreparer::new(detector, LineFormat::Plain, &[]), age)
    }

    /// 2026-03-01T12:00:00Z plus `minutes`.
    fn at(minutes: i64) -> Timestamp {
        Timestamp::from_secs(1_772_366_400 + minutes * 60)
    }

    #[test]
    fn undated_lines_count_now_and_old_lines_are_skipped() {
        let (filter, mut tracker) = parts();
        let mut matcher = filter.matcher();
        let mut jail = Jail {
            matcher: &mut matcher,
            tracker: &mut tracker,
        };
        let now = at(0);
        let mut file = source(Age::LookBack(now));
        let mut line = |jail: &mut Jail<'_, '_>, text: &'static str| match jail.decide(
            Record::Line {
                source: &mut file,
                line: text.as_bytes(),
            },
            Mode::Live,
            now,
        ) {
            Step::Seen { at, seen, .. } => Some((at, matches!(seen, Seen::Failure { .. }))),
            Step::TooOld => None,
            other => panic!("{other:?}"),
        };
        // Older than findtime before now: not looked at.
        assert_eq!(
            line(&mut jail, "2026-03-01T11:00:00Z FAIL from 192.0.2.1"),
            None
        );
        assert_eq!(
            line(&mut jail, "2026-03-01T11:55:00Z FAIL from 192.0.2.1"),
            Some((at(-5), true))
        );
        // Undated: at now, whatever the previous line's date.
        assert_eq!(line(&mut jail, "FAIL from 192.0.2.1"), Some((now, true)));
        assert_eq!(jail.tracker.active_bans().count(), 1);
    }

    #[test]
    fn a_continued_file_is_judged_by_its_own_dates() {
        let (filter, mut tracker) = parts();
        let mut matcher = filter.matcher();
        let mut jail = Jail {
            matcher: &mut matcher,
            tracker: &mut tracker,
        };
        let now = at(0);
        let mut file = source(Age::Continued);
        for text in [
            "2026-03-01T08:00:00Z FAIL from 192.0.2.2",
            "2026-03-01T08:01:00Z FAIL from 192.0.2.2",
        ] {
            let step = jail.decide(
                Record::Line {
                    source: &mut file,
                    line: text.as_bytes(),
                },
                Mode::Live,
                now,
            );
            assert!(matches!(step, Step::Seen { .. }), "{step:?}");
        }
        assert_eq!(jail.tracker.active_bans().count(), 1);
    }

    #[test]
    fn replayed_entries_rebuild_windows_without_banning_and_any_age_counts_old_lines() {
        let (filter, mut tracker) = parts();
        let mut matcher = filter.matcher();
        let mut jail = Jail {
            matcher: &mut matcher,
            tracker: &mut tracker,
        };
        let mut state = SourceState::new();
        let mut entry = |jail: &mut Jail<'_, '_>, minute: i64, mode: Mode| {
            let step = jail.decide(
                Record::Entry {
                    state: &mut state,
                    message: b"FAIL from 192.0.2.3",
                    origin: Origin::default(),
                    time: at(minute),
                },
                mode,
                at(0),
            );
            match step {
                Step::Seen {
                    seen: Seen::Failure { verdict, .. },
                    ..
                } => verdict,
                other => panic!("{other:?}"),
            }
        };
        // Entries are never too old; replayed ones count but never ban (maxretry 2: the
        // replayed window of one failure and the live one ban).
        for minute in [-120, -1] {
            assert!(matches!(
                entry(&mut jail, minute, Mode::Replay),
                Some(Verdict::Counted { .. })
            ));
        }
        assert!(matches!(
            entry(&mut jail, 0, Mode::Live),
            Some(Verdict::Ban(_))
        ));
        let mut file = source(Age::Any);
        for text in [
            "2026-03-01T08:00:00Z FAIL from 192.0.2.4",
            "2026-03-01T08:01:00Z FAIL from 192.0.2.4",
        ] {
            let step = jail.decide(
                Record::Line {
                    source: &mut file,
                    line: text.as_bytes(),
                },
                Mode::Live,
                at(0),
            );
            assert!(matches!(step, Step::Seen { .. }), "{step:?}");
        }
        assert_eq!(jail.tracker.active_bans().count(), 2);
    }
}
