//! `backend = "auto"` in the daemon: which backend the jails that ask for it use, decided at
//! start and at each reload from whether firewalld runs, and again whenever firewalld starts
//! or stops ([`FirewalldPresence`] follows the owner of its bus name). A jail that changes
//! backend keeps its bans: enforcement lifts them on the old backend (not on a firewalld
//! that stopped: it dropped them itself) and applies them on the new one.

use super::jails::Prepared;
use super::{wall_now, Daemon};
use crate::bus::Bus;
use crate::firewall::dispatch::FirewalldPresence;
use crate::firewall::BanEntry;
use std::time::Duration;

/// Follows firewalld when `prepared` has a jail with `backend = "auto"` (keeping `presence`
/// if it already does), decides those jails' backend, and logs the decision. Without a
/// system bus firewalld cannot run here: nftables.
pub(super) async fn decide(presence: &mut Option<FirewalldPresence>, prepared: &mut Prepared) {
    if !prepared.has_auto_backend() {
        *presence = None;
        return;
    }
    if presence.is_none() {
        match FirewalldPresence::watch(&Bus::System).await {
            Ok(watching) => *presence = Some(watching),
            Err(e) => {
                tracing::info!("backend \"auto\": no system bus ({e}), so no firewalld: nftables")
            }
        }
    }
    let running = presence.as_ref().is_some_and(FirewalldPresence::running);
    prepared.choose_auto_backends(running);
    if presence.is_some() {
        tracing::info!("backend \"auto\": {}", described(running));
    }
}

fn described(firewalld_running: bool) -> &'static str {
    if firewalld_running {
        "firewalld is running: bans go to firewalld"
    } else {
        "firewalld is not running: bans go to nftables"
    }
}

/// The next start or stop of firewalld (`true`: it runs now); never without a presence.
pub(super) async fn next_change(presence: &mut Option<FirewalldPresence>) -> bool {
    match presence {
        Some(presence) => presence.next_change().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// firewalld started or stopped: the jails with `backend = "auto"` move to the backend
    /// chosen now, with their bans.
    pub(super) async fn firewalld_changed(&mut self, running: bool) {
        tracing::info!("backend \"auto\": {}", described(running));
        let moved = self.jails.choose_auto_backends(running);
        if moved.is_empty() {
            return;
        }
        if running {
            for (jail, targets) in &moved {
                self.enforcement.leave_backend(jail, targets).await;
            }
        } else {
            self.enforcement.firewalld_gone();
        }
        for (jail, _) in &moved {
            tracing::info!(JAIL = %jail, "jail {jail} moved to {}", if running { "firewalld" } else { "nftables" });
        }
        if let Err(e) = self.configure_backends().await {
            self.enforcement
                .health
                .firewall_failed("cannot set up the firewall", &e);
        }
        let entries: Vec<BanEntry> = self
            .jails
            .bans_in_force(wall_now())
            .into_iter()
            .filter(|e| e.timeout != Some(Duration::ZERO))
            .collect();
        self.enforcement.refresh(&entries).await;
        self.publish_changes();
    }
}
