//! From a raw log-file line to what a filter sees: its time and its message.
//!
//! Journal entries arrive already split into fields with their own timestamp; file lines
//! have to be taken apart. A syslog-format filter sees only the MESSAGE of lines written by
//! the programs it names (as it would in the journal), so "Failed password" logged by some
//! other program never counts; a plain-format filter sees the whole line.
//!
//! Busy logs write many lines within one second, so consecutive lines mostly carry the same
//! date text. The preparer remembers the last syslog date it was given and, when the next
//! line starts with the same bytes (at the same place, followed by the header's space, with
//! the same clock), reuses its time instead of running the date detector again: the detector
//! would try the syslog template first (it matched last) and parse those bytes to the same
//! instant. Only syslog dates are reused: their layout is fixed and what may follow them is
//! known, whereas other templates take optional parts (offsets, fractions) a byte comparison
//! cannot rule out.

use crate::engine::datetime::{DateDetector, DetectedDate, Template};
use crate::engine::logline::SyslogLine;
use crate::engine::multiline::Origin;
use crate::engine::time::Timestamp;
use std::ops::Range;

/// How a file line is laid out before the filter sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineFormat {
    /// `DATE HOST IDENT[PID]: MESSAGE`: the regexes see MESSAGE (as for journal entries).
    Syslog,
    /// The regexes see the whole line (nginx and other application logs).
    Plain,
    /// The regexes see the line with its date cut out (the text before it, without leading
    /// blanks, and the text after it as it is, blanks included): what fail2ban's filters
    /// see, whose regexes begin with `^%(__prefix_line)s` (`\s*…`) to match
    /// ` HOST IDENT[PID]: ` themselves. A line without a date is given trimmed.
    AfterDate,
}

/// A line ready for a filter. The message borrows the line, except for a date in the
/// middle of an [`LineFormat::AfterDate`] line, whose two sides are joined into the
/// preparer's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared<'a> {
    Message {
        /// The line's own time, or `None` when it has no recognisable date.
        time: Option<Timestamp>,
        template: Option<Template>,
        message: &'a [u8],
        /// The host and process id of a syslog line's header (none for other formats).
        origin: Origin<'a>,
    },
    /// A syslog line from a program the filter does not read.
    OtherProgram,
    /// Not a syslog line although the filter expects syslog lines.
    NotSyslog,
}

/// Prepares the lines of one file for one filter; keeps the date detector's state.
#[derive(Debug)]
pub struct LinePreparer {
    detector: DateDetector,
    format: LineFormat,
    identifiers: Vec<Vec<u8>>,
    /// Holds an AfterDate line whose date sat between two pieces of text.
    joined: Vec<u8>,
    last_date: RepeatedDate,
}

/// The last syslog date detected, to be reused while the lines repeat it (see the module
/// documentation).
#[derive(Debug, Default)]
struct RepeatedDate {
    /// The date's bytes (empty: nothing to reuse), its place in the line, and its time.
    text: Vec<u8>,
    span: Range<usize>,
    timestamp: Timestamp,
    /// The clock it was detected with: the year of a year-less date depends on it.
    now: Timestamp,
    /// Lines whose date was reused, counted as the syslog template's in the statistics.
    reused: u64,
}

/// Longer syslog dates (with a long fraction) are rare and not worth keeping.
const MAX_REPEATED_DATE: usize = 32;

impl RepeatedDate {
    /// The time of `line` if it starts with the remembered date.
    fn reuse(&mut self, line: &[u8], now: Timestamp) -> Option<(Timestamp, Range<usize>)> {
        if self.text.is_empty() || now != self.now {
            return None;
        }
        let Range { start, end } = self.span.clone();
        if line.get(start..end)? != self.text.as_slice()
            || line.get(end) != Some(&b' ')
            || !line[..start].iter().all(|&b| b == b' ' || b == b'\t')
        {
            return None;
        }
        self.reused += 1;
        Some((self.timestamp, self.span.clone()))
    }

    fn remember(&mut self, line: &[u8], date: Option<&DetectedDate>, now: Timestamp) {
        self.text.clear();
        let Some(date) = date else { return };
        if date.template != Template::Syslog || date.span.len() > MAX_REPEATED_DATE {
            return;
        }
        self.text.extend_from_slice(&line[date.span.clone()]);
        self.span = date.span.clone();
        self.timestamp = date.timestamp;
        self.now = now;
    }
}

impl LinePreparer {
    pub fn new(detector: DateDetector, format: LineFormat, identifiers: &[String]) -> Self {
        LinePreparer {
            detector,
            format,
            identifiers: identifiers.iter().map(|s| s.as_bytes().to_vec()).collect(),
            joined: Vec::new(),
            last_date: RepeatedDate::default(),
        }
    }

    pub fn detector(&self) -> &DateDetector {
        &self.detector
    }

    /// How many lines each date template matched, by name, as
    /// [`DateDetector::hit_counts`], the reused syslog dates included.
    pub fn date_hits(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let reused = self.last_date.reused;
        self.detector.hit_counts().map(move |(name, hits)| {
            if name == Template::Syslog.name() {
                (name, hits + reused)
            } else {
                (name, hits)
            }
        })
    }

    /// The line's date: the previous line's when it repeats it, else the detector's.
    fn date_of(&mut self, line: &[u8], now: Timestamp) -> Option<DetectedDate> {
        if let Some((timestamp, span)) = self.last_date.reuse(line, now) {
            return Some(DetectedDate {
                timestamp,
                span,
                template: Template::Syslog,
            });
        }
        let date = self.detector.detect(line, now);
        self.last_date.remember(line, date.as_ref(), now);
        date
    }

    /// `now` only serves to infer the year of year-less dates.
    pub fn prepare<'a>(&'a mut self, line: &'a [u8], now: Timestamp) -> Prepared<'a> {
        let line = trim_line_end(line);
        let date = self.date_of(line, now);
        let (time, template) = match &date {
            Some(d) => (Some(d.timestamp), Some(d.template)),
            None => (None, None),
        };
        match self.format {
            LineFormat::Plain => Prepared::Message {
                time,
                template,
                message: line,
                origin: Origin::default(),
            },
            LineFormat::AfterDate => {
                // As fail2ban does: the text before the date and the text after it, put
                // together as they are (its regexes expect "[]" where a bracketed date was).
                let message = match &date {
                    None => line.trim_ascii(),
                    Some(d) => {
                        let before = line[..d.span.start].trim_ascii_start();
                        let after = &line[d.span.end..];
                        if before.is_empty() {
                            after
                        } else if after.is_empty() {
                            before
                        } else {
                            self.joined.clear();
                            self.joined.extend_from_slice(before);
                            self.joined.extend_from_slice(after);
                            &self.joined
                        }
                    }
                };
                Prepared::Message {
                    time,
                    template,
                    message,
                    origin: Origin::default(),
                }
            }
            LineFormat::Syslog => {
                let Some(d) = date else {
                    return Prepared::NotSyslog;
                };
                let Some(parsed) = SyslogLine::parse(line, d.span) else {
                    return Prepared::NotSyslog;
                };
                if !self.identifiers.is_empty()
                    && !self
                        .identifiers
                        .iter()
                        .any(|i| i.as_slice() == parsed.ident)
                {
                    return Prepared::OtherProgram;
                }
                Prepared::Message {
                    time,
                    template,
                    message: parsed.message,
                    origin: Origin {
                        host: parsed.host,
                        pid: parsed.pid,
                    },
                }
            }
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::datetime::Zone;
    use std::time::Duration;

    fn preparer(format: LineFormat, idents: &[&str]) -> LinePreparer {
        let idents: Vec<String> = idents.iter().map(|s| s.to_string()).collect();
        LinePreparer::new(DateDetector::new(Zone::Utc), format, &idents)
    }

    const NOW: Timestamp = Timestamp::from_secs(1_795_000_000); // 2026-11-18

    #[test]
    fn syslog_lines_give_their_message() {
        let mut p = preparer(LineFormat::Syslog, &["sshd", "sshd-session"]);
        let line = b"Nov 17 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.1 port 22 ssh2\n";
        match p.prepare(line, NOW) {
            Prepared::Message {
                time,
                message,
                template,
                origin,
            } => {
                assert_eq!(time.unwrap().to_rfc3339(), "2026-11-17T10:00:00Z");
                assert_eq!(template, Some(Template::Syslog));
                assert_eq!((origin.host, origin.pid), (&b"web1"[..], Some(&b"42"[..])));
                assert_eq!(
                    message,
                    b"Failed password for root from 192.0.2.1 port 22 ssh2"
                );
            }
            other => panic!("{other:?}"),
        }
        let other =
            b"Nov 17 10:00:00 web1 evil[1]: Failed password for root from 192.0.2.1 port 22 ssh2";
        assert_eq!(p.prepare(other, NOW), Prepared::OtherProgram);
        assert_eq!(p.prepare(b"no date here", NOW), Prepared::NotSyslog);
    }

    #[test]
    fn after_date_cuts_the_date_out() {
        let mut p = preparer(LineFormat::AfterDate, &[]);
        let line = b"Nov 17 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.1\n";
        match p.prepare(line, NOW) {
            Prepared::Message { time, message, .. } => {
                assert_eq!(time.unwrap().to_rfc3339(), "2026-11-17T10:00:00Z");
                // The blank after the date stays, as fail2ban leaves it.
                assert_eq!(
                    message,
                    b" web1 sshd[42]: Failed password for root from 192.0.2.1"
                );
            }
            other => panic!("{other:?}"),
        }
        let middle = b"192.0.2.1 - - [17/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 404 1";
        match p.prepare(middle, NOW) {
            Prepared::Message { message, .. } => {
                assert_eq!(message, b"192.0.2.1 - - [] \"GET / HTTP/1.1\" 404 1")
            }
            other => panic!("{other:?}"),
        }
        match p.prepare(b"  no date here ", NOW) {
            Prepared::Message { time, message, .. } => {
                assert_eq!((time, message), (None, &b"no date here"[..]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_whole() {
        let mut p = preparer(LineFormat::Plain, &[]);
        let line = b"192.0.2.1 - - [17/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 404 1\r\n";
        match p.prepare(line, NOW) {
            Prepared::Message { time, message, .. } => {
                assert_eq!(time.unwrap().to_rfc3339(), "2026-11-17T10:00:00Z");
                assert_eq!(message, &line[..line.len() - 2]);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Every line prepared with the previous line's date reused gives what a fresh preparer
    /// (which can reuse nothing) gives it, and the statistics count the same dates.
    #[test]
    fn a_reused_date_is_the_date_the_detector_finds() {
        let lines: [&[u8]; 14] = [
            b"Nov 17 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.1",
            b"Nov 17 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.2",
            b"Nov 17 10:00:00.250 web1 sshd[42]: with a fraction",
            b"Nov 17 10:00:00.250 web1 sshd[42]: the fraction again",
            b"Nov 17 10:00:00 web1 sshd[42]: and without",
            b"Nov 17 10:00:00 2026 web1 sshd[42]: a year after the time",
            b"Nov 17 10:00:001 web1 sshd[42]: a digit too many",
            b"  Nov 17 10:00:00 web1 sshd[42]: indented",
            b"Nov 17 10:00:00 web1 sshd[42]: not indented",
            b"Nov 17 10:00:00",
            b"2026-11-17T10:00:00Z web1 sshd[42]: ISO 8601 in between",
            b"Nov 17 10:00:00 web1 sshd[42]: after ISO 8601",
            b"no date at all",
            b"Nov 17 10:00:00 web1 sshd[42]: after no date",
        ];
        for format in [LineFormat::Syslog, LineFormat::Plain, LineFormat::AfterDate] {
            let mut reusing = preparer(format, &["sshd"]);
            let mut reused = 0;
            for now in [NOW, NOW + Duration::from_secs(1)] {
                for line in lines {
                    let mut fresh_preparer = preparer(format, &["sshd"]);
                    let fresh = fresh_preparer.prepare(line, now);
                    let before = reusing.last_date.reused;
                    assert_eq!(
                        reusing.prepare(line, now),
                        fresh,
                        "{:?}",
                        line.escape_ascii()
                    );
                    reused += reusing.last_date.reused - before;
                }
            }
            // The second, fourth and sixth line repeat the date before them (with a space
            // after it), under each clock; a new clock reuses nothing.
            assert_eq!(reused, 6, "{format:?}");
            let syslog = |p: &LinePreparer| {
                p.date_hits()
                    .find(|(name, _)| *name == "syslog")
                    .map(|(_, hits)| hits)
            };
            let mut fresh = preparer(format, &["sshd"]);
            for now in [NOW, NOW + Duration::from_secs(1)] {
                for line in lines {
                    fresh.last_date = RepeatedDate::default();
                    let _ = fresh.prepare(line, now);
                }
            }
            assert_eq!(syslog(&reusing), syslog(&fresh));
        }
    }
}
