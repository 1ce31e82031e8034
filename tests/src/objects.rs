//! What the tests read off Pods and ReplicaSets.

use bosun_api_client::k8s_openapi::api::apps::v1::ReplicaSet;
use bosun_api_client::k8s_openapi::api::core::v1::Pod;

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
