//! The node from the host, for the CRI kubelet: capacity and allocatable (CPUs, memory from
//! /proc/meminfo, ephemeral storage from statvfs of --root-dir, pods), the OS image, the
//! pressure conditions against `--eviction-hard` (Kubernetes sets no default for
//! `pid.available` and this kubelet takes none, so PID pressure stays false here), the
//! runtime's readiness, and the removal of a pod's cgroups.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_cri::v1::RuntimeCondition;

use crate::eviction::{EvictionHard, Threshold};
use crate::node::NodeHealth;

/// A `/proc/meminfo` field in bytes.
pub fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// `PRETTY_NAME` of an os-release file.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.strip_prefix("PRETTY_NAME=")?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// Capacity and allocatable (capacity less the hard eviction thresholds, as the kubelet's
/// allocatable is with no reservations), Kubernetes' quantities.
pub fn capacity(
    cpus: usize,
    mem_total: u64,
    fs_total: u64,
    max_pods: u32,
    eviction: &EvictionHard,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let cap = BTreeMap::from([
        ("cpu".to_string(), cpus.to_string()),
        ("memory".to_string(), format!("{}Ki", mem_total / 1024)),
        (
            "ephemeral-storage".to_string(),
            format!("{}Ki", fs_total / 1024),
        ),
        ("pods".to_string(), max_pods.to_string()),
    ]);
    let less =
        |total: u64, t: Option<Threshold>| total.saturating_sub(t.map_or(0, |t| t.bytes(total)));
    let mem = less(mem_total, eviction.memory_available);
    let fs = less(fs_total, eviction.nodefs_available);
    let alloc = BTreeMap::from([
        ("cpu".to_string(), cpus.to_string()),
        ("memory".to_string(), format!("{}Ki", mem / 1024)),
        ("ephemeral-storage".to_string(), fs.to_string()),
        ("pods".to_string(), max_pods.to_string()),
    ]);
    (cap, alloc)
}

/// (available, total) bytes of the filesystem holding `path`.
pub fn fs_stats(path: &Path) -> Option<(u64, u64)> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let s = rustix::fs::statvfs(&p).ok()?;
    Some((s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

/// The host's CPUs, memory and `--root-dir`'s filesystem.
pub fn host_capacity(
    root_dir: &Path,
    max_pods: u32,
    eviction: &EvictionHard,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| meminfo_field(&t, "MemTotal"))
        .unwrap_or(0);
    let fs = fs_stats(root_dir).map_or(0, |s| s.1);
    capacity(cpus, mem, fs, max_pods, eviction)
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| pretty_name(&t))
        .unwrap_or_else(|| "Linux".into())
}

/// The host's pressures now.
pub fn pressure(root_dir: &Path, eviction: &EvictionHard) -> NodeHealth {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo_field(&meminfo, "MemAvailable").unwrap_or(u64::MAX);
    let mem_total = meminfo_field(&meminfo, "MemTotal").unwrap_or(u64::MAX);
    let (avail, total) = fs_stats(root_dir).unwrap_or((1, 1));
    let (memory_pressure, disk_pressure) = eviction.pressures(mem, mem_total, avail, total);
    NodeHealth {
        memory_pressure,
        disk_pressure,
        pid_pressure: false,
        not_ready: None,
    }
}

/// `kubecontainer.RuntimeCondition.String`.
fn condition_string(c: &RuntimeCondition) -> String {
    format!(
        "{}={} reason:{} message:{}",
        c.r#type, c.status, c.reason, c.message
    )
}

/// Why the node is not ready given the runtime's conditions (the kubelet's
/// `updateRuntimeUp`): `container runtime not ready: ...`, `container runtime network not
/// ready: ...`, or `None`.
pub fn runtime_not_ready(conditions: &[RuntimeCondition]) -> Option<String> {
    let find = |t: &str| conditions.iter().find(|c| c.r#type == t);
    let mut errs = Vec::new();
    match find("RuntimeReady") {
        Some(c) if c.status => {}
        Some(c) => errs.push(format!(
            "container runtime not ready: {}",
            condition_string(c)
        )),
        None => errs.push("container runtime not ready: RuntimeReady condition is missing".into()),
    }
    match find("NetworkReady") {
        Some(c) if c.status => {}
        Some(c) => errs.push(format!(
            "container runtime network not ready: {}",
            condition_string(c)
        )),
        None => errs
            .push("container runtime network not ready: NetworkReady condition is missing".into()),
    }
    match errs.len() {
        0 => None,
        1 => errs.pop(),
        _ => Some(format!("[{}]", errs.join(", "))),
    }
}

/// The cgroup directories a pod may have (every QoS class, every v1 hierarchy and v2).
pub fn pod_cgroup_dirs(
    cgroup_fs: &Path,
    hierarchies: &[String],
    cgroup_root: &str,
    uid: &str,
) -> Vec<std::path::PathBuf> {
    let root = cgroup_root.trim_matches('/');
    let mut out = Vec::new();
    for class in ["", "burstable/", "besteffort/"] {
        let rel = if root.is_empty() {
            format!("kubepods/{class}pod{uid}")
        } else {
            format!("{root}/kubepods/{class}pod{uid}")
        };
        out.push(cgroup_fs.join(&rel));
        for h in hierarchies {
            out.push(cgroup_fs.join(h).join(&rel));
        }
    }
    out
}

/// Removes the pod's cgroup directories (containerd leaves them); only empty ones go.
pub fn remove_pod_cgroups(cgroup_root: &str, uid: &str) {
    let fs = Path::new("/sys/fs/cgroup");
    let hierarchies: Vec<String> = std::fs::read_dir(fs)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for d in pod_cgroup_dirs(fs, &hierarchies, cgroup_root, uid) {
        if d.is_dir() {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// Whether `dir` is a mount point (its device differs from its parent's).
pub fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Some(Ok(p))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else {
        return false;
    };
    d.dev() != p.dev()
}

/// Mounts a tmpfs on `dir` (an emptyDir of medium Memory), `size` bytes at most; nothing
/// when one is mounted already.
pub fn mount_tmpfs(dir: &Path, size: Option<u64>) -> std::io::Result<()> {
    if is_mount_point(dir) {
        return Ok(());
    }
    let data = size.map(|s| format!("size={s}")).unwrap_or_default();
    let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(std::io::Error::from)
}

/// Unmounts what is mounted on the directories directly under `dir` (a pod's emptyDir
/// volumes), so that removing the pod's directory removes no mounted content.
pub fn unmount_children(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if is_mount_point(&p) {
            let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn host_files() {
        let mi =
            "MemTotal:       16314880 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\n";
        assert_eq!(meminfo_field(mi, "MemTotal"), Some(16_314_880 * 1024));
        assert_eq!(meminfo_field(mi, "MemAvailable"), Some(8_000_000 * 1024));
        assert_eq!(meminfo_field(mi, "Nope"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn capacity_and_allocatable() {
        let (cap, alloc) = capacity(4, 1 << 30, 1000 * 1024, 110, &EvictionHard::default());
        assert_eq!(cap["cpu"], "4");
        assert_eq!(cap["memory"], "1048576Ki");
        assert_eq!(cap["ephemeral-storage"], "1000Ki");
        assert_eq!(cap["pods"], "110");
        assert_eq!(alloc["memory"], "946176Ki");
        assert_eq!(
            alloc["ephemeral-storage"],
            (1000 * 1024 - 102_400).to_string()
        );
        let none = crate::eviction::parse("nodefs.available<0%").unwrap();
        let (_, alloc) = capacity(4, 1 << 30, 1000 * 1024, 110, &none);
        assert_eq!(alloc["memory"], "1048576Ki");
        assert_eq!(alloc["ephemeral-storage"], (1000 * 1024).to_string());
    }

    #[test]
    fn runtime_readiness_messages() {
        let c = |t: &str, ok: bool, reason: &str, msg: &str| RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: reason.into(),
            message: msg.into(),
        };
        assert_eq!(
            runtime_not_ready(&[
                c("RuntimeReady", true, "", ""),
                c("NetworkReady", true, "", "")
            ]),
            None
        );
        assert_eq!(
            runtime_not_ready(&[
                c("RuntimeReady", true, "", ""),
                c(
                    "NetworkReady",
                    false,
                    "NetworkPluginNotReady",
                    "Network plugin returns error: cni plugin not initialized"
                )
            ])
            .as_deref(),
            Some(
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
            )
        );
        assert!(
            runtime_not_ready(&[])
                .unwrap()
                .starts_with("[container runtime not ready")
        );
    }

    #[test]
    fn cgroup_dirs_of_a_pod() {
        let d = pod_cgroup_dirs(Path::new("/sys/fs/cgroup"), &["cpu".into()], "/bosun", "u1");
        assert!(d.contains(&"/sys/fs/cgroup/cpu/bosun/kubepods/burstable/podu1".into()));
        assert!(d.contains(&"/sys/fs/cgroup/bosun/kubepods/podu1".into()));
        let d = pod_cgroup_dirs(Path::new("/sys/fs/cgroup"), &[], "/", "u1");
        assert_eq!(d[0], Path::new("/sys/fs/cgroup/kubepods/podu1"));
    }
}
