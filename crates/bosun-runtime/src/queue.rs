//! A work queue with client-go's `workqueue` semantics (the rate-limiting, delaying,
//! de-duplicating queue every Kubernetes controller runs on):
//!
//! - an item is queued at most once however often it is added (`dirty`);
//! - an item being processed (taken by [`WorkQueue::next`], not yet [`WorkQueue::done`]) is
//!   never handed out again meanwhile; added during processing, it is queued again when done;
//! - [`WorkQueue::add_after`] holds an item back for a delay (the earliest wins);
//! - [`WorkQueue::add_rate_limited`] delays by the maximum of a per-item exponential back-off
//!   (`base_delay` doubling to `max_delay`) and a global token bucket (`qps`, `burst`), as
//!   client-go's `DefaultControllerRateLimiter`; [`WorkQueue::forget`] resets the back-off.
//!
//! Everything it holds is keyed by item, so it grows with the number of distinct items only.
//! Waiting for an item needs no background task: [`WorkQueue::next`] moves items whose delay
//! has passed into the queue itself.

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Back-off and rate limit of a [`WorkQueue`]; the default is client-go's
/// `DefaultControllerRateLimiter`.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The first retry's delay; each further failure doubles it.
    pub base_delay: Duration,
    /// The longest per-item delay.
    pub max_delay: Duration,
    /// Rate-limited adds per second over all items, once the burst is spent.
    pub qps: f64,
    /// Rate-limited adds allowed at once.
    pub burst: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1000),
            qps: 10.0,
            burst: 100,
        }
    }
}

/// A de-duplicating, delaying, rate-limiting work queue. Cheap to clone (shared state).
pub struct WorkQueue<T: Clone + Eq + Hash + Send + Sync + 'static> {
    inner: Arc<Inner<T>>,
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.inner.state.lock();
        f.debug_struct("WorkQueue")
            .field("name", &self.inner.name)
            .field("queued", &s.queue.len())
            .field("processing", &s.processing.len())
            .field("waiting", &s.waiting.len())
            .finish()
    }
}

struct Inner<T> {
    name: String,
    config: QueueConfig,
    state: Mutex<State<T>>,
    notify: Notify,
}

struct State<T> {
    /// Items ready to be handed out, in order.
    queue: VecDeque<T>,
    /// Items that need processing: queued, or added while processing.
    dirty: HashSet<T>,
    /// Items handed out and not yet done.
    processing: HashSet<T>,
    /// Items held back, with when they are due (the earliest add wins).
    waiting: HashMap<T, Instant>,
    /// Due times of `waiting`, earliest first; entries superseded by an earlier add are
    /// skipped when they come up.
    due: BinaryHeap<std::cmp::Reverse<(Instant, u64)>>,
    /// Which item each heap entry stands for.
    due_items: HashMap<u64, T>,
    next_seq: u64,
    /// Failures per item since its last `forget`.
    failures: HashMap<T, u32>,
    /// The global token bucket: tokens left (negative when reserved ahead) as of `refilled`.
    tokens: f64,
    refilled: Instant,
    shutting_down: bool,
}

impl<T: Clone + Eq + Hash> State<T> {
    fn new(config: &QueueConfig, now: Instant) -> State<T> {
        State {
            queue: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashSet::new(),
            waiting: HashMap::new(),
            due: BinaryHeap::new(),
            due_items: HashMap::new(),
            next_seq: 0,
            failures: HashMap::new(),
            tokens: f64::from(config.burst),
            refilled: now,
            shutting_down: false,
        }
    }

    fn add(&mut self, item: T) -> bool {
        if self.shutting_down || self.dirty.contains(&item) {
            return false;
        }
        self.dirty.insert(item.clone());
        if self.processing.contains(&item) {
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Moves the items that are due into the queue; the next due time of the rest.
    fn promote(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let mut added = false;
        while let Some(std::cmp::Reverse((at, seq))) = self.due.peek().copied() {
            let Some(item) = self.due_items.get(&seq) else {
                self.due.pop();
                continue;
            };
            // An entry superseded by an earlier add for the same item.
            if self.waiting.get(item) != Some(&at) {
                self.due_items.remove(&seq);
                self.due.pop();
                continue;
            }
            if at > now {
                return (added, Some(at));
            }
            self.due.pop();
            if let Some(item) = self.due_items.remove(&seq) {
                self.waiting.remove(&item);
                added |= self.add(item);
            }
        }
        (added, None)
    }

    fn add_after(&mut self, item: T, at: Instant) {
        if self.shutting_down {
            return;
        }
        if let Some(existing) = self.waiting.get(&item)
            && *existing <= at
        {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.waiting.insert(item.clone(), at);
        self.due_items.insert(seq, item);
        self.due.push(std::cmp::Reverse((at, seq)));
    }
}

impl<T: Clone + Eq + Hash> State<T> {
    /// client-go's `DefaultControllerRateLimiter.When`: the item's exponential back-off
    /// (counting this failure) or the token bucket's wait, whichever is longer.
    fn rate_limit(&mut self, item: &T, now: Instant, c: &QueueConfig) -> Duration {
        let failures = self.failures.entry(item.clone()).or_insert(0);
        let exp = *failures;
        *failures = failures.saturating_add(1);
        let per_item = backoff(c.base_delay, c.max_delay, exp);
        // Token bucket: refill, then reserve one token (ahead of time when none is left).
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * c.qps).min(f64::from(c.burst));
        self.refilled = now;
        self.tokens -= 1.0;
        let bucket = if self.tokens >= 0.0 || c.qps <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((-self.tokens / c.qps).min(c.max_delay.as_secs_f64()))
        };
        per_item.max(bucket)
    }
}

impl<T: Clone + Eq + Hash + Send + Sync + 'static> WorkQueue<T> {
    /// A new queue; `name` names it in logs.
    pub fn new(name: &str, config: QueueConfig) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                state: Mutex::new(State::new(&config, Instant::now())),
                config,
                notify: Notify::new(),
            }),
        }
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Queues `item` unless it is already queued; an item being processed is queued again
    /// once [`WorkQueue::done`]. Ignored after [`WorkQueue::shut_down`].
    pub fn add(&self, item: T) {
        let added = self.inner.state.lock().add(item);
        if added {
            self.inner.notify.notify_one();
        }
    }

    /// Queues `item` after `delay` (at once when zero); of several delayed adds of one item
    /// the earliest counts.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        self.inner
            .state
            .lock()
            .add_after(item, Instant::now() + delay);
        // A waiting worker may need to wake earlier than it planned.
        self.inner.notify.notify_waiters();
    }

    /// Queues `item` after its back-off: `base_delay * 2^failures` (at most `max_delay`), or
    /// later if the global token bucket says so; counts a failure.
    pub fn add_rate_limited(&self, item: T) {
        let delay = self
            .inner
            .state
            .lock()
            .rate_limit(&item, Instant::now(), &self.inner.config);
        self.add_after(item, delay);
    }

    /// Forgets `item`'s failures: its next rate-limited add waits `base_delay` again.
    pub fn forget(&self, item: &T) {
        self.inner.state.lock().failures.remove(item);
    }

    /// How many rate-limited adds `item` had since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.inner
            .state
            .lock()
            .failures
            .get(item)
            .copied()
            .unwrap_or(0)
    }

    /// The next item to process; `None` once the queue is shut down and drained. The caller
    /// must call [`WorkQueue::done`] with it. Cancel-safe: an item is taken only when this
    /// returns it.
    pub async fn next(&self) -> Option<T> {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let due = {
                let mut s = self.inner.state.lock();
                let (_, due) = s.promote(Instant::now());
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Pass the wake-up on: another worker may be waiting.
                        self.inner.notify.notify_one();
                    }
                    return Some(item);
                }
                if s.shutting_down {
                    return None;
                }
                due
            };
            match due {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `item` processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, item: &T) {
        let requeued = {
            let mut s = self.inner.state.lock();
            s.processing.remove(item);
            if s.dirty.contains(item) {
                s.queue.push_back(item.clone());
                true
            } else {
                false
            }
        };
        if requeued {
            self.inner.notify.notify_one();
        }
    }

    /// Stops taking items: adds are ignored, delayed items dropped; [`WorkQueue::next`] hands
    /// out what is queued, then returns `None`.
    pub fn shut_down(&self) {
        {
            let mut s = self.inner.state.lock();
            s.shutting_down = true;
            s.waiting.clear();
            s.due.clear();
            s.due_items.clear();
        }
        self.inner.notify.notify_waiters();
    }

    /// Whether [`WorkQueue::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.state.lock().shutting_down
    }

    /// Items ready to be handed out (not those processing or still delayed).
    pub fn len(&self) -> usize {
        let mut s = self.inner.state.lock();
        let (added, _) = s.promote(Instant::now());
        let n = s.queue.len();
        drop(s);
        if added {
            self.inner.notify.notify_one();
        }
        n
    }

    /// Whether no item is ready.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items held back by a delay.
    pub fn waiting(&self) -> usize {
        self.inner.state.lock().waiting.len()
    }
}

/// `base * 2^exp`, at most `max`.
fn backoff(base: Duration, max: Duration, exp: u32) -> Duration {
    1u32.checked_shl(exp)
        .and_then(|factor| base.checked_mul(factor))
        .map_or(max, |d| d.min(max))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn queue() -> WorkQueue<String> {
        WorkQueue::new("test", QueueConfig::default())
    }

    async fn take(q: &WorkQueue<String>) -> String {
        tokio::time::timeout(Duration::from_secs(5), q.next())
            .await
            .expect("an item in time")
            .expect("not shut down")
    }

    #[tokio::test]
    async fn an_item_is_queued_once() {
        let q = queue();
        q.add("a".into());
        q.add("b".into());
        q.add("a".into());
        assert_eq!(q.len(), 2);
        assert_eq!(take(&q).await, "a");
        assert_eq!(take(&q).await, "b");
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn an_item_added_while_processing_comes_back_after_done() {
        let q = queue();
        q.add("a".into());
        let a = take(&q).await;
        q.add("a".into());
        q.add("a".into());
        assert_eq!(q.len(), 0, "not handed out twice at once");
        q.add("b".into());
        assert_eq!(take(&q).await, "b");
        q.done(&"b".to_string());
        q.done(&a);
        assert_eq!(q.len(), 1, "queued again, once");
        assert_eq!(take(&q).await, "a");
        q.done(&a);
        assert_eq!(q.len(), 0);
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_an_add() {
        let q = queue();
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add("x".into());
        assert_eq!(worker.await.unwrap().as_deref(), Some("x"));
    }

    #[tokio::test]
    async fn add_after_holds_back_and_the_earliest_wins() {
        let q = queue();
        let start = Instant::now();
        q.add_after("a".into(), Duration::from_secs(10));
        q.add_after("a".into(), Duration::from_millis(40));
        q.add_after("a".into(), Duration::from_millis(200));
        q.add_after("b".into(), Duration::from_millis(80));
        assert_eq!((q.len(), q.waiting()), (0, 2));
        assert_eq!(take(&q).await, "a");
        let a_at = start.elapsed();
        assert_eq!(take(&q).await, "b");
        let b_at = start.elapsed();
        assert!(
            a_at >= Duration::from_millis(40) && a_at < Duration::from_secs(2),
            "{a_at:?}"
        );
        assert!(b_at >= Duration::from_millis(80), "{b_at:?}");
        q.done(&"a".into());
        assert_eq!(
            (q.len(), q.waiting()),
            (0, 0),
            "the later adds were dropped"
        );
        // A delayed item that is already queued is not queued twice.
        q.add("c".into());
        q.add_after("c".into(), Duration::from_millis(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(q.len(), 1);
        // A zero delay is a plain add.
        q.add_after("d".into(), Duration::ZERO);
        assert_eq!(q.len(), 2);
    }

    fn state() -> (State<u32>, Instant) {
        let now = Instant::now();
        (State::new(&QueueConfig::default(), now), now)
    }

    #[test]
    fn back_off_doubles_per_item_up_to_the_max_and_forget_resets_it() {
        let c = QueueConfig {
            max_delay: Duration::from_secs(1),
            qps: 1e9,
            burst: 1_000_000,
            ..QueueConfig::default()
        };
        let (mut s, now) = state();
        let delays: Vec<u128> = (0..10)
            .map(|_| s.rate_limit(&1, now, &c).as_millis())
            .collect();
        assert_eq!(
            delays,
            [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000],
            "5 ms doubling, capped"
        );
        assert_eq!(
            s.rate_limit(&2, now, &c).as_millis(),
            5,
            "each item has its own"
        );
        s.failures.remove(&1);
        assert_eq!(s.rate_limit(&1, now, &c).as_millis(), 5, "forgotten");
        // The default cap: 1000 s, reached after 18 failures, never overflowing.
        let d = QueueConfig::default();
        let last = (0..100).map(|_| s.rate_limit(&3, now, &d)).last().unwrap();
        assert_eq!(last, Duration::from_secs(1000));
    }

    #[test]
    fn the_global_bucket_limits_rate_limited_adds_after_the_burst() {
        let c = QueueConfig {
            base_delay: Duration::from_millis(1),
            ..QueueConfig::default()
        };
        let (mut s, now) = state();
        let delays: Vec<u128> = (0..120)
            .map(|i| s.rate_limit(&i, now, &c).as_millis())
            .collect();
        // The burst of 100 waits only its own back-off; the rest at 10 per second, reserved
        // ahead of one another.
        assert!(delays[..100].iter().all(|&d| d == 1), "{delays:?}");
        let want: Vec<u128> = (1..=20).map(|k| 100 * k).collect();
        assert_eq!(delays[100..], want[..]);
        // A second later ten tokens came back, all already reserved: the next waits on.
        let later = s
            .rate_limit(&500, now + Duration::from_secs(1), &c)
            .as_millis();
        assert_eq!(later, 1100);
        // Much later the bucket is full again.
        let full = s
            .rate_limit(&501, now + Duration::from_secs(60), &c)
            .as_millis();
        assert_eq!(full, 1);
    }

    #[tokio::test]
    async fn rate_limited_items_come_back() {
        let q = queue();
        q.add_rate_limited("a".into());
        q.add_rate_limited("a".into());
        assert_eq!(take(&q).await, "a");
        assert_eq!(q.num_requeues(&"a".into()), 2);
        q.forget(&"a".into());
        assert_eq!(q.num_requeues(&"a".into()), 0);
    }

    #[tokio::test]
    async fn shut_down_drains_then_ends_and_wakes_waiters() {
        let q = queue();
        let waiter = tokio::spawn({
            let q = q.clone();
            async move {
                let mut got = Vec::new();
                while let Some(i) = q.next().await {
                    q.done(&i);
                    got.push(i);
                }
                got
            }
        });
        q.add("a".into());
        q.add_after("later".into(), Duration::from_secs(3600));
        q.shut_down();
        q.add("b".into());
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter ends")
            .unwrap();
        assert_eq!(got, ["a"], "what was queued is handed out, nothing after");
        assert!(q.is_shutting_down());
        assert_eq!(q.next().await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_workers_never_hold_one_item_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let q: WorkQueue<u32> = WorkQueue::new("test", QueueConfig::default());
        let busy: Arc<Vec<AtomicUsize>> = Arc::new((0..10).map(|_| AtomicUsize::new(0)).collect());
        let handled = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..8 {
            let (q, busy, handled) = (q.clone(), busy.clone(), handled.clone());
            workers.push(tokio::spawn(async move {
                while let Some(i) = q.next().await {
                    let slot = &busy[usize::try_from(i).unwrap()];
                    assert_eq!(slot.fetch_add(1, Ordering::SeqCst), 0, "item {i} twice");
                    tokio::task::yield_now().await;
                    slot.fetch_sub(1, Ordering::SeqCst);
                    handled.fetch_add(1, Ordering::SeqCst);
                    q.done(&i);
                }
            }));
        }
        for round in 0..2000u32 {
            q.add(round % 10);
            if round % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while !q.is_empty() {
            tokio::task::yield_now().await;
        }
        q.shut_down();
        for w in workers {
            w.await.unwrap();
        }
        assert!(handled.load(Ordering::SeqCst) >= 10);
    }
}
