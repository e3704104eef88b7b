//! Typed D-Bus proxies for the parts of firewalld's API (`man firewalld.dbus`) the backend
//! uses, and nothing more.
//!
//! firewalld names its methods in camelCase, so every method carries its wire name
//! explicitly; zbus would otherwise call `GetDefaultZone`. Property caching is switched off
//! when the proxies are built (see `FirewalldBackend::connect`): it would cost an AddMatch and
//! a GetAll per proxy and we read no properties.

use std::collections::HashMap;
use zbus::proxy;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// firewalld's well-known bus name.
pub(super) const SERVICE: &str = "org.fedoraproject.FirewallD1";

/// An ipset definition as firewalld passes it: `(version, short, description, type,
/// options, entries)`, see firewalld.ipset(5).
pub(super) type IpSetSettings = (
    String,
    String,
    String,
    String,
    HashMap<String, String>,
    Vec<String>,
);

/// A policy's settings as firewalld returns them (`a{sv}`: `target`, `priority`,
/// `ingress_zones`, `egress_zones`, `rich_rules`, ...; see firewalld.policy(5)).
pub(super) type PolicySettings = HashMap<String, OwnedValue>;

/// The main runtime interface: default zone, reload, and the `Reloaded` signal.
#[proxy(
    interface = "org.fedoraproject.FirewallD1",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub(super) trait Firewalld {
    #[zbus(name = "getDefaultZone")]
    fn get_default_zone(&self) -> zbus::Result<String>;

    /// Re-reads the permanent configuration; runtime-only changes (our ipset entries) are lost.
    #[zbus(name = "reload")]
    fn reload(&self) -> zbus::Result<()>;

    #[zbus(signal, name = "Reloaded")]
    fn reloaded(&self) -> zbus::Result<()>;
}

/// Runtime ipsets: the entries live here, never in the permanent configuration.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.ipset",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub(super) trait RuntimeIpSets {
    #[zbus(name = "getIPSets")]
    fn get_ipsets(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getEntries")]
    fn get_entries(&self, ipset: &str) -> zbus::Result<Vec<String>>;

    /// Replaces all entries of a set in one call: firewalld's only bulk entry operation.
    #[zbus(name = "setEntries")]
    fn set_entries(&self, ipset: &str, entries: &[String]) -> zbus::Result<()>;

    #[zbus(name = "addEntry")]
    fn add_entry(&self, ipset: &str, entry: &str) -> zbus::Result<()>;

    #[zbus(name = "removeEntry")]
    fn remove_entry(&self, ipset: &str, entry: &str) -> zbus::Result<()>;
}

/// Runtime zones: where banhound put its rich rules before it used a policy; read to remove
/// them.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.zone",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub(super) trait RuntimeZones {
    #[zbus(name = "getZones")]
    fn get_zones(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getRichRules")]
    fn get_rich_rules(&self, zone: &str) -> zbus::Result<Vec<String>>;

    #[zbus(name = "removeRichRule")]
    fn remove_rich_rule(&self, zone: &str, rule: &str) -> zbus::Result<String>;
}

/// Runtime policies: a policy exists at runtime only once a reload loaded it from the
/// permanent configuration, but its zones and rich rules can be changed in place.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.policy",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1"
)]
pub(super) trait RuntimePolicies {
    #[zbus(name = "getPolicies")]
    fn get_policies(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getPolicySettings")]
    fn get_policy_settings(&self, policy: &str) -> zbus::Result<PolicySettings>;

    /// Changes only the settings named in `settings` (firewalld applies the difference).
    #[zbus(name = "setPolicySettings")]
    fn set_policy_settings(
        &self,
        policy: &str,
        settings: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<()>;
}

/// The permanent configuration: ipset, zone and policy objects by name.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config",
    default_service = "org.fedoraproject.FirewallD1",
    default_path = "/org/fedoraproject/FirewallD1/config"
)]
pub(super) trait Config {
    #[zbus(name = "getIPSetNames")]
    fn get_ipset_names(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getIPSetByName")]
    fn get_ipset_by_name(&self, ipset: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "addIPSet")]
    fn add_ipset(&self, ipset: &str, settings: &IpSetSettings) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "getZoneNames")]
    fn get_zone_names(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getZoneByName")]
    fn get_zone_by_name(&self, zone: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "getPolicyNames")]
    fn get_policy_names(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "getPolicyByName")]
    fn get_policy_by_name(&self, policy: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "addPolicy")]
    fn add_policy(
        &self,
        policy: &str,
        settings: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
}

/// One permanent ipset, at the object path `Config::get_ipset_by_name` returns.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.ipset",
    default_service = "org.fedoraproject.FirewallD1"
)]
pub(super) trait ConfigIpSet {
    #[zbus(name = "getSettings")]
    fn get_settings(&self) -> zbus::Result<IpSetSettings>;

    #[zbus(name = "update")]
    fn update(&self, settings: &IpSetSettings) -> zbus::Result<()>;

    #[zbus(name = "remove")]
    fn remove(&self) -> zbus::Result<()>;
}

/// One permanent zone, at the object path `Config::get_zone_by_name` returns (read to remove
/// rules of an older banhound).
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.zone",
    default_service = "org.fedoraproject.FirewallD1"
)]
pub(super) trait ConfigZone {
    #[zbus(name = "getRichRules")]
    fn get_rich_rules(&self) -> zbus::Result<Vec<String>>;

    #[zbus(name = "removeRichRule")]
    fn remove_rich_rule(&self, rule: &str) -> zbus::Result<()>;
}

/// One permanent policy, at the object path `Config::get_policy_by_name` returns.
#[proxy(
    interface = "org.fedoraproject.FirewallD1.config.policy",
    default_service = "org.fedoraproject.FirewallD1"
)]
pub(super) trait ConfigPolicy {
    #[zbus(name = "getSettings")]
    fn get_settings(&self) -> zbus::Result<PolicySettings>;

    /// Replaces the policy's settings; those not named take their defaults.
    #[zbus(name = "update")]
    fn update(&self, settings: HashMap<&str, Value<'_>>) -> zbus::Result<()>;

    #[zbus(name = "remove")]
    fn remove(&self) -> zbus::Result<()>;
}
