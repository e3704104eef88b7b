//! The real `banhound daemon` with the firewalld backend: every ban is back in firewalld
//! within 1 s of `firewall-cmd --reload` and of a firewalld restart, and the daemon logs it;
//! a daemon started (or reloaded) while firewalld is away keeps banning and applies it all
//! once firewalld answers, and its `FirewallError` clears at once then; switching a jail
//! between nftables and firewalld leaves nothing behind in the firewall no longer used.
//!
//! tests/firewalld.rs proves the backend's reload watcher in-process; this proves the daemon's
//! wiring of it (src/firewall/dispatch.rs starts the watcher when it opens the backend, the
//! owner task logs each re-apply and reconciles at once if anything had failed), which
//! nothing else exercises. The lab is daemon_lab.rs's (journald
//! namespace, server/attacker/friend namespaces, listener on [`PORT`]) plus an IPv6 link to
//! the attacker, and a real firewalld on a private bus in the server namespace
//! (firewalld_lab.rs) that the daemon reaches through `DBUS_SYSTEM_BUS_ADDRESS`. What counts
//! is what firewalld holds (its ipsets' entries over D-Bus, not the daemon's view) and what
//! real connections do. The periodic reconcile is off, so only the reload watcher can put
//! the bans back. Every process and namespace is stopped by pid or name in `Drop`, also when
//! an assertion fails.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/firewalld_lab.rs"]
mod firewalld_lab;
#[path = "support/netlab.rs"]
mod netlab;

use banhound::bus::proxy::{JailProxy, ManagerProxy};
use daemon_lab::{
    sshd_config, Daemon, Lab, ATTACKER, PORT, SERVER_ATTACKER_SIDE, SERVER_FRIEND_SIDE,
};
use firewalld_lab::PrivateFirewalld;
use netlab::wait_for;
use std::time::{Duration, Instant};

/// The attacker's second address, on the same link as [`ATTACKER`].
const ATTACKER_V6: &str = "2001:db8:a::66";
const SERVER_V6_TO_ATTACKER: &str = "2001:db8:a::1";
/// The ipsets the sshd jail's bans are in (`banhound-{jail}-v4` / `-v6`).
const IPSET_V4: &str = "banhound-sshd-v4";
const IPSET_V6: &str = "banhound-sshd-v6";
/// What the task promises: every ban back within this long.
const REAPPLY_LIMIT: Duration = Duration::from_secs(1);
/// The firewall error must be gone this soon after firewalld answers again (issue 12,
/// defect 8: it stayed until the next retry, up to its 5-minute backoff).
const CLEARED_LIMIT: Duration = Duration::from_secs(2);
/// What firewalld's absence looks like: the D-Bus error name, which the error must carry.
const NO_FIREWALLD: &str = "org.freedesktop.DBus.Error.ServiceUnknown";

/// The sandbox, its fields dropped in this order: the daemon (killed by pid unless it was
/// stopped), the test's proxy of the daemon and its bus connection, firewalld and its bus, the namespaces and journald,
/// and last the runtime the connection ran on.
struct Bed {
    daemon: Option<Daemon>,
    manager: Option<ManagerProxy<'static>>,
    bus: zbus::Connection,
    firewalld: PrivateFirewalld,
    lab: Lab,
    runtime: tokio::runtime::Runtime,
}

impl Bed {
    /// The lab with the attacker's IPv6 link, and a firewalld on a private bus (started
    /// if `firewalld_running`, with [`PORT`] open).
    fn new(tag: &str, firewalld_running: bool) -> Bed {
        let lab = Lab::new(tag, &config());
        lab.server().ip(&[
            "-6",
            "addr",
            "add",
            &format!("{SERVER_V6_TO_ATTACKER}/64"),
            "dev",
            "veth-a",
            "nodad",
        ]);
        lab.attacker().ip(&[
            "-6",
            "addr",
            "add",
            &format!("{ATTACKER_V6}/64"),
            "dev",
            "veth-a",
            "nodad",
        ]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let firewalld = PrivateFirewalld::new(lab.server());
        let bus = runtime.block_on(firewalld.connect());
        let mut bed = Bed {
            daemon: None,
            manager: None,
            bus,
            firewalld,
            lab,
            runtime,
        };
        let bus_address = bed.firewalld.bus_address().to_owned();
        bed.lab
            .set_daemon_env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address);
        if firewalld_running {
            bed.start_firewalld();
        }
        bed
    }

    /// Starts firewalld, waits until it answers, and opens [`PORT`] in its default zone
    /// (which lets only ssh in).
    fn start_firewalld(&mut self) {
        self.firewalld.spawn();
        self.runtime.block_on(self.firewalld.wait_until_answering());
        let port = format!("--add-port={PORT}/tcp");
        self.firewalld.firewall_cmd(&["--permanent", &port]);
        self.firewalld.firewall_cmd(&[&port]);
    }

    /// Starts the daemon, serving its control interface on the private bus too (as it would
    /// on a host's system bus next to firewalld: DBUS_SYSTEM_BUS_ADDRESS is also the default
    /// of `--bus-address`, which `--no-bus` conflicts with), and waits until it started.
    /// Spawned, then waited for, so that its log is printed if it never gets ready.
    fn start_daemon(&mut self) {
        let bus_address = self.firewalld.bus_address().to_owned();
        self.daemon = Some(self.lab.spawn(false, &["--bus-address", &bus_address]));
        self.daemon().wait_log("banhound started", 1);
        let manager = self.runtime.block_on(async {
            ManagerProxy::builder(&self.bus)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap()
        });
        self.manager = Some(manager);
    }

    /// Whether the server's nftables ruleset holds banhound's own table.
    fn has_nft_table(&self) -> bool {
        self.lab
            .server()
            .nft(&["list", "tables"])
            .contains("table inet banhound")
    }

    /// banhound's objects in firewalld, runtime and permanent (ipsets, policies), as
    /// firewall-cmd lists them: empty when there are none.
    fn firewalld_objects(&self) -> Vec<String> {
        let mut found = Vec::new();
        for args in [
            &["--get-ipsets"][..],
            &["--permanent", "--get-ipsets"],
            &["--get-policies"],
            &["--permanent", "--get-policies"],
        ] {
            let listed = self.firewalld.firewall_cmd(args);
            found.extend(
                listed
                    .split_whitespace()
                    .filter(|name| name.starts_with("banhound"))
                    .map(|name| format!("{}: {name}", args.join(" "))),
            );
        }
        found
    }

    /// The daemon's `FirewallError` bus property (empty: none).
    fn firewall_error(&self) -> String {
        let manager = self.manager.as_ref().unwrap();
        self.runtime
            .block_on(manager.firewall_error())
            .unwrap_or_else(|e| panic!("FirewallError: {e}"))
    }

    /// Polls (every 5 ms) until `done`; how long it took, or `None` after `limit`.
    fn time_until(&self, limit: Duration, mut done: impl FnMut(&Bed) -> bool) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if done(self) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// (entries of the v4 ipset, entries of the v6 ipset), as firewalld reports them.
    fn held(&self) -> (Vec<String>, Vec<String>) {
        self.runtime.block_on(async {
            (
                self.firewalld.ipset_entries(&self.bus, IPSET_V4).await,
                self.firewalld.ipset_entries(&self.bus, IPSET_V6).await,
            )
        })
    }

    fn holds_every_ban(&self) -> bool {
        self.held() == (vec![ATTACKER.to_owned()], vec![ATTACKER_V6.to_owned()])
    }

    /// How long from now until firewalld holds every ban (polled every 5 ms), or `None` if it
    /// does not within `limit`.
    fn time_until_every_ban_held(&self, limit: Duration) -> Option<Duration> {
        self.time_until(limit, Bed::holds_every_ban)
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().unwrap()
    }

    /// Real connections: [attacker v4, attacker v6, friend v4] get through.
    fn reachability(&self) -> [bool; 3] {
        let lab = &self.lab;
        [
            lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE),
            lab.connects(lab.attacker(), SERVER_V6_TO_ATTACKER),
            lab.connects(lab.friend(), SERVER_FRIEND_SIDE),
        ]
    }

    /// The sshd jail's `Backend` bus property, as `banhound status` shows it.
    fn sshd_backend(&self) -> String {
        let manager = self.manager.as_ref().unwrap();
        self.runtime.block_on(async {
            let (_, path) = manager
                .list_jails()
                .await
                .unwrap()
                .into_iter()
                .find(|(name, _)| name == "sshd")
                .expect("the sshd jail on the bus");
            let jail = JailProxy::builder(&self.bus)
                .path(path)
                .unwrap()
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
                .unwrap();
            jail.backend().await.unwrap()
        })
    }

    /// The daemon's log lines containing `needle`.
    fn log_lines(&self, needle: &str) -> Vec<String> {
        self.daemon()
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(daemon) = &self.daemon {
                eprintln!("daemon log:\n{}", daemon.log());
            }
        }
    }
}

fn config() -> String {
    config_with("firewalld")
}

fn config_with(backend: &str) -> String {
    format!(
        "[daemon]\nreconcile_interval = \"off\"\n\n{}backend = \"{backend}\"\n",
        sshd_config(3, "10m")
    )
}

#[test]
fn daemon_puts_bans_back_after_firewalld_reload_and_restart() {
    let mut bed = Bed::new("fw", true);
    assert_eq!(bed.reachability(), [true; 3], "lab broken before any ban");
    bed.start_daemon();
    bed.lab.fail_logins(ATTACKER, 3);
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER} "), 1);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);
    wait_for(
        "firewalld to hold both bans",
        Duration::from_secs(10),
        || bed.holds_every_ban(),
    );
    assert_eq!(bed.reachability(), [false, false, true], "after the bans");

    // (a) firewall-cmd --reload empties the ipsets' runtime entries; the daemon refills them.
    let reload_started = Instant::now();
    bed.firewalld.firewall_cmd(&["--reload"]);
    let reload_returned = reload_started.elapsed();
    let back_after_reload = bed.time_until_every_ban_held(Duration::from_secs(10));
    eprintln!(
        "reload: firewall-cmd --reload took {reload_returned:?}; every ban back in firewalld \
         {back_after_reload:?} after it returned (firewalld holds {:?})",
        bed.held()
    );
    bed.daemon()
        .wait_log("firewalld Reloaded: 2 ban entries re-applied in ", 1);
    eprintln!(
        "reload: daemon logged {:?}",
        bed.log_lines("firewalld Reloaded")
    );
    // Only the admin's reload: the daemon's own (its setup created the ipsets and the
    // policy) needs no re-apply, the setup puts the bans in itself.
    assert_eq!(bed.log_lines("firewalld Reloaded").len(), 1);
    assert!(
        back_after_reload.is_some_and(|t| t <= REAPPLY_LIMIT),
        "bans not back within {REAPPLY_LIMIT:?} of the reload: {back_after_reload:?}"
    );
    assert_eq!(bed.reachability(), [false, false, true], "after the reload");

    // (b) firewalld killed by pid and started again: a new owner of its bus name, no
    // `Reloaded`; the daemon refills the ipsets of the new instance.
    let old_pid = bed.firewalld.firewalld_pid();
    bed.firewalld.stop();
    wait_for(
        "firewalld's ipsets to be gone with it",
        Duration::from_secs(10),
        || bed.held() == (Vec::new(), Vec::new()),
    );
    let restart_started = Instant::now();
    bed.firewalld.spawn();
    assert_ne!(bed.firewalld.firewalld_pid(), old_pid);
    bed.runtime.block_on(bed.firewalld.wait_until_answering());
    let firewalld_ready = restart_started.elapsed();
    let back_after_restart = bed.time_until_every_ban_held(Duration::from_secs(10));
    eprintln!(
        "restart: firewalld answered {firewalld_ready:?} after start; every ban back in \
         firewalld {back_after_restart:?} after that (firewalld holds {:?})",
        bed.held()
    );
    bed.daemon()
        .wait_log("firewalld Restarted: 2 ban entries re-applied in ", 1);
    eprintln!(
        "restart: daemon logged {:?}",
        bed.log_lines("firewalld Restarted")
    );
    assert!(
        back_after_restart.is_some_and(|t| t <= REAPPLY_LIMIT),
        "bans not back within {REAPPLY_LIMIT:?} of firewalld answering: {back_after_restart:?}"
    );
    assert_eq!(
        bed.reachability(),
        [false, false, true],
        "after the restart"
    );

    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}

/// Issue 12, defect 8: a daemon started before firewalld answers keeps running, shows the
/// error (with the D-Bus error's name), and applies everything once firewalld is up; the
/// error is gone as soon as that repair succeeded.
#[test]
fn daemon_started_before_firewalld_bans_once_it_answers() {
    let mut bed = Bed::new("fwlate", false);
    bed.start_daemon();
    let error = bed.firewall_error();
    eprintln!("before firewalld: FirewallError = {error:?}");
    assert!(error.contains(NO_FIREWALLD), "{error}");
    bed.lab.fail_logins(ATTACKER, 3);
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);

    let started = Instant::now();
    bed.start_firewalld();
    let answering = started.elapsed();
    let held = bed.time_until_every_ban_held(Duration::from_secs(10));
    let cleared = bed.time_until(Duration::from_secs(60), |b| b.firewall_error().is_empty());
    eprintln!(
        "firewalld answered {answering:?} after start; every ban in firewalld {held:?} and FirewallError cleared {cleared:?} after that"
    );
    assert!(held.is_some(), "bans never reached firewalld");
    assert!(
        cleared.is_some_and(|t| t <= CLEARED_LIMIT),
        "FirewallError not cleared within {CLEARED_LIMIT:?}: {cleared:?}"
    );
    assert_eq!(bed.reachability(), [false, false, true]);
    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}

/// Issue 12, defect 8: firewalld goes away while bans are decided, long enough for the
/// retries to back off; once it is back, the re-apply puts every ban in and the firewall
/// error clears at once, not at the next retry.
#[test]
fn firewall_error_clears_as_soon_as_firewalld_is_back() {
    let mut bed = Bed::new("fwback", true);
    bed.start_daemon();
    assert_eq!(bed.firewall_error(), "");

    bed.firewalld.stop();
    bed.lab.fail_logins(ATTACKER, 3);
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);
    let error = bed.firewall_error();
    eprintln!("firewalld away: FirewallError = {error:?}");
    assert!(error.contains(NO_FIREWALLD), "{error}");
    // Retries at 1, 3 and 7 s after the failure: the next one is 8 s later.
    std::thread::sleep(Duration::from_secs(8));
    assert!(!bed.firewall_error().is_empty());

    bed.firewalld.spawn();
    bed.runtime.block_on(bed.firewalld.wait_until_answering());
    let held = bed.time_until_every_ban_held(Duration::from_secs(10));
    let cleared = bed.time_until(Duration::from_secs(60), |b| b.firewall_error().is_empty());
    eprintln!(
        "firewalld back: every ban in firewalld {held:?} and FirewallError cleared {cleared:?} after it answered; daemon logged {:?}",
        bed.log_lines("works again")
    );
    assert!(held.is_some_and(|t| t <= REAPPLY_LIMIT), "{held:?}");
    assert!(
        cleared.is_some_and(|t| t <= CLEARED_LIMIT),
        "FirewallError not cleared within {CLEARED_LIMIT:?}: {cleared:?}"
    );
    assert_eq!(bed.reachability(), [false, false, true]);
    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}

/// Issue 12, defect 9b: switching a jail's backend, by reload and by restart, in both
/// directions, leaves nothing of banhound's in the firewall no longer used (an empty
/// `table inet banhound` with its hooked chain, or firewalld's ipsets and policy), and the
/// ban in force moves along.
#[test]
fn switching_backend_removes_what_is_no_longer_used() {
    let mut bed = Bed::new("fwswitch", true);
    bed.lab.write_config(&config_with("nftables"));
    bed.start_daemon();
    bed.lab.fail_logins(ATTACKER, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER} "), 1);
    assert!(bed.has_nft_table());
    assert!(!bed.reachability()[0], "banned through nftables");

    // nftables -> firewalld by reload.
    bed.lab.write_config(&config_with("firewalld"));
    bed.daemon().signal(libc::SIGHUP);
    bed.daemon().wait_log("configuration reloaded", 1);
    let ruleset = bed.lab.server().nft(&["list", "ruleset"]);
    assert!(
        !bed.has_nft_table(),
        "nftables table left after switching to firewalld by reload:\n{ruleset}"
    );
    assert_eq!(bed.held().0, [ATTACKER]);
    assert!(!bed.reachability()[0], "banned through firewalld");

    // firewalld -> nftables by restart.
    assert!(bed.daemon.take().unwrap().stop());
    bed.lab.write_config(&config_with("nftables"));
    bed.start_daemon();
    assert_eq!(
        bed.firewalld_objects(),
        Vec::<String>::new(),
        "firewalld objects left after switching to nftables by restart"
    );
    assert!(bed.has_nft_table());
    assert!(!bed.reachability()[0], "banned through nftables again");

    // nftables -> firewalld by restart.
    assert!(bed.daemon.take().unwrap().stop());
    bed.lab.write_config(&config_with("firewalld"));
    bed.start_daemon();
    assert!(
        !bed.has_nft_table(),
        "nftables table left after switching to firewalld by restart"
    );
    assert_eq!(bed.held().0, [ATTACKER]);

    // firewalld -> nftables by reload.
    bed.lab.write_config(&config_with("nftables"));
    bed.daemon().signal(libc::SIGHUP);
    bed.daemon().wait_log("configuration reloaded", 1);
    assert_eq!(bed.firewalld_objects(), Vec::<String>::new());
    assert!(bed.has_nft_table());
    assert_eq!(bed.reachability(), [false, true, true]);

    // Back and forth by reload in one run: the nftables backend opened last is a new one,
    // and its own changes (a ban) are not taken for someone else's.
    bed.lab.write_config(&config_with("firewalld"));
    bed.daemon().signal(libc::SIGHUP);
    bed.daemon().wait_log("configuration reloaded", 2);
    bed.lab.write_config(&config_with("nftables"));
    bed.daemon().signal(libc::SIGHUP);
    bed.daemon().wait_log("configuration reloaded", 3);
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        bed.log_lines("nftables table inet banhound changed"),
        Vec::<String>::new()
    );
    assert_eq!(bed.reachability(), [false, false, true]);
    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}

/// A reload while firewalld is away is applied anyway (the firewall failure is retried like
/// any other): the daemon keeps reading the journal and banning, and the bans reach
/// firewalld once it is back. Before, the reload stopped half-way, after it had stopped the
/// sources and before it started them again, so nothing more was ever banned.
#[test]
fn a_reload_while_firewalld_is_away_keeps_the_daemon_banning() {
    let mut bed = Bed::new("fwreload", true);
    bed.start_daemon();
    bed.firewalld.stop();
    bed.daemon().signal(libc::SIGHUP);
    // "configuration reloaded", or before the fix "configuration reload failed".
    bed.daemon().wait_log("configuration reload", 1);
    let error = bed.firewall_error();
    assert!(error.contains(NO_FIREWALLD), "{error}");

    bed.lab.fail_logins(ATTACKER, 3);
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER} "), 1);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);
    assert_eq!(
        bed.log_lines("configuration reload failed"),
        Vec::<String>::new()
    );

    bed.firewalld.spawn();
    bed.runtime.block_on(bed.firewalld.wait_until_answering());
    let held = bed.time_until_every_ban_held(Duration::from_secs(10));
    let cleared = bed.time_until(Duration::from_secs(60), |b| b.firewall_error().is_empty());
    eprintln!("firewalld back: every ban in firewalld {held:?}, FirewallError cleared {cleared:?}");
    assert!(held.is_some_and(|t| t <= REAPPLY_LIMIT), "{held:?}");
    assert!(cleared.is_some_and(|t| t <= CLEARED_LIMIT), "{cleared:?}");
    assert_eq!(bed.reachability(), [false, false, true]);
    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}

/// Issue 17, item 2: `backend = "auto"` (the shipped default) bans through firewalld while it
/// runs and through nftables while it does not, decided at start and again when firewalld
/// stops and starts (its bus name's owner): the bans in force move along, the attacker stays
/// out, the friend gets in, and the backend given up keeps nothing of banhound's (an
/// nftables table beside firewalld's is what a firewalld host got before). `Backend` on the
/// bus (what `banhound status` shows) says which.
#[test]
fn auto_backend_follows_firewalld_starting_and_stopping() {
    let mut bed = Bed::new("fwauto", true);
    bed.lab.write_config(&config_with("auto"));
    bed.start_daemon();
    bed.daemon()
        .wait_log("backend \"auto\": firewalld is running", 1);
    assert_eq!(bed.sshd_backend(), "firewalld (auto)");
    bed.lab.fail_logins(ATTACKER, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER} "), 1);
    assert_eq!(bed.held().0, [ATTACKER]);
    assert!(!bed.has_nft_table(), "an nftables table beside firewalld");
    assert_eq!(bed.reachability(), [false, true, true]);

    // firewalld stops: the ban moves to nftables.
    bed.firewalld.stop();
    bed.daemon()
        .wait_log("backend \"auto\": firewalld is not running", 1);
    bed.daemon().wait_log("jail sshd moved to nftables", 1);
    let moved = bed.time_until(Duration::from_secs(10), |b| b.lab.is_banned(ATTACKER));
    assert!(moved.is_some(), "the ban did not reach nftables");
    assert_eq!(bed.sshd_backend(), "nftables (auto)");
    assert_eq!(bed.reachability(), [false, true, true]);
    // Bans decided now go to nftables.
    bed.lab.fail_logins(ATTACKER_V6, 3);
    bed.daemon().wait_log(&format!("Banned {ATTACKER_V6} "), 1);
    assert_eq!(bed.reachability(), [false, false, true]);
    assert_eq!(bed.firewall_error(), "");

    // firewalld is back: both bans move to it, and the nftables table goes.
    bed.start_firewalld();
    bed.daemon().wait_log("jail sshd moved to firewalld", 1);
    let held = bed.time_until_every_ban_held(Duration::from_secs(10));
    assert!(held.is_some(), "firewalld holds {:?}", bed.held());
    let gone = bed.time_until(Duration::from_secs(10), |b| !b.has_nft_table());
    let ruleset = bed.lab.server().nft(&["list", "ruleset"]);
    assert!(
        gone.is_some(),
        "nftables table left beside firewalld:\n{ruleset}"
    );
    assert_eq!(bed.sshd_backend(), "firewalld (auto)");
    assert_eq!(bed.reachability(), [false, false, true]);
    let cleared = bed.time_until(Duration::from_secs(10), |b| b.firewall_error().is_empty());
    assert!(cleared.is_some(), "{}", bed.firewall_error());

    // A reload decides again (firewalld still runs: nothing moves).
    bed.daemon().signal(libc::SIGHUP);
    bed.daemon().wait_log("configuration reloaded", 1);
    bed.daemon()
        .wait_log("backend \"auto\": firewalld is running", 3);
    assert_eq!(bed.sshd_backend(), "firewalld (auto)");
    assert!(bed.holds_every_ban() && !bed.has_nft_table());
    assert!(
        bed.daemon.take().unwrap().stop(),
        "the daemon did not exit cleanly"
    );
}
