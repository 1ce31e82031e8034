//! Hollow nodes (`bosun kubelet --runtime fake`) against a real three-member store and a real
//! apiserver: nodes register Ready with their Leases, which renew until the kubelet dies; pods
//! bound to a node run with an address of its range, every condition and their container
//! statuses; a graceful delete (kubectl's) removes them; admission rejects what does not fit.

use std::path::Path;
use std::time::{Duration, Instant};

use bosun_api_client::k8s_openapi::api::coordination::v1::Lease;
use bosun_api_client::k8s_openapi::api::core::v1::{Container, Event, Node, Pod, PodSpec};
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams};
use bosun_tests::component::Component;
use bosun_tests::kube::{Apiserver, kubectl_132};
use bosun_tests::{Cluster, Kind, http_get, wait_for};

/// A `bosun kubelet --runtime fake` process with `extra` flags, stopped by PID on drop.
fn start_kubelet(dir: &Path, api: &Apiserver, extra: &[&str]) -> Component {
    let mut args = vec!["--runtime", "fake"];
    args.extend_from_slice(extra);
    let env = [("BOSUN_WORKER_THREADS", "2")];
    Component::start(dir, "kubelet", "kubelet", &api.url, &args, &env)
}

async fn setup(dir: &Path) -> (Cluster, Apiserver, ApiClient) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    (cluster, api, client)
}

/// Hollow nodes `hollow-0..2` with `extra` flags, once all three are Ready.
async fn start_hollow(
    dir: &Path,
    api: &Apiserver,
    client: &ApiClient,
    extra: &[&str],
) -> Component {
    let mut args = vec!["--node-name", "hollow", "--node-count", "3"];
    args.extend_from_slice(extra);
    let k = start_kubelet(dir, api, &args);
    wait_for("3 Ready nodes", Duration::from_secs(60), || async {
        ready_nodes(client, "hollow-").await.len() == 3
    })
    .await;
    k
}

/// Whether the kubelet's writes show in the object's managedFields.
fn managed_by_kubelet(m: &ObjectMeta) -> bool {
    m.managed_fields
        .iter()
        .flatten()
        .any(|f| f.manager.as_deref() == Some("bosun-kubelet"))
}

fn condition<'a>(n: &'a Node, t: &str) -> Option<&'a str> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.as_str())
}

async fn renew_time(client: &ApiClient, node: &str) -> Option<String> {
    let l: Lease = client.get("kube-node-lease", node).await.ok()?;
    serde_json::to_value(l.spec?.renew_time?)
        .ok()?
        .as_str()
        .map(str::to_string)
}

async fn renew_times(client: &ApiClient) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for i in 0..3 {
        out.push(renew_time(client, &format!("hollow-{i}")).await);
    }
    out
}

async fn ready_nodes(client: &ApiClient, prefix: &str) -> Vec<Node> {
    let nodes = client
        .list::<Node>("", &ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    nodes
        .into_iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .unwrap_or_default()
                .starts_with(prefix)
                && condition(n, "Ready") == Some("True")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_ready_and_renew_leases_until_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    // A 4 s lease is renewed every second.
    let mut k = start_hollow(
        dir.path(),
        &api,
        &client,
        &[
            "--node-lease-duration-seconds",
            "4",
            "--node-labels",
            "topology.kubernetes.io/zone=z1",
        ],
    )
    .await;
    // Each node's Lease follows its registration.
    wait_for("3 leases", Duration::from_secs(30), || async {
        renew_times(&client).await.iter().all(Option::is_some)
    })
    .await;
    let nodes = ready_nodes(&client, "hollow-").await;
    let mut cidrs = Vec::new();
    for n in &nodes {
        let name = n.metadata.name.clone().unwrap();
        let labels = n.metadata.labels.clone().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(labels["topology.kubernetes.io/zone"], "z1");
        for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(condition(n, t), Some("False"), "{name} {t}");
        }
        let st = n.status.clone().unwrap();
        assert_eq!(st.capacity.as_ref().unwrap()["cpu"].0, "32");
        assert_eq!(st.allocatable.as_ref().unwrap()["pods"].0, "110");
        let addr = &st.addresses.as_ref().unwrap()[0];
        assert_eq!(
            (addr.type_.as_str(), addr.address.as_str()),
            ("InternalIP", "127.0.0.1")
        );
        let info = st.node_info.unwrap();
        assert!(
            info.container_runtime_version.starts_with("fake://"),
            "{info:?}"
        );
        assert!(info.kubelet_version.starts_with("v1.33"), "{info:?}");
        cidrs.push(n.spec.as_ref().unwrap().pod_cidr.clone().unwrap());
        // The Lease: held by the node, owned by it.
        let lease: Lease = client.get("kube-node-lease", &name).await.unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(4));
        let owner = &lease.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", n.metadata.uid.as_deref().unwrap())
        );
    }
    cidrs.sort();
    assert_eq!(cidrs, ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]);
    assert!(
        managed_by_kubelet(&nodes[0].metadata),
        "{:?}",
        nodes[0].metadata.managed_fields
    );

    // Renewals move renewTime.
    let first = renew_time(&client, "hollow-1").await.unwrap();
    wait_for("a lease renewal", Duration::from_secs(10), || async {
        renew_time(&client, "hollow-1")
            .await
            .is_some_and(|t| t != first)
    })
    .await;
    let (code, body) = http_get(&format!("http://127.0.0.1:{}/healthz", k.port)).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{}/metrics", k.port)).await;
    assert!(metrics.contains("kubelet_registered_nodes 3"), "{metrics}");

    // Killed, the kubelet renews nothing: renewTime stays for three renew intervals (an
    // absence can only be observed over a window).
    k.kill9();
    let frozen = renew_times(&client).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        renew_times(&client).await,
        frozen,
        "leases renewed after kill -9"
    );

    // Started again, it finds its nodes (AlreadyExists), keeps their ranges, renews again.
    k.spawn();
    wait_for(
        "renewals after the restart",
        Duration::from_secs(30),
        || async {
            renew_times(&client)
                .await
                .iter()
                .zip(&frozen)
                .all(|(now, then)| now != then)
        },
    )
    .await;
    let mut again: Vec<String> = ready_nodes(&client, "hollow-")
        .await
        .iter()
        .map(|n| n.spec.as_ref().unwrap().pod_cidr.clone().unwrap())
        .collect();
    again.sort();
    assert_eq!(again, cidrs);
    assert!(!k.log().contains("ERROR"), "{}", k.log());
    // SIGTERM stops it promptly.
    assert!(
        k.terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        k.log()
    );
}

fn pod(name: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![
                Container {
                    name: "web".into(),
                    image: Some("busybox:1.36".into()),
                    ..Default::default()
                },
                Container {
                    name: "sidecar".into(),
                    image: Some("busybox:1.36".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The default namespace's pods, by name.
async fn pods_by_name(client: &ApiClient) -> Vec<Pod> {
    let mut pods = client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap()
        .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

/// Creates pod `name` bound to `node` and waits for it to reach `want`.
async fn create_and_wait(client: &ApiClient, name: &str, node: &str, want: &str) -> Pod {
    client.create("default", &pod(name, node)).await.unwrap();
    wait_for(
        &format!("pod {name} {want}"),
        Duration::from_secs(30),
        || async {
            client
                .get::<Pod>("default", name)
                .await
                .is_ok_and(|p| phase(&p) == want)
        },
    )
    .await;
    client.get("default", name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_run_and_graceful_deletes_remove_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let mut k = start_hollow(dir.path(), &api, &client, &["--max-pods", "2"]).await;
    let node: Node = client.get("", "hollow-2").await.unwrap();
    let cidr = node.spec.unwrap().pod_cidr.unwrap();
    assert_eq!(cidr, "10.244.2.0/24");

    let p = create_and_wait(&client, "web", "hollow-2", "Running").await;
    let st = p.status.clone().unwrap();
    let ip = st.pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.244.2."), "{ip} not in {cidr}");
    assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(st.start_time.is_some());
    let conds = st.conditions.clone().unwrap();
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodReadyToStartContainers",
    ] {
        let c = conds
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("no {t}: {conds:?}"));
        assert_eq!(c.status, "True", "{t}");
        assert!(c.last_transition_time.is_some(), "{t}");
    }
    let cs = st.container_statuses.clone().unwrap();
    assert_eq!(
        cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["sidecar", "web"]
    );
    for c in &cs {
        assert!(c.ready && c.started == Some(true), "{c:?}");
        assert_eq!(c.restart_count, 0);
        assert!(c.state.as_ref().unwrap().running.is_some(), "{c:?}");
        assert!(c.container_id.as_deref().unwrap().starts_with("fake://"));
        assert!(!c.image_id.is_empty());
    }
    assert!(
        managed_by_kubelet(&p.metadata),
        "{:?}",
        p.metadata.managed_fields
    );
    assert_eq!(
        st.qos_class.as_deref(),
        Some("BestEffort"),
        "the apiserver's field stays"
    );

    // A second pod fits (max 2), a third is rejected at admission.
    let second = create_and_wait(&client, "second", "hollow-2", "Running").await;
    let second_ip = second.status.unwrap().pod_ip.unwrap();
    assert_ne!(second_ip, ip, "one address per pod");
    let third = create_and_wait(&client, "third", "hollow-2", "Failed").await;
    let st = third.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("OutOfpods"));
    assert_eq!(
        st.message.as_deref(),
        Some(
            "Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
        )
    );

    // ... with a Warning event, as the kubelet records it.
    wait_for("the OutOfpods event", Duration::from_secs(30), || async {
        let events = client
            .list::<Event>(
                "default",
                &ListParams {
                    field_selector: "involvedObject.name=third".into(),
                    ..Default::default()
                },
            )
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        events.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("OutOfpods")
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kubelet")
        })
    })
    .await;

    // A restarted kubelet adopts what runs: same addresses, no status to write, and the
    // rejected pod stays rejected.
    let before: Vec<Pod> = pods_by_name(&client).await;
    k.kill9();
    k.spawn();
    let metrics_url = format!("http://127.0.0.1:{}/metrics", k.port);
    wait_for(
        "the restarted kubelet running both pods",
        Duration::from_secs(30),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", k.port))
                .await
                .is_ok()
                && http_get(&metrics_url)
                    .await
                    .1
                    .contains("kubelet_running_pods 2")
        },
    )
    .await;
    let (_, metrics) = http_get(&metrics_url).await;
    assert!(
        metrics.contains("kubelet_pod_status_writes_total 0"),
        "{metrics}"
    );
    assert_eq!(pods_by_name(&client).await, before, "nothing rewritten");

    // A graceful delete (30 s grace): the kubelet stops the pod and deletes it for good,
    // long before the grace period ends.
    let started = Instant::now();
    match kubectl_132(&api, dir.path()) {
        Some(kubectl) => {
            kubectl.run(&["delete", "pod", "web", "--wait=true"]).ok();
        }
        None => {
            let d = client.delete::<Pod>("default", "web", None).await.unwrap();
            assert!(!d.gone, "a pod on a node is deleted gracefully");
        }
    }
    wait_for("the pod gone", Duration::from_secs(20), || async {
        client
            .get::<Pod>("default", "web")
            .await
            .is_err_and(|e| e.is_not_found())
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(25));
    // The rejected pod is deleted at once (it never ran); a new pod takes the freed room.
    client
        .delete::<Pod>("default", "third", None)
        .await
        .unwrap();
    create_and_wait(&client, "fourth", "hollow-2", "Running").await;
    assert!(!k.log().contains("ERROR"), "{}", k.log());
}
