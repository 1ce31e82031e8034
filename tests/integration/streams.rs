//! `kubectl logs` and `kubectl exec` through the apiserver and the kubelet, with real kubectl
//! 1.32 and 1.20:
//!
//! - logs of a hollow pod from CRI log files the test writes where the kubelet reads them
//!   (`<pod-logs-dir>/<ns>_<pod>_<uid>/<container>/<n>.log`): the newest attempt, `--previous`,
//!   `--tail`, `--timestamps`, `--limit-bytes`, `--since-time`, `-f` until the log moves to a
//!   new attempt or the pod goes, and the refusals as kubectl prints them;
//! - exec into a real busybox container the test creates through CRI on a private
//!   containerd ([`PrivateContainerd`], skipped only where containerd cannot run) with the labels a kubelet gives it, under a pod object of
//!   the same uid: a command, its exit code, stderr, stdin through a pipe, `-it` with a
//!   shell; and the same container's log, written by containerd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_api_client::ApiClient;
use bosun_api_client::k8s_openapi::api::core::v1::Pod;
use bosun_kubelet::cri::CriClient;
use bosun_tests::component::Component;
use bosun_tests::containerd::PrivateContainerd;
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

    // PodLogOptions are validated by the apiserver, as kube-apiserver does.
    let (code, body) = bosun_tests::http_get(&format!(
        "{}/api/v1/namespaces/default/pods/web/log?tailLines=-1",
        api.url
    ))
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains(r#"PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"#),
        "{body}"
    );

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

    // -f ends when the pod goes.
    let mut bg = ks[0].spawn(&["logs", "-f", "web"], &dir.path().join("follow-web.out"));
    wait_for("the log so far", Duration::from_secs(20), || async {
        bg.output().ends_with("last\n")
    })
    .await;
    assert!(bg.try_wait().is_none(), "kubectl logs -f web still follows");
    ks[0].run(&["delete", "pod", "web", "--wait=false"]).ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bg.try_wait().is_none() {
        assert!(
            Instant::now() < deadline,
            "kubectl logs -f did not end when the pod went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No CRI runtime behind this kubelet: exec says so.
    for k in &ks {
        let out = k.run(&["exec", "solo", "--", "true"]);
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
    /// The pod's cgroup parent (`<the containerd's cgroup root>/pod<uid>`), removed from every
    /// hierarchy at the end (and by the containerd's cleanup when a failure skips that).
    cgroup: String,
}

impl CriPod {
    async fn run(
        cri: &CriClient,
        cgroup_root: &str,
        name: &str,
        uid: &str,
        logs: &Path,
        command: &[&str],
    ) -> CriPod {
        let cgroup = format!("{}/pod{uid}", cgroup_root.trim_matches('/'));
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
                cgroup_parent: format!("/{cgroup}"),
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
            cgroup,
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
        // containerd removes the sandbox's and containers' cgroups, not their parent.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.cgroup));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.cgroup));
    }
}

/// Runs kubectl with `args` and `stdin`, returning (exit code, stdout, stderr).
fn run(k: &Kubectl, args: &[&str], stdin: &str) -> (i32, String, String) {
    let out = k.run_with(args, stdin);
    (out.code, out.stdout, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_into_a_containerd_container_through_the_apiserver_and_kubelet() {
    let Some(containerd) = PrivateContainerd::start() else {
        return;
    };
    let endpoint = containerd.endpoint.clone();
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
        &containerd.cgroup_root,
        "sh",
        &uid,
        &logs,
        // It says what it finds in /tmp/say, so that a test can make it write later.
        &[
            "sh",
            "-c",
            "echo started; while sleep 0.1; do [ -f /tmp/say ] && cat /tmp/say && rm /tmp/say; done",
        ],
    )
    .await;
    let result = std::panic::AssertUnwindSafe(exec_checks(&ks, &client, &api.url, dir.path()))
        .catch_unwind()
        .await;
    pod.remove().await;
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

/// The head of an HTTP answer and the payloads of the WebSocket frames after it, and
/// whether a close frame came. Server frames are unmasked: opcode byte, length (7 bits,
/// or 126 + 16 bits), payload.
fn websocket_frames(raw: &[u8]) -> Option<(String, Vec<Vec<u8>>, bool)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut frames = Vec::new();
    let mut rest = &raw[end + 4..];
    while rest.len() >= 4 {
        let opcode = rest[0] & 0x0f;
        let (len, at) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            n => (usize::from(n), 2),
        };
        if rest.len() < at + len {
            break;
        }
        if opcode == 8 {
            return Some((head, frames, true));
        }
        frames.push(rest[at..at + len].to_vec());
        rest = &rest[at + len..];
    }
    Some((head, frames, false))
}

/// A WebSocket exec through the apiserver offering `protocol`, with a raw HTTP/1.1
/// handshake: the answer's head and the payload of each frame until the server closes.
async fn websocket_exec(api: &str, path: &str, protocol: &str) -> (String, Vec<Vec<u8>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = api.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => raw.extend_from_slice(&buf[..n]),
            _ => break,
        }
        match websocket_frames(&raw) {
            Some((head, _, _)) if !head.starts_with("HTTP/1.1 101") => {}
            Some((_, _, true)) => break,
            _ => continue,
        }
        // Not an upgrade: the body follows; read what came with it.
        if raw.ends_with(b"}") || raw.ends_with(b"}\n") {
            break;
        }
    }
    let (head, frames, _) = websocket_frames(&raw).expect("an HTTP answer");
    (head, frames)
}

async fn exec_checks(ks: &[Kubectl], client: &ApiClient, api: &str, dir: &Path) {
    // A WebSocket the runtime speaks (v4) passes through as it is: stdout on channel 1,
    // the exit status on channel 3.
    let path = "/api/v1/namespaces/default/pods/sh/exec?command=echo&command=over%20ws&stdout=true";
    let (head, frames) = websocket_exec(api, path, "v4.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("sec-websocket-protocol: v4.channel.k8s.io"),
        "{head}"
    );
    let channel = |c: u8| -> String {
        frames
            .iter()
            .filter(|f| f.first() == Some(&c))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .collect()
    };
    assert_eq!(channel(1), "over ws\n", "{frames:?}");
    assert!(channel(3).contains("Success"), "{frames:?}");
    // Only v5 (kubectl >= 1.30 asks it first): refused, so that kubectl falls back to SPDY.
    let (head, _) = websocket_exec(api, path, "v5.channel.k8s.io").await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

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
    // Followed: what the container writes later arrives.
    let k = &ks[0];
    let bg = k.spawn(&["logs", "-f", "sh"], &dir.join("follow-sh.out"));
    wait_for("the log so far", Duration::from_secs(20), || async {
        bg.output() == "started\n"
    })
    .await;
    k.run(&["exec", "sh", "--", "sh", "-c", "echo later > /tmp/say"])
        .ok();
    wait_for("the later line", Duration::from_secs(20), || async {
        bg.output() == "started\nlater\n"
    })
    .await;
    drop(bg);
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
