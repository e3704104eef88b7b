//! Configuration: TOML files layered like systemd drop-ins, turned into validated settings.
//!
//! Files are read in this order, later ones overriding earlier ones key by key:
//! 1. the shipped defaults, `/usr/lib/banhound/banhound.toml` and `/usr/lib/banhound/jail.d/*.toml`;
//! 2. the admin's `/etc/banhound/banhound.toml` and `/etc/banhound/jail.d/*.toml` (or the one
//!    file given with `--config`).
//!
//! Within that order a key set in a jail's own table (`[jail.sshd]`) beats the same key in
//! any `[defaults]` table, as in fail2ban, where a jail section beats `[DEFAULT]`. Filters are
//! looked up by name in `/etc/banhound/filters/` and then `/usr/lib/banhound/filters/`.
//!
//! Raw structures mirror the files (every key optional, unknown keys refused); validation
//! turns the merged result into [`Settings`] the rest of the program can trust. Every error
//! names the file, the line and the key.

pub mod error;
pub mod fail2ban;
pub mod filter_file;
pub mod fleet;
pub mod values;

use crate::action::config::{
    build_action, resolve_jail_actions, valid_action_name, ActionSpec, RawAction,
};
use crate::engine::address::{IgnoreList, WidestBan};
use crate::engine::time::BanTime;
use crate::engine::tracker::{Escalation, Growth, Policy};
use crate::firewall::{BackendKind, BlockType, Chains, JailRules, Protocol};
use crate::source::journal::matches::{MatchError, MatchExpr};
use error::{ConfigError, SourceText};
use filter_file::{build_filter, parse_filter_file, FilterDefinition, RawFilter};
use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use values::{
    blocked_ports, parse_net, BanTimeValue, ChainsValue, DurationValue, IntervalValue, PortsValue,
    ProtocolsValue,
};

/// Where configuration is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPaths {
    /// Shipped defaults (`/usr/lib/banhound`).
    pub defaults_dir: PathBuf,
    /// The admin's directory (`/etc/banhound`).
    pub config_dir: PathBuf,
    /// One file replacing the admin's main file and drop-ins (`--config`).
    pub main_file: Option<PathBuf>,
}

impl Default for ConfigPaths {
    fn default() -> Self {
        ConfigPaths {
            defaults_dir: PathBuf::from("/usr/lib/banhound"),
            config_dir: PathBuf::from("/etc/banhound"),
            main_file: None,
        }
    }
}

impl ConfigPaths {
    /// The configuration files that exist, in the order they apply.
    pub fn files(&self) -> Result<Vec<PathBuf>, ConfigError> {
        let mut files = Vec::new();
        layer(&self.defaults_dir, &mut files)?;
        match &self.main_file {
            Some(f) => files.push(f.clone()),
            None => layer(&self.config_dir, &mut files)?,
        }
        Ok(files)
    }

    /// Directories searched for `filters/NAME.toml`, most specific first.
    pub fn filter_dirs(&self) -> Vec<PathBuf> {
        let admin = match &self.main_file {
            Some(f) => f.parent().unwrap_or(Path::new(".")).to_path_buf(),
            None => self.config_dir.clone(),
        };
        vec![admin.join("filters"), self.defaults_dir.join("filters")]
    }

    /// Finds a filter given by name ("sshd") or by path ("./my.toml", "/x/y.toml").
    pub fn find_filter(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') || name.ends_with(".toml") {
            let p = PathBuf::from(name);
            return p.is_file().then_some(p);
        }
        self.filter_dirs()
            .into_iter()
            .map(|d| d.join(format!("{name}.toml")))
            .find(|p| p.is_file())
    }

    /// Names of the filters available by name.
    pub fn filter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .filter_dirs()
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn layer(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    let main = dir.join("banhound.toml");
    if main.is_file() {
        files.push(main);
    }
    let dropins = dir.join("jail.d");
    match std::fs::read_dir(&dropins) {
        Ok(entries) => {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            found.sort();
            files.extend(found);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ConfigError::io(&dropins, &e)),
    }
}

/// Where a jail's log records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JailSource {
    /// Journal entries satisfying these matches (journalctl syntax; "+" separates OR groups).
    Journal { matches: Vec<String> },
    /// Lines appended to these files.
    Files { paths: Vec<PathBuf> },
}

/// Everything the engine needs of a jail, minus the host's own addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct JailPolicy {
    pub maxretry: u32,
    pub findtime: Duration,
    pub bantime: BanTime,
    pub escalation: Option<Escalation>,
    pub ipv6_prefix: u8,
    pub ignoreip: Vec<IpNet>,
    pub ignoreself: bool,
    pub max_tracked: usize,
}

impl JailPolicy {
    /// The engine policy, given the host's own addresses (used when `ignoreself`).
    pub fn to_policy(&self, own_addresses: &[IpAddr]) -> Policy {
        let own = if self.ignoreself {
            own_addresses.to_vec()
        } else {
            Vec::new()
        };
        Policy {
            maxretry: self.maxretry,
            findtime: self.findtime,
            bantime: self.bantime,
            escalation: self.escalation.clone(),
            ipv6_prefix: self.ipv6_prefix,
            ignore: IgnoreList::new(self.ignoreip.clone(), own),
            max_tracked: self.max_tracked,
        }
    }
}

/// A validated jail.
#[derive(Debug)]
pub struct JailSettings {
    pub name: String,
    pub enabled: bool,
    pub source: JailSource,
    pub filter: FilterDefinition,
    pub policy: JailPolicy,
    /// The backend in force. With `backend = "auto"` (the default) the daemon decides it,
    /// and decides it again when firewalld starts or stops: nftables until it has.
    pub backend: BackendKind,
    /// `backend = "auto"`: firewalld when it runs, nftables otherwise.
    pub backend_auto: bool,
    /// The widest networks `banhound ban` may ban in this jail (`widest_ban_v4`/`_v6`).
    pub widest_ban: WidestBan,
    pub rules: JailRules,
    /// Indexes into [`Settings::actions`].
    pub actions: Vec<usize>,
}

/// Settings of the daemon as a whole, from `[daemon]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// How often the firewall is compared with the bans in force and repaired (an admin's
    /// `nft flush ruleset`, a firewalld restart that went unnoticed, a failed call); `None`
    /// turns the periodic check off.
    pub reconcile_interval: Option<Duration>,
    /// The journal directory the journal jails read instead of the system journal, e.g.
    /// systemd-journal-remote's output on a collector (`--journal-directory` and
    /// `--journal-namespace` win over it). Read at start.
    pub journal_directory: Option<PathBuf>,
}

/// The default `reconcile_interval`: an admin's flush is repaired within this long.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// Shorter intervals would make the check itself the daemon's main work with many bans.
const MIN_RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            reconcile_interval: Some(DEFAULT_RECONCILE_INTERVAL),
            journal_directory: None,
        }
    }
}

/// Settings of the metrics endpoint, from `[metrics]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Where `/metrics` is served over HTTP; `None` (the default) serves nothing.
    pub listen: Option<std::net::SocketAddr>,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    pub files: Vec<PathBuf>,
    pub daemon: DaemonSettings,
    pub metrics: MetricsSettings,
    /// `[fleet]`: ban sharing with other hosts; `None` without the section.
    pub fleet: Option<fleet::FleetSettings>,
    pub jails: Vec<JailSettings>,
    /// The `[action.NAME]` tables, then the jails' fail2ban actions.
    pub actions: Vec<ActionSpec>,
}

impl Settings {
    pub fn jail(&self, name: &str) -> Option<&JailSettings> {
        self.jails.iter().find(|j| j.name == name)
    }

    pub fn enabled_jails(&self) -> impl Iterator<Item = &JailSettings> {
        self.jails.iter().filter(|j| j.enabled)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    daemon: Option<RawDaemon>,
    metrics: Option<RawMetrics>,
    fleet: Option<Spanned<fleet::RawFleet>>,
    defaults: Option<RawJail>,
    fail2ban: Option<RawFail2ban>,
    #[serde(default)]
    jail: BTreeMap<String, Spanned<RawJail>>,
    #[serde(default)]
    action: BTreeMap<String, Spanned<RawAction>>,
}

/// `[daemon]`: settings of the daemon as a whole.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    reconcile_interval: Option<Spanned<IntervalValue>>,
    journal_directory: Option<Spanned<String>>,
}

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<Spanned<String>>,
}

/// `[fail2ban]`: where jails find filters named `fail2ban:NAME[params]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFail2ban {
    dir: Option<PathBuf>,
}

/// The prefix of a filter reference resolved in fail2ban's directory.
pub const FAIL2BAN_FILTER_PREFIX: &str = "fail2ban:";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJail {
    enabled: Option<Spanned<bool>>,
    filter: Option<Spanned<FilterRef>>,
    mode: Option<Spanned<String>>,
    journalmatch: Option<Spanned<Vec<Spanned<String>>>>,
    logpath: Option<Spanned<Vec<PathBuf>>>,
    maxretry: Option<Spanned<u32>>,
    findtime: Option<Spanned<DurationValue>>,
    bantime: Option<Spanned<BanTimeValue>>,
    ignoreip: Option<Vec<Spanned<String>>>,
    ignoreself: Option<Spanned<bool>>,
    port: Option<Spanned<PortsValue>>,
    protocol: Option<Spanned<ProtocolsValue>>,
    backend: Option<Spanned<String>>,
    blocktype: Option<Spanned<String>>,
    chains: Option<Spanned<ChainsValue>>,
    escalation: Option<Spanned<RawEscalation>>,
    ipv6_prefix: Option<Spanned<u8>>,
    widest_ban_v4: Option<Spanned<u8>>,
    widest_ban_v6: Option<Spanned<u8>>,
    max_tracked: Option<Spanned<usize>>,
    actions: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    enabled: Option<bool>,
    factor: Option<Spanned<f64>>,
    multipliers: Option<Spanned<Vec<f64>>>,
    maxtime: Option<DurationValue>,
    forget_after: Option<DurationValue>,
    random_extra: Option<DurationValue>,
    overall_jails: Option<bool>,
}

/// `filter = "name-or-path"`, or an inline filter table.
#[derive(Debug)]
enum FilterRef {
    Named(String),
    Inline(Box<RawFilter>),
}

impl<'de> Deserialize<'de> for FilterRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FilterRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a filter name or path, or an inline table with failregex")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FilterRef, E> {
                Ok(FilterRef::Named(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FilterRef, A::Error> {
                RawFilter::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|f| FilterRef::Inline(Box::new(f)))
            }
        }
        d.deserialize_any(V)
    }
}

/// One section that may set jail keys: a `[defaults]` or a `[jail.NAME]` of some file.
struct Layer<'a> {
    file: usize,
    raw: &'a RawJail,
}

/// The winning value of a key: the last layer that sets it.
fn pick<'a, T>(
    layers: &[Layer<'a>],
    get: impl Fn(&'a RawJail) -> Option<&'a Spanned<T>>,
) -> Option<(usize, &'a Spanned<T>)> {
    layers
        .iter()
        .rev()
        .find_map(|l| get(l.raw).map(|v| (l.file, v)))
}

/// Checks journal matches as the journal reader parses them, so that what `check-config`
/// accepts the daemon starts with; an error points at the word at fault. `context` says
/// whose matches they are ("jail sshd", "filter sshd").
fn check_journalmatch(
    src: &SourceText,
    words: &[Spanned<String>],
    context: &str,
) -> Result<Vec<String>, ConfigError> {
    let plain: Vec<String> = words.iter().map(|w| w.get_ref().clone()).collect();
    MatchExpr::parse(&plain).map_err(|e| {
        let at = match &e {
            MatchError::EmptyGroup(position) => *position,
            MatchError::MissingEquals(term)
            | MatchError::EmptyField(term)
            | MatchError::InvalidField { term, .. } => {
                plain.iter().position(|w| w == term).unwrap_or(0)
            }
        };
        src.error_at(
            words.get(at).map(Spanned::span),
            format!("{context}: invalid journalmatch: {e}"),
        )
    })?;
    Ok(plain)
}

/// Reads, merges and validates the configuration.
pub fn load(paths: &ConfigPaths) -> Result<Settings, ConfigError> {
    let files = paths.files()?;
    let mut sources = Vec::with_capacity(files.len());
    for path in &files {
        sources.push(SourceText::read(path)?);
    }
    load_sources(paths, sources)
}

/// Merges and validates configuration texts already read, given in the order they apply
/// (the files of [`ConfigPaths::files`] for [`load`]). Filters that jails name are still
/// looked up in the directories of `paths`. Separate from reading so the parser and the
/// validation can be driven from memory (the fuzz targets in fuzz/ do).
pub fn load_sources(
    paths: &ConfigPaths,
    sources: Vec<SourceText>,
) -> Result<Settings, ConfigError> {
    let files: Vec<PathBuf> = sources.iter().map(|s| s.path.clone()).collect();
    let mut raws = Vec::with_capacity(sources.len());
    for src in &sources {
        let raw: RawFile =
            toml::from_str(&src.text).map_err(|e| src.error_at(e.span(), e.message()))?;
        raws.push(raw);
    }
    let defaults: Vec<Layer> = raws
        .iter()
        .enumerate()
        .filter_map(|(file, r)| r.defaults.as_ref().map(|raw| Layer { file, raw }))
        .collect();
    let mut names: Vec<&String> = raws.iter().flat_map(|r| r.jail.keys()).collect();
    names.sort();
    names.dedup();
    // The last file that sets it wins, like any other key.
    let fail2ban_dir = raws
        .iter()
        .rev()
        .find_map(|r| r.fail2ban.as_ref().and_then(|f| f.dir.clone()));
    // A later file's [action.NAME] replaces an earlier one's whole.
    let mut actions = Vec::new();
    let mut named: BTreeMap<String, usize> = BTreeMap::new();
    for (file, raw) in raws.iter().enumerate() {
        for (name, table) in &raw.action {
            if !valid_action_name(name) {
                return Err(sources[file].error_at(
                    Some(table.span()),
                    format!("invalid action name {name:?}: use 1-64 letters, digits, '-' or '_'"),
                ));
            }
            let spec = build_action(&sources[file], name, table.get_ref())?;
            match named.get(name) {
                Some(&i) => actions[i] = spec,
                None => {
                    named.insert(name.clone(), actions.len());
                    actions.push(spec);
                }
            }
        }
    }
    let mut jails = Vec::with_capacity(names.len());
    for name in names {
        let mut layers: Vec<Layer> = defaults
            .iter()
            .map(|l| Layer {
                file: l.file,
                raw: l.raw,
            })
            .collect();
        let mut first_seen = None;
        for (file, r) in raws.iter().enumerate() {
            if let Some(j) = r.jail.get(name) {
                first_seen.get_or_insert((file, j.span()));
                layers.push(Layer {
                    file,
                    raw: j.get_ref(),
                });
            }
        }
        let (file, span) = first_seen.unwrap_or((0, 0..0));
        let mut jail = build_jail(
            paths,
            fail2ban_dir.as_deref(),
            &sources,
            name,
            (file, span),
            &layers,
        )?;
        if let Some((file, words)) = pick(&layers, |j| j.actions.as_ref()) {
            let logpath = match &jail.source {
                JailSource::Files { paths } => paths.clone(),
                JailSource::Journal { .. } => Vec::new(),
            };
            jail.actions = resolve_jail_actions(
                &sources[file],
                words.get_ref(),
                name,
                fail2ban_dir.as_deref(),
                &logpath,
                &named,
                &mut actions,
            )?;
        }
        jails.push(jail);
    }
    let daemon = build_daemon(&sources, &raws)?;
    let metrics = build_metrics(&sources, &raws)?;
    let jail_names: Vec<&str> = jails.iter().map(|j| j.name.as_str()).collect();
    let fleet_raws: Vec<_> = raws.iter().map(|r| r.fleet.as_ref()).collect();
    let fleet = fleet::build_fleet(&sources, &fleet_raws, &jail_names)?;
    Ok(Settings {
        files,
        daemon,
        metrics,
        fleet,
        jails,
        actions,
    })
}

/// `[daemon]`, each key from the last file that sets it.
fn build_daemon(sources: &[SourceText], raws: &[RawFile]) -> Result<DaemonSettings, ConfigError> {
    let mut settings = DaemonSettings::default();
    let interval = raws.iter().enumerate().rev().find_map(|(file, r)| {
        r.daemon
            .as_ref()
            .and_then(|d| d.reconcile_interval.as_ref())
            .map(|v| (file, v))
    });
    if let Some((file, value)) = interval {
        let IntervalValue(interval) = *value.get_ref();
        if interval.is_some_and(|i| i < MIN_RECONCILE_INTERVAL) {
            return Err(sources[file].error_at(
                Some(value.span()),
                "reconcile_interval must be at least 1s, or \"off\"",
            ));
        }
        settings.reconcile_interval = interval;
    }
    let directory = raws.iter().enumerate().rev().find_map(|(file, r)| {
        r.daemon
            .as_ref()
            .and_then(|d| d.journal_directory.as_ref())
            .map(|v| (file, v))
    });
    if let Some((file, value)) = directory {
        let text = value.get_ref();
        // A relative path would depend on the directory the daemon happens to start in.
        if !text.starts_with('/') {
            return Err(sources[file].error_at(
                Some(value.span()),
                "journal_directory must be an absolute path, such as \"/var/log/journal/remote\"",
            ));
        }
        settings.journal_directory = Some(PathBuf::from(text));
    }
    Ok(settings)
}

/// `[metrics]`, each key from the last file that sets it.
fn build_metrics(sources: &[SourceText], raws: &[RawFile]) -> Result<MetricsSettings, ConfigError> {
    let listen = raws.iter().enumerate().rev().find_map(|(file, r)| {
        r.metrics
            .as_ref()
            .and_then(|m| m.listen.as_ref())
            .map(|v| (file, v))
    });
    let Some((file, value)) = listen else {
        return Ok(MetricsSettings::default());
    };
    let text = value.get_ref().trim();
    if text.is_empty() || text == "off" {
        return Ok(MetricsSettings::default());
    }
    let address = text.parse().map_err(|_| {
        sources[file].error_at(
            Some(value.span()),
            "listen must be an address and port, such as \"127.0.0.1:9542\" or \"[::1]:9542\", or \"off\"",
        )
    })?;
    Ok(MetricsSettings {
        listen: Some(address),
    })
}

fn build_jail(
    paths: &ConfigPaths,
    fail2ban_dir: Option<&Path>,
    sources: &[SourceText],
    name: &str,
    (decl_file, decl_span): (usize, std::ops::Range<usize>),
    layers: &[Layer],
) -> Result<JailSettings, ConfigError> {
    let err_at = |file: usize, span: std::ops::Range<usize>, msg: String| {
        sources[file].error_at(Some(span), msg)
    };
    if !valid_jail_name(name) {
        return Err(err_at(
            decl_file,
            decl_span,
            format!("invalid jail name {name:?}: use 1-32 letters, digits, '-' or '_'"),
        ));
    }
    let enabled = pick(layers, |j| j.enabled.as_ref()).is_some_and(|(_, v)| *v.get_ref());

    // The filter: by name/path, or inline; resolved against the file that names it.
    let mode = pick(layers, |j| j.mode.as_ref());
    let filter = match pick(layers, |j| j.filter.as_ref()) {
        None => {
            // A jail named like a shipped filter uses it, as in fail2ban.
            let path = paths.find_filter(name).ok_or_else(|| {
                err_at(
                    decl_file,
                    decl_span.clone(),
                    format!(
                        "jail {name} has no filter, and there is no filter named {name:?}; set filter = \"NAME\" (available: {})",
                        paths.filter_names().join(", ")
                    ),
                )
            })?;
            load_filter_file(&path, name, mode.map(|(_, m)| m))?
        }
        Some((file, spanned)) => match spanned.get_ref() {
            FilterRef::Named(n) if n.starts_with(FAIL2BAN_FILTER_PREFIX) => {
                let at = |msg: String| err_at(file, spanned.span(), msg);
                let Some(dir) = fail2ban_dir else {
                    return Err(at(format!(
                        "filter {n:?} names a fail2ban filter: set its directory with [fail2ban] dir = \"/etc/fail2ban\""
                    )));
                };
                let mut reference =
                    fail2ban::FilterReference::parse(&n[FAIL2BAN_FILTER_PREFIX.len()..])
                        .map_err(|e| at(e.to_string()))?;
                if let Some((_, m)) = mode {
                    reference
                        .params
                        .entry("mode".into())
                        .or_insert_with(|| m.get_ref().clone());
                }
                fail2ban::load_by_reference(dir, &reference)
                    .and_then(|f| f.to_definition(n))
                    .map_err(|e| at(format!("filter {n}: {e}")))?
            }
            FilterRef::Named(n) => {
                let path = paths.find_filter(n).ok_or_else(|| {
                    err_at(
                        file,
                        spanned.span(),
                        format!(
                            "no filter named {n:?} (looked in {}; available: {})",
                            paths
                                .filter_dirs()
                                .iter()
                                .map(|d| d.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                            paths.filter_names().join(", ")
                        ),
                    )
                })?;
                load_filter_file(&path, n, mode.map(|(_, m)| m))?
            }
            FilterRef::Inline(raw) => build_filter(
                &sources[file],
                raw,
                &format!("inline in jail {name}"),
                mode.map(|(_, m)| m),
            )?,
        },
    };

    let journal = pick(layers, |j| j.journalmatch.as_ref());
    let logpath = pick(layers, |j| j.logpath.as_ref());
    let source = match (journal, logpath) {
        (Some((f1, j)), Some((f2, l))) => {
            let (f, span) = if (f1, j.span().start) > (f2, l.span().start) {
                (f1, j.span())
            } else {
                (f2, l.span())
            };
            return Err(err_at(
                f,
                span,
                format!("jail {name} sets both journalmatch and logpath; a jail reads one source"),
            ));
        }
        (None, Some((f, l))) => {
            if l.get_ref().is_empty() {
                return Err(err_at(f, l.span(), "logpath is empty".into()));
            }
            JailSource::Files {
                paths: l.get_ref().clone(),
            }
        }
        (Some((f, j)), None) => {
            if j.get_ref().is_empty() {
                return Err(err_at(f, j.span(), "journalmatch is empty: it would read every journal entry; remove it to use the filter's matches".into()));
            }
            JailSource::Journal {
                matches: check_journalmatch(&sources[f], j.get_ref(), &format!("jail {name}"))?,
            }
        }
        (None, None) => {
            if filter.journalmatch.is_empty() {
                return Err(err_at(
                    decl_file,
                    decl_span,
                    format!("jail {name} has no source: set journalmatch or logpath (its filter {} has no default journalmatch)", filter.name),
                ));
            }
            // A banhound filter's matches were checked in its file; a fail2ban filter's
            // (INI) are checked here.
            if let Err(e) = MatchExpr::parse(&filter.journalmatch) {
                return Err(err_at(
                    decl_file,
                    decl_span,
                    format!(
                        "jail {name}: the journalmatch of its filter {} is invalid: {e}",
                        filter.name
                    ),
                ));
            }
            JailSource::Journal {
                matches: filter.journalmatch.clone(),
            }
        }
    };

    let maxretry = match pick(layers, |j| j.maxretry.as_ref()) {
        Some((f, v)) if *v.get_ref() == 0 => {
            return Err(err_at(f, v.span(), "maxretry must be at least 1".into()))
        }
        Some((_, v)) => *v.get_ref(),
        None => 5,
    };
    let findtime = match pick(layers, |j| j.findtime.as_ref()) {
        Some((f, v)) if v.get_ref().0.is_zero() => {
            return Err(err_at(
                f,
                v.span(),
                "findtime must be longer than zero".into(),
            ))
        }
        Some((_, v)) => v.get_ref().0,
        None => Duration::from_secs(600),
    };
    let bantime = match pick(layers, |j| j.bantime.as_ref()) {
        Some((f, v)) if v.get_ref().0 == BanTime::For(Duration::ZERO) => {
            return Err(err_at(
                f,
                v.span(),
                "bantime must be longer than zero".into(),
            ))
        }
        Some((_, v)) => v.get_ref().0,
        None => BanTime::For(Duration::from_secs(600)),
    };
    let escalation = match pick(layers, |j| j.escalation.as_ref()) {
        None => None,
        Some((f, v)) => build_escalation(v.get_ref()).map_err(|m| err_at(f, v.span(), m))?,
    };
    let ipv6_prefix = match pick(layers, |j| j.ipv6_prefix.as_ref()) {
        Some((f, v)) if !(32..=128).contains(v.get_ref()) => {
            return Err(err_at(
                f,
                v.span(),
                format!("ipv6_prefix {} is out of range 32-128 (shorter prefixes would ban whole providers)", v.get_ref()),
            ))
        }
        Some((_, v)) => *v.get_ref(),
        None => 128,
    };
    // Networks wider than these would ban whole providers by a typo.
    let widest = |key: &str,
                  value: Option<(usize, &Spanned<u8>)>,
                  range: std::ops::RangeInclusive<u8>,
                  host: u8| match value {
        Some((f, v)) if !range.contains(v.get_ref()) => Err(err_at(
            f,
            v.span(),
            format!(
                "{key} {} is out of range {}-{}",
                v.get_ref(),
                range.start(),
                range.end()
            ),
        )),
        Some((_, v)) => Ok(*v.get_ref()),
        None => Ok(host),
    };
    let widest_ban = WidestBan {
        v4: widest(
            "widest_ban_v4",
            pick(layers, |j| j.widest_ban_v4.as_ref()),
            8..=32,
            32,
        )?,
        v6: widest(
            "widest_ban_v6",
            pick(layers, |j| j.widest_ban_v6.as_ref()),
            16..=128,
            128,
        )?,
    };
    let max_tracked = match pick(layers, |j| j.max_tracked.as_ref()) {
        Some((f, v)) if *v.get_ref() == 0 => {
            return Err(err_at(f, v.span(), "max_tracked must be at least 1".into()))
        }
        Some((_, v)) => *v.get_ref(),
        None => 100_000,
    };
    // ignoreip accumulates across [defaults] and the jail: an admin adding a jail-specific
    // exception must not silently lose the global ones.
    let mut ignoreip = Vec::new();
    for l in layers {
        for entry in l.raw.ignoreip.iter().flatten() {
            let net = parse_net(entry.get_ref()).map_err(|m| err_at(l.file, entry.span(), m))?;
            ignoreip.push(net);
        }
    }
    ignoreip.sort();
    ignoreip.dedup();
    let ignoreself = pick(layers, |j| j.ignoreself.as_ref()).is_none_or(|(_, v)| *v.get_ref());

    let (backend, backend_auto) = match pick(layers, |j| j.backend.as_ref()) {
        Some((_, v)) if v.get_ref() == "auto" => (BackendKind::Nftables, true),
        Some((f, v)) => (
            v.get_ref()
                .parse::<BackendKind>()
                .map_err(|m| err_at(f, v.span(), m))?,
            false,
        ),
        None => (BackendKind::Nftables, true),
    };
    let blocktype = match pick(layers, |j| j.blocktype.as_ref()) {
        Some((f, v)) => v
            .get_ref()
            .parse::<BlockType>()
            .map_err(|m| err_at(f, v.span(), m))?,
        None => BlockType::Drop,
    };
    let ports = pick(layers, |j| j.port.as_ref())
        .map(|(_, v)| v.get_ref().clone())
        .unwrap_or(PortsValue::All);
    let protocols = pick(layers, |j| j.protocol.as_ref())
        .map(|(_, v)| v.get_ref().0.clone())
        .unwrap_or_else(|| vec![Protocol::Tcp]);
    let chains = pick(layers, |j| j.chains.as_ref()).map_or(Chains::INPUT, |(_, v)| v.get_ref().0);
    let rules = JailRules {
        jail: name.to_string(),
        ports: blocked_ports(&ports, &protocols),
        blocktype,
        chains,
        prefix_bans: ipv6_prefix < 128 || widest_ban.allows_networks(),
    };

    Ok(JailSettings {
        name: name.to_string(),
        enabled,
        source,
        filter,
        policy: JailPolicy {
            maxretry,
            findtime,
            bantime,
            escalation,
            ipv6_prefix,
            ignoreip,
            ignoreself,
            max_tracked,
        },
        backend,
        backend_auto,
        widest_ban,
        rules,
        actions: Vec::new(),
    })
}

fn valid_jail_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn build_escalation(raw: &RawEscalation) -> Result<Option<Escalation>, String> {
    if raw.enabled == Some(false) {
        return Ok(None);
    }
    let growth = match (&raw.factor, &raw.multipliers) {
        (Some(_), Some(_)) => {
            return Err("escalation sets both factor and multipliers; choose one".into())
        }
        (Some(f), None) => {
            let f = *f.get_ref();
            if !(1.0..=100.0).contains(&f) {
                return Err(format!("escalation factor {f} is out of range 1-100"));
            }
            Growth::Factor(f)
        }
        (None, Some(m)) => {
            let m = m.get_ref();
            if m.is_empty() || m.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                return Err(
                    "escalation multipliers must be a non-empty list of positive numbers".into(),
                );
            }
            Growth::Multipliers(m.clone())
        }
        (None, None) => Growth::Factor(2.0),
    };
    Ok(Some(Escalation {
        growth,
        maxtime: raw.maxtime.map(|d| d.0),
        forget_after: raw
            .forget_after
            .map_or(Duration::from_secs(7 * 86_400), |d| d.0),
        random_extra: raw.random_extra.map(|d| d.0),
        overall_jails: raw.overall_jails.unwrap_or(false),
    }))
}

/// Loads a filter file by path, in a mode.
pub fn load_filter_file(
    path: &Path,
    name: &str,
    mode: Option<&Spanned<String>>,
) -> Result<FilterDefinition, ConfigError> {
    let src = SourceText::read(path)?;
    let raw = parse_filter_file(&src)?;
    build_filter(&src, &raw, name, mode)
}

#[cfg(test)]
mod tests;
