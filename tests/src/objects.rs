//! What the tests read off Pods and ReplicaSets.

use bosun_api_client::k8s_openapi::api::apps::v1::ReplicaSet;
use bosun_api_client::k8s_openapi::api::core::v1::{Node, Pod};

/// The image of the pod's first container ("" without one).
pub fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The node the pod is bound to, if any.
pub fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

/// The ReplicaSet's spec.replicas (0 when unset).
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A node's conditions and taints on one line, for a test that timed out waiting for pods
/// (so that DiskPressure or an unreachable node is named rather than a bare timeout):
/// `node e2e: Ready=True, DiskPressure=True (KubeletHasDiskPressure: ...); taints:
/// node.kubernetes.io/disk-pressure:NoSchedule`.
pub fn node_summary(n: &Node) -> String {
    let name = n.metadata.name.clone().unwrap_or_default();
    let conditions: Vec<String> = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| {
            let why = match (c.reason.as_deref(), c.message.as_deref()) {
                (Some(r), Some(m)) if !m.is_empty() => format!(" ({r}: {m})"),
                (Some(r), _) => format!(" ({r})"),
                (None, Some(m)) => format!(" ({m})"),
                (None, None) => String::new(),
            };
            format!("{}={}{why}", c.type_, c.status)
        })
        .collect();
    let taints: Vec<String> = n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| match t.value.as_deref() {
            Some(v) if !v.is_empty() => format!("{}={v}:{}", t.key, t.effect),
            _ => format!("{}:{}", t.key, t.effect),
        })
        .collect();
    let unschedulable = n
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    format!(
        "node {name}: {}; taints: {}{}",
        if conditions.is_empty() {
            "no conditions".to_string()
        } else {
            conditions.join(", ")
        },
        if taints.is_empty() {
            "none".to_string()
        } else {
            taints.join(", ")
        },
        if unschedulable { "; unschedulable" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_summary_names_pressure_and_taints() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e2e"},
            "spec": {"taints": [{"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure",
                 "message": "kubelet has disk pressure"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            node_summary(&n),
            "node e2e: Ready=True (KubeletReady), DiskPressure=True (KubeletHasDiskPressure: kubelet has disk pressure); taints: node.kubernetes.io/disk-pressure:NoSchedule"
        );
        assert_eq!(
            node_summary(&Node::default()),
            "node : no conditions; taints: none"
        );
    }
}
