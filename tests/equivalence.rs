//! `banhound test-filter --jail` decides exactly as the daemon does: for the same log files,
//! the bans the real daemon decides (file jails, log-only backend, read from its state
//! database) are the bans test-filter reports, address by address and time by time.
//!
//! The files hold generated sshd traffic (`../shared/bench/gen-sshd-log`, several seeds),
//! read by two jails each: the shipped sshd filter (its process sessions count the several
//! lines of one try once) and Debian's fail2ban sshd filter (its `<F-MLFID>` sessions join
//! the lines of one process). Around the traffic: lines older than findtime (the daemon's
//! look-back skips them) and an sshd failure over the 4 MiB line limit (skipped by both).
//! A plain-format jail reads lines without a date (counted when read).
//!
//! One thing cannot be the same instant: "when read". The daemon reads at its wall clock,
//! test-filter at `--now`, given here as the moment the daemon had read everything. A ban
//! decided by an undated line therefore carries a time between the daemon's start and that
//! moment in the daemon, and `--now` in test-filter; every other ban's time, which is a
//! line's own date, must be equal to the microsecond.
//!
//! The same holds for journal jails: journal files made by systemd-journal-remote from the
//! generator's export output (several seeds, each its own host name and jails), read by the
//! daemon from a journal directory and by `test-filter --jail --journal-dir` from the
//! daemon's look-back on; there every ban's time is its entry's own, equal to the
//! microsecond.
//!
//! Needs root, nft, ip, python3, /lib/systemd/systemd-journald (the daemon lab),
//! /lib/systemd/systemd-journal-remote and Debian's fail2ban package (its
//! /etc/fail2ban/filter.d, read at run time).

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;

use banhound::daemon::state::StateDb;
use banhound::display::display_target;
use banhound::engine::time::Timestamp;
use banhound::source::file::MAX_LINE;
use daemon_lab::{generator, Lab};
use netlab::wait_for;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A ban: (jail, target as test-filter prints it, time).
type Ban = (String, String, Timestamp);

fn wall() -> Timestamp {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_micros(i64::try_from(since.as_micros()).unwrap())
}

/// A syslog date as gen-sshd-log writes them (UTC; the test host's zone is UTC, which the
/// daemon and test-filter read syslog dates in).
fn syslog_date(at: Timestamp) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{}", at.as_secs()), "+%b %e %H:%M:%S"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// Generated sshd traffic, as syslog lines or journal export data (`format`).
fn generated(format: &str, records: u32, seed: u32, start: Timestamp) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(generator())
        .arg(records.to_string())
        .args(["--format", format])
        .args(["--seed", &seed.to_string(), "--attackers", "40"])
        .args(["--start", &start.as_secs().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The sshd file of one seed: old failures, the generated traffic with an over-long line
/// in the middle, and more old failures after it (older than findtime before the newest
/// line read).
fn sshd_file(seed: u32, now: Timestamp) -> Vec<u8> {
    let hour_ago = Timestamp::from_secs(now.as_secs() - 3600);
    let old = |addr: &str, pid: u32| {
        let mut out = Vec::new();
        for i in 0..4 {
            out.extend(
                format!(
                    "{} bench-host sshd[{}]: Failed password for root from {addr} port {} ssh2\n",
                    syslog_date(hour_ago),
                    pid + i,
                    40000 + i
                )
                .into_bytes(),
            );
        }
        out
    };
    let mut bytes = old(&format!("198.51.100.{}", 10 + seed), 500);
    let traffic = generated(
        "syslog",
        1500,
        seed,
        Timestamp::from_secs(now.as_secs() - 120),
    );
    let middle = traffic.len() / 2;
    let cut = middle + traffic[middle..].iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes.extend_from_slice(&traffic[..cut]);
    // An sshd failure over the line limit, and two ordinary ones of the same address: it
    // would be banned (maxretry 3) if the long line counted, or if its tail were taken for
    // a line.
    let failure = |pid: u32, user: &str| {
        format!(
            "{} bench-host sshd[{pid}]: Failed password for invalid user {user} from 198.51.100.250 port 4{pid} ssh2\n",
            syslog_date(now)
        )
        .into_bytes()
    };
    bytes.extend(failure(9, &"x".repeat(MAX_LINE)));
    bytes.extend(failure(10, "a"));
    bytes.extend(failure(11, "b"));
    bytes.extend_from_slice(&traffic[cut..]);
    bytes.extend(old(&format!("198.51.100.{}", 100 + seed), 600));
    bytes
}

/// The plain-format file: dated failures (recent and old), and undated ones after old
/// lines.
fn app_file(now: Timestamp) -> Vec<u8> {
    let date = |secs_ago: i64| {
        Timestamp::from_secs(now.as_secs() - secs_ago)
            .to_rfc3339()
            .into_bytes()
    };
    let mut bytes = Vec::new();
    let mut line = |prefix: Option<Vec<u8>>, addr: &str| {
        if let Some(p) = prefix {
            bytes.extend(p);
            bytes.push(b' ');
        }
        bytes.extend(format!("FAIL from {addr}\n").into_bytes());
    };
    for s in [7200, 7190, 7180] {
        line(Some(date(s)), "203.0.113.10");
    }
    for _ in 0..3 {
        line(None, "203.0.113.11");
    }
    for s in [60, 50, 40] {
        line(Some(date(s)), "203.0.113.12");
    }
    bytes
}

const APP_FILTER: &str = "format = \"plain\"\nfailregex = ['FAIL from <HOST>$']\n";

/// The jails reading the file of `seed`, with their filters: one jail per file, since a
/// jail's tracker counts the failures of all its files together and test-filter reads one.
fn seed_jails(seed: u32) -> [(String, &'static str); 2] {
    [
        (format!("sshd-{seed}"), "sshd"),
        (format!("f2b-{seed}"), "fail2ban:sshd"),
    ]
}

fn config(dir: &Path, seed_files: &[(u32, std::path::PathBuf)], app: &Path) -> String {
    let jail = |name: &str, filter: &str, path: &Path| {
        format!(
            "[jail.{name}]\nenabled = true\nfilter = {filter:?}\nlogpath = [{:?}]\n\
             maxretry = 3\nfindtime = \"10m\"\nbantime = \"1d\"\nbackend = \"log-only\"\n\n",
            path.display().to_string()
        )
    };
    let mut text =
        "[fail2ban]\ndir = \"/etc/fail2ban\"\n\n[jail.sshd]\nenabled = false\n\n".to_string();
    for (seed, path) in seed_files {
        for (name, filter) in seed_jails(*seed) {
            text.push_str(&jail(&name, filter, path));
        }
    }
    text.push_str(&jail(
        "app",
        &dir.join("app.toml").display().to_string(),
        app,
    ));
    text
}

/// The bans test-filter reports for one file with a jail's settings: the "Would ban" list
/// (each address once: bantime outlasts the logs), which must be the bans its `--json`
/// lines say each failure decided.
fn test_filter(lab: &Lab, jail: &str, filter: &str, file: &Path, now: Timestamp) -> Vec<Ban> {
    let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--defaults-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
        .arg("--config")
        .arg(lab.config_path())
        .args(["test-filter", filter])
        .arg(file)
        .args([
            "--jail",
            jail,
            "--look-back",
            "--top",
            "100000",
            "--timezone",
            "UTC",
        ])
        .args(["--now", &now.to_rfc3339(), "--json"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decided = json_bans(&out.stdout, jail, parse_rfc3339);
    let listed: Vec<Ban> = would_ban(&summary)
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // "ADDR first at TIME, 1 ban"
            assert_eq!(words.get(4..), Some(&["1", "ban"][..]), "{l}");
            let time = words[3].trim_end_matches(',');
            (jail.to_string(), words[0].to_string(), parse_rfc3339(time))
        })
        .collect();
    assert_eq!(
        decided.iter().collect::<BTreeSet<_>>(),
        listed.iter().collect::<BTreeSet<_>>(),
        "{summary}"
    );
    assert_eq!(decided.len(), listed.len(), "{summary}");
    listed
}

/// The bans test-filter's `--json` lines say a failure decided, in `jail`, with their time
/// read by `parse`.
fn json_bans(stdout: &[u8], jail: &str, parse: fn(&str) -> Timestamp) -> Vec<Ban> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let ban = v["ban"].as_str()?;
            Some((
                jail.to_string(),
                v["host"].as_str()?.to_string(),
                parse(ban),
            ))
        })
        .collect()
}

/// The lines of test-filter's summary under "Would ban", one per address.
fn would_ban(summary: &str) -> impl Iterator<Item = &str> {
    summary
        .lines()
        .skip_while(|l| !l.starts_with("Would ban"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
}

/// The daemon's bans are test-filter's, both ways (`context`: what to print besides).
fn assert_same_bans(daemon: &BTreeSet<Ban>, reported: &BTreeSet<Ban>, context: &str) {
    assert_eq!(
        daemon.difference(reported).collect::<Vec<_>>(),
        Vec::<&Ban>::new(),
        "banned by the daemon only\n{context}"
    );
    assert_eq!(
        reported.difference(daemon).collect::<Vec<_>>(),
        Vec::<&Ban>::new(),
        "reported by test-filter only"
    );
}

/// A time as test-filter prints it (RFC 3339, with microseconds in `--json`), to the
/// microsecond.
fn parse_rfc3339(text: &str) -> Timestamp {
    let out = Command::new("date")
        .args(["-u", "-d", text, "+%s%6N"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{text}");
    Timestamp::from_micros(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
    )
}

#[test]
fn test_filter_bans_exactly_what_the_daemon_bans() {
    let now = Timestamp::from_secs(wall().as_secs());
    let files = tempfile::tempdir().unwrap();
    let seeds = [1, 2, 3];
    let sshd_files: Vec<_> = seeds
        .iter()
        .map(|&seed| {
            let path = files.path().join(format!("auth-{seed}.log"));
            std::fs::write(&path, sshd_file(seed, now)).unwrap();
            (seed, path)
        })
        .collect();
    let app = files.path().join("app.log");
    std::fs::write(&app, app_file(now)).unwrap();
    let mut lab = Lab::new("equiv", "");
    std::fs::write(lab.dir().join("app.toml"), APP_FILTER).unwrap();
    lab.write_config(&config(lab.dir(), &sshd_files, &app));

    let started = Timestamp::from_secs(wall().as_secs());
    let daemon = lab.start();
    // Every file read to its end, and its position committed with its bans.
    let mut all: Vec<_> = sshd_files.iter().map(|(_, p)| p.clone()).collect();
    all.push(app.clone());
    wait_for(
        "the daemon to read every file",
        Duration::from_secs(60),
        || {
            let Ok(db) = StateDb::open(&lab.state_dir()) else {
                return false;
            };
            all.iter().all(|path| {
                let len = std::fs::metadata(path).unwrap().len();
                db.cursor(&format!("file:{}", path.display()))
                    .ok()
                    .flatten()
                    .and_then(|c| c.rsplit_once(':').and_then(|(_, o)| o.parse::<u64>().ok()))
                    == Some(len)
            })
        },
    );
    // Whole seconds, as test-filter's summary prints it.
    let read = Timestamp::from_secs(wall().as_secs() + 1);
    let log = daemon.log();
    assert!(daemon.stop(), "{log}");
    let daemon_bans: BTreeSet<Ban> = StateDb::open(&lab.state_dir())
        .unwrap()
        .bans()
        .unwrap()
        .into_iter()
        .map(|b| (b.jail, display_target(&b.target), b.since))
        .collect();

    let mut reported: BTreeSet<Ban> = BTreeSet::new();
    for (seed, file) in &sshd_files {
        for (jail, filter) in seed_jails(*seed) {
            reported.extend(test_filter(&lab, &jail, filter, file, read));
        }
    }
    let app_filter = lab.dir().join("app.toml").display().to_string();
    reported.extend(test_filter(&lab, "app", &app_filter, &app, read));

    // The undated lines' bans: at their reading moment in each.
    let undated = |bans: &BTreeSet<Ban>| -> Vec<Ban> {
        bans.iter()
            .filter(|(jail, target, _)| jail == "app" && target == "203.0.113.11")
            .cloned()
            .collect()
    };
    let (daemon_undated, reported_undated) = (undated(&daemon_bans), undated(&reported));
    assert_eq!(daemon_undated.len(), 1, "{daemon_bans:?}\n{log}");
    assert!(
        (started..=read).contains(&daemon_undated[0].2),
        "{daemon_undated:?} not in {started}..{read}"
    );
    assert_eq!(
        reported_undated.iter().map(|b| b.2).collect::<Vec<_>>(),
        [read],
        "{reported:?}"
    );
    let dated = |bans: &BTreeSet<Ban>| -> BTreeSet<Ban> {
        bans.iter()
            .filter(|b| !undated(bans).contains(b))
            .cloned()
            .collect()
    };
    let (daemon_dated, reported_dated) = (dated(&daemon_bans), dated(&reported));
    assert_same_bans(&daemon_dated, &reported_dated, "");
    println!(
        "{} bans compared ({} decided by a dated line, to the microsecond)",
        daemon_bans.len(),
        daemon_dated.len()
    );
    // The comparison covered something: bans from the traffic of every seed, the recent
    // app addresses, and none of what is skipped.
    for seed in seeds {
        for (jail, _) in seed_jails(seed) {
            let n = daemon_dated.iter().filter(|b| b.0 == jail).count();
            assert!(n > 3, "{jail}: {daemon_dated:?}");
        }
    }
    let targets: BTreeSet<&str> = daemon_bans.iter().map(|b| b.1.as_str()).collect();
    for skipped in ["198.51.100.250", "203.0.113.10"] {
        assert!(!targets.contains(skipped), "{skipped} banned: {targets:?}");
    }
    assert!(targets.contains("203.0.113.12"), "{targets:?}");
    for seed in seeds {
        for old in [10 + seed, 100 + seed] {
            assert!(!targets.contains(format!("198.51.100.{old}").as_str()));
        }
    }
}

/// The journal of one seed, in the export format systemd-journal-remote reads: failures
/// older than findtime (before the daemon's look-back, so never read), then the generated
/// traffic of the last minutes. Each seed has its own host name (the jails' journalmatch)
/// and boot ids, so the files of several seeds interleave by time.
fn seed_export(seed: u32, now: Timestamp) -> Vec<u8> {
    let boot = |tag: u32| format!("_BOOT_ID={seed:08x}{tag:024x}\n");
    let mut out = Vec::new();
    let old = now.as_micros() - 30 * 60 * 1_000_000;
    for i in 0..4i64 {
        out.extend(
            format!(
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n{}_HOSTNAME=host-{seed}\n\
                 SYSLOG_IDENTIFIER=sshd\n_COMM=sshd\n_PID={}\n_SYSTEMD_UNIT=ssh.service\n\
                 MESSAGE=Failed password for root from 198.51.100.{} port {} ssh2\n\n",
                old + i * 1_000_000,
                1 + i * 1_000_000,
                boot(1),
                500 + i,
                10 + seed,
                40000 + i
            )
            .into_bytes(),
        );
    }
    let traffic = generated(
        "export",
        1500,
        seed,
        Timestamp::from_secs(now.as_secs() - 240),
    );
    for line in String::from_utf8(traffic).unwrap().lines() {
        // Cursors are journald's to assign.
        if line.starts_with("__CURSOR=") {
            continue;
        }
        if line.starts_with("_BOOT_ID=") {
            out.extend(boot(2).into_bytes());
        } else if line.starts_with("_HOSTNAME=") {
            out.extend(format!("_HOSTNAME=host-{seed}\n").into_bytes());
        } else {
            out.extend(line.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Writes `dir/NAME.journal` from export data with systemd-journal-remote.
fn write_journal(dir: &Path, name: &str, export: &[u8]) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join(format!("{name}.journal"));
    let mut child = Command::new("/lib/systemd/systemd-journal-remote")
        .arg("-o")
        .arg(&path)
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(export).unwrap();
    assert!(child.wait().unwrap().success(), "journal-remote {name}");
    path
}

/// `banhound daemon` reading a journal directory, killed by pid on drop.
struct JournalDaemon {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl JournalDaemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JournalDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The journal path: for the same journal files (several seeds of generated sshd traffic,
/// with multi-line sessions, and failures older than the look-back), the bans the daemon
/// decides (journal jails, log-only backend, read from its state database) are the bans
/// `test-filter --jail` reports on the same journal from the daemon's look-back
/// (`--since`: findtime before the daemon's start), address by address and time by time (to
/// the microsecond: every record has its own time).
#[test]
fn test_filter_bans_exactly_what_the_daemon_bans_on_the_journal() {
    let now = Timestamp::from_secs(wall().as_secs());
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let seeds = [1, 2, 3];
    let mut last = Timestamp::from_micros(0);
    for seed in seeds {
        let export = seed_export(seed, now);
        for line in String::from_utf8_lossy(&export).lines() {
            if let Some(t) = line.strip_prefix("__REALTIME_TIMESTAMP=") {
                last = last.max(Timestamp::from_micros(t.parse().unwrap()));
            }
        }
        write_journal(&journal, &format!("seed-{seed}"), &export);
    }
    let jail = |name: &str, filter: &str, seed: u32| {
        format!(
            "[jail.{name}]\nenabled = true\nfilter = {filter:?}\njournalmatch = [\"_HOSTNAME=host-{seed}\"]\n\
             maxretry = 3\nfindtime = \"10m\"\nbantime = \"1d\"\nbackend = \"log-only\"\n\n"
        )
    };
    let mut config =
        "[fail2ban]\ndir = \"/etc/fail2ban\"\n\n[jail.sshd]\nenabled = false\n\n".to_string();
    for seed in seeds {
        for (name, filter) in seed_jails(seed) {
            config.push_str(&jail(&name, filter, seed));
        }
    }
    let config_path = dir.path().join("banhound.toml");
    std::fs::write(&config_path, config).unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("daemon.log");

    let started = wall();
    let mut daemon = JournalDaemon {
        child: Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
            .arg("--config")
            .arg(&config_path)
            .args(["daemon", "--no-bus", "--log-target", "stderr"])
            .arg("--journal-directory")
            .arg(&journal)
            .arg("--state-dir")
            .arg(&state)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let key = format!("journal:directory:{}", journal.display());
    wait_for(
        "the daemon to read the journal to its last entry",
        Duration::from_secs(60),
        || {
            assert!(
                daemon.child.try_wait().unwrap().is_none(),
                "{}",
                daemon.log()
            );
            let Ok(db) = StateDb::open(&state) else {
                return false;
            };
            db.cursor(&key)
                .ok()
                .flatten()
                .and_then(|c| banhound::source::journal::parse_cursor(&c).ok())
                .is_some_and(|p| p.realtime == last)
        },
    );
    let daemon_log = daemon.log();
    drop(daemon);
    let daemon_bans: BTreeSet<Ban> = StateDb::open(&state)
        .unwrap()
        .bans()
        .unwrap()
        .into_iter()
        .map(|b| (b.jail, display_target(&b.target), b.since))
        .collect();

    // The daemon read from findtime before its start; test-filter from the same point.
    let since = Timestamp::from_secs(started.as_secs() - 600).to_rfc3339();
    let mut reported: BTreeSet<Ban> = BTreeSet::new();
    for seed in seeds {
        for (name, filter) in seed_jails(seed) {
            let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
                .arg("--defaults-dir")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
                .arg("--config")
                .arg(&config_path)
                .args(["test-filter", filter, "--journal-dir"])
                .arg(&journal)
                .args(["--jail", &name, "--since", &since, "--top", "100000"])
                .args(["--now", &wall().to_rfc3339(), "--json"])
                .output()
                .unwrap();
            let summary = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{summary}");
            let decided = json_bans(&out.stdout, &name, parse_rfc3339);
            // The summary lists each address once, as the --json lines decided it.
            let listed = would_ban(&summary).count();
            assert_eq!(listed, decided.len(), "{summary}");
            reported.extend(decided);
        }
    }
    assert_same_bans(&daemon_bans, &reported, &daemon_log);
    println!(
        "{} journal bans compared, to the microsecond",
        daemon_bans.len()
    );
    // The comparison covered something: bans from every seed and both filters, and none
    // of the failures before the look-back.
    for seed in seeds {
        for (name, _) in seed_jails(seed) {
            let n = daemon_bans.iter().filter(|b| b.0 == name).count();
            assert!(n > 3, "{name}: {daemon_bans:?}");
        }
        let old = format!("198.51.100.{}", 10 + seed);
        assert!(daemon_bans.iter().all(|b| b.1 != old), "{old} banned");
    }
}
