//! The subcommands that control the running daemon: `status`, `ban`, `unban`, `banned`,
//! `reload`, `ignore`, `monitor`.
//!
//! They talk to the daemon only through its D-Bus interface ([`crate::bus::proxy`]), the same
//! one any other client uses, so the CLI can do nothing a script with busctl could not, and
//! the bus policy governs both. Errors are mapped to exit codes here: the daemon not running
//! (3) and access denied (4) are told apart from invalid input (2) so scripts can react.

use crate::bus::proxy::{ActionRecord, FleetRecord, JailProxy, ManagerProxy};
use crate::bus::{args, Bus, ControlError, ERROR_PREFIX, SERVICE_NAME};
use crate::cli::{exit_with, invalid, ExitCode};
use crate::engine::time::{format_duration, Timestamp};
use anyhow::{anyhow, Context};
use clap::Args;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use zbus::fdo::DBusProxy;
use zbus::proxy::CacheProperties;
use zbus::Connection;

/// `banhound status [JAIL]`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Show this jail in detail (settings, counters, banned addresses).
    pub jail: Option<String>,
    /// Print JSON instead of the tree.
    #[arg(long)]
    pub json: bool,
}

/// `banhound ban JAIL ADDR [--for DURATION]`
#[derive(Debug, Args)]
pub struct BanArgs {
    /// The jail whose firewall rules block the address (and whose ban time applies).
    pub jail: String,
    /// An IPv4 or IPv6 address.
    #[arg(value_name = "ADDR")]
    pub address: String,
    /// How long ("10m", "1h30m", "2d", "permanent"); the jail's ban time by default.
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
}

/// `banhound unban ADDR [--jail J]` or `banhound unban --all [JAIL]`
#[derive(Debug, Args)]
pub struct UnbanArgs {
    /// The address to unban; with --all, the jail to empty (every jail when omitted).
    #[arg(value_name = "ADDR|JAIL", required_unless_present = "all")]
    pub target: Option<String>,
    /// Only in this jail (every jail by default).
    #[arg(long, value_name = "JAIL", conflicts_with = "all")]
    pub jail: Option<String>,
    /// Lift every ban (of JAIL, or of every jail).
    #[arg(long)]
    pub all: bool,
}

/// `banhound banned [ADDR]`
#[derive(Debug, Args)]
pub struct BannedArgs {
    /// Only the bans covering this address.
    #[arg(value_name = "ADDR")]
    pub address: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What `banhound ignore` does to the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IgnoreChange {
    /// Never ban addresses in the network.
    Add,
    /// Take the network off the list.
    Remove,
}

/// `banhound ignore add|remove JAIL NETWORK`
#[derive(Debug, Args)]
pub struct IgnoreArgs {
    /// Add the network to the list or remove it.
    pub change: IgnoreChange,
    /// The jail whose ignore list changes.
    pub jail: String,
    /// An address or a network in CIDR form.
    #[arg(value_name = "NETWORK")]
    pub network: String,
}

/// `banhound monitor`
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// One JSON object a line.
    #[arg(long)]
    pub json: bool,
}

/// What a control subcommand does.
#[derive(Debug)]
pub enum Action<'a> {
    Status(&'a StatusArgs),
    Ban(&'a BanArgs),
    Unban(&'a UnbanArgs),
    Banned(&'a BannedArgs),
    Reload,
    Ignore(&'a IgnoreArgs),
    Monitor(&'a MonitorArgs),
    Metrics(&'a super::metrics::MetricsArgs),
}

/// Runs a control subcommand against the daemon on `bus_address` (the system bus if none).
pub fn run(bus_address: Option<&str>, action: Action<'_>) -> anyhow::Result<()> {
    // A malformed argument is the caller's mistake whether or not the daemon runs: said
    // first (exit 2), not hidden behind "not running" (exit 3). The daemon checks again.
    validate(&action).map_err(invalid)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let connection = connect(bus_address).await?;
        let manager = ManagerProxy::builder(&connection)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(bus_error)?;
        match action {
            Action::Status(args) => status(&connection, &manager, args).await,
            Action::Ban(args) => ban(&manager, args).await,
            Action::Unban(args) => unban(&manager, args).await,
            Action::Banned(args) => banned(&connection, &manager, args).await,
            Action::Reload => {
                manager.reload().await.map_err(bus_error)?;
                println!("configuration reloaded");
                Ok(())
            }
            Action::Ignore(args) => ignore(&connection, &manager, args).await,
            Action::Monitor(args) => monitor(&connection, &manager, args).await,
            Action::Metrics(args) => super::metrics::print(&manager, args).await,
        }
    })
}

/// The checks of the arguments that need no daemon: the same parsers the daemon's bus
/// interface applies ([`crate::bus::args`]).
fn validate(action: &Action<'_>) -> Result<(), ControlError> {
    match action {
        Action::Ban(a) => {
            args::ban_address(&a.address)?;
            args::duration(a.duration.as_deref().unwrap_or(""))?;
        }
        Action::Unban(a) if !a.all => {
            args::address(a.target.as_deref().unwrap_or_default())?;
        }
        Action::Banned(BannedArgs {
            address: Some(address),
            ..
        }) => {
            args::address(address)?;
        }
        Action::Ignore(a) => {
            args::network(&a.network)?;
        }
        _ => {}
    }
    Ok(())
}

async fn connect(bus_address: Option<&str>) -> anyhow::Result<Connection> {
    let bus = Bus::from_address(bus_address);
    let connection = match bus.builder() {
        Ok(b) => b.build().await,
        Err(e) => Err(e),
    };
    connection.map_err(|e| {
        exit_with(
            ExitCode::NotRunning,
            anyhow!(e).context(format!(
                "cannot connect to {bus}, so banhound cannot be reached"
            )),
        )
    })
}

/// Maps a D-Bus error to a message and an exit code.
pub fn bus_error(e: zbus::Error) -> anyhow::Error {
    let (name, message) = match &e {
        zbus::Error::MethodError(name, message, _) => (
            name.as_str().to_string(),
            message.clone().unwrap_or_default(),
        ),
        zbus::Error::FDO(fdo) => (
            zbus::DBusError::name(&**fdo).as_str().to_string(),
            zbus::DBusError::description(&**fdo)
                .unwrap_or_default()
                .to_string(),
        ),
        _ => return anyhow!(e).context("D-Bus call failed"),
    };
    let short = name
        .strip_prefix(ERROR_PREFIX)
        .and_then(|s| s.strip_prefix('.'));
    match (name.as_str(), short) {
        ("org.freedesktop.DBus.Error.ServiceUnknown", _)
        | ("org.freedesktop.DBus.Error.NameHasNoOwner", _) => not_running(),
        // The bus's message is a dump of the matched rule; the point is who may do this.
        ("org.freedesktop.DBus.Error.AccessDenied", _) => exit_with(
            ExitCode::AccessDenied,
            anyhow!("access denied by the D-Bus policy: only root may do this"),
        ),
        (_, Some("AccessDenied")) => exit_with(ExitCode::AccessDenied, anyhow!("{message}")),
        (
            _,
            Some(
                "NoSuchJail"
                | "InvalidAddress"
                | "InvalidDuration"
                | "Ignored"
                | "NotBanned"
                | "InvalidConfiguration",
            ),
        ) => invalid(anyhow!("{message}")),
        (_, Some(_)) => anyhow!("{message}"),
        _ => anyhow!("{name}: {message}"),
    }
}

fn not_running() -> anyhow::Error {
    exit_with(
        ExitCode::NotRunning,
        anyhow!("banhound is not running (nothing owns {SERVICE_NAME} on the bus)"),
    )
}

fn time(secs: u64) -> String {
    Timestamp::from_secs(i64::try_from(secs).unwrap_or(i64::MAX)).to_rfc3339()
}

/// `until` as shown: a time, or "permanent" for 0.
fn until_text(until: u64) -> String {
    if until == 0 {
        "permanent".to_string()
    } else {
        time(until)
    }
}

fn until_json(until: u64) -> Value {
    if until == 0 {
        Value::Null
    } else {
        Value::String(time(until))
    }
}

fn ban_time_text(secs: i64) -> String {
    u64::try_from(secs).map_or("permanent".to_string(), |s| {
        format_duration(Duration::from_secs(s))
    })
}

async fn jail_proxy<'a>(
    connection: &'a Connection,
    manager: &ManagerProxy<'_>,
    name: &str,
) -> anyhow::Result<JailProxy<'a>> {
    let jails = manager.list_jails().await.map_err(bus_error)?;
    let (_, path) = jails
        .into_iter()
        .find(|(n, _)| n == name)
        .ok_or_else(|| invalid(anyhow!("no jail named {name:?}")))?;
    JailProxy::builder(connection)
        .path(path)
        .map_err(bus_error)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus_error)
}

/// The fleet's figures of `GetFleet`, as `status` shows them.
struct FleetShown {
    text: String,
    json: serde_json::Value,
}

fn fleet_status(record: FleetRecord) -> FleetShown {
    let (
        _,
        host,
        publishing,
        backlog,
        published,
        subscribed,
        hosts,
        applied,
        refused,
        cut_down,
        skipped,
        lag_ms,
        error,
    ) = record;
    let connection = match (publishing, subscribed) {
        (true, true) => "connected",
        (true, false) => "publishing only",
        (false, true) => "reading only",
        (false, false) => "not connected",
    };
    let mut text = format!(
        "host {host}, {connection}; {published} published, {backlog} waiting; {} other host(s){}; remote bans: {applied} applied, {refused} refused, {cut_down} cut down, {skipped} skipped",
        hosts.len(),
        if hosts.is_empty() { String::new() } else { format!(" ({})", hosts.join(", ")) },
    );
    if lag_ms > 0 {
        text.push_str(&format!("; last lag {lag_ms} ms"));
    }
    if !error.is_empty() {
        text.push_str(&format!("; error: {error}"));
    }
    let json = json!({
        "host": host,
        "publishing": publishing,
        "subscribed": subscribed,
        "publish_backlog": backlog,
        "published": published,
        "hosts": hosts,
        "remote_applied": applied,
        "remote_refused": refused,
        "remote_cut_down": cut_down,
        "remote_skipped": skipped,
        "lag_ms": (lag_ms > 0).then_some(lag_ms),
        "error": (!error.is_empty()).then_some(error),
    });
    FleetShown { text, json }
}

async fn status(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    args: &StatusArgs,
) -> anyhow::Result<()> {
    match &args.jail {
        None => {
            let (version, uptime, count, failed, total_failed, banned, total_banned) =
                manager.get_status().await.map_err(bus_error)?;
            let names: Vec<String> = manager
                .list_jails()
                .await
                .map_err(bus_error)?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            let e = bus_error;
            let degraded = manager.degraded().await.map_err(e)?;
            let state_error = manager.state_error().await.map_err(e)?;
            let unsaved = manager.unsaved_changes().await.map_err(e)?;
            let firewall_error = manager.firewall_error().await.map_err(e)?;
            let optional = |text: &str| (!text.is_empty()).then(|| text.to_string());
            // A daemon from before fleet sharing does not know GetFleet: no fleet then.
            let fleet = manager
                .get_fleet()
                .await
                .ok()
                .filter(|record| record.0)
                .map(fleet_status);
            if args.json {
                let doc = json!({
                    "version": version,
                    "uptime": uptime,
                    "jails": names,
                    "currently_failed": failed,
                    "total_failed": total_failed,
                    "currently_banned": banned,
                    "total_banned": total_banned,
                    "degraded": degraded,
                    "state_error": optional(&state_error),
                    "unsaved_changes": unsaved,
                    "firewall_error": optional(&firewall_error),
                    "fleet": fleet.as_ref().map(|f| f.json.clone()),
                });
                println!("{doc}");
            } else {
                println!("Status");
                println!("|- Version:          {version}");
                // format_duration shows sub-second durations in ms; uptime counts seconds.
                let uptime = match uptime {
                    0 => "0s".to_string(),
                    s => format_duration(Duration::from_secs(s)),
                };
                println!("|- Uptime:           {uptime}");
                println!("|- Currently failed: {failed}\tTotal failed: {total_failed}");
                println!("|- Currently banned: {banned}\tTotal banned: {total_banned}");
                println!("|- Number of jails:  {count}");
                println!("|- Jail list:        {}", names.join(", "));
                if let Some(fleet) = &fleet {
                    println!("|- Fleet:            {}", fleet.text);
                }
                if !degraded {
                    println!("`- Health:           ok");
                } else {
                    println!("`- Health:           DEGRADED (bans keep working from memory)");
                    let state = match optional(&state_error) {
                        Some(error) => {
                            format!("not saved: {error} ({unsaved} change(s) kept in memory)")
                        }
                        None => "ok".to_string(),
                    };
                    println!("   |- State:         {state}");
                    let firewall = optional(&firewall_error).unwrap_or_else(|| "ok".into());
                    println!("   `- Firewall:      {firewall}");
                }
            }
        }
        Some(name) => {
            let jail = jail_proxy(connection, manager, name).await?;
            let e = bus_error;
            let enabled = jail.enabled().await.map_err(e)?;
            let failed = jail.currently_failed().await.map_err(e)?;
            let total_failed = jail.total_failed().await.map_err(e)?;
            let banned = jail.currently_banned().await.map_err(e)?;
            let total_banned = jail.total_banned().await.map_err(e)?;
            let findtime = jail.find_time().await.map_err(e)?;
            let maxretry = jail.max_retry().await.map_err(e)?;
            let bantime = jail.ban_time().await.map_err(e)?;
            let filter = jail.filter().await.map_err(e)?;
            let backend = jail.backend().await.map_err(e)?;
            let ignoreip = jail.ignore_ip().await.map_err(e)?;
            let bans = jail.get_bans().await.map_err(e)?;
            let actions = jail.get_actions().await.map_err(e)?;
            if args.json {
                let bans: Vec<Value> = bans
                    .iter()
                    .map(|(target, since, until, offence)| {
                        json!({"target": target, "since": time(*since),
                               "until": until_json(*until), "offence": offence})
                    })
                    .collect();
                let doc = json!({
                    "name": name,
                    "enabled": enabled,
                    "currently_failed": failed,
                    "total_failed": total_failed,
                    "currently_banned": banned,
                    "total_banned": total_banned,
                    "findtime": findtime,
                    "maxretry": maxretry,
                    "bantime": bantime,
                    "filter": filter,
                    "backend": backend,
                    "ignoreip": ignoreip,
                    "bans": bans,
                    "actions": actions_json(&actions),
                });
                println!("{doc}");
            } else {
                let list: Vec<&str> = bans.iter().map(|b| b.0.as_str()).collect();
                println!("Status for the jail: {name}");
                println!("|- Filter");
                println!("|  |- Name:             {filter}");
                println!("|  |- Currently failed: {failed}");
                println!("|  `- Total failed:     {total_failed}");
                println!("|- Settings");
                println!(
                    "|  |- Enabled:          {}",
                    if enabled { "yes" } else { "no" }
                );
                println!(
                    "|  |- Ban after:        {maxretry} failures within {}",
                    format_duration(Duration::from_secs(findtime))
                );
                println!("|  |- Ban time:         {}", ban_time_text(bantime));
                println!("|  |- Backend:          {backend}");
                println!("|  `- Ignored:          {}", ignoreip.join(" "));
                println!("`- Actions");
                println!("   |- Currently banned: {banned}");
                println!("   |- Total banned:     {total_banned}");
                println!(
                    "   {}- Banned IP list:   {}",
                    if actions.is_empty() { '`' } else { '|' },
                    list.join(" ")
                );
                print_actions(&actions);
            }
        }
    }
    Ok(())
}

/// The jail's actions ([`crate::action`]) in `status JAIL --json`.
fn actions_json(actions: &[ActionRecord]) -> Vec<Value> {
    let optional = |text: &str| (!text.is_empty()).then(|| text.to_string());
    actions
        .iter()
        .map(
            |(name, kind, runs, failures, queued, dropped, error, last_error)| {
                json!({"name": name, "kind": kind, "runs": runs, "failures": failures,
                       "queued": queued, "dropped": dropped, "failing": !error.is_empty(),
                       "error": optional(error), "last_error": optional(last_error)})
            },
        )
        .collect()
}

/// The jail's actions under its `Actions` branch of `status JAIL`, one line each. Their
/// errors are the actions' own words, cut so a line stays a line.
fn print_actions(actions: &[ActionRecord]) {
    for (i, (name, kind, runs, failures, queued, dropped, error, last_error)) in
        actions.iter().enumerate()
    {
        let branch = if i + 1 == actions.len() { '`' } else { '|' };
        let health = match (error.is_empty(), last_error.is_empty()) {
            (false, _) => format!("FAILING: {}", one_line(error)),
            (true, false) => format!("ok (last error: {})", one_line(last_error)),
            (true, true) => "ok".to_string(),
        };
        println!(
            "   {branch}- Action {name} ({kind}): {runs} run(s), {failures} failed, {queued} queued, {dropped} dropped; {health}"
        );
    }
}

fn one_line(text: &str) -> String {
    const SHOWN: usize = 200;
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

async fn ban(manager: &ManagerProxy<'_>, args: &BanArgs) -> anyhow::Result<()> {
    let duration = args.duration.as_deref().unwrap_or("");
    let (target, _since, until, offence) = manager
        .ban(&args.jail, &args.address, duration)
        .await
        .map_err(bus_error)?;
    println!(
        "banned {target} in {} until {} (offence {offence})",
        args.jail,
        until_text(until)
    );
    Ok(())
}

async fn unban(manager: &ManagerProxy<'_>, args: &UnbanArgs) -> anyhow::Result<()> {
    if args.all {
        let jail = args.target.as_deref().unwrap_or("");
        let count = manager.unban_all(jail).await.map_err(bus_error)?;
        let scope = if jail.is_empty() {
            "every jail".to_string()
        } else {
            jail.to_string()
        };
        println!("lifted {count} bans in {scope}");
        return Ok(());
    }
    // clap requires the target unless --all.
    let address = args.target.as_deref().unwrap_or_default();
    let jails = manager
        .unban(address, args.jail.as_deref().unwrap_or(""))
        .await
        .map_err(bus_error)?;
    println!("unbanned {address} in {}", jails.join(", "));
    Ok(())
}

async fn banned(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    args: &BannedArgs,
) -> anyhow::Result<()> {
    let bans = match &args.address {
        Some(address) => manager.is_banned(address).await.map_err(bus_error)?,
        None => {
            let mut all = Vec::new();
            for (name, _) in manager.list_jails().await.map_err(bus_error)? {
                let jail = jail_proxy(connection, manager, &name).await?;
                for (target, since, until, offence) in jail.get_bans().await.map_err(bus_error)? {
                    all.push((name.clone(), target, since, until, offence));
                }
            }
            all
        }
    };
    if args.json {
        let list: Vec<Value> = bans
            .iter()
            .map(|(jail, target, since, until, offence)| {
                json!({"jail": jail, "target": target, "since": time(*since),
                       "until": until_json(*until), "offence": offence})
            })
            .collect();
        println!("{}", Value::Array(list));
        return Ok(());
    }
    if bans.is_empty() {
        match &args.address {
            Some(address) => println!("{address} is not banned"),
            None => println!("no active bans"),
        }
    }
    for (jail, target, since, until, offence) in &bans {
        println!(
            "{jail}\t{target}\tsince {}\tuntil {}\toffence {offence}",
            time(*since),
            until_text(*until)
        );
    }
    Ok(())
}

async fn ignore(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    args: &IgnoreArgs,
) -> anyhow::Result<()> {
    let jail = jail_proxy(connection, manager, &args.jail).await?;
    let (name, network) = (&args.jail, &args.network);
    match args.change {
        IgnoreChange::Add => {
            if jail.add_ignore_ip(network).await.map_err(bus_error)? {
                println!("{name} now ignores {network} (until the next reload)");
            } else {
                println!("{name} already ignores {network}");
            }
        }
        IgnoreChange::Remove => {
            if jail.remove_ignore_ip(network).await.map_err(bus_error)? {
                println!("{name} no longer ignores {network} (until the next reload)");
            } else {
                println!("{network} was not on {name}'s ignore list");
            }
        }
    }
    Ok(())
}

async fn monitor(
    connection: &Connection,
    manager: &ManagerProxy<'_>,
    args: &MonitorArgs,
) -> anyhow::Result<()> {
    let mut banned = manager.receive_banned().await.map_err(bus_error)?;
    let mut unbanned = manager.receive_unbanned().await.map_err(bus_error)?;
    // Subscribed first, then checked: a daemon starting in between is still heard.
    let dbus = DBusProxy::builder(connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(bus_error)?;
    let running = dbus
        .name_has_owner(SERVICE_NAME.try_into().map_err(zbus::Error::from)?)
        .await
        .map_err(|e| bus_error(e.into()))?;
    if !running {
        return Err(not_running());
    }
    eprintln!("banhound: listening for Banned and Unbanned signals (Ctrl-C stops)");
    loop {
        tokio::select! {
            signal = banned.next() => {
                let Some(signal) = signal else { break };
                let a = signal.args().map_err(bus_error)?;
                if args.json {
                    println!("{}", json!({"event": "banned", "jail": a.jail, "address": a.address,
                        "until": until_json(a.until), "reason": a.reason}));
                } else {
                    println!("banned   {} {} until {} ({})", a.jail, a.address, until_text(a.until), a.reason);
                }
            }
            signal = unbanned.next() => {
                let Some(signal) = signal else { break };
                let a = signal.args().map_err(bus_error)?;
                if args.json {
                    println!("{}", json!({"event": "unbanned", "jail": a.jail, "address": a.address,
                        "why": a.why}));
                } else {
                    println!("unbanned {} {} ({})", a.jail, a.address, a.why);
                }
            }
        }
    }
    Err(anyhow!("the connection to the bus closed"))
}
