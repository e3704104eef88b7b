//! The real `banhound daemon` with the firewalld backend: every ban is back in firewalld
//! within 1 s of `firewall-cmd --reload` and of a firewalld restart, and the daemon logs it.
//!
//! tests/firewalld.rs proves the backend's reload watcher in-process; this proves the daemon's
//! wiring of it (src/daemon/backends.rs starts the watcher after the first setup and logs
//! each re-apply), which nothing else exercises. The lab is daemon_lab.rs's (journald
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

/// The sandbox, its fields dropped in this order: the daemon (killed by pid unless it was
/// stopped), the test's bus connection, firewalld and its bus, the namespaces and journald,
/// and last the runtime the connection ran on.
struct Bed {
    daemon: Option<Daemon>,
    bus: zbus::Connection,
    firewalld: PrivateFirewalld,
    lab: Lab,
    runtime: tokio::runtime::Runtime,
}

impl Bed {
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
        let started = Instant::now();
        while started.elapsed() < limit {
            if self.holds_every_ban() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
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
    format!(
        "[daemon]\nreconcile_interval = \"off\"\n\n{}backend = \"firewalld\"\n",
        sshd_config(3, "10m")
    )
}

#[test]
fn daemon_puts_bans_back_after_firewalld_reload_and_restart() {
    let mut lab = Lab::new("fw", &config());
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
    let mut firewalld = PrivateFirewalld::new(lab.server());
    runtime.block_on(firewalld.start());
    // The default zone lets only ssh (22) in; the protected service is on PORT.
    let port = format!("--add-port={PORT}/tcp");
    firewalld.firewall_cmd(&["--permanent", &port]);
    firewalld.firewall_cmd(&[&port]);
    lab.set_daemon_env("DBUS_SYSTEM_BUS_ADDRESS", firewalld.bus_address());
    let bus = runtime.block_on(firewalld.connect());
    let mut bed = Bed {
        daemon: None,
        bus,
        firewalld,
        lab,
        runtime,
    };
    assert_eq!(bed.reachability(), [true; 3], "lab broken before any ban");

    // DBUS_SYSTEM_BUS_ADDRESS is also the default of the global `--bus-address`, which
    // `--no-bus` conflicts with: the daemon serves its control interface on the private
    // bus too, as it would on a host's system bus next to firewalld. Spawned, then waited
    // for, so that its log is printed if it never gets ready.
    let bus_address = bed.firewalld.bus_address().to_owned();
    bed.daemon = Some(bed.lab.spawn(false, &["--bus-address", &bus_address]));
    bed.daemon().wait_log("banhound started", 1);
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
