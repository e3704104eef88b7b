//! The fleet outbox in `state.sqlite`: bans waiting to be published.
//!
//! Why an outbox: a ban and its publication must not part ways. The state writer
//! (`crate::daemon::state`) inserts the outbox row in the same transaction as the ban, so
//! after a crash either both are there or neither; the [`super::publisher`] reads the rows
//! over its own connection (WAL lets it read beside the writer), sends them, and deletes
//! those Redis has. A Redis outage only makes the table longer.
//!
//! The table's schema is the state database's (`SCHEMA` in `crate::daemon::state`); the
//! statements on it are here.

use super::{FleetEntry, Origin};
use crate::daemon::state::DATABASE_FILE;
use crate::engine::time::Timestamp;
use rusqlite::{params, CachedStatement, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The state writer's insert of one outbox row (prepared in its transaction).
pub const INSERT: &str = "INSERT INTO fleet_outbox
    (jail, target, started_us, expires_us, offence, failures, reason)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Inserts `entry` with the state writer's prepared [`INSERT`].
pub fn insert(statement: &mut CachedStatement<'_>, entry: &FleetEntry) -> rusqlite::Result<()> {
    statement.execute(params![
        entry.jail,
        entry.target.to_string(),
        entry.since.as_micros(),
        entry.until.map(Timestamp::as_micros),
        entry.offence,
        entry.failures,
        match entry.reason {
            Origin::Logs => "logs",
            Origin::Manual => "manual",
        }
    ])?;
    Ok(())
}

/// Why the outbox could not be read or updated.
#[derive(Debug, thiserror::Error)]
#[error("fleet outbox in {path}: {source}")]
pub struct OutboxError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// The publisher's connection to the outbox.
pub struct Outbox {
    conn: Connection,
    path: PathBuf,
}

impl Outbox {
    /// Opens the state database of `state_dir` (the daemon has created it and its schema).
    pub fn open(state_dir: &Path) -> Result<Outbox, OutboxError> {
        let path = state_dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|source| OutboxError {
            path: path.clone(),
            source,
        })?;
        let outbox = Outbox { conn, path };
        // The state writer holds the write lock for a commit at a time.
        outbox.wrap(outbox.conn.busy_timeout(Duration::from_secs(5)))?;
        Ok(outbox)
    }

    fn wrap<T>(&self, r: rusqlite::Result<T>) -> Result<T, OutboxError> {
        r.map_err(|source| OutboxError {
            path: self.path.clone(),
            source,
        })
    }

    /// When this database's outbox started (the first half of its entry ids).
    pub fn epoch_ms(&self) -> Result<u64, OutboxError> {
        let value: i64 = self.wrap(self.conn.query_row(
            "SELECT value FROM fleet_meta WHERE key = 'outbox_epoch_ms'",
            [],
            |row| row.get(0),
        ))?;
        Ok(u64::try_from(value).unwrap_or(0))
    }

    /// How many bans wait to be published.
    pub fn backlog(&self) -> Result<u64, OutboxError> {
        let n: i64 = self.wrap(self.conn.query_row(
            "SELECT COUNT(*) FROM fleet_outbox",
            [],
            |row| row.get(0),
        ))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The oldest `limit` rows, in order. A row that does not read back (it cannot have
    /// been written by banhound) is returned as `None` to be dropped, not to block the rest.
    pub fn oldest(&self, limit: usize) -> Result<Vec<(i64, Option<FleetEntry>)>, OutboxError> {
        let mut stmt = self.wrap(self.conn.prepare_cached(
            "SELECT id, jail, target, started_us, expires_us, offence, failures, reason
             FROM fleet_outbox ORDER BY id LIMIT ?1",
        ))?;
        let rows = self.wrap(stmt.query_map(
            [i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, u32>(5)?,
                    row.get::<_, u32>(6)?,
                    row.get::<_, String>(7)?,
                ))
            },
        ))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, jail, target, since, until, offence, failures, reason) = self.wrap(row)?;
            let reason = match reason.as_str() {
                "logs" => Some(Origin::Logs),
                "manual" => Some(Origin::Manual),
                _ => None,
            };
            let entry = match (target.parse(), reason) {
                (Ok(target), Some(reason)) => Some(FleetEntry {
                    jail,
                    target,
                    since: Timestamp::from_micros(since),
                    until: until.map(Timestamp::from_micros),
                    offence,
                    failures,
                    reason,
                }),
                _ => None,
            };
            out.push((id, entry));
        }
        Ok(out)
    }

    /// Removes the rows up to `id` (Redis has them).
    pub fn remove_through(&self, id: i64) -> Result<(), OutboxError> {
        self.wrap(
            self.conn
                .execute("DELETE FROM fleet_outbox WHERE id <= ?1", [id]),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::{StateDb, StoredBan};

    #[test]
    fn rows_are_committed_with_their_ban_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StateDb::open(dir.path()).unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let entry = |i: u8| FleetEntry {
            jail: "sshd".into(),
            target: format!("198.51.100.{i}/32").parse().unwrap(),
            since: Timestamp::from_secs(100),
            until: i.is_multiple_of(2).then(|| Timestamp::from_secs(700)),
            offence: 1,
            failures: 5,
            reason: if i == 3 { Origin::Manual } else { Origin::Logs },
        };
        let ban = StoredBan {
            jail: "sshd".into(),
            target: "198.51.100.1/32".parse().unwrap(),
            since: Timestamp::from_secs(100),
            until: Some(Timestamp::from_secs(700)),
            offence: 1,
            failures: 5,
        };
        db.queue_batch(
            &[ban],
            Some(("journal:system", "c1")),
            Timestamp::from_secs(100),
        );
        db.queue_publish(&[entry(1), entry(2), entry(3)]);
        // Queued, not written: the other connection sees nothing yet.
        assert_eq!(outbox.backlog().unwrap(), 0);
        db.write_pending().unwrap();
        assert_eq!(db.bans().unwrap().len(), 1);
        let rows = outbox.oldest(10).unwrap();
        let entries: Vec<FleetEntry> = rows.iter().map(|(_, e)| e.clone().unwrap()).collect();
        assert_eq!(entries, [entry(1), entry(2), entry(3)]);
        assert!(rows.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(outbox.epoch_ms().unwrap() > 1_600_000_000_000);
        outbox.remove_through(rows[1].0).unwrap();
        assert_eq!(outbox.backlog().unwrap(), 1);
        // Row ids never come back after a deletion: they make the stream ids.
        outbox.remove_through(rows[2].0).unwrap();
        db.queue_publish(&[entry(4)]);
        db.write_pending().unwrap();
        assert!(outbox.oldest(1).unwrap()[0].0 > rows[2].0);
    }
}
