//! The shipped native filters (conf/filters/*.toml) against fail2ban's annotated sample logs
//! for the same services, read from Debian's installed fail2ban package at test time
//! (nothing of fail2ban is in this repository).
//!
//! A sample file annotates log lines with `# failJSON: {...}`: whether fail2ban's filter
//! finds a failure on the next line (`"match"`) and from which host. Here each annotated
//! line goes through the native filter the way the daemon reads a file (the filter's line
//! format), and the outcomes are compared: agreeing (same failure and host, or no failure
//! on both sides), missed (fail2ban finds one, banhound does not) or wrong (banhound finds
//! a failure fail2ban does not, or another host). Sections run under fail2ban options the
//! native filter has no equivalent for (`logtype`, `test.prefix-line`, a mode it lacks),
//! and cases with a `constraint`, are left out and counted as such.
//!
//! The figures are printed (`--nocapture`); the test fails on any wrong case, and when a
//! filter agrees on fewer cases than its floor below (what it reaches today: raise a floor
//! when a filter improves). The full walk of every stock filter is tests/fail2ban_samples.rs.

#[path = "support/shipped_filter.rs"]
mod shipped_filter;

use banhound::engine::address::parse_address;
use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{Host, Outcome};
use banhound::engine::prepare::{LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use serde_json::Value;
use shipped_filter::{ShippedFilter, BASE_MODE};
use std::path::{Path, PathBuf};

const SAMPLES: &str = "/usr/lib/python3/dist-packages/fail2ban/tests/files/logs";

/// (native filter, fail2ban sample file, cases it agrees on at least).
const PAIRS: &[(&str, &str, usize)] = &[
    ("apache-auth", "apache-auth", 40),
    ("asterisk", "asterisk", 25),
    ("courier", "courier-auth", 6),
    ("courier", "courier-smtp", 8),
    ("mysqld-auth", "mysqld-auth", 15),
    ("proftpd", "proftpd", 10),
    ("pure-ftpd", "pure-ftpd", 1),
    ("dropbear", "dropbear", 7),
    ("exim", "exim", 12),
    ("named-refused", "named-refused", 14),
    ("haproxy-http-auth", "haproxy-http-auth", 4),
    ("drupal-auth", "drupal-auth", 7),
    ("roundcube", "roundcube-auth", 13),
    ("vaultwarden", "bitwarden", 3),
    ("phpmyadmin", "phpmyadmin-syslog", 1),
    ("squid", "squid", 4),
    ("nginx-limit-req", "nginx-limit-req", 4),
    ("nginx-bad-request", "nginx-bad-request", 8),
    ("traefik-auth", "traefik-auth", 8),
    ("pam-generic", "pam-generic", 7),
    ("gitlab", "gitlab", 2),
    ("grafana", "grafana", 2),
    ("selinux-ssh", "selinux-ssh", 10),
    // fail2ban's sample is mongod's text log of before 4.4 (a failure on one line, the
    // address on the connection's last); the native filter reads the JSON log of 4.4 on, and
    // agrees on the lines that are no failure.
    ("mongodb-auth", "mongodb-auth", 8),
];

/// "Now" for year-less dates; the comparison does not look at times.
const NOW: Timestamp = Timestamp::from_secs(1_795_348_800);

#[derive(Default, Debug)]
struct Tally {
    agree: usize,
    missed: Vec<String>,
    wrong: Vec<String>,
    skipped: usize,
}

/// The native mode a `filterOptions` set runs under, or None when the native filter has
/// no equivalent for it.
fn native_mode(options: &Value, filter: &ShippedFilter) -> Option<String> {
    let object = options.as_object()?;
    if object.keys().any(|k| k != "mode") {
        return None;
    }
    let mode = object
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or(BASE_MODE);
    filter.modes.contains_key(mode).then(|| mode.to_string())
}

fn same_host(found: &Host<'_>, expected: &str) -> bool {
    match (found, parse_address(expected)) {
        (Host::Ip(ip), Some(want)) => *ip == want,
        (Host::Name(name), None) => *name == expected.as_bytes(),
        _ => false,
    }
}

fn compare(filter: &ShippedFilter, sample: &Path) -> Tally {
    let text = std::fs::read(sample).unwrap_or_else(|e| panic!("{}: {e}", sample.display()));
    let mut tally = Tally::default();
    // The native modes of the current section (None: a section left out).
    let mut modes: Vec<Option<String>> = vec![Some(BASE_MODE.to_string())];
    let mut pending: Option<Value> = None;
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let at = format!("{}:{}", sample.display(), i + 1);
        let line = String::from_utf8_lossy(raw);
        if let Some(options) = line.strip_prefix("# filterOptions:") {
            let options: Value = serde_json::from_str(options.trim())
                .unwrap_or_else(|e| panic!("{at}: filterOptions: {e}"));
            let sets = match options {
                Value::Array(sets) => sets,
                one => vec![one],
            };
            modes = sets.iter().map(|s| native_mode(s, filter)).collect();
            continue;
        }
        if let Some(json) = line.strip_prefix("# failJSON:") {
            pending = Some(
                serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{at}: failJSON: {e}")),
            );
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some(annotation) = pending.take() else {
            continue;
        };
        if annotation.get("constraint").is_some() {
            tally.skipped += modes.len();
            continue;
        }
        let expected = annotation["match"]
            .as_bool()
            .unwrap_or_else(|| panic!("{at}: failJSON without \"match\""));
        let host = annotation.get("host").and_then(Value::as_str);
        for mode in &modes {
            let Some(mode) = mode else {
                tally.skipped += 1;
                continue;
            };
            let def = &filter.modes[mode];
            let mut preparer =
                LinePreparer::new(DateDetector::new(Zone::Utc), def.format, &def.identifiers);
            let outcome = match preparer.prepare(raw, NOW) {
                Prepared::Message { message, .. } => def.filter.matcher().match_line(message),
                Prepared::OtherProgram | Prepared::NotSyslog => Outcome::Missed,
            };
            let case = format!("{at} [{mode}]: {line}");
            match (outcome, expected) {
                (Outcome::Failure(f), true) => match host {
                    Some(h) if !same_host(&f.host, h) => tally
                        .wrong
                        .push(format!("{case}\n    host {}, fail2ban {h}", f.host)),
                    _ => tally.agree += 1,
                },
                (Outcome::Failure(f), false) => tally
                    .wrong
                    .push(format!("{case}\n    host {}, fail2ban: no failure", f.host)),
                (_, true) => tally.missed.push(case),
                (_, false) => tally.agree += 1,
            }
        }
    }
    tally
}

fn samples_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(SAMPLES);
    if dir.join("sshd").is_file() {
        Some(dir)
    } else {
        eprintln!("SKIPPED: fail2ban's sample logs are not installed ({SAMPLES}); test.sh installs fail2ban");
        None
    }
}

#[test]
fn native_filters_agree_with_fail2ban_samples() {
    let Some(dir) = samples_dir() else { return };
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/filters");
    let (mut agree, mut cases) = (0, 0);
    let mut wrong = Vec::new();
    let mut below = Vec::new();
    println!("native filters on fail2ban's samples ({SAMPLES}):");
    for &(name, sample, floor) in PAIRS {
        let filter = ShippedFilter::load(name, &conf.join(format!("{name}.toml")));
        let tally = compare(&filter, &dir.join(sample));
        let total = tally.agree + tally.missed.len() + tally.wrong.len();
        println!(
            "  {name:<18} {sample:<18} {:>3}/{total:<3} agree, {} missed, {} wrong, {} left out",
            tally.agree,
            tally.missed.len(),
            tally.wrong.len(),
            tally.skipped
        );
        for m in &tally.missed {
            println!("    missed: {m}");
        }
        agree += tally.agree;
        cases += total;
        if tally.agree < floor {
            below.push(format!("{name} on {sample}: {} < {floor}", tally.agree));
        }
        wrong.extend(tally.wrong);
    }
    println!("  total: {agree}/{cases} cases agree");
    assert!(wrong.is_empty(), "wrong failures:\n{}", wrong.join("\n"));
    assert!(below.is_empty(), "below the floor:\n{}", below.join("\n"));
}
