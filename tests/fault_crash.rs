//! Fault test "crash at any instant" (reliability issue, fault 1): the real daemon replays a
//! journal of generated sshd traffic while it is killed with SIGKILL at seeded random moments
//! and restarted each time; what it ends with must be what one uninterrupted run over the same
//! journal ends with, and what the log itself calls for.
//!
//! The journal is `gen-sshd-log --format export` (the shared benchmark generator: failures
//! from a Zipf-distributed pool of attackers among benign sshd, cron, kernel and nginx
//! traffic) turned into a real journal file by systemd-journal-remote, read by the daemon
//! with `--journal-directory` inside a network namespace with its own nftables
//! (tests/support/daemon_lab.rs). The bantime outlasts the test, so each address is banned
//! at most once, from the failure that is its `maxretry`-th within findtime (judged in log
//! time). Two kinds of journal ([`Backlog`]): a recent one whose findtime covers all of it,
//! and an old backlog (log times 3.5 h to 1 h old, findtime 30 min, the committed position
//! before it: a catch-up after a long stop) where every restart's replay must be anchored at
//! the committed entry's own time, and where the reconcile runs every second: after each
//! kill a few due bans of uncommitted entries are put in the kernel, as a kill between a
//! ban's kernel update and its commit leaves them, and no reconcile may ever remove them.
//!
//! What is compared, after the killed run's last restart has caught up and stopped:
//! - the bans in the state database, field by field (jail, address, start, end, offence,
//!   failures), against the uninterrupted run and against the bans computed from the log
//!   (the shipped sshd filter applied to the entries the jail's journalmatch selects): a
//!   failure counted twice would ban an address below `maxretry` or start a ban early; a
//!   lost ban would be missing;
//! - the ban history: every address banned exactly as often as in the uninterrupted run;
//! - the kernel's sets against the database, in both runs.
//!
//! Kills are aimed (seeded) at start-up, at the replay of the committed entries, at new
//! entries, or anywhere in a life, and in the last sixth at the steady state; see [`Aim`].
//! After every kill, while the daemon is dead: the committed journal position never went
//! back, and every kernel element is a committed ban or one the log makes due (the state
//! writer thread commits a ban while the owner applies it, so a kill can fall between the
//! two; the restart reads its entries again and bans it again). Both kinds of gap are
//! counted: committed bans missing from the kernel are the restart's job.
//!
//! Beside it: a plain stop and a start far more than findtime later (with a ban over by the
//! wall clock when it starts again), the same stop for a file jail, and a reconcile that falls
//! within a restart's catch-up.
//!
//! Forms: `cargo test --test fault_crash` runs the short forms (20,000 entries, 20 kills,
//! each backlog); `cargo test --test fault_crash -- --ignored --nocapture` the full ones
//! (recent: 100,000 entries, 30 kills; old: 200,000 entries, 20 kills).
//! `BANHOUND_FAULT_SEED=N` picks another seed (journal and kill times derive from
//! it); `GEN_SSHD_LOG` points at the generator if it is not in ../shared/bench. The figures
//! are printed (with --nocapture) for docs/reliability.md. Needs root, nft, ip,
//! journalctl, /lib/systemd/systemd-journald and systemd-journal-remote.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/seeded.rs"]
mod seeded;

use banhound::config::{self, ConfigPaths, JailSettings, JailSource};
use banhound::daemon::state::{StateDb, StoredBan, DATABASE_FILE};
use banhound::engine::filter::{Host, Outcome};
use banhound::engine::multiline::{Origin, SourceState};
use banhound::engine::time::{BanTime, Timestamp};
use daemon_lab::{generator, Daemon, Lab, SERVER_ATTACKER_SIDE, SERVER_FRIEND_SIDE, SSHD_SET};
use ipnet::IpNet;
use netlab::wait_for;
use rusqlite::{Connection, OpenFlags};
use seeded::Rng;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const JAIL: &str = "sshd";
const MAXRETRY: u32 = 5;
/// Outlasts the test: no ban expires, so each address is banned at most once.
const BANTIME: &str = "1d";
/// The IPv6 set beside daemon_lab's IPv4 [`SSHD_SET`].
const SSHD_SET_V6: &str = "sshd-v6";
/// Upper bound for one daemon to read the whole journal; only a broken daemon (or a badly
/// overloaded machine) gets near it.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(600);
/// The first sshd entry of an old backlog: the last one a daemon processed before it was
/// stopped for hours (the test stores its cursor as the committed position).
const MARKER: &str = "Server listening on 0.0.0.0 port 22.";

/// The log times of the journal a crash test replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backlog {
    /// Ending a minute before the test, with a findtime that covers the whole journal for as
    /// long as any test runs, so every start's look-back reads all of it.
    Recent,
    /// 3.5 h to 1 h old, with a findtime of 30 min, caught up after a stop of hours: the
    /// committed position is the marker entry before it. Every restart's replay must be
    /// anchored at the committed entry's own time, not at the wall clock (where nothing
    /// would be replayed at all), and the periodic reconcile (every second here) must not
    /// lift a ban applied before a kill whose commit never happened.
    Old,
}

impl Backlog {
    fn config(self) -> String {
        let (findtime, daemon) = match self {
            Backlog::Recent => ("3h", ""),
            Backlog::Old => ("30m", "[daemon]\nreconcile_interval = \"1s\"\n"),
        };
        format!(
            "{daemon}[jail.{JAIL}]\nenabled = true\nport = \"{port}\"\nmaxretry = {MAXRETRY}\n\
             findtime = \"{findtime}\"\nbantime = \"{BANTIME}\"\n",
            port = daemon_lab::PORT
        )
    }
}

#[test]
fn sigkill_at_random_moments_changes_no_ban_short() {
    crash_at_any_instant("s", Backlog::Recent, 20_000, 20);
}

#[test]
#[ignore = "full form (100,000 entries, 30 kills, minutes): run with --ignored"]
fn sigkill_at_random_moments_changes_no_ban_full() {
    crash_at_any_instant("f", Backlog::Recent, 100_000, 30);
}

#[test]
fn sigkill_while_catching_up_an_old_backlog_changes_no_ban_short() {
    crash_at_any_instant("o", Backlog::Old, 20_000, 20);
}

#[test]
#[ignore = "full form (200,000 entries of an old backlog, 20 kills, minutes): run with --ignored"]
fn sigkill_while_catching_up_an_old_backlog_changes_no_ban_full() {
    crash_at_any_instant("g", Backlog::Old, 200_000, 20);
}

/// A plain stop and a start much more than findtime later: the failures logged before the
/// stop (committed, so replayed count-only) and those logged while stopped (new) are judged
/// together, by their own log times. The journal's times put the stop 70 min back, so for
/// the daemon the start comes 70 min after it, without the test waiting for it.
///
/// Also a ban that ended by the wall clock (its log time plus bantime is past) still covers
/// its log times after the restart: failures logged during it do not count, as in a run that
/// was never stopped; those logged after its end do.
#[test]
fn a_stop_longer_than_findtime_forgets_no_attacker() {
    let config = format!(
        "[jail.{JAIL}]\nenabled = true\nport = \"{port}\"\nmaxretry = {MAXRETRY}\n\
         findtime = \"10m\"\nbantime = \"90m\"\n",
        port = daemon_lab::PORT
    );
    let settings = load_settings(&config);
    let findtime = sshd_jail(&settings).policy.findtime;
    let bantime = Duration::from_secs(90 * 60);
    // Log times are seconds after `t0`, two hours ago; banhound was stopped at 50 min.
    let t0 = wall_now_us() - 2 * 3_600_000_000;
    let min = |m: i64| m * 60;
    // Crosses maxretry across the stop, within findtime: banned at its 5th failure.
    let crosser = "192.0.2.10";
    // Four failures in all: never banned.
    let below = "192.0.2.20";
    // Five failures, but the last two come more than findtime after the first three.
    let slow = "192.0.2.30";
    // Banned at 1 min, for 90 min, a ban over by the wall clock when the daemon starts
    // again. Its five failures at 55 min fall within that ban and do not count; the five at
    // 95 min, after it, ban it again.
    let old = "192.0.2.40";
    let before_stop = (0..5)
        .map(|i| (old, min(1) + i))
        .chain((0..3).map(|i| (crosser, min(45) + i)))
        .chain((0..3).map(|i| (slow, min(46) + i)))
        .chain((0..2).map(|i| (below, min(47) + i)));
    let while_stopped = (0..2)
        .map(|i| (crosser, min(52) + i))
        .chain((0..2).map(|i| (below, min(53) + i)))
        .chain((0..5).map(|i| (old, min(55) + i)))
        .chain((0..2).map(|i| (slow, min(57) + i)))
        .chain((0..5).map(|i| (old, min(95) + i)));
    let dir = tempfile::tempdir().unwrap();
    let mut monotonic = 1;
    let mut entry = |at_s: i64, message: &str| {
        monotonic += 1;
        format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={monotonic}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=bench-host\n\
             SYSLOG_IDENTIFIER=sshd\n_COMM=sshd\n_PID=1000\n_SYSTEMD_UNIT=ssh.service\n\
             MESSAGE={message}\n\n",
            t0 + at_s * 1_000_000
        )
    };
    let failure = |addr: &str, i: i64| {
        format!(
            "Failed password for invalid user u{i} from {addr} port {} ssh2",
            40000 + i % 20000
        )
    };
    let mut first = entry(0, MARKER);
    for (addr, at) in before_stop {
        first.push_str(&entry(at, &failure(addr, at)));
    }
    first.push_str(&entry(min(50), "Received signal 15; terminating."));
    write_journal(dir.path(), "before-stop", first.as_bytes());
    let mut second = String::new();
    for (addr, at) in while_stopped {
        second.push_str(&entry(at, &failure(addr, at)));
    }

    let mut lab = Lab::new("st", &config);
    lab.read_journal_directory(dir.path());
    let cursors = |dir: &Path| -> Vec<String> {
        export(dir, &[])
            .into_iter()
            .map(|mut e| e.remove("__CURSOR").unwrap())
            .collect()
    };
    let written = cursors(dir.path());
    // The daemon ran until the marker, was stopped, and is started now: it reads the first
    // part, and is stopped again.
    seed_cursor(&lab, dir.path(), &written[0]);
    let last = written.last().unwrap().clone();
    let wait_position = |lab: &Lab, daemon: &mut Daemon, cursor: &str, what: &str| {
        wait_while_alive(daemon, what, CATCH_UP_TIMEOUT, |_| {
            Committed::read(&lab.state_dir()).cursor.as_deref() == Some(cursor)
        });
    };
    let mut daemon = lab.spawn(false, &[]);
    wait_position(&lab, &mut daemon, &last, "the first part committed");
    stop(daemon, "the first start");

    // Logged while it was stopped.
    write_journal(dir.path(), "while-stopped", second.as_bytes());
    let written = cursors(dir.path());
    assert_eq!(written.len(), 15 + 16, "both parts are in the journal");
    let mut daemon = lab.spawn(false, &[]);
    let last = written.last().unwrap().clone();
    wait_position(&lab, &mut daemon, &last, "the second part committed");
    let log = daemon.log();
    stop(daemon, "the second start");

    let at = |s: i64| Timestamp::from_micros(t0 + s * 1_000_000);
    let ban = |addr: &str, since: Timestamp| StoredBan {
        jail: JAIL.into(),
        target: IpNet::from(addr.parse::<IpAddr>().unwrap()),
        since,
        until: Some(since + bantime),
        offence: 1,
        failures: MAXRETRY,
    };
    let crosser_ban = ban(crosser, at(min(52) + 1));
    assert!(
        Timestamp::from_micros(wall_now_us()).since(at(min(50))) > findtime * 6,
        "the start came long after findtime"
    );
    let db = StateDb::open(&lab.state_dir()).unwrap();
    assert_eq!(
        db.bans().unwrap(),
        vec![crosser_ban, ban(old, at(min(95) + 4))],
        "in force: the attacker who crossed maxretry while banhound was stopped, from its \
         5th failure, and the old one banned again after its first ban's end, not during \
         it:\n{log}"
    );
    let history: Vec<(String, i64)> = db
        .offences()
        .unwrap()
        .into_iter()
        .map(|(_, target, _, last)| (target.addr().to_string(), last.as_micros()))
        .collect();
    drop(db);
    assert_eq!(
        history,
        [
            (crosser.to_string(), at(min(52) + 1).as_micros()),
            (old.to_string(), at(min(95) + 4).as_micros()),
        ],
        "nobody else was ever banned"
    );
    assert_eq!(
        kernel_bans(&lab),
        BTreeSet::from([crosser.parse().unwrap(), old.parse().unwrap()]),
        "the bans in force are in the kernel (the first ban of {old}, over, is not)"
    );
    let old_bans = Connection::open_with_flags(
        lab.state_dir().join(DATABASE_FILE),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
    .query_row(
        "SELECT group_concat(started_us) FROM (SELECT started_us FROM ban_history \
         WHERE target = ?1 ORDER BY started_us)",
        [format!("{old}/32")],
        |r| r.get::<_, String>(0),
    )
    .unwrap();
    assert_eq!(
        old_bans,
        format!(
            "{},{}",
            at(min(1) + 4).as_micros(),
            at(min(95) + 4).as_micros()
        ),
        "{old} was banned at 1 min and at 95 min, never at 55 min"
    );
}

/// The same for a file jail: lines appended while banhound was stopped come after the stored
/// offset and are judged by their own dates, however long ago they were written. (Lines
/// before the offset are not read again, so a file's failure windows are not rebuilt.)
#[test]
fn a_file_jail_judges_lines_logged_while_stopped_by_their_dates() {
    let logs = tempfile::tempdir().unwrap();
    let auth = logs.path().join("auth.log");
    let config = format!(
        "[jail.sshd]\nenabled = false\n\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\n\
         logpath = [\"{}\"]\nport = \"{port}\"\nmaxretry = {MAXRETRY}\nfindtime = \"10m\"\n\
         bantime = \"{BANTIME}\"\n",
        auth.display(),
        port = daemon_lab::PORT
    );
    let ago = |secs: i64| {
        jiff::Zoned::now()
            .checked_sub(jiff::SignedDuration::from_secs(secs))
            .unwrap()
    };
    let append = |lines: &[(jiff::Zoned, String)]| {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&auth)
            .unwrap();
        for (at, text) in lines {
            writeln!(file, "{} server {text}", at.strftime("%b %e %H:%M:%S")).unwrap();
        }
    };
    let key = format!("file:{}", auth.display());
    let committed_to_the_end = |lab: &Lab| {
        let len = std::fs::metadata(&auth).unwrap().len();
        StateDb::open(&lab.state_dir())
            .unwrap()
            .cursor(&key)
            .unwrap()
            .is_some_and(|c| c.ends_with(&format!(":{len}")))
    };
    append(&[(
        ago(80 * 60),
        "sshd[1]: Server listening on 0.0.0.0 port 22.".into(),
    )]);
    let mut lab = Lab::new("fj", &config);
    let mut daemon = lab.spawn(false, &[]);
    wait_while_alive(&mut daemon, "the file committed", CATCH_UP_TIMEOUT, |_| {
        committed_to_the_end(&lab)
    });
    stop(daemon, "the first start");

    // While stopped, 70 min ago: five failures within a minute.
    let attacker = "192.0.2.50";
    let fifth = ago(70 * 60);
    let failures: Vec<(jiff::Zoned, String)> = (0..5)
        .map(|i| {
            (
                fifth
                    .checked_sub(jiff::SignedDuration::from_secs(4 - i))
                    .unwrap(),
                format!(
                    "sshd[{}]: Failed password for root from {attacker} port {} ssh2",
                    2000 + i,
                    42000 + i
                ),
            )
        })
        .collect();
    append(&failures);
    let mut daemon = lab.spawn(false, &[]);
    wait_while_alive(&mut daemon, "the file committed", CATCH_UP_TIMEOUT, |_| {
        committed_to_the_end(&lab)
    });
    let log = daemon.log();
    stop(daemon, "the second start");
    let bans = StateDb::open(&lab.state_dir()).unwrap().bans().unwrap();
    let since = Timestamp::from_secs(fifth.timestamp().as_second());
    assert_eq!(
        bans.iter()
            .map(|b| (b.target.addr().to_string(), b.since))
            .collect::<Vec<_>>(),
        [(attacker.to_string(), since)],
        "the attacker whose failures were logged while banhound was stopped is banned, from \
         its 5th failure:\n{log}"
    );
    assert!(lab
        .banned_in("sshd-file-v4")
        .iter()
        .any(|(addr, _)| addr == attacker));
}

/// A ban applied just before a crash whose commit never happened is in the kernel but not in
/// the database: only the restart's catch-up decides it again, when it reaches its entries.
/// A reconcile before then must not lift it. The catch-up is made to outlast the reconcile
/// interval (1 s) by stopping the daemon (SIGSTOP) for 1.5 s right after READY, as a loaded
/// machine would: when it continues, its reconcile is due before it has read on.
#[test]
fn a_reconcile_during_the_catch_up_lifts_no_ban_it_decides_again() {
    let config = Backlog::Old.config();
    let settings = load_settings(&config);
    let jail = sshd_jail(&settings);
    let journal = Journal::generate(20_000, seed(), jail, Backlog::Old);
    let expected = Expected::from_log(&journal, jail);
    let &(index, target) = expected.order.last().expect("the journal has bans");
    let mut lab = Lab::new("cu", &config);
    lab.read_journal_directory(journal.dir());
    journal.seed_position(&lab);

    let mut daemon = lab.spawn(false, &[]);
    wait_ready(&mut daemon, "READY");
    daemon.signal(libc::SIGSTOP);
    let committed = journal.position(Committed::read(&lab.state_dir()).cursor.as_deref());
    assert!(
        committed <= index,
        "the catch-up must not have reached the last ban's entry yet ({committed} of {} committed)",
        journal.selected.len()
    );
    // What the crashed life left: the ban in the kernel, its entries not committed.
    assert!(
        add_kernel_ban(&lab, target.addr()),
        "the sets exist once READY"
    );
    std::thread::sleep(Duration::from_millis(1500));
    daemon.signal(libc::SIGCONT);

    let total = journal.selected.len();
    let mut gone = 0;
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    let mut caught_up = None;
    while caught_up.is_none_or(|at: Instant| at.elapsed() < Duration::from_millis(2500)) {
        if !kernel_bans(&lab).contains(&target.addr()) {
            gone += 1;
        }
        if caught_up.is_none()
            && journal.position(Committed::read(&lab.state_dir()).cursor.as_deref()) == total
        {
            caught_up = Some(Instant::now());
        }
        assert!(Instant::now() < deadline, "timed out:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = daemon.log();
    stop(daemon, "the daemon");
    eprintln!(
        "catch-up stopped for 1.5 s: {} kernel element(s) removed by a reconcile, the ban \
         of {target} missing from the kernel in {gone} checks",
        removed_by_reconcile(&log)
    );
    assert_eq!(
        (removed_by_reconcile(&log), gone),
        (0, 0),
        "the ban of {target} was lifted before the catch-up decided it again:\n{log}"
    );
    let bans = StateDb::open(&lab.state_dir()).unwrap().bans().unwrap();
    assert!(
        bans.contains(&expected.bans[&target]),
        "the catch-up decided the ban of {target} again"
    );
}

fn seed() -> u64 {
    std::env::var("BANHOUND_FAULT_SEED")
        .ok()
        .map(|s| s.parse().expect("BANHOUND_FAULT_SEED is a number"))
        .unwrap_or(1)
}

fn crash_at_any_instant(form: &str, backlog: Backlog, entries: usize, kills: usize) {
    let test_started = Instant::now();
    let seed = seed();
    let config = backlog.config();
    let settings = load_settings(&config);
    let jail = sshd_jail(&settings);
    assert_eq!(jail.policy.ipv6_prefix, 128, "bans are per address");
    assert!(
        jail.policy.escalation.is_none(),
        "every ban has the bantime"
    );

    let journal = Journal::generate(entries, seed, jail, backlog);
    let expected = Expected::from_log(&journal, jail);
    assert!(
        expected.bans.len() >= 30 && expected.below > 50,
        "the journal must have bans and near misses to compare: {} bans, {} below maxretry",
        expected.bans.len(),
        expected.below
    );

    // One uninterrupted run.
    let (reference, reference_log) = {
        let mut lab = Lab::new(&format!("cr{form}r"), &config);
        lab.read_journal_directory(journal.dir());
        journal.seed_position(&lab);
        let (ready, done, log) =
            run_to_the_end(&mut lab, &journal, backlog, "the uninterrupted run");
        (Run::collect(&lab, ready, done), log)
    };
    check_against_log(&reference, &expected, "uninterrupted run");
    assert_eq!(
        removed_by_reconcile(&reference_log),
        0,
        "uninterrupted run: a reconcile lifted bans in force:\n{reference_log}"
    );

    // The same journal, killed `kills` times; fresh state and fresh nftables.
    let mut lab = Lab::new(&format!("cr{form}k"), &config);
    lab.read_journal_directory(journal.dir());
    journal.seed_position(&lab);
    let mut rng = Rng(seed);
    let mut log: Vec<Kill> = Vec::new();
    let baseline = Baseline {
        journal: &journal,
        reference: &reference,
        expected: &expected,
        backlog,
    };
    let crash_started = Instant::now();
    for k in 0..kills {
        let kill = kill_once(&mut lab, &baseline, &mut rng, k, kills, log.last());
        log.push(kill);
    }
    let (last_ready, _, last_log) = run_to_the_end(&mut lab, &journal, backlog, "the last restart");
    let crashed = Run::collect(&lab, last_ready, crash_started.elapsed());
    drop(lab);

    // Said before the assertions, so a failing run shows how much went wrong.
    let stored: BTreeSet<IpNet> = crashed.bans.iter().map(|b| b.target).collect();
    let lost = expected.bans.keys().filter(|t| !stored.contains(t)).count();
    let removed = log.iter().map(|k| k.removed).sum::<usize>() + removed_by_reconcile(&last_log);
    let injected = log.iter().map(|k| k.injected).sum::<usize>();
    eprintln!(
        "killed run ({backlog:?} backlog): {lost} of {} due bans missing ({:.1} %); \
         {injected} bans put in the kernel as if applied just before a kill, uncommitted; \
         {removed} kernel elements removed by a reconcile",
        expected.bans.len(),
        100.0 * lost as f64 / expected.bans.len() as f64
    );
    assert_eq!(
        removed, 0,
        "a reconcile lifted bans in force (attackers let back in)"
    );
    check_against_log(&crashed, &expected, "killed run");
    assert_eq!(
        crashed.bans, reference.bans,
        "the killed run's bans are the uninterrupted run's"
    );
    assert_eq!(
        crashed.history, reference.history,
        "the killed run's ban history is the uninterrupted run's (each address banned as often)"
    );
    if backlog == Backlog::Recent {
        // The comparisons assume every start looked back over the whole journal.
        assert!(
            Timestamp::from_micros(wall_now_us()).since(Timestamp::from_micros(journal.first_us))
                < jail.policy.findtime,
            "the test outran its findtime"
        );
    }

    report(
        form,
        backlog,
        seed,
        &journal,
        &expected,
        &reference,
        &crashed,
        &log,
        test_started.elapsed(),
    );
}

/// How many kernel elements the reconciles in a daemon's log removed as "no longer in force".
fn removed_by_reconcile(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("no longer in force"))
        .map(|l| {
            let field = l.split_once("REMOVED=").map_or("", |(_, rest)| rest);
            let digits: String = field.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().unwrap_or(1)
        })
        .sum()
}

/// When a kill is aimed. Each kill picks one at random (seeded), so kills land in every part
/// of a daemon's life whatever the speed of the machine; the instant within it is random
/// too. The catch-up is spread over most kills (each life gets about 4/kills of it); the
/// last sixth aims at the steady state instead of new entries.
#[derive(Clone, Copy, Debug)]
enum Aim {
    /// Within the uninterrupted run's time to READY after the spawn: start-up, restore of
    /// the stored bans, journal positioning (a restart is READY a little sooner).
    StartUp,
    /// Once READY, within about the time the replay of the committed entries takes.
    Replay,
    /// Once a new batch was committed in this life, within a slice of the catch-up.
    NewEntries,
    /// Anywhere from the spawn to the end of that slice.
    Anywhere,
    /// Once everything is committed, within a second.
    SteadyState,
}

impl Aim {
    fn pick(rng: &mut Rng, k: usize, kills: usize) -> Aim {
        let steady = k >= kills - kills / 6;
        match (rng.next() % 4, steady) {
            (0, _) => Aim::StartUp,
            (1, _) => Aim::Replay,
            (2, _) => Aim::Anywhere,
            (_, false) => Aim::NewEntries,
            (_, true) => Aim::SteadyState,
        }
    }
}

/// Where the daemon was when it was killed, from its log and the committed position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Configuration, state database, firewall objects, restore of the stored bans.
    BeforeRestored,
    /// Bans restored; journal being positioned; READY=1 not yet sent.
    RestoredNotReady,
    /// Ready; nothing new committed in this life yet (replaying the committed entries, or
    /// on the first new batch).
    Replaying,
    /// Ready; new entries committed in this life, more to read.
    NewEntries,
    /// Ready, everything committed; following a quiet journal.
    CaughtUp,
}

impl Phase {
    fn before_ready(self) -> bool {
        self <= Phase::RestoredNotReady
    }

    fn describe(self) -> &'static str {
        match self {
            Phase::BeforeRestored => "start-up, before the stored bans were restored",
            Phase::RestoredNotReady => "bans restored, before READY",
            Phase::Replaying => "after READY, nothing new committed yet",
            Phase::NewEntries => "after READY, committing new entries",
            Phase::CaughtUp => "after READY, caught up",
        }
    }
}

struct Kill {
    aim: Aim,
    /// From the spawn.
    at: Duration,
    phase: Phase,
    /// Selected entries committed when it died.
    committed: usize,
    /// Bans in the database when it died.
    stored: usize,
    /// Of those, not in the kernel (committed, not yet applied, or the restore not done).
    not_in_kernel: usize,
    /// In the kernel but not committed yet: applied while the writer thread was committing.
    ahead_of_commit: usize,
    /// Kernel elements this life's reconciles removed as "no longer in force".
    removed: usize,
    /// Due bans of uncommitted entries put in the kernel after the kill (old backlog only).
    injected: usize,
    /// Those put there after this kill or an earlier one.
    planted: BTreeSet<IpAddr>,
    /// The kernel's elements once the daemon was dead (after the injection).
    kernel: BTreeSet<IpAddr>,
}

/// What every life of the killed run is checked against.
struct Baseline<'a> {
    journal: &'a Journal,
    reference: &'a Run,
    expected: &'a Expected,
    backlog: Backlog,
}

/// How many uncommitted due bans are put in the kernel after each kill of an old backlog's
/// catch-up: what a kill between a ban's kernel update and its commit leaves (rare by
/// chance, so made certain), for the next life to decide again, never to remove.
const INJECTED_PER_KILL: usize = 5;

fn kill_once(
    lab: &mut Lab,
    baseline: &Baseline<'_>,
    rng: &mut Rng,
    k: usize,
    kills: usize,
    previous: Option<&Kill>,
) -> Kill {
    let aim = Aim::pick(rng, k, kills);
    let random = rng.unit();
    let before = previous.map_or(0, |p| p.committed);
    let spawned = Instant::now();
    let Baseline {
        journal,
        reference,
        expected,
        backlog,
    } = baseline;
    let due: BTreeSet<IpAddr> = expected.bans.keys().map(IpNet::addr).collect();
    let mut daemon = lab.spawn(false, &[]);
    // `ip netns exec` execs the daemon: kill the daemon, not the launcher.
    wait_for("the daemon to be exec'd", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{}/comm", daemon.pid()))
            .is_ok_and(|comm| comm.trim() == "banhound")
    });
    let catch_up = reference.done.saturating_sub(reference.ready);
    let total = journal.selected.len();
    let replay = catch_up.mul_f64(before as f64 / total as f64);
    let slice = catch_up.mul_f64(4.0 / kills as f64);
    let kill_at = match aim {
        Aim::StartUp => reference.ready.mul_f64(random),
        Aim::Replay => {
            wait_ready(&mut daemon, &format!("start {k}: READY"));
            spawned.elapsed() + replay.mul_f64(random)
        }
        Aim::NewEntries if before < total => {
            let what = format!("start {k}: a new batch committed");
            wait_committed(lab, journal, &mut daemon, &what, |c| c > before);
            spawned.elapsed() + slice.mul_f64(random)
        }
        Aim::Anywhere | Aim::NewEntries => (reference.ready + replay + slice).mul_f64(random),
        Aim::SteadyState => {
            wait_ready(&mut daemon, &format!("start {k}: READY"));
            let what = format!("start {k}: the catch-up");
            wait_committed(lab, journal, &mut daemon, &what, |c| c == total);
            spawned.elapsed() + Duration::from_secs(1).mul_f64(random)
        }
    };
    std::thread::sleep(kill_at.saturating_sub(spawned.elapsed()));
    if let Some(status) = daemon.exit_within(Duration::ZERO) {
        panic!(
            "start {k}: the daemon exited by itself ({status}):\n{}",
            daemon.log()
        );
    }
    daemon.signal(libc::SIGKILL);
    let at = spawned.elapsed();
    daemon
        .exit_within(Duration::from_secs(10))
        .expect("SIGKILL ends the daemon");
    let text = daemon.log();
    drop(daemon);

    let state = Committed::read(&lab.state_dir());
    let committed = journal.position(state.cursor.as_deref());
    let kernel = kernel_bans(lab);
    let stored: BTreeSet<IpAddr> = state.bans.iter().map(|(_, t)| t.addr()).collect();
    let ahead: Vec<IpAddr> = kernel.difference(&stored).copied().collect();
    // Put there by the test after an earlier kill, not by this life.
    let mut planted = previous.map(|p| p.planted.clone()).unwrap_or_default();
    let unknown: Vec<&IpAddr> = ahead.iter().filter(|a| !due.contains(a)).collect();
    assert!(
        unknown.is_empty(),
        "kill {k}: kernel bans neither in the database nor due from the log: {unknown:?}"
    );
    assert!(
        committed >= before,
        "kill {k}: the committed position went back from {before} to {committed}"
    );
    // No ban expires in the test: an element that went away was lifted, letting its attacker
    // back in. Reported at the end (with the reconciles' own count), not here, so a failing
    // run says how much was lost.
    let vanished = previous.map_or(0, |p| p.kernel.difference(&kernel).count());
    let removed = removed_by_reconcile(&text).max(vanished);
    let mut kernel = kernel;
    let ahead_of_commit = ahead.iter().filter(|a| !planted.contains(a)).count();
    let mut injected = 0;
    if *backlog == Backlog::Old {
        let uncommitted: Vec<IpAddr> = expected
            .order
            .iter()
            .filter(|(index, target)| *index >= committed && !kernel.contains(&target.addr()))
            .take(INJECTED_PER_KILL)
            .map(|(_, target)| target.addr())
            .collect();
        for addr in uncommitted {
            if add_kernel_ban(lab, addr) {
                kernel.insert(addr);
                planted.insert(addr);
                injected += 1;
            }
        }
    }
    let restored = text
        .lines()
        .any(|l| l.contains(" restored ") && l.ends_with(" ban(s)"));
    let phase = if !restored {
        Phase::BeforeRestored
    } else if !text.contains("banhound started") {
        Phase::RestoredNotReady
    } else if committed == journal.selected.len() {
        Phase::CaughtUp
    } else if committed == before {
        Phase::Replaying
    } else {
        Phase::NewEntries
    };
    let kill = Kill {
        aim,
        at,
        phase,
        committed,
        stored: stored.len(),
        not_in_kernel: stored.difference(&kernel).count(),
        ahead_of_commit,
        removed,
        injected,
        planted,
        kernel,
    };
    eprintln!(
        "kill {k:2} ({:10}) at {:6.0} ms: {:46} {:6}/{} entries committed, {:4} bans stored, {:3} not in the kernel, {:3} not committed, {} removed, {} injected",
        format!("{:?}", kill.aim),
        kill.at.as_secs_f64() * 1000.0,
        kill.phase.describe(),
        kill.committed,
        journal.selected.len(),
        kill.stored,
        kill.not_in_kernel,
        kill.ahead_of_commit,
        kill.removed,
        kill.injected
    );
    kill
}

/// Puts a ban of `addr` in the sshd jail's set, as the daemon does (a day's timeout); false
/// if the set does not exist yet (the first life was killed before creating it).
fn add_kernel_ban(lab: &Lab, addr: IpAddr) -> bool {
    let set = if addr.is_ipv4() {
        SSHD_SET
    } else {
        SSHD_SET_V6
    };
    let out = netlab::in_netns(lab.server().name(), || {
        Command::new("nft")
            .args(["add", "element", "inet", "banhound", set])
            .arg(format!("{{ {addr} timeout 1d }}"))
            .output()
            .unwrap()
    });
    out.status.success()
}

/// Starts a daemon and lets it read everything, then stops it: (time to READY, time until
/// everything was committed and it was READY), both from the spawn, and its log.
fn run_to_the_end(
    lab: &mut Lab,
    journal: &Journal,
    backlog: Backlog,
    which: &str,
) -> (Duration, Duration, String) {
    let started = Instant::now();
    let mut daemon = lab.spawn(false, &[]);
    // After READY the stored bans are back in the kernel, whatever earlier lives committed.
    wait_ready(&mut daemon, &format!("{which}: READY"));
    let ready = started.elapsed();
    let total = journal.selected.len();
    let what = format!("{which}: the catch-up");
    wait_committed(lab, journal, &mut daemon, &what, |c| c == total);
    let done = started.elapsed();
    if backlog == Backlog::Old {
        // A steady state long enough for two reconciles (every second): one that lifted a
        // ban in force would lift it now.
        std::thread::sleep(Duration::from_millis(2500));
    }
    let log = daemon.log();
    stop(daemon, which);
    (ready, done, log)
}

/// Polls `done` until it holds; fails at once, with the daemon's log, if the daemon exits.
fn wait_while_alive(
    daemon: &mut Daemon,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Daemon) -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done(daemon) {
        if let Some(status) = daemon.exit_within(Duration::ZERO) {
            panic!(
                "{what}: the daemon exited by itself ({status}):\n{}",
                daemon.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_ready(daemon: &mut Daemon, what: &str) {
    wait_while_alive(daemon, what, Duration::from_secs(60), |d| {
        d.log().contains("banhound started")
    });
}

/// Waits until the number of committed entries satisfies `done`.
fn wait_committed(
    lab: &Lab,
    journal: &Journal,
    daemon: &mut Daemon,
    what: &str,
    done: impl Fn(usize) -> bool,
) {
    wait_while_alive(daemon, what, CATCH_UP_TIMEOUT, |_| {
        done(journal.position(Committed::read(&lab.state_dir()).cursor.as_deref()))
    });
}

/// SIGTERM; it must exit successfully.
fn stop(mut daemon: Daemon, which: &str) {
    daemon.signal(libc::SIGTERM);
    let status = daemon.exit_within(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{which} did not stop cleanly on SIGTERM ({status:?}):\n{}",
        daemon.log()
    );
}

fn sshd_jail(settings: &config::Settings) -> &JailSettings {
    settings
        .jails
        .iter()
        .find(|j| j.name == JAIL)
        .expect("the sshd jail is configured")
}

/// The jail as the daemon loads it (shipped defaults plus the test's file).
fn load_settings(text: &str) -> config::Settings {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("banhound.toml");
    std::fs::write(&main, text).unwrap();
    config::load(&ConfigPaths {
        defaults_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"),
        config_dir: dir.path().to_path_buf(),
        main_file: Some(main),
    })
    .expect("the test configuration loads")
}

fn wall_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// One entry the jail's journalmatch selects.
struct Selected {
    cursor: String,
    at_us: i64,
    message: String,
    /// `_HOSTNAME` and `_PID`: the process whose session the sshd filter counts tries in.
    host: String,
    pid: Option<String>,
}

/// The generated journal file, and what journalctl (not banhound) reads from it.
struct Journal {
    dir: tempfile::TempDir,
    entries: usize,
    first_us: i64,
    /// In journal order.
    selected: Vec<Selected>,
    /// Cursor -> index in `selected`.
    index: HashMap<String, usize>,
}

impl Journal {
    fn generate(entries: usize, seed: u64, jail: &JailSettings, backlog: Backlog) -> Journal {
        let dir = tempfile::tempdir().unwrap();
        let now = wall_now_us() / 1_000_000;
        let start = match backlog {
            // Ends about a minute before now: inside every start's look-back, none in the
            // future.
            Backlog::Recent => now - (entries / 100) as i64 - 60,
            Backlog::Old => now - OLD_FIRST_AGE.as_secs() as i64,
        };
        let mut command = Command::new(generator());
        command
            .arg(entries.to_string())
            .args(["--format", "export", "--seed", &seed.to_string()])
            .args(["--start", &start.to_string()]);
        if backlog == Backlog::Old {
            // Fewer attackers than by default (3 per 200 entries), so that some reach
            // maxretry within a findtime of a journal this much longer, and some do not.
            command.args(["--attackers", &(entries * 3 / 200).to_string()]);
        }
        let out = command
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", generator().display()));
        assert!(out.status.success(), "gen-sshd-log failed");
        let text = String::from_utf8(out.stdout).expect("gen-sshd-log writes text");
        let text = match backlog {
            Backlog::Recent => text,
            Backlog::Old => {
                let marker = format!(
                    "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP=1\n\
                     _BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=bench-host\n\
                     PRIORITY=6\nSYSLOG_FACILITY=4\nSYSLOG_IDENTIFIER=sshd\n_COMM=sshd\n\
                     _PID=999\n_SYSTEMD_UNIT=ssh.service\nMESSAGE={MARKER}\n\n",
                    (start - 1) * 1_000_000
                );
                marker + &stretch(&text, start * 1_000_000)
            }
        };
        write_journal(dir.path(), "generated", text.as_bytes());
        let entries = entries + usize::from(backlog == Backlog::Old);

        let all = export(dir.path(), &[]);
        assert_eq!(
            all.len(),
            entries,
            "every generated entry is in the journal"
        );
        let JailSource::Journal { matches } = &jail.source else {
            panic!("the sshd jail reads the journal");
        };
        let selected: Vec<Selected> = export(dir.path(), matches)
            .into_iter()
            .map(|mut fields| Selected {
                cursor: fields.remove("__CURSOR").unwrap(),
                at_us: fields["__REALTIME_TIMESTAMP"].parse().unwrap(),
                message: fields.remove("MESSAGE").unwrap_or_default(),
                host: fields.remove("_HOSTNAME").unwrap_or_default(),
                pid: fields.remove("_PID"),
            })
            .collect();
        // gen-sshd-log gives its sshd entries _COMM=sshd and _SYSTEMD_UNIT=ssh.service, and
        // no other entry either.
        let sshd = all
            .iter()
            .filter(|e| e.get("_COMM").is_some_and(|c| c == "sshd"))
            .count();
        assert_eq!(
            selected.len(),
            sshd,
            "the jail's journalmatch selects the sshd entries, and only them"
        );
        let index = selected
            .iter()
            .enumerate()
            .map(|(i, s)| (s.cursor.clone(), i))
            .collect();
        Journal {
            dir,
            entries,
            first_us: all[0]["__REALTIME_TIMESTAMP"].parse().unwrap(),
            selected,
            index,
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// For an old backlog: stores the marker entry's cursor as the lab's committed journal
    /// position, as a daemon stopped right after reading it would have.
    fn seed_position(&self, lab: &Lab) {
        let Some(first) = self.selected.first().filter(|s| s.message == MARKER) else {
            return;
        };
        seed_cursor(lab, self.dir(), &first.cursor);
    }

    /// How many selected entries are committed at `cursor` (0: none).
    fn position(&self, cursor: Option<&str>) -> usize {
        cursor.map_or(0, |c| {
            self.index
                .get(c)
                .unwrap_or_else(|| panic!("stored cursor {c:?} is no selected entry"))
                + 1
        })
    }
}

/// How old the first entry of an old backlog is, and the last.
const OLD_FIRST_AGE: Duration = Duration::from_secs(3 * 3600 + 1800);
const OLD_LAST_AGE: Duration = Duration::from_secs(3600);

/// gen-sshd-log's export with its times stretched to run from `first_us` to
/// [`OLD_LAST_AGE`] before now (it writes 100 entries a second).
fn stretch(export: &str, first_us: i64) -> String {
    const FIELD: &str = "__REALTIME_TIMESTAMP=";
    let times = || {
        export
            .lines()
            .filter_map(|l| l.strip_prefix(FIELD))
            .map(|t| t.parse::<i64>().expect("a realtime in microseconds"))
    };
    let (min, max) = (times().min().unwrap(), times().max().unwrap());
    let last_us = wall_now_us() - OLD_LAST_AGE.as_micros() as i64;
    let factor = (last_us - first_us) as f64 / (max - min).max(1) as f64;
    let mut out = String::with_capacity(export.len() + export.len() / 50);
    for line in export.lines() {
        match line.strip_prefix(FIELD) {
            Some(t) => {
                let t: i64 = t.parse().unwrap();
                let at = first_us + ((t - min) as f64 * factor) as i64;
                out.push_str(&format!("{FIELD}{at}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Writes journal export text into `DIR/NAME.journal` with systemd-journal-remote (what
/// systemd itself writes; the entries keep the times and fields the export gives them).
fn write_journal(dir: &Path, name: &str, export: &[u8]) {
    let mut remote = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(dir.join(format!("{name}.journal")))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-journal-remote runs");
    let mut stdin = remote.stdin.take().unwrap();
    stdin.write_all(export).unwrap();
    drop(stdin);
    let out = remote.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "journal-remote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stores `cursor` as the committed position of the journal directory `dir` in the lab's
/// state database, as the daemon keys it.
fn seed_cursor(lab: &Lab, dir: &Path, cursor: &str) {
    let mut db = StateDb::open(&lab.state_dir()).unwrap();
    let key = format!("journal:directory:{}", dir.display());
    db.queue_batch(
        &[],
        Some((&key, cursor)),
        Timestamp::from_micros(wall_now_us()),
    );
    db.write_pending().unwrap();
}

/// `journalctl --directory DIR -o export MATCHES`, one field map per entry. Entries from
/// gen-sshd-log are single-line text, so the binary form of a field is not expected.
fn export(dir: &Path, matches: &[String]) -> Vec<HashMap<String, String>> {
    let out = Command::new("journalctl")
        .arg("--directory")
        .arg(dir)
        .args(["--no-pager", "-o", "export"])
        .args(matches)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "journalctl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("text export");
    let mut entries = Vec::new();
    let mut fields = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            if !fields.is_empty() {
                entries.push(std::mem::take(&mut fields));
            }
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("binary field in the export: {line:?}"));
        fields.insert(name.to_string(), value.to_string());
    }
    if !fields.is_empty() {
        entries.push(fields);
    }
    entries
}

/// What the log calls for, computed here from journalctl's view of the journal.
struct Expected {
    /// Per banned address: the ban as it must be stored.
    bans: BTreeMap<IpNet, StoredBan>,
    /// Each ban with the index (in [`Journal::selected`]) of the entry that decides it, in
    /// journal order.
    order: Vec<(usize, IpNet)>,
    /// Failures matched by the jail's filter.
    failures: usize,
    /// Addresses with at least one failure, never banned.
    below: usize,
    /// Addresses never banned because they are the server's own (ignoreself).
    own: usize,
}

impl Expected {
    /// Judged in log time: the failure that is the `maxretry`-th within `findtime` (its
    /// own time and the `findtime` before it) bans; no ban ends within the journal.
    fn from_log(journal: &Journal, jail: &JailSettings) -> Expected {
        let BanTime::For(bantime) = jail.policy.bantime else {
            panic!("bantime is finite");
        };
        let own: [IpAddr; 2] = [
            SERVER_ATTACKER_SIDE.parse().unwrap(),
            SERVER_FRIEND_SIDE.parse().unwrap(),
        ];
        let findtime = i64::try_from(jail.policy.findtime.as_micros()).unwrap();
        let maxretry = jail.policy.maxretry as usize;
        let mut matcher = jail.filter.filter.matcher();
        let mut sessions = SourceState::default();
        let mut windows: HashMap<IpAddr, VecDeque<i64>> = HashMap::new();
        let mut bans = BTreeMap::new();
        let mut order = Vec::new();
        let (mut failures, mut own_hits) = (0, BTreeSet::new());
        for (index, entry) in journal.selected.iter().enumerate() {
            // As the daemon matches: tries counted per sshd process, judged at the entry's time.
            let origin = Origin {
                host: entry.host.as_bytes(),
                pid: entry.pid.as_deref().map(str::as_bytes),
            };
            let at = Timestamp::from_micros(entry.at_us);
            let Outcome::Failure(failure) =
                matcher.match_record(&mut sessions, entry.message.as_bytes(), origin, at)
            else {
                continue;
            };
            let Host::Ip(ip) = failure.host else {
                continue;
            };
            failures += 1;
            if own.contains(&ip) || ip.is_loopback() {
                own_hits.insert(ip);
                continue;
            }
            let target = IpNet::from(ip);
            if bans.contains_key(&target) {
                continue;
            }
            let window = windows.entry(ip).or_default();
            window.retain(|&t| t >= entry.at_us - findtime);
            window.push_back(entry.at_us);
            if window.len() == maxretry {
                let since = Timestamp::from_micros(entry.at_us);
                bans.insert(
                    target,
                    StoredBan {
                        jail: jail.name.clone(),
                        target,
                        since,
                        until: Some(since + bantime),
                        offence: 1,
                        failures: jail.policy.maxretry,
                    },
                );
                order.push((index, target));
            }
        }
        let below = windows
            .keys()
            .filter(|ip| !bans.contains_key(&IpNet::from(**ip)))
            .count();
        Expected {
            bans,
            order,
            failures,
            below,
            own: own_hits.len(),
        }
    }
}

/// The committed state, read without writing (a read-only connection neither recovers nor
/// checkpoints the database: that stays the daemon's job).
#[derive(Default)]
struct Committed {
    cursor: Option<String>,
    bans: BTreeSet<(String, IpNet)>,
}

impl Committed {
    /// Retries for a while: a reader can meet the database in the middle of its creation
    /// (before WAL mode is set, "attempt to write a readonly database"), or busy.
    fn read(state_dir: &Path) -> Committed {
        let path = state_dir.join(DATABASE_FILE);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if !path.exists() {
                return Committed::default();
            }
            match Committed::try_read(&path) {
                Ok(committed) => return committed,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading {}: {e}; retrying", path.display());
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }

    fn try_read(path: &Path) -> rusqlite::Result<Committed> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // One snapshot for the position and the bans.
        let snapshot = conn.unchecked_transaction()?;
        let cursors = match query_strings(&snapshot, "SELECT cursor FROM source_positions")? {
            Some(rows) => rows,
            // Killed before the schema was in place.
            None => return Ok(Committed::default()),
        };
        assert!(cursors.len() <= 1, "one journal source: {cursors:?}");
        let bans = query_strings(&snapshot, "SELECT jail || ' ' || target FROM bans")?
            .unwrap_or_default()
            .into_iter()
            .map(|row| {
                let (jail, target) = row.split_once(' ').unwrap();
                (jail.to_string(), target.parse().unwrap())
            })
            .collect();
        Ok(Committed {
            cursor: cursors.into_iter().next(),
            bans,
        })
    }
}

/// The rows of a one-column query; `None` if its table does not exist yet.
fn query_strings(conn: &Connection, sql: &str) -> rusqlite::Result<Option<Vec<String>>> {
    let mut stmt = match conn.prepare(sql) {
        Ok(stmt) => stmt,
        Err(e) if e.to_string().contains("no such table") => return Ok(None),
        Err(e) => return Err(e),
    };
    let rows = stmt.query_map([], |row| row.get(0))?;
    rows.collect::<rusqlite::Result<Vec<String>>>().map(Some)
}

/// The sshd jail's elements in the server's kernel, both families.
fn kernel_bans(lab: &Lab) -> BTreeSet<IpAddr> {
    [SSHD_SET, SSHD_SET_V6]
        .iter()
        .flat_map(|set| lab.banned_in(set))
        .map(|(addr, _)| addr.parse().unwrap())
        .collect()
}

/// A history row: (jail, target, started, expires, offence, failures, ended).
type HistoryRow = (String, String, i64, Option<i64>, u32, u32, Option<i64>);

/// What a run ended with, read once its daemon stopped.
struct Run {
    ready: Duration,
    done: Duration,
    bans: Vec<StoredBan>,
    history: Vec<HistoryRow>,
    kernel: BTreeSet<IpAddr>,
}

impl Run {
    fn collect(lab: &Lab, ready: Duration, done: Duration) -> Run {
        let db = StateDb::open(&lab.state_dir()).unwrap();
        let bans = db.bans().unwrap();
        let history_len = db.history_len().unwrap();
        drop(db);
        let conn = Connection::open_with_flags(
            lab.state_dir().join(DATABASE_FILE),
            OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT jail, target, started_us, expires_us, offence, failures, ended_us
                 FROM ban_history ORDER BY jail, target, started_us",
            )
            .unwrap();
        let history: Vec<HistoryRow> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(history.len() as i64, history_len);
        let kernel = kernel_bans(lab);
        Run {
            ready,
            done,
            bans,
            history,
            kernel,
        }
    }

    /// How often each (jail, target) was banned.
    fn history_counts(&self) -> BTreeMap<(String, String), usize> {
        let mut counts = BTreeMap::new();
        for row in &self.history {
            *counts.entry((row.0.clone(), row.1.clone())).or_default() += 1;
        }
        counts
    }
}

fn check_against_log(run: &Run, expected: &Expected, which: &str) {
    let stored: BTreeMap<IpNet, &StoredBan> = run.bans.iter().map(|b| (b.target, b)).collect();
    let missing: Vec<&IpNet> = expected
        .bans
        .keys()
        .filter(|t| !stored.contains_key(t))
        .collect();
    let extra: Vec<&&StoredBan> = stored
        .iter()
        .filter(|(t, _)| !expected.bans.contains_key(t))
        .map(|(_, b)| b)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{which}: bans the log calls for but missing: {missing:?}; bans it does not call for: {extra:?}"
    );
    for (target, want) in &expected.bans {
        assert_eq!(stored[target], want, "{which}: the ban of {target}");
    }
    let counts = run.history_counts();
    assert!(
        counts.values().all(|&n| n == 1) && counts.len() == expected.bans.len(),
        "{which}: each banned address is in the history once"
    );
    assert!(
        run.history.iter().all(|row| row.6.is_none()),
        "{which}: no ban ended"
    );
    let stored: BTreeSet<IpAddr> = run.bans.iter().map(|b| b.target.addr()).collect();
    assert_eq!(
        run.kernel, stored,
        "{which}: the kernel's sets hold the database's bans"
    );
}

#[allow(clippy::too_many_arguments)]
fn report(
    form: &str,
    backlog: Backlog,
    seed: u64,
    journal: &Journal,
    expected: &Expected,
    reference: &Run,
    crashed: &Run,
    kills: &[Kill],
    total: Duration,
) {
    let before_ready = kills.iter().filter(|k| k.phase.before_ready()).count();
    let mut phases: BTreeMap<Phase, usize> = BTreeMap::new();
    for kill in kills {
        *phases.entry(kill.phase).or_default() += 1;
    }
    // After READY the restore is done: committed bans missing from the kernel were committed
    // by this life and not yet applied. Before it, they may be the previous life's.
    let in_flight = kills
        .iter()
        .filter(|k| !k.phase.before_ready() && k.not_in_kernel > 0)
        .count();
    let unrestored = kills
        .iter()
        .filter(|k| k.phase.before_ready() && k.not_in_kernel > 0)
        .count();
    let ahead = kills.iter().filter(|k| k.ahead_of_commit > 0).count();
    eprintln!(
        "\ncrash at any instant ({} form, {backlog:?} backlog, seed {seed}):\n\
         \x20 journal: {} entries, {} selected by the sshd journalmatch, {} failures, {} bans due, \
         {} addresses below maxretry ({} own addresses ignored)\n\
         \x20 uninterrupted run: READY after {:.2} s, caught up after {:.2} s\n\
         \x20 killed run: {} SIGKILLs ({} before READY), then a last start (READY after {:.2} s); \
         {:.1} s in all\n\
         \x20 kills by phase: {}\n\
         \x20 kills between a commit and its kernel update (committed bans not in the kernel \
         after READY): {in_flight}; starts killed before restoring such bans: {unrestored}; \
         kills between a kernel update and its commit: {ahead}\n\
         \x20 compared: {} bans (database field by field, history, kernel sets) identical in both runs \
         and to the log; {} history rows each\n\
         \x20 test time: {:.1} s",
        if matches!(form, "f" | "g") { "full" } else { "short" },
        journal.entries,
        journal.selected.len(),
        expected.failures,
        expected.bans.len(),
        expected.below,
        expected.own,
        reference.ready.as_secs_f64(),
        reference.done.as_secs_f64(),
        kills.len(),
        before_ready,
        crashed.ready.as_secs_f64(),
        crashed.done.as_secs_f64(),
        phases
            .iter()
            .map(|(p, n)| format!("{n} {}", p.describe()))
            .collect::<Vec<_>>()
            .join(", "),
        crashed.bans.len(),
        crashed.history.len(),
        total.as_secs_f64(),
    );
    assert!(
        before_ready >= 1 && before_ready < kills.len(),
        "kills landed both before and after READY"
    );
}
