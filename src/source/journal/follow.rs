//! Following the journal live, from a dedicated thread that sleeps until journald writes.
//!
//! sd-journal handles are not `Send`, so the thread opens its own reader and hands entries
//! in [`Batch`]es (one channel message and one cursor per batch, not per entry) straight to
//! the async consumer over a bounded tokio channel, as the file followers do (the one way
//! both sources hand batches over; see [`crate::source`]). It blocks in poll(2) on the
//! journal's inotify fd (with the events and timeout sd-journal asks for), an eventfd that
//! [`Follower::stop`] signals and one that [`Follower::failures_seen`] signals. With nothing
//! logged the thread never wakes up; a wake-up is followed by `sd_journal_process`, and only
//! APPEND or INVALIDATE lead to reading, so spurious wake-ups do not spin.
//! INVALIDATE (rotation, vacuum, journald restart) needs no special handling beyond reading
//! on: sd-journal keeps the read position across file changes, so nothing is lost or repeated.
//! The batch that empties the journal says so ([`Batch::at_end`]); the first one is sent even
//! when there was nothing to read, so a consumer always learns that its catch-up is over.
//!
//! **Hot follow.** journald appends an entry to the journal file at once, but coalesces the
//! change notifications its readers get on a timer (a quarter of a second), so a reader that
//! only waits for them sees an attack that late. While the consumer reports failures
//! ([`Follower::failures_seen`]), the thread therefore also reads on a short tick
//! ([`FollowOptions::hot_tick`]): sd-journal sees what was appended to a file it has mapped
//! without being notified. [`FollowOptions::hot_for`] after the last report it is back to
//! notifications only, and to no wake-ups at all when nothing is logged.

use super::entry::Batch;
use super::matches::JailMatches;
use super::reader::{
    check, JournalError, JournalReader, JournalSource, ReadStats, Start, StartReport,
};
use super::shim;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;
use tokio::sync::mpsc;

/// Sizes of the hand-over between the follow thread and its consumer, and its hot follow.
#[derive(Clone, Copy, Debug)]
pub struct FollowOptions {
    /// At most this many entries per batch.
    pub batch_entries: usize,
    /// A batch is sent once its field bytes reach this size, whatever its entry count.
    pub batch_bytes: usize,
    /// Batches waiting for the consumer before the follow thread blocks (back-pressure: the
    /// journal itself is the buffer, so a slow consumer never makes banhound drop entries).
    pub queue_depth: usize,
    /// While hot, the journal is read at least this often (see the module documentation).
    pub hot_tick: Duration,
    /// How long after the last [`Follower::failures_seen`] the follower stays hot.
    pub hot_for: Duration,
}

impl Default for FollowOptions {
    fn default() -> Self {
        FollowOptions {
            batch_entries: 1024,
            batch_bytes: 1 << 20,
            queue_depth: 4,
            // Short against the latency goal (an attack's entries seen within milliseconds),
            // long enough that a hot thread costs little: a read that finds nothing is a few
            // microseconds.
            hot_tick: Duration::from_millis(5),
            // A password guesser over ssh fails about once per connection, and sshd answers a
            // wrong password only after PAM's delay: one attacker's attempts come seconds
            // apart (tests/realhost), and a hot period must span that gap.
            hot_for: Duration::from_secs(10),
        }
    }
}

/// Until when the follower is hot, as a CLOCK_MONOTONIC time in microseconds (0: never),
/// written by the consumer, read by the follow thread before each sleep; and the eventfd
/// that wakes the thread when it turns hot (it may be asleep without a timeout then).
#[derive(Debug)]
struct Hot {
    until: AtomicU64,
    wake: OwnedFd,
}

impl Hot {
    /// Hot until `hot_for` from now; true if it was not hot a moment ago (the thread must be
    /// woken to start ticking).
    fn extend(&self, hot_for: Duration) -> bool {
        let now = shim::monotonic_usec();
        let until = now.saturating_add(u64::try_from(hot_for.as_micros()).unwrap_or(u64::MAX));
        self.until.fetch_max(until, Ordering::Relaxed) <= now
    }

    fn until(&self) -> u64 {
        self.until.load(Ordering::Relaxed)
    }
}

/// What the thread reports once the reader is open and positioned.
type Ready = Result<(StartReport, libc::pid_t), JournalError>;

/// A running follow thread. Dropping it stops the thread too.
pub struct Follower {
    batches: mpsc::Receiver<Result<Batch, JournalError>>,
    recycle: Sender<Batch>,
    stop: Arc<OwnedFd>,
    hot: Arc<Hot>,
    hot_for: Duration,
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
        let eventfd = || {
            shim::eventfd().map_err(|source| JournalError::Call {
                operation: "eventfd",
                source,
            })
        };
        let stop = Arc::new(eventfd()?);
        let hot = Arc::new(Hot {
            until: AtomicU64::new(0),
            wake: eventfd()?,
        });
        let (ready_tx, ready_rx) = std_mpsc::sync_channel::<Ready>(1);
        let (batch_tx, batches) = mpsc::channel(options.queue_depth.max(1));
        let (recycle, recycle_rx) = std_mpsc::channel();
        let thread_stop = Arc::clone(&stop);
        let thread_hot = Arc::clone(&hot);
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
                    hot: &thread_hot,
                    end_reported: false,
                };
                if let Err(e) = follow.run(&mut reader) {
                    let _ = follow.batches.blocking_send(Err(e));
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
            hot,
            hot_for: options.hot_for,
            thread: Some(thread),
            report,
            thread_id,
        })
    }

    /// How positioning went; [`StartReport::warning`] is for the log.
    pub fn start_report(&self) -> &StartReport {
        &self.report
    }

    /// The next batch, in journal order; `None` once the thread has stopped. An `Err` is the
    /// last message.
    pub async fn next(&mut self) -> Option<Result<Batch, JournalError>> {
        self.batches.recv().await
    }

    /// [`Follower::next`] for a consumer outside any async runtime (tools, tests).
    pub fn blocking_next(&mut self) -> Option<Result<Batch, JournalError>> {
        self.batches.blocking_recv()
    }

    /// The consumer counted failures in what it was handed: an attack may be under way, so
    /// the thread reads on the short tick for a while (see the module documentation).
    pub fn failures_seen(&self) {
        if self.hot.extend(self.hot_for) {
            shim::signal(&self.hot.wake);
        }
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
    /// blocked in [`Follower::blocking_next`] (which then returns `None`: the thread's
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
        // The thread may be blocked sending to a full queue: closing the channel frees it.
        // Batches not taken are dropped; the next follower reads them again from the cursor.
        self.batches.close();
        while self.batches.try_recv().is_ok() {}
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
    batches: mpsc::Sender<Result<Batch, JournalError>>,
    recycled: Receiver<Batch>,
    stop: &'a OwnedFd,
    hot: &'a Hot,
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
            if self.batches.blocking_send(Ok(batch)).is_err() {
                return Ok(Flow::Stop);
            }
            if !full {
                return Ok(Flow::Continue);
            }
        }
    }

    /// Sleeps until the journal changed (APPEND or INVALIDATE), a hot tick is due, or a stop
    /// is requested.
    fn wait(
        &mut self,
        reader: &mut JournalReader,
        journal_fd: libc::c_int,
    ) -> Result<Flow, JournalError> {
        let journal = reader.journal();
        loop {
            let events = check(shim::events(journal), "sd_journal_get_events")?;
            let (ret, journal_deadline) = shim::timeout(journal);
            check(ret, "sd_journal_get_timeout")?;
            let tick = self.hot_tick();
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
                libc::pollfd {
                    fd: self.hot.wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let timeout = poll_timeout_ms(journal_deadline.min(tick.unwrap_or(u64::MAX)));
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
            let turned_hot = fds[2].revents != 0;
            if turned_hot {
                shim::drain(&self.hot.wake);
            }
            let change = check(shim::process(journal), "sd_journal_process")?;
            // Turning hot reads at once: what was appended since the batch that had the
            // failures is not notified before journald's timer.
            if change != shim::NOP
                || turned_hot
                || tick.is_some_and(|tick| shim::monotonic_usec() >= tick)
            {
                return Ok(Flow::Continue);
            }
        }
    }

    /// When the next hot read is due (CLOCK_MONOTONIC microseconds), or `None` when the
    /// follower is not hot.
    fn hot_tick(&self) -> Option<u64> {
        let now = shim::monotonic_usec();
        let tick = u64::try_from(self.options.hot_tick.as_micros()).unwrap_or(u64::MAX);
        (now < self.hot.until()).then(|| now.saturating_add(tick))
    }
}

/// sd_journal_get_timeout gives an absolute CLOCK_MONOTONIC deadline (`u64::MAX`: none, the
/// usual case with inotify), and so is the hot tick; poll wants relative milliseconds, rounded
/// up so it never spins.
fn poll_timeout_ms(deadline_usec: u64) -> libc::c_int {
    if deadline_usec == u64::MAX {
        return -1;
    }
    let now_usec = shim::monotonic_usec();
    let left = deadline_usec.saturating_sub(now_usec);
    libc::c_int::try_from(left.div_ceil(1000)).unwrap_or(libc::c_int::MAX)
}
