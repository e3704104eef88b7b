//! `[fleet]`: sharing bans with other hosts over Redis Streams (see `docs/fleet.md`).
//!
//! Kept apart from the jails' configuration because it is about the host, not a jail: which
//! Redis to use and as whom, which jails' bans this host publishes, and how far it trusts
//! the others (the local jail their bans go into, the longest ban it takes from them). Each
//! key comes from the last file that sets it, like `[daemon]`. Every error names the file,
//! the line and the key.

use super::error::{ConfigError, SourceText};
use super::values::DurationValue;
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// The longest remote ban taken as it is when `max_bantime` is not set: a day covers the
/// usual ban times, and a hostile or mistaken host cannot lock an address out for years.
pub const DEFAULT_MAX_BANTIME: Duration = Duration::from_secs(86_400);

/// `[fleet]` as written (every key optional, unknown keys refused).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    url: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<PathBuf>>,
    share: Option<Spanned<Vec<Spanned<String>>>>,
    publish_manual: Option<Spanned<bool>>,
    receive_jail: Option<Spanned<String>>,
    peers: Option<Spanned<Vec<Spanned<String>>>>,
    max_bantime: Option<Spanned<DurationValue>>,
}

/// A password, never shown by `Debug` (settings are logged in debug output).
#[derive(Clone, PartialEq, Eq)]
pub struct Password(pub String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The validated `[fleet]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// `redis://HOST[:PORT][/DB]`, `rediss://…` (TLS) or `unix:///PATH`.
    pub url: String,
    /// This host's name in the fleet: it publishes to `banhound:bans:<host>`.
    pub host: String,
    /// The Redis ACL user; the host name unless set.
    pub user: String,
    pub password: Option<Password>,
    /// Jails whose bans decided from the logs are published.
    pub share: Vec<String>,
    /// Whether bans ordered over the control interface in those jails are published too.
    pub publish_manual: bool,
    /// The local jail other hosts' bans are applied in; `None`: this host only publishes.
    pub receive_jail: Option<String>,
    /// Other hosts read from the start, whether their stream exists yet or not (a blocking
    /// read waits on a key that does not exist too); others are found by looking for
    /// streams.
    pub peers: Vec<String>,
    /// Remote bans longer than this (permanent ones included) are cut down to it.
    pub max_bantime: Duration,
}

/// Whether `name` can be a fleet host name: it becomes part of a Redis key and of an ACL
/// key pattern, so glob characters (`*?[]\`) and spaces are out.
pub fn valid_host_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The URL schemes the Redis client is built with.
const SCHEMES: [&str; 3] = ["redis://", "rediss://", "unix://"];

/// This host's name, the default fleet host name.
fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Builds `[fleet]` from the files' raw sections, each key from the last file that sets
/// it; `None` when no file has a `[fleet]` section. `jails` are the configured jail names
/// (`share` and `receive_jail` must name them).
pub(super) fn build_fleet(
    sources: &[SourceText],
    raws: &[Option<&Spanned<RawFleet>>],
    jails: &[&str],
) -> Result<Option<FleetSettings>, ConfigError> {
    if raws.iter().all(Option::is_none) {
        return Ok(None);
    }
    macro_rules! last {
        ($key:ident) => {
            raws.iter()
                .enumerate()
                .rev()
                .find_map(|(file, r)| r.and_then(|r| r.get_ref().$key.as_ref()).map(|v| (file, v)))
        };
    }
    let err = |file: usize, span: std::ops::Range<usize>, message: String| {
        sources[file].error_at(Some(span), message)
    };
    let (section_file, section) = raws
        .iter()
        .enumerate()
        .rev()
        .find_map(|(file, r)| r.map(|r| (file, r.span())))
        .unwrap_or((0, 0..0));
    let Some((file, url)) = last!(url) else {
        return Err(err(
            section_file,
            section,
            "[fleet] needs url = \"redis://HOST:PORT\", \"rediss://HOST:PORT\" or \"unix:///PATH\""
                .into(),
        ));
    };
    let url_text = url.get_ref().trim().to_string();
    if !SCHEMES.iter().any(|s| url_text.starts_with(s))
        || url_text.parse::<redis::ConnectionInfo>().is_err()
    {
        return Err(err(
            file,
            url.span(),
            format!(
                "url {url_text:?} is not a Redis URL: use redis://HOST:PORT, rediss://HOST:PORT (TLS) or unix:///PATH"
            ),
        ));
    }
    let host = match last!(host) {
        Some((file, host)) => {
            if !valid_host_name(host.get_ref()) {
                return Err(err(
                    file,
                    host.span(),
                    format!(
                        "invalid fleet host name {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                        host.get_ref()
                    ),
                ));
            }
            host.get_ref().clone()
        }
        None => {
            let name = system_hostname();
            if !valid_host_name(&name) {
                return Err(err(
                    section_file,
                    section,
                    format!(
                        "this host's name {name:?} cannot name its fleet stream: set [fleet] host"
                    ),
                ));
            }
            name
        }
    };
    let user = last!(user).map_or_else(|| host.clone(), |(_, u)| u.get_ref().clone());
    let password = match (last!(password), last!(password_file)) {
        (Some((file, p)), Some(_)) => {
            return Err(err(
                file,
                p.span(),
                "set password or password_file, not both".into(),
            ))
        }
        (Some((_, p)), None) => Some(Password(p.get_ref().clone())),
        (None, Some((file, path))) => {
            let text = std::fs::read_to_string(path.get_ref()).map_err(|e| {
                err(
                    file,
                    path.span(),
                    format!(
                        "cannot read password_file {}: {e}",
                        path.get_ref().display()
                    ),
                )
            })?;
            let line = text.lines().next().unwrap_or_default().trim().to_string();
            if line.is_empty() {
                return Err(err(
                    file,
                    path.span(),
                    format!("password_file {} is empty", path.get_ref().display()),
                ));
            }
            Some(Password(line))
        }
        (None, None) => None,
    };
    let known = |file: usize, word: &Spanned<String>, key: &str| {
        if jails.contains(&word.get_ref().as_str()) {
            Ok(word.get_ref().clone())
        } else {
            Err(err(
                file,
                word.span(),
                format!("{key}: no jail named {:?}", word.get_ref()),
            ))
        }
    };
    let share = match last!(share) {
        Some((file, words)) => words
            .get_ref()
            .iter()
            .map(|w| known(file, w, "share"))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let receive_jail = last!(receive_jail)
        .map(|(file, j)| known(file, j, "receive_jail"))
        .transpose()?;
    let peers = match last!(peers) {
        Some((file, words)) => words
            .get_ref()
            .iter()
            .map(|w| {
                if valid_host_name(w.get_ref()) {
                    Ok(w.get_ref().clone())
                } else {
                    Err(err(
                        file,
                        w.span(),
                        format!("peers: invalid fleet host name {:?}", w.get_ref()),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let max_bantime = match last!(max_bantime) {
        Some((file, value)) => {
            let DurationValue(d) = *value.get_ref();
            if d.is_zero() {
                return Err(err(
                    file,
                    value.span(),
                    "max_bantime must be longer than 0s".into(),
                ));
            }
            d
        }
        None => DEFAULT_MAX_BANTIME,
    };
    Ok(Some(FleetSettings {
        url: url_text,
        host,
        user,
        password,
        share,
        publish_manual: last!(publish_manual).is_some_and(|(_, v)| *v.get_ref()),
        receive_jail,
        peers,
        max_bantime,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_sources, ConfigPaths};
    use std::path::Path;

    const JAIL: &str = "[jail.sshd]\nenabled = true\njournalmatch = [\"_COMM=sshd\"]\nfilter = { failregex = [\"^Failed password for \\\\S+ from <HOST>\"] }\n";

    fn load(texts: &[&str]) -> Result<Option<FleetSettings>, String> {
        let paths = ConfigPaths {
            defaults_dir: Path::new("/nonexistent/usr").into(),
            config_dir: Path::new("/nonexistent/etc").into(),
            main_file: None,
        };
        let sources = texts
            .iter()
            .enumerate()
            .map(|(i, text)| SourceText {
                path: format!("/etc/banhound/jail.d/{i}.toml").into(),
                text: format!("{JAIL}{text}"),
            })
            .collect();
        load_sources(&paths, sources)
            .map(|s| s.fleet)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_is_read_with_its_defaults() {
        let fleet = load(&["[fleet]\nurl = \"unix:///run/redis/redis.sock\"\nhost = \"web-1\"\nshare = [\"sshd\"]\nreceive_jail = \"sshd\"\n"])
            .unwrap()
            .unwrap();
        assert_eq!(fleet.host, "web-1");
        assert_eq!(fleet.user, "web-1");
        assert_eq!(fleet.share, ["sshd"]);
        assert_eq!(fleet.receive_jail.as_deref(), Some("sshd"));
        assert!(!fleet.publish_manual);
        assert_eq!(fleet.max_bantime, DEFAULT_MAX_BANTIME);
        assert_eq!(load(&[""]).unwrap(), None);
    }

    #[test]
    fn later_files_override_key_by_key() {
        let fleet = load(&[
            "[fleet]\nurl = \"redis://10.0.0.5:6379\"\nhost = \"a\"\nuser = \"banhound-a\"\n",
            "[fleet]\nurl = \"rediss://redis.example:6380\"\nmax_bantime = \"2h\"\npublish_manual = true\n",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(fleet.url, "rediss://redis.example:6380");
        assert_eq!(
            (fleet.host.as_str(), fleet.user.as_str()),
            ("a", "banhound-a")
        );
        assert_eq!(fleet.max_bantime, Duration::from_secs(7200));
        assert!(fleet.publish_manual);
    }

    #[test]
    fn a_password_file_is_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let fleet = load(&[&format!(
            "[fleet]\nurl = \"redis://r:6379\"\nhost = \"a\"\npassword_file = \"{}\"\n",
            file.display()
        )])
        .unwrap()
        .unwrap();
        assert_eq!(fleet.password, Some(Password("s3cret".into())));
        assert!(!format!("{fleet:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let file = "/etc/banhound/jail.d/0.toml";
        for (text, line, key, says) in [
            ("[fleet]\nhost = \"a\"\n", 5, "fleet", "needs url"),
            ("[fleet]\nurl = \"http://r\"\n", 6, "fleet.url", "not a Redis URL"),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a*\"\n", 7, "fleet.host", "invalid fleet host name"),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\nshare = [\"nginx\"]\n", 8, "fleet.share", "no jail named \"nginx\""),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\nreceive_jail = \"x\"\n", 8, "fleet.receive_jail", "no jail named \"x\""),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\npassword = \"p\"\npassword_file = \"/f\"\n", 8, "fleet.password", "not both"),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\npassword_file = \"/nonexistent/pw\"\n", 8, "fleet.password_file", "cannot read"),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\nmax_bantime = \"0s\"\n", 8, "fleet.max_bantime", "longer than 0s"),
            ("[fleet]\nurl = \"redis://r\"\nhost = \"a\"\npeers = [\"b\", \"c d\"]\n", 8, "fleet.peers", "invalid fleet host name \"c d\""),
            ("[fleet]\nurl = \"redis://r\"\nhots = \"a\"\n", 7, "fleet.hots", "unknown field"),
        ] {
            let err = load(&[text]).unwrap_err();
            assert!(
                err.starts_with(&format!("{file}:{line}: {key}: ")) && err.contains(says),
                "{text:?}: {err}"
            );
        }
    }
}
