//! Log injection: the hand-written hostile corpus (tests/fixtures/injection/NAME.corpus,
//! format in its README.md) run through every shipped filter (conf/filters/NAME.toml), the
//! way the daemon reads a journal entry and the way it reads a log file.
//!
//! Each corpus line is a message the real service writes, with the parts its client
//! controls filled with addresses, fixed tails ("port 22", "[preauth]", "rhost="), newlines
//! with a whole fake line behind them, carriage returns, ANSI sequences, tabs, NUL,
//! padding, bytes that are not UTF-8, and IPv6/IPv4-mapped forms. Its annotation names the
//! real peer (or none). A filter must find exactly that, in every mode and on both paths,
//! and never an address from the injected ranges.
//!
//! - journal path: MESSAGE as stored, given to the matcher as the daemon gives it;
//! - file path: the same entry as a syslog daemon writes it (rsyslog's default control
//!   character escaping, `DATE ` + the journal's `HOST IDENT[PID]: MESSAGE` rendering), or
//!   for plain-format filters as the service writes it itself (raw, so a newline makes
//!   several physical lines), read back by the production line reader and preparer.
//!
//! The number of hostile inputs tried is printed (run with `--nocapture` to see it).

mod common;
mod injection;

use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{Host, Outcome};
use banhound::engine::prepare::{LineFormat, LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use banhound::source::file::{Line, LineReader};
use banhound::source::journal::EntryView;
use injection::{
    corpus_path, injected, read_corpus, root, shipped_filters, unescape, Case, Expect, FileExpect,
    ShippedFilter, BASE_MODE,
};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

/// Every shipped filter needs at least this many corpus lines: a new filter without its
/// own hostile cases fails `every_shipped_filter_has_an_injection_corpus`.
const MIN_CASES_PER_FILTER: usize = 20;
/// The time of every file line: the syslog header written here, and the corpus's nginx lines.
const LINE_DATE: &str = "Nov 22 02:26:07";
const LINE_TIME: &str = "2026-11-22T02:26:07Z";
/// "Now" for the year of year-less dates.
const NOW: Timestamp = Timestamp::from_secs(1_795_348_800); // 2026-11-22T12:00:00Z
const HOSTNAME: &[u8] = b"web1";
/// Plain-format filters whose services write a date the date detector does not know yet
/// (Asterisk's and Vaultwarden's bracketed ISO date, Nextcloud's JSON "time", MongoDB's
/// JSON "$date", Grafana's logfmt `t=`; issue #15 section 1): their lines
/// are counted when read. For them the first line must give no date or the line's own,
/// never one from the client's text.
const DATE_NOT_DETECTED_YET: &[&str] = &[
    "asterisk",
    "grafana",
    "mongodb-auth",
    "nextcloud",
    "vaultwarden",
];
const PID: &[u8] = b"1234";

/// rsyslog's default `$EscapeControlCharactersOnReceive on`: each control character
/// (tab included) becomes `#` and three octal digits; other bytes pass unchanged.
fn rsyslog_escape(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    for &b in message {
        if b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("#{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// The bytes a log file holds for this entry, logged by process `pid`.
fn file_bytes(filter: &ShippedFilter, message: &[u8], pid: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    match filter.base().format {
        LineFormat::Syslog => {
            let escaped = rsyslog_escape(message);
            let entry = EntryView {
                timestamp: NOW,
                message: &escaped,
                hostname: Some(HOSTNAME),
                syslog_identifier: Some(filter.ident()),
                comm: None,
                pid: Some(pid),
            };
            let mut rendered = Vec::new();
            entry.render_syslog(&mut rendered);
            bytes.extend_from_slice(LINE_DATE.as_bytes());
            bytes.push(b' ');
            bytes.extend_from_slice(&rendered);
        }
        LineFormat::Plain | LineFormat::AfterDate => bytes.extend_from_slice(message),
    }
    bytes.push(b'\n');
    bytes
}

/// The file's physical lines, split by the production line reader.
fn physical_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut reader = LineReader::new(bytes);
    let mut lines = Vec::new();
    while let Some(line) = reader.next_line().unwrap() {
        match line {
            Line::Text(t) => lines.push(t.to_vec()),
            Line::TooLong(n) => panic!("corpus line of {n} bytes is over the reader's limit"),
        }
    }
    lines
}

/// The address of a failure, or None for any other outcome. A failure naming a host name
/// (never banned) or a network is reported as a test failure: no corpus line expects one.
fn failure_address(outcome: Outcome<'_>, at: &str) -> Option<IpAddr> {
    match outcome {
        Outcome::Failure(f) => match f.host {
            Host::Ip(ip) => Some(ip),
            Host::Name(n) => panic!("{at}: host name {:?} found", String::from_utf8_lossy(n)),
            Host::Net(net) => panic!("{at}: network {net} found (no shipped filter has <SUBNET>)"),
        },
        _ => None,
    }
}

fn check_found(found: &[IpAddr], want: Expect, context: &str) {
    for ip in found {
        assert!(!injected(*ip), "{context}: INJECTED address {ip} found");
    }
    let expected: Vec<IpAddr> = match want {
        Expect::Nothing => vec![],
        Expect::Peer(ip) => vec![ip],
    };
    assert_eq!(found, expected, "{context}: expected {want}");
}

/// How many inputs one filter's corpus gave, per path.
#[derive(Default)]
struct Tally {
    cases: usize,
    journal: usize,
    file_lines: usize,
    limits: Vec<String>,
}

fn run_corpus(filter: &ShippedFilter) -> Tally {
    let cases = read_corpus(&corpus_path(&filter.name));
    let mut tally = Tally {
        cases: cases.len(),
        ..Tally::default()
    };
    let base = filter.base();
    for case in &cases {
        if let Some(modes) = &case.modes {
            for m in modes {
                assert!(
                    filter.modes.contains_key(m),
                    "{}: unknown mode {m}",
                    case.at
                );
            }
        }
        let lines = physical_lines(&file_bytes(filter, &case.message, PID));
        let shown = String::from_utf8_lossy(&case.message);
        let shown: String = shown.chars().take(300).collect();
        for (mode, def) in &filter.modes {
            let mut matcher = def.filter.matcher();
            // Journal: MESSAGE as stored.
            let found: Vec<IpAddr> = failure_address(matcher.match_line(&case.message), &case.at)
                .into_iter()
                .collect();
            check_found(
                &found,
                case.in_mode(mode, case.journal),
                &format!(
                    "{} [{}, mode {mode}, journal]\n  {shown:?}",
                    case.at, filter.name
                ),
            );
            tally.journal += 1;

            // File: each physical line through the production preparer.
            let mut preparer =
                LinePreparer::new(DateDetector::new(Zone::Utc), base.format, &base.identifiers);
            let mut found = Vec::new();
            for (n, line) in lines.iter().enumerate() {
                let context = format!(
                    "{} [{}, mode {mode}, file line {}]\n  {:?}",
                    case.at,
                    filter.name,
                    n + 1,
                    String::from_utf8_lossy(line)
                        .chars()
                        .take(300)
                        .collect::<String>()
                );
                match preparer.prepare(line, NOW) {
                    Prepared::Message { time, message, .. } => {
                        if n == 0 {
                            // The line's own date: no date inside the client's text moves it.
                            // To the second: a template may keep the line's own fraction
                            // (Apache's `.123456`), which an injected date does not change.
                            let time = time.map(|t| Timestamp::from_secs(t.as_secs()).to_rfc3339());
                            if !(DATE_NOT_DETECTED_YET.contains(&filter.name.as_str())
                                && time.is_none())
                            {
                                assert_eq!(time.as_deref(), Some(LINE_TIME), "{context}: date");
                            }
                            if base.format == LineFormat::Syslog {
                                // The header is the service's: the message is given back whole.
                                assert_eq!(
                                    message,
                                    rsyslog_escape(&case.message),
                                    "{context}: syslog header misread"
                                );
                            }
                        }
                        found.extend(failure_address(matcher.match_line(message), &context));
                    }
                    other => assert!(n > 0, "{context}: the real line was not read: {other:?}"),
                }
                tally.file_lines += 1;
            }
            match case.file {
                FileExpect::Is(want) => check_found(
                    &found,
                    case.in_mode(mode, want),
                    &format!(
                        "{} [{}, mode {mode}, file]\n  {shown:?}",
                        case.at, filter.name
                    ),
                ),
                FileExpect::Limit => {
                    assert!(lines.len() > 1, "{}: file=limit without a newline", case.at);
                    tally.limits.push(format!(
                        "{} [{}, mode {mode}]: file gives {found:?}",
                        case.at, filter.name
                    ));
                }
            }
        }
    }
    tally
}

#[test]
fn every_shipped_filter_has_an_injection_corpus() {
    let filters = shipped_filters();
    let names: BTreeSet<&str> = filters.iter().map(|f| f.name.as_str()).collect();
    for filter in &filters {
        let path = corpus_path(&filter.name);
        assert!(
            path.is_file(),
            "{}: no corpus {}",
            filter.name,
            path.display()
        );
        let cases = read_corpus(&path);
        assert!(
            cases.len() >= MIN_CASES_PER_FILTER,
            "{}: {} injection cases, at least {MIN_CASES_PER_FILTER} wanted",
            filter.name,
            cases.len()
        );
        // Positives and negatives both: a filter that matches nothing would pass the rest.
        assert!(
            cases.iter().any(|c| c.journal != Expect::Nothing)
                && cases.iter().any(|c| c.journal == Expect::Nothing),
            "{}: corpus needs lines with and without a failure",
            filter.name
        );
    }
    for entry in std::fs::read_dir(root().join("tests/fixtures/injection")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "corpus") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert!(
                names.contains(stem.as_str()),
                "{}: no such shipped filter",
                path.display()
            );
        }
    }
}

#[test]
fn hostile_corpus_yields_only_the_real_peer() {
    let mut total_cases = 0;
    let mut total_inputs = 0;
    let mut limits = Vec::new();
    println!("log-injection corpus (tests/fixtures/injection):");
    for filter in shipped_filters() {
        let tally = run_corpus(&filter);
        println!(
            "  {:<16} {:>3} lines x {} mode(s): {} journal messages, {} file lines",
            filter.name,
            tally.cases,
            filter.modes.len(),
            tally.journal,
            tally.file_lines
        );
        total_cases += tally.cases;
        total_inputs += tally.journal + tally.file_lines;
        limits.extend(tally.limits);
    }
    println!("  total: {total_cases} corpus lines, {total_inputs} hostile inputs tried");
    for l in &limits {
        println!("  known file limit (forged line of its own): {l}");
    }
    assert!(total_inputs > total_cases);
}

#[test]
fn corpus_escapes_give_the_bytes_described() {
    let at = "unit";
    assert_eq!(
        unescape(r"a\nb\rc\td\e\0\\\x22\xff", at),
        b"a\nb\rc\td\x1b\0\\\x22\xff"
    );
    assert_eq!(unescape(r"\{3*ab}|\{2*\x41\n}", at), b"ababab|A\nA\n");
    assert_eq!(
        rsyslog_escape(b"a\nb\tc\x1bd\x7f\xff"),
        b"a#012b#011c#033d#177\xff"
    );
}

/// The sshd corpus through the real binary: `banhound test-filter sshd` over the file the
/// corpus makes, and over a journal file systemd-journal-remote wrote from the same
/// entries (MESSAGE stored raw, newlines and all). Normal mode, as `test-filter sshd` runs.
/// The sshd filter counts per process (`session = "process"`), and the cases are unrelated
/// messages: each is logged by a process of its own.
mod end_to_end {
    use super::*;
    use banhound::engine::filter::Counting;
    use common::{Export, T0};
    use serde_json::Value;

    /// The pid of the process that logs case `i`.
    fn pid(i: usize) -> Vec<u8> {
        (10_000 + i).to_string().into_bytes()
    }

    fn test_filter(dir: &Path, args: &[&str]) -> Vec<(u64, String)> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(root().join("conf"))
            .arg("--config-dir")
            .arg(&etc)
            .arg("test-filter")
            .args(args)
            .args([
                "--json",
                "--timezone",
                "UTC",
                "--now",
                "2026-11-22T12:00:00Z",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
                let record = v["line"].as_u64().or(v["entry"].as_u64()).unwrap();
                (record, v["host"].as_str().unwrap().to_string())
            })
            .collect()
    }

    /// (record number, peer) for every case that must give a failure in normal mode: a line
    /// the filter holds for the line that completes its try (`count = "unless-followed"`)
    /// gives none when it is all its process logs. `logged`: the message as the path gives
    /// it to the filter.
    fn expected(
        filter: &ShippedFilter,
        cases: &[Case],
        pick: impl Fn(&Case) -> Expect,
        logged: impl Fn(&[u8]) -> Vec<u8>,
    ) -> Vec<(u64, String)> {
        let base = &filter.base().filter;
        let mut matcher = base.matcher();
        cases
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.in_mode(BASE_MODE, pick(c)) {
                Expect::Peer(ip) => {
                    let held = matches!(matcher.match_line(&logged(&c.message)),
                        Outcome::Failure(f) if base.counting(f.regex) == Counting::UnlessFollowed);
                    (!held).then(|| (i as u64 + 1, ip.to_string()))
                }
                Expect::Nothing => None,
            })
            .collect()
    }

    fn sshd() -> (ShippedFilter, Vec<Case>) {
        let filter = ShippedFilter::load("sshd", &root().join("conf/filters/sshd.toml"));
        let cases = read_corpus(&corpus_path("sshd"));
        (filter, cases)
    }

    #[test]
    fn test_filter_on_the_corpus_as_a_file() {
        let (filter, cases) = sshd();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        let mut bytes = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let line = file_bytes(&filter, &case.message, &pid(i));
            // One physical line per case (rsyslog escapes newlines), so line N is case N.
            assert_eq!(physical_lines(&line).len(), 1, "{}", case.at);
            bytes.extend_from_slice(&line);
        }
        std::fs::write(&log, &bytes).unwrap();
        let found = test_filter(dir.path(), &["sshd", log.to_str().unwrap()]);
        for (_, host) in &found {
            assert!(!injected(host.parse().unwrap()), "injected {host} found");
        }
        let want = expected(
            &filter,
            &cases,
            |c| match c.file {
                FileExpect::Is(e) => e,
                FileExpect::Limit => panic!("{}: no file limit expected for sshd", c.at),
            },
            rsyslog_escape,
        );
        assert_eq!(found, want);
        println!(
            "test-filter sshd FILE: {} corpus lines, {} failures, all the real peer",
            cases.len(),
            found.len()
        );
    }

    #[test]
    fn test_filter_on_the_corpus_in_a_journal_file() {
        let (filter, cases) = sshd();
        let dir = tempfile::tempdir().unwrap();
        let mut export = Export::default();
        for (i, case) in cases.iter().enumerate() {
            export.entry(
                T0 + i as i64 * 1_000_000,
                &[
                    ("_SYSTEMD_UNIT", b"ssh.service"),
                    ("_COMM", b"sshd-session"),
                    ("SYSLOG_IDENTIFIER", b"sshd-session"),
                    ("_PID", &pid(i)),
                    ("_HOSTNAME", HOSTNAME),
                    ("MESSAGE", &case.message),
                ],
            );
        }
        let journal = export.write_journal(dir.path(), "hostile");
        let found = test_filter(
            dir.path(),
            &["sshd", "--journal-file", journal.to_str().unwrap()],
        );
        for (_, host) in &found {
            assert!(!injected(host.parse().unwrap()), "injected {host} found");
        }
        assert_eq!(
            found,
            expected(&filter, &cases, |c| c.journal, <[u8]>::to_vec)
        );
        println!(
            "test-filter sshd --journal-file: {} entries, {} failures, all the real peer",
            cases.len(),
            found.len()
        );
    }
}
