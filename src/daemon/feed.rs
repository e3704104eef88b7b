//! The journal feed: a [`Follower`] (its own thread, blocking sd-journal) that hands its
//! batches straight to the owner task over a tokio channel, as the file feed does (see
//! [`crate::source`] for why both sources hand batches this one way).
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

    /// A batch had failures: an attack may be under way, follow the journal closely.
    pub fn failures_seen(&self) {
        self.follower.failures_seen();
    }
}
