//! The node lifecycle controller's decisions (`pkg/controller/nodelifecycle`,
//! `pkg/controller/tainteviction`, `pkg/controller/util/node`), as pure functions of the
//! objects seen and the time `now`:
//!
//! - [`observe`] (`tryUpdateNodeHealth`'s bookkeeping): when the controller last saw a node
//!   alive, by its own clock: a changed Ready condition or a renewed Lease in
//!   `kube-node-lease` counts as a probe. A controller that starts afresh counts every node
//!   as just probed, as Kubernetes does.
//! - [`stale_conditions`]: past the grace period (`--node-monitor-grace-period`, or
//!   `--node-startup-grace-period` for a node that never reported Ready), every condition the
//!   kubelet owns becomes Unknown (`NodeStatusUnknown`, "Kubelet stopped posting node
//!   status.").
//! - [`desired_taints`]: `doNoExecuteTaintingPass` and `doNoScheduleTaintingPass`: Ready
//!   False gives `node.kubernetes.io/not-ready`, Unknown `node.kubernetes.io/unreachable`,
//!   each as NoExecute and NoSchedule; pressure conditions and `spec.unschedulable` give
//!   their NoSchedule taints; Ready True removes them.
//! - [`pod_eviction`]: the taint eviction controller's decision for one pod on a node with
//!   NoExecute taints: delete now (a taint it does not tolerate), at the end of its shortest
//!   `tolerationSeconds`, never (tolerated forever), or cancel a pending deletion when the
//!   taints went away.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// `node.kubernetes.io/not-ready`: the node's Ready condition is False.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: the node's Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`: `spec.unschedulable`.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// `node.kubernetes.io/memory-pressure`.
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
/// `node.kubernetes.io/disk-pressure`.
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
/// `node.kubernetes.io/pid-pressure`.
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
/// `node.kubernetes.io/network-unavailable`.
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The conditions the kubelet owns and the controller marks Unknown when it goes silent.
pub const NODE_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The NoSchedule taints that follow a condition (`nodeConditionToTaintKeyStatusMap`).
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", TAINT_NOT_READY),
    ("Ready", "Unknown", TAINT_UNREACHABLE),
    ("MemoryPressure", "True", TAINT_MEMORY_PRESSURE),
    ("DiskPressure", "True", TAINT_DISK_PRESSURE),
    ("PIDPressure", "True", TAINT_PID_PRESSURE),
    ("NetworkUnavailable", "True", TAINT_NETWORK_UNAVAILABLE),
];

/// What the controller remembers of a node (`nodeHealthData`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// When the controller last saw the node alive, by its own clock.
    pub probe: Timestamp,
    /// The Ready condition last seen.
    pub ready: Option<NodeCondition>,
    /// The Lease's renewTime last seen.
    pub lease_renew: Option<Timestamp>,
}

/// A node's condition of this type.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The status of the node's Ready condition (`None` when it has none).
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// `tryUpdateNodeHealth`'s probe bookkeeping: the node's health after seeing `node` and its
/// `lease` at `now`. A changed Ready condition or a Lease renewed since the last look is a
/// probe; a node seen for the first time counts as probed now.
pub fn observe(
    prev: Option<&NodeHealth>,
    node: &Node,
    lease: Option<&Lease>,
    now: Timestamp,
) -> NodeHealth {
    let ready = condition(node, "Ready").cloned();
    let renew = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let Some(prev) = prev else {
        return NodeHealth {
            probe: now,
            ready,
            lease_renew: renew,
        };
    };
    let mut probe = prev.probe;
    if prev.ready != ready {
        probe = now;
    }
    let lease_renew = match (prev.lease_renew, renew) {
        (Some(old), Some(new)) if new > old => {
            probe = now;
            Some(new)
        }
        (None, Some(new)) => {
            probe = now;
            Some(new)
        }
        (old, _) => old,
    };
    NodeHealth {
        probe,
        ready,
        lease_renew,
    }
}

/// The grace period that applies to `node`: the startup one until it has reported Ready.
pub fn grace_period(
    node: &Node,
    monitor_grace: std::time::Duration,
    startup_grace: std::time::Duration,
) -> std::time::Duration {
    if condition(node, "Ready").is_some() {
        monitor_grace
    } else {
        startup_grace
    }
}

/// The node's conditions once it has been silent past `grace` since `health.probe`, or
/// `None` when it is not silent or they are Unknown already. Conditions that were never
/// posted are added as Unknown (`NodeStatusNeverUpdated`).
pub fn stale_conditions(
    node: &Node,
    health: &NodeHealth,
    grace: std::time::Duration,
    now: Timestamp,
) -> Option<Vec<NodeCondition>> {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    let deadline = health.probe.checked_add(grace).unwrap_or(Timestamp::MAX);
    if now <= deadline {
        return None;
    }
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in NODE_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                changed = true;
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
            }
            Some(c) if c.status != "Unknown" => {
                changed = true;
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

fn is_managed(t: &Taint) -> bool {
    (t.effect == "NoExecute" && (t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE))
        || (t.effect == "NoSchedule"
            && (t.key == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|c| c.2 == t.key)))
}

/// The node's taints as the controller wants them, or `None` when they already are:
/// the condition taints follow the conditions (NoExecute ones stamped `timeAdded = now`
/// when added), other taints are kept as they are.
pub fn desired_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut want: Vec<(&str, &str)> = Vec::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == status) {
            want.push((key, "NoSchedule"));
        }
    }
    if node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
    {
        want.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    match ready_status(node) {
        Some("False") => want.push((TAINT_NOT_READY, "NoExecute")),
        Some("Unknown") => want.push((TAINT_UNREACHABLE, "NoExecute")),
        _ => {}
    }
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed(t) || want.contains(&(t.key.as_str(), t.effect.as_str())))
        .cloned()
        .collect();
    for (key, effect) in want {
        if !out.iter().any(|t| t.key == key && t.effect == effect) {
            out.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: (effect == "NoExecute").then_some(Time(now)),
                value: None,
            });
        }
    }
    (out != current).then_some(out)
}

/// `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// A deletion the taint eviction controller has scheduled (`TimedWorker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// When it was scheduled.
    pub created: Timestamp,
    /// When the pod is to be deleted.
    pub fire: Timestamp,
}

/// The taint eviction controller's decision for one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Nothing to change.
    Keep,
    /// Delete the pod now ("Marking for deletion Pod ns/name").
    DeleteNow,
    /// Delete it at this time, unless its taints go first.
    Schedule(Scheduled),
    /// Its node's NoExecute taints went away: cancel the pending deletion ("Cancelling
    /// deletion of Pod ns/name").
    Cancel,
}

/// `processPodOnNode`: what to do with a pod whose node has these taints (of any effect;
/// only NoExecute ones count), given the deletion already scheduled for it.
pub fn pod_eviction(
    tolerations: &[Toleration],
    taints: &[Taint],
    scheduled: Option<&Scheduled>,
    now: Timestamp,
) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return if scheduled.is_some() {
            Eviction::Cancel
        } else {
            Eviction::Keep
        };
    }
    if scheduled.is_some_and(|s| s.fire <= now) {
        return Eviction::DeleteNow;
    }
    // `GetMatchingTolerations`: every taint needs a toleration.
    let mut used = Vec::new();
    for taint in no_execute {
        match tolerations.iter().find(|t| tolerates(t, taint)) {
            Some(t) => used.push(t),
            None => return Eviction::DeleteNow,
        }
    }
    // `getMinTolerationTime`: the shortest tolerationSeconds; none means forever.
    let mut min: Option<i64> = None;
    for t in &used {
        if let Some(s) = t.toleration_seconds {
            if s <= 0 {
                return Eviction::DeleteNow;
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    let Some(secs) = min else {
        return Eviction::Keep;
    };
    if scheduled.is_some() {
        // An earlier schedule stands (Kubernetes keeps the first timer).
        return Eviction::Keep;
    }
    let fire = now
        .checked_add(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MAX);
    Eviction::Schedule(Scheduled { created: now, fire })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testutil::ts;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    use std::time::Duration;

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: (!taints.is_empty()).then_some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        reason: Some("KubeletReady".into()),
                        last_heartbeat_time: Some(Time(ts(1))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(renew))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: secs,
            ..Default::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(40);

    #[test]
    fn a_renewed_lease_is_a_probe_a_silent_one_is_not() {
        let n = node(Some("True"), vec![]);
        let h = observe(None, &n, Some(&lease(100)), ts(100));
        assert_eq!(h.probe, ts(100));
        // Same lease, same condition: no probe.
        let h = observe(Some(&h), &n, Some(&lease(100)), ts(130));
        assert_eq!(h.probe, ts(100));
        // Renewed: probe now.
        let h = observe(Some(&h), &n, Some(&lease(125)), ts(135));
        assert_eq!(h.probe, ts(135));
        // An older renewTime (a stale cache) is no probe.
        let h2 = observe(Some(&h), &n, Some(&lease(110)), ts(150));
        assert_eq!((h2.probe, h2.lease_renew), (ts(135), Some(ts(125))));
        // A changed Ready condition is a probe.
        let h3 = observe(Some(&h), &node(Some("False"), vec![]), None, ts(160));
        assert_eq!(h3.probe, ts(160));
    }

    #[test]
    fn a_node_silent_past_the_grace_period_goes_unknown() {
        let n = node(Some("True"), vec![]);
        let h = observe(None, &n, Some(&lease(100)), ts(100));
        assert_eq!(stale_conditions(&n, &h, GRACE, ts(140)), None);
        let c = stale_conditions(&n, &h, GRACE, ts(141)).expect("stale");
        let ready = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(ready.last_transition_time, Some(Time(ts(141))));
        // The heartbeat stays the kubelet's.
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(1))));
        let never = c.iter().find(|c| c.type_ == "DiskPressure").unwrap();
        assert_eq!(
            (never.status.as_str(), never.reason.as_deref()),
            ("Unknown", Some("NodeStatusNeverUpdated"))
        );
        assert_eq!(c.len(), 4);
        // Already Unknown: nothing to write.
        let mut unknown = n.clone();
        unknown.status.as_mut().unwrap().conditions = Some(c);
        assert_eq!(stale_conditions(&unknown, &h, GRACE, ts(200)), None);
    }

    #[test]
    fn a_node_that_never_reported_gets_the_startup_grace() {
        let startup = Duration::from_secs(60);
        assert_eq!(grace_period(&node(None, vec![]), GRACE, startup), startup);
        assert_eq!(
            grace_period(&node(Some("True"), vec![]), GRACE, startup),
            GRACE
        );
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let other = taint("dedicated", "NoSchedule");
        let unknown = node(Some("Unknown"), vec![other.clone()]);
        let t = desired_taints(&unknown, ts(5)).expect("tainted");
        assert_eq!(t[0], other);
        assert!(t.contains(&taint(TAINT_UNREACHABLE, "NoSchedule")));
        let ne = t
            .iter()
            .find(|t| t.key == TAINT_UNREACHABLE && t.effect == "NoExecute")
            .unwrap();
        assert_eq!(ne.time_added, Some(Time(ts(5))));
        assert_eq!(t.len(), 3);
        // Applied, they stay (their timeAdded too).
        let tainted = node(Some("Unknown"), t);
        assert_eq!(desired_taints(&tainted, ts(9)), None);
        // Ready=False swaps unreachable for not-ready.
        let mut not_ready = tainted.clone();
        not_ready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        let t = desired_taints(&not_ready, ts(10)).unwrap();
        let keys: Vec<_> = t
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", "NoSchedule"),
                (TAINT_NOT_READY, "NoSchedule"),
                (TAINT_NOT_READY, "NoExecute"),
            ]
        );
        // Ready again: only the user's taint is left.
        let mut ready = tainted;
        ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert_eq!(desired_taints(&ready, ts(11)), Some(vec![other]));
        assert_eq!(desired_taints(&node(Some("True"), vec![]), ts(11)), None);
    }

    #[test]
    fn untolerated_noexecute_taints_evict_at_once() {
        let taints = [taint(TAINT_UNREACHABLE, "NoExecute")];
        assert_eq!(pod_eviction(&[], &taints, None, ts(0)), Eviction::DeleteNow);
        let other = [toleration(TAINT_NOT_READY, Some(300))];
        assert_eq!(
            pod_eviction(&other, &taints, None, ts(0)),
            Eviction::DeleteNow
        );
        // NoSchedule taints evict nothing.
        let ns = [taint(TAINT_UNREACHABLE, "NoSchedule")];
        assert_eq!(pod_eviction(&[], &ns, None, ts(0)), Eviction::Keep);
        // A zero or negative toleration is no toleration time at all.
        let zero = [toleration(TAINT_UNREACHABLE, Some(0))];
        assert_eq!(
            pod_eviction(&zero, &taints, None, ts(0)),
            Eviction::DeleteNow
        );
    }

    #[test]
    fn tolerated_taints_evict_after_the_shortest_toleration() {
        let taints = [
            taint(TAINT_UNREACHABLE, "NoExecute"),
            taint("maintenance", "NoExecute"),
        ];
        let tol = [
            toleration(TAINT_UNREACHABLE, Some(300)),
            toleration("maintenance", Some(60)),
        ];
        let s = Scheduled {
            created: ts(10),
            fire: ts(70),
        };
        assert_eq!(
            pod_eviction(&tol, &taints, None, ts(10)),
            Eviction::Schedule(s)
        );
        assert_eq!(
            pod_eviction(&tol, &taints, Some(&s), ts(69)),
            Eviction::Keep
        );
        assert_eq!(
            pod_eviction(&tol, &taints, Some(&s), ts(70)),
            Eviction::DeleteNow
        );
        // The taints went: cancelled.
        assert_eq!(pod_eviction(&tol, &[], Some(&s), ts(50)), Eviction::Cancel);
        assert_eq!(pod_eviction(&tol, &[], None, ts(50)), Eviction::Keep);
        // Tolerated forever: never deleted.
        let forever = [Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        assert_eq!(pod_eviction(&forever, &taints, None, ts(0)), Eviction::Keep);
    }

    #[test]
    fn toleration_matching_as_kubernetes() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        assert!(tolerates(&tol("k", "Equal", "v", "NoExecute"), &t));
        assert!(tolerates(&tol("k", "", "v", ""), &t));
        assert!(!tolerates(&tol("k", "Equal", "w", "NoExecute"), &t));
        assert!(tolerates(&tol("k", "Exists", "", "NoExecute"), &t));
        assert!(tolerates(&tol("", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("k", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&tol("j", "Exists", "", "NoExecute"), &t));
        assert!(!tolerates(&tol("k", "Bogus", "v", "NoExecute"), &t));
    }
}
