//! `banhound daemon`: follows the journal and log files, decides bans, applies them,
//! survives restarts.
//!
//! One task owns all ban state (the per-jail [`Tracker`]s, the firewall backends and the
//! state database) and hands every journal entry and file line to [`Jail::decide`], the
//! engine's one record → verdict step (shared with `banhound test-filter`); the source feeds ([`feed`] for the journal, [`crate::source::file_follow`] for log files) and
//! the timers only send it events, so no lock guards ban state and every decision is made
//! in order. Unbans are driven by one `sleep_until`
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
//! by another process (another banhound) stops the start.

mod control;
pub mod feed;
mod health;
pub mod host;
pub mod logging;
mod nft_watch;
pub mod state;
pub mod state_writer;

use crate::bus::service::StartError;
use crate::bus::{Bus, ControlError, Event, Health, JailSnapshot, Lifted, Request};
use crate::config::error::ConfigError;
use crate::config::{self, ConfigPaths, DaemonSettings, JailSettings, JailSource, Settings};
use crate::display::display_target;
use crate::engine::datetime::{DateDetector, Zone};
use crate::engine::filter::{Host, Matcher};
use crate::engine::jail::{Age, FileSource, Jail, Record, Seen, Step};
use crate::engine::multiline::SourceState;
use crate::engine::prepare::{LineFormat, LinePreparer};
use crate::engine::time::{format_duration, BanTime, Timestamp};
use crate::engine::tracker::{BanDecision, Mode, Tracker, Verdict};
use crate::firewall::dispatch::Backends;
use crate::firewall::firewalld::{FirewalldBackend, FirewalldError};
use crate::firewall::nftables::ChangeWatcher;
use crate::firewall::{BackendKind, BanEntry, FirewallError};
use crate::source::file_follow::{self, FileChunk, FileError, FileFeed, FilePosition};
use crate::source::journal::{
    parse_cursor, Batch, JournalError, JournalSource, MatchError, MatchExpr, Phase, Start,
    StartReport,
};
use feed::Feed;
use ipnet::IpNet;
use sd_notify::NotifyState;
use state::{StateDb, StateError, StoredBan};
use state_writer::StateWriter;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

/// How the daemon is run.
#[derive(Clone, Debug)]
pub struct Options {
    pub config: ConfigPaths,
    /// Where the state database lives (`/var/lib/banhound`).
    pub state_dir: PathBuf,
    /// Which journal the journal jails read.
    pub journal: JournalSource,
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

/// What the daemon does with a decided record: a ban decision to enforce, or a debug line.
/// Host names are never banned (nor resolved).
fn conclude_step(jail: &str, step: Step<'_>) -> Option<BanDecision> {
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
    let ip = match failure.host {
        Host::Ip(ip) => display_target(&IpNet::from(ip)),
        Host::Net(net) => display_target(&net),
        Host::Name(_) => return None,
    };
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

/// Where a ban came from; decides its log line and the reason its `Banned` signal gives.
#[derive(Clone, Copy, Debug)]
enum BanOrigin {
    Logs,
    Manual { caller_uid: u32 },
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

/// How many events may wait for the bus's signal task; a slower task loses the oldest
/// (signals are notifications, the state stays queryable).
const EVENT_BACKLOG: usize = 1024;
/// A jail that keeps hitting `max_tracked` is reported at most this often.
const EVICTION_REPORT_EVERY: Duration = Duration::from_secs(60);
/// How many control requests may wait for the owner task.
const REQUEST_BACKLOG: usize = 64;
/// How long connecting to the bus and taking the name may delay READY=1.
const BUS_START_TIMEOUT: Duration = Duration::from_secs(15);

/// The jails the daemon runs, validated against what this daemon supports, before anything
/// running is touched (so a reload can refuse them without side effects).
struct Prepared {
    daemon: DaemonSettings,
    jails: Vec<JailSettings>,
    /// The journal matches of the journal jails, and for each the index of its jail.
    matches: Vec<MatchExpr>,
    journal_jails: Vec<usize>,
    /// Each followed file, with the indexes of the jails reading it.
    files: Vec<(PathBuf, Vec<usize>)>,
}

fn prepare(settings: Settings) -> Result<Prepared, DaemonError> {
    let mut jails = Vec::new();
    let mut matches = Vec::new();
    let mut journal_jails = Vec::new();
    let mut files: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for jail in settings.jails.into_iter().filter(|j| j.enabled) {
        let index = jails.len();
        match &jail.source {
            JailSource::Files { paths } => {
                for path in paths {
                    match files.iter_mut().find(|(p, _)| p == path) {
                        Some((_, readers)) => readers.push(index),
                        None => files.push((path.clone(), vec![index])),
                    }
                }
            }
            JailSource::Journal { matches: words } => {
                let expr = MatchExpr::parse(words).map_err(|source| DaemonError::Match {
                    jail: jail.name.clone(),
                    source,
                })?;
                matches.push(expr);
                journal_jails.push(index);
            }
        }
        // What firewalld cannot represent is refused with the configuration, before anything
        // is changed (a firewall that does not answer is retried instead).
        if jail.backend == BackendKind::Firewalld {
            FirewalldBackend::check_jail(&jail.rules).map_err(|source| DaemonError::Backend {
                jail: jail.name.clone(),
                source,
            })?;
        }
        jails.push(jail);
    }
    Ok(Prepared {
        daemon: settings.daemon,
        jails,
        matches,
        journal_jails,
        files,
    })
}

/// The key of a file's position in the state database.
fn file_key(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// The running sources; replaced as a whole on reload.
#[derive(Default)]
struct Feeds {
    journal: Option<Feed>,
    files: Option<FileFeed>,
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

/// The ban state and everything that changes it. Owned by one task.
struct Daemon {
    options: Options,
    source_key: String,
    jails: Vec<JailSettings>,
    matches: Vec<MatchExpr>,
    journal_jails: Vec<usize>,
    files: Vec<(PathBuf, Vec<usize>)>,
    /// Per (jail, file): what that jail remembers of that file (date detector, newest line,
    /// multi-line state), made when the file's position is known ([`FileSource::new`]).
    file_sources: HashMap<(usize, usize), FileSource>,
    /// Per journal jail: what earlier entries said, for multi-line filters.
    journal_multiline: HashMap<usize, SourceState>,
    zone: Zone,
    trackers: HashMap<String, Tracker>,
    backends: Backends,
    /// The state database, on its own thread.
    state: StateWriter,
    /// Changes waiting in memory, as the state writer last reported.
    unsaved_changes: usize,
    own_addresses: Vec<IpAddr>,
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
    /// Bans, unbans and counter changes, for the control interface's signals.
    events: broadcast::Sender<Event>,
    /// The last snapshot of each jail sent as [`Event::JailChanged`], so only changes are.
    published: HashMap<String, JailSnapshot>,
    /// Per jail: its ignore list as changed over the control interface (the configured
    /// `ignoreip` plus additions minus removals). Dropped at the next reload.
    ignore_overrides: HashMap<String, Vec<IpNet>>,
    /// `[daemon] reconcile_interval`: `None` is off.
    reconcile_interval: Option<Duration>,
    /// The next periodic reconcile of the firewall.
    reconcile_at: Option<Instant>,
    /// A firewall call failed and no reconcile has succeeded since.
    firewall_trouble: Option<health::Trouble>,
    /// The state database could not be written; changes wait in memory.
    state_trouble: Option<health::Trouble>,
    /// A retry of the state database was sent and has not been answered yet.
    state_retrying: bool,
    /// The health as the bus shows it.
    health: watch::Sender<Health>,
    /// Others' changes to banhound's nftables table ([`nft_watch`]), and when the burst
    /// being settled is repaired.
    nft_changes: Option<ChangeWatcher>,
    nft_repair_at: Option<Instant>,
    /// Per jail: evictions reported so far, and when last.
    evictions_reported: HashMap<String, (u64, Option<Instant>)>,
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
pub async fn run(options: Options, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    // Installed first: SIGHUP's default action would end the process during start-up.
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signal)?;
    let prepared = prepare(config::load(&options.config)?)?;
    let state = StateWriter::start(StateDb::open(&options.state_dir)?)?;
    // Subscribed before the addresses are read, so no change falls in between.
    let mut address_changes = host::AddressWatch::open()
        .inspect_err(|e| {
            tracing::warn!("cannot follow changes of this host's addresses ({e}): ignoreself uses those found at start and at each reload")
        })
        .ok();
    let own_addresses = host::own_addresses();
    let mut daemon = Daemon {
        source_key: source_key(&options.journal),
        trackers: prepared
            .jails
            .iter()
            .map(|j| {
                (
                    j.name.clone(),
                    Tracker::new(j.policy.to_policy(&own_addresses)),
                )
            })
            .collect(),
        jails: prepared.jails,
        matches: prepared.matches,
        journal_jails: prepared.journal_jails,
        files: prepared.files,
        file_sources: HashMap::new(),
        journal_multiline: HashMap::new(),
        // Dates without a zone in files are local time, as syslog writes them.
        zone: Zone::parse("local").unwrap_or(Zone::Utc),
        backends: Backends::default(),
        state,
        unsaved_changes: 0,
        own_addresses,
        following: Following::default(),
        catching_up: false,
        journal_caught_up: false,
        started: wall_now(),
        events: broadcast::channel(EVENT_BACKLOG).0,
        published: HashMap::new(),
        ignore_overrides: HashMap::new(),
        reconcile_interval: prepared.daemon.reconcile_interval,
        reconcile_at: None,
        firewall_trouble: None,
        state_trouble: None,
        state_retrying: false,
        health: watch::channel(Health::default()).0,
        nft_changes: None,
        nft_repair_at: None,
        evictions_reported: HashMap::new(),
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
        daemon.firewall_failed("cannot set up the firewall", &e);
    }
    daemon.restore().await?;
    daemon.schedule_reconcile();
    let mut feeds = daemon.start_feeds(false)?;
    daemon.journal_caught_up = feeds.journal.is_none();
    let (mut requests, service) = match daemon.options.bus.clone() {
        Some(bus) => daemon.start_service(bus, &mut feeds).await?,
        None => {
            tracing::info!("no control interface (--no-bus)");
            (None, None)
        }
    };
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
            () = sleep_until_some(daemon.next_state_retry()) => daemon.retry_state(),
            report = daemon.backends.next_reapplied() => {
                daemon.firewalld_reapplied(report).await;
                daemon.publish_changes();
            }
            report = daemon.state.next_report() => daemon.state_reported(report),
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
            () = sleep_until_some(daemon.nft_repair_at) => daemon.repair_foreign_change().await,
            message = next_batch(&mut feeds.journal) => match message {
                Some(Ok(batch)) => {
                    let before = daemon.live_failures();
                    daemon.process(batch).await;
                    if daemon.live_failures() != before {
                        if let Some(feed) = &feeds.journal {
                            feed.failures_seen();
                        }
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(JournalError::FollowThread.into()),
            },
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
    }

    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    if let Some(service) = service {
        service.stop().await;
    }
    // Unprocessed batches are dropped: their entries are after the committed positions.
    drop(feeds);
    if daemon.options.flush_on_stop {
        daemon.backends.teardown().await?;
        tracing::info!("flushed banhound's firewall objects (--flush-on-stop); bans stay in the state database");
    }
    tracing::info!("banhound stopped: {} bans in force", daemon.banned());
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
    fn banned(&self) -> usize {
        self.trackers
            .values()
            .map(|t| t.active_bans().count())
            .sum()
    }

    fn status(&self) -> String {
        let jails = self.jails.len();
        format!(
            "{jails} jail{}, {} banned, {}{}",
            if jails == 1 { "" } else { "s" },
            self.banned(),
            match (self.following.journal, self.following.files) {
                (true, 0) => "following journal".to_string(),
                (true, n) => format!("following journal and {n} file(s)"),
                (false, 0) => "following nothing".to_string(),
                (false, n) => format!("following {n} file(s)"),
            },
            self.health_status()
        )
    }

    fn update_status(&self) {
        notify(&[NotifyState::Status(&self.status())]);
    }

    async fn configure_backends(&mut self) -> Result<(), FirewallError> {
        let rules: Vec<(BackendKind, _)> = self
            .jails
            .iter()
            .map(|j| (j.backend, j.rules.clone()))
            .collect();
        let configured = self.backends.configure(&rules).await;
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
        if self.backends.nftables().is_none() {
            self.nft_changes = None;
        }
        self.watch_nftables();
    }

    /// Positions the journal: after the committed cursor (replaying the lookback window
    /// count-only) at start-up; right after it, without replay, on reload (the trackers
    /// already hold those failures).
    fn start_feeds(&mut self, reload: bool) -> Result<Feeds, DaemonError> {
        self.following = Following::default();
        self.file_sources.clear();
        self.journal_multiline.clear();
        let journal = self.start_journal(reload)?;
        let files = self.start_files()?;
        if journal.is_none() && files.is_none() {
            tracing::warn!("no enabled jail: nothing to follow");
        }
        Ok(Feeds { journal, files })
    }

    /// Files continue at their stored position (same inode), else from their start. Read
    /// from their start without a stored position, lines older than their jail's findtime
    /// are skipped (the look-back); after a stored position every line is new, judged by its
    /// own date.
    fn start_files(&mut self) -> Result<Option<FileFeed>, DaemonError> {
        if self.files.is_empty() {
            return Ok(None);
        }
        let now = wall_now();
        let mut list = Vec::new();
        for (file, (path, readers)) in self.files.iter().enumerate() {
            let key = file_key(path);
            let stored = self
                .state
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
            for &j in readers {
                let filter = &self.jails[j].filter;
                let preparer = LinePreparer::new(
                    DateDetector::new(self.zone.clone()).with_pattern(filter.datepattern.clone()),
                    filter.format,
                    &filter.identifiers,
                );
                let age = match stored {
                    None => Age::LookBack(now),
                    Some(_) => Age::Continued,
                };
                self.file_sources
                    .insert((j, file), FileSource::new(preparer, age));
            }
            list.push((path.clone(), stored));
        }
        let feed = FileFeed::start(list)?;
        self.following.files = self.files.len();
        Ok(Some(feed))
    }

    fn start_journal(&mut self, reload: bool) -> Result<Option<Feed>, DaemonError> {
        if self.journal_jails.is_empty() {
            return Ok(None);
        }
        let now = wall_now();
        let lookback = self
            .journal_jails
            .iter()
            .map(|&j| self.jails[j].policy.findtime)
            .max()
            .unwrap_or_default();
        let source = self.source_key.clone();
        let stored = self.state.read(move |db| db.cursor(&source))?;
        let start = match (stored, reload) {
            (Some(cursor), true) => Start::Resume {
                cursor,
                replay_since: now,
            },
            (stored, _) => Start::from_stored(stored, now, lookback),
        };
        let (feed, report) =
            Feed::start(self.options.journal.clone(), self.matches.clone(), start)?;
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
        tracing::info!("following {} {from}", self.options.journal);
        self.following.journal = true;
        Ok(Some(feed))
    }

    /// Puts the stored, unexpired bans back in place with their remaining time, in one batch.
    ///
    /// Bans that have expired by the wall clock are not put in the firewall, but the trackers
    /// learn where they ended in log time, back to the oldest entry the start reads again
    /// (the stored cursor's time minus the longest findtime): failures logged during such a
    /// ban and read again now (replayed, or new after a crash or a long stop) do not count,
    /// exactly as in a run that was never stopped.
    async fn restore(&mut self) -> Result<(), DaemonError> {
        let now = wall_now();
        let lookback = self
            .jails
            .iter()
            .map(|j| j.policy.findtime)
            .max()
            .unwrap_or_default();
        let source = self.source_key.clone();
        // Offence counts first: a restored active ban then overrides its own entry.
        let (offences, stored, expired) = self.state.read(move |db| {
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
            if let Some(tracker) = self.trackers.get_mut(&jail) {
                tracker.restore_offences(target, offences, last);
            }
        }
        for (jail, target, until) in expired {
            if let Some(tracker) = self.trackers.get_mut(&jail) {
                tracker.restore_lifted(target, until);
            }
        }
        let mut entries = Vec::new();
        let mut ended: BTreeMap<(String, Lifted), Vec<IpNet>> = BTreeMap::new();
        for ban in stored {
            let Some(tracker) = self.trackers.get_mut(&ban.jail) else {
                ended
                    .entry((ban.jail.clone(), Lifted::JailRemoved))
                    .or_default()
                    .push(ban.target);
                continue;
            };
            if let Some(until) = ban.until.filter(|until| *until <= now) {
                tracker.restore_lifted(ban.target, until);
                ended
                    .entry((ban.jail.clone(), Lifted::ExpiredWhileStopped))
                    .or_default()
                    .push(ban.target);
                continue;
            }
            tracker.restore_ban(ban.target, ban.active());
            let timeout = ban.until.map(|until| until.since(now));
            // One line per ban at debug level: a restart with 100,000 bans must not spend half
            // its start-up writing them (the summary below says how many were restored).
            tracing::debug!(
                JAIL = %ban.jail,
                IP = %display_target(&ban.target),
                "Restored ban of {} in jail {} ({} left)",
                display_target(&ban.target),
                ban.jail,
                timeout.map_or_else(|| "permanent".to_string(), |t| BanTime::For(t).to_string())
            );
            entries.push(BanEntry {
                jail: ban.jail,
                target: ban.target,
                timeout,
            });
        }
        for ((jail, reason), targets) in ended {
            self.state.end_bans(&jail, &targets, reason, now);
            for target in &targets {
                tracing::info!(JAIL = %jail, IP = %display_target(target), "Unbanned {} in jail {jail} ({})", display_target(target), reason.log_text());
            }
        }
        match self.backends.ban(&entries).await {
            Ok(()) => tracing::info!("restored {} ban(s)", entries.len()),
            // Kept in the trackers: the retry's reconcile puts them in place.
            Err(e) => self.firewall_failed(&format!("cannot restore {} ban(s)", entries.len()), &e),
        }
        Ok(())
    }

    /// One batch: match, count, decide; commit bans with the cursor; then block.
    /// Failures counted live so far, all jails together: when a batch adds to it, an attack
    /// is under way and the journal feed follows closely ([`Feed::failures_seen`]).
    fn live_failures(&self) -> u64 {
        self.trackers.values().map(|t| t.totals().failures).sum()
    }

    async fn process(&mut self, batch: Batch) {
        let started = std::time::Instant::now();
        let now = wall_now();
        self.catching_up = !batch.at_end();
        if batch.at_end() {
            self.catch_up_done();
        }
        let mut decisions: Vec<(usize, BanDecision)> = Vec::new();
        {
            let mut matchers: Vec<Option<Matcher<'_>>> = self.jails.iter().map(|_| None).collect();
            // fail2ban filters (after-date format) see an entry as "HOST IDENT[PID]: MESSAGE",
            // as on fail2ban's systemd backend: their session ids are in that prefix.
            let mut rendered = Vec::new();
            for entry in batch.iter() {
                for &m in entry.jails {
                    let Some(&j) = self.journal_jails.get(m) else {
                        continue;
                    };
                    let jail = &self.jails[j];
                    let matcher = matchers[j].get_or_insert_with(|| jail.filter.filter.matcher());
                    let message = if jail.filter.format == LineFormat::AfterDate {
                        entry.entry.render_syslog(&mut rendered);
                        rendered.as_slice()
                    } else {
                        entry.entry.message
                    };
                    let Some(tracker) = self.trackers.get_mut(&jail.name) else {
                        continue;
                    };
                    let mode = match entry.phase {
                        Phase::Replay => Mode::Replay,
                        Phase::New => Mode::Live,
                    };
                    let record = Record::Entry {
                        state: self.journal_multiline.entry(j).or_default(),
                        message,
                        origin: entry.entry.origin(),
                        time: entry.entry.timestamp,
                    };
                    let mut running = Jail { matcher, tracker };
                    let step = running.decide(record, mode, now);
                    // A replayed entry only rebuilds its window: it was logged (and any ban
                    // it led to decided) when it was new.
                    if mode == Mode::Replay {
                        continue;
                    }
                    if let Some(decision) = conclude_step(&jail.name, step) {
                        decisions.push((j, decision));
                    }
                }
            }
        }
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
        let Some((path, readers)) = self.files.get(chunk.file) else {
            return;
        };
        let mut decisions: Vec<(usize, BanDecision)> = Vec::new();
        let mut lines = 0;
        for &j in readers {
            let jail = &self.jails[j];
            let mut matcher = jail.filter.filter.matcher();
            let (Some(tracker), Some(source)) = (
                self.trackers.get_mut(&jail.name),
                self.file_sources.get_mut(&(j, chunk.file)),
            ) else {
                continue;
            };
            let mut running = Jail {
                matcher: &mut matcher,
                tracker,
            };
            for line in chunk.lines.split_inclusive(|&b| b == b'\n') {
                lines += 1;
                let record = Record::Line {
                    source: &mut *source,
                    line,
                };
                let step = running.decide(record, Mode::Live, now);
                if let Some(decision) = conclude_step(&jail.name, step) {
                    decisions.push((j, decision));
                }
            }
        }
        let position = Some((file_key(path), chunk.position.encode()));
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
        // Logged inside; a failed firewall call is retried by the next reconcile.
        let _ = self
            .enforce(&decisions, position, now, BanOrigin::Logs)
            .await;
        tracing::debug!(
            target: "banhound::batch",
            "batch of {records} entries: {bans} ban(s), done in {} us",
            started.elapsed().as_micros()
        );
        self.report_evictions();
        self.publish_changes();
    }

    /// Says when a jail hit `max_tracked` and forgot addresses, at most once a minute per
    /// jail (a flood evicts in every batch), with the count since the last report.
    fn report_evictions(&mut self) {
        let now = Instant::now();
        for (jail, tracker) in &self.trackers {
            let evicted = tracker.totals().evicted;
            let (reported, at) = self
                .evictions_reported
                .entry(jail.clone())
                .or_insert((0, None));
            if evicted <= *reported || at.is_some_and(|at| now < at + EVICTION_REPORT_EVERY) {
                continue;
            }
            tracing::warn!(
                JAIL = %jail,
                EVICTED = evicted - *reported,
                "jail {jail} reached max_tracked ({}): forgot the failures of {} address(es) whose last failure was oldest ({evicted} since start); raise max_tracked if this is not a flood",
                crate::display::thousands(tracker.policy().max_tracked as u64),
                crate::display::thousands(evicted - *reported),
            );
            *reported = evicted;
            *at = Some(now);
        }
    }

    /// The one path of every ban, decided from the logs or ordered over the bus: sent to be
    /// persisted (with the source position it was derived up to, in one transaction),
    /// applied to the firewall, logged, announced.
    async fn enforce(
        &mut self,
        decisions: &[(usize, BanDecision)],
        position: Option<(&str, &str)>,
        now: Timestamp,
        origin: BanOrigin,
    ) -> Result<(), FirewallError> {
        let stored: Vec<StoredBan> = decisions
            .iter()
            .map(|(j, d)| StoredBan {
                jail: self.jails[*j].name.clone(),
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
        // Sent, not waited for (the writer thread commits it with the position, in order):
        // blocking matters more than remembering, and the ban goes to the firewall
        // regardless of the disk.
        self.state.commit_batch(stored, position, now);
        if decisions.is_empty() {
            return Ok(());
        }
        let applied = self.backends.ban(&entries).await;
        if let Err(e) = &applied {
            self.firewall_failed(&format!("cannot apply {} ban(s)", entries.len()), e);
        }
        for (j, d) in decisions {
            let jail = &self.jails[*j];
            let (message, reason, caller) = match origin {
                BanOrigin::Logs => (
                    ban_message(&jail.name, d),
                    format!(
                        "{} failures within {}",
                        d.failures,
                        format_duration(jail.policy.findtime)
                    ),
                    None,
                ),
                BanOrigin::Manual { caller_uid } => (
                    manual_ban_message(&jail.name, d, caller_uid),
                    format!("manual (uid {caller_uid})"),
                    Some(caller_uid),
                ),
            };
            tracing::info!(
                JAIL = %jail.name,
                IP = %display_target(&d.target),
                BANTIME = %d.bantime,
                FAILURES = d.failures,
                OFFENCE = d.offence,
                CALLER_UID = caller,
                "{message}"
            );
            self.emit(Event::Banned {
                jail: jail.name.clone(),
                target: d.target,
                until: d.until(),
                reason,
            });
        }
        self.update_status();
        applied
    }

    /// The one path of every unban (the tracker has already dropped the targets): removed
    /// from the firewall and the database, logged, announced.
    async fn lift(
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
            self.firewall_failed(
                &format!("cannot lift {} ban(s) of jail {jail}", targets.len()),
                e,
            );
        }
        self.state.end_bans(jail, targets, why, now);
        for target in targets {
            let text = display_target(target);
            tracing::info!(JAIL = %jail, IP = %text, "Unbanned {text} in jail {jail} ({})", why.log_text());
            self.emit(Event::Unbanned {
                jail: jail.to_string(),
                target: *target,
                why,
            });
        }
        self.update_status();
        removed
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
        let snapshots: Vec<JailSnapshot> =
            self.jails.iter().filter_map(|j| self.snapshot(j)).collect();
        for snapshot in snapshots {
            if self.published.get(&snapshot.name) == Some(&snapshot) {
                continue;
            }
            self.published
                .insert(snapshot.name.clone(), snapshot.clone());
            self.emit(Event::JailChanged { snapshot });
        }
    }

    /// When the earliest ban of any jail ends, as a point on tokio's clock.
    fn next_deadline(&self) -> Option<Instant> {
        let next = self
            .trackers
            .values()
            .filter_map(Tracker::next_expiry)
            .min()?;
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
        let mut budget = STEP;
        let expired: Vec<(String, Vec<IpNet>)> = self
            .trackers
            .iter_mut()
            .map(|(jail, tracker)| {
                let targets = tracker.take_expired_at_most(now, budget);
                budget -= targets.len();
                (jail.clone(), targets)
            })
            .filter(|(_, targets)| !targets.is_empty())
            .collect();
        if expired.is_empty() {
            return;
        }
        for (jail, targets) in expired {
            // Logged inside; the kernel's element timeouts lift nftables bans regardless.
            let _ = self.lift(&jail, &targets, Lifted::Expired, now).await;
        }
        self.state.purge_history(now);
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
                self.published.clear();
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

    async fn apply(&mut self, prepared: Prepared, feeds: &mut Feeds) -> Result<(), DaemonError> {
        let now = wall_now();
        // What was not processed yet is read again from the committed positions.
        *feeds = Feeds::default();
        self.own_addresses = host::own_addresses();
        self.ignore_overrides.clear();
        let kept: HashMap<&str, BackendKind> = prepared
            .jails
            .iter()
            .map(|j| (j.name.as_str(), j.backend))
            .collect();
        let old_jails: Vec<(String, BackendKind)> = self
            .jails
            .iter()
            .map(|j| (j.name.clone(), j.backend))
            .collect();
        for (name, old_backend) in old_jails {
            let Some(tracker) = self.trackers.get(&name) else {
                continue;
            };
            let targets: Vec<IpNet> = tracker.active_bans().map(|(t, _)| *t).collect();
            match kept.get(name.as_str()) {
                Some(new_backend) if *new_backend == old_backend => continue,
                // Moving to another backend: lift here, re-applied there below.
                Some(_) => {
                    let lifted = self.backends.unban(&name, &targets).await;
                    self.keep_going("cannot lift the bans of a jail moving backend", lifted);
                }
                None => {
                    self.trackers.remove(&name);
                    // `lift` reports a firewall failure itself (one more failure episode,
                    // retried by the reconcile); the reload goes on either way.
                    let _ = self.lift(&name, &targets, Lifted::JailRemoved, now).await;
                    tracing::info!(JAIL = %name, "jail {name} removed");
                }
            }
        }
        for jail in &prepared.jails {
            let policy = jail.policy.to_policy(&self.own_addresses);
            match self.trackers.get_mut(&jail.name) {
                Some(tracker) => tracker.set_policy(policy),
                None => {
                    tracing::info!(JAIL = %jail.name, "jail {} added", jail.name);
                    self.trackers
                        .insert(jail.name.clone(), Tracker::new(policy));
                }
            }
        }
        if self.reconcile_interval != prepared.daemon.reconcile_interval {
            self.reconcile_interval = prepared.daemon.reconcile_interval;
            self.schedule_reconcile();
        }
        self.jails = prepared.jails;
        self.matches = prepared.matches;
        self.journal_jails = prepared.journal_jails;
        self.files = prepared.files;
        let configured = self.configure_backends().await;
        self.keep_going("cannot set up the firewall", configured);
        // Idempotent: refreshes every ban, which also repairs sets that were recreated.
        let entries: Vec<BanEntry> = self
            .bans_in_force(now)
            .into_iter()
            .filter(|e| e.timeout != Some(Duration::ZERO))
            .collect();
        let banned = self.backends.ban(&entries).await;
        self.keep_going(&format!("cannot apply {} ban(s)", entries.len()), banned);
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

    /// A firewall failure during a reload is one more failure episode, retried by the
    /// reconcile like any other, not a reason to stop half-way: the rest of the
    /// configuration, and above all the sources (stopped at the start of the reload), must
    /// still be applied.
    fn keep_going(&mut self, what: &str, result: Result<(), FirewallError>) {
        if let Err(e) = result {
            self.firewall_failed(what, &e);
        }
    }
}

fn prepare_settings(paths: &ConfigPaths) -> Result<Prepared, DaemonError> {
    prepare(config::load(paths)?)
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
            let message = ban_message("sshd", d);
            match matcher.match_line(message.as_bytes()) {
                Outcome::Failure(f) => {
                    assert_eq!(f.host, Host::Ip(addr.parse().unwrap()), "{message}")
                }
                other => panic!("recidive does not read {message:?}: {other:?}"),
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
