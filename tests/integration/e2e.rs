//! End to end with real containers: a three-member store, the apiserver, the
//! controller-manager, the scheduler and `bosun kubelet --runtime cri` over a private
//! containerd (its own socket, CNI network, bridge, pod range and cgroup root), driven by
//! unmodified kubectl. Skipped, with the reason printed, only where containerd cannot run.
//!
//! - a Deployment of busybox httpd: 3 pods Running whose IPs answer HTTP from the host;
//!   scaled to 5, then to 2 (the removed pods' processes stop and their addresses go quiet);
//!   a template change rolls with readiness gating availability (never fewer available pods
//!   than maxUnavailable allows, on every recorded state) across a kill -9 of the store
//!   leader; `kubectl logs` and `kubectl exec` (1.32 and 1.20); deleting it leaves no
//!   container, sandbox, CNI allocation, iptables rule or cgroup;
//! - a container whose process is killed restarts (restartCount 1, `logs --previous`); a
//!   failing liveness probe restarts a container; an image that cannot be pulled gives
//!   ErrImagePull then ImagePullBackOff and nothing else breaks; a kubelet killed with -9
//!   and started again adopts the running containers instead of restarting them; an image
//!   is pulled from a registry on loopback (`imagePullPolicy: Always`); a deleted
//!   pod runs its preStop hook and is killed once its grace period is over.

use std::path::Path;
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::apps::v1::Deployment;
use bosun_api_client::k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use bosun_api_client::{ApiClient, ListParams};
use bosun_tests::component::Component;
use bosun_tests::containerd::{EVICTION_HARD, PrivateContainerd, cri};
use bosun_tests::history::History;
use bosun_tests::kube::{Apiserver, Kubectl, kubectl_120, kubectl_132};
use bosun_tests::objects::is_ready;
use bosun_tests::registry::LocalRegistry;
use bosun_tests::{Cluster, Kind, nodes_report, wait_for, wait_for_explained};

const WAIT: Duration = Duration::from_secs(90);
const NS: &str = "default";

/// Dropped in field order: the kubelet and the control plane stop before the containerd
/// under them is torn down (a kubelet still running would start sandboxes again).
struct Real {
    kubelet: Component,
    _others: Vec<Component>,
    api: Apiserver,
    cluster: Cluster,
    client: ApiClient,
    kubectl: Kubectl,
    ctr: PrivateContainerd,
}

/// The whole system over a private containerd; `None` (reason printed) when containerd or
/// kubectl cannot run here.
async fn real(dir: &Path) -> Option<Real> {
    let ctr = PrivateContainerd::start()?;
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let kubectl = kubectl_132(&api, dir)?;
    let one = ["--leader-elect=false"];
    let others = vec![
        Component::start(dir, "cm", "controller-manager", &api.url, &one, &[]),
        Component::start(dir, "scheduler", "scheduler", &api.url, &one, &[]),
    ];
    let pod_cidr = ctr.settings.pod_cidr.to_string();
    let logs = dir.join("pod-logs").display().to_string();
    let root = dir.join("kubelet").display().to_string();
    let kubelet = Component::start(
        dir,
        "kubelet",
        "kubelet",
        &api.url,
        &[
            "--runtime=cri",
            "--container-runtime-endpoint",
            &ctr.endpoint,
            "--node-name=e2e",
            "--pod-cidr",
            &pod_cidr,
            "--pod-logs-dir",
            &logs,
            "--root-dir",
            &root,
            "--cgroup-root",
            &ctr.cgroup_root,
            "--node-ip=127.0.0.1",
            "--eviction-hard",
            EVICTION_HARD,
        ],
        &[("BOSUN_LOG", "info,bosun_kubelet=debug")],
    );
    for c in others.iter().chain([&kubelet]) {
        c.wait_listening(WAIT).await;
    }
    let k = kubectl.clone();
    wait_for_explained(
        "node e2e Ready",
        WAIT,
        || {
            let k = k.clone();
            async move {
                k.run(&[
                    "get",
                    "node",
                    "e2e",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ])
                .stdout
                    == "True"
            }
        },
        || nodes_report(&client),
    )
    .await;
    Some(Real {
        kubelet,
        _others: others,
        api,
        cluster,
        client,
        kubectl,
        ctr,
    })
}

/// busybox httpd serving `hello <pod name> <version>` on 8080, ready once it answers; sh as
/// PID 1 exits on SIGTERM, so a stop takes no grace period.
fn web_yaml(replicas: u32, version: &str, ready_after_secs: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  strategy:
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: busybox
        imagePullPolicy: IfNotPresent
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: VERSION
          value: "{version}"
        command: [sh, -c]
        args:
        - |
          trap 'exit 0' TERM
          mkdir -p /www && echo "hello $(POD_NAME) $VERSION" > /www/index.html
          echo "serving $VERSION"
          sleep {ready_after_secs}
          httpd -f -p 8080 -h /www &
          wait
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
"#
    )
}

async fn pods(client: &ApiClient, selector: &str) -> Vec<Pod> {
    client
        .list::<Pod>(
            NS,
            &ListParams {
                label_selector: selector.into(),
                ..Default::default()
            },
        )
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// The body served at `http://<ip>:8080/`, if it answers within a second.
async fn get(ip: &str) -> Option<String> {
    let url = format!("http://{ip}:8080/");
    tokio::time::timeout(Duration::from_secs(2), bosun_tests::http_get(&url))
        .await
        .ok()
        .filter(|(code, _)| *code == 200)
        .map(|(_, body)| body)
}

/// Waits for exactly `n` Running, Ready pods of `web`, each answering with its own name and
/// `version`; returns them.
async fn web_running(client: &ApiClient, n: usize, version: &str) -> Vec<Pod> {
    eventually(
        client,
        &format!("{n} web pods of {version} answering"),
        || async {
            let ps = pods(client, "app=web").await;
            if ps.len() != n {
                return None;
            }
            for p in &ps {
                if p.metadata.deletion_timestamp.is_some() || phase(p) != "Running" || !is_ready(p)
                {
                    return None;
                }
                let body = get(&pod_ip(p)?).await?;
                if body.trim() != format!("hello {} {version}", name(p)) {
                    return None;
                }
            }
            Some(ps)
        },
    )
    .await
}

/// Polls `f` until it gives a value, for at most [`WAIT`]; a timeout names the nodes'
/// conditions and taints.
async fn eventually<T, F, Fut>(client: &ApiClient, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "timed out after {WAIT:?} waiting for {what}; {}",
                nodes_report(client).await
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn containers(ctr: &PrivateContainerd, running_only: bool) -> Vec<cri::Container> {
    let mut c = ctr.client();
    let filter = running_only.then(|| cri::ContainerFilter {
        state: Some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        }),
        ..Default::default()
    });
    c.runtime
        .list_containers(cri::ListContainersRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .containers
}

async fn sandboxes(ctr: &PrivateContainerd) -> Vec<cri::PodSandbox> {
    let mut c = ctr.client();
    c.runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
}

fn status_of<'a>(p: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

/// `iptables-save` output (every table).
fn iptables_save() -> String {
    std::process::Command::new("iptables-save")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The comment of the private containerd's masquerade rule, as iptables-save quotes it.
fn masquerade_comment(ctr: &PrivateContainerd) -> String {
    format!(
        "--comment \"{}\"",
        bosun_up::containerd::masquerade_comment(&ctr.settings.network)
    )
}

/// What the pods of a deleted workload may leave on the host, each as a line; empty when
/// nothing is left.
fn host_leftovers(ctr: &PrivateContainerd) -> Vec<String> {
    let mut left = Vec::new();
    let alloc = Path::new("/var/lib/cni/networks").join(&ctr.settings.network);
    if let Ok(rd) = std::fs::read_dir(&alloc) {
        for e in rd.flatten() {
            let f = e.file_name().to_string_lossy().into_owned();
            // host-local's bookkeeping files stay; an address file is an allocation.
            if f.parse::<std::net::IpAddr>().is_ok() {
                left.push(format!("CNI allocation {}", alloc.join(f).display()));
            }
        }
    }
    for ctrl in ["cpu", "memory", "pids"] {
        let root = Path::new("/sys/fs/cgroup")
            .join(ctrl)
            .join(ctr.cgroup_root.trim_start_matches('/'));
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with("pod") {
                        left.push(format!("cgroup {}", e.path().display()));
                    }
                    stack.push(e.path());
                }
            }
        }
    }
    let save = iptables_save();
    let prefix = ctr.settings.pod_cidr.to_string();
    let net = prefix.split('.').take(2).collect::<Vec<_>>().join(".");
    // The network's masquerade rule is containerd's (until it stops), not a pod's.
    let masquerade = masquerade_comment(ctr);
    for l in save.lines() {
        if l.starts_with("-A") && l.contains(&format!(" {net}.")) && !l.contains(&masquerade) {
            left.push(format!("iptables rule {l}"));
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_scales_rolls_and_goes_away_with_real_containers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut r) = real(dir.path()).await else {
        return;
    };
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, web_yaml(3, "v1", 0)).unwrap();
    r.kubectl
        .run(&["create", "-f", file.to_str().unwrap()])
        .ok();
    let first = web_running(&r.client, 3, "v1").await;
    let ips: Vec<String> = first.iter().filter_map(pod_ip).collect();
    assert_eq!(ips.len(), 3);
    let unique: std::collections::HashSet<&String> = ips.iter().collect();
    assert_eq!(unique.len(), 3, "each pod has its own address: {ips:?}");
    // Their way out of the range: the network's one masquerade rule (no chain per pod).
    let masquerade = masquerade_comment(&r.ctr);
    let save = iptables_save();
    assert!(
        save.lines().any(|l| l.starts_with("-A POSTROUTING")
            && l.contains(&masquerade)
            && l.ends_with("-j MASQUERADE")),
        "no masquerade rule for {}:\n{save}",
        r.ctr.settings.pod_cidr
    );
    let wide = r
        .kubectl
        .run(&["get", "pods", "-o", "wide"])
        .ok()
        .to_string();
    for ip in &ips {
        assert!(wide.contains(ip.as_str()), "{wide}");
    }
    assert!(wide.contains("e2e"), "NODE filled: {wide}");

    // Logs and exec, through the apiserver and the kubelet, with both kubectl versions.
    let p0 = name(&first[0]);
    let logs = r.kubectl.run(&["logs", &p0]).ok().to_string();
    assert!(logs.contains("serving v1"), "{logs}");
    let out = r
        .kubectl
        .run(&["exec", &p0, "--", "cat", "/www/index.html"])
        .ok()
        .to_string();
    assert_eq!(out.trim(), format!("hello {p0} v1"));
    let code = r.kubectl.run(&["exec", &p0, "--", "sh", "-c", "exit 3"]);
    assert_eq!(code.code, 3, "{}", code.stderr);
    let shell = r
        .kubectl
        .run_with(&["exec", "-i", &p0, "--", "sh"], "echo $((6 * 7))\nexit\n");
    assert_eq!(shell.ok().trim(), "42");
    if let Some(k120) = kubectl_120(&r.api, dir.path()) {
        let out = k120
            .run(&["exec", &p0, "--", "cat", "/www/index.html"])
            .ok()
            .to_string();
        assert_eq!(out.trim(), format!("hello {p0} v1"));
        let logs = k120.run(&["logs", &p0]).ok().to_string();
        assert!(logs.contains("serving v1"), "{logs}");
    }

    // Scale up, then down: the removed pods' processes stop.
    r.kubectl
        .run(&["scale", "deployment/web", "--replicas=5"])
        .ok();
    let five = web_running(&r.client, 5, "v1").await;
    r.kubectl
        .run(&["scale", "deployment/web", "--replicas=2"])
        .ok();
    let two = web_running(&r.client, 2, "v1").await;
    let kept: Vec<String> = two.iter().filter_map(pod_ip).collect();
    for p in &five {
        let ip = pod_ip(p).unwrap();
        if !kept.contains(&ip) {
            assert!(
                get(&ip).await.is_none(),
                "{} still answers on {ip}",
                name(p)
            );
        }
    }
    assert_eq!(
        containers(&r.ctr, true).await.len(),
        2,
        "two containers run"
    );

    // A template change rolls: new pods become available only once ready (3 s after they
    // start), and never fewer than 2 are available, across a store leader killed mid-way.
    let history = History::<Deployment>::record(&r.client, NS).await;
    let pod_history = History::<Pod>::record(&r.client, NS).await;
    std::fs::write(&file, web_yaml(2, "v2", 3)).unwrap();
    r.kubectl.run(&["apply", "-f", file.to_str().unwrap()]).ok();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let leader = r.cluster.wait_leader(WAIT).await;
    r.cluster.members[leader].kill9();
    let status = r
        .kubectl
        .run(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    r.cluster.members[leader].spawn();
    // A rollout that does not finish says why it may not have (a node under pressure and
    // tainted keeps new pods Pending).
    assert!(
        status.code == 0 && status.stdout.contains("successfully rolled out"),
        "rollout status: {}{}; {}",
        status.stdout,
        status.stderr,
        nodes_report(&r.client).await
    );
    web_running(&r.client, 2, "v2").await;
    // Readiness gated it: new pods ran for a while before they were Ready.
    let version_of = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| {
                c.env
                    .iter()
                    .flatten()
                    .find(|e| e.name == "VERSION")
                    .and_then(|e| e.value.clone())
            })
    };
    let pod_states = pod_history.stop();
    let running_unready = pod_states
        .iter()
        .flat_map(|s| s.values())
        .any(|p| version_of(p).as_deref() == Some("v2") && phase(p) == "Running" && !is_ready(p));
    assert!(
        running_unready,
        "no v2 pod was seen Running and not yet Ready"
    );
    let states = history.stop();
    for s in &states {
        if let Some(d) = s.get("web") {
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            assert!(
                available >= 2,
                "fewer than 2 available during the rollout: {:?}",
                d.status
            );
        }
    }

    // Deleted: nothing of it is left on the host.
    r.kubectl.run(&["delete", "deployment", "web"]).ok();
    wait_for("web pods gone", WAIT, || async {
        pods(&r.client, "app=web").await.is_empty()
    })
    .await;
    wait_for("containers and sandboxes removed", WAIT, || async {
        containers(&r.ctr, false).await.is_empty() && sandboxes(&r.ctr).await.is_empty()
    })
    .await;
    let left = host_leftovers(&r.ctr);
    assert!(left.is_empty(), "left on the host: {left:#?}");
    r.kubelet.terminate(Duration::from_secs(10));
    // The masquerade rule goes with containerd.
    drop(r);
    let save = iptables_save();
    assert!(!save.contains(&masquerade), "masquerade rule left:\n{save}");
}

fn pod_yaml(name: &str, image: &str, script: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{test: e2e}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {image}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "{script}"]
{extra}"#
    )
}

async fn pod(client: &ApiClient, name: &str) -> Option<Pod> {
    client.get::<Pod>(NS, name).await.ok()
}

/// The PID (on the host) of a container's main process, from CRI's verbose status.
async fn container_pid(ctr: &PrivateContainerd, id: &str) -> u32 {
    let mut c = ctr.client();
    let st = c
        .runtime
        .container_status(cri::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(st.info.get("info").unwrap()).unwrap();
    info["pid"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_restart_probes_kill_bad_images_fail_and_a_restarted_kubelet_adopts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut r) = real(dir.path()).await else {
        return;
    };
    let apply = |k: &Kubectl, name: &str, yaml: String| {
        let f = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&f, yaml).unwrap();
        k.run(&["create", "-f", f.to_str().unwrap()]).ok();
    };
    apply(
        &r.kubectl,
        "crash",
        pod_yaml("crash", "busybox", "echo started; exec sleep 3600", ""),
    );
    apply(
        &r.kubectl,
        "live",
        pod_yaml(
            "live",
            "busybox",
            "touch /tmp/healthy; sleep 3; rm /tmp/healthy; exec sleep 3600",
            "    livenessProbe:\n      exec: {command: [cat, /tmp/healthy]}\n      periodSeconds: 1\n      failureThreshold: 1\n",
        ),
    );
    apply(
        &r.kubectl,
        "noimage",
        pod_yaml("noimage", "127.0.0.1:1/nope:1", "true", ""),
    );
    apply(
        &r.kubectl,
        "steady",
        pod_yaml("steady", "busybox", "exec sleep 3600", ""),
    );

    // Kill the crash pod's process from the host: the kubelet restarts it.
    wait_for_explained(
        "crash running",
        WAIT,
        || async {
            pod(&r.client, "crash")
                .await
                .is_some_and(|p| phase(&p) == "Running")
        },
        || nodes_report(&r.client),
    )
    .await;
    let p = pod(&r.client, "crash").await.unwrap();
    let id = status_of(&p, "main").unwrap().container_id.clone().unwrap();
    let pid = container_pid(&r.ctr, id.trim_start_matches("containerd://")).await;
    let kill = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for("crash restarted once", WAIT, || async {
        pod(&r.client, "crash").await.is_some_and(|p| {
            status_of(&p, "main").is_some_and(|c| {
                c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some())
            })
        })
    })
    .await;
    let p = pod(&r.client, "crash").await.unwrap();
    let last = status_of(&p, "main").unwrap().last_state.clone().unwrap();
    let term = last.terminated.unwrap();
    assert_eq!(term.exit_code, 137, "{term:?}");
    let prev = r
        .kubectl
        .run(&["logs", "crash", "--previous"])
        .ok()
        .to_string();
    assert_eq!(prev.trim(), "started");

    // The liveness probe fails after 3 s: the container is restarted.
    wait_for("live restarted by its liveness probe", WAIT, || async {
        pod(&r.client, "live")
            .await
            .is_some_and(|p| status_of(&p, "main").is_some_and(|c| c.restart_count >= 1))
    })
    .await;
    let events = r
        .client
        .list::<Event>(NS, &ListParams::default())
        .await
        .unwrap()
        .items;
    let said = |reason: &str, text: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(text))
        })
    };
    assert!(said("Unhealthy", "Liveness probe failed"), "{events:#?}");
    assert!(
        said(
            "Killing",
            "Container main failed liveness probe, will be restarted"
        ),
        "{events:#?}"
    );

    // The image that cannot be pulled: ErrImagePull, then ImagePullBackOff.
    let backoff = eventually(&r.client, "ImagePullBackOff", || async {
        let p = pod(&r.client, "noimage").await?;
        let w = status_of(&p, "main")?.state.as_ref()?.waiting.clone()?;
        (w.reason.as_deref() == Some("ImagePullBackOff")).then_some(w)
    })
    .await;
    assert_eq!(
        backoff.message.as_deref(),
        Some("Back-off pulling image \"127.0.0.1:1/nope:1\""),
        "{backoff:?}"
    );
    let events = r
        .client
        .list::<Event>(NS, &ListParams::default())
        .await
        .unwrap()
        .items;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Failed")
            && e.message.as_deref() == Some("Error: ErrImagePull")),
        "{events:#?}"
    );
    let p = pod(&r.client, "noimage").await.unwrap();
    assert_eq!(phase(&p), "Pending");

    // A real pull: the image from a registry on loopback, imagePullPolicy Always.
    if let Some(registry) = LocalRegistry::start(&dir.path().join("registry")).await {
        let image = registry.push(
            &r.ctr.settings.dir.join("images/busybox"),
            "e2e/busybox",
            "1",
        );
        apply(
            &r.kubectl,
            "pulled",
            pod_yaml("pulled", &image, "exec sleep 3600", "").replace("IfNotPresent", "Always"),
        );
        wait_for_explained(
            "pulled running",
            WAIT,
            || async {
                pod(&r.client, "pulled")
                    .await
                    .is_some_and(|p| phase(&p) == "Running")
            },
            || nodes_report(&r.client),
        )
        .await;
        let events = r
            .client
            .list::<Event>(NS, &ListParams::default())
            .await
            .unwrap()
            .items;
        let pulled = format!("Successfully pulled image \"{image}\"");
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some("Pulled")
                && e.message.as_deref().is_some_and(|m| m.starts_with(&pulled))),
            "{events:#?}"
        );
    }

    // kill -9 the kubelet and start it again: the running containers are adopted.
    wait_for_explained(
        "steady running",
        WAIT,
        || async {
            pod(&r.client, "steady")
                .await
                .is_some_and(|p| phase(&p) == "Running")
        },
        || nodes_report(&r.client),
    )
    .await;
    let before = pod(&r.client, "steady").await.unwrap();
    let before = status_of(&before, "main").unwrap().clone();
    r.kubelet.kill9();
    r.kubelet.spawn();
    r.kubelet.wait_listening(WAIT).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = pod(&r.client, "steady").await.unwrap();
    let after = status_of(&after, "main").unwrap().clone();
    assert_eq!(
        after.container_id, before.container_id,
        "adopted, not recreated"
    );
    assert_eq!(after.restart_count, before.restart_count);
    assert!(after.state.as_ref().is_some_and(|s| s.running.is_some()));
    let running = containers(&r.ctr, true).await;
    assert!(
        running
            .iter()
            .any(|c| before.container_id.as_deref() == Some(&format!("containerd://{}", c.id))),
        "the same container still runs"
    );

    // Everything deleted: nothing left.
    r.kubectl
        .run(&["delete", "pods", "--all", "--wait=true"])
        .ok();
    wait_for("containers and sandboxes removed", WAIT, || async {
        containers(&r.ctr, false).await.is_empty() && sandboxes(&r.ctr).await.is_empty()
    })
    .await;
    let left = host_leftovers(&r.ctr);
    assert!(left.is_empty(), "left on the host: {left:#?}");
}
