//! A pod and its containers as CRI configs (pure): the kubelet's
//! `generatePodSandboxConfig`, `generateContainerConfig` with `makeEnvironmentVariables`
//! (`valueFrom.fieldRef`, ConfigMap and Secret keys, `$(VAR)` expansion), the QoS class, pod cgroup parent, CPU shares
//! and quota, memory limit and OOM score, volume mounts and log paths.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, DnsConfig, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol,
};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, Pod, PodSpec, ResourceRequirements, Volume,
};

use super::sources::Sources;
use crate::quantity::{parse_milli, parse_units};

/// CRI label: the pod's name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// CRI label: the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// CRI label: the pod's uid.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// CRI label: the container's name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// What the conversion needs from the node (flags and host facts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeContext {
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// `--pod-logs-dir`.
    pub pod_logs_dir: PathBuf,
    /// `--cgroup-root`.
    pub cgroup_root: String,
    /// `--cluster-dns`.
    pub cluster_dns: Vec<String>,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// The host's resolv.conf: nameservers, search domains, options.
    pub host_dns: DnsConfig,
    /// The node's name.
    pub node_name: String,
    /// The host's name (hostNetwork pods).
    pub host_name: String,
    /// The node's address.
    pub host_ip: String,
    /// The node's memory capacity in bytes (OOM score of burstable pods).
    pub memory_capacity: i64,
    /// `--container-log-max-size`, `--container-log-max-files`.
    pub log_rotation: super::logs::LogRotation,
    /// `--sync-frequency`: how often running pods' configMap, secret and projected volumes
    /// are refreshed.
    pub sync_frequency: std::time::Duration,
    /// `--eviction-hard`: when the node reports memory or disk pressure.
    pub eviction_hard: crate::eviction::EvictionHard,
}

fn meta(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

fn spec(pod: &Pod) -> PodSpec {
    pod.spec.clone().unwrap_or_default()
}

/// The pod's log directory: `<pod-logs-dir>/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(ctx: &NodeContext, pod: &Pod) -> PathBuf {
    let (name, ns, uid) = meta(pod);
    pod_log_dir_of(ctx, ns, name, uid)
}

/// [`pod_log_dir`] from the pod's namespace, name and uid (as a container's labels carry them).
pub fn pod_log_dir_of(ctx: &NodeContext, ns: &str, name: &str, uid: &str) -> PathBuf {
    ctx.pod_logs_dir.join(format!("{ns}_{name}_{uid}"))
}

/// A container's log path, relative to the pod's log directory: `<container>/<attempt>.log`.
pub fn container_log_path(container: &str, attempt: u32) -> String {
    format!("{container}/{attempt}.log")
}

/// The pod's directory under `--root-dir`: `<root-dir>/pods/<uid>`.
pub fn pod_dir(ctx: &NodeContext, uid: &str) -> PathBuf {
    ctx.root_dir.join("pods").join(uid)
}

/// An emptyDir volume's directory.
pub fn empty_dir_path(ctx: &NodeContext, uid: &str, volume: &str) -> PathBuf {
    pod_dir(ctx, uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(volume)
}

/// A downwardAPI volume's directory.
pub fn downward_api_path(ctx: &NodeContext, uid: &str, volume: &str) -> PathBuf {
    pod_dir(ctx, uid)
        .join("volumes/kubernetes.io~downward-api")
        .join(volume)
}

/// The volume plugin's directory name of a configMap, secret or projected volume (their
/// files come from [`Sources::volume_files`]); `None` for other kinds.
pub fn file_volume_plugin(v: &Volume) -> Option<&'static str> {
    if v.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if v.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if v.projected.is_some() {
        Some("kubernetes.io~projected")
    } else {
        None
    }
}

/// A configMap, secret or projected volume's directory (`plugin` from
/// [`file_volume_plugin`]).
pub fn file_volume_path(ctx: &NodeContext, uid: &str, plugin: &str, volume: &str) -> PathBuf {
    pod_dir(ctx, uid).join("volumes").join(plugin).join(volume)
}

/// A container's termination-message file on the host.
pub fn termination_log_path(ctx: &NodeContext, uid: &str, container: &str) -> PathBuf {
    pod_dir(ctx, uid)
        .join("containers")
        .join(container)
        .join("termination-log")
}

/// The pod's QoS class (`GetPodQOS`).
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut limits: BTreeMap<String, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            if let Some(q) = req.get(res).and_then(|q| parse_milli(&q.0))
                && q != 0
            {
                *requests.entry(res.into()).or_default() += q;
            }
            if let Some(q) = lim.get(res).and_then(|q| parse_milli(&q.0))
                && q != 0
            {
                *limits.entry(res.into()).or_default() += q;
            }
        }
        if !(lim.contains_key("cpu") && lim.contains_key("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests.iter().all(|(k, v)| limits.get(k) == Some(v)) {
        return "Guaranteed";
    }
    "Burstable"
}

/// The pod's cgroup (cgroupfs driver): `<cgroup-root>/kubepods[/burstable|/besteffort]/pod<uid>`.
pub fn pod_cgroup(ctx: &NodeContext, pod: &Pod) -> String {
    let (_, _, uid) = meta(pod);
    let root = ctx.cgroup_root.trim_end_matches('/');
    let class = match qos_class(&spec(pod)) {
        "Guaranteed" => String::new(),
        "Burstable" => "/burstable".into(),
        _ => "/besteffort".into(),
    };
    format!("{root}/kubepods{class}/pod{uid}")
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => Protocol::Udp as i32,
        Some("SCTP") => Protocol::Sctp as i32,
        _ => Protocol::Tcp as i32,
    }
}

/// The pod's DNS config (`GetPodDNS`): cluster DNS for `ClusterFirst` pods when the node has
/// `--cluster-dns` (else the host's, as the kubelet falls back), the host's for `Default`
/// (and for host-network pods not `ClusterFirstWithHostNet`), none for `None`; then
/// `spec.dnsConfig` merged in.
pub fn dns_config(ctx: &NodeContext, pod: &Pod) -> DnsConfig {
    let spec = spec(pod);
    let (_, ns, _) = meta(pod);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host_network = spec.host_network.unwrap_or(false);
    let cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut cfg = if policy == "None" {
        DnsConfig::default()
    } else if cluster && !ctx.cluster_dns.is_empty() {
        let d = &ctx.cluster_domain;
        let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
        searches.extend(ctx.host_dns.searches.iter().cloned());
        DnsConfig {
            servers: ctx.cluster_dns.clone(),
            searches,
            options: vec!["ndots:5".into()],
        }
    } else {
        ctx.host_dns.clone()
    };
    if let Some(extra) = &spec.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let opt = match &o.value {
                Some(v) => format!("{}:{v}", o.name.clone().unwrap_or_default()),
                None => o.name.clone().unwrap_or_default(),
            };
            let key = opt.split(':').next().unwrap_or_default().to_string();
            cfg.options
                .retain(|x| x.split(':').next().unwrap_or_default() != key);
            cfg.options.push(opt);
        }
    }
    cfg
}

/// Parses a resolv.conf into servers, searches and options.
pub fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut cfg = DnsConfig::default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => cfg.servers.extend(f.next().map(str::to_string)),
            Some("search") => cfg.searches = f.map(str::to_string).collect(),
            Some("options") => cfg.options.extend(f.map(str::to_string)),
            _ => {}
        }
    }
    cfg
}

fn sandbox_labels(pod: &Pod) -> HashMap<String, String> {
    let (name, ns, uid) = meta(pod);
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    l.insert(LABEL_POD_NAME.into(), name.into());
    l.insert(LABEL_POD_NAMESPACE.into(), ns.into());
    l.insert(LABEL_POD_UID.into(), uid.into());
    l
}

/// `generatePodSandboxConfig`.
pub fn sandbox_config(ctx: &NodeContext, pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let (name, ns, uid) = meta(pod);
    let spec = spec(pod);
    let host_network = spec.host_network.unwrap_or(false);
    // On the host's network the pod has the host's UTS namespace too: no hostname to set
    // (runc refuses one: "unable to set hostname without a private UTS namespace").
    let hostname = if host_network {
        String::new()
    } else {
        let h = spec.hostname.clone().unwrap_or_else(|| name.to_string());
        h.chars().take(63).collect::<String>()
    };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) != 0)
        .map(|p| PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let mode = |node: bool| {
        if node {
            NamespaceMode::Node as i32
        } else {
            NamespaceMode::Pod as i32
        }
    };
    let pid = if spec.host_pid.unwrap_or(false) {
        NamespaceMode::Node as i32
    } else if spec.share_process_namespace.unwrap_or(false) {
        NamespaceMode::Pod as i32
    } else {
        NamespaceMode::Container as i32
    };
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: ns.into(),
            attempt,
        }),
        hostname,
        log_directory: pod_log_dir(ctx, pod).to_string_lossy().into_owned(),
        dns_config: Some(dns_config(ctx, pod)),
        port_mappings,
        labels: sandbox_labels(pod),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup(ctx, pod),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: mode(host_network),
                    pid,
                    ipc: mode(spec.host_ipc.unwrap_or(false)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Kubernetes' `expansion.Expand`: `$(VAR)` replaced from `env` (left as is when
/// undefined), `$$` escapes a `$`.
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < b.len() {
        if b[cursor] == b'$' && cursor + 1 < b.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(end) => {
                        let name = &rest[1..=end];
                        match env(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        end + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    let ch = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// A `fieldRef` value (`podFieldSelectorRuntimeValue`).
fn field_value(pod: &Pod, ctx: &NodeContext, pod_ip: &str, path: &str) -> Result<String, String> {
    let (name, ns, uid) = meta(pod);
    let sel = |m: &Option<BTreeMap<String, String>>, key: &str| {
        m.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    let bracket = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => name.into(),
        "metadata.namespace" => ns.into(),
        "metadata.uid" => uid.into(),
        "spec.nodeName" => ctx.node_name.clone(),
        "spec.serviceAccountName" => spec(pod).service_account_name.unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => pod_ip.into(),
        _ => {
            if let Some(k) = bracket("metadata.labels['") {
                sel(&pod.metadata.labels, &k)
            } else if let Some(k) = bracket("metadata.annotations['") {
                sel(&pod.metadata.annotations, &k)
            } else {
                return Err(format!("unsupported fieldRef {path:?}"));
            }
        }
    })
}

/// `makeEnvironmentVariables`: `envFrom` first, then the container's env in order, each
/// value expanded with the ones before it; `fieldRef` values from the pod, ConfigMap and
/// Secret keys from `sources`. An error is a `CreateContainerConfigError`.
pub fn environment(
    pod: &Pod,
    c: &Container,
    ctx: &NodeContext,
    pod_ip: &str,
    sources: &Sources,
) -> Result<Vec<(String, String)>, String> {
    let (mut out, _) = sources.env_from(pod, c)?;
    let mut map: HashMap<String, String> = out.iter().cloned().collect();
    for e in c.env.iter().flatten() {
        let value = if let Some(from) = &e.value_from {
            if let Some(f) = &from.field_ref {
                field_value(pod, ctx, pod_ip, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                resource_value(c, &r.resource)?
            } else {
                match sources.env_value(pod, from)? {
                    Some(v) => v,
                    // An optional key that is missing leaves the variable out.
                    None => continue,
                }
            }
        } else {
            let v = e.value.clone().unwrap_or_default();
            expand(&v, &|k| map.get(k).cloned())
        };
        map.insert(e.name.clone(), value.clone());
        match out.iter_mut().find(|(k, _)| *k == e.name) {
            Some(slot) => slot.1 = value,
            None => out.push((e.name.clone(), value)),
        }
    }
    Ok(out)
}

/// A `resourceFieldRef` value (divisor 1): cpu rounded up to cores, memory in bytes.
fn resource_value(c: &Container, resource: &str) -> Result<String, String> {
    let r = c.resources.clone().unwrap_or_default();
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {resource:?}"))?;
    let map = if kind == "limits" {
        r.limits
    } else {
        r.requests
    };
    let q = map.unwrap_or_default().get(name).map(|q| q.0.clone());
    Ok(match (name, q) {
        ("cpu", Some(q)) => {
            let m = parse_milli(&q).unwrap_or(0);
            ((m + 999) / 1000).to_string()
        }
        ("cpu", None) => "0".into(),
        (_, Some(q)) => parse_units(&q).unwrap_or(0).to_string(),
        (_, None) => "0".into(),
    })
}

/// `MilliCPUToShares`.
pub fn cpu_shares(milli: i64) -> i64 {
    if milli == 0 {
        return 2;
    }
    (milli * 1024 / 1000).max(2)
}

/// The CFS period (100 ms).
pub const CPU_PERIOD: i64 = 100_000;

/// `MilliCPUToQuota`.
pub fn cpu_quota(milli: i64) -> i64 {
    if milli == 0 {
        return 0;
    }
    (milli * CPU_PERIOD / 1000).max(1000)
}

/// `GetContainerOOMScoreAdjust`.
pub fn oom_score_adj(qos: &str, memory_request: i64, memory_capacity: i64) -> i64 {
    match qos {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            if memory_capacity <= 0 {
                return 999;
            }
            let adj = 1000 - (1000 * memory_request) / memory_capacity;
            if adj < 3 {
                3
            } else if adj == 1000 {
                999
            } else {
                adj
            }
        }
    }
}

fn quantity(r: &ResourceRequirements, limits: bool, name: &str, milli: bool) -> Option<i64> {
    let m = if limits { &r.limits } else { &r.requests };
    let q = m.as_ref()?.get(name)?;
    let v = if milli {
        parse_milli(&q.0)
    } else {
        parse_units(&q.0)
    }?;
    i64::try_from(v).ok()
}

/// The container's Linux resources (`generateLinuxContainerResources`).
pub fn linux_resources(pod: &Pod, c: &Container, ctx: &NodeContext) -> LinuxContainerResources {
    let r = c.resources.clone().unwrap_or_default();
    let cpu_limit = quantity(&r, true, "cpu", true);
    let cpu_request = quantity(&r, false, "cpu", true).or(cpu_limit);
    let mem_limit = quantity(&r, true, "memory", false);
    let mem_request = quantity(&r, false, "memory", false).or(mem_limit);
    let qos = qos_class(&spec(pod));
    LinuxContainerResources {
        cpu_shares: cpu_shares(cpu_request.unwrap_or(0)),
        cpu_period: if cpu_limit.is_some() { CPU_PERIOD } else { 0 },
        cpu_quota: cpu_limit.map_or(0, cpu_quota),
        memory_limit_in_bytes: mem_limit.unwrap_or(0),
        oom_score_adj: oom_score_adj(qos, mem_request.unwrap_or(0), ctx.memory_capacity),
        ..Default::default()
    }
}

/// The container's mounts: its volumeMounts over the pod's volumes (emptyDir, hostPath,
/// downwardAPI) and the termination-message file.
pub fn mounts(pod: &Pod, c: &Container, ctx: &NodeContext) -> Result<Vec<Mount>, String> {
    let (_, _, uid) = meta(pod);
    let spec = spec(pod);
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let v = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == m.name)
            .ok_or_else(|| {
                format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    m.name, c.name
                )
            })?;
        let mut host: PathBuf = if v.empty_dir.is_some() {
            empty_dir_path(ctx, uid, &v.name)
        } else if let Some(h) = &v.host_path {
            PathBuf::from(&h.path)
        } else if v.downward_api.is_some() {
            downward_api_path(ctx, uid, &v.name)
        } else if let Some(plugin) = file_volume_plugin(v) {
            file_volume_path(ctx, uid, plugin, &v.name)
        } else {
            return Err(format!(
                "volume {:?}: only emptyDir, hostPath, downwardAPI, configMap, secret and projected volumes are supported",
                v.name
            ));
        };
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if Path::new(sub).is_absolute() || sub.split('/').any(|p| p == "..") {
                return Err(format!(
                    "subPath {sub:?} must be a relative path without '..'"
                ));
            }
            host = host.join(sub);
        }
        out.push(Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false)
                || v.downward_api.is_some()
                || file_volume_plugin(v).is_some(),
            ..Default::default()
        });
    }
    let tmp = c
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    if !tmp.is_empty() && !out.iter().any(|m| m.container_path == tmp) {
        out.push(Mount {
            container_path: tmp,
            host_path: termination_log_path(ctx, uid, &c.name)
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        });
    }
    Ok(out)
}

/// `generateContainerConfig`: the container's CRI config for `attempt`, with `pod_ip` for
/// `status.podIP` references. An error is a `CreateContainerConfigError`.
pub fn container_config(
    ctx: &NodeContext,
    pod: &Pod,
    c: &Container,
    attempt: u32,
    pod_ip: &str,
    image_ref: &str,
    sources: &Sources,
) -> Result<ContainerConfig, String> {
    let (name, ns, uid) = meta(pod);
    let env = environment(pod, c, ctx, pod_ip, sources)?;
    let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let command = c
        .command
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    let args = c
        .args
        .iter()
        .flatten()
        .map(|s| expand(s, &lookup))
        .collect();
    let labels = HashMap::from([
        (LABEL_POD_NAME.to_string(), name.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_POD_UID.to_string(), uid.to_string()),
        (LABEL_CONTAINER_NAME.to_string(), c.name.clone()),
    ]);
    let grace = spec(pod).termination_grace_period_seconds.unwrap_or(30);
    let annotations = HashMap::from([
        (
            "io.kubernetes.container.restartCount".to_string(),
            attempt.to_string(),
        ),
        (
            "io.kubernetes.container.terminationMessagePath".to_string(),
            c.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            "io.kubernetes.pod.terminationGracePeriod".to_string(),
            grace.to_string(),
        ),
    ]);
    Ok(ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(ImageSpec {
            image: image_ref.to_string(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        mounts: {
            let mut m = mounts(pod, c, ctx)?;
            if manages_etc_hosts(pod, c, pod_ip) {
                m.push(Mount {
                    container_path: "/etc/hosts".into(),
                    host_path: etc_hosts_path(ctx, uid).to_string_lossy().into_owned(),
                    ..Default::default()
                });
            }
            m
        },
        labels,
        annotations,
        log_path: container_log_path(&c.name, attempt),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(LinuxContainerConfig {
            resources: Some(linux_resources(pod, c, ctx)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// What a hostPath volume's `type` requires of what is at its path: `Ok(create)` where
/// `create` is `Some(true)` for a directory to create, `Some(false)` for a file to create.
/// `existing` is what is there: `None` nothing, `Some(true)` a directory, `Some(false)` a file.
pub fn host_path_check(
    type_: &str,
    path: &str,
    existing: Option<bool>,
) -> Result<Option<bool>, String> {
    match (type_, existing) {
        ("", _) => Ok(None),
        ("DirectoryOrCreate", None) => Ok(Some(true)),
        ("FileOrCreate", None) => Ok(Some(false)),
        ("Directory" | "DirectoryOrCreate", Some(true)) => Ok(None),
        ("File" | "FileOrCreate", Some(false)) => Ok(None),
        ("Directory", None) => Err(format!(
            "hostPath type check failed: {path} is not a directory"
        )),
        ("Directory" | "DirectoryOrCreate", Some(false)) => Err(format!(
            "hostPath type check failed: {path} is not a directory"
        )),
        ("File" | "FileOrCreate", _) => {
            Err(format!("hostPath type check failed: {path} is not a file"))
        }
        ("Socket" | "CharDevice" | "BlockDevice", None) => {
            Err(format!("hostPath type check failed: {path} does not exist"))
        }
        _ => Ok(None),
    }
}

/// The files of a downwardAPI volume: relative path -> content.
pub fn downward_api_files(
    pod: &Pod,
    volume: &str,
    ctx: &NodeContext,
) -> Result<Vec<(String, String)>, String> {
    let spec = spec(pod);
    let Some(d) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.downward_api.clone())
    else {
        return Ok(Vec::new());
    };
    downward_api_items(pod, d.items.as_deref().unwrap_or_default(), ctx)
}

/// The files of downwardAPI `items` (a downwardAPI volume's, or a projection's):
/// relative path -> content.
pub fn downward_api_items(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    ctx: &NodeContext,
) -> Result<Vec<(String, String)>, String> {
    let spec = spec(pod);
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default();
    let mut out = Vec::new();
    for item in items {
        if item.path.split('/').any(|p| p == "..") || item.path.starts_with('/') {
            return Err(format!(
                "downwardAPI path {:?} must be relative without '..'",
                item.path
            ));
        }
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => kv_lines(pod.metadata.labels.as_ref()),
                "metadata.annotations" => kv_lines(pod.metadata.annotations.as_ref()),
                p => field_value(pod, ctx, &ip, p)?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let c = spec
                .containers
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .ok_or_else(|| {
                    format!(
                        "downwardAPI {:?}: no container {:?}",
                        item.path, r.container_name
                    )
                })?;
            resource_value(c, &r.resource)?
        } else {
            String::new()
        };
        out.push((item.path.clone(), value));
    }
    Ok(out)
}

/// `key="value"` lines, sorted, as the downward API writes labels and annotations.
fn kv_lines(m: Option<&BTreeMap<String, String>>) -> String {
    m.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The pod's hosts file on the host: `<root-dir>/pods/<uid>/etc-hosts`.
pub fn etc_hosts_path(ctx: &NodeContext, uid: &str) -> PathBuf {
    pod_dir(ctx, uid).join("etc-hosts")
}

/// Whether the kubelet manages the container's /etc/hosts (`shouldMountHostsFile`): the pod
/// has an address, is not on the host's network, and the container mounts nothing there.
pub fn manages_etc_hosts(pod: &Pod, c: &Container, pod_ip: &str) -> bool {
    !pod_ip.is_empty()
        && !spec(pod).host_network.unwrap_or(false)
        && !c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/etc/hosts")
}

/// The kubelet's managed hosts file (`managedHostsFileContent`): loopback and IPv6 entries,
/// the pod's address with its name (and FQDN with a subdomain), then `hostAliases`.
pub fn etc_hosts(ctx: &NodeContext, pod: &Pod, pod_ip: &str) -> String {
    let spec = spec(pod);
    let (name, ns, _) = meta(pod);
    let hostname = spec.hostname.clone().unwrap_or_else(|| name.to_string());
    let hostname: String = hostname.chars().take(63).collect();
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(sub) => out.push_str(&format!(
            "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{}\t{hostname}\n",
            ctx.cluster_domain
        )),
        None => out.push_str(&format!("{pod_ip}\t{hostname}\n")),
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            out.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.unwrap_or_default().join("\t")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn ctx() -> NodeContext {
        NodeContext {
            root_dir: "/var/lib/kubelet".into(),
            pod_logs_dir: "/var/log/pods".into(),
            cgroup_root: "/bosun".into(),
            cluster_dns: vec![],
            cluster_domain: "cluster.local".into(),
            host_dns: parse_resolv_conf("nameserver 1.1.1.1\nsearch lan\noptions edns0\n"),
            node_name: "n1".into(),
            host_name: "host".into(),
            host_ip: "192.168.1.5".into(),
            memory_capacity: 1 << 30,
            log_rotation: super::super::logs::LogRotation::default(),
            sync_frequency: std::time::Duration::from_secs(60),
            eviction_hard: crate::eviction::EvictionHard::default(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1",
                         "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn sandbox_config_as_the_kubelet_builds_it() {
        let p = pod(json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53},
            {"containerPort": 9000}]}]}));
        let s = sandbox_config(&ctx(), &p, 2);
        let m = s.metadata.unwrap();
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web", "ns1", "u-1", 2)
        );
        assert_eq!(s.hostname, "web");
        assert_eq!(s.log_directory, "/var/log/pods/ns1_web_u-1");
        assert_eq!(s.labels[LABEL_POD_UID], "u-1");
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.annotations["a"], "b");
        assert_eq!(s.port_mappings.len(), 2);
        assert_eq!(s.port_mappings[1].protocol, Protocol::Udp as i32);
        let linux = s.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/bosun/kubepods/besteffort/podu-1");
        let ns = linux.security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        // No cluster DNS: the host's resolv.conf.
        let dns = s.dns_config.unwrap();
        assert_eq!(dns.servers, ["1.1.1.1"]);
        let host = pod(json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
        let s = sandbox_config(&ctx(), &host, 0);
        assert_eq!(s.hostname, "");
        let ns = s
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);
    }

    #[test]
    fn cluster_dns_for_cluster_first_pods() {
        let mut c = ctx();
        c.cluster_dns = vec!["10.96.0.10".into()];
        let d = dns_config(&c, &pod(json!({"containers": []})));
        assert_eq!(d.servers, ["10.96.0.10"]);
        assert_eq!(
            d.searches,
            [
                "ns1.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "lan"
            ]
        );
        assert_eq!(d.options, ["ndots:5"]);
        let d = dns_config(&c, &pod(json!({"dnsPolicy": "Default", "containers": []})));
        assert_eq!(d.servers, ["1.1.1.1"]);
        let d = dns_config(
            &c,
            &pod(json!({"dnsPolicy": "None", "containers": [],
            "dnsConfig": {"nameservers": ["9.9.9.9"], "options": [{"name": "ndots", "value": "2"}]}})),
        );
        assert_eq!(
            (d.servers, d.options),
            (vec!["9.9.9.9".to_string()], vec!["ndots:2".to_string()])
        );
    }

    #[test]
    fn qos_classes_and_cgroups() {
        let g = pod(
            json!({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
        );
        assert_eq!(qos_class(g.spec.as_ref().unwrap()), "Guaranteed");
        assert_eq!(pod_cgroup(&ctx(), &g), "/bosun/kubepods/podu-1");
        let b =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "100m"}}}]}));
        assert_eq!(qos_class(b.spec.as_ref().unwrap()), "Burstable");
        let mut root = ctx();
        root.cgroup_root = "/".into();
        assert_eq!(pod_cgroup(&root, &b), "/kubepods/burstable/podu-1");
        let unequal = pod(json!({"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}));
        assert_eq!(qos_class(unequal.spec.as_ref().unwrap()), "Burstable");
    }

    #[test]
    fn resources_as_cgroup_values() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(250), 256);
        assert_eq!(cpu_quota(0), 0);
        assert_eq!(cpu_quota(5), 1000);
        assert_eq!(cpu_quota(1500), 150_000);
        assert_eq!(oom_score_adj("Guaranteed", 0, 100), -997);
        assert_eq!(oom_score_adj("BestEffort", 0, 100), 1000);
        assert_eq!(oom_score_adj("Burstable", 0, 100), 999);
        assert_eq!(oom_score_adj("Burstable", 50, 100), 500);
        assert_eq!(oom_score_adj("Burstable", 100, 100), 3);
        let p = pod(json!({"containers": [{"name": "c", "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = linux_resources(&p, c, &ctx());
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.cpu_period),
            (256, 50_000, 100_000)
        );
        assert_eq!(r.memory_limit_in_bytes, 512 << 20);
        assert_eq!(r.oom_score_adj, 750);
    }

    #[test]
    fn expansion_as_kubernetes_does_it() {
        let env = |k: &str| match k {
            "A" => Some("x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        for (input, want) in [
            ("$(A)", "x"),
            ("pre-$(A)-post", "pre-x-post"),
            ("$(MISSING)", "$(MISSING)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("$(EMPTY)!", "!"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("a$", "a$"),
            ("$", "$"),
            ("", ""),
            ("é$(A)é", "éxé"),
        ] {
            assert_eq!(expand(input, &env), want, "{input:?}");
        }
    }

    #[test]
    fn container_config_with_env_field_refs_and_expansion() {
        let p = pod(json!({"containers": [{"name": "app", "image": "busybox",
        "command": ["sh", "-c"], "args": ["echo $(GREETING) $(POD_IP) $$(HOME)"],
        "workingDir": "/w", "tty": true,
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "GREETING", "value": "hi $(NAME) in $(NS) $(LATER)"},
            {"name": "LATER", "value": "l"}
        ]}]}));
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(
            &ctx(),
            &p,
            c,
            3,
            "10.0.0.7",
            "sha256:abc",
            &Sources::default(),
        )
        .unwrap();
        let env: HashMap<_, _> = cfg
            .envs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        assert_eq!(env["NAME"], "web");
        assert_eq!(env["NS"], "ns1");
        assert_eq!(env["UID"], "u-1");
        assert_eq!(env["POD_IP"], "10.0.0.7");
        assert_eq!(env["NODE"], "n1");
        assert_eq!(env["HOST_IP"], "192.168.1.5");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["GREETING"], "hi web in ns1 $(LATER)");
        assert_eq!(cfg.args, ["echo hi web in ns1 $(LATER) 10.0.0.7 $(HOME)"]);
        assert_eq!(cfg.metadata.unwrap().attempt, 3);
        assert_eq!(cfg.log_path, "app/3.log");
        assert_eq!(cfg.working_dir, "/w");
        assert!(cfg.tty);
        assert_eq!(cfg.labels[LABEL_CONTAINER_NAME], "app");
        assert_eq!(cfg.labels[LABEL_POD_UID], "u-1");
        assert_eq!(cfg.image.unwrap().image, "sha256:abc");
        assert_eq!(cfg.mounts.len(), 2, "the termination log and /etc/hosts");
        assert_eq!(cfg.mounts[1].container_path, "/etc/hosts");
        assert_eq!(cfg.mounts[0].container_path, "/dev/termination-log");
        assert_eq!(
            cfg.mounts[0].host_path,
            "/var/lib/kubelet/pods/u-1/containers/app/termination-log"
        );
        // A reference to a secret the apiserver does not have is a config error.
        let bad = pod(json!({"containers": [{"name": "a", "env": [{"name": "X",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}));
        let c = &bad.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container_config(&ctx(), &bad, c, 0, "", "i", &Sources::default()).unwrap_err(),
            "secret \"s\" not found"
        );
        // envFrom first, env over it, and expansion sees both.
        let from = pod(json!({"containers": [{"name": "a",
            "envFrom": [{"configMapRef": {"name": "cfg"}}],
            "env": [{"name": "MODE", "value": "slow"}, {"name": "BOTH", "value": "$(LEVEL)-$(MODE)"},
                    {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}}]}]}));
        let cm = serde_json::from_value(json!({"metadata": {"name": "cfg"},
            "data": {"MODE": "fast", "LEVEL": "3"}}))
        .unwrap();
        let sources = Sources {
            config_maps: BTreeMap::from([("cfg".to_string(), Some(cm))]),
            ..Default::default()
        };
        let c = &from.spec.as_ref().unwrap().containers[0];
        let env = environment(&from, c, &ctx(), "", &sources).unwrap();
        assert_eq!(
            env,
            [
                ("LEVEL".to_string(), "3".to_string()),
                ("MODE".into(), "slow".into()),
                ("BOTH".into(), "3-slow".into())
            ]
        );
    }

    #[test]
    fn volume_mounts() {
        let p = pod(json!({
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/srv"}},
                        {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                                                                  {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                        {"name": "cm", "configMap": {"name": "x"}},
                        {"name": "nfs", "nfs": {"server": "s", "path": "/"}}],
            "containers": [{"name": "c", "terminationMessagePath": "", "volumeMounts": [
                {"name": "scratch", "mountPath": "/data"},
                {"name": "host", "mountPath": "/h", "readOnly": true, "subPath": "x/y"},
                {"name": "info", "mountPath": "/etc/info"}]},
                {"name": "bad", "volumeMounts": [{"name": "nfs", "mountPath": "/nfs"}]},
                {"name": "cm", "volumeMounts": [{"name": "cm", "mountPath": "/cm"}]},
                {"name": "escape", "volumeMounts": [{"name": "host", "mountPath": "/e", "subPath": "../etc"}]}]}));
        let s = p.spec.as_ref().unwrap();
        let m = mounts(&p, &s.containers[0], &ctx()).unwrap();
        assert_eq!(
            m[0].host_path,
            "/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~empty-dir/scratch"
        );
        assert_eq!((m[1].host_path.as_str(), m[1].readonly), ("/srv/x/y", true));
        assert_eq!(
            m[2].host_path,
            "/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~downward-api/info"
        );
        assert!(m[2].readonly);
        assert_eq!(m.len(), 3, "an empty terminationMessagePath mounts nothing");
        assert!(
            mounts(&p, &s.containers[1], &ctx())
                .unwrap_err()
                .contains("only emptyDir")
        );
        assert!(mounts(&p, &s.containers[3], &ctx()).is_err());
        let cm = mounts(&p, &s.containers[2], &ctx()).unwrap();
        assert_eq!(
            (cm[0].host_path.as_str(), cm[0].readonly),
            (
                "/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~configmap/cm",
                true
            )
        );
        let files = downward_api_files(&p, "info", &ctx()).unwrap();
        assert_eq!(
            files,
            vec![
                ("name".into(), "web".into()),
                ("labels".into(), "app=\"web\"".into())
            ]
        );
    }

    #[test]
    fn the_managed_hosts_file() {
        let p = pod(json!({"containers": [{"name": "c"}],
            "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["a", "b"]}]}));
        let h = etc_hosts(&ctx(), &p, "10.0.0.7");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(h.contains("\n10.0.0.7\tweb\n"), "{h}");
        assert!(
            h.ends_with("# Entries added by HostAliases.\n10.1.1.1\ta\tb\n"),
            "{h}"
        );
        let sub = pod(json!({"hostname": "h", "subdomain": "s", "containers": [{"name": "c"}]}));
        assert!(
            etc_hosts(&ctx(), &sub, "10.0.0.8")
                .contains("10.0.0.8\th.s.ns1.svc.cluster.local\th\n")
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let cfg = container_config(&ctx(), &p, c, 0, "10.0.0.7", "i", &Sources::default()).unwrap();
        assert!(cfg.mounts.iter().any(|m| m.container_path == "/etc/hosts"
            && m.host_path == "/var/lib/kubelet/pods/u-1/etc-hosts"));
        assert!(!manages_etc_hosts(&p, c, ""));
        let host = pod(json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
        assert!(!manages_etc_hosts(
            &host,
            &host.spec.as_ref().unwrap().containers[0],
            "1.2.3.4"
        ));
    }

    #[test]
    fn host_path_types() {
        assert_eq!(host_path_check("", "/x", None), Ok(None));
        assert_eq!(
            host_path_check("DirectoryOrCreate", "/x", None),
            Ok(Some(true))
        );
        assert_eq!(host_path_check("FileOrCreate", "/x", None), Ok(Some(false)));
        assert_eq!(host_path_check("Directory", "/x", Some(true)), Ok(None));
        assert_eq!(
            host_path_check("Directory", "/x", None),
            Err("hostPath type check failed: /x is not a directory".into())
        );
        assert!(host_path_check("File", "/x", Some(true)).is_err());
        assert!(host_path_check("FileOrCreate", "/x", Some(true)).is_err());
        assert!(host_path_check("DirectoryOrCreate", "/x", Some(false)).is_err());
        assert_eq!(host_path_check("File", "/x", Some(false)), Ok(None));
    }
}
