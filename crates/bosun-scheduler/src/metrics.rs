//! The scheduler's metrics, with kube-scheduler's names (pkg/scheduler/metrics).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::queue::QueueCounts;

type Labels = Vec<(&'static str, &'static str)>;

/// The scheduler's metrics; cheap to clone (the metrics are shared).
#[derive(Debug, Clone)]
pub struct Metrics {
    attempts: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    e2e: Histogram,
    binding: Histogram,
    events_dropped: Counter,
}

/// The outcome of one scheduling attempt (`scheduler_schedule_attempts_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Placed and bound.
    Scheduled,
    /// No node fits.
    Unschedulable,
    /// Something failed (a bind, a pod that cannot be read).
    Error,
}

impl Attempt {
    fn labels(self) -> Labels {
        let result = match self {
            Attempt::Scheduled => "scheduled",
            Attempt::Unschedulable => "unschedulable",
            Attempt::Error => "error",
        };
        vec![("result", result)]
    }
}

impl Metrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            attempts: Family::default(),
            pending: Family::default(),
            // 1 ms to about 16 s, as kube-scheduler's buckets.
            e2e: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            binding: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            events_dropped: Counter::default(),
        };
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            m.attempts.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.",
            m.pending.clone(),
        );
        registry.register(
            "scheduler_e2e_scheduling_duration_seconds",
            "E2e scheduling latency in seconds (scheduling algorithm + binding).",
            m.e2e.clone(),
        );
        registry.register(
            "scheduler_binding_duration_seconds",
            "Binding latency in seconds.",
            m.binding.clone(),
        );
        registry.register(
            "scheduler_events_dropped",
            "Events not recorded because the event queue was full.",
            m.events_dropped.clone(),
        );
        m
    }

    /// Counts one attempt.
    pub fn attempt(&self, result: Attempt) {
        self.attempts.get_or_create(&result.labels()).inc();
    }

    /// The number of attempts with `result` so far.
    pub fn attempts(&self, result: Attempt) -> u64 {
        self.attempts.get_or_create(&result.labels()).get()
    }

    /// Sets the pending-pods gauges.
    pub fn pending(&self, c: QueueCounts) {
        for (queue, n) in [
            ("active", c.active),
            ("backoff", c.backoff),
            ("unschedulable", c.unschedulable),
        ] {
            self.pending
                .get_or_create(&vec![("queue", queue)])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records an attempt's duration from pop to bound.
    pub fn e2e(&self, seconds: f64) {
        self.e2e.observe(seconds);
    }

    /// Records a bind's duration.
    pub fn binding(&self, seconds: f64) {
        self.binding.observe(seconds);
    }

    /// Counts an event dropped because the recorder's queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }
}
