//! `fail2ban:NAME[params]` in a jail's actions: fail2ban's own `action.d/NAME.conf`, run
//! with fail2ban's semantics, except that no value of an event is ever shell code.
//!
//! Loading (with the configuration): the file with its includes and `.local` ([`Ini`]), the
//! parameters given at use over `[Init]`, `%(name)s` interpolation, then fail2ban's `<tag>`
//! substitution of configuration values (`<mailcmd>`, `<dest>`, `<ip_value>`, recursively;
//! `[Init?family=inet6]` for IPv6 bans). What remains are the tags of the event (`<ip>`,
//! `<failures>`, `<matches>`, `<F-USER>`, …), kept as markers (other `<F-…>` fields of the
//! filter are not kept with the lines: they stand for empty text).
//!
//! Running: `/bin/sh -c SCRIPT`, as fail2ban does. Each event value goes into the
//! environment (`F2B_V0`, …) and its marker becomes a reference to that variable, written for
//! the quoting context the marker stands in (`"${F2B_V0}"` unquoted, `${F2B_V0}` inside
//! double quotes, `'"${F2B_V0}"'` inside single quotes; see [`quote_contexts`]). The shell
//! expands a variable once and never parses its value, so a matched line with `$(reboot)`,
//! backticks or `;rm -rf /` is text. (fail2ban itself escapes such characters with
//! backslashes.) Firewall actions (`iptables-*`, `nftables-*`, `firewallcmd-*`, …) are
//! refused: a jail's `backend` bans with banhound's own backends.
//!
//! As in fail2ban, a non-empty `actioncheck` runs before each `actionban` and `actionunban`;
//! when it fails, a ban first restores the action (`actionrepair`, or `actionstop` then
//! `actionstart`) and runs only if the check then passes; an unban is not run (unless the
//! file sets `actionrepair_on_unban`). `actionflush` is not used: banhound keeps bans over a
//! restart instead of flushing them at stop, and lifts a removed jail's bans one by one.

use super::process::{self, Run};
use super::template::neutralise;
use super::ActionEvent;
use crate::config::fail2ban::ini::Ini;
use crate::config::fail2ban::FilterReference;
use crate::display::display_target;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shell fail2ban runs actions with.
const SHELL: &str = "/bin/sh";
/// Tags whose values come from the event (everything else is configuration).
const EVENT_TAGS: &[&str] = &[
    "ip",
    "ip-rev",
    "family",
    "failures",
    "matches",
    "ipmatches",
    "ipjailmatches",
    "bantime",
    "time",
    "restored",
    "ipfailures",
    "ipjailfailures",
];
/// Names of the action.d families that are firewalls: banhound's backends do their work.
pub const FIREWALL_PREFIXES: &[&str] = &[
    "iptables",
    "ip6tables",
    "nftables",
    "firewallcmd",
    "shorewall",
    "ufw",
    "pf",
    "ipfw",
    "ipset",
    "route",
    "npf",
    "bsd-ipfw",
    "nginx-block-map",
];
/// Marker delimiters around an event tag in a loaded script (NUL is never in a file's text).
const MARK: char = '\0';

/// Whether an action.d name is a firewall action (mapped to a backend, not run).
pub fn is_firewall_action(name: &str) -> bool {
    FIREWALL_PREFIXES
        .iter()
        .any(|p| name == *p || name.starts_with(&format!("{p}-")))
}

/// A script with event markers, per address family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Scripts {
    start: String,
    stop: String,
    check: String,
    repair: String,
    ban: String,
    unban: String,
}

/// A loaded fail2ban action for one jail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail2banAction {
    name: String,
    inet4: Scripts,
    inet6: Scripts,
    /// `actionrepair_on_unban`: a failed check before an unban repairs too.
    repair_on_unban: bool,
    /// `norestored`: bans restored at start are not given to it.
    norestored: bool,
}

impl Fail2banAction {
    /// Loads `reference` (`NAME[key=value, ...]`) from `dir/action.d` for `jail`, whose log
    /// files (if any) are `<logpath>`.
    pub fn load(
        dir: &Path,
        reference: &str,
        jail: &str,
        logpath: &[PathBuf],
    ) -> Result<Fail2banAction, String> {
        let reference = FilterReference::parse(reference).map_err(|e| e.to_string())?;
        let name = reference.name.clone();
        if is_firewall_action(&name) {
            return Err(format!(
                "{name} is a firewall action: banhound bans with the jail's backend (nftables or firewalld), set backend and port instead"
            ));
        }
        let path = dir.join("action.d").join(format!("{name}.conf"));
        if !path.is_file() {
            return Err(format!(
                "no fail2ban action {name:?} ({} does not exist)",
                path.display()
            ));
        }
        let ini = Ini::load(&path).map_err(|e| e.to_string())?;
        let mut params = reference.params.clone();
        params
            .entry("name".into())
            .or_insert_with(|| jail.to_string());
        if !logpath.is_empty() {
            params.entry("logpath".into()).or_insert_with(|| {
                logpath
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        }
        params
            .entry("fq-hostname".into())
            .or_insert_with(super::hostname);
        let scripts = |family: &str| -> Result<Scripts, String> {
            let values = config_values(&ini, &params, family)?;
            let script = |key: &str| -> Result<String, String> {
                let raw = ini.raw("Definition", key).unwrap_or("");
                let text = ini
                    .interpolate("Definition", raw, &params)
                    .map_err(|e| format!("{key}: {e}"))?;
                Ok(substitute(&text, &values, 0))
            };
            Ok(Scripts {
                start: script("actionstart")?,
                stop: script("actionstop")?,
                check: script("actioncheck")?,
                repair: script("actionrepair")?,
                ban: script("actionban")?,
                unban: script("actionunban")?,
            })
        };
        // fail2ban reads these as booleans ("1", "true", "yes", "on").
        let flag = |key: &str| {
            ini.raw("Definition", key).is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
        };
        Ok(Fail2banAction {
            name,
            inet4: scripts("inet4")?,
            inet6: scripts("inet6")?,
            repair_on_unban: flag("actionrepair_on_unban"),
            norestored: flag("norestored"),
        })
    }

    /// Whether bans restored at start are given to it (fail2ban's `norestored` unset).
    pub fn replays_restored(&self) -> bool {
        !self.norestored
    }

    /// actionban / actionunban for an event.
    pub async fn run_event(&self, event: &ActionEvent, timeout: Duration) -> Result<(), String> {
        let target = event.target();
        let scripts = if target.addr().is_ipv6() {
            &self.inet6
        } else {
            &self.inet4
        };
        let (script, ban) = match event {
            ActionEvent::Ban(_) => (&scripts.ban, true),
            ActionEvent::Unban(_) => (&scripts.unban, false),
        };
        if script.trim().is_empty() {
            return Ok(());
        }
        self.check(scripts, ban || self.repair_on_unban, timeout)
            .await?;
        self.run_script(script, |tag| event_value(event, tag), timeout)
            .await
    }

    /// `actioncheck` before an event; when it fails and `repair`, restores the action and
    /// checks again.
    async fn check(
        &self,
        scripts: &Scripts,
        repair: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let none = |_: &str| String::new();
        if scripts.check.trim().is_empty()
            || self.run_script(&scripts.check, none, timeout).await.is_ok()
        {
            return Ok(());
        }
        if !repair {
            return Err(format!(
                "fail2ban action {}: actioncheck failed, the unban was not run",
                self.name
            ));
        }
        let restored = if scripts.repair.trim().is_empty() {
            // As fail2ban: a failed stop does not keep the start from trying.
            let _ = self.run_script(&scripts.stop, none, timeout).await;
            self.run_script(&scripts.start, none, timeout).await
        } else {
            self.run_script(&scripts.repair, none, timeout).await
        };
        restored
            .and(self.run_script(&scripts.check, none, timeout).await)
            .map_err(|e| format!("actioncheck failed and restoring the action did not help ({e}): the ban was not run"))?;
        tracing::info!(ACTION = %self.name, "fail2ban action {}: actioncheck failed, restored the action", self.name);
        Ok(())
    }

    /// actionstart / actionstop (IPv4 family values, as fail2ban's default). The action was
    /// loaded for one jail, whose name is already in the scripts.
    pub async fn run_start_stop(&self, start: bool, timeout: Duration) -> Result<(), String> {
        let script = if start {
            &self.inet4.start
        } else {
            &self.inet4.stop
        };
        self.run_script(script, |_| String::new(), timeout).await
    }

    async fn run_script(
        &self,
        script: &str,
        value: impl Fn(&str) -> String,
        timeout: Duration,
    ) -> Result<(), String> {
        if script.trim().is_empty() {
            return Ok(());
        }
        let (text, env) = bind(script, value);
        let argv = vec![SHELL.to_string(), "-c".to_string(), text];
        process::run(Run {
            argv: &argv,
            env,
            stdin: None,
            timeout,
        })
        .await
        .map(drop)
        .map_err(|e| format!("fail2ban action {}: {e}", self.name))
    }
}

/// The configuration tags of one family: `[Init]` (with `[Init?family=F]` over it), then
/// the parameters given at use, each interpolated.
fn config_values(
    ini: &Ini,
    params: &BTreeMap<String, String>,
    family: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    let mut add = |section: &str| -> Result<(), String> {
        for key in ini.keys(section) {
            if key.starts_with("known/") {
                continue;
            }
            let raw = ini.raw(section, key).unwrap_or("");
            let value = ini
                .interpolate(section, raw, params)
                .map_err(|e| format!("[{section}] {key}: {e}"))?;
            values.insert(key.to_string(), value);
        }
        Ok(())
    };
    add("Definition")?;
    add("Init")?;
    add(&format!("Init?family={family}"))?;
    for (k, v) in params {
        values.insert(k.clone(), v.clone());
    }
    values.insert("family".into(), family.into());
    Ok(values)
}

/// Replaces configuration tags by their (recursively substituted) values and event tags
/// by markers; other `<...>` text stays, as fail2ban leaves unknown tags.
fn substitute(text: &str, values: &BTreeMap<String, String>, depth: usize) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let end = after.find(['>', '<', ' ', '\n', '\t']);
        let Some(end) = end.filter(|&e| after.as_bytes()[e] == b'>') else {
            out.push('<');
            rest = after;
            continue;
        };
        let tag = &after[..end];
        if tag.starts_with("F-") || EVENT_TAGS.contains(&tag) {
            out.push(MARK);
            out.push_str(tag);
            out.push(MARK);
        } else if let Some(value) = values.get(tag).filter(|_| depth < 16) {
            out.push_str(&substitute(value, values, depth + 1));
        } else {
            out.push('<');
            out.push_str(tag);
            out.push('>');
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// An event tag's value, neutralised (no control bytes) like every value of actions.
fn event_value(event: &ActionEvent, tag: &str) -> String {
    let target = event.target();
    let lines = || match event {
        ActionEvent::Ban(b) => b.lines.join("\n"),
        ActionEvent::Unban(_) => String::new(),
    };
    let text = match (tag, event) {
        ("ip", _) => display_target(target),
        ("ip-rev", _) => reverse(target.addr()),
        ("family", _) => if target.addr().is_ipv6() {
            "inet6"
        } else {
            "inet4"
        }
        .into(),
        ("failures" | "ipfailures" | "ipjailfailures", ActionEvent::Ban(b)) => {
            b.failures.to_string()
        }
        ("matches" | "ipmatches" | "ipjailmatches", _) => lines(),
        ("bantime", ActionEvent::Ban(b)) => match b.bantime.until(b.at) {
            Some(until) => until.since(b.at).as_secs().to_string(),
            None => "-1".into(),
        },
        ("time", ActionEvent::Ban(b)) => b.at.as_secs().to_string(),
        ("time", ActionEvent::Unban(u)) => u.at.as_secs().to_string(),
        ("restored", ActionEvent::Ban(b)) if b.restored => "1".into(),
        ("F-USER", ActionEvent::Ban(b)) => b.user.clone().unwrap_or_default(),
        ("restored", _) => "0".into(),
        _ => String::new(),
    };
    // Lines were neutralised when kept; this also covers every other value.
    text.split('\n')
        .map(|l| neutralise(l.as_bytes(), 4096))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.2.3.4` as `4.3.2.1.` (fail2ban's `<ip-rev>`, for DNS block lists).
fn reverse(addr: std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(a) => {
            let mut out = String::new();
            for byte in a.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 15, byte >> 4));
            }
            out
        }
    }
}

/// Where a marker stands in shell text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteContext {
    Unquoted,
    Double,
    Single,
}

/// The quoting context at each marker of `script`, in order, as `sh` reads it: single and
/// double quotes, backslash escapes, and command substitutions (`$(...)`, backticks), inside
/// which quoting starts afresh.
pub fn quote_contexts(script: &str) -> Vec<QuoteContext> {
    #[derive(Clone, Copy, PartialEq)]
    enum Frame {
        Command { parens: usize },
        Backtick,
        Double,
        Single,
    }
    let mut stack = vec![Frame::Command { parens: 0 }];
    let mut contexts = Vec::new();
    let mut chars = script.chars().peekable();
    let mut in_marker = false;
    while let Some(c) = chars.next() {
        if c == MARK {
            if !in_marker {
                contexts.push(match stack.last() {
                    Some(Frame::Double) => QuoteContext::Double,
                    Some(Frame::Single) => QuoteContext::Single,
                    _ => QuoteContext::Unquoted,
                });
            }
            in_marker = !in_marker;
            continue;
        }
        if in_marker {
            continue;
        }
        let top = *stack.last().unwrap_or(&Frame::Command { parens: 0 });
        match (top, c) {
            (Frame::Single, '\'') => {
                stack.pop();
            }
            (Frame::Single, _) => {}
            (_, '\\') => {
                chars.next();
            }
            (Frame::Double, '"') => {
                stack.pop();
            }
            (Frame::Backtick, '`') => {
                stack.pop();
            }
            (_, '`') => stack.push(Frame::Backtick),
            (_, '$') if chars.peek() == Some(&'(') => {
                chars.next();
                stack.push(Frame::Command { parens: 0 });
            }
            (Frame::Command { .. } | Frame::Backtick, '\'') => stack.push(Frame::Single),
            (Frame::Command { .. } | Frame::Backtick, '"') => stack.push(Frame::Double),
            (Frame::Command { parens }, '(') => {
                if let Some(f) = stack.last_mut() {
                    *f = Frame::Command { parens: parens + 1 };
                }
            }
            (Frame::Command { parens }, ')') => {
                if parens > 0 {
                    if let Some(f) = stack.last_mut() {
                        *f = Frame::Command { parens: parens - 1 };
                    }
                } else if stack.len() > 1 {
                    stack.pop();
                }
            }
            _ => {}
        }
    }
    contexts
}

/// The script to run and its environment: each marker replaced by a reference to a
/// variable holding the event's value.
fn bind(script: &str, value: impl Fn(&str) -> String) -> (String, BTreeMap<String, String>) {
    let contexts = quote_contexts(script);
    let mut env = BTreeMap::new();
    let mut out = String::with_capacity(script.len());
    for (i, piece) in script.split(MARK).enumerate() {
        if i % 2 == 0 {
            out.push_str(piece);
            continue;
        }
        let n = i / 2;
        let var = format!("F2B_V{n}");
        env.insert(var.clone(), value(piece));
        let reference = match contexts.get(n).copied().unwrap_or(QuoteContext::Unquoted) {
            QuoteContext::Unquoted => format!("\"${{{var}}}\""),
            QuoteContext::Double => format!("${{{var}}}"),
            QuoteContext::Single => format!("'\"${{{var}}}\"'"),
        };
        out.push_str(&reference);
    }
    (out, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(script: &str) -> String {
        script.replace("<ip>", "\0ip\0")
    }

    #[test]
    fn contexts_follow_the_shell_quoting() {
        let s = marked(
            "echo <ip> \"a <ip> `b <ip> \"c <ip>\"` $(d '<ip>')\" '<ip>' \\'<ip> $( (x) <ip>)",
        );
        use QuoteContext::*;
        assert_eq!(
            quote_contexts(&s),
            [Unquoted, Double, Unquoted, Double, Single, Single, Unquoted, Unquoted]
        );
    }

    async fn run_sh(script: &str, value: &str) -> String {
        let (text, env) = bind(&marked(script), |_| value.to_string());
        let argv = vec![SHELL.to_string(), "-c".to_string(), text];
        let out = process::run(Run {
            argv: &argv,
            env,
            stdin: None,
            timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn hostile_values_are_text_in_every_context() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        let hostile = format!(
            "$(touch {c}) `touch {c}` ;touch {c}; ' \" \\ *",
            c = canary.display()
        );
        for script in [
            "printf '%s\\n' <ip>",
            "printf '%s\\n' \"x <ip> y\"",
            "printf '%s\\n' 'x <ip> y'",
            "printf '%s\\n' \"`printf '%s' \"<ip>\"`\"",
            "printf '%s\\n' $(printf '%s' <ip>)",
        ] {
            let out = run_sh(script, &hostile).await;
            assert!(out.contains("$(touch"), "{script}: {out}");
            assert!(!canary.exists(), "{script} ran the value");
        }
        assert_eq!(run_sh("printf '%s' 'x <ip> y'", "a b").await, "x a b y");
    }

    #[test]
    fn configuration_tags_are_substituted_and_event_tags_marked() {
        let values: BTreeMap<String, String> = [
            ("ip_value".to_string(), "[<ip>]".to_string()),
            ("file".into(), "/etc/hosts.deny".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            substitute("echo <ip_value> >> <file> <<sender>> <unknown>", &values, 0),
            "echo [\0ip\0] >> /etc/hosts.deny <<sender>> <unknown>"
        );
        assert!(is_firewall_action("iptables-multiport"));
        assert!(is_firewall_action("nftables"));
        assert!(!is_firewall_action("hostsdeny"));
    }
}
