//! fail2ban jails (`jail.conf`, `jail.d/*.conf`, `jail.local`, `jail.d/*.local`) read with
//! fail2ban's precedence and mapped onto banhound's jail settings.
//!
//! Each section but `[DEFAULT]` and `[INCLUDES]` is a jail; its values fall back to
//! `[DEFAULT]` and are interpolated with `%(__name__)s` = the jail's name (jail.conf's
//! default `filter = %(__name__)s[mode=%(mode)s]` relies on it). What banhound has no
//! equivalent for (mail actions, DNS use, custom formulas...) becomes a warning, so an
//! import reports it instead of dropping it silently.

use super::ini::{Ini, IniError};
use crate::engine::time::{parse_duration, BanTime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fail2ban jail in banhound's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Fail2banJail {
    pub name: String,
    pub enabled: bool,
    /// `NAME[params]`, as fail2ban writes it.
    pub filter: String,
    pub source: JailSourceKind,
    pub maxretry: Option<u32>,
    pub findtime: Option<Duration>,
    pub bantime: Option<BanTime>,
    pub escalation: Option<Increment>,
    pub ignoreip: Vec<String>,
    pub ignoreself: Option<bool>,
    pub port: Option<String>,
    pub protocol: Option<String>,
    /// "nftables" or "firewalld".
    pub backend: &'static str,
    /// The jail's actions other than firewall ones, as `NAME[params]` with the jail's values
    /// (`destemail`, `sender`, `mta`, …) already interpolated into them.
    pub actions: Vec<String>,
    pub warnings: Vec<String>,
}

/// Where the jail reads: the journal (backend = systemd) or files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JailSourceKind {
    /// With the jail's own `journalmatch`, if it sets one (else the filter's).
    Journal {
        journalmatch: Vec<String>,
    },
    Files {
        logpath: Vec<String>,
    },
}

/// `bantime.increment` and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Increment {
    pub factor: Option<f64>,
    pub multipliers: Vec<f64>,
    pub maxtime: Option<Duration>,
    /// `bantime.rndtime`: up to this much more, at random.
    pub rndtime: Option<Duration>,
    /// `bantime.overalljails`: the bans of every jail count.
    pub overalljails: bool,
}

/// The jail files of a fail2ban directory, in the order fail2ban reads them.
pub fn jail_files(dir: &Path) -> Vec<PathBuf> {
    let sorted = |ext: &str| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("jail.d"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == ext) && p.is_file())
            .collect();
        v.sort();
        v
    };
    let mut files = vec![dir.join("jail.conf")];
    files.extend(sorted("conf"));
    files.push(dir.join("jail.local"));
    files.extend(sorted("local"));
    files.retain(|p| p.is_file());
    files
}

/// Reads every jail of the fail2ban directory `dir`.
pub fn load_jails(dir: &Path) -> Result<(Vec<Fail2banJail>, Vec<PathBuf>), IniError> {
    let files = jail_files(dir);
    let ini = Ini::load_files(&files)?;
    let jails = ini
        .section_names()
        .filter(|s| !matches!(*s, "DEFAULT" | "INCLUDES" | "Definition" | "Init"))
        .map(|name| jail_from(&ini, name))
        .collect();
    Ok((jails, ini.files.clone()))
}

/// Parses a fail2ban time: seconds, "10m", "1h30m", "1d", "1w", "-1" (permanent); also
/// fail2ban's "mo" (30 days) and "y" (365 days).
pub fn parse_fail2ban_bantime(s: &str) -> Result<BanTime, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return match t.parse::<f64>() {
            Ok(v) if v < 0.0 => Ok(BanTime::Permanent),
            _ => Err(format!("invalid time {s:?}")),
        };
    }
    parse_fail2ban_duration(t).map(BanTime::For)
}

pub fn parse_fail2ban_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let mut long_units = t.to_string();
    for (from, to) in [("mo", "*2592000"), ("y", "*31536000")] {
        if long_units.contains(from) {
            long_units = long_units.replace(from, to);
        }
    }
    if long_units.contains('*') {
        // Months or years: rare; supported on their own ("1mo", "2y").
        let (n, mult) = long_units
            .split_once('*')
            .ok_or_else(|| format!("invalid time {s:?}"))?;
        let n: f64 = n
            .trim()
            .parse()
            .map_err(|_| format!("invalid time {s:?}"))?;
        let mult: f64 = mult.parse().map_err(|_| format!("invalid time {s:?}"))?;
        return Ok(Duration::from_secs_f64(n * mult));
    }
    parse_duration(t).map_err(|e| e.to_string())
}

fn truthy(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Keys banhound maps; any other key set in a jail's own section is reported.
const MAPPED: &[&str] = &[
    "enabled",
    "filter",
    "mode",
    "backend",
    "logpath",
    "journalmatch",
    "maxretry",
    "findtime",
    "bantime",
    "bantime.increment",
    "bantime.factor",
    "bantime.multipliers",
    "bantime.maxtime",
    "bantime.rndtime",
    "bantime.overalljails",
    "ignoreip",
    "ignoreself",
    "port",
    "protocol",
    "banaction",
    "banaction_allports",
    "action",
];

fn jail_from(ini: &Ini, name: &str) -> Fail2banJail {
    let warnings = std::cell::RefCell::new(Vec::new());
    let mut vars = BTreeMap::new();
    vars.insert("__name__".to_string(), name.to_string());
    let get = |key: &str| -> Option<String> {
        let raw = ini.raw(name, key)?;
        match ini.interpolate(name, raw, &vars) {
            Ok(v) => Some(v.trim().to_string()),
            Err(e) => {
                warnings.borrow_mut().push(format!("{key}: {e}"));
                None
            }
        }
    };
    let enabled = get("enabled").and_then(|v| truthy(&v)).unwrap_or(false);
    let filter = get("filter")
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| name.to_string());
    let backend_kind = get("backend").unwrap_or_else(|| "auto".into());
    let journalmatch: Vec<String> = get("journalmatch")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let logpath: Vec<String> = get("logpath")
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let source = if backend_kind.starts_with("systemd") {
        JailSourceKind::Journal { journalmatch }
    } else {
        if backend_kind != "auto" && backend_kind != "polling" && backend_kind != "pyinotify" {
            warnings
                .borrow_mut()
                .push(format!("backend {backend_kind:?}: read as files (logpath)"));
        }
        JailSourceKind::Files { logpath }
    };
    let maxretry = get("maxretry").and_then(|v| match v.parse::<u32>() {
        Ok(n) => Some(n),
        Err(_) => {
            warnings
                .borrow_mut()
                .push(format!("maxretry {v:?} is not a number: not imported"));
            None
        }
    });
    let duration = |key: &str| {
        let v = get(key)?;
        match parse_fail2ban_duration(&v) {
            Ok(d) => Some(d),
            Err(e) => {
                warnings
                    .borrow_mut()
                    .push(format!("{key} {v:?}: {e}: not imported"));
                None
            }
        }
    };
    let findtime = duration("findtime");
    let maxtime = duration("bantime.maxtime");
    let bantime = get("bantime").and_then(|v| match parse_fail2ban_bantime(&v) {
        Ok(b) => Some(b),
        Err(e) => {
            warnings
                .borrow_mut()
                .push(format!("bantime {v:?}: {e}: not imported"));
            None
        }
    });
    let escalation = if get("bantime.increment").and_then(|v| truthy(&v)) == Some(true) {
        let factor = get("bantime.factor").and_then(|v| v.parse::<f64>().ok());
        let multipliers: Vec<f64> = get("bantime.multipliers")
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        if get("bantime.formula").is_some() {
            warnings.borrow_mut().push(
                "bantime.formula is not imported: banhound grows bans by a factor or multipliers"
                    .into(),
            );
        }
        let rndtime = duration("bantime.rndtime");
        let overalljails = get("bantime.overalljails").and_then(|v| truthy(&v)) == Some(true);
        Some(Increment {
            factor,
            multipliers,
            maxtime,
            rndtime,
            overalljails,
        })
    } else {
        None
    };
    let ignoreip: Vec<String> = get("ignoreip")
        .map(|v| {
            v.split([' ', ',', '\n', '\t'])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let ignoreself = get("ignoreself").and_then(|v| truthy(&v));
    let mut port = get("port").filter(|p| !p.is_empty());
    let protocol = get("protocol").filter(|p| !p.is_empty());
    let banaction = get("banaction").unwrap_or_default();
    let backend = match banaction.as_str() {
        b if b.starts_with("firewallcmd") => "firewalld",
        b if b.starts_with("nftables") || b.starts_with("iptables") => "nftables",
        other => {
            warnings.borrow_mut().push(format!(
                "banaction {other:?} has no banhound equivalent: nftables is used"
            ));
            "nftables"
        }
    };
    let action = get("action").unwrap_or_default();
    // A port given to the action (`iptables[name=pop3, port=pop3]`) is the one it blocks,
    // whatever the jail's `port` (often just [DEFAULT]'s every port) says.
    if let Some(action_port) = action_port(&action) {
        port = Some(action_port);
    }
    // Firewall actions are the jail's backend; every other one is run as fail2ban would.
    let actions: Vec<String> = split_actions(&action)
        .into_iter()
        .filter(|a| {
            let name = a.split('[').next().unwrap_or("").trim();
            !crate::action::fail2ban::is_firewall_action(name)
        })
        .collect();
    if let Some(usedns) = get("usedns").filter(|v| v != "no" && v != "warn") {
        warnings.borrow_mut().push(format!(
            "usedns = {usedns}: banhound never resolves host names"
        ));
    }
    // fail2ban runs the command for every address before banning it (apache-fakegooglebot's
    // checks that a "Googlebot" is Google's). banhound runs nothing on what a log line
    // says, and without the command the jail would ban everyone the command spared: it is
    // imported disabled, for the admin to list those addresses in ignoreip first.
    let spared_by_command = get("ignorecommand").is_some_and(|v| !v.is_empty());
    if spared_by_command {
        warnings.borrow_mut().push(
            format!("ignorecommand is not imported: banhound runs no command to decide whom to spare, so the jail would ban every address the command spared; {}list those in ignoreip",
                if enabled { "imported disabled: " } else { "" }),
        );
    }
    let enabled = enabled && !spared_by_command;
    for key in ini.keys(name) {
        // The mail keys reach the actions that use them through interpolation.
        let carried =
            !actions.is_empty() && matches!(key, "destemail" | "sender" | "sendername" | "mta");
        if !MAPPED.contains(&key)
            && !carried
            && !key.starts_with("known/")
            && !key.starts_with("bantime.")
            && !matches!(key, "usedns" | "ignorecommand" | "__name__")
        {
            warnings.borrow_mut().push(format!("{key} is not imported"));
        }
    }
    let warnings = warnings.into_inner();
    Fail2banJail {
        name: name.to_string(),
        enabled,
        filter,
        source,
        maxretry,
        findtime,
        bantime,
        escalation,
        ignoreip,
        ignoreself,
        port,
        protocol,
        backend,
        actions,
        warnings,
    }
}

/// The `port` parameter of the first action line that gives one (`NAME[port=...]`), unless
/// it is still an unexpanded reference.
fn action_port(action: &str) -> Option<String> {
    action.lines().find_map(|line| {
        let reference = super::FilterReference::parse(line.trim()).ok()?;
        let port = reference.params.get("port")?.trim().to_string();
        (!port.is_empty() && !port.contains(['%', '<'])).then_some(port)
    })
}

/// The actions of an `action = ...` value: one per line, except that a `[...]` of
/// parameters may go on over several lines.
fn split_actions(value: &str) -> Vec<String> {
    let mut actions = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in value.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if depth > 0 => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth = depth.saturating_sub(1),
            (None, '\n') if depth == 0 => {
                actions.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(if c == '\n' { ' ' } else { c });
    }
    actions.push(current);
    actions
        .into_iter()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jail_that_needs_its_ignorecommand_is_imported_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("jail.d")).unwrap();
        std::fs::write(
            p.join("jail.conf"),
            "[DEFAULT]\nbantime = 10m\nbanaction = nftables-multiport\n[apache-fakegooglebot]\nenabled = true\nport = http\nlogpath = /var/log/apache2/access.log\nignorecommand = /etc/fail2ban/filter.d/ignorecommands/apache-fakegooglebot <ip>\n[apache-auth]\nenabled = true\nport = http\nlogpath = /var/log/apache2/error.log\n",
        )
        .unwrap();
        let (jails, _) = load_jails(p).unwrap();
        let bot = jails
            .iter()
            .find(|j| j.name == "apache-fakegooglebot")
            .unwrap();
        assert!(!bot.enabled);
        assert!(
            bot.warnings.iter().any(|w| w.contains("imported disabled")),
            "{:?}",
            bot.warnings
        );
        let auth = jails.iter().find(|j| j.name == "apache-auth").unwrap();
        assert!(
            auth.enabled && auth.warnings.is_empty(),
            "{:?}",
            auth.warnings
        );
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse_fail2ban_duration(s).unwrap().as_secs();
        assert_eq!(d("600"), 600);
        assert_eq!(d("10m"), 600);
        assert_eq!(d("1h"), 3600);
        assert_eq!(d("1h30m"), 5400);
        assert_eq!(d("1d"), 86_400);
        assert_eq!(d("1w"), 604_800);
        assert_eq!(d("1mo"), 2_592_000);
        assert_eq!(parse_fail2ban_bantime("-1").unwrap(), BanTime::Permanent);
        assert!(parse_fail2ban_duration("10 parsecs").is_err());
    }

    #[test]
    fn a_port_given_to_the_action_is_the_jails() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("jail.conf"),
            "[DEFAULT]\nport = 0:65535\nbanaction = iptables-multiport\naction = %(banaction)s[port=\"%(port)s\"]\n\
             [pop3]\nenabled = true\nlogpath = /var/log/mail.log\naction = iptables[name=pop3, port=pop3, protocol=tcp]\n\
             [sshd]\nenabled = true\nport = ssh\nlogpath = /var/log/auth.log\n",
        )
        .unwrap();
        let (jails, _) = load_jails(dir.path()).unwrap();
        let port = |name: &str| {
            let jail = jails.iter().find(|j| j.name == name).unwrap();
            jail.port.clone()
        };
        assert_eq!(port("pop3").as_deref(), Some("pop3"));
        // The default action passes the jail's own port on.
        assert_eq!(port("sshd").as_deref(), Some("ssh"));
    }

    #[test]
    fn jails_with_precedence_and_mapping() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("jail.d")).unwrap();
        std::fs::write(
            p.join("jail.conf"),
            "[DEFAULT]\nbantime = 10m\nfindtime = 10m\nmaxretry = 5\nbackend = auto\nmode = normal\nfilter = %(__name__)s[mode=%(mode)s]\nbanaction = iptables-multiport\naction = %(banaction)s[port=\"%(port)s\"]\nport = 0:65535\n\
             [sshd]\nport = ssh\nlogpath = /var/log/auth.log\n\n[nginx-http-auth]\nport = http,https\nlogpath = /var/log/nginx/error.log\n",
        )
        .unwrap();
        std::fs::write(
            p.join("jail.d/a.conf"),
            "[sshd]\nenabled = true\nbackend = systemd\n",
        )
        .unwrap();
        std::fs::write(
            p.join("jail.local"),
            "[DEFAULT]\nbanaction = firewallcmd-rich-rules\nbantime.increment = true\nbantime.multipliers = 1 2 4\nbantime.maxtime = 1w\nbantime.rndtime = 5m\nbantime.overalljails = true\n[sshd]\nmode = aggressive\nbantime = 1h\n",
        )
        .unwrap();
        std::fs::write(
            p.join("jail.d/z.local"),
            "[sshd]\nmaxretry = 3\ndestemail = x@y\n",
        )
        .unwrap();
        let (jails, files) = load_jails(p).unwrap();
        assert_eq!(files.len(), 4);
        let sshd = jails.iter().find(|j| j.name == "sshd").unwrap();
        assert!(sshd.enabled);
        assert_eq!(sshd.filter, "sshd[mode=aggressive]");
        assert_eq!(
            sshd.source,
            JailSourceKind::Journal {
                journalmatch: vec![]
            }
        );
        assert_eq!(sshd.maxretry, Some(3));
        assert_eq!(sshd.bantime, Some(BanTime::For(Duration::from_secs(3600))));
        assert_eq!(sshd.findtime, Some(Duration::from_secs(600)));
        assert_eq!(sshd.backend, "firewalld");
        assert_eq!(sshd.port.as_deref(), Some("ssh"));
        let inc = sshd.escalation.as_ref().unwrap();
        assert_eq!(inc.multipliers, vec![1.0, 2.0, 4.0]);
        assert_eq!(inc.maxtime, Some(Duration::from_secs(604_800)));
        assert_eq!(inc.rndtime, Some(Duration::from_secs(300)));
        assert!(inc.overalljails);
        assert!(
            !sshd.warnings.iter().any(|w| w.contains("bantime.")),
            "{:?}",
            sshd.warnings
        );
        assert!(
            sshd.warnings.iter().any(|w| w.contains("destemail")),
            "{:?}",
            sshd.warnings
        );
        assert!(sshd.actions.is_empty());
        let nginx = jails.iter().find(|j| j.name == "nginx-http-auth").unwrap();
        assert!(!nginx.enabled);
        assert_eq!(
            nginx.source,
            JailSourceKind::Files {
                logpath: vec!["/var/log/nginx/error.log".into()]
            }
        );
    }

    #[test]
    fn mail_and_other_actions_are_kept_with_the_jails_values() {
        assert_eq!(
            split_actions("iptables-multiport[name=a, port=\"ssh,\n 22\"]\n  sendmail-whois-lines[dest=\"x@y\"]\n\n"),
            ["iptables-multiport[name=a, port=\"ssh,  22\"]", "sendmail-whois-lines[dest=\"x@y\"]"]
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("jail.conf"),
            "[DEFAULT]\nbanaction = iptables-multiport\ndestemail = root@localhost\nsender = root@<fq-hostname>\nmta = sendmail\n\
             action_ = %(banaction)s[port=\"%(port)s\"]\naction_mwl = %(action_)s\n %(mta)s-whois-lines[sender=\"%(sender)s\", dest=\"%(destemail)s\", logpath=\"%(logpath)s\"]\n\
             action = %(action_mwl)s\nport = 0:65535\nlogpath = /var/log/auth.log\n[sshd]\nenabled = true\ndestemail = admin@example.org\n",
        )
        .unwrap();
        let (jails, _) = load_jails(dir.path()).unwrap();
        let sshd = &jails[0];
        assert_eq!(
            sshd.actions,
            ["sendmail-whois-lines[sender=\"root@<fq-hostname>\", dest=\"admin@example.org\", logpath=\"/var/log/auth.log\"]"]
        );
        assert!(
            !sshd.warnings.iter().any(|w| w.contains("destemail")),
            "{:?}",
            sshd.warnings
        );
    }
}
