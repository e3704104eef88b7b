//! Client proxies for `org.banhound.Banhound1`, shared by the CLI and the tests so both speak
//! exactly the interface the service serves (the signatures are documented in
//! `dbus/*.xml`).
//!
//! Times are Unix seconds; an `until` of 0 means permanent.

use zbus::proxy;
use zbus::zvariant::OwnedObjectPath;

/// `(target, since, until, offence)`, as `Ban` answers and `GetBans` lists.
pub type BanRecord = (String, u64, u64, u32);
/// `(jail, target, since, until, offence)`, as `IsBanned` lists.
pub type JailBanRecord = (String, String, u64, u64, u32);
/// `(name, kind, runs, failures, queued, dropped, error, last_error)`, as `GetActions` lists
/// (error: the current failure episode's, "" while it works; last_error "" if none).
pub type ActionRecord = (String, String, u64, u64, u64, u64, String, String);
/// `(version, uptime, jails, currently_failed, total_failed, currently_banned, total_banned)`.
pub type StatusRecord = (String, u64, u32, u32, u64, u32, u64);
/// `(configured, host, publishing, backlog, published, subscribed, hosts, applied, refused,
/// cut_down, skipped, lag_ms, error)`, as `GetFleet` answers.
pub type FleetRecord = (
    bool,
    String,
    bool,
    u64,
    u64,
    bool,
    Vec<String>,
    u64,
    u64,
    u64,
    u64,
    u64,
    String,
);

#[proxy(
    interface = "org.banhound.Banhound1.Manager",
    default_service = "org.banhound.Banhound1",
    default_path = "/org/banhound/Banhound1"
)]
pub trait Manager {
    /// `(name, object path)` of every jail.
    fn list_jails(&self) -> zbus::Result<Vec<(String, OwnedObjectPath)>>;

    fn get_status(&self) -> zbus::Result<StatusRecord>;

    fn get_fleet(&self) -> zbus::Result<FleetRecord>;

    /// `format`: "text" (Prometheus' text format 0.0.4) or "openmetrics".
    fn get_metrics(&self, format: &str) -> zbus::Result<String>;

    fn ban(&self, jail: &str, address: &str, duration: &str) -> zbus::Result<BanRecord>;

    /// `jail` empty: every jail. Answers the jails the ban was lifted in.
    fn unban(&self, address: &str, jail: &str) -> zbus::Result<Vec<String>>;

    /// `jail` empty: every jail. Answers how many bans were lifted.
    fn unban_all(&self, jail: &str) -> zbus::Result<u32>;

    fn reload(&self) -> zbus::Result<()>;

    fn is_banned(&self, address: &str) -> zbus::Result<Vec<JailBanRecord>>;

    #[zbus(property)]
    fn degraded(&self) -> zbus::Result<bool>;
    /// "" while the state database can be written.
    #[zbus(property)]
    fn state_error(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn unsaved_changes(&self) -> zbus::Result<u64>;
    /// "" while the firewall works.
    #[zbus(property)]
    fn firewall_error(&self) -> zbus::Result<String>;

    #[zbus(signal)]
    fn banned(&self, jail: String, address: String, until: u64, reason: String)
        -> zbus::Result<()>;

    #[zbus(signal)]
    fn unbanned(&self, jail: String, address: String, why: String) -> zbus::Result<()>;
}

#[proxy(
    interface = "org.banhound.Banhound1.Jail",
    default_service = "org.banhound.Banhound1"
)]
pub trait Jail {
    fn get_bans(&self) -> zbus::Result<Vec<BanRecord>>;

    fn get_actions(&self) -> zbus::Result<Vec<ActionRecord>>;

    fn ban(&self, address: &str, duration: &str) -> zbus::Result<BanRecord>;

    fn unban(&self, address: &str) -> zbus::Result<()>;

    #[zbus(name = "AddIgnoreIP")]
    fn add_ignore_ip(&self, network: &str) -> zbus::Result<bool>;

    #[zbus(name = "RemoveIgnoreIP")]
    fn remove_ignore_ip(&self, network: &str) -> zbus::Result<bool>;

    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn enabled(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn currently_failed(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn total_failed(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn currently_banned(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn total_banned(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn find_time(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn max_retry(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn ban_time(&self) -> zbus::Result<i64>;
    #[zbus(property)]
    fn filter(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn backend(&self) -> zbus::Result<String>;
    #[zbus(property, name = "IgnoreIP")]
    fn ignore_ip(&self) -> zbus::Result<Vec<String>>;
}
