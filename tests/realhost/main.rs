//! banhound on a booted Debian 12 host (tests/realhost/host.rs): systemd as PID 1, real
//! journald, system bus, OpenSSH with PAM, nftables and firewalld, banhound installed with
//! `install.sh` and run by its unit, attacked with real failed ssh logins. What is checked
//! is what an admin would check: `systemctl`, `journalctl`, `nft`, `firewall-cmd` and
//! `banhound` inside the host, and whether the attacker's and the friend's connections get
//! through.
//!
//! Each test boots its own throwaway copy of the cached root; the tests run one at a time
//! (a boot wants the two cores for itself). They print what they measure (ban delay, repair
//! delays; run with `--nocapture`). Needs root, systemd-nspawn, debootstrap (for the
//! first build of the root), sshpass and ssh.

#[path = "../support/netlab.rs"]
mod netlab;

mod host;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use host::{
    Host, Login, ADMIN, ADMIN_PASSWORD, ATTACKER2_V4, ATTACKER_IF, ATTACKER_V4, ATTACKER_V6,
    LOGIN_LIMIT,
};
use host::{SERVER2_V4, SERVER_FRIEND_V4, SERVER_FRIEND_V6, SERVER_V4, SERVER_V6};
use netlab::{wait_for, Netns};

/// The admin's drop-in the tests write before starting banhound.
const CONFIG: &str = "/etc/banhound/jail.d/test.toml";
/// How long a ban may take to come back after `systemctl restart nftables` flushed the
/// ruleset: banhound follows nf_tables change notifications and repairs within a second; the
/// rest is margin for a loaded machine (the periodic reconcile would take 30 s).
const NFTABLES_REPAIR_LIMIT: Duration = Duration::from_secs(2);
/// How long a ban may take to come back after `firewall-cmd --reload` or a firewalld restart
/// (banhound reacts to the Reloaded signal and to the bus name's new owner).
const FIREWALLD_REPAIR_LIMIT: Duration = Duration::from_secs(15);
/// Enough for a failed login's journal lines to reach banhound and its ban the firewall.
const SETTLE: Duration = Duration::from_millis(1500);

/// One booted host at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A drop-in with the sshd jail's settings (`[jail.sshd]` keys) and anything after it.
fn sshd_jail(keys: &str) -> String {
    format!("[jail.sshd]\nenabled = true\nfindtime = \"10m\"\n{keys}\n")
}

/// How an attack went.
struct Attack {
    attempts: usize,
    /// When the ban was first seen in the firewall (polled during the attack).
    seen: SystemTime,
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Failed logins from `from` as `user` to `to` until `banned` holds (checked every few ms
/// while the logins run), at most `max` attempts.
fn attack_until_banned(
    host: &Host,
    from: &Netns,
    user: &str,
    to: &str,
    max: usize,
    banned: impl Fn() -> bool + Sync,
) -> Attack {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::SeqCst) && Instant::now() < deadline {
                if banned() {
                    let seen = SystemTime::now();
                    done.store(true, Ordering::SeqCst);
                    return Some(seen);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        });
        // Stops the watcher also when an assertion below fails (the scope waits for it).
        let _stop = StopOnDrop(&done);
        let mut attempts = 0;
        while !done.load(Ordering::SeqCst) && attempts < max {
            let started = Instant::now();
            let login = host.fail_login(from, user, to);
            attempts += 1;
            if login == Login::NoConnection {
                // A ban blocks this attempt: one that came after the settling time, before
                // it connected (it never reached sshd, and is not counted), or one that came
                // while it was under way, decided on its own first line (its packets are
                // dropped from then on, and ssh is cut off at LOGIN_LIMIT): let the watcher
                // see it.
                let cut_off = started.elapsed() >= LOGIN_LIMIT;
                std::thread::sleep(Duration::from_secs(2));
                if done.load(Ordering::SeqCst) {
                    if !cut_off {
                        attempts -= 1;
                    }
                    break;
                }
            }
            assert_eq!(
                login,
                Login::Refused,
                "attempt {attempts} from {}",
                from.name()
            );
            // The lines of this attempt are logged by the time ssh gives up; give banhound
            // the moment it needs before deciding whether another attempt is needed.
            let until = Instant::now() + SETTLE;
            while !done.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        done.store(true, Ordering::SeqCst);
        let seen = watcher.join().unwrap();
        Attack {
            attempts,
            seen: seen.unwrap_or_else(|| panic!("not banned after {attempts} attempts")),
        }
    })
}

/// The sshd journal entries that mention `addr`, oldest first.
fn sshd_lines(host: &Host, addr: &str) -> Vec<(SystemTime, String)> {
    host.journal("-u ssh.service")
        .into_iter()
        .filter(|(_, m)| m.contains(&format!("{addr} ")) || m.ends_with(addr))
        .collect()
}

/// Prints and returns the time from the sshd line that led to the ban of `addr` (the last
/// one logged before banhound's "Banned" line) to the ban being seen in the firewall.
fn ban_delay(host: &Host, addr: &str, attack: &Attack) -> Duration {
    let banned_prefix = format!("Banned {addr} in jail ");
    let (decided, _) = host
        .journal("-u banhound.service")
        .into_iter()
        .find(|(_, m)| m.starts_with(&banned_prefix))
        .unwrap_or_else(|| panic!("no {banned_prefix:?} line"));
    let lines = sshd_lines(host, addr);
    let (logged, line) = lines
        .iter()
        .rev()
        .find(|(t, _)| *t <= decided)
        .unwrap_or_else(|| panic!("no sshd line about {addr} before the ban: {lines:?}"));
    let delay = attack.seen.duration_since(*logged).unwrap_or_default();
    println!(
        "ban delay for {addr}: {delay:?} from sshd's line {line:?} to the ban in the firewall \
         (banhound logged the ban after {:?}; checked every 10 ms plus the time one check takes; {} attempts)",
        decided.duration_since(*logged).unwrap_or_default(),
        attack.attempts
    );
    delay
}

/// Waits until `banhound status` answers (the unit is up and owns its bus name).
fn wait_banhound(host: &Host) {
    wait_for("banhound answering", Duration::from_secs(30), || {
        host.run("banhound status").status.success()
    });
}

/// Polls `done` until it holds, at most `limit`; how long it took.
fn time_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn nftables_host_bans_ssh_brute_force_over_ipv4_and_ipv6() {
    let _serial = serial();
    let host = Host::boot();
    host.write(CONFIG, &sshd_jail("maxretry = 3\nbantime = \"10m\""));
    host.install_and_start();
    wait_banhound(&host);
    assert!(host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));

    let attack = attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V4, 10, || {
        host.nft_expires("sshd-v4", ATTACKER_V4).is_some()
    });
    let delay = ban_delay(&host, ATTACKER_V4, &attack);
    assert!(delay < Duration::from_secs(2), "ban took {delay:?}");
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V6));
    assert_eq!(
        host.login(&host.friend, ADMIN, ADMIN_PASSWORD, SERVER_FRIEND_V4),
        Login::LoggedIn
    );
    let banned = host.journal("-u banhound.service");
    assert!(
        banned
            .iter()
            .any(|(_, m)| m.starts_with(&format!("Banned {ATTACKER_V4} in jail sshd for 10m"))),
        "{banned:?}"
    );

    let attack = attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V6, 10, || {
        host.nft_expires("sshd-v6", ATTACKER_V6).is_some()
    });
    ban_delay(&host, ATTACKER_V6, &attack);
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V6));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V6));

    // An admin restarting Debian's nftables service loads /etc/nftables.conf, which begins
    // with `flush ruleset`: banhound's table goes with it and must come back.
    host.sh("systemctl restart nftables");
    let repaired = time_until(
        "ban back after systemctl restart nftables",
        NFTABLES_REPAIR_LIMIT,
        || {
            host.nft_expires("sshd-v4", ATTACKER_V4).is_some()
                && host.nft_expires("sshd-v6", ATTACKER_V6).is_some()
        },
    );
    println!("repair delay after systemctl restart nftables: {repaired:?}");
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));
}

/// Defect 1: the unit pulled in nftables.service, whose start flushes every table.
#[test]
fn nftables_host_start_leaves_nftables_service_and_other_tables_alone() {
    let _serial = serial();
    let host = Host::boot();
    host.sh("nft add table inet admin && nft add chain inet admin keep");
    host.install_and_start();
    wait_banhound(&host);
    assert!(
        host.run("nft list table inet banhound").status.success(),
        "banhound's table is missing"
    );
    assert!(
        !host.is_active("nftables.service"),
        "starting banhound started nftables.service"
    );
    assert!(
        host.run("nft list table inet admin").status.success(),
        "the admin's table inet admin is gone after banhound started:\n{}",
        host.sh("nft list tables")
    );
}

/// Defect 1: on a firewalld host, (re)starting banhound stopped firewalld (it conflicts with
/// the nftables.service the unit pulled in).
#[test]
fn firewalld_host_start_and_restart_of_banhound_keep_firewalld() {
    let _serial = serial();
    let host = Host::boot();
    host.start_firewalld();
    host.write(
        CONFIG,
        &format!("[defaults]\nbackend = \"firewalld\"\n\n{}", sshd_jail("")),
    );
    host.install();
    let start = host.run("systemctl enable --now banhound");
    assert!(
        host.is_active("firewalld"),
        "starting banhound stopped firewalld ({}):\n{}",
        start.status,
        host.sh("journalctl --no-pager -n 30 -u firewalld -u nftables -u banhound")
    );
    assert!(
        start.status.success(),
        "systemctl enable --now banhound failed"
    );
    wait_banhound(&host);
    host.sh("systemctl restart banhound");
    wait_banhound(&host);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        host.is_active("firewalld"),
        "restarting banhound stopped firewalld"
    );
    assert!(host.is_active("banhound"));
    assert_eq!(
        host.sh("systemctl show -P NRestarts banhound").trim(),
        "0",
        "banhound restarted by itself"
    );
}

/// Defect 4: a refused reload said "Reloaded"; `banhound reload` did not exit 2.
#[test]
fn reload_with_an_invalid_configuration_fails_visibly() {
    let _serial = serial();
    let host = Host::boot();
    host.write(CONFIG, &sshd_jail("maxretry = 3"));
    host.install_and_start();
    wait_banhound(&host);
    host.sh(&format!("banhound ban sshd {ATTACKER_V4} --for 1h"));

    host.write(
        "/etc/banhound/jail.d/broken.toml",
        "[jail.sshd]\nmaxretry = \"lots\"\n",
    );
    let reload = host.run("systemctl reload banhound");
    let status = String::from_utf8_lossy(
        &host
            .run("systemctl status banhound --no-pager -l -n 20")
            .stdout,
    )
    .into_owned();
    assert!(
        !reload.status.success(),
        "systemctl reload succeeded for a refused configuration:\n{status}"
    );
    assert!(status.contains("Reload failed"), "{status}");
    assert!(status.contains("broken.toml"), "{status}");
    let cli = host.run("banhound reload");
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(2), "banhound reload: {stderr}");
    assert!(stderr.contains("broken.toml:2"), "{stderr}");
    // The running configuration stays, and so do the bans.
    assert!(host.is_active("banhound"));
    assert!(host.nft_expires("sshd-v4", ATTACKER_V4).is_some());

    host.remove("/etc/banhound/jail.d/broken.toml");
    host.sh("systemctl reload banhound");
    assert_eq!(host.run("banhound reload").status.code(), Some(0));
    // SIGHUP by hand still reloads.
    let reloaded = || {
        host.journal("-u banhound.service")
            .iter()
            .filter(|(_, m)| m.starts_with("configuration reloaded"))
            .count()
    };
    let before = reloaded();
    host.sh("systemctl kill -s HUP --kill-whom=main banhound");
    wait_for("reload after SIGHUP", Duration::from_secs(10), || {
        reloaded() > before
    });
    assert!(host.nft_expires("sshd-v4", ATTACKER_V4).is_some());
}

/// Defect 11: `./install.sh` as the README said needed cargo on the server; the bus must
/// know the policy as soon as it is installed.
#[test]
fn install_sh_on_a_server_without_rust() {
    let _serial = serial();
    let host = Host::boot();
    let out = host.install_without_binary();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("BANHOUND_BIN"),
        "install.sh without cargo and without BANHOUND_BIN: {stderr}"
    );
    assert!(
        !host.run("test -e /usr/bin/banhound").status.success(),
        "a failed install left files behind"
    );

    host.install_and_start();
    let status = host.run("banhound status sshd");
    assert!(
        status.status.success(),
        "banhound status right after enable --now: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Every file went in under a temporary name and was renamed: none is left over.
    let leftovers = host.sh(
        "find /usr/bin /usr/lib/banhound /lib/systemd/system /usr/share/dbus-1 \
         /usr/share/man/man1 -name '*banhound*' -name '.*'",
    );
    assert!(leftovers.trim().is_empty(), "{leftovers}");
}

/// Bans survive `systemctl restart`, `systemctl reload` and a reboot with the time they had
/// left, and no failure is counted twice across them.
#[test]
fn restart_reload_and_reboot_keep_bans_and_count_nothing_twice() {
    let _serial = serial();
    let mut host = Host::boot();
    host.write(CONFIG, &sshd_jail("maxretry = 7\nbantime = \"10m\""));
    host.install_and_start();
    wait_banhound(&host);

    // Uninterrupted: how many attempts of the admin's user it takes.
    let attack = attack_until_banned(&host, &host.attacker, ADMIN, SERVER_V4, 10, || {
        host.nft_expires("sshd-v4", ATTACKER_V4).is_some()
    });
    let needed = attack.attempts;
    println!("uninterrupted: banned after {needed} attempts");
    assert!(needed >= 2, "maxretry 7 reached in one attempt");

    // The second attacker gets as far as one attempt short, across a restart and a reload.
    let remaining = |host: &Host| {
        (
            Instant::now(),
            host.nft_expires("sshd-v4", ATTACKER_V4)
                .expect("the first attacker's ban"),
        )
    };
    let (t1, e1) = remaining(&host);
    for attempt in 1..needed {
        assert_eq!(
            host.fail_login(&host.attacker2, ADMIN, SERVER2_V4),
            Login::Refused
        );
        std::thread::sleep(SETTLE);
        assert!(
            host.nft_expires("sshd-v4", ATTACKER2_V4).is_none(),
            "banned after {attempt} of the {needed} attempts an uninterrupted run needs"
        );
        if attempt == 1 {
            host.sh("systemctl restart banhound");
            wait_banhound(&host);
        }
        if attempt == needed - 1 || attempt == 2 {
            host.sh("systemctl reload banhound");
        }
    }
    let (t2, e2) = remaining(&host);
    let elapsed = (t2 - t1).as_secs();
    println!("after restart and reload: {e1} s left then, {e2} s now, {elapsed} s later");
    assert!(
        e2 + elapsed <= e1 + 3 && e2 + elapsed + 3 >= e1,
        "the ban's time was not kept"
    );
    assert_eq!(
        host.fail_login(&host.attacker2, ADMIN, SERVER2_V4),
        Login::Refused
    );
    wait_for("the second attacker banned", Duration::from_secs(5), || {
        host.nft_expires("sshd-v4", ATTACKER2_V4).is_some()
    });

    host.reboot();
    wait_banhound(&host);
    wait_for(
        "bans back after the reboot",
        Duration::from_secs(10),
        || {
            host.nft_expires("sshd-v4", ATTACKER_V4).is_some()
                && host.nft_expires("sshd-v4", ATTACKER2_V4).is_some()
        },
    );
    let (t3, e3) = remaining(&host);
    let elapsed = (t3 - t1).as_secs();
    println!("after the reboot: {e1} s left before, {e3} s now, {elapsed} s later");
    assert!(
        e3 + elapsed <= e1 + 3 && e3 + elapsed + 5 >= e1,
        "the ban's time was not kept over the reboot"
    );
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));
}

/// The firewalld backend on a firewalld host: the ban is in banhound's ipset, and comes back
/// after `firewall-cmd --reload` and a restart of firewalld.
#[test]
fn firewalld_host_bans_and_puts_bans_back_after_reload_and_restart() {
    let _serial = serial();
    let host = Host::boot();
    host.start_firewalld();
    host.write(
        CONFIG,
        &format!(
            "[defaults]\nbackend = \"firewalld\"\n\n{}",
            sshd_jail("maxretry = 3\nbantime = \"10m\"")
        ),
    );
    host.install_and_start();
    wait_banhound(&host);
    let in_ipset = || {
        host.ipset_entries("banhound-sshd-v4")
            .iter()
            .any(|e| e == ATTACKER_V4)
    };
    let attack = attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V4, 10, in_ipset);
    ban_delay(&host, ATTACKER_V4, &attack);
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));

    // Timed from when the command returns (firewalld has reloaded and said so).
    host.sh("firewall-cmd --reload");
    let repaired = time_until(
        "ban back after firewall-cmd --reload",
        FIREWALLD_REPAIR_LIMIT,
        in_ipset,
    );
    println!(
        "repair delay after firewall-cmd --reload: {repaired:?} (until the ipset holds the ban)"
    );
    wait_for("the attacker blocked again", Duration::from_secs(5), || {
        !host.reaches_ssh(&host.attacker, SERVER_V4)
    });

    host.sh("systemctl restart firewalld");
    let repaired = time_until(
        "ban back after systemctl restart firewalld",
        FIREWALLD_REPAIR_LIMIT,
        in_ipset,
    );
    println!("repair delay after systemctl restart firewalld: {repaired:?} (until the ipset holds the ban)");
    wait_for("the attacker blocked again", Duration::from_secs(5), || {
        !host.reaches_ssh(&host.attacker, SERVER_V4)
    });
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));
    assert!(host.is_active("banhound"));
}

/// Defect 2: a firewalld ban must hold whatever zone the attacker's interface is in.
#[test]
fn firewalld_ban_holds_in_every_zone() {
    let _serial = serial();
    let host = Host::boot();
    host.start_firewalld();
    host.write(
        CONFIG,
        &format!("[defaults]\nbackend = \"firewalld\"\n\n{}", sshd_jail("")),
    );
    host.install_and_start();
    wait_banhound(&host);
    host.sh(&format!("banhound ban sshd {ATTACKER_V4} --for 1h"));
    wait_for("the ban in force", Duration::from_secs(5), || {
        !host.reaches_ssh(&host.attacker, SERVER_V4)
    });
    host.sh(&format!(
        "firewall-cmd --zone=internal --change-interface={ATTACKER_IF}"
    ));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !host.reaches_ssh(&host.attacker, SERVER_V4),
        "the banned attacker connects once its interface is in zone internal"
    );
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));
}

/// Escalation and the shipped recidive jail, fed by banhound's own "Banned ..." lines in
/// the real journal.
#[test]
fn repeat_offender_gets_a_longer_ban_and_the_recidive_ban() {
    let _serial = serial();
    let host = Host::boot();
    host.write(
        CONFIG,
        &format!(
            "{}\n[jail.sshd.escalation]\nfactor = 3\nmaxtime = \"1h\"\n\n\
             [jail.recidive]\nenabled = true\nmaxretry = 2\nfindtime = \"1h\"\nbantime = \"10m\"\n",
            sshd_jail("maxretry = 2\nbantime = \"4s\"")
        ),
    );
    host.install_and_start();
    wait_banhound(&host);
    let banned = || host.nft_expires("sshd-v4", ATTACKER_V4).is_some();
    attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V4, 10, banned);
    wait_for("the first ban expired", Duration::from_secs(15), || {
        !banned() && host.reaches_ssh(&host.attacker, SERVER_V4)
    });
    attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V4, 10, banned);
    wait_for("the recidive ban", Duration::from_secs(10), || {
        host.nft_expires("recidive-v4", ATTACKER_V4).is_some()
    });
    let lines: Vec<String> = host
        .journal("-u banhound.service")
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.starts_with("Banned "))
        .collect();
    println!("{lines:#?}");
    let sshd_bans: Vec<&String> = lines
        .iter()
        .filter(|m| m.contains(" in jail sshd "))
        .collect();
    assert!(sshd_bans[0].starts_with(&format!("Banned {ATTACKER_V4} in jail sshd for 4s ")));
    assert!(
        sshd_bans[1].starts_with(&format!("Banned {ATTACKER_V4} in jail sshd for 12s ")),
        "the second ban is not escalated: {lines:?}"
    );
    assert!(lines
        .iter()
        .any(|m| m.starts_with(&format!("Banned {ATTACKER_V4} in jail recidive for 10m"))));
    let expires = host.nft_expires("recidive-v4", ATTACKER_V4).unwrap();
    assert!(expires > 500, "recidive ban expires in {expires} s");
}

/// Defect 3: with OpenSSH and PAM one wrong password logs several lines; two typos of the
/// admin must not use up maxretry 5.
#[test]
fn two_typos_of_the_admin_do_not_ban_five_wrong_passwords_do() {
    let _serial = serial();
    let host = Host::boot();
    host.write(CONFIG, &sshd_jail("maxretry = 5\nbantime = \"10m\""));
    host.install_and_start();
    wait_banhound(&host);
    assert_eq!(
        host.fail_login(&host.attacker2, "nosuch", SERVER2_V4),
        Login::Refused
    );
    std::thread::sleep(SETTLE);
    println!("sshd lines of one wrong password for an invalid user:");
    for (_, line) in sshd_lines(&host, ATTACKER2_V4) {
        println!("  {line}");
    }
    println!(
        "with their fields:\n{}",
        host.sh(
            "journalctl -q --no-pager -u ssh.service -o json \
             --output-fields=MESSAGE,SYSLOG_IDENTIFIER,_COMM,_SYSTEMD_UNIT,PRIORITY,SYSLOG_FACILITY"
        )
    );
    let before = host.jail_status("sshd")["total_failed"].as_u64().unwrap();

    for _ in 0..2 {
        assert_eq!(
            host.fail_login(&host.attacker, ADMIN, SERVER_V4),
            Login::Refused
        );
    }
    std::thread::sleep(SETTLE);
    // The real lines, for the record (the filter's fixtures are written from them).
    println!("sshd lines of two wrong passwords for a valid user:");
    for (_, line) in sshd_lines(&host, ATTACKER_V4) {
        println!("  {line}");
    }
    assert!(
        host.nft_expires("sshd-v4", ATTACKER_V4).is_none(),
        "banned after two wrong passwords"
    );
    let status = host.jail_status("sshd");
    assert_eq!(
        status["total_failed"].as_u64(),
        Some(before + 2),
        "two wrong passwords: {status}"
    );

    for _ in 0..3 {
        assert_eq!(
            host.fail_login(&host.attacker, ADMIN, SERVER_V4),
            Login::Refused
        );
    }
    wait_for(
        "banned after five wrong passwords",
        Duration::from_secs(5),
        || host.nft_expires("sshd-v4", ATTACKER_V4).is_some(),
    );
}

/// The Debian package (dist/deb/build-deb.sh, here from the binary under test): installed
/// with dpkg, enabled by the admin with `systemctl enable --now banhound`, it bans; removed,
/// it stops and leaves no binary behind.
#[test]
fn the_deb_installs_with_dpkg_and_runs_from_its_unit() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // Stripped, the debug binary packs in seconds instead of minutes.
    let bin = dir.path().join("banhound");
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&bin)
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .status()
        .unwrap();
    assert!(strip.success());
    let built = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/deb/build-deb.sh"),
    )
    .arg(dir.path())
    .env("BANHOUND_BIN", &bin)
    .env("BANHOUND_DEB_COMPRESSION", "gzip")
    .output()
    .unwrap();
    assert!(
        built.status.success(),
        "build-deb.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::path::PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());

    let host = Host::boot();
    host.write(CONFIG, &sshd_jail("maxretry = 3\nbantime = \"10m\""));
    let out = host.install_deb(&deb);
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !host.is_active("banhound"),
        "a fresh install must not start"
    );
    let listed = host.sh("dpkg -L banhound");
    for path in [
        "/usr/bin/banhound",
        "/lib/systemd/system/banhound.service",
        "/usr/share/dbus-1/system.d/org.banhound.Banhound1.conf",
        "/usr/lib/banhound/filters/sshd.toml",
        "/usr/share/man/man5/banhound.toml.5.gz",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in dpkg -L: {listed}"
        );
    }
    host.sh("systemctl enable --now banhound");
    wait_banhound(&host);
    assert!(host.is_active("banhound"));
    attack_until_banned(&host, &host.attacker, "nosuch", SERVER_V4, 10, || {
        host.nft_expires("sshd-v4", ATTACKER_V4).is_some()
    });
    assert!(!host.reaches_ssh(&host.attacker, SERVER_V4));
    assert!(host.reaches_ssh(&host.friend, SERVER_FRIEND_V4));

    let out = host.run("dpkg -r banhound");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!host.is_active("banhound"));
    assert!(!host.run("test -e /usr/bin/banhound").status.success());
}
