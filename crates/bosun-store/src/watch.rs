//! The watch hub: applied revisions fanned out to every watcher.
//!
//! The state machine publishes each revision's events once into a bounded broadcast ring.
//! A watcher that falls behind the ring (or misses a revision for any reason) does not block
//! anyone: it notices the gap and replays the missing revisions from the MVCC store, which
//! keeps the whole history until compaction. Memory stays bounded by the ring and by the
//! per-watcher replay batch.
//!
//! A snapshot installed from the leader replaces the store and jumps its revision without
//! publishing the revisions in between: the hub then says so ([`Published::Restored`]), and
//! watchers replay those revisions from the store at once rather than at the next write.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::mvcc::read::RevEvents;

/// What the hub carries.
#[derive(Debug)]
pub enum Published {
    /// The events of one applied revision.
    Revision(RevEvents),
    /// The store was replaced by a snapshot and is now at revision `rev`; the revisions it
    /// brought were not published and are read from the store.
    Restored { rev: i64 },
}

/// Fans applied revisions out to watchers.
#[derive(Debug)]
pub struct WatchHub {
    tx: broadcast::Sender<Arc<Published>>,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchHub {
    /// A hub with an empty ring.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(crate::limits::WATCH_RING_REVISIONS);
        WatchHub { tx }
    }

    /// Publishes applied revisions, in order. Never blocks.
    pub fn publish(&self, revs: Vec<RevEvents>) {
        for r in revs {
            // No receiver is fine: nobody is watching.
            let _ = self.tx.send(Arc::new(Published::Revision(r)));
        }
    }

    /// Tells watchers that the store now holds a snapshot at revision `rev`. Called after the
    /// store's write lock is released, as [`WatchHub::publish`] is.
    pub fn restored(&self, rev: i64) {
        let _ = self.tx.send(Arc::new(Published::Restored { rev }));
    }

    /// A receiver of everything published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.tx.subscribe()
    }

    /// Number of live subscribers.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}
