//! Coalescing of read-index requests: every linearizable read needs the leader to confirm a
//! read index, and all the reads that arrive while one confirmation is under way can share the
//! next one. One waiting reader at a time drives a round for itself and everyone queued when
//! the round starts; when it is done it hands the driving to the next reader in the queue.
//!
//! A round only serves readers that arrived before it started, so each read still sees every
//! write acknowledged before the read began.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::EtcdResult;

/// What a queued reader is told.
#[derive(Debug)]
enum Turn {
    /// A round that started after the reader arrived ended with this read index.
    Done(EtcdResult<u64>),
    /// The reader drives the next round.
    Drive,
}

#[derive(Debug, Default)]
struct State {
    /// Whether some reader is driving (or has been handed the driving).
    driving: bool,
    waiting: Vec<oneshot::Sender<Turn>>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ReadBatch {
    state: Mutex<State>,
    /// Rounds run and reads answered, for the metrics.
    rounds: AtomicU64,
    reads: AtomicU64,
}

/// Hands the driving on when a driver finishes or its future is dropped mid-round.
struct Handover<'a>(&'a ReadBatch);

impl Drop for Handover<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        while !st.waiting.is_empty() {
            let next = st.waiting.remove(0);
            if next.send(Turn::Drive).is_ok() {
                return;
            }
        }
        st.driving = false;
    }
}

impl ReadBatch {
    /// Rounds run so far and reads answered so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.rounds.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
        )
    }

    /// Returns a read index confirmed by a round that started after this call; `round` asks
    /// the leader for one.
    pub async fn run<F, Fut>(&self, round: F) -> EtcdResult<u64>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = EtcdResult<u64>>,
    {
        self.reads.fetch_add(1, Ordering::Relaxed);
        loop {
            let rx = {
                let mut st = self.state.lock();
                if st.driving {
                    let (tx, rx) = oneshot::channel();
                    st.waiting.push(tx);
                    Some(rx)
                } else {
                    st.driving = true;
                    None
                }
            };
            if let Some(rx) = rx {
                match rx.await {
                    Ok(Turn::Done(r)) => return r,
                    Ok(Turn::Drive) => {}
                    // The driver went away before finishing: queue again.
                    Err(_) => continue,
                }
            }
            let _handover = Handover(self);
            let batch = std::mem::take(&mut self.state.lock().waiting);
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let r = round().await;
            for tx in batch {
                let _ = tx.send(Turn::Done(r.clone()));
            }
            return r;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reads_share_rounds_started_after_them() {
        let batch = Arc::new(ReadBatch::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (batch, rounds) = (batch.clone(), rounds.clone());
            tasks.push(tokio::spawn(async move {
                // The round counter at arrival: the answer must come from a later round.
                let arrived = rounds.load(Ordering::SeqCst);
                let got = batch
                    .run(|| async {
                        let n = rounds.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(n)
                    })
                    .await
                    .expect("read index");
                assert!(
                    got > arrived,
                    "answered by round {got}, arrived after {arrived}"
                );
            }));
        }
        for t in tasks {
            t.await.expect("reader");
        }
        let n = rounds.load(Ordering::SeqCst);
        assert!(
            n < 50,
            "{n} rounds for 50 concurrent reads: nothing was shared"
        );
        assert!(!batch.state.lock().driving);
    }

    #[tokio::test]
    async fn a_dropped_driver_hands_over() {
        let batch = Arc::new(ReadBatch::default());
        let b = batch.clone();
        let stuck =
            tokio::spawn(async move { b.run(std::future::pending::<EtcdResult<u64>>).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let b = batch.clone();
        let waiter = tokio::spawn(async move { b.run(|| async { Ok(7) }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stuck.abort();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter served after the driver was dropped")
            .expect("task");
        assert_eq!(got, Ok(7));
    }
}
