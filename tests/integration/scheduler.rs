//! `bosun scheduler` against a real three-member store and apiserver, with Node objects (no
//! kubelet) and pods created directly: pods are bound, resources, taints and node selectors
//! are respected, a pod that fits nowhere gets Kubernetes' condition and event and is bound
//! once a node that fits appears, and two schedulers never bind one pod twice.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bosun_api_client::k8s_openapi::api::core::v1::{
    Container, Event, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec,
    ResourceRequirements, Taint, Toleration,
};
use bosun_api_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use bosun_api_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use bosun_api_client::{ApiClient, ListParams, Watch, WatchEvent, WatchParams};
use bosun_tests::component::{Component, metric_sum};
use bosun_tests::kube::{Apiserver, kubectl_132};
use bosun_tests::objects::node_of;
use bosun_tests::{Cluster, Kind, wait_for};

/// A `bosun scheduler` process, stopped by PID on drop.
struct SchedulerProc(Component);

impl std::ops::Deref for SchedulerProc {
    type Target = Component;
    fn deref(&self) -> &Component {
        &self.0
    }
}

impl std::ops::DerefMut for SchedulerProc {
    fn deref_mut(&mut self) -> &mut Component {
        &mut self.0
    }
}

impl SchedulerProc {
    fn start(dir: &Path, name: &str, apiserver: &str, extra: &[&str]) -> SchedulerProc {
        let mut args = vec!["--bind-address", "127.0.0.1"];
        args.extend_from_slice(extra);
        SchedulerProc(Component::start(
            dir,
            name,
            "scheduler",
            apiserver,
            &args,
            &[],
        ))
    }

    /// `scheduler_schedule_attempts_total{result="scheduled"}`, once the server answers.
    async fn scheduled(&self) -> Option<u64> {
        let text = self.0.metrics().await?;
        let series = "scheduler_schedule_attempts_total{result=\"scheduled\"}";
        Some(metric_sum(&text, series) as u64)
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// A Ready node with `cpu` and 8Gi of memory, 110 pods, labels and taints.
fn node(name: &str, cpu: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
    let mut all_labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all_labels.insert("kubernetes.io/hostname".into(), name.into());
    let resources = quantities(&[("cpu", cpu), ("memory", "8Gi"), ("pods", "110")]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(all_labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then_some(taints),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1.36".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(quantities(&[("cpu", cpu), ("memory", "64Mi")])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn setup(dir: &Path) -> (Cluster, Apiserver, ApiClient) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    (cluster, api, client)
}

/// The pods of the default namespace by name, with the node each is bound to.
async fn placements(client: &ApiClient) -> HashMap<String, Option<String>> {
    client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| (p.metadata.name.clone().unwrap(), node_of(p)))
        .collect()
}

async fn wait_bound(client: &ApiClient, name: &str, sched: &SchedulerProc) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p: Pod = client.get("default", name).await.unwrap();
        if let Some(n) = node_of(&p) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not bound; scheduler log:\n{}",
            sched.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pod's PodScheduled condition: (status, reason, message).
async fn scheduled_condition(client: &ApiClient, name: &str) -> Option<(String, String, String)> {
    let p: Pod = client.get("default", name).await.ok()?;
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

/// Events about the pod: (type, reason, message).
async fn events_of(client: &ApiClient, name: &str) -> Vec<(String, String, String)> {
    client
        .list::<Event>("default", &ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect()
}

fn cpu_millis(p: &Pod) -> u64 {
    let q = p.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["cpu"]
        .0
        .clone();
    match q.strip_suffix('m') {
        Some(m) => m.parse().unwrap(),
        None => q.parse::<u64>().unwrap() * 1000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_within_resources_and_waits_for_a_node_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    for n in ["n1", "n2", "n3"] {
        client.create("", &node(n, "2", &[], vec![])).await.unwrap();
    }
    let sched = SchedulerProc::start(dir.path(), "scheduler", &api.url, &["--leader-elect=false"]);

    // Twelve pods of 500m fill three 2-CPU nodes exactly.
    for i in 0..12 {
        client
            .create("default", &pod(&format!("p{i}"), "500m"))
            .await
            .unwrap();
    }
    for i in 0..12 {
        wait_bound(&client, &format!("p{i}"), &sched).await;
    }
    let pods = client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap()
        .items;
    let mut per_node: HashMap<String, u64> = HashMap::new();
    for p in &pods {
        *per_node.entry(node_of(p).unwrap()).or_default() += cpu_millis(p);
    }
    assert_eq!(
        per_node,
        HashMap::from([
            ("n1".into(), 2000),
            ("n2".into(), 2000),
            ("n3".into(), 2000)
        ]),
        "requests fill every node exactly"
    );
    let p0: Pod = client.get("default", "p0").await.unwrap();
    assert_eq!(
        scheduled_condition(&client, "p0").await.map(|c| c.0),
        Some("True".into())
    );
    let node0 = node_of(&p0).unwrap();
    let scheduled = format!("Successfully assigned default/p0 to {node0}");
    wait_for("the Scheduled event", Duration::from_secs(10), || async {
        events_of(&client, "p0").await.contains(&(
            "Normal".into(),
            "Scheduled".into(),
            scheduled.clone(),
        ))
    })
    .await;

    // The nodes are full: a pod of 100m fits nowhere; one bigger than any node neither.
    client
        .create("default", &pod("small", "100m"))
        .await
        .unwrap();
    client.create("default", &pod("big", "3")).await.unwrap();
    let want = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are \
                available: 3 No preemption victims found for incoming pod..";
    for name in ["small", "big"] {
        wait_for("PodScheduled=False", Duration::from_secs(20), || async {
            scheduled_condition(&client, name).await
                == Some(("False".into(), "Unschedulable".into(), want.into()))
        })
        .await;
        wait_for(
            "a FailedScheduling event",
            Duration::from_secs(10),
            || async {
                events_of(&client, name).await.contains(&(
                    "Warning".into(),
                    "FailedScheduling".into(),
                    want.into(),
                ))
            },
        )
        .await;
    }

    // kubectl shows where the pods run.
    if let Some(kubectl) = kubectl_132(&api, dir.path()) {
        let out = kubectl.run(&["get", "pods", "-o", "wide"]).ok().to_string();
        let line = out.lines().find(|l| l.starts_with("p0 ")).unwrap();
        assert!(line.contains(&node0), "{out}");
        let line = out.lines().find(|l| l.starts_with("big ")).unwrap();
        assert!(line.contains("<none>"), "{out}");
    }

    // A node with room for both arrives: both are bound to it, and it is full.
    client
        .create("", &node("n4", "3100m", &[], vec![]))
        .await
        .unwrap();
    assert_eq!(wait_bound(&client, "big", &sched).await, "n4");
    assert_eq!(wait_bound(&client, "small", &sched).await, "n4");

    // Deleting a pod frees its node for a pod that waited.
    client
        .create("default", &pod("late", "500m"))
        .await
        .unwrap();
    wait_for(
        "late to be unschedulable",
        Duration::from_secs(20),
        || async {
            scheduled_condition(&client, "late").await.map(|c| c.1) == Some("Unschedulable".into())
        },
    )
    .await;
    client
        .delete::<Pod>(
            "default",
            "p0",
            Some(&serde_json::json!({"gracePeriodSeconds": 0})),
        )
        .await
        .unwrap();
    assert_eq!(wait_bound(&client, "late", &sched).await, node0);
    assert!(placements(&client).await.values().all(Option::is_some));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn respects_taints_and_node_selectors() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let taint = Taint {
        key: "dedicated".into(),
        value: Some("db".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    client
        .create("", &node("tainted", "4", &[], vec![taint]))
        .await
        .unwrap();
    client
        .create("", &node("ssd", "4", &[("disk", "ssd")], vec![]))
        .await
        .unwrap();
    client
        .create("", &node("plain", "4", &[], vec![]))
        .await
        .unwrap();
    let sched = SchedulerProc::start(dir.path(), "scheduler", &api.url, &["--leader-elect=false"]);

    let mut on_ssd = pod("on-ssd", "100m");
    on_ssd.spec.as_mut().unwrap().node_selector = Some([("disk".into(), "ssd".into())].into());
    let on_tainted = |name: &str, tolerate: bool| {
        let mut p = pod(name, "100m");
        let spec = p.spec.as_mut().unwrap();
        spec.node_selector = Some([("kubernetes.io/hostname".into(), "tainted".into())].into());
        if tolerate {
            spec.tolerations = Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("db".into()),
                effect: Some("NoSchedule".into()),
                toleration_seconds: None,
            }]);
        }
        p
    };
    client.create("default", &on_ssd).await.unwrap();
    client
        .create("default", &on_tainted("tolerates", true))
        .await
        .unwrap();
    client
        .create("default", &on_tainted("intolerant", false))
        .await
        .unwrap();
    // Untargeted pods never land on the tainted node.
    for i in 0..10 {
        client
            .create("default", &pod(&format!("any{i}"), "100m"))
            .await
            .unwrap();
    }
    assert_eq!(wait_bound(&client, "on-ssd", &sched).await, "ssd");
    assert_eq!(wait_bound(&client, "tolerates", &sched).await, "tainted");
    for i in 0..10 {
        assert_ne!(
            wait_bound(&client, &format!("any{i}"), &sched).await,
            "tainted"
        );
    }
    let want = "0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't \
                match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 \
                Preemption is not helpful for scheduling..";
    wait_for(
        "intolerant to be unschedulable",
        Duration::from_secs(20),
        || async {
            scheduled_condition(&client, "intolerant").await
                == Some(("False".into(), "Unschedulable".into(), want.into()))
        },
    )
    .await;

    // A toleration that matches nothing changes nothing; the pod stays pending, nothing
    // crashes.
    let mut odd = on_tainted("odd-toleration", false);
    odd.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
        key: Some("no-such-taint".into()),
        operator: Some("Exists".into()),
        ..Default::default()
    }]);
    client.create("default", &odd).await.unwrap();
    wait_for(
        "odd-toleration to be unschedulable",
        Duration::from_secs(20),
        || async {
            scheduled_condition(&client, "odd-toleration")
                .await
                .map(|c| c.1)
                == Some("Unschedulable".into())
        },
    )
    .await;
    assert!(
        sched.scheduled().await.is_some(),
        "the scheduler serves /metrics"
    );
}

/// Records, from a watch of every pod, each pod's node as it changes (a pod bound twice shows
/// two different nodes, or a bind after a bind), until the pod named `fence` appears. The
/// watch delivers changes in revision order, so once the fence (created after everything else)
/// is seen, every earlier bind has been; a stop at an arbitrary moment instead could come while
/// the last binds were still on their way through the apiserver's watch.
async fn record_binds(
    mut w: Watch<Pod>,
    fence: &str,
) -> Result<HashMap<String, Vec<String>>, String> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    loop {
        let ev = match w.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => return Err("the watch ended before the fence".into()),
            Err(e) => return Err(format!("the watch failed before the fence: {e:?}")),
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
            let name = p.metadata.name.clone().unwrap_or_default();
            if name == fence {
                return Ok(seen);
            }
            if let Some(n) = node_of(&p) {
                let binds = seen.entry(name).or_default();
                if binds.last() != Some(&n) {
                    binds.push(n);
                }
            }
        }
    }
}

/// The schedulers' `scheduled` counts once they add up to at least `want`, or as they are
/// after 20 s: a scheduler counts a bind when the apiserver's answer reaches it, a moment
/// after the bind is visible to others.
async fn counts_reaching(scheds: &[&SchedulerProc], want: u64) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut counts = Vec::with_capacity(scheds.len());
        for s in scheds {
            counts.push(s.scheduled().await.unwrap_or(0));
        }
        if counts.iter().sum::<u64>() >= want || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_never_bind_a_pod_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    for i in 0..4 {
        client
            .create("", &node(&format!("n{i}"), "4", &[], vec![]))
            .await
            .unwrap();
    }
    // The recorder watches from before the first pod.
    let list = client
        .list::<Pod>("default", &ListParams::default())
        .await
        .unwrap();
    assert!(list.items.is_empty());
    let watch = client
        .watch::<Pod>(
            "default",
            &WatchParams::from_version(&list.resource_version),
        )
        .await
        .unwrap();
    let recorder = tokio::spawn(async move { record_binds(watch, "fence").await });
    // Both race for every pod: no leader election.
    let mut a = SchedulerProc::start(dir.path(), "a", &api.url, &["--leader-elect=false"]);
    let b = SchedulerProc::start(dir.path(), "b", &api.url, &["--leader-elect=false"]);
    // 4 nodes x 4 CPUs hold 32 pods of 500m; place 24 while both run.
    let creates: Vec<_> = (0..24)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.create("default", &pod(&format!("r{i}"), "500m")).await })
        })
        .collect();
    for c in creates {
        c.await.unwrap().unwrap();
    }
    for i in 0..24 {
        wait_bound(&client, &format!("r{i}"), &b).await;
    }
    let counts = counts_reaching(&[&a, &b], 24).await;
    let (sa, sb) = (counts[0], counts[1]);
    assert_eq!(sa + sb, 24, "every pod bound once: a {sa}, b {sb}");

    // With a gone, b's cache must be exact (no lost race counted twice): the last 8 slots
    // are all usable, and the 9th pod fits nowhere.
    assert!(
        a.terminate(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "{}",
        a.log()
    );
    for i in 24..33 {
        client
            .create("default", &pod(&format!("r{i}"), "500m"))
            .await
            .unwrap();
    }
    wait_for("32 pods bound", Duration::from_secs(30), || async {
        placements(&client)
            .await
            .values()
            .filter(|n| n.is_some())
            .count()
            == 32
    })
    .await;
    wait_for(
        "the 33rd pod unschedulable",
        Duration::from_secs(20),
        || async {
            let p = placements(&client).await;
            let left: Vec<&String> = p
                .iter()
                .filter(|(_, n)| n.is_none())
                .map(|(k, _)| k)
                .collect();
            left.len() == 1
                && scheduled_condition(&client, left[0]).await.map(|c| c.1)
                    == Some("Unschedulable".into())
        },
    )
    .await;
    // b alone bound the last 8, once each.
    let counts = counts_reaching(&[&b], sb + 8).await;
    assert_eq!(
        counts[0],
        sb + 8,
        "b bound {} of the last 8",
        counts[0].saturating_sub(sb)
    );
    // A pod no scheduler serves, created last: the recorder stops when it sees it.
    let mut fence = pod("fence", "500m");
    fence.spec.as_mut().unwrap().scheduler_name = Some("no-such-scheduler".into());
    client.create("default", &fence).await.unwrap();
    let binds = tokio::time::timeout(Duration::from_secs(30), recorder)
        .await
        .expect("the recorder to see the fence")
        .unwrap()
        .unwrap();
    for (pod, nodes) in &binds {
        assert_eq!(nodes.len(), 1, "{pod} bound to {nodes:?}");
    }
    assert_eq!(binds.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leader_election_only_the_leader_binds_and_a_standby_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    for i in 0..3 {
        client
            .create("", &node(&format!("n{i}"), "8", &[], vec![]))
            .await
            .unwrap();
    }
    let flags = [
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=500ms",
    ];
    let mut a = SchedulerProc::start(dir.path(), "a", &api.url, &flags);
    for i in 0..5 {
        client
            .create("default", &pod(&format!("first{i}"), "100m"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        wait_bound(&client, &format!("first{i}"), &a).await;
    }
    // b starts while a leads: it watches, but binds nothing.
    let b = SchedulerProc::start(dir.path(), "b", &api.url, &flags);
    wait_for("b to serve /metrics", Duration::from_secs(20), || async {
        b.scheduled().await.is_some()
    })
    .await;
    for i in 0..10 {
        client
            .create("default", &pod(&format!("second{i}"), "100m"))
            .await
            .unwrap();
    }
    for i in 0..10 {
        wait_bound(&client, &format!("second{i}"), &a).await;
    }
    assert_eq!(a.scheduled().await, Some(15));
    assert_eq!(b.scheduled().await, Some(0), "the standby bound pods");

    // The leader dies without releasing the lease: b takes over once it expires.
    a.kill9();
    let killed = Instant::now();
    for i in 0..5 {
        client
            .create("default", &pod(&format!("third{i}"), "100m"))
            .await
            .unwrap();
    }
    for i in 0..5 {
        wait_bound(&client, &format!("third{i}"), &b).await;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "took over after {:?}",
        killed.elapsed()
    );
    assert_eq!(b.scheduled().await, Some(5));
}
