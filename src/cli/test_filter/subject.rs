//! What test-filter tests: the filter FILTER names (banhound's filter, a filter file, a
//! fail2ban filter or a bare regex), and the ban settings it decides with (--jail's, then
//! the command line's).

use crate::cli::invalid;
use crate::config::{self, load_filter_file, ConfigPaths, JailPolicy, JailSettings};
use crate::engine::datepattern::DatePattern;
use crate::engine::filter::{Filter, FilterSpec};
use crate::engine::prepare::LineFormat;
use crate::engine::time::BanTime;
use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

use super::args::TestFilterArgs;

/// The filter under test, and how lines reach it.
pub(super) struct Subject {
    pub(super) description: String,
    pub(super) filter: Filter,
    pub(super) format: LineFormat,
    pub(super) identifiers: Vec<String>,
    /// The filter file's default journal matches (empty for a regex).
    pub(super) journalmatch: Vec<String>,
    /// What the filter file asks for that banhound does not do (fail2ban filters).
    pub(super) notes: Vec<String>,
    /// Where file lines keep their date, if not where the standard templates look.
    pub(super) datepattern: Option<DatePattern>,
}

/// Whether FILTER names a fail2ban filter: a `.conf`/`.local` file (optionally followed by
/// `[params]`), `fail2ban:NAME[...]`, or `NAME[...]`.
pub(super) fn fail2ban_subject(args: &TestFilterArgs) -> anyhow::Result<Option<Subject>> {
    use crate::config::fail2ban::{self, FilterReference};
    let arg = args.filter.as_str();
    let explicit = arg.strip_prefix("fail2ban:");
    let spec = explicit.unwrap_or(arg);
    let (base, params_part) = match spec.find('[') {
        Some(i) if spec.ends_with(']') && !spec.contains('<') => (&spec[..i], &spec[i..]),
        _ => (spec, ""),
    };
    let is_file =
        (base.ends_with(".conf") || base.ends_with(".local")) && Path::new(base).is_file();
    let is_name = !base.is_empty()
        && base
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let path = if is_file {
        PathBuf::from(base)
    } else if is_name && (explicit.is_some() || !params_part.is_empty()) {
        // A bare name is banhound's filter or an error: falling back to fail2ban's file of
        // that name would test another filter than the one the user thinks (a checkout, a
        // mistyped --defaults-dir).
        match fail2ban::find_filter_file(&args.fail2ban_dir, base) {
            Some(p) => p,
            None => {
                return Err(invalid(anyhow!(
                    "no fail2ban filter {base:?} in {}",
                    args.fail2ban_dir.join("filter.d").display()
                )))
            }
        }
    } else {
        return Ok(None);
    };
    let reference = FilterReference::parse(&format!("x{params_part}")).map_err(invalid)?;
    let mut params = reference.params;
    if let Some(mode) = &args.mode {
        params.insert("mode".into(), mode.clone());
    }
    let loaded = fail2ban::load(&path, &params).map_err(invalid)?;
    let def = loaded.to_definition(base).map_err(invalid)?;
    let shown: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(Some(Subject {
        description: format!(
            "fail2ban filter {}{}",
            path.display(),
            if shown.is_empty() {
                String::new()
            } else {
                format!("[{}]", shown.join(", "))
            }
        ),
        filter: def.filter,
        format: match args.format.as_deref() {
            Some("plain") => LineFormat::Plain,
            Some(_) => LineFormat::Syslog,
            None => def.format,
        },
        identifiers: Vec::new(),
        journalmatch: def.journalmatch,
        notes: loaded.notes,
        datepattern: def.datepattern,
    }))
}

pub(super) fn resolve_filter(
    paths: &ConfigPaths,
    args: &TestFilterArgs,
) -> anyhow::Result<Subject> {
    if let Some(subject) = fail2ban_subject(args)? {
        return Ok(subject);
    }
    let arg = args.filter.as_str();
    let mode = args
        .mode
        .as_ref()
        .map(|m| Spanned::new(0..0, m.to_string()));
    if let Some(path) = paths.find_filter(arg) {
        let name = if arg.contains('/') || arg.ends_with(".toml") {
            path.display().to_string()
        } else {
            arg.to_string()
        };
        let def = load_filter_file(&path, &name, mode.as_ref()).map_err(invalid)?;
        let format = match args.format.as_deref() {
            Some("plain") => LineFormat::Plain,
            Some(_) => LineFormat::Syslog,
            None => def.format,
        };
        return Ok(Subject {
            description: format!(
                "{} (mode {})",
                def.name,
                def.mode.as_deref().unwrap_or("normal")
            ),
            filter: def.filter,
            format,
            identifiers: def.identifiers,
            journalmatch: def.journalmatch,
            notes: Vec::new(),
            datepattern: def.datepattern,
        });
    }
    let looks_like_name = arg
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if arg.contains('/') && !arg.contains('<') || arg.ends_with(".toml") || looks_like_name {
        let looked_in: Vec<String> = paths
            .filter_dirs()
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        let available = match paths.filter_names() {
            names if names.is_empty() => "none: are banhound's defaults installed?".to_string(),
            names => names.join(", "),
        };
        return Err(invalid(anyhow!(
            "no filter {arg:?}: not a filter file, and no {arg}.toml in {} (available: {available}); \
             fail2ban's filter of that name is fail2ban:{arg}, and a regex needs an address tag such as <HOST>",
            looked_in.join(" or ")
        )));
    }
    if args.mode.is_some() {
        return Err(invalid(anyhow!(
            "--mode applies to filter files, not to a regex"
        )));
    }
    let filter = Filter::compile(&FilterSpec {
        failregex: vec![arg.to_string()],
        ..FilterSpec::default()
    })
    .map_err(invalid)?;
    Ok(Subject {
        description: format!("regex {arg}"),
        filter,
        format: match args.format.as_deref() {
            Some("syslog") => LineFormat::Syslog,
            _ => LineFormat::Plain,
        },
        identifiers: Vec::new(),
        journalmatch: Vec::new(),
        notes: Vec::new(),
        datepattern: None,
    })
}

pub(super) fn load_jail(
    paths: &ConfigPaths,
    args: &TestFilterArgs,
) -> anyhow::Result<Option<JailSettings>> {
    let Some(name) = &args.jail else {
        return Ok(None);
    };
    let settings = config::load(paths).map_err(invalid)?;
    let jail = settings.jails.into_iter().find(|j| &j.name == name);
    jail.map(Some)
        .ok_or_else(|| invalid(anyhow!("no jail {name:?} in the configuration")))
}

pub(super) fn resolve_policy(
    jail: Option<&JailSettings>,
    args: &TestFilterArgs,
) -> anyhow::Result<JailPolicy> {
    let mut policy = match jail {
        Some(jail) => jail.policy.clone(),
        None => JailPolicy {
            maxretry: 5,
            findtime: Duration::from_secs(600),
            bantime: BanTime::For(Duration::from_secs(600)),
            escalation: None,
            ipv6_prefix: 128,
            ignoreip: Vec::new(),
            ignoreself: false,
            max_tracked: 1_000_000,
        },
    };
    if let Some(m) = args.maxretry {
        if m == 0 {
            return Err(invalid(anyhow!("--maxretry must be at least 1")));
        }
        policy.maxretry = m;
    }
    if let Some(f) = args.findtime {
        policy.findtime = f;
    }
    if let Some(b) = args.bantime {
        policy.bantime = b;
    }
    // An analysis of a log, possibly from another host: this host's addresses are not special.
    policy.ignoreself = false;
    Ok(policy)
}
