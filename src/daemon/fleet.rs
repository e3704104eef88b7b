//! The owner task's side of fleet ban sharing (`[fleet]`, [`crate::fleet`]): starts the
//! publisher and the subscriber, and applies the other hosts' bans.
//!
//! Why here, in the owner task: a remote ban changes the same state as the logs do, so it
//! takes the same path, in order with the batches: the receiving jail's tracker decides it
//! like an admin's ban (its `ignoreip`, `ignoreself` and the host's own addresses, loopback
//! and the like, its ban target width), then [`super::enforcement`] commits it with the
//! stream's position in one transaction and applies it, as [`Cause::Fleet`], which is never
//! published again (no echo between hosts). Local rules always win; what they refuse or cut
//! down is logged with the origin host and counted.

use super::enforcement::{Cause, Sharing};
use super::{wall_now, Daemon, DaemonError};
use crate::bus::FleetInfo;
use crate::config::fleet::FleetSettings;
use crate::display::display_target;
use crate::engine::address::WidestBan;
use crate::engine::time::{format_duration, BanTime};
use crate::fleet::publisher::Publisher;
use crate::fleet::subscriber::{RemoteBatch, Subscriber};
use crate::fleet::{position_key, STREAM_PREFIX};
use std::collections::BTreeMap;
use std::time::Duration;

/// What became of the other hosts' entries since the start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RemoteCounts {
    /// Banned here.
    applied: u64,
    /// Refused by a local rule, or unreadable.
    refused: u64,
    /// Applied with a shorter ban time than the origin's (`max_bantime`).
    cut_down: u64,
    /// Not applied: already over, or already banned here at least as long.
    skipped: u64,
    /// From the failure behind the newest applied ban at its origin to its enforcement here.
    last_lag: Option<Duration>,
}

/// The fleet's state and its tasks.
pub(super) struct Fleet {
    settings: FleetSettings,
    publisher: Publisher,
    subscriber: Option<Subscriber>,
    pub(super) counts: RemoteCounts,
}

impl Fleet {
    /// The figures `banhound status` shows (over the bus's `GetFleet`).
    pub(super) fn info(&self) -> FleetInfo {
        let publish = self.publisher.status();
        let subscribe = self
            .subscriber
            .as_ref()
            .map(Subscriber::status)
            .unwrap_or_default();
        FleetInfo {
            host: self.settings.host.clone(),
            publishing: publish.connected,
            backlog: publish.backlog,
            published: publish.published,
            subscribed: subscribe.connected,
            hosts: subscribe.hosts.into_iter().collect(),
            applied: self.counts.applied,
            refused: self.counts.refused,
            cut_down: self.counts.cut_down,
            skipped: self.counts.skipped,
            lag: self.counts.last_lag,
            error: publish.error.or(subscribe.error),
        }
    }
}

/// The next batch of remote entries; pending forever without a subscriber.
pub(super) async fn next_remote(fleet: &mut Option<Fleet>) -> RemoteBatch {
    match fleet.as_mut().and_then(|f| f.subscriber.as_mut()) {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// Starts (or, when `[fleet]` changed, restarts; or stops) the fleet's tasks for
    /// `settings`. The subscriber starts from the positions in the state database.
    pub(super) fn configure_fleet(
        &mut self,
        settings: Option<FleetSettings>,
    ) -> Result<(), DaemonError> {
        if self.fleet.as_ref().map(|f| &f.settings) == settings.as_ref() {
            return Ok(());
        }
        let counts = self.fleet.take().map(|f| f.counts).unwrap_or_default();
        self.enforcement.sharing = None;
        let Some(settings) = settings else {
            return Ok(());
        };
        let publisher = Publisher::start(settings.clone(), self.options.state_dir.clone());
        // Bans committed before a crash and not sent yet.
        publisher.wake();
        self.enforcement.sharing = Some(Sharing {
            jails: settings.share.clone(),
            manual: settings.publish_manual,
            publisher: publisher.waker(),
        });
        let subscriber = match &settings.receive_jail {
            Some(_) => {
                let positions: BTreeMap<String, String> = self
                    .enforcement
                    .state()
                    .read(|db| db.cursors_with_prefix("fleet:"))?
                    .into_iter()
                    .filter_map(|(key, id)| Some((key.strip_prefix("fleet:")?.to_string(), id)))
                    .collect();
                Some(Subscriber::start(settings.clone(), positions))
            }
            None => None,
        };
        tracing::info!(
            "fleet: host {} publishes jail(s) [{}] to {STREAM_PREFIX}{}{}",
            settings.host,
            settings.share.join(", "),
            settings.host,
            settings.receive_jail.as_ref().map_or_else(
                || ", takes no remote bans".to_string(),
                |j| format!(", applies the other hosts' bans in jail {j}")
            )
        );
        self.fleet = Some(Fleet {
            settings,
            publisher,
            subscriber,
            counts,
        });
        Ok(())
    }

    /// Applies a remote stream's entries (see the module documentation) and commits its
    /// position with the bans.
    pub(super) async fn apply_remote(&mut self, batch: RemoteBatch) {
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        let now = wall_now();
        let origin = batch.origin;
        let max = fleet.settings.max_bantime;
        let receiving = fleet
            .settings
            .receive_jail
            .as_deref()
            .and_then(|name| self.jails.index(name).ok());
        let mut decisions = Vec::new();
        let mut since = Vec::new();
        for (id, entry) in batch.entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    fleet.counts.refused += 1;
                    tracing::warn!(ORIGIN = %origin, "fleet: refused entry {id} from host {origin}: {e}");
                    continue;
                }
            };
            let target = display_target(&entry.target);
            let Some(index) = receiving else {
                fleet.counts.refused += 1;
                tracing::warn!(ORIGIN = %origin, "fleet: refused the ban of {target} from host {origin}: the receiving jail is not enabled");
                continue;
            };
            let remaining = match entry.until {
                Some(until) if until <= now => {
                    fleet.counts.skipped += 1;
                    continue;
                }
                Some(until) => until.since(now),
                None => Duration::MAX,
            };
            let bantime = remaining.min(max);
            let tracker = &mut self.jails.get_mut(index).tracker;
            let covered = tracker
                .active_ban(&entry.target)
                .is_some_and(|ban| ban.until.is_none_or(|until| until >= now + bantime));
            if covered {
                fleet.counts.skipped += 1;
                continue;
            }
            match // A remote ban is never wider than one ban of the receiving jail: the fleet carries no
            // network bans, whatever this jail allows root to ban by hand.
            tracker.ban_manually(
                entry.target,
                WidestBan::HOSTS,
                now,
                Some(BanTime::For(bantime)),
            ) {
                Ok(decision) => {
                    if bantime < remaining {
                        fleet.counts.cut_down += 1;
                        tracing::warn!(
                            ORIGIN = %origin,
                            "fleet: the ban of {target} from host {origin} is cut down to max_bantime {} (it asked for {})",
                            format_duration(max),
                            entry.until.map_or("permanent".into(), |_| format_duration(remaining))
                        );
                    }
                    since.push(entry.since);
                    decisions.push((index, decision));
                }
                Err(refusal) => {
                    fleet.counts.refused += 1;
                    let why = crate::bus::ControlError::from(refusal);
                    tracing::warn!(ORIGIN = %origin, "fleet: refused the ban of {target} from host {origin}: {why}");
                }
            }
        }
        fleet.counts.applied += decisions.len() as u64;
        let key = position_key(&origin);
        // Logged inside; a failed firewall call is retried by the next reconcile.
        let _ = self
            .enforcement
            .ban(
                &self.jails,
                &decisions,
                &[],
                Some((&key, &batch.position)),
                now,
                Cause::Fleet {
                    origin: origin.clone(),
                },
            )
            .await;
        // From the failure behind each ban at its origin to its enforcement here.
        let done = wall_now();
        let lags: Vec<Duration> = since.iter().map(|s| done.since(*s)).collect();
        if let (Some(first), Some(last)) = (lags.first(), lags.last()) {
            if let Some(fleet) = self.fleet.as_mut() {
                fleet.counts.last_lag = Some(*last);
            }
            // One line per batch: the propagation figures of docs/fleet.md are read from it.
            tracing::debug!(
                ORIGIN = %origin,
                "fleet: {} ban(s) from host {origin} applied, lag {} ms (first) to {} ms (last)",
                lags.len(),
                first.as_millis(),
                last.as_millis()
            );
        }
        self.publish_changes();
    }
}
