//! Dispatch of bans to the backend each jail uses, and the backends' life cycle. It lives
//! beside the backends it dispatches to; the daemon holds one [`Backends`] and calls nothing
//! below it.
//!
//! The [`Firewall`] trait has async methods and is used through an enum, not `dyn`: the set
//! of backends is closed and known here. Adding one means a variant in [`Backend`], an arm
//! in each delegating method and a constructor in [`Backend::open`].
//!
//! A firewall that cannot be set up (firewalld not running yet, or restarting; the daemon
//! stops only for nftables, whose failures at start waiting does not cure) is retried:
//! [`Backends::configure`] remembers what it was asked for, and the next
//! [`Backends::reconcile`] (the daemon's retry, with its backoff) sets it up first. The
//! firewalld backend is opened with its reload watcher running from the start: firewalld
//! forgets runtime ipset entries on `firewall-cmd --reload` and on a restart, and the watcher
//! puts them back itself; its reports ([`Backends::next_reapplied`]) also tell the daemon at
//! once that firewalld answers again, so it need not wait for its next retry.
//!
//! Only the backends in use hold anything: one left without jails by a reload is torn down
//! and closed, and at the first configuration the real firewalls nobody uses are cleared of
//! banhound's objects (an earlier configuration's, before a switch from nftables to
//! firewalld or back). A configuration with only log-only jails touches no firewall.
//!
//! `backend = "auto"` is decided by the daemon with [`auto_backend`] from what a
//! [`FirewalldPresence`] sees: firewalld when it owns its bus name, nftables otherwise (a
//! host without firewalld, or without a system bus). The presence follows the name's
//! owner, so that the daemon decides again when firewalld starts or stops; moving the bans
//! is the daemon's (enforcement lifts them on the old backend, applies them on the new).

use crate::bus::Bus;
use crate::firewall::firewalld::{self, FirewalldBackend, Reapplied, ReloadWatcher};
use crate::firewall::log_only::LogOnlyBackend;
use crate::firewall::nftables::NftablesBackend;
use crate::firewall::{BackendKind, BanEntry, Firewall, FirewallError, JailRules, Repairs};
use futures_util::StreamExt;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// One backend of any kind.
pub enum Backend {
    Nftables(Box<NftablesBackend>),
    Firewalld(Box<FirewalldBackend>),
    LogOnly(LogOnlyBackend),
}

impl Backend {
    /// Opens a backend of `kind` (nftables: in the calling thread's network namespace;
    /// firewalld: on the system bus, `DBUS_SYSTEM_BUS_ADDRESS` if set; firewalld itself
    /// need not be running).
    pub async fn open(kind: BackendKind) -> Result<Backend, FirewallError> {
        match kind {
            BackendKind::Nftables => NftablesBackend::new()
                .map(|b| Backend::Nftables(Box::new(b)))
                .map_err(|e| FirewallError {
                    backend: kind,
                    source: Box::new(e),
                }),
            BackendKind::LogOnly => Ok(Backend::LogOnly(LogOnlyBackend::new())),
            BackendKind::Firewalld => FirewalldBackend::connect(&Bus::System)
                .await
                .map(|b| Backend::Firewalld(Box::new(b))),
        }
    }
}

impl Firewall for Backend {
    fn kind(&self) -> BackendKind {
        match self {
            Backend::Nftables(b) => b.kind(),
            Backend::Firewalld(b) => b.kind(),
            Backend::LogOnly(b) => b.kind(),
        }
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.setup(jails).await,
            Backend::Firewalld(b) => b.setup(jails).await,
            Backend::LogOnly(b) => b.setup(jails).await,
        }
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.ban(bans).await,
            Backend::Firewalld(b) => b.ban(bans).await,
            Backend::LogOnly(b) => b.ban(bans).await,
        }
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.unban(jail, targets).await,
            Backend::Firewalld(b) => b.unban(jail, targets).await,
            Backend::LogOnly(b) => b.unban(jail, targets).await,
        }
    }

    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        match self {
            Backend::Nftables(b) => b.list().await,
            Backend::Firewalld(b) => b.list().await,
            Backend::LogOnly(b) => b.list().await,
        }
    }

    async fn reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, FirewallError> {
        match self {
            Backend::Nftables(b) => b.reconcile(bans).await,
            Backend::Firewalld(b) => b.reconcile(bans).await,
            Backend::LogOnly(b) => b.reconcile(bans).await,
        }
    }

    async fn teardown(&mut self) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.teardown().await,
            Backend::Firewalld(b) => b.teardown().await,
            Backend::LogOnly(b) => b.teardown().await,
        }
    }
}

/// The backend of a jail with `backend = "auto"`: firewalld while it runs, else nftables.
pub fn auto_backend(firewalld_running: bool) -> BackendKind {
    if firewalld_running {
        BackendKind::Firewalld
    } else {
        BackendKind::Nftables
    }
}

/// Whether firewalld runs (owns its bus name), followed: for `backend = "auto"`.
pub struct FirewalldPresence {
    running: bool,
    changes: zbus::fdo::NameOwnerChangedStream,
    /// The connection the subscription lives on.
    _connection: zbus::Connection,
}

impl FirewalldPresence {
    /// Connects to `bus` (firewalld's: the system bus) and subscribes to changes of the
    /// owner of firewalld's name before asking who owns it now, so that no change falls in
    /// between.
    pub async fn watch(bus: &Bus) -> zbus::Result<FirewalldPresence> {
        let connection = bus.builder()?.build().await?;
        let dbus = zbus::fdo::DBusProxy::new(&connection).await?;
        let changes = dbus
            .receive_name_owner_changed_with_args(&[(0, firewalld::BUS_NAME)])
            .await?;
        let name = zbus::names::BusName::try_from(firewalld::BUS_NAME)?;
        let running = dbus.name_has_owner(name).await?;
        Ok(FirewalldPresence {
            running,
            changes,
            _connection: connection,
        })
    }

    /// Whether firewalld ran when last seen.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Waits until firewalld starts or stops, and says which (`true`: it runs now). A new
    /// owner replacing an old one at once (a restart seen as one signal) is no change.
    /// Never returns once the bus connection is gone.
    pub async fn next_change(&mut self) -> bool {
        while let Some(signal) = self.changes.next().await {
            let running = match signal.args() {
                Ok(args) => args.new_owner().is_some(),
                Err(_) => continue,
            };
            if running != self.running {
                self.running = running;
                return running;
            }
        }
        std::future::pending().await
    }
}

/// A backend's jails are not set up: opening it failed, and the next reconcile tries again.
#[derive(Debug, thiserror::Error)]
#[error("not set up yet (the last attempt failed; retried by the next reconcile)")]
pub struct NotSetUp;

fn not_set_up(backend: BackendKind) -> FirewallError {
    FirewallError {
        backend,
        source: Box::new(NotSetUp),
    }
}

/// The failures of one [`Backends::set_up`], for its answer.
#[derive(Default)]
struct Failures {
    first: Option<FirewallError>,
}

impl Failures {
    fn add(&mut self, error: FirewallError) {
        let replaces = match &self.first {
            None => true,
            Some(first) => {
                first.backend == BackendKind::Firewalld && error.backend != BackendKind::Firewalld
            }
        };
        if replaces {
            self.first = Some(error);
        }
    }

    fn into_result(self) -> Result<(), FirewallError> {
        self.first.map_or(Ok(()), Err)
    }
}

/// The backends in use and which jail goes to which.
#[derive(Default)]
pub struct Backends {
    open: BTreeMap<BackendKindKey, Backend>,
    jails: BTreeMap<String, BackendKind>,
    /// What the last [`Backends::configure`] was asked for.
    wanted: Vec<(BackendKind, JailRules)>,
    /// Whether `wanted` is set up in every backend; if not, the next reconcile does it first.
    configured: bool,
    /// Whether the firewalls nobody uses were cleared (once, at the first configuration).
    swept: bool,
    /// The firewalld backend's reload watcher, while that backend is open.
    reapplied: Option<ReloadWatcher>,
}

/// `BackendKind` is not `Ord`; its name is.
type BackendKindKey = &'static str;

impl Backends {
    /// Opens the backends these jails need (keeping those already open), sets each up with
    /// exactly its jails, and tears down and closes those left without jails. On failure
    /// the jails are remembered: bans go to the backends that are open, and the next
    /// [`Backends::reconcile`] sets everything up again.
    pub async fn configure(
        &mut self,
        jails: &[(BackendKind, JailRules)],
    ) -> Result<(), FirewallError> {
        self.wanted = jails.to_vec();
        self.jails = jails.iter().map(|(k, r)| (r.jail.clone(), *k)).collect();
        self.configured = false;
        if !self.swept {
            self.swept = true;
            self.sweep_unused().await;
        }
        self.set_up().await?;
        self.configured = true;
        Ok(())
    }

    /// Opens, sets up and closes backends for `wanted`. A backend that fails does not keep
    /// the others from being set up; the answer is the first failure, one of another backend
    /// than firewalld's if there is one (firewalld's alone is what waiting can cure).
    async fn set_up(&mut self) -> Result<(), FirewallError> {
        let mut failures = Failures::default();
        for (kind, _) in &self.wanted {
            if self.open.contains_key(kind.as_str()) {
                continue;
            }
            match Backend::open(*kind).await {
                Ok(backend) => {
                    if let Backend::Firewalld(b) = &backend {
                        match b.watch_reloads().await {
                            Ok(watcher) => self.reapplied = Some(watcher),
                            Err(e) => {
                                failures.add(e);
                                continue;
                            }
                        }
                    }
                    self.open.insert(kind.as_str(), backend);
                }
                Err(e) => failures.add(e),
            }
        }
        let unused: Vec<BackendKindKey> = self
            .open
            .keys()
            .filter(|key| !self.wanted.iter().any(|(k, _)| k.as_str() == **key))
            .copied()
            .collect();
        for key in unused {
            // Closed even if the teardown fails: a reload must not keep a backend nobody uses.
            if let Some(mut backend) = self.open.remove(key) {
                if let Backend::Firewalld(_) = backend {
                    self.reapplied = None;
                }
                match backend.teardown().await {
                    Ok(()) => {
                        tracing::info!("{key} backend no longer used: banhound's objects removed")
                    }
                    Err(e) => failures.add(e),
                }
            }
        }
        for backend in self.open.values_mut() {
            let kind = backend.kind();
            let rules: Vec<JailRules> = self
                .wanted
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, r)| r.clone())
                .collect();
            if let Err(e) = backend.setup(&rules).await {
                failures.add(e);
            }
        }
        failures.into_result()
    }

    /// Clears the real firewalls no jail uses of anything banhound left in them, when some
    /// jail uses a real one. Best effort: a firewall that is not there is not an error, and
    /// firewalld is not even asked unless it is running.
    async fn sweep_unused(&mut self) {
        let uses = |kind: BackendKind| self.wanted.iter().any(|(k, _)| *k == kind);
        if !uses(BackendKind::Nftables) && !uses(BackendKind::Firewalld) {
            return;
        }
        if !uses(BackendKind::Nftables) {
            match NftablesBackend::new() {
                Ok(mut nftables) => {
                    if let Err(e) = nftables.teardown().await {
                        tracing::warn!("cannot remove banhound's unused nftables table: {e}");
                    }
                }
                Err(e) => tracing::debug!("nftables not available, nothing to clear: {e}"),
            }
        }
        if !uses(BackendKind::Firewalld) {
            let firewalld = match FirewalldBackend::connect(&Bus::System).await {
                Ok(firewalld) => firewalld,
                Err(e) => {
                    tracing::debug!("no system bus, no firewalld to clear: {e}");
                    return;
                }
            };
            match firewalld.is_running().await {
                Ok(true) => {
                    let mut firewalld = firewalld;
                    if let Err(e) = firewalld.teardown().await {
                        tracing::warn!("cannot remove banhound's unused firewalld objects: {e}");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!("cannot tell whether firewalld runs: {e}"),
            }
        }
    }

    /// firewalld stopped: its backend is closed without a teardown, which firewalld can no
    /// longer be asked for (it dropped its runtime ipsets, and their entries, as it stopped).
    /// A jail still configured for it opens it again at the next set-up.
    pub fn forget_firewalld(&mut self) {
        if self.open.remove(BackendKind::Firewalld.as_str()).is_some() {
            self.reapplied = None;
            self.configured = false;
        }
    }

    /// Whether every backend holds the jails of the last configuration.
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// The next report of firewalld's reload watcher; never, without a firewalld backend.
    pub async fn next_reapplied(&mut self) -> Reapplied {
        loop {
            match &mut self.reapplied {
                Some(watcher) => match watcher.next_report().await {
                    Some(report) => return report,
                    // The bus connection closed: nothing more will come.
                    None => self.reapplied = None,
                },
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// The open backend of a jail's kind, or the error that it is not open.
    fn backend_of(&mut self, jail: &str) -> Option<Result<&mut Backend, FirewallError>> {
        let kind = *self.jails.get(jail)?;
        Some(
            self.open
                .get_mut(kind.as_str())
                .ok_or_else(|| not_set_up(kind)),
        )
    }

    /// Adds bans, one batch per backend.
    pub async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        let mut by_kind: BTreeMap<BackendKindKey, (BackendKind, Vec<BanEntry>)> = BTreeMap::new();
        for ban in bans {
            if let Some(kind) = self.jails.get(&ban.jail) {
                by_kind
                    .entry(kind.as_str())
                    .or_insert_with(|| (*kind, Vec::new()))
                    .1
                    .push(ban.clone());
            }
        }
        let mut failure = None;
        for (key, (kind, bans)) in by_kind {
            let result = match self.open.get_mut(key) {
                Some(backend) => backend.ban(&bans).await,
                None => Err(not_set_up(kind)),
            };
            // The other backends' bans still go in.
            if let Err(e) = result {
                failure = Some(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Removes bans of one jail.
    pub async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        match self.backend_of(jail) {
            Some(Ok(backend)) => backend.unban(jail, targets).await,
            Some(Err(e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Sets up the last configuration again if it failed, then reconciles every backend
    /// with the bans of its jails; one result per backend in use.
    pub async fn reconcile(
        &mut self,
        bans: &[BanEntry],
    ) -> Vec<(BackendKind, Result<Repairs, FirewallError>)> {
        if !self.configured {
            match self.set_up().await {
                Ok(()) => self.configured = true,
                Err(e) => return vec![(e.backend, Err(e))],
            }
        }
        let mut results = Vec::new();
        for backend in self.open.values_mut() {
            let kind = backend.kind();
            let mine: Vec<BanEntry> = bans
                .iter()
                .filter(|b| self.jails.get(&b.jail) == Some(&kind))
                .cloned()
                .collect();
            results.push((kind, backend.reconcile(&mine).await));
        }
        results
    }

    /// The nftables backend, if it is open (to watch the ruleset for foreign changes).
    pub fn nftables(&self) -> Option<&NftablesBackend> {
        match self.open.get(BackendKind::Nftables.as_str()) {
            Some(Backend::Nftables(b)) => Some(b),
            _ => None,
        }
    }

    /// Removes everything banhound created in every backend (`--flush-on-stop`).
    pub async fn teardown(&mut self) -> Result<(), FirewallError> {
        for backend in self.open.values_mut() {
            backend.teardown().await?;
        }
        Ok(())
    }
}
