//! The kubelet over containerd (`bosun kubelet --runtime cri`) with a real store, apiserver
//! and scheduler: a pod runs busybox's httpd and answers HTTP from the host on its pod IP; a
//! container that exits is restarted (restartCount 1, its last run in lastState); a kubelet
//! killed with -9 and started again adopts the running container (same containerID, no
//! restart); an image that does not exist waits in ErrImagePull then ImagePullBackOff; a
//! deleted pod's containers and sandbox are removed from containerd; ConfigMaps and Secrets
//! reach a pod as environment variables and files (a secret's on a tmpfs; a changed
//! ConfigMap reaches the files of a running pod), and a missing one gives Kubernetes'
//! CreateContainerConfigError or FailedMount until it exists.
//!
//! Each test runs its own containerd ([`PrivateContainerd`]: images imported, its own CNI
//! network, pod range and cgroup root), skipped with the reason printed only where
//! containerd cannot run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bosun_api_client::k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod, Secret};
use bosun_api_client::{ApiClient, ListParams};
use bosun_kubelet::cri::CriClient;
use bosun_kubelet::cri::convert::LABEL_POD_UID;
use bosun_tests::component::{Component, metric_sum};
use bosun_tests::containerd::{EVICTION_HARD, PrivateContainerd};
use bosun_tests::kube::Apiserver;
use bosun_tests::{Cluster, Kind, wait_for};
use k8s_cri::v1::{
    ContainerFilter, ListContainersRequest, ListPodSandboxRequest, PodSandboxFilter,
    RemovePodSandboxRequest, StopPodSandboxRequest,
};

const WAIT: Duration = Duration::from_secs(60);
const NS: &str = "default";
const NODE: &str = "cri-node";

struct Setup {
    _cluster: Cluster,
    _api: Apiserver,
    _scheduler: Component,
    kubelet: Component,
    client: ApiClient,
    cri: CriClient,
    cgroup_root: String,
    /// The kubelet's --root-dir: the pods' volume mounts under it go with the test.
    root: PathBuf,
    /// Pods made, by uid, to clean up whatever a failure left.
    uids: Vec<String>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Stop the kubelet first, then remove every sandbox the test's pods left.
        self.kubelet.kill9();
        let uids = std::mem::take(&mut self.uids);
        let cri = self.cri.clone();
        let cleanup = async move {
            let mut rt = cri.runtime.clone();
            for uid in uids {
                let filter = PodSandboxFilter {
                    label_selector: [(LABEL_POD_UID.to_string(), uid)].into(),
                    ..Default::default()
                };
                let Ok(l) = rt
                    .list_pod_sandbox(ListPodSandboxRequest {
                        filter: Some(filter),
                    })
                    .await
                else {
                    continue;
                };
                for s in l.into_inner().items {
                    let id = s.id;
                    let _ = rt
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = rt
                        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                }
            }
        };
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(cleanup);
            }
        })
        .join();
        // The pods' cgroup parents (containerd removes the containers' own).
        remove_cgroup_tree(&self.cgroup_root);
        // The tmpfs volumes (secret, projected, memory emptyDir) of pods the killed kubelet
        // did not remove.
        for pod in std::fs::read_dir(self.root.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for plugin in [
                "kubernetes.io~secret",
                "kubernetes.io~projected",
                "kubernetes.io~empty-dir",
            ] {
                bosun_kubelet::cri::host::unmount_children(
                    &pod.path().join("volumes").join(plugin),
                );
            }
        }
    }
}

/// Removes `/sys/fs/cgroup[/<hierarchy>]/<root>` and what is below, deepest first.
fn remove_cgroup_tree(root: &str) {
    fn rm(d: &Path) {
        if let Ok(entries) = std::fs::read_dir(d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(d);
    }
    let base = Path::new("/sys/fs/cgroup");
    let rel = root.trim_start_matches('/');
    rm(&base.join(rel));
    if let Ok(hs) = std::fs::read_dir(base) {
        for h in hs.flatten() {
            rm(&h.path().join(rel));
        }
    }
}

async fn setup(dir: &Path, ctr: &PrivateContainerd) -> Setup {
    let endpoint = ctr.endpoint.as_str();
    let cluster = Cluster::start(Kind::Bosun, dir, 1, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    let scheduler = Component::start(
        dir,
        "scheduler",
        "scheduler",
        &api.url,
        &["--leader-elect=false"],
        &[],
    );
    let cgroup_root = ctr.cgroup_root.clone();
    let root = dir.join("root");
    let logs = dir.join("logs");
    let args: Vec<String> = vec![
        "--runtime=cri".into(),
        format!("--container-runtime-endpoint={endpoint}"),
        format!("--node-name={NODE}"),
        format!("--root-dir={}", root.display()),
        format!("--pod-logs-dir={}", logs.display()),
        format!("--cgroup-root={cgroup_root}"),
        format!("--pod-cidr={}", ctr.settings.pod_cidr),
        "--node-status-update-frequency=1s".into(),
        "--container-log-max-size=64Ki".into(),
        "--container-log-max-files=3".into(),
        "--sync-frequency=2s".into(),
        format!("--eviction-hard={EVICTION_HARD}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("BOSUN_LOG", "info,bosun_kubelet=debug")];
    let kubelet = Component::start(dir, "kubelet", "kubelet", &api.url, &args, &env);
    scheduler.wait_listening(WAIT).await;
    kubelet.wait_listening(WAIT).await;
    let cri = CriClient::connect(endpoint, Duration::from_secs(30)).unwrap();
    Setup {
        _cluster: cluster,
        _api: api,
        _scheduler: scheduler,
        kubelet,
        client,
        cri,
        cgroup_root,
        root,
        uids: Vec::new(),
    }
}

async fn create(s: &mut Setup, yaml: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(yaml).unwrap();
    let made: Pod = s.client.create(NS, &pod).await.unwrap();
    s.uids.push(made.metadata.uid.clone().unwrap());
    made
}

fn pod_json(name: &str, image: &str, policy: &str, command: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"terminationGracePeriodSeconds": 2, "restartPolicy": policy,
                 "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                                 "command": command}]},
    })
}

async fn get(client: &ApiClient, name: &str) -> Option<Pod> {
    client.get::<Pod>(NS, name).await.ok()
}

fn main_status(p: &Pod) -> Option<&bosun_api_client::k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

fn waiting_reason(p: &Pod) -> Option<String> {
    main_status(p)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

async fn cri_counts(cri: &CriClient, uid: &str) -> (usize, usize) {
    let mut rt = cri.runtime.clone();
    let sel: std::collections::HashMap<String, String> =
        [(LABEL_POD_UID.to_string(), uid.to_string())].into();
    let sandboxes = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: sel.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    let containers = rt
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                label_selector: sel,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
        .len();
    (sandboxes, containers)
}

/// An HTTP/1.0 GET of `url`'s `/`: the status code and the body (`None`: no answer).
async fn http_get(url: &str) -> Option<(u16, String)> {
    http_get_path(url, "/").await
}

/// An HTTP/1.0 GET of `url` + `path`: the status code and the body.
async fn http_get_path(url: &str, path: &str) -> Option<(u16, String)> {
    let fut = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rest = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(rest).await.ok()?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {rest}\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|b| b.1.to_string())
            .unwrap_or_default();
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_restart_are_adopted_and_removed() {
    let Some(ctr) = PrivateContainerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = setup(tmp.path(), &ctr).await;
    let client = s.client.clone();

    // An httpd answers from the host on the pod's address.
    // Its init container writes the page into an emptyDir, with the pod's name from the
    // downward API expanded into its command.
    let mut web = pod_json(
        "web",
        "busybox",
        "Always",
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
    );
    web["spec"]["volumes"] = serde_json::json!([{"name": "www", "emptyDir": {}},
        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}]);
    web["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([{"name": "www", "mountPath": "/www"}, {"name": "mem", "mountPath": "/mem"}]);
    web["spec"]["initContainers"] = serde_json::json!([{
        "name": "init", "image": "busybox", "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", "echo hello from $(POD_NAME) > /www/index.html; cat /etc/hosts > /www/hosts"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": "www", "mountPath": "/www"}]}]);
    let web = create(&mut s, web).await;
    let web_uid = web.metadata.uid.clone().unwrap();
    // A container that exits is restarted.
    create(
        &mut s,
        pod_json(
            "crash",
            "busybox",
            "Always",
            &["sh", "-c", "sleep 1; exit 3"],
        ),
    )
    .await;
    // An image that does not exist cannot be pulled.
    create(
        &mut s,
        pod_json(
            "noimage",
            "bosun.local/does-not-exist:v1",
            "Always",
            &["true"],
        ),
    )
    .await;
    // pullPolicy Never and no such image: never pulled.
    let mut never = pod_json("neverpull", "bosun.local/absent:v1", "Always", &["true"]);
    never["spec"]["containers"][0]["imagePullPolicy"] = "Never".into();
    create(&mut s, never).await;
    // restartPolicy Never, exits 0: the pod Succeeds.
    create(
        &mut s,
        pod_json("once", "busybox", "Never", &["sh", "-c", "exit 0"]),
    )
    .await;

    let deadline = std::time::Instant::now() + WAIT;
    let ip = loop {
        let st = get(&client, "web")
            .await
            .and_then(|p| p.status)
            .unwrap_or_default();
        if st.phase.as_deref() == Some("Running")
            && let Some(i) = st.pod_ip.clone().filter(|i| !i.is_empty())
        {
            break i;
        }
        if std::time::Instant::now() > deadline {
            let log = s.kubelet.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "web Running with a pod IP: {st:?}\nkubelet log (last lines first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let url = format!("http://{ip}:8080");
    wait_for("httpd answering on the pod IP", WAIT, || async {
        http_get(&url).await.is_some()
    })
    .await;
    assert_eq!(
        http_get(&url).await,
        Some((200, "hello from web\n".to_string())),
        "the page the init container wrote"
    );
    let (code, hosts) = http_get_path(&url, "/hosts").await.unwrap();
    assert_eq!(code, 200);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file.")
            && hosts.contains(&format!("{ip}\tweb\n")),
        "{hosts}"
    );
    let web = get(&client, "web").await.unwrap();
    let cs = main_status(&web).unwrap().clone();
    let container_id = cs.container_id.clone().unwrap();
    assert!(container_id.starts_with("containerd://"), "{container_id}");
    assert_eq!(cs.restart_count, 0);
    assert!(cs.ready && cs.image_id.contains("sha256:"), "{cs:?}");
    // A Memory emptyDir is a tmpfs of its size limit.
    let mem = tmp
        .path()
        .join("root/pods")
        .join(&web_uid)
        .join("volumes/kubernetes.io~empty-dir/mem");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(mem.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted", mem.display()));
    assert!(
        line.starts_with("tmpfs ") && line.contains("size=8192k"),
        "{line}"
    );
    let node = web.spec.as_ref().unwrap().node_name.clone();
    assert_eq!(node.as_deref(), Some(NODE), "bound by the scheduler");

    // Restarted at once after its first exit; after its second, it waits 10 s in
    // CrashLoopBackOff with restartCount 1 and its last run in lastState.
    wait_for(
        "crash in CrashLoopBackOff after one restart",
        WAIT,
        || async {
            let Some(p) = get(&client, "crash").await else {
                return false;
            };
            let Some(c) = main_status(&p) else {
                return false;
            };
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            c.restart_count == 1
                && waiting.and_then(|w| w.reason.as_deref()) == Some("CrashLoopBackOff")
                && waiting.and_then(|w| w.message.as_deref()).is_some_and(|m| {
                    m.starts_with(
                        "back-off 10s restarting failed container=main pod=crash_default(",
                    )
                })
                && c.last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .is_some_and(|t| t.exit_code == 3 && t.reason.as_deref() == Some("Error"))
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        },
    )
    .await;
    // ErrImagePull shows for one sync (the status write wakes the next, which finds the
    // back-off): its event stays; the status then waits in ImagePullBackOff.
    wait_for("neverpull in ErrImageNeverPull", WAIT, || async {
        get(&client, "neverpull")
            .await
            .as_ref()
            .and_then(waiting_reason)
            .as_deref()
            == Some("ErrImageNeverPull")
    })
    .await;
    wait_for("once Succeeded, its container Completed", WAIT, || async {
        let Some(p) = get(&client, "once").await else {
            return false;
        };
        let done = main_status(&p)
            .and_then(|c| c.state.as_ref()?.terminated.clone())
            .is_some_and(|t| t.exit_code == 0 && t.reason.as_deref() == Some("Completed"));
        done && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
    })
    .await;
    wait_for("noimage in ImagePullBackOff", WAIT, || async {
        get(&client, "noimage")
            .await
            .as_ref()
            .and_then(waiting_reason)
            .as_deref()
            == Some("ImagePullBackOff")
    })
    .await;
    let events: Vec<Event> = client
        .list::<Event>(NS, &ListParams::default())
        .await
        .unwrap()
        .items;
    let has = |reason: &str, msg: &str| {
        events.iter().any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(msg))
        })
    };
    assert!(has("Started", "Started container main"), "Started event");
    assert!(has("Created", "Created container: main"), "Created event");
    assert!(
        has(
            "Failed",
            "Failed to pull image \"bosun.local/does-not-exist:v1\""
        ),
        "Failed pull event"
    );
    assert!(has("Failed", "Error: ErrImagePull"), "ErrImagePull event");
    assert!(
        has(
            "ErrImageNeverPull",
            "Container image \"bosun.local/absent:v1\" is not present with pull policy of Never"
        ),
        "ErrImageNeverPull event"
    );
    assert!(
        has(
            "BackOff",
            "Back-off pulling image \"bosun.local/does-not-exist:v1\""
        ),
        "BackOff pull event"
    );
    assert!(
        has(
            "BackOff",
            "Back-off restarting failed container main in pod crash_default("
        ),
        "BackOff restart event"
    );

    // kill -9 and start again: the running container is adopted, not restarted.
    s.kubelet.kill9();
    s.kubelet.spawn();
    s.kubelet.wait_listening(WAIT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let web = get(&client, "web").await.unwrap();
    let after = main_status(&web).unwrap();
    assert_eq!(after.container_id.as_deref(), Some(container_id.as_str()));
    assert_eq!(after.restart_count, 0);
    assert_eq!(
        http_get(&url).await.map(|r| r.0),
        Some(200),
        "still answering"
    );
    // One sandbox; the init container's run and the server.
    assert_eq!(cri_counts(&s.cri, &web_uid).await, (1, 2));

    // The node as the host and the runtime describe it.
    let node: Node = client.get("", NODE).await.unwrap();
    let st = node.status.unwrap();
    let info = st.node_info.unwrap();
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{info:?}"
    );
    assert!(!info.os_image.is_empty() && info.os_image != "Bosun hollow node");
    let cpus = std::thread::available_parallelism()
        .unwrap()
        .get()
        .to_string();
    assert_eq!(st.capacity.as_ref().unwrap()["cpu"].0, cpus);
    assert!(st.allocatable.as_ref().unwrap()["memory"].0.ends_with("Ki"));
    let conds = st.conditions.unwrap();
    let cond = |t: &str| {
        conds
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    assert_eq!(cond("Ready").as_deref(), Some("True"));
    assert_eq!(cond("MemoryPressure").as_deref(), Some("False"));

    // Deleted: the pod goes, and its container and sandbox with it.
    client.delete::<Pod>(NS, "web", None).await.unwrap();
    wait_for("web gone from the apiserver", WAIT, || async {
        get(&client, "web").await.is_none()
    })
    .await;
    assert_eq!(cri_counts(&s.cri, &web_uid).await, (0, 0));
    assert!(
        !tmp.path().join("root/pods").join(&web_uid).exists(),
        "the pod's directory is removed"
    );
    let logs = tmp.path().join("logs").join(format!("{NS}_web_{web_uid}"));
    assert!(!logs.exists(), "the pod's log directory is removed");
    let cgroup = format!(
        "{}/kubepods/besteffort/pod{web_uid}",
        s.cgroup_root.trim_start_matches('/')
    );
    for h in ["cpu", "memory", "pids", ""] {
        let d = Path::new("/sys/fs/cgroup").join(h).join(&cgroup);
        assert!(!d.exists(), "{} is removed", d.display());
    }
}

/// A pod on the host's network runs (no sandbox hostname: runc refuses one without a
/// private UTS namespace), with the host's address; its start is written and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pod_runs_and_its_start_is_written_once() {
    let Some(ctr) = PrivateContainerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = setup(tmp.path(), &ctr).await;
    let client = s.client.clone();
    let mut p = pod_json("hostnet", "busybox", "Always", &["sleep", "3600"]);
    p["spec"]["hostNetwork"] = serde_json::json!(true);
    create(&mut s, p).await;
    wait_for("the hostNetwork pod Running", WAIT, || async {
        get(&client, "hostnet")
            .await
            .is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
    })
    .await;
    let st = get(&client, "hostnet").await.unwrap().status.unwrap();
    assert_eq!(st.pod_ip, st.host_ip, "the host's address");
    // The watch brings the kubelet's own write back: nothing more to write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = s.kubelet.metrics().await.unwrap();
    assert_eq!(
        metric_sum(&m, "kubelet_pod_start_duration_seconds_count"),
        1.0,
        "{m}"
    );
    assert!(
        metric_sum(
            &m,
            "kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"}"
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "kubelet_runtime_operations_errors_total{operation_type=\"run_podsandbox\"}"
        ),
        0.0,
        "{m}"
    );
}

/// The pod's events with this reason: their messages.
async fn event_messages(client: &ApiClient, pod: &str, reason: &str) -> Vec<String> {
    let sel = format!("involvedObject.name={pod},reason={reason}");
    client
        .list::<Event>(
            NS,
            &ListParams {
                field_selector: sel,
                ..Default::default()
            },
        )
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.message).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_and_secrets_reach_a_pod_as_env_and_files() {
    let Some(ctr) = PrivateContainerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = setup(tmp.path(), &ctr).await;
    let client = s.client.clone();
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "app-config"},
        "data": {"greeting": "hello", "app.conf": "level=3\n"}}))
    .unwrap();
    client.create(NS, &cm).await.unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}))
    .unwrap();
    let stored: Secret = client.create(NS, &secret).await.unwrap();
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));

    // Everything a pod can read from them, printed to its log.
    let script = "echo \"env: $GREETING $PASSWORD $CFG_greeting\"; \
        echo \"conf: $(cat /etc/config/conf/app.conf)\"; \
        echo \"secret: $(cat /etc/creds/password) $(stat -L -c %a /etc/creds/password)\"; \
        echo \"projected: $(cat /etc/proj/greeting) $(cat /etc/proj/name)\"; \
        touch /etc/config/x 2>/dev/null || echo 'config: read-only'; sleep 3600";
    let mut p = pod_json("reader", "busybox", "Always", &["sh", "-c", script]);
    p["spec"]["hostNetwork"] = serde_json::json!(true);
    p["spec"]["containers"][0]["env"] = serde_json::json!([
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]);
    p["spec"]["containers"][0]["envFrom"] =
        serde_json::json!([{"configMapRef": {"name": "app-config"}, "prefix": "CFG_"}]);
    p["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([
        {"name": "config", "mountPath": "/etc/config"},
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "proj", "mountPath": "/etc/proj"}]);
    p["spec"]["volumes"] = serde_json::json!([
        {"name": "config", "configMap": {"name": "app-config",
            "items": [{"key": "app.conf", "path": "conf/app.conf"}]}},
        {"name": "creds", "secret": {"secretName": "db", "defaultMode": 0o400}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "app-config", "items": [{"key": "greeting", "path": "greeting"}]}},
            {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}}]);
    let made = create(&mut s, p).await;
    let uid = made.metadata.uid.unwrap();
    let log = tmp
        .path()
        .join(format!("logs/{NS}_reader_{uid}/main/0.log"));
    let want = [
        "env: hello s3cret hello",
        "conf: level=3",
        "secret: s3cret 400",
        "projected: hello reader",
        "config: read-only",
    ];
    wait_for("the pod's log shows what it read", WAIT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        async move { want.iter().all(|w| text.contains(w)) }
    })
    .await;
    // The secret's files are on a tmpfs of their own, gone with the pod.
    let root = tmp.path().join("root");
    let secret_dir = format!("{uid}/volumes/kubernetes.io~secret/creds");
    assert!(
        mounts_under(&root).iter().any(|m| m.ends_with(&secret_dir)),
        "{:?}",
        mounts_under(&root)
    );

    // A changed ConfigMap reaches the running container's files (not its environment),
    // swapped whole within --sync-frequency.
    let patch = bosun_api_client::Patch::Merge(serde_json::json!({
        "data": {"app.conf": "level=4\n", "greeting": "bonjour"}}));
    client
        .patch::<ConfigMap>(NS, "app-config", &patch)
        .await
        .unwrap();
    // The log can show the container's output before its status (with its id) is written.
    wait_for("the reader's container id in its status", WAIT, || async {
        get(&client, "reader")
            .await
            .is_some_and(|p| main_status(&p).is_some_and(|c| c.container_id.is_some()))
    })
    .await;
    let reader = get(&client, "reader").await.unwrap();
    let id = main_status(&reader)
        .and_then(|c| c.container_id.clone())
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let cri = s.cri.clone();
    let read_in_container = move || {
        let (mut rt, id) = (cri.runtime.clone(), id.clone());
        async move {
            let got = rt
                .exec_sync(k8s_cri::v1::ExecSyncRequest {
                    container_id: id,
                    cmd: [
                        "sh",
                        "-c",
                        "cat /etc/config/conf/app.conf /etc/proj/greeting; echo \" $GREETING\"",
                    ]
                    .map(String::from)
                    .to_vec(),
                    timeout: 10,
                })
                .await
                .map(|r| r.into_inner().stdout)
                .unwrap_or_default();
            String::from_utf8_lossy(&got).into_owned()
        }
    };
    wait_for(
        "the updated ConfigMap in the container's files",
        WAIT,
        || {
            let read = read_in_container();
            async move { read.await == "level=4\nbonjour hello\n" }
        },
    )
    .await;

    // A key the pod needs from a ConfigMap that does not exist: CreateContainerConfigError
    // with the kubelet's message.
    let mut p = pod_json("no-config", "busybox", "Always", &["sleep", "3600"]);
    p["spec"]["hostNetwork"] = serde_json::json!(true);
    p["spec"]["containers"][0]["env"] = serde_json::json!([
        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x"}}}]);
    create(&mut s, p).await;
    wait_for("CreateContainerConfigError", WAIT, || async {
        get(&client, "no-config").await.is_some_and(|p| {
            waiting_reason(&p).as_deref() == Some("CreateContainerConfigError")
                && main_status(&p)
                    .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
                    .as_deref()
                    == Some("configmap \"missing\" not found")
        })
    })
    .await;

    // A secret volume whose Secret does not exist yet: FailedMount, then Running once it
    // is created.
    let mut p = pod_json("late-secret", "busybox", "Always", &["sleep", "3600"]);
    p["spec"]["hostNetwork"] = serde_json::json!(true);
    p["spec"]["containers"][0]["volumeMounts"] =
        serde_json::json!([{"name": "creds", "mountPath": "/etc/creds"}]);
    p["spec"]["volumes"] =
        serde_json::json!([{"name": "creds", "secret": {"secretName": "later"}}]);
    create(&mut s, p).await;
    wait_for("a FailedMount event", WAIT, || async {
        event_messages(&client, "late-secret", "FailedMount")
            .await
            .iter()
            .any(|m| {
                m == "MountVolume.SetUp failed for volume \"creds\" : secret \"later\" not found"
            })
    })
    .await;
    let later: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "later"}, "data": {"token": "dG9rZW4="}}))
    .unwrap();
    client.create(NS, &later).await.unwrap();
    wait_for("the pod Running once its secret exists", WAIT, || async {
        get(&client, "late-secret")
            .await
            .is_some_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
    })
    .await;

    client.delete::<Pod>(NS, "reader", None).await.unwrap();
    wait_for("the reader's secret tmpfs unmounted", WAIT, || {
        let left = mounts_under(&root).iter().any(|m| m.contains(&uid));
        async move { !left }
    })
    .await;
}

/// The counter at the start of a CRI log line's text (`<time> stdout F <n> ...`).
fn counter(line: &str) -> Option<u64> {
    line.splitn(4, ' ').nth(3)?.split(' ').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_log_is_rotated_and_its_files_stay_bounded() {
    let Some(ctr) = PrivateContainerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = setup(tmp.path(), &ctr).await;
    let client = s.client.clone();
    // About 200 KB/s of numbered lines; the kubelet runs with a 64Ki limit and 3 files.
    let script = "i=0; while true; do i=$((i+1)); echo \"$i 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"; usleep 500; done";
    let mut p = pod_json("chatty", "busybox", "Always", &["sh", "-c", script]);
    p["spec"]["hostNetwork"] = serde_json::json!(true);
    let made = create(&mut s, p).await;
    let uid = made.metadata.uid.unwrap();
    let dir = tmp.path().join(format!("logs/{NS}_chatty_{uid}/main"));
    let files = || {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        f.sort();
        f
    };
    // Two rotations at least (the kubelet checks every 10 s): the current file and two
    // rotated ones, never more.
    let mut most = 0;
    wait_for("two rotated log files", Duration::from_secs(90), || {
        let n = files().len();
        most = most.max(n);
        async move { n == 3 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let now = files();
    most = most.max(now.len());
    assert_eq!(most, 3, "at most --container-log-max-files: {now:?}");
    assert_eq!(now.len(), 3, "{now:?}");
    // The runtime writes a fresh current file: its first line follows the newest rotated
    // file's last line.
    let current = std::fs::read_to_string(dir.join("0.log")).unwrap();
    let newest = std::fs::read_to_string(&now[2]).unwrap();
    let first = current.lines().find_map(counter).expect("lines in 0.log");
    let last = newest
        .lines()
        .rev()
        .find_map(counter)
        .expect("lines in the rotated file");
    assert!(first > last, "{first} after {last}");
    assert!(
        (newest.len() as u64) > 64 << 10,
        "rotated past the limit: {} bytes",
        newest.len()
    );
    // The pod runs on, untouched by the rotations.
    let p = get(&client, "chatty").await.unwrap();
    assert_eq!(main_status(&p).map(|c| c.restart_count), Some(0));
}

/// Mount points under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// The PIDs in a cgroup tree (every hierarchy).
fn cgroup_pids(cgroup_root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = bosun_up::containerd::cgroup_dirs(cgroup_root);
    while let Some(d) = stack.pop() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// The parent of `pid` (from /proc/<pid>/stat).
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// A private containerd dropped while its pod runs (a sandbox on its network with a
/// container in it, nothing deleted first, as a test that panics leaves it) leaves nothing
/// behind: no mount under its dirs, no process of its pods or shims, no cgroup dir, none of
/// the iptables rules and chains its network made (the pod's hostPort chain, the network's
/// masquerade rule), no libcni cache entry, and its temp dir is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_private_containerd_leaves_nothing_behind() {
    drop_with_a_running_pod(Teardown::Drop).await;
}

/// The same when it is dropped while a panic unwinds (a failing test's assertion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_containerd_dropped_by_a_panic_leaves_nothing_behind() {
    drop_with_a_running_pod(Teardown::Panic).await;
}

/// The same when containerd itself has died first (killed by its PID), so that no CRI call
/// can remove the pod: its shims, pause and container processes still run, their mounts are
/// there, and no CNI DEL ever runs. The cleanup still leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_containerd_that_died_under_its_pod_leaves_nothing_behind() {
    drop_with_a_running_pod(Teardown::KillContainerdFirst).await;
}

/// How a test's private containerd ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Teardown {
    /// Dropped.
    Drop,
    /// Dropped while a panic unwinds.
    Panic,
    /// containerd killed (SIGKILL, by PID), then dropped.
    KillContainerdFirst,
}

/// Runs a pod in a private containerd, ends it as `how` says and checks the machine.
async fn drop_with_a_running_pod(how: Teardown) {
    use bosun_tests::containerd::cri;
    let Some(ctr) = PrivateContainerd::start() else {
        return;
    };
    let mut rt = ctr.client().runtime;
    let uid = format!("drop-{how:?}-{}", std::process::id()).to_lowercase();
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "dropped".into(),
            uid: uid.clone(),
            namespace: NS.into(),
            attempt: 0,
        }),
        hostname: "dropped".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/kubepods/besteffort/pod{uid}", ctr.cgroup_root),
            ..Default::default()
        }),
        // A hostPort, so that CNI makes a chain for this pod (portmap's DNAT chain; the
        // bridge masquerades through its network's one rule, with no chain per pod).
        port_mappings: vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 8080,
            host_port: i32::from(bosun_tests::free_port()),
            host_ip: "127.0.0.1".into(),
        }],
        ..Default::default()
    };
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "sleep".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                command: vec!["sleep".into(), "3600".into()],
                ..Default::default()
            }),
            sandbox_config: Some(config),
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest { container_id: id })
        .await
        .expect("StartContainer");

    let dir = ctr.dir().to_path_buf();
    let (network, cgroup_root) = (ctr.settings.network.clone(), ctr.cgroup_root.clone());
    let marker = format!("name: \\\"{network}\\\"");
    let masquerade = format!(
        "--comment \"{}\"",
        bosun_up::containerd::masquerade_comment(&network)
    );
    let save = || {
        let o = std::process::Command::new("iptables-save")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The chains the pod's rules jump to (portmap's DNAT chain).
    let chains: Vec<String> = save()
        .lines()
        .filter(|l| l.starts_with("-A ") && l.contains(&marker))
        .filter_map(|l| l.split(" -j ").nth(1))
        .filter(|t| t.starts_with("CNI-"))
        .map(|t| t.trim().to_string())
        .collect();
    // libcni's cache: the network's result and the loopback's, per sandbox.
    let results = || -> Vec<String> {
        std::fs::read_dir("/var/lib/cni/results")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("{network}-")) || n.contains(&sandbox))
            .collect()
    };
    // The pods' processes and their parents (the shims).
    let mut pids = cgroup_pids(&cgroup_root);
    let parents: Vec<u32> = pids.iter().filter_map(|p| parent(*p)).collect();
    pids.extend(parents);
    pids.retain(|p| *p > 1 && *p != std::process::id());
    // What is checked below is there while the pod runs.
    assert!(
        !mounts_under(&dir).is_empty(),
        "no mount under {}",
        dir.display()
    );
    assert!(!pids.is_empty(), "no process in {cgroup_root} and no shim");
    assert!(!chains.is_empty(), "no iptables chain of {network}");
    assert!(
        save().contains(&masquerade),
        "no masquerade rule of {network}"
    );
    assert!(!results().is_empty(), "no libcni cache entry of {network}");

    if how == Teardown::KillContainerdFirst {
        let pid = ctr.pid;
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
        // Its shim and pod outlive it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            pids.iter().any(|p| alive(*p)),
            "nothing outlived containerd"
        );
    }
    if how == Teardown::Panic {
        let unwound = std::thread::spawn(move || {
            let _ctr = ctr;
            panic!("a deliberate panic, to drop the private containerd while unwinding");
        })
        .join();
        assert!(unwound.is_err());
    } else {
        drop(ctr);
    }

    assert_eq!(mounts_under(&dir), Vec::<String>::new(), "mounts left");
    let running: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert_eq!(running, Vec::<u32>::new(), "processes left");
    let cgroups = bosun_up::containerd::cgroup_dirs(&cgroup_root);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let after = save();
    assert!(
        !after.contains(&marker) && !after.contains(&masquerade),
        "rules of {network} left:\n{after}"
    );
    for c in &chains {
        assert!(
            !after.contains(&format!(":{c} ")),
            "chain {c} left:\n{after}"
        );
    }
    assert_eq!(results(), Vec::<String>::new(), "libcni cache left");
    assert!(!dir.exists(), "{} left", dir.display());
}
