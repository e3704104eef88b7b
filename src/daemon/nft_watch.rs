//! Repairing banhound's nftables table as soon as someone else damages it, instead of at
//! the next periodic reconcile (an admin's `nft flush ruleset`, `systemctl restart
//! nftables`, `nft delete table inet banhound`).
//!
//! The backend's [`ChangeWatcher`] reports each foreign change to the table; a burst of them
//! (a flush announces every object it deletes, a restart of nftables is a flush and then a
//! load) is settled for [`SETTLE`] and answered with one reconcile. Without a foreign change
//! there is no deadline, so the watch adds no wake-up; the periodic reconcile stays as the
//! backstop (lost notifications, a watch that could not be opened).

use super::Daemon;
use crate::firewall::nftables::{Change, ChangeWatcher, NftError};
use std::time::Duration;
use tokio::time::Instant;

/// How long a burst of changes has to settle before the one reconcile that answers it.
const SETTLE: Duration = Duration::from_millis(100);

/// Waits on the watcher, if there is one.
pub(super) async fn next_change(watch: &mut Option<ChangeWatcher>) -> Result<Change, NftError> {
    match watch {
        Some(watch) => watch.next().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Starts watching once the nftables backend is in use (after setting up backends).
    pub(super) fn watch_nftables(&mut self) {
        if self.nft_changes.is_some() {
            return;
        }
        let Some(backend) = self.enforcement.nftables() else {
            return;
        };
        match backend.watch_changes() {
            Ok(watcher) => self.nft_changes = Some(watcher),
            Err(e) => tracing::warn!(
                "cannot follow changes to the nftables ruleset ({e}): damage to banhound's table is repaired by the periodic reconcile only"
            ),
        }
    }

    /// A change reported by the watcher: schedules the repair (once per burst).
    pub(super) fn nftables_changed(&mut self, change: Result<Change, NftError>) {
        let why = match change {
            Ok(Change::Foreign { what, portid }) => {
                format!("{what} by another program (netlink port {portid})")
            }
            Ok(Change::Lost) => "change notifications were lost".to_string(),
            Err(e) => {
                tracing::warn!(
                    "cannot follow changes to the nftables ruleset any more ({e}): damage to banhound's table is repaired by the periodic reconcile only"
                );
                self.nft_changes = None;
                return;
            }
        };
        if self.nft_repair_at.is_none() {
            tracing::info!("nftables table inet banhound changed ({why}): checking it");
            self.nft_repair_at = Some(Instant::now() + SETTLE);
        }
    }

    /// The burst has settled: reconciles the firewall.
    pub(super) async fn repair_foreign_change(&mut self) {
        self.nft_repair_at = None;
        self.reconcile().await;
        self.publish_changes();
    }
}
