//! The garbage collector's loop over every kind of the resource table: objects whose
//! owners are all gone are deleted (background), owners deleted in the foreground wait for
//! their blocking dependents, and owners deleted with the orphan policy first strip their
//! dependents' references to them. The decisions are [`crate::garbagecollector`]'s.
//!
//! As Kubernetes' collector (a graph of every kind through metadata informers), it sees
//! every kind of the resource table: the caches the controller-manager keeps anyway
//! (Deployments, ReplicaSets, Pods, Namespaces, Leases, Nodes) and, for every other kind
//! of the table (Events, ...), a reflector of [`PartialObjectMetadata`] that keeps only the
//! metadata the collector needs, so that a kind added to the table is collected without
//! code here. Dependents are found through an index of owner uid to dependents, kept from
//! the caches' events (bounded by the objects that have owner references). An owner of
//! any kind of the table (cluster-scoped ones included: a node's Lease is owned by its Node)
//! is resolved through the cache or, failing that, the apiserver; its writes go through
//! the API by resource name. An owner reference to a kind outside the table counts as a
//! live owner, so nothing is collected on a guess; a cluster-scoped object referring to a
//! namespaced owner is invalid (an `OwnerRefInvalidNamespace` event, not collected), and a
//! namespaced object's owner reference resolves in its own namespace.

use anyhow::anyhow;
use bosun_api::resources::{RESOURCES, Resource};
use bosun_api_client::{ApiClient, ApiError, Patch};
use bosun_runtime::controller::Action as Next;
use bosun_runtime::events::Recorder;
use bosun_runtime::queue::{QueueConfig, WorkQueue};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bosun_runtime::reflector::{Cached, Event, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use parking_lot::Mutex;
use serde_json::json;

pub use bosun_runtime::reflector::PartialObjectMetadata;
use tracing::{debug, info, warn};

use super::{Metrics, Reconciler};
use crate::garbagecollector::{
    Decision, FOREGROUND, Finalize, ORPHAN, OwnerState, attempt_to_delete, finalize,
    remove_finalizer_patch, remove_owner_references_patch,
};

/// The resource of an owner reference (by apiVersion and kind), if the table has it.
pub fn resource_of_ref(r: &OwnerReference) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .copied()
        .find(|res| res.kind == r.kind && res.api_version() == r.api_version)
}

/// Where an owner reference of an object in namespace `dependent_ns` ("" when
/// cluster-scoped) points: the owner's namespace, or `None` when the reference is invalid
/// (a cluster-scoped dependent cannot have a namespaced owner).
pub fn owner_namespace<'a>(owner: &Resource, dependent_ns: &'a str) -> Option<&'a str> {
    match (owner.namespaced, dependent_ns.is_empty()) {
        (false, _) => Some(""),
        (true, true) => None,
        (true, false) => Some(dependent_ns),
    }
}

/// One object to look at: its resource (plural name), namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Item {
    resource: &'static str,
    namespace: String,
    name: String,
}

impl Item {
    fn of(resource: &'static str, meta: &ObjectMeta) -> Item {
        Item {
            resource,
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

/// One kind's cache as the collector reads it: the metadata of an object.
pub trait MetaCache: Send + Sync {
    /// The metadata of `namespace/name` (`namespace` empty for cluster-scoped kinds).
    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta>;
    /// Whether the first full list is in.
    fn synced(&self) -> bool;
}

impl<K: Cached> MetaCache for Store<K> {
    fn meta(&self, namespace: &str, name: &str) -> Option<ObjectMeta> {
        self.get(namespace, name).map(|o| o.metadata().clone())
    }
    fn synced(&self) -> bool {
        self.is_synced()
    }
}

/// The caches the collector reads, by resource (plural name).
#[derive(Clone, Default)]
pub struct Caches {
    by_resource: BTreeMap<&'static str, Arc<dyn MetaCache>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_resource.keys()).finish()
    }
}

impl Caches {
    /// Adds the cache of `resource`.
    pub fn insert(&mut self, resource: &'static str, cache: Arc<dyn MetaCache>) {
        self.by_resource.insert(resource, cache);
    }

    /// Whether `resource` has a cache.
    pub fn has(&self, resource: &str) -> bool {
        self.by_resource.contains_key(resource)
    }

    /// The kinds of the resource table without a cache (for which the collector needs its
    /// own metadata reflectors).
    pub fn missing(&self) -> Vec<&'static Resource> {
        RESOURCES
            .iter()
            .copied()
            .filter(|r| !self.has(r.plural))
            .collect()
    }

    /// Whether every cache has its first full list.
    pub fn synced(&self) -> bool {
        self.by_resource.values().all(|c| c.synced())
    }

    fn get(&self, resource: &str, ns: &str, name: &str) -> Option<ObjectMeta> {
        self.by_resource.get(resource)?.meta(ns, name)
    }
}

/// Owner uid -> the objects that reference it (the collector's graph, `uidToNode`'s
/// dependents).
#[derive(Debug, Default)]
struct OwnerIndex {
    dependents: HashMap<String, HashSet<Item>>,
}

impl OwnerIndex {
    fn owner_uids(meta: &ObjectMeta) -> impl Iterator<Item = &str> {
        meta.owner_references
            .iter()
            .flatten()
            .map(|r| r.uid.as_str())
    }

    fn remove(&mut self, item: &Item, meta: &ObjectMeta) {
        for uid in Self::owner_uids(meta) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(item);
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
    }

    fn add(&mut self, item: &Item, meta: &ObjectMeta) {
        for uid in Self::owner_uids(meta) {
            self.dependents
                .entry(uid.to_string())
                .or_default()
                .insert(item.clone());
        }
    }

    fn get(&self, uid: &str) -> Vec<Item> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The garbage collector: the caches it reads and its queue.
pub struct GarbageCollector {
    client: ApiClient,
    caches: Caches,
    recorder: Recorder,
    queue: WorkQueue<Item>,
    metrics: Metrics,
    index: Mutex<OwnerIndex>,
    resynced: Mutex<HashSet<&'static str>>,
}

impl std::fmt::Debug for GarbageCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GarbageCollector").finish_non_exhaustive()
    }
}

impl GarbageCollector {
    /// A collector over these caches, recording its events with `recorder`.
    pub fn new(client: ApiClient, caches: Caches, recorder: Recorder, metrics: Metrics) -> Self {
        GarbageCollector {
            client,
            caches,
            recorder,
            queue: WorkQueue::with_metrics(
                "garbagecollector",
                QueueConfig::default(),
                &metrics.queue,
            ),
            metrics,
            index: Mutex::new(OwnerIndex::default()),
            resynced: Mutex::new(HashSet::new()),
        }
    }

    /// Whether every cache is synced and its first list has gone through the handlers
    /// (the graph is whole: `GarbageCollector.IsSynced`).
    pub fn graph_synced(&self) -> bool {
        let resynced = self.resynced.lock();
        self.caches.synced() && self.caches.by_resource.keys().all(|r| resynced.contains(r))
    }

    fn cached(&self, resource: &str, ns: &str, name: &str) -> Option<ObjectMeta> {
        self.caches.get(resource, ns, name)
    }

    /// Every cached object that references `uid`, with its resource.
    fn dependents_of(&self, uid: &str) -> Vec<(&'static str, ObjectMeta)> {
        let items = self.index.lock().get(uid);
        items
            .into_iter()
            .filter_map(|item| {
                let m = self.cached(item.resource, &item.namespace, &item.name)?;
                m.owner_references
                    .iter()
                    .flatten()
                    .any(|r| r.uid == uid)
                    .then_some((item.resource, m))
            })
            .collect()
    }

    /// A change to a cached object (`old` is its previous state, if known).
    fn on_applied(&self, kind: &'static str, old: Option<&ObjectMeta>, new: &ObjectMeta) {
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
            resource_of_ref(r).is_some_and(|res| {
                !self.caches.has(res.plural)
                    || owner_namespace(res, ns).is_none_or(|ons| {
                        self.cached(res.plural, ons, &r.name)
                            .is_none_or(|m| m.uid.as_deref() != Some(r.uid.as_str()))
                    })
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
            if let Some(res) = resource_of_ref(r)
                && let Some(ons) = owner_namespace(res, ns)
                && let Some(owner) = self.cached(res.plural, ons, &r.name)
                && owner.deletion_timestamp.is_some()
            {
                self.queue.add(Item::of(res.plural, &owner));
            }
        }
    }

    /// An event of the cache of `resource`.
    pub fn handle<K: Cached>(&self, resource: &'static str, ev: &Event<K>) {
        match ev {
            Event::Applied { old, new } => {
                let (old, new) = (old.as_ref().map(|o| o.metadata()), new.metadata());
                {
                    let item = Item::of(resource, new);
                    let mut index = self.index.lock();
                    if let Some(o) = old {
                        index.remove(&Item::of(resource, o), o);
                    }
                    index.add(&item, new);
                }
                self.on_applied(resource, old, new);
            }
            Event::Deleted(o) => {
                let meta = o.metadata();
                self.index.lock().remove(&Item::of(resource, meta), meta);
                self.on_deleted(meta);
            }
            Event::Resynced => {
                self.resynced.lock().insert(resource);
            }
        }
    }

    async fn sync_item(&self, item: &Item) -> anyhow::Result<()> {
        let Some(meta) = self.cached(item.resource, &item.namespace, &item.name) else {
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
            let state = self.owner_state(item, &meta, r).await?;
            states.push((r.uid.as_str(), state));
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
                    let dep_item = Item::of(kind, dep);
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
                        self.queue.add(Item::of(kind, dep));
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
    /// cache may not have caught up with a new owner, or does not watch its kind).
    async fn owner_state(
        &self,
        item: &Item,
        meta: &ObjectMeta,
        r: &OwnerReference,
    ) -> anyhow::Result<OwnerState> {
        let Some(res) = resource_of_ref(r) else {
            return Ok(OwnerState::Solid);
        };
        let Some(ns) = owner_namespace(res, &item.namespace) else {
            // Kubernetes' `namespacedOwnerOfClusterScopedObjectErr`: never resolves, never
            // collected.
            warn!(?item, owner = %r.name, kind = %r.kind, "cluster-scoped object with a namespaced owner");
            self.recorder.warning(
                &object_reference(item, meta),
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                    r.api_version, r.kind, r.name, r.uid
                ),
            );
            return Ok(OwnerState::Solid);
        };
        let state = |m: &ObjectMeta| {
            if deleting_dependents(m) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Solid
            }
        };
        if let Some(m) = self.cached(res.plural, ns, &r.name)
            && m.uid.as_deref() == Some(r.uid.as_str())
        {
            return Ok(state(&m));
        }
        let live = match self.client.get_dynamic(res.plural, ns, &r.name).await {
            Ok(v) => Ok(serde_json::from_value::<ObjectMeta>(
                v.get("metadata").cloned().unwrap_or_default(),
            )?),
            Err(e) => Err(e),
        };
        match live {
            Ok(m) if m.uid.as_deref() == Some(r.uid.as_str()) => Ok(state(&m)),
            Ok(_) => Ok(OwnerState::Dangling),
            Err(e) if e.is_not_found() => Ok(OwnerState::Dangling),
            Err(e) => Err(anyhow!(e).context(format!("look up owner {} {ns}/{}", r.kind, r.name))),
        }
    }

    async fn patch(&self, item: &Item, patch: &Patch) -> Result<(), ApiError> {
        self.client
            .patch_dynamic(item.resource, &item.namespace, &item.name, patch)
            .await
            .map(drop)
    }

    async fn delete(&self, item: &Item, options: &serde_json::Value) -> Result<(), ApiError> {
        self.client
            .delete_dynamic(item.resource, &item.namespace, &item.name, Some(options))
            .await
            .map(drop)
    }
}

/// The event's reference to the object an item names.
fn object_reference(item: &Item, meta: &ObjectMeta) -> ObjectReference {
    let res = RESOURCES.iter().find(|r| r.plural == item.resource);
    ObjectReference {
        api_version: res.map(|r| r.api_version()),
        kind: res.map(|r| r.kind.to_string()),
        namespace: (!item.namespace.is_empty()).then(|| item.namespace.clone()),
        name: Some(item.name.clone()),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..ObjectReference::default()
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bosun_api::resources::{LEASES, NODES, PODS};

    fn owner(api_version: &str, kind: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: "o".into(),
            uid: "u".into(),
            ..OwnerReference::default()
        }
    }

    #[test]
    fn owner_references_resolve_through_the_resource_table() {
        assert_eq!(resource_of_ref(&owner("v1", "Node")), Some(&NODES));
        assert_eq!(resource_of_ref(&owner("v1", "Pod")), Some(&PODS));
        assert_eq!(
            resource_of_ref(&owner("coordination.k8s.io/v1", "Lease")),
            Some(&LEASES)
        );
        assert!(resource_of_ref(&owner("apps/v1", "Pod")).is_none());
        assert!(resource_of_ref(&owner("example.com/v1", "Widget")).is_none());
    }

    fn meta(name: &str, owners: &[&str]) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: Some(
                owners
                    .iter()
                    .map(|u| OwnerReference {
                        uid: (*u).into(),
                        ..owner("v1", "Pod")
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn the_owner_index_follows_changes_and_deletions() {
        let mut index = OwnerIndex::default();
        let e = meta("e", &["a", "b"]);
        let item = Item::of("events", &e);
        index.add(&item, &e);
        let l = meta("l", &["a"]);
        index.add(&Item::of("leases", &l), &l);
        let names = |uid: &str| {
            let mut v: Vec<String> = index
                .get(uid)
                .into_iter()
                .map(|i| format!("{}/{}", i.resource, i.name))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names("a"), vec!["events/e", "leases/l"]);
        assert_eq!(names("b"), vec!["events/e"]);
        // The event loses its reference to b (an update: old out, new in).
        let e2 = meta("e", &["a"]);
        index.remove(&item, &e);
        index.add(&item, &e2);
        assert!(index.get("b").is_empty());
        assert!(!index.dependents.contains_key("b"), "no empty sets kept");
        index.remove(&item, &e2);
        assert_eq!(index.get("a").len(), 1);
    }

    #[test]
    fn every_kind_of_the_table_gets_a_cache() {
        let mut caches = Caches::default();
        let pods: Store<k8s_openapi::api::core::v1::Pod> = Store::new();
        caches.insert("pods", Arc::new(pods));
        let missing: Vec<&str> = caches.missing().iter().map(|r| r.plural).collect();
        assert!(missing.contains(&"events") && missing.contains(&"namespaces"));
        assert!(!missing.contains(&"pods"));
        assert_eq!(missing.len(), RESOURCES.len() - 1);
        assert!(!caches.synced());
    }

    #[test]
    fn owners_resolve_in_the_dependents_namespace_and_cluster_scope() {
        // A namespaced owner is looked up in the dependent's namespace, whatever the
        // reference says (references carry no namespace).
        assert_eq!(owner_namespace(&PODS, "team"), Some("team"));
        // A cluster-scoped owner (a node's Lease's Node) is looked up without one.
        assert_eq!(owner_namespace(&NODES, "kube-node-lease"), Some(""));
        assert_eq!(owner_namespace(&NODES, ""), Some(""));
        // A cluster-scoped dependent cannot have a namespaced owner.
        assert_eq!(owner_namespace(&PODS, ""), None);
    }
}
