//! Where test-filter's records come from: the lines of a file, stdin or the argument (read
//! with the daemon's line reader), or the entries of a journal (with the daemon's journal
//! reader and matches). Both hand each record to [`Run::process`].

use crate::cli::invalid;
use crate::config::{JailSettings, JailSource};
use crate::engine::datetime::{DateDetector, Zone};
use crate::engine::jail::{Age, FileSource, Record as JailRecord};
use crate::engine::multiline::{Origin, SourceState};
use crate::engine::prepare::{LineFormat, LinePreparer};
use crate::source::file::{Line, LineReader};
use crate::source::journal::{
    JailMatches, JournalError, JournalReader, JournalSource, MatchExpr, Start,
};
use anyhow::{anyhow, bail, Context};
use std::io::{self, Read, Write};
use std::path::Path;

use super::args::{journal_time, parse_now, TestFilterArgs};
use super::record::{Record, Run};
use super::subject::Subject;

/// What the records come from.
pub(super) enum Input {
    Lines { reader: Box<dyn Read>, name: String },
    Journal(JournalSource),
}

pub(super) fn choose_input(args: &TestFilterArgs) -> anyhow::Result<Input> {
    let journal = args.journal.source()?;
    let source = match (&args.source, journal) {
        (Some(_), Some(_)) => {
            return Err(invalid(anyhow!(
                "give either SOURCE or a journal (--journal, --journal-dir, --journal-file, --journal-namespace), not both"
            )))
        }
        (None, None) => {
            return Err(invalid(anyhow!(
                "nothing to read: give SOURCE (a file, \"-\" or a line) or a journal (--journal, --journal-dir, --journal-file, --journal-namespace)"
            )))
        }
        (None, Some(journal)) => {
            if args.format.is_some() {
                return Err(invalid(anyhow!(
                    "--format applies to files; on the journal the regexes see MESSAGE (or, with --journal-render syslog, \"HOST IDENT[PID]: MESSAGE\")"
                )));
            }
            return Ok(Input::Journal(journal));
        }
        (Some(source), None) => source,
    };
    if let Some(flag) = args.journal.journal_only_option() {
        return Err(invalid(anyhow!(
            "{flag} applies to the journal, not to SOURCE"
        )));
    }
    Ok(if source == "-" {
        Input::Lines {
            reader: Box::new(io::stdin().lock()),
            name: "standard input".into(),
        }
    } else if Path::new(source).is_file() {
        let f = std::fs::File::open(source).with_context(|| format!("cannot open {source}"))?;
        Input::Lines {
            reader: Box::new(f),
            name: source.clone(),
        }
    } else if source.starts_with('/') || source.starts_with("./") {
        bail!("no such file: {source}");
    } else {
        Input::Lines {
            reader: Box::new(io::Cursor::new(source.clone().into_bytes())),
            name: "the line given".into(),
        }
    })
}

/// The journal matches to read with: --match, else the jail's, else the filter's; and where
/// they come from, for the summary.
pub(super) fn journal_matches(
    args: &TestFilterArgs,
    subject: &Subject,
    jail: Option<&JailSettings>,
) -> anyhow::Result<(MatchExpr, &'static str)> {
    let (words, origin): (&[String], _) = if !args.journal.matches.is_empty() {
        (&args.journal.matches, "--match")
    } else if let Some(JailSettings {
        source: JailSource::Journal { matches },
        ..
    }) = jail
    {
        (matches, "the jail's journalmatch")
    } else if !subject.journalmatch.is_empty() {
        (&subject.journalmatch, "the filter's journalmatch")
    } else {
        (&[], "no journalmatch: every entry")
    };
    let expr = MatchExpr::parse(words).map_err(|e| invalid(anyhow!("journal matches: {e}")))?;
    Ok((expr, origin))
}

/// How the records were read, for the summary.
pub(super) enum Provenance {
    Lines {
        name: String,
        format: LineFormat,
        /// Boxed: its date detector is large, and the summary is built once.
        preparer: Box<LinePreparer>,
    },
    Journal {
        source: JournalSource,
        matches: Vec<String>,
        origin: &'static str,
        render: JournalRender,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum JournalRender {
    Message,
    Syslog,
}

pub(super) fn read_lines<W: Write>(
    run: &mut Run<'_, W>,
    args: &TestFilterArgs,
    subject: &Subject,
    jail: Option<&JailSettings>,
    input: Box<dyn Read>,
    name: String,
) -> anyhow::Result<Provenance> {
    let zone = Zone::parse(&args.timezone)
        .map_err(|e| invalid(anyhow!("--timezone {:?}: {e}", args.timezone)))?;
    let now = parse_now(args.now.as_deref())?;
    let preparer = LinePreparer::new(
        DateDetector::new(zone).with_pattern(subject.datepattern.clone()),
        subject.format,
        &subject.identifiers,
    );
    // With a jail, as its daemon reads a file; without, a filter test: every line counts.
    let age = match (jail, args.look_back) {
        (Some(_), true) => Age::LookBack(now),
        (Some(_), false) => Age::Continued,
        (None, _) => Age::Any,
    };
    let mut source = FileSource::new(preparer, age);
    let mut reader = LineReader::new(input);
    while let Some(line) = reader
        .next_line()
        .with_context(|| format!("reading {name}"))?
    {
        run.report.records += 1;
        let number = run.report.records;
        let line = match line {
            Line::Text(t) => t,
            Line::TooLong(_) => {
                run.report.too_long += 1;
                run.report.missed += 1;
                continue;
            }
        };
        let record = JailRecord::Line {
            source: &mut source,
            line,
        };
        run.process(Record::Line(number), record, now)?;
    }
    Ok(Provenance::Lines {
        name,
        format: subject.format,
        preparer: Box::new(source.into_preparer()),
    })
}

pub(super) fn read_journal<W: Write>(
    run: &mut Run<'_, W>,
    args: &TestFilterArgs,
    subject: &Subject,
    jail: Option<&JailSettings>,
    source: JournalSource,
) -> anyhow::Result<Provenance> {
    let (expr, origin) = journal_matches(args, subject, jail)?;
    let matches: Vec<String> = expr
        .groups()
        .iter()
        .map(|g| {
            g.terms()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let start = match &args.journal.since {
        Some(s) => Start::Since(journal_time("--since", s, args)?),
        None => Start::Head,
    };
    let until = args
        .journal
        .until
        .as_deref()
        .map(|s| journal_time("--until", s, args))
        .transpose()?;
    let render = match (args.journal.render.as_deref(), subject.format) {
        (Some("syslog"), _) | (None, LineFormat::AfterDate) => JournalRender::Syslog,
        _ => JournalRender::Message,
    };
    let (mut reader, _) = JournalReader::open(&source, JailMatches::new(vec![expr]), &start)
        .map_err(|e| match e {
            JournalError::Match { .. } => invalid(e),
            e => anyhow::Error::new(e),
        })?;
    if let Some(until) = until {
        reader.set_until(until);
    }
    // The entry is copied out (MESSAGE, or its syslog rendering, and who logged it) so that
    // the reader's statistics, which number the entries, can be read while the filter runs
    // on it.
    let mut text = Vec::new();
    let (mut host, mut pid) = (Vec::new(), Vec::new());
    let mut multiline = SourceState::new();
    loop {
        let time = {
            let Some(read) = reader
                .next_entry()
                .with_context(|| format!("reading {source}"))?
            else {
                break;
            };
            match render {
                JournalRender::Message => {
                    text.clear();
                    text.extend_from_slice(read.entry.message);
                }
                JournalRender::Syslog => read.entry.render_syslog(&mut text),
            }
            let origin = read.entry.origin();
            host.clear();
            host.extend_from_slice(origin.host);
            pid.clear();
            pid.extend_from_slice(origin.pid.unwrap_or_default());
            read.entry.timestamp
        };
        let number = reader.stats().read;
        run.report.records += 1;
        let origin = Origin {
            host: &host,
            pid: Some(pid.as_slice()),
        };
        let record = JailRecord::Entry {
            state: &mut multiline,
            message: &text,
            origin,
            time,
        };
        // Journal entries are not judged by the clock (see `engine::jail`).
        run.process(Record::Entry(number), record, time)?;
    }
    let stats = reader.stats();
    // Every entry the matches selected is a record; those without MESSAGE are missed.
    run.report.records = stats.read;
    run.report.no_message = stats.no_message;
    run.report.missed += stats.no_message + stats.unmatched;
    Ok(Provenance::Journal {
        source,
        matches,
        origin,
        render,
    })
}
