//! The namespace lifecycle and garbage collection over every kind, as on Kubernetes, with a
//! three-member store, an apiserver and `bosun controller-manager`, driven by unmodified
//! kubectl (1.32 and 1.20 when present): a deleted namespace stays `Terminating` (with the
//! namespace controller's conditions) while anything is left in it and goes once empty; a
//! Node's Lease goes with its Node; a Lease owned by a Pod goes with it in each propagation
//! mode; dependents of kinds no controller watches (an Event owned by a Deployment, a
//! Namespace owned by a Node) go with their owner deleted in the background or the
//! foreground and stay, without the reference, when it is deleted with orphaning.

use std::path::Path;
use std::time::Duration;

use bosun_api_client::ApiClient;
use bosun_api_client::k8s_openapi::api::apps::v1::Deployment;
use bosun_api_client::k8s_openapi::api::coordination::v1::Lease;
use bosun_api_client::k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use bosun_tests::component::Component;
use bosun_tests::kube::{Apiserver, Kubectl, kubectl_120, kubectl_132};
use bosun_tests::{Cluster, Kind, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

async fn setup(dir: &Path) -> (Cluster, Apiserver, ApiClient) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    (cluster, api, client)
}

async fn controller_manager(dir: &Path, api: &Apiserver) -> Component {
    let env = [("BOSUN_LOG", "info,bosun_controllers=debug")];
    let c = Component::start(
        dir,
        "controller-manager",
        "controller-manager",
        &api.url,
        &[],
        &env,
    );
    c.wait_listening(WAIT).await;
    c
}

fn get_json(k: &Kubectl, args: &[&str]) -> Option<Value> {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "json"]);
    let out = k.run(&a);
    (out.code == 0).then(|| serde_json::from_str(&out.stdout).unwrap())
}

fn condition(ns: &Value, type_: &str) -> Option<(String, String, String)> {
    ns.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: busybox:1.36\n"
    )
}

const BOUND_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nspec:\n  nodeName: node-a\n  terminationGracePeriodSeconds: 600\n  containers:\n  - name: c\n    image: busybox:1.36\n";

const LEASE: &str = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: lock\nspec:\n  holderIdentity: someone\n  leaseDurationSeconds: 15\n";

fn event(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: solo.1\ninvolvedObject:\n  kind: Pod\n  name: solo\n  namespace: {ns}\nreason: Testing\nmessage: hello\ntype: Normal\n"
    )
}

/// One kubectl version's run of the lifecycle in namespace `ns`; `cm` starts a
/// controller-manager when none runs yet (after showing that nothing happens without one).
async fn delete_namespace(
    k: &Kubectl,
    ns: &str,
    dir: &Path,
    api: &Apiserver,
    cm: &mut Option<Component>,
) {
    k.run(&["create", "namespace", ns]).ok();
    let created = get_json(k, &["namespace", ns]).unwrap();
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(created["status"]["phase"], "Active");
    for doc in [
        deployment("web"),
        BOUND_POD.to_string(),
        LEASE.to_string(),
        event(ns),
    ] {
        k.run_with(&["create", "-n", ns, "-f", "-"], &doc).ok();
    }
    k.run(&["delete", "namespace", ns, "--wait=false"]).ok();
    let out = k.run(&["get", "namespace", ns]).ok().to_string();
    assert!(out.contains("Terminating"), "{out}");
    if cm.is_none() {
        // Without a namespace controller nothing empties it: it stays, with its content.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let out = k.run(&["get", "deploy,lease", "-n", ns, "-o", "name"]);
        assert!(
            out.ok().contains("deployment.apps/web") && out.stdout.contains("lease"),
            "{}",
            out.stdout
        );
        *cm = Some(controller_manager(dir, api).await);
    }
    // Everything that can go goes; the pod on a node waits for its kubelet.
    wait_for("the namespace's content is deleted", WAIT, || async {
        let out = k.run(&["get", "deploy,rs,lease,events", "-n", ns, "-o", "name"]);
        out.code == 0 && out.stdout.trim().is_empty()
    })
    .await;
    let pod = get_json(k, &["pod", "solo", "-n", ns]).expect("the bound pod waits");
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    wait_for("the conditions say a pod remains", WAIT, || async {
        get_json(k, &["namespace", ns])
            .and_then(|n| condition(&n, "NamespaceContentRemaining"))
            .is_some_and(|c| {
                c == (
                    "True".into(),
                    "SomeResourcesRemain".into(),
                    "Some resources are remaining: pods has 1 resource instances".into(),
                )
            })
    })
    .await;
    let n = get_json(k, &["namespace", ns]).unwrap();
    assert_eq!(n["status"]["phase"], "Terminating");
    assert_eq!(n["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(
        condition(&n, "NamespaceDeletionContentFailure"),
        Some((
            "False".into(),
            "ContentDeleted".into(),
            "All content successfully deleted, may be waiting on finalization".into()
        ))
    );
    let out = k.run_with(&["create", "-n", ns, "-f", "-"], LEASE);
    assert!(
        out.err().contains("because it is being terminated"),
        "{}",
        out.stderr
    );
    // The kubelet's part: the pod goes; then so does the namespace, and a waiting
    // `kubectl delete` returns.
    k.run(&[
        "delete",
        "pod",
        "solo",
        "-n",
        ns,
        "--grace-period=0",
        "--force",
    ])
    .ok();
    k.run(&[
        "delete",
        "namespace",
        ns,
        "--ignore-not-found",
        "--timeout=60s",
    ])
    .ok();
    let out = k.run(&["get", "namespace", ns]);
    assert!(out.err().contains("NotFound"), "{}", out.stderr);
}

/// `kubectl delete namespace` with deployments, pods, leases and events in it, with kubectl
/// 1.32 and 1.20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_waits_for_the_namespace_controller() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, _client) = setup(dir.path()).await;
    let mut cm = None;
    let mut ran = 0;
    for (k, ns) in [
        (kubectl_132(&api, dir.path()), "doomed-132"),
        (kubectl_120(&api, dir.path()), "doomed-120"),
    ] {
        if let Some(k) = k {
            delete_namespace(&k, ns, dir.path(), &api, &mut cm).await;
            ran += 1;
        }
    }
    assert!(ran > 0, "no kubectl");
    // The built-in namespaces still cannot be deleted.
    if let Some(k) = kubectl_132(&api, dir.path()).or_else(|| kubectl_120(&api, dir.path())) {
        let out = k.run(&["delete", "namespace", "default"]);
        assert!(out.err().contains("may not be deleted"), "{}", out.stderr);
    }
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}))
    .unwrap()
}

fn lease_owned_by(name: &str, kind: &str, owner: &str, uid: &str) -> Lease {
    serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": [
        {"apiVersion": "v1", "kind": kind, "name": owner, "uid": uid}]},
        "spec": {"holderIdentity": owner, "leaseDurationSeconds": 40}}))
    .unwrap()
}

async fn gone<K>(client: &ApiClient, ns: &str, name: &str) -> bool
where
    K: bosun_api_client::k8s_openapi::Resource
        + bosun_api_client::k8s_openapi::serde::de::DeserializeOwned,
{
    client
        .get::<K>(ns, name)
        .await
        .is_err_and(|e| e.is_not_found())
}

/// A node's Lease in kube-node-lease goes with its Node; a Lease owned by a Pod goes with
/// the Pod deleted in the background or the foreground, and stays (without the reference)
/// when the Pod is deleted with orphaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_over_nodes_pods_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let _cm = controller_manager(dir.path(), &api).await;

    let n = client.create("", &node("node-gc")).await.unwrap();
    let uid = n.metadata.uid.clone().unwrap();
    client
        .create(
            "kube-node-lease",
            &lease_owned_by("node-gc", "Node", "node-gc", &uid),
        )
        .await
        .unwrap();
    client.delete::<Node>("", "node-gc", None).await.unwrap();
    wait_for("the node's lease goes with the node", WAIT, || async {
        gone::<Lease>(&client, "kube-node-lease", "node-gc").await
    })
    .await;

    for policy in ["Background", "Foreground", "Orphan"] {
        let name = format!("owner-{}", policy.to_lowercase());
        let p = client.create("default", &pod(&name)).await.unwrap();
        let uid = p.metadata.uid.clone().unwrap();
        client
            .create("default", &lease_owned_by(&name, "Pod", &name, &uid))
            .await
            .unwrap();
        client
            .delete::<Pod>(
                "default",
                &name,
                Some(&json!({"propagationPolicy": policy})),
            )
            .await
            .unwrap();
        wait_for(
            &format!("the pod deleted with {policy} goes"),
            WAIT,
            || async { gone::<Pod>(&client, "default", &name).await },
        )
        .await;
        if policy == "Orphan" {
            // Orphaned: it stays, without its reference to the pod.
            let l: Lease = client.get("default", &name).await.unwrap();
            assert!(
                l.metadata.owner_references.unwrap_or_default().is_empty(),
                "{name}"
            );
            // And nothing collects it later.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!gone::<Lease>(&client, "default", &name).await);
        } else {
            wait_for(&format!("the lease goes with {policy}"), WAIT, || async {
                gone::<Lease>(&client, "default", &name).await
            })
            .await;
        }
    }
}

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
            "blockOwnerDeletion": true}])
}

/// The garbage collector over every kind of the resource table, not only those the
/// controllers watch: an Event owned by a Deployment and a Namespace owned by a Node (a
/// cluster-scoped object can only have a cluster-scoped owner) go with their owner deleted
/// in the background or the foreground, and stay without the reference when it is deleted
/// with orphaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_over_events_and_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let _cm = controller_manager(dir.path(), &api).await;

    for policy in ["Background", "Foreground", "Orphan"] {
        let name = format!("gc-{}", policy.to_lowercase());
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
            }
        }))
        .unwrap();
        let d = client.create("default", &d).await.unwrap();
        let d_uid = d.metadata.uid.clone().unwrap();
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.1"),
                         "ownerReferences": owner_ref("apps/v1", "Deployment", &name, &d_uid)},
            "involvedObject": {"kind": "Deployment", "name": name, "namespace": "default"},
            "reason": "Testing", "message": "owned", "type": "Normal"
        }))
        .unwrap();
        client.create("default", &ev).await.unwrap();
        let n = client.create("", &node(&name)).await.unwrap();
        let n_uid = n.metadata.uid.clone().unwrap();
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "ownerReferences": owner_ref("v1", "Node", &name, &n_uid)}
        }))
        .unwrap();
        client.create("", &ns).await.unwrap();
        // Owned things stay while their owners live.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!gone::<Event>(&client, "default", &format!("{name}.1")).await);
        assert!(!gone::<Namespace>(&client, "", &name).await);

        let options = json!({"propagationPolicy": policy});
        client
            .delete::<Deployment>("default", &name, Some(&options))
            .await
            .unwrap();
        client
            .delete::<Node>("", &name, Some(&options))
            .await
            .unwrap();
        wait_for(
            &format!("the owners deleted with {policy} go"),
            WAIT,
            || async {
                gone::<Deployment>(&client, "default", &name).await
                    && gone::<Node>(&client, "", &name).await
            },
        )
        .await;
        if policy == "Orphan" {
            let e: Event = client.get("default", &format!("{name}.1")).await.unwrap();
            assert!(e.metadata.owner_references.unwrap_or_default().is_empty());
            let ns: Namespace = client.get("", &name).await.unwrap();
            assert!(ns.metadata.owner_references.unwrap_or_default().is_empty());
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!gone::<Event>(&client, "default", &format!("{name}.1")).await);
            let ns: Namespace = client.get("", &name).await.unwrap();
            assert!(
                ns.metadata.deletion_timestamp.is_none(),
                "{name} orphaned, not deleted"
            );
        } else {
            wait_for(
                &format!("the event and the namespace go with {policy}"),
                WAIT,
                || async {
                    gone::<Event>(&client, "default", &format!("{name}.1")).await
                        && gone::<Namespace>(&client, "", &name).await
                },
            )
            .await;
        }
    }
}
