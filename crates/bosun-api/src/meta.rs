//! Object metadata helpers, on objects as JSON and on the `k8s-openapi` types: metadata
//! fields, finalizers, the resourceVersion, owner references (the controller of an object)
//! and status conditions, each as Kubernetes' apimachinery defines it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Map, Value, json};

/// `metadata.<field>` of an object as a string; "" when absent or not a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.finalizers` of an object (the strings among them).
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.resourceVersion` (creating `metadata` when absent); nothing for a value
/// that is not an object.
pub fn set_resource_version(obj: &mut Value, rv: i64) {
    if let Some(o) = obj.as_object_mut() {
        let meta = o
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            m.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
    }
}

/// A time as Kubernetes writes `metav1.Time` (RFC 3339, whole seconds, UTC).
pub fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The current time as Kubernetes writes `metav1.Time`.
pub fn now_rfc3339() -> String {
    rfc3339(jiff::Timestamp::now())
}

/// The owner reference that is the object's controller (`controller: true`), as
/// apimachinery's `GetControllerOf`; at most one owner may be the controller.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller owner reference of an object as JSON (see [`controller_of`]).
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// An owner reference naming `owner` (kind, apiVersion, name and uid from the object) as its
/// controller, as a controller sets on the objects it creates (`NewControllerRef`).
pub fn controller_ref_to(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta_str(owner, "name"),
        "uid": meta_str(owner, "uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The status condition of this type, if the object has one.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Sets (or replaces) a status condition with the current time as its
/// `lastTransitionTime`, creating `status.conditions` when absent. Empty `reason` and
/// `message` are left out.
pub fn set_condition(obj: &mut Value, type_: &str, status: &str, reason: &str, message: &str) {
    let now = now_rfc3339();
    let Some(o) = obj.as_object_mut() else { return };
    let st = o.entry("status").or_insert_with(|| json!({}));
    let Some(st) = st.as_object_mut() else { return };
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    let Some(conds) = conds.as_array_mut() else {
        return;
    };
    let mut c =
        json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if !reason.is_empty() {
        c["reason"] = json!(reason);
    }
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    match conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
    {
        Some(existing) => *existing = c,
        None => conds.push(c),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_fields() {
        let o = json!({"metadata": {"name": "a", "uid": 7, "finalizers": ["x", 1, "y"]}});
        assert_eq!(meta_str(&o, "name"), "a");
        assert_eq!(meta_str(&o, "uid"), "", "not a string");
        assert_eq!(meta_str(&json!("s"), "name"), "");
        assert_eq!(finalizers(&o), ["x", "y"]);
        assert!(finalizers(&json!({})).is_empty());
        let mut v = json!({"kind": "Pod"});
        set_resource_version(&mut v, 12);
        assert_eq!(
            v,
            json!({"kind": "Pod", "metadata": {"resourceVersion": "12"}})
        );
        let mut s = json!("not an object");
        set_resource_version(&mut s, 1);
        assert_eq!(s, json!("not an object"));
        let t: jiff::Timestamp = "2024-05-01T12:00:00.75Z".parse().unwrap();
        assert_eq!(rfc3339(t), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn the_controller_among_owners() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "uid": "u-rs"}});
        let pod = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u-n"},
            controller_ref_to(&rs),
        ]}});
        let c = controller_ref(&pod).unwrap();
        assert_eq!(
            (c["kind"].as_str(), c["uid"].as_str()),
            (Some("ReplicaSet"), Some("u-rs"))
        );
        assert_eq!(c["blockOwnerDeletion"], true);
        assert!(controller_ref(&json!({"metadata": {}})).is_none());
        let meta: ObjectMeta = serde_json::from_value(pod["metadata"].clone()).unwrap();
        assert_eq!(controller_of(&meta).map(|r| r.name.as_str()), Some("web-1"));
        assert!(controller_of(&ObjectMeta::default()).is_none());
    }

    #[test]
    fn conditions_are_set_once_per_type() {
        let mut pod = json!({"metadata": {"name": "p"}});
        set_condition(
            &mut pod,
            "PodScheduled",
            "False",
            "Unschedulable",
            "no nodes",
        );
        set_condition(&mut pod, "Ready", "False", "", "");
        set_condition(&mut pod, "PodScheduled", "True", "", "");
        let conds = pod["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 2);
        let s = condition(&pod, "PodScheduled").unwrap();
        assert_eq!(s["status"], "True");
        assert!(s.get("reason").is_none() && s.get("message").is_none());
        assert!(s["lastTransitionTime"].as_str().unwrap().ends_with('Z'));
        assert_eq!(s["lastProbeTime"], Value::Null);
        assert!(condition(&pod, "Initialized").is_none());
        let mut odd = json!({"status": {"conditions": "none"}});
        set_condition(&mut odd, "Ready", "True", "", "");
        assert_eq!(odd, json!({"status": {"conditions": "none"}}), "left alone");
    }
}
