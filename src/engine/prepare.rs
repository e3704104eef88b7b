//! From a raw log-file line to what a filter sees: its time and its message.
//!
//! Journal entries arrive already split into fields with their own timestamp; file lines
//! have to be taken apart. A syslog-format filter sees only the MESSAGE of lines written by
//! the programs it names (as it would in the journal), so "Failed password" logged by some
//! other program never counts; a plain-format filter sees the whole line.
//!
//! A file's lines come in runs from the same host and program, so a header that repeats one
//! of the last few is compared rather than taken apart again (it reads the same either way).

use std::ops::Range;

use crate::engine::datetime::{DateDetector, Template};
use crate::engine::logline::{RepeatedHeader, SyslogLine};
use crate::engine::multiline::Origin;
use crate::engine::time::Timestamp;

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
    /// The headers of recent syslog lines and whether the filter reads their program, for
    /// the lines that repeat one: a few, as programs take turns in a file.
    headers: Vec<(RepeatedHeader, bool)>,
    /// The entry of `headers` the next new header replaces, once it is full.
    replace_header: usize,
}

/// How many recent syslog headers a preparer keeps.
const REPEATED_HEADERS: usize = 4;

impl LinePreparer {
    pub fn new(detector: DateDetector, format: LineFormat, identifiers: &[String]) -> Self {
        LinePreparer {
            detector,
            format,
            identifiers: identifiers.iter().map(|s| s.as_bytes().to_vec()).collect(),
            joined: Vec::new(),
            headers: Vec::new(),
            replace_header: 0,
        }
    }

    pub fn detector(&self) -> &DateDetector {
        &self.detector
    }

    /// `now` only serves to infer the year of year-less dates.
    pub fn prepare<'a>(&'a mut self, line: &'a [u8], now: Timestamp) -> Prepared<'a> {
        let line = trim_line_end(line);
        let date = self.detector.detect(line, now);
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
                let repeated = self.headers.iter().find_map(|(header, read)| {
                    Some((
                        SyslogLine::parse_repeated(line, d.span.clone(), header)?,
                        *read,
                    ))
                });
                let (parsed, read) = match repeated {
                    Some(known) => known,
                    None => {
                        let Some(parsed) = SyslogLine::parse(line, d.span.clone()) else {
                            return Prepared::NotSyslog;
                        };
                        let read = self.identifiers.is_empty()
                            || self
                                .identifiers
                                .iter()
                                .any(|i| i.as_slice() == parsed.ident);
                        self.hold_header(line, d.span, &parsed, read);
                        (parsed, read)
                    }
                };
                if !read {
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

impl LinePreparer {
    fn hold_header(&mut self, line: &[u8], date: Range<usize>, parsed: &SyslogLine, read: bool) {
        if self.headers.len() < REPEATED_HEADERS {
            let mut header = RepeatedHeader::default();
            if header.hold(line, date, parsed) {
                self.headers.push((header, read));
            }
            return;
        }
        let entry = &mut self.headers[self.replace_header];
        if entry.0.hold(line, date, parsed) {
            entry.1 = read;
            self.replace_header = (self.replace_header + 1) % REPEATED_HEADERS;
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
    fn a_repeated_header_reads_as_a_parsed_one() {
        let lines: &[&[u8]] = &[
            b"Nov 17 10:00:00 web1 sshd[42]: Failed password for root from 192.0.2.1",
            b"Nov 17 10:00:00 web1 sshd[43]: again",
            b"Nov 17 10:00:00 web1 sshd: no pid",
            b"Nov 17 10:00:01 web1 sshd[]: empty pid",
            b"Nov 17 10:00:01 web1 sshd[4x]: not a pid",
            b"Nov 17 10:00:01 web1 sshd[44]:glued",
            b"Nov 17 10:00:01 web1 sshd[45]:",
            b"Nov 17 10:00:01 web1 sshd[46]: ",
            b"Nov 17 10:00:01 web1 sshd-session[47]: longer ident",
            b"Nov 17 10:00:01 web1 sshd[48]: back\r\n\r\n",
            b"Nov 17 10:00:01 web1 sshd[49]] : odd",
            b"Nov 17 10:00:01 web1 evil[1]: Failed password for root from 192.0.2.2",
            b"Nov 17 10:00:01 web1 evil[2]: Failed password for root from 192.0.2.2",
            b"Nov 17 10:00:01 web1  sshd[50]: two blanks",
            b"Nov 17 10:00:01 web2 sshd[51]: another host",
            b"Nov 17 10:00:01 web1x sshd[52]: a longer host",
            b" Nov 17 10:00:01 web1 sshd[53]: a blank first",
            b"<34>1 2026-11-17T10:00:01Z web1 sshd 54 - - rfc 5424",
            b"Nov 17 10:00:01 web1 sshd[55]: rfc 3164 again",
            b"Nov 17 10:00:01 sshd[56]: no host",
            b"Nov 17 10:00:01 sshd[57]: no host again",
            b"Nov 17 10:00:02 w\xffb sshd[58]: a host with a bad byte",
            b"Nov 17 10:00:02 web1 sshd[59]: \xff\xfe",
        ];
        let mut reading = preparer(LineFormat::Syslog, &["sshd", "sshd-session"]);
        for line in lines {
            let mut fresh = preparer(LineFormat::Syslog, &["sshd", "sshd-session"]);
            let expected = fresh.prepare(line, NOW);
            assert_eq!(
                reading.prepare(line, NOW),
                expected,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
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
}
