//! The owner task's side of the control interface: starts the D-Bus service and answers its
//! [`Request`]s.
//!
//! Why inside the owner task: a request changes the same state the log sources change, so it
//! runs in the same task, in order with the batches, and takes the same paths. A manual ban
//! is persisted, applied to the firewall, logged and announced like a ban decided from the
//! logs (`Enforcement::ban`); a manual unban leaves the kernel and the database like an
//! expiry (`Enforcement::lift`).

use super::enforcement::Cause;
use super::{wall_now, Daemon, DaemonError, Feeds, BUS_START_TIMEOUT};
use crate::bus::service::{Service, StartError};
use crate::bus::{BanInfo, Bus, ControlError, Lifted, Request, ServerStatus, SERVICE_NAME};
use crate::display::display_target;
use crate::engine::time::BanTime;
use crate::engine::tracker::ActiveBan;
use crate::metrics::listener::MetricsEndpoint;
use ipnet::IpNet;
use std::net::IpAddr;
use tokio::sync::{mpsc, oneshot};

fn ban_info(target: IpNet, ban: &ActiveBan) -> BanInfo {
    BanInfo {
        target,
        since: ban.since,
        until: ban.until,
        offence: ban.offence,
    }
}

impl Daemon {
    /// Connects to `bus` and takes the name, answering the service's requests meanwhile (it
    /// asks for the status before it registers the jails). Only a name owned by someone
    /// else is fatal; without a reachable bus the daemon still protects, uncontrolled.
    /// `requests` is the owner's end of `sender`'s channel; it stays the owner's whether
    /// or not the service starts (the metrics endpoint may use it too).
    pub(super) async fn start_service(
        &mut self,
        bus: Bus,
        sender: mpsc::Sender<Request>,
        requests: &mut mpsc::Receiver<Request>,
        feeds: &mut Feeds,
    ) -> Result<Option<Service>, DaemonError> {
        let where_ = bus.to_string();
        let start = Service::start_with_health(
            bus,
            sender,
            self.events.subscribe(),
            self.enforcement.health.subscribe(),
        );
        tokio::pin!(start);
        let started = tokio::time::timeout(BUS_START_TIMEOUT, async {
            loop {
                tokio::select! {
                    result = &mut start => return result,
                    Some(request) = requests.recv() => self.answer(request, feeds).await,
                }
            }
        })
        .await;
        let failure = match started {
            Ok(Ok(service)) => {
                tracing::info!("control interface: {SERVICE_NAME} on {where_}");
                return Ok(Some(service));
            }
            Ok(Err(StartError::NameTaken)) => return Err(DaemonError::Bus(StartError::NameTaken)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "{where_} did not answer within {}s",
                BUS_START_TIMEOUT.as_secs()
            ),
        };
        tracing::warn!(
            "{failure}: running without the control interface (banhound status, ban and \
             unban cannot reach this daemon; restart it once the bus is there)"
        );
        Ok(None)
    }

    /// Starts the `[metrics] listen` endpoint, a client of the owner through `sender`. One
    /// that cannot bind is logged: the daemon protects without it, as without a bus.
    pub(super) async fn start_metrics(
        &self,
        sender: &mpsc::Sender<Request>,
    ) -> Option<MetricsEndpoint> {
        let address = self.metrics_listen?;
        let health = self.enforcement.health.subscribe();
        match MetricsEndpoint::start(address, sender.clone(), health).await {
            Ok(endpoint) => {
                tracing::info!("metrics: http://{}/metrics", endpoint.address());
                Some(endpoint)
            }
            Err(e) => {
                tracing::warn!("{e}: running without the metrics endpoint");
                None
            }
        }
    }

    /// Answers one request; every request is answered, also when the caller is gone.
    pub(super) async fn answer(&mut self, request: Request, feeds: &mut Feeds) {
        // A reply nobody waits for any more (the caller gave up) is not an error.
        match request {
            Request::Status { reply } => {
                let _ = reply.send(ServerStatus {
                    started: self.started,
                    jails: (0..self.jails.len())
                        .map(|j| self.jails.snapshot(j))
                        .collect(),
                    reading: self.jails.iter().map(|j| j.reading).collect(),
                });
            }
            Request::Fleet { reply } => {
                let _ = reply.send(self.fleet.as_ref().map(super::fleet::Fleet::info));
            }
            Request::JailStatus { jail, reply } => {
                let _ = reply.send(self.jails.index(&jail).map(|j| self.jails.snapshot(j)));
            }
            Request::Ban {
                jail,
                address,
                duration,
                caller_uid,
                reply,
            } => {
                let result = self.ban(&jail, address, duration, caller_uid).await;
                self.reply_once_saved(reply, result);
            }
            Request::Unban {
                addr,
                jail,
                caller_uid,
                reply,
            } => {
                let result = self.unban(addr, jail, caller_uid).await;
                self.reply_once_saved(reply, result);
            }
            Request::UnbanAll {
                jail,
                caller_uid,
                reply,
            } => {
                let result = self.unban_all(jail, caller_uid).await;
                self.reply_once_saved(reply, result);
            }
            Request::IsBanned { addr, reply } => {
                let bans = (0..self.jails.len())
                    .filter_map(|j| {
                        let target = self.jails.target(j, addr);
                        let jail = self.jails.get(j);
                        let ban = jail.tracker.active_ban(&target)?;
                        Some((jail.settings.name.clone(), ban_info(target, ban)))
                    })
                    .collect();
                let _ = reply.send(bans);
            }
            Request::GetActions { jail, reply } => {
                let actions = self
                    .jails
                    .index(&jail)
                    .map(|_| self.enforcement.actions.jail_health(&jail));
                let _ = reply.send(actions);
            }
            Request::GetBans { jail, reply } => {
                let bans = self.jails.index(&jail).map(|j| {
                    let mut bans: Vec<BanInfo> = self
                        .jails
                        .get(j)
                        .tracker
                        .active_bans()
                        .map(|(t, b)| ban_info(*t, b))
                        .collect();
                    bans.sort_by_key(|b| b.target);
                    bans
                });
                let _ = reply.send(bans);
            }
            Request::Reload { caller_uid, reply } => {
                tracing::info!("reload requested over D-Bus (uid {caller_uid})");
                let _ = reply.send(self.reload(feeds).await);
            }
            Request::AddIgnore {
                jail,
                net,
                caller_uid,
                reply,
            } => {
                let net = net.trunc();
                let result = self.edit_ignore(&jail, |list| {
                    if list.contains(&net) {
                        return false;
                    }
                    list.push(net);
                    true
                });
                if let Ok(true) = result {
                    tracing::info!(JAIL = %jail, "{net} added to the ignore list of jail {jail} until the next reload (uid {caller_uid})");
                }
                let _ = reply.send(result);
            }
            Request::RemoveIgnore {
                jail,
                net,
                caller_uid,
                reply,
            } => {
                let net = net.trunc();
                let result = self.edit_ignore(&jail, |list| {
                    let before = list.len();
                    list.retain(|n| *n != net);
                    list.len() != before
                });
                if let Ok(true) = result {
                    tracing::info!(JAIL = %jail, "{net} removed from the ignore list of jail {jail} until the next reload (uid {caller_uid})");
                }
                let _ = reply.send(result);
            }
        }
        self.publish_changes();
    }

    /// Answers an admin's ban or unban once the state writer has saved it, so that a reply
    /// means the change survives a crash; the owner goes on meanwhile.
    fn reply_once_saved<T: Send + 'static>(&self, reply: oneshot::Sender<T>, value: T) {
        let saved = self.enforcement.state().saved();
        tokio::spawn(async move {
            saved.await;
            // The caller may have given up: nobody to tell.
            let _ = reply.send(value);
        });
    }

    async fn ban(
        &mut self,
        jail: &str,
        address: IpNet,
        duration: Option<BanTime>,
        caller_uid: u32,
    ) -> Result<BanInfo, ControlError> {
        let index = self.jails.index(jail)?;
        let now = wall_now();
        let running = self.jails.get_mut(index);
        let widest = running.settings.widest_ban;
        let decision = running
            .tracker
            .ban_manually(address, widest, now, duration)?;
        let info = BanInfo {
            target: decision.target,
            since: decision.at,
            until: decision.until(),
            offence: decision.offence,
        };
        let target = display_target(&decision.target);
        self.enforcement
            .ban(
                &self.jails,
                &[(index, decision)],
                &[],
                None,
                now,
                Cause::Manual { caller_uid },
            )
            .await
            .map_err(|e| {
                ControlError::Failed(format!(
                    "the ban of {target} is recorded, but the firewall refused it: {e}"
                ))
            })?;
        Ok(info)
    }

    async fn unban(
        &mut self,
        addr: IpAddr,
        jail: Option<String>,
        caller_uid: u32,
    ) -> Result<Vec<String>, ControlError> {
        let now = wall_now();
        let mut lifted = Vec::new();
        let mut refused = None;
        for j in self.jails.scope(jail)? {
            let host_target = self.jails.target(j, addr);
            let running = self.jails.get_mut(j);
            // The address's own target, else a network ban covering it (`banhound ban` of a
            // network, or a <SUBNET> failure).
            let target = if running.tracker.unban(&host_target) {
                host_target
            } else {
                let covering = running
                    .tracker
                    .active_bans()
                    .map(|(target, _)| *target)
                    .find(|target| target.contains(&addr));
                match covering {
                    Some(target) if running.tracker.unban(&target) => target,
                    _ => continue,
                }
            };
            let name = &running.settings.name;
            if let Err(e) = self
                .enforcement
                .lift(name, &[target], Lifted::Manual { caller_uid }, now)
                .await
            {
                refused = Some(e.to_string());
            }
            lifted.push(name.clone());
        }
        if let Some(e) = refused {
            return Err(ControlError::Failed(format!(
                "the ban is lifted in banhound's state, but the firewall refused: {e}"
            )));
        }
        if lifted.is_empty() {
            return Err(ControlError::NotBanned(addr.to_string()));
        }
        Ok(lifted)
    }

    async fn unban_all(
        &mut self,
        jail: Option<String>,
        caller_uid: u32,
    ) -> Result<u32, ControlError> {
        let now = wall_now();
        let mut total = 0;
        let mut refused = None;
        for j in self.jails.scope(jail)? {
            let running = self.jails.get_mut(j);
            let targets: Vec<IpNet> = running.tracker.active_bans().map(|(t, _)| *t).collect();
            for target in &targets {
                running.tracker.unban(target);
            }
            total += targets.len();
            if let Err(e) = self
                .enforcement
                .lift(
                    &running.settings.name,
                    &targets,
                    Lifted::Manual { caller_uid },
                    now,
                )
                .await
            {
                refused = Some(e.to_string());
            }
        }
        match refused {
            Some(e) => Err(ControlError::Failed(format!(
                "the bans are lifted in banhound's state, but the firewall refused: {e}"
            ))),
            None => Ok(u32::try_from(total).unwrap_or(u32::MAX)),
        }
    }

    /// Changes a jail's runtime ignore list (see [`super::jails::Jails::edit_ignore`]).
    fn edit_ignore(
        &mut self,
        jail: &str,
        edit: impl FnOnce(&mut Vec<IpNet>) -> bool,
    ) -> Result<bool, ControlError> {
        let index = self.jails.index(jail)?;
        Ok(self.jails.edit_ignore(index, edit))
    }
}
