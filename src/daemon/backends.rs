//! Dispatch of bans to the backend each jail uses.
//!
//! The [`Firewall`] trait has async methods and is used through an enum, not `dyn`: the set
//! of backends is closed and known here. Adding one means a variant in [`Backend`], an arm
//! in each delegating method and a constructor in [`Backend::open`].
//!
//! firewalld forgets runtime ipset entries on `firewall-cmd --reload` and on a restart; its
//! backend re-applies them itself (watching `Reloaded` and the bus name's owner), and a
//! small task here logs each re-application.

use crate::firewall::firewalld::{Bus, FirewalldBackend, ReloadWatcher};
use crate::firewall::log_only::LogOnlyBackend;
use crate::firewall::nftables::NftablesBackend;
use crate::firewall::{BackendKind, BanEntry, Firewall, FirewallError, JailRules, Repairs};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// One backend of any kind.
pub enum Backend {
    Nftables(Box<NftablesBackend>),
    /// The backend, and whether its reload watcher runs (started after the first setup).
    Firewalld(Box<FirewalldBackend>, bool),
    LogOnly(LogOnlyBackend),
}

impl Backend {
    /// Opens a backend of `kind` (nftables: in the calling thread's network namespace;
    /// firewalld: on the system bus, `DBUS_SYSTEM_BUS_ADDRESS` if set, in its default zone).
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
                .map(|b| Backend::Firewalld(Box::new(b), false)),
        }
    }

    /// Starts firewalld's reload watcher once its objects exist (before that, a reload has
    /// nothing of ours to put back).
    async fn watch_reloads(&mut self) -> Result<(), FirewallError> {
        if let Backend::Firewalld(b, watching) = self {
            if !*watching {
                let watcher = b.watch_reloads().await?;
                tokio::spawn(log_reapplied(watcher));
                *watching = true;
            }
        }
        Ok(())
    }
}

async fn log_reapplied(mut watcher: ReloadWatcher) {
    while let Some(report) = watcher.next_report().await {
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
    }
}

impl Firewall for Backend {
    fn kind(&self) -> BackendKind {
        match self {
            Backend::Nftables(b) => b.kind(),
            Backend::Firewalld(b, _) => b.kind(),
            Backend::LogOnly(b) => b.kind(),
        }
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.setup(jails).await,
            Backend::Firewalld(b, _) => b.setup(jails).await,
            Backend::LogOnly(b) => b.setup(jails).await,
        }
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.ban(bans).await,
            Backend::Firewalld(b, _) => b.ban(bans).await,
            Backend::LogOnly(b) => b.ban(bans).await,
        }
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.unban(jail, targets).await,
            Backend::Firewalld(b, _) => b.unban(jail, targets).await,
            Backend::LogOnly(b) => b.unban(jail, targets).await,
        }
    }

    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        match self {
            Backend::Nftables(b) => b.list().await,
            Backend::Firewalld(b, _) => b.list().await,
            Backend::LogOnly(b) => b.list().await,
        }
    }

    async fn reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, FirewallError> {
        match self {
            Backend::Nftables(b) => b.reconcile(bans).await,
            Backend::Firewalld(b, _) => b.reconcile(bans).await,
            Backend::LogOnly(b) => b.reconcile(bans).await,
        }
    }

    async fn teardown(&mut self) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.teardown().await,
            Backend::Firewalld(b, _) => b.teardown().await,
            Backend::LogOnly(b) => b.teardown().await,
        }
    }
}

/// The backends in use and which jail goes to which.
#[derive(Default)]
pub struct Backends {
    open: BTreeMap<BackendKindKey, Backend>,
    jails: BTreeMap<String, BackendKind>,
}

/// `BackendKind` is not `Ord`; its name is.
type BackendKindKey = &'static str;

impl Backends {
    /// Opens the backends these jails need (keeping those already open) and sets each up with
    /// exactly its jails; a backend left without jails is set up with none (its objects go).
    pub async fn configure(
        &mut self,
        jails: &[(BackendKind, JailRules)],
    ) -> Result<(), FirewallError> {
        for (kind, _) in jails {
            if !self.open.contains_key(kind.as_str()) {
                self.open.insert(kind.as_str(), Backend::open(*kind).await?);
            }
        }
        for backend in self.open.values_mut() {
            let kind = backend.kind();
            let rules: Vec<JailRules> = jails
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, r)| r.clone())
                .collect();
            backend.setup(&rules).await?;
            backend.watch_reloads().await?;
        }
        self.jails = jails.iter().map(|(k, r)| (r.jail.clone(), *k)).collect();
        Ok(())
    }

    fn backend_of(&mut self, jail: &str) -> Option<&mut Backend> {
        let kind = self.jails.get(jail)?;
        self.open.get_mut(kind.as_str())
    }

    /// Adds bans, one batch per backend.
    pub async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        let mut by_kind: BTreeMap<BackendKindKey, Vec<BanEntry>> = BTreeMap::new();
        for ban in bans {
            if let Some(kind) = self.jails.get(&ban.jail) {
                by_kind.entry(kind.as_str()).or_default().push(ban.clone());
            }
        }
        for (kind, bans) in by_kind {
            if let Some(backend) = self.open.get_mut(kind) {
                backend.ban(&bans).await?;
            }
        }
        Ok(())
    }

    /// Removes bans of one jail.
    pub async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        match self.backend_of(jail) {
            Some(backend) => backend.unban(jail, targets).await,
            None => Ok(()),
        }
    }

    /// Reconciles every backend with the bans of its jails; one result per backend in use.
    pub async fn reconcile(
        &mut self,
        bans: &[BanEntry],
    ) -> Vec<(BackendKind, Result<Repairs, FirewallError>)> {
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

    /// Removes everything banhound created in every backend (`--flush-on-stop`).
    pub async fn teardown(&mut self) -> Result<(), FirewallError> {
        for backend in self.open.values_mut() {
            backend.teardown().await?;
        }
        Ok(())
    }
}
