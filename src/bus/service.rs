//! The `org.banhound.Banhound1` service: the manager object, one object per jail, and the
//! task that turns the owner's [`Event`]s into signals.
//!
//! Objects are registered before the name is requested, so a client that sees the name owned
//! never finds a missing object. The name is requested without queueing: a second daemon
//! must fail to start, not wait silently behind the first.
//!
//! Access control is the bus policy's job (dbus/org.banhound.Banhound1.conf), and every
//! mutating method checks the caller's UID again (GetConnectionUnixUser): a policy file left
//! out, or a permissive bus, must not let anyone but root change bans.

use super::read_only::ReadOnlyProperties;
use super::{
    args, jail_path, BanInfo, Bus, ControlError, Event, Health, JailSnapshot, Request,
    JAIL_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH, SERVICE_NAME,
};
use crate::display::display_target;
use crate::engine::time::{BanTime, Timestamp};
use ipnet::IpNet;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use zbus::fdo::{DBusProxy, RequestNameFlags, RequestNameReply};
use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::SignalEmitter;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::{interface, Connection};

/// The only UID allowed to change state.
const ROOT_UID: u32 = 0;

/// The D-Bus form of [`ControlError`], plus bus failures.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.banhound.Banhound1.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    NoSuchJail(String),
    InvalidAddress(String),
    Ignored(String),
    InvalidDuration(String),
    NotBanned(String),
    AccessDenied(String),
    InvalidConfiguration(String),
    /// GetMetrics was asked for a format it does not write.
    InvalidFormat(String),
    Failed(String),
}

impl From<ControlError> for BusError {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::NoSuchJail(_) => BusError::NoSuchJail(message),
            ControlError::InvalidAddress(..) => BusError::InvalidAddress(message),
            ControlError::Ignored { .. } => BusError::Ignored(message),
            ControlError::TooWide { .. } => BusError::InvalidAddress(message),
            ControlError::InvalidDuration(_) => BusError::InvalidDuration(message),
            ControlError::NotBanned(_) => BusError::NotBanned(message),
            ControlError::AccessDenied(_) => BusError::AccessDenied(message),
            ControlError::InvalidConfiguration(_) => BusError::InvalidConfiguration(message),
            ControlError::Failed(_) => BusError::Failed(message),
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the bus: {0}")]
    Connect(#[source] zbus::Error),
    #[error("the daemon's state task did not answer")]
    OwnerGone,
    #[error("cannot request the name {SERVICE_NAME}: {0}")]
    RequestName(#[source] zbus::Error),
    #[error("the name {SERVICE_NAME} is already owned (is another banhound running?)")]
    NameTaken,
}

/// The running service. The connection serves method calls from zbus's own tasks until it
/// is closed; [`Service::stop`] releases the name and stops the signal task.
pub struct Service {
    connection: Connection,
    events: JoinHandle<()>,
}

impl Service {
    /// Connects, registers the manager and one object per jail the owner reports, then
    /// requests the name, and starts forwarding `events` as signals. The manager reports a
    /// healthy daemon; see [`Service::start_with_health`].
    pub async fn start(
        bus: Bus,
        requests: mpsc::Sender<Request>,
        events: broadcast::Receiver<Event>,
    ) -> Result<Service, StartError> {
        Self::start_with_health(bus, requests, events, watch::channel(Health::default()).1).await
    }

    /// As [`Service::start`], with the manager's Degraded, StateError, UnsavedChanges and
    /// FirewallError properties following `health`.
    pub async fn start_with_health(
        bus: Bus,
        requests: mpsc::Sender<Request>,
        events: broadcast::Receiver<Event>,
        health: watch::Receiver<Health>,
    ) -> Result<Service, StartError> {
        let owner = Owner { requests };
        let status = owner
            .ask(|reply| Request::Status { reply })
            .await
            .map_err(|_| StartError::OwnerGone)?;
        let builder = bus.builder().map_err(StartError::Connect)?;
        let jails = Arc::new(Mutex::new(BTreeMap::new()));
        let mut builder = builder
            .serve_at(
                MANAGER_PATH,
                ReadOnlyProperties(Manager {
                    owner: owner.clone(),
                    jails: jails.clone(),
                    health: health.clone(),
                    started: status.started,
                }),
            )
            .map_err(StartError::Connect)?;
        {
            let mut known = jails.lock().await;
            for snapshot in status.jails {
                builder = builder
                    .serve_at(
                        jail_path(&snapshot.name),
                        ReadOnlyProperties(Jail {
                            name: snapshot.name.clone(),
                            owner: owner.clone(),
                        }),
                    )
                    .map_err(StartError::Connect)?;
                known.insert(snapshot.name.clone(), snapshot);
            }
        }
        let connection = builder.build().await.map_err(StartError::Connect)?;
        let reply = connection
            .request_name_with_flags(SERVICE_NAME, RequestNameFlags::DoNotQueue.into())
            .await
            .map_err(|e| match e {
                zbus::Error::NameTaken => StartError::NameTaken,
                other => StartError::RequestName(other),
            })?;
        if !matches!(
            reply,
            RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner
        ) {
            return Err(StartError::NameTaken);
        }
        let events = tokio::spawn(forward_events(
            connection.clone(),
            owner,
            jails,
            events,
            health,
        ));
        Ok(Service { connection, events })
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Releases the name and stops forwarding events.
    pub async fn stop(self) {
        self.events.abort();
        // The bus drops the name with the connection anyway; releasing first makes the
        // hand-over to a restarted daemon immediate.
        let _ = self.connection.release_name(SERVICE_NAME).await;
    }
}

/// The sending half towards the owner task.
#[derive(Clone)]
struct Owner {
    requests: mpsc::Sender<Request>,
}

impl Owner {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, BusError> {
        let gone = || BusError::Failed("the daemon's state task is not running".into());
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())
    }

    /// [`ask`](Self::ask) for requests whose answer may be a [`ControlError`].
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ControlError>>) -> Request,
    ) -> Result<T, BusError> {
        self.ask(make).await?.map_err(BusError::from)
    }
}

/// The caller's UID, if it is root; `AccessDenied` otherwise.
async fn require_root(connection: &Connection, header: &Header<'_>) -> Result<u32, BusError> {
    let sender = header
        .sender()
        .ok_or_else(|| BusError::AccessDenied("the call names no sender".into()))?;
    let dbus = DBusProxy::builder(connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let uid = dbus
        .get_connection_unix_user(sender.clone().into())
        .await
        .map_err(|e| BusError::AccessDenied(format!("cannot tell who is calling: {e}")))?;
    if uid != ROOT_UID {
        return Err(BusError::AccessDenied(format!(
            "only root may change bans or settings (caller uid {uid})"
        )));
    }
    Ok(uid)
}

fn unix_secs(t: Timestamp) -> u64 {
    u64::try_from(t.as_secs()).unwrap_or(0)
}

fn until_secs(until: Option<Timestamp>) -> u64 {
    until.map_or(0, unix_secs)
}

fn ban_record(ban: &BanInfo) -> (String, u64, u64, u32) {
    (
        display_target(&ban.target),
        unix_secs(ban.since),
        until_secs(ban.until),
        ban.offence,
    )
}

/// The manager object, `/org/banhound/Banhound1`.
struct Manager {
    owner: Owner,
    jails: Arc<Mutex<BTreeMap<String, JailSnapshot>>>,
    /// The owner's health, as it publishes it.
    health: watch::Receiver<Health>,
    started: Timestamp,
}

/// Control of the whole daemon. Times are Unix seconds; an until of 0 means permanent.
/// Mutating methods (Ban, Unban, UnbanAll, Reload) are for root only.
#[interface(name = "org.banhound.Banhound1.Manager")]
impl Manager {
    /// ListJails: every configured jail as (name, object path of its
    /// org.banhound.Banhound1.Jail object).
    #[zbus(out_args("jails"))]
    async fn list_jails(&self) -> Result<Vec<(String, OwnedObjectPath)>, BusError> {
        let status = self.owner.ask(|reply| Request::Status { reply }).await?;
        status
            .jails
            .iter()
            .map(|j| {
                let path = OwnedObjectPath::try_from(jail_path(&j.name))
                    .map_err(|e| BusError::Failed(e.to_string()))?;
                Ok((j.name.clone(), path))
            })
            .collect()
    }

    /// GetStatus: the daemon's version, uptime in seconds, number of jails, and the sums
    /// over all jails of the jail counters.
    #[zbus(out_args(
        "version",
        "uptime",
        "jails",
        "currently_failed",
        "total_failed",
        "currently_banned",
        "total_banned"
    ))]
    async fn get_status(&self) -> Result<(String, u64, u32, u32, u64, u32, u64), BusError> {
        let status = self.owner.ask(|reply| Request::Status { reply }).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let uptime = now.saturating_sub(unix_secs(self.started));
        let jails = &status.jails;
        Ok((
            env!("CARGO_PKG_VERSION").to_string(),
            uptime,
            u32::try_from(jails.len()).unwrap_or(u32::MAX),
            jails.iter().map(|j| j.currently_failed).sum(),
            jails.iter().map(|j| j.total_failed).sum(),
            jails.iter().map(|j| j.currently_banned).sum(),
            jails.iter().map(|j| j.total_banned).sum(),
        ))
    }

    /// GetFleet: fleet ban sharing ([fleet]): whether it is configured, this host's name,
    /// whether the publisher is connected, the publish backlog (bans in the outbox), the
    /// entries published, whether the subscriber is connected, the other hosts read, the
    /// remote bans applied, refused, cut down (max_bantime) and skipped (over, or already
    /// banned as long), the lag of the newest applied one in milliseconds (from the failure
    /// at its origin to its enforcement here; 0: none yet), and the last error talking to
    /// Redis ("" while there is none). Without [fleet]: false and zeros.
    #[zbus(out_args(
        "configured",
        "host",
        "publishing",
        "backlog",
        "published",
        "subscribed",
        "hosts",
        "applied",
        "refused",
        "cut_down",
        "skipped",
        "lag_ms",
        "error"
    ))]
    #[allow(clippy::type_complexity)]
    async fn get_fleet(
        &self,
    ) -> Result<
        (
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
        ),
        BusError,
    > {
        let info = self.owner.ask(|reply| Request::Fleet { reply }).await?;
        let configured = info.is_some();
        let f = info.unwrap_or_default();
        Ok((
            configured,
            f.host,
            f.publishing,
            f.backlog,
            f.published,
            f.subscribed,
            f.hosts,
            f.applied,
            f.refused,
            f.cut_down,
            f.skipped,
            f.lag
                .map_or(0, |l| u64::try_from(l.as_millis()).unwrap_or(u64::MAX)),
            f.error.unwrap_or_default(),
        ))
    }

    /// GetMetrics: the daemon's figures for Prometheus, as `banhound metrics` prints them
    /// and the `[metrics] listen` endpoint serves them, in format "text" (the text
    /// exposition format 0.0.4, also for "") or "openmetrics". Errors: InvalidFormat.
    #[zbus(out_args("text"))]
    async fn get_metrics(&self, format: &str) -> Result<String, BusError> {
        let format = crate::metrics::Format::parse(format).ok_or_else(|| {
            BusError::InvalidFormat(format!(
                "no metrics format {format:?} (\"text\" or \"openmetrics\")"
            ))
        })?;
        let status = self.owner.ask(|reply| Request::Status { reply }).await?;
        Ok(crate::metrics::render(
            &status,
            &self.health.borrow(),
            format,
        ))
    }

    /// Ban: bans address in jail for duration ("10m", "1h30m", "permanent"; "" for the
    /// jail's ban time). Answers what is blocked (the address, or the jail's IPv6 prefix
    /// around it), since, until and the offence count. Errors: NoSuchJail, InvalidAddress,
    /// InvalidDuration, Ignored (loopback, ignoreip, own address), AccessDenied.
    #[zbus(out_args("target", "since", "until", "offence"))]
    async fn ban(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        jail: &str,
        address: &str,
        duration: &str,
    ) -> Result<(String, u64, u64, u32), BusError> {
        ban(&self.owner, connection, &header, jail, address, duration).await
    }

    /// Unban: lifts the ban covering address in jail, or in every jail when jail is "".
    /// Answers the jails it was lifted in. Errors: NotBanned, NoSuchJail, InvalidAddress,
    /// AccessDenied.
    #[zbus(out_args("jails"))]
    async fn unban(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        address: &str,
        jail: &str,
    ) -> Result<Vec<String>, BusError> {
        let caller_uid = require_root(connection, &header).await?;
        let addr = args::address(address)?;
        let jail = args::optional_jail(jail);
        self.owner
            .call(|reply| Request::Unban {
                addr,
                jail,
                caller_uid,
                reply,
            })
            .await
    }

    /// UnbanAll: lifts every ban of jail, or of every jail when jail is "". Answers how
    /// many bans were lifted. Errors: NoSuchJail, AccessDenied.
    #[zbus(out_args("count"))]
    async fn unban_all(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        jail: &str,
    ) -> Result<u32, BusError> {
        let caller_uid = require_root(connection, &header).await?;
        let jail = args::optional_jail(jail);
        self.owner
            .call(|reply| Request::UnbanAll {
                jail,
                caller_uid,
                reply,
            })
            .await
    }

    /// Reload: re-reads the configuration; jail objects appear and disappear to match.
    /// Errors: InvalidConfiguration (the running one stays), Failed (the new configuration
    /// could not be applied in full), AccessDenied.
    async fn reload(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BusError> {
        let caller_uid = require_root(connection, &header).await?;
        self.owner
            .call(|reply| Request::Reload { caller_uid, reply })
            .await?;
        sync_jails(connection, &self.owner, &self.jails).await
    }

    /// IsBanned: the bans covering address, as (jail, target, since, until, offence);
    /// empty when it is not banned. Errors: InvalidAddress.
    #[zbus(out_args("bans"))]
    async fn is_banned(
        &self,
        address: &str,
    ) -> Result<Vec<(String, String, u64, u64, u32)>, BusError> {
        let addr = args::address(address)?;
        let bans = self
            .owner
            .ask(|reply| Request::IsBanned { addr, reply })
            .await?;
        Ok(bans
            .iter()
            .map(|(jail, ban)| {
                let (target, since, until, offence) = ban_record(ban);
                (jail.clone(), target, since, until, offence)
            })
            .collect())
    }

    /// Degraded: something fails while bans keep working from memory: the state database
    /// cannot be written (StateError) or the firewall cannot be repaired (FirewallError).
    #[zbus(property)]
    async fn degraded(&self) -> zbus::fdo::Result<bool> {
        Ok(self.health().await?.is_degraded())
    }

    /// StateError: why the state database cannot be written, "" when it can. Meanwhile
    /// bans, unbans and journal positions wait in memory (UnsavedChanges) and are written in
    /// one transaction as soon as it works again.
    #[zbus(property)]
    async fn state_error(&self) -> zbus::fdo::Result<String> {
        Ok(self.health().await?.state_error.unwrap_or_default())
    }

    /// UnsavedChanges: changes waiting in memory to be written to the state database.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn unsaved_changes(&self) -> zbus::fdo::Result<u64> {
        Ok(self.health().await?.unsaved_changes)
    }

    /// FirewallError: why the last firewall call or reconcile failed, "" once a reconcile
    /// has put every ban in force back in place.
    #[zbus(property)]
    async fn firewall_error(&self) -> zbus::fdo::Result<String> {
        Ok(self.health().await?.firewall_error.unwrap_or_default())
    }

    /// Banned: a ban took effect in jail; address is the blocked target, until 0 means
    /// permanent, reason says why ("5 failures within 10m", "manual").
    #[zbus(signal)]
    async fn banned(
        emitter: &SignalEmitter<'_>,
        jail: &str,
        address: &str,
        until: u64,
        reason: &str,
    ) -> zbus::Result<()>;

    /// Unbanned: a ban was lifted; why is "expired", "manual", "jail-removed" or "own-address".
    #[zbus(signal)]
    async fn unbanned(
        emitter: &SignalEmitter<'_>,
        jail: &str,
        address: &str,
        why: &str,
    ) -> zbus::Result<()>;
}

impl Manager {
    async fn health(&self) -> zbus::fdo::Result<Health> {
        Ok(self.health.borrow().clone())
    }
}

async fn ban(
    owner: &Owner,
    connection: &Connection,
    header: &Header<'_>,
    jail: &str,
    address: &str,
    duration: &str,
) -> Result<(String, u64, u64, u32), BusError> {
    let caller_uid = require_root(connection, header).await?;
    let address = args::ban_address(address)?;
    let duration = args::duration(duration)?;
    let jail = jail.to_string();
    let ban = owner
        .call(|reply| Request::Ban {
            jail,
            address,
            duration,
            caller_uid,
            reply,
        })
        .await?;
    Ok(ban_record(&ban))
}

/// One jail's object, `/org/banhound/Banhound1/jail/<escaped name>`.
struct Jail {
    name: String,
    owner: Owner,
}

impl Jail {
    async fn snapshot(&self) -> zbus::fdo::Result<JailSnapshot> {
        let jail = self.name.clone();
        self.owner
            .call(|reply| Request::JailStatus { jail, reply })
            .await
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }
}

/// One jail: its settings and counters as properties (PropertiesChanged is emitted when
/// they change), its bans, and runtime changes. Times are Unix seconds (durations in
/// seconds); an until of 0 means permanent. Mutating methods (Ban, Unban, AddIgnoreIP,
/// RemoveIgnoreIP) are for root only.
#[interface(name = "org.banhound.Banhound1.Jail")]
impl Jail {
    /// GetBans: the jail's active bans as (target, since, until, offence).
    #[zbus(out_args("bans"))]
    async fn get_bans(&self) -> Result<Vec<(String, u64, u64, u32)>, BusError> {
        let jail = self.name.clone();
        let bans = self
            .owner
            .call(|reply| Request::GetBans { jail, reply })
            .await?;
        Ok(bans.iter().map(ban_record).collect())
    }

    /// GetActions: the jail's actions, in its order, as (name, kind, runs, failures, queued,
    /// dropped, error, last_error). Counters are the action's since the daemon started (an
    /// action named by several jails counts for all); error is the current failure
    /// episode's ("" while it works), last_error the latest ever ("" if none).
    #[zbus(out_args("actions"))]
    async fn get_actions(&self) -> Result<Vec<ActionRecord>, BusError> {
        let jail = self.name.clone();
        let actions = self
            .owner
            .call(|reply| Request::GetActions { jail, reply })
            .await?;
        Ok(actions.into_iter().map(action_record).collect())
    }

    /// Ban: as Manager.Ban, in this jail.
    #[zbus(out_args("target", "since", "until", "offence"))]
    async fn ban(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        address: &str,
        duration: &str,
    ) -> Result<(String, u64, u64, u32), BusError> {
        ban(
            &self.owner,
            connection,
            &header,
            &self.name,
            address,
            duration,
        )
        .await
    }

    /// Unban: lifts the ban covering address in this jail. Errors: NotBanned,
    /// InvalidAddress, AccessDenied.
    async fn unban(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        address: &str,
    ) -> Result<(), BusError> {
        let caller_uid = require_root(connection, &header).await?;
        let addr = args::address(address)?;
        let jail = Some(self.name.clone());
        self.owner
            .call(|reply| Request::Unban {
                addr,
                jail,
                caller_uid,
                reply,
            })
            .await
            .map(drop)
    }

    /// AddIgnoreIP: never ban network (an address or CIDR) in this jail until the next
    /// reload. Existing bans are not lifted. Answers false when it was already listed.
    #[zbus(name = "AddIgnoreIP", out_args("added"))]
    async fn add_ignore_ip(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        network: &str,
    ) -> Result<bool, BusError> {
        let caller_uid = require_root(connection, &header).await?;
        let net = args::network(network)?;
        let jail = self.name.clone();
        self.owner
            .call(|reply| Request::AddIgnore {
                jail,
                net,
                caller_uid,
                reply,
            })
            .await
    }

    /// RemoveIgnoreIP: takes network off this jail's ignore list until the next reload.
    /// Answers false when it was not listed.
    #[zbus(name = "RemoveIgnoreIP", out_args("removed"))]
    async fn remove_ignore_ip(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        network: &str,
    ) -> Result<bool, BusError> {
        let caller_uid = require_root(connection, &header).await?;
        let net = args::network(network)?;
        let jail = self.name.clone();
        self.owner
            .call(|reply| Request::RemoveIgnore {
                jail,
                net,
                caller_uid,
                reply,
            })
            .await
    }

    /// Name: the jail's name.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn name(&self) -> String {
        self.name.clone()
    }

    /// Enabled: whether the jail watches its logs.
    #[zbus(property)]
    async fn enabled(&self) -> zbus::fdo::Result<bool> {
        Ok(self.snapshot().await?.enabled)
    }

    /// CurrentlyFailed: addresses with failures counted and not banned.
    #[zbus(property)]
    async fn currently_failed(&self) -> zbus::fdo::Result<u32> {
        Ok(self.snapshot().await?.currently_failed)
    }

    /// TotalFailed: failures counted since the daemon started.
    #[zbus(property)]
    async fn total_failed(&self) -> zbus::fdo::Result<u64> {
        Ok(self.snapshot().await?.total_failed)
    }

    /// CurrentlyBanned: active bans.
    #[zbus(property)]
    async fn currently_banned(&self) -> zbus::fdo::Result<u32> {
        Ok(self.snapshot().await?.currently_banned)
    }

    /// TotalBanned: bans since the daemon started.
    #[zbus(property)]
    async fn total_banned(&self) -> zbus::fdo::Result<u64> {
        Ok(self.snapshot().await?.total_banned)
    }

    /// FindTime: the window for MaxRetry failures, in seconds.
    #[zbus(property)]
    async fn find_time(&self) -> zbus::fdo::Result<u64> {
        Ok(self.snapshot().await?.findtime.as_secs())
    }

    /// MaxRetry: failures within FindTime that lead to a ban.
    #[zbus(property)]
    async fn max_retry(&self) -> zbus::fdo::Result<u32> {
        Ok(self.snapshot().await?.maxretry)
    }

    /// BanTime: the base ban time in seconds, -1 for permanent.
    #[zbus(property)]
    async fn ban_time(&self) -> zbus::fdo::Result<i64> {
        Ok(ban_time_secs(self.snapshot().await?.bantime))
    }

    /// Filter: the filter's name.
    #[zbus(property)]
    async fn filter(&self) -> zbus::fdo::Result<String> {
        Ok(self.snapshot().await?.filter)
    }

    /// Backend: the firewall backend (nftables, firewalld, log-only).
    #[zbus(property)]
    async fn backend(&self) -> zbus::fdo::Result<String> {
        Ok(self.snapshot().await?.backend)
    }

    /// IgnoreIP: networks never banned by this jail (configuration plus AddIgnoreIP).
    #[zbus(property, name = "IgnoreIP")]
    async fn ignore_ip(&self) -> zbus::fdo::Result<Vec<String>> {
        Ok(ignore_strings(&self.snapshot().await?))
    }
}

/// `(name, kind, runs, failures, queued, dropped, error, last_error)`, as `GetActions` lists.
type ActionRecord = (String, String, u64, u64, u64, u64, String, String);

fn action_record(health: crate::action::ActionHealth) -> ActionRecord {
    (
        health.name,
        health.kind.to_string(),
        health.runs,
        health.failures,
        health.queued,
        health.dropped,
        health.failing.unwrap_or_default(),
        health.last_error.unwrap_or_default(),
    )
}

fn ban_time_secs(bantime: BanTime) -> i64 {
    match bantime {
        BanTime::For(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        BanTime::Permanent => -1,
    }
}

fn ignore_strings(snapshot: &JailSnapshot) -> Vec<String> {
    snapshot.ignoreip.iter().map(IpNet::to_string).collect()
}

/// The jail properties that change, by name, as PropertiesChanged carries them.
fn changing_properties(s: &JailSnapshot) -> Vec<(&'static str, Value<'static>)> {
    vec![
        ("Enabled", Value::from(s.enabled)),
        ("CurrentlyFailed", Value::from(s.currently_failed)),
        ("TotalFailed", Value::from(s.total_failed)),
        ("CurrentlyBanned", Value::from(s.currently_banned)),
        ("TotalBanned", Value::from(s.total_banned)),
        ("FindTime", Value::from(s.findtime.as_secs())),
        ("MaxRetry", Value::from(s.maxretry)),
        ("BanTime", Value::from(ban_time_secs(s.bantime))),
        ("Filter", Value::from(s.filter.clone())),
        ("Backend", Value::from(s.backend.clone())),
        ("IgnoreIP", Value::from(ignore_strings(s))),
    ]
}

/// Emits PropertiesChanged, with the new values, for what differs between `old` and `new`.
async fn announce_changes(
    connection: &Connection,
    old: &JailSnapshot,
    new: &JailSnapshot,
) -> zbus::Result<()> {
    let changed: HashMap<&str, Value<'_>> = changing_properties(old)
        .into_iter()
        .zip(changing_properties(new))
        .filter(|((_, before), (_, now))| before != now)
        .map(|(_, changed)| changed)
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let emitter = SignalEmitter::new(connection, jail_path(&new.name))?;
    zbus::fdo::Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(JAIL_INTERFACE),
        changed,
        Cow::Borrowed(&[]),
    )
    .await
}

/// The manager properties that announce their changes, as PropertiesChanged carries them.
fn health_properties(health: &Health) -> HashMap<&'static str, Value<'static>> {
    HashMap::from([
        ("Degraded", Value::from(health.is_degraded())),
        (
            "StateError",
            Value::from(health.state_error.clone().unwrap_or_default()),
        ),
        (
            "FirewallError",
            Value::from(health.firewall_error.clone().unwrap_or_default()),
        ),
    ])
}

async fn announce_health(connection: &Connection, health: &Health) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(connection, MANAGER_PATH)?;
    zbus::fdo::Properties::properties_changed(
        &emitter,
        InterfaceName::from_static_str_unchecked(MANAGER_INTERFACE),
        health_properties(health),
        Cow::Borrowed(&[]),
    )
    .await
}

/// Announces changes of a jail the bus knows; with `register`, registers an object for one
/// it does not know (only a re-listing may: a late JailChanged of a jail just removed by a
/// reload must not bring its object back).
async fn update_jail(
    connection: &Connection,
    owner: &Owner,
    known: &mut BTreeMap<String, JailSnapshot>,
    snapshot: JailSnapshot,
    register: bool,
) -> zbus::Result<()> {
    match known.get(&snapshot.name) {
        Some(old) => announce_changes(connection, old, &snapshot).await?,
        None if !register => return Ok(()),
        None => {
            let jail = ReadOnlyProperties(Jail {
                name: snapshot.name.clone(),
                owner: owner.clone(),
            });
            connection
                .object_server()
                .at(jail_path(&snapshot.name), jail)
                .await?;
        }
    }
    known.insert(snapshot.name.clone(), snapshot);
    Ok(())
}

/// Makes the jail objects match the owner's jails (after a reload, or lost events).
async fn sync_jails(
    connection: &Connection,
    owner: &Owner,
    jails: &Mutex<BTreeMap<String, JailSnapshot>>,
) -> Result<(), BusError> {
    let status = owner.ask(|reply| Request::Status { reply }).await?;
    let mut known = jails.lock().await;
    let gone: Vec<String> = known
        .keys()
        .filter(|name| !status.jails.iter().any(|j| &j.name == *name))
        .cloned()
        .collect();
    for name in gone {
        connection
            .object_server()
            .remove::<ReadOnlyProperties<Jail>, _>(jail_path(&name))
            .await?;
        known.remove(&name);
    }
    for snapshot in status.jails {
        update_jail(connection, owner, &mut known, snapshot, true).await?;
    }
    Ok(())
}

/// Waits until the owner's health changes in what PropertiesChanged announces (not just
/// the number of unsaved changes); `None` once the owner is gone.
async fn health_change(
    health: &mut Option<watch::Receiver<Health>>,
    announced: &mut HashMap<&'static str, Value<'static>>,
) -> Option<Health> {
    let Some(receiver) = health else {
        return std::future::pending().await;
    };
    loop {
        if receiver.changed().await.is_err() {
            *health = None;
            return std::future::pending().await;
        }
        let now = receiver.borrow_and_update().clone();
        let properties = health_properties(&now);
        if properties != *announced {
            *announced = properties;
            return Some(now);
        }
    }
}

async fn forward_events(
    connection: Connection,
    owner: Owner,
    jails: Arc<Mutex<BTreeMap<String, JailSnapshot>>>,
    mut events: broadcast::Receiver<Event>,
    health: watch::Receiver<Health>,
) {
    let mut announced = health_properties(&health.borrow());
    let mut health = Some(health);
    let Ok(manager) = SignalEmitter::new(&connection, MANAGER_PATH) else {
        return;
    };
    loop {
        // A failed emission (the bus went away) loses one signal; the next may succeed,
        // and the state itself lives in the owner, so there is nothing to roll back.
        let event = tokio::select! {
            event = events.recv() => event,
            Some(now) = health_change(&mut health, &mut announced) => {
                let _ = announce_health(&connection, &now).await;
                continue;
            }
        };
        let _ = match event {
            Ok(Event::Banned {
                jail,
                target,
                until,
                reason,
            }) => {
                Manager::banned(
                    &manager,
                    &jail,
                    &display_target(&target),
                    until_secs(until),
                    &reason,
                )
                .await
            }
            Ok(Event::Unbanned { jail, target, why }) => {
                Manager::unbanned(
                    &manager,
                    &jail,
                    &display_target(&target),
                    why.signal_reason(),
                )
                .await
            }
            Ok(Event::JailChanged { snapshot }) => {
                let mut known = jails.lock().await;
                update_jail(&connection, &owner, &mut known, snapshot, false).await
            }
            Ok(Event::JailsChanged) => sync_jails(&connection, &owner, &jails)
                .await
                .map_err(|e| zbus::Error::Failure(e.to_string())),
            // Missed events: re-read everything, so properties are right again (the missed
            // Banned/Unbanned signals are lost, as any signal of a lagging peer would be).
            Err(broadcast::error::RecvError::Lagged(_)) => sync_jails(&connection, &owner, &jails)
                .await
                .map_err(|e| zbus::Error::Failure(e.to_string())),
            Err(broadcast::error::RecvError::Closed) => return,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::ERROR_PREFIX;
    use zbus::DBusError;

    #[test]
    fn control_errors_keep_their_names_and_messages() {
        let e = BusError::from(ControlError::NoSuchJail("nope".into()));
        assert_eq!(e.name().as_str(), format!("{ERROR_PREFIX}.NoSuchJail"));
        assert_eq!(e.description(), Some("no jail named \"nope\""));
        let e = BusError::from(ControlError::InvalidDuration("x".into()));
        assert_eq!(e.name().as_str(), format!("{ERROR_PREFIX}.InvalidDuration"));
        let e = BusError::from(ControlError::TooWide {
            network: "198.51.100.0/24".parse().unwrap(),
            prefix: 32,
        });
        assert_eq!(e.name().as_str(), format!("{ERROR_PREFIX}.InvalidAddress"));
        assert_eq!(
            e.description(),
            Some("198.51.100.0/24 is wider than what one ban of this jail blocks (a /32; widest_ban_v4 and widest_ban_v6 allow wider networks): give an address or a narrower network")
        );
    }
}
