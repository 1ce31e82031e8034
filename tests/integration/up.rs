//! `bosun up`: the whole cluster from one command. With hollow nodes (`--runtime fake`): it
//! comes up, kubectl with its kubeconfig runs the README's example Deployment, SIGTERM stops
//! every child it started, and `bosun up` again on the same data dir has the Deployment
//! still. With containerd: a private containerd (the test harness's) runs a sandbox, whose
//! pod reaches an address outside its range through the network's masquerade rule, and
//! leaves nothing behind; `bosun up` starting its own containerd reaches a Ready node and
//! leaves no bridge, masquerade rule, sandbox or cgroup behind after SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bosun_tests::containerd::{EVICTION_HARD, PrivateContainerd, cri, names, skip_reason};
use bosun_tests::kube::{Kubectl, kubectl_132_with};
use bosun_tests::registry::LocalRegistry;
use bosun_tests::{bosun_bin, free_port, sigterm_and_wait, wait_for};

/// The README's example.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples/web.yaml")
}

/// A `bosun up` process, its output in a file, SIGKILLed (it and every child it started)
/// on drop if still running.
struct Up {
    child: Option<Child>,
    out: PathBuf,
    seen_children: Vec<u32>,
}

/// Free loopback ports for every component.
fn port_flags() -> Vec<String> {
    let p = || free_port().to_string();
    vec![
        "--apiserver-port".into(),
        p(),
        "--store-client-ports".into(),
        format!("{},{},{}", p(), p(), p()),
        "--store-peer-ports".into(),
        format!("{},{},{}", p(), p(), p()),
        "--controller-manager-port".into(),
        p(),
        "--scheduler-port".into(),
        p(),
        "--kubelet-port".into(),
        p(),
    ]
}

impl Up {
    fn start(dir: &Path, args: &[String], out: &str) -> Up {
        let out = dir.join(out);
        let child = Command::new(bosun_bin())
            .arg("up")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&out).unwrap())
            .spawn()
            .expect("start bosun up");
        Up {
            child: Some(child),
            out,
            seen_children: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Waits for "the cluster is up"; panics with its output if it exits first.
    async fn wait_up(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.output().contains("the cluster is up") {
                self.seen_children = children(self.pid());
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "bosun up exited ({st}) before the cluster was up:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "bosun up not up in {within:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM, and its exit status within `within`.
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        if let Some(st) = sigterm_and_wait(&mut c, within) {
            return st;
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("bosun up did not stop in {within:?}:\n{}", self.output());
    }
}

impl Drop for Up {
    /// A test that fails with `bosun up` still running asks it to stop first (SIGTERM, up to
    /// a minute), so that it removes its containers, network and cgroups; only then is what
    /// is left killed.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = sigterm_and_wait(&mut c, Duration::from_secs(60));
            }
            for pid in children(c.id())
                .into_iter()
                .chain(self.seen_children.clone())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The PIDs whose parent is `pid` (from /proc/<pid>/stat's fourth field).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// Whether a process `pid` exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// The pods' phases (`kubectl get pods`).
fn phases(k: &Kubectl) -> Vec<String> {
    k.run(&["get", "pods", "-o", "jsonpath={.items[*].status.phase}"])
        .stdout
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_fake_runs_the_example_stops_every_child_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["--runtime".into(), "fake".into()];
    args.extend(port_flags());
    let mut up = Up::start(dir.path(), &args, "up1.out");
    up.wait_up(Duration::from_secs(120)).await;
    let out = up.output();
    for name in [
        "store-m1",
        "store-m2",
        "store-m3",
        "apiserver",
        "controller-manager",
        "scheduler",
        "kubelet",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(name) && l.contains("healthy in")),
            "no health line for {name}:\n{out}"
        );
    }
    assert_eq!(up.seen_children.len(), 7, "seven components: {out}");
    for node in ["hollow-0", "hollow-1", "hollow-2"] {
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("node {node}")) && l.contains("Ready in")),
            "no Ready line for {node}:\n{out}"
        );
    }
    let kubeconfig = dir.path().join("data/kubeconfig");
    assert!(kubeconfig.is_file());
    let Some(k) = kubectl_132_with(&kubeconfig, dir.path()) else {
        return;
    };
    k.run(&["create", "-f", example().to_str().unwrap()]).ok();
    wait_for("3 Running pods", Duration::from_secs(60), || async {
        phases(&k) == ["Running", "Running", "Running"]
    })
    .await;

    let first = up.seen_children.clone();
    let st = up.terminate(Duration::from_secs(60));
    assert!(st.success(), "bosun up exited {st}:\n{}", up.output());
    let left: Vec<u32> = first.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(
        !dir.path().join("data/pids").exists(),
        "the PIDs file goes once they stopped"
    );
    assert!(
        up.output().contains("the cluster's data stays in"),
        "{}",
        up.output()
    );

    // Again on the same data dir: the Deployment and its pods are there.
    let mut up = Up::start(dir.path(), &args, "up2.out");
    up.wait_up(Duration::from_secs(120)).await;
    let got = k.run(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(got.ok(), "3");
    wait_for(
        "3 Running pods after the restart",
        Duration::from_secs(60),
        || async { phases(&k) == ["Running", "Running", "Running"] },
    )
    .await;
    let second = up.seen_children.clone();
    assert!(up.terminate(Duration::from_secs(60)).success());
    assert!(
        second.iter().all(|p| !alive(*p)),
        "children left: {second:?}"
    );
}

/// A component that exits stops `bosun up` with its log's last lines, and the rest with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_stops_everything_when_a_component_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["--runtime".into(), "fake".into()];
    args.extend(port_flags());
    let mut up = Up::start(dir.path(), &args, "up.out");
    up.wait_up(Duration::from_secs(120)).await;
    let kids = up.seen_children.clone();
    // The scheduler: the fifth component started.
    let sched = kids
        .iter()
        .copied()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.split('\0').nth(1) == Some("scheduler"))
        })
        .expect("the scheduler among the children");
    let _ = Command::new("kill")
        .args(["-KILL", &sched.to_string()])
        .status();
    let mut c = up.child.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "bosun up still running:\n{}",
            up.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!st.success());
    let out = up.output();
    assert!(out.contains("scheduler exited (signal: 9"), "{out}");
    assert!(out.contains("the last lines of"), "{out}");
    assert!(kids.iter().all(|p| !alive(*p)), "children left: {out}");
}

/// `bosun up` killed by SIGKILL leaves its children running; the next `bosun up` on the same
/// data dir stops them (by the PIDs it recorded) and comes up on the same ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_after_sigkill_stops_what_the_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec!["--runtime".into(), "fake".into()];
    args.extend(port_flags());
    let mut up = Up::start(dir.path(), &args, "up1.out");
    up.wait_up(Duration::from_secs(120)).await;
    let orphans = up.seen_children.clone();
    let mut c = up.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(
        orphans.iter().all(|p| alive(*p)),
        "the children outlive a SIGKILL"
    );
    let mut up = Up::start(dir.path(), &args, "up2.out");
    up.seen_children = orphans.clone(); // killed on drop should the test fail
    up.wait_up(Duration::from_secs(120)).await;
    let out = up.output();
    assert_eq!(
        out.matches("left running by a previous bosun up").count(),
        7,
        "{out}"
    );
    assert!(
        orphans.iter().all(|p| !alive(*p)),
        "the old children stopped"
    );
    assert!(up.terminate(Duration::from_secs(60)).success());
}

/// The test harness's private containerd runs a pod sandbox on its own network with a
/// busybox container in it; stopping it removes both, the bridge, host-local's allocation,
/// the pod's iptables rules and cgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_containerd_runs_a_sandbox_and_leaves_nothing() {
    let Some(c) = PrivateContainerd::start() else {
        return;
    };
    let mut rt = c.client().runtime;
    let uid = format!("uid-{}", std::process::id());
    let parent = format!("{}/kubepods/besteffort/pod{uid}", c.cgroup_root);
    let config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "sb".into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "sb".into(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: parent.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    // A container in it, from the imported busybox image, left running for the cleanup.
    let ctr = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: id.clone(),
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
    rt.start_container(cri::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("StartContainer");
    let state = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .state;
    assert_eq!(state, cri::ContainerState::ContainerRunning as i32);
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id,
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    let ip = status.network.unwrap().ip;
    let cidr: bosun_up::containerd::Ipv4Cidr = c.settings.pod_cidr;
    assert!(
        cidr.contains(ip.parse().unwrap()),
        "pod IP {ip} outside {cidr}"
    );
    let bridge = Path::new("/sys/class/net").join(&c.settings.bridge);
    let alloc = Path::new("/var/lib/cni/networks").join(&c.settings.network);
    assert!(bridge.exists(), "no bridge {}", bridge.display());
    assert!(
        alloc.join(&ip).exists(),
        "no host-local allocation for {ip}"
    );
    let cgroups = bosun_up::containerd::cgroup_dirs(&c.cgroup_root);
    assert!(!cgroups.is_empty(), "no cgroup dir for {}", c.cgroup_root);
    let pid = c.pid;
    let (network, cgroup_root) = (c.settings.network.clone(), c.cgroup_root.clone());
    let nat_rules = || {
        let out = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The pods' way out: the network's one masquerade rule, no chain per pod (ipMasq off);
    // a pod reaches an address outside its range that has no route back to it.
    let masquerade = format!(
        "--comment \"{}\"",
        bosun_up::containerd::masquerade_comment(&network)
    );
    let marker = format!("name: \\\"{network}\\\"");
    let nat = nat_rules();
    assert!(nat.contains(&masquerade), "no masquerade rule:\n{nat}");
    assert!(
        !nat.contains(&marker),
        "a per-pod rule of {network}:\n{nat}"
    );
    let outside = Outside::start();
    let got = rt
        .exec_sync(cri::ExecSyncRequest {
            container_id: ctr.clone(),
            // busybox-static's wget crashes without glibc's NSS files in the image: nc.
            cmd: [
                "sh".to_string(),
                "-c".into(),
                format!(
                    "printf 'GET /token HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {} 8080",
                    outside.address
                ),
            ]
            .to_vec(),
            timeout: 20,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    let answer = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.exit_code == 0
            && answer.starts_with("HTTP/1.")
            && answer.trim_end().ends_with(&outside.token),
        "the pod reaching {}:8080 through the masquerade: exit {}, {answer:?} {}",
        outside.address,
        got.exit_code,
        String::from_utf8_lossy(&got.stderr)
    );
    drop(outside);

    let problems = c.stop();
    assert!(problems.is_empty(), "cleanup: {problems:?}");
    assert!(!alive(pid), "containerd still running");
    assert!(!bridge.exists(), "bridge left");
    assert!(!alloc.exists(), "host-local allocations left");
    let cgroups = bosun_up::containerd::cgroup_dirs(&cgroup_root);
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    let nat = nat_rules();
    assert!(
        !nat.contains(&marker) && !nat.contains(&masquerade),
        "iptables rules of {network} left:\n{nat}"
    );
}

/// A network namespace with an address outside every pod range (198.18.0.0/15, set aside for
/// tests) on a veth to the host, and a busybox httpd in it serving a token: it knows no
/// route to the pods, so a pod reaches it only with its address masqueraded to the host's
/// end of the veth. Its httpd is killed by PID and the namespace (and so the veth) deleted
/// on drop.
struct Outside {
    netns: String,
    httpd: Child,
    address: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Outside {
    fn start() -> Outside {
        let id = std::process::id();
        let netns = format!("bosun-out-{id}");
        let veth = format!("bo{}", id % 100_000);
        let (host, inside) = (
            format!("198.18.{}.1", id % 250),
            format!("198.18.{}.2", id % 250),
        );
        let ip = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ip(&["netns", "add", &netns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["addr", "add", &format!("{host}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        for args in [
            vec!["addr", "add", &format!("{inside}/30"), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["-n", netns.as_str()];
            all.extend(args.iter().copied());
            ip(&all);
        }
        let dir = tempfile::tempdir().unwrap();
        let token = format!("outside-{id}");
        std::fs::write(dir.path().join("token"), &token).unwrap();
        let addr = format!("{inside}:8080");
        let httpd = Command::new("ip")
            .args(["netns", "exec", &netns, "/bin/busybox", "httpd", "-f", "-p"])
            .arg(&addr)
            .arg("-h")
            .arg(dir.path())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut outside = Outside {
            netns,
            httpd,
            address: inside.clone(),
            token,
            _dir: dir,
        };
        // From the host it answers on the veth's own subnet (no masquerade needed).
        let deadline = Instant::now() + Duration::from_secs(10);
        let sock: std::net::SocketAddr = addr.parse().unwrap();
        while std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline && outside.httpd.try_wait().unwrap().is_none(),
                "httpd in {} not listening on {addr}",
                outside.netns
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        outside
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.httpd.kill();
        let _ = self.httpd.wait();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// `bosun up` with containerd: its own containerd, healthy components and a Ready node;
/// the README's example Running (needs `bosun kubelet --runtime cri`, the cri helper's work
/// in issue 18: until it is there this test says so and stops), the pods' masquerade rule
/// there; after SIGTERM no child, bridge, masquerade rule, sandbox or cgroup dir is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_containerd_runs_pods_and_leaves_nothing() {
    if let Some(why) = skip_reason() {
        println!("SKIP bosun up with containerd: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = names();
    let mut args: Vec<String> = vec![
        "--cni-network".into(),
        n.network.clone(),
        "--cni-bridge".into(),
        n.bridge.clone(),
        "--pod-cidr".into(),
        n.pod_cidr.clone(),
        "--eviction-hard".into(),
        EVICTION_HARD.into(),
    ];
    args.extend(port_flags());
    let mut up = Up::start(dir.path(), &args, "up.out");
    up.wait_up(Duration::from_secs(180)).await;
    let kids = up.seen_children.clone();
    assert_eq!(
        kids.len(),
        8,
        "containerd and seven components:\n{}",
        up.output()
    );
    assert!(
        up.output().contains(" Ready in "),
        "the node Ready:\n{}",
        up.output()
    );
    let Some(k) = kubectl_132_with(&dir.path().join("data/kubeconfig"), dir.path()) else {
        return;
    };
    wait_for("a Ready node", Duration::from_secs(60), || async {
        k.run(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.conditions[?(@.type==\"Ready\")].status}",
        ])
        .stdout
            == "True"
    })
    .await;
    k.run(&["create", "-f", example().to_str().unwrap()]).ok();
    // Needs the cri helper's kubelet (sandboxes, containers, pod IPs from the CNI network).
    wait_for(
        "3 Running pods on containerd",
        Duration::from_secs(120),
        || async { phases(&k) == ["Running", "Running", "Running"] },
    )
    .await;
    let bridge = Path::new("/sys/class/net").join(&n.bridge);
    assert!(bridge.exists(), "pods run on the bridge {}", n.bridge);
    let masquerade = format!(
        "--comment \"{}\"",
        bosun_up::containerd::masquerade_comment(&n.network)
    );
    let nat = || {
        let o = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert!(nat().contains(&masquerade), "the pods' masquerade rule");

    let st = up.terminate(Duration::from_secs(120));
    assert!(st.success(), "bosun up exited {st}:\n{}", up.output());
    assert!(
        kids.iter().all(|p| !alive(*p)),
        "children left:\n{}",
        up.output()
    );
    assert!(!bridge.exists(), "bridge left");
    assert!(!nat().contains(&masquerade), "masquerade rule left");
    assert!(
        !Path::new("/var/lib/cni/networks").join(&n.network).exists(),
        "host-local allocations left"
    );
    let runc = dir.path().join("data/containerd/state/runc/k8s.io");
    let left = std::fs::read_dir(&runc).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left,
        0,
        "runc containers (sandboxes) left in {}",
        runc.display()
    );
    let cg = bosun_up::containerd::cgroup_dirs("/bosun");
    assert!(cg.is_empty(), "cgroup dirs left: {cg:?}");
    assert!(!up.output().contains("cleanup:"), "{}", up.output());
}

/// The real pull path the README documents: Debian's docker-registry on loopback, the busybox
/// image copied into it with skopeo, pulled through CRI by a private containerd (plain HTTP,
/// containerd's default for a loopback registry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_containerd_pulls_from_a_local_registry() {
    let Some(c) = PrivateContainerd::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(registry) = LocalRegistry::start(dir.path()).await else {
        return;
    };
    let image = registry.push(&c.settings.dir.join("images/busybox"), "busybox", "latest");
    let mut images = c.client().images;
    let spec = || {
        Some(cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        })
    };
    let status = |resp: cri::ImageStatusResponse| resp.image.is_some();
    assert!(
        !status(
            images
                .image_status(cri::ImageStatusRequest {
                    image: spec(),
                    verbose: false
                })
                .await
                .unwrap()
                .into_inner()
        ),
        "not there before the pull"
    );
    let pulled = images
        .pull_image(cri::PullImageRequest {
            image: spec(),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap_or_else(|e| panic!("PullImage {image}: {e}; registry log:\n{}", registry.log()))
        .into_inner();
    assert!(!pulled.image_ref.is_empty());
    assert!(status(
        images
            .image_status(cri::ImageStatusRequest {
                image: spec(),
                verbose: false
            })
            .await
            .unwrap()
            .into_inner()
    ));
}

/// What a runtime that died before CNI DEL leaves in iptables (bridge's per-pod masquerade
/// chain and its jump, firewall's CNI-FORWARD rules for the pod address) is removed by the
/// host cleanup, and only that network's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_cleanup_removes_leftover_cni_iptables_rules_of_its_network_only() {
    if let Some(why) = skip_reason() {
        println!("SKIP iptables cleanup: {why}");
        return;
    }
    let n = names();
    let other = names();
    let ip = n.pod_cidr.replace(".0.0/16", ".0.9");
    let other_ip = other.pod_cidr.replace(".0.0/16", ".0.9");
    let chain = format!("CNI-{}", n.bridge);
    let other_chain = format!("CNI-{}", other.bridge);
    let ipt = |args: &[&str]| {
        let st = Command::new("iptables").args(args).status().unwrap();
        assert!(st.success(), "iptables {args:?}");
    };
    let comment = |net: &str| format!("name: \"{net}\" id: \"abc\"");
    for (net, chain, ip) in [
        (&n.network, &chain, &ip),
        (&other.network, &other_chain, &other_ip),
    ] {
        ipt(&["-t", "nat", "-N", chain]);
        ipt(&[
            "-t",
            "nat",
            "-A",
            chain,
            "-m",
            "comment",
            "--comment",
            &comment(net),
            "-j",
            "ACCEPT",
        ]);
        let src = format!("{ip}/32");
        ipt(&[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-s",
            &src,
            "-m",
            "comment",
            "--comment",
            &comment(net),
            "-j",
            chain,
        ]);
    }
    // The firewall plugin's chain, shared by every network: made here if missing (and then
    // removed at the end), with a rule for each network's pod.
    let made_forward = Command::new("iptables")
        .args(["-N", "CNI-FORWARD"])
        .output()
        .is_ok_and(|o| o.status.success());
    let dst = format!("{ip}/32");
    let other_dst = format!("{other_ip}/32");
    ipt(&["-A", "CNI-FORWARD", "-d", &dst, "-j", "ACCEPT"]);
    ipt(&["-A", "CNI-FORWARD", "-d", &other_dst, "-j", "ACCEPT"]);

    let settings = bosun_tests::containerd::Settings::new(
        Path::new("/nonexistent"),
        &n.network,
        &n.bridge,
        n.pod_cidr.parse().unwrap(),
    );
    let problems = bosun_up::containerd::cleanup_host(&settings, &n.cgroup_root).await;
    let save = |t: &str| {
        let o = Command::new("iptables-save")
            .args(["-t", t])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (nat, filter) = (save("nat"), save("filter"));
    // The other network's rules stay; remove them before asserting, so a failure leaves none.
    let kept =
        nat.contains(&format!(":{other_chain} ")) && nat.contains(&format!("-j {other_chain}"));
    let other_src = format!("{other_ip}/32");
    let _ = Command::new("iptables")
        .args([
            "-t",
            "nat",
            "-D",
            "POSTROUTING",
            "-s",
            &other_src,
            "-m",
            "comment",
            "--comment",
            &comment(&other.network),
            "-j",
            &other_chain,
        ])
        .status();
    let _ = Command::new("iptables")
        .args(["-t", "nat", "-F", &other_chain])
        .status();
    let _ = Command::new("iptables")
        .args(["-t", "nat", "-X", &other_chain])
        .status();
    let _ = Command::new("iptables")
        .args(["-D", "CNI-FORWARD", "-d", &other_dst, "-j", "ACCEPT"])
        .status();
    if made_forward {
        // Only if empty: another process's pods may use it by now.
        let _ = Command::new("iptables")
            .args(["-X", "CNI-FORWARD"])
            .status();
    }
    assert!(problems.is_empty(), "{problems:?}");
    assert!(kept, "another network's rules were removed:\n{nat}");
    assert!(!nat.contains(&chain), "{chain} left:\n{nat}");
    assert!(
        !filter.contains(&dst),
        "CNI-FORWARD rule for {ip} left:\n{filter}"
    );
    assert!(
        filter.contains(":CNI-FORWARD") && filter.contains(&other_dst),
        "the shared chain and another network's rule in it stay:\n{filter}"
    );
}
