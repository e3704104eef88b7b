//! `banhound import-fail2ban [DIR]`: fail2ban's jails as banhound configuration.
//!
//! Reads DIR's jails with fail2ban's precedence and writes, under --output:
//! `jail.d/fail2ban-import.toml` (the jails), `filters/fail2ban-JAIL.toml` for each filter
//! that banhound's own filter format can hold, `banhound.toml` with `[fail2ban] dir` for the
//! filters it cannot (those stay in DIR and are referenced as `fail2ban:NAME[params]`), and
//! `IMPORT-REPORT.txt` listing everything not mapped. The result is then loaded with the
//! normal configuration loader, so what is written is known to be valid.

use crate::cli::invalid;
use crate::config::fail2ban::jail::{load_jails, Fail2banJail, Increment, JailSourceKind};
use crate::config::fail2ban::{load_by_reference, FilterReference};
use crate::config::{self, ConfigPaths, FAIL2BAN_FILTER_PREFIX};
use crate::engine::filter::{Dialect, Filter, FilterSpec};
use crate::engine::time::BanTime;
use anyhow::{anyhow, Context};
use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ImportFail2banArgs {
    /// fail2ban's configuration directory.
    #[arg(default_value = crate::config::fail2ban::DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Directory to write to (created; must not contain an earlier import). Use it as
    /// --config-dir, or copy its files into /etc/banhound.
    #[arg(long, short, default_value = "banhound-import")]
    pub output: PathBuf,
    /// Also import the jails fail2ban has disabled (as enabled = false).
    #[arg(long)]
    pub all: bool,
}

/// A table key: bare when it can be.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        s.to_string()
    } else {
        toml_str(s)
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// What became of one jail's filter.
enum FilterChoice {
    /// Written as `filters/NAME.toml`.
    Converted { name: String, toml: String },
    /// Referenced in fail2ban's directory, with why it could not be converted.
    Referenced { reference: String, why: String },
}

fn convert_filter(dir: &Path, jail: &Fail2banJail) -> Result<FilterChoice, String> {
    let reference = FilterReference::parse(&jail.filter).map_err(|e| e.to_string())?;
    let loaded = load_by_reference(dir, &reference).map_err(|e| e.to_string())?;
    loaded
        .to_definition(&jail.filter)
        .map_err(|e| e.to_string())?;
    let strict = FilterSpec {
        dialect: Dialect::Banhound,
        ..loaded.spec.clone()
    };
    let referenced = |why: String| FilterChoice::Referenced {
        reference: format!("{FAIL2BAN_FILTER_PREFIX}{}", jail.filter),
        why,
    };
    if let Err(e) = Filter::compile(&strict) {
        return Ok(referenced(format!(
            "it relies on fail2ban's leniency ({e})"
        )));
    }
    let name = format!("fail2ban-{}", jail.name);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Converted by banhound import-fail2ban from {} ({}).",
        loaded.path.display(),
        jail.filter
    );
    for note in &loaded.notes {
        let _ = writeln!(t, "# Not applied: {note}");
    }
    let _ = writeln!(
        t,
        "description = {}",
        toml_str(&format!("fail2ban {}", jail.filter))
    );
    let _ = writeln!(t, "format = \"after-date\"");
    if !loaded.journalmatch.is_empty() {
        let _ = writeln!(t, "journalmatch = {}", toml_list(&loaded.journalmatch));
    }
    if let Some(p) = &loaded.spec.prefregex {
        let _ = writeln!(t, "prefregex = {}", toml_str(p));
    }
    let _ = writeln!(t, "failregex = [");
    for r in &loaded.spec.failregex {
        let _ = writeln!(t, "  {},", toml_str(r));
    }
    let _ = writeln!(t, "]");
    if !loaded.spec.ignoreregex.is_empty() {
        let _ = writeln!(t, "ignoreregex = {}", toml_list(&loaded.spec.ignoreregex));
    }
    Ok(FilterChoice::Converted { name, toml: t })
}

/// The jail's non-firewall actions as `fail2ban:NAME[...]` references, for those whose
/// action.d file exists (the others are reported).
fn import_actions(dir: &Path, jail: &Fail2banJail, report: &mut Vec<String>) -> Vec<String> {
    let mut actions = Vec::new();
    for action in &jail.actions {
        let name = action.split('[').next().unwrap_or("").trim();
        if dir.join("action.d").join(format!("{name}.conf")).is_file() {
            actions.push(format!("{}{action}", config::FAIL2BAN_FILTER_PREFIX));
        } else {
            report.push(format!(
                "action {action}: no action.d/{name}.conf in {}: not imported",
                dir.display()
            ));
        }
    }
    actions
}

fn jail_toml(
    jail: &Fail2banJail,
    filter: &str,
    actions: &[String],
    report: &mut Vec<String>,
) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "[jail.{}]", toml_key(&jail.name));
    let _ = writeln!(t, "enabled = {}", jail.enabled);
    let _ = writeln!(t, "filter = {}", toml_str(filter));
    match &jail.source {
        JailSourceKind::Journal { journalmatch } if !journalmatch.is_empty() => {
            let _ = writeln!(t, "journalmatch = {}", toml_list(journalmatch));
        }
        JailSourceKind::Journal { .. } => {}
        JailSourceKind::Files { logpath } => {
            let _ = writeln!(t, "logpath = {}", toml_list(logpath));
        }
    }
    if let Some(m) = jail.maxretry {
        let _ = writeln!(t, "maxretry = {}", m.max(1));
    }
    if let Some(d) = jail.findtime {
        let _ = writeln!(t, "findtime = {}", d.as_secs().max(1));
    }
    match jail.bantime {
        Some(BanTime::Permanent) => {
            let _ = writeln!(t, "bantime = -1");
        }
        Some(BanTime::For(d)) => {
            let _ = writeln!(t, "bantime = {}", d.as_secs().max(1));
        }
        None => {}
    }
    let (nets, names): (Vec<&String>, Vec<&String>) = jail
        .ignoreip
        .iter()
        .partition(|s| config::values::parse_net(s).is_ok());
    if !nets.is_empty() {
        let nets: Vec<String> = nets.into_iter().cloned().collect();
        let _ = writeln!(t, "ignoreip = {}", toml_list(&nets));
    }
    if !names.is_empty() {
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        report.push(format!(
            "ignoreip entries that are no address or network are not imported: {}",
            names.join(" ")
        ));
    }
    if let Some(s) = jail.ignoreself {
        let _ = writeln!(t, "ignoreself = {s}");
    }
    if let Some(p) = &jail.port {
        let all = matches!(p.as_str(), "0:65535" | "1:65535" | "all");
        let (known, unknown): (Vec<String>, Vec<String>) = p
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .partition(|item| {
                toml::Value::String(item.clone())
                    .try_into::<config::values::PortsValue>()
                    .is_ok()
            });
        if !unknown.is_empty() {
            report.push(format!(
                "ports banhound does not know by name (give numbers): {}{}",
                unknown.join(","),
                if known.is_empty() {
                    "; the jail blocks all ports"
                } else {
                    ""
                }
            ));
        }
        let port = if all || known.is_empty() {
            "all".to_string()
        } else {
            known.join(",")
        };
        let _ = writeln!(t, "port = {}", toml_str(&port));
    }
    match jail.protocol.as_deref() {
        Some("all") => {
            let _ = writeln!(t, "protocol = [\"tcp\", \"udp\"]");
        }
        Some(p @ ("tcp" | "udp")) => {
            let _ = writeln!(t, "protocol = {}", toml_str(p));
        }
        Some(other) => report.push(format!("protocol {other:?} is not imported (tcp is used)")),
        None => {}
    }
    let _ = writeln!(t, "backend = {}", toml_str(jail.backend));
    if !actions.is_empty() {
        let _ = writeln!(t, "actions = {}", toml_list(actions));
    }
    if let Some(inc) = &jail.escalation {
        let _ = writeln!(t, "[jail.{}.escalation]", toml_key(&jail.name));
        match escalation_multipliers(inc) {
            Some(m) => {
                let m: Vec<String> = m.iter().map(|x| format!("{x:?}")).collect();
                let _ = writeln!(t, "multipliers = [{}]", m.join(", "));
            }
            // fail2ban's default formula doubles the ban each time.
            None => {
                let _ = writeln!(t, "factor = 2.0");
            }
        }
        if let Some(m) = inc.maxtime {
            let _ = writeln!(t, "maxtime = {}", m.as_secs().max(1));
        }
        if let Some(r) = inc.rndtime.filter(|r| !r.is_zero()) {
            let _ = writeln!(t, "random_extra = {}", r.as_secs().max(1));
        }
        if inc.overalljails {
            let _ = writeln!(t, "overall_jails = true");
        }
    }
    t
}

/// How fail2ban grows the bans of `inc`, as banhound's multipliers (the n-th ban lasts
/// bantime times the n-th, the last repeating); `None` for fail2ban's plain doubling, which
/// is banhound's `factor = 2`. fail2ban's first ban is always the plain bantime; later ones
/// are bantime × `bantime.factor` × the multiplier of the bans before (`bantime.multipliers`),
/// or by its default formula bantime × max(1, 2^bans × factor), the exponent stopping at 20.
fn escalation_multipliers(inc: &Increment) -> Option<Vec<f64>> {
    /// fail2ban's default formula stops doubling after this many bans.
    const DOUBLINGS: i32 = 20;
    let factor = inc
        .factor
        .filter(|f| f.is_finite() && *f > 0.0)
        .unwrap_or(1.0);
    if !inc.multipliers.is_empty() {
        let grown = inc.multipliers.iter().skip(1).map(|m| m * factor);
        return Some(std::iter::once(1.0).chain(grown).collect());
    }
    if factor == 1.0 {
        return None;
    }
    let grown = (1..=DOUBLINGS).map(|n| (2f64.powi(n) * factor).max(1.0));
    Some(std::iter::once(1.0).chain(grown).collect())
}

/// banhound's own recidive filter, which fail2ban's `[recidive]` is mapped onto: fail2ban's
/// reads `/var/log/fail2ban.log`, which nothing writes once fail2ban is gone.
const RECIDIVE_FILTER: &str = include_str!("../../conf/filters/recidive.toml");
const RECIDIVE: &str = "recidive";

/// Whether a fail2ban jail is its recidive jail (by its filter: `recidive`, with or without
/// parameters).
fn is_recidive(jail: &Fail2banJail) -> bool {
    FilterReference::parse(&jail.filter).is_ok_and(|r| r.name == RECIDIVE)
}

pub fn run(_paths: &ConfigPaths, args: &ImportFail2banArgs) -> anyhow::Result<()> {
    // Absolute, so that the `[fail2ban] dir` written for referenced filters holds wherever
    // the daemon runs.
    let dir = &std::path::absolute(&args.dir)
        .with_context(|| format!("resolving {}", args.dir.display()))?;
    if !dir.join("jail.conf").is_file() {
        return Err(invalid(anyhow!(
            "{} has no jail.conf: not a fail2ban configuration directory",
            dir.display()
        )));
    }
    let out = &args.output;
    let jail_file = out.join("jail.d/fail2ban-import.toml");
    if jail_file.exists() {
        return Err(invalid(anyhow!(
            "{} exists: import into an empty directory",
            jail_file.display()
        )));
    }
    let (jails, files) = load_jails(dir).map_err(invalid)?;
    std::fs::create_dir_all(out.join("jail.d"))
        .with_context(|| format!("creating {}", out.display()))?;
    let mut report = String::new();
    let _ = writeln!(report, "banhound import-fail2ban from {}", dir.display());
    for f in &files {
        let _ = writeln!(report, "  read {}", f.display());
    }
    let mut jail_text = format!(
        "# Imported by banhound import-fail2ban from {}; see IMPORT-REPORT.txt.\n",
        dir.display()
    );
    let (mut imported, mut skipped, mut converted, mut referenced) = (0, 0, 0, 0);
    let mut with_actions = 0;
    for jail in &jails {
        if !jail.enabled && !args.all {
            skipped += 1;
            continue;
        }
        let mut notes: Vec<String> = jail.warnings.clone();
        if is_recidive(jail) {
            let path = out.join("filters").join(format!("{RECIDIVE}.toml"));
            std::fs::create_dir_all(out.join("filters"))?;
            std::fs::write(&path, RECIDIVE_FILTER)
                .with_context(|| format!("writing {}", path.display()))?;
            let own = Fail2banJail {
                source: JailSourceKind::Journal {
                    journalmatch: Vec::new(),
                },
                ..jail.clone()
            };
            let actions = import_actions(dir, jail, &mut notes);
            with_actions += usize::from(!actions.is_empty());
            jail_text.push('\n');
            jail_text.push_str(&jail_toml(&own, RECIDIVE, &actions, &mut notes));
            imported += 1;
            let _ = writeln!(
                report,
                "\n[{}] -> banhound's own recidive filter (written to {}): fail2ban's reads {}, which nothing writes once fail2ban is gone; this one reads banhound's ban messages in the journal. This jail, with fail2ban's settings, takes the place of banhound's shipped [jail.recidive].",
                jail.name,
                path.display(),
                match &jail.source {
                    JailSourceKind::Files { logpath } => logpath.join(" "),
                    JailSourceKind::Journal { .. } => "the journal".to_string(),
                }
            );
            for n in &notes {
                let _ = writeln!(report, "  not mapped: {n}");
            }
            continue;
        }
        let filter = match convert_filter(dir, jail) {
            Ok(FilterChoice::Converted { name, toml }) => {
                std::fs::create_dir_all(out.join("filters"))?;
                let path = out.join("filters").join(format!("{name}.toml"));
                std::fs::write(&path, toml)
                    .with_context(|| format!("writing {}", path.display()))?;
                converted += 1;
                name
            }
            Ok(FilterChoice::Referenced { reference, why }) => {
                notes.push(format!("filter kept in fail2ban's directory: {why}"));
                referenced += 1;
                reference
            }
            Err(e) => {
                let _ = writeln!(
                    report,
                    "\n[{}] NOT IMPORTED: filter {}: {e}",
                    jail.name, jail.filter
                );
                skipped += 1;
                continue;
            }
        };
        let actions = import_actions(dir, jail, &mut notes);
        with_actions += usize::from(!actions.is_empty());
        jail_text.push('\n');
        jail_text.push_str(&jail_toml(jail, &filter, &actions, &mut notes));
        imported += 1;
        let _ = writeln!(report, "\n[{}] -> filter {filter}", jail.name);
        for n in &notes {
            let _ = writeln!(report, "  not mapped: {n}");
        }
    }
    std::fs::write(&jail_file, &jail_text)
        .with_context(|| format!("writing {}", jail_file.display()))?;
    if referenced > 0 || with_actions > 0 {
        let main = out.join("banhound.toml");
        let text = format!(
            "# Written by banhound import-fail2ban: jails refer to fail2ban filters or actions here.\n[fail2ban]\ndir = {}\n",
            toml_str(&dir.display().to_string())
        );
        std::fs::write(&main, text).with_context(|| format!("writing {}", main.display()))?;
    }
    let _ = writeln!(
        report,
        "\n{imported} jails imported ({converted} filters converted, {referenced} referenced in {}), {skipped} not imported{}",
        dir.display(),
        if args.all { "" } else { " (disabled jails are skipped; --all imports them)" }
    );
    // Load what was written, exactly as the daemon would.
    let check = ConfigPaths {
        defaults_dir: out.join(".no-shipped-defaults"),
        config_dir: out.clone(),
        main_file: None,
    };
    match config::load(&check) {
        Ok(settings) => {
            let _ = writeln!(
                report,
                "The written configuration loads: {} jails.",
                settings.jails.len()
            );
        }
        Err(e) => {
            let _ = writeln!(report, "The written configuration does NOT load: {e}");
        }
    }
    let report_path = out.join("IMPORT-REPORT.txt");
    std::fs::write(&report_path, &report)
        .with_context(|| format!("writing {}", report_path.display()))?;
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn increment(factor: Option<f64>, multipliers: &[f64]) -> Increment {
        Increment {
            factor,
            multipliers: multipliers.to_vec(),
            maxtime: Some(Duration::from_secs(86_400)),
            rndtime: None,
            overalljails: false,
        }
    }

    #[test]
    fn fail2bans_ban_growth_becomes_banhounds() {
        // Plain doubling is banhound's factor 2.
        assert_eq!(escalation_multipliers(&increment(None, &[])), None);
        assert_eq!(escalation_multipliers(&increment(Some(1.0), &[])), None);
        // The factor multiplies every grown ban, never the first.
        assert_eq!(
            escalation_multipliers(&increment(Some(3.0), &[1.0, 5.0, 30.0])),
            Some(vec![1.0, 15.0, 90.0])
        );
        assert_eq!(
            escalation_multipliers(&increment(None, &[2.0, 5.0])),
            Some(vec![1.0, 5.0])
        );
        // The default formula with a factor: bantime × max(1, 2^bans × factor).
        let m = escalation_multipliers(&increment(Some(0.25), &[])).unwrap();
        assert_eq!(&m[..4], &[1.0, 1.0, 1.0, 2.0]);
        assert_eq!(m.len(), 21);
        assert_eq!(m[20], 262_144.0);
    }

    #[test]
    fn random_extra_and_overall_jails_are_written() {
        let mut inc = increment(None, &[]);
        inc.rndtime = Some(Duration::from_secs(300));
        inc.overalljails = true;
        let jail = Fail2banJail {
            name: "sshd".into(),
            enabled: true,
            filter: "sshd".into(),
            source: JailSourceKind::Journal {
                journalmatch: Vec::new(),
            },
            maxretry: None,
            findtime: None,
            bantime: None,
            escalation: Some(inc),
            ignoreip: Vec::new(),
            ignoreself: None,
            port: None,
            protocol: None,
            backend: "nftables",
            actions: Vec::new(),
            warnings: Vec::new(),
        };
        let mut report = Vec::new();
        let toml = jail_toml(&jail, "sshd", &[], &mut report);
        assert!(toml.contains("[jail.sshd.escalation]\nfactor = 2.0\nmaxtime = 86400\nrandom_extra = 300\noverall_jails = true\n"), "{toml}");
    }
}
