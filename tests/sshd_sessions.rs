//! What `maxretry` counts with the shipped sshd filter: authentication tries, not lines.
//!
//! One wrong password with OpenSSH and PAM logs three lines the filter reads (pam_unix's
//! failure, sshd's `Failed password`, the close); counted one each, an admin was banned by
//! maxretry 5 during the second typo. The scenarios in tests/fixtures/sessions (format in
//! its README.md) say which line of each try is the failure and which addresses are
//! banned. Each runs through the real binary, `banhound test-filter sshd --jail sshd`, as
//! the syslog file it is and as journal entries in a file written by systemd-journal-remote
//! (the daemon's path: sessions by `_PID` and `_HOSTNAME`), in every mode of the filter: the
//! extra lines of `aggressive` and `ddos` ("Failed none", "Received disconnect ...:11:")
//! are the same tries and count nothing more. Needs /lib/systemd/systemd-journal-remote.

mod common;

use common::Export;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fixtures' dates are on this day (year from `--now`).
const NOW: &str = "2026-11-22T12:00:00Z";
/// 2026-11-22T00:00:00Z.
const MIDNIGHT: i64 = 1_795_305_600;
/// Only ever inside attacker-chosen user names.
const INJECTED_PREFIX: &str = "203.0.113.";
const JAIL: &str = "[jail.sshd]\nenabled = true\nmaxretry = 5\nfindtime = \"10m\"\n";
const MAXRETRY: usize = 5;
const MODES: [&str; 3] = ["normal", "aggressive", "ddos"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One log line of a scenario and the address it must be a failure of, if any.
struct Line {
    at: String,
    text: String,
    failure: Option<String>,
}

struct Scenario {
    name: String,
    lines: Vec<Line>,
    bans: Vec<String>,
}

fn read_scenario(path: &Path) -> Scenario {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut bans = None;
    let mut pending = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        if let Some(list) = line.strip_prefix("#= bans ") {
            bans = Some(match list.trim() {
                "none" => Vec::new(),
                list => list.split_whitespace().map(str::to_string).collect(),
            });
        } else if let Some(addr) = line.strip_prefix("#> ") {
            assert!(pending.is_none(), "{at}: two annotations in a row");
            assert!(!addr.starts_with(INJECTED_PREFIX), "{at}: injected address");
            pending = Some(addr.trim().to_string());
        } else if line.starts_with('#') || line.trim().is_empty() {
            assert!(pending.is_none(), "{at}: annotation not followed by a line");
        } else {
            lines.push(Line {
                at,
                text: line.to_string(),
                failure: pending.take(),
            });
        }
    }
    assert!(pending.is_none(), "{}: dangling annotation", path.display());
    Scenario {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        lines,
        bans: bans.unwrap_or_else(|| panic!("{}: no #= bans line", path.display())),
    }
}

fn scenarios() -> Vec<Scenario> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/sessions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 7, "scenarios missing: {paths:?}");
    paths.iter().map(|p| read_scenario(p)).collect()
}

/// `Nov 22 HH:MM:SS HOST sshd[PID]: MESSAGE` taken apart: (seconds since the epoch, host,
/// pid, message).
fn split_syslog(line: &Line) -> (i64, &str, &str, &str) {
    let clock = line
        .text
        .get(7..15)
        .unwrap_or_else(|| panic!("{}", line.at));
    let hms: Vec<i64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    let rest = &line.text[16..];
    let (host, rest) = rest.split_once(' ').unwrap();
    let (tag, message) = rest.split_once(": ").unwrap();
    let pid = tag
        .strip_prefix("sshd[")
        .and_then(|p| p.strip_suffix(']'))
        .unwrap_or_else(|| panic!("{}: not an sshd[PID] line", line.at));
    (
        MIDNIGHT + hms[0] * 3600 + hms[1] * 60 + hms[2],
        host,
        pid,
        message,
    )
}

fn rfc3339(secs: i64) -> String {
    let t = secs - MIDNIGHT;
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    format!("2026-11-22T{h:02}:{m:02}:{s:02}Z")
}

/// What test-filter found: (record number, host) per failure, and the bans it would
/// decide: address → time of the first.
struct Found {
    failures: Vec<(usize, String)>,
    bans: BTreeMap<String, String>,
}

fn test_filter(dir: &Path, input: &[&str], mode: &str) -> Found {
    let etc = dir.join("etc");
    std::fs::create_dir_all(etc.join("jail.d")).unwrap();
    std::fs::write(etc.join("jail.d/sshd.toml"), JAIL).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--defaults-dir")
        .arg(root().join("conf"))
        .arg("--config-dir")
        .arg(&etc)
        .args(["test-filter", "sshd"])
        .args(input)
        .args(["--mode", mode, "--jail", "sshd", "--json"])
        .args(["--timezone", "UTC", "--now", NOW])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{input:?}: {summary}");
    let failures = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let record = v["line"].as_u64().or(v["entry"].as_u64()).unwrap();
            (record as usize, v["host"].as_str().unwrap().to_string())
        })
        .collect();
    // "Would ban (...): N addresses, M bans" then "  ADDR   first at TIME, K ban(s)".
    let bans = summary
        .lines()
        .skip_while(|l| !l.starts_with("Would ban ("))
        .skip(1)
        .map_while(|l| {
            let (addr, rest) = l.strip_prefix("  ")?.split_once(' ')?;
            let first = rest.trim_start().strip_prefix("first at ")?;
            Some((addr.to_string(), first.split(',').next()?.to_string()))
        })
        .collect();
    assert!(
        summary.contains("maxretry 5 within 10m") && summary.contains(&format!("(mode {mode})")),
        "the jail's settings or the mode were not used:\n{summary}"
    );
    Found { failures, bans }
}

/// Checks what one path found against the scenario: exactly the annotated lines are
/// failures (record numbers count only log lines), and each banned address is banned at
/// the line where it reached maxretry. The error says what differed.
fn check(scenario: &Scenario, path: &str, found: &Found) -> Result<(), String> {
    let want: Vec<(usize, String)> = scenario
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.failure.clone().map(|a| (i + 1, a)))
        .collect();
    let shown = |failures: &[(usize, String)]| {
        failures
            .iter()
            .map(|(n, a)| format!("  {a} <- {}", scenario.lines[n - 1].text))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if found.failures != want {
        return Err(format!(
            "{} ({path}): {} failures found:\n{}\n{} expected:\n{}",
            scenario.name,
            found.failures.len(),
            shown(&found.failures),
            want.len(),
            shown(&want)
        ));
    }
    let mut want_bans = BTreeMap::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, addr) in &want {
        let c = counts.entry(addr).or_default();
        *c += 1;
        if *c == MAXRETRY {
            let (secs, ..) = split_syslog(&scenario.lines[n - 1]);
            want_bans.insert(addr.clone(), rfc3339(secs));
        }
    }
    let listed: Vec<&String> = want_bans.keys().collect();
    let expected: Vec<&String> = scenario.bans.iter().collect();
    assert_eq!(
        listed, expected,
        "{}: the #= bans line disagrees with the annotations",
        scenario.name
    );
    if found.bans != want_bans {
        return Err(format!(
            "{} ({path}): bans {:?}, expected {want_bans:?}",
            scenario.name, found.bans
        ));
    }
    Ok(())
}

/// Runs every scenario through `run` in every mode and reports all that went wrong, not
/// only the first.
fn each_scenario(path: &str, run: impl Fn(&Scenario, &Path, &str) -> Found) {
    let mut errors = Vec::new();
    for scenario in scenarios() {
        for mode in MODES {
            let dir = tempfile::tempdir().unwrap();
            let found = run(&scenario, dir.path(), mode);
            if let Err(e) = check(&scenario, &format!("{path}, mode {mode}"), &found) {
                errors.push(e);
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n\n"));
}

#[test]
fn each_try_counts_once_in_a_syslog_file() {
    each_scenario("file", |scenario, dir, mode| {
        let log = dir.join("auth.log");
        let text: String = scenario
            .lines
            .iter()
            .map(|l| format!("{}\n", l.text))
            .collect();
        std::fs::write(&log, text).unwrap();
        test_filter(dir, &[log.to_str().unwrap()], mode)
    });
}

#[test]
fn each_try_counts_once_in_the_journal() {
    each_scenario("journal", |scenario, dir, mode| {
        let mut export = Export::default();
        for line in &scenario.lines {
            let (secs, host, pid, message) = split_syslog(line);
            // Entries of the same second keep their order: the journal file's sequence.
            export.entry(
                secs * 1_000_000,
                &[
                    ("_SYSTEMD_UNIT", b"ssh.service"),
                    ("_COMM", b"sshd"),
                    ("SYSLOG_IDENTIFIER", b"sshd"),
                    ("_PID", pid.as_bytes()),
                    ("_HOSTNAME", host.as_bytes()),
                    ("MESSAGE", message.as_bytes()),
                ],
            );
        }
        let journal = export.write_journal(dir, &scenario.name);
        test_filter(dir, &["--journal-file", journal.to_str().unwrap()], mode)
    });
}
