//! The `log-only` backend: decides and logs, touches no firewall.
//!
//! It exists so an admin can run a new configuration against real traffic and read what
//! would be banned before anything is blocked. It remembers its "bans" in memory so that
//! `list` answers like a real backend and the daemon's bookkeeping stays the same.

use crate::firewall::{BackendKind, BanEntry, Firewall, FirewallError, JailRules, Repairs};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A backend that only logs. See the module documentation.
#[derive(Debug, Default)]
pub struct LogOnlyBackend {
    /// (jail, target) -> when the ban would end (`None`: permanent).
    bans: BTreeMap<(String, IpNet), Option<Instant>>,
}

impl LogOnlyBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Firewall for LogOnlyBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::LogOnly
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        self.bans
            .retain(|(jail, _), _| jails.iter().any(|j| &j.jail == jail));
        for jail in jails {
            tracing::info!(JAIL = %jail.jail, "log-only backend: jail {} set up, nothing is blocked", jail.jail);
        }
        Ok(())
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        let now = Instant::now();
        for ban in bans {
            tracing::info!(
                JAIL = %ban.jail,
                IP = %ban.target,
                "log-only backend: would block {} (jail {})",
                ban.target,
                ban.jail
            );
            self.bans
                .insert((ban.jail.clone(), ban.target), ban.timeout.map(|t| now + t));
        }
        Ok(())
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        for target in targets {
            self.bans.remove(&(jail.to_string(), *target));
        }
        Ok(())
    }

    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        let now = Instant::now();
        self.bans.retain(|_, until| until.is_none_or(|u| u > now));
        Ok(self
            .bans
            .iter()
            .map(|((jail, target), until)| BanEntry {
                jail: jail.clone(),
                target: *target,
                timeout: until.map(|u| u.saturating_duration_since(now).max(Duration::ZERO)),
            })
            .collect())
    }

    /// Nothing outside banhound can change what this backend holds: nothing to repair.
    async fn reconcile(&mut self, _bans: &[BanEntry]) -> Result<Repairs, FirewallError> {
        Ok(Repairs::default())
    }

    async fn teardown(&mut self) -> Result<(), FirewallError> {
        self.bans.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{BlockType, Ports};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn rules(jail: &str) -> JailRules {
        JailRules {
            jail: jail.into(),
            ports: Ports::All,
            blocktype: BlockType::Drop,
            prefix_bans: false,
            chains: crate::firewall::Chains::INPUT,
        }
    }

    #[test]
    fn remembers_bans_like_a_backend_and_forgets_removed_jails() {
        block_on(async {
            let mut b = LogOnlyBackend::new();
            b.setup(&[rules("sshd"), rules("web")]).await.unwrap();
            let ban = |jail: &str, t: &str, timeout| BanEntry {
                jail: jail.into(),
                target: t.parse().unwrap(),
                timeout,
            };
            b.ban(&[
                ban("sshd", "198.51.100.4/32", Some(Duration::from_secs(600))),
                ban("web", "203.0.113.9/32", None),
                ban("sshd", "198.51.100.5/32", Some(Duration::ZERO)),
            ])
            .await
            .unwrap();
            let listed = b.list().await.unwrap();
            assert_eq!(listed.len(), 2, "the zero-timeout ban is over: {listed:?}");
            assert!(listed[0].timeout.unwrap() > Duration::from_secs(590));
            b.unban("sshd", &["198.51.100.4/32".parse().unwrap()])
                .await
                .unwrap();
            b.setup(&[rules("sshd")]).await.unwrap();
            assert!(b.list().await.unwrap().is_empty());
        });
    }
}
