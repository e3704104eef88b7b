//! The host's own addresses, for `ignoreself`: a jail must never ban the machine it
//! protects (a local client failing to log in, or a proxy on the same host).
//!
//! Addresses come and go while the daemon runs (DHCP, a failover address, a new interface),
//! so the daemon follows them: [`AddressWatch`] is subscribed to rtnetlink's address
//! notifications (`RTM_NEWADDR`/`RTM_DELADDR`), and each one makes the owner task read the
//! list again ([`own_addresses`]) and apply the difference: a new address is never banned
//! from then on and a ban covering it is lifted; a removed one is no longer protected
//! (unless `ignoreip` covers it). Reading the whole list again, rather than applying each
//! message, gives the same answer after lost notifications as after none.

use super::{wall_now, Daemon};
use crate::bus::Lifted;
use crate::multicast::{Received, Subscription};
use std::io;
use std::net::IpAddr;

/// Every address configured on an interface of this network namespace (getifaddrs(3),
/// through the `ifaddrs` shim); empty if the call fails, since loopback is never banned
/// anyway.
pub fn own_addresses() -> Vec<IpAddr> {
    let mut out = super::ifaddrs::interface_addresses().unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Notifications of address changes in this network namespace. See the module documentation.
pub struct AddressWatch {
    subscription: Subscription,
}

impl AddressWatch {
    /// Subscribes in the calling thread's network namespace (inside the tokio runtime).
    /// Subscribe before reading the addresses, so no change falls between the two.
    pub fn open() -> io::Result<AddressWatch> {
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        Ok(AddressWatch {
            subscription: Subscription::open(libc::NETLINK_ROUTE, groups)?,
        })
    }

    /// Waits until an address was added or removed (or notifications were lost).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            match self.subscription.next().await? {
                Received::Overflow => return Ok(()),
                Received::Messages(messages)
                    if messages
                        .iter()
                        .any(|m| m.kind == libc::RTM_NEWADDR || m.kind == libc::RTM_DELADDR) =>
                {
                    return Ok(())
                }
                Received::Messages(_) => {}
            }
        }
    }
}

/// Waits on the watch, if there is one.
pub(super) async fn address_change(watch: &mut Option<AddressWatch>) -> io::Result<()> {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

impl Daemon {
    /// The host's addresses may have changed: reads them again, rebuilds each jail's ignore
    /// list, and lifts the bans that cover an address the host has now.
    pub(super) async fn own_addresses_changed(&mut self) {
        let now_own = own_addresses();
        let added: Vec<IpAddr> = now_own
            .iter()
            .filter(|a| !self.jails.own_addresses().contains(a))
            .copied()
            .collect();
        let removed: Vec<IpAddr> = self
            .jails
            .own_addresses()
            .iter()
            .filter(|a| !now_own.contains(a))
            .copied()
            .collect();
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let list = |addrs: &[IpAddr]| {
            addrs
                .iter()
                .map(IpAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (added.is_empty(), removed.is_empty()) {
            (false, true) => tracing::info!(
                "this host has new addresses: {}; ignoreself never bans them",
                list(&added)
            ),
            (true, false) => tracing::info!(
                "this host no longer has the addresses {}; ignoreself no longer protects them",
                list(&removed)
            ),
            _ => tracing::info!(
                "this host's addresses changed: new {}; gone {}; ignoreself follows them",
                list(&added),
                list(&removed)
            ),
        }
        let lifted = self.jails.set_own_addresses(now_own, &added);
        let now = wall_now();
        for (j, targets) in lifted {
            let jail = &self.jails.get(j).settings.name;
            // Logged inside; a failed call is retried by the next reconcile.
            let _ = self
                .enforcement
                .lift(jail, &targets, Lifted::OwnAddress, now)
                .await;
        }
        self.publish_changes();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_loopback() {
        let own = super::own_addresses();
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
    }
}
