//! `kubectl logs` and `kubectl exec` through the apiserver and the kubelet, with real kubectl
//! 1.32 and 1.20:
//!
//! - logs of a hollow pod from CRI log files the test writes where the kubelet reads them
//!   (`<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<n>.log`): the newest attempt, `--previous`,
//!   `--tail`, `--timestamps`, `--limit-bytes`, `--since-time`, `-f` until the log moves to a
//!   new attempt, and the kubelet's refusals as kubectl prints them;
//! - exec into a real busybox container the test creates through CRI
//!   (`BOSUN_TEST_CRI_ENDPOINT`) with the labels a kubelet gives it, under a pod object of
//!   the same uid: a command, its exit code, stderr, stdin through a pipe, `-it` with a
//!   shell; and the same container's log, written by containerd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_api_client::ApiClient;
use bosun_api_client::k8s_openapi::api::core::v1::Pod;
use bosun_kubelet::cri::CriClient;
use bosun_tests::component::Component;
use bosun_tests::kube::{Apiserver, Kubectl, kubectl_120, kubectl_132};
use bosun_tests::{Cluster, Kind, wait_for};
use futures::FutureExt;
use k8s_cri::v1 as cri;

async fn setup(dir: &Path) -> (Cluster, Apiserver, ApiClient) {
    let cluster = Cluster::start(Kind::Bosun, dir, 3, &[]).await;
    let api = Apiserver::start(&dir.join("api"), &cluster.client_urls().join(","), &[]).await;
    let client = ApiClient::connect(&api.url).await.unwrap();
    (cluster, api, client)
}

/// `bosun kubelet --runtime fake --node-name node-1` with its logs under `logs`, and `extra`.
async fn start_kubelet(dir: &Path, api: &Apiserver, logs: &Path, extra: &[&str]) -> Component {
    let logs = logs.display().to_string();
    let mut args = vec![
        "--runtime",
        "fake",
        "--node-name",
        "node-1",
        "--pod-logs-dir",
        &logs,
    ];
    args.extend_from_slice(extra);
    let k = Component::start(dir, "kubelet", "kubelet", &api.url, &args, &[]);
    k.wait_listening(Duration::from_secs(30)).await;
    k
}

/// Creates pod `name` (one container `c`, busybox) on node `node-1` and waits until it runs;
/// returns its uid.
async fn running_pod(k: &Kubectl, client: &ApiClient, name: &str) -> String {
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: node-1\n  containers:\n  - name: c\n    image: busybox\n"
    );
    k.run_with(&["create", "-f", "-"], &pod).ok();
    wait_for(
        &format!("pod {name} running"),
        Duration::from_secs(30),
        || async {
            client
                .get::<Pod>("default", name)
                .await
                .is_ok_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
        },
    )
    .await;
    let p: Pod = client.get("default", name).await.unwrap();
    p.metadata.uid.unwrap()
}

fn kubectls(api: &Apiserver, dir: &Path) -> Vec<Kubectl> {
    let ks: Vec<Kubectl> = [kubectl_132(api, dir), kubectl_120(api, dir)]
        .into_iter()
        .flatten()
        .collect();
    assert!(!ks.is_empty(), "no kubectl");
    ks
}

/// A CRI log line written `ago` before now.
fn line(ago: Duration, stream: &str, tag: &str, text: &str) -> String {
    let t = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
    format!(
        "{} {stream} {tag} {text}\n",
        t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_cri_log_files_through_the_apiserver_and_kubelet() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let logs = dir.path().join("pods");
    let _kubelet = start_kubelet(dir.path(), &api, &logs, &[]).await;
    let ks = kubectls(&api, dir.path());
    let uid = running_pod(&ks[0], &client, "web").await;
    let cdir = logs.join(format!("default_web_{uid}")).join("c");
    std::fs::create_dir_all(&cdir).unwrap();

    // A running hollow container without a log file has an empty log.
    for k in &ks {
        assert_eq!(k.run(&["logs", "web"]).ok(), "", "kubectl {}", k.version);
    }
    let hour = Duration::from_secs(3600);
    std::fs::write(
        cdir.join("0.log"),
        line(hour * 3, "stdout", "F", "first attempt"),
    )
    .unwrap();
    let old = line(hour * 2, "stdout", "F", "two hours ago");
    let old_ts = old.split(' ').next().unwrap().to_string();
    let newest = format!(
        "{old}{}{}{}{}",
        line(Duration::ZERO, "stdout", "P", "hello "),
        line(Duration::ZERO, "stdout", "F", "world"),
        line(Duration::ZERO, "stderr", "F", "to stderr"),
        line(Duration::ZERO, "stdout", "F", "last"),
    );
    std::fs::write(cdir.join("1.log"), &newest).unwrap();
    for k in &ks {
        let v = k.version;
        assert_eq!(
            k.run(&["logs", "web"]).ok(),
            "two hours ago\nhello world\nto stderr\nlast\n",
            "kubectl {v}"
        );
        assert_eq!(
            k.run(&["logs", "web", "--previous"]).ok(),
            "first attempt\n",
            "kubectl {v}"
        );
        assert_eq!(
            k.run(&["logs", "web", "--tail=2"]).ok(),
            "to stderr\nlast\n",
            "kubectl {v}"
        );
        assert_eq!(
            k.run(&["logs", "web", "--limit-bytes=7"]).ok(),
            "two hou",
            "kubectl {v}"
        );
        assert_eq!(
            k.run(&["logs", "web", "--since=1h"]).ok(),
            "hello world\nto stderr\nlast\n",
            "kubectl {v}"
        );
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(90 * 60);
        assert_eq!(
            k.run(&[
                "logs",
                "web",
                &format!("--since-time={}", since.strftime("%Y-%m-%dT%H:%M:%SZ"))
            ])
            .ok(),
            "hello world\nto stderr\nlast\n",
            "kubectl {v}"
        );
        // The time as written, Go's RFC3339Nano (trailing zeros dropped), once per line.
        let with_ts = k
            .run(&["logs", "web", "--timestamps", "--tail=5"])
            .ok()
            .to_string();
        let first = with_ts.lines().next().unwrap();
        let want_ts = {
            let (secs, frac) = old_ts.trim_end_matches('Z').split_once('.').unwrap();
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        };
        assert_eq!(first, format!("{want_ts} two hours ago"), "kubectl {v}");
        assert!(
            with_ts.lines().nth(1).unwrap().ends_with("Z hello world"),
            "kubectl {v}: {with_ts}"
        );
        // The kubelet's refusals, as kube-apiserver passes them on.
        let out = k.run(&["logs", "web", "-c", "nope"]);
        assert!(
            out.err()
                .contains("container nope is not valid for pod web"),
            "kubectl {v}: {}",
            out.stderr
        );
    }

    // One attempt only: no previous one.
    let uid2 = running_pod(&ks[0], &client, "solo").await;
    let sdir = logs.join(format!("default_solo_{uid2}")).join("c");
    std::fs::create_dir_all(&sdir).unwrap();
    std::fs::write(
        sdir.join("0.log"),
        line(Duration::ZERO, "stdout", "F", "only"),
    )
    .unwrap();
    for k in &ks {
        let out = k.run(&["logs", "solo", "--previous"]);
        assert!(
            out.err().contains(
                r#"Error from server (BadRequest): previous terminated container "c" in pod "solo" not found"#
            ),
            "kubectl {}: {}",
            k.version,
            out.stderr
        );
    }

    // -f: what is appended arrives; the stream ends once the log moves to a new attempt.
    for (i, k) in ks.iter().enumerate() {
        let mut bg = k.spawn(
            &["logs", "-f", "solo"],
            &dir.path().join(format!("follow-{i}.out")),
        );
        wait_for("the log so far", Duration::from_secs(20), || async {
            bg.output() == "only\n"
        })
        .await;
        let attempt = format!("{i}.log");
        let next = format!("{}.log", i + 1);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(sdir.join(&attempt))
            .unwrap();
        use std::io::Write;
        f.write_all(line(Duration::ZERO, "stdout", "P", "app").as_bytes())
            .unwrap();
        f.write_all(line(Duration::ZERO, "stdout", "F", "ended").as_bytes())
            .unwrap();
        wait_for("the appended line", Duration::from_secs(20), || async {
            bg.output() == "only\nappended\n"
        })
        .await;
        assert!(
            bg.try_wait().is_none(),
            "kubectl {} still follows",
            k.version
        );
        std::fs::write(
            sdir.join(&next),
            line(Duration::ZERO, "stdout", "F", "only"),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = bg.try_wait() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {} logs -f did not end when the log moved to a new attempt",
                k.version
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.success(), "kubectl {}: {status:?}", k.version);
    }

    // No CRI runtime behind this kubelet: exec says so.
    for k in &ks {
        let out = k.run(&["exec", "web", "--", "true"]);
        assert!(
            out.err().contains("exec needs a container runtime"),
            "kubectl {}: {}",
            k.version,
            out.stderr
        );
    }
}

/// A pod sandbox with one container made through CRI as a kubelet makes it (labels, log
/// directory), removed by [`CriPod::remove`].
struct CriPod {
    cri: CriClient,
    sandbox: String,
}

impl CriPod {
    async fn run(cri: &CriClient, name: &str, uid: &str, logs: &Path, command: &[&str]) -> CriPod {
        let labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), name.to_string()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                "default".to_string(),
            ),
            ("io.kubernetes.pod.uid".to_string(), uid.to_string()),
        ]);
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            // Host network: the host's UTS namespace and name.
            log_directory: logs
                .join(format!("default_{name}_{uid}"))
                .display()
                .to_string(),
            labels: labels.clone(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut rt = cri.runtime.clone();
        let sandbox = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        let pod = CriPod {
            cri: cri.clone(),
            sandbox,
        };
        let mut clabels = labels;
        clabels.insert("io.kubernetes.container.name".into(), "c".into());
        let created = rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.sandbox.clone(),
                config: Some(cri::ContainerConfig {
                    metadata: Some(cri::ContainerMetadata {
                        name: "c".into(),
                        attempt: 0,
                    }),
                    image: Some(cri::ImageSpec {
                        image: "docker.io/library/busybox:latest".into(),
                        ..Default::default()
                    }),
                    command: command.iter().map(|s| s.to_string()).collect(),
                    labels: clabels,
                    log_path: "c/0.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await;
        let id = match created {
            Ok(r) => r.into_inner().container_id,
            Err(e) => {
                pod.remove().await;
                panic!("CreateContainer: {e}");
            }
        };
        if let Err(e) = rt
            .start_container(cri::StartContainerRequest { container_id: id })
            .await
        {
            pod.remove().await;
            panic!("StartContainer: {e}");
        }
        pod
    }

    async fn remove(&self) {
        let mut rt = self.cri.runtime.clone();
        let _ = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: self.sandbox.clone(),
            })
            .await;
        let _ = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: self.sandbox.clone(),
            })
            .await;
    }
}

/// Runs kubectl with `args` and `stdin`, returning (exit code, stdout, stderr).
fn run(k: &Kubectl, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = k.run_with(args, stdin);
    (out.code, out.stdout, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_into_a_containerd_container_through_the_apiserver_and_kubelet() {
    let Ok(endpoint) = std::env::var("BOSUN_TEST_CRI_ENDPOINT") else {
        println!(
            "SKIP exec: BOSUN_TEST_CRI_ENDPOINT is not set (a containerd's CRI socket, unix:///...)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, api, client) = setup(dir.path()).await;
    let logs: PathBuf = dir.path().join("pods");
    let _kubelet = start_kubelet(
        dir.path(),
        &api,
        &logs,
        &["--container-runtime-endpoint", &endpoint],
    )
    .await;
    let ks = kubectls(&api, dir.path());
    let uid = running_pod(&ks[0], &client, "sh").await;
    let cri = CriClient::connect(&endpoint, Duration::from_secs(60)).unwrap();
    let pod = CriPod::run(
        &cri,
        "sh",
        &uid,
        &logs,
        &["sh", "-c", "echo started; exec sleep 3600"],
    )
    .await;
    let result = std::panic::AssertUnwindSafe(exec_checks(&ks, &client))
        .catch_unwind()
        .await;
    pod.remove().await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

async fn exec_checks(ks: &[Kubectl], client: &ApiClient) {
    for k in ks {
        let v = k.version;
        assert_eq!(
            run(k, &["exec", "sh", "--", "echo", "hello", "world"], ""),
            (0, "hello world\n".into(), String::new()),
            "kubectl {v}"
        );
        // The exit code comes back, as kubectl reports it.
        let (code, _, err) = run(
            k,
            &["exec", "sh", "--", "sh", "-c", "echo oops >&2; exit 3"],
            "",
        );
        assert_eq!(code, 3, "kubectl {v}: {err}");
        assert!(
            err.contains("oops") && err.contains("command terminated with exit code 3"),
            "kubectl {v}: {err}"
        );
        // Stdin through a pipe; its end reaches the process (cat ends).
        assert_eq!(
            run(k, &["exec", "-i", "sh", "--", "cat"], "piped\nlines\n"),
            (0, "piped\nlines\n".into(), String::new()),
            "kubectl {v}"
        );
        let (code, out, err) = run(
            k,
            &["exec", "-i", "sh", "--", "sh"],
            "echo $((6 * 7))\nexit 4\n",
        );
        assert_eq!((code, out.as_str()), (4, "42\n"), "kubectl {v}: {err}");
        // -it with a shell: stdin is no terminal here, kubectl says so and goes on.
        let (code, out, err) = run(
            k,
            &["exec", "-it", "sh", "--", "sh", "-c", "read x; echo got $x"],
            "it\n",
        );
        assert_eq!((code, out.trim_end()), (0, "got it"), "kubectl {v}: {err}");
        let out = k.run(&["exec", "sh", "-c", "nope", "--", "true"]);
        assert!(
            out.err().contains("container nope is not valid for pod sh"),
            "kubectl {v}: {}",
            out.stderr
        );
        // The container's log, written by containerd.
        assert_eq!(k.run(&["logs", "sh"]).ok(), "started\n", "kubectl {v}");
    }
    // A pod whose container the runtime does not have.
    let k = &ks[0];
    let _ = running_pod(k, client, "ghost").await;
    let out = k.run(&["exec", "ghost", "--", "true"]);
    assert!(
        out.err().contains(r#"container not found ("c")"#),
        "{}",
        out.stderr
    );
}
