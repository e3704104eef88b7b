//! `banhound test-filter` on the journal, run as the real binary over journal files that
//! systemd-journal-remote wrote from export data made here, with the shipped sshd filter
//! (conf/filters/sshd.toml) and its journalmatch.
//!
//! Needs /lib/systemd/systemd-journal-remote (Debian 12). Everything lives in a temporary
//! directory removed on drop; no process outlives the command it ran.

mod common;

use banhound::engine::time::Timestamp;
use common::{Export, T0};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECOND: i64 = 1_000_000;

/// The sender's own time of entry 3 (`_SOURCE_REALTIME_TIMESTAMP`), half a second before
/// journald received it: the time a filter must see.
const SOURCE_TIME_3: i64 = T0 + 2 * SECOND - SECOND / 2;

/// Nine entries, one per second from T0 (receive time). The shipped sshd filter's
/// journalmatch selects 1, 3, 5, 6, 7, 8 and 9 (by _SYSTEMD_UNIT=ssh.service or by _COMM).
fn write_journal(dir: &Path) -> PathBuf {
    let source_time_3 = SOURCE_TIME_3.to_string();
    let mut e = Export::default();
    e.entry(
        T0,
        &[
            ("_SYSTEMD_UNIT", b"ssh.service"),
            ("_COMM", b"sshd-session"),
            ("SYSLOG_IDENTIFIER", b"sshd-session"),
            ("_PID", b"101"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Failed password for root from 192.0.2.1 port 22 ssh2",
            ),
        ],
    )
    .entry(
        T0 + SECOND,
        &[
            ("_SYSTEMD_UNIT", b"postfix@-.service"),
            ("_COMM", b"smtpd"),
            ("SYSLOG_IDENTIFIER", b"postfix/smtpd"),
            ("_HOSTNAME", b"web1"),
            ("MESSAGE", b"connect from unknown[198.51.100.3]"),
        ],
    )
    .entry(
        T0 + 2 * SECOND,
        &[
            ("_COMM", b"sshd"),
            ("SYSLOG_IDENTIFIER", b"sshd"),
            ("_HOSTNAME", b"web1"),
            ("_SOURCE_REALTIME_TIMESTAMP", source_time_3.as_bytes()),
            ("MESSAGE", b"Invalid user admin from 192.0.2.2 port 4242"),
        ],
    )
    // Another unit writing a line the sshd filter would match: never read by default.
    .entry(
        T0 + 3 * SECOND,
        &[
            ("_SYSTEMD_UNIT", b"cron.service"),
            ("_COMM", b"cron"),
            ("SYSLOG_IDENTIFIER", b"CRON"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Failed password for root from 203.0.113.50 port 22 ssh2",
            ),
        ],
    )
    .entry(
        T0 + 4 * SECOND,
        &[
            ("_COMM", b"sshd"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Failed password for \xff\xfeadm from 192.0.2.3 port 22 ssh2",
            ),
        ],
    )
    .entry(
        T0 + 5 * SECOND,
        &[
            ("_COMM", b"sshd"),
            ("_HOSTNAME", b"web1"),
            ("CODE_FUNC", b"no_message_here"),
        ],
    )
    // The user name is the attacker's: the address inside it must not be the one found.
    .entry(
        T0 + 6 * SECOND,
        &[
            ("_COMM", b"sshd-session"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Failed password for invalid user x from 198.51.100.66 port 22 ssh2 from 192.0.2.4 port 22 ssh2",
            ),
        ],
    )
    .entry(
        T0 + 7 * SECOND,
        &[
            ("_SYSTEMD_UNIT", b"ssh.service"),
            ("_COMM", b"sshd-other"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Connection closed by authenticating user root 192.0.2.1 port 5555 [preauth]",
            ),
        ],
    )
    .entry(
        T0 + 8 * SECOND,
        &[
            ("_COMM", b"sshd"),
            ("_HOSTNAME", b"web1"),
            (
                "MESSAGE",
                b"Accepted publickey for alice from 192.0.2.9 port 22 ssh2",
            ),
        ],
    );
    e.write_journal(dir, "test")
}

fn rfc3339(us: i64) -> String {
    Timestamp::from_micros(us).to_rfc3339()
}

/// A temporary configuration directory (empty unless written to) and the journal file.
struct Setup {
    dir: tempfile::TempDir,
    journal: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let journal = write_journal(dir.path());
        Setup { dir, journal }
    }

    /// Runs `banhound test-filter ARGS` with the repository's shipped defaults.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
            .arg("--config-dir")
            .arg(self.dir.path().join("etc"))
            .arg("test-filter")
            .args(args)
            .output()
            .unwrap()
    }

    fn journal(&self) -> &str {
        self.journal.to_str().unwrap()
    }

    /// `--json` run that must succeed: the matches and the summary.
    fn json(&self, args: &[&str]) -> (Vec<Value>, String) {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        let matches = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (matches, stderr)
    }
}

fn column<'a>(matches: &'a [Value], key: &str) -> Vec<&'a Value> {
    matches.iter().map(|m| &m[key]).collect()
}

fn strings(matches: &[Value], key: &str) -> Vec<String> {
    matches
        .iter()
        .map(|m| m[key].as_str().unwrap_or("<none>").to_string())
        .collect()
}

fn numbers(matches: &[Value], key: &str) -> Vec<u64> {
    column(matches, key)
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn shipped_sshd_filter_reads_the_filters_journalmatch() {
    let s = Setup::new();
    let (matches, summary) = s.json(&["sshd", "--journal-file", s.journal()]);

    // Entries are numbered among those the matches select; 4 is the one without MESSAGE.
    assert_eq!(numbers(&matches, "entry"), [1, 2, 3, 5, 6]);
    assert!(matches.iter().all(|m| m.get("line").is_none()));
    assert_eq!(
        strings(&matches, "host"),
        [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.1"
        ]
    );
    assert_eq!(numbers(&matches, "regex"), [0, 1, 0, 0, 6]);
    // The entry's own time: the sender's when it gave one (entry 2), else journald's.
    assert_eq!(
        strings(&matches, "time"),
        [
            rfc3339(T0),
            rfc3339(SOURCE_TIME_3),
            rfc3339(T0 + 4 * SECOND),
            rfc3339(T0 + 6 * SECOND),
            rfc3339(T0 + 7 * SECOND),
        ]
    );
    assert_eq!(matches[0]["time"], "2023-11-14T22:13:20Z");
    assert_eq!(matches[1]["time"], "2023-11-14T22:13:21.500000Z");
    assert_eq!(
        strings(&matches, "user"),
        [
            "root",
            "admin",
            "\u{fffd}\u{fffd}adm",
            "x from 198.51.100.66 port 22 ssh2",
            "root"
        ]
    );

    let source = format!(
        "Source:  journal file {} (matches _SYSTEMD_UNIT=ssh.service + _SYSTEMD_UNIT=sshd.service + _COMM=sshd + _COMM=sshd-session + _COMM=sshd-auth from the filter's journalmatch; regexes see MESSAGE)",
        s.journal()
    );
    assert!(summary.contains(&source), "{summary}");
    assert!(
        summary.contains("Entries: 7 read: 5 matched, 0 ignored, 2 missed\n"),
        "{summary}"
    );
    assert!(
        summary.contains("missed before matching: 1 without MESSAGE\n"),
        "{summary}"
    );
    assert!(
        summary.contains("Timestamps: from the journal\n"),
        "{summary}"
    );
    assert!(!summary.contains("Date templates"), "{summary}");
    assert!(summary.contains("Addresses: 4 distinct\n"), "{summary}");
    assert!(
        !summary.contains("203.0.113.50") && !summary.contains("198.51.100.66"),
        "{summary}"
    );

    // The same through the directory, and without --json on stdout.
    let out = s.run(&["sshd", "--journal-dir", s.dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(stdout.contains("Entries: 7 read: 5 matched, 0 ignored, 2 missed\n"));
    assert!(stdout.contains(&format!(
        "Source:  journal directory {}",
        s.dir.path().display()
    )));
}

#[test]
fn match_overrides_the_journalmatch_with_journalctl_semantics() {
    let s = Setup::new();
    let (matches, summary) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=cron",
    ]);
    assert_eq!(numbers(&matches, "entry"), [1]);
    assert_eq!(strings(&matches, "host"), ["203.0.113.50"]);
    assert_eq!(strings(&matches, "time"), [rfc3339(T0 + 3 * SECOND)]);
    assert!(
        summary.contains("(matches _COMM=cron from --match;"),
        "{summary}"
    );
    assert!(summary.contains("Entries: 1 read: 1 matched"), "{summary}");

    // "+" separates OR groups; within a group different fields AND, same fields OR.
    let (matches, summary) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=cron",
        "--match",
        "+",
        "--match",
        "_SYSTEMD_UNIT=postfix@-.service",
    ]);
    assert_eq!(numbers(&matches, "entry"), [2]);
    assert!(
        summary.contains("Entries: 2 read: 1 matched, 0 ignored, 1 missed"),
        "{summary}"
    );
    let (matches, summary) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=sshd",
        "--match",
        "_COMM=cron",
        "--match",
        "_HOSTNAME=web1",
    ]);
    assert_eq!(
        strings(&matches, "host"),
        ["192.0.2.2", "203.0.113.50", "192.0.2.3"]
    );
    assert!(
        summary.contains("Entries: 5 read: 3 matched, 0 ignored, 2 missed"),
        "{summary}"
    );
    let (matches, _) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=sshd",
        "--match",
        "_HOSTNAME=elsewhere",
    ]);
    assert!(matches.is_empty());

    // A malformed match is invalid input.
    let out = s.run(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--match",
        "_comm=sshd",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(&["sshd", "--journal-file", s.journal(), "--match", "+"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn jail_journalmatch_and_policy_apply() {
    let s = Setup::new();
    std::fs::write(
        s.dir.path().join("etc/banhound.toml"),
        "[jail.sshd]\njournalmatch = [\"_COMM=sshd-session\"]\nmaxretry = 2\n",
    )
    .unwrap();
    let (matches, summary) = s.json(&["sshd", "--journal-file", s.journal(), "--jail", "sshd"]);
    assert_eq!(strings(&matches, "host"), ["192.0.2.1", "192.0.2.4"]);
    assert!(
        summary.contains("(matches _COMM=sshd-session from the jail's journalmatch;"),
        "{summary}"
    );
    assert!(
        summary.contains("Would ban (maxretry 2 within"),
        "{summary}"
    );
}

#[test]
fn since_and_until_select_by_receive_time() {
    let s = Setup::new();
    // Entry 3 was received at T0+2s though its sender dated it T0+1.5s: like journalctl,
    // --since/--until compare the receive time.
    let since = rfc3339(T0 + 2 * SECOND);
    let until = rfc3339(T0 + 6 * SECOND);
    let (matches, summary) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--since",
        &since,
        "--until",
        &until,
    ]);
    assert_eq!(numbers(&matches, "entry"), [1, 2, 4]);
    assert_eq!(
        strings(&matches, "host"),
        ["192.0.2.2", "192.0.2.3", "192.0.2.4"]
    );
    assert_eq!(matches[0]["time"], "2023-11-14T22:13:21.500000Z");
    assert!(
        summary.contains("Entries: 4 read: 3 matched, 0 ignored, 1 missed\n"),
        "{summary}"
    );

    let (matches, _) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--since",
        &rfc3339(T0 + 7 * SECOND),
    ]);
    assert_eq!(strings(&matches, "host"), ["192.0.2.1"]);
    let (matches, _) = s.json(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--until",
        "2023-11-14T22:13:20Z",
    ]);
    assert_eq!(strings(&matches, "host"), ["192.0.2.1"]);

    // journalctl's forms: a wall-clock time in --timezone, relative times from --now.
    for (since, until) in [
        ("2023-11-14 22:13:22", "22:13:26"),
        ("-4s", "now"),
        ("4 sec ago", "2023-11-14T23:13:26+01:00"),
    ] {
        let (matches, _) = s.json(&[
            "sshd",
            "--journal-file",
            s.journal(),
            "--timezone",
            "UTC",
            "--now",
            "2023-11-14T22:13:26Z",
            "--since",
            since,
            "--until",
            until,
        ]);
        assert_eq!(numbers(&matches, "entry"), [1, 2, 4], "{since} .. {until}");
    }
    // The next morning, as the calendar days journalctl names.
    let on_the_15th = |range: &[&str]| {
        let mut args = vec![
            "sshd",
            "--journal-file",
            s.journal(),
            "--now",
            "2023-11-15T09:00:00Z",
            "--timezone",
            "UTC",
        ];
        args.extend_from_slice(range);
        s.json(&args).0
    };
    let (everything, _) = s.json(&["sshd", "--journal-file", s.journal()]);
    assert_eq!(
        on_the_15th(&["--since", "yesterday", "--until", "today"]),
        everything,
        "every entry was received on the 14th"
    );
    assert!(on_the_15th(&["--since", "today"]).is_empty());

    let out = s.run(&[
        "sshd",
        "--journal-file",
        s.journal(),
        "--since",
        "a fortnight ago",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--since \"a fortnight ago\" is not a time") && stderr.contains("-10min"),
        "{stderr}"
    );
}

#[test]
fn syslog_rendering_feeds_host_ident_pid_message() {
    let s = Setup::new();
    let (matches, summary) = s.json(&[
        r"^web1 sshd-session\[101\]: Failed password for \S+ from <HOST> port \d+",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=sshd-session",
        "--journal-render",
        "syslog",
    ]);
    assert_eq!(strings(&matches, "host"), ["192.0.2.1"]);
    assert!(
        summary.contains(r#"regexes see "HOST IDENT[PID]: MESSAGE")"#),
        "{summary}"
    );
    assert!(
        summary.contains("Entries: 2 read: 1 matched, 0 ignored, 1 missed"),
        "{summary}"
    );
    // The same regex on MESSAGE alone finds nothing.
    let (matches, _) = s.json(&[
        r"^web1 sshd-session\[101\]: Failed password for \S+ from <HOST> port \d+",
        "--journal-file",
        s.journal(),
        "--match",
        "_COMM=sshd-session",
    ]);
    assert!(matches.is_empty());
}

#[test]
fn source_and_journal_are_exclusive_and_one_is_required() {
    let s = Setup::new();
    let line = "Failed password for root from 192.0.2.1 port 22 ssh2";
    let cases: [(&[&str], &str); 6] = [
        (
            &["sshd", "-", "--journal-file", s.journal()],
            "give either SOURCE or a journal",
        ),
        (&["sshd"], "nothing to read: give SOURCE"),
        (
            &["sshd", "--journal", "--journal-file", s.journal()],
            "give one of --journal, --journal-dir, --journal-file and --journal-namespace",
        ),
        (
            &["sshd", line, "--match", "_COMM=sshd"],
            "--match applies to the journal",
        ),
        (
            &["sshd", line, "--since", "2023-11-14T22:13:20Z"],
            "--since applies to the journal",
        ),
        (
            &["sshd", "--journal-file", s.journal(), "--format", "plain"],
            "--format applies to files",
        ),
    ];
    for (args, message) in cases {
        let out = s.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A journal that cannot be opened is a failure to run, not invalid input.
    let missing = s.dir.path().join("missing.journal");
    let out = s.run(&["sshd", "--journal-file", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));

    // Files still work as before, numbered by line.
    let out = s.run(&[
        "sshd",
        "--json",
        &format!("Nov 14 22:13:20 web1 sshd[1]: {line}"),
    ]);
    assert!(out.status.success());
    let m: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["line"], 1);
    assert!(m.get("entry").is_none());
    assert_eq!(m["host"], "192.0.2.1");
}
