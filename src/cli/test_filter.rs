//! `banhound test-filter FILTER SOURCE`: the `fail2ban-regex` of banhound.
//!
//! Runs a filter over a file, stdin or one line, exactly as the daemon would (same line
//! preparation, same matcher, same tracker), and reports what it found: lines matched,
//! ignored and missed, hits per regex, the date formats seen, the addresses and which of
//! them a jail would ban. It streams: memory depends on the number of distinct addresses,
//! not on the size of the input.

use crate::cli::invalid;
use crate::config::{self, load_filter_file, ConfigPaths, JailPolicy};
use crate::engine::datetime::{DateDetector, Zone};
use crate::engine::filter::{Filter, FilterSpec, Host, Matcher, Outcome};
use crate::engine::prepare::{LineFormat, LinePreparer, Prepared};
use crate::engine::time::{format_duration, BanTime, Timestamp};
use crate::engine::tracker::{Tracker, Verdict};
use crate::source::file::{Line, LineReader};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use ipnet::IpNet;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufWriter, Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

#[derive(Debug, Args)]
pub struct TestFilterArgs {
    /// A filter name ("sshd"), a filter file, or a failregex with an address tag
    /// ('Failed password for .* from <HOST>').
    pub filter: String,
    /// A log file, "-" for standard input, or a single log line.
    pub source: String,
    /// Filter mode (e.g. "aggressive"); modes add regexes to the normal set.
    #[arg(long)]
    pub mode: Option<String>,
    /// How lines are split when FILTER is a regex: "plain" (the regex sees the whole line)
    /// or "syslog" (it sees the message after "DATE HOST IDENT[PID]: ").
    #[arg(long, value_parser = ["plain", "syslog"])]
    pub format: Option<String>,
    /// Decide bans with this jail's settings from the configuration (maxretry, findtime,
    /// bantime, ignoreip, escalation).
    #[arg(long)]
    pub jail: Option<String>,
    #[arg(long)]
    pub maxretry: Option<u32>,
    #[arg(long, value_parser = parse_duration_arg)]
    pub findtime: Option<Duration>,
    #[arg(long, value_parser = parse_bantime_arg)]
    pub bantime: Option<BanTime>,
    /// Time zone of dates that carry none: "local", "UTC", "+02:00", "Europe/Berlin".
    #[arg(long, default_value = "local")]
    pub timezone: String,
    /// The current time (RFC 3339), for the year of syslog dates; default: the clock.
    #[arg(long)]
    pub now: Option<String>,
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
}

fn resolve_filter(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<Subject> {
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
        });
    }
    let looks_like_name = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if arg.contains('/') && !arg.contains('<') || arg.ends_with(".toml") || looks_like_name {
        return Err(invalid(anyhow!(
            "no filter {arg:?}: not a filter file, and not a filter name (available: {}); a regex needs an address tag such as <HOST>",
            paths.filter_names().join(", ")
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
    })
}

fn resolve_policy(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<JailPolicy> {
    let mut policy = match &args.jail {
        Some(name) => {
            let settings = config::load(paths).map_err(invalid)?;
            let jail = settings.jails.into_iter().find(|j| &j.name == name);
            jail.ok_or_else(|| invalid(anyhow!("no jail {name:?} in the configuration")))?
                .policy
        }
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

fn parse_now(arg: Option<&str>) -> anyhow::Result<Timestamp> {
    match arg {
        None => {
            let since_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?;
            Ok(Timestamp::from_micros(since_epoch.as_micros() as i64))
        }
        Some(s) => {
            let mut d = DateDetector::new(Zone::Utc);
            match d.detect(s.as_bytes(), Timestamp::default()) {
                Some(found) if found.span == (0..s.len()) => Ok(found.timestamp),
                _ => Err(invalid(anyhow!(
                    "--now {s:?} is not an RFC 3339 time such as 2026-11-22T10:00:00Z"
                ))),
            }
        }
    }
}

/// Counters of one run.
#[derive(Default)]
struct Report {
    lines: u64,
    matched: u64,
    ignored: u64,
    missed: u64,
    other_program: u64,
    not_syslog: u64,
    too_long: u64,
    no_date: u64,
    hostnames: u64,
    fail_hits: Vec<u64>,
    ignore_hits: BTreeMap<usize, u64>,
    addresses: HashMap<IpAddr, u64>,
    bans: HashMap<IpNet, (Timestamp, u64)>,
    ignored_addresses: u64,
    missed_samples: Vec<(u64, String)>,
}

#[derive(Serialize)]
struct JsonMatch<'a> {
    line: u64,
    time: Option<String>,
    host: String,
    regex: usize,
    user: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<&'a str, Cow<'a, str>>,
}

pub fn run(paths: &ConfigPaths, args: &TestFilterArgs) -> anyhow::Result<()> {
    let subject = resolve_filter(paths, args)?;
    let policy = resolve_policy(paths, args)?;
    let zone = Zone::parse(&args.timezone)
        .map_err(|e| invalid(anyhow!("--timezone {:?}: {e}", args.timezone)))?;
    let now = parse_now(args.now.as_deref())?;

    let (input, source_name): (Box<dyn Read>, String) = if args.source == "-" {
        (Box::new(io::stdin().lock()), "standard input".into())
    } else if Path::new(&args.source).is_file() {
        let f = std::fs::File::open(&args.source)
            .with_context(|| format!("cannot open {}", args.source))?;
        (Box::new(f), args.source.clone())
    } else if args.source.starts_with('/') || args.source.starts_with("./") {
        bail!("no such file: {}", args.source);
    } else {
        (
            Box::new(io::Cursor::new(args.source.clone().into_bytes())),
            "the line given".into(),
        )
    };

    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    let mut report = Report {
        fail_hits: vec![0; subject.filter.failregex_count()],
        ..Report::default()
    };
    let mut tracker = Tracker::new(policy.to_policy(&[]));
    let mut preparer = LinePreparer::new(
        DateDetector::new(zone),
        subject.format,
        &subject.identifiers,
    );
    let mut matcher = subject.filter.matcher();
    let mut reader = LineReader::new(input);
    let mut last_time = None;
    while let Some(line) = reader
        .next_line()
        .with_context(|| format!("reading {source_name}"))?
    {
        report.lines += 1;
        let text = match line {
            Line::Text(t) => t,
            Line::TooLong(_) => {
                report.too_long += 1;
                report.missed += 1;
                continue;
            }
        };
        let (time, message) = match preparer.prepare(text, now) {
            Prepared::Message { time, message, .. } => (time, message),
            Prepared::OtherProgram => {
                report.other_program += 1;
                report.missed += 1;
                continue;
            }
            Prepared::NotSyslog => {
                report.not_syslog += 1;
                report.missed += 1;
                continue;
            }
        };
        let time = match time {
            Some(t) => {
                last_time = Some(t);
                Some(t)
            }
            None => {
                report.no_date += 1;
                None
            }
        };
        process(
            &mut report,
            &mut matcher,
            &mut tracker,
            &mut out,
            args,
            message,
            time,
            last_time.unwrap_or(now),
        )?;
    }
    out.flush()?;
    drop(out);

    let summary = render_summary(&report, &subject, &preparer, &policy, &source_name, args);
    if args.json {
        eprint!("{summary}");
    } else {
        print!("{summary}");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the loop's state, passed down rather than bundled
fn process(
    report: &mut Report,
    matcher: &mut Matcher<'_>,
    tracker: &mut Tracker,
    out: &mut impl Write,
    args: &TestFilterArgs,
    message: &[u8],
    time: Option<Timestamp>,
    effective_time: Timestamp,
) -> anyhow::Result<()> {
    match matcher.match_line(message) {
        Outcome::Missed => {
            report.missed += 1;
            if args.verbose && report.missed_samples.len() < args.top {
                report
                    .missed_samples
                    .push((report.lines, String::from_utf8_lossy(message).into_owned()));
            }
        }
        Outcome::Ignored { ignore, .. } => {
            report.ignored += 1;
            *report.ignore_hits.entry(ignore).or_default() += 1;
        }
        Outcome::Failure(failure) => {
            report.matched += 1;
            report.fail_hits[failure.regex] += 1;
            match failure.host {
                Host::Ip(ip) => {
                    *report.addresses.entry(ip).or_default() += 1;
                    match tracker.failure(ip, effective_time) {
                        Verdict::Ban(d) => {
                            let e = report.bans.entry(d.target).or_insert((d.at, 0));
                            e.1 += 1;
                        }
                        Verdict::Ignored(_) => report.ignored_addresses += 1,
                        Verdict::AlreadyBanned | Verdict::Counted { .. } => {}
                    }
                }
                Host::Name(_) => report.hostnames += 1,
            }
            if args.json {
                let record = JsonMatch {
                    line: report.lines,
                    time: time.map(Timestamp::to_rfc3339),
                    host: failure.host.to_string(),
                    regex: failure.regex,
                    user: failure.user.map(String::from_utf8_lossy),
                    fields: matcher
                        .fields(failure.regex, message)
                        .map(|(k, v)| (k, String::from_utf8_lossy(v)))
                        .collect(),
                };
                serde_json::to_writer(&mut *out, &record)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render_summary(
    r: &Report,
    subject: &Subject,
    preparer: &LinePreparer,
    policy: &JailPolicy,
    source: &str,
    args: &TestFilterArgs,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let format = match subject.format {
        LineFormat::Syslog => "syslog lines, regexes see the message",
        LineFormat::Plain => "plain lines, regexes see the whole line",
    };
    let _ = writeln!(s, "Filter:  {}", subject.description);
    let _ = writeln!(s, "Source:  {source} ({format})");
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "Lines:   {} read: {} matched, {} ignored, {} missed",
        thousands(r.lines),
        thousands(r.matched),
        thousands(r.ignored),
        thousands(r.missed)
    );
    let mut reasons = Vec::new();
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
    if !reasons.is_empty() {
        let _ = writeln!(s, "         missed before matching: {}", reasons.join(", "));
    }
    if r.no_date > 0 {
        let _ = writeln!(
            s,
            "         {} lines had no recognisable date (the previous line's time was used)",
            thousands(r.no_date)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Failregex hits:");
    for (i, hits) in r.fail_hits.iter().enumerate() {
        if *hits > 0 || args.verbose {
            let _ = writeln!(
                s,
                "  #{i:<3} {:>12}  {}",
                thousands(*hits),
                subject.filter.failregex_source(i)
            );
        }
    }
    if !r.ignore_hits.is_empty() {
        let _ = writeln!(s, "Ignoreregex hits:");
        for (i, hits) in &r.ignore_hits {
            let _ = writeln!(s, "  #{i:<3} {:>12}", thousands(*hits));
        }
    }
    let _ = writeln!(s, "Date templates:");
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
    let _ = writeln!(s);

    let mut addrs: Vec<(&IpAddr, &u64)> = r.addresses.iter().collect();
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
        let _ = writeln!(s, "  {:<40} {:>10}", ip.to_string(), thousands(**n));
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
        let shown = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.to_string()
        };
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
        let _ = writeln!(s, "Missed lines (first {}):", r.missed_samples.len());
        for (n, text) in &r.missed_samples {
            let _ = writeln!(s, "  {n:>8}: {text}");
        }
    }
    s
}
