//! The D-Bus control interface: the `org.banhound.Banhound1` service, its proxies, and the
//! boundary between the bus and the daemon's state.
//!
//! The daemon keeps all ban state (trackers, firewall backends, persisted state) in one owner
//! task, so nothing here touches that state directly. The bus side turns method calls into
//! [`Request`]s sent over a tokio mpsc channel and waits for the owner's answer on a oneshot;
//! the owner sends [`Event`]s on a broadcast channel, which become the `Banned`/`Unbanned`
//! signals and `PropertiesChanged`. That keeps the owner single-threaded and lock-free, and
//! keeps D-Bus (types, errors, access checks, object paths) out of the daemon.
//!
//! Input arriving over the bus is parsed here, before it becomes a [`Request`]: addresses,
//! networks and durations reach the owner typed. What only the owner can judge (does the jail
//! exist, is the address ignored) comes back as a [`ControlError`].

pub mod args;
pub mod proxy;
mod read_only;
pub mod service;

use crate::engine::address::ManualBanRefusal;
use crate::engine::time::{BanTime, Timestamp};
use ipnet::IpNet;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::oneshot;

/// Which D-Bus bus a connection goes to: the one banhound serves on, the one firewalld is
/// found on, the one the control commands talk to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bus {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` if set, as libdbus does).
    System,
    /// A bus at this D-Bus address (`unix:path=...`), for tests and private buses.
    Address(String),
}

impl Bus {
    /// The system bus without an address, else the bus at it.
    pub fn from_address(address: Option<&str>) -> Bus {
        address.map_or(Bus::System, |a| Bus::Address(a.to_string()))
    }

    /// A connection builder for this bus (nothing is connected yet).
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(address) => zbus::connection::Builder::address(address.as_str()),
        }
    }
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::System => f.write_str("the system bus"),
            Bus::Address(address) => f.write_str(address),
        }
    }
}

/// The well-known name the daemon owns on the system bus.
pub const SERVICE_NAME: &str = "org.banhound.Banhound1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/banhound/Banhound1";
pub const MANAGER_INTERFACE: &str = "org.banhound.Banhound1.Manager";
pub const JAIL_INTERFACE: &str = "org.banhound.Banhound1.Jail";
/// Prefix of the D-Bus error names of [`ControlError`].
pub const ERROR_PREFIX: &str = "org.banhound.Banhound1.Error";

/// The object path of a jail: `/org/banhound/Banhound1/jail/<escaped name>`.
///
/// Object path elements allow only `[A-Za-z0-9_]`, and jail names may contain `-`. Every other
/// byte becomes `_xx` (lower-case hex), as systemd escapes unit names, so the mapping is
/// reversible and `_` itself is escaped too (`a_b` and `a-b` must not collide).
pub fn jail_path(name: &str) -> String {
    let mut path = format!("{MANAGER_PATH}/jail/");
    if name.is_empty() {
        path.push('_');
        return path;
    }
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("_{b:02x}"));
        }
    }
    path
}

/// A jail as the owner reports it: settings in force and counters.
#[derive(Clone, Debug, PartialEq)]
pub struct JailSnapshot {
    pub name: String,
    pub enabled: bool,
    /// Addresses with failures counted and not banned.
    pub currently_failed: u32,
    pub total_failed: u64,
    pub currently_banned: u32,
    pub total_banned: u64,
    pub findtime: Duration,
    pub maxretry: u32,
    pub bantime: BanTime,
    /// The filter's name ("sshd", a path, or "inline").
    pub filter: String,
    /// The firewall backend ("nftables", "firewalld", "log-only").
    pub backend: String,
    /// The runtime ignore list (configured `ignoreip` plus `AddIgnoreIP`).
    pub ignoreip: Vec<IpNet>,
}

/// What does not work right now, while bans keep working from memory. The owner publishes
/// it on a `tokio::sync::watch` channel (the latest value is all that matters, and a slow
/// reader must never see a stale one, as it could after lagging behind events).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// The state database cannot be written: why. Bans, unbans and positions wait in
    /// memory and are written when it works again.
    pub state_error: Option<String>,
    /// How many changes wait in memory to be written to the state database.
    pub unsaved_changes: u64,
    /// A firewall call failed and the firewall has not been repaired since: why.
    pub firewall_error: Option<String>,
}

impl Health {
    pub fn is_degraded(&self) -> bool {
        self.state_error.is_some() || self.firewall_error.is_some()
    }
}

/// The daemon as a whole.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerStatus {
    /// When the daemon started, for the uptime.
    pub started: Timestamp,
    pub jails: Vec<JailSnapshot>,
    /// What each jail's filter read, in the order of `jails` (for metrics; kept out of
    /// [`JailSnapshot`], whose changes are signalled, as these change with every record).
    pub reading: Vec<RecordCounts>,
}

/// What a jail's filter was given since the daemon started (journal entries replayed after
/// a restart are not counted again), and why it found no failure in what it missed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Journal entries and file lines.
    pub read: u64,
    /// Matched no failregex (or not the prefregex).
    pub no_match: u64,
    /// Syslog lines of a program the filter does not read.
    pub other_program: u64,
    /// Not syslog lines, though the filter reads syslog lines.
    pub not_syslog: u64,
    /// File lines more than findtime older than the newest line of their file.
    pub too_old: u64,
    /// Matched a failregex and an ignoreregex.
    pub ignoreregex: u64,
    /// Time spent deciding them (filter and tracker).
    pub deciding: Duration,
}

/// Fleet ban sharing (`[fleet]`) as `GetFleet` answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetInfo {
    /// This host's name in the fleet.
    pub host: String,
    /// The publisher is connected to Redis.
    pub publishing: bool,
    /// Bans in the outbox, waiting to be published.
    pub backlog: u64,
    /// Entries published since the start.
    pub published: u64,
    /// The subscriber is connected (false too when no `receive_jail` is set).
    pub subscribed: bool,
    /// The other hosts whose streams are read.
    pub hosts: Vec<String>,
    /// Remote bans applied, refused (local rules, unreadable), cut down to `max_bantime`,
    /// and skipped (over already, or already banned here as long), since the start.
    pub applied: u64,
    pub refused: u64,
    pub cut_down: u64,
    pub skipped: u64,
    /// From the failure behind the newest applied remote ban, at its origin, to its
    /// enforcement here.
    pub lag: Option<std::time::Duration>,
    /// The last error talking to Redis, while it lasts.
    pub error: Option<String>,
}

/// One active ban.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanInfo {
    /// What is blocked: the address, or the jail's IPv6 prefix around it.
    pub target: IpNet,
    pub since: Timestamp,
    /// `None`: permanent.
    pub until: Option<Timestamp>,
    /// How many times this target has been banned (1 for a first offence).
    pub offence: u32,
}

/// Why a control request was refused. Each variant is a D-Bus error named
/// `org.banhound.Banhound1.Error.<Variant>`, with this message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no jail named {0:?}")]
    NoSuchJail(String),
    /// The text as given, and what is wrong with it.
    #[error("invalid address {0:?}: {1}")]
    InvalidAddress(String, &'static str),
    /// Loopback, unspecified, `ignoreip`, or one of the host's own addresses.
    #[error("{} is never banned: {reason}", crate::display::display_target(target))]
    Ignored { target: IpNet, reason: String },
    /// A network wider than the jail bans (`/prefix`: one target, or its widest_ban); on the bus an
    /// `InvalidAddress`.
    #[error(
        "{network} is wider than what one ban of this jail blocks (a /{prefix}; widest_ban_v4 and widest_ban_v6 allow wider networks): give an address or a narrower network"
    )]
    TooWide { network: IpNet, prefix: u8 },
    #[error("invalid duration: {0}")]
    InvalidDuration(String),
    #[error("{0} is not banned")]
    NotBanned(String),
    #[error("{0}")]
    AccessDenied(String),
    /// A reload found the configuration invalid (the running one stays); names file, line
    /// and key.
    #[error("{0}")]
    InvalidConfiguration(String),
    #[error("{0}")]
    Failed(String),
}

impl From<ManualBanRefusal> for ControlError {
    fn from(refusal: ManualBanRefusal) -> Self {
        match refusal {
            ManualBanRefusal::Ignored { network, reason } => ControlError::Ignored {
                target: network,
                reason: if network.prefix_len() < network.max_prefix_len() {
                    reason.as_network_str().to_string()
                } else {
                    reason.to_string()
                },
            },
            ManualBanRefusal::TooWide { network, prefix } => {
                ControlError::TooWide { network, prefix }
            }
        }
    }
}

/// Why a ban ended. The bus names it here ([`Lifted::signal_reason`]); the daemon's log and
/// its database have their own wording of the same reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lifted {
    /// The ban time ran out.
    Expired,
    /// The ban time ran out while the daemon was stopped (found at start).
    ExpiredWhileStopped,
    /// The jail was removed or disabled by a reload.
    JailRemoved,
    /// An administrator lifted it (Unban, UnbanAll).
    Manual { caller_uid: u32 },
    /// It covers an address the host has now (`ignoreself`).
    OwnAddress,
}

impl Lifted {
    /// The `why` of the `Unbanned` signal.
    pub fn signal_reason(self) -> &'static str {
        match self {
            Lifted::Expired | Lifted::ExpiredWhileStopped => "expired",
            Lifted::JailRemoved => "jail-removed",
            Lifted::Manual { .. } => "manual",
            Lifted::OwnAddress => "own-address",
        }
    }
}

/// A request from the bus to the owner of the ban state. Every request carries its own reply
/// channel; a dropped reply sender is answered on the bus as `Failed`. Mutating requests carry
/// the caller's UID (already checked to be root) for the owner's log.
#[derive(Debug)]
pub enum Request {
    Status {
        reply: oneshot::Sender<ServerStatus>,
    },
    /// `None` without `[fleet]`.
    Fleet {
        reply: oneshot::Sender<Option<FleetInfo>>,
    },
    JailStatus {
        jail: String,
        reply: oneshot::Sender<Result<JailSnapshot, ControlError>>,
    },
    /// Bans `address` in `jail` (its target per the jail's IPv6 prefix), for `duration` or
    /// the jail's ban time (with escalation). `address` is an address as a host network, or
    /// a network as the caller gave it: refused with `TooWide` when wider than one target
    /// and the jail's widest_ban,
    /// with `Ignored` when it or its target covers an address never banned. The owner emits
    /// [`Event::Banned`] for it like for any other ban.
    Ban {
        jail: String,
        address: IpNet,
        duration: Option<BanTime>,
        caller_uid: u32,
        reply: oneshot::Sender<Result<BanInfo, ControlError>>,
    },
    /// Lifts the ban covering `addr` in `jail`, or in every jail. Answers the jails it was
    /// lifted in; `NotBanned` when none.
    Unban {
        addr: IpAddr,
        jail: Option<String>,
        caller_uid: u32,
        reply: oneshot::Sender<Result<Vec<String>, ControlError>>,
    },
    /// Lifts every ban of `jail`, or of every jail. Answers how many were lifted.
    UnbanAll {
        jail: Option<String>,
        caller_uid: u32,
        reply: oneshot::Sender<Result<u32, ControlError>>,
    },
    /// The bans covering `addr`, by jail name.
    IsBanned {
        addr: IpAddr,
        reply: oneshot::Sender<Vec<(String, BanInfo)>>,
    },
    GetBans {
        jail: String,
        reply: oneshot::Sender<Result<Vec<BanInfo>, ControlError>>,
    },
    /// How the jail's actions are doing ([`crate::action`]), in the jail's order.
    GetActions {
        jail: String,
        reply: oneshot::Sender<Result<Vec<crate::action::ActionHealth>, ControlError>>,
    },
    /// Re-reads the configuration. After it answers, the bus re-lists the jails and adds or
    /// removes jail objects to match (as it does on [`Event::JailsChanged`], which the owner
    /// sends after any reload).
    Reload {
        caller_uid: u32,
        reply: oneshot::Sender<Result<(), ControlError>>,
    },
    /// Adds `net` to the jail's runtime ignore list; answers false when already listed.
    /// Existing bans are not lifted.
    AddIgnore {
        jail: String,
        net: IpNet,
        caller_uid: u32,
        reply: oneshot::Sender<Result<bool, ControlError>>,
    },
    /// Removes `net` from the jail's runtime ignore list; answers false when not listed.
    RemoveIgnore {
        jail: String,
        net: IpNet,
        caller_uid: u32,
        reply: oneshot::Sender<Result<bool, ControlError>>,
    },
}

/// What the owner tells the bus, on a `tokio::sync::broadcast` channel.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A ban took effect (decided from the logs or ordered over the bus).
    Banned {
        jail: String,
        target: IpNet,
        until: Option<Timestamp>,
        /// Free text: "5 failures within 10m", "manual (uid 0)".
        reason: String,
    },
    /// A ban was lifted.
    Unbanned {
        jail: String,
        target: IpNet,
        why: Lifted,
    },
    /// A jail's counters or settings changed. The bus emits `PropertiesChanged` for the
    /// properties that differ from the last snapshot it saw. The owner may coalesce these
    /// (one per batch of log lines is plenty). A snapshot of a jail the bus does not know is
    /// ignored: jail objects come and go only with [`Event::JailsChanged`].
    JailChanged { snapshot: JailSnapshot },
    /// The set of jails may have changed (a reload, however it was triggered: SIGHUP,
    /// `systemctl reload` or the bus). The bus asks for [`Request::Status`] and adds and
    /// removes jail objects to match.
    JailsChanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jail_paths_are_valid_and_distinct() {
        let names = ["sshd", "nginx-http-auth", "a_b", "a-b", "", "x2d"];
        let paths: Vec<String> = names.iter().map(|n| jail_path(n)).collect();
        for p in &paths {
            zbus::zvariant::ObjectPath::try_from(p.as_str()).expect(p);
        }
        assert_eq!(paths[0], "/org/banhound/Banhound1/jail/sshd");
        assert_eq!(paths[1], "/org/banhound/Banhound1/jail/nginx_2dhttp_2dauth");
        let mut unique = paths.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), paths.len());
    }
}
