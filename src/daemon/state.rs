//! Durable state: current bans, ban history and source positions in one SQLite database.
//!
//! Why SQLite in WAL mode: a journal batch's bans and the cursor up to which they were derived
//! must become durable together, in ONE transaction. Written separately, a crash between the
//! two would either lose bans (cursor saved first: the entries are never read again) or count
//! failures twice (bans saved first: the entries come back as new). With both in one commit,
//! a restart replays entries up to the cursor count-only and treats the rest as new.
//! `synchronous=FULL` makes each commit survive power loss, not only a crash of the process;
//! a commit is one WAL append plus fsync per batch (up to 1024 entries), not per entry.
//!
//! Times are microseconds since the Unix epoch, as in the engine.

use crate::engine::time::Timestamp;
use crate::engine::tracker::ActiveBan;
use ipnet::IpNet;
use rusqlite::{params, Connection, OptionalExtension};
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
";

/// History older than this is purged.
const HISTORY_HORIZON: Duration = Duration::from_secs(90 * 86_400);
/// At most this many history rows are kept.
const HISTORY_ROWS: i64 = 100_000;

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
        let db = StateDb { conn, path };
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

    /// The stored position of `source`, if any.
    pub fn cursor(&self, source: &str) -> Result<Option<String>, StateError> {
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

    /// Records new bans and the source position they were derived up to, atomically.
    pub fn commit_batch(
        &mut self,
        bans: &[StoredBan],
        position: Option<(&str, &str)>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let wrap = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO bans (jail, target, started_us, expires_us, offence, failures)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(wrap)?;
            // A new ban of a target still banned (a replayed history, an admin's ban) replaces
            // the old one: its history row ends where the new one starts.
            let mut replaced = tx
                .prepare_cached(
                    "UPDATE ban_history SET ended_us = ?3, end_reason = 'replaced by a new ban'
                     WHERE jail = ?1 AND target = ?2 AND ended_us IS NULL",
                )
                .map_err(wrap)?;
            let mut history = tx
                .prepare_cached(
                    "INSERT INTO ban_history (jail, target, started_us, expires_us, offence, failures)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(wrap)?;
            for ban in bans {
                let target = ban.target.to_string();
                let values = params![
                    ban.jail,
                    target,
                    ban.since.as_micros(),
                    ban.until.map(Timestamp::as_micros),
                    ban.offence,
                    ban.failures
                ];
                replaced
                    .execute(params![ban.jail, target, ban.since.as_micros()])
                    .map_err(wrap)?;
                insert.execute(values).map_err(wrap)?;
                history.execute(values).map_err(wrap)?;
            }
            if let Some((source, cursor)) = position {
                tx.execute(
                    "INSERT INTO source_positions (source, cursor, updated_us) VALUES (?1, ?2, ?3)
                     ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_us = excluded.updated_us",
                    params![source, cursor, now.as_micros()],
                )
                .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Removes ended bans and closes their history rows with `reason`.
    pub fn end_bans(
        &mut self,
        jail: &str,
        targets: &[IpNet],
        reason: &str,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let wrap = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(wrap)?;
        {
            let mut delete = tx
                .prepare_cached("DELETE FROM bans WHERE jail = ?1 AND target = ?2")
                .map_err(wrap)?;
            let mut close = tx
                .prepare_cached(
                    "UPDATE ban_history SET ended_us = ?3, end_reason = ?4
                     WHERE jail = ?1 AND target = ?2 AND ended_us IS NULL",
                )
                .map_err(wrap)?;
            for target in targets {
                let target = target.to_string();
                delete.execute(params![jail, target]).map_err(wrap)?;
                close
                    .execute(params![jail, target, now.as_micros(), reason])
                    .map_err(wrap)?;
            }
        }
        tx.commit().map_err(wrap)
    }

    /// Bounds the history: drops rows older than the horizon and beyond the newest rows kept.
    pub fn purge_history(&mut self, now: Timestamp) -> Result<usize, StateError> {
        let horizon = (now - HISTORY_HORIZON).as_micros();
        let old = self.wrap(self.conn.execute(
            "DELETE FROM ban_history WHERE started_us < ?1 AND ended_us IS NOT NULL",
            [horizon],
        ))?;
        let excess = self.wrap(self.conn.execute(
            "DELETE FROM ban_history WHERE id <= (SELECT MAX(id) FROM ban_history) - ?1",
            [HISTORY_ROWS],
        ))?;
        Ok(old + excess)
    }

    /// How many history rows there are (for tests and status).
    pub fn history_len(&self) -> Result<i64, StateError> {
        self.wrap(
            self.conn
                .query_row("SELECT COUNT(*) FROM ban_history", [], |r| r.get(0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        db.commit_batch(
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
        db.end_bans(
            "sshd",
            &[bans[0].target],
            "expired",
            Timestamp::from_secs(700),
        )
        .unwrap();
        assert_eq!(db.bans().unwrap(), [bans[1].clone()]);
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
        db.commit_batch(&[first], None, Timestamp::from_secs(100))
            .unwrap();
        db.commit_batch(&[second.clone()], None, Timestamp::from_secs(800))
            .unwrap();
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
        db.commit_batch(
            &[ban("198.51.100.4/32", Some(700))],
            None,
            Timestamp::from_secs(100),
        )
        .unwrap();
        db.end_bans(
            "sshd",
            &["198.51.100.4/32".parse().unwrap()],
            "expired",
            Timestamp::from_secs(700),
        )
        .unwrap();
        assert_eq!(db.purge_history(Timestamp::from_secs(1000)).unwrap(), 0);
        let later = Timestamp::from_secs(100) + HISTORY_HORIZON + Duration::from_secs(1);
        assert_eq!(db.purge_history(later).unwrap(), 1);
        assert_eq!(db.history_len().unwrap(), 0);
    }
}
