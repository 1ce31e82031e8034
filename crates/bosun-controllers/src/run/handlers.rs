//! The informers' event handlers of both controllers, as pure functions: a change to a
//! cached object in, the work it makes out ([`Effect`]s: keys to queue, expectations seen).
//!
//! Reproduces the handlers of `deployment_controller.go` (`addReplicaSet`,
//! `updateReplicaSet`, `deleteReplicaSet`, `deletePod`) and of `replica_set.go` (`addPod`,
//! `updatePod`, `deletePod`, `updateRS`, `deleteRS`). They read the caches through
//! [`Lookup`], so tests hand them plain lists.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::deployment::util::strategy_type;
use crate::podutil;
use crate::replicaset::pod_key;
use crate::selector;

/// Read access to a cache of one kind.
pub trait Lookup<K> {
    /// The object `namespace/name`.
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>>;
    /// Every object.
    fn list(&self) -> Vec<Arc<K>>;
}

/// What a change asks of a controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Sync this key.
    Enqueue(String),
    /// Sync this key after a while (minReadySeconds passing).
    EnqueueAfter(String, Duration),
    /// The ReplicaSet `0` saw one pod it expected to create.
    CreationObserved(String),
    /// The ReplicaSet `rs` saw the deletion of `pod` (a pod key).
    DeletionObserved {
        /// The ReplicaSet's key.
        rs: String,
        /// The pod's key.
        pod: String,
    },
    /// The ReplicaSet is gone (or replaced): forget what it expected.
    DeleteExpectations(String),
}

/// `namespace/name` of an object (the work queue's key).
pub fn meta_key(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or("")
    )
}

fn ns(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// `resolveControllerRef`: the object of `kind` the reference names, when the cache holds
/// it with the same uid (a recreated namesake is not the owner).
fn resolve<K, L>(
    lookup: &L,
    namespace: &str,
    r: &OwnerReference,
    kind: &str,
    meta: impl Fn(&K) -> &ObjectMeta,
) -> Option<Arc<K>>
where
    L: Lookup<K> + ?Sized,
{
    if r.kind != kind {
        return None;
    }
    let obj = lookup.get(namespace, &r.name)?;
    (meta(&obj).uid.as_deref() == Some(r.uid.as_str())).then_some(obj)
}

fn controller_changed(old: &ObjectMeta, cur: &ObjectMeta) -> bool {
    podutil::controller_of(old) != podutil::controller_of(cur)
}

/// `GetDeploymentsForReplicaSet`: the deployments of the ReplicaSet's namespace whose
/// (non-empty, valid) selector matches its labels.
fn deployments_selecting(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    rs: &ReplicaSet,
) -> Vec<Effect> {
    deployments
        .list()
        .iter()
        .filter(|d| d.metadata.namespace == rs.metadata.namespace)
        .filter(|d| {
            let sel = d.spec.as_ref().map(|s| &s.selector);
            sel.is_some_and(|s| !selector::is_empty(s))
                && selector::matches(sel, rs.metadata.labels.as_ref()).unwrap_or(false)
        })
        .map(|d| Effect::Enqueue(meta_key(&d.metadata)))
        .collect()
}

fn enqueue_owner_deployment(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    rs: &ReplicaSet,
    r: &OwnerReference,
) -> Option<Effect> {
    resolve(deployments, ns(&rs.metadata), r, "Deployment", |d| {
        &d.metadata
    })
    .map(|d| Effect::Enqueue(meta_key(&d.metadata)))
}

/// The deployment controller's `addReplicaSet`.
pub fn deployment_on_rs_added(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    rs: &ReplicaSet,
) -> Vec<Effect> {
    if rs.metadata.deletion_timestamp.is_some() {
        // On a restart a ReplicaSet may show up already being deleted.
        return deployment_on_rs_deleted(deployments, rs);
    }
    match podutil::controller_of(&rs.metadata) {
        Some(r) => enqueue_owner_deployment(deployments, rs, r)
            .into_iter()
            .collect(),
        // An orphan: wake every deployment that may adopt it.
        None => deployments_selecting(deployments, rs),
    }
}

/// The deployment controller's `updateReplicaSet`.
pub fn deployment_on_rs_updated(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    old: &ReplicaSet,
    cur: &ReplicaSet,
) -> Vec<Effect> {
    if old.metadata.resource_version == cur.metadata.resource_version {
        // A relist: nothing changed.
        return Vec::new();
    }
    let mut out = Vec::new();
    let ref_changed = controller_changed(&old.metadata, &cur.metadata);
    if ref_changed && let Some(r) = podutil::controller_of(&old.metadata) {
        // The old controller should learn that it lost the ReplicaSet.
        out.extend(enqueue_owner_deployment(deployments, old, r));
    }
    if let Some(r) = podutil::controller_of(&cur.metadata) {
        out.extend(enqueue_owner_deployment(deployments, cur, r));
        return out;
    }
    if old.metadata.labels != cur.metadata.labels || ref_changed {
        out.extend(deployments_selecting(deployments, cur));
    }
    out
}

/// The deployment controller's `deleteReplicaSet`: orphans have no one to tell.
pub fn deployment_on_rs_deleted(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    rs: &ReplicaSet,
) -> Vec<Effect> {
    podutil::controller_of(&rs.metadata)
        .and_then(|r| enqueue_owner_deployment(deployments, rs, r))
        .into_iter()
        .collect()
}

/// The deployment controller's `deletePod`: a Recreate deployment waits for its old pods to
/// be gone before it creates the new ReplicaSet's, so a pod's deletion wakes it.
pub fn deployment_on_pod_deleted(
    deployments: &(impl Lookup<Deployment> + ?Sized),
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    pod: &Pod,
) -> Vec<Effect> {
    let Some(r) = podutil::controller_of(&pod.metadata) else {
        return Vec::new();
    };
    let Some(rs) = resolve(replica_sets, ns(&pod.metadata), r, "ReplicaSet", |rs| {
        &rs.metadata
    }) else {
        return Vec::new();
    };
    let Some(dr) = podutil::controller_of(&rs.metadata) else {
        return Vec::new();
    };
    resolve(deployments, ns(&rs.metadata), dr, "Deployment", |d| {
        &d.metadata
    })
    .filter(|d| strategy_type(d) == "Recreate")
    .map(|d| Effect::Enqueue(meta_key(&d.metadata)))
    .into_iter()
    .collect()
}

/// `getPodReplicaSets`: the ReplicaSets of the pod's namespace whose selector matches it.
fn replica_sets_selecting(
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    pod: &Pod,
) -> Vec<Effect> {
    replica_sets
        .list()
        .iter()
        .filter(|rs| rs.metadata.namespace == pod.metadata.namespace)
        .filter(|rs| {
            let sel = rs.spec.as_ref().map(|s| &s.selector);
            sel.is_some_and(|s| !selector::is_empty(s))
                && selector::matches(sel, pod.metadata.labels.as_ref()).unwrap_or(false)
        })
        .map(|rs| Effect::Enqueue(meta_key(&rs.metadata)))
        .collect()
}

fn owner_replica_set(
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    pod: &Pod,
    r: &OwnerReference,
) -> Option<Arc<ReplicaSet>> {
    resolve(replica_sets, ns(&pod.metadata), r, "ReplicaSet", |rs| {
        &rs.metadata
    })
}

/// The replicaset controller's `addPod`.
pub fn replicaset_on_pod_added(
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    pod: &Pod,
) -> Vec<Effect> {
    if pod.metadata.deletion_timestamp.is_some() {
        // A pod that shows up already being deleted is no creation to count.
        return replicaset_on_pod_deleted(replica_sets, pod);
    }
    match podutil::controller_of(&pod.metadata) {
        Some(r) => match owner_replica_set(replica_sets, pod, r) {
            Some(rs) => {
                let key = meta_key(&rs.metadata);
                vec![Effect::CreationObserved(key.clone()), Effect::Enqueue(key)]
            }
            None => Vec::new(),
        },
        None => replica_sets_selecting(replica_sets, pod),
    }
}

/// The replicaset controller's `updatePod`.
pub fn replicaset_on_pod_updated(
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    old: &Pod,
    cur: &Pod,
) -> Vec<Effect> {
    if old.metadata.resource_version == cur.metadata.resource_version {
        return Vec::new();
    }
    let labels_changed = old.metadata.labels != cur.metadata.labels;
    if cur.metadata.deletion_timestamp.is_some() {
        // A graceful deletion begins: the pod counts as deleted now, so that a replacement
        // is created without waiting for the kubelet.
        let mut out = replicaset_on_pod_deleted(replica_sets, cur);
        if labels_changed {
            out.extend(replicaset_on_pod_deleted(replica_sets, old));
        }
        return out;
    }
    let mut out = Vec::new();
    let ref_changed = controller_changed(&old.metadata, &cur.metadata);
    if ref_changed
        && let Some(r) = podutil::controller_of(&old.metadata)
        && let Some(rs) = owner_replica_set(replica_sets, old, r)
    {
        out.push(Effect::Enqueue(meta_key(&rs.metadata)));
    }
    if let Some(r) = podutil::controller_of(&cur.metadata) {
        if let Some(rs) = owner_replica_set(replica_sets, cur, r) {
            let key = meta_key(&rs.metadata);
            out.push(Effect::Enqueue(key.clone()));
            let min_ready = rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0);
            if min_ready > 0 && !podutil::is_pod_ready(old) && podutil::is_pod_ready(cur) {
                // Available once minReadySeconds have passed, with no event then.
                let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                out.push(Effect::EnqueueAfter(key, after));
            }
        }
        return out;
    }
    if labels_changed || ref_changed {
        out.extend(replica_sets_selecting(replica_sets, cur));
    }
    out
}

/// The replicaset controller's `deletePod`.
pub fn replicaset_on_pod_deleted(
    replica_sets: &(impl Lookup<ReplicaSet> + ?Sized),
    pod: &Pod,
) -> Vec<Effect> {
    let Some(r) = podutil::controller_of(&pod.metadata) else {
        return Vec::new();
    };
    let Some(rs) = owner_replica_set(replica_sets, pod, r) else {
        return Vec::new();
    };
    let key = meta_key(&rs.metadata);
    vec![
        Effect::DeletionObserved {
            rs: key.clone(),
            pod: pod_key(pod),
        },
        Effect::Enqueue(key),
    ]
}

/// The replicaset controller's `updateRS`: a ReplicaSet replaced by a namesake loses its
/// expectations.
pub fn replicaset_on_rs_updated(old: &ReplicaSet, cur: &ReplicaSet) -> Vec<Effect> {
    let mut out = Vec::new();
    if old.metadata.uid != cur.metadata.uid {
        out.push(Effect::DeleteExpectations(meta_key(&old.metadata)));
    }
    out.push(Effect::Enqueue(meta_key(&cur.metadata)));
    out
}

/// The replicaset controller's `deleteRS`.
pub fn replicaset_on_rs_deleted(rs: &ReplicaSet) -> Vec<Effect> {
    let key = meta_key(&rs.metadata);
    vec![
        Effect::DeleteExpectations(key.clone()),
        Effect::Enqueue(key),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::labels;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetSpec};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    struct Cache<K>(Vec<Arc<K>>);

    impl<K> Lookup<K> for Cache<K>
    where
        K: k8s_openapi::Metadata<Ty = ObjectMeta>,
    {
        fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
            self.0
                .iter()
                .find(|o| {
                    let m = o.metadata();
                    m.namespace.as_deref() == Some(namespace) && m.name.as_deref() == Some(name)
                })
                .cloned()
        }
        fn list(&self) -> Vec<Arc<K>> {
            self.0.clone()
        }
    }

    fn meta(name: &str, uid: &str, rv: &str, owner: Option<(&str, &str, &str)>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(uid.into()),
            resource_version: Some(rv.into()),
            labels: Some(labels(&[("app", "web")])),
            owner_references: owner.map(|(kind, name, uid)| {
                vec![OwnerReference {
                    kind: kind.into(),
                    name: name.into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    fn selector(app: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(&[("app", app)])),
            ..Default::default()
        }
    }

    fn deployment(name: &str, uid: &str, app: &str, strategy: &str) -> Arc<Deployment> {
        Arc::new(Deployment {
            metadata: meta(name, uid, "1", None),
            spec: Some(DeploymentSpec {
                selector: selector(app),
                strategy: Some(DeploymentStrategy {
                    type_: Some(strategy.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: None,
        })
    }

    fn rs(name: &str, uid: &str, rv: &str, owner: Option<(&str, &str, &str)>) -> ReplicaSet {
        ReplicaSet {
            metadata: meta(name, uid, rv, owner),
            spec: Some(ReplicaSetSpec {
                selector: selector("web"),
                min_ready_seconds: Some(5),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, rv: &str, owner: Option<(&str, &str, &str)>, ready: bool) -> Pod {
        Pod {
            metadata: meta(name, &format!("uid-{name}"), rv, owner),
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn enq(k: &str) -> Effect {
        Effect::Enqueue(k.into())
    }

    #[test]
    fn replica_set_changes_wake_their_deployment_or_the_selecting_ones() {
        let ds = Cache(vec![
            deployment("web", "d1", "web", "RollingUpdate"),
            deployment("other", "d2", "db", "RollingUpdate"),
            deployment("twin", "d3", "web", "RollingUpdate"),
        ]);
        let owned = rs("web-1", "r1", "5", Some(("Deployment", "web", "d1")));
        assert_eq!(deployment_on_rs_added(&ds, &owned), vec![enq("ns/web")]);
        // A reference to a recreated namesake resolves to nothing.
        let stale = rs("web-1", "r1", "5", Some(("Deployment", "web", "old-uid")));
        assert!(deployment_on_rs_added(&ds, &stale).is_empty());
        // An orphan wakes every deployment that selects it.
        let orphan = rs("x", "r2", "5", None);
        assert_eq!(
            deployment_on_rs_added(&ds, &orphan),
            vec![enq("ns/web"), enq("ns/twin")]
        );
        // A relist of the same version is no change.
        assert!(deployment_on_rs_updated(&ds, &owned, &owned).is_empty());
        // Released: the old owner is told, then the selecting deployments.
        let released = rs("web-1", "r1", "6", None);
        assert_eq!(
            deployment_on_rs_updated(&ds, &owned, &released),
            vec![enq("ns/web"), enq("ns/web"), enq("ns/twin")]
        );
        assert_eq!(deployment_on_rs_deleted(&ds, &owned), vec![enq("ns/web")]);
        assert!(deployment_on_rs_deleted(&ds, &orphan).is_empty());
    }

    #[test]
    fn pod_deletion_wakes_only_recreate_deployments() {
        let rss = Cache(vec![Arc::new(rs(
            "web-1",
            "r1",
            "5",
            Some(("Deployment", "web", "d1")),
        ))]);
        let p = pod("web-1-a", "7", Some(("ReplicaSet", "web-1", "r1")), true);
        let rolling = Cache(vec![deployment("web", "d1", "web", "RollingUpdate")]);
        assert!(deployment_on_pod_deleted(&rolling, &rss, &p).is_empty());
        let recreate = Cache(vec![deployment("web", "d1", "web", "Recreate")]);
        assert_eq!(
            deployment_on_pod_deleted(&recreate, &rss, &p),
            vec![enq("ns/web")]
        );
    }

    #[test]
    fn pod_changes_feed_the_expectations() {
        let rss = Cache(vec![Arc::new(rs("web-1", "r1", "5", None))]);
        let owner = Some(("ReplicaSet", "web-1", "r1"));
        let p = pod("a", "7", owner, false);
        assert_eq!(
            replicaset_on_pod_added(&rss, &p),
            vec![Effect::CreationObserved("ns/web-1".into()), enq("ns/web-1")]
        );
        let deleted = vec![
            Effect::DeletionObserved {
                rs: "ns/web-1".into(),
                pod: "ns/a".into(),
            },
            enq("ns/web-1"),
        ];
        assert_eq!(replicaset_on_pod_deleted(&rss, &p), deleted);
        // A pod that appears already terminating is a deletion, not a creation.
        let mut terminating = pod("a", "8", owner, false);
        terminating.metadata.deletion_timestamp = Some(Time(crate::testutil::ts(1)));
        assert_eq!(replicaset_on_pod_added(&rss, &terminating), deleted);
        assert_eq!(replicaset_on_pod_updated(&rss, &p, &terminating), deleted);
        // Becoming ready under minReadySeconds asks for a sync once available.
        let ready = pod("a", "9", owner, true);
        assert_eq!(
            replicaset_on_pod_updated(&rss, &p, &ready),
            vec![
                enq("ns/web-1"),
                Effect::EnqueueAfter("ns/web-1".into(), Duration::from_secs(6))
            ]
        );
        // An orphan whose labels change wakes the ReplicaSets that may adopt it.
        let orphan = pod("b", "7", None, false);
        let mut relabelled = pod("b", "8", None, false);
        relabelled.metadata.labels = Some(labels(&[("app", "web"), ("x", "y")]));
        assert_eq!(
            replicaset_on_pod_updated(&rss, &orphan, &relabelled),
            vec![enq("ns/web-1")]
        );
        assert_eq!(
            replicaset_on_pod_added(&rss, &orphan),
            vec![enq("ns/web-1")]
        );
    }

    #[test]
    fn a_replaced_replica_set_loses_its_expectations() {
        let old = rs("web-1", "r1", "5", None);
        let new = rs("web-1", "r2", "9", None);
        assert_eq!(
            replicaset_on_rs_updated(&old, &new),
            vec![
                Effect::DeleteExpectations("ns/web-1".into()),
                enq("ns/web-1")
            ]
        );
        assert_eq!(
            replicaset_on_rs_deleted(&old),
            vec![
                Effect::DeleteExpectations("ns/web-1".into()),
                enq("ns/web-1")
            ]
        );
    }
}
