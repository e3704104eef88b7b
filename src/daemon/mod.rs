//! `banhound daemon`: follows the journal and log files, decides bans, applies them,
//! survives restarts.
//!
//! One task owns all ban state and runs the select loop below; the source feeds ([`feed`]
//! for the journal, [`crate::source::file_follow`] for log files) and the timers only send it
//! events, so no lock guards ban state and every decision is made in order. The state is in
//! parts with one job each:
//! - `jails` (jails.rs): the settings and the running jails, indexed by jail index, each
//!   owning its tracker and its sources' state; every journal entry and file line goes to
//!   [`crate::engine::jail::Jail::decide`], the engine's one record → verdict step (shared
//!   with `banhound test-filter`). Decisions only, no I/O.
//! - `enforcement` (enforcement.rs): the firewall backends, the state writer and the
//!   [`Observer`]s (the bus's signals; jail actions attach there): the only place that bans
//!   and lifts; it also writes the fleet's outbox rows with the bans they publish.
//! - `health` (health.rs): firewall and state database failures, their retries, DEGRADED.
//! - `fleet` (fleet.rs): `[fleet]`'s publisher and subscriber tasks, and the other hosts'
//!   bans, decided by the receiving jail and applied through enforcement (one select arm).
//! - `auto_backend` (auto_backend.rs): `backend = "auto"`, decided at start and reload and
//!   again when firewalld starts or stops.
//!
//! Unbans are driven by one `sleep_until`
//! on the earliest expiry of all trackers, never by polling. Changes of the host's addresses
//! ([`host`]) and others' changes to the nftables table (`nft_watch`) arrive as netlink
//! notifications, also without polling.
//!
//! Durability: each journal batch (or file chunk) is processed whole, then its bans and its
//! position (journal cursor, or file inode and offset) are sent to be committed in one SQLite
//! transaction ([`state`], on its own thread: [`state_writer`]), then the bans go to the
//! firewall. After a crash, bans committed are restored with their remaining time and
//! journal entries up to the committed cursor are replayed count-only, from the longest
//! findtime before that entry's own time (they rebuild failure windows, never ban twice); a
//! batch sent but not yet committed is read again, as new. Everything is judged in log time,
//! so the decisions after any sequence of stops and crashes are those of one run that never
//! stopped: bans over by the wall clock still cover their log times (restored from the
//! history), and no reconcile runs before the journal has been read to its end once, since
//! the kernel may hold a ban applied before a crash that only this catch-up decides again.
//! Files continue after their committed offset; their failure windows are not rebuilt
//! (lines before the offset are not read again).
//!
//! Start-up order: configuration, state, firewall objects, restore of unexpired bans (one
//! batch), sources positioned, then READY=1. firewalld not answering yet does not stop the
//! start (nor does a restore the firewall refuses): it is a firewall failure, retried (see
//! `health`); nftables refusing the setup (no CAP_NET_ADMIN) does. SIGHUP reloads in place (bans kept); a
//! configuration that does not load is refused and the running one kept. The shutdown
//! future (SIGTERM in the binary, anything in tests) stops the daemon; bans stay in the
//! kernel with their timeouts unless `flush_on_stop`.
//!
//! Control: with a bus, the D-Bus service ([`crate::bus`]) runs beside the owner task and
//! sends it [`Request`]s; the owner answers them in order with the batches (`control`) and
//! announces every ban, unban and counter change as an [`Event`]. The name is taken before
//! READY=1 (so `systemctl start banhound && banhound status` works); a bus that cannot be
//! reached is logged and the daemon protects without a control interface, but a name owned
//! by another process (another banhound) stops the start. The `[metrics] listen` endpoint
//! ([`crate::metrics`]) is a second client of the same request channel; its address is read
//! at start (a reload that changes it says so and keeps the running one).

mod auto_backend;
mod control;
mod enforcement;
pub mod feed;
mod fleet;
mod health;
pub mod host;
mod ifaddrs;
mod jails;
pub mod logging;
mod nft_watch;
mod origins;
pub use origins::OriginHosts;
#[cfg(test)]
mod private_tmpfs;
pub mod state;
pub mod state_writer;

pub use enforcement::{
    ban_message, fleet_ban_message, manual_ban_message, BanNotice, Cause, LiftNotice, Observer,
};

use crate::action::Actions;
use crate::bus::service::StartError;
use crate::bus::{Bus, ControlError, Event, Lifted, Request};
use crate::config::error::ConfigError;
use crate::config::{self, ConfigPaths};
use crate::engine::time::Timestamp;
use crate::engine::tracker::BanDecision;
use crate::firewall::dispatch::FirewalldPresence;
use crate::firewall::firewalld::{FirewalldError, Reapplied};
use crate::firewall::nftables::ChangeWatcher;
use crate::firewall::{BackendKind, BanEntry, FirewallError};
use crate::source::file_follow::{self, FileChunk, FileError, FileFeed, FilePosition};
use crate::source::glob::{self, WildcardWatch};
use crate::source::journal::{
    parse_cursor, Batch, JournalError, JournalSource, MatchError, Start, StartReport,
};
use enforcement::{Enforcement, Evidence, Report, Signals};
use feed::Feed;
use ipnet::IpNet;
use jails::{Jails, Prepared};
use sd_notify::NotifyState;
use state::{StateDb, StateError};
use state_writer::StateWriter;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

/// How the daemon is run.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: ConfigPaths,
    /// Where the state database lives (`/var/lib/banhound`).
    pub state_dir: PathBuf,
    /// Which journal the journal jails read, as chosen on the command line; `None`: the
    /// configuration's `[daemon] journal_directory`, else the system journal.
    pub journal: Option<JournalSource>,
    /// Remove banhound's firewall objects (and so every ban) when stopping.
    pub flush_on_stop: bool,
    /// The bus the control interface is served on; `None`: no control interface.
    pub bus: Option<Bus>,
}

/// Why the daemon could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("jail {jail}: invalid journalmatch: {source}")]
    Match { jail: String, source: MatchError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    #[error("jail {jail}: {source}")]
    Backend {
        jail: String,
        source: FirewalldError,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot handle signals: {0}")]
    Signal(#[source] std::io::Error),
    /// Only for a name already owned: a bus that cannot be reached is not fatal.
    #[error(transparent)]
    Bus(StartError),
}

impl DaemonError {
    /// Whether the error is in the configuration (as opposed to the running system).
    pub fn is_invalid_configuration(&self) -> bool {
        matches!(
            self,
            DaemonError::Config(_) | DaemonError::Match { .. } | DaemonError::Backend { .. }
        )
    }
}

/// The wall clock, the only one bans are expressed in (the engine never reads it).
fn wall_now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_micros(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

/// How many events may wait for the bus's signal task; a slower task loses the oldest
/// (signals are notifications, the state stays queryable).
const EVENT_BACKLOG: usize = 1024;
/// How many control requests may wait for the owner task.
const REQUEST_BACKLOG: usize = 64;
/// How long connecting to the bus and taking the name may delay READY=1.
const BUS_START_TIMEOUT: Duration = Duration::from_secs(15);

/// The key of a file's position in the state database.
fn file_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// The running sources; replaced as a whole on reload.
#[derive(Default)]
struct Feeds {
    journal: Option<Feed>,
    files: Option<FileFeed>,
    /// Where files of the wildcard `logpath`s can appear.
    wildcards: Option<WildcardWatch>,
}

/// The key of the journal position in the state database.
fn source_key(source: &JournalSource) -> String {
    match source {
        JournalSource::System => "journal:system".into(),
        JournalSource::Namespace(ns) => format!("journal:namespace:{ns}"),
        JournalSource::Directory(dir) => format!("journal:directory:{}", dir.display()),
        JournalSource::Files(files) => format!(
            "journal:files:{}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        ),
    }
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// The ban state and everything that changes it, in its parts: the jails (decisions),
/// enforcement (bans, lifts and their health) and the sources' bookkeeping. Owned by one task.
struct Daemon {
    options: Options,
    /// The journal the journal jails read: the command line's, else the configuration's.
    journal: JournalSource,
    /// `[daemon] journal_directory` as read at start (a reload does not change the source).
    configured_journal_directory: Option<PathBuf>,
    source_key: String,
    jails: Jails,
    enforcement: Enforcement,
    following: Following,
    /// The last batch or chunk was full: more are waiting (start-up catch-up, a flood).
    catching_up: bool,
    /// The journal has been read to its end since the start: the committed entries replayed
    /// and those logged after them (while stopped, or before a crash) decided. Until then the
    /// firewall is not reconciled: the kernel may hold bans applied just before a crash whose
    /// commit never happened, which only this catch-up decides again, and a reconcile would
    /// lift them (letting their attackers back in) until it does.
    journal_caught_up: bool,
    /// When the daemon started (wall clock), for the control interface's uptime.
    started: Timestamp,
    /// Bans, unbans and counter changes, for the control interface's signals (bans and
    /// unbans reach it through enforcement's [`Signals`] observer).
    events: broadcast::Sender<Event>,
    /// `[daemon] reconcile_interval`: `None` is off.
    reconcile_interval: Option<Duration>,
    /// `[metrics] listen` as the endpoint was started with.
    metrics_listen: Option<SocketAddr>,
    /// The next periodic reconcile of the firewall.
    reconcile_at: Option<Instant>,
    /// Others' changes to banhound's nftables table ([`nft_watch`]), and when the burst
    /// being settled is repaired.
    nft_changes: Option<ChangeWatcher>,
    nft_repair_at: Option<Instant>,
    /// `[fleet]`: ban sharing with other hosts ([`fleet`]).
    fleet: Option<fleet::Fleet>,
    /// Whether firewalld runs, followed while a jail has `backend = "auto"` ([`auto_backend`]).
    firewalld_presence: Option<FirewalldPresence>,
}

/// While catching up, expiries wait until sources have been quiet this long: lifting a past
/// ban (by the wall clock) before the old entries logged during it were read would make
/// those entries count anew, and the outcome would depend on thread scheduling. The kernel
/// lifts nftables bans on time regardless (element timeouts).
const CATCH_UP_GRACE: Duration = Duration::from_secs(1);

/// What the daemon reads, for STATUS=.
#[derive(Clone, Copy, Debug, Default)]
struct Following {
    journal: bool,
    files: usize,
}

/// Runs the daemon until `shutdown` completes. See the module documentation.
pub async fn run(
    mut options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    // Installed first: SIGHUP's default action would end the process during start-up.
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let mut prepared = Prepared::new(config::load(&options.config)?)?;
    let journal = options.journal.take().unwrap_or_else(|| {
        prepared
            .daemon
            .journal_directory
            .clone()
            .map_or(JournalSource::System, JournalSource::Directory)
    });
    let mut firewalld_presence = None;
    auto_backend::decide(&mut firewalld_presence, &mut prepared).await;
    let state = StateWriter::start(StateDb::open(&options.state_dir)?)?;
    // Subscribed before the addresses are read, so no change falls in between.
    let mut address_changes = host::AddressWatch::open()
        .inspect_err(|e| {
            tracing::warn!("cannot follow changes of this host's addresses ({e}): ignoreself uses those found at start and at each reload")
        })
        .ok();
    let own_addresses = host::own_addresses();
    let fleet_settings = prepared.fleet.clone();
    let events = broadcast::channel(EVENT_BACKLOG).0;
    let mut enforcement = Enforcement::new(state);
    enforcement.observe(Box::new(Signals(events.clone())));
    enforcement.actions = prepared.start_actions(Actions::none());
    let mut daemon = Daemon {
        source_key: source_key(&journal),
        journal,
        configured_journal_directory: prepared.daemon.journal_directory.clone(),
        reconcile_interval: prepared.daemon.reconcile_interval,
        metrics_listen: prepared.metrics.listen,
        jails: Jails::new(prepared, own_addresses),
        enforcement,
        following: Following::default(),
        catching_up: false,
        journal_caught_up: false,
        started: wall_now(),
        events,
        reconcile_at: None,
        nft_changes: None,
        nft_repair_at: None,
        fleet: None,
        firewalld_presence,
        options,
    };
    // firewalld may start after banhound (ordered after it, never pulled in) or be
    // restarting: that is retried like a failure later on, the daemon starts, shows the error
    // and sets it up when it can. The kernel's nftables always answers; what fails there (no
    // CAP_NET_ADMIN, no nf_tables) does not get better by waiting, and stops the start.
    if let Err(e) = daemon.configure_backends().await {
        if e.backend != BackendKind::Firewalld {
            return Err(e.into());
        }
        daemon
            .enforcement
            .health
            .firewall_failed("cannot set up the firewall", &e);
    }
    daemon.restore().await?;
    daemon.configure_fleet(fleet_settings)?;
    daemon.schedule_reconcile();
    let mut feeds = daemon.start_feeds(false)?;
    daemon.journal_caught_up = feeds.journal.is_none();
    let (request_sender, mut request_receiver) = mpsc::channel(REQUEST_BACKLOG);
    let metrics = daemon.start_metrics(&request_sender).await;
    let service = match daemon.options.bus.clone() {
        Some(bus) => {
            daemon
                .start_service(bus, request_sender, &mut request_receiver, &mut feeds)
                .await?
        }
        None => {
            tracing::info!("no control interface (--no-bus)");
            None
        }
    };
    let mut requests = Some(request_receiver);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_ticks = watchdog.map(|period| tokio::time::interval(period / 2));

    notify(&[NotifyState::Ready, NotifyState::Status(&daemon.status())]);
    tracing::info!("banhound started: {}", daemon.status());

    tokio::pin!(shutdown);
    loop {
        // Let the control interface in. On this current-thread runtime the D-Bus service's
        // tasks run only while this task is suspended, and while a source always has more
        // ready (a flood, a catch-up) tokio's cooperative budget suspends it only every 128
        // batches: a status request would wait seconds before it even reached the channel
        // the select below favours (tests/load.rs measures this).
        tokio::task::yield_now().await;
        let deadline = daemon.next_deadline();
        tokio::select! {
            // In this order: the watchdog is never starved by a flood of entries; expiries
            // wait while entries are pending, so catching up on old entries does not lift a
            // past ban before the failures logged during it were seen (they would count anew).
            biased;
            () = &mut shutdown => break,
            _ = hangup.recv() => {
                // Logged by reload; nobody else to tell.
                let _ = daemon.reload(&mut feeds).await;
            }
            () = tick(&mut watchdog_ticks) => notify(&[NotifyState::Watchdog]),
            request = next_request(&mut requests) => match request {
                Some(request) => daemon.answer(request, &mut feeds).await,
                None => requests = None,
            },
            // Before the sources: a flood of entries must not hold off repairing the
            // firewall or saving the state.
            () = sleep_until_some(daemon.next_reconcile()) => {
                daemon.reconcile().await;
                daemon.publish_changes();
            }
            () = sleep_until_some(daemon.enforcement.health.next_state_retry()) => {
                let active = daemon.jails.stored_bans();
                daemon.enforcement.retry_state(active);
            }
            report = daemon.enforcement.next_report() => match report {
                Report::Reapplied(report) => {
                    daemon.firewalld_reapplied(report).await;
                    daemon.publish_changes();
                }
                Report::State(report) => daemon.enforcement.state_reported(report),
            },
            // Before the sources: a new address of the host must not be banned by the
            // entries that follow it.
            changed = host::address_change(&mut address_changes) => match changed {
                Ok(()) => daemon.own_addresses_changed().await,
                Err(e) => {
                    tracing::warn!("cannot follow changes of this host's addresses any more ({e}): ignoreself uses those known now until a reload");
                    address_changes = None;
                }
            },
            change = nft_watch::next_change(&mut daemon.nft_changes) => daemon.nftables_changed(change),
            batch = fleet::next_remote(&mut daemon.fleet) => daemon.apply_remote(batch).await,
            running = auto_backend::next_change(&mut daemon.firewalld_presence) => daemon.firewalld_changed(running).await,
            () = sleep_until_some(daemon.nft_repair_at) => daemon.repair_foreign_change().await,
            message = next_batch(&mut feeds.journal) => match message {
                Some(Ok(batch)) => {
                    let failures = daemon.jails.live_failures();
                    daemon.process(&batch).await;
                    if let Some(feed) = &feeds.journal {
                        if daemon.jails.live_failures() != failures {
                            feed.failures_seen();
                        }
                        feed.recycle(batch);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(JournalError::FollowThread.into()),
            },
            changed = glob::next_change(&feeds.wildcards) => {
                daemon.wildcard_files_changed(changed, &mut feeds);
            }
            message = next_chunk(&mut feeds.files) => match message {
                Some(Ok(chunk)) => daemon.process_file_chunk(chunk).await,
                // One unreadable file must not stop the protection given by the others.
                Some(Err(e)) => {
                    tracing::error!("{e}; this file is no longer followed (fix it, then reload)");
                    daemon.following.files = daemon.following.files.saturating_sub(1);
                    daemon.update_status();
                }
                None => feeds.files = None,
            },
            () = sleep_until_some(deadline) => daemon.expire().await,
        }
        if daemon.enforcement.health.take_status_changed() {
            daemon.update_status();
        }
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    drop(metrics);
    if let Some(service) = service {
        service.stop().await;
    }
    // Unprocessed batches are dropped: their entries are after the committed positions.
    drop(feeds);
    // Bounded: a hanging action does not hold the stop up.
    std::mem::replace(&mut daemon.enforcement.actions, Actions::none())
        .shut_down()
        .await;
    if daemon.options.flush_on_stop {
        daemon.enforcement.teardown().await?;
        tracing::info!("flushed banhound's firewall objects (--flush-on-stop); bans stay in the state database");
    }
    tracing::info!("banhound stopped: {} bans in force", daemon.jails.banned());
    Ok(())
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn next_batch(feed: &mut Option<Feed>) -> Option<Result<Batch, JournalError>> {
    match feed {
        Some(feed) => feed.next().await,
        None => std::future::pending().await,
    }
}

async fn next_request(requests: &mut Option<mpsc::Receiver<Request>>) -> Option<Request> {
    match requests {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_chunk(files: &mut Option<FileFeed>) -> Option<Result<FileChunk, FileError>> {
    match files {
        Some(files) => files.next().await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Daemon {
    fn status(&self) -> String {
        let jails = self.jails.len();
        format!(
            "{jails} jail{}, {} banned, {}{}{}",
            if jails == 1 { "" } else { "s" },
            self.jails.banned(),
            match (self.following.journal, self.following.files) {
                (true, 0) => "following journal".to_string(),
                (true, n) => format!("following journal and {n} file(s)"),
                (false, 0) => "following nothing".to_string(),
                (false, n) => format!("following {n} file(s)"),
            },
            self.enforcement.health.status_text(),
            self.enforcement
                .actions
                .trouble()
                .map_or_else(String::new, |t| format!("; {t}"))
        )
    }

    fn update_status(&self) {
        notify(&[NotifyState::Status(&self.status())]);
    }

    async fn configure_backends(&mut self) -> Result<(), FirewallError> {
        let configured = self.enforcement.configure(&self.jails).await;
        match &configured {
            // Its own failure says it all; a retry that sets it up starts the watch.
            Err(e) if e.backend == BackendKind::Nftables => {}
            // Also when firewalld failed: nftables may be open and set up beside it.
            _ => self.follow_nftables(),
        }
        configured
    }

    /// Keeps the nftables change watcher with the nftables backend open now: dropped when
    /// the backend was closed (a jail switched to firewalld: a watcher of a closed backend
    /// would take a new backend's own changes, from another socket, for someone else's),
    /// started for one just opened (by a configuration or by a retry).
    pub(super) fn follow_nftables(&mut self) {
        if self.enforcement.nftables().is_none() {
            self.nft_changes = None;
        }
        self.watch_nftables();
    }

    /// Positions the journal: after the committed cursor (replaying the lookback window
    /// count-only) at start-up; right after it, without replay, on reload (the trackers
    /// already hold those failures).
    fn start_feeds(&mut self, reload: bool) -> Result<Feeds, DaemonError> {
        self.following = Following::default();
        self.jails.reset_sources();
        let journal = self.start_journal(reload)?;
        let files = self.start_files()?;
        if journal.is_none() && files.is_none() {
            tracing::warn!("no enabled jail: nothing to follow");
        }
        Ok(Feeds {
            journal,
            files,
            wildcards: self.watch_wildcards(),
        })
    }

    /// Watches where files of the wildcard `logpath`s can appear (again: directories may
    /// have appeared too).
    fn watch_wildcards(&self) -> Option<WildcardWatch> {
        WildcardWatch::new(&self.jails.wildcard_patterns())
            .inspect_err(|e| {
                tracing::warn!("cannot watch the directories of wildcard logpaths ({e}): files that appear are followed from the next reload")
            })
            .ok()
            .flatten()
    }

    /// A name appeared where a wildcard `logpath` looks: a file it now matches is followed
    /// from its start (lines older than findtime skipped), without a reload. The other files'
    /// followers restart from their committed positions, as on a reload.
    fn wildcard_files_changed(&mut self, changed: std::io::Result<()>, feeds: &mut Feeds) {
        if let Err(e) = changed {
            tracing::warn!("cannot watch the directories of wildcard logpaths any more ({e}): files that appear are followed from the next reload");
            feeds.wildcards = None;
            return;
        }
        // Watched anew before the patterns are expanded: a file created in a directory
        // that just appeared is either watched or already found.
        feeds.wildcards = self.watch_wildcards();
        let appeared = self.jails.add_appeared_files();
        if appeared.is_empty() {
            return;
        }
        for path in &appeared {
            tracing::info!("{} matches a wildcard logpath", path.display());
        }
        feeds.files = None;
        self.jails.reset_file_sources();
        match self.start_files() {
            Ok(files) => feeds.files = files,
            Err(e) => tracing::error!("{e}; files are followed again from the next reload"),
        }
        self.update_status();
    }

    /// Files continue at their stored position (same inode), else from their start. Read
    /// from their start without a stored position, lines older than their jail's findtime
    /// are skipped (the look-back); after a stored position every line is new, judged by its
    /// own date.
    fn start_files(&mut self) -> Result<Option<FileFeed>, DaemonError> {
        if self.jails.files().is_empty() {
            return Ok(None);
        }
        let now = wall_now();
        let mut list = Vec::new();
        for file in 0..self.jails.files().len() {
            let path = self.jails.files()[file].0.clone();
            let key = file_key(&path);
            let stored = self
                .enforcement
                .state()
                .read(move |db| db.cursor(&key))?
                .and_then(|p| FilePosition::decode(&p));
            tracing::info!(
                "following {} {}",
                path.display(),
                stored.map_or("from its start".to_string(), |p| format!(
                    "from offset {} (inode {})",
                    p.offset, p.inode
                ))
            );
            self.jails.position_file(file, stored, now);
            list.push((path, stored));
        }
        let feed = FileFeed::start(list)?;
        self.following.files = self.jails.files().len();
        Ok(Some(feed))
    }

    fn start_journal(&mut self, reload: bool) -> Result<Option<Feed>, DaemonError> {
        let Some(lookback) = self.jails.journal_lookback() else {
            return Ok(None);
        };
        let now = wall_now();
        let source = self.source_key.clone();
        let stored = self
            .enforcement
            .state()
            .read(move |db| db.cursor(&source))?;
        let start = match (stored, reload) {
            (Some(cursor), true) => Start::Resume {
                cursor,
                replay_since: now,
            },
            (stored, _) => Start::from_stored(stored, now, lookback),
        };
        let (feed, report) =
            Feed::start(self.journal.clone(), self.jails.matches().to_vec(), start)?;
        if let Some(warning) = report.warning() {
            tracing::warn!("{warning}");
        }
        let from = match &report {
            StartReport::Resumed { cursor_time } => {
                format!("after the stored position ({cursor_time})")
            }
            StartReport::Since(t) => format!("from {t} (no stored position)"),
            other => format!("{other:?}"),
        };
        tracing::info!("following {} {from}", self.journal);
        self.following.journal = true;
        Ok(Some(feed))
    }

    /// Puts the stored, unexpired bans back in place with their remaining time, in one batch.
    ///
    /// Bans that have expired by the wall clock are not put in the firewall, but the trackers
    /// learn where they ended in log time, back to the oldest entry the start reads again
    /// (the stored cursor's time minus the longest findtime): failures logged during such a
    /// ban and read again now (replayed, or new after a crash or a long stop) do not count,
    /// exactly as in a run that was never stopped. Those bans, and the bans of jails no longer
    /// configured, end through enforcement like any other.
    async fn restore(&mut self) -> Result<(), DaemonError> {
        let now = wall_now();
        let lookback = self.jails.longest_findtime();
        let source = self.source_key.clone();
        // Offence counts first: a restored active ban then overrides its own entry.
        let (offences, stored, expired) = self.enforcement.state().read(move |db| {
            let cursor = db.cursor(&source)?;
            let read_from = cursor
                .and_then(|c| parse_cursor(&c).ok())
                .map_or(now, |p| p.realtime.min(now));
            Ok((
                db.offences()?,
                db.bans()?,
                db.expired_after(read_from - lookback)?,
            ))
        })?;
        for (jail, target, offences, last) in offences {
            self.jails.restore_offences(&jail, target, offences, last);
        }
        for (jail, target, until) in expired {
            if let Some(jail) = self.jails.by_name_mut(&jail) {
                jail.tracker.restore_lifted(target, until);
            }
        }
        let mut restored = Vec::new();
        let mut ended: BTreeMap<(String, Lifted), Vec<IpNet>> = BTreeMap::new();
        for ban in stored {
            let Some(jail) = self.jails.by_name_mut(&ban.jail) else {
                ended
                    .entry((ban.jail.clone(), Lifted::JailRemoved))
                    .or_default()
                    .push(ban.target);
                continue;
            };
            if let Some(until) = ban.until.filter(|until| *until <= now) {
                jail.tracker.restore_lifted(ban.target, until);
                ended
                    .entry((ban.jail.clone(), Lifted::ExpiredWhileStopped))
                    .or_default()
                    .push(ban.target);
                continue;
            }
            jail.tracker.restore_ban(ban.target, ban.active());
            restored.push(ban);
        }
        for ((jail, why), targets) in ended {
            self.enforcement.record_ended(&jail, &targets, why, now);
        }
        self.enforcement.restore(&self.jails, restored, now).await;
        Ok(())
    }

    /// One batch: match, count, decide; commit bans with the cursor; then block.
    async fn process(&mut self, batch: &Batch) {
        let started = std::time::Instant::now();
        let now = wall_now();
        self.catching_up = !batch.at_end();
        if batch.at_end() {
            self.catch_up_done();
        }
        let decisions = self.jails.decide_batch(batch, now);
        let position = batch
            .cursor()
            .map(|c| (self.source_key.clone(), c.to_string()));
        self.conclude(decisions, position, batch.len(), started, now)
            .await;
    }

    /// Lines of a file: prepared (date, program, message) per jail, matched, counted.
    async fn process_file_chunk(&mut self, chunk: FileChunk) {
        let started = std::time::Instant::now();
        let now = wall_now();
        // A read fills READ_SIZE when more is waiting; the chunk is that minus a partial line.
        self.catching_up = chunk.lines.len() >= file_follow::READ_SIZE / 2;
        let Some((path, _)) = self.jails.files().get(chunk.file) else {
            return;
        };
        let position = Some((file_key(path), chunk.position.encode()));
        let (decisions, lines) = self.jails.decide_chunk(&chunk, now);
        self.conclude(decisions, position, lines, started, now)
            .await;
    }

    /// After a batch or chunk: its bans and its source position in one transaction, then
    /// the firewall, then the ban lines.
    async fn conclude(
        &mut self,
        decisions: Vec<(usize, BanDecision)>,
        position: Option<(String, String)>,
        records: usize,
        started: std::time::Instant,
        now: Timestamp,
    ) {
        let position = position.as_ref().map(|(k, v)| (k.as_str(), v.as_str()));
        let bans = decisions.len();
        let evidence: Vec<Evidence> = decisions
            .iter()
            .map(|(j, d)| Evidence {
                matched: self.jails.take_lines(*j, &d.target),
                hosts: self.jails.take_hosts(*j, d),
            })
            .collect();
        // Logged inside; a failed firewall call is retried by the next reconcile.
        let _ = self
            .enforcement
            .ban(
                &self.jails,
                &decisions,
                &evidence,
                position,
                now,
                Cause::Logs,
            )
            .await;
        tracing::debug!(
            target: "banhound::batch",
            "batch of {records} entries: {bans} ban(s), done in {} us",
            started.elapsed().as_micros()
        );
        self.jails.report_evictions();
        self.publish_changes();
    }

    fn emit(&self, event: Event) {
        // No subscriber (no bus, or not started yet) is normal.
        let _ = self.events.send(event);
    }

    /// Sends [`Event::JailChanged`] for each jail whose snapshot differs from the last one
    /// sent: one per batch at most, however many lines it held.
    fn publish_changes(&mut self) {
        if self.events.receiver_count() == 0 {
            return;
        }
        for index in 0..self.jails.len() {
            let snapshot = self.jails.snapshot(index);
            let jail = self.jails.get_mut(index);
            if jail.published.as_ref() == Some(&snapshot) {
                continue;
            }
            jail.published = Some(snapshot.clone());
            self.emit(Event::JailChanged { snapshot });
        }
    }

    /// When the earliest ban of any jail ends, as a point on tokio's clock.
    fn next_deadline(&self) -> Option<Instant> {
        let next = self.jails.next_expiry()?;
        let at = Instant::now() + next.since(wall_now());
        Some(if self.catching_up {
            at.max(Instant::now() + CATCH_UP_GRACE)
        } else {
            at
        })
    }

    /// Lifts the bans that have ended, at most `STEP` of them: the others are still due, so
    /// the loop comes back for them once pending requests are answered.
    async fn expire(&mut self) {
        // A flood's bans end together, thousands in the same second, and each lifted ban costs
        // a firewall element, two database rows, a log line and a signal: lifted at once they
        // kept the owner task (and so the control interface) busy for up to 90 ms
        // (tests/load.rs). 256 takes a few milliseconds.
        const STEP: usize = 256;
        let now = wall_now();
        let expired = self.jails.take_expired(now, STEP);
        if expired.is_empty() {
            return;
        }
        for (j, targets) in expired {
            let jail = &self.jails.get(j).settings.name;
            // Logged inside; the kernel's element timeouts lift nftables bans regardless.
            let _ = self
                .enforcement
                .lift(jail, &targets, Lifted::Expired, now)
                .await;
        }
        self.enforcement.purge_history(now);
        self.publish_changes();
    }

    /// SIGHUP or the bus (`banhound reload`, the unit's ExecReload): RELOADING=1, apply the
    /// new configuration or refuse it, READY=1. The error is for whoever asked (it is logged
    /// too): an invalid configuration is told apart so that the CLI exits 2 for it.
    async fn reload(&mut self, feeds: &mut Feeds) -> Result<(), ControlError> {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        notify(&states);
        tracing::info!("reloading the configuration");
        let result = match prepare_settings(&self.options.config) {
            Err(e) => {
                let message = format!(
                    "configuration reload refused, the running configuration stays in force: {e}"
                );
                tracing::error!("{message}");
                Err(ControlError::InvalidConfiguration(message))
            }
            Ok(prepared) => {
                let applied = self.apply(prepared, feeds).await;
                // Whatever part of it was applied, the jails may have changed.
                self.emit(Event::JailsChanged);
                match applied {
                    Err(e) => {
                        let message = format!("configuration reload failed: {e}");
                        tracing::error!("{message}");
                        Err(ControlError::Failed(message))
                    }
                    Ok(()) => {
                        tracing::info!("configuration reloaded: {}", self.status());
                        Ok(())
                    }
                }
            }
        };
        notify(&[NotifyState::Ready, NotifyState::Status(&self.status())]);
        self.publish_changes();
        result
    }

    /// A firewall failure during a reload is one more failure episode, retried by the
    /// reconcile like any other, not a reason to stop half-way: the rest of the
    /// configuration, and above all the sources (stopped at the start of the reload), must
    /// still be applied.
    async fn apply(
        &mut self,
        mut prepared: Prepared,
        feeds: &mut Feeds,
    ) -> Result<(), DaemonError> {
        let now = wall_now();
        // What was not processed yet is read again from the committed positions.
        *feeds = Feeds::default();
        if self.metrics_listen != prepared.metrics.listen {
            tracing::warn!(
                "[metrics] listen changed: the endpoint keeps its address until banhound restarts"
            );
        }
        if self.options.journal.is_none()
            && self.configured_journal_directory != prepared.daemon.journal_directory
        {
            tracing::warn!(
                "[daemon] journal_directory changed: the journal read stays {} until banhound restarts",
                self.journal
            );
        }
        if self.reconcile_interval != prepared.daemon.reconcile_interval {
            self.reconcile_interval = prepared.daemon.reconcile_interval;
            self.schedule_reconcile();
        }
        // The old actions' queued work still runs; their workers end when it is done.
        let previous = std::mem::replace(&mut self.enforcement.actions, Actions::none());
        self.enforcement.actions = prepared.start_actions(previous);
        let fleet = prepared.fleet.clone();
        auto_backend::decide(&mut self.firewalld_presence, &mut prepared).await;
        let reloaded = self.jails.reload(prepared, host::own_addresses());
        for (jail, targets) in reloaded.moved {
            // Moving to another backend: lifted here, re-applied there below.
            self.enforcement.leave_backend(&jail, &targets).await;
        }
        for (jail, targets) in reloaded.removed {
            // `lift` reports a firewall failure itself; the reload goes on either way.
            let _ = self
                .enforcement
                .lift(&jail, &targets, Lifted::JailRemoved, now)
                .await;
            tracing::info!(JAIL = %jail, "jail {jail} removed");
        }
        for jail in &reloaded.added {
            tracing::info!(JAIL = %jail, "jail {jail} added");
        }
        if let Err(e) = self.configure_backends().await {
            self.enforcement
                .health
                .firewall_failed("cannot set up the firewall", &e);
        }
        // Idempotent: refreshes every ban, which also repairs sets that were recreated.
        let entries: Vec<BanEntry> = self
            .jails
            .bans_in_force(now)
            .into_iter()
            .filter(|e| e.timeout != Some(Duration::ZERO))
            .collect();
        self.enforcement.refresh(&entries).await;
        self.configure_fleet(fleet)?;
        *feeds = self.start_feeds(true)?;
        if feeds.journal.is_none() {
            // No journal jail left: no catch-up to wait for.
            self.catch_up_done();
        }
        Ok(())
    }

    /// The journal has been read to its end since the start: the firewall may be reconciled
    /// from now on, and is at once (a failed call's retry, or a repair of someone else's
    /// change, may have waited for this).
    fn catch_up_done(&mut self) {
        if !self.journal_caught_up {
            self.journal_caught_up = true;
            self.reconcile_at = Some(Instant::now());
        }
    }

    /// When the firewall is next reconciled: a retry after a failure, else the next
    /// periodic check; never before the journal's catch-up after the start is done (see
    /// `journal_caught_up`; one runs as soon as it is).
    fn next_reconcile(&self) -> Option<Instant> {
        if !self.journal_caught_up {
            return None;
        }
        match (
            self.enforcement.health.firewall_retry_at(),
            self.reconcile_at,
        ) {
            (Some(retry), Some(at)) => Some(retry.min(at)),
            (Some(retry), None) => Some(retry),
            (None, at) => at,
        }
    }

    /// Starts (or restarts, after a reload changed it) the periodic reconcile.
    fn schedule_reconcile(&mut self) {
        self.reconcile_at = self.reconcile_interval.map(|every| Instant::now() + every);
    }

    /// Compares every backend with the bans in force and repairs it (see [`health`]).
    async fn reconcile(&mut self) {
        if !self.journal_caught_up {
            // Run as soon as the catch-up is done (`Daemon::catch_up_done`).
            return;
        }
        self.schedule_reconcile();
        let bans = self.jails.bans_in_force(wall_now());
        self.enforcement.reconcile(&bans).await;
        // A retry may have opened the nftables backend only now.
        self.follow_nftables();
    }

    /// firewalld re-applied the bans after a reload or restart (or, before its first setup,
    /// answers calls again). If anything failed meanwhile (a setup, bans applied while it
    /// was away), the repair is not left to the next retry: it runs now, and a success ends
    /// the failure episode at once.
    async fn firewalld_reapplied(&mut self, report: Reapplied) {
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
            && (self.enforcement.health.firewall_failing() || !self.enforcement.is_configured())
        {
            self.reconcile().await;
        }
    }
}

fn prepare_settings(paths: &ConfigPaths) -> Result<Prepared, DaemonError> {
    Prepared::new(config::load(paths)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_keyed_by_source() {
        assert_eq!(source_key(&JournalSource::System), "journal:system");
        assert_eq!(
            source_key(&JournalSource::Namespace("web".into())),
            "journal:namespace:web"
        );
    }
}

#[cfg(test)]
mod firewalld_jail_tests {
    use super::*;

    /// What firewalld cannot represent is a configuration error, refused before anything is
    /// changed, not a firewall failure retried for ever.
    #[test]
    fn a_jail_name_too_long_for_firewalld_is_refused_with_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("banhound.toml");
        let jail = "a-jail-name-of-21-chr";
        let text = format!(
            "[jail.{jail}]\nenabled = true\nbackend = \"{{}}\"\njournalmatch = [\"_COMM=sshd\"]\n\
             filter = {{ failregex = [\"^Failed password for \\\\S+ from <HOST>\"] }}\n"
        );
        let paths = ConfigPaths {
            defaults_dir: dir.path().join("usr"),
            config_dir: dir.path().join("etc"),
            main_file: Some(main.clone()),
        };
        std::fs::write(&main, text.replace("{}", "nftables")).unwrap();
        assert!(prepare_settings(&paths).is_ok());
        std::fs::write(&main, text.replace("{}", "firewalld")).unwrap();
        let error = prepare_settings(&paths).err().unwrap();
        assert!(error.is_invalid_configuration(), "{error}");
        assert!(error.to_string().contains(jail), "{error}");
    }
}
