//! Keeping the promises when the machine does not: a firewall that was changed or failed,
//! and a state directory that cannot be written.
//!
//! Both are handled the same way: bans keep working from the owner task's memory, the
//! failure is logged once when it starts (not once per batch: a flood of entries during a
//! full disk would otherwise flood the journal too) and once when it ends, it shows in
//! STATUS= and on the bus ([`crate::bus::Health`], published on a watch channel the bus service reads),
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
//!
//! [`Health`] belongs to [`super::enforcement`], whose backends and state writer are what
//! fails; enforcement reports each failure and outcome to it. The reconcile's schedule (the
//! interval, the wait for the journal's catch-up) is the owner task's, in daemon/mod.rs.

use super::state::{CaughtUp, StateError};
use super::state_writer::Report;
use crate::bus::Health as Published;
use crate::engine::time::format_duration;
use crate::firewall::FirewallError;
use std::time::Duration;
use tokio::sync::watch;
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

/// The health of enforcement: what fails, since when, when to retry; published on a watch
/// channel for the bus, and in STATUS= (the daemon asks [`Health::take_status_changed`]).
pub(super) struct Health {
    /// A firewall call failed and no reconcile has succeeded since.
    firewall_trouble: Option<Trouble>,
    /// The state database could not be written; changes wait in memory.
    state_trouble: Option<Trouble>,
    /// A retry of the state database was sent and has not been answered yet.
    state_retrying: bool,
    /// Changes waiting in memory, as the state writer last reported.
    unsaved_changes: usize,
    published: watch::Sender<Published>,
    /// Something STATUS= shows changed (a ban, a lift, a failure) since it was last sent.
    status_changed: bool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            firewall_trouble: None,
            state_trouble: None,
            state_retrying: false,
            unsaved_changes: 0,
            published: watch::channel(Published::default()).0,
            status_changed: false,
        }
    }
}

impl Health {
    /// The health as the bus shows it, from now on.
    pub(super) fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.subscribe()
    }

    /// Notes that STATUS= is out of date.
    pub(super) fn status_changed(&mut self) {
        self.status_changed = true;
    }

    /// Whether STATUS= is out of date; clears it.
    pub(super) fn take_status_changed(&mut self) -> bool {
        std::mem::take(&mut self.status_changed)
    }

    /// When a failed firewall call is retried (by a reconcile), if one failed.
    pub(super) fn firewall_retry_at(&self) -> Option<Instant> {
        self.firewall_trouble.as_ref().map(|t| t.retry_at)
    }

    pub(super) fn firewall_failing(&self) -> bool {
        self.firewall_trouble.is_some()
    }

    /// The outcome of a reconcile: `failure` is the error of a backend that failed.
    pub(super) fn reconciled(&mut self, failure: Option<FirewallError>) {
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
            self.publish();
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

    /// A retry was sent to the writer thread: everything waiting in memory, in one
    /// transaction, with the bans in force in case the backlog overflowed (then the `bans`
    /// table is rewritten from them); the outcome comes back as [`Report::Retried`].
    pub(super) fn retry_sent(&mut self) {
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

    pub(super) fn current(&self) -> Published {
        Published {
            state_error: self.state_trouble.as_ref().map(|t| t.error.clone()),
            unsaved_changes: u64::try_from(self.unsaved_changes).unwrap_or(u64::MAX),
            firewall_error: self.firewall_trouble.as_ref().map(|t| t.error.clone()),
        }
    }

    /// What STATUS= adds to the counts while something fails.
    pub(super) fn status_text(&self) -> String {
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
        self.status_changed = true;
        self.publish();
    }

    /// Publishes the health for the bus, if it changed.
    fn publish(&self) {
        let now = self.current();
        self.published.send_if_modified(|published| {
            let changed = *published != now;
            if changed {
                *published = now;
            }
            changed
        });
    }
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
