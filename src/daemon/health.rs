//! Keeping the promises when the machine does not: a firewall that was changed or failed,
//! and a state directory that cannot be written.
//!
//! Both are handled the same way: bans keep working from the owner task's memory, the
//! failure is logged once when it starts (not once per batch: a flood of entries during a
//! full disk would otherwise flood the journal too) and once when it ends, it shows in
//! STATUS= and on the bus ([`Health`], published on a watch channel the bus service reads),
//! and a timer retries with backoff. Nothing polls: the retry deadlines and the periodic
//! reconcile are deadlines in the owner task's one `select!`, and without a failure the
//! reconcile interval is the only periodic wake-up.
//!
//! The firewall is reconciled every `reconcile_interval`: each backend compares what it
//! holds with the bans in force and repairs the difference (see [`crate::firewall::Repairs`]).
//! A failed firewall call brings the next reconcile forward, so it is retried even with the
//! periodic check off; a firewall that cannot be set up at start (firewalld not answering
//! yet) is one such failure, not a reason to stop. When firewalld reports that it re-applied
//! the bans after coming back, a reconcile runs at once, so the failure ends (and DEGRADED
//! clears) the moment the repair succeeds rather than at the next retry.

use super::state::{CaughtUp, StateError};
use super::state_writer::Report;
use super::{wall_now, Daemon, StoredBan};
use crate::bus::Health;
use crate::engine::time::{format_duration, Timestamp};
use crate::engine::tracker::Tracker;
use crate::firewall::firewalld::Reapplied;
use crate::firewall::{BanEntry, FirewallError};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The first retry after a failed firewall call or state write, doubled after each failed
/// retry up to the maximum.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_FIREWALL_RETRY: Duration = Duration::from_secs(300);
const MAX_STATE_RETRY: Duration = Duration::from_secs(60);

/// A failure that lasts: what it is, since when, and when to try again.
#[derive(Debug)]
pub(super) struct Trouble {
    error: String,
    since: Instant,
    delay: Duration,
    retry_at: Instant,
}

impl Trouble {
    fn new(error: String) -> Trouble {
        let now = Instant::now();
        Trouble {
            error,
            since: now,
            delay: FIRST_RETRY,
            retry_at: now + FIRST_RETRY,
        }
    }

    /// After a failed retry: the same episode, a longer wait.
    fn failed_again(&mut self, error: String, max: Duration) {
        self.error = error;
        self.delay = (self.delay * 2).min(max);
        self.retry_at = Instant::now() + self.delay;
    }

    fn lasted(&self) -> String {
        format_duration(Duration::from_secs(self.since.elapsed().as_secs().max(1)))
    }
}

impl Daemon {
    /// Every ban in force, with what is left of it (zero for one whose expiry is due).
    pub(super) fn bans_in_force(&self, now: Timestamp) -> Vec<BanEntry> {
        self.trackers
            .iter()
            .flat_map(|(jail, tracker)| {
                tracker.active_bans().map(move |(target, ban)| BanEntry {
                    jail: jail.clone(),
                    target: *target,
                    timeout: ban.until.map(|until| until.since(now)),
                })
            })
            .collect()
    }

    /// When the firewall is next reconciled: a retry after a failure, else the next
    /// periodic check; never before the journal's catch-up after the start is done (see
    /// `journal_caught_up`; one runs as soon as it is).
    pub(super) fn next_reconcile(&self) -> Option<Instant> {
        if !self.journal_caught_up {
            return None;
        }
        match (&self.firewall_trouble, self.reconcile_at) {
            (Some(t), Some(at)) => Some(t.retry_at.min(at)),
            (Some(t), None) => Some(t.retry_at),
            (None, at) => at,
        }
    }

    /// Starts (or restarts, after a reload changed it) the periodic reconcile.
    pub(super) fn schedule_reconcile(&mut self) {
        self.reconcile_at = self.reconcile_interval.map(|every| Instant::now() + every);
    }

    /// Compares every backend with the bans in force and repairs it; logs what it repaired.
    pub(super) async fn reconcile(&mut self) {
        if !self.journal_caught_up {
            // Run as soon as the catch-up is done (`Daemon::catch_up_done`).
            return;
        }
        self.schedule_reconcile();
        let bans = self.bans_in_force(wall_now());
        let mut failure = None;
        let results = self.backends.reconcile(&bans).await;
        // A retry may have opened the nftables backend only now.
        self.follow_nftables();
        for (kind, result) in results {
            match result {
                Ok(repairs) if repairs.is_empty() => {}
                Ok(repairs) => tracing::warn!(
                    BACKEND = kind.as_str(),
                    RESTORED = repairs.restored,
                    REMOVED = repairs.removed,
                    OBJECTS = %repairs.objects.join(", "),
                    "{}",
                    repairs.message
                ),
                Err(e) => failure = Some(e),
            }
        }
        match (failure, self.firewall_trouble.take()) {
            (Some(e), None) => self.firewall_failed("cannot reconcile the firewall", &e),
            (Some(e), Some(mut trouble)) => {
                tracing::debug!("firewall reconcile failed again: {e}");
                trouble.failed_again(e.to_string(), MAX_FIREWALL_RETRY);
                self.firewall_trouble = Some(trouble);
                self.health_changed();
            }
            (None, Some(trouble)) => {
                tracing::info!(
                    "the firewall works again after {} of failures; every ban in force is in place",
                    trouble.lasted()
                );
                self.health_changed();
            }
            (None, None) => {}
        }
    }

    /// firewalld re-applied the bans after a reload or restart (or, before its first setup,
    /// answers calls again). If anything failed meanwhile (a setup, bans applied while it
    /// was away), the repair is not left to the next retry: it runs now, and a success ends
    /// the failure episode at once.
    pub(super) async fn firewalld_reapplied(&mut self, report: Reapplied) {
        match &report.result {
            Ok(entries) => tracing::info!(
                "firewalld {:?}: {entries} ban entries re-applied in {:?}",
                report.trigger,
                report.elapsed
            ),
            Err(e) => tracing::error!(
                "firewalld {:?}: re-applying bans failed: {e}",
                report.trigger
            ),
        }
        if report.result.is_ok()
            && (self.firewall_trouble.is_some() || !self.backends.is_configured())
        {
            self.reconcile().await;
        }
    }

    /// A firewall call failed: logged at the start of an episode only, and the next
    /// reconcile (which retries it) is brought forward.
    pub(super) fn firewall_failed(&mut self, what: &str, error: &FirewallError) {
        match &mut self.firewall_trouble {
            Some(trouble) => {
                tracing::debug!("{what}: {error}");
                trouble.error = error.to_string();
                self.health_changed();
            }
            None => {
                let trouble = Trouble::new(error.to_string());
                tracing::error!(
                    BACKEND = error.backend.as_str(),
                    "{what}: {error}; banhound keeps the bans and retries in {}",
                    format_duration(trouble.delay)
                );
                self.firewall_trouble = Some(trouble);
                self.health_changed();
            }
        }
    }

    /// Takes a report of the state writer thread.
    pub(super) fn state_reported(&mut self, report: Report) {
        match report {
            Report::Written { result, unsaved } => {
                self.unsaved_changes = unsaved;
                self.state_written(result);
            }
            Report::Retried { result, unsaved } => {
                self.unsaved_changes = unsaved;
                self.state_retrying = false;
                self.state_retried(result);
            }
        }
    }

    /// Notes the outcome of a state write: the first failure of an episode is logged and
    /// starts the retries; later ones (changes only queued) say nothing new.
    fn state_written(&mut self, result: Result<(), StateError>) {
        if self.state_trouble.is_some() {
            // Queued, not written: the bus shows how many changes wait.
            self.publish_health();
            return;
        }
        let Err(error) = result else {
            return;
        };
        let trouble = Trouble::new(error.to_string());
        tracing::error!(
            STATE_ERROR = %error,
            "cannot save the state database: {error}; bans keep working from memory and {} change(s) wait to be saved (retrying in {})",
            self.unsaved_changes,
            format_duration(trouble.delay)
        );
        self.state_trouble = Some(trouble);
        self.health_changed();
    }

    /// When the state database is next tried again: not while a retry is under way.
    pub(super) fn next_state_retry(&self) -> Option<Instant> {
        if self.state_retrying {
            return None;
        }
        self.state_trouble.as_ref().map(|t| t.retry_at)
    }

    /// Asks the writer thread to write everything waiting in memory, in one transaction;
    /// the outcome comes back as [`Report::Retried`]. The bans in force go with it in case
    /// the backlog overflowed (then the `bans` table is rewritten from them).
    pub(super) fn retry_state(&mut self) {
        self.state.retry(stored_bans(&self.trackers));
        self.state_retrying = true;
    }

    /// The outcome of a retry.
    fn state_retried(&mut self, result: Result<CaughtUp, StateError>) {
        let Some(mut trouble) = self.state_trouble.take() else {
            return;
        };
        match result {
            Ok(caught_up) => {
                let dropped = if caught_up.dropped > 0 {
                    format!(
                        "; {} older change(s) did not fit in memory: their history rows are missing, the bans in force were rewritten in full",
                        caught_up.dropped
                    )
                } else {
                    String::new()
                };
                tracing::warn!(
                    CHANGES = caught_up.changes,
                    "the state database can be written again after {}: {} change(s) kept in memory saved in one transaction{dropped}",
                    trouble.lasted(),
                    caught_up.changes
                );
            }
            Err(error) => {
                if error.to_string() != trouble.error {
                    tracing::warn!(STATE_ERROR = %error, "still cannot save the state database: {error}");
                } else {
                    tracing::debug!("still cannot save the state database: {error}");
                }
                trouble.failed_again(error.to_string(), MAX_STATE_RETRY);
                self.state_trouble = Some(trouble);
            }
        }
        self.health_changed();
    }

    pub(super) fn health(&self) -> Health {
        Health {
            state_error: self.state_trouble.as_ref().map(|t| t.error.clone()),
            unsaved_changes: u64::try_from(self.unsaved_changes).unwrap_or(u64::MAX),
            firewall_error: self.firewall_trouble.as_ref().map(|t| t.error.clone()),
        }
    }

    /// What STATUS= adds to the counts while something fails.
    pub(super) fn health_status(&self) -> String {
        let mut out = String::new();
        if let Some(t) = &self.state_trouble {
            out.push_str(&format!("; state not saved: {}", t.error));
        }
        if let Some(t) = &self.firewall_trouble {
            out.push_str(&format!("; firewall failing: {}", t.error));
        }
        out
    }

    /// Tells the service manager and the bus.
    fn health_changed(&mut self) {
        self.update_status();
        self.publish_health();
    }

    /// Publishes the health for the bus, if it changed.
    fn publish_health(&self) {
        let now = self.health();
        self.health.send_if_modified(|published| {
            let changed = *published != now;
            if changed {
                *published = now;
            }
            changed
        });
    }
}

/// The bans in force as the state database stores them, to rewrite its `bans` table after
/// the backlog overflowed. Failure counts are not kept in memory: 0 for bans the database
/// lost, the stored count for the others.
fn stored_bans(trackers: &HashMap<String, Tracker>) -> Vec<StoredBan> {
    let mut out = Vec::new();
    for (jail, tracker) in trackers {
        for (target, ban) in tracker.active_bans() {
            out.push(StoredBan {
                jail: jail.clone(),
                target: *target,
                since: ban.since,
                until: ban.until,
                offence: ban.offence,
                failures: 0,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_their_maximum() {
        let mut trouble = Trouble::new("disk full".into());
        assert_eq!(trouble.delay, FIRST_RETRY);
        let mut delays = Vec::new();
        for _ in 0..8 {
            trouble.failed_again("disk full".into(), MAX_STATE_RETRY);
            delays.push(trouble.delay.as_secs());
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(trouble.retry_at > Instant::now() + Duration::from_secs(59));
        trouble.failed_again("read-only file system".into(), MAX_STATE_RETRY);
        assert_eq!(trouble.error, "read-only file system");
    }
}
