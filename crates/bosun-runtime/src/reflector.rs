//! List + watch of one kind into a local cache, as client-go's reflector and informer (and
//! kube-rs's `watcher` + `reflector`).
//!
//! [`reflector`] lists the objects (in pages), then watches from the list's resourceVersion.
//! It follows the watch through the apiserver's own resumes, re-watches from the last version
//! seen when a watch ends, re-lists when that version has expired (410), and waits out errors
//! (the apiserver or a store member restarting) with client-go's back-off: 800 ms doubling to
//! 30 s. Each change updates the [`Store`] first and is then sent as an [`Event`] on a
//! bounded channel, so a handler that reads the store sees at least what the event says.
//! A re-list replaces the store's contents at once and sends the difference (objects added,
//! changed or gone meanwhile), then [`Event::Resynced`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::k8s_openapi::{Metadata, Resource};
use bosun_api_client::{ApiClient, ApiError, ListParams, WatchEvent, WatchParams};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

/// What a [`Store`] can hold: anything with `ObjectMeta` that decodes from the API's JSON
/// (a `k8s-openapi` object, or a view of one that keeps only part of it, for a reflector
/// over a resource named at run time: [`reflector_for`]).
pub trait Cached: Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static {}

impl<K> Cached for K where K: Metadata<Ty = ObjectMeta> + DeserializeOwned + Send + Sync + 'static {}

/// A kind the runtime can cache and act on: a `k8s-openapi` object with `ObjectMeta`.
pub trait Object: Resource + Cached {}

impl<K> Object for K where K: Resource + Cached {}

/// An object of any kind with only the metadata a component needs (`meta.k8s.io/v1`
/// `PartialObjectMetadata`, what Kubernetes' metadata informers hold): decoded from the full
/// object, it keeps name, namespace, uid, resourceVersion, generation, creation and
/// deletion timestamps, ownerReferences and finalizers, and drops the rest (labels,
/// annotations and managedFields included), so that a cache of every kind stays small.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartialObjectMetadata {
    /// The kept metadata.
    pub metadata: ObjectMeta,
}

impl<'de> serde::Deserialize<'de> for PartialObjectMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Full {
            #[serde(default)]
            metadata: ObjectMeta,
        }
        let m = Full::deserialize(d)?.metadata;
        Ok(PartialObjectMetadata {
            metadata: ObjectMeta {
                name: m.name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                owner_references: m.owner_references,
                finalizers: m.finalizers,
                ..ObjectMeta::default()
            },
        })
    }
}

impl Resource for PartialObjectMetadata {
    const API_VERSION: &'static str = "meta.k8s.io/v1";
    const GROUP: &'static str = "meta.k8s.io";
    const KIND: &'static str = "PartialObjectMetadata";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "";
    type Scope = bosun_api_client::k8s_openapi::SubResourceScope;
}

impl Metadata for PartialObjectMetadata {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects (as
/// client-go's `MetaNamespaceKeyFunc`).
pub fn key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}/{name}")
    }
}

/// The cache key of `meta` (see [`key`]).
pub fn key_of(meta: &ObjectMeta) -> String {
    key(
        meta.namespace.as_deref().unwrap_or(""),
        meta.name.as_deref().unwrap_or(""),
    )
}

/// The local cache a reflector fills: the objects of one kind, as last seen. Cheap to clone;
/// readers never block the reflector for longer than a map lookup.
pub struct Store<K> {
    inner: Arc<StoreInner<K>>,
}

struct StoreInner<K> {
    objects: RwLock<HashMap<String, Arc<K>>>,
    synced: watch::Sender<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("synced", &self.is_synced())
            .finish()
    }
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: Arc::new(StoreInner {
                objects: RwLock::new(HashMap::new()),
                synced: watch::channel(false).0,
            }),
        }
    }
}

impl<K> Store<K> {
    /// An empty store, not synced (a reflector fills it).
    pub fn new() -> Self {
        Self::default()
    }

    /// The object `namespace/name` (`namespace` empty for cluster-scoped kinds).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.get_key(&key(namespace, name))
    }

    /// The object with cache key `key` (see [`key`]).
    pub fn get_key(&self, key: &str) -> Option<Arc<K>> {
        self.inner.objects.read().get(key).cloned()
    }

    /// Every object, in no particular order.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.inner.objects.read().values().cloned().collect()
    }

    /// The objects for which `f` holds.
    pub fn filter(&self, mut f: impl FnMut(&K) -> bool) -> Vec<Arc<K>> {
        self.inner
            .objects
            .read()
            .values()
            .filter(|o| f(o))
            .cloned()
            .collect()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        self.inner.objects.read().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full list has been applied.
    pub fn is_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Waits until the first full list has been applied.
    pub async fn wait_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// `obj` without `metadata.managedFields`, as a store keeps it: no component reads them, and
/// they are often the largest part of a decoded object (Kubernetes' informers drop them with
/// `TransformStripManagedFields`). An update sent without them keeps the stored ones.
pub fn trimmed<K: Cached>(mut obj: K) -> K {
    obj.metadata_mut().managed_fields = None;
    obj
}

impl<K: Cached> Store<K> {
    /// A synced store holding `objects`: for tests of code that reads a store.
    pub fn from_objects(objects: impl IntoIterator<Item = K>) -> Self {
        let store = Store::new();
        {
            let mut map = store.inner.objects.write();
            for o in objects {
                map.insert(key_of(o.metadata()), Arc::new(o));
            }
        }
        store.inner.synced.send_replace(true);
        store
    }

    /// Inserts or replaces an object; the previous one.
    fn apply(&self, obj: Arc<K>) -> Option<Arc<K>> {
        self.inner
            .objects
            .write()
            .insert(key_of(obj.metadata()), obj)
    }

    fn remove(&self, meta: &ObjectMeta) -> Option<Arc<K>> {
        self.inner.objects.write().remove(&key_of(meta))
    }

    /// Replaces the contents with a full list; the changes, as events.
    fn replace(&self, items: Vec<K>) -> Vec<Event<K>> {
        let mut fresh: HashMap<String, Arc<K>> = HashMap::with_capacity(items.len());
        for o in items {
            fresh.insert(key_of(o.metadata()), Arc::new(o));
        }
        let mut events = Vec::new();
        let old = {
            let mut map = self.inner.objects.write();
            std::mem::replace(&mut *map, fresh.clone())
        };
        for (k, new) in &fresh {
            match old.get(k) {
                Some(prev)
                    if prev.metadata().resource_version == new.metadata().resource_version
                        && prev.metadata().uid == new.metadata().uid => {}
                prev => events.push(Event::Applied {
                    old: prev.cloned(),
                    new: new.clone(),
                }),
            }
        }
        for (k, prev) in old {
            if !fresh.contains_key(&k) {
                events.push(Event::Deleted(prev));
            }
        }
        self.inner.synced.send_replace(true);
        events
    }
}

/// A change the reflector applied to its [`Store`], sent after the store has it.
pub enum Event<K> {
    /// Created or changed (`old` is the previous state, if it was known).
    Applied {
        /// The state before, when the store had one.
        old: Option<Arc<K>>,
        /// The state now.
        new: Arc<K>,
    },
    /// Deleted: its last known state.
    Deleted(Arc<K>),
    /// A (re)list was applied; the events before it were the difference.
    Resynced,
}

impl<K> std::fmt::Debug for Event<K>
where
    K: Metadata<Ty = ObjectMeta>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Applied { old, new } => f
                .debug_struct("Applied")
                .field("key", &key_of(new.metadata()))
                .field("old", &old.as_ref().map(|o| &o.metadata().resource_version))
                .field("new", &new.metadata().resource_version)
                .finish(),
            Event::Deleted(o) => f
                .debug_tuple("Deleted")
                .field(&key_of(o.metadata()))
                .finish(),
            Event::Resynced => f.write_str("Resynced"),
        }
    }
}

impl<K: Cached> Event<K> {
    /// The object the event is about (`None` for `Resynced`).
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Event::Applied { new, .. } => Some(new),
            Event::Deleted(o) => Some(o),
            Event::Resynced => None,
        }
    }
}

/// What a reflector lists and watches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Label selector (`app=web`); empty for all.
    pub label_selector: String,
    /// Field selector (`spec.nodeName=n1`); empty for all.
    pub field_selector: String,
    /// Objects per list page (client-go's 500); 0 lists everything at once.
    pub page_size: i64,
    /// Capacity of the event channel: the reflector waits when it is full.
    pub events_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            label_selector: String::new(),
            field_selector: String::new(),
            page_size: 500,
            events_capacity: 1024,
        }
    }
}

/// client-go's reflector back-off: 800 ms doubling to 30 s, reset after a good list or a
/// watch that delivered something.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

const BACKOFF_START: Duration = Duration::from_millis(800);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Watches end after this long (client-go picks 5-10 min); the reflector re-watches from the
/// last version, which also moves a watch off an apiserver being drained.
const WATCH_TIMEOUT: Duration = Duration::from_secs(300);

impl Backoff {
    fn new() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
    fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }
}

/// Starts a reflector of `K` in `namespace` (`None`: every namespace). It runs until
/// `shutdown` becomes true; with the event receiver dropped it still keeps the store.
///
/// Lists then watches `K` into a [`Store`], relisting on 410 Expired, reconnecting with
/// back-off after errors (apiserver or store member restart). Events go to the returned
/// bounded channel (capacity from config) *after* the store is updated; `Resynced` after
/// every (re)list, with `Applied`/`Deleted` computed as the diff between old and new contents.
pub fn reflector<K: Object>(
    client: ApiClient,
    namespace: Option<String>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> (Store<K>, mpsc::Receiver<Event<K>>, JoinHandle<()>) {
    reflector_for(
        client,
        K::URL_PATH_SEGMENT,
        K::KIND,
        namespace,
        config,
        shutdown,
    )
}

/// [`reflector`] of the resource named by its plural (`events`, `namespaces`) at run time,
/// decoding each object as `K`: for components that handle every kind of the resource
/// table alike and keep only part of each object (the garbage collector keeps metadata).
/// `kind` names it in logs.
pub fn reflector_for<K: Cached>(
    client: ApiClient,
    resource: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> (Store<K>, mpsc::Receiver<Event<K>>, JoinHandle<()>) {
    let store = Store::new();
    let (tx, rx) = mpsc::channel(config.events_capacity.max(1));
    let r = Reflector {
        client,
        resource,
        kind,
        namespace: namespace.unwrap_or_default(),
        config,
        store: store.clone(),
        tx,
        shutdown,
    };
    let task = tokio::spawn(r.run());
    (store, rx, task)
}

struct Reflector<K> {
    client: ApiClient,
    resource: &'static str,
    kind: &'static str,
    namespace: String,
    config: Config,
    store: Store<K>,
    tx: mpsc::Sender<Event<K>>,
    shutdown: watch::Receiver<bool>,
}

/// Why a watch stopped.
enum Stop {
    /// Shutdown, or nobody listens any more.
    Exit,
    /// The version is gone: re-list.
    Expired,
    /// The watch ended or failed; `backoff` when it failed without progress.
    Rewatch { backoff: bool },
}

impl<K: Cached> Reflector<K> {
    async fn run(mut self) {
        let kind = self.kind;
        let mut backoff = Backoff::new();
        let mut version: Option<String> = None;
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            let rv = match version.take() {
                Some(rv) => rv,
                None => match self.list().await {
                    Ok((items, rv)) => {
                        let n = items.len();
                        let events = self.store.replace(items);
                        debug!(kind, objects = n, changes = events.len(), rv, "listed");
                        for ev in events {
                            if !self.send(ev).await {
                                return;
                            }
                        }
                        if !self.send(Event::Resynced).await {
                            return;
                        }
                        backoff.reset();
                        rv
                    }
                    Err(e) => {
                        warn!(kind, error = %e, "list failed; retrying");
                        if !self.pause(backoff.step()).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            let (stop, last) = self.watch(rv).await;
            match stop {
                Stop::Exit => return,
                Stop::Expired => {
                    info!(kind, "watch version expired; re-listing");
                }
                Stop::Rewatch { backoff: failed } => {
                    version = Some(last);
                    if failed {
                        if !self.pause(backoff.step()).await {
                            return;
                        }
                    } else {
                        backoff.reset();
                    }
                }
            }
        }
    }

    /// Every object, page by page, and the version to watch from. A page token that expired
    /// meanwhile restarts the list without paging (as client-go's pager falls back).
    async fn list(&self) -> Result<(Vec<K>, String), ApiError> {
        let mut params = ListParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            limit: self.config.page_size.max(0),
            continue_token: String::new(),
        };
        let mut items = Vec::new();
        loop {
            let page = match self
                .client
                .list_as::<K>(self.resource, &self.namespace, &params)
                .await
            {
                Ok(p) => p,
                Err(e) if e.is_expired() && !params.continue_token.is_empty() => {
                    items.clear();
                    params.limit = 0;
                    params.continue_token.clear();
                    continue;
                }
                Err(e) => return Err(e),
            };
            items.extend(page.items.into_iter().map(trimmed));
            match page.continue_token {
                Some(t) => params.continue_token = t,
                None => return Ok((items, page.resource_version)),
            }
        }
    }

    /// Watches from `rv` until it ends; why, and the last version seen.
    async fn watch(&mut self, rv: String) -> (Stop, String) {
        let kind = self.kind;
        let params = WatchParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            resource_version: rv.clone(),
            allow_bookmarks: true,
            timeout: Some(WATCH_TIMEOUT),
        };
        let mut w = tokio::select! {
            biased;
            () = crate::stopped(&mut self.shutdown) => return (Stop::Exit, rv),
            w = self.client.watch_as::<K>(self.resource, &self.namespace, &params) => match w {
                Ok(w) => w,
                Err(e) if e.is_expired() => return (Stop::Expired, rv),
                Err(e) => {
                    warn!(kind, error = %e, "watch failed; retrying");
                    return (Stop::Rewatch { backoff: true }, rv);
                }
            },
        };
        let mut last = rv;
        let mut progressed = false;
        loop {
            let ev = tokio::select! {
                biased;
                () = crate::stopped(&mut self.shutdown) => return (Stop::Exit, last),
                ev = w.next() => ev,
            };
            let event = match ev {
                Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                    let new = Arc::new(trimmed(o));
                    let old = self.store.apply(new.clone());
                    Event::Applied { old, new }
                }
                Ok(Some(WatchEvent::Deleted(o))) => {
                    let old = self.store.remove(o.metadata());
                    Event::Deleted(old.unwrap_or_else(|| Arc::new(trimmed(o))))
                }
                Ok(Some(WatchEvent::Bookmark(v))) => {
                    if !v.is_empty() {
                        last = v;
                    }
                    progressed = true;
                    continue;
                }
                Ok(None) => return (Stop::Rewatch { backoff: false }, last),
                Err(e) if e.is_expired() => return (Stop::Expired, last),
                Err(e) => {
                    warn!(kind, error = %e, rv = %last, "watch broke; resuming");
                    return (
                        Stop::Rewatch {
                            backoff: !progressed,
                        },
                        last,
                    );
                }
            };
            progressed = true;
            if let Some(v) = event
                .object()
                .and_then(|o| o.metadata().resource_version.clone())
            {
                last = v;
            }
            if !self.send(event).await {
                return (Stop::Exit, last);
            }
        }
    }

    /// Sends an event, waiting while the channel is full; false on shutdown. A dropped
    /// receiver is fine: the store is still kept.
    async fn send(&mut self, ev: Event<K>) -> bool {
        if self.tx.is_closed() {
            return !*self.shutdown.borrow();
        }
        tokio::select! {
            biased;
            () = crate::stopped(&mut self.shutdown) => false,
            _ = self.tx.send(ev) => true,
        }
    }

    /// Waits `d`; false on shutdown.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            biased;
            () = crate::stopped(&mut self.shutdown) => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bosun_api_client::k8s_openapi::api::core::v1::Pod;

    use super::*;

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: (!ns.is_empty()).then(|| ns.to_owned()),
                name: Some(name.to_owned()),
                resource_version: Some(rv.to_owned()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn keys_are_namespace_slash_name() {
        assert_eq!(key("default", "web"), "default/web");
        assert_eq!(key("", "node-1"), "node-1");
        assert_eq!(key_of(&pod("ns", "a", "1").metadata), "ns/a");
    }

    #[test]
    fn a_stored_object_has_no_managed_fields_and_nothing_else_lost() {
        use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut p = pod("ns", "a", "7");
        p.metadata.labels = Some([("app".to_owned(), "web".to_owned())].into());
        let want = p.clone();
        p.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("m".into()),
            ..Default::default()
        }]);
        assert_eq!(trimmed(p), want);
    }

    #[test]
    fn partial_metadata_keeps_only_what_a_collector_needs() {
        let json = serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {
                "name": "e", "namespace": "default", "uid": "u", "resourceVersion": "7",
                "labels": {"a": "b"}, "annotations": {"big": "x".repeat(1000)},
                "managedFields": [{"manager": "m", "operation": "Update"}],
                "finalizers": ["f"],
                "deletionTimestamp": "2026-01-01T00:00:00Z",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "web", "uid": "o"}]
            },
            "message": "m".repeat(1000),
            "involvedObject": {"kind": "Pod"}
        });
        let p: PartialObjectMetadata = serde_json::from_value(json).unwrap();
        let m = &p.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("e"), Some("default"), Some("u"))
        );
        assert_eq!(m.resource_version.as_deref(), Some("7"));
        assert_eq!(m.finalizers, Some(vec!["f".to_string()]));
        assert!(m.deletion_timestamp.is_some());
        assert_eq!(m.owner_references.as_ref().unwrap()[0].uid, "o");
        assert!(m.labels.is_none() && m.annotations.is_none() && m.managed_fields.is_none());
        // An object without metadata decodes too.
        let p: PartialObjectMetadata = serde_json::from_str("{}").unwrap();
        assert_eq!(p, PartialObjectMetadata::default());
    }

    #[tokio::test]
    async fn a_relist_sends_the_difference() {
        let store: Store<Pod> = Store::new();
        assert!(!store.is_synced());
        let evs = store.replace(vec![pod("d", "a", "1"), pod("d", "b", "2")]);
        assert_eq!(evs.len(), 2);
        assert!(store.is_synced());
        store.wait_synced().await;
        // a unchanged, b changed, c new, and then a gone.
        let evs = store.replace(vec![
            pod("d", "b", "5"),
            pod("d", "c", "6"),
            pod("d", "a", "1"),
        ]);
        let mut got: Vec<String> = evs.iter().map(|e| format!("{e:?}")).collect();
        got.sort();
        assert_eq!(
            got,
            [
                "Applied { key: \"d/b\", old: Some(Some(\"2\")), new: Some(\"5\") }",
                "Applied { key: \"d/c\", old: None, new: Some(\"6\") }",
            ]
        );
        let evs = store.replace(vec![pod("d", "b", "5")]);
        assert_eq!(evs.len(), 2);
        assert!(
            evs.iter()
                .all(|e| matches!(e, Event::Deleted(p) if p.metadata.name.as_deref() != Some("b")))
        );
        assert_eq!(store.len(), 1);
        assert_eq!(
            store
                .get("d", "b")
                .unwrap()
                .metadata
                .resource_version
                .as_deref(),
            Some("5")
        );
        assert!(store.get("d", "a").is_none());
    }

    #[test]
    fn from_objects_is_synced() {
        let store = Store::from_objects([pod("", "n1", "3"), pod("x", "p", "4")]);
        assert!(store.is_synced());
        assert!(store.get("", "n1").is_some());
        assert_eq!(
            store.get_key("x/p").unwrap().metadata.name.as_deref(),
            Some("p")
        );
        assert_eq!(store.filter(|p| p.metadata.namespace.is_none()).len(), 1);
        assert_eq!(store.list().len(), 2);
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let mut b = Backoff::new();
        let steps: Vec<u128> = (0..8).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        b.reset();
        assert_eq!(b.step(), BACKOFF_START);
    }
}
