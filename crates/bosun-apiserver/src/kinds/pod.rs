//! Pods: a fresh status on create (Pending, with the QoS class), graceful deletion once a
//! pod is on a node, and the delete answered with the pod.

use bosun_api::field::FieldError;
use bosun_api::resources::{PODS, Resource};
use jiff::Timestamp;
use k8s_openapi::api::core::v1 as api;
use k8s_pb::api::core::v1 as pb;
use prost::Message;
use serde_json::{Value, json};

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{OBJECT_META, POD_SPEC, POD_STATUS, Schema, field};

/// The pod kind.
#[derive(Debug)]
pub struct Pod;

static MERGE: Schema = Schema::new(&[
    field("metadata", &OBJECT_META),
    field("spec", &POD_SPEC),
    field("status", &POD_STATUS),
]);

impl Strategy for Pod {
    type Object = api::Pod;

    fn resource(&self) -> &'static Resource {
        &PODS
    }

    fn default(&self, obj: &mut api::Pod) {
        v::default_pod(obj);
    }

    fn validate(&self, obj: &api::Pod) -> Vec<FieldError> {
        v::validate_pod(obj)
    }

    fn validate_update(&self, new: &api::Pod, old: &api::Pod) -> Vec<FieldError> {
        v::validate_pod_update(new, old)
    }

    /// The status of a new pod is the apiserver's, not the client's (as in Kubernetes).
    fn prepare_for_create(&self, obj: &mut Value) {
        let qos = qos_class(obj);
        if let Some(o) = obj.as_object_mut() {
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
        }
    }

    fn table_columns(&self) -> &'static [Column] {
        &table::POD_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::pod_cells(obj, now)
    }

    fn table_row_conditions(&self, obj: &Value) -> Option<Value> {
        table::pod_row_conditions(obj)
    }

    fn merge_schema(&self) -> &'static Schema {
        &MERGE
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        protobuf::pod(head, &pb::Pod::decode(raw)?)
    }

    /// 0 when the pod never ran on a node or already finished; otherwise the requested
    /// grace, else the pod's `terminationGracePeriodSeconds`, else 30 s. Its kubelet then
    /// deletes it with grace 0.
    fn deletion_grace(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let phase = pod
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
            return 0;
        }
        let g = requested
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        g.max(0)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}

/// A pod's QoS class from its containers' requests and limits.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        let has = |m: Option<&serde_json::Map<String, Value>>, k: &str| {
            m.is_some_and(|m| m.contains_key(k))
        };
        for r in ["cpu", "memory"] {
            if has(req, r) || has(lim, r) {
                any = true;
            }
            let (rq, lm) = (req.and_then(|m| m.get(r)), lim.and_then(|m| m.get(r)));
            if lm.is_none() || (rq.is_some() && rq != lm) {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes() {
        let be = json!({"spec":{"containers":[{"name":"a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g =
            json!({"spec":{"containers":[{"resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec":{"containers":[{"resources":{"requests":{"cpu":"1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn grace_only_for_pods_on_a_node_still_running() {
        let on_node = |phase: &str| {
            json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 12},
                "status": {"phase": phase}})
        };
        assert_eq!(Pod.deletion_grace(&json!({"spec": {}}), Some(5)), 0);
        assert_eq!(Pod.deletion_grace(&on_node("Running"), None), 12);
        assert_eq!(Pod.deletion_grace(&on_node("Running"), Some(3)), 3);
        assert_eq!(Pod.deletion_grace(&on_node("Running"), Some(-4)), 0);
        assert_eq!(Pod.deletion_grace(&on_node("Succeeded"), None), 0);
        assert_eq!(Pod.deletion_grace(&on_node("Failed"), Some(9)), 0);
        let bare = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        assert_eq!(Pod.deletion_grace(&bare, None), 30);
    }

    #[test]
    fn a_created_pod_starts_pending_whatever_the_client_sent() {
        let mut p = json!({"spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1"}});
        Pod.prepare_for_create(&mut p);
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }
}
