//! Unit tests of the registry's create, update, delete and finalizer logic over the
//! in-memory store: what each verb writes, when it refuses, and what it leaves.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::meta::{finalizers, meta_str};
use bosun_api::resources::{DEPLOYMENTS, EVENTS, NAMESPACES, PODS, Resource};
use bosun_api::selectors::{FieldSelector, LabelSelector};
use serde_json::{Value, json};

use super::mem::MemStore;
use super::store::Store;
use super::{ListOptions, Registry, WriteOptions};
use crate::error::Status;
use crate::kinds::{self, Kind, Part, Warnings};
use crate::limits::Limits;
use crate::merge::patch::PatchType;
use crate::watch::cache::WatchCache;
use crate::watch::cached::Cached;

fn kind(res: &Resource) -> &'static dyn Kind {
    kinds::by_plural(res.plural).unwrap()
}

fn pods() -> &'static dyn Kind {
    kind(&PODS)
}

fn deployments() -> &'static dyn Kind {
    kind(&DEPLOYMENTS)
}

/// A registry over an empty in-memory store, with the `default` namespace.
async fn registry() -> Registry<MemStore> {
    let r = Registry::new(
        MemStore::default(),
        "/registry/".into(),
        HashMap::new(),
        Duration::from_secs(3600),
        Limits::default(),
    );
    namespace(&r, "default").await;
    r
}

async fn namespace(r: &Registry<MemStore>, name: &str) {
    let ns = json!({"metadata": {"name": name}});
    r.create(kinds::namespaces(), "", ns, WriteOptions::default())
        .await
        .unwrap();
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
}

async fn create(r: &Registry<MemStore>, kind: &dyn Kind, obj: Value) -> Value {
    r.create(kind, "default", obj, WriteOptions::default())
        .await
        .unwrap()
        .0
}

fn rv(obj: &Value) -> i64 {
    meta_str(obj, "resourceVersion").parse().unwrap()
}

/// The stored JSON of an object, straight from the store.
fn stored(r: &Registry<MemStore>, res: &Resource, ns: &str, name: &str) -> Option<Value> {
    let v = r.store().value(&r.key(res, ns, name))?;
    Some(serde_json::from_slice(&v).unwrap())
}

async fn delete(
    r: &Registry<MemStore>,
    kind: &dyn Kind,
    name: &str,
    opts: Value,
) -> Result<super::delete::Deleted, Status> {
    r.delete(kind, "default", name, &opts, WriteOptions::default())
        .await
}

async fn update(
    r: &Registry<MemStore>,
    kind: &dyn Kind,
    name: &str,
    body: Value,
    part: Part,
) -> Result<(Value, Warnings), Status> {
    r.update(kind, "default", name, body, part, WriteOptions::default())
        .await
}

/// Patches the deployment `web`.
async fn patch(
    r: &Registry<MemStore>,
    ptype: PatchType,
    patch: Value,
) -> Result<(Value, Warnings), Status> {
    let body = serde_json::to_vec(&patch).unwrap();
    r.patch(
        deployments(),
        "default",
        "web",
        ptype,
        &body,
        Part::Main,
        WriteOptions::default(),
    )
    .await
}

#[tokio::test]
async fn create_fills_what_the_server_owns() {
    let r = registry().await;
    let mut body = pod("a");
    body["metadata"]["resourceVersion"] = json!("99");
    body["metadata"]["uid"] = json!("client-uid");
    body["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
    body["status"] = json!({"phase": "Running"});
    let before = r.store().revision();
    let p = create(&r, pods(), body).await;
    assert_eq!(
        rv(&p),
        before + 1,
        "resourceVersion is the create's revision"
    );
    assert_eq!(meta_str(&p, "namespace"), "default");
    assert_ne!(meta_str(&p, "uid"), "client-uid");
    assert_eq!(meta_str(&p, "uid").len(), 36);
    assert!(meta_str(&p, "creationTimestamp").ends_with('Z'));
    assert!(p["metadata"].get("deletionTimestamp").is_none());
    assert_eq!(
        p["metadata"]["generation"], 1,
        "pods have a spec generation"
    );
    assert_eq!(
        p["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
    assert_eq!(p["spec"]["restartPolicy"], "Always", "defaulted");
    // The stored value is the answer without its resourceVersion (that is the key's revision).
    let mut s = stored(&r, &PODS, "default", "a").unwrap();
    assert!(s["metadata"].get("resourceVersion").is_none());
    s["metadata"]["resourceVersion"] = p["metadata"]["resourceVersion"].clone();
    assert_eq!(s, p);
    // Cluster-scoped kinds drop a namespace and have no generation.
    let ns = json!({"metadata": {"name": "team", "namespace": "x", "generation": 7}});
    let (n, _) = r
        .create(kinds::namespaces(), "ignored", ns, WriteOptions::default())
        .await
        .unwrap();
    assert!(n["metadata"].get("namespace").is_none());
    assert!(n["metadata"].get("generation").is_none());
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team"
    );
    assert!(stored(&r, &NAMESPACES, "", "team").is_some());
}

#[tokio::test]
async fn generate_name_and_clashes() {
    let r = registry().await;
    let generated = json!({"metadata": {"generateName": "web-"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let a = create(&r, pods(), generated.clone()).await;
    let b = create(&r, pods(), generated).await;
    for p in [&a, &b] {
        let name = meta_str(p, "name");
        let suffix = name.strip_prefix("web-").unwrap();
        assert_eq!(suffix.len(), 5, "{name}");
        assert!(
            suffix
                .bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }
    assert_ne!(meta_str(&a, "name"), meta_str(&b, "name"));
    // An explicit name wins over generateName, and may not exist yet.
    let mut both = pod("fixed");
    both["metadata"]["generateName"] = json!("web-");
    assert_eq!(
        meta_str(&create(&r, pods(), both.clone()).await, "name"),
        "fixed"
    );
    let e = r
        .create(pods(), "default", both, WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
    assert_eq!(e.message, "pods \"fixed\" already exists");
}

#[tokio::test]
async fn refused_creates_write_nothing() {
    let r = registry().await;
    let head = r.store().revision();
    let e = r
        .create(pods(), "nowhere", pod("a"), WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
    let mut moved = pod("a");
    moved["metadata"]["namespace"] = json!("other");
    let e = r
        .create(pods(), "default", moved, WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, 400);
    let e = r
        .create(
            pods(),
            "default",
            json!({"kind": "Node", "metadata": {"name": "a"}}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "the kind in the data (Node) does not match the expected kind (Pod)"
    );
    let invalid = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}});
    let e = r
        .create(pods(), "default", invalid, WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason), (422, "Invalid"));
    let dry = WriteOptions {
        dry_run: true,
        ..WriteOptions::default()
    };
    let (p, _) = r.create(pods(), "default", pod("a"), dry).await.unwrap();
    assert_eq!(meta_str(&p, "name"), "a");
    assert_eq!(r.store().revision(), head, "nothing written");
    assert!(stored(&r, &PODS, "default", "a").is_none());
}

#[tokio::test]
async fn updates_keep_what_the_server_owns_and_bump_the_generation() {
    let r = registry().await;
    let d = create(&r, deployments(), deployment("web", 1)).await;
    // A status written with the object is ignored: status is a subresource.
    let mut body = d.clone();
    body["spec"]["replicas"] = json!(3);
    body["status"] = json!({"replicas": 9});
    body["metadata"]["uid"] = json!("forged");
    body["metadata"]["generation"] = json!(40);
    let (u, _) = update(&r, deployments(), "web", body, Part::Main)
        .await
        .unwrap();
    assert_eq!(u["spec"]["replicas"], 3);
    assert!(u.get("status").is_none());
    assert_eq!(meta_str(&u, "uid"), meta_str(&d, "uid"));
    assert_eq!(u["metadata"]["generation"], 2, "spec changed");
    assert!(rv(&u) > rv(&d));
    // Labels change, the spec does not: same generation.
    let mut body = u.clone();
    body["metadata"]["labels"] = json!({"tier": "web"});
    let (l, _) = update(&r, deployments(), "web", body, Part::Main)
        .await
        .unwrap();
    assert_eq!(l["metadata"]["generation"], 2);
    // The status subresource changes the status only.
    let mut body = l.clone();
    body["status"] = json!({"replicas": 3});
    body["spec"]["replicas"] = json!(7);
    let (s, _) = update(&r, deployments(), "web", body, Part::Status)
        .await
        .unwrap();
    assert_eq!(s["status"]["replicas"], 3);
    assert_eq!(s["spec"]["replicas"], 3);
    assert_eq!(s["metadata"]["generation"], 2);
    // A deployment's status write keeps its annotations, not its labels
    // (deploymentStatusStrategy): the controller records the revision so.
    let mut body = s.clone();
    body["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "2"});
    body["metadata"]["labels"] = json!({"tier": "forged"});
    let (a, _) = update(&r, deployments(), "web", body, Part::Status)
        .await
        .unwrap();
    assert_eq!(
        a["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    assert_eq!(a["metadata"]["labels"], json!({"tier": "web"}));
    assert_eq!(a["metadata"]["generation"], 2);
    let s = a;
    // An update that changes nothing writes nothing.
    let head = r.store().revision();
    let (same, _) = update(&r, deployments(), "web", s.clone(), Part::Main)
        .await
        .unwrap();
    assert_eq!((rv(&same), r.store().revision()), (rv(&s), head));
}

#[tokio::test]
async fn a_stale_resource_version_conflicts_and_lost_races_retry() {
    let r = registry().await;
    let d = create(&r, deployments(), deployment("web", 1)).await;
    let mut stale = d.clone();
    stale["spec"]["replicas"] = json!(2);
    let (fresh, _) = update(&r, deployments(), "web", stale.clone(), Part::Main)
        .await
        .unwrap();
    // The same body again carries the old resourceVersion.
    stale["spec"]["replicas"] = json!(5);
    let e = update(&r, deployments(), "web", stale, Part::Main)
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion, a write that loses a race reads again and retries...
    let mut body = fresh.clone();
    body["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    body["spec"]["replicas"] = json!(4);
    r.store().interfere(3);
    let (won, _) = update(&r, deployments(), "web", body.clone(), Part::Main)
        .await
        .unwrap();
    assert_eq!(won["spec"]["replicas"], 4);
    // ...a bounded number of times.
    body["spec"]["replicas"] = json!(6);
    r.store().interfere(1000);
    let e = update(&r, deployments(), "web", body, Part::Main)
        .await
        .unwrap_err();
    assert_eq!(e.code, 409);
    r.store().interfere(0);
    // With one, a lost race is the client's conflict at once.
    let mut pinned = won.clone();
    pinned["spec"]["replicas"] = json!(8);
    r.store().interfere(1);
    let e = update(&r, deployments(), "web", pinned, Part::Main)
        .await
        .unwrap_err();
    assert_eq!(e.code, 409);
}

#[tokio::test]
async fn patches_cannot_move_the_object_and_honour_their_resource_version() {
    let r = registry().await;
    let d = create(&r, deployments(), deployment("web", 1)).await;
    let (p, _) = patch(&r, PatchType::Strategic, json!({"spec": {"replicas": 2}}))
        .await
        .unwrap();
    assert_eq!(
        (
            p["spec"]["replicas"].as_i64(),
            p["metadata"]["generation"].as_i64()
        ),
        (Some(2), Some(2))
    );
    let e = patch(&r, PatchType::Merge, json!({"metadata": {"resourceVersion": meta_str(&d, "resourceVersion")}, "spec": {"replicas": 3}})).await
        .unwrap_err();
    assert_eq!(e.code, 409);
    let e = patch(
        &r,
        PatchType::Json,
        json!([{"op": "remove", "path": "/metadata/name"}]),
    )
    .await
    .unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (400, "name must be provided"));
    let e = patch(
        &r,
        PatchType::Merge,
        json!({"metadata": {"namespace": "other"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(
        stored(&r, &DEPLOYMENTS, "default", "web").unwrap()["spec"]["replicas"],
        2
    );
}

#[tokio::test]
async fn delete_answers_the_object_and_checks_preconditions() {
    let r = registry().await;
    let d = create(&r, deployments(), deployment("web", 1)).await;
    let uid = meta_str(&d, "uid").to_string();
    let e = delete(
        &r,
        deployments(),
        "web",
        json!({"preconditions": {"uid": "other"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        format!(
            "Operation cannot be fulfilled on deployments.apps \"web\": Precondition failed: UID in precondition: other, UID in object meta: {uid}"
        )
    );
    let e = delete(
        &r,
        deployments(),
        "web",
        json!({"preconditions": {"resourceVersion": "1"}}),
    )
    .await
    .unwrap_err();
    assert!(
        e.message
            .contains("Precondition failed: ResourceVersion in precondition: 1"),
        "{}",
        e.message
    );
    let e = delete(
        &r,
        deployments(),
        "web",
        json!({"propagationPolicy": "Sideways"}),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.message,
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\""
    );
    assert!(stored(&r, &DEPLOYMENTS, "default", "web").is_some());
    let gone = delete(
        &r,
        deployments(),
        "web",
        json!({"preconditions": {"uid": uid}}),
    )
    .await
    .unwrap();
    assert!(gone.gone);
    assert_eq!(
        rv(&gone.object),
        r.store().revision(),
        "the deletion's revision"
    );
    assert!(stored(&r, &DEPLOYMENTS, "default", "web").is_none());
    let e = delete(&r, deployments(), "web", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, 404);
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_the_last_goes() {
    let r = registry().await;
    let mut body = deployment("web", 1);
    body["metadata"]["finalizers"] = json!(["example.com/hold"]);
    create(&r, deployments(), body).await;
    let marked = delete(&r, deployments(), "web", json!({})).await.unwrap();
    assert!(!marked.gone);
    assert!(!meta_str(&marked.object, "deletionTimestamp").is_empty());
    assert_eq!(marked.object["metadata"]["deletionGracePeriodSeconds"], 0);
    // No new finalizers on an object being deleted.
    let mut more = marked.object.clone();
    more["metadata"]["finalizers"] = json!(["example.com/hold", "example.com/new"]);
    let e = update(&r, deployments(), "web", more, Part::Main)
        .await
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "deployments.apps \"web\" is forbidden: no new finalizers can be added if the object is being deleted"
    );
    // Deleting again changes nothing.
    let again = delete(&r, deployments(), "web", json!({})).await.unwrap();
    assert_eq!(again.object, marked.object);
    // Removing the last finalizer removes the object.
    let mut done = marked.object.clone();
    done["metadata"]["finalizers"] = json!([]);
    update(&r, deployments(), "web", done, Part::Main)
        .await
        .unwrap();
    assert!(stored(&r, &DEPLOYMENTS, "default", "web").is_none());
}

#[tokio::test]
async fn propagation_policies_become_finalizers() {
    let r = registry().await;
    for (name, opts, want) in [
        ("a", json!({"propagationPolicy": "Orphan"}), vec!["orphan"]),
        (
            "b",
            json!({"propagationPolicy": "Foreground"}),
            vec!["foregroundDeletion"],
        ),
        ("c", json!({"orphanDependents": true}), vec!["orphan"]),
    ] {
        create(&r, deployments(), deployment(name, 1)).await;
        let d = delete(&r, deployments(), name, opts).await.unwrap();
        assert!(!d.gone, "{name}");
        assert_eq!(finalizers(&d.object), want, "{name}");
    }
    // A later delete with another policy replaces the policy's finalizer, and keeps others.
    let mut body = deployment("d", 1);
    body["metadata"]["finalizers"] = json!(["example.com/keep"]);
    create(&r, deployments(), body).await;
    delete(
        &r,
        deployments(),
        "d",
        json!({"propagationPolicy": "Orphan"}),
    )
    .await
    .unwrap();
    let d = delete(
        &r,
        deployments(),
        "d",
        json!({"propagationPolicy": "Foreground"}),
    )
    .await
    .unwrap();
    assert_eq!(
        finalizers(&d.object),
        ["example.com/keep", "foregroundDeletion"]
    );
    // Background (or orphanDependents: false) deletes at once.
    create(&r, deployments(), deployment("e", 1)).await;
    let d = delete(&r, deployments(), "e", json!({"orphanDependents": false}))
        .await
        .unwrap();
    assert!(d.gone);
}

#[tokio::test]
async fn pods_on_nodes_are_deleted_gracefully() {
    let r = registry().await;
    // Not on a node: gone at once.
    create(&r, pods(), pod("idle")).await;
    assert!(delete(&r, pods(), "idle", json!({})).await.unwrap().gone);
    // On a node: marked with its grace period, until the kubelet deletes it with 0.
    let mut body = pod("busy");
    body["spec"]["nodeName"] = json!("n1");
    body["spec"]["terminationGracePeriodSeconds"] = json!(20);
    create(&r, pods(), body).await;
    let d = delete(&r, pods(), "busy", json!({})).await.unwrap();
    assert!(!d.gone);
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 20);
    let deadline = meta_str(&d.object, "deletionTimestamp").to_string();
    // A longer grace does not extend it; a shorter one shortens it.
    let d = delete(&r, pods(), "busy", json!({"gracePeriodSeconds": 60}))
        .await
        .unwrap();
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 20);
    assert_eq!(meta_str(&d.object, "deletionTimestamp"), deadline);
    let d = delete(&r, pods(), "busy", json!({"gracePeriodSeconds": 5}))
        .await
        .unwrap();
    assert_eq!(d.object["metadata"]["deletionGracePeriodSeconds"], 5);
    // Its finalizers going does not remove a pod whose kubelet has not finished.
    let mut body = d.object.clone();
    body["metadata"]["labels"] = json!({"x": "1"});
    update(&r, pods(), "busy", body, Part::Main).await.unwrap();
    assert!(stored(&r, &PODS, "default", "busy").is_some());
    let d = delete(&r, pods(), "busy", json!({"gracePeriodSeconds": 0}))
        .await
        .unwrap();
    assert!(d.gone);
    assert!(stored(&r, &PODS, "default", "busy").is_none());
}

/// A registry whose namespaces' watch cache keeps objects, as the apiserver's does.
fn registry_with_namespace_cache() -> (Registry<MemStore>, Arc<WatchCache>) {
    let cache = WatchCache::new(&NAMESPACES, 100, 10).keeping_objects();
    cache.restart(0, false);
    let r = Registry::new(
        MemStore::default(),
        "/registry/".into(),
        HashMap::from([("namespaces", cache.clone())]),
        Duration::from_secs(3600),
        Limits::default(),
    );
    (r, cache)
}

#[tokio::test]
async fn a_create_checks_its_namespace_in_the_same_write() {
    let (r, cache) = registry_with_namespace_cache();
    namespace(&r, "team").await;
    let ns_key = r.key(&NAMESPACES, "", "team");
    let in_team = |name: &'static str| {
        let r = &r;
        async move {
            r.create(pods(), "team", pod(name), WriteOptions::default())
                .await
        }
    };

    // The first create reads the namespace and remembers it; the next ones do not read.
    in_team("a").await.unwrap();
    let reads = r.store().gets();
    in_team("b").await.unwrap();
    in_team("c").await.unwrap();
    assert_eq!(r.store().gets(), reads, "the namespace came from the cache");
    let e = in_team("c").await.unwrap_err();
    assert_eq!((e.code, e.reason), (409, "AlreadyExists"));

    // The namespace begins terminating and the cache has not heard yet: the create is refused
    // all the same, as the write required the namespace unchanged.
    let (stale_rev, stale) = cache.object(&ns_key).unwrap();
    r.delete(
        kinds::namespaces(),
        "",
        "team",
        &json!({}),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    cache.remember(ns_key.as_bytes(), stale_rev, Some(&stale));
    let e = in_team("late").await.unwrap_err();
    assert_eq!(e.code, 403, "{e:?}");
    assert!(stored(&r, &PODS, "team", "late").is_none());

    // A namespace that is gone while the cache still holds it: 404, nothing written.
    // (The cache is seeded by hand: no store watch feeds it here.)
    let seed = |name: &'static str| {
        let (r, cache) = (&r, &cache);
        async move {
            let key = r.key(&NAMESPACES, "", name);
            let kv = r.store().get(&key).await.unwrap().unwrap();
            let value: Value = serde_json::from_slice(&kv.value).unwrap();
            let obj = Arc::new(Cached::encode(&NAMESPACES, &value));
            cache.remember(key.as_bytes(), kv.mod_revision, Some(&obj));
            (kv.mod_revision, obj)
        }
    };
    namespace(&r, "gone").await;
    let gone_key = r.key(&NAMESPACES, "", "gone");
    let (rev, _) = seed("gone").await;
    r.store().delete(&gone_key, rev).await.unwrap();
    let e = r
        .create(pods(), "gone", pod("x"), WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, 404, "{e:?}");
    assert!(stored(&r, &PODS, "gone", "x").is_none());
    assert!(
        cache.object(&gone_key).is_none(),
        "the read corrected the cache"
    );

    // A namespace changed in a harmless way (a label): the create goes through after a read.
    namespace(&r, "busy").await;
    let (rev, obj) = seed("busy").await;
    let mut ns = r.get(kinds::namespaces(), "", "busy").await.unwrap();
    ns["metadata"]["labels"] = json!({"team": "x"});
    r.update(
        kinds::namespaces(),
        "",
        "busy",
        ns,
        Part::Main,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    cache.remember(r.key(&NAMESPACES, "", "busy").as_bytes(), rev, Some(&obj));
    r.create(pods(), "busy", pod("y"), WriteOptions::default())
        .await
        .unwrap();
    assert!(stored(&r, &PODS, "busy", "y").is_some());
}

#[tokio::test]
async fn a_deleted_namespace_terminates_until_finalized() {
    let r = registry().await;
    namespace(&r, "team").await;
    assert_eq!(
        stored(&r, &NAMESPACES, "", "team").unwrap()["spec"]["finalizers"],
        json!(["kubernetes"])
    );
    r.create(pods(), "team", pod("a"), WriteOptions::default())
        .await
        .unwrap();
    let del = || async {
        r.delete(
            kinds::namespaces(),
            "",
            "team",
            &json!({}),
            WriteOptions::default(),
        )
        .await
        .unwrap()
    };
    let d = del().await;
    assert!(!d.gone);
    assert_eq!(d.object["status"]["phase"], "Terminating");
    assert!(!meta_str(&d.object, "deletionTimestamp").is_empty());
    let e = r
        .create(pods(), "team", pod("late"), WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );
    // Nothing in the apiserver empties it: the pod stays, and so does the namespace, however
    // often it is deleted, while spec.finalizers holds it.
    assert!(!del().await.gone);
    assert!(stored(&r, &PODS, "team", "a").is_some());
    // A plain update cannot drop spec.finalizers.
    let mut ns = r.get(kinds::namespaces(), "", "team").await.unwrap();
    ns["spec"]["finalizers"] = json!([]);
    let (after, _) = r
        .update(
            kinds::namespaces(),
            "",
            "team",
            ns,
            Part::Main,
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(after["spec"]["finalizers"], json!(["kubernetes"]));
    // finalize with an empty list removes it: nothing else holds it.
    let mut fin = r.get(kinds::namespaces(), "", "team").await.unwrap();
    fin["spec"]["finalizers"] = json!([]);
    r.update(
        kinds::namespaces(),
        "",
        "team",
        fin,
        Part::Finalize,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert!(stored(&r, &NAMESPACES, "", "team").is_none());

    // With a metadata finalizer too, it goes only when both are empty.
    let mut held = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    held = r
        .create(kinds::namespaces(), "", held, WriteOptions::default())
        .await
        .unwrap()
        .0;
    assert_eq!(held["spec"]["finalizers"], json!(["kubernetes"]));
    r.delete(
        kinds::namespaces(),
        "",
        "held",
        &json!({}),
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let mut fin = r.get(kinds::namespaces(), "", "held").await.unwrap();
    fin["spec"]["finalizers"] = json!([]);
    r.update(
        kinds::namespaces(),
        "",
        "held",
        fin,
        Part::Finalize,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    let mut free = stored(&r, &NAMESPACES, "", "held").expect("held by its metadata finalizer");
    free["metadata"]["finalizers"] = json!([]);
    r.update(
        kinds::namespaces(),
        "",
        "held",
        free,
        Part::Main,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    assert!(stored(&r, &NAMESPACES, "", "held").is_none());
    // The built-in namespaces stay, and namespaces have no delete-collection.
    let e = r
        .delete(
            kinds::namespaces(),
            "",
            "default",
            &json!({}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, 403);
    let e = r
        .delete_collection(
            kinds::namespaces(),
            None,
            &ListOptions::default(),
            &json!({}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, 405);
}

#[tokio::test]
async fn delete_collection_checks_every_object_before_the_first_delete() {
    let r = registry().await;
    for name in ["a", "b", "c"] {
        create(&r, deployments(), deployment(name, 1)).await;
    }
    let uid_a = meta_str(&r.get(deployments(), "default", "a").await.unwrap(), "uid").to_string();
    let head = r.store().revision();
    let e = r
        .delete_collection(
            deployments(),
            Some("default"),
            &ListOptions::default(),
            &json!({"preconditions": {"uid": uid_a}}),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, 409);
    assert_eq!(r.store().revision(), head, "nothing deleted");
    let only_b = ListOptions {
        fields: FieldSelector::parse("metadata.name=b").unwrap(),
        ..ListOptions::default()
    };
    let out = r
        .delete_collection(
            deployments(),
            Some("default"),
            &only_b,
            &json!({}),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    let left = r
        .list(deployments(), Some("default"), &ListOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = left.items.iter().map(|o| meta_str(o, "name")).collect();
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test]
async fn lists_page_at_one_revision() {
    let r = registry().await;
    for i in 0..5 {
        let mut p = pod(&format!("p{i}"));
        p["metadata"]["labels"] = json!({"odd": if i % 2 == 1 { "yes" } else { "no" }});
        create(&r, pods(), p).await;
    }
    let page = |cont: String| ListOptions {
        limit: 2,
        continue_token: cont,
        ..ListOptions::default()
    };
    let first = r
        .list(pods(), Some("default"), &page(String::new()))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.remaining, Some(3));
    // A pod created now is not in the later pages of this list.
    create(&r, pods(), pod("p9")).await;
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|o| meta_str(o, "name").to_string())
        .collect();
    let mut cont = first.continue_token.clone();
    while let Some(c) = cont {
        let next = r.list(pods(), Some("default"), &page(c)).await.unwrap();
        assert_eq!(next.revision, first.revision);
        names.extend(next.items.iter().map(|o| meta_str(o, "name").to_string()));
        cont = next.continue_token;
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    // A selector filters across pages until the limit is met.
    let odd = ListOptions {
        labels: LabelSelector::parse("odd=yes").unwrap(),
        limit: 5,
        ..ListOptions::default()
    };
    let l = r.list(pods(), Some("default"), &odd).await.unwrap();
    assert_eq!(l.items.len(), 2);
    assert_eq!(l.remaining, None, "unknown with a selector");
    // An old continue token expires once its revision is compacted.
    r.store().compact(r.store().revision());
    let e = r
        .list(
            pods(),
            Some("default"),
            &page(first.continue_token.clone().unwrap()),
        )
        .await
        .unwrap_err();
    assert_eq!((e.code, e.reason), (410, "Expired"));
    assert!(
        e.message
            .starts_with("The provided continue parameter is too old")
    );
    let ahead = ListOptions {
        exact_revision: Some(r.store().revision() + 10),
        ..ListOptions::default()
    };
    let e = r.list(pods(), None, &ahead).await.unwrap_err();
    assert_eq!((e.code, e.reason), (504, "Timeout"));
    let bad = ListOptions {
        fields: FieldSelector::parse("spec.image=x").unwrap(),
        ..ListOptions::default()
    };
    let e = r.list(pods(), None, &bad).await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: spec.image")
    );
    let e = r
        .list(pods(), None, &page("garbage".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code, 400);
}

#[tokio::test]
async fn events_share_a_lease_and_keep_it() {
    let r = registry().await;
    let event = |name: &str| {
        json!({"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "m", "type": "Normal", "source": {"component": "kubelet"}})
    };
    let events = kind(&EVENTS);
    let a = create(&r, events, event("a")).await;
    create(&r, events, event("b")).await;
    let key = |n: &str| r.key(&EVENTS, "default", n);
    let lease = r.store().lease_of(&key("a"));
    assert!(lease.is_some());
    assert_eq!(
        r.store().lease_of(&key("b")),
        lease,
        "one lease for events of a minute"
    );
    let mut body = a.clone();
    body["message"] = json!("again");
    update(&r, events, "a", body, Part::Main).await.unwrap();
    assert_eq!(
        r.store().lease_of(&key("a")),
        lease,
        "an update keeps the lease"
    );
    assert_eq!(r.store().lease_of(&r.key(&PODS, "default", "x")), None);
}

/// A registry whose pods' watch cache keeps objects, as the apiserver's does.
async fn registry_with_pod_cache() -> (Registry<MemStore>, Arc<WatchCache>) {
    let cache = WatchCache::new(&PODS, 100, 10).keeping_objects();
    cache.restart(0, false);
    let r = Registry::new(
        MemStore::default(),
        "/registry/".into(),
        HashMap::from([("pods", cache.clone())]),
        Duration::from_secs(3600),
        Limits::default(),
    );
    namespace(&r, "default").await;
    (r, cache)
}

#[tokio::test]
async fn binding_starts_from_the_watch_cache_and_checks_it() {
    let (r, cache) = registry_with_pod_cache().await;
    let bind = |name: &'static str, node: &'static str| {
        let r = &r;
        async move {
            r.bind(pods(), "default", name, &json!({"target": {"name": node}}))
                .await
        }
    };
    let seed = |name: &str, obj: Value, rev: i64| {
        cache.remember(
            r.key(&PODS, "default", name).as_bytes(),
            rev,
            Some(&Arc::new(Cached::encode(&PODS, &obj))),
        );
    };
    let stored = |name: &'static str| {
        let r = &r;
        async move { r.get(pods(), "default", name).await.unwrap() }
    };

    // A current guess is used as it is: no read (the probe label, which only the cached
    // copy has, is written).
    let p = create(&r, pods(), pod("a")).await;
    let mut guess = p.clone();
    guess["metadata"]["labels"] = json!({"probe": "cache"});
    seed("a", guess, rv(&p));
    bind("a", "n1").await.unwrap();
    let a = stored("a").await;
    assert_eq!(
        (
            a["spec"]["nodeName"].as_str(),
            a["metadata"]["labels"]["probe"].as_str()
        ),
        (Some("n1"), Some("cache"))
    );

    // A stale guess loses the swap; the pod is re-read and nothing written since is lost.
    let p = create(&r, pods(), pod("b")).await;
    seed("b", p.clone(), rv(&p));
    let mut changed = p.clone();
    changed["metadata"]["labels"] = json!({"written": "later"});
    r.update(
        pods(),
        "default",
        "b",
        changed,
        Part::Main,
        WriteOptions::default(),
    )
    .await
    .unwrap();
    bind("b", "n2").await.unwrap();
    let b = stored("b").await;
    assert_eq!(
        (
            b["spec"]["nodeName"].as_str(),
            b["metadata"]["labels"]["written"].as_str()
        ),
        (Some("n2"), Some("later"))
    );

    // The cache says unbound but the store has it bound: Conflict, as without the cache.
    let p = create(&r, pods(), pod("c")).await;
    seed("c", p.clone(), rv(&p));
    let mut bound = p.clone();
    bound["spec"]["nodeName"] = json!("n1");
    r.store().put_raw(
        &r.key(&PODS, "default", "c"),
        &serde_json::to_vec(&bound).unwrap(),
    );
    let e = bind("c", "n2").await.unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            409,
            "Operation cannot be fulfilled on pods \"c\": pod c is already assigned to node \"n1\""
        )
    );

    // A cached pod that is bound or being deleted (an older pod of that name) is not
    // refused on the cache's word: the store has an unbound one, and it is bound.
    for (name, field, value) in [
        ("d", "/spec", json!({"nodeName": "old"})),
        (
            "e",
            "/metadata",
            json!({"name": "e", "deletionTimestamp": "2026-01-01T00:00:00Z"}),
        ),
    ] {
        let p = create(&r, pods(), pod(name)).await;
        let mut guess = p.clone();
        *guess.pointer_mut(field).unwrap() = value;
        seed(name, guess, rv(&p) - 1);
        bind(name, "n3").await.unwrap();
    }
    assert_eq!(stored("d").await["spec"]["nodeName"], "n3");
    assert_eq!(stored("e").await["spec"]["nodeName"], "n3");

    // Not in the cache: read from the store (and a missing pod is NotFound).
    create(&r, pods(), pod("f")).await;
    bind("f", "n1").await.unwrap();
    assert_eq!(bind("zz", "n1").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn binding_and_scale() {
    let r = registry().await;
    create(&r, pods(), pod("p")).await;
    let e = r
        .bind(pods(), "default", "p", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            422,
            "Binding.core \"p\" is invalid: target.name: Required value"
        )
    );
    let d = e.details.unwrap();
    assert_eq!(
        (
            d.group.as_str(),
            d.kind.as_str(),
            d.causes[0].field.as_str()
        ),
        ("", "Pod", "target.name")
    );
    r.bind(pods(), "default", "p", &json!({"target": {"name": "n1"}}))
        .await
        .unwrap();
    let p = r.get(pods(), "default", "p").await.unwrap();
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let e = r
        .bind(pods(), "default", "p", &json!({"target": {"name": "n2"}}))
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on pods \"p\": pod p is already assigned to node \"n1\""
    );
    create(&r, deployments(), deployment("web", 1)).await;
    let s = r
        .set_scale(
            deployments(),
            "default",
            "web",
            |_| Ok(json!({"spec": {"replicas": 4}})),
            WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (s["kind"].as_str(), s["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(4))
    );
    assert_eq!(s["status"]["selector"], "app=web");
    let e = r
        .set_scale(
            deployments(),
            "default",
            "web",
            |_| Ok(json!({"spec": {"replicas": -1}})),
            WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.message,
        "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let d = r.get(deployments(), "default", "web").await.unwrap();
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(4), Some(2))
    );
}

#[tokio::test]
async fn an_undecodable_stored_value_is_skipped_by_lists() {
    let r = registry().await;
    create(&r, pods(), pod("good")).await;
    r.store()
        .put_raw(&r.key(&PODS, "default", "bad"), b"{not json");
    let l = r
        .list(pods(), Some("default"), &ListOptions::default())
        .await
        .unwrap();
    let names: Vec<&str> = l.items.iter().map(|o| meta_str(o, "name")).collect();
    assert_eq!(names, ["good"]);
    let e = r.get(pods(), "default", "bad").await.unwrap_err();
    assert_eq!(e.code, 404);
}
