//! The journal feed: a [`Follower`] (its own thread, blocking sd-journal) that hands its
//! batches straight to the owner task over a tokio channel, as the file feed does (the one
//! way of handing batches over, see [`crate::source`]).
//!
//! A feed belongs to one configuration: batch entries name jails by their index in it.
//! A reload stops the feed and starts a new one from the committed cursor, so batches the
//! owner had not processed yet are simply read again, never half-applied.

use crate::source::journal::{
    Batch, FollowOptions, Follower, JailMatches, JournalError, JournalSource, MatchExpr, Start,
    StartReport,
};

/// A running feed; dropping it stops the follow thread.
pub struct Feed {
    follower: Follower,
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
        Ok((Feed { follower }, report))
    }

    /// The next batch; `None` once the feed has ended.
    pub async fn next(&mut self) -> Option<Result<Batch, JournalError>> {
        self.follower.next().await
    }

    /// Hands a processed batch back so its buffers are reused.
    pub fn recycle(&self, batch: Batch) {
        self.follower.recycle(batch);
    }

    /// A batch had live failures: an attack may be under way, so the journal is followed
    /// closely for a while ([`Follower::failures_seen`]).
    pub fn failures_seen(&self) {
        self.follower.failures_seen();
    }
}
