//! The garbage collector's loop over Deployments, ReplicaSets and Pods: objects whose
//! owners are all gone are deleted (background), owners deleted in the foreground wait for
//! their blocking dependents, and owners deleted with the orphan policy first strip their
//! dependents' references to them. The decisions are [`crate::garbagecollector`]'s.
//!
//! Kubernetes' collector builds a graph of every kind through metadata informers; this one
//! knows the kinds the controller-manager already caches. An owner reference to any other
//! kind counts as a live owner, so nothing is collected on a guess.

use anyhow::anyhow;
use bosun_api_client::{ApiClient, ApiError, Patch};
use bosun_runtime::controller::Action as Next;
use bosun_runtime::queue::{QueueConfig, WorkQueue};
use bosun_runtime::reflector::{Event, Store};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::json;
use tracing::{debug, info};

use super::{Metrics, Reconciler};
use crate::garbagecollector::{
    Decision, FOREGROUND, Finalize, ORPHAN, OwnerState, attempt_to_delete, finalize,
    remove_finalizer_patch, remove_owner_references_patch,
};

/// The kinds the collector looks after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GcKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// v1 Pod.
    Pod,
}

impl GcKind {
    fn of_ref(r: &OwnerReference) -> Option<GcKind> {
        match (r.api_version.as_str(), r.kind.as_str()) {
            ("apps/v1", "Deployment") => Some(GcKind::Deployment),
            ("apps/v1", "ReplicaSet") => Some(GcKind::ReplicaSet),
            ("v1", "Pod") => Some(GcKind::Pod),
            _ => None,
        }
    }
}

/// One object to look at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Item {
    kind: GcKind,
    namespace: String,
    name: String,
}

impl Item {
    fn of(kind: GcKind, meta: &ObjectMeta) -> Item {
        Item {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

fn has_finalizer(meta: &ObjectMeta, f: &str) -> bool {
    meta.finalizers.iter().flatten().any(|x| x == f)
}

fn deleting_dependents(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some() && has_finalizer(meta, FOREGROUND)
}

/// The garbage collector: the caches it reads and its queue.
pub struct GarbageCollector {
    client: ApiClient,
    deployments: Store<Deployment>,
    replica_sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    queue: WorkQueue<Item>,
    metrics: Metrics,
}

impl std::fmt::Debug for GarbageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbageCollector").finish_non_exhaustive()
    }
}

impl GarbageCollector {
    /// A collector over these caches.
    pub fn new(
        client: ApiClient,
        deployments: Store<Deployment>,
        replica_sets: Store<ReplicaSet>,
        pods: Store<Pod>,
        metrics: Metrics,
    ) -> Self {
        GarbageCollector {
            client,
            deployments,
            replica_sets,
            pods,
            queue: WorkQueue::with_metrics(
                "garbagecollector",
                QueueConfig::default(),
                &metrics.queue,
            ),
            metrics,
        }
    }

    fn cached(&self, kind: GcKind, ns: &str, name: &str) -> Option<ObjectMeta> {
        match kind {
            GcKind::Deployment => self.deployments.get(ns, name).map(|o| o.metadata.clone()),
            GcKind::ReplicaSet => self.replica_sets.get(ns, name).map(|o| o.metadata.clone()),
            GcKind::Pod => self.pods.get(ns, name).map(|o| o.metadata.clone()),
        }
    }

    /// Every cached object that references `uid`.
    fn dependents_of(&self, uid: &str) -> Vec<(GcKind, ObjectMeta)> {
        let refers = |m: &ObjectMeta| m.owner_references.iter().flatten().any(|r| r.uid == uid);
        let mut out = Vec::new();
        for d in self.deployments.list() {
            if refers(&d.metadata) {
                out.push((GcKind::Deployment, d.metadata.clone()));
            }
        }
        for rs in self.replica_sets.list() {
            if refers(&rs.metadata) {
                out.push((GcKind::ReplicaSet, rs.metadata.clone()));
            }
        }
        for p in self.pods.list() {
            if refers(&p.metadata) {
                out.push((GcKind::Pod, p.metadata.clone()));
            }
        }
        out
    }

    /// A change to a cached object (`old` is its previous state, if known).
    fn on_applied(&self, kind: GcKind, old: Option<&ObjectMeta>, new: &ObjectMeta) {
        if new.deletion_timestamp.is_some()
            && (has_finalizer(new, FOREGROUND) || has_finalizer(new, ORPHAN))
        {
            self.queue.add(Item::of(kind, new));
            if deleting_dependents(new) && !old.is_some_and(deleting_dependents) {
                // Starts waiting for its dependents: each may have to go.
                let uid = new.uid.as_deref().unwrap_or("");
                for (k, m) in self.dependents_of(uid) {
                    self.queue.add(Item::of(k, &m));
                }
            }
        }
        // A reference to an owner the caches do not hold: maybe dangling.
        let ns = new.namespace.as_deref().unwrap_or("");
        let unresolved = new.owner_references.iter().flatten().any(|r| {
            GcKind::of_ref(r).is_some_and(|k| {
                self.cached(k, ns, &r.name)
                    .is_none_or(|m| m.uid.as_deref() != Some(r.uid.as_str()))
            })
        });
        let refs_changed = old.is_some_and(|o| o.owner_references != new.owner_references);
        if unresolved || refs_changed {
            self.queue.add(Item::of(kind, new));
        }
    }

    /// A cached object was deleted: its dependents may be orphans now, and owners waiting
    /// for it may finish.
    fn on_deleted(&self, meta: &ObjectMeta) {
        let uid = meta.uid.as_deref().unwrap_or("");
        for (k, m) in self.dependents_of(uid) {
            self.queue.add(Item::of(k, &m));
        }
        let ns = meta.namespace.as_deref().unwrap_or("");
        for r in meta.owner_references.iter().flatten() {
            if let Some(k) = GcKind::of_ref(r)
                && let Some(owner) = self.cached(k, ns, &r.name)
                && owner.deletion_timestamp.is_some()
            {
                self.queue.add(Item::of(k, &owner));
            }
        }
    }

    /// Deployment events.
    pub fn on_deployment(&self, ev: &Event<Deployment>) {
        match ev {
            Event::Applied { old, new } => self.on_applied(
                GcKind::Deployment,
                old.as_ref().map(|o| &o.metadata),
                &new.metadata,
            ),
            Event::Deleted(o) => self.on_deleted(&o.metadata),
            Event::Resynced => {}
        }
    }

    /// ReplicaSet events.
    pub fn on_replica_set(&self, ev: &Event<ReplicaSet>) {
        match ev {
            Event::Applied { old, new } => self.on_applied(
                GcKind::ReplicaSet,
                old.as_ref().map(|o| &o.metadata),
                &new.metadata,
            ),
            Event::Deleted(o) => self.on_deleted(&o.metadata),
            Event::Resynced => {}
        }
    }

    /// Pod events.
    pub fn on_pod(&self, ev: &Event<Pod>) {
        match ev {
            Event::Applied { old, new } => self.on_applied(
                GcKind::Pod,
                old.as_ref().map(|o| &o.metadata),
                &new.metadata,
            ),
            Event::Deleted(o) => self.on_deleted(&o.metadata),
            Event::Resynced => {}
        }
    }

    async fn sync_item(&self, item: &Item) -> anyhow::Result<()> {
        let Some(meta) = self.cached(item.kind, &item.namespace, &item.name) else {
            return Ok(());
        };
        let uid = meta.uid.clone().unwrap_or_default();
        if meta.deletion_timestamp.is_some()
            && (has_finalizer(&meta, FOREGROUND) || has_finalizer(&meta, ORPHAN))
        {
            return self.finalize(item, &meta).await;
        }
        let refs = meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(());
        }
        let mut states = Vec::with_capacity(refs.len());
        for r in &refs {
            states.push((r.uid.as_str(), self.owner_state(&item.namespace, r).await?));
        }
        let has_dependents = !self.dependents_of(&uid).is_empty();
        match attempt_to_delete(&meta, &states, has_dependents) {
            Decision::Nothing => Ok(()),
            Decision::RemoveOwnerReferences(uids) => {
                debug!(
                    ?item,
                    ?uids,
                    "removing references to owners being deleted or gone"
                );
                let patch = Patch::Strategic(remove_owner_references_patch(&uid, &uids));
                ok_if_gone(self.patch(item, &patch).await)
            }
            Decision::Delete(policy) => {
                info!(
                    ?item,
                    policy = policy.as_str(),
                    "deleting an object whose owners are gone"
                );
                let options = json!({
                    "propagationPolicy": policy.as_str(),
                    "preconditions": {"uid": uid},
                });
                ok_if_gone(self.delete(item, &options).await)
            }
        }
    }

    /// An owner being deleted in the foreground or with orphaning.
    async fn finalize(&self, item: &Item, meta: &ObjectMeta) -> anyhow::Result<()> {
        let uid = meta.uid.as_deref().unwrap_or("");
        let dependents = self.dependents_of(uid);
        let metas: Vec<&ObjectMeta> = dependents.iter().map(|(_, m)| m).collect();
        match finalize(meta, &metas) {
            Finalize::Nothing => Ok(()),
            Finalize::Orphan(indexes) => {
                for i in indexes {
                    let (kind, dep) = &dependents[i];
                    let dep_item = Item::of(*kind, dep);
                    let dep_uid = dep.uid.as_deref().unwrap_or("");
                    let patch = Patch::Strategic(remove_owner_references_patch(
                        dep_uid,
                        &[uid.to_string()],
                    ));
                    ok_if_gone(self.patch(&dep_item, &patch).await)?;
                }
                self.remove_finalizer(item, meta, ORPHAN).await
            }
            Finalize::DeleteDependents(indexes) => {
                // Each deletion comes back as an event that queues this owner again.
                for i in indexes {
                    let (kind, dep) = &dependents[i];
                    if dep.deletion_timestamp.is_none() {
                        self.queue.add(Item::of(*kind, dep));
                    }
                }
                Ok(())
            }
            Finalize::RemoveFinalizer(f) => self.remove_finalizer(item, meta, f).await,
        }
    }

    async fn remove_finalizer(
        &self,
        item: &Item,
        meta: &ObjectMeta,
        f: &str,
    ) -> anyhow::Result<()> {
        info!(
            ?item,
            finalizer = f,
            "dependents handled; removing the finalizer"
        );
        let patch = Patch::Merge(remove_finalizer_patch(meta, f));
        ok_if_gone(self.patch(item, &patch).await)
    }

    /// `classifyReferences` for one reference: the cache first, then the apiserver (the
    /// cache may not have caught up with a new owner).
    async fn owner_state(&self, ns: &str, r: &OwnerReference) -> anyhow::Result<OwnerState> {
        let Some(kind) = GcKind::of_ref(r) else {
            return Ok(OwnerState::Solid);
        };
        let state = |m: &ObjectMeta| {
            if deleting_dependents(m) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            }
        };
        if let Some(m) = self.cached(kind, ns, &r.name)
            && m.uid.as_deref() == Some(r.uid.as_str())
        {
            return Ok(state(&m));
        }
        let live = match kind {
            GcKind::Deployment => self
                .client
                .get::<Deployment>(ns, &r.name)
                .await
                .map(|o| o.metadata),
            GcKind::ReplicaSet => self
                .client
                .get::<ReplicaSet>(ns, &r.name)
                .await
                .map(|o| o.metadata),
            GcKind::Pod => self
                .client
                .get::<Pod>(ns, &r.name)
                .await
                .map(|o| o.metadata),
        };
        match live {
            Ok(m) if m.uid.as_deref() == Some(r.uid.as_str()) => Ok(state(&m)),
            Ok(_) => Ok(OwnerState::Dangling),
            Err(e) if e.is_not_found() => Ok(OwnerState::Dangling),
            Err(e) => Err(anyhow!(e).context(format!("look up owner {} {ns}/{}", r.kind, r.name))),
        }
    }

    async fn patch(&self, item: &Item, patch: &Patch) -> Result<(), ApiError> {
        let (ns, name) = (item.namespace.as_str(), item.name.as_str());
        match item.kind {
            GcKind::Deployment => self
                .client
                .patch::<Deployment>(ns, name, patch)
                .await
                .map(drop),
            GcKind::ReplicaSet => self
                .client
                .patch::<ReplicaSet>(ns, name, patch)
                .await
                .map(drop),
            GcKind::Pod => self.client.patch::<Pod>(ns, name, patch).await.map(drop),
        }
    }

    async fn delete(&self, item: &Item, options: &serde_json::Value) -> Result<(), ApiError> {
        let (ns, name, o) = (item.namespace.as_str(), item.name.as_str(), Some(options));
        match item.kind {
            GcKind::Deployment => self
                .client
                .delete::<Deployment>(ns, name, o)
                .await
                .map(drop),
            GcKind::ReplicaSet => self
                .client
                .delete::<ReplicaSet>(ns, name, o)
                .await
                .map(drop),
            GcKind::Pod => self.client.delete::<Pod>(ns, name, o).await.map(drop),
        }
    }
}

impl Reconciler for GarbageCollector {
    type Key = Item;
    const NAME: &'static str = "garbagecollector";

    fn queue(&self) -> &WorkQueue<Item> {
        &self.queue
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn reconcile(&self, item: Item) -> anyhow::Result<Next> {
        self.sync_item(&item).await.map(|()| Next::Done)
    }
}

/// A write to an object that is gone (or was replaced: the uid precondition) did what it
/// had to.
fn ok_if_gone(r: Result<(), ApiError>) -> anyhow::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(anyhow!(e)),
    }
}
