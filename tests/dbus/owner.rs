//! A stand-in for the daemon's owner task, for these tests only: it answers the bus's
//! [`Request`]s and sends [`Event`]s exactly as the boundary in `src/bus/mod.rs` asks, using
//! the REAL engine (a `Tracker` per jail with the `Policy` built from the real configuration
//! loader). It is not a mock of D-Bus: every call in the tests goes through a real
//! dbus-daemon, the real policy and the real service. What it does not have is the daemon's
//! log sources, firewall and persistence; the real owner (src/daemon/control.rs) is tested
//! end to end with those in tests/daemon.rs.

use banhound::bus::{BanInfo, ControlError, Event, JailSnapshot, Lifted, Request, ServerStatus};
use banhound::config::{self, ConfigPaths};
use banhound::engine::address::IgnoreList;
use banhound::engine::time::Timestamp;
use banhound::engine::tracker::{Mode, Policy, Tracker, Verdict};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc};

/// What the owner reacts to: the bus, or a failure as a log source would report it.
pub enum Input {
    Bus(Request),
    Failure {
        jail: String,
        addr: IpAddr,
    },
    /// A reload the bus did not ask for (SIGHUP, `systemctl reload`).
    Reload,
}

struct OwnedJail {
    enabled: bool,
    filter: String,
    backend: String,
    tracker: Tracker,
}

pub struct Owner {
    paths: ConfigPaths,
    started: Timestamp,
    jails: BTreeMap<String, OwnedJail>,
    events: broadcast::Sender<Event>,
}

pub fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_micros(i64::try_from(d.as_micros()).unwrap())
}

impl Owner {
    pub fn new(paths: ConfigPaths, events: broadcast::Sender<Event>) -> Owner {
        let mut owner = Owner {
            paths,
            started: now(),
            jails: BTreeMap::new(),
            events,
        };
        owner.load().expect("test configuration loads");
        owner
    }

    /// Loads (or reloads) the configuration: new jails get a tracker, kept ones a new
    /// policy with their bans intact, removed ones lose their bans.
    fn load(&mut self) -> Result<(), ControlError> {
        let settings =
            config::load(&self.paths).map_err(|e| ControlError::Failed(e.to_string()))?;
        let mut jails = BTreeMap::new();
        for js in settings.jails {
            let policy = js.policy.to_policy(&[]);
            let tracker = match self.jails.remove(&js.name) {
                Some(mut old) => {
                    old.tracker.set_policy(policy);
                    old.tracker
                }
                None => Tracker::new(policy),
            };
            jails.insert(
                js.name.clone(),
                OwnedJail {
                    enabled: js.enabled,
                    filter: js.filter.name.clone(),
                    backend: js.backend.as_str().to_string(),
                    tracker,
                },
            );
        }
        for (name, gone) in std::mem::take(&mut self.jails) {
            for (target, _) in gone.tracker.active_bans() {
                self.emit(Event::Unbanned {
                    jail: name.clone(),
                    target: *target,
                    why: Lifted::JailRemoved,
                });
            }
        }
        self.jails = jails;
        self.emit(Event::JailsChanged);
        Ok(())
    }

    fn emit(&self, event: Event) {
        // No receiver yet (before the service starts) is fine.
        let _ = self.events.send(event);
    }

    fn snapshot(name: &str, jail: &OwnedJail) -> JailSnapshot {
        let policy = jail.tracker.policy();
        let totals = jail.tracker.totals();
        JailSnapshot {
            name: name.to_string(),
            enabled: jail.enabled,
            currently_failed: u32::try_from(jail.tracker.currently_failing()).unwrap(),
            total_failed: totals.failures,
            currently_banned: u32::try_from(jail.tracker.active_bans().count()).unwrap(),
            total_banned: totals.bans,
            findtime: policy.findtime,
            maxretry: policy.maxretry,
            bantime: policy.bantime,
            filter: jail.filter.clone(),
            backend: jail.backend.clone(),
            ignoreip: policy.ignore.networks().to_vec(),
        }
    }

    fn changed(&self, name: &str) {
        if let Some(jail) = self.jails.get(name) {
            self.emit(Event::JailChanged {
                snapshot: Self::snapshot(name, jail),
            });
        }
    }

    fn jail_mut(&mut self, name: &str) -> Result<&mut OwnedJail, ControlError> {
        self.jails
            .get_mut(name)
            .ok_or_else(|| ControlError::NoSuchJail(name.to_string()))
    }

    fn scope(&self, jail: Option<String>) -> Result<Vec<String>, ControlError> {
        match jail {
            Some(name) if self.jails.contains_key(&name) => Ok(vec![name]),
            Some(name) => Err(ControlError::NoSuchJail(name)),
            None => Ok(self.jails.keys().cloned().collect()),
        }
    }

    fn ban_info(target: IpNet, ban: &banhound::engine::tracker::ActiveBan) -> BanInfo {
        BanInfo {
            target,
            since: ban.since,
            until: ban.until,
            offence: ban.offence,
        }
    }

    fn lift(&mut self, name: &str, target: IpNet, why: Lifted) {
        if let Some(jail) = self.jails.get_mut(name) {
            if jail.tracker.unban(&target) {
                self.emit(Event::Unbanned {
                    jail: name.to_string(),
                    target,
                    why,
                });
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Failure { jail, addr } => {
                let Ok(j) = self.jail_mut(&jail) else { return };
                if let Verdict::Ban(decision) = j.tracker.failure(addr, now(), Mode::Live) {
                    let findtime = j.tracker.policy().findtime;
                    self.emit(Event::Banned {
                        jail: jail.clone(),
                        target: decision.target,
                        until: decision.until(),
                        reason: format!(
                            "{} failures within {}",
                            decision.failures,
                            banhound::engine::time::format_duration(findtime)
                        ),
                    });
                }
                self.changed(&jail);
            }
            Input::Reload => self.load().expect("test configuration reloads"),
            Input::Bus(request) => self.request(request),
        }
    }

    fn request(&mut self, request: Request) {
        // A reply nobody waits for any more (the caller gave up) is not an error.
        match request {
            Request::Status { reply } => {
                let jails = self
                    .jails
                    .iter()
                    .map(|(n, j)| Self::snapshot(n, j))
                    .collect();
                let _ = reply.send(ServerStatus {
                    started: self.started,
                    jails,
                });
            }
            Request::JailStatus { jail, reply } => {
                let _ = reply.send(
                    self.jails
                        .get(&jail)
                        .map(|j| Self::snapshot(&jail, j))
                        .ok_or(ControlError::NoSuchJail(jail)),
                );
            }
            Request::Ban {
                jail,
                address,
                duration,
                caller_uid,
                reply,
            } => {
                let result = self.jail_mut(&jail).and_then(|j| {
                    j.tracker
                        .ban_manually(address, now(), duration)
                        .map_err(ControlError::from)
                });
                if let Ok(decision) = &result {
                    self.emit(Event::Banned {
                        jail: jail.clone(),
                        target: decision.target,
                        until: decision.until(),
                        reason: format!("manual (uid {caller_uid})"),
                    });
                    self.changed(&jail);
                }
                let _ = reply.send(result.map(|d| BanInfo {
                    target: d.target,
                    since: d.at,
                    until: d.until(),
                    offence: d.offence,
                }));
            }
            Request::Unban {
                addr,
                jail,
                caller_uid,
                reply,
            } => {
                let result = self.scope(jail).and_then(|names| {
                    let mut lifted = Vec::new();
                    for name in names {
                        let prefix = self.jails[&name].tracker.policy().ipv6_prefix;
                        let target = banhound::engine::address::ban_target(addr, prefix);
                        if self.jails[&name].tracker.active_ban(&target).is_some() {
                            self.lift(&name, target, Lifted::Manual { caller_uid });
                            self.changed(&name);
                            lifted.push(name);
                        }
                    }
                    if lifted.is_empty() {
                        Err(ControlError::NotBanned(addr.to_string()))
                    } else {
                        Ok(lifted)
                    }
                });
                let _ = reply.send(result);
            }
            Request::UnbanAll {
                jail,
                caller_uid,
                reply,
            } => {
                let result = self.scope(jail).map(|names| {
                    let mut count = 0;
                    for name in names {
                        let targets: Vec<IpNet> = self.jails[&name]
                            .tracker
                            .active_bans()
                            .map(|(t, _)| *t)
                            .collect();
                        for target in &targets {
                            self.lift(&name, *target, Lifted::Manual { caller_uid });
                        }
                        if !targets.is_empty() {
                            self.changed(&name);
                        }
                        count += u32::try_from(targets.len()).unwrap();
                    }
                    count
                });
                let _ = reply.send(result);
            }
            Request::IsBanned { addr, reply } => {
                let bans = self
                    .jails
                    .iter()
                    .filter_map(|(name, j)| {
                        let target = banhound::engine::address::ban_target(
                            addr,
                            j.tracker.policy().ipv6_prefix,
                        );
                        j.tracker
                            .active_ban(&target)
                            .map(|b| (name.clone(), Self::ban_info(target, b)))
                    })
                    .collect();
                let _ = reply.send(bans);
            }
            Request::GetBans { jail, reply } => {
                let result = self
                    .jails
                    .get(&jail)
                    .map(|j| {
                        let mut bans: Vec<BanInfo> = j
                            .tracker
                            .active_bans()
                            .map(|(t, b)| Self::ban_info(*t, b))
                            .collect();
                        bans.sort_by_key(|b| b.target);
                        bans
                    })
                    .ok_or(ControlError::NoSuchJail(jail));
                let _ = reply.send(result);
            }
            Request::Reload {
                caller_uid: _,
                reply,
            } => {
                let _ = reply.send(self.load());
            }
            Request::AddIgnore {
                jail,
                net,
                caller_uid: _,
                reply,
            } => {
                let result = self.edit_ignore(&jail, |list| {
                    if list.contains(&net) {
                        false
                    } else {
                        list.push(net);
                        true
                    }
                });
                let _ = reply.send(result);
            }
            Request::RemoveIgnore {
                jail,
                net,
                caller_uid: _,
                reply,
            } => {
                let result = self.edit_ignore(&jail, |list| {
                    let before = list.len();
                    list.retain(|n| *n != net);
                    list.len() != before
                });
                let _ = reply.send(result);
            }
        }
    }

    fn edit_ignore(
        &mut self,
        jail: &str,
        edit: impl FnOnce(&mut Vec<IpNet>) -> bool,
    ) -> Result<bool, ControlError> {
        let j = self.jail_mut(jail)?;
        let policy = j.tracker.policy().clone();
        let mut networks = policy.ignore.networks().to_vec();
        let changed = edit(&mut networks);
        if changed {
            j.tracker.set_policy(Policy {
                ignore: IgnoreList::new(networks, Vec::new()),
                ..policy
            });
            self.changed(jail);
        }
        Ok(changed)
    }

    fn expire(&mut self) {
        let now = now();
        let names: Vec<String> = self.jails.keys().cloned().collect();
        for name in names {
            let ended = self.jails.get_mut(&name).unwrap().tracker.take_expired(now);
            for target in &ended {
                self.emit(Event::Unbanned {
                    jail: name.clone(),
                    target: *target,
                    why: Lifted::Expired,
                });
            }
            if !ended.is_empty() {
                self.changed(&name);
            }
        }
    }

    /// The owner loop: one task, all state, requests and expiries in order.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let next = self
                .jails
                .values()
                .filter_map(|j| j.tracker.next_expiry())
                .min();
            let sleep = next.map(|t| {
                Duration::from_micros(
                    u64::try_from((t.as_micros() - now().as_micros()).max(0)).unwrap(),
                )
            });
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input),
                    None => return,
                },
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => self.expire(),
            }
        }
    }
}
