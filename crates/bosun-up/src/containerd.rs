//! A private containerd for one cluster: its config and CNI network under a data dir, started
//! as a child process, checked ready through CRI (`Version`, `Status` with RuntimeReady and
//! NetworkReady), the images imported, stopped by PID, and everything a cluster leaves on the
//! machine cleaned up (pod sandboxes through CRI; then, with containerd stopped, the shims
//! and pod processes it left, killed by PID, the mounts under its dir, the CNI bridge,
//! host-local allocations and libcni's cache, leftover CNI iptables chains of its network
//! and the firewall plugin's once unused, the network's masquerade rule, the pod cgroups).
//!
//! Used by `bosun up` and by the integration tests (`bosun_tests::containerd`). The settings
//! were verified end to end (a pod's whole CRI lifecycle) on Debian 12 VMs with containerd
//! 1.6: root without CAP_SYS_RESOURCE, no systemd, no registry reachable.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use bosun_kubelet::cidr::Ipv4Cidr;
pub use bosun_kubelet::cri::CriClient;
pub use k8s_cri::v1 as cri;

/// The sandbox (pause) image `deploy/images.sh` imports; containerd's `sandbox_image`.
pub const SANDBOX_IMAGE: &str = "bosun.local/pause:latest";
/// The busybox image `deploy/images.sh` imports (pods name it `busybox`).
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:latest";
/// Where Debian installs the CNI plugins (containerd's default is /opt/cni/bin).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The apt-get line that installs what a containerd cluster needs.
pub const APT_LINE: &str = "apt-get install -y containerd runc containernetworking-plugins iptables iproute2 busybox-static umoci";

/// `deploy/images.sh`, run with bash to build and import the images.
const IMAGES_SCRIPT: &str = include_str!("../../../deploy/images.sh");

/// How long containerd gets to come up (socket, CRI ready), and to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Every CRI call made here.
const CRI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long stopping and removing every pod sandbox through CRI may take at the end, in all
/// (a runtime that does not answer must not hold the cleanup up).
const SANDBOX_TEARDOWN: Duration = Duration::from_secs(10);
/// How long killed leftover processes get to exit, and emptied cgroups to go.
const LEFTOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// How many [`Containerd`]s of this process run: the CNI chains every network shares are
/// removed only by the last one to stop (another may be adding a pod to them).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What a private containerd is made of: where it lives and its CNI network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Its directory: config, root, state, socket, CNI conf dir and log, all under it.
    pub dir: PathBuf,
    /// The CNI network's name (host-local keeps its allocations under
    /// /var/lib/cni/networks/<name>; iptables comments carry it).
    pub network: String,
    /// The Linux bridge the pods attach to (at most 15 characters).
    pub bridge: String,
    /// The pods' address range (the kubelet's --pod-cidr).
    pub pod_cidr: Ipv4Cidr,
}

impl Settings {
    /// The settings of `bosun up` over `data_dir`.
    pub fn new(data_dir: &Path, network: &str, bridge: &str, pod_cidr: Ipv4Cidr) -> Settings {
        Settings {
            dir: data_dir.join("containerd"),
            network: network.into(),
            bridge: bridge.into(),
            pod_cidr,
        }
    }

    /// The names checked: a bridge name the kernel takes, a network name CNI takes.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.bridge.is_empty()
            || self.bridge.len() > 15
            || !self
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "CNI bridge name {:?}: 1 to 15 letters, digits, '-' or '_'",
                self.bridge
            );
        }
        if self.network.is_empty()
            || !self
                .network
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            bail!(
                "CNI network name {:?}: letters, digits, '-', '_' or '.'",
                self.network
            );
        }
        // A unix socket's path is at most 107 bytes (sun_path); containerd's shims add theirs.
        let socket = self.socket().display().to_string();
        if socket.len() > 100 {
            bail!(
                "containerd's socket {socket} would be longer than a unix socket path may be: use a shorter --data-dir"
            );
        }
        if self.pod_cidr.prefix() > 28 {
            bail!("pod CIDR {} is too small for a node", self.pod_cidr);
        }
        Ok(())
    }

    /// containerd's config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// The CRI endpoint, as the kubelet's --container-runtime-endpoint takes it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The CNI conf dir (one conflist in it).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// containerd's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    /// containerd's config (version 2, containerd 1.6): everything of its under `dir`, the
    /// settings this machine needs (see the module's doc).
    pub fn config_toml(&self) -> String {
        let d = self.dir.display();
        let q = |s: String| serde_json::Value::String(s).to_string();
        let mut t = String::new();
        let _ = writeln!(t, "version = 2");
        let _ = writeln!(t, "root = {}", q(format!("{d}/root")));
        let _ = writeln!(t, "state = {}", q(format!("{d}/state")));
        let _ = writeln!(
            t,
            "disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\"]"
        );
        let _ = writeln!(t, "[grpc]");
        let _ = writeln!(t, "  address = {}", q(self.socket().display().to_string()));
        let _ = writeln!(t, "[plugins.\"io.containerd.internal.v1.opt\"]");
        let _ = writeln!(t, "  path = {}", q(format!("{d}/opt")));
        let _ = writeln!(t, "[plugins.\"io.containerd.grpc.v1.cri\"]");
        // Root here cannot lower oom_score_adj (no CAP_SYS_RESOURCE in the VM): without this
        // every sandbox fails in runc.
        let _ = writeln!(t, "  restrict_oom_score_adj = true");
        let _ = writeln!(t, "  sandbox_image = {}", q(SANDBOX_IMAGE.into()));
        let _ = writeln!(t, "  netns_mounts_under_state_dir = true");
        let _ = writeln!(t, "  [plugins.\"io.containerd.grpc.v1.cri\".cni]");
        let _ = writeln!(t, "    bin_dir = {}", q(CNI_BIN_DIR.into()));
        let _ = writeln!(
            t,
            "    conf_dir = {}",
            q(self.cni_conf_dir().display().to_string())
        );
        // The runc runtime's table replaces the default one whole: its type must be given.
        let _ = writeln!(
            t,
            "  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]"
        );
        let _ = writeln!(t, "    runtime_type = \"io.containerd.runc.v2\"");
        let _ = writeln!(
            t,
            "    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]"
        );
        let _ = writeln!(t, "      Root = {}", q(format!("{d}/state/runc")));
        t
    }

    /// The CNI conflist: a bridge of its own (gateway, hairpin), host-local addresses over
    /// the pod CIDR, portmap for hostPorts, and the firewall plugin only when `forward_drops`
    /// (the host's FORWARD chain drops by default, as Docker sets it: then pods' traffic must
    /// be let through; otherwise its iptables calls only cost every sandbox about 150 ms on
    /// two CPUs, and containerd's own default conflist has none). The bridge does not
    /// masquerade (`ipMasq: false`): its chain per pod cost every sandbox about 15 iptables
    /// runs between ADD and DEL; the one rule of [`masquerade_rule`], set up while containerd
    /// runs, does it for the whole range (as Kubernetes' kubenet did).
    pub fn conflist(&self, forward_drops: bool) -> String {
        let mut v = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": self.pod_cidr.to_string()}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        if forward_drops && let Some(p) = v["plugins"].as_array_mut() {
            p.push(serde_json::json!({"type": "firewall"}));
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Writes the config and the conflist (the conflist before containerd starts: containerd
    /// 1.6 misses one that appears later by rename).
    pub fn write_files(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.cni_conf_dir())
            .with_context(|| format!("create {}", self.cni_conf_dir().display()))?;
        std::fs::write(self.config_path(), self.config_toml())
            .with_context(|| format!("write {}", self.config_path().display()))?;
        std::fs::write(
            self.cni_conf_dir().join("10-bosun.conflist"),
            self.conflist(forward_drops()),
        )
        .context("write the CNI conflist")?;
        Ok(())
    }
}

/// The comment of the network's masquerade rule ([`masquerade_rule`]), which names it.
pub fn masquerade_comment(network: &str) -> String {
    format!("bosun: SNAT for outbound traffic from CNI network {network}")
}

/// The nat table's POSTROUTING rule (the arguments after `-t nat -A POSTROUTING`) that
/// masquerades what the pods of `pod_cidr` send out of their range, to an address that is
/// neither the host's own nor multicast (the bridge plugin's `ipMasq` excludes multicast;
/// Kubernetes' kubenet excluded local addresses with `-m addrtype ! --dst-type LOCAL`).
pub fn masquerade_rule(network: &str, pod_cidr: &Ipv4Cidr) -> Vec<String> {
    let cidr = pod_cidr.to_string();
    [
        "-s",
        &cidr,
        "!",
        "-d",
        &cidr,
        "-m",
        "comment",
        "--comment",
        &masquerade_comment(network),
        "-m",
        "addrtype",
        "!",
        "--dst-type",
        "LOCAL,MULTICAST",
        "-j",
        "MASQUERADE",
    ]
    .map(String::from)
    .to_vec()
}

/// Makes sure the network's masquerade rule is in POSTROUTING (`-C`, then `-A` when it is
/// missing, as Kubernetes' `EnsureRule`).
async fn ensure_masquerade(network: &str, pod_cidr: &Ipv4Cidr) -> anyhow::Result<()> {
    let rule = masquerade_rule(network, pod_cidr);
    let iptables = |op: &'static str| {
        let rule = rule.clone();
        async move {
            tokio::process::Command::new("iptables")
                .args(["-w", "-t", "nat", op, "POSTROUTING"])
                .args(&rule)
                .stdin(Stdio::null())
                .output()
                .await
                .with_context(|| format!("run iptables -t nat {op} POSTROUTING"))
        }
    };
    if iptables("-C").await?.status.success() {
        return Ok(());
    }
    let out = iptables("-A").await?;
    if !out.status.success() {
        bail!(
            "iptables -t nat -A POSTROUTING {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether the host's iptables FORWARD chain drops what no rule accepts (`-P FORWARD DROP`).
pub fn forward_drops() -> bool {
    std::process::Command::new("iptables")
        .args(["-S", "FORWARD"])
        .output()
        .is_ok_and(|o| policy_drops(&String::from_utf8_lossy(&o.stdout)))
}

/// Whether `iptables -S FORWARD` output sets a DROP (or REJECT) policy.
fn policy_drops(rules: &str) -> bool {
    rules
        .lines()
        .any(|l| l.trim() == "-P FORWARD DROP" || l.trim() == "-P FORWARD REJECT")
}

/// The commands and files a private containerd needs, each with the package that has it.
pub const NEEDED: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("umoci", "umoci"),
    ("/bin/busybox", "busybox-static"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/usr/lib/cni/host-local", "containernetworking-plugins"),
    ("/usr/lib/cni/portmap", "containernetworking-plugins"),
    ("/usr/lib/cni/firewall", "containernetworking-plugins"),
    ("/usr/lib/cni/loopback", "containernetworking-plugins"),
];

/// Of [`NEEDED`], what `present` says is missing (commands are looked up on PATH, paths
/// as they are).
pub fn missing(present: impl Fn(&str) -> bool) -> Vec<(&'static str, &'static str)> {
    NEEDED
        .iter()
        .copied()
        .filter(|(n, _)| !present(n))
        .collect()
}

/// The error for what is missing: what, the packages to install, and the alternative.
pub fn missing_message(missing: &[(&str, &str)]) -> String {
    let names: Vec<&str> = missing.iter().map(|(n, _)| *n).collect();
    let mut pkgs: Vec<&str> = missing.iter().map(|(_, p)| *p).collect();
    pkgs.dedup();
    format!(
        "a containerd cluster needs {} (missing: {}): install them with `apt-get install -y {}` (or deploy/install-deps.sh, which installs them all), or run hollow nodes without containerd with --runtime fake",
        pkgs.join(", "),
        names.join(", "),
        pkgs.join(" ")
    )
}

/// Whether `name` (a command on PATH, or a path) is there.
pub fn present(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(name).is_file()))
}

/// Checks the tools are installed and the process is root; the error says how to fix it.
pub fn preflight() -> anyhow::Result<()> {
    let gone = missing(present);
    if !gone.is_empty() {
        bail!("{}", missing_message(&gone));
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "containerd runs pods only as root: run bosun up as root, or with --runtime fake (hollow nodes) as any user"
        );
    }
    Ok(())
}

/// Why a CRI `Status` is not ready yet, or `None` when RuntimeReady and NetworkReady hold.
pub fn not_ready(status: &cri::StatusResponse) -> Option<String> {
    let conditions = status
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    for want in ["RuntimeReady", "NetworkReady"] {
        match conditions.iter().find(|c| c.r#type == want) {
            Some(c) if c.status => {}
            Some(c) => return Some(format!("{want} is false: {} {}", c.reason, c.message)),
            None => return Some(format!("no {want} condition")),
        }
    }
    None
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Sends SIGTERM to a child, waits up to `within`, then SIGKILLs it; reaps it either way.
/// Returns whether it stopped on SIGTERM.
pub async fn terminate(child: &mut tokio::process::Child, within: Duration) -> bool {
    let Some(pid) = child.id() else {
        return true; // already reaped
    };
    signal(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(within, child.wait()).await.is_ok() {
        return true;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    false
}

/// A containerd started here, stopped by PID.
#[derive(Debug)]
pub struct Containerd {
    /// Its settings.
    pub settings: Settings,
    /// A CRI connection to it.
    pub cri: CriClient,
    child: tokio::process::Child,
}

impl Containerd {
    /// Writes the config and conflist, starts containerd in its cgroup under `cgroup_root`
    /// ([`runtime_cgroup`]: its shims start there too), waits until its CRI answers
    /// `Version` and `Status` says runtime and network ready, then adds the pods'
    /// masquerade rule ([`masquerade_rule`]). A containerd that exits or is not ready in
    /// time is stopped, and the error carries its log's last lines.
    pub async fn start(settings: Settings, cgroup_root: &str) -> anyhow::Result<Containerd> {
        settings.validate()?;
        preflight()?;
        settings.write_files()?;
        record_ip_forward(&settings.dir);
        let _ = std::fs::remove_file(settings.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(settings.log_path())
            .with_context(|| format!("open {}", settings.log_path().display()))?;
        let mut child = tokio::process::Command::new("containerd")
            .arg("--config")
            .arg(settings.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("start containerd")?;
        // Before it starts any shim (none until a task is made through it).
        if let (Some(cgroup), Some(pid)) = (runtime_cgroup(cgroup_root), child.id())
            && let Err(e) = std::fs::create_dir_all(&cgroup)
                .and_then(|()| std::fs::write(cgroup.join("cgroup.procs"), pid.to_string()))
        {
            tracing::warn!(cgroup = %cgroup.display(), "containerd stays in this process's cgroup: {e}");
        }
        let cri = CriClient::connect(&settings.endpoint(), CRI_TIMEOUT)?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut why = String::from("its socket is not there");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                bail!(
                    "containerd exited at start ({status}); the last lines of {}:\n{}",
                    settings.log_path().display(),
                    log_tail(&settings.log_path(), 20)
                );
            }
            if settings.socket().exists() {
                match ready(&cri).await {
                    Ok(()) => break,
                    Err(e) => why = format!("{e:#}"),
                }
            }
            if Instant::now() > deadline {
                terminate(&mut child, STOP_TIMEOUT).await;
                bail!(
                    "containerd not ready in {START_TIMEOUT:?}: {why}; the last lines of {}:\n{}",
                    settings.log_path().display(),
                    log_tail(&settings.log_path(), 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The pods' way out, last: nothing above fails after it ([`cleanup_host`] removes it).
        if let Err(e) = ensure_masquerade(&settings.network, &settings.pod_cidr).await {
            terminate(&mut child, STOP_TIMEOUT).await;
            return Err(e.context("set up the pods' masquerade rule"));
        }
        RUNNING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Containerd {
            settings,
            cri,
            child,
        })
    }

    /// Its PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The CRI endpoint (`unix://...`).
    pub fn endpoint(&self) -> String {
        self.settings.endpoint()
    }

    /// Whether it has exited by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Imports the busybox and pause images (`deploy/images.sh`) unless both are there.
    pub async fn import_images(&self) -> anyhow::Result<()> {
        import_images(&self.cri, &self.settings.socket(), &self.settings.dir).await
    }

    /// Stops containerd: SIGTERM, then SIGKILL after a bound.
    pub async fn stop(mut self) {
        terminate(&mut self.child, STOP_TIMEOUT).await;
        RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The end of a cluster: every pod sandbox stopped and removed through CRI (so that CNI
    /// DEL runs; within [`SANDBOX_TEARDOWN`]), containerd stopped, then [`cleanup_host`]
    /// (which also kills the shims and pods it left, unmounts what they left mounted and
    /// removes the cgroups). Goes on past failures; returns them.
    pub async fn shutdown(self, cgroup_root: &str) -> Vec<String> {
        let mut problems = Vec::new();
        match tokio::time::timeout(SANDBOX_TEARDOWN, remove_sandboxes(&self.cri)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("{e:#}")),
            Err(_) => problems.push(format!(
                "removing the pod sandboxes through CRI took over {SANDBOX_TEARDOWN:?}: given up"
            )),
        }
        let settings = self.settings.clone();
        self.stop().await;
        problems.extend(cleanup_host(&settings, cgroup_root).await);
        problems
    }
}

/// CRI `Version` answers and `Status` is ready.
async fn ready(cri: &CriClient) -> anyhow::Result<()> {
    let mut rt = cri.runtime.clone();
    rt.version(cri::VersionRequest::default())
        .await
        .context("CRI Version")?;
    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .context("CRI Status")?
        .into_inner();
    match not_ready(&status) {
        None => Ok(()),
        Some(why) => bail!("{why}"),
    }
}

/// Whether the runtime has `image`.
async fn has_image(cri: &CriClient, image: &str) -> anyhow::Result<bool> {
    let resp = cri
        .images
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .context("CRI ImageStatus")?
        .into_inner();
    Ok(resp.image.is_some())
}

/// Imports the busybox and pause images into the containerd at `socket` with
/// `deploy/images.sh` (its work files under `work`), unless both are there already.
pub async fn import_images(cri: &CriClient, socket: &Path, work: &Path) -> anyhow::Result<()> {
    if has_image(cri, SANDBOX_IMAGE).await? && has_image(cri, BUSYBOX_IMAGE).await? {
        return Ok(());
    }
    let script = work.join("images.sh");
    std::fs::write(&script, IMAGES_SCRIPT).context("write images.sh")?;
    let out = tokio::process::Command::new("bash")
        .arg(&script)
        .arg(socket)
        .arg(work.join("images"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("run bash images.sh")?;
    if !out.status.success() {
        bail!(
            "importing the images failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Stops and removes every pod sandbox of the runtime (StopPodSandbox runs CNI DEL, which
/// releases the pod's address and removes its iptables rules). Returns how many; the first
/// error after trying them all.
pub async fn remove_sandboxes(cri: &CriClient) -> anyhow::Result<usize> {
    let mut rt = cri.runtime.clone();
    let list = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .context("CRI ListPodSandbox")?
        .into_inner()
        .items;
    let mut first_err = None;
    for sb in &list {
        let stop = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        let remove = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: sb.id.clone(),
            })
            .await;
        if let Err(e) = stop.and(remove) {
            first_err.get_or_insert(anyhow::anyhow!("remove sandbox {}: {e}", sb.id));
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(list.len()),
    }
}

/// The CNI chains every network shares (portmap's and firewall's): never removed here.
const SHARED_CHAINS: &[&str] = &[
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SNAT",
    "CNI-HOSTPORT-MASQ",
    "CNI-HOSTPORT-SETMARK",
    "CNI-FORWARD",
    "CNI-ADMIN",
];

/// From one table of `iptables-save` output, the `iptables-restore --noflush` input that
/// removes what CNI left of `network` over `pod_cidr`: rules whose comment names the network
/// (bridge's masquerade jumps, portmap's DNAT jumps) and the per-pod chains they jump to,
/// the firewall plugin's rules for pod addresses of the range in CNI-FORWARD, and the
/// network's own masquerade rule ([`masquerade_rule`]). `None` when there is nothing to
/// remove.
pub fn iptables_leftovers(save: &str, network: &str, pod_cidr: &Ipv4Cidr) -> Option<String> {
    let marker = format!("name: \\\"{network}\\\"");
    // iptables-save quotes the comment: the closing quote keeps `bosun` from `bosun-dev`.
    let masquerade = format!("--comment \"{}\"", masquerade_comment(network));
    let mut table = None;
    let mut deletes = Vec::new();
    let mut chains = Vec::new();
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = Some(t.to_string());
            continue;
        }
        let Some(rule) = line.strip_prefix("-A ") else {
            continue;
        };
        let words: Vec<&str> = rule.split_whitespace().collect();
        let chain = words.first().copied().unwrap_or_default();
        let target = words
            .iter()
            .position(|w| *w == "-j")
            .and_then(|i| words.get(i + 1))
            .copied();
        let ours_by_comment = rule.contains(&marker) || rule.contains(&masquerade);
        let ours_by_address = chain == "CNI-FORWARD"
            && words.windows(2).any(|w| {
                (w[0] == "-s" || w[0] == "-d")
                    && w[1]
                        .split('/')
                        .next()
                        .and_then(|a| a.parse().ok())
                        .is_some_and(|ip| pod_cidr.contains(ip))
            });
        if ours_by_comment || ours_by_address {
            deletes.push(format!("-D {rule}"));
            if let Some(t) = target
                && t.starts_with("CNI-")
                && !SHARED_CHAINS.contains(&t)
                && !chains.iter().any(|c: &String| c == t)
            {
                chains.push(t.to_string());
            }
        }
    }
    if deletes.is_empty() {
        return None;
    }
    let mut out = format!("*{}\n", table.unwrap_or_else(|| "filter".into()));
    for d in deletes {
        out.push_str(&d);
        out.push('\n');
    }
    for c in &chains {
        out.push_str(&format!("-F {c}\n-X {c}\n"));
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// `iptables-save -t <table>` output.
async fn iptables_save(table: &str) -> anyhow::Result<String> {
    let save = tokio::process::Command::new("iptables-save")
        .args(["-t", table])
        .output()
        .await
        .context("run iptables-save")?;
    Ok(String::from_utf8_lossy(&save.stdout).into_owned())
}

/// Applies `input` with `iptables-restore --noflush` (one transaction).
async fn iptables_restore(input: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("run iptables-restore")?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(input.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "iptables-restore: {}: {}",
            input.lines().next().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes leftover CNI iptables rules and chains of the network from the nat and filter
/// tables; then, unless another containerd of this process still runs, the firewall
/// plugin's shared chains if no network uses them any more ([`unused_firewall_chains`]).
async fn remove_iptables_leftovers(network: &str, pod_cidr: &Ipv4Cidr) -> anyhow::Result<()> {
    for table in ["nat", "filter"] {
        let text = iptables_save(table).await?;
        if let Some(input) = iptables_leftovers(&text, network, pod_cidr) {
            iptables_restore(&input).await?;
        }
    }
    if RUNNING.load(std::sync::atomic::Ordering::SeqCst) == 0
        && let Some(input) = unused_firewall_chains(&iptables_save("filter").await?)
    {
        iptables_restore(&input).await?;
    }
    Ok(())
}

/// Removes a cgroup directory and every cgroup below it (rmdir, deepest first: a cgroup's
/// files cannot be removed, only the empty group). Missing is fine.
pub fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where containerd's shims keep their tasks: `<state>/<TASK_DIR>/<namespace>/<id>/`, each
/// with the PID of the container's first process in `init.pid`.
const TASK_DIR: &str = "io.containerd.runtime.v2.task";

/// The containers' init processes containerd's shims recorded under `state`, with their
/// task ids.
fn recorded_inits(state: &Path) -> Vec<(u32, String)> {
    let mut inits = Vec::new();
    let namespaces = std::fs::read_dir(state.join(TASK_DIR))
        .into_iter()
        .flatten();
    for ns in namespaces.flatten() {
        for task in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            let pid = std::fs::read_to_string(task.path().join("init.pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = pid {
                inits.push((pid, task.file_name().to_string_lossy().into_owned()));
            }
        }
    }
    inits
}

/// A process's parent, from /proc/<pid>/stat.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether a process's `/proc/<pid>/cmdline` is a shim serving the containerd at `socket`
/// (`containerd-shim-runc-v2 -namespace k8s.io -id <id> -address <socket>`): a recorded PID
/// is only killed while it is still that shim, never a process that reused the number.
pub fn is_shim_of(cmdline: &[u8], socket: &Path) -> bool {
    let socket = socket.as_os_str().as_encoded_bytes();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"-address" && w[1] == socket)
}

/// Whether a process's `/proc/<pid>/cgroup` puts it in the cgroup of container `id`
/// (containerd names a container's cgroup after its id, under the pod's parent).
pub fn in_container_cgroup(cgroup: &str, id: &str) -> bool {
    !id.is_empty()
        && cgroup.lines().any(|l| {
            l.splitn(3, ':')
                .nth(2)
                .is_some_and(|path| path.split('/').any(|seg| seg == id))
        })
}

/// The processes in a cgroup tree (every hierarchy), never this process or PID 1.
fn cgroup_pids(cgroup_root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let mut stack = cgroup_dirs(cgroup_root);
    while let Some(dir) = stack.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids.retain(|p| *p != 1 && *p != std::process::id());
    pids
}

/// Whether `pid` runs (a zombie, waiting for its parent, no longer does).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// Kills (SIGKILL, by PID) what a containerd that is gone left running: every process in
/// the cgroup tree of `cgroup_root` (the pods, and the shims, started in
/// [`runtime_cgroup`]), the containers' init processes it recorded (while still in their
/// container's cgroup, wherever the pod's cgroup parent was) and their shims (their parents,
/// while still shims of its socket); waits for them to exit within [`LEFTOVER_TIMEOUT`].
/// Returns what failed.
async fn kill_leftovers(settings: &Settings, cgroup_root: &str) -> Option<String> {
    let mut pids = Vec::new();
    for (pid, id) in recorded_inits(&settings.dir.join("state")) {
        let ours = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| in_container_cgroup(&c, &id));
        if !ours {
            continue;
        }
        pids.push(pid);
        if let Some(shim) = parent_of(pid).filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| is_shim_of(&c, &settings.socket()))
        }) {
            pids.push(shim);
        }
    }
    let deadline = Instant::now() + LEFTOVER_TIMEOUT;
    loop {
        // Again each round: a pod's process may fork while its siblings die.
        pids.extend(cgroup_pids(cgroup_root));
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| alive(*p));
        if pids.is_empty() {
            return None;
        }
        if Instant::now() > deadline {
            return Some(format!(
                "processes {pids:?} left by containerd still run after SIGKILL"
            ));
        }
        for pid in &pids {
            signal(*pid, rustix::process::Signal::KILL);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Undoes the octal escapes of a /proc/self/mountinfo field (`\040` for a space).
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points strictly under `dir` in /proc/self/mountinfo text, the order to unmount
/// them in: deepest first, and of one depth the last mounted first (a mount over another).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(usize, usize, PathBuf)> = mountinfo
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let point = PathBuf::from(unescape_mount_field(l.split(' ').nth(4)?));
            (point != dir && point.starts_with(dir)).then(|| (point.components().count(), i, point))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    found.into_iter().map(|(_, _, p)| p).collect()
}

/// Unmounts everything under `dir` (sandboxes' shm, containers' rootfs overlays, network
/// namespaces' bind mounts), deepest first; what a plain unmount cannot remove is detached
/// (lazily unmounted) in the later rounds. Returns what is still mounted.
fn unmount_under(dir: &Path) -> Option<String> {
    use rustix::mount::{UnmountFlags, unmount};
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = || {
        mounts_under(
            &std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(),
            &dir,
        )
    };
    let mut last_err = String::new();
    for round in 0..4 {
        let points = mounts();
        if points.is_empty() {
            return None;
        }
        let flags = if round == 0 {
            UnmountFlags::empty()
        } else {
            UnmountFlags::DETACH
        };
        for p in points {
            if let Err(e) = unmount(&p, flags) {
                last_err = format!("{}: {e}", p.display());
            }
        }
    }
    let left = mounts();
    (!left.is_empty()).then(|| {
        format!(
            "{} mounts left under {} (last error {last_err})",
            left.len(),
            dir.display()
        )
    })
}

/// Whether a file of libcni's cache (/var/lib/cni/results) is one of a network's: its name
/// is `<network>-<64 hex digits of the sandbox id>-<interface>`, or the loopback network's
/// `cni-loopback-<id>-lo` of one of its sandboxes (`ids`).
pub fn is_cni_result_of(file: &str, network: &str, ids: &[String]) -> bool {
    let of_network = file
        .strip_prefix(network)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|r| {
            r.len() > 65
                && r.as_bytes()[..64].iter().all(u8::is_ascii_hexdigit)
                && r.as_bytes()[64] == b'-'
        });
    of_network
        || file
            .strip_prefix("cni-loopback-")
            .and_then(|r| r.strip_suffix("-lo"))
            .is_some_and(|id| ids.iter().any(|i| i == id))
}

/// The ids of the sandboxes and containers containerd knows under `dir` (its CRI plugin's
/// sandbox dirs, its shims' task dirs).
fn known_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    let mut names = |d: PathBuf| {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            ids.push(e.file_name().to_string_lossy().into_owned());
        }
    };
    for base in ["root", "state"] {
        names(dir.join(base).join("io.containerd.grpc.v1.cri/sandboxes"));
    }
    for ns in std::fs::read_dir(dir.join("state").join(TASK_DIR))
        .into_iter()
        .flatten()
        .flatten()
    {
        names(ns.path());
    }
    ids
}

/// The chains the CNI firewall plugin makes in the filter table, shared by every network
/// (`FORWARD -> CNI-FORWARD -> CNI-ADMIN`).
const FIREWALL_CHAINS: &[&str] = &["CNI-FORWARD", "CNI-ADMIN"];

/// From `iptables-save -t filter` output, the `iptables-restore --noflush` input that removes
/// the firewall plugin's chains when no network uses them any more: a chain goes when its
/// rules only jump to chains that go too and the only rules jumping to it sit in such chains
/// or are the plugin's own jump from a built-in chain (comment "CNI firewall plugin rules").
/// Rules are deleted one by one (never flushed) before the chains, so a rule added meanwhile
/// makes the whole restore fail rather than vanish. `None` when nothing is to go.
pub fn unused_firewall_chains(save: &str) -> Option<String> {
    struct Rule<'a> {
        chain: &'a str,
        text: &'a str,
        target: Option<&'a str>,
    }
    let mut rules = Vec::new();
    let mut gone: Vec<&str> = Vec::new();
    for line in save.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or_default();
            if let Some(c) = FIREWALL_CHAINS.iter().find(|c| **c == name) {
                gone.push(c);
            }
        } else if let Some(text) = line.strip_prefix("-A ") {
            let words: Vec<&str> = text.split_whitespace().collect();
            let target = words
                .iter()
                .position(|w| *w == "-j" || *w == "-g")
                .and_then(|i| words.get(i + 1))
                .copied();
            rules.push(Rule {
                chain: words.first().copied().unwrap_or_default(),
                text,
                target,
            });
        }
    }
    let builtin = |c: &str| c.chars().all(|ch| ch.is_ascii_uppercase()) && !c.contains('-');
    loop {
        let before = gone.len();
        let keep: Vec<&str> = gone
            .iter()
            .copied()
            .filter(|c| {
                let inside = rules
                    .iter()
                    .filter(|r| r.chain == *c)
                    .all(|r| r.target.is_some_and(|t| gone.contains(&t)));
                let jumps_in = rules.iter().filter(|r| r.target == Some(*c)).all(|r| {
                    gone.contains(&r.chain)
                        || (builtin(r.chain) && r.text.contains("CNI firewall plugin rules"))
                });
                inside && jumps_in
            })
            .collect();
        gone = keep;
        if gone.len() == before {
            break;
        }
    }
    if gone.is_empty() {
        return None;
    }
    let mut out = String::from("*filter\n");
    for r in rules.iter().filter(|r| !gone.contains(&r.chain)) {
        if r.target.is_some_and(|t| gone.contains(&t)) {
            let _ = writeln!(out, "-D {}", r.text);
        }
    }
    for r in rules.iter().filter(|r| gone.contains(&r.chain)) {
        let _ = writeln!(out, "-D {}", r.text);
    }
    for c in &gone {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}

/// The cgroup containerd runs in, and with it the shims it starts (containerd 1.6 records
/// no shim PID; a shim outlives a containerd that dies): `<cgroup_root>/containerd` in the
/// pids hierarchy (cgroup v1) or the unified one (v2 only). Inside the pods' cgroup tree, so
/// that [`cleanup_host`] finds every process left there. `None` without a cgroup root.
pub fn runtime_cgroup(cgroup_root: &str) -> Option<PathBuf> {
    let rel = cgroup_root.trim_matches('/');
    if rel.is_empty() {
        return None;
    }
    let base = Path::new("/sys/fs/cgroup");
    let hierarchy = if base.join("cgroup.controllers").exists() {
        base.to_path_buf()
    } else if base.join("pids").is_dir() {
        base.join("pids")
    } else {
        return None;
    };
    Some(hierarchy.join(rel).join("containerd"))
}

/// The cgroup dirs of `cgroup_root` (e.g. `/bosun`) under every hierarchy of
/// /sys/fs/cgroup that has one (v1 controllers, the unified one, or a v2-only mount).
pub fn cgroup_dirs(cgroup_root: &str) -> Vec<PathBuf> {
    let rel = cgroup_root.trim_matches('/');
    if rel.is_empty() {
        return Vec::new();
    }
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join(rel)];
    if let Ok(entries) = std::fs::read_dir(base) {
        dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// The kernel's IPv4 forwarding switch, which the CNI bridge plugin turns on.
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
/// Where the switch's value from before the first start is kept (under the settings' dir).
const IP_FORWARD_BEFORE: &str = "ip_forward.before";

/// Records the IPv4 forwarding switch as it is before containerd and CNI touch it, once (a
/// resumed run keeps the first value), so that the cleanup can put it back.
fn record_ip_forward(dir: &Path) {
    let saved = dir.join(IP_FORWARD_BEFORE);
    if saved.exists() {
        return;
    }
    if let Ok(v) = std::fs::read_to_string(IP_FORWARD) {
        let _ = std::fs::write(saved, v.trim());
    }
}

/// Puts the IPv4 forwarding switch back as [`record_ip_forward`] found it.
fn restore_ip_forward(dir: &Path) -> Option<String> {
    let saved = dir.join(IP_FORWARD_BEFORE);
    let before = std::fs::read_to_string(&saved).ok()?;
    let before = before.trim();
    if !matches!(before, "0" | "1") {
        let _ = std::fs::remove_file(&saved);
        return None;
    }
    let now = std::fs::read_to_string(IP_FORWARD).unwrap_or_default();
    if now.trim() != before
        && let Err(e) = std::fs::write(IP_FORWARD, before)
    {
        return Some(format!("restore {IP_FORWARD} to {before}: {e}"));
    }
    let _ = std::fs::remove_file(&saved);
    None
}

/// What a cluster leaves on the host, removed (no runtime needed; containerd must have
/// stopped): the shims and pod processes it left running (killed by recorded PID or in the
/// pods' cgroups), every mount under its dir, the CNI bridge, host-local's allocations and
/// libcni's cache of the network, iptables leftovers of the network and its masquerade rule
/// (and the firewall plugin's chains once unused), the cgroup dirs of `cgroup_root`; and the IPv4 forwarding
/// switch back as it was. Goes on past failures; returns them.
pub async fn cleanup_host(settings: &Settings, cgroup_root: &str) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(kill_leftovers(settings, cgroup_root).await);
    problems.extend(unmount_under(&settings.dir));
    if Path::new("/sys/class/net").join(&settings.bridge).exists() {
        match tokio::process::Command::new("ip")
            .args(["link", "del", &settings.bridge])
            .output()
            .await
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => problems.push(format!(
                "ip link del {}: {}",
                settings.bridge,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => problems.push(format!("run ip: {e}")),
        }
    }
    let alloc = Path::new("/var/lib/cni/networks").join(&settings.network);
    if alloc.exists()
        && let Err(e) = std::fs::remove_dir_all(&alloc)
    {
        problems.push(format!("remove {}: {e}", alloc.display()));
    }
    let cache = Path::new("/var/lib/cni/results");
    let ids = known_ids(&settings.dir);
    for e in std::fs::read_dir(cache).into_iter().flatten().flatten() {
        if is_cni_result_of(&e.file_name().to_string_lossy(), &settings.network, &ids)
            && let Err(err) = std::fs::remove_file(e.path())
        {
            problems.push(format!("remove {}: {err}", e.path().display()));
        }
    }
    if let Err(e) = remove_iptables_leftovers(&settings.network, &settings.pod_cidr).await {
        problems.push(format!("{e:#}"));
    }
    // A killed process leaves its cgroup a moment after it is gone: retry within a bound.
    let deadline = Instant::now() + LEFTOVER_TIMEOUT;
    for dir in cgroup_dirs(cgroup_root) {
        loop {
            match remove_cgroup_tree(&dir) {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    problems.push(format!("remove cgroup {}: {e}", dir.display()));
                    break;
                }
            }
        }
    }
    problems.extend(restore_ip_forward(&settings.dir));
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn settings() -> Settings {
        Settings::new(
            Path::new("/var/lib/bosun"),
            "bosun",
            "bosun0",
            "10.88.0.0/16".parse().unwrap(),
        )
    }

    #[test]
    fn config_keeps_everything_under_the_data_dir() {
        let t = settings().config_toml();
        for line in [
            "root = \"/var/lib/bosun/containerd/root\"",
            "state = \"/var/lib/bosun/containerd/state\"",
            "  address = \"/var/lib/bosun/containerd/containerd.sock\"",
            "  path = \"/var/lib/bosun/containerd/opt\"",
            "  restrict_oom_score_adj = true",
            "  sandbox_image = \"bosun.local/pause:latest\"",
            "  netns_mounts_under_state_dir = true",
            "    bin_dir = \"/usr/lib/cni\"",
            "    conf_dir = \"/var/lib/bosun/containerd/cni\"",
            "    runtime_type = \"io.containerd.runc.v2\"",
            "      Root = \"/var/lib/bosun/containerd/state/runc\"",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing from\n{t}");
        }
        assert_eq!(
            settings().endpoint(),
            "unix:///var/lib/bosun/containerd/containerd.sock"
        );
    }

    #[test]
    fn conflist_uses_its_bridge_and_the_pod_cidr() {
        let types = |forward_drops: bool| -> Vec<String> {
            let v: serde_json::Value =
                serde_json::from_str(&settings().conflist(forward_drops)).unwrap();
            v["plugins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["type"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(types(false), ["bridge", "portmap"]);
        assert_eq!(types(true), ["bridge", "portmap", "firewall"]);
        assert!(policy_drops("-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n"));
        assert!(!policy_drops(
            "-P FORWARD ACCEPT\n-A FORWARD -j CNI-FORWARD\n"
        ));
        let v: serde_json::Value = serde_json::from_str(&settings().conflist(false)).unwrap();
        assert_eq!(v["name"], "bosun");
        let plugins = v["plugins"].as_array().unwrap();
        assert_eq!(plugins[0]["bridge"], "bosun0");
        // One rule for the range instead of a chain per pod (masquerade_rule).
        assert_eq!(plugins[0]["ipMasq"], false);
        assert_eq!(plugins[0]["isGateway"], true);
        assert_eq!(plugins[0]["ipam"]["type"], "host-local");
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    }

    #[test]
    fn names_are_checked() {
        settings().validate().unwrap();
        let mut s = settings();
        s.bridge = "a-bridge-name-too-long".into();
        assert!(s.validate().is_err());
        let mut s = settings();
        s.network = "a b".into();
        assert!(s.validate().is_err());
        let mut s = settings();
        s.dir = PathBuf::from("/").join("d".repeat(90));
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("shorter --data-dir")
        );
    }

    #[test]
    fn missing_tools_name_their_packages_and_the_fix() {
        let gone = missing(|n| n != "runc" && !n.starts_with("/usr/lib/cni/"));
        let names: Vec<&str> = gone.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "runc",
                "/usr/lib/cni/bridge",
                "/usr/lib/cni/host-local",
                "/usr/lib/cni/portmap",
                "/usr/lib/cni/firewall",
                "/usr/lib/cni/loopback"
            ]
        );
        let m = missing_message(&gone);
        assert!(
            m.contains("apt-get install -y runc containernetworking-plugins"),
            "{m}"
        );
        assert!(m.contains("--runtime fake"), "{m}");
        assert!(missing(|_| true).is_empty());
    }

    #[test]
    fn status_needs_runtime_and_network_ready() {
        let cond = |t: &str, ok: bool| cri::RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: if ok { "" } else { "NetworkPluginNotReady" }.into(),
            message: if ok { "" } else { "cni plugin not initialized" }.into(),
        };
        let status = |c: Vec<cri::RuntimeCondition>| cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions: c }),
            ..Default::default()
        };
        assert_eq!(
            not_ready(&status(vec![
                cond("RuntimeReady", true),
                cond("NetworkReady", true)
            ])),
            None
        );
        let why = not_ready(&status(vec![
            cond("RuntimeReady", true),
            cond("NetworkReady", false),
        ]))
        .unwrap();
        assert!(why.contains("cni plugin not initialized"), "{why}");
        assert!(not_ready(&status(vec![cond("RuntimeReady", true)])).is_some());
        assert!(not_ready(&cri::StatusResponse::default()).is_some());
    }

    #[test]
    fn iptables_leftovers_of_one_network_only() {
        let nat = r#"# Generated by iptables-save
*nat
:POSTROUTING ACCEPT [0:0]
:CNI-1a2b ACCEPT [0:0]
:CNI-9f9f ACCEPT [0:0]
:CNI-DN-77 - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \"bosun\" id: \"abc\"" -j CNI-1a2b
-A POSTROUTING -s 10.89.0.7/32 -m comment --comment "name: \"bosun-dev\" id: \"def\"" -j CNI-9f9f
-A CNI-1a2b -d 10.88.0.0/16 -m comment --comment "name: \"bosun\" id: \"abc\"" -j ACCEPT
-A CNI-1a2b ! -d 224.0.0.0/4 -m comment --comment "name: \"bosun\" id: \"abc\"" -j MASQUERADE
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"bosun\" id: \"abc\"" -m multiport --dports 8080 -j CNI-DN-77
COMMIT
"#;
        let cidr: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
        let out = iptables_leftovers(nat, "bosun", &cidr).unwrap();
        assert!(out.starts_with("*nat\n"), "{out}");
        assert!(out.contains("-D POSTROUTING -s 10.88.0.5/32 -m comment --comment \"name: \\\"bosun\\\" id: \\\"abc\\\"\" -j CNI-1a2b\n"), "{out}");
        assert!(out.contains("-F CNI-1a2b\n-X CNI-1a2b\n"), "{out}");
        assert!(out.contains("-F CNI-DN-77\n-X CNI-DN-77\n"), "{out}");
        assert!(
            !out.contains("bosun-dev"),
            "another network's rules stay: {out}"
        );
        assert!(!out.contains("CNI-9f9f"), "{out}");
        assert!(
            !out.contains("-X CNI-HOSTPORT-DNAT"),
            "shared chains stay: {out}"
        );
        assert!(out.ends_with("COMMIT\n"));

        let filter = "*filter\n:CNI-FORWARD - [0:0]\n-A CNI-FORWARD -d 10.88.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT\n-A CNI-FORWARD -s 10.89.0.7/32 -j ACCEPT\n-A CNI-FORWARD -j CNI-ADMIN\nCOMMIT\n";
        let out = iptables_leftovers(filter, "bosun", &cidr).unwrap();
        assert_eq!(
            out,
            "*filter\n-D CNI-FORWARD -d 10.88.0.5/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-D CNI-FORWARD -s 10.88.0.5/32 -j ACCEPT\nCOMMIT\n"
        );
        assert_eq!(
            iptables_leftovers(filter, "other", &"10.1.0.0/16".parse().unwrap()),
            None
        );
    }

    #[test]
    fn one_masquerade_rule_per_network_removed_with_its_leftovers() {
        let cidr: Ipv4Cidr = "10.88.0.0/16".parse().unwrap();
        assert_eq!(
            masquerade_rule("bosun", &cidr).join(" "),
            "-s 10.88.0.0/16 ! -d 10.88.0.0/16 -m comment --comment bosun: SNAT for outbound traffic from CNI network bosun -m addrtype ! --dst-type LOCAL,MULTICAST -j MASQUERADE"
        );
        // As iptables-save (1.8.9, nft) prints the rules of two networks.
        let rule = |net: &str, cidr: &str| {
            format!(
                "-A POSTROUTING -s {cidr} ! -d {cidr} -m comment --comment \"{}\" -m addrtype ! --dst-type LOCAL,MULTICAST -j MASQUERADE",
                masquerade_comment(net)
            )
        };
        let nat = format!(
            "*nat\n:POSTROUTING ACCEPT [0:0]\n{}\n{}\n-A POSTROUTING -s 10.88.0.0/16 -j MASQUERADE\nCOMMIT\n",
            rule("bosun-dev", "10.89.0.0/16"),
            rule("bosun", "10.88.0.0/16"),
        );
        assert_eq!(
            iptables_leftovers(&nat, "bosun", &cidr).unwrap(),
            format!(
                "*nat\n-D {}\nCOMMIT\n",
                rule("bosun", "10.88.0.0/16").trim_start_matches("-A ")
            )
        );
        // A network whose name is a prefix of another's keeps its hands off the other's.
        assert_eq!(iptables_leftovers(&nat, "bosun-d", &cidr), None);
    }

    #[test]
    fn mounts_under_a_dir_deepest_and_latest_first() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
30 22 0:40 / /tmp/.tmpAb/containerd rw - tmpfs tmpfs rw
31 22 0:41 / /tmp/.tmpAb/containerd/state/io.containerd.grpc.v1.cri/sandboxes/1a/shm rw - tmpfs shm rw
32 22 0:42 / /tmp/.tmpAb/containerd/state/io.containerd.runtime.v2.task/k8s.io/1a/rootfs rw - overlay overlay rw
33 32 0:43 / /tmp/.tmpAb/containerd/state/io.containerd.runtime.v2.task/k8s.io/1a/rootfs rw - overlay overlay rw
34 22 0:4 net:[4026532] /tmp/.tmpAb/containerd/state/netns/cni-1 rw - nsfs nsfs rw
35 22 0:44 / /tmp/.tmpAb/containerd/with\\040space rw - tmpfs tmpfs rw
36 22 0:45 / /tmp/.tmpAbc/containerd/x rw - tmpfs tmpfs rw
";
        let got = mounts_under(info, Path::new("/tmp/.tmpAb/containerd"));
        let state = "/tmp/.tmpAb/containerd/state";
        let want: Vec<PathBuf> = [
            format!("{state}/io.containerd.runtime.v2.task/k8s.io/1a/rootfs"),
            format!("{state}/io.containerd.runtime.v2.task/k8s.io/1a/rootfs"),
            format!("{state}/io.containerd.grpc.v1.cri/sandboxes/1a/shm"),
            format!("{state}/netns/cni-1"),
            "/tmp/.tmpAb/containerd/with space".to_string(),
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(got, want);
        assert!(mounts_under(info, Path::new("/nowhere")).is_empty());
    }

    #[test]
    fn recorded_pids_are_checked_before_a_kill() {
        let sock = Path::new("/tmp/.tmpAb/containerd/containerd.sock");
        let shim = b"/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0abc\0-address\0/tmp/.tmpAb/containerd/containerd.sock\0";
        assert!(is_shim_of(shim, sock));
        let other = b"/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0abc\0-address\0/run/containerd/containerd.sock\0";
        assert!(!is_shim_of(other, sock));
        assert!(!is_shim_of(b"sleep\x003600\0", sock));

        let cg = "12:pids:/bosun-test-1/kubepods/besteffort/podu/abc123\n0::/\n";
        assert!(in_container_cgroup(cg, "abc123"));
        assert!(!in_container_cgroup(cg, "abc"), "a whole path segment");
        assert!(!in_container_cgroup("0::/user.slice\n", "abc123"));
        assert!(!in_container_cgroup(cg, ""));
    }

    #[test]
    fn libcni_cache_files_of_one_network_only() {
        let id = "d5a84129595c3d0a8e9fb031f38f21aca0fda312686e0e8f5afbe8c6c3435207";
        let ids = [id.to_string()];
        let of = |f: &str, net: &str| is_cni_result_of(f, net, &ids);
        assert!(of(&format!("bosun-test-57-{id}-eth0"), "bosun-test-57"));
        assert!(!of(&format!("bosun-test-571-{id}-eth0"), "bosun-test-57"));
        assert!(!of(&format!("bosun-test-57-{id}-eth0"), "bosun-test-5"));
        assert!(!of("bosun-test-57-short-eth0", "bosun-test-57"));
        assert!(of(&format!("cni-loopback-{id}-lo"), "bosun-test-57"));
        let other = "2e0c52d87896f582a7632f024b8c69fd3cfa97b3898c2c584e7f917781caa58e";
        assert!(!of(&format!("cni-loopback-{other}-lo"), "bosun-test-57"));
    }

    #[test]
    fn firewall_chains_go_only_when_unused() {
        // Empty and unreferenced (as a test that made it left it): removed.
        let empty =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:CNI-FORWARD - [0:0]\nCOMMIT\n";
        assert_eq!(
            unused_firewall_chains(empty).unwrap(),
            "*filter\n-X CNI-FORWARD\nCOMMIT\n"
        );
        // The plugin's skeleton with no pod rule left: its jump and both chains go.
        let skeleton = "*filter\n:FORWARD ACCEPT [0:0]\n:CNI-ADMIN - [0:0]\n:CNI-FORWARD - [0:0]\n-A FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD\n-A CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j CNI-ADMIN\nCOMMIT\n";
        assert_eq!(
            unused_firewall_chains(skeleton).unwrap(),
            "*filter\n-D FORWARD -m comment --comment \"CNI firewall plugin rules\" -j CNI-FORWARD\n-D CNI-FORWARD -m comment --comment \"CNI firewall plugin admin overrides\" -j CNI-ADMIN\n-X CNI-ADMIN\n-X CNI-FORWARD\nCOMMIT\n"
        );
        // A pod of some network still has its rule: everything stays.
        let used = skeleton.replace("COMMIT", "-A CNI-FORWARD -d 10.89.0.7/32 -j ACCEPT\nCOMMIT");
        assert_eq!(unused_firewall_chains(&used), None);
        // An admin's rule in CNI-ADMIN keeps it, and CNI-FORWARD that jumps to it.
        let admin = skeleton.replace("COMMIT", "-A CNI-ADMIN -s 10.0.0.1/32 -j DROP\nCOMMIT");
        assert_eq!(unused_firewall_chains(&admin), None);
        // Someone else's jump to it keeps it.
        let theirs = empty.replace("COMMIT", "-A INPUT -j CNI-FORWARD\nCOMMIT");
        assert_eq!(unused_firewall_chains(&theirs), None);
        assert_eq!(
            unused_firewall_chains("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"),
            None
        );
    }

    #[test]
    fn cgroup_trees_are_removed_deepest_first() {
        let dir = std::env::temp_dir().join(format!("bosun-up-cg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("kubepods/burstable/pod1")).unwrap();
        std::fs::create_dir_all(dir.join("kubepods/besteffort")).unwrap();
        remove_cgroup_tree(&dir).unwrap();
        assert!(!dir.exists());
        remove_cgroup_tree(&dir).unwrap();
        assert!(cgroup_dirs("/").is_empty());
    }
}
