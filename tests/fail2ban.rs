//! fail2ban's own filters, as installed (`/etc/fail2ban`, Debian's fail2ban package), run
//! under banhound: every stock filter must load; the stock sshd.conf must find what the
//! hand-written, annotated sample log says in each of its modes, multi-line sessions
//! included, and so must slapd.conf (a `maxlines` window) and squid.conf (a `datepattern`);
//! and on the same samples banhound's failures must be fail2ban-regex's, address and time.
//!
//! The filters are read from the installed package at test time; nothing of fail2ban is in
//! this repository. Without fail2ban installed these tests say so and pass (test.sh
//! installs it).

use banhound::config::fail2ban::{self, FilterReference};
use banhound::engine::datetime::{DateDetector, Zone};
use banhound::engine::filter::{EngineKind, Outcome};
use banhound::engine::multiline::SourceState;
use banhound::engine::prepare::{LinePreparer, Prepared};
use banhound::engine::time::Timestamp;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod common;

const FAIL2BAN_DIR: &str = "/etc/fail2ban";

fn installed() -> Option<PathBuf> {
    let dir = Path::new(FAIL2BAN_DIR);
    if dir.join("filter.d/sshd.conf").is_file() {
        Some(dir.to_path_buf())
    } else {
        eprintln!("SKIPPED: fail2ban is not installed ({FAIL2BAN_DIR}/filter.d/sshd.conf missing); test.sh installs it");
        None
    }
}

#[test]
fn every_stock_filter_loads() {
    let Some(dir) = installed() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("filter.d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let (mut loaded, mut libraries) = (0, Vec::new());
    let mut backtracking = Vec::new();
    let mut notes = 0;
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let f = match fail2ban::load(path, &BTreeMap::new()) {
            Ok(f) => f,
            Err(fail2ban::Fail2banFilterError::NoDefinition(_)) => {
                libraries.push(name);
                continue;
            }
            // Shared parts (selinux-common.conf) need a value their includer provides.
            Err(e) if name.ends_with("-common") => {
                eprintln!("include-only {name}: {e}");
                libraries.push(name);
                continue;
            }
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        // Files with no failregex are included by others (common.conf, apache-common.conf).
        if f.spec.failregex.is_empty() {
            libraries.push(name);
            continue;
        }
        match f.to_definition(&name) {
            Ok(def) => {
                loaded += 1;
                notes += usize::from(!f.notes.is_empty());
                let n = (0..def.filter.failregex_count())
                    .filter(|&i| def.filter.failregex_engine(i) == EngineKind::Backtracking)
                    .count();
                let pref = def.filter.prefregex_engine() == Some(EngineKind::Backtracking);
                let ign = (0..def.filter.ignoreregex_count())
                    .filter(|&i| def.filter.ignoreregex_engine(i) == EngineKind::Backtracking)
                    .count();
                if n + ign > 0 || pref {
                    backtracking.push(format!(
                        "{name} ({n}/{} failregex{}{})",
                        def.filter.failregex_count(),
                        if pref { ", prefregex" } else { "" },
                        if ign > 0 {
                            format!(", {ign} ignoreregex")
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "{} files: {loaded} filters loaded, {} include-only ({}), {notes} with notes on unsupported settings",
        files.len(),
        libraries.len(),
        libraries.join(", ")
    );
    eprintln!(
        "{} need the backtracking engine: {}",
        backtracking.len(),
        backtracking.join("; ")
    );
    assert!(
        failures.is_empty(),
        "filters that failed:\n{}",
        failures.join("\n")
    );
    assert!(loaded > 50, "only {loaded} filters loaded");
    assert!(backtracking.iter().any(|b| b.starts_with("sshd ")));
}

/// One annotated line of the sample log.
struct Expected {
    line: String,
    modes: Vec<String>,
    address: Option<String>,
    time: Option<String>,
}

fn sample(name: &str) -> Vec<Expected> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fail2ban")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut pending: Option<(Vec<String>, Option<String>, Option<String>)> = None;
    for line in text.lines() {
        if let Some(a) = line.strip_prefix("#> ") {
            let parts: Vec<&str> = a.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad annotation {a:?}");
            let opt = |s: &str| (s != "-").then(|| s.to_string());
            let modes = match parts[0] {
                "-" => Vec::new(),
                m => m.split(',').map(str::to_string).collect(),
            };
            pending = Some((modes, opt(parts[1]), opt(parts[2])));
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (modes, address, time) = pending.take().expect("log line without annotation");
            out.push(Expected {
                line: line.to_string(),
                modes,
                address,
                time,
            });
        }
    }
    out
}

/// The failures banhound finds in a sample log with a fail2ban filter, as (sample line,
/// address, time): the lines go through the filter's date handling (its `datepattern`) and
/// one multi-line state, in order, as a log file's lines do in the daemon.
struct Run {
    failures: Vec<(usize, String, Option<Timestamp>)>,
    /// Lines a failregex matched as failures, with or without a known address (what
    /// fail2ban-regex counts as "matched" for single-line filters).
    failure_lines: usize,
    maxlines: usize,
}

fn run_filter(dir: &Path, reference: &str, lines: &[Expected], now: Timestamp) -> Run {
    let reference = FilterReference::parse(reference).unwrap();
    let loaded = fail2ban::load_by_reference(dir, &reference).unwrap();
    let def = loaded.to_definition(&reference.name).unwrap();
    let mut matcher = def.filter.matcher();
    let mut state = SourceState::new();
    let detector = DateDetector::new(Zone::Utc).with_pattern(def.datepattern.clone());
    let mut preparer = LinePreparer::new(detector, def.format, &[]);
    let mut run = Run {
        failures: Vec::new(),
        failure_lines: 0,
        maxlines: def.filter.maxlines(),
    };
    let mut last_time = now;
    for (n, e) in lines.iter().enumerate() {
        let Prepared::Message {
            time,
            message,
            origin,
            ..
        } = preparer.prepare(e.line.as_bytes(), now)
        else {
            panic!("line {n} not prepared: {}", e.line);
        };
        last_time = time.unwrap_or(last_time);
        match matcher.match_record(&mut state, message, origin, last_time) {
            Outcome::Failure(f) => {
                run.failures.push((n, f.host.to_string(), time));
                run.failure_lines += 1;
            }
            Outcome::Hostless { .. } => run.failure_lines += 1,
            _ => {}
        }
    }
    run
}

/// Checks a filter against the annotations of a sample log, in each mode.
fn check_annotations(dir: &Path, filter: &str, sample_name: &str, modes: &[&str]) {
    let lines = sample(sample_name);
    let now = Timestamp::from_secs(1_795_000_000); // 2026-11-18, for the year of syslog dates
    for mode in modes {
        let reference = if *mode == "normal" && filter != "sshd" {
            filter.to_string()
        } else {
            format!("{filter}[mode={mode}]")
        };
        let run = run_filter(dir, &reference, &lines, now);
        let got: Vec<(usize, String, Option<String>)> = run
            .failures
            .iter()
            .map(|(n, host, time)| (*n, host.clone(), time.map(Timestamp::to_rfc3339)))
            .collect();
        let want: Vec<(usize, String, Option<String>)> = lines
            .iter()
            .enumerate()
            .filter(|(_, e)| e.modes.iter().any(|m| m == mode))
            .map(|(n, e)| (n, e.address.clone().unwrap(), e.time.clone()))
            .collect();
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                g,
                w,
                "{reference}: sample line {}: {}",
                w.0 + 1,
                lines[w.0].line
            );
        }
        assert_eq!(
            got, want,
            "{reference}: failures differ from the annotations"
        );
        eprintln!(
            "{reference}: {} failures in {} lines of {sample_name}, as annotated",
            got.len(),
            lines.len()
        );
    }
}

#[test]
fn stock_sshd_in_every_mode_finds_the_annotated_failures() {
    let Some(dir) = installed() else { return };
    assert!(sample("sshd.log").len() >= 40);
    check_annotations(&dir, "sshd", "sshd.log", &SSHD_MODES);
}

/// slapd.conf: a window of 20 lines, `<SKIPLINES>` and backreferences.
#[test]
fn stock_slapd_matches_across_lines() {
    let Some(dir) = installed() else { return };
    check_annotations(&dir, "slapd", "slapd.log", &["normal"]);
}

/// squid.conf: the date is Unix seconds (`datepattern = {^LN-BEG}Epoch`), and the regexes
/// expect the blanks after it.
#[test]
fn stock_squid_reads_its_datepattern() {
    let Some(dir) = installed() else { return };
    check_annotations(&dir, "squid", "squid.log", &["normal"]);
}

const SSHD_MODES: [&str; 4] = ["normal", "ddos", "extra", "aggressive"];

/// What fail2ban-regex makes of a log with a filter: its failures (address, whole seconds)
/// and its count of matched lines.
fn fail2ban_regex(log: &Path, reference: &str) -> (Vec<(String, i64)>, usize) {
    let run = |extra: &[&str]| {
        let out = std::process::Command::new("fail2ban-regex")
            .args(["--timezone", "UTC"])
            .args(extra)
            .arg(log)
            .arg(reference)
            .output()
            .expect("fail2ban-regex runs");
        assert!(
            out.status.success(),
            "fail2ban-regex {reference}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // `-o row`: one `['ADDRESS',<TAB>EPOCH,<TAB>{...}],` per failure.
    let failures = run(&["-o", "row"])
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("['")?;
            let (address, rest) = rest.split_once("',")?;
            let time = rest.trim_start().split(',').next()?;
            let secs = time.parse::<f64>().ok()?.floor() as i64;
            Some((address.to_string(), secs))
        })
        .collect();
    let summary = run(&["--print-no-missed", "--print-no-ignored"]);
    let matched = summary
        .lines()
        .find(|l| l.starts_with("Lines: "))
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" matched")))
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("fail2ban-regex summary line");
    (failures, matched)
}

/// banhound and fail2ban-regex (Debian's fail2ban, when installed) agree on every failure
/// (address and time) of the sample logs, in every sshd mode, multi-line cases included.
#[test]
fn stock_filters_agree_with_fail2ban_regex() {
    let Some(dir) = installed() else { return };
    if std::process::Command::new("fail2ban-regex")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: fail2ban-regex is not installed; test.sh installs it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // fail2ban-regex reads syslog dates in the current year: so does banhound here.
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now = Timestamp::from_secs(since_epoch.as_secs() as i64);
    let cases: Vec<(String, &str)> = SSHD_MODES
        .iter()
        .map(|m| (format!("sshd[mode={m}]"), "sshd.log"))
        .chain([
            ("slapd".to_string(), "slapd.log"),
            ("squid".to_string(), "squid.log"),
        ])
        .collect();
    for (reference, sample_name) in &cases {
        let lines = sample(sample_name);
        let log = tmp.path().join(sample_name);
        let text: String = lines.iter().map(|e| format!("{}\n", e.line)).collect();
        std::fs::write(&log, text).unwrap();
        let ours = run_filter(&dir, reference, &lines, now);
        let ours_failures: Vec<(String, i64)> = ours
            .failures
            .iter()
            .map(|(_, host, time)| {
                (
                    host.clone(),
                    time.expect("every sample line has a date").as_secs(),
                )
            })
            .collect();
        let (theirs, their_matched) = fail2ban_regex(&log, reference);
        assert_eq!(
            ours_failures, theirs,
            "{reference} on {sample_name}: failures differ (banhound, then fail2ban-regex)"
        );
        // With maxlines > 1, fail2ban-regex counts every line a multi-line match used
        // (slapd: the ACCEPT and the RESULT line); banhound counts the failures.
        if ours.maxlines == 1 {
            assert_eq!(
                ours.failure_lines, their_matched,
                "{reference} on {sample_name}: matched lines differ"
            );
        }
        eprintln!(
            "{reference} on {sample_name} ({} lines): banhound {} failures, {} lines matched; fail2ban-regex {} failures, {} lines matched",
            lines.len(),
            ours_failures.len(),
            ours.failure_lines,
            theirs.len(),
            their_matched
        );
    }
}

#[test]
fn publickey_parameter_changes_what_counts() {
    let Some(dir) = installed() else { return };
    let line =
        b"web1 sshd[1]: Failed publickey for alice from 203.0.113.17 port 1 ssh2: RSA SHA256:x";
    let outcome = |params: &str| {
        let r = FilterReference::parse(&format!("sshd[{params}]")).unwrap();
        let def = fail2ban::load_by_reference(&dir, &r)
            .unwrap()
            .to_definition("sshd")
            .unwrap();
        let mut m = def.filter.matcher();
        matches!(m.match_line(line), Outcome::Failure(_))
    };
    // Default (publickey=nofail): a failed key is how clients probe keys, not a failure.
    assert!(!outcome("mode=normal"));
    assert!(outcome("publickey=any"));
    assert!(!outcome("publickey=ignore"));
}

fn banhound(args: &[&str]) -> (bool, String) {
    banhound_in(Path::new("."), args)
}

fn banhound_in(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_banhound"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn import_writes_configuration_that_loads() {
    let Some(dir) = installed() else { return };
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("conf");
    let (ok, report) = banhound(&[
        "import-fail2ban",
        dir.to_str().unwrap(),
        "--all",
        "-o",
        target.to_str().unwrap(),
    ]);
    assert!(ok, "{report}");
    let (jails, _) = fail2ban::jail::load_jails(&dir).unwrap();
    assert!(
        report.contains(&format!(
            "The written configuration loads: {} jails.",
            jails.len()
        )),
        "{report}"
    );
    assert!(
        report.contains("[sshd] -> filter fail2ban:sshd[mode=normal]"),
        "{report}"
    );
    // The daemon's loader agrees, through the ordinary command.
    let none = out.path().join("no-defaults");
    let (ok, check) = banhound(&[
        "--config-dir",
        target.to_str().unwrap(),
        "--defaults-dir",
        none.to_str().unwrap(),
        "check-config",
    ]);
    assert!(ok, "{check}");
    assert!(check.contains("jail sshd ("), "{check}");
    // fail2ban's recidive reads fail2ban's own log; it becomes banhound's, and says so.
    assert!(
        report.contains("[recidive] -> banhound's own recidive filter"),
        "{report}"
    );
    let imported = std::fs::read_to_string(target.join("jail.d/fail2ban-import.toml")).unwrap();
    let recidive = imported.split("[jail.recidive]").nth(1).unwrap();
    let recidive = recidive.split("\n[jail.").next().unwrap();
    assert!(recidive.contains("filter = \"recidive\""), "{recidive}");
    assert!(!recidive.contains("fail2ban.log"), "{recidive}");
    // A relative fail2ban directory is written absolute.
    let relative = out.path().join("relative");
    let parent = dir.parent().unwrap();
    let (ok, report) = banhound_in(
        parent,
        &[
            "import-fail2ban",
            dir.file_name().unwrap().to_str().unwrap(),
            "-o",
            relative.to_str().unwrap(),
        ],
    );
    assert!(ok, "{report}");
    // (sshd, enabled in Debian's stock configuration, keeps its filter in fail2ban's
    // directory, so the directory is written.)
    let main = std::fs::read_to_string(relative.join("banhound.toml")).unwrap();
    assert!(
        main.contains(&format!("dir = \"{}\"", dir.display())),
        "{main}"
    );
    // A second import into the same place is refused rather than mixed in.
    let (again, msg) = banhound(&["import-fail2ban", "-o", target.to_str().unwrap()]);
    assert!(!again && msg.contains("exists"), "{msg}");
}

#[test]
fn test_filter_takes_fail2ban_names_and_files() {
    let Some(_) = installed() else { return };
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fail2ban/sshd.log");
    let log = log.to_str().unwrap();
    let (ok, out) = banhound(&[
        "test-filter",
        "sshd[mode=aggressive]",
        log,
        "--timezone",
        "UTC",
        "--verbose",
    ]);
    assert!(ok, "{out}");
    let annotated = |mode: &str| {
        sample("sshd.log")
            .iter()
            .filter(|e| e.modes.iter().any(|m| m == mode))
            .count()
    };
    let aggressive = format!("{} matched", annotated("aggressive"));
    assert!(out.contains(&aggressive), "{aggressive}: {out}");
    assert!(
        out.contains("[backtracking]") && out.contains("[linear]"),
        "{out}"
    );
    let (ok, out) = banhound(&[
        "test-filter",
        "/etc/fail2ban/filter.d/sshd.conf",
        log,
        "--timezone",
        "UTC",
    ]);
    assert!(ok, "{out}");
    let normal = format!("{} matched", annotated("normal"));
    assert!(out.contains(&normal), "{normal}: {out}");
    let (ok, out) = banhound(&["test-filter", "fail2ban:no-such-filter[mode=x]", log]);
    assert!(!ok && out.contains("no fail2ban filter"), "{out}");
}

#[test]
fn jails_refer_to_fail2ban_filters_by_name() {
    let Some(dir) = installed() else { return };
    let conf = tempfile::tempdir().unwrap();
    let main = conf.path().join("banhound.toml");
    let jail = "[jail.ssh-hard]\nenabled = true\nfilter = \"fail2ban:sshd[publickey=any]\"\nmode = \"aggressive\"\n";
    std::fs::write(&main, jail).unwrap();
    let none = conf.path().join("none");
    let args = |m: &Path| {
        vec![
            "--config".to_string(),
            m.display().to_string(),
            "--defaults-dir".to_string(),
            none.display().to_string(),
            "check-config".to_string(),
        ]
    };
    let run = |m: &Path| {
        let a = args(m);
        banhound(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (ok, out) = run(&main);
    assert!(!ok && out.contains("[fail2ban] dir"), "{out}");
    std::fs::write(
        &main,
        format!("[fail2ban]\ndir = {:?}\n{jail}", dir.display().to_string()),
    )
    .unwrap();
    let (ok, out) = run(&main);
    assert!(ok, "{out}");
    // The filter's journalmatch became the jail's source.
    assert!(
        out.contains("journal _SYSTEMD_UNIT=sshd.service + _COMM=sshd"),
        "{out}"
    );
}

/// On the journal, a fail2ban filter sees entries as `HOST IDENT[PID]: MESSAGE` and reads
/// the entries its journalmatch selects (sshd.conf: _SYSTEMD_UNIT=sshd.service + _COMM=sshd).
#[test]
fn stock_sshd_on_a_journal_file() {
    let Some(_) = installed() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut e = common::Export::default();
    let entries: [(&[u8], &[u8], &[u8]); 4] = [
        (
            b"sshd.service",
            b"sshd",
            b"Failed password for root from 192.0.2.50 port 22 ssh2",
        ),
        (
            b"ssh.service",
            b"sshd",
            b"Invalid user oracle from 192.0.2.51 port 4000",
        ),
        (
            b"cron.service",
            b"cron",
            b"Failed password for root from 192.0.2.52 port 22 ssh2",
        ),
        (
            b"sshd.service",
            b"sshd",
            b"Connection closed by 192.0.2.53 port 22 [preauth]",
        ),
    ];
    for (i, (unit, comm, msg)) in entries.iter().enumerate() {
        // One sshd process per connection: sshd.conf joins the lines of one process.
        let pid = format!("{}", 77 + i);
        e.entry(
            common::T0 + i as i64 * 1_000_000,
            &[
                ("_SYSTEMD_UNIT", unit),
                ("_COMM", comm),
                ("SYSLOG_IDENTIFIER", comm),
                ("_PID", pid.as_bytes()),
                ("_HOSTNAME", b"web1"),
                ("MESSAGE", msg),
            ],
        );
    }
    let journal = e.write_journal(dir.path(), "f2b");
    let journal = journal.to_str().unwrap();
    let (ok, out) = banhound(&[
        "test-filter",
        "fail2ban:sshd",
        "--journal-file",
        journal,
        "--json",
    ]);
    assert!(ok, "{out}");
    // The cron entry is not selected; the ssh.service one is, through _COMM=sshd; the
    // closed connection is a <F-NOFAIL> match in normal mode.
    assert!(out.contains("Entries: 3 read: 2 matched"), "{out}");
    assert!(
        out.contains("\"host\":\"192.0.2.50\"") && out.contains("\"host\":\"192.0.2.51\""),
        "{out}"
    );
    assert!(!out.contains("192.0.2.52"), "{out}");
    let (ok, out) = banhound(&[
        "test-filter",
        "fail2ban:sshd[mode=ddos]",
        "--journal-file",
        journal,
    ]);
    assert!(ok && out.contains("3 matched"), "{out}");
}
