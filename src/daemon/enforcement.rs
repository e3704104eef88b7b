//! Enforcement: the firewall backends, the state writer and the observers of bans, and the
//! only place that bans and lifts.
//!
//! Every ban goes through [`Enforcement::ban`] (decided from the logs, or ordered over the
//! bus) or [`Enforcement::restore`] (put back at start-up): persisted (a new ban with the
//! source position it was derived up to, in one transaction), applied to the firewall,
//! logged, observed. Every end of a ban goes through [`Enforcement::lift`] (expiry, the
//! bus, a removed jail, an address the host now has), or [`Enforcement::record_ended`]
//! for a stored ban that ended while the daemon was stopped (the firewall never got it
//! back): removed from the database, logged, observed, with one log line and one event
//! format for all. Decisions are not made here ([`super::jails`] makes them); failures of
//! the firewall and of the state database are reported to [`Health`].
//!
//! # Observing bans and lifts
//!
//! An [`Observer`] registered with [`Enforcement::observe`] sees every ban ([`BanNotice`]:
//! jail, the [`BanDecision`] with target, start, ban time, offence and failure count, the
//! jail's findtime, its [`Cause`] and the hosts its failures were logged on when that is not
//! only this one: a collector's) and every lift ([`LiftNotice`]: jail, target, the
//! [`Lifted`] reason, when), after the firewall call and in the owner task's order. This is
//! the attachment point of effects: the bus's signals are one ([`Signals`]); the jail
//! actions ([`crate::action`]: mail, command, webhook, fail2ban action.d) are the
//! configuration's own, replaced at each reload. Fleet publishing is not an observer: its
//! outbox row must be in the ban's own transaction ([`Sharing`], `crate::fleet`). A
//! ban put back at start-up has [`Cause::Restored`], so an action does not alert it a second
//! time. The tracker keeps failure times, not the matched lines: a running jail with actions
//! keeps its failures' lines ([`super::jails`]) and the notice lends those of its target.
//! Observers run inside the owner task: one that does I/O hands the notice to its own task
//! (a bounded queue) and returns.

use super::health::Health;
use super::jails::Jails;
use super::origins::OriginHosts;
use super::state::StoredBan;
use super::state_writer::{Report as StateReport, StateWriter};
use crate::action::lines::{Matched, NO_MATCH};
use crate::action::{Actions, BanRecord};
use crate::bus::{Event, Lifted};
use crate::display::display_target;
use crate::engine::time::{format_duration, BanTime, Timestamp};
use crate::engine::tracker::BanDecision;
use crate::firewall::dispatch::Backends;
use crate::firewall::firewalld::Reapplied;
use crate::firewall::nftables::NftablesBackend;
use crate::firewall::{BackendKind, BanEntry, FirewallError, JailRules};
use crate::fleet::{FleetEntry, Origin};
use ipnet::IpNet;
use std::time::Duration;
use tokio::sync::broadcast;

/// Why a ban was made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// Decided from the logs: `failures` within findtime.
    Logs,
    /// Ordered over the control interface.
    Manual { caller_uid: u32 },
    /// A stored ban put back in place at start-up (it was announced when it was made).
    Restored,
    /// Another host's ban, read from its fleet stream (`origin` is the stream's host,
    /// which Redis's ACLs let no one else write); never published again.
    Fleet { origin: String },
}

/// A ban that took effect, as observers see it.
#[derive(Debug)]
pub struct BanNotice<'a> {
    pub jail: &'a str,
    /// Target, start (`at`), ban time, offence and failures; `until()` is its expiry.
    pub decision: &'a BanDecision,
    /// The jail's findtime (the window the failures fell in).
    pub findtime: Duration,
    pub cause: Cause,
    /// The log lines that led to it and their user, neutralised (kept only for jails with
    /// actions; none for manual and restored bans).
    pub matched: &'a Matched,
    /// The hosts its failures were logged on (`_HOSTNAME`, neutralised), when another host
    /// than this one is among them; empty otherwise. Labels only: they decided nothing.
    pub hosts: &'a OriginHosts,
}

/// What led to a ban decided from the logs, lent to its observers.
#[derive(Debug, Default)]
pub struct Evidence {
    /// Its failures' lines and user (jails with actions only).
    pub matched: Matched,
    pub hosts: OriginHosts,
}

/// A ban that ended, as observers see it.
#[derive(Debug)]
pub struct LiftNotice<'a> {
    pub jail: &'a str,
    pub target: IpNet,
    pub why: Lifted,
    pub at: Timestamp,
}

/// Something that follows every ban and lift (see the module documentation).
pub trait Observer: Send {
    fn banned(&mut self, ban: &BanNotice<'_>);
    fn lifted(&mut self, lift: &LiftNotice<'_>);
}

/// Jail actions ([`crate::action`]) run for bans from the logs (with their lines) and from
/// the bus, for restored ones only where fail2ban gives them (they ran when the ban was new),
/// and for every lift.
impl Observer for Actions {
    fn banned(&mut self, ban: &BanNotice<'_>) {
        let d = ban.decision;
        Actions::banned(
            self,
            BanRecord {
                jail: ban.jail.to_string(),
                target: d.target,
                at: d.at,
                bantime: d.bantime,
                failures: d.failures,
                offence: d.offence,
                lines: ban.matched.lines.clone(),
                user: ban.matched.user.clone(),
                restored: ban.cause == Cause::Restored,
            },
        );
    }

    fn lifted(&mut self, lift: &LiftNotice<'_>) {
        Actions::lifted(
            self,
            lift.jail,
            lift.target,
            lift.at,
            lift.why.signal_reason(),
        );
    }
}

/// The bus's signals: `Banned` for new bans (not for restored ones: they were signalled
/// when made), `Unbanned` for every lift.
pub(super) struct Signals(pub(super) broadcast::Sender<Event>);

impl Observer for Signals {
    fn banned(&mut self, ban: &BanNotice<'_>) {
        let reason = match &ban.cause {
            Cause::Logs => format!(
                "{} failures within {}{}",
                ban.decision.failures,
                format_duration(ban.findtime),
                ban.hosts.suffix()
            ),
            Cause::Manual { caller_uid } => format!("manual (uid {caller_uid})"),
            Cause::Fleet { origin } => format!("fleet (host {origin})"),
            Cause::Restored => return,
        };
        // No subscriber (no bus, or not started yet) is normal.
        let _ = self.0.send(Event::Banned {
            jail: ban.jail.to_string(),
            target: ban.decision.target,
            until: ban.decision.until(),
            reason,
        });
    }

    fn lifted(&mut self, lift: &LiftNotice<'_>) {
        let _ = self.0.send(Event::Unbanned {
            jail: lift.jail.to_string(),
            target: lift.target,
            why: lift.why,
        });
    }
}

/// The MESSAGE of a ban: a fixed format, because the shipped recidive filter reads it.
pub fn ban_message(jail: &str, decision: &BanDecision) -> String {
    format!(
        "Banned {} in jail {jail} for {} after {} failures",
        display_target(&decision.target),
        decision.bantime,
        decision.failures
    )
}

/// The MESSAGE of a ban ordered over the control interface. Deliberately NOT the form
/// recidive reads: an administrator already chose this ban's length, and a few manual bans
/// must not turn into recidive's week-long ban from every port.
pub fn manual_ban_message(jail: &str, decision: &BanDecision, caller_uid: u32) -> String {
    format!(
        "Banned {} in jail {jail} for {} manually (uid {caller_uid})",
        display_target(&decision.target),
        decision.bantime
    )
}

/// The MESSAGE of a ban taken from another host of the fleet: not the form recidive reads
/// either (the failures were counted there, not here).
pub fn fleet_ban_message(jail: &str, decision: &BanDecision, origin: &str) -> String {
    format!(
        "Banned {} in jail {jail} for {} from the fleet (host {origin})",
        display_target(&decision.target),
        decision.bantime
    )
}

/// Which bans are published to the fleet, and how the publisher is told.
pub(super) struct Sharing {
    /// Jails whose bans from the logs are published.
    pub(super) jails: Vec<String>,
    /// Manual bans in those jails too.
    pub(super) manual: bool,
    /// Woken once a commit with outbox rows is saved.
    pub(super) publisher: std::sync::Arc<tokio::sync::Notify>,
}

impl Sharing {
    fn publishes(&self, jail: &str, cause: &Cause) -> Option<Origin> {
        if !self.jails.iter().any(|j| j == jail) {
            return None;
        }
        match cause {
            Cause::Logs => Some(Origin::Logs),
            Cause::Manual { .. } if self.manual => Some(Origin::Manual),
            // Restored bans were published when made; fleet bans are the origin's to publish.
            _ => None,
        }
    }
}

/// The log's wording of why a ban ended (the bus and the database have theirs).
impl Lifted {
    fn log_text(self) -> String {
        match self {
            Lifted::Manual { caller_uid } => format!("manually, uid {caller_uid}"),
            Lifted::OwnAddress => "this host now has an address it covers: ignoreself".into(),
            other => other.stored_reason().to_string(),
        }
    }
}

/// What the backends or the state writer reported on their own.
pub(super) enum Report {
    Reapplied(Reapplied),
    State(StateReport),
}

/// The backends, the state writer, the observers and their health.
pub(super) struct Enforcement {
    backends: Backends,
    state: StateWriter,
    observers: Vec<Box<dyn Observer>>,
    /// The jail actions: an observer like the others, but the configuration's own, replaced
    /// at each reload.
    pub(super) actions: Actions,
    pub(super) health: Health,
    /// Fleet publishing (`[fleet] share`); `None` publishes nothing.
    pub(super) sharing: Option<Sharing>,
}

impl Enforcement {
    pub(super) fn new(state: StateWriter) -> Enforcement {
        Enforcement {
            backends: Backends::default(),
            state,
            observers: Vec::new(),
            actions: Actions::none(),
            health: Health::default(),
            sharing: None,
        }
    }

    /// Registers an observer of every ban and lift from now on.
    pub(super) fn observe(&mut self, observer: Box<dyn Observer>) {
        self.observers.push(observer);
    }

    pub(super) fn state(&self) -> &StateWriter {
        &self.state
    }

    pub(super) fn nftables(&self) -> Option<&NftablesBackend> {
        self.backends.nftables()
    }

    pub(super) fn is_configured(&self) -> bool {
        self.backends.is_configured()
    }

    /// Sets up the firewall objects of the jails' backends.
    pub(super) async fn configure(&mut self, jails: &Jails) -> Result<(), FirewallError> {
        let rules: Vec<(BackendKind, JailRules)> = jails
            .iter()
            .map(|j| (j.settings.backend, j.settings.rules.clone()))
            .collect();
        self.backends.configure(&rules).await
    }

    /// The next report of firewalld (it re-applied the bans) or of the state writer.
    pub(super) async fn next_report(&mut self) -> Report {
        tokio::select! {
            biased;
            report = self.backends.next_reapplied() => Report::Reapplied(report),
            report = self.state.next_report() => Report::State(report),
        }
    }

    /// Bans decided from the logs or ordered over the bus (see the module documentation);
    /// `position` is the source position they were derived up to, committed with them;
    /// `evidence[i]`, when there, is what led to `decisions[i]`, for the log and observers.
    pub(super) async fn ban(
        &mut self,
        jails: &Jails,
        decisions: &[(usize, BanDecision)],
        evidence: &[Evidence],
        position: Option<(&str, &str)>,
        now: Timestamp,
        cause: Cause,
    ) -> Result<(), FirewallError> {
        let stored: Vec<StoredBan> = decisions
            .iter()
            .map(|(j, d)| StoredBan {
                jail: jails.get(*j).settings.name.clone(),
                target: d.target,
                since: d.at,
                until: d.until(),
                offence: d.offence,
                failures: d.failures,
            })
            .collect();
        let entries: Vec<BanEntry> = stored
            .iter()
            .filter_map(|b| {
                let timeout = match b.until {
                    None => None,
                    Some(until) if until > now => Some(until.since(now)),
                    // Already over (an old entry): the expiry timer lifts it at once.
                    Some(_) => return None,
                };
                Some(BanEntry {
                    jail: b.jail.clone(),
                    target: b.target,
                    timeout,
                })
            })
            .collect();
        let publish: Vec<FleetEntry> = match &self.sharing {
            Some(sharing) => stored
                .iter()
                .filter_map(|b| {
                    Some(FleetEntry {
                        jail: b.jail.clone(),
                        target: b.target,
                        since: b.since,
                        until: b.until,
                        offence: b.offence,
                        failures: b.failures,
                        reason: sharing.publishes(&b.jail, &cause)?,
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let wake_publisher = self
            .sharing
            .as_ref()
            .filter(|_| !publish.is_empty())
            .map(|s| s.publisher.clone());
        // Sent, not waited for (the writer thread commits it with the position and the
        // fleet's outbox rows, in order): blocking matters more than remembering, and the
        // ban goes to the firewall regardless of the disk.
        self.state
            .commit_shared_batch(stored, publish, position, now);
        if let Some(publisher) = wake_publisher {
            // The publisher reads the outbox over its own connection: only once committed.
            let saved = self.state.saved();
            tokio::spawn(async move {
                saved.await;
                publisher.notify_one();
            });
        }
        if decisions.is_empty() {
            return Ok(());
        }
        let applied = self.backends.ban(&entries).await;
        if let Err(e) = &applied {
            self.health
                .firewall_failed(&format!("cannot apply {} ban(s)", entries.len()), e);
        }
        let none = Evidence::default();
        for (i, (j, d)) in decisions.iter().enumerate() {
            let settings = &jails.get(*j).settings;
            let jail = settings.name.as_str();
            let evidence = evidence.get(i).unwrap_or(&none);
            let (message, caller) = match &cause {
                Cause::Manual { caller_uid } => {
                    (manual_ban_message(jail, d, *caller_uid), Some(*caller_uid))
                }
                Cause::Fleet { origin } => (fleet_ban_message(jail, d, origin), None),
                // Restored bans come through `restore`, which logs them at debug level.
                Cause::Logs | Cause::Restored => (
                    format!("{}{}", ban_message(jail, d), evidence.hosts.suffix()),
                    None,
                ),
            };
            let hosts = (!evidence.hosts.is_empty()).then(|| evidence.hosts.list());
            tracing::info!(
                JAIL = %jail,
                IP = %display_target(&d.target),
                BANTIME = %d.bantime,
                FAILURES = d.failures,
                OFFENCE = d.offence,
                CALLER_UID = caller,
                ORIGIN_HOSTS = hosts,
                "{message}"
            );
            self.notify_ban(&BanNotice {
                jail,
                decision: d,
                findtime: settings.policy.findtime,
                cause: cause.clone(),
                matched: &evidence.matched,
                hosts: &evidence.hosts,
            });
        }
        self.health.status_changed();
        applied
    }

    /// Puts stored, unexpired bans back in place with their remaining time, in one call;
    /// observers see them as [`Cause::Restored`].
    pub(super) async fn restore(&mut self, jails: &Jails, bans: Vec<StoredBan>, now: Timestamp) {
        let entries: Vec<BanEntry> = bans
            .iter()
            .map(|ban| BanEntry {
                jail: ban.jail.clone(),
                target: ban.target,
                timeout: ban.until.map(|until| until.since(now)),
            })
            .collect();
        match self.backends.ban(&entries).await {
            Ok(()) => tracing::info!("restored {} ban(s)", entries.len()),
            // Kept in the trackers: the retry's reconcile puts them in place.
            Err(e) => self
                .health
                .firewall_failed(&format!("cannot restore {} ban(s)", entries.len()), &e),
        }
        for (ban, entry) in bans.into_iter().zip(&entries) {
            // One line per ban at debug level: a restart with many bans must not spend half
            // its start-up writing them (the summary above says how many were restored).
            tracing::debug!(
                JAIL = %ban.jail,
                IP = %display_target(&ban.target),
                "Restored ban of {} in jail {} ({} left)",
                display_target(&ban.target),
                ban.jail,
                entry
                    .timeout
                    .map_or_else(|| "permanent".to_string(), |t| BanTime::For(t).to_string())
            );
            let decision = BanDecision {
                target: ban.target,
                at: ban.since,
                bantime: match ban.until {
                    Some(until) => BanTime::For(until.since(ban.since)),
                    None => BanTime::Permanent,
                },
                failures: ban.failures,
                offence: ban.offence,
            };
            let findtime = jails
                .iter()
                .find(|j| j.settings.name == ban.jail)
                .map(|j| j.settings.policy.findtime)
                .unwrap_or_default();
            self.notify_ban(&BanNotice {
                jail: &ban.jail,
                decision: &decision,
                findtime,
                cause: Cause::Restored,
                matched: &NO_MATCH,
                hosts: &OriginHosts::default(),
            });
        }
        self.health.status_changed();
    }

    /// Ends bans the trackers have already dropped: removed from the firewall and the
    /// database, logged, observed.
    pub(super) async fn lift(
        &mut self,
        jail: &str,
        targets: &[IpNet],
        why: Lifted,
        now: Timestamp,
    ) -> Result<(), FirewallError> {
        if targets.is_empty() {
            return Ok(());
        }
        // The kernel has usually dropped expired ones already (element timeouts); this covers
        // backends without timeouts and bans whose timeout was refreshed.
        let removed = self.backends.unban(jail, targets).await;
        if let Err(e) = &removed {
            self.health.firewall_failed(
                &format!("cannot lift {} ban(s) of jail {jail}", targets.len()),
                e,
            );
        }
        self.record_ended(jail, targets, why, now);
        removed
    }

    /// The end of bans the firewall no longer holds: the second half of [`Self::lift`], and
    /// all of it for stored bans that ended while the daemon was stopped (or whose jail is
    /// gone), which the firewall never got back. Removed from the database, logged, observed.
    pub(super) fn record_ended(
        &mut self,
        jail: &str,
        targets: &[IpNet],
        why: Lifted,
        now: Timestamp,
    ) {
        self.state.end_bans(jail, targets, why, now);
        for target in targets {
            let text = display_target(target);
            tracing::info!(JAIL = %jail, IP = %text, "Unbanned {text} in jail {jail} ({})", why.log_text());
            let notice = LiftNotice {
                jail,
                target: *target,
                why,
                at: now,
            };
            for observer in &mut self.observers {
                observer.lifted(&notice);
            }
            Observer::lifted(&mut self.actions, &notice);
        }
        self.health.status_changed();
    }

    fn notify_ban(&mut self, notice: &BanNotice<'_>) {
        for observer in &mut self.observers {
            observer.banned(notice);
        }
        Observer::banned(&mut self.actions, notice);
    }

    /// Takes a jail's bans off the backend it is leaving (a reload moved it); they stay in
    /// force and are applied on the new backend with the others.
    pub(super) async fn leave_backend(&mut self, jail: &str, targets: &[IpNet]) {
        if let Err(e) = self.backends.unban(jail, targets).await {
            self.health
                .firewall_failed("cannot lift the bans of a jail moving backend", &e);
        }
    }

    /// firewalld stopped: nothing can be lifted there, and it keeps none of our bans (see
    /// [`Backends::forget_firewalld`]).
    pub(super) fn firewalld_gone(&mut self) {
        self.backends.forget_firewalld();
    }

    /// Applies `entries` again (idempotent): after a reload, which may have recreated sets.
    pub(super) async fn refresh(&mut self, entries: &[BanEntry]) {
        if let Err(e) = self.backends.ban(entries).await {
            self.health
                .firewall_failed(&format!("cannot apply {} ban(s)", entries.len()), &e);
        }
    }

    /// Compares every backend with `bans` (those in force) and repairs it; logs what it
    /// repaired, and tells the health how it went.
    pub(super) async fn reconcile(&mut self, bans: &[BanEntry]) {
        let mut failure = None;
        for (kind, result) in self.backends.reconcile(bans).await {
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
        self.health.reconciled(failure);
    }

    /// Drops old history rows of the state database.
    pub(super) fn purge_history(&self, now: Timestamp) {
        self.state.purge_history(now);
    }

    /// Takes a report of the state writer thread.
    pub(super) fn state_reported(&mut self, report: StateReport) {
        self.health.state_reported(report);
    }

    /// Asks the writer thread to write everything waiting in memory, with the bans in force
    /// (see [`Health::retry_sent`]).
    pub(super) fn retry_state(&mut self, active: Vec<StoredBan>) {
        self.state.retry(active);
        self.health.retry_sent();
    }

    /// Removes banhound's firewall objects (`--flush-on-stop`).
    pub(super) async fn teardown(&mut self) -> Result<(), FirewallError> {
        self.backends.teardown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_filter_file;
    use crate::engine::filter::{Host, Outcome};
    use std::path::Path;

    fn decision(target: &str, bantime: BanTime, failures: u32) -> BanDecision {
        BanDecision {
            target: target.parse().unwrap(),
            at: Timestamp::from_secs(1_700_000_000),
            bantime,
            failures,
            offence: 1,
        }
    }

    #[test]
    fn ban_messages_have_the_documented_form_and_feed_recidive() {
        let v4 = decision("198.51.100.4/32", BanTime::For(Duration::from_secs(600)), 5);
        let v6 = decision(
            "2001:db8:1:2::/64",
            BanTime::For(Duration::from_secs(5400)),
            3,
        );
        let forever = decision("203.0.113.9/32", BanTime::Permanent, 1);
        assert_eq!(
            ban_message("sshd", &v4),
            "Banned 198.51.100.4 in jail sshd for 10m after 5 failures"
        );
        assert_eq!(
            ban_message("sshd", &v6),
            "Banned 2001:db8:1:2::/64 in jail sshd for 1h30m after 3 failures"
        );
        assert_eq!(
            ban_message("nginx-http-auth", &forever),
            "Banned 203.0.113.9 in jail nginx-http-auth for permanent after 1 failures"
        );

        let recidive = load_filter_file(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/filters/recidive.toml"),
            "recidive",
            None,
        )
        .unwrap();
        let mut matcher = recidive.filter.matcher();
        for (d, addr) in [
            (&v4, "198.51.100.4"),
            (&v6, "2001:db8:1:2::"),
            (&forever, "203.0.113.9"),
        ] {
            // On a collector the line names the hosts the failures came from; a host label
            // is one escaped word, so a forged `_HOSTNAME` cannot change what is captured.
            let hosts = OriginHosts {
                labels: vec!["web-1".into(), "x\\x20203.0.113.77".into()],
                more: true,
            };
            for message in [
                ban_message("sshd", d),
                format!("{}{}", ban_message("sshd", d), hosts.suffix()),
            ] {
                match matcher.match_line(message.as_bytes()) {
                    Outcome::Failure(f) => {
                        assert_eq!(f.host, Host::Ip(addr.parse().unwrap()), "{message}")
                    }
                    other => panic!("recidive does not read {message:?}: {other:?}"),
                }
            }
        }
        // Its own bans do not feed it again.
        let own = ban_message("recidive", &v4);
        assert!(matches!(
            matcher.match_line(own.as_bytes()),
            Outcome::Ignored { .. }
        ));
        // Nor do manual bans: their length was an admin's choice.
        let manual = manual_ban_message("sshd", &v4, 0);
        assert_eq!(
            manual,
            "Banned 198.51.100.4 in jail sshd for 10m manually (uid 0)"
        );
        assert!(
            !matches!(matcher.match_line(manual.as_bytes()), Outcome::Failure(_)),
            "{manual}"
        );
    }

    /// The bus's signals are an observer: restored bans are not signalled again, new ones
    /// and every lift are.
    #[test]
    fn signals_skip_restored_bans_and_carry_every_lift() {
        let (sender, mut events) = broadcast::channel(8);
        let mut signals = Signals(sender);
        let d = decision("198.51.100.4/32", BanTime::For(Duration::from_secs(600)), 5);
        for cause in [
            Cause::Restored,
            Cause::Logs,
            Cause::Manual { caller_uid: 7 },
        ] {
            signals.banned(&BanNotice {
                jail: "sshd",
                decision: &d,
                findtime: Duration::from_secs(600),
                cause,
                matched: &NO_MATCH,
                hosts: &OriginHosts::default(),
            });
        }
        signals.lifted(&LiftNotice {
            jail: "sshd",
            target: d.target,
            why: Lifted::ExpiredWhileStopped,
            at: d.at,
        });
        let reasons: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| match e {
                Event::Banned { reason, .. } => reason,
                Event::Unbanned { why, .. } => format!("unbanned: {}", why.stored_reason()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            reasons,
            [
                "5 failures within 10m".to_string(),
                "manual (uid 7)".to_string(),
                format!("unbanned: {}", Lifted::ExpiredWhileStopped.stored_reason()),
            ]
        );
    }
}
