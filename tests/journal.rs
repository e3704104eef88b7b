//! The journal source against the real thing: journal files written by
//! systemd-journal-remote from export data made here, and live standalone journald
//! namespaces that the tests log to with the native protocol while banhound follows.
//!
//! Needs root, /lib/systemd/systemd-journald and systemd-journal-remote (Debian 12). Every
//! journald started here is killed by pid and its directories removed, also on failure.

use banhound::engine::filter::{Filter, FilterSpec, Host, Outcome};
use banhound::engine::time::Timestamp;
use banhound::source::journal::{
    Batch, CursorStore, FollowOptions, Follower, JailMatches, JournalReader, JournalSource,
    MatchExpr, Phase, Start, StartReport,
};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::{Export, T0};

const JOURNALD: &str = "/lib/systemd/systemd-journald";

fn now() -> Timestamp {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    Timestamp::from_micros(us as i64)
}

fn expr(words: &[&str]) -> MatchExpr {
    MatchExpr::parse(words).unwrap()
}

/// Live tests run one at a time: sd-journal also watches /var/log/journal itself (for new
/// namespace directories), so another test's journald starting would wake an idle follower.
static LIVE_JOURNALD: Mutex<()> = Mutex::new(());

/// A standalone journald namespace, stopped by pid and removed on drop.
struct Journald {
    name: String,
    child: Child,
    dirs: Vec<PathBuf>,
    /// Held until the directories are gone (fields drop after `Drop::drop`).
    _serial: MutexGuard<'static, ()>,
}

impl Journald {
    fn start(tag: &str) -> Journald {
        let serial = LIVE_JOURNALD
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let name = format!("bh{tag}{}", std::process::id());
        let machine_id = std::fs::read_to_string("/etc/machine-id").unwrap();
        let run_dir = PathBuf::from(format!("/run/systemd/journal.{name}"));
        let log_dir = PathBuf::from(format!("/var/log/journal/{}.{name}", machine_id.trim()));
        // Leftovers of an earlier, killed run would be read as this test's entries.
        let _ = std::fs::remove_dir_all(&run_dir);
        let _ = std::fs::remove_dir_all(&log_dir);
        let child = spawn_journald(&name);
        let journald = Journald {
            name,
            child,
            dirs: vec![run_dir, log_dir],
            _serial: serial,
        };
        journald.wait_ready();
        journald
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket().exists() || !self.log_dir().join("system.journal").exists() {
            assert!(Instant::now() < deadline, "journald did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops journald (by pid) and starts it again on the same namespace and files.
    fn restart(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(self.socket());
        self.child = spawn_journald(&self.name);
        self.wait_ready();
    }

    fn stop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signals the child we spawned, by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn socket(&self) -> PathBuf {
        self.dirs[0].join("socket")
    }

    fn log_dir(&self) -> &Path {
        &self.dirs[1]
    }

    fn source(&self) -> JournalSource {
        JournalSource::Namespace(self.name.clone())
    }

    /// One entry, one datagram of the native protocol.
    fn send(&self, fields: &[(&str, &[u8])]) {
        let mut datagram = Vec::new();
        for (name, value) in fields {
            datagram.extend_from_slice(name.as_bytes());
            if value.contains(&b'\n') {
                datagram.push(b'\n');
                datagram.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                datagram.push(b'=');
            }
            datagram.extend_from_slice(value);
            datagram.push(b'\n');
        }
        UnixDatagram::unbound()
            .unwrap()
            .send_to(&datagram, self.socket())
            .unwrap();
    }

    fn send_message(&self, message: &str) {
        self.send(&[
            ("SYSLOG_IDENTIFIER", b"bh-test"),
            ("MESSAGE", message.as_bytes()),
        ]);
    }

    fn journalctl(&self, args: &[&str]) {
        let out = Command::new("journalctl")
            .arg(format!("--namespace={}", self.name))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "journalctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until journald has written `n` entries of the test (so a rotation or a vacuum
    /// that follows applies to them: the socket is asynchronous).
    fn wait_written(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("journalctl")
                .arg(format!("--namespace={}", self.name))
                .args(["SYSLOG_IDENTIFIER=bh-test", "-o", "cat"])
                .output()
                .unwrap();
            let lines = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty());
            if lines.count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "journald did not write {n} entries"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn journal_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.log_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn spawn_journald(name: &str) -> Child {
    Command::new(JOURNALD)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-journald starts")
}

impl Drop for Journald {
    fn drop(&mut self) {
        self.stop();
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What a test checks of a delivered entry.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Got {
    phase: Phase,
    jails: Vec<usize>,
    message: Vec<u8>,
}

/// The follower's next batch within `wait`, `None` if none came by then. The follower hands
/// batches to an async consumer (the daemon's owner task); a test waits for one with a
/// timeout on a small runtime of its own.
fn receive(follower: &mut Follower, wait: Duration) -> Option<Batch> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let next = runtime.block_on(async { tokio::time::timeout(wait, follower.next()).await });
    match next {
        Err(_elapsed) => None,
        Ok(Some(batch)) => Some(batch.expect("follow thread error")),
        Ok(None) => panic!("the follow thread ended"),
    }
}

/// Receives batches until `want` entries arrived, then makes sure no extra one follows.
/// Persists each batch's cursor in `store` when given, as the daemon will.
fn collect(follower: &mut Follower, want: usize, store: Option<&CursorStore>) -> (Vec<Got>, u64) {
    let mut got = Vec::new();
    let mut no_message = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_until: Option<Instant> = None;
    loop {
        let wait = match quiet_until {
            Some(t) => t.saturating_duration_since(Instant::now()),
            None => deadline.saturating_duration_since(Instant::now()),
        };
        match receive(follower, wait) {
            Some(batch) => {
                for e in batch.iter() {
                    got.push(Got {
                        phase: e.phase,
                        jails: e.jails.to_vec(),
                        message: e.entry.message.to_vec(),
                    });
                }
                no_message += batch.skipped_no_message();
                if let (Some(store), Some(cursor)) = (store, batch.cursor()) {
                    store.save(cursor).unwrap();
                }
                follower.recycle(batch);
            }
            None if quiet_until.is_some() => return (got, no_message),
            None => panic!("got {} of {want} entries within 15 s", got.len()),
        }
        if got.len() >= want && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_millis(500));
        }
    }
}

fn messages(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| String::from_utf8_lossy(&g.message).into_owned())
        .collect()
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

fn follow(journald: &Journald, matches: Vec<MatchExpr>, start: Start) -> Follower {
    Follower::spawn(
        journald.source(),
        JailMatches::new(matches),
        start,
        FollowOptions {
            batch_entries: 16,
            ..FollowOptions::default()
        },
    )
    .unwrap()
}

fn sshd_filter() -> Filter {
    Filter::compile(&FilterSpec {
        prefregex: None,
        failregex: vec![r"^Failed password for \S+ from <HOST> port \d+".into()],
        ignoreregex: vec![],
        dialect: Default::default(),
    })
    .unwrap()
}

#[test]
fn journal_file_dispatches_entries_to_jails() {
    let dir = tempfile::tempdir().unwrap();
    let s = 1_000_000;
    let mut export = Export::default();
    export
        .entry(
            T0,
            &[
                ("_SYSTEMD_UNIT", b"sshd.service"),
                ("_COMM", b"sshd"),
                ("SYSLOG_IDENTIFIER", b"sshd"),
                ("_PID", b"100"),
                ("_HOSTNAME", b"web1"),
                (
                    "MESSAGE",
                    b"Failed password for root from 192.0.2.1 port 22 ssh2",
                ),
            ],
        )
        .entry(
            T0 + s,
            &[
                ("_SYSTEMD_UNIT", b"postfix@-.service"),
                ("_COMM", b"smtpd"),
                ("SYSLOG_IDENTIFIER", b"postfix/smtpd"),
                ("_PID", b"200"),
                ("_HOSTNAME", b"web1"),
                ("MESSAGE", b"connect from unknown[198.51.100.3]"),
            ],
        )
        .entry(
            T0 + 2 * s,
            &[
                ("_SYSTEMD_UNIT", b"cron.service"),
                ("_COMM", b"cron"),
                ("SYSLOG_IDENTIFIER", b"CRON"),
                ("MESSAGE", b"(root) CMD (true)"),
            ],
        )
        .entry(
            T0 + 3 * s,
            &[
                ("_SYSTEMD_UNIT", b"ssh-extra.service"),
                ("_COMM", b"sshd"),
                ("_HOSTNAME", b"web2"),
                ("MESSAGE", b"via the OR group"),
            ],
        )
        .entry(
            T0 + 4 * s,
            &[
                ("_SYSTEMD_UNIT", b"sshd.service"),
                ("_COMM", b"sshd-session"),
                ("_HOSTNAME", b"web1"),
                (
                    "MESSAGE",
                    b"Invalid user \xff\xfe from 192.0.2.7 port 4\nsecond line",
                ),
            ],
        )
        .entry(
            T0 + 5 * s,
            &[("_SYSTEMD_UNIT", b"sshd.service"), ("CODE_LINE", b"12")],
        )
        .entry(
            T0 + 6 * s,
            &[
                ("SYSLOG_IDENTIFIER", b"postfix/submission"),
                (
                    "_SOURCE_REALTIME_TIMESTAMP",
                    (T0 - 5 * s).to_string().as_bytes(),
                ),
                ("MESSAGE", b"sent at the source"),
            ],
        )
        .entry(
            T0 + 7 * s,
            &[
                ("SYSLOG_IDENTIFIER", b"postfix/smtpd"),
                ("MESSAGE", b"no host, no pid"),
            ],
        );
    let file = export.write_journal(dir.path(), "dispatch");

    let matches = JailMatches::new(vec![
        expr(&["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]),
        expr(&[
            "SYSLOG_IDENTIFIER=postfix/smtpd",
            "SYSLOG_IDENTIFIER=postfix/submission",
        ]),
        expr(&["_COMM=sshd", "_HOSTNAME=web1"]),
    ]);
    let (mut reader, report) =
        JournalReader::open(&JournalSource::Files(vec![file]), matches, &Start::Head).unwrap();
    assert_eq!(report, StartReport::Head);
    let filter = sshd_filter();
    let mut matcher = filter.matcher();
    let mut line = Vec::new();
    let mut got = Vec::new();
    while let Some(e) = reader.next_entry().unwrap() {
        assert_eq!(e.phase, Phase::New);
        e.entry.render_syslog(&mut line);
        if let Outcome::Failure(f) = matcher.match_line(e.entry.message) {
            assert_eq!(f.host, Host::Ip("192.0.2.1".parse().unwrap()));
        }
        got.push((
            e.jails.to_vec(),
            e.entry.timestamp,
            String::from_utf8_lossy(&line).into_owned(),
            e.entry.message.to_vec(),
        ));
    }
    let expected: Vec<(Vec<usize>, Timestamp, &str, &[u8])> = vec![
        (
            vec![0, 2],
            Timestamp::from_micros(T0),
            "web1 sshd[100]: Failed password for root from 192.0.2.1 port 22 ssh2",
            b"Failed password for root from 192.0.2.1 port 22 ssh2",
        ),
        (
            vec![1],
            Timestamp::from_micros(T0 + s),
            "web1 postfix/smtpd[200]: connect from unknown[198.51.100.3]",
            b"connect from unknown[198.51.100.3]",
        ),
        (
            vec![0],
            Timestamp::from_micros(T0 + 3 * s),
            "web2 sshd: via the OR group",
            b"via the OR group",
        ),
        (
            vec![0],
            Timestamp::from_micros(T0 + 4 * s),
            "web1 sshd-session: Invalid user \u{fffd}\u{fffd} from 192.0.2.7 port 4\nsecond line",
            b"Invalid user \xff\xfe from 192.0.2.7 port 4\nsecond line",
        ),
        (
            vec![1],
            Timestamp::from_micros(T0 - 5 * s),
            "postfix/submission: sent at the source",
            b"sent at the source",
        ),
        (
            vec![1],
            Timestamp::from_micros(T0 + 7 * s),
            "postfix/smtpd: no host, no pid",
            b"no host, no pid",
        ),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(j, t, l, m)| (j, t, l.to_string(), m.to_vec()))
        .collect();
    assert_eq!(got, expected);
    let stats = reader.stats();
    assert_eq!(stats.no_message, 1);
    assert_eq!(stats.unmatched, 0);
    // The cron entry was filtered out by libsystemd (the union of matches), never read.
    assert_eq!(stats.read, 7);
}

/// Two journal files in a directory: `a` (5 entries from T0) and `b` (5 entries from T0+100s).
fn two_file_directory(dir: &Path) {
    for (name, offset) in [("a", 0), ("b", 100)] {
        let mut export = Export::default();
        for i in 0..5 {
            let message = format!("{name}{i}");
            let parity: &[u8] = if i % 2 == 1 { b"odd" } else { b"even" };
            export.entry(
                T0 + (offset + i) * 1_000_000,
                &[
                    ("_COMM", b"sshd"),
                    ("PARITY", parity),
                    ("MESSAGE", message.as_bytes()),
                ],
            );
        }
        export.write_journal(dir, name);
    }
}

/// The batch that empties the journal says so, the first time even when there was nothing
/// to read: the daemon holds its first reconcile until then.
#[test]
fn the_batch_that_reaches_the_end_says_so_even_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    two_file_directory(dir.path());
    let source = JournalSource::Directory(dir.path().to_path_buf());
    let spawn = |start: Start, batch_entries: usize| {
        Follower::spawn(
            source.clone(),
            JailMatches::new(vec![expr(&["_COMM=sshd"])]),
            start,
            FollowOptions {
                batch_entries,
                ..FollowOptions::default()
            },
        )
        .unwrap()
    };
    // (entries, at_end, cursor) of the batches until the first at_end, then nothing more.
    let batches = |mut follower: Follower| {
        let mut got = Vec::new();
        loop {
            let batch = receive(&mut follower, Duration::from_secs(10)).expect("a batch");
            let at_end = batch.at_end();
            got.push((batch.len(), at_end, batch.cursor().map(str::to_string)));
            if at_end {
                break;
            }
        }
        assert!(receive(&mut follower, Duration::from_millis(300)).is_none());
        got
    };
    let got = batches(spawn(Start::Head, 4));
    let sizes: Vec<(usize, bool)> = got.iter().map(|g| (g.0, g.1)).collect();
    assert_eq!(sizes, [(4, false), (4, false), (2, true)]);
    // Ten entries in batches of five: the last full batch cannot tell, an empty one does.
    let sizes: Vec<(usize, bool)> = batches(spawn(Start::Head, 5))
        .iter()
        .map(|g| (g.0, g.1))
        .collect();
    assert_eq!(sizes, [(5, false), (5, false), (0, true)]);
    // Resumed at the last entry: nothing to read, still said once (with the position it
    // resumed from, unchanged).
    let last = got[2].2.clone().unwrap();
    let resumed = batches(spawn(
        Start::Resume {
            cursor: last.clone(),
            replay_since: now(),
        },
        4,
    ));
    assert_eq!(resumed, [(0, true, Some(last))]);
}

fn read_all(source: &JournalSource, start: &Start) -> (Vec<(Phase, String)>, StartReport, u64) {
    read_matching(source, start, &["_COMM=sshd"])
}

fn read_matching(
    source: &JournalSource,
    start: &Start,
    jail: &[&str],
) -> (Vec<(Phase, String)>, StartReport, u64) {
    let matches = JailMatches::new(vec![expr(jail)]);
    let (mut reader, report) = JournalReader::open(source, matches, start).unwrap();
    let mut got = Vec::new();
    while let Some(e) = reader.next_entry().unwrap() {
        got.push((
            e.phase,
            String::from_utf8_lossy(e.entry.message).into_owned(),
        ));
    }
    (got, report, reader.stats().before_window)
}

fn phases(replay: &[&str], new: &[&str]) -> Vec<(Phase, String)> {
    replay
        .iter()
        .map(|m| (Phase::Replay, m.to_string()))
        .chain(new.iter().map(|m| (Phase::New, m.to_string())))
        .collect()
}

#[test]
fn resume_replays_up_to_the_cursor_and_survives_its_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    std::fs::create_dir(&journal_dir).unwrap();
    two_file_directory(&journal_dir);
    let source = JournalSource::Directory(journal_dir.clone());
    let store = CursorStore::new(&dir.path().join("state"), "journal");

    // Process a0..a2 and persist the position.
    let (mut reader, _) = JournalReader::open(
        &source,
        JailMatches::new(vec![expr(&["_COMM=sshd"])]),
        &Start::Head,
    )
    .unwrap();
    for want in ["a0", "a1", "a2"] {
        let e = reader.next_entry().unwrap().unwrap();
        assert_eq!(e.entry.message, want.as_bytes());
    }
    store.save(&reader.cursor().unwrap().unwrap()).unwrap();
    drop(reader);
    let cursor = store.load().unwrap().unwrap();
    let cursor_time = Timestamp::from_micros(T0 + 2_000_000);
    let resume = |replay_since: Timestamp| Start::Resume {
        cursor: cursor.clone(),
        replay_since,
    };

    // Lookback covering everything: a0..a2 are replayed, the rest is new.
    let (got, report, _) = read_all(&source, &resume(Timestamp::from_micros(T0 - 3_600_000_000)));
    assert_eq!(report, StartReport::Resumed { cursor_time });
    assert_eq!(
        got,
        phases(
            &["a0", "a1", "a2"],
            &["a3", "a4", "b0", "b1", "b2", "b3", "b4"]
        )
    );

    // A shorter lookback replays only its window.
    let (got, _, _) = read_all(&source, &resume(Timestamp::from_micros(T0 + 1_000_000)));
    assert_eq!(
        got,
        phases(&["a1", "a2"], &["a3", "a4", "b0", "b1", "b2", "b3", "b4"])
    );

    // A window starting after the cursor: nothing replayed, the cursor's entry skipped.
    let (got, _, before_window) =
        read_all(&source, &resume(Timestamp::from_micros(T0 + 50_000_000)));
    assert_eq!(
        got,
        phases(&[], &["a3", "a4", "b0", "b1", "b2", "b3", "b4"])
    );
    assert_eq!(before_window, 1);

    // The configuration changed: the cursor's entry (a2) is no longer selected. The position
    // still holds, with or without a replay window.
    let (got, report, _) = read_matching(
        &source,
        &resume(Timestamp::from_micros(T0 - 3_600_000_000)),
        &["PARITY=odd"],
    );
    assert_eq!(report, StartReport::Resumed { cursor_time });
    assert_eq!(got, phases(&["a1"], &["a3", "b1", "b3"]));
    let (got, _, _) = read_matching(
        &source,
        &resume(Timestamp::from_micros(T0 + 50_000_000)),
        &["PARITY=odd"],
    );
    assert_eq!(got, phases(&[], &["a3", "b1", "b3"]));

    // The file holding the cursor is vacuumed while banhound is stopped.
    std::fs::remove_file(journal_dir.join("a.journal")).unwrap();
    let (got, report, _) = read_all(&source, &resume(Timestamp::from_micros(T0 - 3_600_000_000)));
    assert_eq!(
        report,
        StartReport::CursorLost {
            cursor_time,
            resumed_at: Some(Timestamp::from_micros(T0 + 100_000_000)),
            // Each file was made by its own import: two sequences, no count.
            skipped_entries: None,
        }
    );
    assert_eq!(report.skipped(), Some(Duration::from_secs(98)));
    assert!(report.warning().unwrap().contains("(98.000s)"));
    assert_eq!(got, phases(&[], &["b0", "b1", "b2", "b3", "b4"]));

    // A garbled cursor file is reported, and reading starts at the lookback.
    let (got, report, _) = read_all(
        &source,
        &Start::Resume {
            cursor: "not a cursor".into(),
            replay_since: Timestamp::from_micros(T0 + 102_000_000),
        },
    );
    assert!(matches!(report, StartReport::CursorUnusable { .. }));
    assert_eq!(got, phases(&[], &["b2", "b3", "b4"]));
}

#[test]
fn live_follow_resumes_each_entry_exactly_once() {
    let journald = Journald::start("resume");
    let state = tempfile::tempdir().unwrap();
    let store = CursorStore::new(state.path(), "journal");
    let jails = || vec![expr(&["SYSLOG_IDENTIFIER=bh-test"])];
    for i in 0..5 {
        journald.send_message(&format!("resume {i}"));
    }
    let first = now();
    let mut follower = follow(
        &journald,
        jails(),
        Start::from_stored(store.load().unwrap(), first, Duration::from_secs(3600)),
    );
    assert_eq!(
        follower.start_report(),
        &StartReport::Since(first - Duration::from_secs(3600))
    );
    let (got, _) = collect(&mut follower, 5, Some(&store));
    assert_eq!(messages(&got), numbered("resume", 0..5));
    assert!(got.iter().all(|g| g.phase == Phase::New && g.jails == [0]));
    follower.stop().unwrap();

    for i in 5..10 {
        journald.send_message(&format!("resume {i}"));
    }
    journald.wait_written(10);
    let mut follower = follow(
        &journald,
        jails(),
        Start::from_stored(store.load().unwrap(), now(), Duration::ZERO),
    );
    assert!(matches!(
        follower.start_report(),
        StartReport::Resumed { .. }
    ));
    let (got, _) = collect(&mut follower, 5, Some(&store));
    assert_eq!(messages(&got), numbered("resume", 5..10));
    assert!(got.iter().all(|g| g.phase == Phase::New));
    follower.stop().unwrap();

    // With a lookback, the restart replays (for counting) what was already processed.
    let mut follower = follow(
        &journald,
        jails(),
        Start::from_stored(store.load().unwrap(), now(), Duration::from_secs(3600)),
    );
    let (got, _) = collect(&mut follower, 10, None);
    assert_eq!(messages(&got), numbered("resume", 0..10));
    assert!(got.iter().all(|g| g.phase == Phase::Replay));
    journald.send_message("resume 10");
    let (got, _) = collect(&mut follower, 1, None);
    assert_eq!(messages(&got), ["resume 10"]);
    assert_eq!(got[0].phase, Phase::New);
}

#[test]
fn live_rotation_restart_and_vacuum_lose_and_repeat_nothing() {
    let mut journald = Journald::start("rotate");
    let state = tempfile::tempdir().unwrap();
    let store = CursorStore::new(state.path(), "journal");
    let jails = || vec![expr(&["SYSLOG_IDENTIFIER=bh-test"])];
    let mut follower = follow(
        &journald,
        jails(),
        Start::Since(now() - Duration::from_secs(60)),
    );
    let reader_side = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for i in 0..150 {
                journald.send_message(&format!("rotate {i}"));
                if i == 49 || i == 99 {
                    journald.wait_written(i + 1);
                    journald.journalctl(&["--rotate"]);
                }
            }
        });
        let collected = collect(&mut follower, 150, Some(&store));
        writer.join().unwrap();
        collected
    });
    assert_eq!(messages(&reader_side.0), numbered("rotate", 0..150));
    assert!(
        journald.journal_files().len() >= 3,
        "rotation happened: {:?}",
        journald.journal_files()
    );

    // journald restarts under the running follower.
    journald.restart();
    for i in 150..170 {
        journald.send_message(&format!("rotate {i}"));
    }
    let (got, _) = collect(&mut follower, 20, Some(&store));
    assert_eq!(messages(&got), numbered("rotate", 150..170));
    let stopped_at = store.load().unwrap().unwrap();
    follower.stop().unwrap();

    // While stopped: the cursor's file is archived and vacuumed, and more is logged.
    journald.journalctl(&["--rotate"]);
    for i in 170..180 {
        journald.send_message(&format!("rotate {i}"));
    }
    journald.wait_written(180);
    journald.journalctl(&["--vacuum-files=1"]);
    assert_eq!(journald.journal_files(), ["system.journal"]);
    let mut follower = follow(
        &journald,
        jails(),
        Start::from_stored(Some(stopped_at), now(), Duration::from_secs(3600)),
    );
    let StartReport::CursorLost {
        cursor_time,
        resumed_at: Some(resumed_at),
        ..
    } = follower.start_report().clone()
    else {
        panic!("vacuum not detected: {:?}", follower.start_report());
    };
    assert!(resumed_at >= cursor_time);
    let (got, _) = collect(&mut follower, 10, None);
    assert_eq!(messages(&got), numbered("rotate", 170..180));
    assert!(got.iter().all(|g| g.phase == Phase::New));
}

#[test]
fn live_binary_messages_missing_messages_and_trusted_comm() {
    let journald = Journald::start("fields");
    let mut follower = follow(
        &journald,
        vec![expr(&["SYSLOG_IDENTIFIER=bh-test"]), expr(&["_COMM=sshd"])],
        Start::Since(now() - Duration::from_secs(60)),
    );
    journald.send(&[
        ("SYSLOG_IDENTIFIER", b"bh-test"),
        ("MESSAGE", b"bad \xff\xfe bytes\nand a second line"),
    ]);
    journald.send(&[("SYSLOG_IDENTIFIER", b"bh-test"), ("NOTE", b"no message")]);
    log_as_sshd(
        &journald,
        "Failed password for root from 192.0.2.9 port 22 ssh2",
    );
    let (got, no_message) = collect(&mut follower, 2, None);
    assert_eq!(no_message, 1);
    assert_eq!(got[0].jails, [0]);
    assert_eq!(got[0].message, b"bad \xff\xfe bytes\nand a second line");
    assert_eq!(got[1].jails, [1]);
    assert_eq!(
        got[1].message,
        b"Failed password for root from 192.0.2.9 port 22 ssh2"
    );
    assert_eq!(got.len(), 2);
}

/// Logs `message` from a process journald knows as sshd: _COMM is trusted (journald reads it
/// from /proc), so this goes through the shared helper, which renames itself and stays alive
/// until journald has stored the entry.
fn log_as_sshd(journald: &Journald, message: &str) {
    let helper = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-sshd.py"))
        .arg(journald.socket())
        .arg(message)
        .status()
        .unwrap();
    assert!(helper.success());
}

fn voluntary_switches(tid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn live_follow_thread_sleeps_while_the_journal_is_quiet() {
    let journald = Journald::start("idle");
    let mut follower = follow(
        &journald,
        vec![expr(&["SYSLOG_IDENTIFIER=bh-test"])],
        Start::Since(now() - Duration::from_secs(60)),
    );
    journald.send_message("idle 0");
    let (got, _) = collect(&mut follower, 1, None);
    assert_eq!(messages(&got), ["idle 0"]);
    let tid = follower.thread_id();
    // Let journald finish its own start-up writes (they wake the follower legitimately).
    std::thread::sleep(Duration::from_secs(1));
    // A poll loop, even at 1 Hz, would wake 5 times or more in every window. Other tests of
    // this binary start journals under /var/log/journal meanwhile, and their inotify events
    // may wake the thread too: a polling thread fails all three windows, an idle one passes
    // one of them.
    let quiet = quietest_window(tid, Duration::from_secs(5));
    assert!(quiet <= 2, "follow thread woke up {quiet} times in 5 s");
    // A change in the journal directory that adds no entry wakes the thread, which then
    // goes back to sleep instead of spinning.
    let before_stray = voluntary_switches(tid);
    let stray = journald.log_dir().join("not-a-journal");
    std::fs::write(&stray, b"x").unwrap();
    std::fs::remove_file(&stray).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let after_stray = voluntary_switches(tid);
    let settled = quietest_window(tid, Duration::from_secs(1));
    assert!(
        settled <= 1,
        "follow thread kept waking up after a spurious event ({settled} in 1 s)"
    );
    let stray_wakeups = after_stray - before_stray;
    assert!(
        stray_wakeups <= 5,
        "{stray_wakeups} wake-ups for one stray file"
    );
    let after_stray = voluntary_switches(tid);
    // The measure can fail: one entry logged wakes the thread up.
    journald.send_message("idle 1");
    let (got, _) = collect(&mut follower, 1, None);
    assert_eq!(messages(&got), ["idle 1"]);
    assert!(voluntary_switches(tid) > after_stray);
    eprintln!(
        "follow thread voluntary context switches: {quiet} in 5 quiet seconds, \
         {stray_wakeups} for a stray file"
    );
}

/// The fewest voluntary context switches of thread `tid` over one of three windows of
/// `length`, stopping at the first window without any.
fn quietest_window(tid: libc::pid_t, length: Duration) -> u64 {
    let mut fewest = u64::MAX;
    for _ in 0..3 {
        let before = voluntary_switches(tid);
        std::thread::sleep(length);
        fewest = fewest.min(voluntary_switches(tid) - before);
        if fewest == 0 {
            break;
        }
    }
    fewest
}

/// `banhound test-filter sshd --journal-namespace NAME`: the shipped sshd filter's own
/// journalmatch selects, in a live namespace, the entry of a process journald knows as sshd
/// (trusted _COMM), and not a look-alike line from another program.
#[test]
fn live_namespace_through_test_filter() {
    let journald = Journald::start("tf");
    journald.send_message("Failed password for root from 198.51.100.9 port 22 ssh2");
    log_as_sshd(
        &journald,
        "Failed password for root from 192.0.2.9 port 22 ssh2",
    );
    journald.wait_written(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stdout = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--defaults-dir")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
            .args(["test-filter", "sshd", "--json", "--journal-namespace"])
            .arg(&journald.name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.stdout.is_empty() || Instant::now() > deadline {
            break String::from_utf8(out.stdout).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let found: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["host"], "192.0.2.9");
    assert_eq!(found[0]["entry"], 1);
}

/// Milliseconds from sending each of `count` entries (`spacing` apart) to the follower
/// handing it over, sorted.
fn send_to_batch_ms(
    journald: &Journald,
    follower: &mut Follower,
    label: &str,
    count: usize,
    spacing: Duration,
) -> Vec<f64> {
    let mut latencies = Vec::new();
    for i in 0..count {
        std::thread::sleep(spacing);
        let sent = Instant::now();
        journald.send_message(&format!("{label} {i}"));
        loop {
            let batch = receive(follower, Duration::from_secs(5)).expect("entry not handed over");
            if !batch.is_empty() {
                assert_eq!(batch.len(), 1);
                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                follower.recycle(batch);
                break;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// journald tells its readers about new entries on a coalescing timer (a quarter of a
/// second), so a follower that only waits for it often sees an entry that late. Told that
/// failures are coming in, the follower reads on its short tick and hands entries over
/// within milliseconds; once the hot period is over it sleeps again without waking.
#[test]
fn a_hot_follower_hands_entries_over_at_once_and_sleeps_again_after() {
    let journald = Journald::start("hot");
    let hot_for = Duration::from_secs(2);
    let mut follower = Follower::spawn(
        journald.source(),
        JailMatches::new(vec![expr(&["SYSLOG_IDENTIFIER=bh-test"])]),
        Start::Since(now() - Duration::from_secs(60)),
        FollowOptions {
            hot_for,
            ..FollowOptions::default()
        },
    )
    .unwrap();
    let first = receive(&mut follower, Duration::from_secs(10)).expect("the first batch");
    assert!(first.at_end());
    let tid = follower.thread_id();

    // Not hot: each entry waits for journald's notification.
    let cold = send_to_batch_ms(
        &journald,
        &mut follower,
        "cold",
        4,
        Duration::from_millis(300),
    );
    // Hot, as the daemon reports after each batch with failures; the thread is asleep
    // without a timeout when told, so the report itself must wake it.
    follower.failures_seen();
    let ticking_from = voluntary_switches(tid);
    let hot = send_to_batch_ms(
        &journald,
        &mut follower,
        "hot",
        9,
        Duration::from_millis(100),
    );
    let ticks = voluntary_switches(tid) - ticking_from;
    eprintln!("send → batch, cold: {cold:.1?} ms; hot: {hot:.1?} ms; {ticks} wake-ups while hot");
    // All but the slowest within milliseconds (journald's notification alone is a quarter
    // of a second late for some of them, as `cold` shows), and the thread did tick: a follow
    // thread woken only by journald wakes about once per entry.
    let second_slowest = hot[hot.len() - 2];
    assert!(
        second_slowest < 50.0,
        "hot follow: {hot:.1?} ms from send to batch"
    );
    assert!(
        ticks > 30,
        "{ticks} wake-ups in about a second of hot follow"
    );

    // The hot period ends `hot_for` after the last report: no more wake-ups on a timer.
    std::thread::sleep(hot_for + Duration::from_millis(200));
    let quiet = quietest_window(tid, Duration::from_secs(1));
    assert!(
        quiet <= 1,
        "follow thread woke up {quiet} times in 1 s after the hot period"
    );
    follower.stop().unwrap();
}
