//! The whole chain on a real three-member store: apiserver, `bosun controller-manager`,
//! `bosun scheduler` and three hollow nodes (`bosun kubelet --runtime fake --node-count 3`),
//! driven by unmodified kubectl 1.32 and 1.20. Nothing plays another component's part: a
//! Deployment's pods are created by the controllers, bound by the scheduler and run (Running,
//! Ready, a pod IP) by the hollow nodes.
//!
//! - a Deployment's life: create, `get pods -o wide`, scale 3 -> 10 -> 2, a rolling update
//!   checked on every state of the recorded watch history (maxSurge, maxUnavailable, each pod
//!   bound once), `rollout status|history|undo|pause|resume`, `describe`, cascading delete;
//! - leaders killed mid-work: the controller-manager's (kill -9) mid-rollout, the scheduler's
//!   (SIGSTOP) while pods are pending, the store's (kill -9) mid-rollout;
//! - bad input as on Kubernetes: a pod larger than any node, a required node affinity that
//!   matches nothing, a toleration that matches no taint, Deployments with overlapping
//!   selectors; every component healthy afterwards.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::apps::v1::ReplicaSet;
use bosun_api_client::k8s_openapi::api::core::v1::{Event, Node, Pod};
use bosun_api_client::{ApiClient, ListParams};
use bosun_tests::component::{Component, metric_sum};
use bosun_tests::history::{History, States, field_changes};
use bosun_tests::kube::{Apiserver, Kubectl, kubectl_120, kubectl_132};
use bosun_tests::objects::{image, is_ready, node_of, replicas};
use bosun_tests::{Cluster, Kind, http_get, wait_for};

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "default";

/// Leader election short enough for a test: a standby takes over within seconds.
const LEADER_ELECT: [&str; 4] = [
    "--leader-elect",
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=500ms",
];

struct Chain {
    cluster: Cluster,
    api: Apiserver,
    client: ApiClient,
    kubectl: Kubectl,
    /// Controller-managers, schedulers and the kubelet, in start order.
    components: Vec<Component>,
}

fn cm(dir: &Path, api: &Apiserver, name: &str, extra: &[&str]) -> Component {
    let env = [("BOSUN_LOG", "info,bosun_controllers=debug")];
    Component::start(dir, name, "controller-manager", &api.url, extra, &env)
}

fn scheduler(dir: &Path, api: &Apiserver, name: &str, extra: &[&str]) -> Component {
    Component::start(dir, name, "scheduler", &api.url, extra, &[])
}

/// The store, the apiserver and kubectl 1.32 (`None` without it), then `cms`
/// controller-managers and `schedulers` schedulers (with leader election when more than one)
/// and three hollow nodes `n-0..2`, once all three are Ready.
async fn chain(dir: &Path, cms: usize, schedulers: usize) -> Option<Chain> {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let kubectl = kubectl_132(&api, dir)?;
    let mut components = Vec::new();
    let single = ["--leader-elect=false"];
    for i in 0..cms {
        let le: &[&str] = if cms > 1 { &LEADER_ELECT } else { &single };
        components.push(cm(dir, &api, &format!("cm-{i}"), le));
    }
    for i in 0..schedulers {
        let le: &[&str] = if schedulers > 1 {
            &LEADER_ELECT
        } else {
            &single
        };
        components.push(scheduler(dir, &api, &format!("scheduler-{i}"), le));
    }
    let kubelet_args = ["--runtime", "fake", "--node-name", "n", "--node-count", "3"];
    let env = [("BOSUN_WORKER_THREADS", "2")];
    components.push(Component::start(
        dir,
        "kubelet",
        "kubelet",
        &api.url,
        &kubelet_args,
        &env,
    ));
    for c in &components {
        c.wait_listening(WAIT).await;
    }
    wait_for("3 Ready hollow nodes", WAIT, || async {
        ready_nodes(&client).await == 3
    })
    .await;
    Some(Chain {
        cluster,
        api,
        client,
        kubectl,
        components,
    })
}

async fn ready_nodes(client: &ApiClient) -> usize {
    let nodes = client
        .list::<Node>("", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count()
}

/// A Deployment of `busybox:1.36` pods labelled `app: <name>`, RollingUpdate with `surge`
/// and `unavailable`, and `extra` lines of its spec (two-space indented).
fn deployment_yaml(name: &str, replicas: u32, surge: u32, unavailable: u32, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  replicas: {replicas}\n{extra}  selector:\n    matchLabels: {{app: {name}}}\n  strategy:\n    type: RollingUpdate\n    rollingUpdate: {{maxSurge: {surge}, maxUnavailable: {unavailable}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sleep, \"3600\"]\n        resources: {{requests: {{cpu: 100m, memory: 32Mi}}}}\n"
    )
}

fn app_of(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app"))
        .map(String::as_str)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_ip(p: &Pod) -> Option<&str> {
    p.status
        .as_ref()?
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
}

async fn pods(client: &ApiClient, app: &str) -> Vec<Pod> {
    let p = ListParams {
        label_selector: format!("app={app}"),
        ..Default::default()
    };
    client
        .list::<Pod>(NS, &p)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Pods of `app` not being deleted.
async fn active_pods(client: &ApiClient, app: &str) -> Vec<Pod> {
    let mut v: Vec<Pod> = pods(client, app)
        .await
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    v.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    v
}

/// Waits until `app` has exactly `n` pods, all with `img`, bound, Running, Ready, with an IP.
async fn wait_running(client: &ApiClient, app: &str, n: usize, img: &str) -> Vec<Pod> {
    wait_for(
        &format!("{n} running pods of {app} with {img}"),
        WAIT,
        || async {
            let ps = pods(client, app).await;
            ps.len() == n
                && ps.iter().all(|p| {
                    image(p) == img
                        && p.metadata.deletion_timestamp.is_none()
                        && node_of(p).is_some()
                        && phase(p) == "Running"
                        && is_ready(p)
                        && pod_ip(p).is_some()
                })
        },
    )
    .await;
    active_pods(client, app).await
}

async fn replica_sets(client: &ApiClient, app: &str) -> Vec<ReplicaSet> {
    let p = ListParams {
        label_selector: format!("app={app}"),
        ..Default::default()
    };
    client
        .list::<ReplicaSet>(NS, &p)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn rollout_status(k: &Kubectl, name: &str) {
    let out = k.run(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=90s",
    ]);
    assert!(
        out.ok().contains("successfully rolled out"),
        "{}",
        out.stdout
    );
}

/// Checks a rolling update of `app` to `replicas` with `surge` and `unavailable` on every
/// recorded state: at most `replicas + surge` pods wanted by its ReplicaSets, at least
/// `replicas - unavailable` Ready pods not being deleted; and every pod bound at most once.
fn check_rollout(
    app: &str,
    replicas_wanted: usize,
    surge: usize,
    unavailable: usize,
    rs_states: &States<ReplicaSet>,
    pod_states: &States<Pod>,
) {
    assert!(rs_states.len() > 3, "the rollout was recorded");
    assert!(pod_states.len() > 3, "the rollout was recorded");
    for (i, state) in rs_states.iter().enumerate() {
        let total: i32 = state
            .values()
            .filter(|r| {
                r.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app"))
                    .map(String::as_str)
                    == Some(app)
            })
            .map(replicas)
            .sum();
        let max = i32::try_from(replicas_wanted + surge).unwrap();
        assert!(total <= max, "state {i}: {total} replicas > {max}");
    }
    for (i, state) in pod_states.iter().enumerate() {
        let ready = state
            .values()
            .filter(|p| app_of(p) == Some(app))
            .filter(|p| p.metadata.deletion_timestamp.is_none() && is_ready(p))
            .count();
        assert!(
            ready >= replicas_wanted - unavailable,
            "state {i}: {ready} ready pods < {replicas_wanted} - {unavailable}"
        );
    }
    check_bound_once(pod_states);
}

/// No pod's `spec.nodeName` ever changed once set.
fn check_bound_once(pod_states: &States<Pod>) {
    for (pod, nodes) in field_changes(pod_states, node_of) {
        assert_eq!(nodes.len(), 1, "{pod} bound to {nodes:?}");
    }
}

/// Every component still runs, answers /healthz with 200 and logged no panic.
async fn check_healthy(chain: &mut Chain) {
    for c in &mut chain.components {
        if c.pid().is_none() {
            continue;
        }
        assert!(
            c.wait_exit(Duration::from_millis(50)).is_none(),
            "a component exited:\n{}",
            c.log()
        );
        let (code, body) = http_get(&format!("http://127.0.0.1:{}/healthz", c.port)).await;
        assert_eq!(code, 200, "{body}\n{}", c.log());
        assert!(!c.log().contains("panicked"), "{}", c.log());
    }
    let (code, _) = http_get(&format!("{}/healthz", chain.api.url)).await;
    assert_eq!(code, 200);
    assert!(!chain.api.log().contains("panicked"), "{}", chain.api.log());
}

/// Syncs a controller-manager did, by its `bosun_controller_syncs_total` counters.
async fn syncs(c: &Component) -> u64 {
    let text = c.metrics().await.unwrap_or_default();
    metric_sum(&text, "bosun_controller_syncs_total") as u64
}

/// Whether the component's leader gauge says it leads.
async fn leads(c: &Component) -> bool {
    let text = c.metrics().await.unwrap_or_default();
    metric_sum(&text, "leader_election_master_status") == 1.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_on_hollow_nodes_through_the_whole_chain() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut chain) = chain(dir.path(), 1, 1).await else {
        return;
    };
    let (client, k) = (&chain.client.clone(), &chain.kubectl.clone());

    // Create: 3 pods, each bound to a hollow node, Running and Ready with an address.
    k.run_with(&["create", "-f", "-"], &deployment_yaml("web", 3, 1, 0, ""))
        .ok();
    let running = wait_running(client, "web", 3, "busybox:1.36").await;
    rollout_status(k, "web");
    let wide = k.run(&["get", "pods", "-o", "wide"]);
    let lines: Vec<&str> = wide.ok().lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let (node_col, ip_col) = (
        header.iter().position(|h| *h == "NODE").unwrap(),
        header.iter().position(|h| *h == "IP").unwrap(),
    );
    for p in &running {
        let name = p.metadata.name.as_deref().unwrap();
        let row: Vec<&str> = lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in\n{}", wide.stdout))
            .split_whitespace()
            .collect();
        assert_eq!(row[node_col], node_of(p).unwrap(), "{}", wide.stdout);
        assert!(row[node_col].starts_with("n-"), "{}", wide.stdout);
        assert_eq!(Some(row[ip_col]), pod_ip(p), "{}", wide.stdout);
        assert_eq!(row[2], "Running", "{}", wide.stdout);
    }
    let describe = k.run(&[
        "describe",
        "pod",
        running[0].metadata.name.as_deref().unwrap(),
    ]);
    let want = format!(
        "Successfully assigned default/{} to {}",
        running[0].metadata.name.as_deref().unwrap(),
        node_of(&running[0]).unwrap()
    );
    assert!(describe.ok().contains(&want), "{}", describe.stdout);

    // Scale 3 -> 10 -> 2, the ten spread over the three nodes.
    k.run(&["scale", "deployment/web", "--replicas=10"]).ok();
    let ten = wait_running(client, "web", 10, "busybox:1.36").await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in &ten {
        *per_node.entry(node_of(p).unwrap()).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread over the nodes: {per_node:?}");
    rollout_status(k, "web");
    k.run(&["scale", "deployment/web", "--replicas=2"]).ok();
    wait_running(client, "web", 2, "busybox:1.36").await;
    rollout_status(k, "web");

    // Scale to 4 for a rolling update with maxSurge 1, maxUnavailable 0, recorded.
    k.run(&["scale", "deployment/web", "--replicas=4"]).ok();
    wait_running(client, "web", 4, "busybox:1.36").await;
    let rs_history = History::<ReplicaSet>::record(client, NS).await;
    let pod_history = History::<Pod>::record(client, NS).await;
    k.run(&["set", "image", "deployment/web", "main=busybox:1.37"])
        .ok();
    rollout_status(k, "web");
    wait_running(client, "web", 4, "busybox:1.37").await;
    check_rollout("web", 4, 1, 0, &rs_history.stop(), &pod_history.stop());

    // History, undo, pause and resume.
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
    wait_running(client, "web", 4, "busybox:1.36").await;
    k.run(&["rollout", "pause", "deployment/web"]).ok();
    k.run(&["set", "image", "deployment/web", "main=busybox:1.38"])
        .ok();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replica_sets(client, "web").await.len(), 2, "paused");
    assert!(
        active_pods(client, "web")
            .await
            .iter()
            .all(|p| image(p) == "busybox:1.36")
    );
    k.run(&["rollout", "resume", "deployment/web"]).ok();
    rollout_status(k, "web");
    wait_running(client, "web", 4, "busybox:1.38").await;
    assert_eq!(replica_sets(client, "web").await.len(), 3);

    // kubectl 1.20 reads the same.
    if let Some(k20) = kubectl_120(&chain.api, dir.path()) {
        rollout_status(&k20, "web");
        let wide = k20.run(&["get", "pods", "-o", "wide"]);
        assert!(wide.ok().contains(" n-"), "{}", wide.stdout);
    }

    // Delete cascades: ReplicaSets, then pods, which the hollow nodes stop.
    k.run(&["delete", "deployment", "web"]).ok();
    wait_for("web's ReplicaSets and pods gone", WAIT, || async {
        replica_sets(client, "web").await.is_empty() && pods(client, "web").await.is_empty()
    })
    .await;
    check_healthy(&mut chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_controller_manager_finishes_a_rollout_when_the_leader_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut chain) = chain(dir.path(), 2, 1).await else {
        return;
    };
    let (client, k) = (&chain.client.clone(), &chain.kubectl.clone());
    // minReadySeconds makes each step of the rollout take a second or more.
    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("ha", 5, 1, 0, "  minReadySeconds: 1\n"),
    )
    .ok();
    wait_running(client, "ha", 5, "busybox:1.36").await;
    rollout_status(k, "ha");
    let leader = if leads(&chain.components[0]).await {
        0
    } else {
        1
    };
    assert!(leads(&chain.components[leader]).await, "one leads");
    assert!(!leads(&chain.components[1 - leader]).await, "one leads");
    assert!(
        syncs(&chain.components[leader]).await > 0,
        "the leader synced"
    );
    assert_eq!(
        syncs(&chain.components[1 - leader]).await,
        0,
        "the standby did nothing"
    );

    let rs_history = History::<ReplicaSet>::record(client, NS).await;
    let pod_history = History::<Pod>::record(client, NS).await;
    k.run(&["set", "image", "deployment/ha", "main=busybox:1.37"])
        .ok();
    wait_for("the new pods' first Ready pod", WAIT, || async {
        active_pods(client, "ha")
            .await
            .iter()
            .any(|p| image(p) == "busybox:1.37" && is_ready(p))
    })
    .await;
    let mid = active_pods(client, "ha").await;
    assert!(
        mid.iter().filter(|p| image(p) == "busybox:1.36").count() >= 3,
        "killed mid-rollout: {:?}",
        mid.iter().map(image).collect::<Vec<_>>()
    );
    chain.components[leader].kill9();
    rollout_status(k, "ha");
    wait_running(client, "ha", 5, "busybox:1.37").await;
    check_rollout("ha", 5, 1, 0, &rs_history.stop(), &pod_history.stop());
    assert!(
        leads(&chain.components[1 - leader]).await,
        "the standby leads"
    );
    check_healthy(&mut chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_scheduler_binds_pending_pods_when_the_leader_is_paused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut chain) = chain(dir.path(), 1, 2).await else {
        return;
    };
    let (client, k) = (&chain.client.clone(), &chain.kubectl.clone());
    let pod_history = History::<Pod>::record(client, NS).await;
    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("sched", 3, 1, 0, ""),
    )
    .ok();
    wait_running(client, "sched", 3, "busybox:1.36").await;
    let leader = if leads(&chain.components[1]).await {
        1
    } else {
        2
    };
    let standby = 3 - leader;
    assert!(!leads(&chain.components[standby]).await, "one leads");

    // Pause the leader, then make pods: they stay pending until the standby takes over.
    chain.components[leader].signal("STOP");
    k.run(&["scale", "deployment/sched", "--replicas=12"]).ok();
    wait_for("pending pods", WAIT, || async {
        pods(client, "sched")
            .await
            .iter()
            .any(|p| node_of(p).is_none())
    })
    .await;
    wait_running(client, "sched", 12, "busybox:1.36").await;
    assert!(leads(&chain.components[standby]).await, "the standby leads");

    // The old leader, resumed, finds its lease lost and exits as kube-scheduler does,
    // without binding anything again.
    chain.components[leader].signal("CONT");
    let status = chain.components[leader]
        .wait_exit(Duration::from_secs(30))
        .expect("the deposed scheduler exits");
    assert!(!status.success());
    k.run(&["scale", "deployment/sched", "--replicas=15"]).ok();
    wait_running(client, "sched", 15, "busybox:1.36").await;
    let states = pod_history.stop();
    check_bound_once(&states);
    assert_eq!(
        field_changes(&states, node_of).len(),
        15,
        "every pod bound once"
    );
    check_healthy(&mut chain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_across_a_store_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut chain) = chain(dir.path(), 1, 1).await else {
        return;
    };
    let (client, k) = (&chain.client.clone(), &chain.kubectl.clone());
    k.run_with(
        &["create", "-f", "-"],
        &deployment_yaml("sturdy", 5, 1, 0, "  minReadySeconds: 1\n"),
    )
    .ok();
    wait_running(client, "sturdy", 5, "busybox:1.36").await;
    let rs_history = History::<ReplicaSet>::record(client, NS).await;
    let pod_history = History::<Pod>::record(client, NS).await;
    k.run(&["set", "image", "deployment/sturdy", "main=busybox:1.37"])
        .ok();
    wait_for("the rollout under way", WAIT, || async {
        active_pods(client, "sturdy")
            .await
            .iter()
            .any(|p| image(p) == "busybox:1.37")
    })
    .await;
    let leader = chain.cluster.wait_leader(WAIT).await;
    chain.cluster.members[leader].kill9();
    rollout_status(k, "sturdy");
    wait_running(client, "sturdy", 5, "busybox:1.37").await;
    // The apiserver's watches outlive the store leader's death: the history is whole.
    check_rollout("sturdy", 5, 1, 0, &rs_history.stop(), &pod_history.stop());
    check_healthy(&mut chain).await;
}

/// The FailedScheduling messages about `pod`.
async fn failed_scheduling(client: &ApiClient, pod: &str) -> Vec<String> {
    client
        .list::<Event>(NS, &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod)
                && e.reason.as_deref() == Some("FailedScheduling")
        })
        .map(|e| e.message.unwrap_or_default())
        .collect()
}

/// The pod's PodScheduled condition: (status, reason, message).
async fn scheduled_condition(client: &ApiClient, name: &str) -> Option<(String, String, String)> {
    let p: Pod = client.get(NS, name).await.ok()?;
    let c = p
        .status?
        .conditions?
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")?;
    Some((
        c.status,
        c.reason.unwrap_or_default(),
        c.message.unwrap_or_default(),
    ))
}

fn pod_yaml(name: &str, cpu: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{extra}  containers:\n  - name: main\n    image: busybox:1.36\n    resources: {{requests: {{cpu: \"{cpu}\"}}}}\n"
    )
}

async fn wait_unschedulable(client: &ApiClient, pod: &str, message: &str) {
    wait_for(&format!("{pod} unschedulable"), WAIT, || async {
        scheduled_condition(client, pod).await
            == Some(("False".into(), "Unschedulable".into(), message.into()))
            && failed_scheduling(client, pod)
                .await
                .iter()
                .any(|m| m == message)
    })
    .await;
    let p: Pod = client.get(NS, pod).await.unwrap();
    assert_eq!((phase(&p), node_of(&p)), ("Pending", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_behaves_as_on_kubernetes_and_crashes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut chain) = chain(dir.path(), 1, 1).await else {
        return;
    };
    let (client, k) = (&chain.client.clone(), &chain.kubectl.clone());

    // More cpu than any node has (the hollow nodes have 32).
    k.run_with(&["create", "-f", "-"], &pod_yaml("huge", "64", ""))
        .ok();
    wait_unschedulable(
        client,
        "huge",
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 \
         No preemption victims found for incoming pod..",
    )
    .await;
    let mut kubectls = vec![k.clone()];
    kubectls.extend(kubectl_120(&chain.api, dir.path()));
    for kc in &kubectls {
        let describe = kc.run(&["describe", "pod", "huge"]);
        assert!(
            describe.ok().contains("FailedScheduling")
                && describe.stdout.contains("3 Insufficient cpu"),
            "kubectl {}: {}",
            kc.version,
            describe.stdout
        );
    }

    // A required node affinity that no node matches.
    let affinity = "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n        - matchExpressions:\n          - {key: disktype, operator: In, values: [ssd]}\n";
    k.run_with(
        &["create", "-f", "-"],
        &pod_yaml("nowhere", "100m", affinity),
    )
    .ok();
    wait_unschedulable(
        client,
        "nowhere",
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling..",
    )
    .await;

    // A toleration of a taint no node has: scheduled as any other pod.
    let toleration =
        "  tolerations:\n  - {key: no-such-taint, operator: Exists, effect: NoSchedule}\n";
    k.run_with(
        &["create", "-f", "-"],
        &pod_yaml("tolerant", "100m", toleration),
    )
    .ok();
    wait_for("tolerant running", WAIT, || async {
        client
            .get::<Pod>(NS, "tolerant")
            .await
            .is_ok_and(|p| node_of(&p).is_some() && phase(&p) == "Running" && is_ready(&p))
    })
    .await;

    // Two Deployments selecting the same pods: each keeps its own through owner references.
    for name in ["one", "two"] {
        let yaml = deployment_yaml("shared", 2, 1, 0, "").replacen(
            "name: shared",
            &format!("name: {name}"),
            1,
        );
        k.run_with(&["create", "-f", "-"], &yaml).ok();
    }
    for name in ["one", "two"] {
        rollout_status(k, name);
    }
    let shared = wait_running(client, "shared", 4, "busybox:1.36").await;
    let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
    for p in &shared {
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "ReplicaSet");
        *by_owner.entry(owner.name.clone()).or_default() += 1;
    }
    assert_eq!(by_owner.len(), 2, "{by_owner:?}");
    for (rs, n) in &by_owner {
        assert_eq!(*n, 2, "{by_owner:?}");
        assert!(rs.starts_with("one-") || rs.starts_with("two-"), "{rs}");
    }
    // Scaling one down leaves the other's pods alone.
    k.run(&["scale", "deployment/one", "--replicas=1"]).ok();
    wait_running(client, "shared", 3, "busybox:1.36").await;
    let mut owners: Vec<String> = active_pods(client, "shared")
        .await
        .iter()
        .map(|p| {
            p.metadata.owner_references.as_ref().unwrap()[0]
                .name
                .clone()
        })
        .collect();
    owners.sort();
    assert!(owners[0].starts_with("one-") && owners[1..].iter().all(|o| o.starts_with("two-")));

    // Still pending, and everything still healthy.
    for pod in ["huge", "nowhere"] {
        let p: Pod = client.get(NS, pod).await.unwrap();
        assert_eq!(node_of(&p), None);
    }
    check_healthy(&mut chain).await;
}
