//! The journal feed: a [`Follower`] (its own thread, blocking sd-journal) bridged into the
//! owner task's async world by a second small thread that forwards batches over a tokio
//! channel.
//!
//! A feed belongs to one configuration: batch entries name jails by their index in it.
//! A reload stops the feed and starts a new one from the committed cursor, so batches the
//! owner had not processed yet are simply read again, never half-applied.

use crate::source::journal::{
    Batch, FollowOptions, FollowStopper, Follower, JailMatches, JournalError, JournalSource,
    MatchExpr, Start, StartReport,
};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// A running feed; dropping it stops both threads.
pub struct Feed {
    batches: mpsc::Receiver<Result<Batch, JournalError>>,
    stopper: FollowStopper,
    bridge: Option<JoinHandle<()>>,
}

impl Feed {
    /// Opens and positions the journal (blocking until done, so errors come back here).
    pub fn start(
        source: JournalSource,
        matches: Vec<MatchExpr>,
        start: Start,
    ) -> Result<(Feed, StartReport), JournalError> {
        let follower = Follower::spawn(
            source,
            JailMatches::new(matches),
            start,
            FollowOptions::default(),
        )?;
        let report = follower.start_report().clone();
        let stopper = follower.stopper();
        let (tx, batches) = mpsc::channel(2);
        let bridge = std::thread::Builder::new()
            .name("journal-bridge".into())
            .spawn(move || {
                // Ends when the follow thread stops (its sender goes) or the owner drops the
                // receiver; dropping `follower` then joins the follow thread.
                while let Ok(message) = follower.batches().recv() {
                    let last = message.is_err();
                    if tx.blocking_send(message).is_err() || last {
                        break;
                    }
                }
            })
            .map_err(|source| JournalError::Call {
                operation: "spawning the journal bridge thread",
                source,
            })?;
        Ok((
            Feed {
                batches,
                stopper,
                bridge: Some(bridge),
            },
            report,
        ))
    }

    /// The next batch; `None` once the feed has ended.
    pub async fn next(&mut self) -> Option<Result<Batch, JournalError>> {
        self.batches.recv().await
    }

    fn shut_down(&mut self) {
        self.stopper.stop();
        // Unblocks the bridge if it waits to hand over a batch; that batch is dropped.
        self.batches.close();
        while self.batches.try_recv().is_ok() {}
        if let Some(bridge) = self.bridge.take() {
            let _ = bridge.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.shut_down();
    }
}
