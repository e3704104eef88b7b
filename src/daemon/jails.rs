//! The daemon's jails: their settings and their running state, indexed by jail index.
//!
//! Each [`RunningJail`] owns what deciding its records needs: its settings (the filter the
//! matcher is made from), its [`Tracker`], the multi-line state of its journal entries and
//! one [`FileSource`] per file it reads. A record reaches its jail by index (the journal's
//! match index, the file feed's file index), so no jail name is looked up per entry; names
//! are resolved only for the control interface and at a reload. Everything here is
//! decision, none of it I/O: what is decided goes to [`super::enforcement`], the one place
//! that bans and lifts. A reload keeps a jail's tracker (its failures and bans) under its
//! name, with the new policy.
//!
//! The hosts journal failures were logged on are kept per target ([`FailureOrigins`]) so a
//! ban on a collector names them; they are labels, never part of a decision.
//!
//! The matcher (capture slots borrowed from the filter) is made per batch from the jail's
//! own filter, not kept: a kept one would borrow the settings it sits beside.

use super::origins::{FailureOrigins, OriginHosts};
use super::DaemonError;
use crate::action::config::ActionSpec;
use crate::action::lines::{Matched, MatchedLines};
use crate::action::Actions;
use crate::bus::{ControlError, JailSnapshot, RecordCounts};
use crate::config::{DaemonSettings, JailSettings, JailSource, MetricsSettings, Settings};
use crate::display::display_target;
use crate::engine::address::{ban_target, ban_target_net, IgnoreList, IgnoreReason};
use crate::engine::datetime::{DateDetector, Zone};
use crate::engine::filter::{Host, Matcher};
use crate::engine::jail::{Age, FileSource, Jail, Record, Seen, Step};
use crate::engine::multiline::SourceState;
use crate::engine::prepare::{LineFormat, LinePreparer};
use crate::engine::time::Timestamp;
use crate::engine::tracker::{BanDecision, Mode, Policy, Tracker, Verdict};
use crate::firewall::dispatch::auto_backend;
use crate::firewall::firewalld::FirewalldBackend;
use crate::firewall::{BackendKind, BanEntry};
use crate::source::file_follow::{FileChunk, FilePosition};
use crate::source::glob;
use crate::source::journal::{host_label, Batch, MatchExpr, Phase};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;

use super::state::StoredBan;

/// A jail that keeps hitting `max_tracked` is reported at most this often.
const EVICTION_REPORT_EVERY: Duration = Duration::from_secs(60);

/// The jails of a configuration, validated against what this daemon supports, before
/// anything running is touched (so a reload can refuse them without side effects).
pub(super) struct Prepared {
    pub(super) daemon: DaemonSettings,
    pub(super) metrics: MetricsSettings,
    /// `[fleet]`, taken by the daemon (`super::fleet`).
    pub(super) fleet: Option<crate::config::fleet::FleetSettings>,
    /// Every `[action.NAME]` of the configuration; jails name theirs by index.
    actions: Vec<ActionSpec>,
    jails: Vec<JailSettings>,
    /// The journal matches of the journal jails, and for each the index of its jail.
    matches: Vec<MatchExpr>,
    journal_jails: Vec<usize>,
    /// Each followed file, with the indexes of the jails reading it.
    files: Vec<(PathBuf, Vec<usize>)>,
}

impl Prepared {
    /// The configuration's actions, started for the jails that have any (on the runtime),
    /// taking over from those of the configuration before (see [`Actions::replace`]).
    pub(super) fn start_actions(&self, previous: Actions) -> Actions {
        let jails = self
            .jails
            .iter()
            .filter(|j| !j.actions.is_empty())
            .map(|j| (j.name.clone(), j.actions.clone()))
            .collect();
        previous.replace(&self.actions, jails)
    }

    /// Whether a jail has `backend = "auto"`.
    pub(super) fn has_auto_backend(&self) -> bool {
        self.jails.iter().any(|j| j.backend_auto)
    }

    /// Decides the backend of the jails with `backend = "auto"` (see [`auto_choice`]).
    pub(super) fn choose_auto_backends(&mut self, firewalld_running: bool) {
        for jail in self.jails.iter_mut().filter(|j| j.backend_auto) {
            jail.backend = auto_choice(jail, firewalld_running);
        }
    }

    pub(super) fn new(settings: Settings) -> Result<Prepared, DaemonError> {
        let mut jails = Vec::new();
        let mut matches = Vec::new();
        let mut journal_jails = Vec::new();
        for jail in settings.jails.into_iter().filter(|j| j.enabled) {
            let index = jails.len();
            match &jail.source {
                JailSource::Files { .. } => {}
                JailSource::Journal { matches: words } => {
                    let expr = MatchExpr::parse(words).map_err(|source| DaemonError::Match {
                        jail: jail.name.clone(),
                        source,
                    })?;
                    matches.push(expr);
                    journal_jails.push(index);
                }
            }
            // What firewalld cannot represent is refused with the configuration, before
            // anything is changed (a firewall that does not answer is retried instead).
            if jail.backend == BackendKind::Firewalld {
                FirewalldBackend::check_jail(&jail.rules).map_err(|source| {
                    DaemonError::Backend {
                        jail: jail.name.clone(),
                        source,
                    }
                })?;
            }
            jails.push(jail);
        }
        let files = followed_files(&jails);
        Ok(Prepared {
            daemon: settings.daemon,
            metrics: settings.metrics,
            fleet: settings.fleet,
            actions: settings.actions,
            jails,
            matches,
            journal_jails,
            files,
        })
    }
}

/// The files the file jails of `jails` read, each with the indexes of its readers: a
/// wildcard names the files that exist now.
fn followed_files<'a>(
    jails: impl IntoIterator<Item = &'a JailSettings>,
) -> Vec<(PathBuf, Vec<usize>)> {
    let mut files: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for (index, jail) in jails.into_iter().enumerate() {
        let JailSource::Files { paths } = &jail.source else {
            continue;
        };
        for path in paths.iter().flat_map(|p| glob::expand(p)) {
            match files.iter_mut().find(|(p, _)| *p == path) {
                Some((_, readers)) if !readers.contains(&index) => readers.push(index),
                Some(_) => {}
                None => files.push((path, vec![index])),
            }
        }
    }
    files
}

/// One running jail: its settings and everything its decisions change.
pub(super) struct RunningJail {
    pub(super) settings: JailSettings,
    pub(super) tracker: Tracker,
    /// What earlier journal entries said, for multi-line filters.
    journal: SourceState,
    /// Per file it reads (by file index): its line preparation, newest line and multi-line
    /// state, made when the file's position is known ([`Jails::position_file`]).
    files: Vec<(usize, FileSource)>,
    /// Its ignore list as changed over the control interface (the configured `ignoreip`
    /// plus additions minus removals). Dropped at the next reload.
    ignore_override: Option<Vec<IpNet>>,
    /// Evictions reported so far, and when last.
    evictions_reported: (u64, Option<Instant>),
    /// The snapshot last sent as `Event::JailChanged`, so only changes are.
    pub(super) published: Option<JailSnapshot>,
    /// The lines of its failures, per target, for its actions' alerts (`None`: it has no
    /// actions, and nothing is kept).
    matched: Option<MatchedLines>,
    /// The hosts its journal failures were logged on, per target.
    origins: FailureOrigins,
    /// What its filter read, for metrics ([`tally`]).
    pub(super) reading: RecordCounts,
}

/// What a reload changed: the jails added, and the bans the firewall must drop.
pub(super) struct Reloaded {
    /// Jails new in this configuration.
    pub(super) added: Vec<String>,
    /// Jails no longer configured, with the bans they held (their trackers are gone).
    pub(super) removed: Vec<(String, Vec<IpNet>)>,
    /// Jails kept but moved to another backend, with their bans (kept in the tracker, to be
    /// re-applied on the new backend).
    pub(super) moved: Vec<(String, Vec<IpNet>)>,
}

/// Every running jail and how records reach them.
pub(super) struct Jails {
    running: Vec<RunningJail>,
    matches: Vec<MatchExpr>,
    /// Per journal match index: the jail's index.
    journal_jails: Vec<usize>,
    files: Vec<(PathBuf, Vec<usize>)>,
    own_addresses: Vec<IpAddr>,
    /// This host's name: journal failures logged on another host (a collector's merged
    /// journal) name their host in the ban.
    this_host: Vec<u8>,
    /// Dates without a zone in files are local time, as syslog writes them.
    zone: Zone,
}

impl Jails {
    pub(super) fn new(prepared: Prepared, own_addresses: Vec<IpAddr>) -> Jails {
        let mut jails = Jails {
            running: Vec::new(),
            matches: Vec::new(),
            journal_jails: Vec::new(),
            files: Vec::new(),
            own_addresses: Vec::new(),
            this_host: Vec::new(),
            zone: Zone::parse("local").unwrap_or(Zone::Utc),
        };
        jails.reload(prepared, own_addresses);
        jails
    }

    /// Puts a new configuration in place, with the host's addresses as they are now. A jail
    /// kept (by name) keeps its tracker with the new policy; runtime ignore-list changes are
    /// dropped and the sources' per-jail state starts anew (the feeds are restarted).
    pub(super) fn reload(&mut self, prepared: Prepared, own_addresses: Vec<IpAddr>) -> Reloaded {
        self.own_addresses = own_addresses;
        self.this_host = crate::action::hostname().into_bytes();
        let mut old: Vec<Option<RunningJail>> = self.running.drain(..).map(Some).collect();
        let mut running = Vec::with_capacity(prepared.jails.len());
        let mut moved = Vec::new();
        let mut added = Vec::new();
        for settings in prepared.jails {
            let policy = settings.policy.to_policy(&self.own_addresses);
            let kept = old
                .iter_mut()
                .find(|j| j.as_ref().is_some_and(|j| j.settings.name == settings.name))
                .and_then(Option::take);
            let mut reading = RecordCounts::default();
            let tracker = match kept {
                Some(jail) => {
                    // Counters go on under the jail's name: a scrape sees no reset.
                    reading = jail.reading;
                    let mut tracker = jail.tracker;
                    tracker.set_policy(policy);
                    if jail.settings.backend != settings.backend {
                        moved.push((settings.name.clone(), active_targets(&tracker)));
                    }
                    tracker
                }
                None => {
                    added.push(settings.name.clone());
                    Tracker::new(policy)
                }
            };
            let matched = (!settings.actions.is_empty())
                .then(|| MatchedLines::for_jails(std::iter::once(settings.name.as_str())));
            running.push(RunningJail {
                matched,
                settings,
                tracker,
                journal: SourceState::default(),
                files: Vec::new(),
                ignore_override: None,
                evictions_reported: (0, None),
                published: None,
                origins: FailureOrigins::default(),
                reading,
            });
        }
        let removed = old
            .into_iter()
            .flatten()
            .map(|j| (j.settings.name, active_targets(&j.tracker)))
            .collect();
        self.running = running;
        self.matches = prepared.matches;
        self.journal_jails = prepared.journal_jails;
        self.files = prepared.files;
        Reloaded {
            added,
            removed,
            moved,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.running.len()
    }

    /// firewalld started or stopped: the jails with `backend = "auto"` whose backend changes
    /// take the new one; they are returned with their bans in force (kept in their trackers),
    /// which the caller moves.
    pub(super) fn choose_auto_backends(
        &mut self,
        firewalld_running: bool,
    ) -> Vec<(String, Vec<IpNet>)> {
        let mut moved = Vec::new();
        for jail in self.running.iter_mut().filter(|j| j.settings.backend_auto) {
            let chosen = auto_choice(&jail.settings, firewalld_running);
            if chosen != jail.settings.backend {
                jail.settings.backend = chosen;
                moved.push((jail.settings.name.clone(), active_targets(&jail.tracker)));
            }
        }
        moved
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &RunningJail> {
        self.running.iter()
    }

    pub(super) fn get(&self, index: usize) -> &RunningJail {
        &self.running[index]
    }

    pub(super) fn get_mut(&mut self, index: usize) -> &mut RunningJail {
        &mut self.running[index]
    }

    /// The index of the jail named `name` (a control request's).
    pub(super) fn index(&self, name: &str) -> Result<usize, ControlError> {
        self.running
            .iter()
            .position(|j| j.settings.name == name)
            .ok_or_else(|| ControlError::NoSuchJail(name.to_string()))
    }

    /// The jails a request applies to: the one named, or all.
    pub(super) fn scope(&self, jail: Option<String>) -> Result<Vec<usize>, ControlError> {
        match jail {
            Some(name) => Ok(vec![self.index(&name)?]),
            None => Ok((0..self.running.len()).collect()),
        }
    }

    pub(super) fn matches(&self) -> &[MatchExpr] {
        &self.matches
    }

    pub(super) fn files(&self) -> &[(PathBuf, Vec<usize>)] {
        &self.files
    }

    /// The longest findtime of the journal jails: how far back the journal is replayed.
    pub(super) fn journal_lookback(&self) -> Option<Duration> {
        if self.journal_jails.is_empty() {
            return None;
        }
        self.journal_jails
            .iter()
            .map(|&j| self.running[j].settings.policy.findtime)
            .max()
    }

    /// The longest findtime of all jails.
    pub(super) fn longest_findtime(&self) -> Duration {
        self.running
            .iter()
            .map(|j| j.settings.policy.findtime)
            .max()
            .unwrap_or_default()
    }

    /// Forgets what the sources said (their feeds are started anew).
    pub(super) fn reset_sources(&mut self) {
        for jail in &mut self.running {
            jail.journal = SourceState::default();
        }
        self.reset_file_sources();
    }

    /// Forgets what the files said (their feed is started anew).
    pub(super) fn reset_file_sources(&mut self) {
        for jail in &mut self.running {
            jail.files.clear();
        }
    }

    /// The wildcard `logpath`s of the file jails.
    pub(super) fn wildcard_patterns(&self) -> Vec<PathBuf> {
        self.running
            .iter()
            .filter_map(|j| match &j.settings.source {
                JailSource::Files { paths } => Some(paths),
                JailSource::Journal { .. } => None,
            })
            .flatten()
            .filter(|p| glob::is_pattern(p))
            .cloned()
            .collect()
    }

    /// Expands the wildcards again and adds the files (or readers of a file) that appeared
    /// since, after those already followed, whose indexes stay; returns the files added to.
    /// A file that is gone stays followed (waited for, as a path written out) until the
    /// next reload: a rotation renames it away before it is created anew.
    pub(super) fn add_appeared_files(&mut self) -> Vec<PathBuf> {
        let mut changed = Vec::new();
        for (path, readers) in followed_files(self.running.iter().map(|j| &j.settings)) {
            match self.files.iter_mut().find(|(p, _)| *p == path) {
                Some((_, known)) => {
                    let new: Vec<usize> =
                        readers.into_iter().filter(|r| !known.contains(r)).collect();
                    if !new.is_empty() {
                        known.extend(new);
                        changed.push(path);
                    }
                }
                None => {
                    self.files.push((path.clone(), readers));
                    changed.push(path);
                }
            }
        }
        changed
    }

    /// Gives each reader of file `file` its line preparation, judging ages as a file read
    /// from its start (`stored` is `None`: the look-back from `now`) or continued.
    pub(super) fn position_file(
        &mut self,
        file: usize,
        stored: Option<FilePosition>,
        now: Timestamp,
    ) {
        for &j in &self.files[file].1 {
            let jail = &mut self.running[j];
            let filter = &jail.settings.filter;
            let preparer = LinePreparer::new(
                DateDetector::new(self.zone.clone()).with_pattern(filter.datepattern.clone()),
                filter.format,
                &filter.identifiers,
            );
            let age = match stored {
                None => Age::LookBack(now),
                Some(_) => Age::Continued,
            };
            jail.files.push((file, FileSource::new(preparer, age)));
        }
    }

    /// One journal batch: every entry to each jail its matches name. Replayed entries only
    /// rebuild windows: they were logged (and any ban they led to decided) when new.
    pub(super) fn decide_batch(
        &mut self,
        batch: &Batch,
        now: Timestamp,
    ) -> Vec<(usize, BanDecision)> {
        let mut decisions = Vec::new();
        let mut jails: Vec<_> = self
            .running
            .iter_mut()
            .map(|j| {
                (
                    &j.settings,
                    &mut j.tracker,
                    &mut j.journal,
                    None,
                    &mut j.matched,
                    &mut j.origins,
                    &mut j.reading,
                )
            })
            .collect();
        // fail2ban filters (after-date format) see an entry as "HOST IDENT[PID]: MESSAGE",
        // as on fail2ban's systemd backend: their session ids are in that prefix.
        let mut rendered = Vec::new();
        for entry in batch.iter() {
            for &m in entry.jails {
                let Some(&j) = self.journal_jails.get(m) else {
                    continue;
                };
                let (settings, tracker, state, matcher, matched, origins, reading) = &mut jails[j];
                let matcher: &mut Matcher<'_> =
                    matcher.get_or_insert_with(|| settings.filter.filter.matcher());
                let message = if settings.filter.format == LineFormat::AfterDate {
                    entry.entry.render_syslog(&mut rendered);
                    rendered.as_slice()
                } else {
                    entry.entry.message
                };
                let mode = match entry.phase {
                    Phase::Replay => Mode::Replay,
                    Phase::New => Mode::Live,
                };
                let record = Record::Entry {
                    state,
                    message,
                    origin: entry.entry.origin(),
                    time: entry.entry.timestamp,
                };
                let started = std::time::Instant::now();
                let step = Jail { matcher, tracker }.decide(record, mode, now);
                // Replayed failures too: a ban after a restart names the hosts of the
                // failures it counts.
                let host = entry.entry.hostname;
                if let (Some(host), Some(target)) = (host, counted_target(settings, &step)) {
                    origins.note(target, host, entry.entry.timestamp, &self.this_host);
                }
                if mode == Mode::Replay {
                    continue;
                }
                // An alert's line names the host it was logged on when that is not this one
                // (the rendered syslog form has it already).
                let foreign = host.filter(|h| {
                    *h != self.this_host.as_slice()
                        && settings.filter.format != LineFormat::AfterDate
                });
                tally(reading, &step, started.elapsed());
                if let Some(decision) = conclude_step(settings, step, matched.as_mut(), foreign) {
                    decisions.push((j, decision));
                }
            }
        }
        self.share_offences(&decisions);
        decisions
    }

    /// A ban in one jail is a previous offence in every other jail that counts the bans of
    /// all jails (`overall_jails`).
    fn share_offences(&mut self, decisions: &[(usize, BanDecision)]) {
        for (banned_in, decision) in decisions {
            for (j, jail) in self.running.iter_mut().enumerate() {
                if j != *banned_in {
                    jail.tracker.offence_elsewhere(decision.target, decision.at);
                }
            }
        }
    }

    /// Re-installs, from the state database, that `target` was banned `offences` times in
    /// `jail`, the last ban starting at `last`: for that jail, and for every jail that counts
    /// the bans of all jails.
    pub(super) fn restore_offences(
        &mut self,
        jail: &str,
        target: IpNet,
        offences: u32,
        last: Timestamp,
    ) {
        for running in &mut self.running {
            if running.settings.name == jail {
                running.tracker.restore_offences(target, offences, last);
            } else {
                running
                    .tracker
                    .restore_offences_elsewhere(target, offences, last);
            }
        }
    }

    /// The lines of a file chunk, to each jail reading that file; also how many lines it
    /// held per reader.
    pub(super) fn decide_chunk(
        &mut self,
        chunk: &FileChunk,
        now: Timestamp,
    ) -> (Vec<(usize, BanDecision)>, usize) {
        let mut decisions = Vec::new();
        let mut lines = 0;
        let Some((_, readers)) = self.files.get(chunk.file) else {
            return (decisions, lines);
        };
        for &j in readers {
            let jail = &mut self.running[j];
            let Some((_, source)) = jail.files.iter_mut().find(|(f, _)| *f == chunk.file) else {
                continue;
            };
            let mut matcher = jail.settings.filter.filter.matcher();
            let mut running = Jail {
                matcher: &mut matcher,
                tracker: &mut jail.tracker,
            };
            let (settings, mut matched, reading) =
                (&jail.settings, jail.matched.as_mut(), &mut jail.reading);
            for line in chunk.lines.split_inclusive(|&b| b == b'\n') {
                lines += 1;
                let record = Record::Line {
                    source: &mut *source,
                    line,
                };
                let started = std::time::Instant::now();
                let step = running.decide(record, Mode::Live, now);
                tally(reading, &step, started.elapsed());
                if let Some(decision) = conclude_step(settings, step, matched.as_deref_mut(), None)
                {
                    decisions.push((j, decision));
                }
            }
        }
        self.share_offences(&decisions);
        (decisions, lines)
    }

    /// Live failures counted so far, all jails together: a batch that adds to them is part
    /// of an attack under way, and the journal is followed closely for a while
    /// ([`super::feed::Feed::failures_seen`]).
    pub(super) fn live_failures(&self) -> u64 {
        self.running
            .iter()
            .map(|j| j.tracker.totals().failures)
            .sum()
    }

    /// The lines that led to `target`'s ban in jail `index`, for its actions (forgotten
    /// here); none when the jail keeps none.
    pub(super) fn take_lines(&mut self, index: usize, target: &IpNet) -> Matched {
        let jail = &mut self.running[index];
        match &mut jail.matched {
            Some(matched) => matched.take(&jail.settings.name, target),
            None => Matched::default(),
        }
    }

    /// The hosts the failures behind `decision`'s ban in jail `index` were logged on, when
    /// another host than this one is among them (forgotten here).
    pub(super) fn take_hosts(&mut self, index: usize, decision: &BanDecision) -> OriginHosts {
        let jail = &mut self.running[index];
        jail.origins.take(
            &decision.target,
            decision.at,
            jail.settings.policy.findtime,
            &self.this_host,
        )
    }

    /// How many bans are in force, over all jails.
    pub(super) fn banned(&self) -> usize {
        self.running
            .iter()
            .map(|j| j.tracker.active_bans().count())
            .sum()
    }

    /// When the earliest ban of any jail ends.
    pub(super) fn next_expiry(&self) -> Option<Timestamp> {
        self.running
            .iter()
            .filter_map(|j| j.tracker.next_expiry())
            .min()
    }

    /// Takes the bans that have ended by `now`, at most `budget` of them, per jail index.
    pub(super) fn take_expired(
        &mut self,
        now: Timestamp,
        mut budget: usize,
    ) -> Vec<(usize, Vec<IpNet>)> {
        self.running
            .iter_mut()
            .enumerate()
            .map(|(j, jail)| {
                let targets = jail.tracker.take_expired_at_most(now, budget);
                budget -= targets.len();
                (j, targets)
            })
            .filter(|(_, targets)| !targets.is_empty())
            .collect()
    }

    /// Every ban in force, with what is left of it (zero for one whose expiry is due).
    pub(super) fn bans_in_force(&self, now: Timestamp) -> Vec<BanEntry> {
        self.running
            .iter()
            .flat_map(|jail| {
                jail.tracker
                    .active_bans()
                    .map(move |(target, ban)| BanEntry {
                        jail: jail.settings.name.clone(),
                        target: *target,
                        timeout: ban.until.map(|until| until.since(now)),
                    })
            })
            .collect()
    }

    /// The bans in force as the state database stores them, to rewrite its `bans` table
    /// after the backlog overflowed. Failure counts are not kept in memory: 0 for bans the
    /// database lost, the stored count for the others.
    pub(super) fn stored_bans(&self) -> Vec<StoredBan> {
        let mut out = Vec::new();
        for jail in &self.running {
            for (target, ban) in jail.tracker.active_bans() {
                out.push(StoredBan {
                    jail: jail.settings.name.clone(),
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

    /// The running jail named `name`, for restoring the state database's rows.
    pub(super) fn by_name_mut(&mut self, name: &str) -> Option<&mut RunningJail> {
        self.running.iter_mut().find(|j| j.settings.name == name)
    }

    /// Says when a jail hit `max_tracked` and forgot addresses, at most once a minute per
    /// jail (a flood evicts in every batch), with the count since the last report.
    pub(super) fn report_evictions(&mut self) {
        let now = Instant::now();
        for jail in &mut self.running {
            let evicted = jail.tracker.totals().evicted;
            let (reported, at) = &mut jail.evictions_reported;
            if evicted <= *reported || at.is_some_and(|at| now < at + EVICTION_REPORT_EVERY) {
                continue;
            }
            let name = &jail.settings.name;
            tracing::warn!(
                JAIL = %name,
                EVICTED = evicted - *reported,
                "jail {name} reached max_tracked ({}): forgot the failures of {} address(es) whose last failure was oldest ({evicted} since start); raise max_tracked if this is not a flood",
                crate::display::thousands(jail.tracker.policy().max_tracked as u64),
                crate::display::thousands(evicted - *reported),
            );
            *reported = evicted;
            *at = Some(now);
        }
    }

    /// Jail `index`'s settings in force and counters, as the bus shows them.
    pub(super) fn snapshot(&self, index: usize) -> JailSnapshot {
        let RunningJail {
            settings, tracker, ..
        } = &self.running[index];
        let policy = tracker.policy();
        let totals = tracker.totals();
        JailSnapshot {
            name: settings.name.clone(),
            // Disabled jails are not loaded at all.
            enabled: settings.enabled,
            currently_failed: count(tracker.currently_failing()),
            total_failed: totals.failures,
            currently_banned: count(tracker.active_bans().count()),
            total_banned: totals.bans,
            findtime: policy.findtime,
            maxretry: policy.maxretry,
            bantime: policy.bantime,
            filter: settings.filter.name.clone(),
            backend: if settings.backend_auto {
                format!("{} (auto)", settings.backend)
            } else {
                settings.backend.to_string()
            },
            ignoreip: policy.ignore.networks().to_vec(),
        }
    }

    /// The ban target of `addr` in jail `index` (its IPv6 prefix).
    pub(super) fn target(&self, index: usize, addr: IpAddr) -> IpNet {
        ban_target(addr, self.running[index].tracker.policy().ipv6_prefix)
    }

    /// Changes jail `index`'s runtime ignore list; the policy is rebuilt from the
    /// configuration so `ignoreself` (the host's own addresses) still holds.
    pub(super) fn edit_ignore(
        &mut self,
        index: usize,
        edit: impl FnOnce(&mut Vec<IpNet>) -> bool,
    ) -> bool {
        let jail = &self.running[index];
        let mut networks = jail.ignore_override.clone().unwrap_or_else(|| {
            jail.settings
                .policy
                .ignoreip
                .iter()
                .map(IpNet::trunc)
                .collect()
        });
        if !edit(&mut networks) {
            return false;
        }
        let policy = policy_with_ignores(&jail.settings, networks.clone(), &self.own_addresses);
        let jail = &mut self.running[index];
        jail.tracker.set_policy(policy);
        jail.ignore_override = Some(networks);
        true
    }

    pub(super) fn own_addresses(&self) -> &[IpAddr] {
        &self.own_addresses
    }

    /// The host's addresses are now `own`: every jail's ignore list follows, and the bans
    /// that cover one of `added` (now ignored as this host's) are taken from the trackers,
    /// per jail index, for enforcement to lift.
    pub(super) fn set_own_addresses(
        &mut self,
        own: Vec<IpAddr>,
        added: &[IpAddr],
    ) -> Vec<(usize, Vec<IpNet>)> {
        self.own_addresses = own;
        let mut lifted = Vec::new();
        for (j, jail) in self.running.iter_mut().enumerate() {
            let policy = match &jail.ignore_override {
                Some(networks) => {
                    policy_with_ignores(&jail.settings, networks.clone(), &self.own_addresses)
                }
                None => jail.settings.policy.to_policy(&self.own_addresses),
            };
            jail.tracker.set_policy(policy);
            let tracker = &mut jail.tracker;
            let covered: Vec<IpNet> = tracker
                .active_bans()
                .map(|(target, _)| *target)
                .filter(|target| {
                    tracker.policy().ignore.check(target) == Some(IgnoreReason::OwnAddress)
                        && added.iter().any(|a| target.contains(a))
                })
                .collect();
            for target in &covered {
                tracker.unban(target);
            }
            if !covered.is_empty() {
                lifted.push((j, covered));
            }
        }
        lifted
    }
}

/// The backend of a jail with `backend = "auto"`: firewalld while it runs, unless the jail
/// asks for what firewalld cannot represent (then nftables, and a warning: its rules sit
/// beside firewalld's).
fn auto_choice(jail: &JailSettings, firewalld_running: bool) -> BackendKind {
    let chosen = auto_backend(firewalld_running);
    if chosen == BackendKind::Firewalld {
        if let Err(e) = FirewalldBackend::check_jail(&jail.rules) {
            tracing::warn!(
                JAIL = %jail.name,
                "jail {}: backend \"auto\" stays on nftables although firewalld runs: {e}",
                jail.name
            );
            return BackendKind::Nftables;
        }
    }
    chosen
}

/// Counts one record a jail decided on, and the time deciding took.
fn tally(reading: &mut RecordCounts, step: &Step<'_>, took: Duration) {
    reading.read += 1;
    reading.deciding += took;
    match step {
        Step::OtherProgram => reading.other_program += 1,
        Step::NotSyslog => reading.not_syslog += 1,
        Step::TooOld => reading.too_old += 1,
        Step::Seen {
            seen: Seen::Missed { .. },
            ..
        } => reading.no_match += 1,
        Step::Seen {
            seen: Seen::Ignored { .. },
            ..
        } => reading.ignoreregex += 1,
        Step::Seen { .. } => {}
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn active_targets(tracker: &Tracker) -> Vec<IpNet> {
    tracker.active_bans().map(|(t, _)| *t).collect()
}

fn policy_with_ignores(jail: &JailSettings, networks: Vec<IpNet>, own: &[IpAddr]) -> Policy {
    let own_ignored = if jail.policy.ignoreself {
        own.to_vec()
    } else {
        Vec::new()
    };
    Policy {
        ignore: IgnoreList::new(networks, own_ignored),
        ..jail.policy.to_policy(own)
    }
}

/// The ban target of a failure the tracker counted (or banned for), if the step is one.
fn counted_target(settings: &JailSettings, step: &Step<'_>) -> Option<IpNet> {
    let Step::Seen {
        seen:
            Seen::Failure {
                failure,
                verdict: Some(Verdict::Ban(_) | Verdict::Counted { .. }),
            },
        ..
    } = step
    else {
        return None;
    };
    match failure.host {
        Host::Ip(ip) => Some(ban_target(ip, settings.policy.ipv6_prefix)),
        Host::Net(net) => Some(ban_target_net(net, settings.policy.ipv6_prefix)),
        Host::Name(_) => None,
    }
}

/// What the daemon does with a decided record: a ban decision to enforce, or a debug line;
/// a counted failure's line is kept in `matched` for the jail's actions, led by `host` (the
/// journal entry's, when it was logged on another host). Host names are never banned (nor
/// resolved).
fn conclude_step(
    settings: &JailSettings,
    step: Step<'_>,
    matched: Option<&mut MatchedLines>,
    host: Option<&[u8]>,
) -> Option<BanDecision> {
    let Step::Seen {
        seen: Seen::Failure {
            failure,
            verdict: Some(verdict),
        },
        ..
    } = step
    else {
        return None;
    };
    let (ip, target) = match failure.host {
        Host::Ip(ip) => (
            display_target(&IpNet::from(ip)),
            ban_target(ip, settings.policy.ipv6_prefix),
        ),
        Host::Net(net) => (
            display_target(&net),
            ban_target_net(net, settings.policy.ipv6_prefix),
        ),
        Host::Name(_) => return None,
    };
    if let (Some(matched), Verdict::Ban(_) | Verdict::Counted { .. }) = (matched, &verdict) {
        match host {
            Some(host) => {
                let mut line = host_label(host).into_bytes();
                line.push(b' ');
                line.extend_from_slice(failure.text);
                matched.note(&settings.name, target, &line, failure.user);
            }
            None => matched.note(&settings.name, target, failure.text, failure.user),
        }
    }
    let jail = &settings.name;
    match verdict {
        Verdict::Ban(decision) => return Some(decision),
        Verdict::Counted { failures } => tracing::debug!(
            JAIL = %jail,
            IP = %ip,
            FAILURES = failures,
            "Found {ip} in jail {jail} ({failures} failure(s))"
        ),
        Verdict::Ignored(reason) => tracing::debug!(
            JAIL = %jail,
            IP = %ip,
            "Ignored {ip} in jail {jail} ({})",
            reason.as_str()
        ),
        Verdict::AlreadyBanned => {}
    }
    None
}
