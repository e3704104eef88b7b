//! banhound against fail2ban's own annotated sample logs: how often does it find what
//! fail2ban finds?
//!
//! Debian's fail2ban package ships, beside its filters, a sample log for each of them
//! (`fail2ban/tests/files/logs/NAME`) in which every log line is preceded by a
//! `# failJSON: {...}` comment saying whether the filter must match it and, if so, the
//! address, user and local time (in fail2ban's test zone, CET/CEST) it must report. Other
//! comments steer the run: `# filterOptions: {...}` or `[{...}, ...]` (the filter parameters
//! for the lines that follow: one filter instance per option set, so multi-line state carries
//! over between the lines of one set, `test.condition` skipping a block), `# fileOptions:`
//! (options merged into every later option set of the file), `# addFILE: "NAME"` (another
//! sample to read after this one) and a `constraint` in failJSON (the case applies only to
//! some option sets). This test reads those files from the installed package at run time,
//! walks them that way, and runs each line through the filter as banhound's daemon would:
//! the filter's date handling, then its matcher with one multi-line state per option set.
//! Lines of the journal log type (`logtype=journal`) carry no date and are matched at the
//! test's "now", as journal entries are.
//!
//! A case is one annotated line under one option set. It agrees when banhound finds a
//! failure exactly where the annotation says, with the same address and user. A false match
//! (a failure on a line marked as none, or a failure naming another address) would ban
//! somebody fail2ban would not, so any one fails the test; fewer agreeing cases than
//! [`AGREEMENT_FLOOR`] fail it too. Times are compared to the second. The figures per filter
//! and in total are printed (`cargo test --test fail2ban_samples -- --nocapture`) and kept in
//! docs/fail2ban-parity.md. Nothing of fail2ban is in this repository; without the package
//! the test says so and passes (test.sh installs it).

use banhound::config::fail2ban;
use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{Matcher, Outcome, SpanPath};
use banhound::engine::multiline::{Origin, SourceState};
use banhound::engine::prepare::{LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The least share of cases that must agree, in tenths of a percent. Raise it when
/// banhound agrees on more; it never goes down.
const AGREEMENT_FLOOR: u64 = 996;
/// The least share of matched cases with a time whose time must agree to the second, in
/// tenths of a percent.
const TIME_FLOOR: u64 = 1000;

/// fail2ban's test clock: 2005-08-14 12:00:00 CEST, the "now" of undated and journal lines
/// and of the year of year-less dates.
const TEST_NOW: i64 = 1_124_013_600;
/// fail2ban's test zone, as its test suite sets it (Europe/Zurich's rules of the time).
const TEST_ZONE: &str = "CET-1CEST-2,M3.5.0,M10.5.0";

/// Where the installed package keeps its sample logs.
struct Package {
    logs: PathBuf,
}

fn installed_package() -> Option<Package> {
    let listing = Command::new("dpkg")
        .args(["-L", "fail2ban"])
        .output()
        .ok()?;
    if !listing.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&listing.stdout);
    let logs = text
        .lines()
        .find(|l| l.ends_with("/tests/files/logs"))
        .map(PathBuf::from)?;
    Some(Package { logs })
}

/// One filter instance: a filter under one set of options.
struct OptionSet {
    filter: String,
    filter_file: PathBuf,
    /// Every option, `test.*` ones included (constraints read them).
    opts: Map<String, Value>,
}

impl OptionSet {
    fn opt(&self, key: &str) -> Option<&str> {
        self.opts.get(key).and_then(Value::as_str)
    }

    /// The filter parameters: the options without fail2ban's `test.` ones.
    fn params(&self) -> BTreeMap<String, String> {
        self.opts
            .iter()
            .filter(|(k, _)| !k.starts_with("test."))
            .map(|(k, v)| {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (k.clone(), v)
            })
            .collect()
    }

    fn is_journal(&self) -> bool {
        self.opt("logtype") == Some("journal")
    }
}

/// One annotated line under one option set.
struct Case {
    set: usize,
    place: String,
    line: Vec<u8>,
    expected: Map<String, Value>,
}

/// A `constraint` or `test.condition`: the few Python expressions the samples use
/// (`name == 'X'`, `opts.get('K') != 'V'`, joined by `and`). Anything else fails the test,
/// so a new kind of constraint is noticed rather than guessed at.
fn holds(expression: &str, filter: &str, opts: &Map<String, Value>) -> bool {
    expression.split(" and ").all(|term| {
        let (left, negated, right) = if let Some((l, r)) = term.split_once("!=") {
            (l, true, r)
        } else if let Some((l, r)) = term.split_once("==") {
            (l, false, r)
        } else {
            panic!("constraint {expression:?}: not a comparison");
        };
        let quoted = |s: &str| {
            let s = s.trim();
            s.strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .map(str::to_string)
        };
        let right = quoted(right).unwrap_or_else(|| panic!("constraint {expression:?}"));
        let left = left.trim();
        let value = if left == "name" {
            Some(filter.to_string())
        } else if let Some(key) = left
            .strip_prefix("opts.get(")
            .and_then(|s| s.strip_suffix(')'))
        {
            let key = quoted(key).unwrap_or_else(|| panic!("constraint {expression:?}"));
            opts.get(&key).and_then(Value::as_str).map(str::to_string)
        } else {
            panic!("constraint {expression:?}: unknown operand {left:?}")
        };
        (value.as_deref() == Some(right.as_str())) != negated
    })
}

/// The annotation of a comment line: `#`s, an optional blank, `KIND: JSON`.
fn annotation(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches('#');
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let (kind, json) = rest.split_once(':')?;
    ["failJSON", "fileOptions", "filterOptions", "addFILE"]
        .contains(&kind)
        .then_some((kind, json))
}

/// Walks the sample logs of `filter` as fail2ban's sample test does, adding its option
/// sets to `sets` and returning its cases.
fn walk(
    package: &Package,
    filter: &str,
    filter_file: &Path,
    sets: &mut Vec<OptionSet>,
) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut files = vec![filter.to_string()];
    let mut known: HashMap<String, usize> = HashMap::new();
    let mut register = |opts: Map<String, Value>, sets: &mut Vec<OptionSet>| -> usize {
        let key = match opts.get("test.filter-name").and_then(Value::as_str) {
            Some(name) => name.to_string(),
            None => Value::Object(
                opts.iter()
                    .filter(|(k, _)| !k.starts_with("test."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )
            .to_string(),
        };
        *known.entry(key).or_insert_with(|| {
            sets.push(OptionSet {
                filter: filter.to_string(),
                filter_file: filter_file.to_path_buf(),
                opts,
            });
            sets.len() - 1
        })
    };
    let mut active: Option<Vec<usize>> = None;
    let mut index = 0;
    while index < files.len() {
        let path = package.logs.join(&files[index]);
        index += 1;
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut common: Map<String, Value> = Map::new();
        let mut ignore_block = false;
        let mut lines = bytes.split(|&b| b == b'\n').enumerate().peekable();
        while let Some((n, raw)) = lines.next() {
            let text = String::from_utf8_lossy(raw);
            let text = text.trim_end_matches('\r');
            let (expected, line, number) = match annotation(text) {
                Some((kind, json)) => {
                    let data: Value = serde_json::from_str(json)
                        .unwrap_or_else(|e| panic!("{}:{}: {e}: {json}", path.display(), n + 1));
                    match kind {
                        "fileOptions" => {
                            common = data.as_object().cloned().unwrap_or_default();
                            continue;
                        }
                        "filterOptions" => {
                            let mut chosen = Vec::new();
                            ignore_block = false;
                            let list = match data {
                                Value::Array(list) => list,
                                one => vec![one],
                            };
                            for one in list {
                                let mut opts = common.clone();
                                opts.extend(one.as_object().cloned().unwrap_or_default());
                                if let Some(cond) =
                                    opts.get("test.condition").and_then(Value::as_str)
                                {
                                    ignore_block = !holds(cond, filter, &opts);
                                }
                                if !ignore_block {
                                    chosen.push(register(opts, sets));
                                }
                            }
                            active = Some(chosen);
                            continue;
                        }
                        "addFILE" => {
                            let name = data.as_str().expect("addFILE names a file");
                            files.push(name.to_string());
                            continue;
                        }
                        _ => {
                            let Some((m, next)) = lines.next() else { break };
                            (data.as_object().cloned().unwrap_or_default(), next, m)
                        }
                    }
                }
                None if ignore_block || text.starts_with('#') || text.trim().is_empty() => continue,
                None => (Map::new(), raw, n),
            };
            if ignore_block {
                continue;
            }
            let active = active.get_or_insert_with(|| vec![register(Map::new(), sets)]);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            for &set in active.iter() {
                let constraint = expected.get("constraint").and_then(Value::as_str);
                if constraint.is_some_and(|c| !holds(c, filter, &sets[set].opts)) {
                    continue;
                }
                cases.push(Case {
                    set,
                    place: format!("{}:{}", files[index - 1], number + 1),
                    line: line.to_vec(),
                    expected: expected.clone(),
                });
            }
        }
    }
    cases
}

/// What banhound made of a case's line.
struct Found {
    host: String,
    user: Option<String>,
    time: Timestamp,
}

/// One option set's filter, running: its matcher, multi-line state and line preparation.
struct Instance<'f> {
    matcher: Matcher<'f>,
    state: SourceState,
    preparer: LinePreparer,
    journal_prefix: Option<Vec<u8>>,
    last_time: Option<Timestamp>,
}

impl Instance<'_> {
    fn process(&mut self, line: &[u8], now: Timestamp) -> Option<Found> {
        let (message, origin, time): (Vec<u8>, Origin<'_>, Timestamp) =
            if let Some(prefix) = &self.journal_prefix {
                let mut message = prefix.clone();
                message.extend_from_slice(line);
                (message, Origin::default(), now)
            } else {
                match self.preparer.prepare(line, now) {
                    Prepared::Message { time, message, .. } => {
                        if time.is_some() {
                            self.last_time = time;
                        }
                        let at = time.or(self.last_time).unwrap_or(now);
                        (message.to_vec(), Origin::default(), at)
                    }
                    Prepared::OtherProgram | Prepared::NotSyslog => return None,
                }
            };
        match self
            .matcher
            .match_record(&mut self.state, &message, origin, time)
        {
            Outcome::Failure(f) => Some(Found {
                host: f.host.to_string(),
                user: f.user.map(|u| String::from_utf8_lossy(u).into_owned()),
                time,
            }),
            _ => None,
        }
    }
}

/// An address as text, compared as an address when it is one (fail2ban reports the text
/// it matched, banhound the parsed address).
fn same_host(found: &str, expected: &str) -> bool {
    match (found.parse::<IpAddr>(), expected.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => found.eq_ignore_ascii_case(expected),
    }
}

/// An annotation's local time in fail2ban's test zone, to whole seconds. Like Python's
/// `strptime`, which reads them, it takes fields without their leading zeros.
fn expected_secs(text: &str, zone: &TimeZone) -> i64 {
    let bad = || -> ! { panic!("annotated time {text:?}: not %Y-%m-%dT%H:%M:%S[.%f]") };
    let (date, time) = text.split_once('T').unwrap_or_else(|| bad());
    let time = time.split('.').next().unwrap_or_default();
    let numbers = |s: &str| -> Vec<i64> {
        s.split(['-', ':'])
            .map(|n| n.parse().unwrap_or_else(|_| bad()))
            .collect()
    };
    let (d, t) = (numbers(date), numbers(time));
    let [y, mo, da] = d[..] else { bad() };
    let [h, mi, se] = t[..] else { bad() };
    let field = |v: i64| i8::try_from(v).unwrap_or_else(|_| bad());
    let civil = jiff::civil::date(
        i16::try_from(y).unwrap_or_else(|_| bad()),
        field(mo),
        field(da),
    )
    .at(field(h), field(mi), field(se), 0);
    civil
        .to_zoned(zone.clone())
        .unwrap_or_else(|e| panic!("annotated time {text:?}: {e}"))
        .timestamp()
        .as_second()
}

#[derive(Default, Clone)]
struct Tally {
    cases: u64,
    agree: u64,
    missed: u64,
    false_matches: u64,
    wrong_user: u64,
    timed: u64,
    time_agrees: u64,
    unchecked_keys: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.cases += other.cases;
        self.agree += other.agree;
        self.missed += other.missed;
        self.false_matches += other.false_matches;
        self.wrong_user += other.wrong_user;
        self.timed += other.timed;
        self.time_agrees += other.time_agrees;
        self.unchecked_keys += other.unchecked_keys;
    }
}

fn per_mille(part: u64, whole: u64) -> u64 {
    (part * 1000).checked_div(whole).unwrap_or(1000)
}

/// Fails unless `part` of `whole` reaches `floor` tenths of a percent.
fn at_least(what: &str, part: u64, whole: u64, floor: u64) {
    assert!(
        per_mille(part, whole) >= floor,
        "{part}/{whole} {what}, below the floor of {}.{} %",
        floor / 10,
        floor % 10
    );
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "-".to_string();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

#[test]
fn banhound_agrees_with_fail2bans_annotated_samples() {
    let Some(package) = installed_package() else {
        eprintln!("SKIPPED: the fail2ban package is not installed (dpkg -L fail2ban); test.sh installs it");
        return;
    };
    let zone = TimeZone::posix(TEST_ZONE).expect("fail2ban's test zone");
    let now = Timestamp::from_secs(TEST_NOW);

    // The stock filters but their `-common` parts: what fail2ban's sample test covers,
    // without its test-only `zzz-` filters, which no installation uses.
    let mut filters: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir("/etc/fail2ban/filter.d").unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".conf"))
        else {
            continue;
        };
        if !name.ends_with("common") {
            filters.push((name.to_string(), path.clone()));
        }
    }
    filters.sort();

    let mut sets = Vec::new();
    let mut cases = Vec::new();
    let mut without_samples = Vec::new();
    for (name, path) in &filters {
        if !package.logs.join(name).is_file() {
            without_samples.push(name.clone());
            continue;
        }
        cases.extend(walk(&package, name, path, &mut sets));
    }

    let definitions: Vec<_> = sets
        .iter()
        .map(|set| {
            fail2ban::load(&set.filter_file, &set.params())
                .map_err(|e| e.to_string())
                .and_then(|f| f.to_definition(&set.filter).map_err(|e| e.to_string()))
        })
        .collect();
    let mut instances: Vec<Option<Instance<'_>>> = definitions
        .iter()
        .zip(&sets)
        .map(|(def, set)| {
            let def = def.as_ref().ok()?;
            let detector =
                DateDetector::new(Zone::Named(zone.clone())).with_pattern(def.datepattern.clone());
            Some(Instance {
                matcher: def.filter.matcher(),
                state: SourceState::new(),
                preparer: LinePreparer::new(detector, def.format, &[]),
                journal_prefix: set.is_journal().then(|| {
                    set.opt("test.prefix-line")
                        .unwrap_or_default()
                        .as_bytes()
                        .to_vec()
                }),
                last_time: None,
            })
        })
        .collect();
    for (set, def) in sets.iter().zip(&definitions) {
        if let Err(e) = def {
            eprintln!("{} {:?}: does not load: {e}", set.filter, set.params());
        }
    }

    // How the failregexes' spans are read (distinct per filter over all parameter sets).
    let mut paths: BTreeMap<SpanPath, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for (set, def) in sets.iter().zip(&definitions) {
        let Ok(def) = def else { continue };
        for i in 0..def.filter.failregex_count() {
            paths
                .entry(def.filter.failregex_spans(i))
                .or_default()
                .insert((set.filter.as_str(), def.filter.failregex_source(i)));
        }
    }
    let regexes: usize = paths.values().map(BTreeSet::len).sum();
    eprintln!("failregexes of the loaded filters (distinct per filter): {regexes}");
    for (path, set) in &paths {
        eprintln!("  {path}: {}", set.len());
    }

    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut false_matches = Vec::new();
    let mut disagreements = Vec::new();
    for case in &cases {
        let set = &sets[case.set];
        let tally = tallies.entry(set.filter.clone()).or_default();
        tally.cases += 1;
        let found = instances[case.set]
            .as_mut()
            .and_then(|i| i.process(&case.line, now));
        let want = case.expected.get("match").and_then(Value::as_bool) == Some(true);
        let what = || {
            format!(
                "{} {:?} {}: {}",
                set.filter,
                set.params(),
                case.place,
                String::from_utf8_lossy(&case.line)
            )
        };
        let Some(found) = found else {
            if want {
                tally.missed += 1;
                disagreements.push(format!("missed: {}", what()));
            } else {
                tally.agree += 1;
            }
            continue;
        };
        if !want {
            tally.false_matches += 1;
            false_matches.push(format!("matched {}: {}", found.host, what()));
            continue;
        }
        let host = case.expected.get("host").and_then(Value::as_str);
        if host.is_some_and(|h| !same_host(&found.host, h)) {
            tally.false_matches += 1;
            false_matches.push(format!(
                "address {} instead of {}: {}",
                found.host,
                host.unwrap_or_default(),
                what()
            ));
            continue;
        }
        if let Some(user) = case.expected.get("user") {
            if user.as_str() != found.user.as_deref() {
                tally.wrong_user += 1;
                disagreements.push(format!(
                    "user {:?} instead of {user}: {}",
                    found.user,
                    what()
                ));
                continue;
            }
        }
        tally.agree += 1;
        // What banhound's failure does not carry: the number of lines of a multi-line
        // failure, all users of a session, the name a host resolved to.
        if ["attempts", "users", "dns"]
            .iter()
            .any(|k| case.expected.contains_key(*k))
        {
            tally.unchecked_keys += 1;
        }
        if let Some(time) = case.expected.get("time").and_then(Value::as_str) {
            tally.timed += 1;
            let want = expected_secs(time, &zone);
            if found.time.as_secs() == want {
                tally.time_agrees += 1;
            } else {
                disagreements.push(format!(
                    "time {} instead of {}: {}",
                    found.time.to_rfc3339(),
                    Timestamp::from_secs(want).to_rfc3339(),
                    what()
                ));
            }
        }
    }

    let mut total = Tally::default();
    eprintln!("| filter | cases | agree | missed | false | wrong user | times to the second |");
    eprintln!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, t) in &tallies {
        total.add(t);
        eprintln!(
            "| {name} | {} | {} ({}) | {} | {} | {} | {}/{} |",
            t.cases,
            t.agree,
            percent(t.agree, t.cases),
            t.missed,
            t.false_matches,
            t.wrong_user,
            t.time_agrees,
            t.timed
        );
    }
    eprintln!(
        "| **total** | {} | {} ({}) | {} | {} | {} | {}/{} ({}) |",
        total.cases,
        total.agree,
        percent(total.agree, total.cases),
        total.missed,
        total.false_matches,
        total.wrong_user,
        total.time_agrees,
        total.timed,
        percent(total.time_agrees, total.timed)
    );
    eprintln!(
        "{} agreeing cases have keys not compared (attempts, users, dns); filters without a sample: {}",
        total.unchecked_keys,
        without_samples.join(", ")
    );
    for d in &disagreements {
        eprintln!("{d}");
    }
    assert!(total.cases > 1000, "only {} cases found", total.cases);
    assert!(
        false_matches.is_empty(),
        "false matches:\n{}",
        false_matches.join("\n")
    );
    at_least("cases agree", total.agree, total.cases, AGREEMENT_FLOOR);
    at_least(
        "times agree to the second",
        total.time_agrees,
        total.timed,
        TIME_FLOOR,
    );
}
