//! File sources: log files followed like `tail -F`, one thread per file, positions persisted.
//! The daemon's follower (started by [`crate::daemon`], which owns what is done with the
//! lines); it lives here, beside the journal reader, as the other source of records.
//!
//! Each thread reads whole lines from its file with the line reader `test-filter` uses
//! ([`super::file::LineReader`], so both see the same lines) and hands them to the owner
//! task in chunks, each with the position (inode and byte offset) just after its last
//! line; the owner commits that position together with the chunk's bans, exactly as for
//! journal cursors. A line still being written (no `\n` yet) is left for the next read. A
//! line over [`MAX_LINE`] bytes is skipped to its newline and counted (logged), never split:
//! the position moves past it only once its end has been read.
//!
//! The thread sleeps in poll(2) on an inotify descriptor and a stop eventfd: it wakes when
//! the file is written, replaced (rotation: renamed away and created anew, read to its end
//! first) or truncated (`copytruncate`: read again from the start), never on a timer. A
//! missing file is waited for through its directory.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use crate::source::fd_shim::{drain, eventfd, inotify, inotify_watch, poll, signal};
use crate::source::file::{Line, LineReader, MAX_LINE};

/// A chunk is handed over once it holds this many bytes of lines (more may wait behind it);
/// the last chunk of a read holds less.
pub const READ_SIZE: usize = 256 << 10;
/// Over-long lines are logged at most this often per file (a flood of them is one line of
/// our log a minute, with the count).
const TOO_LONG_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Where a file was read up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilePosition {
    pub inode: u64,
    pub offset: u64,
}

impl FilePosition {
    /// As stored in the state database: `INODE:OFFSET`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.inode, self.offset)
    }

    pub fn decode(text: &str) -> Option<FilePosition> {
        let (inode, offset) = text.split_once(':')?;
        Some(FilePosition {
            inode: inode.parse().ok()?,
            offset: offset.parse().ok()?,
        })
    }
}

/// Whole lines read from one file.
#[derive(Debug)]
pub struct FileChunk {
    /// Index of the file in the list given to [`FileFeed::start`].
    pub file: usize,
    /// Lines, each ending with `\n`.
    pub lines: Vec<u8>,
    /// The position right after the last line.
    pub position: FilePosition,
}

/// Why following a file failed.
#[derive(Debug, thiserror::Error)]
#[error("following {path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// The threads following the files; dropping it stops them.
pub struct FileFeed {
    chunks: mpsc::Receiver<Result<FileChunk, FileError>>,
    stop: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
}

impl FileFeed {
    /// Starts one thread per file, each from its stored position (same inode, offset not
    /// past the end), else from the start of the file.
    pub fn start(files: Vec<(PathBuf, Option<FilePosition>)>) -> Result<FileFeed, FileError> {
        let stop = Arc::new(eventfd().map_err(|source| FileError {
            path: PathBuf::new(),
            source,
        })?);
        let (tx, chunks) = mpsc::channel(4);
        let mut threads = Vec::new();
        for (index, (path, stored)) in files.into_iter().enumerate() {
            let mut follower = FileFollower {
                index,
                path: path.clone(),
                stop: Arc::clone(&stop),
                tx: tx.clone(),
                too_long: TooLong::default(),
            };
            let thread = std::thread::Builder::new()
                .name("file-follow".into())
                .spawn(move || {
                    if let Err(source) = follower.run(stored) {
                        let _ = follower.tx.blocking_send(Err(FileError {
                            path: follower.path.clone(),
                            source,
                        }));
                    }
                })
                .map_err(|source| FileError { path, source })?;
            threads.push(thread);
        }
        Ok(FileFeed {
            chunks,
            stop,
            threads,
        })
    }

    /// The next chunk of any file; `None` once every thread has ended.
    pub async fn next(&mut self) -> Option<Result<FileChunk, FileError>> {
        self.chunks.recv().await
    }
}

impl Drop for FileFeed {
    fn drop(&mut self) {
        signal(&self.stop);
        // Unblocks threads waiting to hand over a chunk; the chunk is read again later.
        self.chunks.close();
        while self.chunks.try_recv().is_ok() {}
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the follower is told by a wake-up.
enum Wake {
    Changed,
    Stop,
}

struct FileFollower {
    index: usize,
    path: PathBuf,
    stop: Arc<OwnedFd>,
    tx: mpsc::Sender<Result<FileChunk, FileError>>,
    too_long: TooLong,
}

/// Over-long lines skipped and not yet logged.
#[derive(Default)]
struct TooLong {
    unreported: u64,
    reported_at: Option<Instant>,
}

/// An open file and how far it has been handed over.
struct Open {
    reader: LineReader<File>,
    inode: u64,
    /// The offset the reader started at.
    base: u64,
    /// Offset of the first byte not handed over (the start of a partial line, if any).
    offset: u64,
}

impl FileFollower {
    fn run(&mut self, stored: Option<FilePosition>) -> io::Result<()> {
        let inotify = Inotify::new()?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        inotify.watch(dir, libc::IN_CREATE | libc::IN_MOVED_TO)?;
        let mut current = self.open(stored, &inotify)?;
        loop {
            if let Some(open) = &mut current {
                if !self.drain(open)? {
                    return Ok(());
                }
            }
            match self.wait(&inotify)? {
                Wake::Stop => return Ok(()),
                Wake::Changed => {}
            }
            inotify.discard_events();
            // Replaced or truncated? The old file is read to its end first.
            let now_inode = std::fs::metadata(&self.path).ok().map(|m| m.ino());
            match (&mut current, now_inode) {
                (Some(open), Some(inode)) if inode == open.inode => {
                    let len = open.reader.get_ref().metadata()?.len();
                    if len < open.offset {
                        tracing::info!(
                            "{} was truncated: reading it from the start",
                            self.path.display()
                        );
                        current = self.open(None, &inotify)?;
                    }
                }
                (Some(open), Some(_)) => {
                    if !self.drain(open)? {
                        return Ok(());
                    }
                    tracing::info!(
                        "{} was replaced (rotated): following the new file",
                        self.path.display()
                    );
                    current = self.open(None, &inotify)?;
                }
                (None, Some(_)) => current = self.open(None, &inotify)?,
                (_, None) => {}
            }
        }
    }

    /// Opens the file if it exists, positioned at `stored` when that still applies.
    fn open(&self, stored: Option<FilePosition>, inotify: &Inotify) -> io::Result<Option<Open>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let offset = match stored {
            Some(p) if p.inode == meta.ino() && p.offset <= meta.len() => p.offset,
            _ => 0,
        };
        file.seek(SeekFrom::Start(offset))?;
        inotify.watch(&self.path, libc::IN_MODIFY | libc::IN_ATTRIB)?;
        Ok(Some(Open {
            reader: LineReader::new(file),
            inode: meta.ino(),
            base: offset,
            offset,
        }))
    }

    /// Hands over every whole line available; false if the owner is gone.
    fn drain(&mut self, open: &mut Open) -> io::Result<bool> {
        let mut lines = Vec::new();
        loop {
            let more = match open.reader.next_whole_line()? {
                Some(Line::Text(text)) => {
                    lines.extend_from_slice(text);
                    lines.push(b'\n');
                    true
                }
                Some(Line::TooLong(_)) => {
                    self.too_long.unreported += 1;
                    true
                }
                None => false,
            };
            let offset = open.base + open.reader.consumed();
            // A chunk of skipped lines alone still carries the position past them.
            if (lines.len() >= READ_SIZE || !more) && offset != open.offset {
                open.offset = offset;
                let chunk = FileChunk {
                    file: self.index,
                    lines: std::mem::take(&mut lines),
                    position: FilePosition {
                        inode: open.inode,
                        offset,
                    },
                };
                if self.tx.blocking_send(Ok(chunk)).is_err() {
                    return Ok(false);
                }
            }
            if !more {
                self.report_too_long();
                return Ok(true);
            }
        }
    }

    /// Logs the over-long lines skipped since the last report, at most once a minute.
    fn report_too_long(&mut self) {
        let t = &mut self.too_long;
        let now = Instant::now();
        if t.unreported == 0
            || t.reported_at
                .is_some_and(|at| now < at + TOO_LONG_REPORT_EVERY)
        {
            return;
        }
        tracing::warn!(
            "{}: skipped {} over-long line(s) of more than {} MiB, whole (not matched)",
            self.path.display(),
            t.unreported,
            MAX_LINE >> 20
        );
        t.unreported = 0;
        t.reported_at = Some(now);
    }

    fn wait(&self, inotify: &Inotify) -> io::Result<Wake> {
        let mut fds = [
            libc::pollfd {
                fd: inotify.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            match poll(&mut fds, -1) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if fds[1].revents != 0 {
                return Ok(Wake::Stop);
            }
            return Ok(Wake::Changed);
        }
    }
}

/// An inotify instance (non-blocking; woken through poll).
struct Inotify {
    fd: OwnedFd,
}

impl Inotify {
    fn new() -> io::Result<Inotify> {
        Ok(Inotify { fd: inotify()? })
    }

    fn watch(&self, path: &Path, mask: u32) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        inotify_watch(&self.fd, &c, mask)
    }

    /// Empties the event queue: the follower re-checks the file itself, so which events
    /// arrived does not matter, only that some did.
    fn discard_events(&self) {
        drain(&self.fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn next(feed: &mut FileFeed, rt: &tokio::runtime::Runtime) -> FileChunk {
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), feed.next())
                .await
                .expect("a chunk within 5 s")
                .expect("feed open")
                .expect("no error")
        })
    }

    #[test]
    fn follows_appends_partial_lines_rotation_and_truncation() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"one\ntw").unwrap();
        let mut feed = FileFeed::start(vec![(path.clone(), None)]).unwrap();
        let c = next(&mut feed, &rt);
        assert_eq!(c.lines, b"one\n");
        assert_eq!(c.position.offset, 4);
        f.write_all(b"o\nthree\n").unwrap();
        let c = next(&mut feed, &rt);
        assert_eq!(c.lines, b"two\nthree\n");
        assert_eq!(c.position.offset, 14);

        // Rotation: the old file gets a last line, then is renamed; a new one appears.
        f.write_all(b"last\n").unwrap();
        std::fs::rename(&path, dir.path().join("auth.log.1")).unwrap();
        let mut g = File::create(&path).unwrap();
        g.write_all(b"fresh\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"fresh\n") {
            got.extend(next(&mut feed, &rt).lines);
        }
        assert_eq!(got, b"last\nfresh\n");

        // Truncation (copytruncate) starts over.
        g.set_len(0).unwrap();
        let mut g = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        g.write_all(b"x\n").unwrap();
        let c = next(&mut feed, &rt);
        assert_eq!(c.lines, b"x\n");
        assert_eq!(c.position.offset, 2);
        let resume = c.position;
        drop(feed);

        // A restart continues at the stored position.
        g.write_all(b"y\n").unwrap();
        let mut feed = FileFeed::start(vec![(path.clone(), Some(resume))]).unwrap();
        assert_eq!(next(&mut feed, &rt).lines, b"y\n");
        assert_eq!(FilePosition::decode(&resume.encode()), Some(resume));
    }

    fn nothing_within(feed: &mut FileFeed, rt: &tokio::runtime::Runtime, ms: u64) -> bool {
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(ms), feed.next())
                .await
                .is_err()
        })
    }

    #[test]
    fn an_over_long_line_is_skipped_whole_and_the_position_waits_for_its_end() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"a\n").unwrap();
        let mut feed = FileFeed::start(vec![(path.clone(), None)]).unwrap();
        assert_eq!(next(&mut feed, &rt).position.offset, 2);

        // Being written, already over the limit: nothing is handed over, no position moves.
        let tail = b"FAIL from 192.0.2.77\n";
        f.write_all(&vec![b'x'; MAX_LINE + 1]).unwrap();
        assert!(nothing_within(&mut feed, &rt, 300));
        // Its end: a chunk of no lines, with the position past it.
        f.write_all(tail).unwrap();
        let c = next(&mut feed, &rt);
        assert_eq!(c.lines, b"");
        let after_long = 2 + (MAX_LINE + 1 + tail.len()) as u64;
        assert_eq!(c.position.offset, after_long);
        f.write_all(b"b\n").unwrap();
        let c = next(&mut feed, &rt);
        assert_eq!(c.lines, b"b\n");
        assert_eq!(c.position.offset, after_long + 2);
        let resume = c.position;
        drop(feed);

        // Stopped in the middle of an over-long line: a restart skips it from its start.
        f.write_all(&vec![b'y'; MAX_LINE + 1]).unwrap();
        let mut feed = FileFeed::start(vec![(path.clone(), Some(resume))]).unwrap();
        assert!(nothing_within(&mut feed, &rt, 300));
        f.write_all(tail).unwrap();
        f.write_all(b"c\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"c\n") {
            got.extend(next(&mut feed, &rt).lines);
        }
        assert_eq!(got, b"c\n");
    }
}
