//! Jail actions: what happens besides the firewall when an address is banned or unbanned
//! (a mail with whois and the matched lines, a command, a webhook, a fail2ban `action.d`
//! file).
//!
//! Actions never stand in the way of banning. The daemon's owner task only calls
//! [`Actions::banned`] / [`Actions::lifted`], which decide admission on the spot (a per-action
//! rate limit) and hand the event to that action's bounded queue without waiting; the work
//! runs on separate tasks, a few per action ([`RUNNING_PER_ACTION`]), each program with a time
//! limit. A flood over an action's `rate_limit` does not start a process per ban: a mail
//! action collects the excess into one digest mail per `rate_window`, other kinds count what they
//! dropped and say so in the log. A full queue drops and counts the same way. Failures are
//! logged once per episode (the first failure, then "works again"), with the action's name.
//!
//! Bans restored at start are not events here (they were alerted when they were new), except
//! for fail2ban actions, which fail2ban gives them with `<restored>` 1 unless the file sets
//! `norestored` (its mail actions do); their unbans are events.
//!
//! A fail2ban action runs like fail2ban runs it: one script at a time, in order, its
//! `actionstart` before any event and its `actionstop` after the last one (when its jail goes
//! or its file changes in a reload, and at shutdown, which waits [`SHUTDOWN_WAIT`] at most;
//! other kinds' events still queued then are not run, and the log says how many).
//! An action unchanged by a reload keeps running, without a stop and a start; a changed one's
//! new scripts start after the old ones stopped.
//!
//! Kinds, one module each: [`command`], [`mail`] (with [`whois`]), [`webhook`], [`fail2ban`].
//! Values from logs and whois are attacker-controlled and pass through
//! [`template::neutralise`] before any of them sees them.

pub mod command;
pub mod config;
pub mod fail2ban;
pub mod lines;
pub mod mail;
pub mod process;
pub mod template;
pub mod webhook;
pub mod whois;

use crate::display::display_target;
use crate::engine::time::{BanTime, Timestamp};
use config::{ActionKind, ActionSpec};
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use template::Placeholder;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Events waiting per action; more are dropped (and counted).
pub const QUEUE_PER_ACTION: usize = 256;
/// Programs of one action running at once: a hanging one holds at most this many.
pub const RUNNING_PER_ACTION: usize = 4;
/// Bans a digest lists; more are counted in it.
pub const DIGEST_ENTRIES: usize = 1000;
/// How long a stopping daemon waits for its fail2ban actions' queued work and `actionstop`s:
/// a hanging action must not hold the stop up (its programs are killed when the daemon ends).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// A ban, as actions see it.
#[derive(Clone, Debug)]
pub struct BanRecord {
    pub jail: String,
    pub target: IpNet,
    pub at: Timestamp,
    pub bantime: BanTime,
    pub failures: u32,
    pub offence: u32,
    /// The matched lines, neutralised ([`lines`]); empty for a manual ban.
    pub lines: Vec<String>,
    /// The user the filter named (`<F-USER>`), neutralised.
    pub user: Option<String>,
    /// Put back at start-up (only fail2ban actions that want them see these).
    pub restored: bool,
}

/// An unban, as actions see it.
#[derive(Clone, Debug)]
pub struct UnbanRecord {
    pub jail: String,
    pub target: IpNet,
    pub at: Timestamp,
    /// Why it ended (`expired`, `manual`, …).
    pub reason: &'static str,
}

/// What an action is run for.
#[derive(Clone, Debug)]
pub enum ActionEvent {
    Ban(BanRecord),
    Unban(UnbanRecord),
}

impl ActionEvent {
    pub fn jail(&self) -> &str {
        match self {
            ActionEvent::Ban(b) => &b.jail,
            ActionEvent::Unban(u) => &u.jail,
        }
    }

    pub fn target(&self) -> &IpNet {
        match self {
            ActionEvent::Ban(b) => &b.target,
            ActionEvent::Unban(u) => &u.target,
        }
    }

    /// A placeholder's text for this event (already safe: lines were neutralised when kept).
    pub fn value(&self, placeholder: Placeholder, hostname: &str) -> String {
        match (placeholder, self) {
            (Placeholder::Jail, e) => e.jail().to_string(),
            (Placeholder::Ip, e) => display_target(e.target()),
            (Placeholder::Event, ActionEvent::Ban(_)) => "ban".into(),
            (Placeholder::Event, ActionEvent::Unban(_)) => "unban".into(),
            (Placeholder::Failures, ActionEvent::Ban(b)) => b.failures.to_string(),
            (Placeholder::Offence, ActionEvent::Ban(b)) => b.offence.to_string(),
            (Placeholder::Bantime, ActionEvent::Ban(b)) => b.bantime.to_string(),
            (Placeholder::Time, ActionEvent::Ban(b)) => b.at.to_rfc3339(),
            (Placeholder::Time, ActionEvent::Unban(u)) => u.at.to_rfc3339(),
            (Placeholder::Until, ActionEvent::Ban(b)) => b
                .bantime
                .until(b.at)
                .map_or_else(|| "never".to_string(), Timestamp::to_rfc3339),
            (Placeholder::Lines, ActionEvent::Ban(b)) => b.lines.join("\n"),
            (Placeholder::User, ActionEvent::Ban(b)) => b.user.clone().unwrap_or_default(),
            (Placeholder::Reason, ActionEvent::Unban(u)) => u.reason.to_string(),
            (Placeholder::Hostname, _) => hostname.to_string(),
            (
                Placeholder::Failures
                | Placeholder::Offence
                | Placeholder::Bantime
                | Placeholder::Until
                | Placeholder::Lines
                | Placeholder::User,
                ActionEvent::Unban(_),
            )
            | (Placeholder::Reason, ActionEvent::Ban(_)) => String::new(),
        }
    }
}

/// One unit of work for an action.
enum Job {
    Event(ActionEvent),
    /// The bans over `rate_limit` of one window, and how many more there were.
    Digest {
        bans: Vec<BanRecord>,
        more: u64,
    },
    /// A fail2ban action's `actionstop` (each is loaded for one jail); its `actionstart` is
    /// the first thing its worker runs ([`Prologue`]).
    Stop,
}

/// What a fail2ban action's worker does before its first job.
struct Prologue {
    /// The same action of the configuration before a reload: its worker must have ended
    /// (its queue run, its `actionstop` done) before this one runs anything.
    after: Option<mpsc::Receiver<()>>,
    /// Run `actionstart` (not for an action a reload left unchanged: it never stopped).
    start: bool,
}

/// How an action is doing, for the log, `banhound status` and the bus. The counters are
/// the action's, over every jail that names it, since the daemon started (a reload keeps
/// them for an action of the same name).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionHealth {
    pub name: String,
    /// `command`, `mail`, `webhook` or `fail2ban`.
    pub kind: &'static str,
    /// Runs that ended (successful or not): events, digests, start, stop and check scripts.
    pub runs: u64,
    pub failures: u64,
    /// The error of the current failure episode, if the last run failed.
    pub failing: Option<String>,
    /// The most recent error, also after the action worked again.
    pub last_error: Option<String>,
    /// Jobs waiting in its queue now (not counting those running).
    pub queued: u64,
    /// Events not run: over `rate_limit` (without a digest) or a full queue.
    pub dropped: u64,
}

/// Admission and health of one action, shared by the owner task and the workers.
struct Shared {
    spec: ActionSpec,
    hostname: Arc<str>,
    state: Mutex<State>,
    /// A reload kept this fail2ban action unchanged: its successor goes on without a stop.
    kept: std::sync::atomic::AtomicBool,
}

struct State {
    window_start: Instant,
    admitted_in_window: u32,
    digest: Vec<BanRecord>,
    digest_more: u64,
    /// Dropped since last reported in the log.
    dropped_unreported: u64,
    health: ActionHealth,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker that panicked mid-update leaves counters at worst slightly off.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether an event may run now; if not, it goes into the digest or is counted.
    fn admit(&self, event: &ActionEvent) -> bool {
        let Some(limit) = self.spec.rate_limit else {
            return true;
        };
        let mut state = self.lock();
        let now = Instant::now();
        if now >= state.window_start + self.spec.rate_window {
            state.window_start = now;
            state.admitted_in_window = 0;
        }
        if state.admitted_in_window < limit {
            state.admitted_in_window += 1;
            return true;
        }
        match (event, self.spec.kind.digests()) {
            (ActionEvent::Ban(ban), true) if state.digest.len() < DIGEST_ENTRIES => {
                let mut ban = ban.clone();
                // One line per ban is enough in a list of up to a thousand.
                ban.lines.truncate(1);
                state.digest.push(ban);
            }
            (ActionEvent::Ban(_), true) => state.digest_more += 1,
            _ => {
                state.dropped_unreported += 1;
                state.health.dropped += 1;
            }
        }
        false
    }

    fn dropped_by_full_queue(&self) {
        let mut state = self.lock();
        state.dropped_unreported += 1;
        state.health.dropped += 1;
    }

    /// Ends a window: the digest to send, and the drops to report.
    fn take_window(&self, closing: bool) -> (Option<Job>, u64) {
        let mut state = self.lock();
        if !closing && Instant::now() < state.window_start + self.spec.rate_window {
            return (None, 0);
        }
        let dropped = std::mem::take(&mut state.dropped_unreported);
        if state.digest.is_empty() && state.digest_more == 0 {
            return (None, dropped);
        }
        let bans = std::mem::take(&mut state.digest);
        let more = std::mem::take(&mut state.digest_more);
        (Some(Job::Digest { bans, more }), dropped)
    }

    /// Records a run's outcome; logs the first failure of an episode and the recovery.
    fn outcome(&self, result: Result<(), String>) {
        let mut state = self.lock();
        let name = &self.spec.name;
        state.health.runs += 1;
        match result {
            Ok(()) => {
                if state.health.failing.take().is_some() {
                    tracing::info!(ACTION = %name, "action {name} works again");
                }
            }
            Err(e) => {
                state.health.failures += 1;
                if state.health.failing.is_none() {
                    tracing::warn!(ACTION = %name, "action {name} failed: {e} (further failures are not logged until it works again)");
                }
                state.health.last_error = Some(e.clone());
                state.health.failing = Some(e);
            }
        }
    }
}

/// The actions of the running configuration: owned by the daemon's owner task, replaced on
/// reload (the old one's queued work still runs, then its workers end).
pub struct Actions {
    /// Per jail, the indexes of its actions in `shared`.
    jails: HashMap<String, Vec<usize>>,
    shared: Vec<Arc<Shared>>,
    queues: Vec<mpsc::Sender<Job>>,
    /// Per action, closed when its workers have all ended; taken by a successor or a
    /// shutdown that waits for them.
    ended: Vec<Option<mpsc::Receiver<()>>>,
    /// Dropped to tell the window task to flush and end.
    _closing: Option<oneshot::Sender<()>>,
}

impl Actions {
    /// No actions (tests, a configuration without any).
    pub fn none() -> Actions {
        Actions {
            jails: HashMap::new(),
            shared: Vec::new(),
            queues: Vec::new(),
            ended: Vec::new(),
            _closing: None,
        }
    }

    /// Starts the workers of these actions; `jails` gives each jail's action indexes.
    /// Must be called on the daemon's runtime.
    pub fn start(specs: &[ActionSpec], jails: HashMap<String, Vec<usize>>) -> Actions {
        Actions::none().replace(specs, jails)
    }

    /// The actions of a reloaded configuration, taking over from these: counters go on for
    /// an action of the same name, and a fail2ban action is stopped only when its jail is
    /// gone or its scripts changed (then the new ones start after the old ones stopped).
    /// The old actions' queued work still runs, then their workers end.
    pub fn replace(mut self, specs: &[ActionSpec], jails: HashMap<String, Vec<usize>>) -> Actions {
        if specs.is_empty() {
            return Actions::none();
        }
        let hostname: Arc<str> = hostname().into();
        let in_use: std::collections::HashSet<usize> = jails.values().flatten().copied().collect();
        let mut shared = Vec::new();
        let mut queues = Vec::new();
        let mut ended = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let before = self.shared.iter().position(|a| a.spec.name == spec.name);
            let health = match before {
                Some(j) => self.shared[j].lock().health.clone(),
                None => ActionHealth::default(),
            };
            let action = Arc::new(Shared {
                spec: spec.clone(),
                hostname: hostname.clone(),
                state: Mutex::new(State {
                    window_start: Instant::now(),
                    admitted_in_window: 0,
                    digest: Vec::new(),
                    digest_more: 0,
                    dropped_unreported: 0,
                    health: ActionHealth {
                        name: spec.name.clone(),
                        kind: spec.kind.name(),
                        ..health
                    },
                }),
                kept: std::sync::atomic::AtomicBool::new(false),
            });
            let mut prologue = None;
            if spec.kind.has_start_stop() && in_use.contains(&index) {
                let kept = before.is_some_and(|j| self.shared[j].spec.same_scripts(spec));
                if let Some(j) = before {
                    self.shared[j]
                        .kept
                        .store(kept, std::sync::atomic::Ordering::Relaxed);
                }
                prologue = Some(Prologue {
                    after: before.and_then(|j| self.ended[j].take()),
                    start: !kept,
                });
            }
            let (sender, receiver) = mpsc::channel(QUEUE_PER_ACTION);
            let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
            let (alive, workers_ended) = mpsc::channel(1);
            if prologue.is_some() {
                // fail2ban runs a jail's actions one script at a time: theirs may not
                // bear running beside each other (hostsdeny's `sed -i` beside an append).
                tokio::spawn(work(action.clone(), receiver, prologue, alive));
            } else {
                for _ in 0..RUNNING_PER_ACTION {
                    tokio::spawn(work(action.clone(), receiver.clone(), None, alive.clone()));
                }
            }
            shared.push(action);
            queues.push(sender);
            ended.push(Some(workers_ended));
        }
        // The old actions flush their windows and stop those not kept.
        drop(self);
        let (closing, closed) = oneshot::channel();
        tokio::spawn(windows(
            shared.clone(),
            queues.clone(),
            jails.clone(),
            closed,
        ));
        Actions {
            jails,
            shared,
            queues,
            ended,
            _closing: Some(closing),
        }
    }

    /// At the daemon's stop: runs the fail2ban actions' `actionstop` after their queued work
    /// and waits for it, [`SHUTDOWN_WAIT`] at most; what other kinds still have queued is
    /// dropped (a webhook that hangs must not hold the stop up), and said.
    pub async fn shut_down(mut self) {
        for (i, action) in self.shared.iter().enumerate() {
            let queued = self.health_of(i).queued;
            if queued > 0 && !action.spec.kind.has_start_stop() {
                let name = &action.spec.name;
                tracing::warn!(ACTION = %name, DROPPED = queued, "action {name}: {queued} queued event(s) not run: banhound is stopping");
            }
        }
        let ended: Vec<(String, mpsc::Receiver<()>)> = self
            .shared
            .iter()
            .zip(&mut self.ended)
            .filter(|(a, _)| a.spec.kind.has_start_stop())
            .filter_map(|(a, e)| Some((a.spec.name.clone(), e.take()?)))
            .collect();
        drop(self);
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        let mut unfinished = Vec::new();
        for (name, mut workers) in ended {
            if tokio::time::timeout_at(deadline, workers.recv())
                .await
                .is_err()
            {
                unfinished.push(name);
            }
        }
        if !unfinished.is_empty() {
            tracing::warn!(
                "action(s) {} did not finish their work within {}s: stopping without it (their programs are killed)",
                unfinished.join(", "),
                SHUTDOWN_WAIT.as_secs()
            );
        }
    }

    /// Whether `jail` has actions (so its failures' lines are worth keeping).
    pub fn has_actions(&self, jail: &str) -> bool {
        self.jails.contains_key(jail)
    }

    /// A ban decided from the logs (with the lines that led to it, [`lines`]), ordered
    /// manually (no lines), or restored at start (for the fail2ban actions that want it).
    pub fn banned(&mut self, ban: BanRecord) {
        if !self.jails.contains_key(&ban.jail) {
            return;
        }
        self.dispatch(ActionEvent::Ban(ban));
    }

    /// A ban lifted (every unban goes through the daemon's `lift`).
    pub fn lifted(&mut self, jail: &str, target: IpNet, at: Timestamp, reason: &'static str) {
        if !self.jails.contains_key(jail) {
            return;
        }
        self.dispatch(ActionEvent::Unban(UnbanRecord {
            jail: jail.to_string(),
            target,
            at,
            reason,
        }));
    }

    fn dispatch(&self, event: ActionEvent) {
        let Some(indexes) = self.jails.get(event.jail()) else {
            return;
        };
        for &i in indexes {
            let action = &self.shared[i];
            let wanted = match &event {
                ActionEvent::Ban(b) if b.restored => match &action.spec.kind {
                    ActionKind::Fail2ban(f) => f.replays_restored(),
                    _ => false,
                },
                ActionEvent::Ban(_) => action.spec.on_ban,
                ActionEvent::Unban(_) => action.spec.on_unban,
            };
            if !wanted || !action.admit(&event) {
                continue;
            }
            if self.queues[i].try_send(Job::Event(event.clone())).is_err() {
                action.dropped_by_full_queue();
            }
        }
    }

    /// How each action is doing.
    pub fn health(&self) -> Vec<ActionHealth> {
        (0..self.shared.len()).map(|i| self.health_of(i)).collect()
    }

    /// How the actions of `jail` are doing, in the jail's order (none for a jail without).
    pub fn jail_health(&self, jail: &str) -> Vec<ActionHealth> {
        self.jails
            .get(jail)
            .map(|indexes| indexes.iter().map(|&i| self.health_of(i)).collect())
            .unwrap_or_default()
    }

    fn health_of(&self, index: usize) -> ActionHealth {
        let queue = &self.queues[index];
        ActionHealth {
            queued: (queue.max_capacity() - queue.capacity()) as u64,
            ..self.shared[index].lock().health.clone()
        }
    }

    /// A short summary for STATUS= and `banhound status`: empty when all is well.
    pub fn trouble(&self) -> Option<String> {
        let failing: Vec<String> = self
            .health()
            .into_iter()
            .filter(|h| h.failing.is_some())
            .map(|h| h.name)
            .collect();
        (!failing.is_empty()).then(|| format!("action(s) failing: {}", failing.join(", ")))
    }
}

/// One worker of an action: takes jobs from its queue until the queue is closed. `_alive`
/// is dropped when it ends ([`Actions::ended`]).
async fn work(
    action: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    prologue: Option<Prologue>,
    _alive: mpsc::Sender<()>,
) {
    if let Some(prologue) = prologue {
        if let Some(mut before) = prologue.after {
            // Nothing is ever sent: it ends when the old workers have.
            let _ = before.recv().await;
        }
        if prologue.start {
            if let ActionKind::Fail2ban(f) = &action.spec.kind {
                let result = f.run_start_stop(true, action.spec.timeout).await;
                action.outcome(result);
            }
        }
    }
    loop {
        let job = queue.lock().await.recv().await;
        let Some(job) = job else {
            return;
        };
        let result = run_job(&action, job).await;
        action.outcome(result);
    }
}

async fn run_job(action: &Shared, job: Job) -> Result<(), String> {
    let spec = &action.spec;
    let hostname = &action.hostname;
    let result = match (&spec.kind, job) {
        (ActionKind::Command(c), Job::Event(e)) => c
            .run(&e, hostname, spec.timeout)
            .await
            .map_err(|e| e.to_string()),
        (ActionKind::Mail(m), Job::Event(e)) => m.send(&e, hostname, spec.timeout).await,
        (ActionKind::Mail(m), Job::Digest { bans, more }) => {
            m.send_digest(&bans, more, hostname, spec.timeout).await
        }
        (ActionKind::Webhook(w), Job::Event(e)) => w.post(&e, hostname, spec.timeout).await,
        (ActionKind::Fail2ban(f), Job::Event(e)) => f.run_event(&e, spec.timeout).await,
        (ActionKind::Fail2ban(f), Job::Stop) => f.run_start_stop(false, spec.timeout).await,
        // Digests are only made for kinds that send them; stops only for fail2ban's.
        (_, Job::Digest { .. } | Job::Stop) => Ok(()),
    };
    result
}

/// Ends each action's rate window once a second: sends the digest, reports the drops. When
/// the actions are replaced or the daemon stops, flushes what is pending and runs the
/// fail2ban actions' `actionstop`.
async fn windows(
    shared: Vec<Arc<Shared>>,
    queues: Vec<mpsc::Sender<Job>>,
    jails: HashMap<String, Vec<usize>>,
    mut closed: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closing = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut closed => true,
        };
        for (action, queue) in shared.iter().zip(&queues) {
            let (digest, dropped) = action.take_window(closing);
            if dropped > 0 {
                let name = &action.spec.name;
                tracing::warn!(ACTION = %name, DROPPED = dropped, "action {name}: {dropped} event(s) not run (over rate_limit, or its queue was full)");
            }
            if let Some(job) = digest {
                if queue.try_send(job).is_err() {
                    action.dropped_by_full_queue();
                }
            }
        }
        if closing {
            for indexes in jails.values() {
                for &i in indexes {
                    let kept = shared[i].kept.load(std::sync::atomic::Ordering::Relaxed);
                    if shared[i].spec.kind.has_start_stop() && !kept {
                        // Waits for room: the stop must come after the queued events.
                        let _ = queues[i].send(Job::Stop).await;
                    }
                }
            }
            return;
        }
    }
}

/// This host's name, for alerts (and to tell a collector's remote hosts from itself).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
