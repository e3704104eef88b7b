//! The state database's own thread: the owner task hands it changes and goes on; it
//! commits them in order and reports how each write went.
//!
//! Why a thread: every commit is an fsync (`synchronous=FULL`, see [`super::state`]), and
//! an fsync waits for the disk. On a machine writing a flood of log lines it took up to
//! 50 ms, and a WAL checkpoint more; done on the owner task, that wait was added to every
//! D-Bus request queued behind it (a status request took 137 ms in `tests/load.rs`). Here
//! the owner only queues; the disk's latency stays on this thread.
//!
//! Order and atomicity are unchanged: one thread, one connection, changes applied in the
//! order they were sent, and a batch's bans with its source position always in the same
//! transaction. Whatever was sent while a commit was under way is written together in the
//! next one, so a slow disk means fewer, larger transactions, not a queue of fsyncs. What a
//! crash loses is the tail not committed yet: whole batches with their positions, as if the
//! crash had come a moment earlier, so their entries are read again after the restart and
//! counted once. A ban can reach the firewall before its commit; after such a crash the
//! kernel may hold it until its timeout or until the replayed entries ban it again.
//!
//! Reads (at start-up and reload: stored bans, offences, source positions) are answered on
//! the thread after everything sent before them is written, so they see the daemon's own
//! changes. The owner blocks for them; they are rare and never happen under a flood's
//! steady state. An admin's ban or unban over D-Bus is answered once it is saved
//! ([`StateWriter::saved`]), without the owner waiting: a reply means it survives a crash.
//!
//! Failures: a write that fails leaves its changes waiting in memory (the backlog of
//! [`StateDb`]) and later changes join them without touching the disk. The owner's retry
//! timer (`super::health`) sends [`StateWriter::retry`]; the outcome comes back as a
//! [`Report`].

use super::state::{CaughtUp, StateDb, StateError, StoredBan};
use crate::bus::Lifted;
use crate::engine::time::Timestamp;
use crate::fleet::FleetEntry;
use ipnet::IpNet;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::mpsc as tokio_mpsc;
use tokio::sync::oneshot;

/// A read run on the writer thread.
type Read = Box<dyn FnOnce(&StateDb) + Send>;

enum Command {
    Commit {
        bans: Vec<StoredBan>,
        publish: Vec<FleetEntry>,
        position: Option<(String, String)>,
        now: Timestamp,
    },
    End {
        jail: String,
        targets: Vec<IpNet>,
        reason: Lifted,
        now: Timestamp,
    },
    Purge {
        now: Timestamp,
    },
    /// Write the backlog now; `active_bans` rewrites the `bans` table if the backlog
    /// overflowed (see [`StateDb::write_backlog`]).
    Retry {
        active_bans: Vec<StoredBan>,
    },
    /// Run once everything sent before is written (or kept in the backlog after a failure).
    Read(Read),
}

/// How a write went, sent back to the owner after each transaction (or each group of
/// changes queued while the database is behind).
#[derive(Debug)]
pub enum Report {
    /// Changes were sent and written, or queued behind an earlier failure (then `Ok` too:
    /// only the retry touches the disk).
    Written {
        result: Result<(), StateError>,
        unsaved: usize,
    },
    /// The outcome of a [`StateWriter::retry`].
    Retried {
        result: Result<CaughtUp, StateError>,
        unsaved: usize,
    },
}

/// The owner's handle on the writer thread. Dropping it writes what was sent and waits for
/// the thread to finish.
pub struct StateWriter {
    commands: Option<mpsc::Sender<Command>>,
    reports: tokio_mpsc::UnboundedReceiver<Report>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    /// Starts the thread, which owns `db` from now on.
    pub fn start(db: StateDb) -> Result<StateWriter, StateError> {
        let path = db.path().to_path_buf();
        let (commands, receiver) = mpsc::channel();
        let (report, reports) = tokio_mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("banhound-state".into())
            .spawn(move || serve(db, &receiver, &report))
            .map_err(|source| StateError::Thread { path, source })?;
        Ok(StateWriter {
            commands: Some(commands),
            reports,
            thread: Some(thread),
        })
    }

    /// New bans and the source position they were derived up to: committed together.
    pub fn commit_batch(
        &self,
        bans: Vec<StoredBan>,
        position: Option<(&str, &str)>,
        now: Timestamp,
    ) {
        self.commit_shared_batch(bans, Vec::new(), position, now);
    }

    /// As [`Self::commit_batch`], with the bans to publish to the fleet (its outbox), all
    /// in the same transaction.
    pub fn commit_shared_batch(
        &self,
        bans: Vec<StoredBan>,
        publish: Vec<FleetEntry>,
        position: Option<(&str, &str)>,
        now: Timestamp,
    ) {
        self.send(Command::Commit {
            bans,
            publish,
            position: position.map(|(source, cursor)| (source.to_string(), cursor.to_string())),
            now,
        });
    }

    /// Ended bans, with why they ended.
    pub fn end_bans(&self, jail: &str, targets: &[IpNet], reason: Lifted, now: Timestamp) {
        self.send(Command::End {
            jail: jail.to_string(),
            targets: targets.to_vec(),
            reason,
            now,
        });
    }

    /// Bounds the history (see [`StateDb::queue_purge`]).
    pub fn purge_history(&self, now: Timestamp) {
        self.send(Command::Purge { now });
    }

    /// Tries to write the backlog after a failure; answered by [`Report::Retried`].
    pub fn retry(&self, active_bans: Vec<StoredBan>) {
        self.send(Command::Retry { active_bans });
    }

    /// Runs `read` on the database once everything sent before is written, and waits for
    /// its answer.
    pub fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&StateDb) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.send(Command::Read(Box::new(move |db| {
            let _ = answer.send(read(db));
        })));
        answered.recv().map_err(|_| StateError::WriterStopped)?
    }

    /// Completes once everything sent so far is written, or kept in memory because the
    /// database cannot be written (then waiting longer would not make it safer). Completes
    /// at once if the thread is gone.
    pub fn saved(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (done, saved) = oneshot::channel();
        self.send(Command::Read(Box::new(move |_| {
            let _ = done.send(());
        })));
        async move {
            let _ = saved.await;
        }
    }

    /// The next report; pending forever once the thread is gone (it is only gone when this
    /// handle is dropped, or after a panic, which the next send logs).
    pub async fn next_report(&mut self) -> Report {
        match self.reports.recv().await {
            Some(report) => report,
            None => std::future::pending().await,
        }
    }

    fn send(&self, command: Command) {
        let sent = self
            .commands
            .as_ref()
            .is_some_and(|commands| commands.send(command).is_ok());
        if !sent {
            tracing::error!("{}", StateError::WriterStopped);
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        // Closing the channel lets the thread write what it has and end.
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("{}", StateError::WriterStopped);
            }
        }
    }
}

/// The thread: takes every command waiting, applies them in order, and writes once.
fn serve(
    mut db: StateDb,
    commands: &mpsc::Receiver<Command>,
    reports: &tokio_mpsc::UnboundedSender<Report>,
) {
    // The owner may be gone (stopping): nobody to tell then, the writes still happen.
    let report = |r: Report| {
        let _ = reports.send(r);
    };
    while let Ok(first) = commands.recv() {
        let mut queued = false;
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Commit {
                    bans,
                    publish,
                    position,
                    now,
                } => {
                    let position = position.as_ref().map(|(s, c)| (s.as_str(), c.as_str()));
                    db.queue_batch(&bans, position, now);
                    db.queue_publish(&publish);
                    queued = true;
                }
                Command::End {
                    jail,
                    targets,
                    reason,
                    now,
                } => {
                    db.queue_end(&jail, &targets, reason, now);
                    queued = true;
                }
                Command::Purge { now } => {
                    db.queue_purge(now);
                    queued = true;
                }
                Command::Retry { active_bans } => {
                    let result = db.write_backlog(|| active_bans);
                    queued = false;
                    report(Report::Retried {
                        result,
                        unsaved: db.unsaved_changes(),
                    });
                }
                Command::Read(read) => {
                    if std::mem::take(&mut queued) {
                        report(write(&mut db));
                    }
                    read(&db);
                }
            }
            next = commands.try_recv().ok();
        }
        if queued {
            report(write(&mut db));
        }
    }
}

fn write(db: &mut StateDb) -> Report {
    let result = db.write_pending();
    Report::Written {
        result,
        unsaved: db.unsaved_changes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(target: &str) -> StoredBan {
        StoredBan {
            jail: "sshd".into(),
            target: target.parse().unwrap(),
            since: Timestamp::from_secs(100),
            until: Some(Timestamp::from_secs(700)),
            offence: 1,
            failures: 5,
        }
    }

    #[test]
    fn changes_are_written_in_order_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::start(StateDb::open(dir.path()).unwrap()).unwrap();
        let now = Timestamp::from_secs(200);
        for i in 0..50u8 {
            let b = ban(&format!("198.51.100.{i}/32"));
            writer.commit_batch(vec![b], Some(("journal:system", &format!("c{i}"))), now);
        }
        let targets: Vec<IpNet> = (0..25u8)
            .map(|i| format!("198.51.100.{i}/32").parse().unwrap())
            .collect();
        writer.end_bans("sshd", &targets, Lifted::Expired, now);
        let (bans, cursor) = writer
            .read(|db| Ok((db.bans()?.len(), db.cursor("journal:system")?)))
            .unwrap();
        assert_eq!((bans, cursor.as_deref()), (25, Some("c49")));
        drop(writer);

        // Written to disk, not only queued: a new connection sees it all.
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.bans().unwrap().len(), 25);
        assert_eq!(db.history_len().unwrap(), 50);
        assert_eq!(db.cursor("journal:system").unwrap().as_deref(), Some("c49"));
    }

    #[tokio::test]
    async fn each_write_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = StateWriter::start(StateDb::open(dir.path()).unwrap()).unwrap();
        writer.commit_batch(
            vec![ban("198.51.100.1/32")],
            None,
            Timestamp::from_secs(200),
        );
        match writer.next_report().await {
            Report::Written {
                result: Ok(()),
                unsaved: 0,
            } => {}
            other => panic!("unexpected report {other:?}"),
        }
        writer.retry(Vec::new());
        match writer.next_report().await {
            Report::Retried {
                result: Ok(caught_up),
                unsaved: 0,
            } => assert_eq!(caught_up.changes, 0),
            other => panic!("unexpected report {other:?}"),
        }
    }

    #[tokio::test]
    async fn saved_completes_once_what_was_sent_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::start(StateDb::open(dir.path()).unwrap()).unwrap();
        writer.commit_batch(
            vec![ban("198.51.100.7/32")],
            None,
            Timestamp::from_secs(200),
        );
        writer.saved().await;
        // Another connection, while the writer is still running: it is committed.
        let other = StateDb::open(dir.path()).unwrap();
        assert_eq!(other.bans().unwrap().len(), 1);
    }

    #[test]
    fn what_was_sent_before_the_handle_is_dropped_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let writer = StateWriter::start(StateDb::open(dir.path()).unwrap()).unwrap();
        for i in 0..200u8 {
            writer.commit_batch(
                vec![ban(&format!("198.51.{i}.1/32"))],
                Some(("file:/var/log/auth.log", &format!("p{i}"))),
                Timestamp::from_secs(200),
            );
        }
        drop(writer);
        let db = StateDb::open(dir.path()).unwrap();
        assert_eq!(db.bans().unwrap().len(), 200);
        assert_eq!(
            db.cursor("file:/var/log/auth.log").unwrap().as_deref(),
            Some("p199")
        );
    }
}
