//! The kubelet's metrics, served on `/metrics` (one set for all the nodes a process hosts).

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
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
        let ops = &*RUNTIME_OPERATIONS;
        r.register(
            "runtime_operations",
            "Cumulative number of runtime operations by operation type",
            ops.total.clone(),
        );
        r.register(
            "runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type",
            ops.duration.clone(),
        );
        r.register(
            "runtime_operations_errors",
            "Cumulative number of runtime operation errors by operation type",
            ops.errors.clone(),
        );
        m
    }
}

/// `operation_type="run_podsandbox"`, ... .
type OperationLabels = [(&'static str, String); 1];

/// Histogram constructor of `kubelet_runtime_operations_duration_seconds`: Kubernetes'
/// buckets (`ExponentialBuckets(.005, 2.5, 14)`).
fn operation_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.5, 14))
}

/// The CRI calls of this process, as Kubernetes' instrumented runtime service counts them:
/// one set for the whole process (Kubernetes' are global too), so that the CRI connection
/// observes them without a handle.
struct RuntimeOperations {
    total: Family<OperationLabels, Counter>,
    duration: Family<OperationLabels, Histogram, fn() -> Histogram>,
    errors: Family<OperationLabels, Counter>,
}

static RUNTIME_OPERATIONS: LazyLock<RuntimeOperations> = LazyLock::new(|| RuntimeOperations {
    total: Family::default(),
    duration: Family::new_with_constructor(operation_histogram),
    errors: Family::default(),
});

/// Kubernetes' `operation_type` of a CRI call from its gRPC path
/// (`/runtime.v1.RuntimeService/RunPodSandbox` -> `run_podsandbox`, `ListContainers` ->
/// `list_containers`); anything that is not a CRI v1 call is `other` (the label set stays
/// bounded).
pub fn operation_type(path: &str) -> String {
    let Some(method) = path
        .strip_prefix("/runtime.v1.RuntimeService/")
        .or_else(|| path.strip_prefix("/runtime.v1.ImageService/"))
        .filter(|m| !m.is_empty() && m.len() <= 64 && m.chars().all(|c| c.is_ascii_alphanumeric()))
    else {
        return "other".into();
    };
    let mut snake = String::with_capacity(method.len() + 8);
    for (i, c) in method.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake.replace("pod_sandbox", "podsandbox")
}

/// Records one CRI call: its duration, and an error when it failed.
pub fn observe_runtime_operation(operation: String, took: Duration, failed: bool) {
    let ops = &*RUNTIME_OPERATIONS;
    let labels = [("operation_type", operation)];
    ops.total.get_or_create(&labels).inc();
    ops.duration
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
    if failed {
        ops.errors.get_or_create(&labels).inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn operation_types_are_kubernetes_names() {
        for (path, want) in [
            ("/runtime.v1.RuntimeService/RunPodSandbox", "run_podsandbox"),
            (
                "/runtime.v1.RuntimeService/PodSandboxStatus",
                "podsandbox_status",
            ),
            (
                "/runtime.v1.RuntimeService/ListPodSandbox",
                "list_podsandbox",
            ),
            (
                "/runtime.v1.RuntimeService/CreateContainer",
                "create_container",
            ),
            (
                "/runtime.v1.RuntimeService/StartContainer",
                "start_container",
            ),
            (
                "/runtime.v1.RuntimeService/ListContainers",
                "list_containers",
            ),
            ("/runtime.v1.RuntimeService/Version", "version"),
            ("/runtime.v1.ImageService/PullImage", "pull_image"),
            ("/runtime.v1.ImageService/ImageFsInfo", "image_fs_info"),
            ("/runtime.v1.ImageService/ImageStatus", "image_status"),
            ("/other.Service/Call", "other"),
            ("/runtime.v1.RuntimeService/", "other"),
            ("/runtime.v1.RuntimeService/a/b", "other"),
        ] {
            assert_eq!(operation_type(path), want, "{path}");
        }
    }

    #[test]
    fn runtime_operations_are_exposed() {
        let mut registry = Registry::default();
        let _m = Metrics::new(&mut registry);
        observe_runtime_operation("run_podsandbox".into(), Duration::from_millis(300), false);
        observe_runtime_operation("pull_image".into(), Duration::from_millis(1), true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "kubelet_runtime_operations_duration_seconds_sum{operation_type=\"run_podsandbox\"} 0.3"
            ),
            "{text}"
        );
        assert!(
            text.contains("kubelet_runtime_operations_errors_total{operation_type=\"pull_image\"}"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"}"),
            "{text}"
        );
    }
}
