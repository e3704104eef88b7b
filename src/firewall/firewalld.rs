//! The firewalld backend: bans as entries of banhound-owned ipsets, over firewalld's D-Bus API.
//!
//! On hosts where firewalld manages the firewall, writing nftables rules beside it is fragile
//! (a `firewall-cmd --reload` rebuilds its own table, and admins expect to see every rule in
//! firewalld), so bans go through firewalld itself. Its real limits shape the design:
//!
//! - ipsets exist only in the permanent configuration. [`Firewall::setup`] creates one set per
//!   jail and family (`banhound-<jail>-v4` / `-v6`, `hash:net`) once, and reloads firewalld
//!   only when it had to create, change or delete one (or the policy, below).
//! - A set with a `timeout` option can neither be listed nor have entries removed, and
//!   `addEntry` takes no per-entry timeout. Our sets have no timeout: the daemon schedules
//!   unbans itself, and [`BanEntry::timeout`] is ignored here ([`Firewall::list`] reports
//!   `None`).
//! - Entries are runtime state. They are never written to the permanent configuration (that
//!   rewrites an XML file per ban), so a reload or restart of firewalld empties the sets.
//!   The backend therefore keeps its own view of the current bans and puts them back when
//!   firewalld says it reloaded or came back: see [`FirewalldBackend::watch_reloads`].
//! - The only bulk entry operation is the runtime `setEntries`, which replaces a whole set.
//!   Small batches use `addEntry`/`removeEntry` per address; larger ones send the whole set
//!   once (firewalld applies it in chunks of 1000 elements, and bans of the set are briefly
//!   absent between its flush and the re-add).
//! - firewalld refuses overlapping entries (a /64 and an address inside it): an entry inside
//!   a banned network is kept in our view but not sent, since the network already blocks it.
//!
//! Each set is referenced by rich rules (one per protocol and port range, or one for
//! `Ports::All`) in one firewalld policy, `banhound`, from every zone (`ANY`) to the host
//! (`HOST`) at a negative priority: it applies before any zone's rules, whatever zone an
//! interface is in or is moved to (rules in a zone would only cover that zone's
//! interfaces). Jails that ban forwarded traffic (`chains = ["forward"]`) have the same
//! rules in a second policy, `banhound-forward`, from `ANY` to `ANY`: firewalld's forward
//! path, after DNAT, so it covers the hosts behind a gateway and a Docker host's published
//! ports. Its port rules compare the port as forwarded (after DNAT: a container's own port);
//! rich rules cannot match the port before DNAT as the nftables backend also does. The policy is permanent (so it survives reloads; creating it takes one
//! reload, like the ipsets) and its zones and rules are checked and put right at runtime
//! too. Rules of ours are recognised by `source ipset="banhound-`; setup removes any an older
//! banhound left in a zone.

mod objects;
mod policy;
mod proxies;

pub use objects::JailNameError;

/// The bus name firewalld owns while it runs.
pub const BUS_NAME: &str = proxies::SERVICE;

use crate::bus::Bus;
use crate::firewall::Family;
use crate::firewall::{
    count_of, BackendKind, BanEntry, Firewall, FirewallError, JailRules, Ports, Repairs,
};
use futures_util::StreamExt;
use ipnet::IpNet;
use objects::{OurPolicy, PolicyShape};
use proxies::{
    ConfigIpSetProxy, ConfigPolicyProxy, ConfigProxy, ConfigZoneProxy, FirewalldProxy,
    RuntimeIpSetsProxy, RuntimePoliciesProxy, RuntimeZonesProxy,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use zbus::proxy::CacheProperties;
use zbus::zvariant::Value;

/// Up to this many new bans per set, a batch is sent one `addEntry` call each; above it,
/// one `setEntries` with the whole set. firewalld checks every `addEntry` against all
/// entries of the set for overlaps, so both grow with the set size; measured with firewalld
/// 1.3 and 10,000 entries, one `addEntry` took 0.15-0.22 s and a `setEntries` 1.3-1.8 s.
const SINGLE_ADD_LIMIT: usize = 6;
/// The same for unbans: `removeEntry` does no overlap check (55 ms at 10,000 entries), while
/// `setEntries` costs by the entries that remain.
const SINGLE_REMOVE_LIMIT: usize = 16;
/// A `setEntries` of 100,000 addresses took firewalld 40-63 s here; anything much longer
/// means it is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// After a reload or restart firewalld may refuse calls for seconds (it takes its bus name
/// before it has loaded its configuration): re-applying is retried with doubling delays
/// from the first to the longest, so the bans are back at most the longest delay after
/// firewalld can take them, and for at most `REAPPLY_FOR` (then the daemon's reconcile
/// takes over).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(50);
const LONGEST_RETRY_DELAY: Duration = Duration::from_millis(250);
const REAPPLY_FOR: Duration = Duration::from_secs(60);
/// Re-apply reports the daemon has not read yet; older ones are dropped, not queued forever.
const REPORT_BACKLOG: usize = 16;

/// What went wrong talking to firewalld.
#[derive(Debug, thiserror::Error)]
pub enum FirewalldError {
    // The D-Bus error (its name and firewalld's message, e.g.
    // `org.fedoraproject.FirewallD1.Exception: INVALID_IPSET: ...`) is part of the message:
    // the daemon logs and publishes errors with their Display only.
    #[error("cannot connect to the D-Bus bus: {0}")]
    Connect(Box<zbus::Error>),
    #[error("firewalld call {operation} failed: {error}")]
    Call {
        operation: String,
        error: Box<zbus::Error>,
    },
    #[error(transparent)]
    JailName(#[from] JailNameError),
    #[error("jail {0:?} blocks specific ports but lists no ports or no protocols")]
    NoPorts(String),
    #[error("jail {0:?} is not set up in firewalld")]
    UnknownJail(String),
    #[error("firewalld holds entry {entry:?} in ipset {ipset}, which is not an address")]
    BadEntry { ipset: String, entry: String },
}

impl From<FirewalldError> for FirewallError {
    fn from(error: FirewalldError) -> Self {
        FirewallError {
            backend: BackendKind::Firewalld,
            source: Box::new(error),
        }
    }
}

/// Names the failed call in the error, e.g. `addEntry(banhound-sshd-v4)`.
fn call_failed(operation: impl Into<String>) -> impl FnOnce(zbus::Error) -> FirewalldError {
    let operation = operation.into();
    move |error| FirewalldError::Call {
        operation,
        error: Box::new(error),
    }
}

fn connect_failed(source: zbus::Error) -> FirewalldError {
    FirewalldError::Connect(Box::new(source))
}

/// firewalld reports its errors as `CODE: detail` in the D-Bus error message; the code
/// tells "already there"/"not there" (which idempotent calls ignore) from real failures.
fn firewalld_error_code(error: &zbus::Error) -> Option<&str> {
    match error {
        zbus::Error::MethodError(_, Some(message), _) => message.split(':').next().map(str::trim),
        _ => None,
    }
}

/// Treats firewalld's "already so" answer (`code`) as success.
fn tolerate(result: zbus::Result<()>, code: &str) -> zbus::Result<()> {
    match result {
        Err(error) if firewalld_error_code(&error) == Some(code) => Ok(()),
        other => other,
    }
}

fn tolerate_string(result: zbus::Result<String>, code: &str) -> zbus::Result<()> {
    tolerate(result.map(drop), code)
}

/// Whether a repair takes in entries firewalld holds that the backend's view lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adopt {
    /// Setup and re-apply: the view may be incomplete (a daemon restart).
    Yes,
    /// The daemon's reconcile: its bans are the truth, anything else is stale.
    No,
}

/// What a repair had to change.
#[derive(Debug, Default)]
struct Repaired {
    objects: Vec<String>,
    /// Entries put back.
    restored: usize,
    /// Entries removed.
    removed: usize,
}

/// What caused a re-apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReapplyTrigger {
    /// firewalld emitted `Reloaded` (`firewall-cmd --reload`, also `--complete-reload`).
    Reloaded,
    /// firewalld's bus name got a new owner: it was (re)started.
    Restarted,
}

/// The outcome of one re-apply, for the daemon to log.
#[derive(Debug)]
pub struct Reapplied {
    pub trigger: ReapplyTrigger,
    /// From receiving the signal to all bans being back (or giving up).
    pub elapsed: Duration,
    /// How many bans were re-applied.
    pub result: Result<usize, FirewallError>,
}

/// The running re-apply task of [`FirewalldBackend::watch_reloads`]. Dropping it stops the
/// task.
pub struct ReloadWatcher {
    task: JoinHandle<()>,
    reports: mpsc::Receiver<Reapplied>,
}

impl ReloadWatcher {
    /// The next re-apply report; `None` once the task ended (the bus connection closed).
    pub async fn next_report(&mut self) -> Option<Reapplied> {
        self.reports.recv().await
    }
}

impl Drop for ReloadWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bans through firewalld. See the module documentation for how objects are laid out.
pub struct FirewalldBackend {
    shared: Arc<Shared>,
}

/// What the trait methods and the re-apply task share.
struct Shared {
    connection: zbus::Connection,
    firewalld: FirewalldProxy<'static>,
    ipsets: RuntimeIpSetsProxy<'static>,
    zones: RuntimeZonesProxy<'static>,
    policies: RuntimePoliciesProxy<'static>,
    config: ConfigProxy<'static>,
    /// Whether a reload watcher subscribed: only then do our reloads' signals arrive.
    watching: AtomicBool,
    /// Reloads of ours whose `Reloaded` signal the watcher has not seen yet.
    own_reloads: AtomicUsize,
    /// One lock for every change, so a re-apply after a reload cannot interleave with a ban
    /// (its `setEntries` would drop the ban) and batches reach firewalld whole.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether `setup` ran (and no `teardown` since): before that a re-apply has nothing
    /// to restore and must not delete the sets of jails it has not been told about yet.
    set_up: bool,
    jails: Vec<JailRules>,
    /// Current bans by ipset name, as truncated networks: what a re-apply puts back.
    bans: BTreeMap<String, BTreeSet<IpNet>>,
}

impl FirewalldBackend {
    /// Checks what `setup` cannot represent (a jail name too long for an ipset name, a port
    /// rule without ports), so a configuration can be refused before anything is changed.
    pub fn check_jail(jail: &JailRules) -> Result<(), FirewalldError> {
        objects::check_jail_name(&jail.jail)?;
        if let Ports::Only { protocols, ports } = &jail.ports {
            if protocols.is_empty() || ports.is_empty() {
                return Err(FirewalldError::NoPorts(jail.jail.clone()));
            }
        }
        Ok(())
    }

    /// Whether firewalld owns its bus name (is running). Calls to a name nobody owns fail, and
    /// no banhound call starts firewalld: it ships no D-Bus activation file, and this lets a
    /// caller not even try.
    pub async fn is_running(&self) -> Result<bool, FirewallError> {
        let bus = zbus::fdo::DBusProxy::new(&self.shared.connection)
            .await
            .map_err(connect_failed)?;
        let name = zbus::names::BusName::try_from(proxies::SERVICE)
            .map_err(|e| connect_failed(e.into()))?;
        Ok(bus
            .name_has_owner(name)
            .await
            .map_err(|e| call_failed("NameHasOwner")(e.into()))?)
    }

    /// Connects to the bus firewalld is on; firewalld itself need not be running yet.
    /// Nothing is changed until [`Firewall::setup`].
    pub async fn connect(bus: &Bus) -> Result<Self, FirewallError> {
        let builder = bus.builder().map_err(connect_failed)?;
        let connection = builder
            .method_timeout(CALL_TIMEOUT)
            .build()
            .await
            .map_err(connect_failed)?;
        Ok(Self::with_connection(connection).await?)
    }

    /// Uses an existing bus connection (the daemon's own, for example).
    pub async fn with_connection(connection: zbus::Connection) -> Result<Self, FirewalldError> {
        let shared = Shared {
            firewalld: FirewalldProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_failed)?,
            ipsets: RuntimeIpSetsProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_failed)?,
            zones: RuntimeZonesProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_failed)?,
            policies: RuntimePoliciesProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_failed)?,
            config: ConfigProxy::builder(&connection)
                .cache_properties(CacheProperties::No)
                .build()
                .await
                .map_err(connect_failed)?,
            connection,
            watching: AtomicBool::new(false),
            own_reloads: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
        };
        Ok(FirewalldBackend {
            shared: Arc::new(shared),
        })
    }

    /// Starts a task that puts every current ban back after firewalld reloads (`Reloaded`
    /// signal) or restarts (a new owner of its bus name), retrying briefly while firewalld
    /// is still starting. The subscriptions are in place when this returns, so no reload
    /// after it is missed.
    ///
    /// The daemon calls this once, right after connecting (firewalld need not be running),
    /// and keeps the returned [`ReloadWatcher`] alive for as long as it runs, reading
    /// [`ReloadWatcher::next_report`] to log each re-apply and to learn that firewalld answers
    /// again (unread reports beyond a small backlog are dropped; the re-apply happens
    /// regardless). A re-apply also repairs the ipsets, the policy and its rules, like
    /// `setup`. Before the first `setup` there is nothing to put back: a re-apply then only
    /// waits until firewalld answers calls and reports 0 bans, so the daemon can set up
    /// without waiting for its next retry.
    pub async fn watch_reloads(&self) -> Result<ReloadWatcher, FirewallError> {
        let mut reloaded = self
            .shared
            .firewalld
            .receive_reloaded()
            .await
            .map_err(call_failed("subscribe Reloaded"))?;
        let bus = zbus::fdo::DBusProxy::new(&self.shared.connection)
            .await
            .map_err(connect_failed)?;
        let mut owner_changes = bus
            .receive_name_owner_changed_with_args(&[(0, proxies::SERVICE)])
            .await
            .map_err(call_failed("subscribe NameOwnerChanged"))?;
        // From here on our own reloads are counted, so the watcher can tell them apart.
        self.shared.watching.store(true, Ordering::SeqCst);
        let (report_sender, reports) = mpsc::channel(REPORT_BACKLOG);
        let shared = Arc::clone(&self.shared);
        let task = tokio::spawn(async move {
            loop {
                let trigger = tokio::select! {
                    Some(_) = reloaded.next() => {
                        if shared.take_own_reload() {
                            continue;
                        }
                        ReapplyTrigger::Reloaded
                    }
                    Some(change) = owner_changes.next() => {
                        // A new instance sends no signal for an old one's reload.
                        shared.own_reloads.store(0, Ordering::SeqCst);
                        // Losing the name (firewalld stopping) leaves nothing to apply to.
                        match change.args() {
                            Ok(args) if args.new_owner().is_some() => ReapplyTrigger::Restarted,
                            _ => continue,
                        }
                    }
                    else => break,
                };
                let started = Instant::now();
                let result = shared.reapply().await.map_err(FirewallError::from);
                let report = Reapplied {
                    trigger,
                    elapsed: started.elapsed(),
                    result,
                };
                // A full backlog means nobody reads reports; the ban is back either way.
                let _ = report_sender.try_send(report);
            }
        });
        Ok(ReloadWatcher { task, reports })
    }
}

impl Shared {
    async fn reapply(&self) -> Result<usize, FirewalldError> {
        let mut delay = FIRST_RETRY_DELAY;
        let give_up = Instant::now() + REAPPLY_FOR;
        loop {
            let mut state = self.state.lock().await;
            let attempt = if state.set_up {
                self.repair(&mut state, false, Adopt::Yes).await.map(drop)
            } else {
                // Nothing of ours to put back yet: only whether firewalld answers calls.
                self.firewalld
                    .get_default_zone()
                    .await
                    .map(drop)
                    .map_err(call_failed("getDefaultZone"))
            };
            match attempt {
                Ok(()) => return Ok(state.bans.values().map(BTreeSet::len).sum()),
                Err(error) if Instant::now() >= give_up => return Err(error),
                Err(_) => {}
            }
            drop(state);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(LONGEST_RETRY_DELAY);
        }
    }

    /// Reloads firewalld for a permanent change of ours. Its `Reloaded` signal is then ours
    /// too, and the watcher skips it: the caller holds the state lock and puts the bans back
    /// itself, so a re-apply would only read every set again (seconds, with many bans).
    async fn reload(&self) -> Result<(), FirewalldError> {
        let counted = self.watching.load(Ordering::SeqCst);
        if counted {
            self.own_reloads.fetch_add(1, Ordering::SeqCst);
        }
        let result = self.firewalld.reload().await.map_err(call_failed("reload"));
        if counted && result.is_err() {
            // No signal is coming for a reload that failed (at worst one re-apply too many).
            self.take_own_reload();
        }
        result
    }

    /// Counts one `Reloaded` signal as ours; whether there was one to count.
    fn take_own_reload(&self) -> bool {
        self.own_reloads
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn config_ipset(&self, name: &str) -> Result<ConfigIpSetProxy<'static>, FirewalldError> {
        let path = self
            .config
            .get_ipset_by_name(name)
            .await
            .map_err(call_failed(format!("getIPSetByName({name})")))?;
        self.config_object(path).await
    }

    async fn config_zone(&self, zone: &str) -> Result<ConfigZoneProxy<'static>, FirewalldError> {
        let path = self
            .config
            .get_zone_by_name(zone)
            .await
            .map_err(call_failed(format!("getZoneByName({zone})")))?;
        self.config_object(path).await
    }

    async fn config_policy(
        &self,
        policy: OurPolicy,
    ) -> Result<ConfigPolicyProxy<'static>, FirewalldError> {
        let name = policy.name();
        let path = self
            .config
            .get_policy_by_name(name)
            .await
            .map_err(call_failed(format!("getPolicyByName({name})")))?;
        self.config_object(path).await
    }

    /// A proxy for one object of firewalld's permanent configuration (an ipset, a zone, the
    /// policy) at the path its name led to: its properties are never cached, since firewalld
    /// changes them behind our back.
    async fn config_object<P>(
        &self,
        path: zbus::zvariant::OwnedObjectPath,
    ) -> Result<P, FirewalldError>
    where
        P: zbus::proxy::ProxyImpl<'static> + From<zbus::Proxy<'static>>,
    {
        P::builder(&self.connection)
            .path(path)
            .map_err(connect_failed)?
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(connect_failed)
    }

    /// Makes firewalld match `state`: our permanent ipsets and policy exactly for
    /// `state.jails`, the same policy at runtime, and every set holding exactly our bans.
    /// With [`Adopt::Yes`], entries firewalld holds that we did not know of are adopted, so a
    /// daemon restart does not unban anything before the daemon reconciles; with
    /// [`Adopt::No`] (the daemon's reconcile, whose view is the truth) they are removed.
    ///
    /// `sweep_zones` also removes rules of ours from every zone, where banhound put them
    /// before it used a policy (setup does; a re-apply and a reconcile stay fast).
    async fn repair(
        &self,
        state: &mut State,
        sweep_zones: bool,
        adopt: Adopt,
    ) -> Result<Repaired, FirewalldError> {
        let mut repaired = Repaired::default();
        let mut wanted_sets = BTreeMap::new();
        let mut wanted_rules: BTreeMap<OurPolicy, BTreeSet<String>> = BTreeMap::new();
        for jail in &state.jails {
            for family in Family::BOTH {
                wanted_sets.insert(
                    objects::ipset_name(&jail.jail, family),
                    objects::ipset_settings(&jail.jail, family),
                );
                for policy in OurPolicy::ALL
                    .into_iter()
                    .filter(|p| p.used_by(jail.chains))
                {
                    wanted_rules
                        .entry(policy)
                        .or_default()
                        .extend(objects::rich_rules(jail, family));
                }
            }
        }
        // No jail using a policy, no policy: an empty one would be a leftover.
        let wanted_policies = OurPolicy::ALL.map(|policy| {
            let wanted = wanted_rules
                .remove(&policy)
                .filter(|rules| !rules.is_empty())
                .map(|rules| PolicyShape::wanted(policy, rules));
            (policy, wanted)
        });

        if sweep_zones {
            self.remove_rules_from_zones().await?;
        }

        // Permanent ipsets first: rules may only reference sets that exist.
        let mut permanent_changed = false;
        let existing: BTreeSet<String> = self
            .config
            .get_ipset_names()
            .await
            .map_err(call_failed("getIPSetNames"))?
            .into_iter()
            .filter(|name| objects::parse_ipset_name(name).is_some())
            .collect();
        for (name, settings) in &wanted_sets {
            if existing.contains(name) {
                let ipset = self.config_ipset(name).await?;
                let found = ipset
                    .get_settings()
                    .await
                    .map_err(call_failed(format!("getSettings({name})")))?;
                if !objects::ipset_settings_match(&found, settings) {
                    ipset
                        .update(settings)
                        .await
                        .map_err(call_failed(format!("update({name})")))?;
                    permanent_changed = true;
                    repaired
                        .objects
                        .push(format!("permanent ipset {name} (settings)"));
                }
            } else {
                self.config
                    .add_ipset(name, settings)
                    .await
                    .map_err(call_failed(format!("addIPSet({name})")))?;
                permanent_changed = true;
                repaired.objects.push(format!("permanent ipset {name}"));
            }
        }
        // Then the policies, before the sets they may still reference are removed.
        for (policy, wanted) in &wanted_policies {
            permanent_changed |= self
                .sync_permanent_policy(*policy, wanted.as_ref(), &mut repaired)
                .await?;
        }
        for name in existing.iter().filter(|n| !wanted_sets.contains_key(*n)) {
            self.config_ipset(name)
                .await?
                .remove()
                .await
                .map_err(call_failed(format!("remove ipset {name}")))?;
            permanent_changed = true;
        }

        // A set or the policy that exists only permanently (a run interrupted before its
        // reload, or someone's reload that failed) needs a reload too.
        let runtime_sets: BTreeSet<String> = self
            .ipsets
            .get_ipsets()
            .await
            .map_err(call_failed("getIPSets"))?
            .into_iter()
            .collect();
        let missing_sets: Vec<&String> = wanted_sets
            .keys()
            .filter(|name| !runtime_sets.contains(*name))
            .collect();
        repaired.objects.extend(
            missing_sets
                .iter()
                .map(|name| format!("runtime ipset {name}")),
        );
        let runtime_policies = self
            .policies
            .get_policies()
            .await
            .map_err(call_failed("getPolicies"))?;
        let mut policy_missing = false;
        for (policy, wanted) in &wanted_policies {
            if wanted.is_some() && !runtime_policies.iter().any(|p| p == policy.name()) {
                policy_missing = true;
                repaired
                    .objects
                    .push(format!("runtime policy {}", policy.name()));
            }
        }
        if permanent_changed || !missing_sets.is_empty() || policy_missing {
            self.reload().await?;
        }
        for (policy, wanted) in &wanted_policies {
            if let Some(wanted) = wanted {
                self.sync_runtime_policy(*policy, wanted, &mut repaired)
                    .await?;
            }
        }

        for name in wanted_sets.keys() {
            let runtime = self
                .ipsets
                .get_entries(name)
                .await
                .map_err(call_failed(format!("getEntries({name})")))?;
            let bans = state.bans.entry(name.clone()).or_default();
            let mut runtime_entries = BTreeSet::new();
            for entry in runtime {
                let net = objects::parse_entry(&entry).ok_or_else(|| FirewalldError::BadEntry {
                    ipset: name.clone(),
                    entry: entry.clone(),
                })?;
                if adopt == Adopt::Yes {
                    bans.insert(net);
                }
                runtime_entries.insert(objects::format_entry(&net));
            }
            let wanted = objects::collapsed_entries(bans);
            let missing = wanted
                .iter()
                .filter(|entry| !runtime_entries.contains(*entry))
                .count();
            let wanted: BTreeSet<String> = wanted.into_iter().collect();
            let stale = runtime_entries.difference(&wanted).count();
            if missing + stale > 0 {
                let entries: Vec<String> = wanted.into_iter().collect();
                self.set_entries(name, &entries).await?;
                repaired.restored += missing;
                repaired.removed += stale;
            }
        }
        Ok(repaired)
    }

    /// Removes rules of ours from every zone, runtime then permanent: where banhound put
    /// them before it used a policy. Left there, a rule naming an ipset we delete would make
    /// firewalld's next reload fail.
    async fn remove_rules_from_zones(&self) -> Result<(), FirewalldError> {
        let runtime_zones = self
            .zones
            .get_zones()
            .await
            .map_err(call_failed("getZones"))?;
        for zone in &runtime_zones {
            let rules = self
                .zones
                .get_rich_rules(zone)
                .await
                .map_err(call_failed(format!("getRichRules({zone})")))?;
            for rule in rules.iter().filter(|r| objects::is_our_rich_rule(r)) {
                tolerate_string(self.zones.remove_rich_rule(zone, rule).await, "NOT_ENABLED")
                    .map_err(call_failed(format!("removeRichRule({zone}, {rule})")))?;
            }
        }
        let permanent_zones = self
            .config
            .get_zone_names()
            .await
            .map_err(call_failed("getZoneNames"))?;
        for zone in &permanent_zones {
            let zone_config = self.config_zone(zone).await?;
            let rules = zone_config
                .get_rich_rules()
                .await
                .map_err(call_failed(format!("config getRichRules({zone})")))?;
            for rule in rules.iter().filter(|r| objects::is_our_rich_rule(r)) {
                tolerate(zone_config.remove_rich_rule(rule).await, "NOT_ENABLED").map_err(
                    call_failed(format!("config removeRichRule({zone}, {rule})")),
                )?;
            }
        }
        Ok(())
    }

    async fn set_entries(&self, ipset: &str, entries: &[String]) -> Result<(), FirewalldError> {
        self.ipsets
            .set_entries(ipset, entries)
            .await
            .map_err(call_failed(format!(
                "setEntries({ipset}, {} entries)",
                entries.len()
            )))
    }
}

/// Targets grouped by the ipset they go to, truncated (firewalld stores networks truncated).
fn group_by_ipset<'a>(
    targets: impl Iterator<Item = (&'a str, &'a IpNet)>,
) -> BTreeMap<String, BTreeSet<IpNet>> {
    let mut groups: BTreeMap<String, BTreeSet<IpNet>> = BTreeMap::new();
    for (jail, target) in targets {
        groups
            .entry(objects::ipset_name(jail, Family::of(target)))
            .or_default()
            .insert(target.trunc());
    }
    groups
}

fn ensure_set_up(state: &State, jail: &str) -> Result<(), FirewalldError> {
    if state.jails.iter().any(|j| j.jail == jail) {
        Ok(())
    } else {
        Err(FirewalldError::UnknownJail(jail.to_owned()))
    }
}

impl Firewall for FirewalldBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Firewalld
    }

    async fn setup(&mut self, jails: &[JailRules]) -> Result<(), FirewallError> {
        for jail in jails {
            Self::check_jail(jail)?;
        }
        let mut state = self.shared.state.lock().await;
        state.jails = jails.to_vec();
        let kept: BTreeSet<String> = jails
            .iter()
            .flat_map(|j| Family::BOTH.map(|family| objects::ipset_name(&j.jail, family)))
            .collect();
        state.bans.retain(|name, _| kept.contains(name));
        state.set_up = true;
        self.shared.repair(&mut state, true, Adopt::Yes).await?;
        Ok(())
    }

    async fn ban(&mut self, bans: &[BanEntry]) -> Result<(), FirewallError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        for ban in bans {
            ensure_set_up(&state, &ban.jail)?;
        }
        let groups = group_by_ipset(bans.iter().map(|b| (b.jail.as_str(), &b.target)));
        for (ipset, targets) in groups {
            let view = state.bans.entry(ipset.clone()).or_default();
            view.extend(targets.iter().copied());
            let one_by_one = targets.len() <= SINGLE_ADD_LIMIT
                && !targets.iter().any(|t| objects::overlaps_other(t, view));
            if one_by_one {
                for target in &targets {
                    let entry = objects::format_entry(target);
                    tolerate(
                        shared.ipsets.add_entry(&ipset, &entry).await,
                        "ALREADY_ENABLED",
                    )
                    .map_err(call_failed(format!("addEntry({ipset}, {entry})")))?;
                }
            } else {
                let entries = objects::collapsed_entries(view);
                shared.set_entries(&ipset, &entries).await?;
            }
        }
        Ok(())
    }

    async fn unban(&mut self, jail: &str, targets: &[IpNet]) -> Result<(), FirewallError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        ensure_set_up(&state, jail)?;
        let groups = group_by_ipset(targets.iter().map(|t| (jail, t)));
        for (ipset, targets) in groups {
            let view = state.bans.entry(ipset.clone()).or_default();
            // Removing a network can uncover bans inside it that were never sent.
            let one_by_one = targets.len() <= SINGLE_REMOVE_LIMIT
                && !targets.iter().any(|t| objects::overlaps_other(t, view));
            for target in &targets {
                view.remove(target);
            }
            if one_by_one {
                for target in &targets {
                    let entry = objects::format_entry(target);
                    tolerate(
                        shared.ipsets.remove_entry(&ipset, &entry).await,
                        "NOT_ENABLED",
                    )
                    .map_err(call_failed(format!("removeEntry({ipset}, {entry})")))?;
                }
            } else {
                let entries = objects::collapsed_entries(view);
                shared.set_entries(&ipset, &entries).await?;
            }
        }
        Ok(())
    }

    /// The entries of all our runtime ipsets (including jails not set up in this process),
    /// each with `timeout: None` since our sets carry no timeouts.
    async fn list(&mut self) -> Result<Vec<BanEntry>, FirewallError> {
        let shared = &self.shared;
        let names = shared
            .ipsets
            .get_ipsets()
            .await
            .map_err(call_failed("getIPSets"))?;
        let mut bans = Vec::new();
        for name in &names {
            let Some((jail, _family)) = objects::parse_ipset_name(name) else {
                continue;
            };
            let entries = shared
                .ipsets
                .get_entries(name)
                .await
                .map_err(call_failed(format!("getEntries({name})")))?;
            for entry in entries {
                let target =
                    objects::parse_entry(&entry).ok_or_else(|| FirewalldError::BadEntry {
                        ipset: name.clone(),
                        entry: entry.clone(),
                    })?;
                bans.push(BanEntry {
                    jail: jail.to_owned(),
                    target,
                    timeout: None,
                });
            }
        }
        Ok(bans)
    }

    /// Makes firewalld's ipsets hold exactly `bans` (of the jails set up) and puts back any
    /// ipset or rule that went missing, without waiting for a `Reloaded` signal or an owner
    /// change: those cover reloads and restarts, this covers whatever else emptied a set
    /// (`ipset flush`, a firewalld that came back before we subscribed) and calls that
    /// failed.
    async fn reconcile(&mut self, bans: &[BanEntry]) -> Result<Repairs, FirewallError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        if !state.set_up {
            return Ok(Repairs::default());
        }
        let jails: BTreeSet<&str> = state.jails.iter().map(|j| j.jail.as_str()).collect();
        let view = group_by_ipset(
            bans.iter()
                .filter(|b| jails.contains(b.jail.as_str()))
                .map(|b| (b.jail.as_str(), &b.target)),
        );
        state.bans = view;
        let repaired = shared.repair(&mut state, false, Adopt::No).await?;
        let mut parts = Vec::new();
        if !repaired.objects.is_empty() {
            parts.push(format!(
                "{} missing or changed: put right",
                repaired.objects.join(", ")
            ));
        }
        if repaired.restored > 0 {
            parts.push(format!(
                "{} missing from banhound's ipsets: put back",
                count_of(repaired.restored, "ban was", "bans were")
            ));
        }
        if repaired.removed > 0 {
            parts.push(format!(
                "{} no longer in force still in banhound's ipsets: removed",
                count_of(repaired.removed, "ban was", "bans were")
            ));
        }
        Ok(Repairs {
            message: format!("firewalld: {}", parts.join("; ")),
            objects: repaired.objects,
            restored: repaired.restored,
            removed: repaired.removed,
        })
    }

    /// Removes our policy, our ipsets and any rule of ours left in a zone, runtime and
    /// permanent. Removing a runtime ipset or policy takes a firewalld reload, which also
    /// drops other runtime-only changes made with `firewall-cmd` without `--permanent`; with
    /// nothing of ours in firewalld, nothing is reloaded.
    async fn teardown(&mut self) -> Result<(), FirewallError> {
        let shared = &self.shared;
        let mut state = shared.state.lock().await;
        // Rules first: from here on nothing of ours blocks traffic.
        let runtime_policies = shared
            .policies
            .get_policies()
            .await
            .map_err(call_failed("getPolicies"))?;
        for policy in OurPolicy::ALL {
            let name = policy.name();
            if !runtime_policies.iter().any(|p| p == name) {
                continue;
            }
            let no_rules = HashMap::from([("rich_rules", Value::from(Vec::<String>::new()))]);
            shared
                .policies
                .set_policy_settings(name, no_rules)
                .await
                .map_err(call_failed(format!("setPolicySettings({name})")))?;
        }
        shared.remove_rules_from_zones().await?;
        let runtime_sets = shared
            .ipsets
            .get_ipsets()
            .await
            .map_err(call_failed("getIPSets"))?;
        for name in runtime_sets
            .iter()
            .filter(|n| objects::parse_ipset_name(n).is_some())
        {
            shared.set_entries(name, &[]).await?;
        }
        let permanent_sets = shared
            .config
            .get_ipset_names()
            .await
            .map_err(call_failed("getIPSetNames"))?;
        // The policies before the sets their rules name.
        let mut removed_any = false;
        for policy in OurPolicy::ALL {
            removed_any |= shared
                .sync_permanent_policy(policy, None, &mut Repaired::default())
                .await?;
        }
        for name in permanent_sets
            .iter()
            .filter(|n| objects::parse_ipset_name(n).is_some())
        {
            shared
                .config_ipset(name)
                .await?
                .remove()
                .await
                .map_err(call_failed(format!("remove ipset {name}")))?;
            removed_any = true;
        }
        if removed_any {
            shared.reload().await?;
        }
        *state = State::default();
        Ok(())
    }
}
