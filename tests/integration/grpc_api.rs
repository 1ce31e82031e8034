//! The apiserver's gRPC API through the components' client (`bosun-api-client`), over a
//! three-member store: a component watching pods sees every change once and in order, slow
//! watchers are dropped and resume without loss, and errors carry Kubernetes' reasons.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::apps::v1::Deployment;
use bosun_api_client::k8s_openapi::api::coordination::v1::Lease;
use bosun_api_client::k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams, Patch, WatchEvent, WatchParams};
use bosun_tests::kube::{Apiserver, curl};
use bosun_tests::{Cluster, Kind};
use parking_lot::Mutex;

async fn setup(dir: &std::path::Path, extra: &[&str]) -> (Cluster, Apiserver, ApiClient) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), extra).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    (cluster, api, client)
}

pub(crate) fn pod(name: &str, labels: &[(&str, &str)], annotation_bytes: usize) -> Pod {
    let mut annotations = BTreeMap::new();
    if annotation_bytes > 0 {
        annotations.insert("filler".to_string(), "x".repeat(annotation_bytes));
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1.36".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rv_of(p: &Pod) -> i64 {
    rv_of_meta(&p.metadata)
}

fn rv_of_meta(m: &ObjectMeta) -> i64 {
    m.resource_version.as_deref().unwrap().parse().unwrap()
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

/// A watch of the default namespace's pods from the current version on.
async fn watch_from_now(client: &ApiClient) -> bosun_api_client::Watch<Pod> {
    let start = client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap();
    client
        .watch::<Pod>(
            "default",
            &WatchParams::from_version(&start.resource_version),
        )
        .await
        .unwrap()
}

/// (type, name, resourceVersion) of a watch event.
fn key(ev: &WatchEvent<Pod>) -> Option<(&'static str, String, i64)> {
    match ev {
        WatchEvent::Added(p) => Some(("ADDED", name_of(p), rv_of(p))),
        WatchEvent::Modified(p) => Some(("MODIFIED", name_of(p), rv_of(p))),
        WatchEvent::Deleted(p) => Some(("DELETED", name_of(p), rv_of(p))),
        WatchEvent::Bookmark(_) => None,
    }
}

async fn collect(
    watch: &mut bosun_api_client::Watch<Pod>,
    n: usize,
) -> Vec<(&'static str, String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(30), watch.next())
            .await
            .unwrap_or_else(|_| panic!("watch stalled after {} of {n} events: {out:?}", out.len()))
            .unwrap()
            .expect("watch ended early");
        if let Some(k) = key(&ev) {
            out.push(k);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_sees_every_pod_change_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _api, client) = setup(dir.path(), &[]).await;
    let start = client
        .list::<Pod>("", &ListParams::default())
        .await
        .unwrap();
    assert!(start.items.is_empty());
    let mut all = client
        .watch::<Pod>("", &WatchParams::from_version(&start.resource_version))
        .await
        .unwrap();
    let mut only_a = client
        .watch::<Pod>(
            "",
            &WatchParams {
                label_selector: "group=a".into(),
                ..WatchParams::from_version(&start.resource_version)
            },
        )
        .await
        .unwrap();

    // Three writers, each: create, relabel, update status, delete; what the server answered
    // is what the watch must show.
    let expected = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..3 {
        let client = client.clone();
        let expected = expected.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                let name = format!("w{w}-{i}");
                let group = if i % 2 == 0 { "a" } else { "b" };
                let p = client
                    .create("default", &pod(&name, &[("group", group)], 0))
                    .await
                    .unwrap();
                expected.lock().push(("ADDED", name.clone(), rv_of(&p)));
                let other = if group == "a" { "b" } else { "a" };
                let p: Pod = client
                    .patch(
                        "default",
                        &name,
                        &Patch::Merge(
                            serde_json::json!({"metadata": {"labels": {"group": other}}}),
                        ),
                    )
                    .await
                    .unwrap();
                expected.lock().push(("MODIFIED", name.clone(), rv_of(&p)));
                let mut p = p;
                p.status.get_or_insert_with(Default::default).message = Some(format!("writer {w}"));
                let p = client.update_status("default", &p).await.unwrap();
                expected.lock().push(("MODIFIED", name.clone(), rv_of(&p)));
                let d = client.delete::<Pod>("default", &name, None).await.unwrap();
                assert!(d.gone, "a pod without a node is deleted at once");
                expected
                    .lock()
                    .push(("DELETED", name.clone(), rv_of(&d.object)));
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let mut expected = expected.lock().clone();
    expected.sort_by_key(|e| e.2);
    let got = collect(&mut all, expected.len()).await;
    assert_eq!(got, expected, "every change once, in resourceVersion order");

    // The label-selected watch: only group=a objects, with transitions as ADDED/DELETED.
    // Pods created in group a: ADDED, then DELETED when relabelled to b (2 events).
    // Pods created in group b: ADDED when relabelled to a, MODIFIED by the status update,
    // DELETED at the delete (3 events).
    let got_a = collect(&mut only_a, 15 * 2 + 15 * 3).await;
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (t, n, _) in &got_a {
        by_name.entry(n.clone()).or_default().push(t);
    }
    for (n, types) in &by_name {
        let i: usize = n.rsplit('-').next().unwrap().parse().unwrap();
        let want: &[&str] = if i.is_multiple_of(2) {
            &["ADDED", "DELETED"]
        } else {
            &["ADDED", "MODIFIED", "DELETED"]
        };
        assert_eq!(types, want, "{n}");
    }
    assert!(got_a.windows(2).all(|w| w[0].2 < w[1].2));

    // A watch resumed from the middle sees exactly the rest.
    let mid = expected[expected.len() / 2].2;
    let mut resumed = client
        .watch::<Pod>("", &WatchParams::from_version(&mid.to_string()))
        .await
        .unwrap();
    let tail: Vec<_> = expected.iter().filter(|e| e.2 > mid).cloned().collect();
    assert_eq!(collect(&mut resumed, tail.len()).await, tail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_dropped_and_resumes_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path(), &["--watch-buffer", "4"]).await;
    let mut watch = watch_from_now(&client).await;
    // Far more than the transport buffers while nobody reads.
    let n = 150;
    let mut rvs = Vec::new();
    for i in 0..n {
        let p = client
            .create("default", &pod(&format!("big-{i:03}"), &[], 64 * 1024))
            .await
            .unwrap();
        rvs.push(("ADDED", format!("big-{i:03}"), rv_of(&p)));
    }
    let (_, metrics) = curl(&["-s", &format!("{}/metrics", api.url)]);
    let dropped: u64 = metrics
        .lines()
        .find(|l| l.starts_with("bosun_apiserver_watchers_dropped_total{resource=\"pods\"}"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 1, "the watcher was dropped:\n{metrics}");
    assert_eq!(
        collect(&mut watch, n).await,
        rvs,
        "resumed with neither gap nor duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_errors_bookmarks_binding_and_scale() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, _api, client) = setup(dir.path(), &["--watch-bookmark-interval", "1"]).await;
    let e = client.get::<Pod>("default", "nope").await.unwrap_err();
    assert!(
        e.is_not_found() && e.message == "pods \"nope\" not found",
        "{e}"
    );
    let p = client.create("default", &pod("one", &[], 0)).await.unwrap();
    assert!(
        client
            .create("default", &pod("one", &[], 0))
            .await
            .unwrap_err()
            .is_already_exists()
    );
    let mut stale = p.clone();
    client
        .patch::<Pod>(
            "default",
            "one",
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "1"}}})),
        )
        .await
        .unwrap();
    stale.metadata.labels = Some([("y".to_string(), "2".to_string())].into());
    assert!(
        client
            .update("default", &stale)
            .await
            .unwrap_err()
            .is_conflict()
    );
    let mut bad = pod("two", &[], 0);
    bad.spec.as_mut().unwrap().containers[0].image = None;
    let e = client.create("default", &bad).await.unwrap_err();
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let causes = &e.status.as_ref().unwrap()["details"]["causes"];
    assert_eq!(causes[0]["field"], "spec.containers[0].image");

    // Binding, as the scheduler will do it; a watch on the node's pods sees it.
    let mut on_node = client
        .watch::<Pod>(
            "",
            &WatchParams {
                field_selector: "spec.nodeName=node-1".into(),
                allow_bookmarks: true,
                ..WatchParams::from_version(&rv_of(&p).to_string())
            },
        )
        .await
        .unwrap();
    client.bind("default", "one", "node-1").await.unwrap();
    let bound = client.get::<Pod>("default", "one").await.unwrap();
    assert_eq!(
        bound.spec.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    match on_node.next().await.unwrap().unwrap() {
        WatchEvent::Added(p) => assert_eq!(name_of(&p), "one", "it entered the selection"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        client
            .bind("default", "one", "node-2")
            .await
            .unwrap_err()
            .code,
        409
    );
    // Bookmarks arrive on a quiet watch.
    loop {
        if let WatchEvent::Bookmark(rv) =
            tokio::time::timeout(Duration::from_secs(10), on_node.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        {
            assert!(rv.parse::<i64>().unwrap() >= rv_of(&bound));
            break;
        }
    }

    // Deployments over gRPC, and the scale subresource through a patch.
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
    .unwrap();
    let d = client.create("default", &d).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(1), "defaulted");
    assert_eq!(d.metadata.generation, Some(1));
    let d: Deployment = client
        .patch(
            "default",
            "web",
            &Patch::Strategic(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(
        (d.spec.unwrap().replicas, d.metadata.generation),
        (Some(3), Some(2))
    );
    let list = client
        .list::<Deployment>(
            "default",
            &ListParams {
                label_selector: "".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);

    // Node heartbeats: a Lease in kube-node-lease, renewed by update.
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "renewTime": "2026-01-01T00:00:00.000000Z"}}))
    .unwrap();
    let lease = client.create("kube-node-lease", &lease).await.unwrap();
    let mut renew = lease.clone();
    renew.spec.as_mut().unwrap().renew_time =
        serde_json::from_value(serde_json::json!("2026-01-01T00:00:10.000000Z")).unwrap();
    let renewed = client.update("kube-node-lease", &renew).await.unwrap();
    assert!(rv_of_meta(&renewed.metadata) > rv_of_meta(&lease.metadata));
    assert!(
        client
            .update("kube-node-lease", &renew)
            .await
            .unwrap_err()
            .is_conflict(),
        "a stale renewal conflicts"
    );
}

/// Creates a pod, retrying while the store elects a leader; an unknown outcome is settled by
/// reading the pod back.
async fn create_through_failover(client: &ApiClient, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.create("default", &pod(name, &[], 0)).await {
            Ok(_) => return,
            Err(e) if e.is_already_exists() => return,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline && matches!(e.code, 500 | 503 | 504),
                    "create {name}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The apiserver over three members: killing the store's leader, and the member the
/// apiserver's client is connected to, loses no change on a component's watch, and writes go
/// on once a new leader is elected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_survive_store_member_kills() {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, _api, client) = setup(dir.path(), &[]).await;
    let mut watch = watch_from_now(&client).await;
    let names: Vec<String> = (0..21).map(|i| format!("f{i:02}")).collect();
    for n in &names[..7] {
        create_through_failover(&client, n).await;
    }
    // The leader.
    let leader = cluster.wait_leader(Duration::from_secs(10)).await;
    cluster.members[leader].kill9();
    for n in &names[7..14] {
        create_through_failover(&client, n).await;
    }
    cluster.members[leader].restart().await;
    // The first endpoint, which the apiserver's store client (and its store watches) use.
    if leader != 0 {
        cluster.members[0].kill9();
    }
    for n in &names[14..] {
        create_through_failover(&client, n).await;
    }
    let got = collect(&mut watch, names.len()).await;
    let seen: Vec<String> = got
        .iter()
        .map(|(t, n, _)| {
            assert_eq!(*t, "ADDED");
            n.clone()
        })
        .collect();
    assert_eq!(
        seen, names,
        "every create once, in order, across the failovers"
    );
    assert!(got.windows(2).all(|w| w[0].2 < w[1].2));
}
