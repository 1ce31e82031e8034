//! The replicaset controller's decisions.
//!
//! Reproduces `pkg/controller/replicaset/replica_set.go`: which pods a ReplicaSet claims
//! ([`claim_pods`], `claimPods`), how many to create or which to delete
//! ([`manage_replicas`], `manageReplicas` with `burstReplicas`), in which batches to create
//! them ([`slow_start_batches`], `slowStartBatch`), which pods go first on scale-down
//! ([`pods_to_delete`], `getPodsToDelete` over `controller.ActivePodsWithRanks`), the
//! status ([`calculate_status`] and [`status_update`], `replica_set_utils.go`), and the
//! resync after minReadySeconds; [`expectations`] is `controller_utils.go`'s
//! `UIDTrackingControllerExpectations` as a plain state type.

pub mod expectations;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;

use crate::podutil::{self, Claim};
use crate::selector::{self, SelectorError};

pub use expectations::Expectations;

/// The most pods one sync creates or deletes (the replicaset controller's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// The first slow-start batch (`SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH_SIZE: usize = 1;
/// The API version of a ReplicaSet's controller references.
pub const CONTROLLER_API_VERSION: &str = "apps/v1";
/// The kind of a ReplicaSet's controller references.
pub const CONTROLLER_KIND: &str = "ReplicaSet";

/// `claimPods` (`PodControllerRefManager.ClaimPods`) over active pods: each pod with what
/// to do about it. The claimed set is the `Owned` ones plus the `Adopt` ones whose adoption
/// succeeded.
pub fn claim_pods<'a>(
    rs: &ReplicaSet,
    pods: &'a [Pod],
) -> Result<Vec<(&'a Pod, Claim)>, SelectorError> {
    let selector = rs.spec.as_ref().map(|s| &s.selector);
    pods.iter()
        .filter(|p| podutil::is_pod_active(p))
        .map(|pod| {
            let matches = selector::matches(selector, pod.metadata.labels.as_ref())?;
            Ok((pod, podutil::claim(&rs.metadata, &pod.metadata, matches)))
        })
        .collect()
}

/// What `manageReplicas` does in one sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manage {
    /// Nothing: the ReplicaSet has as many active pods as it wants.
    Nothing,
    /// Create this many pods from the template, with `generateName: <rs>-` and a controller
    /// reference, in [`slow_start_batches`]; expect this many creations first.
    Create(usize),
    /// Delete these pods (namespace/name keys, in order); expect their deletions first.
    Delete(Vec<String>),
}

/// `manageReplicas`: the difference between the active pods the ReplicaSet controls and
/// its replicas, at most `burst` at a time. `related` are the active pods of all the
/// ReplicaSets with the same controller (for ranking by co-location).
pub fn manage_replicas(
    rs: &ReplicaSet,
    active: &[&Pod],
    related: &[&Pod],
    burst: usize,
    now: Timestamp,
) -> Manage {
    let want = rs
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as usize;
    match active.len().cmp(&want) {
        Ordering::Equal => Manage::Nothing,
        Ordering::Less => Manage::Create((want - active.len()).min(burst)),
        Ordering::Greater => {
            let diff = (active.len() - want).min(burst);
            Manage::Delete(
                pods_to_delete(active, related, diff, now)
                    .into_iter()
                    .map(pod_key)
                    .collect(),
            )
        }
    }
}

/// `syncReplicaSet`'s guard: replicas are managed only once the cache has seen what the
/// last sync asked for ([`Expectations::satisfied`]) and never while the ReplicaSet is being
/// deleted (its status is still updated).
pub fn needs_manage(rs: &ReplicaSet, expectations_satisfied: bool) -> bool {
    expectations_satisfied && rs.metadata.deletion_timestamp.is_none()
}

/// `GetPodFromTemplate`: the pod a ReplicaSet creates: the template's labels, annotations,
/// finalizers and spec, `generateName: <rs>-` (the apiserver adds the random suffix), the
/// ReplicaSet's namespace, and a controller reference to it that blocks its foreground
/// deletion. `None` when the template has no labels (`createPods` refuses those: such a pod
/// could never be selected).
pub fn pod_from_template(rs: &ReplicaSet) -> Option<Pod> {
    let template = rs.spec.as_ref()?.template.as_ref()?;
    let meta = template.metadata.clone().unwrap_or_default();
    if meta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return None;
    }
    let name = rs.metadata.name.as_deref().unwrap_or("");
    Some(Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![podutil::new_controller_ref(
                CONTROLLER_API_VERSION,
                CONTROLLER_KIND,
                &rs.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// `PodKey`: namespace/name.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// `slowStartBatch`'s batch sizes: 1, 2, 4, ... up to `count` in all. The loop runs a
/// batch, and stops at the first batch with a failure; creations it never attempted are
/// subtracted from the expectations (`creation_observed` once each).
pub fn slow_start_batches(count: usize, initial: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = count;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        batches.push(batch);
        remaining -= batch;
        batch = remaining.min(batch.saturating_mul(2));
    }
    batches
}

/// `getIndirectlyRelatedPods`: the pods of every ReplicaSet controlled by the same owner as
/// `rs` (each pod once), or none when `rs` has no controller.
pub fn related_pods<'a>(
    rs: &ReplicaSet,
    replica_sets: &[ReplicaSet],
    pods: &'a [Pod],
) -> Vec<&'a Pod> {
    let Some(owner) = podutil::controller_of(&rs.metadata) else {
        return Vec::new();
    };
    let siblings: Vec<&ReplicaSet> = replica_sets
        .iter()
        .filter(|r| podutil::is_controlled_by(&r.metadata, &owner.uid))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut related = Vec::new();
    for sibling in siblings {
        let selector = sibling.spec.as_ref().map(|s| &s.selector);
        for pod in pods {
            if pod.metadata.namespace != sibling.metadata.namespace {
                continue;
            }
            if !selector::matches(selector, pod.metadata.labels.as_ref()).unwrap_or(false) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_else(|| pod_key(pod));
            if seen.insert(uid) {
                related.push(pod);
            }
        }
    }
    related
}

/// `getPodsToDelete`: the first `diff` pods in deletion order (no sorting when all go).
pub fn pods_to_delete<'a>(
    pods: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: Timestamp,
) -> Vec<&'a Pod> {
    if diff >= pods.len() {
        return pods.to_vec();
    }
    // getPodsRankedByRelatedPodsOnSameNode: rank = active related pods on the same node.
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| podutil::is_pod_active(p)) {
        *on_node.entry(podutil::node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = pods
        .iter()
        .map(|p| (*p, on_node.get(podutil::node_name(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| deletion_order(a, *ra, b, *rb, Some(now)));
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// `ActivePodsWithRanks.Less` as an ordering: pods to delete first come first. Unassigned
/// before assigned; Pending, Unknown, then Running; not ready before ready; lower
/// pod-deletion-cost; more related pods on the same node; ready for less time (compared on
/// a log2 scale of the time since `now`); more restarts (then more sidecar restarts);
/// newer (log2 scale); then by uid.
pub fn deletion_order(
    a: &Pod,
    rank_a: usize,
    b: &Pod,
    rank_b: usize,
    now: Option<Timestamp>,
) -> Ordering {
    if less(a, rank_a, b, rank_b, now) {
        Ordering::Less
    } else if less(b, rank_b, a, rank_a, now) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match podutil::phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        // Pending and anything else rank first.
        _ => 0,
    }
}

fn ready_time(pod: &Pod) -> Option<Timestamp> {
    podutil::pod_ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// `afterOrZero`: a zero (absent) time counts as after any other.
fn after_or_zero(t1: Option<Timestamp>, t2: Option<Timestamp>) -> bool {
    match (t1, t2) {
        (Some(a), Some(b)) => a > b,
        (t1, _) => t1.is_none(),
    }
}

/// `logarithmicRankDiff`: compares floor(log2(nanoseconds since)) of two times.
fn logarithmic_rank_diff(t1: Timestamp, t2: Timestamp, now: Timestamp) -> i64 {
    let rank = |t: Timestamp| -> i64 {
        let d = now.duration_since(t).as_nanos();
        if d > 0 { (d as f64).log2() as i64 } else { -1 }
    };
    rank(t1) - rank(t2)
}

/// Time comparison of rules 6 and 8 (LogarithmicScaleDown, on since Kubernetes 1.22).
fn newer_first(
    t1: Option<Timestamp>,
    t2: Option<Timestamp>,
    a: &Pod,
    b: &Pod,
    now: Option<Timestamp>,
) -> bool {
    match (t1, t2, now) {
        (Some(x), Some(y), Some(now)) => {
            let diff = logarithmic_rank_diff(x, y, now);
            if diff == 0 {
                a.metadata.uid < b.metadata.uid
            } else {
                diff < 0
            }
        }
        _ => after_or_zero(t1, t2),
    }
}

/// `maxContainerRestarts`: (regular containers, restartable init containers).
fn max_container_restarts(pod: &Pod) -> (i32, i32) {
    let status = pod.status.as_ref();
    let regular = status
        .into_iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.restart_count)
        .fold(0, i32::max);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .into_iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten())
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .fold(0, i32::max);
    (regular, sidecar)
}

fn less(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Option<Timestamp>) -> bool {
    // 1. Unassigned < assigned.
    let (na, nb) = (podutil::node_name(a), podutil::node_name(b));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return na.is_empty();
    }
    // 2. Pending < Unknown < Running.
    let (pa, pb) = (phase_ordinal(a), phase_ordinal(b));
    if pa != pb {
        return pa < pb;
    }
    // 3. Not ready < ready.
    let (ra, rb) = (podutil::is_pod_ready(a), podutil::is_pod_ready(b));
    if ra != rb {
        return !ra;
    }
    // 4. Lower pod-deletion-cost < higher.
    let (ca, cb) = (podutil::deletion_cost(a), podutil::deletion_cost(b));
    if ca != cb {
        return ca < cb;
    }
    // 5. Doubled up < not doubled up.
    if rank_a != rank_b {
        return rank_a > rank_b;
    }
    // 6. Ready for less time < more time.
    if ra && rb {
        let (ta, tb) = (ready_time(a), ready_time(b));
        if ta != tb {
            return newer_first(ta, tb, a, b, now);
        }
    }
    // 7. More restarts < fewer.
    let (xa, xb) = (max_container_restarts(a), max_container_restarts(b));
    if xa.0 != xb.0 {
        return xa.0 > xb.0;
    }
    if xa.1 != xb.1 {
        return xa.1 > xb.1;
    }
    // 8. Newer < older.
    let (ta, tb) = (
        a.metadata.creation_timestamp.as_ref().map(|t| t.0),
        b.metadata.creation_timestamp.as_ref().map(|t| t.0),
    );
    if ta != tb {
        return newer_first(ta, tb, a, b, now);
    }
    false
}

/// The ReplicaFailure condition type.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// `calculateStatus`: replicas, fullyLabeledReplicas (pods carrying all template labels),
/// readyReplicas, availableReplicas (ready for minReadySeconds at `now`), and the
/// ReplicaFailure condition from the error of the last create or delete (`manage_error`).
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[&Pod],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let (mut fully_labeled, mut ready, mut available) = (0i32, 0i32, 0i32);
    for pod in pods {
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if podutil::is_pod_ready(pod) {
            ready += 1;
            if podutil::is_pod_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(err) if !has_failure => {
            let want = spec.and_then(|s| s.replicas).unwrap_or(1) as i64;
            let reason = match (pods.len() as i64).cmp(&want) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            let c = ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                last_transition_time: Some(crate::deployment::util::api_time(now)),
                reason: Some(reason.into()),
                message: Some(err.into()),
            };
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|c| c.type_ != REPLICA_FAILURE);
            conditions.push(c);
        }
        None if has_failure => {
            if let Some(cs) = status.conditions.as_mut() {
                cs.retain(|c| c.type_ != REPLICA_FAILURE);
            }
            if status.conditions.as_ref().is_some_and(|c| c.is_empty()) {
                status.conditions = None;
            }
        }
        _ => {}
    }
    let nz = |n: i32| (n != 0).then_some(n);
    status.replicas = pods.len().min(i32::MAX as usize) as i32;
    status.fully_labeled_replicas = nz(fully_labeled);
    status.ready_replicas = nz(ready);
    status.available_replicas = nz(available);
    status
}

/// `updateReplicaSetStatus`: the status to write (with observedGeneration), or `None` when
/// the counts, generation and conditions are already recorded.
pub fn status_update(rs: &ReplicaSet, new: &ReplicaSetStatus) -> Option<ReplicaSetStatus> {
    let current = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let generation = rs.metadata.generation.unwrap_or(0);
    let conditions = |c: &Option<Vec<ReplicaSetCondition>>| c.clone().filter(|c| !c.is_empty());
    if current.replicas == new.replicas
        && n(current.fully_labeled_replicas) == n(new.fully_labeled_replicas)
        && n(current.ready_replicas) == n(new.ready_replicas)
        && n(current.available_replicas) == n(new.available_replicas)
        && generation == current.observed_generation.unwrap_or(0)
        && conditions(&current.conditions) == conditions(&new.conditions)
    {
        return None;
    }
    let mut s = new.clone();
    s.observed_generation = (generation != 0).then_some(generation);
    Some(s)
}

/// The resync after minReadySeconds (`syncReplicaSet`): when every replica is ready but not
/// all are available yet, sync again once they can be, in case no event comes then.
pub fn min_ready_resync(
    rs: &ReplicaSet,
    status: &ReplicaSetStatus,
    manage_ok: bool,
) -> Option<Duration> {
    let spec = rs.spec.as_ref()?;
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let want = spec.replicas.unwrap_or(1);
    (manage_ok
        && min_ready > 0
        && status.ready_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) != want)
        .then(|| Duration::from_secs(min_ready as u64))
}

#[cfg(test)]
mod tests;
