//! Following the journal live, from a dedicated thread that sleeps until journald writes.
//!
//! sd-journal handles are not `Send`, so the thread opens its own reader and hands entries
//! over a bounded channel in [`Batch`]es (one channel message and one cursor per batch, not per
//! entry). It blocks in poll(2) on two descriptors: the journal's inotify fd (with the events
//! and timeout sd-journal asks for) and an eventfd that [`Follower::stop`] signals. With
//! nothing logged the thread never wakes up; a wake-up is followed by `sd_journal_process`,
//! and only APPEND or INVALIDATE lead to reading, so spurious wake-ups do not spin.
//! INVALIDATE (rotation, vacuum, journald restart) needs no special handling beyond reading
//! on: sd-journal keeps the read position across file changes, so nothing is lost or repeated.
//! The batch that empties the journal says so ([`Batch::at_end`]); the first one is sent even
//! when there was nothing to read, so a consumer always learns that its catch-up is over.

use super::entry::Batch;
use super::matches::JailMatches;
use super::reader::{
    check, JournalError, JournalReader, JournalSource, ReadStats, Start, StartReport,
};
use super::shim;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// Sizes of the hand-over between the follow thread and its consumer.
#[derive(Clone, Copy, Debug)]
pub struct FollowOptions {
    /// At most this many entries per batch.
    pub batch_entries: usize,
    /// A batch is sent once its field bytes reach this size, whatever its entry count.
    pub batch_bytes: usize,
    /// Batches waiting for the consumer before the follow thread blocks (back-pressure: the
    /// journal itself is the buffer, so a slow consumer never makes banhound drop entries).
    pub queue_depth: usize,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            batch_entries: 1024,
            batch_bytes: 1 << 20,
            queue_depth: 4,
        }
    }
}

/// What the thread reports once the reader is open and positioned.
type Ready = Result<(StartReport, libc::pid_t), JournalError>;

/// A running follow thread. Dropping it stops the thread too.
pub struct Follower {
    batches: Receiver<Result<Batch, JournalError>>,
    recycle: Sender<Batch>,
    stop: Arc<OwnedFd>,
    thread: Option<JoinHandle<ReadStats>>,
    report: StartReport,
    thread_id: libc::pid_t,
}

impl Follower {
    /// Starts the thread; returns once the journal is open and positioned (so opening errors
    /// and the start report come back here, not through the channel).
    pub fn spawn(
        source: JournalSource,
        matches: JailMatches,
        start: Start,
        options: FollowOptions,
    ) -> Result<Follower, JournalError> {
        let stop = Arc::new(shim::eventfd().map_err(|source| JournalError::Call {
            operation: "eventfd",
            source,
        })?);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Ready>(1);
        let (batch_tx, batches) = mpsc::sync_channel(options.queue_depth.max(1));
        let (recycle, recycle_rx) = mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("journal-follow".into())
            .spawn(move || {
                let opened = JournalReader::open(&source, matches, &start);
                let mut reader = match opened {
                    Ok((reader, report)) => {
                        let tid = shim::gettid();
                        if ready_tx.send(Ok((report, tid))).is_err() {
                            return reader.stats();
                        }
                        reader
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return ReadStats::default();
                    }
                };
                let mut follow = FollowLoop {
                    options,
                    batches: batch_tx,
                    recycled: recycle_rx,
                    stop: &thread_stop,
                    end_reported: false,
                };
                if let Err(e) = follow.run(&mut reader) {
                    let _ = follow.batches.send(Err(e));
                }
                reader.stats()
            })
            .map_err(|source| JournalError::Call {
                operation: "spawning the journal follow thread",
                source,
            })?;
        let (report, thread_id) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(JournalError::FollowThread);
            }
        };
        Ok(Follower {
            batches,
            recycle,
            stop,
            thread: Some(thread),
            report,
            thread_id,
        })
    }

    /// How positioning went; [`StartReport::warning`] is for the log.
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    /// Batches in journal order. An `Err` is the last message: the thread has stopped.
    pub fn batches(&self) -> &Receiver<Result<Batch, JournalError>> {
        &self.batches
    }

    /// Hands a processed batch back so its buffers are reused.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.recycle.send(batch);
    }

    /// The kernel thread id of the follow thread (for /proc/self/task/TID diagnostics).
    pub fn thread_id(&self) -> libc::pid_t {
        self.thread_id
    }

    /// A handle that asks the thread to stop from anywhere, e.g. while another thread is
    /// blocked receiving from [`Follower::batches`] (the receive then fails: the thread's
    /// sender is gone).
    pub fn stopper(&self) -> FollowStopper {
        FollowStopper(Arc::clone(&self.stop))
    }

    /// Stops the thread and returns what it read in total.
    pub fn stop(mut self) -> Result<ReadStats, JournalError> {
        self.shut_down().ok_or(JournalError::FollowThread)
    }

    fn shut_down(&mut self) -> Option<ReadStats> {
        let thread = self.thread.take()?;
        self.stopper().stop();
        // The thread may be blocked sending to a full queue: dropping the receiver frees it.
        let (_, idle) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.batches, idle));
        thread.join().ok()
    }
}

/// Asks a follow thread to stop; see [`Follower::stopper`].
#[derive(Clone, Debug)]
pub struct FollowStopper(Arc<OwnedFd>);

impl FollowStopper {
    /// Signals the thread; it stops at its next wake-up (at once when idle in poll(2)).
    pub fn stop(&self) {
        shim::signal(&self.0);
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.shut_down();
    }
}

struct FollowLoop<'a> {
    options: FollowOptions,
    batches: SyncSender<Result<Batch, JournalError>>,
    recycled: Receiver<Batch>,
    stop: &'a OwnedFd,
    /// A batch with [`Batch::at_end`] was sent: later drains that read nothing send nothing.
    end_reported: bool,
}

/// Whether the follow loop goes on.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    /// A stop was requested, or the consumer is gone.
    Stop,
}

impl FollowLoop<'_> {
    fn run(&mut self, reader: &mut JournalReader) -> Result<(), JournalError> {
        // The inotify watches must exist before the first drain: an entry written between the
        // end of that drain and their creation would otherwise wait for the next write.
        let journal_fd = check(shim::fd(reader.journal()), "sd_journal_get_fd")?;
        loop {
            if self.drain(reader)? == Flow::Stop || self.wait(reader, journal_fd)? == Flow::Stop {
                return Ok(());
            }
        }
    }

    fn fresh_batch(&self) -> Batch {
        let mut batch = self.recycled.try_recv().unwrap_or_default();
        batch.clear();
        batch
    }

    /// Reads and sends everything available now.
    fn drain(&mut self, reader: &mut JournalReader) -> Result<Flow, JournalError> {
        loop {
            let mut batch = self.fresh_batch();
            let before = reader.stats();
            let mut full = false;
            while let Some(entry) = reader.next_entry()? {
                batch.push(&entry);
                if batch.len() >= self.options.batch_entries
                    || batch.byte_len() >= self.options.batch_bytes
                {
                    full = true;
                    break;
                }
            }
            let after = reader.stats();
            if after.read == before.read && self.end_reported {
                return Ok(Flow::Continue);
            }
            batch.add_skipped_no_message(after.no_message - before.no_message);
            if let Some(cursor) = reader.cursor()? {
                batch.set_cursor(cursor);
            }
            if !full {
                batch.set_at_end();
                self.end_reported = true;
            }
            if self.batches.send(Ok(batch)).is_err() {
                return Ok(Flow::Stop);
            }
            if !full {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Sleeps until the journal changed (APPEND or INVALIDATE) or a stop is requested.
    fn wait(
        &mut self,
        reader: &mut JournalReader,
        journal_fd: libc::c_int,
    ) -> Result<Flow, JournalError> {
        let journal = reader.journal();
        loop {
            let events = check(shim::events(journal), "sd_journal_get_events")?;
            let (ret, deadline) = shim::timeout(journal);
            check(ret, "sd_journal_get_timeout")?;
            let mut fds = [
                libc::pollfd {
                    fd: journal_fd,
                    events: events as libc::c_short,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stop.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = poll_timeout_ms(deadline);
            if let Err(err) = shim::poll(&mut fds, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(JournalError::Call {
                    operation: "poll",
                    source: err,
                });
            }
            if fds[1].revents != 0 {
                return Ok(Flow::Stop);
            }
            let change = check(shim::process(journal), "sd_journal_process")?;
            if change != shim::NOP {
                return Ok(Flow::Continue);
            }
        }
    }
}

/// sd_journal_get_timeout gives an absolute CLOCK_MONOTONIC deadline (`u64::MAX`: none, the
/// usual case with inotify); poll wants relative milliseconds, rounded up so it never spins.
fn poll_timeout_ms(deadline_usec: u64) -> libc::c_int {
    if deadline_usec == u64::MAX {
        return -1;
    }
    let now_usec = shim::monotonic_usec();
    let left = deadline_usec.saturating_sub(now_usec);
    libc::c_int::try_from(left.div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}
