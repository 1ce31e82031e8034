//! Pod and ownership helpers shared by the controllers.
//!
//! Reproduces `IsPodReady`, `GetPodReadyCondition` and `IsPodAvailable` of
//! `pkg/api/v1/pod/util.go`, `IsPodActive` of `pkg/controller/controller_utils.go`,
//! `GetControllerOf`/`IsControlledBy`/`NewControllerRef` of apimachinery's
//! `controller_ref.go`, the decision of `BaseControllerRefManager.ClaimObject`
//! (`controller_ref_manager.go`) with the patches its adopt and release send, and
//! `GetDeletionCostFromPodAnnotations`.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

/// The annotation that orders pods for deletion on scale-down (lower cost goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The Ready condition of a pod, if it has one.
pub fn pod_ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// `IsPodReady`: the pod's Ready condition is True.
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod_ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// `IsPodAvailable`: ready, and ready for longer than `min_ready_seconds` at `now`
/// (at once when `min_ready_seconds` is 0).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = pod_ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds == 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => {
            let min_ready = SignedDuration::from_secs(i64::from(min_ready_seconds));
            // Kubernetes: LastTransitionTime.Add(minReadySeconds).Before(now).
            t.0.checked_add(min_ready)
                .is_ok_and(|ready_at| ready_at < now)
        }
        None => false,
    }
}

/// The pod's phase, "" when it has none.
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// `IsPodActive`: not Succeeded, not Failed, and not being deleted.
pub fn is_pod_active(pod: &Pod) -> bool {
    let phase = phase(pod);
    phase != "Succeeded" && phase != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// The node the pod is bound to, "" when unscheduled.
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// `GetDeletionCostFromPodAnnotations`: the pod-deletion-cost annotation, 0 when absent
/// or not a canonical int32 ("+1" and "01" are invalid and count as 0).
pub fn deletion_cost(pod: &Pod) -> i32 {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
    else {
        return 0;
    };
    let valid_first = match value.as_bytes().first() {
        Some(b'-') => true,
        Some(b'0') => value == "0",
        Some(b'1'..=b'9') => true,
        _ => false,
    };
    if !valid_first {
        return 0;
    }
    value.parse::<i32>().unwrap_or(0)
}

/// `GetControllerOf`: the owner reference with `controller: true`.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// `IsControlledBy`: the controller reference points at `owner_uid`.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// `NewControllerRef`: a controller reference that blocks the owner's foreground deletion.
pub fn new_controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with an object its selector may cover (`ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still matching: part of the controller's set.
    Owned,
    /// An orphan that matches: patch a controller reference onto it
    /// ([`adopt_patch`]); on success it is part of the set. Kubernetes first re-reads the
    /// owner from the apiserver, once per sync, and adopts nothing if it is gone or being
    /// deleted (`RecheckDeletionTimestamp`), since the cache may be behind.
    Adopt,
    /// Ours but no longer matching: strip our reference ([`release_patch`]).
    Release,
    /// Someone else's, or not ours to take: leave it alone.
    Ignore,
}

/// The decision of `BaseControllerRefManager.ClaimObject` for one object.
///
/// `controller` is the owner's metadata (uid, namespace, deletion timestamp); `matches` is
/// whether the object passes the owner's selector (and any extra filter).
pub fn claim(controller: &ObjectMeta, object: &ObjectMeta, matches: bool) -> Claim {
    let controller_uid = controller.uid.as_deref().unwrap_or("");
    let controller_deleting = controller.deletion_timestamp.is_some();
    if let Some(r) = controller_of(object) {
        if r.uid != controller_uid {
            return Claim::Ignore;
        }
        if matches {
            // Claiming what we already own takes no action, so it is allowed while the
            // controller is being deleted.
            return Claim::Owned;
        }
        if controller_deleting {
            return Claim::Ignore;
        }
        return Claim::Release;
    }
    if controller_deleting || !matches || object.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    let ns = controller.namespace.as_deref().unwrap_or("");
    if !ns.is_empty() && Some(ns) != object.namespace.as_deref() {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// The strategic merge patch Kubernetes sends to adopt an object (`ownerRefControllerPatch`):
/// the object's uid guards against patching a recreated namesake.
pub fn adopt_patch(owner_ref: &OwnerReference, object_uid: &str) -> Value {
    json!({
        "metadata": {
            "ownerReferences": [owner_ref],
            "uid": object_uid,
        }
    })
}

/// The strategic merge patch Kubernetes sends to release an object
/// (`GenerateDeleteOwnerRefStrategicMergeBytes`).
pub fn release_patch(owner_uid: &str, object_uid: &str) -> Value {
    json!({
        "metadata": {
            "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
            "uid": object_uid,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ts;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_pod(name: &str, ready_since: Option<i64>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: ready_since.map(|s| Time(ts(s))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    // pkg/api/v1/pod/util_test.go TestIsPodAvailable.
    #[test]
    fn pod_availability_follows_min_ready_seconds() {
        let now = ts(1_000);
        let not_ready = Pod::default();
        assert!(!is_pod_available(&not_ready, 0, now));
        assert!(is_pod_available(&ready_pod("a", None), 0, now));
        assert!(!is_pod_available(&ready_pod("a", Some(1_000)), 1, now));
        assert!(is_pod_available(&ready_pod("a", Some(1_000 - 2)), 1, now));
        // Exactly minReadySeconds ago is not yet available (Before, not !After).
        assert!(!is_pod_available(&ready_pod("a", Some(999)), 1, now));
    }

    #[test]
    fn active_pods_exclude_terminal_and_deleting() {
        let mut p = ready_pod("a", None);
        assert!(is_pod_active(&p));
        p.metadata.deletion_timestamp = Some(Time(ts(1)));
        assert!(!is_pod_active(&p));
        for phase in ["Succeeded", "Failed"] {
            let mut p = ready_pod("a", None);
            p.status.as_mut().expect("status").phase = Some(phase.into());
            assert!(!is_pod_active(&p));
        }
    }

    #[test]
    fn deletion_cost_parses_like_kubernetes() {
        let with = |v: &str| {
            let mut p = Pod::default();
            p.metadata.annotations = Some([(POD_DELETION_COST.to_string(), v.to_string())].into());
            deletion_cost(&p)
        };
        assert_eq!(deletion_cost(&Pod::default()), 0);
        assert_eq!(with("10"), 10);
        assert_eq!(with("-7"), -7);
        assert_eq!(with("0"), 0);
        assert_eq!(with("+10"), 0);
        assert_eq!(with("010"), 0);
        assert_eq!(with("99999999999"), 0);
        assert_eq!(with(""), 0);
    }

    fn meta(uid: &str, ns: &str, owner: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            uid: Some(uid.into()),
            namespace: Some(ns.into()),
            owner_references: owner.map(|o| {
                vec![OwnerReference {
                    uid: o.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    // controller_ref_manager_test.go TestClaimPods, as decisions.
    #[test]
    fn claim_decisions() {
        let rs = meta("rs", "ns", None);
        assert_eq!(claim(&rs, &meta("p", "ns", None), true), Claim::Adopt);
        assert_eq!(claim(&rs, &meta("p", "ns", None), false), Claim::Ignore);
        assert_eq!(claim(&rs, &meta("p", "other", None), true), Claim::Ignore);
        assert_eq!(claim(&rs, &meta("p", "ns", Some("rs")), true), Claim::Owned);
        assert_eq!(
            claim(&rs, &meta("p", "ns", Some("rs")), false),
            Claim::Release
        );
        assert_eq!(claim(&rs, &meta("p", "ns", Some("x")), true), Claim::Ignore);
        let mut deleting_pod = meta("p", "ns", None);
        deleting_pod.deletion_timestamp = Some(Time(ts(1)));
        assert_eq!(claim(&rs, &deleting_pod, true), Claim::Ignore);
        let mut deleting_rs = rs.clone();
        deleting_rs.deletion_timestamp = Some(Time(ts(1)));
        assert_eq!(
            claim(&deleting_rs, &meta("p", "ns", None), true),
            Claim::Ignore
        );
        assert_eq!(
            claim(&deleting_rs, &meta("p", "ns", Some("rs")), true),
            Claim::Owned
        );
        assert_eq!(
            claim(&deleting_rs, &meta("p", "ns", Some("rs")), false),
            Claim::Ignore
        );
    }

    #[test]
    fn adopt_and_release_patches() {
        let owner = ObjectMeta {
            name: Some("web".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let r = new_controller_ref("apps/v1", "ReplicaSet", &owner);
        assert_eq!(
            adopt_patch(&r, "p1"),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "web", "uid": "u1", "controller": true, "blockOwnerDeletion": true}], "uid": "p1"}})
        );
        assert_eq!(
            release_patch("u1", "p1"),
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}], "uid": "p1"}})
        );
    }
}
