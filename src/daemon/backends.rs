//! Dispatch of bans to the backend each jail uses.
//!
//! The [`Firewall`] trait has async methods and is used through an enum, not `dyn`: the set
//! of backends is closed and known here. Adding one (firewalld) means a variant in
//! [`Backend`], an arm in each delegating method and a constructor in [`Backend::open`].

use crate::firewall::log_only::LogOnlyBackend;
use crate::firewall::nftables::NftablesBackend;
use crate::firewall::{BackendKind, BanEntry, Firewall, FirewallError, JailRules};
use ipnet::IpNet;
use std::collections::BTreeMap;

/// One backend of any kind.
pub enum Backend {
    Nftables(Box<NftablesBackend>),
    LogOnly(LogOnlyBackend),
}

impl Backend {
    /// Opens a backend of `kind` (in the calling thread's network namespace).
    pub fn open(kind: BackendKind) -> Result<Backend, FirewallError> {
        match kind {
            BackendKind::Nftables => NftablesBackend::new()
                .map(|b| Backend::Nftables(Box::new(b)))
                .map_err(|e| FirewallError {
                    backend: kind,
                    source: Box::new(e),
                }),
            BackendKind::LogOnly => Ok(Backend::LogOnly(LogOnlyBackend::new())),
            BackendKind::Firewalld => Err(FirewallError {
                backend: kind,
                source: "not available in this build of banhound".into(),
            }),
        }
    }
}

impl Firewall for Backend {
    fn kind(&self) -> BackendKind {
        match self {
            Backend::Nftables(b) => b.kind(),
            Backend::LogOnly(b) => b.kind(),
        }
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.setup(jails).await,
            Backend::LogOnly(b) => b.setup(jails).await,
        }
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.ban(bans).await,
            Backend::LogOnly(b) => b.ban(bans).await,
        }
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.unban(jail, targets).await,
            Backend::LogOnly(b) => b.unban(jail, targets).await,
        }
    }

    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        match self {
            Backend::Nftables(b) => b.list().await,
            Backend::LogOnly(b) => b.list().await,
        }
    }

    async fn teardown(&mut self) -> Result<(), FirewallError> {
        match self {
            Backend::Nftables(b) => b.teardown().await,
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
                self.open.insert(kind.as_str(), Backend::open(*kind)?);
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

    /// Removes everything banhound created in every backend (`--flush-on-stop`).
    pub async fn teardown(&mut self) -> Result<(), FirewallError> {
        for backend in self.open.values_mut() {
            backend.teardown().await?;
        }
        Ok(())
    }
}
