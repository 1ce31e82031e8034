//! `bosun kubelet`'s flags (named as the kubelet's where it has them) and what they derive:
//! the nodes one process hosts, each with its name, pod range and capacity.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cidr::Ipv4Cidr;
use crate::quantity::{parse_milli, parse_units};

/// The container runtime a kubelet drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Hollow nodes: pods "run" at once, no process is started.
    Fake,
    /// containerd (or any CRI v1 runtime) at --container-runtime-endpoint.
    Cri,
}

/// The kubelet's options.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeletConfig {
    /// The apiserver's URL (its gRPC API shares kubectl's port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub apiserver: String,
    /// The node's name (default: the host name). With --node-count N, the nodes are
    /// <node-name>-0 .. <node-name>-(N-1).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The container runtime: `fake` for hollow nodes (tests, benchmarks), `cri` for
    /// containerd (or any CRI v1 runtime) at --container-runtime-endpoint.
    #[arg(long, value_enum)]
    pub runtime: RuntimeKind,
    /// Hollow nodes this process hosts (as kwok does), sharing one connection and one pod
    /// watch. Only with --runtime fake.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub node_count: u32,
    /// How often the node's status is computed; it is written when it changed or when
    /// --node-status-report-frequency has passed since the last write.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    /// How often an unchanged node status is written anyway.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub node_status_report_frequency: Duration,
    /// The node Lease's duration; it is renewed every quarter of it.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i32).range(1..=3600))]
    pub node_lease_duration_seconds: i32,
    /// Pods a node runs at most; more are rejected at admission (OutOfpods).
    #[arg(long, default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_pods: u32,
    /// The pods' address range. With one node, the node's podCIDR (unless
    /// --node-cidr-mask-size says otherwise); with several, carved into one subnet each.
    #[arg(long, default_value = "10.244.0.0/16", value_parser = parse_cidr)]
    pub pod_cidr: Ipv4Cidr,
    /// Prefix length of each node's podCIDR (default: the whole --pod-cidr for one node, /24
    /// for several).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=30))]
    pub node_cidr_mask_size: Option<u8>,
    /// The node's address (InternalIP); hollow nodes all report the loopback address.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: Ipv4Addr,
    /// Labels added to the node(s): key=value,...
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
    /// CPU capacity of a hollow node.
    #[arg(long, default_value = "32", value_parser = parse_quantity)]
    pub fake_cpu: String,
    /// Memory capacity of a hollow node.
    #[arg(long, default_value = "256Gi", value_parser = parse_quantity)]
    pub fake_memory: String,
    /// How long a hollow pod takes to stop once deleted (capped by its grace period).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub fake_stop_delay: Duration,
    /// Pods synced at once (a de-duplicating queue feeds them; one pod is never synced twice
    /// at the same time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: u32,
    /// Address of /metrics, /healthz and the kubelet's /containerLogs and /exec.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Port of /metrics, /healthz, /containerLogs and /exec (the node's kubelet endpoint); 0: none.
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The CRI runtime's socket (unix:///run/containerd/containerd.sock); required with
    /// --runtime cri; with --runtime fake optional and used only by /exec.
    #[arg(long)]
    pub container_runtime_endpoint: Option<String>,
    /// Where container logs are written (<dir>/<namespace>_<pod>_<uid>/<container>/<n>.log).
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_logs_dir: std::path::PathBuf,
    /// Size past which a running container's log file is rotated (a quantity: 10Mi), as the
    /// kubelet's containerLogMaxSize.
    #[arg(long, default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log files kept per container, the current one included (at least 2), as the
    /// kubelet's containerLogMaxFiles.
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: usize,
    /// How often the files of a running pod's configMap, secret and projected volumes are
    /// brought up to date with their ConfigMaps and Secrets (the kubelet's syncFrequency).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub sync_frequency: Duration,
    /// The cgroup the pods' cgroups go under (<cgroup-root>/kubepods/...), cgroupfs driver.
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// Hard eviction thresholds, as the kubelet's: `signal<quantity` or `signal<percent%`,
    /// comma-separated, for `memory.available` and `nodefs.available` (the filesystem of
    /// --root-dir). Below one the node reports MemoryPressure or DiskPressure; allocatable
    /// leaves them out. Naming one signal drops the other's default; `<0%` turns one off.
    #[arg(long, default_value = crate::eviction::DEFAULT_EVICTION_HARD, value_parser = crate::eviction::parse)]
    pub eviction_hard: crate::eviction::EvictionHard,
    /// The kubelet's state directory (pods' volumes under <root-dir>/pods/<uid>).
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: std::path::PathBuf,
    /// DNS servers of ClusterFirst pods (comma-separated IPs); without them pods get the
    /// host's resolv.conf servers.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain: pods search <ns>.svc.<domain>, svc.<domain>, <domain>.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

/// One node a process hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its pod range.
    pub pod_cidr: Ipv4Cidr,
}

impl KubeletConfig {
    /// The options checked as a whole.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.runtime == RuntimeKind::Cri {
            if self.container_runtime_endpoint.is_none() {
                bail!(
                    "--runtime cri needs --container-runtime-endpoint (unix:///path/to/containerd.sock)"
                );
            }
            if self.node_count > 1 {
                bail!(
                    "--node-count {} is for hollow nodes: --runtime cri runs one node per process",
                    self.node_count
                );
            }
            if !self.cgroup_root.starts_with('/') {
                bail!(
                    "--cgroup-root {:?} must be an absolute cgroup path",
                    self.cgroup_root
                );
            }
        }
        if self.container_log_max_files < 2 {
            bail!(
                "--container-log-max-files {} must be at least 2",
                self.container_log_max_files
            );
        }
        if crate::quantity::parse_units(&self.container_log_max_size).is_none_or(|b| b <= 0) {
            bail!(
                "--container-log-max-size {:?} must be a positive quantity such as 10Mi",
                self.container_log_max_size
            );
        }
        if self.sync_frequency.is_zero() {
            bail!("--sync-frequency must be above zero");
        }
        if self.node_status_update_frequency.is_zero() {
            bail!("--node-status-update-frequency must be above zero");
        }
        if self.node_status_report_frequency < self.node_status_update_frequency {
            bail!(
                "--node-status-report-frequency must not be below --node-status-update-frequency"
            );
        }
        if let Some(size) = self.node_cidr_mask_size
            && size < self.pod_cidr.prefix()
        {
            bail!(
                "--node-cidr-mask-size /{size} is shorter than --pod-cidr {}",
                self.pod_cidr
            );
        }
        Ok(())
    }

    /// When container logs are rotated (the flags are checked by [`Self::validate`]).
    pub fn log_rotation(&self) -> crate::cri::logs::LogRotation {
        let default = crate::cri::logs::LogRotation::default();
        crate::cri::logs::LogRotation {
            max_size: crate::quantity::parse_units(&self.container_log_max_size)
                .and_then(|b| u64::try_from(b).ok())
                .unwrap_or(default.max_size),
            max_files: self.container_log_max_files,
        }
    }

    /// The nodes to host: names and pod ranges.
    pub fn nodes(&self) -> anyhow::Result<Vec<NodeSpec>> {
        let base = match &self.node_name {
            Some(n) => n.clone(),
            None => hostname().context("find the host name: give --node-name")?,
        };
        let count = u64::from(self.node_count);
        let size = self.node_cidr_mask_size.unwrap_or(if count == 1 {
            self.pod_cidr.prefix()
        } else {
            24.max(self.pod_cidr.prefix())
        });
        let cidrs = self.pod_cidr.subnets(size, count)?;
        Ok(cidrs
            .into_iter()
            .enumerate()
            .map(|(i, pod_cidr)| NodeSpec {
                name: if count == 1 {
                    base.clone()
                } else {
                    format!("{base}-{i}")
                },
                pod_cidr,
            })
            .collect())
    }

    /// A node's capacity (allocatable is the same: nothing is reserved on a hollow node).
    pub fn capacity(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cpu".into(), self.fake_cpu.clone()),
            ("memory".into(), self.fake_memory.clone()),
            ("pods".into(), self.max_pods.to_string()),
            ("ephemeral-storage".into(), "100Gi".into()),
        ])
    }
}

/// The host's name, lower-cased as the kubelet does.
fn hostname() -> anyhow::Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let name = raw.trim().to_lowercase();
    if name.is_empty() {
        bail!("the host name is empty");
    }
    Ok(name)
}

pub use bosun_api::parse_duration;

fn parse_cidr(s: &str) -> Result<Ipv4Cidr, String> {
    s.parse().map_err(|e: crate::cidr::CidrError| e.to_string())
}

fn parse_quantity(s: &str) -> Result<String, String> {
    match (parse_milli(s), parse_units(s)) {
        (Some(m), Some(_)) if m > 0 => Ok(s.to_string()),
        _ => Err(format!(
            "invalid quantity {s:?}: write e.g. 32, 500m, 256Gi"
        )),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("invalid label {s:?}: write key=value")),
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
        cfg: KubeletConfig,
    }

    fn parse(args: &[&str]) -> Result<KubeletConfig, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubelet").chain(args.iter().copied())).map(|c| c.cfg)
    }

    /// Hollow nodes named `h`, with `extra` flags.
    fn hollow(extra: &[&str]) -> KubeletConfig {
        let mut args = vec!["--runtime", "fake", "--node-name", "h"];
        args.extend_from_slice(extra);
        parse(&args).unwrap()
    }

    #[test]
    fn defaults_are_the_kubelets() {
        let c = parse(&["--runtime", "fake", "--node-name", "n"]).unwrap();
        assert_eq!(c.node_status_update_frequency, Duration::from_secs(10));
        assert_eq!(c.node_status_report_frequency, Duration::from_secs(300));
        assert_eq!(c.node_lease_duration_seconds, 40);
        assert_eq!(c.max_pods, 110);
        assert_eq!(c.capacity()["cpu"], "32");
        assert_eq!(c.capacity()["memory"], "256Gi");
        c.validate().unwrap();
        assert_eq!(
            c.nodes().unwrap(),
            vec![NodeSpec {
                name: "n".into(),
                pod_cidr: "10.244.0.0/16".parse().unwrap()
            }]
        );
    }

    #[test]
    fn many_nodes_get_numbered_names_and_a_subnet_each() {
        let c = hollow(&["--node-count", "3", "--pod-cidr", "10.0.0.0/8"]);
        let nodes = c.nodes().unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["h-0", "h-1", "h-2"]);
        assert_eq!(nodes[2].pod_cidr.to_string(), "10.0.2.0/24");
        let c = hollow(&["--node-count", "300"]);
        assert!(
            c.nodes()
                .unwrap_err()
                .to_string()
                .contains("holds 256 subnets of /24, not 300")
        );
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--runtime", "fake", "--fake-cpu", "lots"]).is_err());
        assert!(parse(&["--runtime", "fake", "--node-count", "0"]).is_err());
        assert!(parse(&["--runtime", "fake", "--pod-cidr", "10.0.0.0"]).is_err());
        assert!(parse(&["--runtime", "fake", "--node-labels", "=x"]).is_err());
        assert!(
            parse(&["--node-name", "n"]).is_err(),
            "--runtime is required"
        );
        let cri = parse(&["--runtime", "cri"]).unwrap();
        assert!(
            cri.validate()
                .unwrap_err()
                .to_string()
                .contains("needs --container-runtime-endpoint")
        );
        let cri = parse(&[
            "--runtime",
            "cri",
            "--container-runtime-endpoint",
            "unix:///run/c.sock",
            "--node-count",
            "2",
        ])
        .unwrap();
        assert!(
            cri.validate()
                .unwrap_err()
                .to_string()
                .contains("one node per process")
        );
        let cri = parse(&[
            "--runtime",
            "cri",
            "--container-runtime-endpoint",
            "unix:///run/c.sock",
            "--cluster-dns",
            "10.96.0.10,10.96.0.11",
        ])
        .unwrap();
        cri.validate().unwrap();
        assert_eq!(cri.cluster_dns.len(), 2);
        assert_eq!(cri.root_dir, std::path::PathBuf::from("/var/lib/kubelet"));
        assert_eq!(cri.pod_logs_dir, std::path::PathBuf::from("/var/log/pods"));
        let c = parse(&["--runtime", "fake", "--node-cidr-mask-size", "8"]).unwrap();
        assert!(c.validate().is_err());
        let rotation = |args: &[&str]| {
            let c = hollow(args);
            c.validate().map(|()| c.log_rotation())
        };
        assert_eq!(
            rotation(&[]).unwrap(),
            crate::cri::logs::LogRotation {
                max_size: 10 << 20,
                max_files: 5
            }
        );
        assert_eq!(
            rotation(&[
                "--container-log-max-size=64Ki",
                "--container-log-max-files=2"
            ])
            .unwrap(),
            crate::cri::logs::LogRotation {
                max_size: 64 << 10,
                max_files: 2
            }
        );
        for bad in [
            "--container-log-max-files=1",
            "--container-log-max-size=0",
            "--container-log-max-size=ten",
        ] {
            assert!(rotation(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "1x", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
