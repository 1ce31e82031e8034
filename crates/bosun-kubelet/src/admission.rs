//! Admission: before it runs a pod bound to its node, the kubelet checks that the pod fits
//! beside the pods it already runs (its predicate admit handler: pods, CPU and memory
//! requests against the node's allocatable). A pod that does not fit is rejected for good:
//! phase Failed, reason `OutOf<resource>` (see [`crate::status::rejected`]).
//!
//! Not checked here (the scheduler's filters do): host ports, node selector and affinity,
//! taints; the kubelet's own checks of those come with the CRI runtime.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::quantity::{parse_milli, parse_units};

/// What a node offers to pods: its allocatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    /// Pods it may run (`--max-pods`).
    pub pods: i64,
    /// CPU in millicores.
    pub cpu_milli: i128,
    /// Memory in bytes.
    pub memory: i128,
}

/// A pod's requests, as `resourcehelper.PodRequests` computes them: the sum over its
/// containers, or the largest init container's if larger, plus the pod overhead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requests {
    /// CPU in millicores.
    pub cpu_milli: i128,
    /// Memory in bytes.
    pub memory: i128,
}

fn container_requests(c: &Container) -> Requests {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let get = |k: &str, parse: fn(&str) -> Option<i128>| {
        req.and_then(|r| r.get(k))
            .and_then(|q| parse(&q.0))
            .unwrap_or(0)
            .max(0)
    };
    Requests {
        cpu_milli: get("cpu", parse_milli),
        memory: get("memory", parse_units),
    }
}

/// The requests of `pod`.
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let mut sum = Requests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        sum.cpu_milli += r.cpu_milli;
        sum.memory += r.memory;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        sum.cpu_milli = sum.cpu_milli.max(r.cpu_milli);
        sum.memory = sum.memory.max(r.memory);
    }
    if let Some(o) = spec.overhead.as_ref() {
        sum.cpu_milli += o
            .get("cpu")
            .and_then(|q| parse_milli(&q.0))
            .unwrap_or(0)
            .max(0);
        sum.memory += o
            .get("memory")
            .and_then(|q| parse_units(&q.0))
            .unwrap_or(0)
            .max(0);
    }
    sum
}

/// The admission decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Admit,
    /// Refuse it: the pod's status reason and the message (without `Pod was rejected: `).
    Reject {
        /// `OutOfpods`, `OutOfcpu`, `OutOfmemory`.
        reason: String,
        /// `Node didn't have enough resource: pods, requested: 1, used: 110, capacity: 110`.
        message: String,
    },
}

fn insufficient(resource: &str, requested: i128, used: i128, capacity: i128) -> Decision {
    Decision::Reject {
        reason: format!("OutOf{resource}"),
        message: format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    }
}

/// Whether the kubelet already accepted `pod` in an earlier life (a restarted kubelet finds
/// it with a status it wrote): it is not admitted again.
pub fn was_admitted(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .is_some_and(|s| s.host_ip.as_deref().is_some_and(|h| !h.is_empty()))
}

/// kubelet's resource admission: `pod` against the active pods the node already runs
/// (`running`: the requests of those admitted and not finished). Pods first, then CPU, then
/// memory, as the scheduler's fit check reports them; the first shortfall is the reason.
pub fn admit(
    pod: &Pod,
    running: impl IntoIterator<Item = Requests>,
    node: &Allocatable,
) -> Decision {
    let mut count = 0i128;
    let mut used = Requests::default();
    for r in running {
        count += 1;
        used.cpu_milli += r.cpu_milli;
        used.memory += r.memory;
    }
    if count + 1 > i128::from(node.pods) {
        return insufficient("pods", 1, count, i128::from(node.pods));
    }
    let want = pod_requests(pod);
    if want.cpu_milli > 0 && used.cpu_milli + want.cpu_milli > node.cpu_milli {
        return insufficient("cpu", want.cpu_milli, used.cpu_milli, node.cpu_milli);
    }
    if want.memory > 0 && used.memory + want.memory > node.memory {
        return insufficient("memory", want.memory, used.memory, node.memory);
    }
    Decision::Admit
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn with_requests(cpu: &str, mem: &str) -> Pod {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}))
    }

    const NODE: Allocatable = Allocatable {
        pods: 3,
        cpu_milli: 2000,
        memory: 4 << 30,
    };

    #[test]
    fn requests_sum_containers_and_take_the_largest_init_container() {
        let p = pod(json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [
                {"name": "i", "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}],
            "overhead": {"cpu": "10m"}}}));
        assert_eq!(
            pod_requests(&p),
            Requests {
                cpu_milli: 510,
                memory: 1 << 30
            }
        );
        assert_eq!(pod_requests(&pod(json!({}))), Requests::default());
        // A request that does not parse counts as none rather than failing admission.
        assert_eq!(
            pod_requests(&with_requests("lots", "-1")),
            Requests::default()
        );
    }

    #[test]
    fn the_pod_count_is_checked_first_with_kubelets_words() {
        let others = [
            with_requests("1", "1Gi"),
            with_requests("1", "1Gi"),
            with_requests("0", "0"),
        ];
        assert_eq!(
            admit(
                &with_requests("5", "1Gi"),
                others.iter().map(pod_requests),
                &NODE
            ),
            Decision::Reject {
                reason: "OutOfpods".into(),
                message:
                    "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
                        .into(),
            }
        );
        assert_eq!(
            admit(
                &with_requests("0", "0"),
                others[..2].iter().map(pod_requests),
                &NODE
            ),
            Decision::Admit
        );
    }

    #[test]
    fn cpu_then_memory() {
        let others = [with_requests("1500m", "3Gi")];
        assert_eq!(
            admit(&with_requests("600m", "2Gi"), others.iter().map(pod_requests), &NODE),
            Decision::Reject {
                reason: "OutOfcpu".into(),
                message: "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000".into(),
            }
        );
        let Decision::Reject { reason, message } = admit(
            &with_requests("500m", "2Gi"),
            others.iter().map(pod_requests),
            &NODE,
        ) else {
            panic!("fits?")
        };
        assert_eq!(reason, "OutOfmemory");
        assert_eq!(
            message,
            format!(
                "Node didn't have enough resource: memory, requested: {}, used: {}, capacity: {}",
                2u64 << 30,
                3u64 << 30,
                4u64 << 30
            )
        );
        assert_eq!(
            admit(
                &with_requests("500m", "1Gi"),
                others.iter().map(pod_requests),
                &NODE
            ),
            Decision::Admit
        );
    }

    #[test]
    fn a_pod_the_kubelet_already_ran_is_not_admitted_again() {
        assert!(!was_admitted(&pod(json!({"status": {"phase": "Pending"}}))));
        assert!(was_admitted(&pod(
            json!({"status": {"phase": "Running", "hostIP": "127.0.0.1"}})
        )));
    }
}
