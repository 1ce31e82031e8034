//! The kubelet's metrics, served on `/metrics` (one set for all the nodes a process hosts).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Counters and gauges the kubelet's tasks update.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Nodes registered (created or found).
    pub nodes_registered: Gauge,
    /// Lease renewals that succeeded.
    pub lease_renewals: Counter,
    /// Lease renewals that failed (retried).
    pub lease_errors: Counter,
    /// Node status writes.
    pub node_status_writes: Counter,
    /// Pod status writes.
    pub pod_status_writes: Counter,
    /// Pods refused at admission.
    pub pods_rejected: Counter,
    /// Pods deleted after they stopped.
    pub pods_deleted: Counter,
    /// Pods the runtime runs.
    pub running_pods: Gauge,
    /// Pod syncs that failed (retried with back-off).
    pub sync_errors: Counter,
    /// Seconds from a pod's creation to the kubelet's first status write that shows it
    /// running (`kubelet_pod_start_duration_seconds`).
    pub pod_start_seconds: Histogram,
}

impl Metrics {
    /// The metrics, registered in `registry` under Kubernetes-like names.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            nodes_registered: Gauge::default(),
            lease_renewals: Counter::default(),
            lease_errors: Counter::default(),
            node_status_writes: Counter::default(),
            pod_status_writes: Counter::default(),
            pods_rejected: Counter::default(),
            pods_deleted: Counter::default(),
            running_pods: Gauge::default(),
            sync_errors: Counter::default(),
            pod_start_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        };
        let r = registry.sub_registry_with_prefix("kubelet");
        let gauges = [
            (
                "registered_nodes",
                "Nodes this process registered",
                &m.nodes_registered,
            ),
            ("running_pods", "Pods the runtime runs", &m.running_pods),
        ];
        for (name, help, g) in gauges {
            r.register(name, help, g.clone());
        }
        let counters = [
            (
                "node_lease_renewals",
                "Node Lease renewals",
                &m.lease_renewals,
            ),
            (
                "node_lease_errors",
                "Node Lease renewals that failed",
                &m.lease_errors,
            ),
            (
                "node_status_writes",
                "Node status writes",
                &m.node_status_writes,
            ),
            (
                "pod_status_writes",
                "Pod status writes",
                &m.pod_status_writes,
            ),
            (
                "admission_rejections",
                "Pods rejected at admission",
                &m.pods_rejected,
            ),
            (
                "pods_deleted",
                "Pods deleted after they stopped",
                &m.pods_deleted,
            ),
            ("pod_sync_errors", "Pod syncs that failed", &m.sync_errors),
        ];
        for (name, help, c) in counters {
            r.register(name, help, c.clone());
        }
        r.register(
            "pod_start_duration_seconds",
            "Seconds from pod creation to the status write showing it running",
            m.pod_start_seconds.clone(),
        );
        m
    }
}
