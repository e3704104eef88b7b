//! The journal cursor is banhound's position: persisted after entries are processed, so a
//! restart continues exactly after the last entry acted upon — no entry lost, none counted
//! twice. The file is replaced atomically (temporary file, fsync, rename, fsync of the
//! directory) because a torn cursor after a crash would mean replaying or skipping entries.
//!
//! Cursors are opaque to most code, but when the entry a cursor names has been vacuumed the
//! reader needs the cursor's realtime (`t=` field, hex microseconds) to resume after it, and
//! its sequence number (`s=` the sequence's id, `i=` the number, both hex) to tell how many
//! entries were lost with it.

use crate::engine::time::Timestamp;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the cursor file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CursorStoreError {
    #[error("cannot create state directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot read cursor file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write cursor file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The cursor file of one reader in a state directory.
#[derive(Clone, Debug)]
pub struct CursorStore {
    dir: PathBuf,
    path: PathBuf,
    temp: PathBuf,
}

impl CursorStore {
    /// The store `STATE_DIR/NAME.cursor` (e.g. `/var/lib/banhound/journal.cursor`).
    pub fn new(state_dir: &Path, name: &str) -> CursorStore {
        CursorStore {
            dir: state_dir.to_path_buf(),
            path: state_dir.join(format!("{name}.cursor")),
            temp: state_dir.join(format!(".{name}.cursor.tmp")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored cursor, `None` if none was ever saved (or the file is empty).
    pub fn load(&self) -> Result<Option<String>, CursorStoreError> {
        match fs::read_to_string(&self.path) {
            Ok(text) => {
                let cursor = text.trim();
                Ok((!cursor.is_empty()).then(|| cursor.to_string()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CursorStoreError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the stored cursor; when this returns, the new cursor survives a crash.
    pub fn save(&self, cursor: &str) -> Result<(), CursorStoreError> {
        fs::create_dir_all(&self.dir).map_err(|source| CursorStoreError::CreateDir {
            path: self.dir.clone(),
            source,
        })?;
        self.write_atomically(cursor)
            .map_err(|source| CursorStoreError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn write_atomically(&self, cursor: &str) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.temp)?;
        file.write_all(cursor.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.path)?;
        // The rename is only durable once the directory entry is.
        File::open(&self.dir)?.sync_all()
    }
}

/// The parts of a cursor string banhound uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorPosition {
    /// `__REALTIME_TIMESTAMP` of the entry the cursor names.
    pub realtime: Timestamp,
    /// Where the entry is in journald's numbering, when the cursor says.
    pub sequence: Option<Sequence>,
}

/// journald numbers every entry it writes, across all of its files and rotations, in one
/// sequence (identified by a random id, new when journald starts without a file to continue).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// `s=`: which sequence.
    pub id: String,
    /// `i=`: the entry's number in it.
    pub number: u64,
}

impl CursorPosition {
    /// How many entries journald wrote between this entry and `later`, when both are in the
    /// same sequence: the numbers in between that a reader never met are entries that are
    /// gone (or, for the system journal, in users' journal files, which are not opened).
    pub fn entries_until(&self, later: &CursorPosition) -> Option<u64> {
        match (&self.sequence, &later.sequence) {
            (Some(this), Some(that)) if this.id == that.id && that.number > this.number => {
                Some(that.number - this.number - 1)
            }
            _ => None,
        }
    }
}

/// Why a cursor string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed journal cursor {cursor:?}: {reason}")]
pub struct CursorParseError {
    pub cursor: String,
    pub reason: &'static str,
}

/// Parses `s=…;i=…;b=…;m=…;t=<hex realtime usec>;x=…`.
pub fn parse_cursor(cursor: &str) -> Result<CursorPosition, CursorParseError> {
    let fail = |reason| CursorParseError {
        cursor: cursor.to_string(),
        reason,
    };
    let t = cursor
        .split(';')
        .find_map(|part| part.strip_prefix("t="))
        .ok_or_else(|| fail("no t= (realtime) field"))?;
    let usec = u64::from_str_radix(t, 16).map_err(|_| fail("t= is not hexadecimal"))?;
    let usec = i64::try_from(usec).map_err(|_| fail("t= is out of range"))?;
    let field = |name: &str| cursor.split(';').find_map(|part| part.strip_prefix(name));
    // Only an aid for the warning about lost entries: a cursor without it still positions.
    let sequence = match (field("s="), field("i=").map(|i| u64::from_str_radix(i, 16))) {
        (Some(id), Some(Ok(number))) if !id.is_empty() => Some(Sequence {
            id: id.to_string(),
            number,
        }),
        _ => None,
    };
    Ok(CursorPosition {
        realtime: Timestamp::from_micros(usec),
        sequence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_realtime_of_a_cursor() {
        let c = "s=6f7e2c0c1d0b4d3d9f1c0b7a5e3c2a10;i=1a;b=0123456789abcdef0123456789abcdef;m=1;t=660a3b2c1d0e8;x=4b2a";
        assert_eq!(
            parse_cursor(c).unwrap().realtime,
            Timestamp::from_micros(0x660a3b2c1d0e8)
        );
        assert_eq!(
            parse_cursor(c).unwrap().sequence,
            Some(Sequence {
                id: "6f7e2c0c1d0b4d3d9f1c0b7a5e3c2a10".into(),
                number: 0x1a
            })
        );
        assert_eq!(parse_cursor("t=5").unwrap().sequence, None);
        assert_eq!(parse_cursor("s=ab;i=zz;t=5").unwrap().sequence, None);
        assert!(parse_cursor("s=1;i=2").is_err());
        assert!(parse_cursor("t=zz").is_err());
        assert!(parse_cursor("t=ffffffffffffffff").is_err());
    }

    #[test]
    fn counts_the_entries_between_two_cursors_of_one_sequence() {
        let at = |s: &str, i: u64| parse_cursor(&format!("s={s};i={i:x};t=5")).unwrap();
        assert_eq!(at("a", 0x10).entries_until(&at("a", 0x15)), Some(4));
        assert_eq!(at("a", 0x10).entries_until(&at("a", 0x11)), Some(0));
        // journald started a new sequence, or the order is not what a resume expects.
        assert_eq!(at("a", 0x10).entries_until(&at("b", 0x15)), None);
        assert_eq!(at("a", 0x10).entries_until(&at("a", 0x10)), None);
        assert_eq!(at("a", 0x10).entries_until(&at("a", 0x2)), None);
        let bare = parse_cursor("t=5").unwrap();
        assert_eq!(bare.entries_until(&at("a", 0x15)), None);
    }

    #[test]
    fn store_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::new(&dir.path().join("state"), "journal");
        assert_eq!(store.load().unwrap(), None);
        store.save("s=a;i=1;t=5").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("s=a;i=1;t=5"));
        store.save("s=a;i=2;t=6").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some("s=a;i=2;t=6"));
        let names: Vec<_> = fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["journal.cursor"], "no temporary file left behind");
    }
}
