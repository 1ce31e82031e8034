//! A private containerd for one cluster: its config and CNI network under a data dir, started
//! as a child process, checked ready through CRI (`Version`, `Status` with RuntimeReady and
//! NetworkReady), the images imported, stopped by PID, and everything a cluster leaves on the
//! machine cleaned up (pod sandboxes through CRI, the CNI bridge, host-local allocations,
//! leftover CNI iptables chains of its network, the pod cgroups).
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

    /// The CNI conflist: a bridge of its own (gateway, masquerade, hairpin), host-local
    /// addresses over the pod CIDR, portmap for hostPorts, and the firewall plugin only when
    /// `forward_drops` (the host's FORWARD chain drops by default, as Docker sets it: then
    /// pods' traffic must be let through; otherwise its iptables calls only cost every
    /// sandbox about 150 ms on two CPUs, and containerd's own default conflist has none).
    pub fn conflist(&self, forward_drops: bool) -> String {
        let mut v = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": true,
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
    /// Writes the config and conflist, starts containerd, and waits until its CRI answers
    /// `Version` and `Status` says runtime and network ready. A containerd that exits or is
    /// not ready in time is stopped, and the error carries its log's last lines.
    pub async fn start(settings: Settings) -> anyhow::Result<Containerd> {
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
    }

    /// The end of a cluster: every pod sandbox stopped and removed through CRI, containerd
    /// stopped, then [`cleanup_host`]. Goes on past failures; returns them.
    pub async fn shutdown(self, cgroup_root: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = remove_sandboxes(&self.cri).await {
            problems.push(format!("{e:#}"));
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
/// and the firewall plugin's rules for pod addresses of the range in CNI-FORWARD. `None`
/// when there is nothing to remove.
pub fn iptables_leftovers(save: &str, network: &str, pod_cidr: &Ipv4Cidr) -> Option<String> {
    let marker = format!("name: \\\"{network}\\\"");
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
        let ours_by_comment = rule.contains(&marker);
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

/// Removes leftover CNI iptables rules and chains of the network from the nat and filter
/// tables.
async fn remove_iptables_leftovers(network: &str, pod_cidr: &Ipv4Cidr) -> anyhow::Result<()> {
    for table in ["nat", "filter"] {
        let save = tokio::process::Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .await
            .context("run iptables-save")?;
        let text = String::from_utf8_lossy(&save.stdout);
        let Some(input) = iptables_leftovers(&text, network, pod_cidr) else {
            continue;
        };
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
                "iptables-restore (table {table}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
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

/// What a cluster leaves on the host, removed (no runtime needed): the CNI bridge,
/// host-local's allocations, iptables leftovers of the network, the cgroup dirs of
/// `cgroup_root`; and the IPv4 forwarding switch back as it was. Goes on past failures; returns them.
pub async fn cleanup_host(settings: &Settings, cgroup_root: &str) -> Vec<String> {
    let mut problems = Vec::new();
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
    if let Err(e) = remove_iptables_leftovers(&settings.network, &settings.pod_cidr).await {
        problems.push(format!("{e:#}"));
    }
    for dir in cgroup_dirs(cgroup_root) {
        if let Err(e) = remove_cgroup_tree(&dir) {
            problems.push(format!("remove cgroup {}: {e}", dir.display()));
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
