//! The node lifecycle controller of `bosun controller-manager` against a real three-member
//! store and apiserver, a scheduler and two hollow-node kubelets: when one kubelet dies, its
//! nodes go Ready=Unknown and get the unreachable taints, its pods are deleted once their
//! (default, here 5 s) toleration runs out and the Deployment's replicas come back on the
//! other kubelet's nodes, while a pod tolerating the taint for longer stays; when the
//! kubelet comes back, the taints go and the pending deletion is cancelled. The NoExecute
//! taints come at the zone's `--node-eviction-rate` (0.1 nodes/s by default: the second
//! node 10 s after the first), and each evicted pod carries `DisruptionTarget=True`
//! (`DeletionByTaintManager`) from before its deletion.

use std::path::Path;
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::apps::v1::Deployment;
use bosun_api_client::k8s_openapi::api::core::v1::{Event, Node, Pod};
use bosun_api_client::{ApiClient, ListParams};
use bosun_tests::component::Component;
use bosun_tests::kube::Apiserver;
use bosun_tests::{Cluster, Kind, wait_for};
use serde_json::json;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const REPLICAS: usize = 8;
/// The apiserver's default toleration of the not-ready and unreachable taints, in seconds.
const TOLERATION: i64 = 5;

fn kubelet(dir: &Path, api: &Apiserver, name: &str) -> Component {
    let args = [
        "--runtime",
        "fake",
        "--node-name",
        name,
        "--node-count",
        "2",
        "--node-lease-duration-seconds",
        "4",
    ];
    let env = [("BOSUN_WORKER_THREADS", "2")];
    Component::start(
        dir,
        &format!("kubelet-{name}"),
        "kubelet",
        &api.url,
        &args,
        &env,
    )
}

fn ready(n: &Node) -> Option<(String, String)> {
    let c = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

/// `(key, effect, timeAdded)` of the node's taints.
fn taints(n: &Node) -> Vec<(String, String, Option<jiff::Timestamp>)> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect, t.time_added.map(|t| t.0)))
        .collect()
}

async fn nodes(client: &ApiClient) -> Vec<Node> {
    client
        .list::<Node>("", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn pods(client: &ApiClient) -> Vec<Pod> {
    client
        .list::<Pod>("default", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn name_of(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or("")
}

fn is_web(p: &Pod) -> bool {
    name_of(p).starts_with("web-")
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn pod_ready(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// Events as `(involved name, reason, message)`.
async fn events(client: &ApiClient) -> Vec<(String, String, String)> {
    client
        .list::<Event>("default", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e.involved_object.name.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_stops_has_its_pods_replaced_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cluster = Cluster::start(Kind::Bosun, d, 3, &[]).await;
    let secs = TOLERATION.to_string();
    let api = Apiserver::start(
        &d.join("api"),
        &cluster.client_urls().join(","),
        &[
            "--default-not-ready-toleration-seconds",
            &secs,
            "--default-unreachable-toleration-seconds",
            &secs,
        ],
    )
    .await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let env = [("BOSUN_LOG", "info,bosun_controllers=debug")];
    let cm = Component::start(
        d,
        "cm",
        "controller-manager",
        &api.url,
        &[
            "--leader-elect=false",
            "--node-monitor-period=1s",
            "--node-monitor-grace-period=5s",
        ],
        &env,
    );
    let _sched = Component::start(
        d,
        "sched",
        "scheduler",
        &api.url,
        &["--bind-address", "127.0.0.1", "--leader-elect=false"],
        &[],
    );
    let _a = kubelet(d, &api, "a");
    let mut b = kubelet(d, &api, "b");
    wait_for("4 Ready nodes", Duration::from_secs(60), || async {
        let n = nodes(&client).await;
        n.len() == 4
            && n.iter()
                .all(|n| ready(n).is_some_and(|(s, _)| s == "True") && taints(n).is_empty())
    })
    .await;

    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}
            }
        }
    }))
    .unwrap();
    client.create("default", &deploy).await.unwrap();
    // A pod on b-0 that tolerates its unreachability for an hour.
    let patient: Pod = serde_json::from_value(json!({
        "metadata": {"name": "patient"},
        "spec": {
            "nodeName": "b-0",
            "containers": [{"name": "main", "image": "busybox:1.36"}],
            "tolerations": [{"key": UNREACHABLE, "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 3600}]
        }
    }))
    .unwrap();
    let patient = client.create("default", &patient).await.unwrap();
    // The admission added only the not-ready toleration, with the apiserver's seconds.
    let tolerations: Vec<_> = patient
        .spec
        .as_ref()
        .unwrap()
        .tolerations
        .clone()
        .unwrap()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        tolerations,
        vec![
            (UNREACHABLE.to_string(), Some(3600)),
            ("node.kubernetes.io/not-ready".to_string(), Some(TOLERATION)),
        ]
    );
    wait_for(
        "web and patient Running",
        Duration::from_secs(60),
        || async {
            let p = pods(&client).await;
            p.iter().filter(|p| is_web(p) && running(p)).count() == REPLICAS
                && p.iter().any(|p| name_of(p) == "patient" && running(p))
        },
    )
    .await;
    let on_b: Vec<String> = pods(&client)
        .await
        .iter()
        .filter(|p| is_web(p) && node_of(p).starts_with("b-"))
        .map(|p| name_of(p).to_string())
        .collect();
    assert!(
        !on_b.is_empty(),
        "the scheduler put no web pod on b's nodes"
    );

    // kubelet b dies: its Leases stop.
    b.kill9();
    wait_for(
        "b's nodes Unknown and tainted",
        Duration::from_secs(45),
        || async {
            let n = nodes(&client).await;
            let b: Vec<&Node> = n
                .iter()
                .filter(|n| n.metadata.name.as_deref().unwrap_or("").starts_with("b-"))
                .collect();
            b.len() == 2
                && b.iter().all(|n| {
                    let t = taints(n);
                    ready(n) == Some(("Unknown".into(), "NodeStatusUnknown".into()))
                        && t.iter()
                            .any(|(k, e, at)| k == UNREACHABLE && e == "NoExecute" && at.is_some())
                        && t.iter()
                            .any(|(k, e, _)| k == UNREACHABLE && e == "NoSchedule")
                })
        },
    )
    .await;
    // a's nodes are untouched.
    for n in nodes(&client).await {
        let name = n.metadata.name.clone().unwrap();
        if name.starts_with("a-") {
            assert_eq!(ready(&n).unwrap().0, "True", "{name}");
            assert!(taints(&n).is_empty(), "{name}: {:?}", taints(&n));
        }
    }
    // When each of b's nodes was tainted unreachable:NoExecute.
    let tainted_at: std::collections::HashMap<String, jiff::Timestamp> = nodes(&client)
        .await
        .iter()
        .filter_map(|n| {
            let at = taints(n)
                .into_iter()
                .find(|(k, e, _)| k == UNREACHABLE && e == "NoExecute")?
                .2?;
            Some((n.metadata.name.clone()?, at))
        })
        .collect();
    assert_eq!(tainted_at.len(), 2, "{tainted_at:?}");
    // One zone (no zone labels), 2 of 4 nodes not ready: Normal, 0.1 nodes/s, so the second
    // taint waits 10 s for its token (timestamps have whole seconds).
    let gap = tainted_at["b-0"].duration_since(tainted_at["b-1"]).abs();
    assert!(
        gap >= jiff::SignedDuration::from_secs(9),
        "tainted {gap} apart: {tainted_at:?}"
    );
    // Every node was registered in the controller when it first saw it.
    let ev = events(&client).await;
    for n in ["a-0", "a-1", "b-0", "b-1"] {
        let want = (
            n.to_string(),
            "RegisteredNode".to_string(),
            format!("Registered Node {n} in Controller"),
        );
        assert!(ev.contains(&want), "no {want:?} in {ev:?}");
    }
    wait_for("NodeNotReady events", Duration::from_secs(15), || async {
        let ev = events(&client).await;
        ["b-0", "b-1"].iter().all(|n| {
            ev.contains(&(
                n.to_string(),
                "NodeNotReady".into(),
                format!("Node {n} status is now: NodeNotReady"),
            ))
        })
    })
    .await;

    // Past the toleration, b's web pods are deleted (gracefully: b's kubelet is gone, so they
    // stay Terminating) and the Deployment is whole again on a's nodes.
    wait_for("web back on a's nodes", Duration::from_secs(60), || async {
        let p = pods(&client).await;
        let live: Vec<&Pod> = p
            .iter()
            .filter(|p| is_web(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        live.len() == REPLICAS
            && live
                .iter()
                .all(|p| running(p) && node_of(p).starts_with("a-"))
    })
    .await;
    let p = pods(&client).await;
    for name in &on_b {
        let pod = p.iter().find(|p| name_of(p) == name);
        let pod = pod.unwrap_or_else(|| panic!("{name} gone before its kubelet came back"));
        let deleting = pod.metadata.deletion_timestamp.as_ref().unwrap().0;
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap();
        let asked = deleting - jiff::SignedDuration::from_secs(grace);
        // Not before the toleration ran out (timestamps have whole seconds).
        let tainted = tainted_at[node_of(pod)];
        assert!(
            asked >= tainted + jiff::SignedDuration::from_secs(TOLERATION - 1),
            "{name} deleted at {asked}, its node tainted at {tainted}"
        );
        // Marked not ready when its node went Unknown.
        assert_eq!(pod_ready(pod).as_deref(), Some("False"), "{name}");
        // The taint manager's condition, set before the deletion.
        let target = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .unwrap_or_else(|| panic!("{name} has no DisruptionTarget: {:?}", pod.status));
        assert_eq!(
            (
                target.status.as_str(),
                target.reason.as_deref(),
                target.message.as_deref()
            ),
            (
                "True",
                Some("DeletionByTaintManager"),
                Some("Taint manager: deleting due to NoExecute taint")
            ),
            "{name}"
        );
        let set_at = target.last_transition_time.as_ref().unwrap().0;
        assert!(
            set_at <= asked,
            "{name}: condition at {set_at}, deleted at {asked}"
        );
    }
    let ev = events(&client).await;
    for name in &on_b {
        let want = (
            name.clone(),
            "TaintManagerEviction".to_string(),
            format!("Marking for deletion Pod default/{name}"),
        );
        assert!(ev.contains(&want), "no {want:?} in {ev:?}");
    }
    // The patient pod stays, not ready.
    let patient: Pod = client.get("default", "patient").await.unwrap();
    assert!(patient.metadata.deletion_timestamp.is_none());
    assert_eq!(pod_ready(&patient).as_deref(), Some("False"));
    assert!(!ev.iter().any(|(n, r, m)| n == "patient"
        && r == "TaintManagerEviction"
        && m.starts_with("Marking")));

    // kubelet b comes back: Ready again, untainted, the patient's deletion cancelled, and
    // the evicted pods finish terminating.
    b.spawn();
    wait_for(
        "b's nodes Ready and untainted",
        Duration::from_secs(60),
        || async {
            let n = nodes(&client).await;
            n.len() == 4
                && n.iter()
                    .all(|n| ready(n).is_some_and(|(s, _)| s == "True") && taints(n).is_empty())
        },
    )
    .await;
    wait_for(
        "the patient's deletion cancelled",
        Duration::from_secs(15),
        || async {
            events(&client).await.contains(&(
                "patient".into(),
                "TaintManagerEviction".into(),
                "Cancelling deletion of Pod default/patient".into(),
            ))
        },
    )
    .await;
    wait_for("evicted pods gone", Duration::from_secs(60), || async {
        let p = pods(&client).await;
        on_b.iter().all(|n| !p.iter().any(|p| name_of(p) == n))
    })
    .await;
    let patient: Pod = client.get("default", "patient").await.unwrap();
    assert!(patient.metadata.deletion_timestamp.is_none());

    // A node deleted (its kubelet gone for good) is removed from the controller.
    b.kill9();
    client.delete::<Node>("", "b-1", None).await.unwrap();
    wait_for("a RemovingNode event", Duration::from_secs(15), || async {
        events(&client).await.contains(&(
            "b-1".into(),
            "RemovingNode".into(),
            "Removing Node b-1 from Controller".into(),
        ))
    })
    .await;
    assert!(
        !cm.log().contains("panicked"),
        "controller-manager log:\n{}",
        cm.log()
    );
}
