//! End-to-end tests of `banhound daemon` with real parts: the binary runs inside a network
//! namespace with its own nftables, reads a standalone journald namespace, and is fed by a
//! helper process named `sshd` (so `_COMM=sshd`, a trusted field, matches the shipped sshd
//! filter). What is checked is what the kernel holds (`nft -j list set`) and what packets do.
//!
//! The control interface is tested the same way: a private dbus-daemon with the shipped
//! policy (tests/support/private_bus.rs, shared with tests/dbus), the daemon serving on it
//! from inside its namespace, and the `banhound` CLI as the client, as root and as `nobody`.
//!
//! The sandbox (namespaces, journald, the daemon process) is tests/support/daemon_lab.rs on
//! top of tests/support/netlab.rs, shared with the other tests that run the real daemon.
//! Every namespace, journald, bus and daemon is removed by pid or name in `Drop`, also when
//! a test fails. Needs root, nft, ip, python3, dbus-daemon, setpriv and
//! /lib/systemd/systemd-journald.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/private_bus.rs"]
mod private_bus;

use daemon_lab::{
    ban_line, journal_text, sshd_config, Lab, ATTACKER, FRIEND, PORT, SERVER_ATTACKER_SIDE,
    SERVER_FRIEND_SIDE, SSHD_SET,
};
use netlab::wait_for;
use private_bus::{as_nobody, BusPolicy, DbusDaemon, Running};

use banhound::daemon::state::StateDb;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[test]
fn journal_failures_become_kernel_bans_that_block_only_the_attacker() {
    let mut lab = Lab::new("ban", &sshd_config(3, "10m"));
    let daemon = lab.start();
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(lab.banned().is_empty());

    lab.fail_logins(FRIEND, 2);
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    let banned = lab.banned();
    assert_eq!(banned.len(), 1, "{banned:?}");
    assert_eq!(banned[0].0, ATTACKER);
    assert!(
        banned[0].1.is_some_and(|s| (590..=600).contains(&s)),
        "{banned:?}"
    );
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    assert!(!daemon.log().contains(&format!("Banned {FRIEND}")));
    assert!(daemon.stop());
    // Bans outlive the daemon: they are kernel elements with timeouts.
    assert!(lab.is_banned(ATTACKER));
}

/// Issue 12: OpenSSH with PAM logs three lines the sshd filter reads for one wrong password
/// (pam_unix's failure, "Failed password", the close), all from the connection's process.
/// Two typos in two connections are two failures: no ban with maxretry 5, from the journal
/// (a session is a `_PID`) and from a syslog file (the `sshd[PID]` of the line).
#[test]
fn two_wrong_passwords_with_pam_are_two_failures_not_a_ban() {
    let log_dir = tempfile::tempdir().unwrap();
    let auth = log_dir.path().join("auth.log");
    std::fs::write(&auth, "").unwrap();
    let mut lab = Lab::new(
        "typos",
        &format!(
            "{}\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nport = \"{PORT}\"\nmaxretry = 5\n",
            sshd_config(5, "10m"),
            auth.display()
        ),
    );
    let daemon = lab.start();
    let typo = |port: u32| {
        [
            format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ATTACKER}  user=admin"),
            format!("Failed password for admin from {ATTACKER} port {port} ssh2"),
            format!("Connection closed by authenticating user admin {ATTACKER} port {port} [preauth]"),
        ]
    };
    // One fake-sshd process per connection: its entries share a _PID.
    for port in [50000, 50002] {
        lab.journald().sshd(&typo(port));
    }
    let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let mut lines = String::new();
    for (pid, port) in [(1234, 50000), (1240, 50002)] {
        for message in typo(port) {
            lines.push_str(&format!("{stamp} server sshd[{pid}]: {message}\n"));
        }
    }
    std::fs::write(&auth, lines).unwrap();
    // Logged after them: once it is counted, so is everything before it.
    lab.fail_logins(FRIEND, 1);
    append_syslog_failures(&auth, FRIEND, 1);
    for jail in ["sshd", "sshd-file"] {
        daemon.wait_log(&format!("Found {FRIEND} in jail {jail} (1 failure(s))"), 1);
        let log = daemon.log();
        assert!(
            log.contains(&format!("Found {ATTACKER} in jail {jail} (2 failure(s))")),
            "{jail}: {log}"
        );
        assert!(
            !log.contains(&format!("Found {ATTACKER} in jail {jail} (3 failure(s))")),
            "{jail}: {log}"
        );
    }
    let log = daemon.log();
    assert!(!log.contains("Banned"), "{log}");
    assert!(lab.banned().is_empty());
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(daemon.stop());
}

#[test]
fn restart_restores_remaining_time_and_counts_no_entry_twice() {
    let mut lab = Lab::new("restart", &sshd_config(3, "1h"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 3), 1);
    // Two failures of the friend: counted, below maxretry.
    lab.fail_logins(FRIEND, 2);
    daemon.wait_log(&format!("Found {FRIEND} in jail sshd (2 failure(s))"), 1);
    assert!(daemon.stop());

    // While banhound is down: the kernel loses the table (e.g. a ruleset reload), and more
    // is logged: three failures of a new address must still ban after the restart.
    lab.server().nft(&["delete", "table", "inet", "banhound"]);
    lab.fail_logins("203.0.113.77", 3);
    std::thread::sleep(Duration::from_secs(2));

    let daemon = lab.start();
    daemon.wait_log(&ban_line("203.0.113.77", "1h", 3), 1);
    let banned = lab.banned();
    let attacker = banned
        .iter()
        .find(|(a, _)| a == ATTACKER)
        .expect("attacker restored");
    // Remaining time, not a fresh hour: at least the 2 s slept have passed.
    let left = attacker.1.unwrap();
    assert!((3000..=3598).contains(&left), "restored with {left}s left");
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    let log = daemon.log();
    assert!(
        log.contains(&format!("Restored ban of {ATTACKER} in jail sshd")),
        "{log}"
    );
    // The attacker's entries were replayed count-only: no second ban line.
    assert!(!log.contains(&format!("Banned {ATTACKER}")), "{log}");
    // The friend's two replayed failures are in the window again: one more bans.
    assert!(!lab.is_banned(FRIEND));
    lab.fail_logins(FRIEND, 1);
    daemon.wait_log(&ban_line(FRIEND, "1h", 3), 1);
    assert!(lab.is_banned(FRIEND));
    assert!(daemon.stop());

    let state = StateDb::open(&lab.state_dir()).unwrap();
    let mut stored: Vec<String> = state
        .bans()
        .unwrap()
        .iter()
        .map(|b| b.target.to_string())
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        ["198.51.100.7/32", "203.0.113.66/32", "203.0.113.77/32"]
    );
    assert_eq!(state.history_len().unwrap(), 3, "each ban recorded once");
}

#[test]
fn a_reload_adds_and_removes_the_forward_chain_with_the_jails_chains() {
    let mut lab = Lab::new("fwdchain", &sshd_config(5, "10m"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 5);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 5), 1);
    let table = || lab.server().nft(&["list", "table", "inet", "banhound"]);
    assert!(!table().contains("chain forward"));

    lab.write_config(&format!(
        "{}chains = [\"input\", \"forward\"]\n",
        sshd_config(5, "10m")
    ));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    let forward = lab
        .server()
        .nft(&["list", "chain", "inet", "banhound", "forward"]);
    assert!(
        forward.contains("hook forward priority filter - 10"),
        "{forward}"
    );
    assert!(forward.contains("ip saddr @sshd-v4"), "{forward}");
    assert!(forward.contains("ct original proto-dst"), "{forward}");
    assert!(lab.is_banned(ATTACKER), "bans are kept across the change");

    lab.write_config(&sshd_config(5, "10m"));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 2);
    assert!(!table().contains("chain forward"));
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());
}

#[test]
fn sighup_applies_a_changed_jail_and_refuses_a_broken_config() {
    let mut lab = Lab::new("reload", &sshd_config(5, "10m"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 5);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 5), 1);

    // maxretry 5 -> 2, bantime 10m -> 20m, in place.
    lab.write_config(&sshd_config(2, "20m"));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    assert!(lab.is_banned(ATTACKER), "bans are kept across a reload");
    lab.fail_logins(FRIEND, 2);
    daemon.wait_log(&ban_line(FRIEND, "20m", 2), 1);
    assert!(!lab.connects(lab.friend(), SERVER_FRIEND_SIDE));

    // A broken configuration is refused; the running one keeps working.
    lab.write_config("[jail.sshd]\nenabled = true\nmaxretry = \"many\"\n");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reload refused", 1);
    lab.fail_logins("203.0.113.88", 2);
    daemon.wait_log(&ban_line("203.0.113.88", "20m", 2), 1);
    let banned: Vec<String> = lab.banned().into_iter().map(|(a, _)| a).collect();
    assert_eq!(banned, [FRIEND, ATTACKER, "203.0.113.88"]);

    // The jail moves to the log-only backend: its bans leave the kernel, stay in force.
    lab.write_config(&format!(
        "{}backend = \"log-only\"\n",
        sshd_config(2, "20m")
    ));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 2);
    assert!(lab.banned().is_empty());
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    daemon.wait_log(&format!("log-only backend: would block {ATTACKER}/32"), 1);

    // The jail is removed: its bans end.
    lab.write_config("[jail.sshd]\nenabled = false\n");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 3);
    for addr in [FRIEND, ATTACKER, "203.0.113.88"] {
        daemon.wait_log(&format!("Unbanned {addr} in jail sshd (jail removed)"), 1);
    }
    assert!(daemon.stop());
    assert!(StateDb::open(&lab.state_dir())
        .unwrap()
        .bans()
        .unwrap()
        .is_empty());
}

#[test]
fn an_admins_flush_and_deleted_element_are_repaired() {
    // `[daemon]` comes after the jail table in TOML only as its own table: prepend it.
    let mut lab = Lab::new(
        "reconcile",
        &format!(
            "[daemon]\nreconcile_interval = \"2s\"\n\n{}",
            sshd_config(2, "1h")
        ),
    );
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 2), 1);
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));

    // The admin wipes everything; the attacker gets through until the repair (the change
    // notification brings it within a second, tests/netwatch.rs; the periodic reconcile is
    // the backstop).
    lab.server().nft(&["flush", "ruleset"]);
    let flushed = Instant::now();
    daemon.wait_log(
        "nftables table inet banhound was missing: re-created with 1 ban",
        1,
    );
    let repaired_after = flushed.elapsed();
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    eprintln!("flush ruleset repaired {repaired_after:?} after it (reconcile_interval 2s)");

    // Deleting just one element is noticed too.
    lab.server().nft(&[
        "delete",
        "element",
        "inet",
        "banhound",
        SSHD_SET,
        &format!("{{ {ATTACKER} }}"),
    ]);
    daemon.wait_log("1 ban was missing from banhound's sets: put back", 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());
}

#[test]
fn bans_are_lifted_when_they_expire() {
    let mut lab = Lab::new("expire", &sshd_config(2, "3s"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "3s", 2), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    assert!(!lab.is_banned(ATTACKER));
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(daemon.stop());
    let state = StateDb::open(&lab.state_dir()).unwrap();
    assert!(state.bans().unwrap().is_empty());
    assert_eq!(state.history_len().unwrap(), 1);
}

#[test]
fn a_killed_daemon_loses_no_ban_and_bans_nothing_twice() {
    let mut lab = Lab::new("kill", &sshd_config(3, "1h"));
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 3), 1);
    // No chance to clean up: whatever was committed is all there is.
    daemon.kill();
    lab.server().nft(&["delete", "table", "inet", "banhound"]);

    let daemon = lab.start();
    daemon.wait_log(&format!("Restored ban of {ATTACKER} in jail sshd"), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    // Give a wrongly replayed entry the time to be acted upon, then check it was not.
    lab.fail_logins(FRIEND, 1);
    daemon.wait_log(&format!("Found {FRIEND} in jail sshd (1 failure(s))"), 1);
    assert!(!daemon.log().contains("Banned "), "{}", daemon.log());
    assert!(daemon.stop());
    assert_eq!(
        StateDb::open(&lab.state_dir())
            .unwrap()
            .history_len()
            .unwrap(),
        1
    );
}

#[test]
fn tells_the_service_manager_ready_status_reloading_and_watchdog() {
    let mut lab = Lab::new("notify", &sshd_config(2, "10m"));
    let daemon = lab.start();
    let ready = |m: &String| {
        m.contains("READY=1") && m.contains("STATUS=1 jail, 0 banned, following journal")
    };
    let got = lab.notifications_until(|got| got.iter().any(ready));
    assert!(got.iter().any(ready), "{got:?}");
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 2), 1);
    std::thread::sleep(Duration::from_millis(600));
    let status = |m: &String| m == "STATUS=1 jail, 1 banned, following journal";
    let got = lab.notifications_until(|got| got.iter().any(status));
    assert!(got.iter().any(status), "{got:?}");
    // 600 ms at one ping per 150 ms; allow for a slow machine.
    let pings = got.iter().filter(|m| m.as_str() == "WATCHDOG=1").count();
    assert!(pings >= 2, "{pings} watchdog pings: {got:?}");

    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    let got: Vec<String> = lab
        .notifications_until(|got| got.iter().any(|m| m.contains("READY=1")))
        .into_iter()
        .filter(|m| m != "WATCHDOG=1")
        .collect();
    let reloading = got
        .iter()
        .position(|m| m.starts_with("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(got[reloading].contains("MONOTONIC_USEC="), "{got:?}");
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY=1");
    assert!(reloading < ready, "{got:?}");
    assert!(daemon.stop());
    let stopping = |m: &String| m.contains("STOPPING=1");
    assert!(lab
        .notifications_until(|got| got.iter().any(stopping))
        .iter()
        .any(stopping));
}

#[test]
fn logs_structured_ban_lines_to_the_journal_that_recidive_reads_back() {
    // sshd bans for 2 s; a recidive jail (journalmatch adjusted: _SYSTEMD_UNIT cannot be set
    // outside systemd) bans an address banhound banned twice.
    let mut lab = Lab::new(
        "journal",
        &format!(
            "{}\n[jail.recidive]\nenabled = true\njournalmatch = [\"_COMM=banhound\"]\nmaxretry = 2\nbantime = \"1h\"\n",
            sshd_config(2, "2s")
        ),
    );
    let daemon = lab.start_with(true, &[]);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 1);
    let fields = journal_text(
        lab.journald().name(),
        &[
            "SYSLOG_IDENTIFIER=banhound",
            "JAIL=sshd",
            "IP=203.0.113.66",
            "-o",
            "json",
        ],
    );
    let entry: serde_json::Value = fields
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| {
            e["MESSAGE"]
                .as_str()
                .is_some_and(|m| m.starts_with("Banned"))
        })
        .expect("a ban entry with JAIL= and IP= fields");
    assert_eq!(entry["MESSAGE"], ban_line(ATTACKER, "2s", 2));
    assert_eq!(entry["BANTIME"], "2s");
    assert_eq!(entry["FAILURES"], "2");
    assert_eq!(entry["PRIORITY"], "6");

    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 2);
    // The second ban line is banhound's own journal entry: recidive reads it and bans.
    daemon.wait_log(
        &format!("Banned {ATTACKER} in jail recidive for 1h after 2 failures"),
        1,
    );
    let recidive_set = lab
        .server()
        .nft(&["list", "set", "inet", "banhound", "recidive-v4"]);
    assert!(recidive_set.contains(ATTACKER), "{recidive_set}");
    assert!(daemon.stop());
}

#[test]
fn flush_on_stop_removes_the_bans_from_the_kernel_and_restart_puts_them_back() {
    let mut lab = Lab::new("flush", &sshd_config(2, "1h"));
    let daemon = lab.start_with(false, &["--flush-on-stop"]);
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 2), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());
    let tables = lab.server().nft(&["list", "tables"]);
    assert!(!tables.contains("banhound"), "{tables}");
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    let daemon = lab.start();
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(daemon.stop());
}

#[test]
fn escalation_remembers_ended_bans_across_a_restart() {
    let mut lab = Lab::new(
        "escalate",
        &format!("{}escalation = {{ factor = 2.0 }}\n", sshd_config(2, "2s")),
    );
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "2s", 2), 1);
    daemon.wait_log(&format!("Unbanned {ATTACKER} in jail sshd (expired)"), 1);
    assert!(daemon.stop());

    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    // Second offence: twice the ban time, although the first ban ended before the restart.
    daemon.wait_log(&ban_line(ATTACKER, "4s", 2), 1);
    assert!(daemon.stop());
}

#[test]
fn overall_jails_counts_the_bans_of_every_jail_and_random_extra_lengthens_them() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = |jail: &str| log_dir.path().join(format!("{jail}.log"));
    let jail = |name: &str, escalation: &str| {
        format!(
            "[jail.{name}]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nmaxretry = 1\nbantime = \"10m\"\nbackend = \"log-only\"\n{escalation}\n",
            log(name).display()
        )
    };
    for name in ["first", "overall", "own"] {
        std::fs::write(log(name), "").unwrap();
    }
    let mut lab = Lab::new(
        "overall",
        &format!(
            "[jail.sshd]\nenabled = false\n\n{}{}{}",
            jail("first", ""),
            jail(
                "overall",
                "[jail.overall.escalation]\nfactor = 2.0\noverall_jails = true\nrandom_extra = \"1m\"\n"
            ),
            jail("own", "[jail.own.escalation]\nfactor = 2.0\n"),
        ),
    );
    let daemon = lab.start();
    append_syslog_failures(&log("first"), ATTACKER, 1);
    daemon.wait_log(
        &format!("Banned {ATTACKER} in jail first for 10m after 1"),
        1,
    );
    // The ban in `first` is a previous offence for `overall`: twice the ban time, plus up
    // to a minute at random.
    append_syslog_failures(&log("overall"), ATTACKER, 1);
    daemon.wait_log(&format!("Banned {ATTACKER} in jail overall for 20m"), 1);
    let text = daemon.log();
    let length = text
        .lines()
        .find_map(|l| l.split("in jail overall for ").nth(1))
        .and_then(|rest| rest.split(" after").next())
        .unwrap()
        .to_string();
    let extra: u64 = match length.strip_prefix("20m") {
        Some("") => 0,
        Some(secs) => secs.strip_suffix('s').unwrap().parse().unwrap(),
        None => panic!("{length}"),
    };
    assert!(extra < 60, "{length}");
    // A jail that counts its own bans only starts at the plain ban time.
    append_syslog_failures(&log("own"), ATTACKER, 1);
    daemon.wait_log(&format!("Banned {ATTACKER} in jail own for 10m after 1"), 1);
    assert!(daemon.stop());
}

/// Appends sshd syslog lines (local time, as syslog writes) to a log file.
fn append_syslog_failures(path: &Path, addr: &str, n: usize) {
    use std::io::Write;
    let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for i in 0..n {
        writeln!(
            file,
            "{stamp} server sshd[{}]: Failed password for root from {addr} port {} ssh2",
            1000 + i,
            41000 + i
        )
        .unwrap();
    }
}

#[test]
fn file_jails_follow_appends_rotation_and_resume_after_restart() {
    let log_dir = tempfile::tempdir().unwrap();
    let auth = log_dir.path().join("auth.log");
    std::fs::write(&auth, "").unwrap();
    let mut lab = Lab::new(
        "files",
        &format!(
            "[jail.sshd]\nenabled = false\n\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nport = \"{PORT}\"\nmaxretry = 3\n",
            auth.display()
        ),
    );
    let line = |addr: &str| format!("Banned {addr} in jail sshd-file for 10m after 3 failures");
    let banned_in_file_jail = |lab: &Lab, addr: &str| {
        lab.server()
            .nft(&["list", "set", "inet", "banhound", "sshd-file-v4"])
            .contains(addr)
    };
    let daemon = lab.start();
    append_syslog_failures(&auth, ATTACKER, 3);
    daemon.wait_log(&line(ATTACKER), 1);
    assert!(banned_in_file_jail(&lab, ATTACKER));
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));

    // logrotate: renamed away, a new file created.
    std::fs::rename(&auth, log_dir.path().join("auth.log.1")).unwrap();
    append_syslog_failures(&auth, "203.0.113.77", 3);
    daemon.wait_log(&line("203.0.113.77"), 1);
    // Counted (below maxretry) across a reload: the window is kept, no line is read twice.
    append_syslog_failures(&auth, "203.0.113.99", 1);
    daemon.wait_log("Found 203.0.113.99 in jail sshd-file (1 failure(s))", 1);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    append_syslog_failures(&auth, "203.0.113.99", 1);
    daemon.wait_log("Found 203.0.113.99 in jail sshd-file (2 failure(s))", 1);
    // ... and not read again after a restart either.
    assert!(daemon.stop());

    // Written while banhound is down: read once after the restart, nothing before it again.
    append_syslog_failures(&auth, FRIEND, 3);
    let daemon = lab.start();
    daemon.wait_log(&line(FRIEND), 1);
    assert!(banned_in_file_jail(&lab, FRIEND));
    assert!(!lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    let log = daemon.log();
    assert_eq!(log.matches("Banned ").count(), 1, "{log}");
    assert!(!log.contains("Found 203.0.113.99"), "{log}");
    assert!(daemon.stop());
}

/// Issue 13: the file follower cut a line at its read boundary and gave the rest to the
/// filter as a line of its own, so whoever makes a service log one long line chooses the next
/// "line" a filter sees. Long lines are read whole, over-long ones skipped to their newline,
/// and the daemon and `test-filter --jail` agree on what that leaves: one real failure, one
/// ban.
#[test]
fn an_over_long_line_is_skipped_whole_not_split_and_test_filter_agrees() {
    use banhound::source::file::MAX_LINE;
    let log_dir = tempfile::tempdir().unwrap();
    let auth = log_dir.path().join("auth.log");
    let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let sshd_failure = |addr: &str| {
        format!("{stamp} server sshd[1000]: Failed password for root from {addr} port 41000 ssh2")
    };
    // A line another program logs, padded with what its client sent so that a whole sshd
    // failure line starts at byte `cut` of it.
    let hostile_line = |cut: usize, addr: &str| {
        let head = format!("{stamp} server app[7]: user=");
        let mut line = head.clone().into_bytes();
        line.resize(cut, b'x');
        line.extend_from_slice(sshd_failure(addr).as_bytes());
        line.push(b'\n');
        line
    };
    let mut bytes = Vec::new();
    // Whole at the follower's old read boundary (256 KiB: a line read whole, of another
    // program), and past the line limit (skipped).
    bytes.extend(hostile_line(256 << 10, "192.0.2.77"));
    bytes.extend(hostile_line(MAX_LINE + (64 << 10), "192.0.2.78"));
    bytes.extend(format!("{}\n", sshd_failure(ATTACKER)).into_bytes());
    // Written before the daemon starts: it reads the file from its start in one go.
    std::fs::write(&auth, &bytes).unwrap();
    let mut lab = Lab::new(
        "longline",
        &format!(
            "[jail.sshd]\nenabled = false\n\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}\"]\nmaxretry = 1\nbackend = \"log-only\"\n",
            auth.display()
        ),
    );
    let daemon = lab.start();
    daemon.wait_log(&format!("Banned {ATTACKER} in jail sshd-file"), 1);
    let log = daemon.log();
    assert!(!log.contains("192.0.2.77"), "{log}");
    assert!(!log.contains("192.0.2.78"), "{log}");
    assert_eq!(log.matches("Banned ").count(), 1, "{log}");
    daemon.wait_log("skipped 1 over-long line(s)", 1);
    assert!(daemon.stop());
    let stored = stored_bans(&lab);
    assert_eq!(
        stored
            .iter()
            .map(|(_, target, _)| target.as_str())
            .collect::<Vec<_>>(),
        [format!("{ATTACKER}/32")],
        "{stored:?}"
    );

    // test-filter with the jail's settings reads the same lines and decides the same.
    let out = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--defaults-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
        .arg("--config")
        .arg(lab.config_path())
        .args(["test-filter", "sshd"])
        .arg(&auth)
        .args(["--jail", "sshd-file"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("3 read: 1 matched, 0 ignored, 2 missed"),
        "{summary}"
    );
    assert!(summary.contains("1 too long"), "{summary}");
    let would_ban: Vec<&str> = summary
        .lines()
        .skip_while(|l| !l.starts_with("Would ban"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(would_ban, [ATTACKER], "{summary}");
}

#[test]
fn a_wildcard_logpath_follows_every_matching_file_and_new_ones_without_a_reload() {
    let log_dir = tempfile::tempdir().unwrap();
    let stamp = jiff::Zoned::now().strftime("%b %e %H:%M:%S").to_string();
    let failure = |addr: &str| {
        format!("{stamp} server sshd[1000]: Failed password for root from {addr} port 41000 ssh2\n")
    };
    let site = |name: &str| log_dir.path().join(format!("{name}-error.log"));
    std::fs::write(site("a"), failure("192.0.2.81")).unwrap();
    std::fs::write(site("b"), failure("192.0.2.82")).unwrap();
    // Not named by the pattern.
    std::fs::write(log_dir.path().join("a-access.log"), failure("192.0.2.83")).unwrap();
    let mut lab = Lab::new(
        "wildcard",
        &format!(
            "[jail.sshd]\nenabled = false\n\n[jail.sshd-file]\nenabled = true\nfilter = \"sshd\"\nlogpath = [\"{}/*-error.log\"]\nmaxretry = 1\nbackend = \"log-only\"\n",
            log_dir.path().display()
        ),
    );
    let daemon = lab.start();
    daemon.wait_log("Banned 192.0.2.81 in jail sshd-file", 1);
    daemon.wait_log("Banned 192.0.2.82 in jail sshd-file", 1);
    // A file that appears later is followed at once, no reload needed: created in place,
    // and renamed in under a matching name (as a rotation or a deployment does).
    std::fs::write(site("c"), failure("192.0.2.84")).unwrap();
    daemon.wait_log("Banned 192.0.2.84 in jail sshd-file", 1);
    let staged = log_dir.path().join("d.tmp");
    std::fs::write(&staged, failure("192.0.2.85")).unwrap();
    std::fs::rename(&staged, site("d")).unwrap();
    daemon.wait_log("Banned 192.0.2.85 in jail sshd-file", 1);
    // The files followed before go on where they were: lines appended are read once.
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(site("a"))
        .unwrap();
    std::io::Write::write_all(&mut appended, failure("192.0.2.86").as_bytes()).unwrap();
    daemon.wait_log("Banned 192.0.2.86 in jail sshd-file", 1);
    // A file that does not match the pattern stays unread.
    std::fs::write(log_dir.path().join("e-access.log"), failure("192.0.2.87")).unwrap();
    std::fs::write(site("f"), failure("192.0.2.88")).unwrap();
    daemon.wait_log("Banned 192.0.2.88 in jail sshd-file", 1);
    let log = daemon.log();
    assert!(!log.contains("192.0.2.83"), "{log}");
    assert!(!log.contains("192.0.2.87"), "{log}");
    for addr in ["192.0.2.81", "192.0.2.82", "192.0.2.84"] {
        assert_eq!(log.matches(&format!("Banned {addr} ")).count(), 1, "{log}");
    }
    assert!(daemon.log().contains("matches a wildcard logpath"));
    // A reload still finds them all, and reads none twice.
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 1);
    std::fs::write(site("g"), failure("192.0.2.89")).unwrap();
    daemon.wait_log("Banned 192.0.2.89 in jail sshd-file", 1);
    let log = daemon.log();
    assert_eq!(log.matches("Banned ").count(), 7, "{log}");
    assert!(daemon.stop());
}

const WAIT: Duration = Duration::from_secs(10);

/// `banhound --bus-address BUS ARGS` as root.
fn cli(bus: &DbusDaemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_banhound"))
        .arg("--bus-address")
        .arg(&bus.address)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn cli_json(bus: &DbusDaemon, args: &[&str]) -> serde_json::Value {
    let out = cli(bus, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The next line `banhound monitor --json` printed.
fn next_event(monitor: &Running) -> serde_json::Value {
    let line = monitor
        .stdout
        .recv_timeout(WAIT)
        .expect("an event reaches the monitor");
    serde_json::from_str(&line).unwrap()
}

/// The (jail, target, failures) rows of the bans table.
fn stored_bans(lab: &Lab) -> Vec<(String, String, u32)> {
    StateDb::open(&lab.state_dir())
        .unwrap()
        .bans()
        .unwrap()
        .into_iter()
        .map(|b| (b.jail, b.target.to_string(), b.failures))
        .collect()
}

#[test]
fn the_cli_controls_the_daemon_over_dbus_with_real_bans() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut lab = Lab::new("bus", &sshd_config(3, "10m"));
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    // The name is taken before READY=1 and "banhound started".
    assert!(daemon
        .log()
        .contains("control interface: org.banhound.Banhound1 on unix:path="));
    let monitor = Running::spawn(Command::new(env!("CARGO_BIN_EXE_banhound")).args([
        "--bus-address",
        &bus.address,
        "monitor",
        "--json",
    ]));
    let ready = monitor.stderr.recv_timeout(WAIT).unwrap();
    assert!(ready.contains("listening"), "{ready}");

    let out = cli(&bus, &["status", "sshd"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Status for the jail: sshd"), "{text}");
    assert!(
        text.contains("Ban after:        3 failures within 10m"),
        "{text}"
    );
    assert!(text.contains("Backend:          nftables"), "{text}");
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["total_failed"], 0, "{status}");
    assert_eq!(status["currently_banned"], 0, "{status}");

    // Failures in the journal: a ban decided by the daemon reaches the monitor and counters.
    lab.fail_logins(FRIEND, 1);
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    let event = next_event(&monitor);
    assert_eq!(event["event"], "banned", "{event}");
    assert_eq!(event["jail"], "sshd");
    assert_eq!(event["address"], ATTACKER);
    assert_eq!(event["reason"], "3 failures within 10m");
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["total_failed"], 4, "{status}");
    assert_eq!(status["currently_failed"], 1, "{status}");
    assert_eq!(status["currently_banned"], 1, "{status}");
    assert_eq!(status["total_banned"], 1, "{status}");
    assert_eq!(status["bans"][0]["target"], ATTACKER, "{status}");
    let text = String::from_utf8_lossy(&cli(&bus, &["status", "sshd"]).stdout).into_owned();
    assert!(text.contains("Currently banned: 1"), "{text}");

    // A manual ban: in the kernel (real packets dropped), in the database, in the log.
    assert!(lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    let out = cli(&bus, &["ban", "sshd", FRIEND]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event = next_event(&monitor);
    assert_eq!(event["event"], "banned", "{event}");
    assert_eq!(event["address"], FRIEND);
    assert_eq!(event["reason"], "manual (uid 0)");
    assert!(lab.is_banned(FRIEND));
    assert!(!lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    assert!(stored_bans(&lab).contains(&("sshd".into(), format!("{FRIEND}/32"), 0)));
    daemon.wait_log(
        &format!("Banned {FRIEND} in jail sshd for 10m manually (uid 0)"),
        1,
    );
    let banned = cli_json(&bus, &["banned", FRIEND, "--json"]);
    assert!(banned.to_string().contains(FRIEND), "{banned}");

    // Refused: never banned (exit 2), not root (exit 4); neither changes anything.
    let out = cli(&bus, &["ban", "sshd", "127.0.0.1"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    let out = as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "unban", FRIEND])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "ban", "sshd", "192.0.2.9"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(lab.is_banned(FRIEND));
    assert!(!lab.is_banned("192.0.2.9"));

    // A runtime ignore entry refuses bans in it, and the host's own addresses stay refused
    // (ignoreself survives the rebuilt ignore list).
    let out = cli(&bus, &["ignore", "add", "sshd", "192.0.2.0/24"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&bus, &["ban", "sshd", "192.0.2.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ignoreip"));
    let out = cli(&bus, &["ban", "sshd", SERVER_FRIEND_SIDE]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("own addresses"), "{stderr}");
    let ignored = cli_json(&bus, &["status", "sshd", "--json"])["ignoreip"].clone();
    assert_eq!(ignored, serde_json::json!(["192.0.2.0/24"]));
    // The friend's ban is not lifted by ignoring its network.
    let out = cli(&bus, &["ignore", "add", "sshd", "198.51.100.0/24"]);
    assert!(out.status.success());
    assert!(lab.is_banned(FRIEND));

    // A manual unban: out of the kernel and the database, the friend gets through again.
    let out = cli(&bus, &["unban", FRIEND]);
    assert!(out.status.success());
    let event = next_event(&monitor);
    assert_eq!(
        event,
        serde_json::json!({"event": "unbanned", "jail": "sshd", "address": FRIEND, "why": "manual"})
    );
    assert!(!lab.is_banned(FRIEND));
    assert!(lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    assert!(!stored_bans(&lab)
        .iter()
        .any(|(_, t, _)| t.starts_with(FRIEND)));
    daemon.wait_log(
        &format!("Unbanned {FRIEND} in jail sshd (manually, uid 0)"),
        1,
    );
    let out = cli(&bus, &["unban", FRIEND]);
    // Exit 2 as for any request that cannot apply (1 is a failure of the system).
    assert_eq!(out.status.code(), Some(2), "not banned any more");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{FRIEND} is not banned")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Reload over the bus: the new settings are in force, bans kept; a broken configuration
    // is refused (exit 1) and the running one stays.
    lab.write_config(&sshd_config(5, "10m"));
    let out = cli(&bus, &["reload"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["maxretry"], 5);
    // Runtime ignore entries end with the reload.
    assert_eq!(status["ignoreip"], serde_json::json!([]), "{status}");
    assert!(lab.is_banned(ATTACKER));
    // SIGHUP (systemctl reload) re-lists the jails on the bus too: a jail added this way
    // gets its object.
    lab.write_config(&format!(
        "{}[jail.recidive]\nenabled = true\n",
        sshd_config(5, "10m")
    ));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("configuration reloaded", 2);
    wait_for("the recidive jail on the bus", WAIT, || {
        cli(&bus, &["status", "recidive"]).status.success()
    });
    let jails = cli_json(&bus, &["status", "--json"])["jails"].clone();
    assert_eq!(jails, serde_json::json!(["recidive", "sshd"]), "{jails}");
    lab.write_config("[jail.sshd]\nenabled = true\nmaxretry = \"many\"\n");
    let out = cli(&bus, &["reload"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("running configuration stays in force"),
        "{stderr}"
    );
    assert_eq!(cli_json(&bus, &["status", "sshd", "--json"])["maxretry"], 5);

    assert!(daemon.stop());
    // The name goes with the daemon.
    assert_eq!(cli(&bus, &["status"]).status.code(), Some(3));
}

#[test]
fn without_a_bus_the_daemon_still_bans_and_a_taken_name_stops_it() {
    // No bus at this address: a warning, then protection as usual.
    let mut lab = Lab::new("nobus", &sshd_config(3, "10m"));
    let missing = format!("unix:path={}", lab.dir().join("no-bus").display());
    let daemon = lab.start_with(false, &["--bus-address", &missing]);
    assert!(daemon
        .log()
        .contains("running without the control interface"));
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log(&ban_line(ATTACKER, "10m", 3), 1);
    assert!(lab.is_banned(ATTACKER));
    assert!(daemon.stop());

    // The name already owned (another banhound): this one refuses to start.
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut first_lab = Lab::new("first", &sshd_config(3, "10m"));
    let first = first_lab.start_with(false, &["--bus-address", &bus.address]);
    let mut second = lab.spawn(false, &["--bus-address", &bus.address]);
    let status = second
        .exit_within(WAIT)
        .expect("the second daemon kept running");
    assert_eq!(status.code(), Some(1), "{}", second.log());
    assert!(second.log().contains("already owned"), "{}", second.log());
    // The first one still answers.
    assert!(cli(&bus, &["status", "sshd"]).status.success());
    assert!(first.stop());
}

/// Issue 17: admins ban networks. With `widest_ban_v4 = 24` root bans a /26 around the
/// attacker (real packets dropped, status lists it, unban of the network lifts it); a
/// network covering the host's own address, or wider than the limit, is refused; and a ban
/// covering an address the host gains while running is lifted.
#[test]
fn root_bans_networks_up_to_the_configured_width_never_over_own_addresses() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let config = format!("{}widest_ban_v4 = 24\n", sshd_config(3, "10m"));
    let mut lab = Lab::new("netban", &config);
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    let network = "203.0.113.64/26";
    // The set's elements as nft prints them (a prefix element in an interval set).
    let in_set = || {
        lab.server()
            .nft(&["list", "set", "inet", "banhound", "sshd-v4"])
            .contains(network)
    };
    let refused = |args: &[&str], needle: &str| {
        let out = cli(&bus, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    };
    // 203.0.113.1 is the server's own address on the attacker's side.
    refused(&["ban", "sshd", "203.0.113.0/24"], "is never banned");
    refused(&["ban", "sshd", "10.99.0.0/16"], "is wider than");
    assert!(!in_set());

    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    let out = cli(&bus, &["ban", "sshd", network]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(in_set());
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    assert!(lab.connects(lab.friend(), SERVER_FRIEND_SIDE));
    let status = cli_json(&bus, &["status", "sshd", "--json"]);
    assert_eq!(status["bans"][0]["target"], network, "{status}");
    daemon.wait_log(&format!("Banned {network} in jail sshd"), 1);

    // Unban of the network lifts it.
    let out = cli(&bus, &["unban", network]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!in_set());
    assert!(lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));

    // The host gains an address inside a banned network: the ban goes.
    let out = cli(&bus, &["ban", "sshd", network]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(in_set());
    lab.server()
        .ip(&["addr", "add", "203.0.113.70/32", "dev", "veth-a"]);
    daemon.wait_log(&format!("Unbanned {network}"), 2);
    assert!(!in_set());
    refused(&["ban", "sshd", network], "is never banned");
}
