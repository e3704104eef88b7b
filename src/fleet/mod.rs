//! Fleet ban sharing over Redis Streams: the entry format on the wire, the stream names and
//! the entry ids, and the two tasks that talk to Redis ([`publisher`], [`subscriber`]).
//!
//! Why Redis Streams: an engine admins already run (Redis ≥ 6, or Valkey), with an
//! append-only log per key, blocking reads from a stored position, and ACLs per key. Each
//! host appends to its own stream, `banhound:bans:<host>`, and its ACL user may append to
//! no other: the origin of an entry is the key it is in, enforced by the server, never a
//! field the sender fills in. Everything else (`docs/fleet.md`) follows from that:
//! - publishing: a shared ban is written to an outbox table in `state.sqlite` in the same
//!   transaction as the ban itself; [`publisher`] drains it with `XADD` and an explicit
//!   entry id made of the outbox row ([`entry_id`]), so a resend after a crash is refused
//!   by Redis as "equal or smaller than the top item" instead of being added twice;
//! - subscribing: [`subscriber`] reads the other hosts' streams with a blocking `XREAD`
//!   from the positions stored in `state.sqlite`; the daemon applies each entry through its
//!   own enforcement, after its own rules (`crate::daemon`), and commits the position with
//!   the bans it led to.
//!
//! Entries are checked here as untrusted input ([`FleetEntry::decode`]): a host's key
//! being its own does not make what it writes sane.

pub mod outbox;
pub mod publisher;
pub mod subscriber;

use crate::config::fleet::FleetSettings;
use crate::engine::time::Timestamp;
use ipnet::IpNet;

/// The prefix of every host's stream key.
pub const STREAM_PREFIX: &str = "banhound:bans:";

/// The stream `host` publishes to.
pub fn stream_key(host: &str) -> String {
    format!("{STREAM_PREFIX}{host}")
}

/// The host a stream key belongs to, if it is one of the fleet's.
pub fn stream_host(key: &str) -> Option<&str> {
    key.strip_prefix(STREAM_PREFIX)
        .filter(|h| crate::config::fleet::valid_host_name(h))
}

/// The key of a remote stream's position in the state database's `source_positions`.
pub fn position_key(host: &str) -> String {
    format!("fleet:{host}")
}

/// The stream entry id of outbox row `row` of a database whose outbox started at
/// `epoch_ms` (see [`outbox`]): `<epoch_ms>-<row>`. Rows only grow (AUTOINCREMENT), so ids
/// are in the order Redis requires; a database made later (a new host, a deleted state)
/// starts at a later millisecond and so above every id the old one sent.
pub fn entry_id(epoch_ms: u64, row: i64) -> String {
    format!("{epoch_ms}-{row}")
}

/// Why a ban was made, as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Decided from the origin host's logs.
    Logs,
    /// Ordered by an admin of the origin host.
    Manual,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Logs => "logs",
            Origin::Manual => "manual",
        }
    }
}

/// A ban as one host tells the others: one stream entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetEntry {
    /// The origin host's jail (informative: the receiver chooses its own).
    pub jail: String,
    pub target: IpNet,
    pub since: Timestamp,
    /// `None`: permanent.
    pub until: Option<Timestamp>,
    pub offence: u32,
    pub failures: u32,
    pub reason: Origin,
}

/// Why a stream entry was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("field {0} missing")]
    Missing(&'static str),
    #[error("field {field} is not valid: {value:?}")]
    Invalid { field: &'static str, value: String },
    #[error("it ends before it starts")]
    EndsBeforeStart,
}

/// The longest field value kept for an error message (a hostile entry may be megabytes).
const SHOWN_VALUE: usize = 64;

impl FleetEntry {
    /// The entry's fields, as `XADD` writes them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("jail", self.jail.clone()),
            ("target", self.target.to_string()),
            ("since_us", self.since.as_micros().to_string()),
            (
                "until_us",
                self.until
                    .map_or_else(|| "permanent".into(), |u| u.as_micros().to_string()),
            ),
            ("offence", self.offence.to_string()),
            ("failures", self.failures.to_string()),
            ("reason", self.reason.as_str().into()),
        ]
    }

    /// Reads an entry from its fields, refusing anything that is not exactly what
    /// [`FleetEntry::fields`] writes. Unknown fields are ignored (a newer version may add
    /// some).
    pub fn decode(fields: &[(String, Vec<u8>)]) -> Result<FleetEntry, EntryError> {
        let get = |name: &'static str| -> Result<&str, EntryError> {
            let (_, value) = fields
                .iter()
                .find(|(k, _)| k == name)
                .ok_or(EntryError::Missing(name))?;
            std::str::from_utf8(value).map_err(|_| invalid(name, &String::from_utf8_lossy(value)))
        };
        let number = |name: &'static str| -> Result<i64, EntryError> {
            let text = get(name)?;
            text.parse::<i64>().map_err(|_| invalid(name, text))
        };
        let small = |name: &'static str| -> Result<u32, EntryError> {
            let text = get(name)?;
            text.parse::<u32>().map_err(|_| invalid(name, text))
        };
        let jail = get("jail")?;
        if !(1..=64).contains(&jail.len())
            || !jail
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(invalid("jail", jail));
        }
        let target_text = get("target")?;
        let target: IpNet = target_text
            .parse()
            .map_err(|_| invalid("target", target_text))?;
        let since = Timestamp::from_micros(number("since_us")?);
        let until = match get("until_us")? {
            "permanent" => None,
            _ => Some(Timestamp::from_micros(number("until_us")?)),
        };
        if until.is_some_and(|u| u <= since) {
            return Err(EntryError::EndsBeforeStart);
        }
        let reason = match get("reason")? {
            "logs" => Origin::Logs,
            "manual" => Origin::Manual,
            other => return Err(invalid("reason", other)),
        };
        Ok(FleetEntry {
            jail: jail.to_string(),
            target: target.trunc(),
            since,
            until,
            offence: small("offence")?,
            failures: small("failures")?,
            reason,
        })
    }
}

fn invalid(field: &'static str, value: &str) -> EntryError {
    EntryError::Invalid {
        field,
        value: value.chars().take(SHOWN_VALUE).collect(),
    }
}

/// The Redis connection settings of `[fleet]`: the URL with the user and password set.
pub fn connection_info(
    settings: &FleetSettings,
) -> Result<redis::ConnectionInfo, redis::RedisError> {
    use redis::IntoConnectionInfo;
    let info = settings.url.as_str().into_connection_info()?;
    // No CLIENT SETINFO: Redis before 7.2 lacks it, and the ACL of docs/fleet.md need
    // not allow it.
    let mut redis_settings = info
        .redis_settings()
        .clone()
        .set_username(&settings.user)
        .set_skip_set_lib_name();
    if let Some(password) = &settings.password {
        redis_settings = redis_settings.set_password(&password.0);
    }
    Ok(info.set_redis_settings(redis_settings))
}

/// Changes a task's shared status; a poisoned lock (a panicked reader) leaves it as it was,
/// since status is only ever shown, never decided on.
fn update<S>(status: &std::sync::Mutex<S>, change: impl FnOnce(&mut S)) {
    if let Ok(mut s) = status.lock() {
        change(&mut s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> FleetEntry {
        FleetEntry {
            jail: "sshd".into(),
            target: "203.0.113.66/32".parse().unwrap(),
            since: Timestamp::from_secs(1_700_000_000),
            until: Some(Timestamp::from_secs(1_700_000_600)),
            offence: 1,
            failures: 5,
            reason: Origin::Logs,
        }
    }

    fn wire(entry: &FleetEntry) -> Vec<(String, Vec<u8>)> {
        entry
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_bytes()))
            .collect()
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let e = entry();
        assert_eq!(FleetEntry::decode(&wire(&e)), Ok(e.clone()));
        let forever = FleetEntry { until: None, ..e };
        assert_eq!(FleetEntry::decode(&wire(&forever)), Ok(forever));
    }

    #[test]
    fn malformed_entries_are_refused_by_field() {
        let good = wire(&entry());
        let with = |field: &str, value: &[u8]| -> Vec<(String, Vec<u8>)> {
            good.iter()
                .map(|(k, v)| {
                    let v = if k == field {
                        value.to_vec()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect()
        };
        for (field, value) in [
            ("target", &b"not-an-address"[..]),
            ("target", b"203.0.113.66/33"),
            ("since_us", b"yesterday"),
            ("until_us", b"1e99"),
            ("offence", b"-1"),
            ("reason", b"because"),
            ("jail", b"ssh d\nBanned 1.2.3.4"),
            ("jail", b"\xff\xfe"),
        ] {
            let err = FleetEntry::decode(&with(field, value)).unwrap_err();
            assert!(
                matches!(&err, EntryError::Invalid { field: f, .. } if *f == field),
                "{field}={value:?}: {err}"
            );
        }
        let missing: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "target")
            .cloned()
            .collect();
        assert_eq!(
            FleetEntry::decode(&missing),
            Err(EntryError::Missing("target"))
        );
        let backwards = with("until_us", b"1");
        assert_eq!(
            FleetEntry::decode(&backwards),
            Err(EntryError::EndsBeforeStart)
        );
        let huge = vec![b'x'; 1 << 20];
        match FleetEntry::decode(&with("target", &huge)).unwrap_err() {
            EntryError::Invalid { value, .. } => assert_eq!(value.len(), SHOWN_VALUE),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn stream_keys_name_their_host() {
        assert_eq!(stream_key("web-1"), "banhound:bans:web-1");
        assert_eq!(stream_host("banhound:bans:web-1"), Some("web-1"));
        assert_eq!(stream_host("banhound:bans:*"), None);
        assert_eq!(stream_host("other:key"), None);
        assert_eq!(entry_id(1_700_000_000_000, 42), "1700000000000-42");
    }
}
