//! Durable state: current bans, ban history and source positions in one SQLite database.
//!
//! Why SQLite in WAL mode: a journal batch's bans and the cursor up to which they were derived
//! must become durable together, in ONE transaction. Written separately, a crash between the
//! two would either lose bans (cursor saved first: the entries are never read again) or count
//! failures twice (bans saved first: the entries come back as new). With both in one commit,
//! a restart replays entries up to the cursor count-only and treats the rest as new.
//! `synchronous=FULL` makes each commit survive power loss, not only a crash of the process;
//! a commit is one WAL append plus fsync per write (one or more batches), not per entry. The
//! writes run on their own thread ([`super::state_writer`]) so the owner task never waits for
//! the disk.
//!
//! When a write fails (disk full, a read-only or failing state directory), blocking matters
//! more than remembering: the daemon keeps banning from memory, and every change (ban starts
//! and ends, source positions, the history purge) waits in an in-memory backlog. Later
//! changes join it without touching the disk; the daemon retries on a timer with backoff, and
//! the first write that succeeds writes the whole backlog in ONE transaction, so the database
//! goes from one consistent state to the next and never holds half an episode. A failed
//! transaction is rolled back and the connection stays usable: SQLite never sees a partial
//! write as committed, so the database is not corrupted by running out of space.
//!
//! Times are microseconds since the Unix epoch, as in the engine.

use crate::bus::Lifted;
use crate::engine::time::Timestamp;
use crate::engine::tracker::ActiveBan;
use crate::fleet::FleetEntry;
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema, applied idempotently at every start.
const SCHEMA: &str = "
-- Bans in force. One row per (jail, target); removed when the ban ends.
CREATE TABLE IF NOT EXISTS bans (
    jail        TEXT    NOT NULL,  -- jail name, as in the configuration
    target      TEXT    NOT NULL,  -- address or network in CIDR form: 198.51.100.4/32, 2001:db8:1:2::/64
    started_us  INTEGER NOT NULL,  -- when the ban started (the failure that triggered it)
    expires_us  INTEGER,           -- when it ends; NULL = permanent
    offence     INTEGER NOT NULL,  -- 1 = first ban, 2 = second within escalation.forget_after, ...
    failures    INTEGER NOT NULL,  -- failures in the window that triggered it (0 = manual)
    PRIMARY KEY (jail, target)
) WITHOUT ROWID;

-- Every ban ever made, bounded: rows older than the history horizon and rows beyond the
-- newest HISTORY_ROWS are purged.
CREATE TABLE IF NOT EXISTS ban_history (
    id          INTEGER PRIMARY KEY,
    jail        TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    started_us  INTEGER NOT NULL,
    expires_us  INTEGER,           -- NULL = permanent
    offence     INTEGER NOT NULL,
    failures    INTEGER NOT NULL,
    ended_us    INTEGER,           -- NULL while the ban is in force
    end_reason  TEXT               -- 'expired', 'expired while stopped', 'jail removed', ...
);
CREATE INDEX IF NOT EXISTS ban_history_target ON ban_history (jail, target, ended_us);
CREATE INDEX IF NOT EXISTS ban_history_started ON ban_history (started_us);

-- The position of each log source: the journal cursor of the last entry whose effects
-- (bans) are committed. Written in the same transaction as those bans.
CREATE TABLE IF NOT EXISTS source_positions (
    source      TEXT    PRIMARY KEY,  -- e.g. 'journal:system', 'journal:namespace:NAME'
    cursor      TEXT    NOT NULL,
    updated_us  INTEGER NOT NULL
) WITHOUT ROWID;

-- Bans to publish to the fleet (src/fleet), written in the same transaction as the ban and
-- removed once Redis has them. Row ids never repeat (AUTOINCREMENT): they make the entries'
-- stream ids, so a resend is recognised.
CREATE TABLE IF NOT EXISTS fleet_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    jail        TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    started_us  INTEGER NOT NULL,
    expires_us  INTEGER,           -- NULL = permanent
    offence     INTEGER NOT NULL,
    failures    INTEGER NOT NULL,
    reason      TEXT    NOT NULL   -- 'logs' or 'manual'
);

-- When this database's outbox started, in milliseconds since the epoch: the first half of
-- its entries' stream ids (see src/fleet/mod.rs, entry_id).
CREATE TABLE IF NOT EXISTS fleet_meta (
    key         TEXT    PRIMARY KEY,
    value       INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO fleet_meta (key, value)
    VALUES ('outbox_epoch_ms', CAST(unixepoch('subsec') * 1000 AS INTEGER));
";

/// The database's wording of why a ban ended (`end_reason`). These strings are stored and
/// queried (the catch-up of expired bans looks for the two "expired" ones), so they never
/// change; the README lists them.
impl Lifted {
    pub(super) fn stored_reason(self) -> &'static str {
        match self {
            Lifted::Expired => "expired",
            Lifted::ExpiredWhileStopped => "expired while stopped",
            Lifted::JailRemoved => "jail removed",
            Lifted::Manual { .. } => "manual",
            Lifted::OwnAddress => "own address",
        }
    }
}

/// History older than this is purged.
const HISTORY_HORIZON: Duration = Duration::from_secs(90 * 86_400);
/// At most this many history rows are kept.
const HISTORY_ROWS: i64 = 100_000;
/// At most this many ban starts and ends wait in memory while the database cannot be
/// written (80 bytes each plus the jail name). Beyond, the oldest are dropped: the newest HISTORY_ROWS
/// history rows are all the database would keep anyway, and the `bans` table is then
/// rewritten from the bans in force when writing works again.
const MAX_BACKLOG: usize = HISTORY_ROWS as usize;

/// The database file in the state directory.
pub const DATABASE_FILE: &str = "state.sqlite";

/// Why the state database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("state database {path}: cannot start its writer thread: {source}")]
    Thread {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state database's writer thread stopped (a bug): changes are no longer saved")]
    WriterStopped,
}

/// A ban as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBan {
    pub jail: String,
    pub target: IpNet,
    pub since: Timestamp,
    pub until: Option<Timestamp>,
    pub offence: u32,
    pub failures: u32,
}

impl StoredBan {
    pub fn active(&self) -> ActiveBan {
        ActiveBan {
            since: self.since,
            until: self.until,
            offence: self.offence,
        }
    }
}

/// The open state database.
pub struct StateDb {
    conn: Connection,
    path: PathBuf,
    /// Changes not written yet: the one being committed, or everything since a failed write.
    backlog: Backlog,
    /// The last write failed: changes wait in `backlog` until [`StateDb::write_backlog`].
    behind: bool,
    /// [`MAX_BACKLOG`], smaller in tests.
    backlog_limit: usize,
}

impl StateDb {
    /// Opens (creating if needed) `DIR/state.sqlite` in WAL mode and applies the schema.
    pub fn open(dir: &Path) -> Result<StateDb, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|source| StateError::Sqlite {
            path: path.clone(),
            source,
        })?;
        let db = StateDb {
            conn,
            path,
            backlog: Backlog::default(),
            behind: false,
            backlog_limit: MAX_BACKLOG,
        };
        db.wrap(db.conn.pragma_update(None, "journal_mode", "WAL"))?;
        db.wrap(db.conn.pragma_update(None, "synchronous", "FULL"))?;
        // Another banhound (or sqlite3 reading it) may hold the lock briefly.
        db.wrap(db.conn.busy_timeout(Duration::from_secs(5)))?;
        db.wrap(db.conn.execute_batch(SCHEMA))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn wrap<T>(&self, r: rusqlite::Result<T>) -> Result<T, StateError> {
        r.map_err(|source| StateError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// The position of `source`: the newest one waiting to be written, else the stored one.
    pub fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
        if let Some((cursor, _)) = self.backlog.positions.get(source) {
            return Ok(Some(cursor.clone()));
        }
        self.wrap(
            self.conn
                .query_row(
                    "SELECT cursor FROM source_positions WHERE source = ?1",
                    [source],
                    |row| row.get(0),
                )
                .optional(),
        )
    }

    /// The positions of the sources whose key starts with `prefix` (the fleet's streams:
    /// `fleet:`), the newest ones waiting to be written included.
    pub fn cursors_with_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StateError> {
        let mut stmt = self.wrap(self.conn.prepare(
            "SELECT source, cursor FROM source_positions WHERE substr(source, 1, length(?1)) = ?1",
        ))?;
        let rows = self.wrap(stmt.query_map([prefix], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        }))?;
        let mut found = BTreeMap::new();
        for row in rows {
            let (source, cursor) = self.wrap(row)?;
            found.insert(source, cursor);
        }
        for (source, (cursor, _)) in &self.backlog.positions {
            if source.starts_with(prefix) {
                found.insert(source.clone(), cursor.clone());
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Every stored ban (expired ones included: the caller decides).
    pub fn bans(&self) -> Result<Vec<StoredBan>, StateError> {
        let mut stmt = self.wrap(self.conn.prepare(
            "SELECT jail, target, started_us, expires_us, offence, failures FROM bans ORDER BY jail, target",
        ))?;
        let rows = self.wrap(stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, u32>(4)?,
                row.get::<_, u32>(5)?,
            ))
        }))?;
        let mut bans = Vec::new();
        for row in rows {
            let (jail, target, since, until, offence, failures) = self.wrap(row)?;
            // A row that does not parse cannot have been written by us; skipping it beats
            // refusing to start the firewall over it.
            let Ok(target) = target.parse::<IpNet>() else {
                tracing::warn!(JAIL = %jail, "ignoring stored ban with unparsable target {target:?}");
                continue;
            };
            bans.push(StoredBan {
                jail,
                target,
                since: Timestamp::from_micros(since),
                until: until.map(Timestamp::from_micros),
                offence,
                failures,
            });
        }
        Ok(bans)
    }

    /// Per (jail, target): the latest end of a ban that expired (its `expires_us`, in log
    /// time: the wall clock may have lifted it later), among those ending after `after`. A
    /// ban lifted by hand or with its jail is not listed: from then on failures count again.
    pub fn expired_after(
        &self,
        after: Timestamp,
    ) -> Result<Vec<(String, IpNet, Timestamp)>, StateError> {
        let mut stmt = self.wrap(self.conn.prepare(
            "SELECT jail, target, MAX(expires_us) FROM ban_history
             WHERE end_reason IN ('expired', 'expired while stopped') AND expires_us > ?1
             GROUP BY jail, target ORDER BY jail, target",
        ))?;
        let rows = self.wrap(stmt.query_map([after.as_micros()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
            ))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (jail, target, until) = self.wrap(row)?;
            if let Ok(target) = target.parse::<IpNet>() {
                out.push((jail, target, Timestamp::from_micros(until)));
            }
        }
        Ok(out)
    }

    /// Per (jail, target): the highest offence number and the start of the latest ban, from
    /// the history (ended bans included), for escalation across restarts.
    pub fn offences(&self) -> Result<Vec<(String, IpNet, u32, Timestamp)>, StateError> {
        let mut stmt = self.wrap(self.conn.prepare(
            "SELECT jail, target, MAX(offence), MAX(started_us) FROM ban_history GROUP BY jail, target ORDER BY jail, target",
        ))?;
        let rows = self.wrap(stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, u32>(2)?,
                row.get::<_, i64>(3)?,
            ))
        }))?;
        let mut out = Vec::new();
        for row in rows {
            let (jail, target, offence, last) = self.wrap(row)?;
            if let Ok(target) = target.parse::<IpNet>() {
                out.push((jail, target, offence, Timestamp::from_micros(last)));
            }
        }
        Ok(out)
    }

    /// Queues new bans and the source position they were derived up to: the next write
    /// commits them together.
    pub fn queue_batch(
        &mut self,
        bans: &[StoredBan],
        position: Option<(&str, &str)>,
        now: Timestamp,
    ) {
        for ban in bans {
            self.backlog.push(Change::Ban(ban.clone()), self.limit());
        }
        if let Some((source, cursor)) = position {
            self.backlog
                .positions
                .insert(source.to_string(), (cursor.to_string(), now));
        }
    }

    /// Queues bans to publish to the fleet: the next write puts them in the outbox, in the
    /// same transaction as the bans queued with them.
    pub fn queue_publish(&mut self, entries: &[FleetEntry]) {
        for entry in entries {
            self.backlog
                .push(Change::Publish(entry.clone()), self.limit());
        }
    }

    /// Queues the end of bans: removed from `bans`, their history rows closed with `reason`.
    pub fn queue_end(&mut self, jail: &str, targets: &[IpNet], reason: Lifted, now: Timestamp) {
        for target in targets {
            let change = Change::End {
                jail: jail.to_string(),
                target: *target,
                reason,
                at: now,
            };
            self.backlog.push(change, self.limit());
        }
    }

    /// Queues a purge of the history: rows older than the horizon and beyond the newest
    /// rows kept.
    pub fn queue_purge(&mut self, now: Timestamp) {
        self.backlog.purge = Some(now);
    }

    /// Writes what is queued, in one transaction.
    ///
    /// When it cannot be written (disk full, read-only or failing state directory), it is
    /// kept in memory with every change still waiting, the error is returned, and later
    /// changes join the wait without touching the disk (this returns `Ok` for them) until
    /// [`StateDb::write_backlog`] succeeds. Nothing is lost while the process runs.
    pub fn write_pending(&mut self) -> Result<(), StateError> {
        if self.behind {
            return Ok(());
        }
        self.write(None)
    }

    /// Whether changes wait in memory because the database could not be written.
    pub fn is_behind(&self) -> bool {
        self.behind
    }

    /// How many changes wait in memory: ban starts and ends, and source positions.
    pub fn unsaved_changes(&self) -> usize {
        self.backlog.changes.len() + self.backlog.positions.len()
    }

    /// Writes every change waiting in memory in one transaction. `active_bans` is asked for
    /// the bans in force only if the backlog overflowed (its oldest changes were dropped):
    /// the `bans` table is then rewritten from it, so it is right again whatever was lost.
    pub fn write_backlog(
        &mut self,
        active_bans: impl FnOnce() -> Vec<StoredBan>,
    ) -> Result<CaughtUp, StateError> {
        let resync = (self.backlog.dropped > 0).then(active_bans);
        let caught_up = CaughtUp {
            changes: self.unsaved_changes(),
            dropped: self.backlog.dropped,
        };
        self.write(resync.as_deref())?;
        Ok(caught_up)
    }

    /// The backlog bound in force: none while healthy.
    fn limit(&self) -> Option<usize> {
        self.behind.then_some(self.backlog_limit)
    }

    /// One transaction with everything waiting; on failure it is rolled back, the changes
    /// stay waiting and the database is marked behind.
    fn write(&mut self, resync: Option<&[StoredBan]>) -> Result<(), StateError> {
        let result = write_changes(&mut self.conn, &self.backlog, resync);
        // A failed COMMIT may leave the transaction open (SQLite keeps it after some errors);
        // the connection must be back in autocommit mode before anything else runs on it.
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        match result {
            Ok(()) => {
                self.backlog = Backlog::default();
                self.behind = false;
                Ok(())
            }
            Err(source) => {
                self.behind = true;
                self.backlog.trim(self.backlog_limit);
                Err(StateError::Sqlite {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }

    /// How many history rows there are (for tests and status).
    pub fn history_len(&self) -> Result<i64, StateError> {
        self.wrap(
            self.conn
                .query_row("SELECT COUNT(*) FROM ban_history", [], |r| r.get(0)),
        )
    }
}

/// What [`StateDb::write_backlog`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaughtUp {
    /// Changes written: ban starts and ends, and source positions.
    pub changes: usize,
    /// Changes that had been dropped because the backlog was full (their history rows are
    /// missing; the bans in force were rewritten in full instead).
    pub dropped: u64,
}

/// A change to the bans, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Change {
    Ban(StoredBan),
    End {
        jail: String,
        target: IpNet,
        reason: Lifted,
        at: Timestamp,
    },
    /// A ban for the fleet's outbox.
    Publish(FleetEntry),
}

/// What is waiting to be written. Healthy, it holds the change being committed; after a
/// failed write, everything since.
#[derive(Debug, Default)]
struct Backlog {
    changes: VecDeque<Change>,
    /// The newest position of each source: older ones need not be written at all.
    positions: BTreeMap<String, (String, Timestamp)>,
    /// A history purge was due at this time.
    purge: Option<Timestamp>,
    /// Changes dropped from the front because the backlog was full.
    dropped: u64,
}

impl Backlog {
    /// Queues a change; with a `limit` (while the database is behind) the oldest are
    /// dropped beyond it. A healthy write is never cut short, however many changes it holds.
    fn push(&mut self, change: Change, limit: Option<usize>) {
        self.changes.push_back(change);
        if let Some(limit) = limit {
            self.trim(limit);
        }
    }

    /// Drops the oldest changes beyond `limit`.
    fn trim(&mut self, limit: usize) {
        while self.changes.len() > limit {
            self.changes.pop_front();
            self.dropped += 1;
        }
    }
}

/// Writes `backlog` in one transaction: changes in order, then the bans in force from
/// `resync` (if given), then positions, then the purge. Rolled back on any error (dropping
/// the transaction rolls it back).
fn write_changes(
    conn: &mut Connection,
    backlog: &Backlog,
    resync: Option<&[StoredBan]>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR REPLACE INTO bans (jail, target, started_us, expires_us, offence, failures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        // A new ban of a target still banned (a replayed history, an admin's ban) replaces
        // the old one: its history row ends where the new one starts.
        let mut replaced = tx.prepare_cached(
            "UPDATE ban_history SET ended_us = ?3, end_reason = 'replaced by a new ban'
             WHERE jail = ?1 AND target = ?2 AND ended_us IS NULL",
        )?;
        let mut history = tx.prepare_cached(
            "INSERT INTO ban_history (jail, target, started_us, expires_us, offence, failures)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM bans WHERE jail = ?1 AND target = ?2")?;
        let mut close = tx.prepare_cached(
            "UPDATE ban_history SET ended_us = ?3, end_reason = ?4
             WHERE jail = ?1 AND target = ?2 AND ended_us IS NULL",
        )?;
        let mut publish = tx.prepare_cached(crate::fleet::outbox::INSERT)?;
        for change in &backlog.changes {
            match change {
                Change::Ban(ban) => {
                    let target = ban.target.to_string();
                    let values = params![
                        ban.jail,
                        target,
                        ban.since.as_micros(),
                        ban.until.map(Timestamp::as_micros),
                        ban.offence,
                        ban.failures
                    ];
                    replaced.execute(params![ban.jail, target, ban.since.as_micros()])?;
                    insert.execute(values)?;
                    history.execute(values)?;
                }
                Change::End {
                    jail,
                    target,
                    reason,
                    at,
                } => {
                    let target = target.to_string();
                    delete.execute(params![jail, target])?;
                    close.execute(params![
                        jail,
                        target,
                        at.as_micros(),
                        reason.stored_reason()
                    ])?;
                }
                Change::Publish(entry) => {
                    crate::fleet::outbox::insert(&mut publish, entry)?;
                }
            }
        }
    }
    if let Some(active) = resync {
        rewrite_bans(&tx, active)?;
    }
    for (source, (cursor, at)) in &backlog.positions {
        tx.execute(
            "INSERT INTO source_positions (source, cursor, updated_us) VALUES (?1, ?2, ?3)
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_us = excluded.updated_us",
            params![source, cursor, at.as_micros()],
        )?;
    }
    if let Some(now) = backlog.purge {
        let horizon = (now - HISTORY_HORIZON).as_micros();
        tx.execute(
            "DELETE FROM ban_history WHERE started_us < ?1 AND ended_us IS NOT NULL",
            [horizon],
        )?;
        tx.execute(
            "DELETE FROM ban_history WHERE id <= (SELECT MAX(id) FROM ban_history) - ?1",
            [HISTORY_ROWS],
        )?;
    }
    tx.commit()
}

/// Makes the `bans` table hold exactly `active`, keeping the failure count of rows that
/// stay (a resynchronised ban whose start was dropped from the backlog has 0).
fn rewrite_bans(tx: &rusqlite::Transaction<'_>, active: &[StoredBan]) -> rusqlite::Result<()> {
    let wanted: BTreeSet<(&str, String)> = active
        .iter()
        .map(|b| (b.jail.as_str(), b.target.to_string()))
        .collect();
    let stored: Vec<(String, String)> = {
        let mut stmt = tx.prepare("SELECT jail, target FROM bans")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (jail, target) in &stored {
        if !wanted.contains(&(jail.as_str(), target.clone())) {
            tx.execute(
                "DELETE FROM bans WHERE jail = ?1 AND target = ?2",
                params![jail, target],
            )?;
        }
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO bans (jail, target, started_us, expires_us, offence, failures)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (jail, target) DO UPDATE SET started_us = excluded.started_us,
             expires_us = excluded.expires_us, offence = excluded.offence",
    )?;
    for ban in active {
        upsert.execute(params![
            ban.jail,
            ban.target.to_string(),
            ban.since.as_micros(),
            ban.until.map(Timestamp::as_micros),
            ban.offence,
            ban.failures
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::private_tmpfs::SmallTmpfs;

    #[test]
    fn end_reasons_are_stored_in_the_words_the_readme_lists() {
        // Rows written by earlier versions are read with these strings: they must not change.
        let stored: Vec<&str> = [
            Lifted::Expired,
            Lifted::ExpiredWhileStopped,
            Lifted::JailRemoved,
            Lifted::Manual { caller_uid: 0 },
            Lifted::OwnAddress,
        ]
        .map(Lifted::stored_reason)
        .to_vec();
        assert_eq!(
            stored,
            [
                "expired",
                "expired while stopped",
                "jail removed",
                "manual",
                "own address"
            ]
        );
    }

    // Queue and write at once, as the writer thread does for a change sent alone.

    fn commit_batch(
        db: &mut StateDb,
        bans: &[StoredBan],
        position: Option<(&str, &str)>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        db.queue_batch(bans, position, now);
        db.write_pending()
    }

    fn end_bans(
        db: &mut StateDb,
        jail: &str,
        targets: &[IpNet],
        reason: Lifted,
        now: Timestamp,
    ) -> Result<(), StateError> {
        db.queue_end(jail, targets, reason, now);
        db.write_pending()
    }

    fn purge_history(db: &mut StateDb, now: Timestamp) -> Result<(), StateError> {
        db.queue_purge(now);
        db.write_pending()
    }

    fn ban(target: &str, until: Option<i64>) -> StoredBan {
        StoredBan {
            jail: "sshd".into(),
            target: target.parse().unwrap(),
            since: Timestamp::from_secs(100),
            until: until.map(Timestamp::from_secs),
            offence: 1,
            failures: 5,
        }
    }

    #[test]
    fn bans_and_cursor_commit_together_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.cursor("journal:system").unwrap(), None);
        let bans = [
            ban("198.51.100.4/32", Some(700)),
            ban("2001:db8:1:2::/64", None),
        ];
        commit_batch(
            &mut db,
            &bans,
            Some(("journal:system", "s=1;t=5")),
            Timestamp::from_secs(100),
        )
        .unwrap();
        drop(db);
        let mut db = StateDb::open(dir.path()).unwrap();
        assert_eq!(
            db.cursor("journal:system").unwrap().as_deref(),
            Some("s=1;t=5")
        );
        assert_eq!(db.bans().unwrap(), bans);
        let mode: String = db
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        end_bans(
            &mut db,
            "sshd",
            &[bans[0].target],
            Lifted::Expired,
            Timestamp::from_secs(700),
        )
        .unwrap();
        assert_eq!(db.bans().unwrap(), [bans[1].clone()]);
        // Ended by expiry, it still covers the log times before its end.
        assert_eq!(
            db.expired_after(Timestamp::from_secs(600)).unwrap(),
            [(
                "sshd".to_string(),
                bans[0].target,
                Timestamp::from_secs(700)
            )]
        );
        assert_eq!(db.expired_after(Timestamp::from_secs(700)).unwrap(), []);
        let offences = db.offences().unwrap();
        assert_eq!(offences.len(), 2);
        assert_eq!(offences[0].2, 1);
        assert_eq!(offences[0].3, Timestamp::from_secs(100));
        let ended: (i64, String) = db
            .conn
            .query_row(
                "SELECT ended_us, end_reason FROM ban_history WHERE target = '198.51.100.4/32'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(ended, (700_000_000, "expired".to_string()));
    }

    #[test]
    fn a_replacing_ban_closes_the_history_of_the_one_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        let first = ban("198.51.100.4/32", Some(700));
        let mut second = first.clone();
        second.since = Timestamp::from_secs(800);
        second.until = Some(Timestamp::from_secs(1400));
        commit_batch(&mut db, &[first], None, Timestamp::from_secs(100)).unwrap();
        commit_batch(&mut db, &[second.clone()], None, Timestamp::from_secs(800)).unwrap();
        assert_eq!(db.bans().unwrap(), [second]);
        let open: i64 = db
            .conn
            .query_row(
                "SELECT COUNT(*) FROM ban_history WHERE ended_us IS NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((db.history_len().unwrap(), open), (2, 1));
    }

    #[test]
    fn history_is_bounded_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        commit_batch(
            &mut db,
            &[ban("198.51.100.4/32", Some(700))],
            None,
            Timestamp::from_secs(100),
        )
        .unwrap();
        end_bans(
            &mut db,
            "sshd",
            &["198.51.100.4/32".parse().unwrap()],
            Lifted::Expired,
            Timestamp::from_secs(700),
        )
        .unwrap();
        purge_history(&mut db, Timestamp::from_secs(1000)).unwrap();
        assert_eq!(db.history_len().unwrap(), 1);
        let later = Timestamp::from_secs(100) + HISTORY_HORIZON + Duration::from_secs(1);
        purge_history(&mut db, later).unwrap();
        assert_eq!(db.history_len().unwrap(), 0);
    }

    fn integrity(dir: &Path) -> String {
        let conn = Connection::open(dir.join(DATABASE_FILE)).unwrap();
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    fn many_bans(count: u32, since: i64) -> Vec<StoredBan> {
        (0..count)
            .map(|i| StoredBan {
                jail: "sshd".into(),
                target: IpNet::from(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                    0xc612_0000 + i,
                ))),
                since: Timestamp::from_secs(since),
                until: Some(Timestamp::from_secs(since + 600)),
                offence: 1,
                failures: 5,
            })
            .collect()
    }

    fn stored_targets(db: &StateDb) -> BTreeSet<IpNet> {
        db.bans().unwrap().into_iter().map(|b| b.target).collect()
    }

    #[test]
    fn a_full_disk_keeps_changes_in_memory_and_catches_up_in_one_transaction() {
        let fs = SmallTmpfs::mount("1m");
        let mut db = StateDb::open(fs.path()).unwrap();
        let before = many_bans(3, 100);
        commit_batch(
            &mut db,
            &before,
            Some(("journal:system", "c1")),
            Timestamp::from_secs(100),
        )
        .unwrap();
        assert!(!db.is_behind());

        let filler = fs.fill();
        // Big enough to need new pages in the WAL, which the full filesystem refuses.
        let during = many_bans(2000, 200);
        let error = commit_batch(
            &mut db,
            &during[3..],
            Some(("journal:system", "c2")),
            Timestamp::from_secs(200),
        )
        .expect_err("a commit on a full filesystem");
        let text = error.to_string();
        assert!(
            text.contains("full") && text.contains(DATABASE_FILE),
            "the error says what and where: {text}"
        );
        assert!(db.is_behind());
        // The failed transaction left nothing behind, and the connection still works.
        assert!(db.conn.is_autocommit());
        assert_eq!(
            stored_targets(&db),
            before.iter().map(|b| b.target).collect()
        );
        assert_eq!(db.history_len().unwrap(), 3);

        // Later changes wait without an attempt; reads see the newest position.
        end_bans(
            &mut db,
            "sshd",
            &[before[0].target],
            Lifted::Expired,
            Timestamp::from_secs(250),
        )
        .unwrap();
        commit_batch(
            &mut db,
            &[],
            Some(("journal:system", "c3")),
            Timestamp::from_secs(260),
        )
        .unwrap();
        purge_history(&mut db, Timestamp::from_secs(260)).unwrap();
        assert_eq!(db.cursor("journal:system").unwrap().as_deref(), Some("c3"));
        assert_eq!(db.unsaved_changes(), 1997 + 1 + 1);
        // Still full: the retry fails the same way and loses nothing.
        assert!(db.write_backlog(Vec::new).is_err());
        assert_eq!(db.unsaved_changes(), 1999);
        assert_eq!(integrity(fs.path()), "ok");

        std::fs::remove_file(filler).unwrap();
        let caught_up = db
            .write_backlog(|| panic!("no resync without an overflow"))
            .unwrap();
        assert_eq!(
            caught_up,
            CaughtUp {
                changes: 1999,
                dropped: 0
            }
        );
        assert!(!db.is_behind());
        assert_eq!(db.unsaved_changes(), 0);
        let mut expected: BTreeSet<IpNet> = during.iter().map(|b| b.target).collect();
        expected.remove(&before[0].target);
        assert_eq!(stored_targets(&db), expected);
        assert_eq!(db.history_len().unwrap(), 2000);
        drop(db);

        // What a restart finds: everything, and a sound file.
        assert_eq!(integrity(fs.path()), "ok");
        let mut db = StateDb::open(fs.path()).unwrap();
        assert_eq!(db.cursor("journal:system").unwrap().as_deref(), Some("c3"));
        assert_eq!(stored_targets(&db), expected);
        // And it writes as usual again.
        commit_batch(
            &mut db,
            &many_bans(1, 300)[..0],
            Some(("journal:system", "c4")),
            Timestamp::from_secs(300),
        )
        .unwrap();
        assert_eq!(db.cursor("journal:system").unwrap().as_deref(), Some("c4"));
    }

    #[test]
    fn an_overflowing_backlog_keeps_the_bans_in_force_right() {
        let fs = SmallTmpfs::mount("2m");
        let mut db = StateDb::open(fs.path()).unwrap();
        db.backlog_limit = 10;
        let old = many_bans(2, 100);
        commit_batch(&mut db, &old, None, Timestamp::from_secs(100)).unwrap();
        let filler = fs.fill();
        let new = many_bans(600, 200);
        assert!(commit_batch(&mut db, &new[2..], None, Timestamp::from_secs(200)).is_err());
        // One old ban ends while behind: its end is among the changes dropped.
        end_bans(
            &mut db,
            "sshd",
            &[old[1].target],
            Lifted::Manual { caller_uid: 0 },
            Timestamp::from_secs(210),
        )
        .unwrap();
        for ban in &new[2..20] {
            commit_batch(
                &mut db,
                std::slice::from_ref(ban),
                None,
                Timestamp::from_secs(220),
            )
            .unwrap();
        }
        assert_eq!(db.backlog.changes.len(), 10);
        std::fs::remove_file(filler).unwrap();
        // The bans in force as the daemon knows them: old[0] and new[2..].
        let active: Vec<StoredBan> = std::iter::once(old[0].clone())
            .chain(new[2..].iter().cloned())
            .collect();
        let caught_up = db.write_backlog(|| active.clone()).unwrap();
        assert!(caught_up.dropped > 0, "{caught_up:?}");
        assert_eq!(
            stored_targets(&db),
            active.iter().map(|b| b.target).collect()
        );
        drop(db);
        assert_eq!(integrity(fs.path()), "ok");
    }
}
