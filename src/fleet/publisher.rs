//! The publisher: drains the fleet outbox ([`super::outbox`]) into this host's stream.
//!
//! A task of its own beside the owner task: Redis being slow or away must never hold up
//! banning. It sends the outbox's oldest rows with `XADD <own stream> <epoch>-<row> …` in
//! one pipeline, and deletes the rows Redis acknowledged. Why that id: Redis accepts an
//! explicit id only above the stream's top one, and only this host writes its stream (ACL),
//! in row order. So when a crash came after Redis took an entry but before its row was
//! deleted, the resend is refused with "equal or smaller than the target stream top item":
//! that refusal means "already there", the row is deleted, and nothing is added twice.
//! With Redis away the rows wait; the task reconnects with backoff and drains them. It
//! sleeps on a [`Notify`] the daemon wakes once a commit with outbox rows is on disk, so
//! it never polls.

use super::outbox::Outbox;
use super::{connection_info, entry_id, stream_key, update};
use crate::config::fleet::FleetSettings;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How many rows one pipeline sends.
const BATCH: usize = 512;
/// Each stream keeps about this many entries (`MAXLEN ~`): far more than a subscriber
/// stopped for a day would need to catch up, bounded so Redis's memory is.
pub const STREAM_MAXLEN: u64 = 100_000;
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the publisher reports (read by `banhound status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishStatus {
    pub connected: bool,
    /// Rows in the outbox when it last looked.
    pub backlog: u64,
    /// Entries Redis took since the start.
    pub published: u64,
    /// The last error talking to Redis, while it lasts.
    pub error: Option<String>,
}

/// The daemon's handle on the publisher task.
pub struct Publisher {
    wake: Arc<Notify>,
    status: Arc<Mutex<PublishStatus>>,
    task: tokio::task::JoinHandle<()>,
}

impl Publisher {
    /// Starts the task on the current runtime.
    pub fn start(settings: FleetSettings, state_dir: PathBuf) -> Publisher {
        let wake = Arc::new(Notify::new());
        let status = Arc::new(Mutex::new(PublishStatus::default()));
        let task = tokio::spawn(run(settings, state_dir, wake.clone(), status.clone()));
        Publisher { wake, status, task }
    }

    /// Rows were committed to the outbox: send them.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The publisher's wake-up, for enforcement to signal once a commit with outbox rows is saved.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub fn status(&self) -> PublishStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Rows not sent stay in the outbox for the next start.
        self.task.abort();
    }
}

/// Runs `op` on the outbox off the runtime's thread (SQLite may wait for the writer's lock).
async fn with_outbox<T: Send + 'static>(
    outbox: &Arc<Mutex<Outbox>>,
    op: impl FnOnce(&Outbox) -> Result<T, super::outbox::OutboxError> + Send + 'static,
) -> Result<T, String> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || {
        let outbox = outbox
            .lock()
            .map_err(|_| "outbox lock poisoned".to_string())?;
        op(&outbox).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn run(
    settings: FleetSettings,
    state_dir: PathBuf,
    wake: Arc<Notify>,
    status: Arc<Mutex<PublishStatus>>,
) {
    let key = stream_key(&settings.host);
    let mut backoff = Duration::from_millis(250);
    let outbox = loop {
        match Outbox::open(&state_dir) {
            Ok(outbox) => break Arc::new(Mutex::new(outbox)),
            Err(e) => {
                tracing::error!("fleet: {e}; bans are not published until it opens");
                tokio::time::sleep(MAX_BACKOFF).await;
            }
        }
    };
    loop {
        let error = match connect(&settings).await {
            Ok(mut conn) => {
                update(&status, |s| {
                    s.connected = true;
                    s.error = None;
                });
                backoff = Duration::from_millis(250);
                drain(&mut conn, &key, &outbox, &wake, &status).await
            }
            Err(e) => e,
        };
        update(&status, |s| {
            s.connected = false;
            s.error = Some(error.clone());
        });
        tracing::warn!(
            "fleet: cannot publish to {key} ({error}); bans wait in the outbox, retrying in {}ms",
            backoff.as_millis()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

pub(super) async fn connect(settings: &FleetSettings) -> Result<MultiplexedConnection, String> {
    let info = connection_info(settings).map_err(|e| e.to_string())?;
    let client = Client::open(info).map_err(|e| e.to_string())?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| e.to_string())
}

/// Sends the outbox until the connection fails; returns why it failed.
async fn drain(
    conn: &mut MultiplexedConnection,
    key: &str,
    outbox: &Arc<Mutex<Outbox>>,
    wake: &Notify,
    status: &Mutex<PublishStatus>,
) -> String {
    let epoch = match with_outbox(outbox, Outbox::epoch_ms).await {
        Ok(epoch) => epoch,
        Err(e) => return e,
    };
    loop {
        let rows = match with_outbox(outbox, |o| o.oldest(BATCH)).await {
            Ok(rows) => rows,
            Err(e) => return e,
        };
        let Some(&(last, _)) = rows.last() else {
            update(status, |s| s.backlog = 0);
            // A permit stored by a wake during the send is taken at once.
            wake.notified().await;
            continue;
        };
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut sent = 0u64;
        for (row, entry) in &rows {
            let Some(entry) = entry else {
                tracing::warn!("fleet: outbox row {row} does not read back; dropped");
                continue;
            };
            let cmd = pipe
                .cmd("XADD")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(STREAM_MAXLEN)
                .arg(entry_id(epoch, *row));
            for (field, value) in entry.fields() {
                cmd.arg(field).arg(value);
            }
            sent += 1;
        }
        let results: Vec<redis::RedisResult<Value>> = if sent == 0 {
            Vec::new()
        } else {
            match pipe.query_async(conn).await {
                Ok(results) => results,
                Err(e) => return e.to_string(),
            }
        };
        let mut published = 0u64;
        let mut already = 0u64;
        for result in results {
            match result {
                Ok(_) => published += 1,
                Err(e) if e.to_string().contains("equal or smaller") => already += 1,
                // NOPERM (this user may not write this key), OOM...: the rows stay.
                Err(e) => return e.to_string(),
            }
        }
        if let Err(e) = with_outbox(outbox, move |o| o.remove_through(last)).await {
            return e;
        }
        let backlog = with_outbox(outbox, Outbox::backlog)
            .await
            .unwrap_or_default();
        update(status, |s| {
            s.published += published;
            s.backlog = backlog;
        });
        if already > 0 {
            tracing::info!(
                "fleet: {already} entr{} of the outbox were already in {key} (sent before a restart); not sent twice",
                if already == 1 { "y" } else { "ies" }
            );
        }
    }
}
