//! The daemon follows what changes under it, with real parts: the binary runs in a network
//! namespace (tests/support/daemon_lab.rs), and the changes are made there as an admin or
//! the network would make them.
//!
//! - An address the host gets after start (`ip addr add`: DHCP, a failover address) is
//!   never banned from then on, a ban in force for it is lifted, and an address the host
//!   loses is no longer protected.
//! - Someone else's `nft flush ruleset`, `nft delete table inet banhound`, or a load of a
//!   ruleset that starts with `flush ruleset` (what `systemctl restart nftables` runs) is
//!   repaired within a second, with the periodic reconcile off; changes to other tables are
//!   not taken for damage.
//! - Without CAP_NET_ADMIN the daemon says so, once, naming the capability.
//!
//! Every namespace, journald and daemon is removed by pid or name in `Drop`, also when a
//! test fails. Needs root, nft, ip, setpriv, python3 and /lib/systemd/systemd-journald.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;

use daemon_lab::{ban_line, sshd_config, Lab, ATTACKER, SERVER_ATTACKER_SIDE};
use netlab::Netns;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How often a test looks at the kernel while it waits for a repair.
const POLL: Duration = Duration::from_millis(10);
/// The promise: a foreign change is repaired within this.
const REPAIR_WITHIN: Duration = Duration::from_secs(1);

#[test]
fn addresses_the_host_gets_after_start_are_never_banned_and_their_bans_are_lifted() {
    // IPv6 bans cover a /64: a ban can cover an address without being it.
    let mut lab = Lab::new(
        "addr",
        &format!("{}ipv6_prefix = 64\n", sshd_config(2, "1h")),
    );
    let daemon = lab.start();

    // The host gets an address; failures logged from it right after are not counted.
    const NEW: &str = "192.0.2.200";
    lab.server()
        .ip(&["addr", "add", &format!("{NEW}/32"), "dev", "veth-a"]);
    lab.fail_logins(NEW, 3);
    lab.fail_logins(ATTACKER, 2);
    // The attacker's ban marks the end of that batch: the new address's entries were read.
    daemon.wait_log(&ban_line(ATTACKER, "1h", 2), 1);
    assert!(
        !lab.is_banned(NEW),
        "{NEW} is one of the host's addresses but was banned: {:?}",
        lab.banned()
    );
    assert!(daemon.log().contains(&format!(
        "Ignored {NEW} in jail sshd (one of this host's own addresses (ignoreself))"
    )));
    assert!(daemon
        .log()
        .contains(&format!("this host has new addresses: {NEW}")));

    // An address banned while it was someone else's: the ban is lifted when the host gets it.
    const LATER: &str = "192.0.2.201";
    lab.fail_logins(LATER, 2);
    daemon.wait_log(&ban_line(LATER, "1h", 2), 1);
    assert!(lab.is_banned(LATER));
    lab.server()
        .ip(&["addr", "add", &format!("{LATER}/32"), "dev", "veth-a"]);
    daemon.wait_log(
        &format!(
            "Unbanned {LATER} in jail sshd (this host now has an address it covers: ignoreself)"
        ),
        1,
    );
    assert!(!lab.is_banned(LATER), "{:?}", lab.banned());

    // A network ban covering an address the host gets is lifted too.
    lab.fail_logins("2001:db8:9::66", 2);
    daemon.wait_log(&ban_line("2001:db8:9::/64", "1h", 2), 1);
    let v6 = || {
        lab.server()
            .nft(&["list", "set", "inet", "banhound", "sshd-v6"])
    };
    assert!(v6().contains("2001:db8:9::/64"), "{}", v6());
    lab.server().ip(&[
        "-6",
        "addr",
        "add",
        "2001:db8:9::1/128",
        "dev",
        "veth-a",
        "nodad",
    ]);
    daemon.wait_log(
        "Unbanned 2001:db8:9::/64 in jail sshd (this host now has an address it covers: ignoreself)",
        1,
    );
    assert!(!v6().contains("2001:db8:9::"), "{}", v6());

    // The host loses an address: it is banned like anyone's again.
    lab.server()
        .ip(&["addr", "del", &format!("{NEW}/32"), "dev", "veth-a"]);
    daemon.wait_log(
        &format!("this host no longer has the addresses {NEW}; ignoreself no longer protects them"),
        1,
    );
    lab.fail_logins(NEW, 2);
    daemon.wait_log(&format!("Banned {NEW} in jail sshd"), 1);
    assert!(lab.is_banned(NEW));
    assert!(lab.is_banned(ATTACKER));
    assert!(!lab.is_banned(LATER));
    assert!(daemon.stop());
}

/// Waits until the attacker's ban is back in the kernel; returns how long it took.
fn repaired_after(lab: &Lab, since: Instant) -> Duration {
    let deadline = since + Duration::from_secs(10);
    while !lab.is_banned(ATTACKER) {
        assert!(
            Instant::now() < deadline,
            "the ban of {ATTACKER} was not put back within 10 s (the periodic reconcile is off)"
        );
        std::thread::sleep(POLL);
    }
    since.elapsed()
}

#[test]
fn others_deleting_banhounds_table_is_repaired_within_a_second() {
    let mut lab = Lab::new(
        "nftwatch",
        &format!(
            "[daemon]\nreconcile_interval = \"off\"\n\n{}",
            sshd_config(2, "1h")
        ),
    );
    let daemon = lab.start();
    lab.fail_logins(ATTACKER, 2);
    daemon.wait_log(&ban_line(ATTACKER, "1h", 2), 1);
    assert!(!lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE));
    const CHANGED: &str = "nftables table inet banhound changed (";
    // banhound's own changes (setup, the ban) are not taken for someone else's.
    assert!(!daemon.log().contains(CHANGED), "{}", daemon.log());

    // What `systemctl restart nftables` does on Debian: load a file that flushes first.
    let conf = lab.dir().join("nftables.conf");
    std::fs::write(
        &conf,
        "flush ruleset\ntable inet filter {\n  chain input {\n    type filter hook input priority 0; policy accept;\n  }\n}\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let changes: [(&str, Vec<&str>); 3] = [
        ("nft flush ruleset", vec!["flush", "ruleset"]),
        (
            "nft delete table inet banhound",
            vec!["delete", "table", "inet", "banhound"],
        ),
        (
            "nft -f nftables.conf (flush ruleset, then a table)",
            vec!["-f", &conf],
        ),
    ];
    let mut delays = Vec::new();
    for (i, (what, args)) in changes.iter().enumerate() {
        let started = Instant::now();
        lab.server().nft(args);
        let delay = repaired_after(&lab, started);
        eprintln!("{what}: the ban was back in the kernel {delay:?} after it");
        delays.push((what, delay));
        daemon.wait_log(
            "nftables table inet banhound was missing: re-created with 1 ban",
            i + 1,
        );
        assert!(
            !lab.connects(lab.attacker(), SERVER_ATTACKER_SIDE),
            "{what}"
        );
    }
    // The admin's own table survives the repair.
    assert!(lab
        .server()
        .nft(&["list", "tables"])
        .contains("inet filter"));

    // Another table's changes are not damage; a deleted element of ours is.
    lab.server().nft(&["add", "table", "inet", "other"]);
    lab.server().nft(&["delete", "table", "inet", "other"]);
    let started = Instant::now();
    lab.server().nft(&[
        "delete",
        "element",
        "inet",
        "banhound",
        daemon_lab::SSHD_SET,
        &format!("{{ {ATTACKER} }}"),
    ]);
    let delay = repaired_after(&lab, started);
    eprintln!("nft delete element: the ban was back in the kernel {delay:?} after it");
    delays.push((&"nft delete element", delay));
    daemon.wait_log("1 ban was missing from banhound's sets: put back", 1);
    let log = daemon.log();
    let noticed: Vec<&str> = log.lines().filter(|l| l.contains(CHANGED)).collect();
    assert_eq!(
        noticed.len(),
        4,
        "one check per foreign change: {noticed:#?}"
    );
    assert!(
        noticed[3].contains("(delete element by another program"),
        "{noticed:#?}"
    );
    for (what, delay) in delays {
        assert!(
            delay <= REPAIR_WITHIN,
            "{what}: repaired after {delay:?}, more than {REPAIR_WITHIN:?}"
        );
    }
    assert!(daemon.stop());
}

#[test]
fn without_cap_net_admin_the_start_error_names_it_once() {
    let ns = Netns::unique("eperm");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("banhound.toml");
    std::fs::write(&config, sshd_config(3, "10m")).unwrap();
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args([
            "setpriv",
            "--inh-caps=-net_admin",
            "--bounding-set=-net_admin",
        ])
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .arg("--defaults-dir")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf"))
        .arg("--config")
        .arg(&config)
        .args(["daemon", "--log-target", "stderr", "--no-bus"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--journal-directory")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The informational start-up lines (which backend `auto` chose, and why) are not part of
    // the failure; everything at warning level or above is.
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains(" INFO "))
        .collect();
    assert_eq!(lines.len(), 1, "one message, said once: {lines:#?}");
    assert!(lines[0].contains(" ERROR "), "{lines:#?}");
    assert!(
        lines[0].contains("banhound needs the CAP_NET_ADMIN capability"),
        "{lines:#?}"
    );
    assert!(lines[0].contains("Operation not permitted"), "{lines:#?}");
}
