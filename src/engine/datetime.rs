//! Finding and reading the timestamp of a log-file line.
//!
//! Journal entries carry their own timestamp, but plain log files only have the text of the
//! line, and the time a failure happened (not the time we read it) decides whether it is
//! still inside a jail's `findtime`. So every file line goes through [`DateDetector`] first.
//!
//! It runs on every line, so it is built for the common case: one file uses one format, the
//! detector tries the template that matched last before the others, each template is a
//! hand-written byte parser (no regex, no allocation), converting a local wall-clock time
//! to UTC usually hits a cached offset instead of asking the time zone database, and a syslog
//! date that repeats the previous line's bytes is not parsed again at all. Log text is
//! attacker-influenced, so every parser is bounds-checked and returns `None` on anything odd
//! rather than guessing.
//!
//! Templates and the names reported in statistics:
//!
//! | name          | example                                              | zone          |
//! |---------------|------------------------------------------------------|---------------|
//! | `iso8601`     | `2026-11-22T02:26:07.123+01:00`, `2026-11-22 02:26:07`, `2026.11.22  2:26:07 +08:00` | offset or local |
//! | `syslog`      | `Nov 22 02:26:07`, `Nov  2 02:26:07` (no year)       | local         |
//! | `asctime`     | `Thu Jul 11 01:21:41.5 2013`, `Oct 27 2015 12:35:40`, `PDT Apr 16 21:05:29` | zone named, or local |
//! | `rfc5424`     | `<34>1 2026-11-22T02:26:07.003Z host app - - - msg`  | offset or local |
//! | `nginx-error` | `2015/10/01 12:46:34 [error] ...`                    | local         |
//! | `day-first`   | `22-Jan-2013 22:28:21 +0200`, `11-06-2013 02:09:40`  | offset or local |
//! | `mysql`       | `130324  0:04:00`                                    | local         |
//! | `tai64n`      | `@400000004c91b044077a9e94`                          | UTC           |
//! | `epoch`       | `1443703594` or `1443703594.123456` at line start    | UTC           |
//! | `clf`         | `... [01/Oct/2015:12:46:34 -0400] ...` anywhere      | offset or local |
//! | `audit`       | `type=USER_AUTH msg=audit(1443703594.123:45): ...`   | UTC           |
//!
//! These are the formats fail2ban's own default detection reads. All templates except
//! `clf` and `audit` are anchored at the start of the line (after optional blanks, and also
//! inside a `[` there: `[2012-02-13 17:21:54] NOTICE`, Apache's `[Thu Jul 11 01:21:41 2013]
//! [error]`; the span is then the date without its brackets, as fail2ban cuts it, so that
//! its regexes see `[] [error]`). `clf` and `audit` are searched for in the first
//! [`SEARCH_WINDOW`] bytes only, so
//! a megabyte-long line costs no more than a short one. The reported span covers the date
//! text itself: without the brackets of `clf`, the `<PRI>VERSION` of `rfc5424` or the
//! `audit(` of `audit`. A seconds field of 60 (a leap second, allowed by RFC 3339) is
//! accepted and counts as the first second of the next minute.

use std::ops::Range;

use jiff::tz::TimeZone;
use memchr::memmem::Finder;

pub use super::date_templates::SEARCH_WINDOW;
use super::date_templates::{
    days_in_month, find_audit, find_clf, parse_asctime, parse_clf, parse_day_first, parse_epoch,
    parse_iso8601, parse_mysql, parse_nginx_error, parse_offset, parse_rfc5424, parse_syslog,
    parse_tai64n, skip_blanks, Dated, Found, Parsed, SyslogDate, WallClock, AUDIT_MARKER,
    CLF_DATE_END,
};
use super::datepattern::{Alternative, DateFields, DatePattern};
use super::time::{civil_from_days, days_from_civil, Timestamp};

/// How far in the future a year-less syslog date may be before it is taken to be from last
/// year: a little clock skew between hosts must not throw a fresh line back a whole year.
const SYSLOG_FUTURE_TOLERANCE_SECS: i64 = 2 * 86_400;

/// One supported date format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    Iso8601,
    Syslog,
    Asctime,
    Rfc5424,
    NginxError,
    DayFirst,
    Mysql,
    Tai64n,
    Epoch,
    Clf,
    Audit,
    /// A filter's own `datepattern` ([`DateDetector::with_pattern`]).
    Custom,
}

impl Template {
    /// Every template, in the order they are tried after the last one that matched. The
    /// anchored ones come first: they fail on the first few bytes, the unanchored ones scan.
    pub const ALL: [Template; 11] = [
        Template::Iso8601,
        Template::Syslog,
        Template::Asctime,
        Template::Rfc5424,
        Template::NginxError,
        Template::DayFirst,
        Template::Mysql,
        Template::Tai64n,
        Template::Epoch,
        Template::Clf,
        Template::Audit,
    ];

    /// The stable short name shown in statistics and reports.
    pub const fn name(self) -> &'static str {
        match self {
            Template::Iso8601 => "iso8601",
            Template::Syslog => "syslog",
            Template::Asctime => "asctime",
            Template::DayFirst => "day-first",
            Template::Mysql => "mysql",
            Template::Tai64n => "tai64n",
            Template::Rfc5424 => "rfc5424",
            Template::NginxError => "nginx-error",
            Template::Epoch => "epoch",
            Template::Clf => "clf",
            Template::Audit => "audit",
            Template::Custom => "datepattern",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// A date found in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectedDate {
    pub timestamp: Timestamp,
    /// Byte range of the date text in the line.
    pub span: Range<usize>,
    pub template: Template,
}

/// Why a time zone setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("empty time zone")]
    Empty,
    #[error("invalid UTC offset {0:?}: expected +HH:MM, +HHMM or +HH, at most 23:59")]
    Offset(String),
    #[error("unknown time zone {name:?}: {reason}")]
    Unknown { name: String, reason: String },
    #[error("cannot determine the system time zone: {0}")]
    System(String),
}

/// How wall-clock times without an explicit offset are turned into instants.
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    Utc,
    /// A constant offset, in seconds east of UTC.
    Fixed(i32),
    /// A zone with rules (DST), from the system time zone database.
    Named(TimeZone),
}

impl Zone {
    /// Accepts `UTC`, `local` (the system zone), `+02:00`, `-0400`, `+05` and IANA names
    /// such as `Europe/Berlin`.
    ///
    /// `local` and IANA names read the system time zone database, once, here; detecting
    /// dates afterwards does no I/O.
    pub fn parse(input: &str) -> Result<Zone, ZoneError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ZoneError::Empty);
        }
        if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("gmt") || s == "Z" {
            return Ok(Zone::Utc);
        }
        if s.eq_ignore_ascii_case("local") || s.eq_ignore_ascii_case("system") {
            return TimeZone::try_system()
                .map(Zone::Named)
                .map_err(|e| ZoneError::System(e.to_string()));
        }
        if s.starts_with(['+', '-']) {
            let bytes = s.as_bytes();
            return match parse_offset(bytes, 0) {
                Some((secs, end)) if end == bytes.len() => Ok(if secs == 0 {
                    Zone::Utc
                } else {
                    Zone::Fixed(secs)
                }),
                _ => Err(ZoneError::Offset(input.to_string())),
            };
        }
        TimeZone::get(s)
            .map(Zone::Named)
            .map_err(|e| ZoneError::Unknown {
                name: s.to_string(),
                reason: e.to_string(),
            })
    }
}

/// Finds and parses line dates; create one per log file and feed it the file's lines.
#[derive(Debug)]
pub struct DateDetector {
    clock: LocalClock,
    last: Template,
    hits: [u64; Template::ALL.len()],
    /// Built once: building a substring searcher costs more than running it on a line.
    audit_marker: Finder<'static>,
    /// A filter's `datepattern`: when set, it alone says where the date is.
    pattern: Option<DatePattern>,
    pattern_hits: u64,
    clf_date_end: Finder<'static>,
    /// The last date found, for a pattern that says a line has none of its own.
    previous: Option<Timestamp>,
    /// The last syslog date read, by its text, for the next line to reuse.
    repeated: Option<RepeatedDate>,
}

/// A syslog date's text and what it was read as. The lines of a busy log share their
/// second, and a syslog date is a pure function of its bytes and of `now` (the year is
/// inferred from it): a line that begins with the same bytes, read with the same `now`,
/// has the same instant, so its date is compared instead of parsed and converted.
#[derive(Debug)]
struct RepeatedDate {
    /// Where the date's text begins: the first non-blank byte of the line (a `[` included,
    /// when the date is bracketed). Blanks before it must match in number as well.
    start: usize,
    /// The line's bytes from `start` to the end of the date, then the space after it: a
    /// space there ends the date in every case (no fraction, no further digit follows), so
    /// equal bytes up to and including it mean the syslog parser reads the same date.
    text: [u8; REPEATED_DATE_MAX],
    len: usize,
    span: Range<usize>,
    timestamp: Timestamp,
    now: Timestamp,
}

/// Long enough for `[Mon dd HH:MM:SS.ffffff ` and any fraction up to nanoseconds; a longer
/// date is parsed every time.
const REPEATED_DATE_MAX: usize = 32;

impl RepeatedDate {
    /// The date of a line the syslog template read, if it can be reused.
    fn new(
        line: &[u8],
        start: usize,
        found: &DetectedDate,
        now: Timestamp,
    ) -> Option<RepeatedDate> {
        let bytes = line.get(start..=found.span.end)?;
        if bytes.last() != Some(&b' ') || bytes.len() > REPEATED_DATE_MAX {
            return None;
        }
        let mut text = [0; REPEATED_DATE_MAX];
        text[..bytes.len()].copy_from_slice(bytes);
        Some(RepeatedDate {
            start,
            text,
            len: bytes.len(),
            span: found.span.clone(),
            timestamp: found.timestamp,
            now,
        })
    }

    fn reuse(&self, line: &[u8], start: usize, now: Timestamp) -> Option<DetectedDate> {
        let same = start == self.start
            && now == self.now
            && line.get(start..start + self.len) == Some(&self.text[..self.len]);
        same.then(|| DetectedDate {
            timestamp: self.timestamp,
            span: self.span.clone(),
            template: Template::Syslog,
        })
    }
}

impl DateDetector {
    pub fn new(zone: Zone) -> DateDetector {
        DateDetector {
            clock: LocalClock::new(zone),
            last: Template::ALL[0],
            hits: [0; Template::ALL.len()],
            audit_marker: Finder::new(AUDIT_MARKER),
            pattern: None,
            pattern_hits: 0,
            clf_date_end: Finder::new(CLF_DATE_END),
            previous: None,
            repeated: None,
        }
    }

    /// Reads dates with `pattern` (a fail2ban filter's `datepattern`) instead of the
    /// templates; `None` keeps the templates.
    pub fn with_pattern(mut self, pattern: Option<DatePattern>) -> DateDetector {
        self.pattern = pattern;
        self
    }

    /// The date of `line`, or `None` when no template matches.
    ///
    /// `now` is only used to infer the year of `syslog` dates: the year of `now` in the
    /// configured zone, or the year before if that would put the line more than two days
    /// after `now` (a December line read in January).
    pub fn detect(&mut self, line: &[u8], now: Timestamp) -> Option<DetectedDate> {
        let found = match self.pattern.take() {
            Some(pattern) => {
                let found = self.detect_with_pattern(&pattern, line, now);
                self.pattern = Some(pattern);
                found
            }
            None => self.detect_standard(line, now),
        };
        if let Some(found) = &found {
            self.previous = Some(found.timestamp);
        }
        found
    }

    fn detect_standard(&mut self, line: &[u8], now: Timestamp) -> Option<DetectedDate> {
        let start = skip_blanks(line);
        // Only set while the syslog template is the last one that matched, so it is the
        // template that would be tried first and give this very date.
        if let Some(found) = self
            .repeated
            .as_ref()
            .and_then(|r| r.reuse(line, start, now))
        {
            self.hits[Template::Syslog.index()] += 1;
            return Some(found);
        }
        let last = self.last;
        let found = self.try_template(last, line, start, now).or_else(|| {
            Template::ALL
                .into_iter()
                .filter(|&template| template != last)
                .find_map(|template| {
                    let found = self.try_template(template, line, start, now)?;
                    self.last = template;
                    Some(found)
                })
        })?;
        self.hits[found.template.index()] += 1;
        self.repeated = match found.template {
            Template::Syslog => RepeatedDate::new(line, start, &found, now),
            _ => None,
        };
        Some(found)
    }

    /// How many lines each template matched, by name, in [`Template::ALL`] order, then
    /// the `datepattern` if there is one.
    pub fn hit_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Template::ALL
            .iter()
            .map(|t| (t.name(), self.hits[t.index()]))
            .chain(
                self.pattern
                    .as_ref()
                    .map(|_| (Template::Custom.name(), self.pattern_hits)),
            )
    }

    /// The date as `pattern` finds it: its alternatives in order, the first that finds
    /// one wins.
    fn detect_with_pattern(
        &mut self,
        pattern: &DatePattern,
        line: &[u8],
        now: Timestamp,
    ) -> Option<DetectedDate> {
        for alternative in &pattern.alternatives {
            let found = match alternative {
                Alternative::NoDate => return None,
                Alternative::Standard {
                    prefix: None,
                    anchored: false,
                } => self.detect_standard(line, now),
                Alternative::Standard {
                    prefix: None,
                    anchored: true,
                } => self.detect_at(line, skip_blanks(line), now),
                Alternative::Standard {
                    prefix: Some(prefix),
                    ..
                } => {
                    let window = &line[..line.len().min(SEARCH_WINDOW)];
                    prefix.regex.captures(window).and_then(|caps| {
                        let m = caps.get(0)?;
                        let mut found = self.detect_at(line, m.end(), now)?;
                        if prefix.cut {
                            found.span.start = m.start();
                        }
                        // A group around the date is cut whole, as fail2ban cuts it.
                        if let Some(g) = prefix.group.and_then(|g| caps.get(g)) {
                            found.span.start = g.start();
                        }
                        if let Some(rest) = &prefix.group_rest {
                            found.span.end += rest.find(&line[found.span.end..])?.end();
                        }
                        Some(found)
                    })
                }
                Alternative::Format(format) => format
                    .fields(&line[..line.len().min(SEARCH_WINDOW)])
                    .and_then(|fields| self.date_of_fields(fields, now)),
            };
            if let Some(mut found) = found {
                self.pattern_hits += 1;
                found.template = Template::Custom;
                return Some(found);
            }
        }
        None
    }

    /// A standard date starting exactly at `start` (`{DATE}` in a pattern).
    fn detect_at(&mut self, line: &[u8], start: usize, now: Timestamp) -> Option<DetectedDate> {
        for template in [
            Template::Iso8601,
            Template::Syslog,
            Template::Asctime,
            Template::Rfc5424,
            Template::NginxError,
            Template::DayFirst,
            Template::Mysql,
            Template::Tai64n,
            Template::Epoch,
        ] {
            if let Some(found) = self.try_template(template, line, start, now) {
                return Some(found);
            }
        }
        let found = parse_clf(line, start)?;
        self.convert(found, Template::Clf)
    }

    /// A date from a pattern's fields: what it lacks (the year, or the whole date of a
    /// time-only pattern) is taken from `now` in the configured zone, as for syslog dates.
    ///
    /// A pattern that matched an empty date (fail2ban's `^WARNING:()**`) says the line has
    /// none of its own and belongs with the line before (the second line of a Java log
    /// record): it gets that line's date, or none (so it counts when it is read) if no line
    /// had one. Reading such a line as midnight today would put it outside findtime.
    fn date_of_fields(&mut self, f: DateFields, now: Timestamp) -> Option<DetectedDate> {
        if f.span.is_empty() && f.epoch.is_none() {
            return Some(DetectedDate {
                timestamp: self.previous?,
                span: f.span,
                template: Template::Custom,
            });
        }
        if let Some((secs, micros)) = f.epoch {
            return Some(DetectedDate {
                timestamp: Timestamp::from_micros(
                    secs.checked_mul(1_000_000)?
                        .checked_add(i64::from(micros))?,
                ),
                span: f.span,
                template: Template::Custom,
            });
        }
        if f.hour > 23 || f.minute > 59 || f.second > 60 {
            return None;
        }
        let sod = i64::from(f.hour * 3600 + f.minute * 60 + f.second);
        let (month, day) = match (f.month, f.day) {
            (Some(m), Some(d)) => (m, d),
            _ => {
                // A time without a date: today in the configured zone, or yesterday if
                // that time has not come yet today.
                let local = now.as_secs() + self.clock.offset_at(now.as_secs())?;
                let mut days = local.div_euclid(86_400);
                if sod > local.rem_euclid(86_400) {
                    days -= 1;
                }
                let (year, m, d) = civil_from_days(days);
                let wall = WallClock {
                    year,
                    month: m,
                    day: d,
                    hour: f.hour,
                    minute: f.minute,
                    second: f.second,
                    micros: f.micros,
                    offset: f.offset,
                };
                return self.convert(
                    Found {
                        time: Parsed::Wall(wall),
                        span: f.span,
                    },
                    Template::Custom,
                );
            }
        };
        let Some(year) = f.year else {
            let date = SyslogDate {
                month,
                day,
                sod,
                micros: f.micros,
                offset: f.offset,
            };
            let mut found = self.year_less(date, f.span, now)?;
            found.template = Template::Custom;
            return Some(found);
        };
        let wall = WallClock {
            year,
            month,
            day,
            hour: f.hour,
            minute: f.minute,
            second: f.second,
            micros: f.micros,
            offset: f.offset,
        };
        self.convert(
            Found {
                time: Parsed::Wall(wall),
                span: f.span,
            },
            Template::Custom,
        )
    }

    fn try_template(
        &mut self,
        template: Template,
        line: &[u8],
        start: usize,
        now: Timestamp,
    ) -> Option<DetectedDate> {
        let parsed = match template {
            Template::Clf => find_clf(&self.clf_date_end, line),
            Template::Audit => find_audit(&self.audit_marker, line),
            Template::Custom => None,
            anchored => {
                // At the start, or inside a bracket there.
                let bracketed = line.get(start) == Some(&b'[');
                let dated = parse_anchored(anchored, line, start).or_else(|| {
                    bracketed
                        .then(|| parse_anchored(anchored, line, start + 1))
                        .flatten()
                })?;
                match dated {
                    Dated::Full(found) => Some(found),
                    Dated::YearLess(date, span) => {
                        let mut found = self.year_less(date, span, now)?;
                        found.template = template;
                        return Some(found);
                    }
                }
            }
        }?;
        self.convert(parsed, template)
    }

    /// A parsed date to an instant: wall-clock times through the offset they carry or the
    /// configured zone.
    fn convert(&mut self, parsed: Found, template: Template) -> Option<DetectedDate> {
        let micros = match parsed.time {
            Parsed::Utc { micros } => micros,
            Parsed::Wall(wall) => {
                let local = wall.local_secs()?;
                let utc = match wall.offset {
                    Some(offset) => local - i64::from(offset),
                    None => self.clock.utc_of_local(local)?,
                };
                utc.checked_mul(1_000_000)?
                    .checked_add(i64::from(wall.micros))?
            }
        };
        Some(DetectedDate {
            timestamp: Timestamp::from_micros(micros),
            span: parsed.span,
            template,
        })
    }

    /// A date without a year: this year in the configured zone, or last year if that would
    /// put it more than two days after `now`.
    fn year_less(
        &mut self,
        date: SyslogDate,
        span: Range<usize>,
        now: Timestamp,
    ) -> Option<DetectedDate> {
        let now_micros = now.as_micros();
        let year = self.clock.local_year(now.as_secs())?;
        for candidate in [year, year - 1] {
            if date.day > days_in_month(candidate, date.month) {
                continue;
            }
            let local = days_from_civil(candidate, date.month, date.day) * 86_400 + date.sod;
            let utc = match date.offset {
                Some(offset) => local - i64::from(offset),
                None => self.clock.utc_of_local(local)?,
            };
            let micros = utc
                .checked_mul(1_000_000)?
                .checked_add(i64::from(date.micros))?;
            if candidate == year
                && micros > now_micros.saturating_add(SYSLOG_FUTURE_TOLERANCE_SECS * 1_000_000)
            {
                continue;
            }
            return Some(DetectedDate {
                timestamp: Timestamp::from_micros(micros),
                span,
                template: Template::Syslog,
            });
        }
        None
    }
}

/// An anchored template's parser at `start`.
fn parse_anchored(template: Template, line: &[u8], start: usize) -> Option<Dated> {
    let full = match template {
        Template::Iso8601 => parse_iso8601(line, start),
        Template::Syslog => {
            let (date, span) = parse_syslog(line, start)?;
            return Some(Dated::YearLess(date, span));
        }
        Template::Asctime => return parse_asctime(line, start),
        Template::Rfc5424 => parse_rfc5424(line, start),
        Template::NginxError => parse_nginx_error(line, start),
        Template::DayFirst => parse_day_first(line, start),
        Template::Mysql => parse_mysql(line, start),
        Template::Tai64n => parse_tai64n(line, start),
        Template::Epoch => parse_epoch(line, start),
        Template::Clf | Template::Audit | Template::Custom => None,
    }?;
    Some(Dated::Full(full))
}

/// Local wall-clock time to UTC, with the offsets of the last two local hours cached: log
/// lines come in time order, so nearly every line falls into the same hour as the one before.
/// Two entries, because syslog year inference converts a date in two candidate years, and
/// a file may interleave two hours around a rotation.
#[derive(Debug)]
struct LocalClock {
    zone: Zone,
    /// (local hour = local seconds / 3600, its offset); `i64::MIN` marks an empty entry.
    cached: [(i64, i64); 2],
    /// The entry the next miss replaces.
    replace_next: usize,
    /// Instants `[start, end)` in which the local year is `year`, for syslog year inference.
    year_start: i64,
    year_end: i64,
    year: i64,
}

impl LocalClock {
    fn new(zone: Zone) -> LocalClock {
        LocalClock {
            zone,
            cached: [(i64::MIN, 0); 2],
            replace_next: 0,
            year_start: 0,
            year_end: 0,
            year: 0,
        }
    }

    /// `local` is the wall-clock time counted as if it were UTC seconds since the epoch.
    /// Nonexistent times (DST gap) and repeated ones (DST fold) are resolved like jiff's
    /// "compatible" strategy: both use the offset in force before the transition.
    fn utc_of_local(&mut self, local: i64) -> Option<i64> {
        let tz = match &self.zone {
            Zone::Utc => return Some(local),
            Zone::Fixed(offset) => return Some(local - i64::from(*offset)),
            Zone::Named(tz) => tz,
        };
        let hour = local.div_euclid(3600);
        for (cached_hour, offset) in self.cached {
            if cached_hour == hour {
                return Some(local - offset);
            }
        }
        // Under "compatible" resolution the offset, as a function of local time, changes in
        // a single step per transition; equal offsets at both ends of the hour mean no step
        // inside it (zones do not have two transitions within one hour).
        let hour_start = hour * 3600;
        let first = named_offset_for_local(tz, hour_start)?;
        let last = named_offset_for_local(tz, hour_start + 3599)?;
        if first != last {
            return Some(local - named_offset_for_local(tz, local)?);
        }
        self.cached[self.replace_next] = (hour, first);
        self.replace_next ^= 1;
        Some(local - first)
    }

    /// The offset (local minus UTC, seconds) in force at the instant `utc`.
    fn offset_at(&self, utc: i64) -> Option<i64> {
        Some(match &self.zone {
            Zone::Utc => 0,
            Zone::Fixed(offset) => i64::from(*offset),
            Zone::Named(tz) => {
                let instant = jiff::Timestamp::from_second(utc).ok()?;
                i64::from(tz.to_offset(instant).seconds())
            }
        })
    }

    /// The calendar year of the instant `utc` (seconds) in this zone.
    fn local_year(&mut self, utc: i64) -> Option<i64> {
        if (self.year_start..self.year_end).contains(&utc) {
            return Some(self.year);
        }
        let offset = self.offset_at(utc)?;
        let (year, _, _) = civil_from_days((utc + offset).div_euclid(86_400));
        let start = self.utc_of_local(days_from_civil(year, 1, 1) * 86_400)?;
        let end = self.utc_of_local(days_from_civil(year + 1, 1, 1) * 86_400)?;
        self.year_start = start;
        self.year_end = end;
        self.year = year;
        Some(year)
    }
}

/// Offset (local minus UTC, seconds) that applies to the wall-clock time `local` in `tz`.
fn named_offset_for_local(tz: &TimeZone, local: i64) -> Option<i64> {
    let days = local.div_euclid(86_400);
    let sod = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let civil = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        month as i8,
        day as i8,
        (sod / 3600) as i8,
        (sod / 60 % 60) as i8,
        (sod % 60) as i8,
        0,
    )
    .ok()?;
    let utc = tz
        .to_ambiguous_timestamp(civil)
        .compatible()
        .ok()?
        .as_second();
    Some(local - utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds of a UTC civil time, independently of the detector's code path.
    fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> Timestamp {
        Timestamp::from_secs(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
    }

    fn now() -> Timestamp {
        utc(2026, 11, 22, 12, 0, 0)
    }

    fn detect_with(zone: Zone, line: &str) -> Option<DetectedDate> {
        DateDetector::new(zone).detect(line.as_bytes(), now())
    }

    fn detect(line: &str) -> Option<DetectedDate> {
        detect_with(Zone::Utc, line)
    }

    fn micros(ts: Timestamp, us: i64) -> Timestamp {
        Timestamp::from_micros(ts.as_micros() + us)
    }

    #[test]
    fn syslog_dates() {
        let line = "Nov 22 02:26:07 host sshd[1]: Failed password";
        let d = detect(line).unwrap();
        assert_eq!(d.template, Template::Syslog);
        assert_eq!(d.timestamp, utc(2026, 11, 22, 2, 26, 7));
        assert_eq!(&line[d.span.clone()], "Nov 22 02:26:07");

        let d = detect("Nov  2 02:26:07 host x: y").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 2, 2, 26, 7));
        assert_eq!(d.span, 0..15);
        let d = detect("Nov 2 02:26:07 host x: y").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 2, 2, 26, 7));
        assert_eq!(d.span, 0..14);
        let d = detect("  Nov 22 02:26:07.250 host x: y").unwrap();
        assert_eq!(d.timestamp, micros(utc(2026, 11, 22, 2, 26, 7), 250_000));
        assert_eq!(d.span, 2..21);
    }

    #[test]
    fn syslog_year_inference() {
        // A line from later in the year than `now` is from last year...
        let d = detect("Dec 24 10:00:00 h x: y").unwrap();
        assert_eq!(d.timestamp, utc(2025, 12, 24, 10, 0, 0));
        // ...unless it is within the two days of tolerated clock skew.
        let d = detect("Nov 24 10:00:00 h x: y").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 24, 10, 0, 0));
        let d = detect("Nov 24 12:00:01 h x: y").unwrap();
        assert_eq!(d.timestamp, utc(2025, 11, 24, 12, 0, 1));

        // Across New Year: read ten minutes into 2027, the line is from 2026.
        let new_year = utc(2027, 1, 1, 0, 10, 0);
        let mut detector = DateDetector::new(Zone::Utc);
        let d = detector
            .detect(b"Dec 31 23:59:00 h x: y", new_year)
            .unwrap();
        assert_eq!(d.timestamp, utc(2026, 12, 31, 23, 59, 0));
        let d = detector
            .detect(b"Jan  1 00:09:00 h x: y", new_year)
            .unwrap();
        assert_eq!(d.timestamp, utc(2027, 1, 1, 0, 9, 0));

        // The year boundary is the local one: at 23:30 UTC on Dec 31 it is already 2027 in
        // Berlin, and a "Jan 1" line is from this (local) year, not 2026-01-01.
        let zone = Zone::parse("Europe/Berlin").unwrap();
        let mut detector = DateDetector::new(zone);
        let d = detector
            .detect(b"Jan  1 00:20:00 h x: y", utc(2026, 12, 31, 23, 30, 0))
            .unwrap();
        assert_eq!(d.timestamp, utc(2026, 12, 31, 23, 20, 0));

        // Feb 29 only exists in leap years: in 2025 it is from 2024.
        let d = DateDetector::new(Zone::Utc)
            .detect(b"Feb 29 10:00:00 h x: y", utc(2025, 3, 5, 0, 0, 0))
            .unwrap();
        assert_eq!(d.timestamp, utc(2024, 2, 29, 10, 0, 0));
        assert_eq!(detect("Feb 29 10:00:00 h x: y"), None);
    }

    #[test]
    fn iso8601_dates() {
        let d = detect("2026-11-22T02:26:07Z host sshd[1]: x").unwrap();
        assert_eq!(d.template, Template::Iso8601);
        assert_eq!(d.timestamp, utc(2026, 11, 22, 2, 26, 7));
        assert_eq!(d.span, 0..20);

        let line = "2026-11-22T02:26:07.123456+01:00 host sshd[1]: x";
        let d = detect(line).unwrap();
        assert_eq!(d.timestamp, micros(utc(2026, 11, 22, 1, 26, 7), 123_456));
        assert_eq!(&line[d.span], "2026-11-22T02:26:07.123456+01:00");

        let d = detect("2026-11-22 02:26:07 host").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 22, 2, 26, 7));
        let d = detect("2026-11-22T02:26:07,123 host").unwrap();
        assert_eq!(d.timestamp, micros(utc(2026, 11, 22, 2, 26, 7), 123_000));
        let d = detect("2026-11-22T02:26:07-0430 x").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 22, 6, 56, 7));
        let d = detect("2026-11-22T02:26:07+05 x").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 21, 21, 26, 7));
        // Nanoseconds are truncated to microseconds.
        let d = detect("2026-11-22T02:26:07.123456789Z").unwrap();
        assert_eq!(d.timestamp, micros(utc(2026, 11, 22, 2, 26, 7), 123_456));
        // No offset: the configured zone.
        let d = detect_with(Zone::Fixed(3600), "2026-11-22T02:26:07 h").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 22, 1, 26, 7));
        // An explicit offset wins over the zone.
        let d = detect_with(Zone::Fixed(3600), "2026-11-22T02:26:07Z h").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 22, 2, 26, 7));
    }

    #[test]
    fn rfc5424_dates() {
        let line = "<34>1 2026-11-22T02:26:07.003Z host app 123 - - msg";
        let d = detect(line).unwrap();
        assert_eq!(d.template, Template::Rfc5424);
        assert_eq!(d.timestamp, micros(utc(2026, 11, 22, 2, 26, 7), 3_000));
        assert_eq!(&line[d.span], "2026-11-22T02:26:07.003Z");
        let d = detect("<165>1 2003-10-11T22:14:15.003000-07:00 h a - - - m").unwrap();
        assert_eq!(d.timestamp, micros(utc(2003, 10, 12, 5, 14, 15), 3_000));
        // NILVALUE timestamp, PRI out of range, version 0, space instead of `T`.
        assert_eq!(detect("<34>1 - host app - - - msg"), None);
        assert_eq!(detect("<192>1 2026-11-22T02:26:07Z h a - - - m"), None);
        assert_eq!(detect("<34>0 2026-11-22T02:26:07Z h a - - - m"), None);
        assert_eq!(detect("<34>1 2026-11-22 02:26:07Z h a - - - m"), None);
    }

    #[test]
    fn clf_dates() {
        let line = r#"203.0.113.9 - - [01/Oct/2015:12:46:34 -0400] "GET / HTTP/1.1" 404 1"#;
        let d = detect(line).unwrap();
        assert_eq!(d.template, Template::Clf);
        assert_eq!(d.timestamp, utc(2015, 10, 1, 16, 46, 34));
        assert_eq!(&line[d.span], "01/Oct/2015:12:46:34 -0400");
        // Earlier brackets that are not dates are skipped.
        let d = detect("[x] [client] [01/Oct/2015:12:46:34 +0000]").unwrap();
        assert_eq!(d.timestamp, utc(2015, 10, 1, 12, 46, 34));
        // Without an offset: local time.
        let d = detect_with(Zone::Fixed(-3600), "a [01/Oct/2015:12:46:34] b").unwrap();
        assert_eq!(d.timestamp, utc(2015, 10, 1, 13, 46, 34));
        // Beyond the search window it is not found.
        let far = format!("{} [01/Oct/2015:12:46:34 +0000]", "x".repeat(SEARCH_WINDOW));
        assert_eq!(detect(&far), None);
    }

    #[test]
    fn clf_date_is_the_one_before_the_request_not_one_in_the_user_name() {
        // The user name (nginx's $remote_user, the client's) comes before the date.
        let forged = r#"198.51.100.4 - [01/Jan/2020:00:00:00 +0000] [01/Oct/2015:12:46:34 +0000] "GET / HTTP/1.1" 404 1 "-" "[02/Jan/2020:00:00:00 +0000] \"""#;
        let d = detect(forged).unwrap();
        assert_eq!(d.timestamp, utc(2015, 10, 1, 12, 46, 34));
        assert_eq!(&forged[d.span], "01/Oct/2015:12:46:34 +0000");
        // Padding the user name past the search window does not bring the forged one back.
        let padded = format!(
            r#"198.51.100.4 - [01/Jan/2020:00:00:00 +0000]{} [01/Oct/2015:12:46:34] "GET / HTTP/1.1" 404 1"#,
            "x".repeat(4 * SEARCH_WINDOW)
        );
        let d = detect_with(Zone::Fixed(0), &padded).unwrap();
        assert_eq!(d.timestamp, utc(2015, 10, 1, 12, 46, 34));
        // A `] "` that does not close a date: the first date near the start, as before.
        let d = detect(r#"a [01/Oct/2015:12:46:34 +0000] [x] "GET /""#).unwrap();
        assert_eq!(d.timestamp, utc(2015, 10, 1, 12, 46, 34));
    }

    #[test]
    fn nginx_error_dates() {
        let line = "2015/10/01 12:46:34 [error] 1234#0: *5 open() failed";
        let d = detect_with(Zone::Fixed(2 * 3600), line).unwrap();
        assert_eq!(d.template, Template::NginxError);
        assert_eq!(d.timestamp, utc(2015, 10, 1, 10, 46, 34));
        assert_eq!(&line[d.span], "2015/10/01 12:46:34");
    }

    #[test]
    fn epoch_dates() {
        let d = detect("1443703594 login failed").unwrap();
        assert_eq!(d.template, Template::Epoch);
        assert_eq!(d.timestamp, Timestamp::from_secs(1_443_703_594));
        assert_eq!(d.span, 0..10);
        let d = detect("1443703594.123456 x").unwrap();
        assert_eq!(d.timestamp, Timestamp::from_micros(1_443_703_594_123_456));
        assert_eq!(d.span, 0..17);
        // Epoch is UTC whatever the zone.
        let d = detect_with(Zone::Fixed(3600), "1443703594").unwrap();
        assert_eq!(d.timestamp, Timestamp::from_secs(1_443_703_594));
        assert_eq!(detect("14437035941 x"), None);
        assert_eq!(detect("144370359 x"), None);

        let line = "type=USER_AUTH msg=audit(1443703594.123:45): pid=1 res=failed";
        let d = detect(line).unwrap();
        assert_eq!(d.template, Template::Audit);
        assert_eq!(d.timestamp, Timestamp::from_micros(1_443_703_594_123_000));
        assert_eq!(&line[d.span], "1443703594.123");
    }

    #[test]
    fn zones() {
        assert_eq!(Zone::parse("UTC"), Ok(Zone::Utc));
        assert_eq!(Zone::parse("+02:00"), Ok(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("-0400"), Ok(Zone::Fixed(-14_400)));
        assert_eq!(Zone::parse("+05"), Ok(Zone::Fixed(18_000)));
        assert_eq!(Zone::parse("+00:00"), Ok(Zone::Utc));
        assert!(matches!(Zone::parse("local"), Ok(Zone::Named(_))));
        assert!(matches!(Zone::parse("Europe/Berlin"), Ok(Zone::Named(_))));
        assert!(matches!(
            Zone::parse("Mars/Olympus"),
            Err(ZoneError::Unknown { .. })
        ));
        assert!(matches!(Zone::parse("+25:00"), Err(ZoneError::Offset(_))));
        assert!(matches!(Zone::parse("+02:00x"), Err(ZoneError::Offset(_))));
        assert_eq!(Zone::parse(" "), Err(ZoneError::Empty));

        let berlin = || Zone::parse("Europe/Berlin").unwrap();
        // Summer: CEST, +02:00.
        let d = detect_with(berlin(), "2026-07-01T12:00:00 x").unwrap();
        assert_eq!(d.timestamp, utc(2026, 7, 1, 10, 0, 0));
        // Winter: CET, +01:00.
        let d = detect_with(berlin(), "2026-01-15T12:00:00 x").unwrap();
        assert_eq!(d.timestamp, utc(2026, 1, 15, 11, 0, 0));
    }

    #[test]
    fn dst_transitions_and_cache() {
        // One detector, lines in order across the 2026 transitions in Berlin, so the hour
        // cache is exercised: each result must match the offset of its own hour.
        let mut detector = DateDetector::new(Zone::parse("Europe/Berlin").unwrap());
        let mut at = |line: &str| detector.detect(line.as_bytes(), now()).unwrap().timestamp;
        // Spring forward on 2026-03-29: 02:00 CET becomes 03:00 CEST.
        assert_eq!(at("2026-03-29 01:59:59 x"), utc(2026, 3, 29, 0, 59, 59));
        // 02:30 does not exist; "compatible" reads it with the old offset (= 03:30 CEST).
        assert_eq!(at("2026-03-29 02:30:00 x"), utc(2026, 3, 29, 1, 30, 0));
        assert_eq!(at("2026-03-29 03:00:00 x"), utc(2026, 3, 29, 1, 0, 0));
        assert_eq!(at("2026-03-29 03:30:00 x"), utc(2026, 3, 29, 1, 30, 0));
        // Fall back on 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice and
        // "compatible" picks the first (CEST).
        assert_eq!(at("2026-10-25 01:30:00 x"), utc(2026, 10, 24, 23, 30, 0));
        assert_eq!(at("2026-10-25 02:30:00 x"), utc(2026, 10, 25, 0, 30, 0));
        assert_eq!(at("2026-10-25 02:45:00 x"), utc(2026, 10, 25, 0, 45, 0));
        assert_eq!(at("2026-10-25 03:30:00 x"), utc(2026, 10, 25, 2, 30, 0));
        // And back into summer: the cache must not keep the winter offset.
        assert_eq!(at("2026-10-24 03:30:00 x"), utc(2026, 10, 24, 1, 30, 0));
    }

    #[test]
    fn cached_offsets_agree_with_jiff() {
        // Every local half hour of 2026, in order (cache hits) and the result compared with
        // jiff directly. Lord Howe's DST is 30 minutes and starts at 02:00 local, so the
        // offset changes in the middle of a local hour: the cache must notice and not cache.
        for name in ["America/New_York", "Australia/Lord_Howe"] {
            let tz = TimeZone::get(name).unwrap();
            check_against_jiff(&tz);
        }
    }

    fn check_against_jiff(tz: &TimeZone) {
        let mut detector = DateDetector::new(Zone::Named(tz.clone()));
        let start = days_from_civil(2026, 1, 1) * 86_400;
        for step in 0..(366 * 48) {
            let local = start + step * 1800;
            let (y, m, d) = civil_from_days(local.div_euclid(86_400));
            let sod = local.rem_euclid(86_400);
            let line = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:00 x",
                sod / 3600,
                sod / 60 % 60
            );
            let got = detector.detect(line.as_bytes(), now()).unwrap().timestamp;
            let civil = jiff::civil::DateTime::new(
                y as i16,
                m as i8,
                d as i8,
                (sod / 3600) as i8,
                (sod / 60 % 60) as i8,
                0,
                0,
            )
            .unwrap();
            let want = tz
                .to_ambiguous_timestamp(civil)
                .compatible()
                .unwrap()
                .as_second();
            assert_eq!(got, Timestamp::from_secs(want), "{line}");
        }
    }

    #[test]
    fn invalid_values_are_refused() {
        for line in [
            "Nov 22 02:2",
            "Nov 22 02:26:0",
            "Nov 22",
            "Nov",
            "Nox 22 02:26:07 h x: y",
            "Nov 32 02:26:07 h x: y",
            "Nov 00 02:26:07 h x: y",
            "Nov 22 25:26:07 h x: y",
            "Nov 22 02:61:07 h x: y",
            "Nov 22 02:26:071 h x: y",
            "2026-13-22T02:26:07Z",
            "2026-02-30T02:26:07Z",
            "2026-11-22T25:26:07Z",
            "2026-11-22T02:26:07+24:00",
            "2026-11-22T02:26:07+0x",
            "2026-11-22T02:26:07.1234567890Z",
            "2026-11-22T02:26",
            "2026-11-2",
            "2015/13/01 12:46:34 [error]",
            "2015/10/01 12:46 [error]",
            "x [01/Oct/2015:12:46:34 -0400",
            "x [01/Foo/2015:12:46:34 -0400]",
            "x [32/Oct/2015:12:46:34 -0400]",
            "x [01/Oct/2015:12:46:34 -04]",
            "audit(1443703594.123)",
            "144370359",
            "",
            "   ",
            "\0\0\0",
        ] {
            assert_eq!(detect(line), None, "{line:?}");
        }
        // Non-UTF-8 around a valid date is fine, and inside one is refused.
        let mut line = b"Nov 22 02:26:07 \xff\xfe".to_vec();
        assert!(DateDetector::new(Zone::Utc).detect(&line, now()).is_some());
        line[4] = 0xff;
        assert_eq!(DateDetector::new(Zone::Utc).detect(&line, now()), None);
    }

    #[test]
    fn huge_lines_are_cheap_and_safe() {
        let mut line = vec![b'['; 1 << 20];
        assert_eq!(DateDetector::new(Zone::Utc).detect(&line, now()), None);
        line.fill(b' ');
        assert_eq!(DateDetector::new(Zone::Utc).detect(&line, now()), None);
        line.fill(b'7');
        assert_eq!(DateDetector::new(Zone::Utc).detect(&line, now()), None);
        let mut iso = b"2026-11-22T02:26:07.".to_vec();
        iso.resize(iso.len() + (1 << 20), b'1');
        assert_eq!(DateDetector::new(Zone::Utc).detect(&iso, now()), None);
    }

    #[test]
    fn a_repeated_syslog_date_reads_as_a_parsed_one() {
        let new_year = utc(2027, 1, 1, 0, 0, 10);
        let cases: &[(&str, Timestamp)] = &[
            ("Nov 22 10:00:00 web1 sshd[1]: a", now()),
            ("Nov 22 10:00:00 web1 sshd[2]: b", now()),
            ("Nov 22 10:00:00.5 web1 c", now()),
            ("Nov 22 10:00:00.5 web1 d", now()),
            ("Nov 22 10:00:00.55 web1 e", now()),
            ("Nov 22 10:00:00.5", now()),
            ("Nov 22 10:00:001 f", now()),
            ("Nov 22 10:00:00 g", now()),
            ("Nov 22 10:00:00", now()),
            ("  Nov 22 10:00:00 h", now()),
            (" Nov 22 10:00:00 i", now()),
            ("[Nov 22 10:00:00] j", now()),
            ("Nov 22 10:00:00 k", now()),
            // The year follows `now`: the same text is another instant at another `now`.
            ("Dec 31 23:59:59 l", new_year),
            ("Dec 31 23:59:59 m", now()),
            ("Dec 31 23:59:59 n", new_year),
            ("2026-11-22 10:00:00 o", now()),
            ("Nov 22 10:00:00 p", now()),
            (
                "Nov 22 10:00:00 q",
                now() + std::time::Duration::from_secs(1),
            ),
        ];
        let mut reading = DateDetector::new(Zone::Utc);
        for (line, at) in cases {
            // A detector that last read another syslog date: same template order, nothing
            // of this line's to reuse.
            let mut fresh = DateDetector::new(Zone::Utc);
            fresh.detect(b"Jan  1 00:00:00 z", *at).unwrap();
            let expected = fresh.detect(line.as_bytes(), *at);
            assert_eq!(reading.detect(line.as_bytes(), *at), expected, "{line:?}");
        }
        assert_eq!(reading.hit_counts().nth(1), Some(("syslog", 17)));
        assert_eq!(reading.hit_counts().next(), Some(("iso8601", 1)));
    }

    #[test]
    fn last_hit_template_is_preferred() {
        // This line holds two dates: an ISO one at the start and a CLF one later.
        let both = b"2026-11-22T02:26:07Z x [01/Oct/2015:12:46:34 +0000]";
        let mut detector = DateDetector::new(Zone::Utc);
        assert_eq!(
            detector.detect(both, now()).unwrap().template,
            Template::Iso8601
        );
        detector
            .detect(b"1.2.3.4 - - [01/Oct/2015:12:46:34 +0000] \"GET /\"", now())
            .unwrap();
        // After a CLF hit the CLF template is tried first and wins.
        assert_eq!(
            detector.detect(both, now()).unwrap().template,
            Template::Clf
        );
        detector.detect(b"2026-11-22T02:26:07Z y", now()).unwrap();
        assert_eq!(
            detector.detect(both, now()).unwrap().template,
            Template::Iso8601
        );
        assert_eq!(detector.detect(b"no date", now()), None);

        let counts: Vec<_> = detector.hit_counts().collect();
        assert_eq!(
            counts,
            vec![
                ("iso8601", 3),
                ("syslog", 0),
                ("asctime", 0),
                ("rfc5424", 0),
                ("nginx-error", 0),
                ("day-first", 0),
                ("mysql", 0),
                ("tai64n", 0),
                ("epoch", 0),
                ("clf", 2),
                ("audit", 0),
            ]
        );
    }

    /// The date of `line` in UTC, with its template and the text the span covers.
    fn read(line: &str) -> Option<(String, Template, String)> {
        let d = detect(line)?;
        Some((
            d.timestamp.to_rfc3339(),
            d.template,
            line[d.span.clone()].to_string(),
        ))
    }

    #[test]
    fn fail2bans_further_default_formats() {
        let cases: [(&str, &str, Template, &str); 16] = [
            (
                "[Thu Jul 11 01:21:41 2013] [error] x",
                "2013-07-11T01:21:41Z",
                Template::Asctime,
                "Thu Jul 11 01:21:41 2013",
            ),
            (
                "[Thu Sep 25 09:27:18.813902 2014] [cgi:error]",
                "2014-09-25T09:27:18.813902Z",
                Template::Asctime,
                "Thu Sep 25 09:27:18.813902 2014",
            ),
            (
                "Fri Jan 19 12:20:33 2007 [pid 1]",
                "2007-01-19T12:20:33Z",
                Template::Asctime,
                "Fri Jan 19 12:20:33 2007",
            ),
            (
                "Oct 27 2015 12:35:40 host x[1]:",
                "2015-10-27T12:35:40Z",
                Template::Asctime,
                "Oct 27 2015 12:35:40",
            ),
            (
                "[PDT Apr 16 21:05:29] error",
                "2026-04-17T04:05:29Z",
                Template::Asctime,
                "PDT Apr 16 21:05:29",
            ),
            (
                "[Jan 18 17:39:50] NOTICE[1]",
                "2026-01-18T17:39:50Z",
                Template::Syslog,
                "Jan 18 17:39:50",
            ),
            (
                "[2012-02-13 17:21:54] NOTICE[1638]",
                "2012-02-13T17:21:54Z",
                Template::Iso8601,
                "2012-02-13 17:21:54",
            ),
            (
                "2011.11.21 14:29:16 LOG3[1]",
                "2011-11-21T14:29:16Z",
                Template::Iso8601,
                "2011.11.21 14:29:16",
            ),
            (
                "2015-10-07  8:25:38 1398 [Warning]",
                "2015-10-07T08:25:38Z",
                Template::Iso8601,
                "2015-10-07  8:25:38",
            ),
            (
                "2019-11-26 01:04:49.008 +08:00 [WRN]",
                "2019-11-25T17:04:49.008000Z",
                Template::Iso8601,
                "2019-11-26 01:04:49.008 +08:00",
            ),
            (
                "[22-Jan-2013 22:28:21 +0200]: FAILED",
                "2013-01-22T20:28:21Z",
                Template::DayFirst,
                "22-Jan-2013 22:28:21 +0200",
            ),
            (
                "11-Aug-2013 03:36:11.372 error: x",
                "2013-08-11T03:36:11.372000Z",
                Template::DayFirst,
                "11-Aug-2013 03:36:11.372",
            ),
            (
                "11-06-2013 02:09:40 +0300 PROXY",
                "2013-06-11T02:09:40Z",
                Template::DayFirst,
                "11-06-2013 02:09:40",
            ),
            (
                "01-27-2012 16:22:44 x",
                "2012-01-27T16:22:44Z",
                Template::DayFirst,
                "01-27-2012 16:22:44",
            ),
            (
                "130324  0:04:00 [Warning] x",
                "2013-03-24T00:04:00Z",
                Template::Mysql,
                "130324  0:04:00",
            ),
            (
                "@400000004c91b044077a9e94 imap-login:",
                "2010-09-16T05:51:00.125476Z",
                Template::Tai64n,
                "@400000004c91b044077a9e94",
            ),
        ];
        for (line, time, template, text) in cases {
            assert_eq!(
                read(line),
                Some((time.to_string(), template, text.to_string())),
                "{line}"
            );
        }
        // An empty CLF offset: the date without it.
        let d = detect("1.2.3.4 - - - [31/Jan/2015:14:29:44 ] example.com").unwrap();
        assert_eq!(d.timestamp, utc(2015, 1, 31, 14, 29, 44));
    }

    #[test]
    fn an_empty_pattern_date_is_the_previous_lines() {
        let pattern = DatePattern::parse("^%b %d, %ExY %I:%M:%S %p\n^WARNING:()**").unwrap();
        let mut detector = DateDetector::new(Zone::Utc).with_pattern(Some(pattern));
        // No line before: no date (the line counts when it is read), not midnight.
        assert_eq!(detector.detect(b"WARNING: first", now()), None);
        let first = detector
            .detect(b"Apr 15, 2013 8:34:08 PM org.x warn", now())
            .unwrap();
        assert_eq!(first.timestamp, utc(2013, 4, 15, 20, 34, 8));
        let second = detector.detect(b"WARNING: attempt from x", now()).unwrap();
        assert_eq!(second.timestamp, first.timestamp);
        assert!(second.span.is_empty());
    }

    #[test]
    fn a_date_without_a_group_of_its_own_takes_its_prefix_along() {
        let line = b"<W>2015-11-29 16:38:01.818 1 => x";
        let cut = DatePattern::parse("^<W>{DATE}").unwrap();
        let d = DateDetector::new(Zone::Utc)
            .with_pattern(Some(cut))
            .detect(line, now())
            .unwrap();
        assert_eq!(d.span, 0..26);
        let kept = DatePattern::parse("^<W>({DATE})").unwrap();
        let d = DateDetector::new(Zone::Utc)
            .with_pattern(Some(kept))
            .detect(line, now())
            .unwrap();
        assert_eq!(d.span, 3..26);
        // A group that goes on after the date is cut whole, up to where it closes.
        let line = b"192.0.2.1 - - - [31/Jan/2015:14:29:44 ] example.com \"GET / HTTP/1.1\"";
        let group = DatePattern::parse(r"^[^\[]*(\[{DATE}\s*\])").unwrap();
        let d = DateDetector::new(Zone::Utc)
            .with_pattern(Some(group))
            .detect(line, now())
            .unwrap();
        assert_eq!(&line[d.span.clone()], b"[31/Jan/2015:14:29:44 ]");
        let earlier_group = DatePattern::parse(r"^(\S+) [^\[]*\[({DATE})").unwrap();
        let d = DateDetector::new(Zone::Utc)
            .with_pattern(Some(earlier_group))
            .detect(line, now())
            .unwrap();
        assert_eq!(&line[d.span.clone()], b"31/Jan/2015:14:29:44");
    }

    #[test]
    fn further_formats_refuse_what_they_cannot_be_sure_of() {
        for line in [
            // A zone abbreviation that names several offsets.
            "IST Apr 16 21:05:29 x",
            // A numeric date that is neither day- nor month-first.
            "13-13-2013 02:09:40 x",
            "130399 10:00:00 x",
            // A TAI64N label below 2^62, or too long.
            "@300000004c91b044077a9e94 x",
            "@400000004c91b044077a9e94f x",
            // A blank and a dash after a date are not an offset; the date stays local.
        ] {
            assert_eq!(detect(line), None, "{line}");
        }
        let d = detect("2026-11-22 02:26:07 - - x").unwrap();
        assert_eq!(d.timestamp, utc(2026, 11, 22, 2, 26, 7));
        // A weekday alone does not make a syslog date take the number after it as its year.
        let d = detect("Nov 22 02:26:07 2024 sshd[1]: x").unwrap();
        assert_eq!(d.template, Template::Syslog);
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64*: deterministic, so a failure reproduces.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        // Random bytes rarely look like a date, so half the inputs are mutations of real
        // dates: that is where off-by-one reads would hide.
        let seeds: [&[u8]; 8] = [
            b"Nov 22 02:26:07 host sshd[1]: x",
            b"2026-11-22T02:26:07.123456+01:00 h",
            b"<34>1 2026-11-22T02:26:07.003Z h a - - - m",
            b"a [01/Oct/2015:12:46:34 -0400] b",
            b"2015/10/01 12:46:34 [error]",
            b"1443703594.123456 x",
            b"msg=audit(1443703594.123:45):",
            b"Feb 29 23:59:60.999999",
        ];
        let alphabet = b"0123456789:-+./T Z[]<>,Nov\0\xff";
        let zones = [
            Zone::Utc,
            Zone::Fixed(-3600),
            Zone::parse("Europe/Berlin").unwrap(),
        ];
        let mut detectors: Vec<_> = zones.into_iter().map(DateDetector::new).collect();
        let mut found = 0;
        for round in 0..200_000 {
            let r = next();
            let mut line: Vec<u8> = if round % 2 == 0 {
                let len = (r % 64) as usize;
                (0..len)
                    .map(|_| {
                        let x = next();
                        if x % 3 == 0 {
                            x as u8
                        } else {
                            alphabet[(x >> 8) as usize % alphabet.len()]
                        }
                    })
                    .collect()
            } else {
                seeds[(r % seeds.len() as u64) as usize].to_vec()
            };
            for _ in 0..(r >> 8) % 4 {
                let x = next();
                if line.is_empty() {
                    break;
                }
                let at = (x % line.len() as u64) as usize;
                match (x >> 32) % 3 {
                    0 => line[at] = alphabet[(x >> 40) as usize % alphabet.len()],
                    1 => line.truncate(at),
                    _ => {
                        line.remove(at);
                    }
                }
            }
            let now = Timestamp::from_secs((next() % 4_000_000_000) as i64);
            for detector in &mut detectors {
                if let Some(d) = detector.detect(&line, now) {
                    assert!(d.span.start <= d.span.end && d.span.end <= line.len());
                    found += 1;
                }
            }
        }
        // The mutations must leave many dates intact, or this test exercised nothing.
        assert!(found > 50_000, "only {found} dates found");
    }

    fn with_pattern(p: &str, zone: Zone) -> DateDetector {
        DateDetector::new(zone).with_pattern(Some(DatePattern::parse(p).unwrap()))
    }

    #[test]
    fn a_datepattern_replaces_the_templates() {
        let mut d = with_pattern("^%Y:%m:%d-%H:%M:%S", Zone::Fixed(3600));
        let line = b"2026:11:17-10:00:01 conn=1 x";
        let found = d.detect(line, now()).unwrap();
        assert_eq!(found.timestamp.to_rfc3339(), "2026-11-17T09:00:01Z");
        assert_eq!((found.span, found.template), (0..19, Template::Custom));
        // A syslog date is not what this filter's logs carry.
        assert_eq!(d.detect(b"Nov 17 10:00:01 web1 x", now()), None);
        assert!(d.hit_counts().any(|(n, h)| n == "datepattern" && h == 1));
        // Year-less patterns get the year as syslog dates do.
        let mut d = with_pattern(r"^\[%d/%b %H:%M:%S\]", Zone::Utc);
        let found = d.detect(b"[17/Nov 10:00:01] x", now()).unwrap();
        assert_eq!(found.timestamp.to_rfc3339(), "2026-11-17T10:00:01Z");
        // {DATE}: a standard date where the pattern says.
        let mut d = with_pattern(r"^[^\[]*\[({DATE})", Zone::Utc);
        let found = d
            .detect(b"host [17/Nov/2026:10:00:06 +0100] x", now())
            .unwrap();
        assert_eq!(found.timestamp.to_rfc3339(), "2026-11-17T09:00:06Z");
        // Epoch, and {NONE}.
        let mut d = with_pattern("{^LN-BEG}Epoch", Zone::Utc);
        let found = d.detect(b"1794909604 x", now()).unwrap();
        assert_eq!(found.timestamp.to_rfc3339(), "2026-11-17T10:00:04Z");
        let mut d = with_pattern("{NONE}", Zone::Utc);
        assert_eq!(d.detect(b"2026-11-17 10:00:01 x", now()), None);
    }

    #[test]
    fn a_time_without_date_is_the_last_such_time() {
        // now() is 2026-11-22T12:00Z: a time later in the day is yesterday's.
        let now = now();
        let sod = now.as_secs().rem_euclid(86_400);
        let mut d = with_pattern("^%H:%M:%S", Zone::Utc);
        let earlier = Timestamp::from_secs(now.as_secs() - 60);
        let line = format!(
            "{:02}:{:02}:{:02} x",
            (sod - 60) / 3600,
            (sod - 60) / 60 % 60,
            (sod - 60) % 60
        );
        assert_eq!(d.detect(line.as_bytes(), now).unwrap().timestamp, earlier);
        let later = Timestamp::from_secs(now.as_secs() + 60 - 86_400);
        let line = format!(
            "{:02}:{:02}:{:02} x",
            (sod + 60) / 3600,
            (sod + 60) / 60 % 60,
            (sod + 60) % 60
        );
        assert_eq!(d.detect(line.as_bytes(), now).unwrap().timestamp, later);
    }
}
