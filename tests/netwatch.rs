//! The daemon follows what changes under it, with real parts: the binary runs in a network
//! namespace (tests/support/daemon_lab.rs), and the changes are made there as an admin or
//! the network would make them.
//!
//! - An address the host gets after start (`ip addr add`: DHCP, a failover address) is
//!   never banned from then on, a ban in force for it is lifted, and an address the host
//!   loses is no longer protected.
//!
//! Every namespace, journald and daemon is removed by pid or name in `Drop`, also when a
//! test fails. Needs root, nft, ip, python3 and /lib/systemd/systemd-journald.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;

use daemon_lab::{ban_line, sshd_config, Lab, ATTACKER};

#[test]
fn addresses_the_host_gets_after_start_are_never_banned_and_their_bans_are_lifted() {
    let mut lab = Lab::new("addr", &sshd_config(2, "1h"));
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
