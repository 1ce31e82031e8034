//! Workers over a [`WorkQueue`]: the loop of every controller (client-go's
//! `processNextWorkItem`, kube-rs's `Controller::run`).
//!
//! A reconcile is level-triggered: it gets a key, reads what it needs from caches, and makes
//! the world match; it does not know which event queued the key. The queue guarantees one key
//! is never reconciled by two workers at once.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, error, warn};

use crate::queue::WorkQueue;

/// What a successful reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until an event queues the key again.
    Done,
    /// Look again after this long (a progress deadline, a toleration running out), even if
    /// nothing changes.
    RequeueAfter(Duration),
}

/// Runs `workers` tasks that take items from `queue` and call `reconcile`:
/// `Ok(Done)` forgets the item's back-off; `Ok(RequeueAfter(d))` forgets it and queues the
/// item again after `d`; `Err` (or a panic) queues it again rate-limited, logged with the key.
/// No item is reconciled by two workers at once. Returns when `shutdown` becomes true, after
/// the reconciles in flight finish, or when the queue is shut down and drained.
pub async fn run_workers<T, F, Fut, E>(
    queue: WorkQueue<T>,
    workers: usize,
    reconcile: F,
    shutdown: watch::Receiver<bool>,
) where
    T: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    E: Display + Send + 'static,
{
    let reconcile = Arc::new(reconcile);
    let mut tasks = JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, reconcile, mut shutdown) = (queue.clone(), reconcile.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                let item = tokio::select! {
                    biased;
                    () = crate::stopped(&mut shutdown) => return,
                    item = queue.next() => match item {
                        Some(item) => item,
                        None => return,
                    },
                };
                process(&queue, &*reconcile, item).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// One item: reconcile, then forget, requeue or back off, then done.
async fn process<T, F, Fut, E>(queue: &WorkQueue<T>, reconcile: &F, item: T)
where
    T: Clone + Eq + Hash + Debug + Send + Sync + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<Action, E>>,
    E: Display,
{
    let outcome = AssertUnwindSafe(reconcile(item.clone()))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(Action::Done)) => queue.forget(&item),
        Ok(Ok(Action::RequeueAfter(d))) => {
            queue.forget(&item);
            queue.add_after(item.clone(), d);
        }
        Ok(Err(e)) => {
            let retries = queue.num_requeues(&item);
            if retries < 5 {
                debug!(queue = queue.name(), key = ?item, retries, error = %e, "reconcile failed; retrying");
            } else {
                warn!(queue = queue.name(), key = ?item, retries, error = %e, "reconcile failed; retrying");
            }
            queue.add_rate_limited(item.clone());
        }
        Err(_) => {
            error!(queue = queue.name(), key = ?item, "reconcile panicked; retrying");
            queue.add_rate_limited(item.clone());
        }
    }
    queue.done(&item);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;
    use crate::queue::QueueConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reconciles_each_key_alone_and_retries_errors() {
        let q: WorkQueue<String> = WorkQueue::new("test", QueueConfig::default());
        let (stop_tx, stop) = watch::channel(false);
        let busy: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        let run = tokio::spawn(run_workers(
            q.clone(),
            4,
            {
                let (busy, calls, total) = (busy.clone(), calls.clone(), total.clone());
                move |key: String| {
                    let (busy, calls, total) = (busy.clone(), calls.clone(), total.clone());
                    async move {
                        {
                            let mut b = busy.lock();
                            let n = b.entry(key.clone()).or_default();
                            assert_eq!(*n, 0, "{key} reconciled twice at once");
                            *n += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        *busy.lock().get_mut(&key).unwrap() -= 1;
                        total.fetch_add(1, Ordering::SeqCst);
                        let n = {
                            let mut c = calls.lock();
                            let n = c.entry(key.clone()).or_default();
                            *n += 1;
                            *n
                        };
                        match key.as_str() {
                            // Fails twice, then succeeds.
                            "flaky" if n <= 2 => Err(format!("attempt {n}")),
                            "panics" if n == 1 => panic!("boom"),
                            "again" if n == 1 => {
                                Ok(Action::RequeueAfter(Duration::from_millis(20)))
                            }
                            _ => Ok(Action::Done),
                        }
                    }
                }
            },
            stop,
        ));
        for i in 0..50 {
            q.add(format!("k{}", i % 5));
        }
        for k in ["flaky", "panics", "again"] {
            q.add(k.to_string());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let done = {
                let c = calls.lock();
                c.get("flaky") == Some(&3)
                    && c.get("panics") == Some(&2)
                    && c.get("again") == Some(&2)
            };
            if done && q.is_empty() && q.waiting() == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{:?}", calls.lock());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            q.num_requeues(&"flaky".to_string()),
            0,
            "forgotten on success"
        );
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        for i in 0..5 {
            let n = calls.lock()[&format!("k{i}")];
            assert!((1..=10).contains(&n), "k{i}: {n}");
        }
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_reconcile_in_flight() {
        let q: WorkQueue<u32> = WorkQueue::new("test", QueueConfig::default());
        let (stop_tx, stop) = watch::channel(false);
        let (started_tx, mut started) = tokio::sync::mpsc::channel(1);
        let finished = Arc::new(AtomicUsize::new(0));
        let run = tokio::spawn(run_workers(
            q.clone(),
            2,
            {
                let finished = finished.clone();
                move |_: u32| {
                    let (started_tx, finished) = (started_tx.clone(), finished.clone());
                    async move {
                        started_tx.send(()).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        finished.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, String>(Action::Done)
                    }
                }
            },
            stop,
        ));
        q.add(1);
        started.recv().await.unwrap();
        stop_tx.send(true).unwrap();
        run.await.unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }
}
