//! `[action.NAME]` tables and a jail's `actions = [...]`, validated into [`ActionSpec`]s.
//!
//! ```toml
//! [action.admin-mail]
//! kind = "mail"
//! to = ["root@localhost"]
//! whois = true
//!
//! [defaults]
//! actions = ["admin-mail"]
//! ```
//!
//! A jail names tables (`"admin-mail"`) or fail2ban actions (`"fail2ban:hostsdeny[file=/x]"`,
//! resolved in `[fail2ban] dir`, one instance per jail). Every error names the file, line and
//! key, through the caller's [`SourceText`].

use super::command::CommandAction;
use super::fail2ban::Fail2banAction;
use super::mail::{MailAction, Recipient};
use super::template::{Template, TemplateError};
use super::webhook::{JsonTemplate, WebhookAction};
use crate::config::error::{ConfigError, SourceText};
use crate::config::values::DurationValue;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// The default time limit of one run (a whois lookup counts in a mail's).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A mail action's default `rate_limit`: beyond it, a digest.
pub const DEFAULT_MAIL_RATE: u32 = 10;
/// A webhook's default `rate_limit` (public services limit callers too).
pub const DEFAULT_WEBHOOK_RATE: u32 = 30;
/// The default `rate_window`.
pub const DEFAULT_RATE_WINDOW: Duration = Duration::from_secs(60);

/// An `[action.NAME]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    kind: Spanned<String>,
    /// `["ban"]`, `["unban"]` or both (the default: what the kind has templates for).
    on: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<DurationValue>>,
    rate_limit: Option<Spanned<u32>>,
    rate_window: Option<Spanned<DurationValue>>,
    // command
    ban: Option<Spanned<Vec<Spanned<String>>>>,
    unban: Option<Spanned<Vec<Spanned<String>>>>,
    // mail
    to: Option<Spanned<Vec<Spanned<String>>>>,
    from: Option<Spanned<String>>,
    from_name: Option<Spanned<String>>,
    subject: Option<Spanned<String>>,
    whois: Option<Spanned<bool>>,
    whois_command: Option<Spanned<Vec<String>>>,
    sendmail: Option<Spanned<Vec<String>>>,
    // mail (a string) and webhook (any TOML value, sent as JSON)
    body: Option<Spanned<toml::Value>>,
    // webhook
    url: Option<Spanned<String>>,
    headers: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    retries: Option<Spanned<u32>>,
    retry_delay: Option<Spanned<DurationValue>>,
    curl: Option<Spanned<String>>,
}

/// A validated action.
#[derive(Clone, Debug)]
pub struct ActionSpec {
    /// The table's name, or `JAIL/fail2ban:NAME` for a jail's fail2ban action.
    pub name: String,
    pub kind: ActionKind,
    pub on_ban: bool,
    pub on_unban: bool,
    pub timeout: Duration,
    /// Events run per `rate_window` at most; `None`: no limit.
    pub rate_limit: Option<u32>,
    pub rate_window: Duration,
}

#[derive(Clone, Debug)]
pub enum ActionKind {
    Command(CommandAction),
    Mail(Box<MailAction>),
    Webhook(Box<WebhookAction>),
    Fail2ban(Box<Fail2banAction>),
}

impl ActionKind {
    /// Whether bans over the rate limit are collected into a digest instead of dropped.
    pub fn digests(&self) -> bool {
        matches!(self, ActionKind::Mail(_))
    }

    /// The kind's name, as `kind = ...` writes it (and `fail2ban`).
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::Command(_) => "command",
            ActionKind::Mail(_) => "mail",
            ActionKind::Webhook(_) => "webhook",
            ActionKind::Fail2ban(_) => "fail2ban",
        }
    }

    /// Whether the kind runs something when a jail starts and stops (and so runs one job at
    /// a time).
    pub fn has_start_stop(&self) -> bool {
        matches!(self, ActionKind::Fail2ban(_))
    }
}

impl ActionSpec {
    /// Whether a reload may keep this fail2ban action running as `other` (same scripts).
    pub fn same_scripts(&self, other: &ActionSpec) -> bool {
        match (&self.kind, &other.kind) {
            (ActionKind::Fail2ban(a), ActionKind::Fail2ban(b)) => {
                a == b && self.timeout == other.timeout
            }
            _ => false,
        }
    }
}

/// Keys each kind accepts besides `kind`, `on`, `timeout`, `rate_limit` and `rate_window`.
const COMMAND_KEYS: &[&str] = &["ban", "unban"];
const MAIL_KEYS: &[&str] = &[
    "to",
    "from",
    "from_name",
    "subject",
    "body",
    "whois",
    "whois_command",
    "sendmail",
];
const WEBHOOK_KEYS: &[&str] = &["url", "headers", "body", "retries", "retry_delay", "curl"];

impl RawAction {
    /// The keys that are set, with their spans, to refuse those of another kind.
    fn set_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys = Vec::new();
        macro_rules! key {
            ($($field:ident),*) => {
                $(if let Some(v) = &self.$field {
                    keys.push((stringify!($field), v.span()));
                })*
            };
        }
        key!(
            ban,
            unban,
            to,
            from,
            from_name,
            subject,
            whois,
            whois_command,
            sendmail,
            body,
            url,
            headers,
            retries,
            retry_delay,
            curl
        );
        keys
    }
}

/// Builds the action of an `[action.NAME]` table.
pub fn build_action(
    src: &SourceText,
    name: &str,
    raw: &RawAction,
) -> Result<ActionSpec, ConfigError> {
    let at = |span: std::ops::Range<usize>, msg: String| src.error_at(Some(span), msg);
    let template = |s: &Spanned<String>| {
        Template::parse(s.get_ref()).map_err(|e: TemplateError| at(s.span(), e.to_string()))
    };
    let kind_name = raw.kind.get_ref().as_str();
    let allowed = match kind_name {
        "command" => COMMAND_KEYS,
        "mail" => MAIL_KEYS,
        "webhook" => WEBHOOK_KEYS,
        other => {
            return Err(at(
                raw.kind.span(),
                format!("action {name}: unknown kind {other:?} (use \"command\", \"mail\" or \"webhook\"; fail2ban actions are named in a jail's actions as \"fail2ban:NAME[...]\")"),
            ))
        }
    };
    if let Some((key, span)) = raw
        .set_keys()
        .into_iter()
        .find(|(k, _)| !allowed.contains(k))
    {
        return Err(at(
            span,
            format!(
                "action {name}: {key} is not a key of a {kind_name} action (its keys: {})",
                allowed.join(", ")
            ),
        ));
    }
    let argv =
        |v: &Option<Spanned<Vec<Spanned<String>>>>| -> Result<Option<Vec<Template>>, ConfigError> {
            let Some(v) = v else { return Ok(None) };
            if v.get_ref().is_empty() {
                return Err(at(v.span(), format!("action {name}: an empty command")));
            }
            v.get_ref()
                .iter()
                .map(template)
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    let (kind, has_ban, has_unban, default_rate) = match kind_name {
        "command" => {
            let ban = argv(&raw.ban)?;
            let unban = argv(&raw.unban)?;
            if ban.is_none() && unban.is_none() {
                return Err(at(
                    raw.kind.span(),
                    format!("action {name}: a command action needs ban = [...] or unban = [...] (an argv)"),
                ));
            }
            let (b, u) = (ban.is_some(), unban.is_some());
            (
                ActionKind::Command(CommandAction { ban, unban }),
                b,
                u,
                None,
            )
        }
        "mail" => {
            let Some(to) = &raw.to else {
                return Err(at(
                    raw.kind.span(),
                    format!("action {name}: a mail action needs to = [\"address\", ...]"),
                ));
            };
            let mut recipients = Vec::new();
            for r in to.get_ref() {
                recipients.push(Recipient::parse(r.get_ref()).map_err(|e| at(r.span(), e))?);
            }
            if recipients.is_empty() {
                return Err(at(to.span(), format!("action {name}: to is empty")));
            }
            let from = match &raw.from {
                Some(f) => Some(Recipient::parse(f.get_ref()).map_err(|e| at(f.span(), e))?),
                None => None,
            };
            let body = match &raw.body {
                None => None,
                Some(b) => match b.get_ref() {
                    toml::Value::String(s) => {
                        Some(Template::parse(s).map_err(|e| at(b.span(), e.to_string()))?)
                    }
                    _ => {
                        return Err(at(
                            b.span(),
                            format!("action {name}: a mail body is a string"),
                        ))
                    }
                },
            };
            let mail = MailAction::new(
                recipients,
                from,
                raw.from_name.as_ref().map(|n| n.get_ref().clone()),
                raw.subject.as_ref().map(template).transpose()?,
                body,
                raw.whois.as_ref().is_some_and(|w| *w.get_ref()),
                raw.whois_command.as_ref().map(|c| c.get_ref().clone()),
                raw.sendmail.as_ref().map(|c| c.get_ref().clone()),
            )
            .map_err(|e| at(raw.kind.span(), format!("action {name}: {e}")))?;
            (
                ActionKind::Mail(Box::new(mail)),
                true,
                false,
                Some(DEFAULT_MAIL_RATE),
            )
        }
        _ => {
            let Some(url) = &raw.url else {
                return Err(at(
                    raw.kind.span(),
                    format!("action {name}: a webhook needs url = \"https://...\""),
                ));
            };
            let body = match &raw.body {
                Some(b) => Some(
                    JsonTemplate::from_toml(b.get_ref())
                        .map_err(|e| at(b.span(), e.to_string()))?,
                ),
                None => None,
            };
            let mut headers = Vec::new();
            for (key, value) in raw.headers.iter().flat_map(|h| h.get_ref()) {
                let ok_name = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok_name {
                    return Err(at(
                        value.span(),
                        format!("action {name}: invalid header name {key:?}"),
                    ));
                }
                headers.push((key.clone(), template(value)?));
            }
            let webhook = WebhookAction::new(
                url.get_ref(),
                headers,
                body,
                raw.retries.as_ref().map_or(2, |r| *r.get_ref()),
                raw.retry_delay
                    .as_ref()
                    .map_or(Duration::from_secs(1), |d| d.get_ref().0),
                raw.curl.as_ref().map(|c| c.get_ref().clone()),
            )
            .map_err(|e| at(url.span(), format!("action {name}: {e}")))?;
            (
                ActionKind::Webhook(Box::new(webhook)),
                true,
                true,
                Some(DEFAULT_WEBHOOK_RATE),
            )
        }
    };
    let (on_ban, on_unban) = match &raw.on {
        None => (has_ban, has_unban),
        Some(on) => {
            let mut ban = false;
            let mut unban = false;
            for word in on.get_ref() {
                match word.as_str() {
                    "ban" => ban = true,
                    "unban" => unban = true,
                    other => {
                        return Err(at(
                            on.span(),
                            format!(
                            "action {name}: on: unknown event {other:?} (use \"ban\", \"unban\")"
                        ),
                        ))
                    }
                }
            }
            if (ban && !has_ban) || (unban && !has_unban) {
                return Err(at(
                    on.span(),
                    format!("action {name}: on names an event the action has nothing to run for"),
                ));
            }
            (ban, unban)
        }
    };
    let timeout = match &raw.timeout {
        Some(t) if t.get_ref().0.is_zero() => {
            return Err(at(
                t.span(),
                format!("action {name}: timeout must be longer than zero"),
            ))
        }
        Some(t) => t.get_ref().0,
        None => DEFAULT_TIMEOUT,
    };
    let rate_limit = match &raw.rate_limit {
        // 0 switches the limit off.
        Some(m) if *m.get_ref() == 0 => None,
        Some(m) => Some(*m.get_ref()),
        None => default_rate,
    };
    let rate_window = match &raw.rate_window {
        Some(w) if w.get_ref().0 < Duration::from_secs(1) => {
            return Err(at(
                w.span(),
                format!("action {name}: rate_window must be at least 1s"),
            ))
        }
        Some(w) => w.get_ref().0,
        None => DEFAULT_RATE_WINDOW,
    };
    Ok(ActionSpec {
        name: name.to_string(),
        kind,
        on_ban,
        on_unban,
        timeout,
        rate_limit,
        rate_window,
    })
}

/// Whether an action name is usable in a jail's list and in logs.
pub fn valid_action_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A jail's `actions = [...]`: names of `[action.NAME]` tables (indexes into `specs`), and
/// `fail2ban:NAME[...]` references, each loaded as a new action of this jail.
pub fn resolve_jail_actions(
    src: &SourceText,
    words: &[Spanned<String>],
    jail: &str,
    fail2ban_dir: Option<&std::path::Path>,
    logpath: &[std::path::PathBuf],
    named: &BTreeMap<String, usize>,
    specs: &mut Vec<ActionSpec>,
) -> Result<Vec<usize>, ConfigError> {
    let mut indexes = Vec::new();
    for word in words {
        let at = |msg: String| src.error_at(Some(word.span()), msg);
        let text = word.get_ref().trim();
        let index = if let Some(reference) =
            text.strip_prefix(crate::config::FAIL2BAN_FILTER_PREFIX)
        {
            let Some(dir) = fail2ban_dir else {
                return Err(at(format!(
                    "jail {jail}: action {text:?} names a fail2ban action: set its directory with [fail2ban] dir = \"/etc/fail2ban\""
                )));
            };
            let action = Fail2banAction::load(dir, reference, jail, logpath)
                .map_err(|e| at(format!("jail {jail}: action {text}: {e}")))?;
            specs.push(ActionSpec {
                name: format!("{jail}/{text}"),
                kind: ActionKind::Fail2ban(Box::new(action)),
                on_ban: true,
                on_unban: true,
                timeout: DEFAULT_TIMEOUT,
                // Their effects (a hosts.deny line) must not be dropped: the queue bounds them.
                rate_limit: None,
                rate_window: DEFAULT_RATE_WINDOW,
            });
            specs.len() - 1
        } else {
            *named.get(text).ok_or_else(|| {
                at(format!(
                    "jail {jail}: no action named {text:?} (defined: {}; fail2ban actions are written \"fail2ban:NAME[...]\")",
                    if named.is_empty() { "none".to_string() } else { named.keys().cloned().collect::<Vec<_>>().join(", ") }
                ))
            })?
        };
        if !indexes.contains(&index) {
            indexes.push(index);
        }
    }
    Ok(indexes)
}
