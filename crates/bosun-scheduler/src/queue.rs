//! The scheduling queue: pkg/scheduler/backend/queue `PriorityQueue`, without I/O or clocks
//! (every call takes `now`).
//!
//! - The active queue hands out pods by priority, then by the time they entered it
//!   (`PrioritySort`).
//! - A pod no node fits goes to the unschedulable set. A cluster event that may make it fit (a
//!   node added or changed, a pod deleted) moves every such pod back, to the back-off queue
//!   while its back-off lasts, else to the active queue; so does a periodic flush of pods that
//!   have waited [`UNSCHEDULABLE_FLUSH`] there.
//! - A pod that failed for another reason (an error, a lost bind) waits its back-off: 1 s
//!   doubling per attempt up to 10 s.
//! - If a cluster event arrived while a pod was being scheduled, the pod goes to back-off
//!   rather than the unschedulable set (`moveRequestCycle`): the event it could have missed
//!   might let it fit.
//!
//! The queue holds one entry per pending pod of this scheduler, so it is as large as the
//! cluster's pending pods and no larger; pods leave it when bound, deleted or handed to
//! another scheduler.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// A pod's first back-off (`podInitialBackoffDuration`).
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off (`podMaxBackoffDuration` is 10 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a pod stays unschedulable without a cluster event before it is retried anyway
/// (`podMaxInUnschedulablePodsDuration` is 5 min in kube-scheduler; Bosun retries sooner).
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);

/// A pod in the queue, with its scheduling history (`QueuedPodInfo`).
#[derive(Clone, Debug)]
pub struct QueuedPod {
    /// The pod as last seen by the watch.
    pub pod: Arc<Pod>,
    /// Its cache key (uid, or `namespace/name`).
    pub key: Arc<str>,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Scheduling attempts so far (counting the one in progress once popped).
    pub attempts: u32,
    /// When the pod first entered the queue (for the end-to-end latency).
    pub added: Instant,
    /// The scheduling cycle that popped it last.
    pub cycle: u64,
}

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the active queue under this sequence number.
    Active(u64),
    /// Waiting for its back-off to end at this instant (sequence number for ties).
    Backoff(Instant, u64),
    /// No node fitted it; unschedulable since.
    Unschedulable(Instant),
    /// Popped and being scheduled (or bound).
    InFlight,
}

#[derive(Debug)]
struct Entry {
    info: QueuedPod,
    state: State,
    /// When the last attempt failed (back-off counts from it).
    failed_at: Option<Instant>,
}

/// Sizes of the queue's parts, for the pending-pods gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Ready to be scheduled.
    pub active: usize,
    /// Waiting for their back-off.
    pub backoff: usize,
    /// Waiting for a cluster event.
    pub unschedulable: usize,
    /// Being scheduled or bound.
    pub in_flight: usize,
}

/// The scheduling queue. See the module documentation.
#[derive(Debug, Default)]
pub struct SchedulingQueue {
    pods: HashMap<Arc<str>, Entry>,
    /// Ordered by priority (highest first), then sequence (oldest first).
    active: BTreeSet<(std::cmp::Reverse<i32>, u64, Arc<str>)>,
    backoff: BTreeSet<(Instant, u64, Arc<str>)>,
    unschedulable: usize,
    next_seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
}

/// The back-off after `attempts` failed attempts: 1 s, 2 s, 4 s, 8 s, 10 s, 10 s, ...
pub fn backoff_duration(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

fn priority_of(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Whether an update may change where the pod fits: its spec, labels or annotations changed
/// (`isPodUpdated`: a status-only change, such as the scheduler's own condition, does not).
fn pod_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> SchedulingQueue {
        SchedulingQueue::default()
    }

    /// How many pods are where.
    pub fn counts(&self) -> QueueCounts {
        let in_flight = self
            .pods
            .len()
            .saturating_sub(self.active.len() + self.backoff.len() + self.unschedulable);
        QueueCounts {
            active: self.active.len(),
            backoff: self.backoff.len(),
            unschedulable: self.unschedulable,
            in_flight,
        }
    }

    /// Whether the pod with this key is queued (in any part, or in flight).
    pub fn contains(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// The number of pods in the queue, in flight included.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether the queue holds no pod.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// Adds a pending pod seen by the watch, or updates it when already queued (`Add` /
    /// `Update`). An unschedulable pod whose spec or labels changed is retried.
    pub fn add_or_update(&mut self, key: &str, pod: Arc<Pod>, now: Instant) {
        let Some(entry) = self.pods.get_mut(key) else {
            let key: Arc<str> = key.into();
            let info = QueuedPod {
                priority: priority_of(&pod),
                pod,
                key: key.clone(),
                attempts: 0,
                added: now,
                cycle: 0,
            };
            self.pods.insert(
                key.clone(),
                Entry {
                    info,
                    state: State::InFlight,
                    failed_at: None,
                },
            );
            self.enter_active(&key);
            return;
        };
        let changed = pod_changed(&entry.info.pod, &pod);
        let new_priority = priority_of(&pod);
        entry.info.pod = pod;
        match entry.state {
            State::Unschedulable(_) if changed => {
                entry.info.priority = new_priority;
                let key = entry.info.key.clone();
                self.leave(&key);
                self.enter_active_or_backoff(&key, now);
            }
            State::Active(_) if new_priority != entry.info.priority => {
                let key = entry.info.key.clone();
                self.leave(&key);
                if let Some(e) = self.pods.get_mut(&key) {
                    e.info.priority = new_priority;
                }
                self.enter_active(&key);
            }
            _ => {}
        }
    }

    /// Removes a pod (deleted, bound, or no longer this scheduler's).
    pub fn delete(&mut self, key: &str) {
        if self.pods.contains_key(key) {
            self.leave(key);
            self.pods.remove(key);
        }
    }

    /// Takes the next pod to schedule, marking it in flight (`Pop`).
    pub fn pop(&mut self) -> Option<QueuedPod> {
        let first = self.active.pop_first()?;
        let entry = self.pods.get_mut(&first.2)?;
        self.scheduling_cycle += 1;
        entry.state = State::InFlight;
        entry.info.attempts += 1;
        entry.info.cycle = self.scheduling_cycle;
        Some(entry.info.clone())
    }

    /// Forgets a pod handed to the binder: it leaves the queue (the watch shows it bound; a
    /// failed bind brings it back with [`SchedulingQueue::requeue_backoff`]).
    pub fn done(&mut self, key: &str) {
        if matches!(self.pods.get(key), Some(e) if e.state == State::InFlight) {
            self.pods.remove(key);
        }
    }

    /// A pod no node fits (`AddUnschedulableIfNotPresent`): to the unschedulable set, or to
    /// back-off when a cluster event arrived during its cycle. Ignored if the pod left the
    /// queue meanwhile (deleted, bound by someone else).
    pub fn add_unschedulable(&mut self, pod: &QueuedPod, now: Instant) {
        let Some(entry) = self.pods.get_mut(&*pod.key) else {
            return;
        };
        if entry.state != State::InFlight {
            return;
        }
        entry.failed_at = Some(now);
        if self.move_request_cycle >= pod.cycle {
            let key = entry.info.key.clone();
            self.enter_backoff(&key, now);
        } else {
            entry.state = State::Unschedulable(now);
            self.unschedulable += 1;
        }
    }

    /// A pod whose attempt failed for another reason (an error, a lost bind): back to the
    /// queue after its back-off. `pod` is what [`SchedulingQueue::pop`] returned; a pod
    /// deleted meanwhile is not brought back unless `pod` is given again.
    pub fn requeue_backoff(&mut self, pod: QueuedPod, now: Instant) {
        let key = pod.key.clone();
        match self.pods.get_mut(&key) {
            Some(e) if e.state == State::InFlight => {
                e.failed_at = Some(now);
            }
            Some(_) => return,
            None => {
                self.pods.insert(
                    key.clone(),
                    Entry {
                        info: pod,
                        state: State::InFlight,
                        failed_at: Some(now),
                    },
                );
            }
        }
        self.enter_backoff(&key, now);
    }

    /// A cluster event that may make unschedulable pods fit (`MoveAllToActiveOrBackoffQueue`):
    /// a node added or updated, a pod deleted.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        self.move_request_cycle = self.scheduling_cycle;
        if self.unschedulable == 0 {
            return;
        }
        let keys: Vec<Arc<str>> = self
            .pods
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Unschedulable(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.leave(&key);
            self.enter_active_or_backoff(&key, now);
        }
    }

    /// Moves pods whose back-off ended to the active queue, and pods unschedulable for
    /// [`UNSCHEDULABLE_FLUSH`] to active or back-off (`flushBackoffQCompleted`,
    /// `flushUnschedulablePodsLeftover`).
    pub fn flush(&mut self, now: Instant) {
        while let Some(first) = self.backoff.first() {
            if first.0 > now {
                break;
            }
            let key = first.2.clone();
            self.leave(&key);
            self.enter_active(&key);
        }
        if self.unschedulable == 0 {
            return;
        }
        let stale: Vec<Arc<str>> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                matches!(e.state, State::Unschedulable(since) if now.saturating_duration_since(since) >= UNSCHEDULABLE_FLUSH)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            self.leave(&key);
            self.enter_active_or_backoff(&key, now);
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do, if ever.
    pub fn next_flush(&self) -> Option<Instant> {
        let backoff = self.backoff.first().map(|b| b.0);
        let unschedulable = self
            .pods
            .values()
            .filter_map(|e| match e.state {
                State::Unschedulable(since) => Some(since + UNSCHEDULABLE_FLUSH),
                _ => None,
            })
            .min();
        match (backoff, unschedulable) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the pod out of whichever part holds it (it stays in `pods`, in flight).
    fn leave(&mut self, key: &str) {
        let Some(entry) = self.pods.get_mut(key) else {
            return;
        };
        match entry.state {
            State::Active(seq) => {
                self.active.remove(&(
                    std::cmp::Reverse(entry.info.priority),
                    seq,
                    entry.info.key.clone(),
                ));
            }
            State::Backoff(at, seq) => {
                self.backoff.remove(&(at, seq, entry.info.key.clone()));
            }
            State::Unschedulable(_) => self.unschedulable -= 1,
            State::InFlight => {}
        }
        entry.state = State::InFlight;
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn enter_active(&mut self, key: &str) {
        let seq = self.seq();
        if let Some(entry) = self.pods.get_mut(key) {
            entry.state = State::Active(seq);
            self.active.insert((
                std::cmp::Reverse(entry.info.priority),
                seq,
                entry.info.key.clone(),
            ));
        }
    }

    fn enter_backoff(&mut self, key: &str, now: Instant) {
        let seq = self.seq();
        if let Some(entry) = self.pods.get_mut(key) {
            let from = entry.failed_at.unwrap_or(now);
            let until = from + backoff_duration(entry.info.attempts);
            entry.state = State::Backoff(until, seq);
            self.backoff.insert((until, seq, entry.info.key.clone()));
        }
    }

    fn enter_active_or_backoff(&mut self, key: &str, now: Instant) {
        let backing_off = self.pods.get(key).is_some_and(|e| {
            e.failed_at
                .is_some_and(|f| f + backoff_duration(e.info.attempts) > now)
        });
        if backing_off {
            self.enter_backoff(key, now);
        } else {
            self.enter_active(key);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, priority: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                priority: Some(priority),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn names(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop().map(|p| p.key.to_string())).collect()
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), now);
        q.add_or_update("b", pod("b", 10), now);
        q.add_or_update("c", pod("c", 0), now);
        q.add_or_update("d", pod("d", 10), now);
        assert_eq!(names(&mut q), ["b", "d", "a", "c"]);
        assert_eq!(q.counts().in_flight, 4);
    }

    #[test]
    fn priority_change_reorders_an_active_pod() {
        let now = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), now);
        q.add_or_update("b", pod("b", 0), now);
        q.add_or_update("b", pod("b", 5), now);
        assert_eq!(names(&mut q), ["b", "a"]);
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff_duration(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn unschedulable_waits_for_an_event() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), t0);
        let a = q.pop().unwrap();
        q.add_unschedulable(&a, t0);
        assert_eq!(q.counts().unschedulable, 1);
        // A status-only update (our own condition) does not retry it.
        let mut with_status = (*pod("a", 0)).clone();
        with_status.status = Some(Default::default());
        q.add_or_update("a", Arc::new(with_status), t0);
        assert_eq!(q.pop().map(|p| p.key), None);
        // A node event moves it; its back-off (1 s) has not passed: back-off first.
        q.move_all_to_active_or_backoff(t0 + Duration::from_millis(100));
        assert_eq!(q.counts().backoff, 1);
        q.flush(t0 + Duration::from_millis(500));
        assert!(q.pop().is_none());
        assert_eq!(
            q.next_flush(),
            Some(t0 + Duration::from_secs(1)),
            "back-off counts from the failure"
        );
        q.flush(t0 + Duration::from_secs(1));
        let again = q.pop().unwrap();
        assert_eq!(again.attempts, 2);
    }

    #[test]
    fn event_during_the_cycle_sends_the_pod_to_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), t0);
        let a = q.pop().unwrap();
        q.move_all_to_active_or_backoff(t0);
        q.add_unschedulable(&a, t0);
        assert_eq!(
            q.counts(),
            QueueCounts {
                backoff: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unschedulable_pods_are_flushed_after_a_minute() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), t0);
        let a = q.pop().unwrap();
        q.add_unschedulable(&a, t0);
        q.flush(t0 + Duration::from_secs(59));
        assert_eq!(q.counts().unschedulable, 1);
        assert_eq!(q.next_flush(), Some(t0 + UNSCHEDULABLE_FLUSH));
        q.flush(t0 + UNSCHEDULABLE_FLUSH);
        assert_eq!(names(&mut q), ["a"]);
    }

    #[test]
    fn spec_change_retries_an_unschedulable_pod() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        q.add_or_update("a", pod("a", 0), t0);
        let a = q.pop().unwrap();
        q.add_unschedulable(&a, t0);
        let later = t0 + Duration::from_secs(2);
        let mut changed = (*pod("a", 0)).clone();
        changed.metadata.labels = Some([("x".to_owned(), "y".to_owned())].into());
        q.add_or_update("a", Arc::new(changed), later);
        assert_eq!(names(&mut q), ["a"]);
    }

    #[test]
    fn deleted_and_bound_pods_leave() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new();
        for k in ["a", "b", "c"] {
            q.add_or_update(k, pod(k, 0), t0);
        }
        q.delete("b");
        let a = q.pop().unwrap();
        q.done(&a.key);
        let c = q.pop().unwrap();
        q.delete(&c.key);
        // Deleted while in flight: the failure does not bring it back.
        q.add_unschedulable(&c, t0);
        assert!(q.is_empty(), "{:?}", q.counts());
        // A lost bind brings a pod back after its back-off.
        q.requeue_backoff(a, t0);
        assert_eq!(q.counts().backoff, 1);
        q.flush(t0 + Duration::from_secs(1));
        assert_eq!(names(&mut q), ["a"]);
    }
}
