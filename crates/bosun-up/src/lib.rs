//! `bosun up`: a whole cluster on one machine, from one command. It starts its own
//! executable's subcommands as child processes (three `bosun store` members, `bosun
//! apiserver`, `bosun controller-manager`, `bosun scheduler`, `bosun kubelet`), over a private
//! containerd it starts itself (`--runtime cri`, the default) or hollow nodes (`--runtime
//! fake`), each logging to `<data-dir>/logs/<name>.log`; it waits for each one's health,
//! writes `<data-dir>/kubeconfig`, then supervises them: a component that exits stops the
//! whole cluster (components are not restarted). SIGTERM or Ctrl-C stops the components in
//! reverse order, removes the pod sandboxes, stops containerd and removes what the cluster
//! left on the machine (shims and pod processes, mounts, the CNI bridge and its iptables
//! rules, host-local allocations, the pod cgroups): only
//! the data dir stays, and `bosun up` on it again resumes the cluster with its objects.

#![forbid(unsafe_code)]

pub mod containerd;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bosun_kubelet::cidr::Ipv4Cidr;
use tokio::sync::watch;

use crate::containerd::{Containerd, Settings, log_tail, terminate};

/// The container runtime of the cluster's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    /// containerd through CRI: a private one started here, or the one at
    /// --container-runtime-endpoint.
    Cri,
    /// Hollow nodes: pods "run" without containers; no containerd, no root needed.
    Fake,
}

/// `bosun up`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct UpConfig {
    /// Where the cluster lives: the store members' data, containerd's root and state, the
    /// components' logs, the kubelet's root dir and pod logs, the kubeconfig. Default:
    /// /var/lib/bosun as root, else $HOME/.local/share/bosun.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The node's container runtime: `cri` (containerd) or `fake` (hollow nodes).
    #[arg(long, value_enum, default_value = "cri")]
    pub runtime: Runtime,
    /// Use the CRI runtime at this endpoint (unix:///path) instead of starting a private
    /// containerd. It is left as it is at exit (its pods too).
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// The pods' address range: the kubelet's --pod-cidr and the CNI network's range.
    #[arg(long, default_value = "10.88.0.0/16")]
    pub pod_cidr: Ipv4Cidr,
    /// The apiserver's port on 127.0.0.1 (kubectl's and the components').
    #[arg(long, default_value_t = 8080)]
    pub apiserver_port: u16,
    /// The three store members' client ports on 127.0.0.1.
    #[arg(long, value_delimiter = ',', default_value = "2379,22379,32379")]
    pub store_client_ports: Vec<u16>,
    /// The three store members' peer ports on 127.0.0.1.
    #[arg(long, value_delimiter = ',', default_value = "2380,22380,32380")]
    pub store_peer_ports: Vec<u16>,
    /// The controller-manager's /healthz and /metrics port.
    #[arg(long, default_value_t = 10257)]
    pub controller_manager_port: u16,
    /// The scheduler's /healthz and /metrics port.
    #[arg(long, default_value_t = 10259)]
    pub scheduler_port: u16,
    /// The kubelet's port (/healthz, /metrics, container logs and exec).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Hollow nodes with --runtime fake.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub node_count: u32,
    /// The CNI network's name (its host-local allocations are under
    /// /var/lib/cni/networks/<name>).
    #[arg(long, default_value = "bosun")]
    pub cni_network: String,
    /// The CNI bridge's name.
    #[arg(long, default_value = "bosun0")]
    pub cni_bridge: String,
    /// The pods' cgroup parent (the kubelet's --cgroup-root); removed at exit.
    #[arg(long, default_value = "/bosun")]
    pub cgroup_root: String,
    /// The kubelet's hard eviction thresholds (`bosun kubelet --help`): below them the node
    /// reports MemoryPressure or DiskPressure and takes no new pods.
    #[arg(long, default_value = bosun_kubelet::eviction::DEFAULT_EVICTION_HARD, value_parser = bosun_kubelet::eviction::parse)]
    pub eviction_hard: bosun_kubelet::eviction::EvictionHard,
    /// How long each component gets to become healthy.
    #[arg(long, default_value = "60s", value_parser = bosun_kubelet::config::parse_duration)]
    pub startup_timeout: Duration,
}

/// One component: its name (and log's), its arguments after the executable, and the URL
/// that answers 200 once it is healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    /// `store-m1`, `apiserver`, `controller-manager`, `scheduler`, `kubelet`.
    pub name: String,
    /// Its arguments (the subcommand first).
    pub args: Vec<String>,
    /// Its health URL.
    pub health: String,
}

/// The data dir when --data-dir is not given: /var/lib/bosun for root, else under $HOME.
pub fn default_data_dir(root: bool, home: Option<&Path>) -> PathBuf {
    match (root, home) {
        (true, _) | (false, None) => PathBuf::from("/var/lib/bosun"),
        (false, Some(h)) => h.join(".local/share/bosun"),
    }
}

impl UpConfig {
    /// The flags checked as a whole.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.store_client_ports.len() != 3 || self.store_peer_ports.len() != 3 {
            bail!("--store-client-ports and --store-peer-ports take three ports each");
        }
        let mut ports: Vec<u16> = self
            .store_client_ports
            .iter()
            .chain(&self.store_peer_ports)
            .copied()
            .chain([
                self.apiserver_port,
                self.controller_manager_port,
                self.scheduler_port,
                self.kubelet_port,
            ])
            .collect();
        ports.sort_unstable();
        if ports.contains(&0) {
            bail!("ports must not be 0");
        }
        if ports.windows(2).any(|w| w[0] == w[1]) {
            bail!("each component needs a port of its own");
        }
        if self.container_runtime_endpoint.is_some() && self.runtime == Runtime::Fake {
            bail!("--container-runtime-endpoint goes with --runtime cri");
        }
        Ok(())
    }

    /// The apiserver's URL.
    pub fn apiserver_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.apiserver_port)
    }

    /// The components in start order, for the data dir `dir` and the CRI `endpoint` (with
    /// --runtime cri).
    pub fn components(&self, dir: &Path, endpoint: Option<&str>) -> Vec<Component> {
        let s = |v: &str| v.to_string();
        let client = |i: usize| format!("http://127.0.0.1:{}", self.store_client_ports[i]);
        let peer = |i: usize| format!("http://127.0.0.1:{}", self.store_peer_ports[i]);
        let initial = (0..3)
            .map(|i| format!("m{}={}", i + 1, peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut out: Vec<Component> = (0..3)
            .map(|i| Component {
                name: format!("store-m{}", i + 1),
                args: vec![
                    s("store"),
                    s("--name"),
                    format!("m{}", i + 1),
                    s("--data-dir"),
                    dir.join("store")
                        .join(format!("m{}", i + 1))
                        .display()
                        .to_string(),
                    s("--listen-client-urls"),
                    client(i),
                    s("--advertise-client-urls"),
                    client(i),
                    s("--listen-peer-urls"),
                    peer(i),
                    s("--initial-advertise-peer-urls"),
                    peer(i),
                    s("--initial-cluster"),
                    initial.clone(),
                ],
                health: format!("{}/health", client(i)),
            })
            .collect();
        let api = self.apiserver_url();
        out.push(Component {
            name: s("apiserver"),
            args: vec![
                s("apiserver"),
                s("--etcd-servers"),
                (0..3).map(client).collect::<Vec<_>>().join(","),
                s("--listen"),
                format!("127.0.0.1:{}", self.apiserver_port),
            ],
            health: format!("{api}/healthz"),
        });
        for (name, port) in [
            ("controller-manager", self.controller_manager_port),
            ("scheduler", self.scheduler_port),
        ] {
            out.push(Component {
                name: s(name),
                args: vec![
                    s(name),
                    s("--apiserver"),
                    api.clone(),
                    s("--port"),
                    port.to_string(),
                ],
                health: format!("http://127.0.0.1:{port}/healthz"),
            });
        }
        let mut kubelet = vec![
            s("kubelet"),
            s("--apiserver"),
            api.clone(),
            s("--port"),
            self.kubelet_port.to_string(),
            s("--pod-cidr"),
            self.pod_cidr.to_string(),
            s("--node-ip"),
            s("127.0.0.1"),
        ];
        match self.runtime {
            Runtime::Fake => kubelet.extend([
                s("--runtime"),
                s("fake"),
                s("--node-name"),
                s("hollow"),
                s("--node-count"),
                self.node_count.to_string(),
            ]),
            Runtime::Cri => kubelet.extend([
                s("--runtime"),
                s("cri"),
                s("--container-runtime-endpoint"),
                endpoint.unwrap_or_default().to_string(),
                s("--pod-logs-dir"),
                dir.join("pod-logs").display().to_string(),
                s("--root-dir"),
                dir.join("kubelet").display().to_string(),
                s("--cgroup-root"),
                self.cgroup_root.clone(),
                s("--eviction-hard"),
                self.eviction_hard.to_string(),
            ]),
        }
        out.push(Component {
            name: s("kubelet"),
            args: kubelet,
            health: format!("http://127.0.0.1:{}/healthz", self.kubelet_port),
        });
        out
    }
}

/// A kubeconfig for the apiserver at `url` (plain HTTP, no credentials yet).
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {url}\n  name: bosun\ncontexts:\n- context:\n    cluster: bosun\n    user: admin\n  name: bosun\ncurrent-context: bosun\nusers:\n- name: admin\n  user: {{}}\n"
    )
}

/// The README's example Deployment (busybox httpd, three replicas, a readiness probe),
/// written to `<data-dir>/examples/web.yaml`.
pub const EXAMPLE: &str = include_str!("../../../deploy/examples/web.yaml");

/// What to try once the cluster is up.
pub fn try_next(dir: &Path, runtime: Runtime) -> String {
    let kc = dir.join("kubeconfig");
    let ex = dir.join("examples/web.yaml");
    let mut t = format!(
        "try:\n  export KUBECONFIG={}\n  kubectl get nodes\n  kubectl create -f {}\n  kubectl get pods -o wide -w\n",
        kc.display(),
        ex.display()
    );
    if runtime == Runtime::Cri {
        t.push_str("  curl http://<a pod IP>:8080/          # from this machine\n");
        t.push_str("  kubectl logs deploy/web\n");
    }
    t.push_str("  kubectl delete -f ");
    t.push_str(&ex.display().to_string());
    t.push('\n');
    t
}

/// An HTTP/1.1 GET on loopback: the status code, or `None` when nothing answers in a second.
pub async fn http_status(url: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < buf.len() {
            match s.read(&mut buf[n..]).await.ok()? {
                0 => break,
                k => n += k,
            }
            if buf[..n].contains(&b'\n') {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        head.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()?
}

/// A running component.
struct Running {
    spec: Component,
    log: PathBuf,
    child: tokio::process::Child,
}

/// How long a component gets to stop after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of a log shown when its component exits early.
const TAIL_LINES: usize = 20;

fn say(line: &str) {
    eprintln!("bosun up: {line}");
}

/// Runs the cluster until `shutdown` flips or a component exits; then stops everything.
pub async fn run(cfg: UpConfig, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    cfg.validate()?;
    let dir = match &cfg.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir(
            rustix::process::geteuid().is_root(),
            std::env::var_os("HOME").as_deref().map(Path::new),
        ),
    };
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("create the data dir {}", dir.display()))?;
    let dir = dir.canonicalize().context("the data dir's path")?;
    let settings = Settings::new(&dir, &cfg.cni_network, &cfg.cni_bridge, cfg.pod_cidr);
    stop_leftovers(&dir).await;

    // The runtime first: without it there is no point starting the rest.
    let mut containerd = None;
    let endpoint = match (cfg.runtime, &cfg.container_runtime_endpoint) {
        (Runtime::Fake, _) => None,
        (Runtime::Cri, Some(ep)) => Some(ep.clone()),
        (Runtime::Cri, None) => {
            // A run that was killed may have left its network and cgroups behind.
            for p in containerd::cleanup_host(&settings, &cfg.cgroup_root).await {
                say(&format!("cleaning up a previous run: {p}"));
            }
            let c = Containerd::start(settings.clone(), &cfg.cgroup_root)
                .await
                .context("start containerd (or run hollow nodes without it: --runtime fake)")?;
            say(&format!(
                "containerd          {}  log {}",
                c.endpoint(),
                settings.log_path().display()
            ));
            if let Err(e) = c.import_images().await {
                stop_containerd(c, &cfg.cgroup_root).await;
                return Err(e);
            }
            let ep = c.endpoint();
            record_pid(&dir, "containerd", c.pid());
            containerd = Some(c);
            Some(ep)
        }
    };

    let result = run_components(
        &cfg,
        &dir,
        endpoint.as_deref(),
        &mut containerd,
        &mut shutdown,
    )
    .await;

    if let Some(c) = containerd {
        stop_containerd(c, &cfg.cgroup_root).await;
    }
    // Everything recorded has stopped.
    let _ = std::fs::remove_file(dir.join(PIDS_FILE));
    if result.is_ok() {
        say(&format!(
            "stopped; the cluster's data stays in {}",
            dir.display()
        ));
    }
    result
}

/// Removes the cluster's sandboxes, stops containerd, cleans the host; says what failed.
async fn stop_containerd(c: Containerd, cgroup_root: &str) {
    for p in c.shutdown(cgroup_root).await {
        say(&format!("cleanup: {p}"));
    }
}

/// Starts the components in order (each healthy before the next), supervises them, and
/// stops them in reverse order.
async fn run_components(
    cfg: &UpConfig,
    dir: &Path,
    endpoint: Option<&str>,
    containerd: &mut Option<Containerd>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("find bosun's own executable")?;
    let specs = cfg.components(dir, endpoint);
    let mut running: Vec<Running> = Vec::new();
    let result = async {
        // The store members wait for each other: start all three, then wait for each.
        let stores = specs.iter().take_while(|s| s.name.starts_with("store-"));
        for spec in stores {
            running.push(spawn(&exe, dir, spec)?);
        }
        let n_stores = running.len();
        for i in 0..n_stores {
            wait_healthy(&mut running, i, cfg.startup_timeout, containerd, shutdown).await?;
        }
        for spec in &specs[n_stores..] {
            running.push(spawn(&exe, dir, spec)?);
            let i = running.len() - 1;
            wait_healthy(&mut running, i, cfg.startup_timeout, containerd, shutdown).await?;
            if spec.name == "apiserver" {
                std::fs::write(dir.join("kubeconfig"), kubeconfig(&cfg.apiserver_url()))
                    .context("write the kubeconfig")?;
            }
        }
        let want = match cfg.runtime {
            Runtime::Fake => cfg.node_count as usize,
            Runtime::Cri => 1,
        };
        wait_nodes_ready(cfg, want, &mut running, containerd, shutdown).await?;
        std::fs::create_dir_all(dir.join("examples"))?;
        std::fs::write(dir.join("examples/web.yaml"), EXAMPLE)?;
        say(&format!(
            "the cluster is up; kubeconfig {}; Ctrl-C stops it",
            dir.join("kubeconfig").display()
        ));
        eprint!("{}", try_next(dir, cfg.runtime));
        supervise(&mut running, containerd, shutdown).await
    }
    .await;
    // Reverse order: the kubelet first, the store members last.
    while let Some(mut r) = running.pop() {
        if !terminate(&mut r.child, STOP_TIMEOUT).await {
            say(&format!(
                "{} did not stop in {STOP_TIMEOUT:?}: killed",
                r.spec.name
            ));
        }
    }
    result
}

fn spawn(exe: &Path, dir: &Path, spec: &Component) -> anyhow::Result<Running> {
    let log = dir.join("logs").join(format!("{}.log", spec.name));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("open {}", log.display()))?;
    let child = tokio::process::Command::new(exe)
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        // Its own process group: a terminal's Ctrl-C reaches `bosun up` only, which stops
        // the components in order.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start bosun {}", spec.args[0]))?;
    record_pid(dir, &spec.name, child.id());
    Ok(Running {
        spec: spec.clone(),
        log,
        child,
    })
}

/// `<data-dir>/pids`: `<pid> <start time> <name>` of every child while `bosun up` runs, so
/// that a run after a `bosun up` killed by SIGKILL stops what that one left running.
const PIDS_FILE: &str = "pids";

/// A process's start time (clock ticks since boot, /proc/<pid>/stat's 22nd field): with the
/// PID, it names one process, never a later one that reuses the PID. `None` once it has
/// exited (a zombie waiting for its parent included).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

fn record_pid(dir: &Path, name: &str, pid: Option<u32>) {
    use std::io::Write as _;
    let Some(pid) = pid else { return };
    let Some(start) = start_time(pid) else { return };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(PIDS_FILE))
    {
        let _ = writeln!(f, "{pid} {start} {name}");
    }
}

/// Of a pids file, the processes still running: those whose PID has the recorded start time.
pub fn leftovers(text: &str, start_time: impl Fn(u32) -> Option<u64>) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let pid: u32 = w.next()?.parse().ok()?;
            let start: u64 = w.next()?.parse().ok()?;
            let name = w.next()?.to_string();
            (start_time(pid) == Some(start)).then_some((pid, name))
        })
        .collect()
}

/// Stops (SIGTERM, 15 s, SIGKILL) what a previous `bosun up` on this data dir left running,
/// most recent first.
async fn stop_leftovers(dir: &Path) {
    let path = dir.join(PIDS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return;
    };
    for (pid, name) in leftovers(&text, start_time).into_iter().rev() {
        say(&format!(
            "stopping {name} (pid {pid}), left running by a previous bosun up"
        ));
        let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        let start = start_time(pid);
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while start_time(pid) == start && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if start_time(pid) == start {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// The error for a component that exited.
fn exited(r: &Running, status: std::process::ExitStatus) -> anyhow::Error {
    anyhow::anyhow!(
        "{} exited ({status}); the last lines of {}:\n{}",
        r.spec.name,
        r.log.display(),
        log_tail(&r.log, TAIL_LINES)
    )
}

/// The first component (or containerd) that has exited, as an error.
fn check_exits(running: &mut [Running], containerd: &mut Option<Containerd>) -> anyhow::Result<()> {
    for r in running.iter_mut() {
        if let Ok(Some(status)) = r.child.try_wait() {
            return Err(exited(r, status));
        }
    }
    if let Some(c) = containerd
        && let Some(status) = c.exited()
    {
        bail!(
            "containerd exited ({status}); the last lines of {}:\n{}",
            c.settings.log_path().display(),
            log_tail(&c.settings.log_path(), TAIL_LINES)
        );
    }
    Ok(())
}

/// Waits until component `i` answers its health URL with 200, printing its line.
async fn wait_healthy(
    running: &mut [Running],
    i: usize,
    timeout: Duration,
    containerd: &mut Option<Containerd>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    loop {
        check_exits(running, containerd)?;
        if *shutdown.borrow() {
            bail!("stopped while starting");
        }
        let r = &running[i];
        if http_status(&r.spec.health).await == Some(200) {
            say(&format!(
                "{:<19} {:<34} healthy in {:.1}s  log {}",
                r.spec.name,
                r.spec.health,
                start.elapsed().as_secs_f64(),
                r.log.display()
            ));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not healthy at {} in {timeout:?}; the last lines of {}:\n{}",
                r.spec.name,
                r.spec.health,
                r.log.display(),
                log_tail(&r.log, TAIL_LINES)
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The nodes of a `NodeList` (JSON): name, whether Ready is True, and the Ready condition's
/// message.
pub fn nodes_ready(list: &serde_json::Value) -> Vec<(String, bool, String)> {
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    items
        .iter()
        .map(|n| {
            let name = n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let ready = n["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
            let ok = ready.is_some_and(|c| c["status"] == "True");
            let msg = ready
                .and_then(|c| c["message"].as_str())
                .unwrap_or("no Ready condition yet")
                .to_string();
            (name, ok, msg)
        })
        .collect()
}

/// An HTTP/1.0 GET on loopback (no chunked body): the body of a 200, within two seconds.
async fn http_body(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
        let req =
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1)? == "200").then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fut)
        .await
        .ok()?
}

/// Waits (up to --startup-timeout) until `want` nodes are registered and Ready, printing a
/// line per node; a node not Ready by then is reported, not fatal (its kubelet keeps trying).
async fn wait_nodes_ready(
    cfg: &UpConfig,
    want: usize,
    running: &mut [Running],
    containerd: &mut Option<Containerd>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let url = format!("{}/api/v1/nodes", cfg.apiserver_url());
    let start = Instant::now();
    let mut last = Vec::new();
    while start.elapsed() < cfg.startup_timeout {
        check_exits(running, containerd)?;
        if *shutdown.borrow() {
            bail!("stopped while starting");
        }
        if let Some(body) = http_body(&url).await
            && let Ok(list) = serde_json::from_str::<serde_json::Value>(&body)
        {
            last = nodes_ready(&list);
            if last.len() >= want && last.iter().all(|(_, ok, _)| *ok) {
                for (name, _, _) in &last {
                    say(&format!(
                        "node {name:<14} Ready in {:.1}s",
                        start.elapsed().as_secs_f64()
                    ));
                }
                return Ok(());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
    }
    if last.is_empty() {
        say(&format!(
            "no node registered in {:?}; see the kubelet's log",
            cfg.startup_timeout
        ));
    }
    for (name, _, msg) in last.iter().filter(|(_, ok, _)| !ok) {
        say(&format!("node {name} not Ready yet: {msg}"));
    }
    Ok(())
}

/// Until SIGTERM/Ctrl-C (Ok) or a component's exit (its error).
async fn supervise(
    running: &mut [Running],
    containerd: &mut Option<Containerd>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        check_exits(running, containerd)?;
        if *shutdown.borrow() {
            say("stopping");
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: UpConfig,
    }

    fn parse(args: &[&str]) -> Result<UpConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("up").chain(args.iter().copied())).map(|c| c.cfg)
    }

    fn args_of<'a>(c: &'a [Component], name: &str) -> &'a [String] {
        &c.iter().find(|c| c.name == name).unwrap().args
    }

    fn flag<'a>(args: &'a [String], f: &str) -> Option<&'a str> {
        args.iter()
            .position(|a| a == f)
            .map(|i| args[i + 1].as_str())
    }

    #[test]
    fn defaults_are_run_shs() {
        let c = parse(&[]).unwrap();
        c.validate().unwrap();
        assert_eq!(c.runtime, Runtime::Cri);
        assert_eq!(c.apiserver_url(), "http://127.0.0.1:8080");
        let comps = c.components(
            Path::new("/d"),
            Some("unix:///d/containerd/containerd.sock"),
        );
        let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "store-m1",
                "store-m2",
                "store-m3",
                "apiserver",
                "controller-manager",
                "scheduler",
                "kubelet"
            ]
        );
        let m2 = args_of(&comps, "store-m2");
        assert_eq!(flag(m2, "--data-dir"), Some("/d/store/m2"));
        assert_eq!(
            flag(m2, "--listen-client-urls"),
            Some("http://127.0.0.1:22379")
        );
        assert_eq!(
            flag(m2, "--listen-peer-urls"),
            Some("http://127.0.0.1:22380")
        );
        assert_eq!(
            flag(m2, "--initial-cluster"),
            Some("m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380")
        );
        assert_eq!(comps[1].health, "http://127.0.0.1:22379/health");
        assert_eq!(
            flag(args_of(&comps, "apiserver"), "--etcd-servers"),
            Some("http://127.0.0.1:2379,http://127.0.0.1:22379,http://127.0.0.1:32379")
        );
        assert_eq!(comps[4].health, "http://127.0.0.1:10257/healthz");
        assert_eq!(comps[5].health, "http://127.0.0.1:10259/healthz");
        let k = args_of(&comps, "kubelet");
        assert_eq!(flag(k, "--runtime"), Some("cri"));
        assert_eq!(
            flag(k, "--container-runtime-endpoint"),
            Some("unix:///d/containerd/containerd.sock")
        );
        assert_eq!(flag(k, "--pod-logs-dir"), Some("/d/pod-logs"));
        assert_eq!(flag(k, "--root-dir"), Some("/d/kubelet"));
        assert_eq!(flag(k, "--cgroup-root"), Some("/bosun"));
        assert_eq!(flag(k, "--node-ip"), Some("127.0.0.1"));
        assert_eq!(flag(k, "--pod-cidr"), Some("10.88.0.0/16"));
        assert_eq!(flag(k, "--port"), Some("10250"));
        assert_eq!(flag(k, "--node-count"), None);
        assert_eq!(
            flag(k, "--eviction-hard"),
            Some("memory.available<100Mi,nodefs.available<10%")
        );
    }

    #[test]
    fn fake_runs_hollow_nodes_without_containerd_flags() {
        let c = parse(&[
            "--runtime",
            "fake",
            "--pod-cidr",
            "10.50.0.0/16",
            "--apiserver-port",
            "18080",
        ])
        .unwrap();
        c.validate().unwrap();
        let comps = c.components(Path::new("/d"), None);
        let k = args_of(&comps, "kubelet");
        assert_eq!(flag(k, "--runtime"), Some("fake"));
        assert_eq!(flag(k, "--node-count"), Some("3"));
        assert_eq!(flag(k, "--pod-cidr"), Some("10.50.0.0/16"));
        assert_eq!(flag(k, "--apiserver"), Some("http://127.0.0.1:18080"));
        assert_eq!(flag(k, "--container-runtime-endpoint"), None);
        assert_eq!(flag(k, "--cgroup-root"), None);
        assert_eq!(
            flag(args_of(&comps, "apiserver"), "--listen"),
            Some("127.0.0.1:18080")
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--pod-cidr", "10.0.0.0"]).is_err());
        assert!(parse(&["--store-client-ports", "1,x"]).is_err());
        let c = parse(&["--store-client-ports", "1,2"]).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("three ports")
        );
        assert!(parse(&["--runtime", "docker"]).is_err());
        let c = parse(&["--kubelet-port", "8080"]).unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("port of its own")
        );
        let c = parse(&[
            "--runtime",
            "fake",
            "--container-runtime-endpoint",
            "unix:///x",
        ])
        .unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn data_dir_defaults() {
        assert_eq!(
            default_data_dir(true, Some(Path::new("/root"))),
            PathBuf::from("/var/lib/bosun")
        );
        assert_eq!(
            default_data_dir(false, Some(Path::new("/home/u"))),
            PathBuf::from("/home/u/.local/share/bosun")
        );
    }

    #[test]
    fn the_example_is_a_busybox_deployment_with_a_probe() {
        for want in [
            "kind: Deployment",
            "replicas: 3",
            "imagePullPolicy: IfNotPresent",
            "httpd -f -p 8080 -h /www",
            "readinessProbe",
        ] {
            assert!(EXAMPLE.contains(want), "{want}");
        }
        let t = try_next(Path::new("/d"), Runtime::Fake);
        assert!(t.contains("export KUBECONFIG=/d/kubeconfig"), "{t}");
        assert!(t.contains("kubectl create -f /d/examples/web.yaml"), "{t}");
    }

    #[test]
    fn leftovers_are_the_recorded_processes_still_running() {
        let text = "10 500 store-m1\n11 501 apiserver\n12 502 kubelet\nbad line\n";
        // 10 runs as recorded, 11 is gone, 12 is a new process with the same PID.
        let now = |pid: u32| match pid {
            10 => Some(500),
            12 => Some(999),
            _ => None,
        };
        assert_eq!(leftovers(text, now), vec![(10, "store-m1".to_string())]);
        assert!(start_time(std::process::id()).is_some());
    }

    #[test]
    fn nodes_ready_reads_the_ready_condition() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True", "message": "kubelet is posting ready status"}]}},
            {"metadata": {"name": "b"}, "status": {"conditions": [
                {"type": "Ready", "status": "False", "message": "container runtime network not ready"}]}},
            {"metadata": {"name": "c"}}
        ]});
        let got = nodes_ready(&list);
        assert_eq!(
            got[0],
            ("a".into(), true, "kubelet is posting ready status".into())
        );
        assert_eq!(
            got[1],
            (
                "b".into(),
                false,
                "container runtime network not ready".into()
            )
        );
        assert_eq!(got[2], ("c".into(), false, "no Ready condition yet".into()));
        assert!(nodes_ready(&serde_json::json!({})).is_empty());
    }

    #[tokio::test]
    async fn health_is_read_from_the_status_line() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = l.accept().await {
                let mut b = [0u8; 256];
                let _ = s.read(&mut b).await;
                let _ = s
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        assert_eq!(
            http_status(&format!("http://{addr}/healthz")).await,
            Some(503)
        );
        drop(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        assert_eq!(http_status("http://127.0.0.1:1/healthz").await, None);
    }
}
