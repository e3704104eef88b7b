//! The subscriber: reads the other hosts' streams and hands their entries to the daemon.
//!
//! One task with its own connection, beside the owner task. It finds the fleet's streams
//! (`SCAN MATCH banhound:bans:*`, this host's own left out, plus the configured `peers`,
//! whose streams need not exist yet) and waits on all of them in one blocking
//! `XREAD … BLOCK`, from the positions the daemon stored. The wait ends after [`BLOCK`]
//! without entries, and the streams are looked up again then, so a host that joins and is
//! not among the `peers` is followed within that time. Each stream's entries go to the daemon as
//! one [`RemoteBatch`] with the id of its last entry; the daemon applies them and commits
//! that id as the stream's position with the bans it led to, in one transaction
//! (`source_positions`, key `fleet:<host>`), so a restart neither misses nor repeats one.
//!
//! A stream trimmed beyond the stored position (Redis 7's `max-deleted-entry-id` is past
//! it: entries were dropped unread, after a long stop) is read from its oldest entry
//! left, which is the snapshot of the origin's latest bans; expired ones are skipped by the
//! daemon. This is said in the log, naming the origin.

use super::publisher::connect;
use super::{stream_host, stream_key, update, EntryError, FleetEntry};
use crate::config::fleet::FleetSettings;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How long one `XREAD` blocks before the streams are looked up again.
pub const BLOCK: Duration = Duration::from_secs(5);
/// At most this many entries per stream per read.
const COUNT: usize = 1000;
/// How many batches may wait for the daemon; a slower daemon holds the reads back.
const QUEUE: usize = 16;
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Entries of one remote stream, in order, with the id of the last one.
#[derive(Debug)]
pub struct RemoteBatch {
    /// The origin host: the stream's key, which only that host may write (ACL).
    pub origin: String,
    pub position: String,
    pub entries: Vec<(String, Result<FleetEntry, EntryError>)>,
}

/// What the subscriber reports (read by `banhound status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeStatus {
    pub connected: bool,
    /// The other hosts whose streams were found.
    pub hosts: BTreeSet<String>,
    pub error: Option<String>,
}

/// The daemon's handle on the subscriber task.
pub struct Subscriber {
    batches: mpsc::Receiver<RemoteBatch>,
    status: Arc<Mutex<SubscribeStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    /// Starts reading after `positions` (host → last entry id applied); streams without
    /// one are read from their start.
    pub fn start(settings: FleetSettings, positions: BTreeMap<String, String>) -> Subscriber {
        let (sender, batches) = mpsc::channel(QUEUE);
        let status = Arc::new(Mutex::new(SubscribeStatus::default()));
        let task = tokio::spawn(run(settings, positions, sender, status.clone()));
        Subscriber {
            batches,
            status,
            task,
        }
    }

    /// The next batch; pending forever once the task is gone.
    pub async fn next(&mut self) -> RemoteBatch {
        match self.batches.recv().await {
            Some(batch) => batch,
            None => std::future::pending().await,
        }
    }

    pub fn status(&self) -> SubscribeStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    settings: FleetSettings,
    mut positions: BTreeMap<String, String>,
    sender: mpsc::Sender<RemoteBatch>,
    status: Arc<Mutex<SubscribeStatus>>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let error = match connect(&settings).await {
            Ok(mut conn) => {
                update(&status, |s| {
                    s.connected = true;
                    s.error = None;
                });
                backoff = Duration::from_millis(250);
                match follow(&mut conn, &settings, &mut positions, &sender, &status).await {
                    Some(e) => e,
                    // The daemon is gone.
                    None => return,
                }
            }
            Err(e) => e,
        };
        update(&status, |s| {
            s.connected = false;
            s.error = Some(error.clone());
        });
        tracing::warn!(
            "fleet: cannot read the other hosts' bans ({error}); retrying in {}ms",
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads until the connection fails (`Some(why)`) or the daemon is gone (`None`).
async fn follow(
    conn: &mut MultiplexedConnection,
    settings: &FleetSettings,
    positions: &mut BTreeMap<String, String>,
    sender: &mpsc::Sender<RemoteBatch>,
    status: &Mutex<SubscribeStatus>,
) -> Option<String> {
    let own_key = stream_key(&settings.host);
    let mut checked = BTreeSet::new();
    loop {
        let mut hosts = match discover(conn, &own_key).await {
            Ok(hosts) => hosts,
            Err(e) => return Some(e),
        };
        for peer in &settings.peers {
            if *peer != settings.host && !hosts.contains(peer) {
                hosts.push(peer.clone());
            }
        }
        for host in &hosts {
            if checked.insert(host.clone()) {
                if let Some(position) = positions.get(host) {
                    warn_if_trimmed(conn, host, position).await;
                }
            }
        }
        update(status, |s| s.hosts = hosts.iter().cloned().collect());
        if hosts.is_empty() {
            tokio::time::sleep(BLOCK).await;
            continue;
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS");
        for host in &hosts {
            cmd.arg(stream_key(host));
        }
        for host in &hosts {
            cmd.arg(positions.get(host).map_or("0", String::as_str));
        }
        let reply: Value = match cmd.query_async(conn).await {
            Ok(reply) => reply,
            Err(e) => return Some(e.to_string()),
        };
        for batch in read_reply(reply) {
            positions.insert(batch.origin.clone(), batch.position.clone());
            if sender.send(batch).await.is_err() {
                return None;
            }
        }
    }
}

/// The other hosts with a stream.
async fn discover(conn: &mut MultiplexedConnection, own_key: &str) -> Result<Vec<String>, String> {
    let mut hosts = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", super::STREAM_PREFIX))
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query_async(conn)
            .await
            .map_err(|e| e.to_string())?;
        for key in keys {
            if key == own_key {
                continue;
            }
            if let Some(host) = stream_host(&key) {
                hosts.insert(host.to_string());
            }
        }
        if next == 0 {
            return Ok(hosts.into_iter().collect());
        }
        cursor = next;
    }
}

/// A stream entry id as (milliseconds, sequence).
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Says so when entries after `position` were trimmed from `host`'s stream unread.
async fn warn_if_trimmed(conn: &mut MultiplexedConnection, host: &str, position: &str) {
    let info: Result<Value, _> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream_key(host))
        .query_async(conn)
        .await;
    // RESP2 gives a flat array of names and values; a map is the same pairs.
    let fields = match info {
        Ok(Value::Array(fields)) => fields,
        Ok(Value::Map(pairs)) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return,
    };
    let deleted = fields
        .chunks(2)
        .find(|pair| text(&pair[0]).as_deref() == Some("max-deleted-entry-id"))
        .and_then(|pair| pair.get(1).and_then(text));
    if let (Some(deleted), Some(stored)) =
        (deleted.as_deref().and_then(parse_id), parse_id(position))
    {
        if deleted > stored {
            tracing::warn!(
                ORIGIN = %host,
                "fleet: the stream of {host} was trimmed past the stored position {position}: \
                 entries were dropped unread; rebuilding from the oldest entries it still holds \
                 (its latest bans; expired ones are skipped)"
            );
        }
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The batches of an `XREAD` reply (RESP2: `[[key, [[id, [field, value, …]], …]], …]`);
/// anything else in it is skipped (the server is trusted to speak RESP, not to be sane).
fn read_reply(reply: Value) -> Vec<RemoteBatch> {
    let Value::Array(streams) = reply else {
        // Nil: the wait ended without entries.
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in streams {
        let Value::Array(parts) = stream else {
            continue;
        };
        let mut parts = parts.into_iter();
        let (Some(key), Some(Value::Array(items))) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(origin) = text(&key).and_then(|k| stream_host(&k).map(str::to_string)) else {
            continue;
        };
        let mut entries = Vec::new();
        for item in items {
            let Value::Array(item) = item else { continue };
            let mut item = item.into_iter();
            let (Some(id), Some(Value::Array(flat))) = (item.next(), item.next()) else {
                continue;
            };
            let Some(id) = text(&id) else { continue };
            let mut fields = Vec::with_capacity(flat.len() / 2);
            let mut flat = flat.into_iter();
            while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                if let (Some(k), Value::BulkString(v)) = (text(&k), v) {
                    fields.push((k, v));
                }
            }
            entries.push((id, FleetEntry::decode(&fields)));
        }
        if let Some((last, _)) = entries.last() {
            out.push(RemoteBatch {
                origin,
                position: last.clone(),
                entries,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_read_reply_becomes_batches_per_origin() {
        let entry = |id: &str, target: &str| {
            Value::Array(vec![
                bulk(id),
                Value::Array(
                    [
                        ("jail", "sshd"),
                        ("target", target),
                        ("since_us", "1000"),
                        ("until_us", "2000"),
                        ("offence", "1"),
                        ("failures", "5"),
                        ("reason", "logs"),
                    ]
                    .iter()
                    .flat_map(|(k, v)| [bulk(k), bulk(v)])
                    .collect(),
                ),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("banhound:bans:a"),
                Value::Array(vec![
                    entry("5-1", "203.0.113.66/32"),
                    entry("5-2", "nonsense"),
                    Value::Nil,
                ]),
            ]),
            // Not a fleet key: skipped.
            Value::Array(vec![bulk("other"), Value::Array(vec![entry("1-1", "x")])]),
            Value::Nil,
        ]);
        let batches = read_reply(reply);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].origin, "a");
        assert_eq!(batches[0].position, "5-2");
        assert!(batches[0].entries[0].1.is_ok());
        assert!(batches[0].entries[1].1.is_err());
        assert!(read_reply(Value::Nil).is_empty());
    }

    #[test]
    fn ids_compare_as_numbers() {
        assert!(parse_id("10-0") > parse_id("9-99"));
        assert_eq!(parse_id("7"), Some((7, 0)));
        assert_eq!(parse_id("x-1"), None);
    }
}
