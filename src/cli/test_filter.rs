//! `banhound test-filter FILTER [SOURCE]`: the `fail2ban-regex` of banhound.
//!
//! Runs a filter over a file, stdin, one line or the journal, exactly as the daemon would
//! (same line reader or journal reader, and the daemon's own decision step,
//! [`Jail::decide`], with `--now` as its clock), and reports what it found: records
//! matched, ignored and missed, hits per regex, the date formats seen, the addresses and
//! which of them a jail would ban. Lines and journal entries differ only in how a record is
//! obtained, so both feed one `Run::process`. It streams: memory depends on the number of
//! distinct addresses, not on the size of the input.

use crate::cli::{invalid, time_arg};
use crate::config::{self, load_filter_file, ConfigPaths, JailPolicy, JailSettings, JailSource};
use crate::display::{display_target, thousands};
use crate::engine::datepattern::DatePattern;
use crate::engine::datetime::{DateDetector, Template, Zone};
use crate::engine::filter::{
    Counting, Filter, FilterSpec, Host, Matcher, BACKTRACKING_MAX_LINE, BACKTRACK_LIMIT,
};
use crate::engine::jail::{Age, FileSource, Jail, Record as JailRecord, Seen, Step};
use crate::engine::multiline::{Origin, SourceState};
use crate::engine::prepare::{LineFormat, LinePreparer};
use crate::engine::time::{format_duration, BanTime, Timestamp};
use crate::engine::tracker::{Mode, Tracker, Verdict};
use crate::source::file::{Line, LineReader};
use crate::source::journal::{
    JailMatches, JournalError, JournalReader, JournalSource, MatchExpr, Start,
};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use ipnet::IpNet;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

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
    fn source(&self) -> anyhow::Result<Option<JournalSource>> {
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
    fn journal_only_option(&self) -> Option<&'static str> {
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

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::engine::time::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_bantime_arg(s: &str) -> Result<BanTime, String> {
    BanTime::parse(s).map_err(|e| e.to_string())
}

/// The filter under test, and how lines reach it.
struct Subject {
    description: String,
    filter: Filter,
    format: LineFormat,
    identifiers: Vec<String>,
    /// The filter file's default journal matches (empty for a regex).
    journalmatch: Vec<String>,
    /// What the filter file asks for that banhound does not do (fail2ban filters).
    notes: Vec<String>,
    /// Where file lines keep their date, if not where the standard templates look.
    datepattern: Option<DatePattern>,
}

/// Whether FILTER names a fail2ban filter: a `.conf`/`.local` file (optionally followed by
/// `[params]`), `fail2ban:NAME[...]`, or `NAME[...]`.
fn fail2ban_subject(args: &TestFilterArgs) -> anyhow::Result<Option<Subject>> {
    use crate::config::fail2ban::{self, FilterReference};
    let arg = args.filter.as_str();
    let explicit = arg.strip_prefix("fail2ban:");
    let spec = explicit.unwrap_or(arg);
    let (base, params_part) = match spec.find('[') {
        Some(i) if spec.ends_with(']') && !spec.contains('<') => (&spec[..i], &spec[i..]),
        _ => (spec, ""),
    };
    let is_file =
        (base.ends_with(".conf") || base.ends_with(".local")) && Path::new(base).is_file();
    let is_name = !base.is_empty()
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let path = if is_file {
        PathBuf::from(base)
    } else if is_name && (explicit.is_some() || !params_part.is_empty()) {
        // A bare name is banhound's filter or an error: falling back to fail2ban's file of
        // that name would test another filter than the one the user thinks (a checkout, a
        // mistyped --defaults-dir).
        match fail2ban::find_filter_file(&args.fail2ban_dir, base) {
            Some(p) => p,
            None => {
                return Err(invalid(anyhow!(
                    "no fail2ban filter {base:?} in {}",
                    args.fail2ban_dir.join("filter.d").display()
                )))
            }
        }
    } else {
        return Ok(None);
    };
    let reference = FilterReference::parse(&format!("x{params_part}")).map_err(invalid)?;
    let mut params = reference.params;
    if let Some(mode) = &args.mode {
        params.insert("mode".into(), mode.clone());
    }
    let loaded = fail2ban::load(&path, &params).map_err(invalid)?;
    let def = loaded.to_definition(base).map_err(invalid)?;
    let shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(Some(Subject {
        description: format!(
            "fail2ban filter {}{}",
            path.display(),
            if shown.is_empty() {
                String::new()
            } else {
                format!("[{}]", shown.join(", "))
            }
        ),
        filter: def.filter,
        format: match args.format.as_deref() {
            Some("plain") => LineFormat::Plain,
            Some(_) => LineFormat::Syslog,
            None => def.format,
        },
        identifiers: Vec::new(),
        journalmatch: def.journalmatch,
        notes: loaded.notes,
        datepattern: def.datepattern,
    }))
}

fn resolve_filter(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<Subject> {
    if let Some(subject) = fail2ban_subject(args)? {
        return Ok(subject);
    }
    let arg = args.filter.as_str();
    let mode = args
        .mode
        .as_ref()
        .map(|m| Spanned::new(0..0, m.to_string()));
    if let Some(path) = paths.find_filter(arg) {
        let name = if arg.contains('/') || arg.ends_with(".toml") {
            path.display().to_string()
        } else {
            arg.to_string()
        };
        let def = load_filter_file(&path, &name, mode.as_ref()).map_err(invalid)?;
        let format = match args.format.as_deref() {
            Some("plain") => LineFormat::Plain,
            Some(_) => LineFormat::Syslog,
            None => def.format,
        };
        return Ok(Subject {
            description: format!(
                "{} (mode {})",
                def.name,
                def.mode.as_deref().unwrap_or("normal")
            ),
            filter: def.filter,
            format,
            identifiers: def.identifiers,
            journalmatch: def.journalmatch,
            notes: Vec::new(),
            datepattern: def.datepattern,
        });
    }
    let looks_like_name = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if arg.contains('/') && !arg.contains('<') || arg.ends_with(".toml") || looks_like_name {
        let looked_in: Vec<String> = paths
            .filter_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let available = match paths.filter_names() {
            names if names.is_empty() => "none: are banhound's defaults installed?".to_string(),
            names => names.join(", "),
        };
        return Err(invalid(anyhow!(
            "no filter {arg:?}: not a filter file, and no {arg}.toml in {} (available: {available}); \
             fail2ban's filter of that name is fail2ban:{arg}, and a regex needs an address tag such as <HOST>",
            looked_in.join(" or ")
        )));
    }
    if args.mode.is_some() {
        return Err(invalid(anyhow!(
            "--mode applies to filter files, not to a regex"
        )));
    }
    let filter = Filter::compile(&FilterSpec {
        failregex: vec![arg.to_string()],
        ..FilterSpec::default()
    })
    .map_err(invalid)?;
    Ok(Subject {
        description: format!("regex {arg}"),
        filter,
        format: match args.format.as_deref() {
            Some("syslog") => LineFormat::Syslog,
            _ => LineFormat::Plain,
        },
        identifiers: Vec::new(),
        journalmatch: Vec::new(),
        notes: Vec::new(),
        datepattern: None,
    })
}

fn load_jail(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<Option<JailSettings>> {
    let Some(name) = &args.jail else {
        return Ok(None);
    };
    let settings = config::load(paths).map_err(invalid)?;
    let jail = settings.jails.into_iter().find(|j| &j.name == name);
    jail.map(Some)
        .ok_or_else(|| invalid(anyhow!("no jail {name:?} in the configuration")))
}

fn resolve_policy(
    jail: Option<&JailSettings>,
    args: &TestFilterArgs,
) -> anyhow::Result<JailPolicy> {
    let mut policy = match jail {
        Some(jail) => jail.policy.clone(),
        None => JailPolicy {
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(600)),
            escalation: None,
            ipv6_prefix: 128,
            ignoreip: Vec::new(),
            ignoreself: false,
            max_tracked: 1_000_000,
        },
    };
    if let Some(m) = args.maxretry {
        if m == 0 {
            return Err(invalid(anyhow!("--maxretry must be at least 1")));
        }
        policy.maxretry = m;
    }
    if let Some(f) = args.findtime {
        policy.findtime = f;
    }
    if let Some(b) = args.bantime {
        policy.bantime = b;
    }
    // An analysis of a log, possibly from another host: this host's addresses are not special.
    policy.ignoreself = false;
    Ok(policy)
}

/// An RFC 3339 time given as `flag`. Only ISO 8601 dates with an explicit zone are taken:
/// the detector also knows year-less syslog dates, whose year would be guessed from 1970.
fn parse_time(flag: &str, s: &str) -> anyhow::Result<Timestamp> {
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
fn has_explicit_zone(s: &str) -> bool {
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
fn journal_time(flag: &str, s: &str, args: &TestFilterArgs) -> anyhow::Result<Timestamp> {
    let zone = Zone::parse(&args.timezone)
        .map_err(|e| invalid(anyhow!("--timezone {:?}: {e}", args.timezone)))?;
    let now = parse_now(args.now.as_deref())?;
    time_arg::parse(s, now, &time_arg::time_zone(&zone)).map_err(|e| invalid(anyhow!("{flag} {e}")))
}

fn parse_now(arg: Option<&str>) -> anyhow::Result<Timestamp> {
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

/// Counters of one run. A record is a line of a file or an entry of the journal.
#[derive(Default)]
struct Report {
    records: u64,
    matched: u64,
    /// Matched a failregex through <F-NOFAIL> or <F-MLFGAINED>: not a failure, counted
    /// apart from `matched`.
    no_failure: u64,
    /// Matched a failregex, but no address was known for the failure (yet).
    hostless: u64,
    ignored: u64,
    missed: u64,
    other_program: u64,
    not_syslog: u64,
    too_long: u64,
    no_date: u64,
    /// The shape of the first line without a recognisable date ([`line_shape`]).
    undated_shape: Option<String>,
    /// File lines more than findtime older than the newest line so far (or than --now).
    too_old: u64,
    no_message: u64,
    /// Searches the backtracking engine gave up on (counted in `missed` when no other
    /// regex matched the line).
    backtracking_gave_up: u64,
    hostnames: u64,
    fail_hits: Vec<u64>,
    ignore_hits: BTreeMap<usize, u64>,
    /// Single addresses, and the networks of <SUBNET> failures.
    addresses: HashMap<IpNet, u64>,
    bans: HashMap<IpNet, (Timestamp, u64)>,
    ignored_addresses: u64,
    missed_samples: Vec<(u64, String)>,
}

/// One matched record on stdout: `line` for files, `entry` for the journal.
#[derive(Serialize)]
struct JsonMatch<'a> {
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

/// What the records come from.
enum Input {
    Lines { reader: Box<dyn Read>, name: String },
    Journal(JournalSource),
}

fn choose_input(args: &TestFilterArgs) -> anyhow::Result<Input> {
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
fn journal_matches(
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
enum Provenance {
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
enum JournalRender {
    Message,
    Syslog,
}

/// The state every record passes through, whatever its source.
struct Run<'f, W: Write> {
    report: Report,
    matcher: Matcher<'f>,
    tracker: Tracker,
    out: W,
    json: bool,
    verbose: bool,
    top: usize,
}

pub fn run(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<()> {
    let subject = resolve_filter(paths, args)?;
    let jail = load_jail(paths, args)?;
    let policy = resolve_policy(jail.as_ref(), args)?;
    let input = choose_input(args)?;

    let stdout = io::stdout();
    let mut run = Run {
        report: Report {
            fail_hits: vec![0; subject.filter.failregex_count()],
            ..Report::default()
        },
        matcher: subject.filter.matcher(),
        tracker: Tracker::new(policy.to_policy(&[])),
        out: BufWriter::with_capacity(64 << 10, stdout.lock()),
        json: args.json,
        verbose: args.verbose,
        top: args.top,
    };
    let provenance = match input {
        Input::Lines { reader, name } => {
            read_lines(&mut run, args, &subject, jail.as_ref(), reader, name)?
        }
        Input::Journal(source) => read_journal(&mut run, args, &subject, jail.as_ref(), source)?,
    };
    run.out.flush()?;
    let Run {
        mut report,
        out,
        matcher,
        ..
    } = run;
    drop(out);
    report.backtracking_gave_up = matcher.backtracking_gave_up();

    let summary = render_summary(&report, &subject, &provenance, &policy, args);
    if args.json {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}

fn read_lines<W: Write>(
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

fn read_journal<W: Write>(
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

/// Which record a match came from: a line number or an entry number (1-based).
#[derive(Clone, Copy)]
enum Record {
    Line(u64),
    Entry(u64),
}

impl<W: Write> Run<'_, W> {
    fn process(
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
fn line_shape(line: &[u8]) -> String {
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

fn render_summary(
    r: &Report,
    subject: &Subject,
    provenance: &Provenance,
    policy: &JailPolicy,
    args: &TestFilterArgs,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "Filter:  {}", subject.description);
    for note in &subject.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    let unit = match provenance {
        Provenance::Lines { name, format, .. } => {
            let format = match format {
                LineFormat::Syslog => "syslog lines, regexes see the message",
                LineFormat::Plain => "plain lines, regexes see the whole line",
                LineFormat::AfterDate => "regexes see the line without its date",
            };
            let _ = writeln!(s, "Source:  {name} ({format})");
            ("Lines:  ", "lines")
        }
        Provenance::Journal {
            source,
            matches,
            origin,
            render,
        } => {
            let source = match source {
                JournalSource::Files(files) if files.len() == 1 => {
                    format!("journal file {}", files[0].display())
                }
                other => other.to_string(),
            };
            let matches = if matches.is_empty() {
                origin.to_string()
            } else {
                format!("matches {} from {origin}", matches.join(" + "))
            };
            let seen = match render {
                JournalRender::Message => "regexes see MESSAGE",
                JournalRender::Syslog => "regexes see \"HOST IDENT[PID]: MESSAGE\"",
            };
            let _ = writeln!(s, "Source:  {source} ({matches}; {seen})");
            ("Entries:", "entries")
        }
    };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{} {} read: {} matched, {} ignored, {} missed",
        unit.0,
        thousands(r.records),
        thousands(r.matched),
        thousands(r.ignored),
        thousands(r.missed)
    );
    if r.no_failure > 0 {
        let _ = writeln!(
            s,
            "         {} more matched a failregex through <F-NOFAIL> or <F-MLFGAINED>, or counted with another line of their session (not failures)",
            thousands(r.no_failure)
        );
    }
    if r.hostless > 0 {
        let _ = writeln!(
            s,
            "         {} more matched a failregex but named no address{}",
            thousands(r.hostless),
            if subject.filter.is_multiline() {
                " (nor did an earlier line of the same <F-MLFID> session)"
            } else {
                ""
            }
        );
    }
    let mut reasons = Vec::new();
    if r.no_message > 0 {
        reasons.push(format!("{} without MESSAGE", thousands(r.no_message)));
    }
    if r.other_program > 0 {
        reasons.push(format!(
            "{} from other programs",
            thousands(r.other_program)
        ));
    }
    if r.not_syslog > 0 {
        reasons.push(format!("{} not in syslog form", thousands(r.not_syslog)));
    }
    if r.too_long > 0 {
        reasons.push(format!("{} too long", thousands(r.too_long)));
    }
    if r.too_old > 0 {
        reasons.push(format!(
            "{} older than the jail's findtime before the newest line (or --now)",
            thousands(r.too_old)
        ));
    }
    if !reasons.is_empty() {
        let _ = writeln!(s, "         missed before matching: {}", reasons.join(", "));
    }
    if r.backtracking_gave_up > 0 {
        let _ = writeln!(
            s,
            "         {} backtracking regex search(es) given up (line over {} bytes, or {} backtracks): no match",
            thousands(r.backtracking_gave_up),
            thousands(BACKTRACKING_MAX_LINE as u64),
            thousands(BACKTRACK_LIMIT as u64)
        );
    }
    if r.no_date > 0 {
        let _ = writeln!(
            s,
            "         {} {} had no recognisable date (counted at --now, as the daemon counts them when read)",
            thousands(r.no_date),
            unit.1
        );
        if let Some(shape) = r
            .undated_shape
            .as_ref()
            .filter(|_| r.no_date * 2 > r.records)
        {
            let _ = writeln!(
                s,
                "  note: most lines have no date banhound recognises; they look like `{shape}` \
                 (9 = a digit): give the filter a datepattern for them, or their failures \
                 count when read, not when they happened"
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Failregex hits:");
    for (i, hits) in r.fail_hits.iter().enumerate() {
        if *hits > 0 || args.verbose {
            let engine = if args.verbose {
                // How its lines count in their session, when that is not every time.
                let count = match subject.filter.counting(i) {
                    Counting::Always => String::new(),
                    other => format!("[count {}] ", other.name()),
                };
                format!("[{}] {count}", subject.filter.failregex_engine(i))
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "  #{i:<3} {:>12}  {engine}{}",
                thousands(*hits),
                subject.filter.failregex_source(i)
            );
        }
    }
    if args.verbose {
        if let Some(engine) = subject.filter.prefregex_engine() {
            let _ = writeln!(s, "  prefregex engine: {engine}");
        }
        for i in 0..subject.filter.ignoreregex_count() {
            let _ = writeln!(
                s,
                "  ignoreregex #{i} engine: {}",
                subject.filter.ignoreregex_engine(i)
            );
        }
    }
    if !r.ignore_hits.is_empty() {
        let _ = writeln!(s, "Ignoreregex hits:");
        for (i, hits) in &r.ignore_hits {
            let _ = writeln!(s, "  #{i:<3} {:>12}", thousands(*hits));
        }
    }
    match provenance {
        Provenance::Lines { preparer, .. } => {
            match &subject.datepattern {
                Some(p) => {
                    let _ = writeln!(
                        s,
                        "Date templates (the filter's datepattern {:?}):",
                        p.source()
                    );
                }
                None => {
                    let _ = writeln!(s, "Date templates:");
                }
            }
            let mut any_date = false;
            for (name, hits) in preparer.detector().hit_counts() {
                if hits > 0 {
                    any_date = true;
                    let _ = writeln!(s, "  {name:<12} {:>12}", thousands(hits));
                }
            }
            if !any_date {
                let _ = writeln!(s, "  (none)");
            }
        }
        Provenance::Journal { .. } => {
            let _ = writeln!(s, "Timestamps: from the journal");
        }
    }
    let _ = writeln!(s);

    let mut addrs: Vec<(&IpNet, &u64)> = r.addresses.iter().collect();
    addrs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let _ = writeln!(
        s,
        "Addresses: {} distinct{}",
        thousands(addrs.len() as u64),
        if addrs.len() > args.top {
            format!(" (the {} with most failures)", args.top)
        } else {
            String::new()
        }
    );
    for (ip, n) in addrs.iter().take(args.top) {
        let _ = writeln!(s, "  {:<40} {:>10}", display_target(ip), thousands(**n));
    }
    if r.hostnames > 0 {
        let _ = writeln!(
            s,
            "  {} failures named a host name instead of an address (never resolved, never banned)",
            thousands(r.hostnames)
        );
    }
    if r.ignored_addresses > 0 {
        let _ = writeln!(
            s,
            "  {} failures from loopback or ignoreip addresses (never banned)",
            thousands(r.ignored_addresses)
        );
    }
    let _ = writeln!(s);
    let mut bans: Vec<(&IpNet, &(Timestamp, u64))> = r.bans.iter().collect();
    bans.sort_by(|a, b| {
        b.1 .1
            .cmp(&a.1 .1)
            .then(a.1 .0.cmp(&b.1 .0))
            .then(a.0.cmp(b.0))
    });
    let total_bans: u64 = r.bans.values().map(|v| v.1).sum();
    let _ = writeln!(
        s,
        "Would ban (maxretry {} within {}, bantime {}{}): {} addresses, {} bans",
        policy.maxretry,
        format_duration(policy.findtime),
        policy.bantime,
        if policy.escalation.is_some() {
            ", escalating"
        } else {
            ""
        },
        thousands(bans.len() as u64),
        thousands(total_bans)
    );
    for (net, (first, count)) in bans.iter().take(args.top) {
        let shown = display_target(net);
        let _ = writeln!(
            s,
            "  {shown:<40} first at {}, {} ban{}",
            first.to_rfc3339(),
            count,
            if *count == 1 { "" } else { "s" }
        );
    }
    if args.verbose && !r.missed_samples.is_empty() {
        let _ = writeln!(s);
        let _ = writeln!(s, "Missed {} (first {}):", unit.1, r.missed_samples.len());
        for (n, text) in &r.missed_samples {
            let _ = writeln!(s, "  {n:>8}: {text}");
        }
    }
    s
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
