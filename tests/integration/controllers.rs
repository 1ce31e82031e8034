//! `bosun controller-manager` over a three-member store and an apiserver, driven by unmodified
//! kubectl 1.32: a Deployment gets a ReplicaSet per template and its pods; scale, rolling
//! update (maxSurge and maxUnavailable checked on every state of the recorded watch history),
//! `rollout status|history|undo|pause|resume`, Recreate, events; two controller-managers
//! with leader election, of which only the leader acts and the standby finishes a rollout
//! when the leader is paused (SIGSTOP).
//!
//! No scheduler or kubelet runs: the test plays the kubelet's part where a rollout needs it,
//! marking every pod Running and Ready through `pods/status` ([`mark_pods_ready`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use bosun_api_client::k8s_openapi::api::coordination::v1::Lease;
use bosun_api_client::k8s_openapi::api::core::v1::Pod;
use bosun_api_client::{ApiClient, ListParams, Patch, WatchEvent, WatchParams};
use bosun_tests::component::{Component, metric_sum};
use bosun_tests::history::History;
use bosun_tests::kube::{Apiserver, Kubectl, kubectl_120, kubectl_132};
use bosun_tests::objects::{image, is_ready, replicas};
use bosun_tests::{Cluster, Kind, wait_for};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// A `bosun controller-manager` process, stopped by PID on drop.
struct ControllerManager(Component);

impl std::ops::Deref for ControllerManager {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.0
    }
}

impl std::ops::DerefMut for ControllerManager {
    fn deref_mut(&mut self) -> &mut Component {
        &mut self.0
    }
}

impl ControllerManager {
    async fn start(dir: &Path, name: &str, api: &Apiserver, extra: &[&str]) -> Self {
        let env = [("BOSUN_LOG", "info,bosun_controllers=debug")];
        let c = Component::start(dir, name, "controller-manager", &api.url, extra, &env);
        c.wait_listening(WAIT).await;
        ControllerManager(c)
    }

    async fn metrics_text(&self) -> String {
        self.0.metrics().await.unwrap_or_default()
    }

    /// Syncs done so far, by the `bosun_controller_syncs_total` counters.
    async fn syncs(&self) -> u64 {
        metric_sum(&self.metrics_text().await, "bosun_controller_syncs_total") as u64
    }

    /// Whether the leader gauge says this one leads.
    async fn leads(&self) -> bool {
        metric_sum(&self.metrics_text().await, "leader_election_master_status") == 1.0
    }
}

struct Env {
    cluster: Cluster,
    api: Apiserver,
    client: ApiClient,
    kubectl: Kubectl,
}

/// A three-member store, an apiserver, a client and kubectl 1.32 (`None` without it).
async fn setup(dir: &Path) -> Option<Env> {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let kubectl = kubectl_132(&api, dir)?;
    Some(Env {
        cluster,
        api,
        client,
        kubectl,
    })
}

fn deployment_yaml(name: &str, replicas: u32, strategy: &str) -> String {
    let strategy = match strategy {
        "Recreate" => "  strategy: {type: Recreate}\n".to_string(),
        _ => "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n"
            .to_string(),
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n{strategy}  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sleep, \"3600\"]\n"
    )
}

/// Plays the kubelets' part: every pod of `ns` that is not Ready becomes Running and Ready
/// through `pods/status`, as soon as the watch shows it. Runs until aborted.
fn mark_pods_ready(client: ApiClient, ns: &'static str) -> tokio::task::JoinHandle<()> {
    async fn ready(client: &ApiClient, ns: &str, p: &Pod) {
        let is_ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if is_ready || p.metadata.deletion_timestamp.is_some() {
            return;
        }
        let now = jiff_now();
        let patch = Patch::Merge(json!({"status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ],
        }}));
        let name = p.metadata.name.as_deref().unwrap_or("");
        let _ = client.patch_status::<Pod>(ns, name, &patch).await;
    }
    tokio::spawn(async move {
        loop {
            // A failed call returns at once while the apiserver is down: wait before the next
            // try, so the loop yields and the task can be aborted.
            let Ok(list) = client.list::<Pod>(ns, &ListParams::default()).await else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            for p in &list.items {
                ready(&client, ns, p).await;
            }
            let Ok(mut w) = client
                .watch::<Pod>(ns, &WatchParams::from_version(&list.resource_version))
                .await
            else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            while let Ok(Some(ev)) = w.next().await {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                    ready(&client, ns, &p).await;
                }
            }
        }
    })
}

/// The pause between two attempts of a test helper whose call failed.
const RETRY: Duration = Duration::from_millis(100);

/// Now in RFC 3339 to the second, as Kubernetes writes times.
fn jiff_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secs = i64::try_from(secs).unwrap();
    bosun_api_client::k8s_openapi::jiff::Timestamp::from_second(secs)
        .unwrap()
        .to_string()
}

fn labels_match(meta_labels: Option<&BTreeMap<String, String>>, app: &str) -> bool {
    meta_labels.and_then(|l| l.get("app")).map(String::as_str) == Some(app)
}

async fn active_pods(client: &ApiClient, ns: &str, app: &str) -> Vec<Pod> {
    let p = ListParams {
        label_selector: format!("app={app}"),
        ..Default::default()
    };
    client
        .list::<Pod>(ns, &p)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn replica_sets(client: &ApiClient, ns: &str, app: &str) -> Vec<ReplicaSet> {
    let p = ListParams {
        label_selector: format!("app={app}"),
        ..Default::default()
    };
    let mut rss = client
        .list::<ReplicaSet>(ns, &p)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    rss.sort_by_key(revision);
    rss
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Waits for `n` active pods of `app`, all with `image` and Ready.
async fn wait_pods(client: &ApiClient, ns: &str, app: &str, n: usize, img: &str) {
    wait_for(
        &format!("{n} ready pods of {app} with {img}"),
        WAIT,
        || async {
            let pods = active_pods(client, ns, app).await;
            pods.len() == n && pods.iter().all(|p| image(p) == img && is_ready(p))
        },
    )
    .await;
}

fn rollout_status(k: &Kubectl, name: &str) {
    let out = k.run(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=60s",
    ]);
    assert!(
        out.ok().contains("successfully rolled out"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollout_scale_undo_pause_resume() {
    let dir = tempfile::tempdir().unwrap();
    let Some(env) = setup(dir.path()).await else {
        return;
    };
    let (client, k) = (&env.client, &env.kubectl);
    let cm = ControllerManager::start(dir.path(), "cm", &env.api, &["--leader-elect=false"]).await;
    let kubelet = mark_pods_ready(client.clone(), "default");

    // Create: one ReplicaSet with the pod-template-hash, its pods from the template.
    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("web", 3, "RollingUpdate"),
    )
    .ok();
    wait_pods(client, "default", "web", 3, "busybox:1.36").await;
    rollout_status(k, "web");
    let rss = replica_sets(client, "default", "web").await;
    assert_eq!(rss.len(), 1, "{rss:?}");
    let rs = &rss[0];
    let rs_name = rs.metadata.name.clone().unwrap();
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs_name, format!("web-{hash}"));
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(revision(rs), 1);
    let managers: Vec<&str> = rs
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.as_deref())
        .collect();
    assert!(
        managers.contains(&"bosun-controller-manager"),
        "{managers:?}"
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Deployment", "web", Some(true))
    );
    for p in active_pods(client, "default", "web").await {
        let m = &p.metadata;
        assert_eq!(
            m.generate_name.as_deref(),
            Some(format!("{rs_name}-").as_str())
        );
        assert!(
            m.name
                .as_deref()
                .unwrap()
                .starts_with(&format!("{rs_name}-"))
        );
        assert_eq!(m.labels.as_ref().unwrap()["pod-template-hash"], hash);
        let r = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                r.kind.as_str(),
                r.name.as_str(),
                r.controller,
                r.block_owner_deletion
            ),
            ("ReplicaSet", rs_name.as_str(), Some(true), Some(true))
        );
    }
    let d: Deployment = client.get("default", "web").await.unwrap();
    let st = d.status.unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    let conditions: Vec<(String, String, String)> = st
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, c.status, c.reason.unwrap_or_default()))
        .collect();
    assert!(
        conditions.contains(&(
            "Available".into(),
            "True".into(),
            "MinimumReplicasAvailable".into()
        )),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&(
            "Progressing".into(),
            "True".into(),
            "NewReplicaSetAvailable".into()
        )),
        "{conditions:?}"
    );

    // Scale 3 -> 10 -> 2.
    k.run(&["scale", "deployment/web", "--replicas=10"]).ok();
    wait_pods(client, "default", "web", 10, "busybox:1.36").await;
    rollout_status(k, "web");
    k.run(&["scale", "deployment/web", "--replicas=2"]).ok();
    wait_pods(client, "default", "web", 2, "busybox:1.36").await;
    rollout_status(k, "web");

    // A rolling update, recorded: maxSurge 1 and maxUnavailable 0 at every step.
    let rs_history = History::<ReplicaSet>::record(client, "default").await;
    let pod_history = History::<Pod>::record(client, "default").await;
    k.run(&["set", "image", "deployment/web", "main=busybox:1.37"])
        .ok();
    rollout_status(k, "web");
    wait_pods(client, "default", "web", 2, "busybox:1.37").await;
    let rs_states = rs_history.stop();
    let pod_states = pod_history.stop();
    assert!(rs_states.len() > 3, "the rollout was recorded");
    for (i, state) in rs_states.iter().enumerate() {
        let total: i32 = state
            .values()
            .filter(|r| labels_match(r.metadata.labels.as_ref(), "web"))
            .map(replicas)
            .sum();
        assert!(total <= 3, "state {i}: {total} replicas > 2 + maxSurge 1");
    }
    for (i, state) in pod_states.iter().enumerate() {
        let ready = state
            .values()
            .filter(|p| labels_match(p.metadata.labels.as_ref(), "web"))
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .count();
        assert!(
            ready >= 2,
            "state {i}: {ready} ready pods < 2 - maxUnavailable 0"
        );
    }
    let rss = replica_sets(client, "default", "web").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(
        rss.iter()
            .map(|r| (revision(r), replicas(r)))
            .collect::<Vec<_>>(),
        vec![(1, 0), (2, 2)]
    );

    // History and undo.
    let history = k.run(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .ok()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{}", history.stdout);
    let undo = k.run(&["rollout", "undo", "deployment/web"]);
    assert!(undo.ok().contains("rolled back"), "{}", undo.stdout);
    rollout_status(k, "web");
    wait_pods(client, "default", "web", 2, "busybox:1.36").await;
    let rss = replica_sets(client, "default", "web").await;
    assert_eq!(
        rss.iter()
            .map(|r| (revision(r), replicas(r)))
            .collect::<Vec<_>>(),
        vec![(2, 0), (3, 2)]
    );
    assert_eq!(
        rss[1].metadata.name.as_deref(),
        Some(rs_name.as_str()),
        "the first ReplicaSet is back, as revision 3"
    );

    wait_for("the deployment's revision annotation", WAIT, || async {
        let d: Deployment = client.get("default", "web").await.unwrap();
        d.metadata.annotations.is_some_and(|a| {
            a.get("deployment.kubernetes.io/revision")
                .map(String::as_str)
                == Some("3")
        })
    })
    .await;

    // Pause: a template change makes no ReplicaSet until resumed.
    k.run(&["rollout", "pause", "deployment/web"]).ok();
    k.run(&["set", "image", "deployment/web", "main=busybox:1.38"])
        .ok();
    wait_for("the paused deployment's sync", WAIT, || async {
        let d: Deployment = client.get("default", "web").await.unwrap();
        let generation = d.metadata.generation.unwrap_or(0);
        let status = d.status.unwrap_or_default();
        status.observed_generation == Some(generation)
            && status.conditions.unwrap_or_default().iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused")
            })
    })
    .await;
    assert_eq!(replica_sets(client, "default", "web").await.len(), 2);
    k.run(&["rollout", "resume", "deployment/web"]).ok();
    rollout_status(k, "web");
    wait_pods(client, "default", "web", 2, "busybox:1.38").await;
    assert_eq!(replica_sets(client, "default", "web").await.len(), 3);

    // Events as kubectl shows them.
    let events = k.run(&["get", "events", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(events.ok()).unwrap();
    let reasons: Vec<(String, String)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["involvedObject"]["kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                e["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for want in [
        ("Deployment", "ScalingReplicaSet"),
        ("ReplicaSet", "SuccessfulCreate"),
        ("ReplicaSet", "SuccessfulDelete"),
    ] {
        assert!(
            reasons.contains(&(want.0.to_string(), want.1.to_string())),
            "no {want:?} in {reasons:?}"
        );
    }
    let describe = k.run(&["describe", "deployment", "web"]);
    assert!(
        describe.ok().contains("ScalingReplicaSet"),
        "{}",
        describe.stdout
    );
    // kubectl 1.20 reads the same rollout.
    if let Some(k20) = kubectl_120(&env.api, dir.path()) {
        rollout_status(&k20, "web");
        let history = k20.run(&["rollout", "history", "deployment/web"]);
        assert!(history.ok().contains("REVISION"), "{}", history.stdout);
    }
    kubelet.abort();
    assert!(cm.log().contains("caches synced"), "{}", cm.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let Some(env) = setup(dir.path()).await else {
        return;
    };
    let (client, k) = (&env.client, &env.kubectl);
    let _cm = ControllerManager::start(dir.path(), "cm", &env.api, &["--leader-elect=false"]).await;
    let kubelet = mark_pods_ready(client.clone(), "default");
    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("batch", 3, "Recreate"),
    )
    .ok();
    wait_pods(client, "default", "batch", 3, "busybox:1.36").await;
    rollout_status(k, "batch");

    let pod_history = History::<Pod>::record(client, "default").await;
    k.run(&["set", "image", "deployment/batch", "main=busybox:1.37"])
        .ok();
    rollout_status(k, "batch");
    wait_pods(client, "default", "batch", 3, "busybox:1.37").await;
    let states = pod_history.stop();
    let mut saw_new = false;
    for (i, state) in states.iter().enumerate() {
        let images: std::collections::BTreeSet<String> = state
            .values()
            .filter(|p| labels_match(p.metadata.labels.as_ref(), "batch"))
            .map(image)
            .collect();
        assert!(
            images.len() <= 1,
            "state {i}: old and new pods together: {images:?}"
        );
        saw_new |= images.contains("busybox:1.37");
    }
    assert!(saw_new);
    kubelet.abort();
}

async fn lease_holder(client: &ApiClient) -> Option<String> {
    client
        .get::<Lease>("kube-system", "kube-controller-manager")
        .await
        .ok()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_standby_finishes_its_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let Some(env) = setup(dir.path()).await else {
        return;
    };
    let (client, k) = (&env.client, &env.kubectl);
    let le = [
        "--leader-elect",
        "--leader-elect-lease-duration=4s",
        "--leader-elect-renew-deadline=3s",
        "--leader-elect-retry-period=500ms",
    ];
    let a = ControllerManager::start(dir.path(), "cm-a", &env.api, &le).await;
    wait_for("a leader", WAIT, || async { a.leads().await }).await;
    let b = ControllerManager::start(dir.path(), "cm-b", &env.api, &le).await;
    let first = lease_holder(client).await.expect("a lease holder");
    let kubelet = mark_pods_ready(client.clone(), "default");

    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("ha", 3, "RollingUpdate"),
    )
    .ok();
    wait_pods(client, "default", "ha", 3, "busybox:1.36").await;
    rollout_status(k, "ha");
    assert!(a.syncs().await > 0, "the leader synced");
    assert_eq!(b.syncs().await, 0, "the standby did nothing");
    assert!(!b.leads().await);

    // Pause the leader mid-rollout: the standby takes the lease and finishes it.
    a.signal("STOP");
    k.run(&["set", "image", "deployment/ha", "main=busybox:1.37"])
        .ok();
    rollout_status(k, "ha");
    wait_pods(client, "default", "ha", 3, "busybox:1.37").await;
    let second = lease_holder(client).await.expect("a lease holder");
    assert_ne!(first, second, "the standby holds the lease");
    assert!(b.leads().await);
    assert!(b.syncs().await > 0, "the standby synced once leading");
    kubelet.abort();

    // The old leader, resumed, finds its lease lost and exits, as Kubernetes' components
    // do; the new one stops cleanly on SIGTERM.
    let mut a = a;
    a.signal("CONT");
    let status = a
        .wait_exit(Duration::from_secs(30))
        .expect("the deposed leader exits");
    assert!(!status.success(), "{status:?}");
    assert!(a.log().contains("leader election lost"), "{}", a.log());
    let mut b = b;
    let status = b
        .terminate(Duration::from_secs(15))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_cascades_in_each_propagation_mode() {
    let dir = tempfile::tempdir().unwrap();
    let Some(env) = setup(dir.path()).await else {
        return;
    };
    let (client, k) = (&env.client, &env.kubectl);
    let _cm = ControllerManager::start(dir.path(), "cm", &env.api, &["--leader-elect=false"]).await;
    for app in ["bg", "fg", "keep"] {
        k.run_with(
            &["create", "-f", "-"],
            &deployment_yaml(app, 2, "RollingUpdate"),
        )
        .ok();
    }
    for app in ["bg", "fg", "keep"] {
        wait_for(&format!("2 pods of {app}"), WAIT, || async {
            active_pods(client, "default", app).await.len() == 2
        })
        .await;
    }
    let gone = |app: &'static str| async move {
        replica_sets(client, "default", app).await.is_empty()
            && active_pods(client, "default", app).await.is_empty()
    };

    // Background (kubectl's default): the deployment goes at once, then its dependents.
    k.run(&["delete", "deployment", "bg"]).ok();
    wait_for("bg's ReplicaSet and pods collected", WAIT, || gone("bg")).await;

    // Foreground: the deployment waits, with its finalizer, for its dependents to go.
    let fg = k.run(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    fg.ok();
    wait_for("fg collected, dependents first", WAIT, || async {
        client.get::<Deployment>("default", "fg").await.is_err() && gone("fg").await
    })
    .await;

    // Orphan: the ReplicaSet and its pods stay, without a reference to the deployment.
    k.run(&["delete", "deployment", "keep", "--cascade=orphan"])
        .ok();
    wait_for("keep's ReplicaSet orphaned", WAIT, || async {
        let rss = replica_sets(client, "default", "keep").await;
        client.get::<Deployment>("default", "keep").await.is_err()
            && rss.len() == 1
            && rss[0]
                .metadata
                .owner_references
                .as_ref()
                .is_none_or(Vec::is_empty)
    })
    .await;
    assert_eq!(active_pods(client, "default", "keep").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_with_overlapping_selectors_keep_to_their_own_pods() {
    let dir = tempfile::tempdir().unwrap();
    let Some(env) = setup(dir.path()).await else {
        return;
    };
    let (client, k) = (&env.client, &env.kubectl);
    let _cm = ControllerManager::start(dir.path(), "cm", &env.api, &["--leader-elect=false"]).await;
    // Both select app=shared with the same template: as on Kubernetes, each owns its own
    // ReplicaSet (controller references decide), and neither takes the other's pods.
    for name in ["one", "two"] {
        let yaml = deployment_yaml("shared", 2, "RollingUpdate").replacen(
            "name: shared",
            &format!("name: {name}"),
            1,
        );
        k.run_with(&["create", "-f", "-"], &yaml).ok();
    }
    wait_for("2 pods for each deployment", WAIT, || async {
        let pods = active_pods(client, "default", "shared").await;
        let mut owners: BTreeMap<String, usize> = BTreeMap::new();
        for p in &pods {
            let owner = p
                .metadata
                .owner_references
                .as_ref()
                .map(|r| r[0].name.clone());
            *owners.entry(owner.unwrap_or_default()).or_default() += 1;
        }
        pods.len() == 4
            && owners.len() == 2
            && owners
                .keys()
                .all(|rs| rs.starts_with("one-") || rs.starts_with("two-"))
            && owners.values().all(|n| *n == 2)
    })
    .await;
    let rss = replica_sets(client, "default", "shared").await;
    let owners: Vec<String> = rss
        .iter()
        .map(|r| {
            r.metadata.owner_references.as_ref().unwrap()[0]
                .name
                .clone()
        })
        .collect();
    assert_eq!(rss.len(), 2);
    assert!(owners.contains(&"one".to_string()) && owners.contains(&"two".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_across_a_store_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut env) = setup(dir.path()).await else {
        return;
    };
    let _cm = ControllerManager::start(dir.path(), "cm", &env.api, &["--leader-elect=false"]).await;
    let kubelet = mark_pods_ready(env.client.clone(), "default");
    env.kubectl
        .run_with(
            &["create", "-f", "-"],
            &deployment_yaml("sturdy", 3, "RollingUpdate"),
        )
        .ok();
    wait_pods(&env.client, "default", "sturdy", 3, "busybox:1.36").await;
    env.kubectl
        .run(&["set", "image", "deployment/sturdy", "main=busybox:1.37"])
        .ok();
    let leader = env.cluster.wait_leader(WAIT).await;
    env.cluster.members[leader].kill9();
    rollout_status(&env.kubectl, "sturdy");
    wait_pods(&env.client, "default", "sturdy", 3, "busybox:1.37").await;
    kubelet.abort();
}
